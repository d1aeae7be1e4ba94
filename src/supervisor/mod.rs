//! Policy: the one place that knows both unit files and the runtime. It
//! turns units into runtime requests (`spec`); the reconcile loop, restart
//! policy and control socket will live here too.

pub mod run;
pub mod spec;

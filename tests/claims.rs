//! What the docs claim and no other test showed, end to end as root: each
//! test reads a claim of docs/units.md, docs/supervisor.md or docs/api.md
//! and asserts what a user would notice, so that it fails when the claim
//! stops being true.

mod common;

mod claims {
    pub mod container;
    pub mod control;
    pub mod health;
    pub mod lifecycle;
    pub mod logs;
    pub mod ports;
    pub mod support;
}

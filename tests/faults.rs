//! Faults end to end, as root: the daemon killed mid-work, full disks, a
//! registry that misbehaves, event storms and crash-looping fleets. Each
//! test shows one guarantee of docs/reliability.md.

mod common;

mod faults {
    //! One file per area, named as in docs/reliability.md.
    pub mod crash;
    pub mod disk;
    pub mod logs;
    pub mod registry;
    pub mod store;
    pub mod storms;
}

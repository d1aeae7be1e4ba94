//! Security defaults end to end, as root: one test per defense of
//! docs/security.md, each written to fail on code without that defense.
//! The threat model: whoever writes unit files is root; images,
//! registries, containers, other local users and network peers are not.

mod common;

mod security {
    //! One file per area, named as in docs/security.md.
    pub mod images;
    pub mod network;
    pub mod process;
    pub mod state;
}

//! npyfs: mount many NumPy `.npy` parts as one virtual `.npy` file.
//!
//! Modules, each with one job:
//! - [`npy`]: parse part headers, write the virtual header as numpy does;
//! - [`layout`]: pure geometry, virtual byte range → part segments;
//! - [`manifest`]: TOML manifests and folder scanning → array definitions;
//! - [`source`]: open and validate parts, build virtual arrays;
//! - [`parts`]: lazily mapped part bytes (the only code mapping them);
//! - [`vfs`]: the filesystem core (tree, attributes, read path);
//! - [`fs`]: the thin `fuser::Filesystem` adapter;
//! - [`daemon`]: mount lifecycle; [`inspect`]: describing arrays;
//! - [`export`]: writing a virtual array to a real file;
//! - [`locate`]: which part serves a byte or element (`inspect --at`);
//! - [`mountopts`]: the mount(8) / fstab `-o` syntax.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod cli;
pub mod daemon;
pub mod export;
pub mod fs;
pub mod inspect;
pub mod layout;
pub mod live;
pub mod locate;
pub mod logging;
pub mod manifest;
pub mod mountopts;
pub mod npy;
pub mod parts;
pub mod source;
pub mod vfs;

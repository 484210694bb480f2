//! npyfs: mount many NumPy `.npy` parts as one virtual `.npy` file.
//!
//! Modules, each with one job:
//! - [`npy`]: parse part headers, write the virtual header as numpy does;
//! - [`layout`]: pure geometry, virtual byte range → part segments;
//! - [`manifest`]: TOML manifests and folder scanning → array definitions;
//! - [`source`]: open and validate parts, build virtual arrays;
//! - [`parts`]: lazily mapped part bytes (the only code touching them);
//! - [`vfs`]: the filesystem core (tree, attributes, read path);
//! - [`fs`]: the thin `fuser::Filesystem` adapter;
//! - [`daemon`]: mount lifecycle; [`inspect`]: describing arrays.
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
pub mod fs;
pub mod inspect;
pub mod layout;
pub mod live;
pub mod logging;
pub mod manifest;
pub mod npy;
pub mod parts;
pub mod source;
pub mod vfs;

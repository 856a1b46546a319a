//! The subcommands: [`inspect`] reads archives, [`store`] works on an image store, [`trust`]
//! manages the trusted OpenPGP keys.

mod inspect;
mod progress;
mod render;
mod store;
pub mod trust;

pub use inspect::{id, manifest, validate};
pub use render::{StrategyArg, release, render};
pub use store::{CompressionArg, export, fsck, gc, import, list, parse_label, rm, stats};

//! The subcommands: [`inspect`] reads archives, [`build`] builds and signs them, [`store`] works on an image store, [`trust`]
//! manages the trusted OpenPGP keys, [`discover`] runs meta discovery with the [`net`] options,
//! [`fetch`] gets images over the network into the store.

mod build;
mod discover;
pub mod fetch;
mod inspect;
mod interrupt;
mod net;
mod progress;
mod render;
pub mod serve;
pub mod store;
pub mod trust;

pub use build::{build, sign};
pub use discover::discover;
pub use inspect::{id, manifest, validate};
pub use net::NetArgs;
pub use render::{RenderFlags, StrategyArg, release, render};
pub use store::{
    CompressionArg, ExportCompressionArg, export, fsck, gc, import, list, parse_label, rm, stats,
};

//! The subcommands: [`inspect`] reads archives, [`store`] works on an image store.

mod inspect;
mod progress;
mod store;

pub use inspect::{id, manifest, validate};
pub use store::{CompressionArg, export, fsck, gc, import, list, parse_label, rm, stats};

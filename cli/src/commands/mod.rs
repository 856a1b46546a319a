//! The subcommands.

mod inspect;

pub use inspect::{id, manifest, validate};

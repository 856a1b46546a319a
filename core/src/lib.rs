//! acikit: an async toolkit for App Container Images (appc ACIs).
//!
//! Module map (see `docs/ARCHITECTURE.md` for the data flow):
//! - [`schema`]: the image manifest and the appc value types, parsed and validated;
//! - [`archive`]: reading image archives: decompression, the byte-keeping tar block
//!   reader, archive-layout validation and the image ID, all in one streaming pass;
//! - [`error`]: the one error type, with a stable [`ErrorKind`].

pub mod archive;
pub mod error;
pub mod schema;

pub use error::{Error, ErrorKind, Result};

//! acikit: an async toolkit for App Container Images (appc ACIs).
//!
//! Module map (see `docs/ARCHITECTURE.md` for the data flow):
//! - [`schema`]: the image manifest and the appc value types, parsed and validated;
//! - [`archive`]: reading image archives: decompression, the byte-keeping tar block
//!   reader, archive-layout validation and the image ID, all in one streaming pass;
//! - [`build`]: an image layout (manifest + rootfs) to a reproducible image archive, with our
//!   own tar writer;
//! - [`store`]: the exploded, de-duplicated image store and its [`Store`] facade;
//! - [`render`]: rootfs rendering: exploded trees, dependencies, per-run copies;
//! - [`net`]: the HTTP(S) client shared by discovery and fetch;
//! - [`discovery`]: appc meta discovery (name + labels to URLs);
//! - [`trust`]: trusted OpenPGP keys, signature verification and detached signing;
//! - [`fetch`]: an image by name or URL, verified, into the store (with dependencies);
//! - [`serve`]: an HTTP(S) image repository over a store: discovery, images, signatures,
//!   keys, a JSON API and pushes;
//! - [`output`]: the one policy for files written at a caller's path (export, build, sign):
//!   regular files replaced atomically, devices and FIFOs written in place, the rest refused;
//! - [`progress`]: progress events and cancellation for long calls;
//! - [`clock`]: UTC civil time for messages and listings;
//! - [`error`]: the one error type, with a stable [`ErrorKind`] grouped in an [`ErrorCategory`].

pub mod archive;
mod atomic_file;
mod blocking;
pub mod build;
pub mod clock;
pub mod discovery;
pub mod error;
pub mod fetch;
pub mod net;
pub mod output;
pub mod progress;
pub mod render;
pub mod schema;
pub mod serve;
pub mod store;
pub mod trust;

pub use error::{Error, ErrorCategory, ErrorKind, Result};
pub use schema::{ImageName, Label};
pub use store::Store;

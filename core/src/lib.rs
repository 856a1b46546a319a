//! acikit: an async toolkit for App Container Images (appc ACIs).
//!
//! Module map (see `docs/ARCHITECTURE.md` for the data flow):
//! - [`schema`]: the image manifest and the appc value types, parsed and validated;
//! - [`archive`]: reading image archives: decompression, the byte-keeping tar block
//!   reader, archive-layout validation and the image ID, all in one streaming pass;
//! - [`fs`]: directory-relative file-system primitives that never follow symlinks (metadata
//!   and xattrs, creating, removing and copying trees), shared by build, store and render;
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
//! - [`facade`]: the [`Store`] operations that span the layers below (`gc`, `fsck`, `rm`:
//!   the store's part, then the render caches'), and their reports;
//! - [`output`]: the one policy for files written at a caller's path (export, build, sign):
//!   regular files replaced atomically, devices and FIFOs written in place, the rest refused;
//! - [`progress`]: progress events and cancellation for long calls;
//! - [`clock`]: UTC civil time for messages and listings;
//! - [`error`]: the one error type, with a stable [`ErrorKind`] grouped in an [`ErrorCategory`].
//!
//! # Cargo features
//!
//! All three are on by default; turn them off (`default-features = false`) for a smaller
//! build that does not need them.
//!
//! - `server`: the [`serve`] module (an HTTP(S) image repository, `acikit serve`, and
//!   `serve::push_file`, the push client), with axum and axum-server.
//! - `postgres`: the PostgreSQL index (sqlx's PostgreSQL driver and TLS). Without it a store
//!   is SQLite-only: opening a store created with PostgreSQL (or asking for a
//!   `database_url`) fails with [`ErrorKind::Unsupported`] naming the missing feature. The
//!   store's API is the same either way, as which database a store uses is only known when
//!   it is opened.
//! - `render`: the [`render`] module and the [`Store`] methods it adds (`render`, `release`,
//!   `runs`): exploded trees, stacks and runs, with overlay and read-only mounts (Linux).
//!   Without it these methods do not exist (rather than failing at run time), so a program
//!   or a binding that needs them fails to build instead of failing in its users' hands,
//!   and a binding's generated API says what the build can do. `gc`, `fsck` and `rm` then
//!   leave render caches alone: a store shared with a build that renders may hold trees,
//!   stacks and runs; this build neither checks nor removes them (`rm` does not see live
//!   runs, which do not need the store's objects: their files are in the caches), and the
//!   next `gc` of a build with `render` removes those of removed images.

pub mod archive;
mod atomic_file;
mod blocking;
pub mod build;
pub mod clock;
pub mod discovery;
pub mod error;
pub mod facade;
pub mod fetch;
pub mod fs;
pub mod net;
pub mod output;
pub mod progress;
#[cfg(feature = "render")]
pub mod render;
pub mod schema;
#[cfg(feature = "server")]
pub mod serve;
pub mod store;
pub mod trust;

pub use error::{Error, ErrorCategory, ErrorKind, Result};
pub use facade::{FsckReport, GcReport};
pub use store::Store;

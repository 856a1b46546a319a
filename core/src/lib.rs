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
//!
//! The main types and calls are re-exported here at the crate root; `docs/ARCHITECTURE.md`
//! ("API for bindings") says what is public and why. Every long call takes an [`Observer`]
//! (progress callback and [`CancelToken`]) as its last parameter, by value.
//!
//! # A short tour
//!
//! Validate an archive, open a store, import it, list, export it back byte for byte:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> acikit::Result<()> {
//! use acikit::{ExportCompression, ImportOptions, Limits, Observer, Store, inspect_file};
//!
//! # let dir = acikit::testing::example_dir("tour");
//! # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
//! // `aci` is an image archive (e.g. built with `acikit::Builder`).
//! let inspection = inspect_file(&aci, Limits::default(), Observer::default()).await?;
//!
//! let store = Store::open(dir.join("store")).await?;
//! let imported = store.import_file(&aci, ImportOptions::default()).await?;
//! assert_eq!(imported.image_id, inspection.image_id);
//!
//! let images = store.list().await?;
//! assert_eq!(images.len(), 1);
//! assert_eq!(images[0].name, "example.com/hello");
//!
//! let out = dir.join("exported.aci");
//! let exported = store
//!     .export_to(&imported.image_id, &out, ExportCompression::None, Observer::default())
//!     .await?;
//! assert_eq!(exported.image_id, inspection.image_id);
//! assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&aci).unwrap());
//! store.close().await;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

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

pub use archive::{Inspection, Limits, inspect_file};
pub use build::{BuildCompression, Builder, Built};
pub use error::{Error, ErrorCategory, ErrorKind, Result};
pub use fetch::{FetchOptions, FetchOutcome, FetchSource, Fetched};
pub use progress::{CancelToken, Observer, Phase, Progress};
pub use render::{RenderOptions, Rendered, Strategy};
pub use schema::{ImageId, ImageManifest};
pub use serve::{RunningServer, ServeOptions, Server};
pub use store::{
    ExportCompression, Exported, ImageInfo, ImageQuery, ImportOptions, Imported, Store,
    StoreOptions,
};

/// Internals re-exported for this crate's own integration tests only: not part of the API,
/// may change in any release. Each item is listed by name (nothing else leaks through).
#[doc(hidden)]
pub mod testing {
    /// The tar block reader (`archive::tar`).
    pub mod tar {
        pub use crate::archive::tar::{Entry, EntryKind, RecordLog, TarReader};
    }
    /// Where things live in a store folder (`store::paths`).
    pub mod paths {
        pub use crate::store::paths::StorePaths;
    }
    /// Byte ranges of a regenerated tar (`store::range`).
    pub mod range {
        pub use crate::store::range::{Objects, TarRange, tar_range};
    }
    /// Recipe + objects back to the tar (`store::regenerate`).
    pub mod regenerate {
        pub use crate::store::regenerate::ObjectPaths;
    }
    /// Exploded trees (`render::tree`).
    pub mod tree {
        pub use crate::render::tree::{TreeBuilt, ensure_tree, prune_checkouts, remove_tree_of};
    }
    /// Dependency resolution (`render::deps`).
    pub mod deps {
        pub use crate::render::deps::{Layer, MAX_LAYERS, keeps, resolve_layers};
    }
    /// Flattened stacks (`render::stack`).
    pub mod stack {
        pub use crate::render::stack::{StackBuilt, ensure_stack, stack_key};
    }
    /// Per-run copies (`render::run`).
    pub mod run {
        pub use crate::render::run::{
            RunHandle, RunOptions, Strategy, create_run, create_run_with, list_runs, release_run,
        };
    }
    /// Dead runs (`render::reap`).
    pub mod reap {
        pub use crate::render::reap::{find_dead_runs, reap_dead_runs};
    }

    use std::path::{Path, PathBuf};

    /// A new empty folder for a doctest, `acikit-doc-<what>-<pid>` in the temporary folder.
    pub fn example_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("acikit-doc-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the doctest folder");
        dir
    }

    /// Builds a small image named `name` (a manifest and a rootfs with one file) into
    /// `dir/image.aci`, for doctests, with the public [`Builder`](crate::Builder).
    pub async fn example_aci(dir: &Path, name: &str) -> crate::Result<PathBuf> {
        let layout = dir.join("layout");
        std::fs::create_dir_all(layout.join("rootfs/etc")).expect("creating the layout");
        let manifest = format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{{"name":"version","value":"1.0.0"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]}}"#
        );
        std::fs::write(layout.join("manifest"), manifest).expect("writing the manifest");
        std::fs::write(layout.join("rootfs/etc/hello"), b"hello\n").expect("writing a file");
        let aci = dir.join("image.aci");
        crate::Builder::new()
            .compression(crate::BuildCompression::None)
            .build(&layout, &aci)
            .await?;
        Ok(aci)
    }
}

//! acikit: an async toolkit for App Container Images (appc ACIs).
//!
//! Module map (see `docs/ARCHITECTURE.md` for the data flow):
//! - [`schema`]: the image manifest and the appc value types, parsed and validated;
//! - [`archive`]: reading image archives: decompression, the byte-keeping tar block
//!   reader, archive-layout validation and the image ID, all in one streaming pass;
//! - `fs`: directory-relative file-system primitives that never follow symlinks (metadata
//!   and xattrs, creating, removing and copying trees), shared by build, store and render;
//! - [`build`]: an image layout (manifest + rootfs) to a reproducible image archive, with our
//!   own tar writer;
//! - [`store`]: the exploded, de-duplicated image store and its [`Store`] handle;
//! - `render`: rootfs rendering: exploded trees, dependencies, per-run copies;
//! - [`net`]: the HTTP(S) client shared by discovery and fetch;
//! - [`discovery`]: appc meta discovery (name + labels to URLs);
//! - [`trust`]: trusted OpenPGP keys, signature verification and detached signing;
//! - [`fetch`]: an image by name or URL, verified, into the store (with dependencies);
//! - `serve`: an HTTP(S) image repository over a store: discovery, images, signatures,
//!   keys, a JSON API and pushes;
//! - [`facade`]: the [`Store`] operations that span the layers below (`gc`, `fsck`, `rm`:
//!   the store's part, then the render caches'), and their reports;
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
//! let imported = store
//!     .import_file(&aci, ImportOptions::default(), Observer::default())
//!     .await?;
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
//!
//! # Cargo features
//!
//! All three are on by default; turn them off (`default-features = false`) for a smaller
//! build that does not need them.
//!
//! - `server`: the `serve` module (an HTTP(S) image repository, `acikit serve`, and
//!   `serve::push_file`, the push client), with axum and axum-server.
//! - `postgres`: the PostgreSQL index (sqlx's PostgreSQL driver and TLS). Without it a store
//!   is SQLite-only: opening a store created with PostgreSQL (or asking for a
//!   `database_url`) fails with [`ErrorKind::Unsupported`] naming the missing feature. The
//!   store's API is the same either way, as which database a store uses is only known when
//!   it is opened.
//! - `render`: the `render` module and the [`Store`] methods it adds (`render`, `release`,
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
// Most of `fs` serves render; without it only what build and store use is live.
#[cfg_attr(not(feature = "render"), allow(dead_code))]
pub(crate) mod fs;
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

pub use archive::{Inspection, Limits, inspect_file};
pub use build::{BuildCompression, Builder, Built};
pub use error::{Error, ErrorCategory, ErrorKind, Result};
pub use facade::{FsckReport, GcReport};
pub use fetch::{FetchOptions, FetchOutcome, FetchSource, Fetched};
pub use progress::{CancelToken, Observer, Phase, Progress};
#[cfg(feature = "render")]
pub use render::{RenderOptions, Rendered, Strategy};
pub use schema::{ImageId, ImageManifest, ImageName, Label};
#[cfg(feature = "server")]
pub use serve::{RunningServer, ServeOptions, Server};
pub use store::{
    ExportCompression, Exported, ImageInfo, ImageQuery, ImportOptions, Imported,
    OriginalCompaction, OriginalForm, Store, StoreOptions,
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

        /// Where everything lives in `store`'s folder.
        pub fn of(store: &crate::Store) -> &StorePaths {
            store.paths()
        }
    }
    /// The recipe format (`store::recipe`).
    pub mod recipe {
        pub use crate::store::recipe::{
            RECIPE_MAGIC_V1, RecipeReader, RecipeRecord, RecipeTrailer, RecipeWriter,
        };
    }
    /// Re-creating an image's original zstd, xz or bzip2 bytes (`archive::recompress`).
    pub mod recompress {
        pub use crate::archive::recompress::{OpenReader, RecompressParams};
        use crate::{CancelToken, Result, archive::Compression};

        /// `archive::recompress::detect`.
        pub fn detect(
            compression: Compression,
            original: OpenReader<'_>,
            decompressed: OpenReader<'_>,
            cancel: &CancelToken,
        ) -> Result<Option<RecompressParams>> {
            crate::archive::recompress::detect(compression, original, decompressed, cancel)
        }

        /// `archive::recompress::recreate`.
        pub fn recreate(
            params: &RecompressParams,
            decompressed: &mut dyn std::io::Read,
            out: &mut dyn std::io::Write,
            cancel: &CancelToken,
        ) -> Result<()> {
            crate::archive::recompress::recreate(params, decompressed, out, cancel)
        }
    }
    /// Byte ranges of a regenerated tar (`store::range`).
    pub mod range {
        pub use crate::store::range::{Objects, TarRange, tar_range};
    }
    /// Recipe + objects back to the tar (`store::regenerate`).
    pub mod regenerate {
        pub use crate::store::regenerate::ObjectPaths;
    }
    #[cfg(feature = "render")]
    /// What rendering may do as this user (`fs::Privileges`).
    pub mod privileges {
        pub use crate::fs::Privileges;
    }
    #[cfg(feature = "render")]
    /// Exploded trees (`render::tree`).
    pub mod tree {
        pub use crate::render::tree::{TreeBuilt, ensure_tree, prune_checkouts, remove_tree_of};
    }
    #[cfg(feature = "render")]
    /// Dependency resolution (`render::deps`).
    pub mod deps {
        pub use crate::render::deps::{Layer, MAX_LAYERS, keeps, resolve_layers};
    }
    #[cfg(feature = "render")]
    /// Flattened stacks (`render::stack`).
    pub mod stack {
        pub use crate::render::stack::{StackBuilt, ensure_stack, stack_key};
    }
    #[cfg(feature = "render")]
    /// Per-run copies (`render::run`).
    pub mod run {
        pub use crate::render::run::{
            RunHandle, RunOptions, Strategy, create_run, create_run_with, list_runs, release_run,
        };
    }
    #[cfg(feature = "render")]
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

    /// Builds a small image named `name` (version `1.0.0`, the host's `os` and `arch`; a
    /// manifest and a rootfs with one file, `etc/hello`) into `dir/image.aci`, for doctests,
    /// with the public [`Builder`](crate::Builder).
    pub async fn example_aci(dir: &Path, name: &str) -> crate::Result<PathBuf> {
        let (os, arch) = crate::discovery::host_os_arch();
        let layout = dir.join("layout");
        std::fs::create_dir_all(layout.join("rootfs/etc")).expect("creating the layout");
        let manifest = format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{{"name":"version","value":"1.0.0"}},{{"name":"os","value":"{os}"}},{{"name":"arch","value":"{arch}"}}]}}"#
        );
        std::fs::write(layout.join("manifest"), manifest).expect("writing the manifest");
        std::fs::write(layout.join("rootfs/etc/hello"), b"hello\n").expect("writing a file");
        let aci = dir.join("image.aci");
        crate::Builder::new()
            .compression(crate::BuildCompression::None)
            .build(&layout, &aci, crate::Observer::default())
            .await?;
        Ok(aci)
    }

    /// The ascii-armored public half of a throw-away ed25519 signing key (`Example
    /// <example@example.com>`, no passphrase), for doctests only: never trust it elsewhere.
    pub const EXAMPLE_PUBLIC_KEY: &str = "\
-----BEGIN PGP PUBLIC KEY BLOCK-----\n\
\n\
mDMEaxFdXBYJKwYBBAHaRw8BAQdA3z7iFECz2ysygbK+8e6mpAqxPANANqJrknBd\n\
63+tvLK0HUV4YW1wbGUgPGV4YW1wbGVAZXhhbXBsZS5jb20+iJAEExYIADgWIQR3\n\
YRnRVFrfqG5XN8EMQLeCP3+OyQUCaxFdXAIbAwULCQgHAgYVCgkICwIEFgIDAQIe\n\
AQIXgAAKCRAMQLeCP3+OyXXhAQCjN+YGOjCvLq5uPirlSKAb+mdLmCzcyMyyVu1Y\n\
l4jvOgEA9IvraTO3VUVLy/srL2EBSZt/WoCZTZQ/nPDMqAC4AgU=\n\
=QTOs\n\
-----END PGP PUBLIC KEY BLOCK-----\n";

    /// The ascii-armored secret half of [`EXAMPLE_PUBLIC_KEY`] (public on purpose: doctests
    /// sign with it).
    pub const EXAMPLE_SECRET_KEY: &str = "\
-----BEGIN PGP PRIVATE KEY BLOCK-----\n\
\n\
lFgEaxFdXBYJKwYBBAHaRw8BAQdA3z7iFECz2ysygbK+8e6mpAqxPANANqJrknBd\n\
63+tvLIAAQDFIbIUWaIX/NPy9XsZxK54/UgLXJSEEa0wJvikmyAEPQ9jtB1FeGFt\n\
cGxlIDxleGFtcGxlQGV4YW1wbGUuY29tPoiQBBMWCAA4FiEEd2EZ0VRa36huVzfB\n\
DEC3gj9/jskFAmsRXVwCGwMFCwkIBwIGFQoJCAsCBBYCAwECHgECF4AACgkQDEC3\n\
gj9/jsl14QEAozfmBjowry6ubj4q5UigG/pnS5gs3MjMslbtWJeI7zoBAPSL62kz\n\
t1VFS8v7Ky9hAUmbf1qAmU2UP5zwzKgAuAIF\n\
=IPfV\n\
-----END PGP PRIVATE KEY BLOCK-----\n";

    /// The fingerprint of [`EXAMPLE_PUBLIC_KEY`], lowercase hex.
    pub const EXAMPLE_FINGERPRINT: &str = "776119d1545adfa86e5737c10c40b7823f7f8ec9";

    /// The bearer token pushes to an [`example_repository`] need.
    #[cfg(feature = "server")]
    pub const EXAMPLE_PUSH_TOKEN: &str = "example-token";

    /// For doctests: an image repository ([`Server`](crate::Server)) on `127.0.0.1`, plain
    /// HTTP, over a new store in `dir/repository` that trusts [`EXAMPLE_PUBLIC_KEY`] for
    /// `example.com`, and takes pushes with [`EXAMPLE_PUSH_TOKEN`]. Stop it at the end.
    #[cfg(feature = "server")]
    pub async fn example_server(dir: &Path) -> crate::Result<crate::RunningServer> {
        let store = crate::Store::open(dir.join("repository")).await?;
        store.trust_to_change()?.add(
            EXAMPLE_PUBLIC_KEY.as_bytes(),
            crate::trust::TrustScope::prefix("example.com")?,
        )?;
        let mut options = crate::ServeOptions::new(([127, 0, 0, 1], 0).into());
        options.push_token = Some(EXAMPLE_PUSH_TOKEN.to_string());
        crate::Server::new(store, options).start().await
    }

    /// For doctests: network options that reach `server` for every name under
    /// `example.com` (resolved to it, on its port), over plain HTTP.
    #[cfg(feature = "server")]
    pub fn example_net(server: &crate::RunningServer) -> crate::net::NetOptions {
        let mut options = crate::net::NetOptions::default();
        options.insecure.http = true;
        options.port = Some(server.local_addr().port());
        options.resolve = vec![("example.com".to_string(), server.local_addr())];
        options
    }

    /// For doctests: [`example_server`] serving [`example_aci`] `name` (under
    /// `example.com`), pushed with its signature by [`EXAMPLE_SECRET_KEY`].
    #[cfg(feature = "server")]
    pub async fn example_repository(dir: &Path, name: &str) -> crate::Result<crate::RunningServer> {
        let server = example_server(dir).await?;
        let images = dir.join("repository-image");
        std::fs::create_dir_all(&images).expect("creating the image folder");
        let aci = example_aci(&images, name).await?;
        let file = std::fs::File::open(&aci).expect("opening the image");
        let signature = crate::trust::sign_detached(EXAMPLE_SECRET_KEY.as_bytes(), None, file)?;
        let client = crate::net::HttpClient::new(example_net(&server))?;
        let base = format!("http://{}", server.local_addr());
        crate::serve::push_file(
            &client,
            &base,
            &aci,
            Some(&signature),
            EXAMPLE_PUSH_TOKEN,
            crate::Observer::default(),
        )
        .await?;
        Ok(server)
    }
}

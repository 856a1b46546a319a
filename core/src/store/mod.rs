//! The exploded, de-duplicated image store.
//!
//! An image is kept as content objects (one file per distinct content, named by SHA-256,
//! shared by all images) plus a recipe (every non-content byte of its tar, with content
//! references), and a row in the SQL index. `recipe + objects` regenerates the canonical
//! tar byte for byte, so the image ID can always be recomputed.
//!
//! - `handle`: [`Store`], the one handle the CLI and bindings use (the operations that span
//!   layers, `gc`, `fsck` and `rm`, are in `crate::facade`);
//! - `import`: the one-pass import pipeline; `archives`: archive files already imported,
//!   by the SHA-256 of their bytes (a re-import of the same file is a lookup);
//! - `objects`: the content-addressed object store and per-import staging; `large`:
//!   staging a large file without writing content the store has, found through
//!   `heads`, the side index of large objects by size and first MiB;
//! - `recipe`: the recipe format; `regenerate`: recipe + objects back to the tar (hashed,
//!   for export and fsck); `range`: any byte range of it, for serving;
//! - `index`: the SQL index of images, labels, annotations and fetch state (SQLite
//!   or PostgreSQL); `database`: which of the two a store folder uses;
//! - `references`: which objects the images use, read from their recipes;
//! - `housekeeping`: export to a file, the store's part of `rm`, `gc` and `fsck` (the
//!   render caches' part is `render::housekeeping`'s; `crate::facade` runs both), `stats`;
//! - `access`: whether a store is read-only (then it serves reads and refuses writes);
//! - `paths`: where everything lives in the store folder; `digest`: object names.

pub(crate) mod access;
pub(crate) mod archives;
pub(crate) mod database;
pub(crate) mod digest;
pub(crate) mod handle;
pub(crate) mod heads;
pub(crate) mod housekeeping;
pub(crate) mod import;
pub(crate) mod index;
pub(crate) mod large;
pub(crate) mod objects;
pub(crate) mod originals;
pub(crate) mod paths;
pub(crate) mod range;
pub(crate) mod recipe;
pub(crate) mod references;
pub(crate) mod regenerate;

pub use digest::ContentDigest;
pub(crate) use digest::ContentHasher;
pub use handle::{
    ExportCompression, Exported, ImageInfo, ImageQuery, Resolved, Store, StoreOptions,
    auth_config_path,
};
pub use housekeeping::{FsckProblem, ImageOriginal, StoreStats};
pub use import::{ImportGate, ImportOptions, Imported, StagedImage};
pub use index::IndexBackend;
pub use originals::{OriginalCompaction, OriginalForm, OriginalInfo};
pub use regenerate::ExportReader;

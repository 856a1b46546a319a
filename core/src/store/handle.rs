//! [`Store`]: the one handle on the image store that the CLI and the bindings wrap.
//! Owned arguments and results, `'static + Send` futures, progress and cancellation
//! through an [`Observer`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::access::{self, ReadOnlyReason};
use super::database;
use super::housekeeping::{self, StoreStats};
use super::import::{self, ImportOptions, Imported};
use super::index::{ImageRecord, Index, IndexBackend};
use super::paths::StorePaths;
use super::regenerate::{self, ExportReader, ObjectPaths};
use crate::blocking::blocking;
use crate::output::OutputOptions;
use crate::progress::{Observer, Phase};
use crate::schema::{ImageId, ImageIdPrefix, ImageName, Label};
use crate::{Error, ErrorKind, Result};

/// How `export` compresses the regenerated tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExportCompression {
    /// The canonical tar itself.
    #[default]
    None,
    /// gzip, deterministic (no name, no time, level 6).
    Gzip,
    /// zstd (level 3).
    Zstd,
    /// The exact bytes the image came as (gzip, xz, zstd, bzip2 or a plain tar), re-created
    /// from its original record and checked against the recorded SHA-256 before any byte is
    /// written; an image without an original record is [`ErrorKind::NotFound`].
    Original,
}

impl ExportCompression {
    /// Every choice.
    pub const ALL: [ExportCompression; 4] = [
        ExportCompression::None,
        ExportCompression::Gzip,
        ExportCompression::Zstd,
        ExportCompression::Original,
    ];

    /// The name of the choice (`"none"`, `"gzip"`, `"zstd"`, `"original"`), as
    /// [`FromStr`](std::str::FromStr) reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportCompression::None => "none",
            ExportCompression::Gzip => "gzip",
            ExportCompression::Zstd => "zstd",
            ExportCompression::Original => "original",
        }
    }
}

impl std::fmt::Display for ExportCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExportCompression {
    type Err = Error;

    /// Reads `"none"`, `"gzip"`, `"zstd"` or `"original"`; anything else is `invalid_argument`.
    ///
    /// ```
    /// assert_eq!("zstd".parse::<acikit::ExportCompression>().unwrap(), acikit::ExportCompression::Zstd);
    /// assert!("lz4".parse::<acikit::ExportCompression>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<ExportCompression> {
        ExportCompression::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "unknown export compression {s:?} (expected none, gzip, zstd or original)"
                    ),
                )
            })
    }
}

/// What to look an image up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageQuery {
    /// A full image ID or an unambiguous prefix of one (`sha512-0123…`).
    Id(ImageIdPrefix),
    /// An image name with the labels that must match; a label absent from the query
    /// matches any value, and without `version` the newest import wins.
    Name(ImageName),
}

impl ImageQuery {
    /// Parses `sha512-…` (full or prefix) or `NAME[:VERSION]` plus extra labels (see
    /// [`ImageName::parse`]). Labels with an ID are [`ErrorKind::InvalidArgument`].
    ///
    /// ```
    /// use acikit::{ImageQuery, Label};
    ///
    /// let query = ImageQuery::parse("example.com/app:1.0", &[Label::new("os", "linux")])?;
    /// let ImageQuery::Name(image) = &query else { panic!("a name") };
    /// assert_eq!(image.name, "example.com/app");
    /// assert_eq!(image.label("version"), Some("1.0"));
    ///
    /// assert!(matches!(ImageQuery::parse("sha512-0123ab", &[])?, ImageQuery::Id(_)));
    /// // Labels go with a name only.
    /// let err = ImageQuery::parse("sha512-0123ab", &[Label::new("os", "linux")]).unwrap_err();
    /// assert_eq!(err.kind(), acikit::ErrorKind::InvalidArgument);
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(text: &str, labels: &[Label]) -> Result<ImageQuery> {
        if text.starts_with("sha512-") {
            if !labels.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "labels go with an image name, not an ID",
                ));
            }
            return Ok(ImageQuery::Id(ImageIdPrefix::parse(text)?));
        }
        Ok(ImageQuery::Name(ImageName::parse(text, labels)?))
    }
}

/// One image as listed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ImageInfo {
    /// The image ID.
    pub image_id: ImageId,
    /// The image name.
    pub name: String,
    /// Its labels, in manifest order.
    pub labels: Vec<Label>,
    /// Size of the canonical (uncompressed) tar.
    pub tar_size: u64,
    /// Size of the archive as imported.
    pub archive_size: u64,
    /// Number of tar members.
    pub entries: u64,
    /// Import time, milliseconds since the Unix epoch.
    pub imported_at_ms: i64,
    /// Last use, milliseconds since the Unix epoch.
    pub last_used_at_ms: i64,
    /// Where it was imported from.
    pub origin: Option<String>,
}

impl ImageInfo {
    /// The value of a label, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

impl From<ImageRecord> for ImageInfo {
    fn from(r: ImageRecord) -> Self {
        ImageInfo {
            image_id: r.image_id,
            name: r.name,
            labels: r
                .labels
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
            tar_size: r.tar_size,
            archive_size: r.archive_size,
            entries: r.entries,
            imported_at_ms: r.imported_at_ms,
            last_used_at_ms: r.last_used_at_ms,
            origin: r.origin,
        }
    }
}

/// What a query found: the image chosen and the other images it matched.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Resolved {
    /// The image chosen: the only match, or the newest import of the images matching a
    /// name and labels (as rkt does).
    pub image: ImageInfo,
    /// The other images a name query matched, newest import first; empty for an ID
    /// (an ambiguous ID prefix is an error).
    pub others: Vec<ImageInfo>,
}

impl Resolved {
    /// The image, if the query matched only it; else an [`ErrorKind::AmbiguousImage`]
    /// error naming every match (for commands that must not guess, like `rm`).
    pub fn unique(self, query: &ImageQuery) -> Result<ImageInfo> {
        if self.others.is_empty() {
            return Ok(self.image);
        }
        let matches: Vec<String> = std::iter::once(&self.image)
            .chain(&self.others)
            .map(|i| {
                format!(
                    "{} (imported {})",
                    i.image_id,
                    crate::clock::format_utc(i.imported_at_ms.div_euclid(1000))
                )
            })
            .collect();
        Err(Error::new(
            ErrorKind::AmbiguousImage,
            format!(
                "{query} matches {} images: {}; name one by its image ID",
                matches.len(),
                matches.join(", ")
            ),
        ))
    }
}

impl std::fmt::Display for ImageQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageQuery::Id(prefix) => write!(f, "{prefix}"),
            ImageQuery::Name(image) => write!(f, "{image}"),
        }
    }
}

/// The outcome of an export.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Exported {
    /// The image exported.
    pub image_id: ImageId,
    /// Bytes of the canonical tar regenerated (and verified).
    pub tar_size: u64,
    /// Bytes written to the output.
    pub written: u64,
}

/// How to open a store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StoreOptions {
    /// The PostgreSQL database of the index (`postgres://user[:password]@host[:port]/db`),
    /// for a store that several processes or machines share. `None` opens the index
    /// the store was created with: the SQLite file `index.db` in the folder by
    /// default. A store keeps the index it was created with; opening it with another
    /// fails with [`ErrorKind::InvalidArgument`].
    pub database_url: Option<String>,
    /// Open the store read-only even if it could be written: every read works and writes
    /// nothing (no use records), every write fails at once with
    /// [`ErrorKind::ReadOnlyStore`]. A store on a read-only mount or in a folder this user
    /// cannot write is opened so without being asked.
    pub read_only: bool,
    /// Where the records of runs rendered from a read-only store go (see
    /// `access::outside_runs_dir` for the default); a writable store keeps them in
    /// `STORE/runs`.
    pub runs_dir: Option<PathBuf>,
}

impl StoreOptions {
    /// Sets [`database_url`](Self::database_url): the PostgreSQL index to use.
    pub fn database_url(mut self, url: impl Into<String>) -> StoreOptions {
        self.database_url = Some(url.into());
        self
    }

    /// Sets [`read_only`](Self::read_only).
    pub fn read_only(mut self, read_only: bool) -> StoreOptions {
        self.read_only = read_only;
        self
    }

    /// Sets [`runs_dir`](Self::runs_dir): where the records of runs rendered from a
    /// read-only store go.
    pub fn runs_dir(mut self, dir: impl Into<PathBuf>) -> StoreOptions {
        self.runs_dir = Some(dir.into());
        self
    }
}

/// An image store: content objects, recipes and the SQL index (a file in the folder,
/// or a PostgreSQL database).
#[derive(Clone)]
pub struct Store {
    paths: StorePaths,
    index: Index,
    /// Why the store is read-only, if it is (see `store::access`).
    pub(super) read_only: Option<ReadOnlyReason>,
    /// Where runs rendered while the store is read-only are recorded.
    pub(super) outside_runs: PathBuf,
}

impl Store {
    /// The default store folder: `$ACIKIT_STORE`, else `$XDG_DATA_HOME/acikit`, else
    /// `~/.local/share/acikit`.
    ///
    /// ```
    /// use acikit::Store;
    ///
    /// let dir = Store::default_dir();
    /// match std::env::var_os("ACIKIT_STORE") {
    ///     Some(set) => assert_eq!(dir, std::path::PathBuf::from(set)),
    ///     None => assert!(dir.ends_with("acikit")),
    /// }
    /// ```
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("ACIKIT_STORE") {
            return dir.into();
        }
        if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(dir).join("acikit");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".local/share/acikit")
    }

    /// Opens (creating if needed) the store at `dir` with the index it was created
    /// with (SQLite unless it was created with a PostgreSQL URL), and removes the
    /// staging folders of imports that were killed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-open");
    /// use acikit::Store;
    ///
    /// let store = Store::open(dir.join("store")).await?;
    /// assert!(store.list().await?.is_empty());
    /// assert!(dir.join("store").is_dir());
    /// store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(dir: impl Into<PathBuf>) -> impl Future<Output = Result<Store>> + Send + 'static {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens (creating if needed) the store at `dir` as `options` say; see
    /// [`StoreOptions::database_url`] for where the index goes. A new store's folder is
    /// only created once its PostgreSQL database (if any) has answered.
    ///
    /// A store on a read-only mount, in a folder this user cannot write, or opened with
    /// [`StoreOptions::read_only`] is opened without writing anything (no folder made, no
    /// staging removed, no migration); it must exist ([`ErrorKind::NotFound`]) with an index
    /// whose schema is up to date ([`ErrorKind::ReadOnlyStore`]). See
    /// [`Store::is_read_only`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-open-with");
    /// use acikit::{ErrorKind, Observer, Store, StoreOptions};
    ///
    /// let mut options = StoreOptions::default();
    /// options.read_only = true;
    /// // A read-only store must exist: nothing is created.
    /// let Err(err) = Store::open_with(dir.join("store"), options.clone()).await else {
    ///     panic!("there is no store to open");
    /// };
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    ///
    /// Store::open(dir.join("store")).await?.close().await;
    /// let store = Store::open_with(dir.join("store"), options).await?;
    /// assert!(store.is_read_only());
    /// let err = store.gc(Observer::default()).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ReadOnlyStore);
    /// store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_with(
        dir: impl Into<PathBuf>,
        options: StoreOptions,
    ) -> impl Future<Output = Result<Store>> + Send + 'static {
        let dir = dir.into();
        Store::open_owned(dir, options)
    }

    async fn open_owned(dir: PathBuf, options: StoreOptions) -> Result<Store> {
        let paths = StorePaths::new(dir);
        let read_only = access::detect(paths.root(), options.read_only)?;
        let index =
            database::open_index(&paths, options.database_url.as_deref(), read_only.as_ref())
                .await?;
        let outside_runs = options
            .runs_dir
            .unwrap_or_else(|| access::outside_runs_dir(paths.root()));
        Ok(Store {
            paths,
            index,
            read_only,
            outside_runs,
        })
    }

    /// The store folder.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-dir");
    /// let store = acikit::Store::open(dir.join("store")).await?;
    /// assert_eq!(store.dir(), dir.join("store"));
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn dir(&self) -> &Path {
        self.paths.root()
    }

    /// The credentials file fetch and discovery read when the caller names none:
    /// `config/auth.json` in the store folder (it need not exist; read it with
    /// [`AuthConfig::load_if_present`](crate::net::AuthConfig::load_if_present)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-auth");
    /// let store = acikit::Store::open(dir.join("store")).await?;
    /// let auth = acikit::net::AuthConfig::load_if_present(&store.auth_config_path())?;
    /// assert_eq!(auth, acikit::net::AuthConfig::new());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn auth_config_path(&self) -> PathBuf {
        auth_config_path(self.dir())
    }

    /// Closes the index (waiting for the connections in use). Every clone of this store
    /// shares it: call this once nothing uses the store any more, as `acikit serve` does
    /// when it stops.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-close");
    /// let store = acikit::Store::open(dir.join("store")).await?;
    /// let clone = store.clone();
    /// assert!(clone.list().await?.is_empty());
    /// // Once nothing uses the store (nor any clone of it) any more:
    /// store.close().await;
    /// assert!(clone.list().await.is_err());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self) -> impl Future<Output = ()> + Send + 'static {
        let index = self.index.clone();
        async move { index.close().await }
    }

    /// Which database indexes the store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-backend");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// use acikit::store::IndexBackend;
    ///
    /// // A store opened without a `database_url` keeps its index in `STORE/index.db`.
    /// assert_eq!(store.index_backend(), IndexBackend::Sqlite);
    /// assert!(dir.join("store/index.db").is_file());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn index_backend(&self) -> IndexBackend {
        self.index.backend()
    }

    /// The store's SQL index (for the fetch module's cache state).
    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    /// Where everything lives in the store folder.
    pub(crate) fn paths(&self) -> &StorePaths {
        &self.paths
    }

    /// The store's trusted OpenPGP keys (`config/trust/`), its folder created if missing
    /// (on a read-only store, not created: a missing folder trusts no key). To add or
    /// remove keys, use [`Store::trust_to_change`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-trust");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// // A new store trusts no key: fetching a signed image fails until one is added
    /// // (see `Store::trust_to_change`).
    /// let trusted = store.trust()?;
    /// assert!(trusted.list()?.is_empty());
    /// assert!(trusted.keys_for("example.com/hello")?.is_empty());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn trust(&self) -> Result<crate::trust::TrustStore> {
        let dir = self.paths.trust();
        if self.is_read_only() {
            return Ok(crate::trust::TrustStore::new(dir));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(crate::trust::TrustStore::new(dir))
    }

    /// Imports the archive at `path` (any compression); see [`Store::import`]. The file
    /// is hashed first: if the same bytes were imported before and their image is still
    /// in the store, that is the answer (without a gate and with the default limits).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-import-file");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// use acikit::{ImportOptions, Observer};
    ///
    /// // `aci` is an image archive (any compression), here a tar built by `acikit::Builder`.
    /// let imported = store.import_file(&aci, ImportOptions::default(), Observer::default()).await?;
    /// assert_eq!(imported.name, "example.com/hello");
    /// assert!(!imported.already_present);
    ///
    /// // The same bytes again: nothing new.
    /// let again = store.import_file(&aci, ImportOptions::default(), Observer::default()).await?;
    /// assert_eq!(again.image_id, imported.image_id);
    /// assert!(again.already_present);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn import_file(
        &self,
        path: impl AsRef<Path>,
        options: ImportOptions,
        observer: Observer,
    ) -> impl Future<Output = Result<Imported>> + Send + 'static {
        let store = self.clone();
        let path = path.as_ref().to_path_buf();
        async move {
            store.require_writable("import")?;
            observer.check()?;
            let file = std::fs::File::open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let mut options = options;
            options.archive_size = file.metadata().ok().map(|m| m.len());
            options
                .origin
                .get_or_insert_with(|| path.display().to_string());
            super::archives::import_file(&store.paths, &store.index, &path, file, options, observer)
                .await
        }
    }

    /// Imports an archive in one streaming pass. The image becomes visible only once it is
    /// complete and committed; importing an image already present changes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-import");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// use acikit::{ImportOptions, Observer};
    ///
    /// // Any `Read` (a socket, a pipe, stdin); here a file opened by hand.
    /// let source = std::fs::File::open(&aci).unwrap();
    /// let imported = store.import(source, ImportOptions::default(), Observer::default()).await?;
    /// assert_eq!(imported.name, "example.com/hello");
    /// assert_eq!(store.list().await?.len(), 1);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn import<R: std::io::Read + Send + 'static>(
        &self,
        source: R,
        options: ImportOptions,
        observer: Observer,
    ) -> impl Future<Output = Result<Imported>> + Send + 'static {
        let store = self.clone();
        async move {
            store.require_writable("import")?;
            observer.check()?;
            import::import(&store.paths, &store.index, source, &options, observer).await
        }
    }

    /// Finds one image: by full ID, by unambiguous ID prefix, or by name and labels
    /// (the newest import of those matching; see [`Store::resolve_matches`] to know
    /// whether there were others).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-resolve");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::ImageQuery;
    ///
    /// let by_name = store.resolve(&ImageQuery::parse("example.com/hello:1.0.0", &[])?).await?;
    /// assert_eq!(by_name.image_id, id);
    ///
    /// // An unambiguous prefix of the ID works too.
    /// let prefix = &id.to_string()[..20];
    /// let by_prefix = store.resolve(&ImageQuery::parse(prefix, &[])?).await?;
    /// assert_eq!(by_prefix.image_id, id);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn resolve(
        &self,
        query: &ImageQuery,
    ) -> impl Future<Output = Result<ImageInfo>> + Send + 'static {
        let matches = self.resolve_matches(query);
        async move { Ok(matches.await?.image) }
    }

    /// [`Store::resolve`], also returning the other images a name query matched, so that
    /// a caller can say which it picked, or refuse ([`Resolved::unique`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-resolve-matches");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{ErrorKind, ImageQuery};
    ///
    /// let query = ImageQuery::parse("example.com/hello", &[])?;
    /// let found = store.resolve_matches(&query).await?;
    /// assert_eq!(found.image.image_id, id);
    /// assert!(found.others.is_empty());
    /// assert_eq!(found.unique(&query)?.image_id, id);
    ///
    /// let missing = ImageQuery::parse("example.com/other", &[])?;
    /// let err = store.resolve_matches(&missing).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn resolve_matches(
        &self,
        query: &ImageQuery,
    ) -> impl Future<Output = Result<Resolved>> + Send + 'static {
        let index = self.index.clone();
        let query = query.clone();
        async move { resolve_in(&index, &query).await }
    }

    /// Every image, by name then newest first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-list");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// let images = store.list().await?;
    /// assert_eq!(images.len(), 1);
    /// assert_eq!(images[0].image_id, id);
    /// assert_eq!(images[0].name, "example.com/hello");
    /// assert_eq!(images[0].label("version"), Some("1.0.0"));
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn list(&self) -> impl Future<Output = Result<Vec<ImageInfo>>> + Send + 'static {
        let index = self.index.clone();
        async move { Ok(index.list().await?.into_iter().map(Into::into).collect()) }
    }

    /// The manifest of an image, byte for byte as imported.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-manifest");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::ImageManifest;
    ///
    /// let bytes = store.manifest(&id).await?;
    /// let manifest = ImageManifest::parse(&bytes)?;
    /// assert_eq!(manifest.name.as_str(), "example.com/hello");
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn manifest(&self, id: &ImageId) -> impl Future<Output = Result<Vec<u8>>> + Send + 'static {
        let index = self.index.clone();
        let id = id.clone();
        async move {
            match index.get(&id).await? {
                Some(record) => Ok(record.manifest),
                None => Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no image {id} in the store"),
                )),
            }
        }
    }

    #[cfg(feature = "render")]
    /// The number of tar members of a stored image (the total of a render's progress).
    pub(crate) async fn entry_count(&self, id: &ImageId) -> Result<u64> {
        match self.index.get(id).await? {
            Some(record) => Ok(record.entries),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("no image {id} in the store"),
            )),
        }
    }

    /// An async reader of the image's canonical tar, regenerated from the recipe and
    /// the objects; it ends with an error instead of a clean end if the bytes do not hash
    /// to the image ID.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-export-reader");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// let mut reader = store.export_reader(&id).await?;
    /// let mut tar = Vec::new();
    /// while let Some(chunk) = reader.next_chunk().await.unwrap() {
    ///     tar.extend_from_slice(&chunk);
    /// }
    /// // The canonical tar: here the very bytes imported (an uncompressed archive).
    /// assert_eq!(tar, std::fs::read(&aci).unwrap());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn export_reader(
        &self,
        id: &ImageId,
    ) -> impl Future<Output = Result<ExportReader>> + Send + 'static {
        let store = self.clone();
        let id = id.clone();
        async move {
            store.require(&id).await?;
            store.record_use(&id).await?;
            Ok(regenerate::export_reader(
                store.paths.recipe(&id),
                store.object_paths(),
                id.sha512(),
            ))
        }
    }

    /// Writes the image's canonical tar (optionally compressed) to the file `out`. The bytes
    /// are hashed as they stream; if they do not hash to the image ID the export fails
    /// loudly. `out` follows the output-path policy of [`crate::output`]: a regular file is
    /// replaced atomically (on failure it keeps its old content, a new file is removed), a
    /// character device or FIFO is written in place; a folder, a block device, a socket, a
    /// dangling symlink, `-`, and any path inside the store's folder are refused with
    /// [`ErrorKind::InvalidArgument`]. Progress is [`Phase::Export`](crate::progress::Phase)
    /// (tar bytes); a cancelled export leaves no file (an old one keeps its content).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-export-to");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{ExportCompression, Observer};
    ///
    /// let out = dir.join("hello.aci.gz");
    /// let exported = store.export_to(&id, &out, ExportCompression::Gzip, Observer::default()).await?;
    /// assert_eq!(exported.image_id, id);
    /// assert_eq!(exported.written, std::fs::metadata(&out).unwrap().len());
    /// // A path inside the store is refused.
    /// let inside = store.dir().join("copy.aci");
    /// assert!(store.export_to(&id, &inside, ExportCompression::None, Observer::default()).await.is_err());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn export_to(
        &self,
        id: &ImageId,
        out: impl AsRef<Path>,
        compression: ExportCompression,
        observer: Observer,
    ) -> impl Future<Output = Result<Exported>> + Send + 'static {
        let store = self.clone();
        let id = id.clone();
        let out = out.as_ref().to_path_buf();
        async move {
            let options = OutputOptions {
                protected: vec![store.paths.root().to_path_buf()],
                sync: false,
            };
            crate::output::check_output_path(&out, &options)?;
            observer.check()?;
            if compression == ExportCompression::Original {
                return store
                    .export_original(&id, observer, move |original| {
                        let mut file = crate::output::OutputFile::create(&out, &options)?;
                        let written = copy_out(original, &mut file, &out.display().to_string())?;
                        file.commit()?;
                        Ok(written)
                    })
                    .await;
            }
            store
                .export_blocking(&id, move |recipe, objects, id| {
                    housekeeping::export_file(
                        recipe,
                        objects,
                        id,
                        &out,
                        &options,
                        compression,
                        &observer,
                    )
                })
                .await
        }
    }

    /// [`Store::export_to`] into any writer (stdout, a socket, a pipe), written on a
    /// blocking thread and flushed at the end. On failure part of the output may have been
    /// written (the error says why; a closed pipe is an [`ErrorKind::Io`] error whose source
    /// is the `BrokenPipe` I/O error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-export-writer");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{ExportCompression, Observer};
    ///
    /// // Any `Write + Send + 'static`: stdout, a socket, a pipe; here a file.
    /// let out = std::fs::File::create(dir.join("hello.aci")).unwrap();
    /// let exported = store
    ///     .export_to_writer(&id, out, ExportCompression::None, Observer::default())
    ///     .await?;
    /// assert_eq!(exported.tar_size, std::fs::metadata(&aci).unwrap().len());
    /// assert_eq!(std::fs::read(dir.join("hello.aci")).unwrap(), std::fs::read(&aci).unwrap());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn export_to_writer(
        &self,
        id: &ImageId,
        out: impl std::io::Write + Send + 'static,
        compression: ExportCompression,
        observer: Observer,
    ) -> impl Future<Output = Result<Exported>> + Send + 'static {
        let store = self.clone();
        let id = id.clone();
        async move {
            observer.check()?;
            if compression == ExportCompression::Original {
                let mut out = out;
                return store
                    .export_original(&id, observer, move |original| {
                        let written = copy_out(original, &mut out, "the export")?;
                        out.flush()
                            .map_err(|e| Error::io("writing the export", e))?;
                        Ok(written)
                    })
                    .await;
            }
            store
                .export_blocking(&id, move |recipe, objects, id| {
                    housekeeping::export_into(
                        recipe,
                        objects,
                        id,
                        out,
                        "the export",
                        compression,
                        &observer,
                    )
                })
                .await
        }
    }

    /// Checks that the store has `id` and records its use, then runs `export` on a blocking
    /// thread with the image's recipe, the store's objects and `id`.
    async fn export_blocking<T: Send + 'static>(
        &self,
        id: &ImageId,
        export: impl FnOnce(&Path, &ObjectPaths, &ImageId) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.require(id).await?;
        self.record_use(id).await?;
        let recipe = self.paths.recipe(id);
        let objects = self.object_paths();
        let id = id.clone();
        blocking(move || export(&recipe, &objects, &id)).await
    }

    /// Re-creates the original of `id` into a checked temporary file (see
    /// `store::originals`), then hands it to `write` (blocking); the original's bytes only
    /// leave the store once their SHA-256 is the recorded one.
    async fn export_original(
        &self,
        id: &ImageId,
        observer: Observer,
        write: impl FnOnce(&mut std::fs::File) -> Result<u64> + Send + 'static,
    ) -> Result<Exported> {
        let record = self.index.get(id).await?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("no image {id} in the store"))
        })?;
        self.record_use(id).await?;
        let paths = self.paths.clone();
        let objects = self.object_paths();
        let id = id.clone();
        blocking(move || {
            observer.report(Phase::Original, 0, None);
            let (mut file, original) =
                super::originals::recreate_verified(&paths, &objects, &id, &observer.cancel)?;
            let written = write(&mut file)?;
            observer.report(Phase::Export, original.size, Some(original.size));
            Ok(Exported {
                image_id: id,
                tar_size: record.tar_size,
                written,
            })
        })
        .await
    }

    /// What the store keeps to give back the exact bytes `id` came as (`None`: no original
    /// form was recorded).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-original");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// use acikit::store::{ImportOptions, OriginalForm};
    ///
    /// // Imports record the original form when asked (fetch and push always do).
    /// let options = ImportOptions::default().record_original(true);
    /// let id = store.import_file(&aci, options, Default::default()).await?.image_id;
    ///
    /// // `aci` is a plain tar: its original is the canonical tar, nothing is kept.
    /// let original = store.original(&id).await?.expect("recorded on import");
    /// assert_eq!(original.form, OriginalForm::None);
    /// assert_eq!(original.kept_bytes, 0);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn original(
        &self,
        id: &ImageId,
    ) -> impl Future<Output = Result<Option<super::originals::OriginalInfo>>> + Send + 'static {
        let store = self.clone();
        let id = id.clone();
        async move {
            store.require(&id).await?;
            let paths = store.paths.clone();
            blocking(move || Ok(super::originals::load(&paths, &id)?.map(|r| r.info()))).await
        }
    }

    /// Sizes: logical, on disk, and the de-duplication ratio.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-stats");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// let stats = store.stats().await?;
    /// assert_eq!(stats.images, 1);
    /// assert_eq!(stats.logical_bytes, std::fs::metadata(&aci).unwrap().len());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> impl Future<Output = Result<StoreStats>> + Send + 'static {
        let store = self.clone();
        async move { housekeeping::stats(&store.paths, &store.index).await }
    }

    fn object_paths(&self) -> ObjectPaths {
        let paths = self.paths.clone();
        std::sync::Arc::new(move |digest| paths.object(digest))
    }

    async fn require(&self, id: &ImageId) -> Result<()> {
        match self.index.get(id).await? {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("no image {id} in the store"),
            )),
        }
    }
}

/// Copies a checked original to `out` (`what` names it in errors); returns the bytes copied.
fn copy_out(from: &mut std::fs::File, out: &mut impl std::io::Write, what: &str) -> Result<u64> {
    std::io::copy(from, out).map_err(|e| Error::io(format!("writing {what}"), e))
}

/// Finds what `query` matches in `index` (see [`Store::resolve_matches`]).
async fn resolve_in(index: &Index, query: &ImageQuery) -> Result<Resolved> {
    let image: ImageInfo = match query {
        ImageQuery::Id(prefix) => {
            let mut found = index.find_by_prefix(prefix).await?;
            match found.len() {
                0 => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no image {prefix} in the store"),
                    ));
                }
                1 => found.remove(0).into(),
                _ => {
                    return Err(Error::new(
                        ErrorKind::AmbiguousImage,
                        format!(
                            "{prefix} matches {} images: {}",
                            found.len(),
                            found
                                .iter()
                                .map(|r| r.image_id.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        ImageQuery::Name(ImageName { name, labels }) => {
            let pairs: Vec<(String, String)> = labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let mut found = index
                .find_by_name(name.as_str(), &pairs)
                .await?
                .into_iter()
                .map(ImageInfo::from);
            let Some(image) = found.next() else {
                let wanted: Vec<String> = labels.iter().map(Label::to_string).collect();
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no image named {name} with labels [{}] in the store",
                        wanted.join(", ")
                    ),
                ));
            };
            return Ok(Resolved {
                image,
                others: found.collect(),
            });
        }
    };
    Ok(Resolved {
        image,
        others: Vec::new(),
    })
}

/// The credentials file of the store folder `store_dir` (`config/auth.json`), for callers
/// that have the folder but no open [`Store`] (the CLI's `discover`); see
/// [`Store::auth_config_path`].
///
/// ```
/// let path = acikit::store::auth_config_path(std::path::Path::new("store"));
/// assert_eq!(path, std::path::Path::new("store/config/auth.json"));
/// ```
pub fn auth_config_path(store_dir: &Path) -> PathBuf {
    StorePaths::new(store_dir).auth_config()
}

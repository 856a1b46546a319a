//! The `Store` object: an image store, every call async on the crate's runtime.

use std::collections::HashMap;
use std::sync::Arc;

use acikit::{ErrorKind, ImageQuery, ImportOptions};

use crate::error::AcikitError;
use crate::net::store_net_options;
use crate::progress::{CancelHandle, ProgressListener, observer};
use crate::reader::ImageReader;
use crate::records::{
    FetchOptions, Fetched, FsckReport, GcReport, ImageInfo, Imported, OriginalCompaction,
    OriginalInfo, StoreOptions, StoreStats, TrustedKey, label_list,
};
use crate::runtime::{spawn, spawn_blocking};

/// An image store: de-duplicated content objects, recipes and an SQL index. Open one with
/// `Store.open(dir)`; it is safe to share between threads and coroutines. Closing it (in
/// Kotlin `close()` or `use { }`) closes its index once no call uses it any more.
///
/// An `image` argument is an image ID (`sha512-...`, or a unique prefix of one) or a name
/// (`NAME[:VERSION]`); a name that matches several images means the newest import.
#[derive(uniffi::Object)]
pub struct Store {
    inner: acikit::Store,
}

#[uniffi::export]
impl Store {
    /// Opens (creating it if needed) the store in the folder `dir`.
    #[uniffi::constructor(default(options = None))]
    pub async fn open(
        dir: String,
        options: Option<StoreOptions>,
    ) -> Result<Arc<Self>, AcikitError> {
        let options = options.unwrap_or_default().into();
        let inner = spawn(acikit::Store::open_with(dir, options)).await?;
        Ok(Arc::new(Store { inner }))
    }

    /// The store's folder.
    pub fn dir(&self) -> String {
        self.inner.dir().display().to_string()
    }

    /// Imports the image archive at `path` (any compression), streaming it. `origin`
    /// records where it came from (the path by default). With `original`, the store also
    /// records the archive's exact bytes for `export` with compression `original`: a
    /// compressed archive is kept whole (`pending`) until `compactOriginals` or `gc`.
    #[uniffi::method(default(origin = None, original = false, progress = None, cancel = None))]
    pub async fn import_file(
        &self,
        path: String,
        origin: Option<String>,
        original: bool,
        progress: Option<Arc<dyn ProgressListener>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Imported, AcikitError> {
        let call = observer(progress, cancel);
        let store = self.inner.clone();
        let options = ImportOptions::default()
            .origin(origin.unwrap_or_else(|| path.clone()))
            .record_original(original);
        let observer = call.observer.clone();
        let imported = spawn(async move { store.import_file(path, options, observer).await }).await;
        call.finish().await;
        Ok(imported?.into())
    }

    /// Fetches `image` (a name `NAME[:VERSION]` found through appc discovery, with
    /// `labels`, or an `https://` URL), checks its signature against the trusted keys
    /// and imports it (with its dependencies).
    #[uniffi::method(default(options = None, progress = None, cancel = None, labels))]
    pub async fn fetch(
        &self,
        image: String,
        labels: HashMap<String, String>,
        options: Option<FetchOptions>,
        progress: Option<Arc<dyn ProgressListener>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Fetched, AcikitError> {
        let o = options.unwrap_or(FetchOptions {
            net: None,
            trust_discovered_keys: false,
            dependencies: true,
        });
        let call = observer(progress, cancel);
        let store = self.inner.clone();
        let observer = call.observer.clone();
        let fetched = spawn(async move {
            let source = acikit::FetchSource::parse(&image, &label_list(labels))?;
            let net = store_net_options(o.net.unwrap_or_default(), &store)?;
            let options = acikit::FetchOptions::default()
                .net(net)
                .trust_discovered_keys(o.trust_discovered_keys)
                .dependencies(o.dependencies);
            store.fetch(source, options, observer).await
        })
        .await;
        call.finish().await;
        Ok(fetched?.into())
    }

    /// Writes the archive of the image `image` and `labels` name to the file `out`
    /// (`compression`: `none`, `gzip`, `zstd`, or `original`: the bytes recorded at import
    /// or fetch, a `not_found` error without a record); the bytes are checked against the image
    /// ID as they stream. A cancelled export leaves no file.
    #[uniffi::method(default(compression = "none", progress = None, cancel = None, labels))]
    pub async fn export(
        &self,
        image: String,
        out: String,
        labels: HashMap<String, String>,
        compression: String,
        progress: Option<Arc<dyn ProgressListener>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<crate::records::Exported, AcikitError> {
        let compression: acikit::ExportCompression = compression.parse()?;
        let call = observer(progress, cancel);
        let store = self.inner.clone();
        let observer = call.observer.clone();
        let exported = spawn(async move {
            let id = newest(&store, &image, label_list(labels)).await?.image_id;
            store.export_to(&id, out, compression, observer).await
        })
        .await;
        call.finish().await;
        Ok(exported?.into())
    }

    /// A reader of the canonical tar of the image `image` and `labels` name, chunk by
    /// chunk (never the whole image in memory); it fails at its end if the bytes do not
    /// hash to the image ID.
    #[uniffi::method(default(labels))]
    pub async fn open_read(
        &self,
        image: String,
        labels: HashMap<String, String>,
    ) -> Result<Arc<ImageReader>, AcikitError> {
        let store = self.inner.clone();
        let reader = spawn(async move {
            let id = newest(&store, &image, label_list(labels)).await?.image_id;
            store.export_reader(&id).await
        })
        .await?;
        Ok(Arc::new(ImageReader::new(reader)))
    }

    /// Renders the rootfs of the image `image` and `labels` name (with its dependencies)
    /// into the new folder `target` (`strategy`: `Strategy::as_str()` names, `auto` by
    /// default); release it with [`release`](Self::release).
    #[uniffi::method(default(
        strategy = "auto",
        skip_unprivileged = false,
        progress = None,
        cancel = None,
        labels
    ))]
    // Kotlin and Swift see these as parameters with defaults, called by name: no options
    // record needed.
    #[allow(clippy::too_many_arguments)]
    pub async fn render(
        &self,
        image: String,
        target: String,
        labels: HashMap<String, String>,
        strategy: String,
        skip_unprivileged: bool,
        progress: Option<Arc<dyn ProgressListener>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<crate::records::Rendered, AcikitError> {
        let strategy: acikit::Strategy = strategy.parse()?;
        let options = acikit::RenderOptions::default()
            .strategy(strategy)
            .skip_unprivileged(skip_unprivileged);
        let call = observer(progress, cancel);
        let store = self.inner.clone();
        let observer = call.observer.clone();
        let rendered = spawn(async move {
            let id = newest(&store, &image, label_list(labels)).await?.image_id;
            store.render(&id, target, options, observer).await
        })
        .await;
        call.finish().await;
        Ok(rendered?.into())
    }

    /// Releases the rootfs rendered at `target` (removes it and its run record).
    pub async fn release(&self, target: String) -> Result<(), AcikitError> {
        let store = self.inner.clone();
        spawn(async move { store.release(target).await }).await
    }

    /// Every image, newest import first.
    pub async fn list(&self) -> Result<Vec<ImageInfo>, AcikitError> {
        let store = self.inner.clone();
        let images = spawn(async move { store.list().await }).await?;
        Ok(images.into_iter().map(Into::into).collect())
    }

    /// The images `image` (a name, an ID or an ID prefix) and `labels` match, newest
    /// import first; empty if none.
    #[uniffi::method(default(labels))]
    pub async fn find(
        &self,
        image: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<ImageInfo>, AcikitError> {
        let store = self.inner.clone();
        let found = spawn(async move {
            let query = ImageQuery::parse(&image, &label_list(labels))?;
            match store.resolve_matches(&query).await {
                Ok(resolved) => Ok(std::iter::once(resolved.image)
                    .chain(resolved.others)
                    .collect()),
                Err(err) if err.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                Err(err) => Err(err),
            }
        })
        .await?;
        Ok(found.into_iter().map(Into::into).collect())
    }

    /// The image `image` and `labels` name: the newest import of those a name matches;
    /// a `not_found` error if none.
    #[uniffi::method(default(labels))]
    pub async fn get(
        &self,
        image: String,
        labels: HashMap<String, String>,
    ) -> Result<ImageInfo, AcikitError> {
        let store = self.inner.clone();
        let info = spawn(async move { newest(&store, &image, label_list(labels)).await }).await?;
        Ok(info.into())
    }

    /// Removes the image (an `ambiguous_image` error if a name matches several, an
    /// `in_use` error while a run of it is not released).
    pub async fn remove(&self, image: String) -> Result<(), AcikitError> {
        let store = self.inner.clone();
        spawn(async move {
            let query = ImageQuery::parse(&image, &[])?;
            let id = store
                .resolve_matches(&query)
                .await?
                .unique(&query)?
                .image_id;
            store.remove(&id).await
        })
        .await
    }

    /// Removes what no image uses any more (objects, recipes, leftovers, render caches).
    #[uniffi::method(default(progress = None, cancel = None))]
    pub async fn gc(
        &self,
        progress: Option<Arc<dyn ProgressListener>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<GcReport, AcikitError> {
        let call = observer(progress, cancel);
        let store = self.inner.clone();
        let observer = call.observer.clone();
        let report = spawn(async move { store.gc(observer).await }).await;
        call.finish().await;
        Ok(report?.into())
    }

    /// Turns the originals kept whole by `importFile(original = true)` (`pending`) into
    /// their compact forms, each proved by re-creating the archive before the kept bytes
    /// go; an original nothing re-creates stays kept. Progress phase `original`, over the
    /// bytes of the pending originals; a cancelled call leaves every original as it was.
    #[uniffi::method(default(progress = None, cancel = None))]
    pub async fn compact_originals(
        &self,
        progress: Option<Arc<dyn ProgressListener>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<OriginalCompaction, AcikitError> {
        let call = observer(progress, cancel);
        let store = self.inner.clone();
        let observer = call.observer.clone();
        let done = spawn(async move { store.compact_originals(observer).await }).await;
        call.finish().await;
        Ok(done?.into())
    }

    /// What the store keeps to give back the original archive of the image `image` and
    /// `labels` name (`export` with compression `original`); null when nothing is recorded.
    #[uniffi::method(default(labels))]
    pub async fn original(
        &self,
        image: String,
        labels: HashMap<String, String>,
    ) -> Result<Option<OriginalInfo>, AcikitError> {
        let store = self.inner.clone();
        let info = spawn(async move {
            let id = newest(&store, &image, label_list(labels)).await?.image_id;
            store.original(&id).await
        })
        .await?;
        Ok(info.map(Into::into))
    }

    /// Checks every object and image against its digest (and repairs what it can with
    /// `repair`).
    #[uniffi::method(default(repair = false, progress = None, cancel = None))]
    pub async fn fsck(
        &self,
        repair: bool,
        progress: Option<Arc<dyn ProgressListener>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<FsckReport, AcikitError> {
        let call = observer(progress, cancel);
        let store = self.inner.clone();
        let observer = call.observer.clone();
        let report = spawn(async move { store.fsck(repair, observer).await }).await;
        call.finish().await;
        Ok(report?.into())
    }

    /// Sizes and counts.
    pub async fn stats(&self) -> Result<StoreStats, AcikitError> {
        let store = self.inner.clone();
        let stats = spawn(async move { store.stats().await }).await?;
        Ok(stats.into())
    }

    /// Trusts the ascii-armored public key `armored` for names under `prefix` (an AC
    /// identifier), or for every name when `prefix` is null (a root key).
    pub async fn trust_add(
        &self,
        armored: String,
        prefix: Option<String>,
    ) -> Result<TrustedKey, AcikitError> {
        let store = self.inner.clone();
        let key = spawn_blocking(move || {
            let scope = match prefix {
                Some(prefix) => acikit::trust::TrustScope::prefix(&prefix)?,
                None => acikit::trust::TrustScope::Root,
            };
            store.trust_to_change()?.add(armored.as_bytes(), scope)
        })
        .await?;
        Ok(key.into())
    }

    /// The trusted keys.
    pub async fn trust_list(&self) -> Result<Vec<TrustedKey>, AcikitError> {
        let store = self.inner.clone();
        let keys = spawn_blocking(move || store.trust()?.list()).await?;
        Ok(keys.into_iter().map(Into::into).collect())
    }

    /// Stops trusting the key with this fingerprint (every scope it was trusted for);
    /// gives the keys removed, a `not_found` error if none.
    pub async fn trust_remove(&self, fingerprint: String) -> Result<Vec<TrustedKey>, AcikitError> {
        let store = self.inner.clone();
        let keys = spawn_blocking(move || store.trust_to_change()?.remove(&fingerprint)).await?;
        Ok(keys.into_iter().map(Into::into).collect())
    }
}

impl Store {
    /// The core's store handle (for the module functions that take a store).
    pub(crate) fn inner(&self) -> &acikit::Store {
        &self.inner
    }
}

/// The image `image` and `labels` name: the only match, or the newest import of a name's.
async fn newest(
    store: &acikit::Store,
    image: &str,
    labels: Vec<acikit::Label>,
) -> acikit::Result<acikit::ImageInfo> {
    let query = ImageQuery::parse(image, &labels)?;
    store.resolve(&query).await
}

//! `NativeStore`: the core [`Store`] for JS, every I/O call a Promise.

use std::path::PathBuf;

use acikit::trust::TrustScope;
use acikit::{
    ExportCompression, FetchOptions, FetchSource, ImageId, ImageQuery, ImportOptions, Label,
    RenderOptions, Store, StoreOptions, Strategy,
};
use napi::bindgen_prelude::Either;
use napi_derive::napi;

use crate::error::{napi_result, to_napi};
use crate::net::NetArgs;
use crate::observer::{CancelHandle, ProgressEvent, observer};
use crate::reader::{ChannelWriter, NativeReader, Source};
use crate::records::{
    CompactionRecord, ExportRecord, FetchRecord, FsckRecord, GcRecord, ImageRecord, ImportRecord,
    LabelRecord, OriginalRecord, RenderRecord, StatsRecord, TrustedKeyRecord,
};
use napi::Status;
use napi::threadsafe_function::ThreadsafeFunction;

/// How to open a store.
#[napi(object)]
#[derive(Default)]
pub struct OpenArgs {
    /// The PostgreSQL index (`postgres://…`), for a shared store.
    pub database: Option<String>,
    /// Open read-only: every write fails with `read_only_store`.
    pub read_only: Option<bool>,
}

/// What `fetch` may be told besides the image.
#[napi(object)]
#[derive(Default)]
pub struct FetchArgs {
    /// Labels to discover and check (with a name).
    pub labels: Option<Vec<LabelRecord>>,
    /// The signature URL, for a URL whose signature is not at URL + `.asc`.
    pub signature: Option<String>,
    /// Trust the keys discovery lists for the name.
    pub trust_discovered_keys: Option<bool>,
    /// Most bytes downloaded per image.
    pub max_size: Option<f64>,
    /// Fetch dependencies too (default true).
    pub dependencies: Option<bool>,
    /// Network options.
    pub net: Option<NetArgs>,
}

/// How to import.
#[napi(object)]
#[derive(Default)]
pub struct ImportArgs {
    /// Record the archive's exact bytes for `export(.., "original")`: a compressed archive
    /// is kept whole (pending) until `compactOriginals` or `gc`.
    pub original: Option<bool>,
}

/// How to render.
#[napi(object)]
#[derive(Default)]
pub struct RenderArgs {
    /// `auto`, `overlay`, `reflink`, `hardlink`, `copy` or `composefs` (`Strategy`'s names).
    pub strategy: Option<String>,
    /// Skip device nodes and foreign owners without privileges instead of failing.
    pub skip_unprivileged: Option<bool>,
    /// Allow a hardlink run that cannot be mounted read-only.
    pub allow_unprotected_hardlink: Option<bool>,
}

/// An image store.
#[napi]
pub struct NativeStore {
    store: Store,
}

/// Opens (creating if needed) the store at `dir` (default: `$ACIKIT_STORE`, else the
/// user's data folder).
#[napi]
pub async fn open_store(dir: Option<String>, args: Option<OpenArgs>) -> napi::Result<NativeStore> {
    let args = args.unwrap_or_default();
    let dir = dir.map_or_else(Store::default_dir, PathBuf::from);
    let mut options = StoreOptions::default().read_only(args.read_only.unwrap_or(false));
    options.database_url = args.database;
    let store = napi_result(Store::open_with(dir, options).await)?;
    Ok(NativeStore { store })
}

/// A query for one image: an ID (or unambiguous prefix), or `NAME[:VERSION]` with labels.
fn query(image: &str, labels: Option<Vec<LabelRecord>>) -> acikit::Result<ImageQuery> {
    let labels: Vec<Label> = labels
        .unwrap_or_default()
        .into_iter()
        .map(Into::into)
        .collect();
    ImageQuery::parse(image, &labels)
}

impl NativeStore {
    /// The ID of the image `image` names (the newest import of a name).
    async fn resolve(&self, image: &str) -> acikit::Result<ImageId> {
        let query = query(image, None)?;
        Ok(self.store.resolve(&query).await?.image_id)
    }
}

#[napi]
impl NativeStore {
    /// The store folder.
    #[napi(getter)]
    pub fn dir(&self) -> String {
        self.store.dir().display().to_string()
    }

    /// Whether the store is read-only.
    #[napi(getter)]
    pub fn read_only(&self) -> bool {
        self.store.is_read_only()
    }

    /// Imports the archive at `path` (any compression).
    #[napi]
    pub async fn import_file(
        &self,
        path: String,
        args: Option<ImportArgs>,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<ImportRecord> {
        let observer = observer(cancel, on_progress);
        let args = args.unwrap_or_default();
        let options = ImportOptions::default().record_original(args.original.unwrap_or(false));
        let imported = self.store.import_file(path, options, observer).await;
        Ok(napi_result(imported)?.into())
    }

    /// Fetches an image by name (meta discovery) or URL, signature verified.
    #[napi]
    pub async fn fetch(
        &self,
        image: String,
        args: Option<FetchArgs>,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<FetchRecord> {
        let observer = observer(cancel, on_progress);
        let args = args.unwrap_or_default();
        let labels: Vec<Label> = args
            .labels
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect();
        let mut source = napi_result(FetchSource::parse(&image, &labels))?;
        if let (FetchSource::Url { signature, .. }, Some(given)) = (&mut source, args.signature) {
            *signature = Some(given);
        }
        let mut options = FetchOptions::default()
            .net(napi_result(
                args.net.unwrap_or_default().to_store_options(&self.store),
            )?)
            .trust_discovered_keys(args.trust_discovered_keys.unwrap_or(false))
            .dependencies(args.dependencies.unwrap_or(true));
        if let Some(max) = args.max_size {
            options = options.max_size(max as u64);
        }
        let fetched = self.store.fetch(source, options, observer).await;
        Ok(napi_result(fetched)?.into())
    }

    /// Writes the image's archive (`none`, `gzip` or `zstd`) to the file `dest`.
    #[napi]
    pub async fn export(
        &self,
        image: String,
        dest: String,
        compression: Option<String>,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<ExportRecord> {
        let observer = observer(cancel, on_progress);
        let compression = parse_compression(compression)?;
        let id = napi_result(self.resolve(&image).await)?;
        let exported = self.store.export_to(&id, dest, compression, observer).await;
        Ok(napi_result(exported)?.into())
    }

    /// The image's archive as a reader of chunks, written by an export on a blocking
    /// thread; its `outcome()` is the export's record.
    #[napi]
    pub async fn export_stream(
        &self,
        image: String,
        compression: Option<String>,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<NativeReader> {
        let observer = observer(cancel, on_progress);
        let compression = parse_compression(compression)?;
        let id = napi_result(self.resolve(&image).await)?;
        let (writer, reader) = ChannelWriter::pair();
        let export = self
            .store
            .export_to_writer(&id, writer, compression, observer);
        Ok(NativeReader::of_export(reader, tokio::spawn(export)))
    }

    /// The image's canonical tar as a reader of chunks (verified against the ID at the end).
    #[napi]
    pub async fn open_read(&self, image: String) -> napi::Result<NativeReader> {
        let id = napi_result(self.resolve(&image).await)?;
        let reader = napi_result(self.store.export_reader(&id).await)?;
        Ok(NativeReader::new(Source::Export(reader)))
    }

    /// Renders a clean root filesystem of the image (and its dependencies) at `target`.
    #[napi]
    pub async fn render(
        &self,
        image: String,
        target: String,
        args: Option<RenderArgs>,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<RenderRecord> {
        let observer = observer(cancel, on_progress);
        let args = args.unwrap_or_default();
        let strategy: Strategy = match args.strategy {
            Some(name) => napi_result(name.parse())?,
            None => Strategy::default(),
        };
        let options = RenderOptions::default()
            .strategy(strategy)
            .skip_unprivileged(args.skip_unprivileged.unwrap_or(false))
            .allow_unprotected_hardlink(args.allow_unprotected_hardlink.unwrap_or(false));
        let id = napi_result(self.resolve(&image).await)?;
        let rendered = self.store.render(&id, target, options, observer).await;
        Ok(napi_result(rendered)?.into())
    }

    /// Releases the run rendered at `target` (removing it).
    #[napi]
    pub async fn release(&self, target: String) -> napi::Result<()> {
        napi_result(self.store.release(target).await)
    }

    /// Every image, by name then newest first.
    #[napi]
    pub async fn list(&self) -> napi::Result<Vec<ImageRecord>> {
        let images = napi_result(self.store.list().await)?;
        Ok(images.into_iter().map(Into::into).collect())
    }

    /// Every image `image` (and `labels`) matches, newest first; empty if none.
    #[napi]
    pub async fn find(
        &self,
        image: String,
        labels: Option<Vec<LabelRecord>>,
    ) -> napi::Result<Vec<ImageRecord>> {
        let query = napi_result(query(&image, labels))?;
        match self.store.resolve_matches(&query).await {
            Ok(found) => Ok(std::iter::once(found.image)
                .chain(found.others)
                .map(Into::into)
                .collect()),
            Err(err) if err.kind() == acikit::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(to_napi(err)),
        }
    }

    /// The image `image` (and `labels`) names: the newest import of a name.
    #[napi]
    pub async fn get(
        &self,
        image: String,
        labels: Option<Vec<LabelRecord>>,
    ) -> napi::Result<ImageRecord> {
        let query = napi_result(query(&image, labels))?;
        Ok(napi_result(self.store.resolve(&query).await)?.into())
    }

    /// Removes the one image `image` names (an ambiguous name is refused); returns its ID.
    #[napi]
    pub async fn remove(&self, image: String) -> napi::Result<String> {
        let query = napi_result(query(&image, None))?;
        let found = napi_result(self.store.resolve_matches(&query).await)?;
        let image = napi_result(found.unique(&query))?;
        napi_result(self.store.remove(&image.image_id).await)?;
        Ok(image.image_id.to_string())
    }

    /// Removes what no image uses any more.
    #[napi]
    pub async fn gc(
        &self,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<GcRecord> {
        let observer = observer(cancel, on_progress);
        Ok(napi_result(self.store.gc(observer).await)?.into())
    }

    /// Turns the pending originals into their compact forms.
    #[napi]
    pub async fn compact_originals(
        &self,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<CompactionRecord> {
        let observer = observer(cancel, on_progress);
        Ok(napi_result(self.store.compact_originals(observer).await)?.into())
    }

    /// What the store keeps to give back the image's original archive (null: nothing).
    #[napi]
    pub async fn original(&self, image: String) -> napi::Result<Option<OriginalRecord>> {
        let id = napi_result(self.resolve(&image).await)?;
        let info = napi_result(self.store.original(&id).await)?;
        Ok(info.map(Into::into))
    }

    /// Checks every object and image; with `repair`, drops what is damaged.
    #[napi]
    pub async fn fsck(
        &self,
        repair: Option<bool>,
        cancel: Option<&CancelHandle>,
        on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
    ) -> napi::Result<FsckRecord> {
        let observer = observer(cancel, on_progress);
        let report = self.store.fsck(repair.unwrap_or(false), observer).await;
        Ok(napi_result(report)?.into())
    }

    /// Sizes and the de-duplication ratio.
    #[napi]
    pub async fn stats(&self) -> napi::Result<StatsRecord> {
        Ok(napi_result(self.store.stats().await)?.into())
    }

    /// Trusts the ascii-armored public key `key` for names under `prefix` (every name
    /// without one).
    #[napi]
    pub async fn trust_add(
        &self,
        key: Either<String, napi::bindgen_prelude::Buffer>,
        prefix: Option<String>,
    ) -> napi::Result<TrustedKeyRecord> {
        let key: Vec<u8> = match key {
            Either::A(text) => text.into_bytes(),
            Either::B(bytes) => bytes.to_vec(),
        };
        let store = self.store.clone();
        let added = blocking(move || {
            let scope = match prefix {
                Some(prefix) => TrustScope::prefix(&prefix)?,
                None => TrustScope::Root,
            };
            store.trust_to_change()?.add(&key, scope)
        })
        .await?;
        Ok(added.into())
    }

    /// The trusted keys.
    #[napi]
    pub async fn trust_list(&self) -> napi::Result<Vec<TrustedKeyRecord>> {
        let store = self.store.clone();
        let keys = blocking(move || store.trust()?.list()).await?;
        Ok(keys.into_iter().map(Into::into).collect())
    }

    /// Stops trusting the key `fingerprint`; returns the keys removed.
    #[napi]
    pub async fn trust_remove(&self, fingerprint: String) -> napi::Result<Vec<TrustedKeyRecord>> {
        let store = self.store.clone();
        let keys = blocking(move || store.trust_to_change()?.remove(&fingerprint)).await?;
        Ok(keys.into_iter().map(Into::into).collect())
    }

    /// Closes the index; the store cannot be used afterwards.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.store.close().await;
        Ok(())
    }
}

impl NativeStore {
    /// The core store (for `serve`).
    pub fn inner(&self) -> &Store {
        &self.store
    }
}

/// An export compression by the core's name (default `none`).
fn parse_compression(name: Option<String>) -> napi::Result<ExportCompression> {
    match name {
        Some(name) => napi_result(name.parse()),
        None => Ok(ExportCompression::None),
    }
}

/// Runs `work` on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> acikit::Result<T> + Send + 'static,
) -> napi::Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => napi_result(result),
        Err(e) => Err(to_napi(acikit::Error::new(
            acikit::ErrorKind::Internal,
            format!("a background task failed: {e}"),
        ))),
    }
}

//! Importing an image archive in one streaming pass: decompress (decode thread), SHA-512
//! for the image ID (hash thread), tar reading, layout validation, content objects and
//! the recipe (this module, on a blocking thread), then a short commit.
//!
//! Nothing becomes visible before the index commit: objects and the recipe are written
//! to a private staging folder first (see [`super::objects`]); a failed, cancelled or
//! killed import leaves at most a staging folder, which the next open or `gc` removes.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::index::{Index, NewImage};
use super::large::LargeContent;
use super::objects::Staging;
use super::originals;
use super::paths::StorePaths;
use super::recipe::{RecipeSink, RecipeWriter};
use super::{ContentDigest, ContentHasher};
use crate::archive::decode;
use crate::archive::layout::{EntryRole, LayoutValidator, Limits};
use crate::archive::tar::{SparseMap, TarReader};
use crate::blocking::blocking_named;
use crate::progress::{Observer, Phase};
use crate::schema::{ImageId, ImageManifest};
use crate::{Error, Result};

/// Content up to this size is hashed in memory before anything is written, so content
/// the store already has costs no write at all; larger content is compared with the
/// objects that may hold it while it streams (see [`super::large`]).
const SMALL_CONTENT: u64 = super::heads::HEAD_LEN as u64;

/// Name of the recipe file inside the staging folder.
const RECIPE_FILE: &str = "recipe";

/// A last check on an image that was read completely and staged, run before anything
/// becomes visible: if it fails, the import fails with its error and leaves nothing.
/// Fetch uses it to wait for the signature verdict and to check the manifest's name,
/// labels and size. It runs on a blocking thread, so it may block (e.g. on a channel).
#[derive(Clone)]
pub struct ImportGate(Arc<GateFn>);

type GateFn = dyn Fn(&StagedImage) -> Result<()> + Send + Sync;

/// What an [`ImportGate`] is shown of a staged image.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StagedImage {
    /// The image ID.
    pub image_id: ImageId,
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// Bytes of the archive as read (compressed, if it was).
    pub archive_size: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
}

impl ImportGate {
    /// A gate running `check` on the staged image.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("import-gate");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// use acikit::store::ImportGate;
    /// use acikit::{Error, ErrorKind, ImportOptions, Observer};
    ///
    /// // Accept only images under example.org: checked before the import commits.
    /// let mut options = ImportOptions::default();
    /// options.gate = Some(ImportGate::new(|staged| {
    ///     if staged.manifest.name.as_str().starts_with("example.org/") {
    ///         Ok(())
    ///     } else {
    ///         Err(Error::new(ErrorKind::InvalidArgument, "not ours"))
    ///     }
    /// }));
    /// let err = store.import_file(&aci, options, Observer::default()).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// assert!(store.list().await?.is_empty());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(check: impl Fn(&StagedImage) -> Result<()> + Send + Sync + 'static) -> Self {
        ImportGate(Arc::new(check))
    }

    fn check(&self, image: &StagedImage) -> Result<()> {
        (self.0)(image)
    }
}

impl std::fmt::Debug for ImportGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImportGate")
    }
}

/// Options of an import.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// A check the staged image must pass before it is committed (also when the store
    /// already has the image).
    pub gate: Option<ImportGate>,
    /// Limits the archive must respect.
    pub limits: Limits,
    /// Where the archive came from (a path or URL), kept in the index.
    pub origin: Option<String>,
    /// Size of the archive, when known (for progress).
    pub archive_size: Option<u64>,
    /// Record the archive's original form, so that its exact compressed bytes can be given
    /// back (`export --compression original`, and served with a publisher's signature). The
    /// import hashes the compressed bytes and keeps them whole, marked pending (one more
    /// sequential write); [`Store::compact_originals`](crate::Store::compact_originals), run
    /// by `gc`, later turns them into a gzip correction record or encoder parameters (see
    /// `docs/ARCHITECTURE.md`, "Original forms"), which costs several times the import. Off
    /// by default for imports, on for fetch and push (whose images a server may serve with
    /// their publisher's signature).
    pub record_original: bool,
}

impl ImportOptions {
    /// Sets [`gate`](Self::gate): the check the staged image must pass.
    pub fn gate(mut self, gate: ImportGate) -> ImportOptions {
        self.gate = Some(gate);
        self
    }

    /// Sets [`limits`](Self::limits).
    pub fn limits(mut self, limits: Limits) -> ImportOptions {
        self.limits = limits;
        self
    }

    /// Sets [`origin`](Self::origin): where the archive came from.
    pub fn origin(mut self, origin: impl Into<String>) -> ImportOptions {
        self.origin = Some(origin.into());
        self
    }

    /// Sets [`record_original`](Self::record_original): whether to record the original form.
    pub fn record_original(mut self, record: bool) -> ImportOptions {
        self.record_original = record;
        self
    }

    /// Sets [`archive_size`](Self::archive_size), for progress.
    pub fn archive_size(mut self, size: u64) -> ImportOptions {
        self.archive_size = Some(size);
        self
    }
}

/// The outcome of an import.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Imported {
    /// The image ID.
    pub image_id: ImageId,
    /// The image name from the manifest.
    pub name: String,
    /// Whether the store already had this image: its index row was there when this import
    /// checked, or another import committed it first (then the objects this import
    /// published before that are still counted below).
    pub already_present: bool,
    /// Bytes of the content objects this import added to the store.
    pub new_bytes: u64,
    /// Content objects this import added to the store: only those its publish created,
    /// so concurrent imports of the same content count each object once in total.
    pub new_objects: u64,
    /// Content bytes written into the import's staging folder: new content (and content
    /// another import published meanwhile); content the store has is never written.
    pub staged_bytes: u64,
    /// Size of the archive as read (compressed).
    pub archive_size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Size of the recipe.
    pub recipe_size: u64,
    /// Number of tar members.
    pub entries: u64,
    /// The original form recorded from the bytes this import read (`None` with recording off,
    /// or when a re-import of a file was a lookup of an image recorded from other bytes).
    pub original: Option<originals::OriginalInfo>,
}

/// An import whose files are staged but not yet committed.
struct Staged {
    staging: Staging,
    image_id: ImageId,
    manifest: ImageManifest,
    archive_size: u64,
    tar_size: u64,
    content_size: u64,
    recipe_size: u64,
    entries: u64,
    staged_bytes: u64,
    original: Option<originals::Staged>,
}

/// Imports an archive read from `source` into the store at `paths` with `index`.
pub async fn import<R: Read + Send + 'static>(
    paths: &StorePaths,
    index: &Index,
    source: R,
    options: &ImportOptions,
    observer: Observer,
) -> Result<Imported> {
    let read = Arc::new(AtomicU64::new(0));
    let staging = {
        let paths = paths.clone();
        crate::blocking::blocking(move || Staging::create(&paths)).await?
    };
    let (tee, recorder) = if options.record_original {
        let (tee, recorder) = originals::start(staging.dir(), observer.clone())?;
        (Some(tee), Some(recorder))
    } else {
        (None, None)
    };
    let source = CountingReader {
        inner: source,
        read: read.clone(),
        tee,
    };
    let staged = {
        let options = options.clone();
        let observer = observer.clone();
        let handle = tokio::runtime::Handle::current();
        blocking_named("the import task", move || {
            let staged = handle.block_on(stage(staging, source, read, options, observer.clone()));
            match (staged, recorder) {
                (Ok(mut staged), Some(recorder)) => {
                    // The tee closed at the end of the archive: the recorder finishes the
                    // form (for zstd, xz and bzip2 it searches parameters, reporting
                    // `Phase::Original`).
                    staged.original = Some(recorder.finish()?);
                    Ok(staged)
                }
                (Ok(staged), None) => Ok(staged),
                (Err(err), recorder) => {
                    // Stop the recorder before the staging folder goes.
                    if let Some(recorder) = recorder {
                        recorder.abandon();
                    }
                    Err(err)
                }
            }
        })
        .await?
    };
    commit(paths, index, staged, options, &observer).await
}

/// Reads the whole archive, writing objects and the recipe into a staging folder.
async fn stage<R: Read + Send + 'static>(
    mut staging: Staging,
    source: R,
    read: Arc<AtomicU64>,
    options: ImportOptions,
    observer: Observer,
) -> Result<Staged> {
    let observer = &observer;
    let mut stream = decode::decode(source);
    let recipe_path = staging.dir().join(RECIPE_FILE);
    let recipe_file = File::create(&recipe_path)
        .map_err(|e| Error::io(format!("creating {}", recipe_path.display()), e))?;
    let sink = RecipeSink::new(RecipeWriter::new(BufWriter::with_capacity(
        1 << 20,
        recipe_file,
    ))?);
    let mut tar = TarReader::with_sink(stream.take_reader(), sink);
    tar.set_size_limit(options.limits.max_total_size);
    let mut layout = LayoutValidator::new(options.limits);
    let mut content_size = 0u64;
    let mut small = Vec::new();
    let mut last_report = 0u64;
    while let Some(entry) = tar.next_entry().await? {
        observer.check()?;
        let role = layout.check_entry(&entry)?;
        if tar.sink().pending_content().is_none() {
            continue;
        }
        if let Some(map) = entry.sparse.as_ref().filter(|m| m.real_size > 0) {
            // A GNU sparse member: its object is its logical content (holes as zeros), the
            // same as the same file's written dense; the Sparse record keeps the map.
            let digest = stage_sparse(&mut tar, &mut staging, map, &mut small, observer).await?;
            tar.sink_mut().sparse_digest(map, digest)?;
            content_size += map.real_size;
            continue;
        }
        let is_manifest = role == EntryRole::Manifest;
        let digest = if entry.size == 0 {
            None
        } else if entry.size <= SMALL_CONTENT {
            small.clear();
            while let Some(chunk) = tar.read_content().await? {
                small.extend_from_slice(&chunk);
            }
            if is_manifest {
                layout.manifest_chunk(&small)?;
            }
            let digest = ContentDigest::of(&small);
            staging.put_bytes(digest, &small)?;
            Some(digest)
        } else {
            let mut large = LargeContent::new(entry.size);
            while let Some(chunk) = tar.read_content().await? {
                if is_manifest {
                    layout.manifest_chunk(&chunk)?;
                }
                large.write(&mut staging, &chunk)?;
                observer.check()?;
            }
            Some(large.finish(&mut staging)?)
        };
        tar.sink_mut().content_digest(digest)?;
        if digest.is_some() {
            content_size += entry.size;
        }
        let done = read.load(Ordering::Relaxed);
        if done - last_report >= 1 << 20 {
            observer.report(Phase::Import, done, options.archive_size);
            last_report = done;
        }
    }
    let summary = layout.finish()?;
    let decoded = stream.finish().await?;
    let manifest = ImageManifest::parse(&summary.manifest)?;
    let image_id = ImageId::from_sha512(&decoded.sha512);
    let (writer, _trailer) = tar.into_sink().finish(decoded.sha512, summary.entries)?;
    writer
        .into_inner()
        .map_err(|e| Error::io("writing the recipe", e.into_error()))?;
    if let Some(gate) = &options.gate {
        gate.check(&StagedImage {
            image_id: image_id.clone(),
            manifest: manifest.clone(),
            archive_size: decoded.compressed_size,
            tar_size: decoded.uncompressed_size,
        })?;
    }
    let recipe_size = std::fs::metadata(&recipe_path)
        .map_err(|e| Error::io("reading the recipe size", e))?
        .len();
    observer.report(
        Phase::Import,
        decoded.compressed_size,
        Some(decoded.compressed_size),
    );
    Ok(Staged {
        staged_bytes: staging.staged_bytes(),
        staging,
        image_id,
        manifest,
        archive_size: decoded.compressed_size,
        tar_size: decoded.uncompressed_size,
        content_size,
        recipe_size,
        entries: summary.entries,
        original: None,
    })
}

/// Stages the logical content of a GNU sparse member whose stored bytes the tar reader is
/// about to give: its data segments in place, zeros elsewhere (fed without being read or
/// written: they become holes of the object). Returns the object's digest.
async fn stage_sparse<R, S>(
    tar: &mut TarReader<R, S>,
    staging: &mut Staging,
    map: &SparseMap,
    small: &mut Vec<u8>,
    observer: &Observer,
) -> Result<ContentDigest>
where
    R: tokio::io::AsyncRead + Unpin,
    S: crate::archive::tar::RecordSink,
{
    let mut places = SegmentCursor::new(map);
    if map.real_size <= SMALL_CONTENT {
        small.clear();
        small.resize(map.real_size as usize, 0);
        while let Some(chunk) = tar.read_content().await? {
            for (at, bytes) in places.place(&chunk) {
                small[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
            }
        }
        let digest = ContentDigest::of(small);
        staging.put_bytes(digest, small)?;
        return Ok(digest);
    }
    let mut large = LargeContent::new(map.real_size);
    let mut logical = 0u64;
    while let Some(chunk) = tar.read_content().await? {
        for (at, bytes) in places.place(&chunk) {
            if at > logical {
                large.write_zeros(staging, at - logical)?;
            }
            large.write(staging, bytes)?;
            logical = at + bytes.len() as u64;
        }
        observer.check()?;
    }
    if map.real_size > logical {
        large.write_zeros(staging, map.real_size - logical)?;
    }
    large.finish(staging)
}

/// Where the stored bytes of a sparse member go in its logical content, chunk by chunk.
struct SegmentCursor<'a> {
    segments: &'a [crate::archive::tar::SparseSegment],
    /// The segment being filled and how much of it is.
    index: usize,
    filled: u64,
}

impl<'a> SegmentCursor<'a> {
    fn new(map: &'a SparseMap) -> Self {
        SegmentCursor {
            segments: &map.segments,
            index: 0,
            filled: 0,
        }
    }

    /// The next stored bytes `chunk`, cut at segment ends: (logical offset, bytes) pieces.
    /// The tar reader checked that the segments hold exactly the stored bytes.
    fn place<'c>(&mut self, mut chunk: &'c [u8]) -> Vec<(u64, &'c [u8])> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let Some(seg) = self.segments.get(self.index) else {
                break; // cannot happen after the reader's check; the bytes would be dropped
            };
            let room = seg.length - self.filled;
            if room == 0 {
                self.index += 1;
                self.filled = 0;
                continue;
            }
            let n = room.min(chunk.len() as u64) as usize;
            out.push((seg.offset + self.filled, &chunk[..n]));
            self.filled += n as u64;
            chunk = &chunk[n..];
        }
        out
    }
}

/// Publishes the staged files and commits the index, holding the commit lock (shared
/// with other imports, exclusive with `gc`) only for this short step.
async fn commit(
    paths: &StorePaths,
    index: &Index,
    staged: Staged,
    options: &ImportOptions,
    observer: &Observer,
) -> Result<Imported> {
    let Staged {
        mut staging,
        image_id,
        manifest,
        archive_size,
        tar_size,
        content_size,
        recipe_size,
        entries,
        staged_bytes,
        original,
    } = staged;
    let mut imported = Imported {
        image_id: image_id.clone(),
        name: manifest.name.to_string(),
        already_present: false,
        new_bytes: 0,
        new_objects: 0,
        staged_bytes,
        archive_size,
        tar_size,
        recipe_size,
        entries,
        original: original.as_ref().map(|o| o.record.info()),
    };
    if index.get(&image_id).await?.is_some() {
        imported.already_present = true;
        if let Some(original) = original {
            // An image imported without its original form gets it now.
            let (paths, id) = (paths.clone(), image_id.clone());
            blocking_named("the commit task", move || {
                let _lock = super::housekeeping::shared_commit_lock(&paths)?;
                originals::publish(&paths, &id, original)
            })
            .await?;
        }
        return Ok(imported); // dropping the staging folder removes what it held
    }
    observer.check()?;
    observer.report(Phase::Commit, 0, None);
    let lock_paths = paths.clone();
    let recipe_target = paths.recipe(&image_id);
    let original_id = image_id.clone();
    let (staging, lock) = blocking_named("the commit task", move || -> Result<(Staging, File)> {
        let lock = super::housekeeping::shared_commit_lock(&lock_paths)?;
        staging.publish_file(RECIPE_FILE, &recipe_target)?;
        staging.publish()?;
        if let Some(original) = original {
            originals::publish(&lock_paths, &original_id, original)?;
        }
        Ok((staging, lock))
    })
    .await?;
    let inserted = index
        .insert_image(&NewImage {
            image_id: image_id.clone(),
            manifest,
            archive_size,
            tar_size,
            content_size,
            recipe_size,
            entries,
            origin: options.origin.clone(),
        })
        .await?;
    drop(lock);
    // Counted by the publish: only the objects it created, whoever commits the image.
    imported.new_bytes = staging.new_bytes();
    imported.new_objects = staging.new_objects();
    drop(staging);
    if !inserted {
        // Another process committed the same image first: same files, one copy.
        imported.already_present = true;
    }
    Ok(imported)
}

/// Counts the bytes read from the source (for progress), and tees them to the recorder of
/// the original form.
struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
    tee: Option<originals::Tee>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(tee) = &mut self.tee {
            if n == 0 && !buf.is_empty() {
                tee.close();
            } else {
                tee.send(&buf[..n]);
            }
        }
        Ok(n)
    }
}

/// Digest of content streamed in chunks (used by `fsck`).
pub fn digest_file(path: &std::path::Path) -> std::io::Result<(ContentDigest, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = ContentHasher::default();
    super::objects::hash_file(&file, len, &mut hasher)?;
    Ok((hasher.finish(), len))
}

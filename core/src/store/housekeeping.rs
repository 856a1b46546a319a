//! Keeping a store in order: export to a file, and the store's own part of `rm`, `gc` and
//! `fsck` (its objects, recipes, index and push files; what they do to render caches is
//! `render::housekeeping`'s, and `crate::facade` runs both), and `stats`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ContentDigest;
use super::handle::{ExportCompression, Exported};
use super::import::digest_file;
use super::index::{Index, IndexBackend};
use super::paths::StorePaths;
use super::references::{self, MissingRecipe};
use super::regenerate::{self, ObjectPaths};
use super::{archives, heads, objects};
use crate::blocking::{blocking, blocking_value};
use crate::output::{CountedOutput, OutputFile, OutputOptions};
use crate::progress::{Observer, Phase};
use crate::schema::ImageId;
use crate::{Error, ErrorKind, Result};

/// One problem `fsck` found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FsckProblem {
    /// `corrupt_object`, `missing_recipe`, `broken_image`, `damaged_original`, `index`,
    /// `damaged_render_cache`.
    pub kind: &'static str,
    /// The object digest or image ID concerned.
    pub subject: String,
    /// What is wrong.
    pub message: String,
}

/// What the store's own `gc` removed (see `crate::facade::GcReport`, which adds what
/// `gc` removed from the render caches).
#[derive(Debug, Default)]
pub(crate) struct StoreGc {
    /// Objects removed.
    pub objects_removed: u64,
    /// Bytes of the objects removed.
    pub bytes_removed: u64,
    /// Recipes of images no longer in the index, removed.
    pub recipes_removed: u64,
    /// Staging folders of killed imports, removed.
    pub staging_removed: u64,
    /// Files in `signatures/` and `originals/` of images no longer in the index, removed.
    pub push_files_removed: u64,
    /// Bytes of servers' copies of re-created originals (`originals/<hex>.served`), removed.
    pub served_bytes_removed: u64,
}

/// What the store's own `fsck` found (see `crate::facade::FsckReport` for the fields,
/// which adds dead runs and the render caches).
#[derive(Debug, Default)]
pub(crate) struct StoreFsck {
    pub objects_checked: u64,
    pub images_checked: u64,
    pub problems: Vec<FsckProblem>,
    pub images_dropped: Vec<ImageId>,
    pub unreferenced_objects: u64,
    pub stale_staging: u64,
    pub orphan_push_files: u64,
    pub push_files_removed: u64,
    pub head_entries_fixed: u64,
}

/// Sizes of a store.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Which database holds the index.
    pub index: IndexBackend,
    /// Number of images.
    pub images: u64,
    /// Sum of the images' canonical tar sizes.
    pub logical_bytes: u64,
    /// Sum of the content bytes of the images' files (each file counted in full, also
    /// when its content is shared).
    pub referenced_content_bytes: u64,
    /// Number of content objects.
    pub objects: u64,
    /// Bytes of the distinct content objects.
    pub object_bytes: u64,
    /// Bytes on disk of objects, recipes, the index, kept signatures and kept originals
    /// (allocated blocks).
    pub disk_bytes: u64,
    /// Bytes on disk of the content objects.
    pub objects_disk_bytes: u64,
    /// Bytes on disk of the recipes.
    pub recipes_disk_bytes: u64,
    /// Bytes on disk of the index (SQLite's files; 0 for PostgreSQL, whose storage is
    /// the server's).
    pub index_disk_bytes: u64,
    /// Images with a signature kept from a push (`signatures/<hex>.json`). Like the other
    /// push file counts, from the files: those of an image an interrupted `rm` left count
    /// until `gc` removes them.
    pub signed_images: u64,
    /// Bytes on disk of `signatures/`.
    pub signatures_disk_bytes: u64,
    /// Originals kept whole (`originals/<hex>.aci`): archives nothing else re-creates
    /// exactly (form `kept`), and uploads pushes kept before original records existed.
    pub originals: u64,
    /// Bytes of those files.
    pub original_bytes: u64,
    /// Bytes on disk of `originals/` (records, correction records, kept files).
    pub originals_disk_bytes: u64,
    /// Images with an original record (whose exact compressed bytes the store gives back).
    pub original_records: u64,
    /// Sum of those originals' sizes (the compressed archives as they came).
    pub original_compressed_bytes: u64,
    /// Bytes kept to re-create them (correction records and kept files).
    pub original_kept_bytes: u64,
    /// Of those images: how many of each form (`none`, `gzip`, `recompress`, `kept`).
    pub original_forms: std::collections::BTreeMap<String, u64>,
    /// Per image with an original record: its form, size and the bytes kept for it.
    pub original_images: Vec<ImageOriginal>,
    /// `referenced_content_bytes / object_bytes`: how many times each stored byte is used.
    pub dedup_ratio: f64,
}

/// The original record of one image, as `stats` reports it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ImageOriginal {
    /// The image.
    pub image_id: ImageId,
    /// What the store keeps to re-create its original.
    pub original: super::originals::OriginalInfo,
}

/// Regenerates an image into the file `out`, following the output-path policy of
/// [`crate::output`] (a regular file is replaced through a temporary file beside it, renamed
/// at the end; a device or FIFO is written in place); on any failure a temporary file is
/// deleted and a replaced file keeps its old content.
pub(crate) fn export_file(
    recipe: &Path,
    objects: &ObjectPaths,
    id: &ImageId,
    out: &Path,
    options: &OutputOptions,
    compression: ExportCompression,
    observer: &Observer,
) -> Result<Exported> {
    let mut file = OutputFile::create(out, options)?;
    let exported = export_into(
        recipe,
        objects,
        id,
        &mut file,
        &out.display().to_string(),
        compression,
        observer,
    )?;
    // Not fsynced: like cp or tar, an export is written at page-cache speed; the rename
    // still makes it appear whole, and it can always be regenerated from the store.
    file.commit()?;
    Ok(exported)
}

/// Regenerates an image into `out` (any writer; `what` names it in errors), optionally
/// compressed; `out` is flushed at the end. On failure part of it may have been written.
pub(crate) fn export_into<W: Write>(
    recipe: &Path,
    objects: &ObjectPaths,
    id: &ImageId,
    out: W,
    what: &str,
    compression: ExportCompression,
    observer: &Observer,
) -> Result<Exported> {
    let counted = CountedOutput::new(out, what);
    let expected = id.sha512();
    let writing = |e| Error::io(format!("writing {what}"), e);
    let (regenerated, counted) = match compression {
        ExportCompression::None => {
            let mut out = ObservedWriter::new(counted, observer);
            let r = regenerate::regenerate_to(recipe, objects, &expected, &mut out)?;
            (r, out.inner)
        }
        ExportCompression::Gzip => {
            let gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(counted, flate2::Compression::new(6));
            let mut out = ObservedWriter::new(gz, observer);
            let r = regenerate::regenerate_to(recipe, objects, &expected, &mut out)?;
            (r, out.inner.finish().map_err(writing)?)
        }
        ExportCompression::Original => {
            // Re-created from the original record, which this path does not see
            // (`Store::export_to` and `Store::export_to_writer` take it).
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the original form is exported through the store",
            ));
        }
        ExportCompression::Zstd => {
            let zst = zstd::Encoder::new(counted, 3)?;
            let mut out = ObservedWriter::new(zst, observer);
            let r = regenerate::regenerate_to(recipe, objects, &expected, &mut out)?;
            (r, out.inner.finish().map_err(writing)?)
        }
    };
    let written = counted.finish()?;
    // The last event is the whole tar, with its size as the total.
    observer.report(Phase::Export, regenerated.bytes, Some(regenerated.bytes));
    Ok(Exported {
        image_id: id.clone(),
        tar_size: regenerated.bytes,
        written,
    })
}

/// Passes writes through, reporting export progress and stopping on cancellation.
struct ObservedWriter<'a, W> {
    inner: W,
    observer: &'a Observer,
    done: u64,
    reported: u64,
}

impl<'a, W> ObservedWriter<'a, W> {
    fn new(inner: W, observer: &'a Observer) -> Self {
        ObservedWriter {
            inner,
            observer,
            done: 0,
            reported: 0,
        }
    }
}

impl<W: Write> Write for ObservedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.observer.check()?;
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= 1 << 20 {
            self.observer.report(Phase::Export, self.done, None);
            self.reported = self.done;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn open_commit_lock(paths: &StorePaths) -> Result<File> {
    let path = paths.commit_lock();
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// Takes the commit lock exclusively: no import commits, and no push writes the files it
/// keeps beside the store, while it is held.
fn exclusive_commit_lock(paths: &StorePaths) -> Result<File> {
    let lock = open_commit_lock(paths)?;
    lock.lock()
        .map_err(|e| Error::io("taking the commit lock", e))?;
    Ok(lock)
}

/// Takes the commit lock shared (blocking): imports hold it while they publish and commit,
/// pushes while they write their signatures and originals; `gc` and `rm` wait for it.
pub(crate) fn shared_commit_lock(paths: &StorePaths) -> Result<File> {
    let lock = open_commit_lock(paths)?;
    lock.lock_shared()
        .map_err(|e| Error::io("taking the commit lock", e))?;
    Ok(lock)
}

/// `rm` (the store's part): the index row goes first (so a crash never leaves an image
/// without its files), then the recipe, then, under the exclusive commit lock, the signature
/// and original kept from a push and the objects no other image references. What a crash or
/// an error leaves behind belongs to no indexed image, and `gc` removes it. One result per
/// image of `ids`, in order: the objects the other images still use are read once for all of
/// them, not once per image. Whether a rendered run still uses an image is the caller's
/// check (`crate::facade`), as is removing its render caches.
pub(crate) async fn remove_many(
    paths: &StorePaths,
    index: &Index,
    ids: &[ImageId],
) -> Vec<Result<()>> {
    let mut results = Vec::with_capacity(ids.len());
    let mut removed = Vec::new();
    let mut released: HashSet<ContentDigest> = HashSet::new();
    for id in ids {
        let result = remove_from_index(paths, index, id).await;
        results.push(result.map(|objects| {
            released.extend(objects);
            removed.push(id.clone());
        }));
    }
    if removed.is_empty() {
        return results;
    }
    let finished = release_files(paths, index, &removed, released).await;
    for (result, id) in results.iter_mut().zip(ids) {
        if result.is_ok()
            && let Some(err) = finished.get(id.as_str())
        {
            *result = Err(Error::new(
                err.kind(),
                format!(
                    "{id} was removed, but not all its files: {}; `acikit gc` removes them",
                    err.message()
                ),
            ));
        }
    }
    results
}

/// Drops `id` from the index and deletes its recipe; returns the objects it used (none
/// if its recipe was unreadable: the image was broken, and gc removes what is left).
async fn remove_from_index(
    paths: &StorePaths,
    index: &Index,
    id: &ImageId,
) -> Result<Vec<ContentDigest>> {
    // Which objects the image used, read before its recipe goes.
    let recipe = paths.recipe(id);
    let objects = {
        let recipe = recipe.clone();
        blocking_value(move || references::recipe_objects(&recipe))
            .await?
            .unwrap_or_default()
    };
    if !index.remove(id).await? {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("no image {id} in the store"),
        ));
    }
    let _ = std::fs::remove_file(recipe);
    Ok(objects.into_keys().collect())
}

/// After `removed` left the index: their push files, and the objects of
/// `released` no remaining image uses. Returns the errors, by image ID.
async fn release_files(
    paths: &StorePaths,
    index: &Index,
    removed: &[ImageId],
    released: HashSet<ContentDigest>,
) -> HashMap<String, Error> {
    let mut errors = HashMap::new();
    let paths_owned = paths.clone();
    let lock = blocking(move || exclusive_commit_lock(&paths_owned)).await;
    let lock = match lock {
        Ok(lock) => lock,
        Err(err) => {
            for id in removed {
                errors.insert(id.as_str().to_string(), same_error(&err));
            }
            return errors;
        }
    };
    // No push writes its files while the lock is held, and the images are no longer
    // indexed, so none can write them after.
    for id in removed {
        if let Err(err) = remove_push_files_of(paths, id) {
            errors.entry(id.as_str().to_string()).or_insert(err);
        }
    }
    // If another image's recipe cannot be read, nothing is deleted here: the images are
    // gone, and `gc` (after `fsck --repair`) removes their objects.
    if let Ok(referenced) = references::referenced_objects(paths, index, MissingRecipe::Fail).await
    {
        for digest in released.into_iter().filter(|d| !referenced.contains(d)) {
            let _ = std::fs::remove_file(paths.object(&digest));
        }
    }
    drop(lock);
    errors
}

/// A copy of `err` (same kind and message) for another image's result.
fn same_error(err: &Error) -> Error {
    Error::new(err.kind(), err.message().to_string())
}

/// Removes the signature record, the signature and the original kept from a push of `id`
/// (the record first: without it the others are never served).
fn remove_push_files_of(paths: &StorePaths, id: &ImageId) -> Result<()> {
    let mut first_error = None;
    let [original_record, corrections, kept, served] = super::originals::files_of(paths, id);
    for path in [
        paths.signature_record(id),
        paths.signature(id),
        original_record,
        corrections,
        kept,
        served,
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                first_error.get_or_insert(Error::io(format!("removing {}", path.display()), e));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// `gc` (the store's part): removes staging folders of killed imports, objects no image
/// references and recipes of images not in the index, under the exclusive commit lock. Imports in
/// progress keep their objects pinned by hardlinks and restore them when they publish.
pub(crate) async fn gc(paths: &StorePaths, index: &Index, observer: &Observer) -> Result<StoreGc> {
    let mut report = StoreGc {
        staging_removed: objects::remove_stale_staging(paths)?,
        ..StoreGc::default()
    };
    let paths_owned = paths.clone();
    let lock = blocking(move || exclusive_commit_lock(&paths_owned)).await?;
    observer.report(Phase::Gc, 0, None);
    let referenced = references::referenced_objects(paths, index, MissingRecipe::Fail).await?;
    let in_index = indexed_images(index).await?;
    let (removed, bytes, recipes, push_files, served) = {
        let paths = paths.clone();
        let observer = observer.clone();
        blocking(move || -> Result<(u64, u64, u64, u64, u64)> {
            let mut removed = 0;
            let mut bytes = 0;
            for (digest, path) in walk_objects(&paths)? {
                observer.check()?;
                if digest.is_none_or(|d| !referenced.contains(&d)) {
                    let size = std::fs::symlink_metadata(&path)
                        .map(|m| m.len())
                        .unwrap_or(0);
                    if std::fs::remove_file(&path).is_ok() {
                        bytes += size;
                        removed += 1;
                    }
                }
            }
            let mut recipes = 0;
            for (hex, path) in walk_recipes(&paths)? {
                if !in_index.contains(&hex) && std::fs::remove_file(&path).is_ok() {
                    recipes += 1;
                }
            }
            let push_files = remove_orphan_push_files(&paths, &in_index)?;
            let served = remove_served_copies(&paths);
            heads::prune(&paths)?;
            archives::prune(&paths, &in_index)?;
            Ok((removed, bytes, recipes, push_files, served))
        })
        .await?
    };
    drop(lock);
    report.served_bytes_removed = served;
    report.objects_removed = removed;
    report.bytes_removed = bytes;
    report.recipes_removed = recipes;
    report.push_files_removed = push_files;
    Ok(report)
}

/// Removes every server's copy of a re-created original (`originals/<hex>.served`: the next
/// request re-creates it); returns their bytes.
fn remove_served_copies(paths: &StorePaths) -> u64 {
    let Ok(entries) = std::fs::read_dir(paths.originals()) else {
        return 0;
    };
    let mut bytes = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_name().to_string_lossy().ends_with(".served") {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(entry.path()).is_ok() {
                bytes += size;
            }
        }
    }
    bytes
}

/// `fsck` (the store's part): checks the index, re-hashes every object, regenerates every
/// image and checks its ID. With `repair`, drops broken images and corrupt objects.
pub(crate) async fn fsck(
    paths: &StorePaths,
    index: &Index,
    repair: bool,
    writable: bool,
    observer: &Observer,
) -> Result<StoreFsck> {
    let mut report = StoreFsck::default();
    for message in index.integrity_check().await? {
        report.problems.push(FsckProblem {
            kind: "index",
            subject: "index.db".into(),
            message,
        });
    }
    let referenced = references::referenced_objects(paths, index, MissingRecipe::Skip).await?;
    // Objects: the name must be the SHA-256 of the content.
    type ObjectScan = (u64, Vec<(PathBuf, String)>, u64);
    let (checked, corrupt, unreferenced) = {
        let paths = paths.clone();
        let observer = observer.clone();
        let referenced = referenced.clone();
        blocking(move || -> Result<ObjectScan> {
            let mut checked = 0;
            let mut corrupt = Vec::new();
            let mut unreferenced = 0;
            for (digest, path) in walk_objects(&paths)? {
                observer.check()?;
                let Some(digest) = digest else {
                    corrupt.push((path, "not an object name".to_string()));
                    continue;
                };
                if !referenced.contains(&digest) {
                    unreferenced += 1;
                }
                match digest_file(&path) {
                    Ok((actual, _)) if actual == digest => {}
                    Ok((actual, _)) => corrupt.push((path, format!("content hashes to {actual}"))),
                    Err(e) => corrupt.push((path, format!("unreadable: {e}"))),
                }
                checked += 1;
                observer.report(Phase::Fsck, checked, None);
            }
            Ok((checked, corrupt, unreferenced))
        })
        .await?
    };
    report.objects_checked = checked;
    report.unreferenced_objects = unreferenced;
    for (path, message) in &corrupt {
        report.problems.push(FsckProblem {
            kind: "corrupt_object",
            subject: path.display().to_string(),
            message: message.clone(),
        });
        if repair {
            let _ = std::fs::remove_file(path);
        }
    }
    // The side index of large objects is derived data: rebuilt on every fsck of a store
    // that can be written, left as it is on a read-only one.
    if writable {
        let paths_owned = paths.clone();
        let (added, removed) = blocking(move || {
            let objects: Vec<_> = walk_objects(&paths_owned)?
                .into_iter()
                .filter_map(|(digest, path)| Some((digest?, path)))
                .collect();
            heads::rebuild(&paths_owned, &objects)
        })
        .await?;
        report.head_entries_fixed = added + removed;
    }
    // Images: regenerate each and compare with its ID.
    let object_paths: ObjectPaths = {
        let paths = paths.clone();
        std::sync::Arc::new(move |d: &ContentDigest| paths.object(d))
    };
    for record in index.list().await? {
        observer.check()?;
        let id = record.image_id.clone();
        let recipe = paths.recipe(&id);
        let objects = object_paths.clone();
        let silent = Observer {
            progress: None,
            cancel: observer.cancel.clone(),
        };
        let outcome = blocking_value(move || {
            if !recipe.exists() {
                return Err(Error::new(ErrorKind::CorruptStore, "its recipe is missing"));
            }
            let out = ObservedWriter::new(std::io::sink(), &silent);
            regenerate::regenerate_to(&recipe, &objects, &id.sha512(), out).map(|_| ())
        })
        .await?;
        report.images_checked += 1;
        if outcome.is_ok() {
            check_original(
                paths,
                &object_paths,
                &record.image_id,
                repair,
                observer,
                &mut report,
            )
            .await?;
        }
        if let Err(err) = outcome {
            if err.kind() == ErrorKind::Cancelled || observer.cancel.is_cancelled() {
                return Err(Error::new(
                    ErrorKind::Cancelled,
                    "the operation was cancelled",
                ));
            }
            report.problems.push(FsckProblem {
                kind: "broken_image",
                subject: record.image_id.to_string(),
                message: err.to_string(),
            });
            if repair {
                index.remove(&record.image_id).await?;
                let _ = std::fs::remove_file(paths.recipe(&record.image_id));
                report.images_dropped.push(record.image_id.clone());
            }
        }
    }
    report.stale_staging = count_stale_staging(paths);
    // Push files of images not in the index (after the repairs above, which may have
    // dropped images).
    let indexed = indexed_images(index).await?;
    report.orphan_push_files = walk_push_files(paths)?
        .iter()
        .filter(|f| f.is_orphan(&indexed))
        .count() as u64;
    if repair && report.orphan_push_files > 0 {
        let paths_owned = paths.clone();
        let lock = blocking(move || exclusive_commit_lock(&paths_owned)).await?;
        // Listed again under the lock: a push may have committed meanwhile.
        let indexed = indexed_images(index).await?;
        let paths_owned = paths.clone();
        report.push_files_removed =
            blocking(move || remove_orphan_push_files(&paths_owned, &indexed)).await?;
        drop(lock);
    }
    Ok(report)
}

/// Re-creates the original of `id`, if it has a record, and checks its hash: a mismatch is a
/// `damaged_original` problem (with `repair`, the original's files are removed: they cannot
/// give the original back).
async fn check_original(
    paths: &StorePaths,
    objects: &ObjectPaths,
    id: &ImageId,
    repair: bool,
    observer: &Observer,
    report: &mut StoreFsck,
) -> Result<()> {
    let (paths_owned, objects, id_owned) = (paths.clone(), objects.clone(), id.clone());
    let cancel = observer.cancel.clone();
    let outcome = blocking_value(move || {
        let Some(record) = super::originals::load(&paths_owned, &id_owned)? else {
            return Ok(());
        };
        super::originals::recreate_checked(
            &paths_owned,
            &objects,
            &id_owned,
            &record,
            &mut std::io::sink(),
            &cancel,
        )
        .map(|_| ())
    })
    .await?;
    match outcome {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::Cancelled || observer.cancel.is_cancelled() => Err(
            Error::new(ErrorKind::Cancelled, "the operation was cancelled"),
        ),
        Err(err) => {
            report.problems.push(FsckProblem {
                kind: "damaged_original",
                subject: id.to_string(),
                message: err.to_string(),
            });
            if repair {
                for path in super::originals::files_of(paths, id) {
                    let _ = std::fs::remove_file(path);
                }
            }
            Ok(())
        }
    }
}

/// The hex IDs of the images in the index.
async fn indexed_images(index: &Index) -> Result<HashSet<String>> {
    Ok(index
        .list()
        .await?
        .into_iter()
        .map(|r| r.image_id.hex().to_string())
        .collect())
}

fn count_stale_staging(paths: &StorePaths) -> u64 {
    let Ok(entries) = std::fs::read_dir(paths.tmp()) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(objects::STAGING_PREFIX)
        })
        .filter(|e| {
            File::open(e.path().join(objects::STAGING_LOCK))
                .is_ok_and(|lock| lock.try_lock().is_ok())
        })
        .count() as u64
}

/// `stats`: logical sizes from the index, object sizes and bytes on disk from the files.
pub(crate) async fn stats(paths: &StorePaths, index: &Index) -> Result<StoreStats> {
    let from_index = index.stats().await?;
    let images: Vec<ImageId> = index
        .list()
        .await?
        .into_iter()
        .map(|r| r.image_id)
        .collect();
    let paths = paths.clone();
    let files = blocking(move || {
        let mut files = push_file_stats(&paths)?;
        for id in images {
            let Ok(Some(record)) = super::originals::load(&paths, &id) else {
                continue;
            };
            files.original_records += 1;
            files.original_compressed_bytes += record.size;
            files.original_kept_bytes += record.kept_bytes;
            *files
                .original_forms
                .entry(record.form.as_str().to_string())
                .or_default() += 1;
            files.original_images.push(ImageOriginal {
                image_id: id,
                original: record.info(),
            });
        }
        for (_, path) in walk_objects(&paths)? {
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                files.objects += 1;
                files.object_bytes += meta.len();
                files.objects_disk_bytes += meta.blocks() * 512;
            }
        }
        files.recipes_disk_bytes = walk_recipes(&paths)?
            .iter()
            .map(|(_, p)| disk_usage(p))
            .sum();
        files.index_disk_bytes = ["index.db", "index.db-wal", "index.db-shm"]
            .iter()
            .map(|name| disk_usage(&paths.root().join(name)))
            .sum();
        Ok::<_, Error>(files)
    })
    .await?;
    Ok(StoreStats {
        index: index.backend(),
        images: from_index.images,
        logical_bytes: from_index.logical_bytes,
        referenced_content_bytes: from_index.content_bytes,
        disk_bytes: files.objects_disk_bytes
            + files.recipes_disk_bytes
            + files.index_disk_bytes
            + files.signatures_disk_bytes
            + files.originals_disk_bytes,
        dedup_ratio: if files.object_bytes == 0 {
            1.0
        } else {
            from_index.content_bytes as f64 / files.object_bytes as f64
        },
        ..files
    })
}

/// The counts and sizes of what pushes keep beside the store (the `signed_images`,
/// `signatures_disk_bytes`, `originals`, `original_bytes` and `originals_disk_bytes` of
/// [`StoreStats`], the rest zero), from the files: `stats` and the server's `/api/stats`
/// (blocking).
pub(crate) fn push_file_stats(paths: &StorePaths) -> Result<StoreStats> {
    let mut stats = StoreStats::default();
    for file in walk_push_files(paths)? {
        let Ok(meta) = std::fs::symlink_metadata(&file.path) else {
            continue; // removed meanwhile
        };
        if file.original {
            stats.originals_disk_bytes += meta.blocks() * 512;
            if file.image.is_some() && file.path.extension().is_some_and(|e| e == "aci") {
                stats.originals += 1;
                stats.original_bytes += meta.len();
            }
        } else {
            stats.signatures_disk_bytes += meta.blocks() * 512;
            if file.record {
                stats.signed_images += 1;
            }
        }
    }
    Ok(stats)
}

/// A file a push keeps beside the store: `signatures/<hex>.asc` (the signature),
/// `signatures/<hex>.json` (its record) or `originals/<hex>.aci` (the upload); see
/// `serve::records`.
struct PushFile {
    path: PathBuf,
    /// The image it belongs to (the hex of its ID); `None` for any other name, such as the
    /// temporary file of a write that was killed.
    image: Option<String>,
    /// In `originals/` (else in `signatures/`).
    original: bool,
    /// A signature's record, whose presence makes the image signed.
    record: bool,
}

impl PushFile {
    fn is_orphan(&self, indexed: &HashSet<String>) -> bool {
        self.image.as_ref().is_none_or(|hex| !indexed.contains(hex))
    }
}

/// Every file in `signatures/` and `originals/`, records first.
fn walk_push_files(paths: &StorePaths) -> Result<Vec<PushFile>> {
    let mut out = Vec::new();
    for (dir, original) in [(paths.signatures(), false), (paths.originals(), true)] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue; // not ours: pushes write files only
            }
            let name = entry.file_name();
            let name = name.to_str().unwrap_or_default();
            let (stem, record) = match (original, name.strip_suffix(".json")) {
                (true, json) => (
                    json.or_else(|| name.strip_suffix(".gzc"))
                        .or_else(|| name.strip_suffix(".aci"))
                        .or_else(|| name.strip_suffix(".served")),
                    false,
                ),
                (false, Some(stem)) => (Some(stem), true),
                (false, None) => (name.strip_suffix(".asc"), false),
            };
            let image = stem
                .filter(|hex| ImageId::parse(&format!("sha512-{hex}")).is_ok())
                .map(str::to_string);
            out.push(PushFile {
                path: entry.path(),
                record: record && image.is_some(),
                image,
                original,
            });
        }
    }
    out.sort_by_key(|f| !f.record);
    Ok(out)
}

/// Removes the files in `signatures/` and `originals/` that belong to no image of
/// `indexed` (hex IDs), records first. Call it under the exclusive commit lock, when no
/// push is writing (so a file with another name is a killed write's). Returns how many
/// were removed.
fn remove_orphan_push_files(paths: &StorePaths, indexed: &HashSet<String>) -> Result<u64> {
    let mut removed = 0;
    for file in walk_push_files(paths)? {
        if !file.is_orphan(indexed) {
            continue;
        }
        match std::fs::remove_file(&file.path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", file.path.display()), e)),
        }
    }
    Ok(removed)
}

fn disk_usage(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Every file under `objects/sha256/`, with its digest when the name is one.
fn walk_objects(paths: &StorePaths) -> Result<Vec<(Option<ContentDigest>, PathBuf)>> {
    walk_two_levels(&paths.objects(), |name| ContentDigest::from_hex(name).ok())
}

/// Every recipe file, with the image's hex digest.
fn walk_recipes(paths: &StorePaths) -> Result<Vec<(String, PathBuf)>> {
    let found = walk_two_levels(&paths.recipes(), |name| {
        name.strip_suffix(".recipe").map(str::to_string)
    })?;
    Ok(found
        .into_iter()
        .filter_map(|(hex, path)| hex.map(|h| (h, path)))
        .collect())
}

fn walk_two_levels<T>(
    root: &Path,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<(Option<T>, PathBuf)>> {
    let mut out = Vec::new();
    let shards = match std::fs::read_dir(root) {
        Ok(shards) => shards,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
    };
    for shard in shards {
        let shard = shard.map_err(|e| Error::io(format!("listing {}", root.display()), e))?;
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for file in std::fs::read_dir(shard.path()).map_err(|e| Error::io("listing a shard", e))? {
            let file = file.map_err(|e| Error::io("listing a shard", e))?;
            let name = file.file_name();
            out.push((name.to_str().and_then(&parse), file.path()));
        }
    }
    Ok(out)
}

//! The original form of each image: how to give back the exact compressed bytes it came as
//! (the bytes a publisher signed), from the canonical tar the store regenerates.
//!
//! ```text
//! STORE/originals/<hex>.json   the record: {"form", "size", "sha256", "kept_bytes", ...}
//! STORE/originals/<hex>.gzc    form `gzip`: the correction record (`archive::gzip_original`)
//! STORE/originals/<hex>.aci    form `kept`: the original bytes, as they came
//! STORE/originals/<hex>.served  a server's checked copy of a re-created original
//! ```
//!
//! An import records the original while it reads the archive: [`start`] tees the compressed
//! bytes to a recorder thread, which hashes them and spools them into the import's staging
//! folder. A plain tar is its own original (form `none`); anything compressed is kept as it
//! came, marked `pending`, which costs one sequential write beside the import. [`compact`]
//! (run by `Store::compact_originals` and `gc`) later turns a pending original into its
//! compact form (`gzip`, `gzip_export`, `recompress`), proved by re-creating the whole stream,
//! or leaves it `kept` with the reason: a gzip correction record costs several times the
//! import itself, so it is made off the import's path. Staged files live in the staging
//! folder until the import commits, and [`publish`] moves them into `originals/` (the `.json`
//! last, under the commit lock, like the recipe), so a failed or cancelled import leaves
//! nothing. `rm` removes them with the image, `gc` those of images no longer indexed, `fsck`
//! re-creates each original and checks its hash.
//!
//! **Wrong bytes are never given out.** [`recreate_verified`] re-creates into a temporary
//! file of the store's `tmp/`, hashing as it writes, and hands the file over only when its
//! size and SHA-256 are the record's; a damaged correction record, kept file or object is an
//! [`ErrorKind::CorruptStore`] error before any byte leaves the store.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::paths::StorePaths;
use super::regenerate::{self, ObjectPaths};
use crate::archive::compression::{self, Compression, DETECT_LEN};
use crate::archive::gzip_original::{self, GzipRecorder};
use crate::archive::recompress::{self, RecompressParams};
use crate::atomic_file::write_atomic;
use crate::schema::ImageId;
use crate::{CancelToken, Error, ErrorKind, Result};

/// Chunks of compressed bytes in flight to the recorder thread.
const TEE_DEPTH: usize = 16;
/// Name of the spooled original in the staging folder.
const SPOOL: &str = "original.aci";
/// Name of the gzip correction record in the staging folder.
const CORRECTIONS: &str = "original.gzc";

/// How an image's original compressed bytes are re-created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OriginalForm {
    /// The image came as a plain tar: the original is the canonical tar.
    None,
    /// gzip, re-created with a preflate-rs correction record (`originals/<hex>.gzc`).
    Gzip,
    /// zstd, xz or bzip2, re-created by our encoder under recorded parameters.
    Recompress,
    /// Our own deterministic gzip export (`ExportCompression::Gzip`: level 6, no name,
    /// mtime 0), which preflate-rs cannot model but we re-create as we made it.
    GzipExport,
    /// Kept as it came (`originals/<hex>.aci`): nothing else re-creates it exactly.
    Kept,
}

impl OriginalForm {
    /// `none`, `gzip`, `recompress` or `kept`.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginalForm::None => "none",
            OriginalForm::Gzip => "gzip",
            OriginalForm::Recompress => "recompress",
            OriginalForm::GzipExport => "gzip_export",
            OriginalForm::Kept => "kept",
        }
    }
}

/// What the store keeps to give back an image's original compressed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OriginalInfo {
    /// How the original is re-created.
    pub form: OriginalForm,
    /// The compression of the original (`none`, `gzip`, `bzip2`, `xz`, `zstd`).
    pub compression: String,
    /// Bytes of the original.
    pub size: u64,
    /// SHA-256 of the original, lowercase hex.
    pub sha256: String,
    /// Bytes the store keeps to re-create it (the correction record or the kept file; 0
    /// for `none` and `recompress`).
    pub kept_bytes: u64,
    /// For `kept`: why nothing else re-creates it.
    pub reason: Option<String>,
    /// For `kept`: the bytes are kept only until a compaction (`Store::compact_originals`,
    /// run by `gc`) makes the compact form; `false` once that was tried (or for other forms).
    pub pending: bool,
}

/// The record file (`originals/<hex>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OriginalRecord {
    pub form: OriginalForm,
    pub compression: String,
    pub size: u64,
    pub sha256: String,
    pub kept_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<RecompressParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Kept only until compacted (see [`compact`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl OriginalRecord {
    pub(crate) fn info(&self) -> OriginalInfo {
        OriginalInfo {
            form: self.form,
            compression: self.compression.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            kept_bytes: self.kept_bytes,
            reason: self.reason.clone(),
            pending: self.pending,
        }
    }
}

/// The record of an image, written last.
pub(crate) fn record_path(paths: &StorePaths, id: &ImageId) -> PathBuf {
    paths.originals().join(format!("{}.json", id.hex()))
}

/// The gzip correction record of an image.
pub(crate) fn corrections_path(paths: &StorePaths, id: &ImageId) -> PathBuf {
    paths.originals().join(format!("{}.gzc", id.hex()))
}

/// The kept original of an image (also where pushes kept uploads before records existed).
pub(crate) fn kept_path(paths: &StorePaths, id: &ImageId) -> PathBuf {
    paths.original(id)
}

/// The copy of an image's re-created original that a server serves (see [`open_served`]).
pub(crate) fn served_path(paths: &StorePaths, id: &ImageId) -> PathBuf {
    paths.originals().join(format!("{}.served", id.hex()))
}

/// Every file of an image's original form, the record first.
pub(crate) fn files_of(paths: &StorePaths, id: &ImageId) -> [PathBuf; 4] {
    [
        record_path(paths, id),
        corrections_path(paths, id),
        kept_path(paths, id),
        served_path(paths, id),
    ]
}

/// The record of `id`, if the store has one.
pub(crate) fn load(paths: &StorePaths, id: &ImageId) -> Result<Option<OriginalRecord>> {
    let path = record_path(paths, id);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::new(ErrorKind::CorruptStore, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The sending end of the tee: the import's reader hands it every compressed chunk.
pub(crate) struct Tee {
    tx: Option<SyncSender<Vec<u8>>>,
}

impl Tee {
    /// Passes a copy of `bytes` to the recorder (which may have stopped: then nothing).
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx
            && tx.send(bytes.to_vec()).is_err()
        {
            self.tx = None;
        }
    }

    /// The end of the stream.
    pub(crate) fn close(&mut self) {
        self.tx = None;
    }
}

/// The recorder thread of an import.
pub(crate) struct Recorder {
    done: Receiver<Result<Staged>>,
    abandoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// An original form recorded into a staging folder, waiting for the commit.
#[derive(Debug)]
pub(crate) struct Staged {
    pub record: OriginalRecord,
    /// The staged file to publish with it (correction record or kept bytes), if any.
    file: Option<PathBuf>,
}

/// Starts recording the original of an archive whose compressed bytes will come through the
/// returned [`Tee`]; its files go into `dir` (the import's staging folder).
pub(crate) fn start(dir: &Path, observer: crate::Observer) -> Result<(Tee, Recorder)> {
    let (tx, rx) = sync_channel(TEE_DEPTH);
    let (done_tx, done) = sync_channel(1);
    let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dir = dir.to_path_buf();
    let stop = abandoned.clone();
    std::thread::Builder::new()
        .name("acikit-original".into())
        .spawn(move || {
            let _ = done_tx.send(record(&dir, rx, &observer, &stop));
        })
        .map_err(|e| Error::io("starting the original-form recorder", e))?;
    Ok((Tee { tx: Some(tx) }, Recorder { done, abandoned }))
}

impl Recorder {
    /// Waits for the recorder (after the tee closed) and gives its result.
    pub(crate) fn finish(self) -> Result<Staged> {
        self.done.recv().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Internal,
                "the original-form recorder panicked",
            ))
        })
    }

    /// Stops the recorder of a failed import and waits (briefly) until it let go of the
    /// staging folder.
    pub(crate) fn abandon(self) {
        self.abandoned
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.done.recv_timeout(std::time::Duration::from_secs(10));
    }
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "the operation was cancelled")
}

/// The recorder thread: spools the compressed bytes into the staging folder and hashes them.
/// A compressed original is kept as it came, marked `pending`: [`compact`] makes its compact
/// form later (off the import's path: a gzip correction record costs several times the
/// import, see `docs/PERFORMANCE.md`).
fn record(
    dir: &Path,
    rx: Receiver<Vec<u8>>,
    observer: &crate::Observer,
    abandoned: &std::sync::atomic::AtomicBool,
) -> Result<Staged> {
    let cancel = &observer.cancel;
    let spool_path = dir.join(SPOOL);
    let spool = File::create(&spool_path)
        .map_err(|e| Error::io(format!("creating {}", spool_path.display()), e))?;
    let mut spool = BufWriter::with_capacity(1 << 20, spool);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut head = Vec::with_capacity(DETECT_LEN);
    let mut compression = None;
    let spool_err = |e| Error::io("spooling the original archive", e);
    loop {
        let chunk = match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(chunk) => chunk,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if abandoned.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(cancelled());
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if cancel.is_cancelled() || abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(cancelled());
        }
        hasher.update(&chunk);
        size += chunk.len() as u64;
        match compression {
            // A plain tar is its own original: nothing to spool.
            Some(Compression::None) => {}
            Some(_) => spool.write_all(&chunk).map_err(spool_err)?,
            None => {
                head.extend_from_slice(&chunk);
                if head.len() >= DETECT_LEN {
                    let found = compression::detect(&head).unwrap_or(Compression::None);
                    if found != Compression::None {
                        spool.write_all(&head).map_err(spool_err)?;
                    }
                    head = Vec::new();
                    compression = Some(found);
                }
            }
        }
    }
    let compression = match compression {
        Some(found) => found,
        None => {
            let found = compression::detect(&head).unwrap_or(Compression::None);
            if found != Compression::None {
                spool.write_all(&head).map_err(spool_err)?;
            }
            found
        }
    };
    let spool = spool.into_inner().map_err(|e| spool_err(e.into_error()))?;
    let mut record = OriginalRecord {
        form: OriginalForm::Kept,
        compression: compression.as_str().to_string(),
        size,
        sha256: hex::encode(hasher.finalize()),
        kept_bytes: size,
        params: None,
        reason: None,
        pending: true,
    };
    if compression == Compression::None {
        drop(spool);
        let _ = std::fs::remove_file(&spool_path);
        record.form = OriginalForm::None;
        record.kept_bytes = 0;
        record.pending = false;
        return Ok(Staged { record, file: None });
    }
    spool
        .sync_all()
        .map_err(|e| Error::io("syncing the kept original", e))?;
    Ok(Staged {
        record,
        file: Some(spool_path),
    })
}

/// What a compaction of pending originals did (`Store::compact_originals`, and `gc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OriginalCompaction {
    /// Originals turned into a compact form (`gzip`, `gzip_export`, `recompress`).
    pub compacted: u64,
    /// Originals found to need their bytes kept whole (no longer pending).
    pub kept: u64,
    /// Bytes of kept originals removed, less the correction records written instead.
    pub bytes_freed: u64,
}

/// Compacts the pending original of every image in `ids` (blocking; see [`compact`]),
/// reporting `Phase::Original` progress over the bytes of those originals.
pub(crate) fn compact_all(
    paths: &StorePaths,
    ids: &[ImageId],
    observer: &crate::Observer,
) -> Result<OriginalCompaction> {
    let pending: Vec<(ImageId, u64)> = ids
        .iter()
        .filter_map(|id| match load(paths, id) {
            Ok(Some(r)) if r.pending => Some((id.clone(), r.size)),
            _ => None,
        })
        .collect();
    let total: u64 = pending.iter().map(|(_, size)| size).sum();
    let mut done = 0u64;
    let mut out = OriginalCompaction::default();
    let mut first_error = None;
    observer.report(crate::Phase::Original, 0, Some(total));
    for (id, size) in pending {
        if observer.cancel.is_cancelled() {
            return Err(cancelled());
        }
        match compact(paths, &id, observer, done, total) {
            Ok(Some((record, _))) if record.form == OriginalForm::Kept => out.kept += 1,
            Ok(Some((_, freed))) => {
                out.compacted += 1;
                out.bytes_freed += freed;
            }
            Ok(None) => {}
            Err(err) if err.kind() == ErrorKind::Cancelled => return Err(err),
            // The others are still compacted; the first failure is reported at the end.
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
        done += size;
        observer.report(crate::Phase::Original, done, Some(total));
    }
    first_error.map_or(Ok(out), Err)
}

/// Makes the compact form of the original of `id` if it is kept `pending` (blocking): a gzip
/// correction record, our own gzip export, or encoder parameters, each proved by re-creating
/// the whole stream and comparing its SHA-256 (see [`GzipRecorder`] and
/// [`recompress::detect`]); when none re-creates it, the bytes stay kept and the record says
/// why. The new form is published under the commit lock (the correction record, then the
/// record, then the kept bytes go), and only if the record is still the one compacted (an
/// `rm` or another compaction meanwhile wins). Returns the new record and the bytes freed.
/// `done` and `total` place this original in the progress of a longer compaction.
pub(crate) fn compact(
    paths: &StorePaths,
    id: &ImageId,
    observer: &crate::Observer,
    done: u64,
    total: u64,
) -> Result<Option<(OriginalRecord, u64)>> {
    let Some(record) = load(paths, id)?.filter(|r| r.pending) else {
        return Ok(None);
    };
    let kept = kept_path(paths, id);
    // The kept bytes must be the original before anything is made from them (a damaged
    // file stays as it is, for `fsck` to report).
    verified_open(&kept, &record, &observer.cancel)?;
    let staging = super::objects::Staging::create(paths)?;
    let (new, file) = compact_form(&kept, &record, staging.dir(), observer, done, total)?;
    // A cancel that came during the last steps still wins: nothing is published.
    if observer.cancel.is_cancelled() {
        return Err(cancelled());
    }
    let _lock = super::housekeeping::shared_commit_lock(paths)?;
    if load(paths, id)?.as_ref() != Some(&record) {
        return Ok(None);
    }
    if let Some(file) = &file {
        let to = corrections_path(paths, id);
        std::fs::rename(file, &to)
            .map_err(|e| Error::io(format!("publishing {}", to.display()), e))?;
    }
    save(paths, id, &new)?;
    let mut freed = 0;
    if new.form != OriginalForm::Kept {
        std::fs::remove_file(&kept)
            .map_err(|e| Error::io(format!("removing {}", kept.display()), e))?;
        freed = record.size.saturating_sub(new.kept_bytes);
    }
    Ok(Some((new, freed)))
}

/// The compact form of the kept original at `kept` (described by `record`), with the file to
/// publish beside it (a correction record made in `dir`).
fn compact_form(
    kept: &Path,
    record: &OriginalRecord,
    dir: &Path,
    observer: &crate::Observer,
    done: u64,
    total: u64,
) -> Result<(OriginalRecord, Option<PathBuf>)> {
    let cancel = &observer.cancel;
    let open = || File::open(kept).map_err(|e| Error::io(format!("opening {}", kept.display()), e));
    let mut head = Vec::with_capacity(DETECT_LEN);
    open()?
        .take(DETECT_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(format!("reading {}", kept.display()), e))?;
    let compression = compression::detect(&head).unwrap_or(Compression::None);
    let mut new = OriginalRecord {
        pending: false,
        ..record.clone()
    };
    match compression {
        Compression::None => {
            new.form = OriginalForm::None;
            new.kept_bytes = 0;
            return Ok((new, None));
        }
        Compression::Gzip => {
            let corrections = dir.join(CORRECTIONS);
            let mut recorder = new_gzip(&corrections)?;
            let mut file = open()?;
            let mut buf = vec![0u8; 1 << 20];
            let mut read = 0u64;
            loop {
                if cancel.is_cancelled() {
                    return Err(cancelled());
                }
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(format!("reading {}", kept.display()), e)),
                };
                recorder.feed(&buf[..n])?;
                if recorder.unfit().is_some() {
                    break;
                }
                read += n as u64;
                if read % (16 << 20) < n as u64 {
                    observer.report(crate::Phase::Original, done + read, Some(total));
                }
            }
            match recorder.finish()? {
                Ok(recorded) => {
                    let mut out = recorded.out;
                    out.flush()
                        .map_err(|e| Error::io("writing a gzip correction record", e))?;
                    out.into_inner()
                        .map_err(|e| Error::io("writing a gzip correction record", e.into_error()))?
                        .sync_all()
                        .map_err(|e| Error::io("syncing a gzip correction record", e))?;
                    new.form = OriginalForm::Gzip;
                    new.kept_bytes = recorded.record_size;
                    new.reason = None;
                    return Ok((new, Some(corrections)));
                }
                Err(unfit) => {
                    if is_our_gzip_export(kept, record, cancel)? {
                        new.form = OriginalForm::GzipExport;
                        new.kept_bytes = 0;
                        new.reason = None;
                        return Ok((new, None));
                    }
                    new.reason = Some(unfit.0);
                }
            }
        }
        other => {
            let mut open_original = || -> std::io::Result<Box<dyn Read + Send>> {
                Ok(Box::new(BufReader::new(File::open(kept)?)))
            };
            let mut open_decompressed = || -> std::io::Result<Box<dyn Read + Send>> {
                decompressor(other, File::open(kept)?)
            };
            match recompress::detect(other, &mut open_original, &mut open_decompressed, cancel)? {
                Some(params) => {
                    new.form = OriginalForm::Recompress;
                    new.kept_bytes = 0;
                    new.params = Some(params);
                    new.reason = None;
                    return Ok((new, None));
                }
                None => {
                    new.reason = Some(format!(
                        "no parameters of our {other} encoder re-create these bytes"
                    ));
                }
            }
        }
    }
    Ok((new, None))
}

/// Whether the gzip stream spooled at `spool` is our deterministic gzip export of its content
/// (what a push of `export --compression gzip` uploads): compressed again, hashed, compared.
fn is_our_gzip_export(spool: &Path, record: &OriginalRecord, cancel: &CancelToken) -> Result<bool> {
    let file = File::open(spool).map_err(|e| Error::io("reading the spooled original", e))?;
    let mut plain = decompressor(Compression::Gzip, file)
        .map_err(|e| Error::io("reading the spooled original", e))?;
    let mut hashing = Hashing {
        inner: std::io::sink(),
        hasher: Sha256::new(),
        written: 0,
    };
    let mut gz = our_gzip(&mut hashing);
    if copy_cancellable(&mut plain, &mut gz, cancel).is_err() {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        return Ok(false);
    }
    if gz.finish().is_err() {
        return Ok(false);
    }
    Ok(hashing.written == record.size && hex::encode(hashing.hasher.finalize()) == record.sha256)
}

/// Our deterministic gzip export's encoder (as `ExportCompression::Gzip` writes it).
fn our_gzip<W: Write>(out: W) -> flate2::write::GzEncoder<W> {
    flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::new(6))
}

fn new_gzip(path: &Path) -> Result<GzipRecorder<BufWriter<File>>> {
    let file =
        File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    GzipRecorder::new(BufWriter::with_capacity(1 << 20, file))
}

/// A reader of the decompressed content of a zstd, xz or bzip2 stream.
fn decompressor(compression: Compression, file: File) -> std::io::Result<Box<dyn Read + Send>> {
    let input = BufReader::with_capacity(1 << 20, file);
    Ok(match compression {
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        _ => Box::new(input),
    })
}

/// Publishes a staged original of `id` (the caller holds the commit lock shared): its file
/// first, then the record. An image that already has a record keeps it.
pub(crate) fn publish(paths: &StorePaths, id: &ImageId, staged: Staged) -> Result<()> {
    let target = record_path(paths, id);
    if target.exists() {
        return Ok(());
    }
    let dir = paths.originals();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    if let Some(file) = &staged.file {
        let to = match staged.record.form {
            OriginalForm::Gzip => corrections_path(paths, id),
            _ => kept_path(paths, id),
        };
        std::fs::rename(file, &to)
            .map_err(|e| Error::io(format!("publishing {}", to.display()), e))?;
    }
    save(paths, id, &staged.record)
}

/// Writes the record of `id` (atomically; the folder is synced).
pub(crate) fn save(paths: &StorePaths, id: &ImageId, record: &OriginalRecord) -> Result<()> {
    let dir = paths.originals();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    write_atomic(&record_path(paths, id), &json)
}

/// Re-creates the original of `id` under `record` into `out`, unchecked (blocking): the
/// caller compares what was written with the record.
fn recreate_into(
    paths: &StorePaths,
    objects: &ObjectPaths,
    id: &ImageId,
    record: &OriginalRecord,
    out: &mut dyn Write,
    cancel: &CancelToken,
) -> Result<()> {
    match record.form {
        OriginalForm::Kept => {
            let path = kept_path(paths, id);
            let mut file = File::open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            copy_cancellable(&mut file, out, cancel)
        }
        OriginalForm::None => {
            let mut tar = tar_reader(paths, objects, id)?;
            copy_cancellable(&mut tar, out, cancel)
        }
        OriginalForm::Gzip => {
            let path = corrections_path(paths, id);
            let file = File::open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let mut corrections = BufReader::with_capacity(1 << 20, file);
            let mut tar = tar_reader(paths, objects, id)?;
            gzip_original::recreate(&mut corrections, &mut tar, out, cancel)
        }
        OriginalForm::GzipExport => {
            let mut tar = tar_reader(paths, objects, id)?;
            let mut gz = our_gzip(out);
            copy_cancellable(&mut tar, &mut gz, cancel)?;
            gz.finish()
                .map_err(|e| Error::io("writing the original", e))?;
            Ok(())
        }
        OriginalForm::Recompress => {
            let params = record.params.as_ref().ok_or_else(|| {
                Error::new(
                    ErrorKind::CorruptStore,
                    format!("the original record of {id} has no parameters"),
                )
            })?;
            let mut tar = tar_reader(paths, objects, id)?;
            recompress::recreate(params, &mut tar, out, cancel)
        }
    }
}

fn copy_cancellable(from: &mut dyn Read, out: &mut dyn Write, cancel: &CancelToken) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading for the original", e)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("writing the original", e))?;
    }
}

/// A blocking reader of the image's canonical tar, regenerated on another thread (ending
/// with an error if its SHA-512 is not the image ID).
fn tar_reader(paths: &StorePaths, objects: &ObjectPaths, id: &ImageId) -> Result<impl Read> {
    let (tx, rx) = sync_channel::<std::io::Result<Vec<u8>>>(8);
    let recipe = paths.recipe(id);
    let objects = objects.clone();
    let sha512 = id.sha512();
    std::thread::Builder::new()
        .name("acikit-original-tar".into())
        .spawn(move || {
            let writer = ChannelWriter { tx: tx.clone() };
            let out = BufWriter::with_capacity(1 << 20, writer);
            if let Err(err) = regenerate::regenerate_to(&recipe, &objects, &sha512, out) {
                let _ = tx.send(Err(err.into()));
            }
        })
        .map_err(|e| Error::io("starting the tar thread", e))?;
    Ok(ChannelReader {
        rx,
        current: Vec::new(),
        at: 0,
    })
}

struct ChannelWriter {
    tx: SyncSender<std::io::Result<Vec<u8>>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct ChannelReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Re-creates the original of `id` into `out` and checks it: `Ok(size)` if its size and
/// SHA-256 are the record's, [`ErrorKind::CorruptStore`] otherwise (what was written to `out`
/// must then be thrown away: see [`recreate_verified`]).
pub(crate) fn recreate_checked(
    paths: &StorePaths,
    objects: &ObjectPaths,
    id: &ImageId,
    record: &OriginalRecord,
    out: &mut dyn Write,
    cancel: &CancelToken,
) -> Result<u64> {
    let mut hashing = Hashing {
        inner: out,
        hasher: Sha256::new(),
        written: 0,
    };
    recreate_into(paths, objects, id, record, &mut hashing, cancel)?;
    hashing
        .flush()
        .map_err(|e| Error::io("writing the original", e))?;
    let sha256 = hex::encode(hashing.hasher.finalize());
    if hashing.written != record.size || sha256 != record.sha256 {
        return Err(Error::new(
            ErrorKind::CorruptStore,
            format!(
                "the original of {id} re-created from its {} record is {} bytes with SHA-256 \
                 {sha256}, not {} bytes with {}: the record or the store is damaged",
                record.form.as_str(),
                hashing.written,
                record.size,
                record.sha256
            ),
        ));
    }
    Ok(hashing.written)
}

/// Re-creates the original of `id` into an unnamed temporary file in the store's `tmp/` (the
/// system's temporary folder for a read-only store),
/// checks its size and SHA-256 against the record, and returns the file rewound to its
/// start (a kept original is checked in place and returned as it is): with [`open_served`],
/// the only way the original leaves the store, so no unchecked byte is ever given out.
pub(crate) fn recreate_verified(
    paths: &StorePaths,
    objects: &ObjectPaths,
    id: &ImageId,
    cancel: &CancelToken,
) -> Result<(File, OriginalRecord)> {
    let mut record = load(paths, id)?.ok_or_else(|| no_original(id))?;
    if record.form == OriginalForm::Kept {
        // Checked in place, not copied.
        let kept = kept_path(paths, id);
        match verified_open(&kept, &record, cancel) {
            Ok(file) => return Ok((file, record)),
            // A compaction may have just removed it: the record says what now.
            Err(_) if !kept.exists() => {
                record = load(paths, id)?.ok_or_else(|| no_original(id))?;
            }
            Err(err) => return Err(err),
        }
    }
    // In the store's `tmp/`; a read-only store exports through the system's temporary folder.
    let file = match unnamed_file(&paths.tmp()) {
        Ok(file) => file,
        Err(_) => unnamed_file(&std::env::temp_dir())?,
    };
    let file = recreate_into_file(paths, objects, id, &record, file, cancel)?;
    Ok((file, record))
}

/// Re-creates the original of `id` under `record` into `file` and checks it (see
/// [`recreate_checked`]); returns the file rewound to its start.
fn recreate_into_file(
    paths: &StorePaths,
    objects: &ObjectPaths,
    id: &ImageId,
    record: &OriginalRecord,
    file: File,
    cancel: &CancelToken,
) -> Result<File> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    recreate_checked(paths, objects, id, record, &mut out, cancel)?;
    let mut file = out
        .into_inner()
        .map_err(|e| Error::io("writing the original", e.into_error()))?;
    file.rewind()
        .map_err(|e| Error::io("rewinding the original", e))?;
    Ok(file)
}

/// Opens the file `path` holding an original described by `record` and checks its size and
/// SHA-256 (reading it through), rewound to its start: [`ErrorKind::CorruptStore`] when it is
/// not the original.
fn verified_open(path: &Path, record: &OriginalRecord, cancel: &CancelToken) -> Result<File> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut hashing = Hashing {
        inner: std::io::sink(),
        hasher: Sha256::new(),
        written: 0,
    };
    copy_cancellable(&mut file, &mut hashing, cancel)?;
    let sha256 = hex::encode(hashing.hasher.finalize());
    if hashing.written != record.size || sha256 != record.sha256 {
        return Err(Error::new(
            ErrorKind::CorruptStore,
            format!(
                "{} is {} bytes with SHA-256 {sha256}, not the original's {} bytes with {}: \
                 the store is damaged",
                path.display(),
                hashing.written,
                record.size,
                record.sha256
            ),
        ));
    }
    file.rewind()
        .map_err(|e| Error::io(format!("rewinding {}", path.display()), e))?;
    Ok(file)
}

/// The original of `id` for a server that serves it again and again: a kept original is
/// checked in place; any other form is re-created once into `originals/<hex>.served` (checked
/// before it is renamed into place) and that copy is checked and served afterwards, so only
/// the first request pays the re-creation. `gc` and `rm` remove the copy. Returns `None` when
/// the image has no original record. The file is checked (size and SHA-256) on every call,
/// before the caller sends a byte of it.
#[cfg(feature = "server")]
pub(crate) fn open_served(
    paths: &StorePaths,
    objects: &ObjectPaths,
    id: &ImageId,
    cancel: &CancelToken,
) -> Result<Option<File>> {
    for attempt in 0..2 {
        let Some(record) = load(paths, id)? else {
            return Ok(None);
        };
        let path = match record.form {
            OriginalForm::Kept => kept_path(paths, id),
            _ => served_path(paths, id),
        };
        match verified_open(&path, &record, cancel) {
            Ok(file) => return Ok(Some(file)),
            Err(err) if record.form == OriginalForm::Kept => {
                // A compaction may have just removed the kept file: the record says what now.
                if attempt == 0 && !path.exists() {
                    continue;
                }
                return Err(err);
            }
            // No copy yet, or a damaged one: re-created below.
            Err(_) => {}
        }
        let staging = super::objects::Staging::create(paths)?;
        let part = staging.dir().join("served.aci");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(|e| Error::io(format!("creating {}", part.display()), e))?;
        let file = recreate_into_file(paths, objects, id, &record, file, cancel)?;
        // Renamed into place only while the image still has this record (not under an `rm`).
        let _lock = super::housekeeping::shared_commit_lock(paths)?;
        if load(paths, id)?.as_ref() == Some(&record) {
            std::fs::rename(&part, &path)
                .map_err(|e| Error::io(format!("keeping {}", path.display()), e))?;
        }
        return Ok(Some(file));
    }
    Err(no_original(id))
}

/// A new file in `dir`, already unlinked (it disappears when closed, whatever happens).
fn unnamed_file(dir: &Path) -> Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        "original-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// The error for an image without an original record.
pub(crate) fn no_original(id: &ImageId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "{id} has no original form recorded (it was imported without `--original`, or \
             before the store recorded originals): export it as tar, gzip or zstd"
        ),
    )
}

/// Keeps the signature `asc` that a fetch verified (by the trusted key `verified_by`) over the
/// archive it downloaded, whose original form this import recorded as `downloaded`: written
/// as `signatures/<hex>.asc` and its record `signatures/<hex>.json` (the shape of
/// `serve::ServeRecord`: `{form, size, sha256, verified_by}`), so that a server on this store
/// serves the image in its original form with the publisher's signature. Only when the
/// store's original record of the image is of those very bytes (an image imported before
/// from another archive keeps its record, and the signature would not cover it); returns
/// whether it was kept. Holds the commit lock shared, like a push (blocking).
pub(crate) fn keep_signature(
    paths: &StorePaths,
    id: &ImageId,
    asc: &[u8],
    downloaded: &OriginalInfo,
    verified_by: &str,
) -> Result<bool> {
    let _lock = super::housekeeping::shared_commit_lock(paths)?;
    let Some(record) = load(paths, id)? else {
        return Ok(false);
    };
    if record.sha256 != downloaded.sha256 || record.size != downloaded.size {
        return Ok(false);
    }
    let form = if record.form == OriginalForm::None {
        "tar"
    } else {
        "original"
    };
    let dir = paths.signatures();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    write_atomic(&paths.signature(id), asc)?;
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "form": form,
        "size": record.size,
        "sha256": record.sha256,
        "verified_by": verified_by,
    }))
    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    write_atomic(&paths.signature_record(id), &json)?;
    Ok(true)
}

/// Records that the original of `id` is kept whole in `originals/<hex>.aci` (already in
/// place: a push's upload), unless the image has a record of the same bytes (then the
/// kept file is not needed and is removed). The caller holds the commit lock shared.
#[cfg(feature = "server")]
pub(crate) fn record_kept(
    paths: &StorePaths,
    id: &ImageId,
    size: u64,
    sha256: &str,
    compression: &str,
) -> Result<()> {
    if let Some(record) = load(paths, id)?
        && record.size == size
        && record.sha256 == sha256
    {
        if record.form != OriginalForm::Kept {
            let _ = std::fs::remove_file(kept_path(paths, id));
        }
        return Ok(());
    }
    save(
        paths,
        id,
        &OriginalRecord {
            form: OriginalForm::Kept,
            compression: compression.to_string(),
            size,
            sha256: sha256.to_string(),
            kept_bytes: size,
            params: None,
            reason: None,
            pending: true,
        },
    )
}

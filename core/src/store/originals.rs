//! The original form of each image: how to give back the exact compressed bytes it came as
//! (the bytes a publisher signed), from the canonical tar the store regenerates.
//!
//! ```text
//! STORE/originals/<hex>.json   the record: {"form", "size", "sha256", "kept_bytes", ...}
//! STORE/originals/<hex>.gzc    form `gzip`: the correction record (`archive::gzip_original`)
//! STORE/originals/<hex>.aci    form `kept`: the original bytes, as they came
//! ```
//!
//! An import records the original while it reads the archive: [`start`] tees the compressed
//! bytes to a recorder thread, which spools them into the import's staging folder (the
//! fallback), makes a gzip correction record as they stream, and at the end decides the form
//! (`none`, `gzip`, `recompress`, or `kept` when nothing else re-creates the bytes exactly).
//! Its files live in the staging folder until the import commits, and [`publish`] moves them
//! into `originals/` (the `.json` last, under the commit lock, like the recipe), so a failed
//! or cancelled import leaves nothing. `rm` removes them with the image, `gc` those of images
//! no longer indexed, `fsck` re-creates each original and checks its hash.
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

/// Every file of an image's original form, the record first.
pub(crate) fn files_of(paths: &StorePaths, id: &ImageId) -> [PathBuf; 3] {
    [
        record_path(paths, id),
        corrections_path(paths, id),
        kept_path(paths, id),
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

/// The recorder thread: spools, hashes and (for gzip) records corrections as bytes come.
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
    let mut gzip: Option<GzipRecorder<BufWriter<File>>> = None;
    let corrections_path = dir.join(CORRECTIONS);
    let spool_err = |e| Error::io("spooling the original archive", e);
    let on_chunk = |chunk: &[u8],
                    compression: &mut Option<Compression>,
                    gzip: &mut Option<GzipRecorder<BufWriter<File>>>|
     -> Result<()> {
        if let Some(Compression::Gzip) = compression
            && let Some(rec) = gzip.as_mut()
        {
            rec.feed(chunk)?;
            if rec.unfit().is_some() {
                *gzip = None;
            }
        }
        Ok(())
    };
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
        if compression.is_none() {
            head.extend_from_slice(&chunk);
            if head.len() < DETECT_LEN {
                continue;
            }
            let head = std::mem::take(&mut head);
            compression = Some(detected(&head, &corrections_path, &mut gzip)?);
            // A plain tar is its own original: nothing to spool.
            if compression != Some(Compression::None) {
                spool.write_all(&head).map_err(spool_err)?;
            }
            on_chunk(&head, &mut compression, &mut gzip)?;
        } else {
            if compression != Some(Compression::None) {
                spool.write_all(&chunk).map_err(spool_err)?;
            }
            on_chunk(&chunk, &mut compression, &mut gzip)?;
        }
    }
    if compression.is_none() {
        let head = std::mem::take(&mut head);
        compression = Some(detected(&head, &corrections_path, &mut gzip)?);
        if compression != Some(Compression::None) {
            spool.write_all(&head).map_err(spool_err)?;
        }
        on_chunk(&head, &mut compression, &mut gzip)?;
    }
    let compression = compression.unwrap_or(Compression::None);
    let spool = spool.into_inner().map_err(|e| spool_err(e.into_error()))?;
    let sha256 = hex::encode(hasher.finalize());
    let mut record = OriginalRecord {
        form: OriginalForm::Kept,
        compression: compression.as_str().to_string(),
        size,
        sha256,
        kept_bytes: 0,
        params: None,
        reason: None,
    };
    match compression {
        Compression::None => {
            drop(spool);
            let _ = std::fs::remove_file(&spool_path);
            record.form = OriginalForm::None;
            return Ok(Staged { record, file: None });
        }
        Compression::Gzip => {
            let outcome = match gzip {
                Some(rec) => rec.finish()?,
                None => Err(gzip_original::Unfit(
                    "preflate-rs cannot record this gzip stream".into(),
                )),
            };
            match outcome {
                Ok(done) => {
                    drop(done.out);
                    drop(spool);
                    let _ = std::fs::remove_file(&spool_path);
                    record.form = OriginalForm::Gzip;
                    record.kept_bytes = done.record_size;
                    return Ok(Staged {
                        record,
                        file: Some(corrections_path),
                    });
                }
                Err(unfit) => {
                    let _ = std::fs::remove_file(&corrections_path);
                    // Work after the archive was read: its own phase.
                    observer.report(crate::Phase::Original, 0, None);
                    if is_our_gzip_export(&spool_path, &record, cancel)? {
                        drop(spool);
                        let _ = std::fs::remove_file(&spool_path);
                        record.form = OriginalForm::GzipExport;
                        return Ok(Staged { record, file: None });
                    }
                    record.reason = Some(unfit.0);
                }
            }
        }
        other => {
            if cancel.is_cancelled() {
                return Err(cancelled());
            }
            // The parameter search runs after the archive was read: its own phase.
            observer.report(crate::Phase::Original, 0, None);
            let mut open_original = || -> std::io::Result<Box<dyn Read + Send>> {
                Ok(Box::new(BufReader::new(File::open(&spool_path)?)))
            };
            let mut open_decompressed = || -> std::io::Result<Box<dyn Read + Send>> {
                decompressor(other, File::open(&spool_path)?)
            };
            match recompress::detect(other, &mut open_original, &mut open_decompressed, cancel)? {
                Some(params) => {
                    drop(spool);
                    let _ = std::fs::remove_file(&spool_path);
                    record.form = OriginalForm::Recompress;
                    record.params = Some(params);
                    return Ok(Staged { record, file: None });
                }
                None => {
                    record.reason = Some(format!(
                        "no parameters of our {other} encoder re-create these bytes"
                    ));
                }
            }
        }
    }
    spool
        .sync_all()
        .map_err(|e| Error::io("syncing the kept original", e))?;
    record.kept_bytes = size;
    Ok(Staged {
        record,
        file: Some(spool_path),
    })
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

/// The compression of an archive starting with `head`; for gzip, starts its recorder.
fn detected(
    head: &[u8],
    corrections: &Path,
    gzip: &mut Option<GzipRecorder<BufWriter<File>>>,
) -> Result<Compression> {
    let found = compression::detect(head).unwrap_or(Compression::None);
    if found == Compression::Gzip {
        *gzip = Some(new_gzip(corrections)?);
    }
    Ok(found)
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
/// start: the only way the original leaves the store, so no unchecked byte is ever given out.
pub(crate) fn recreate_verified(
    paths: &StorePaths,
    objects: &ObjectPaths,
    id: &ImageId,
    cancel: &CancelToken,
) -> Result<(File, OriginalRecord)> {
    let record = load(paths, id)?.ok_or_else(|| no_original(id))?;
    // In the store's `tmp/`; a read-only store exports through the system's temporary folder.
    let file = match unnamed_file(&paths.tmp()) {
        Ok(file) => file,
        Err(_) => unnamed_file(&std::env::temp_dir())?,
    };
    let mut out = BufWriter::with_capacity(1 << 20, file);
    recreate_checked(paths, objects, id, &record, &mut out, cancel)?;
    let mut file = out
        .into_inner()
        .map_err(|e| Error::io("writing the original", e.into_error()))?;
    file.rewind()
        .map_err(|e| Error::io("rewinding the original", e))?;
    Ok((file, record))
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
            reason: Some("kept as pushed".into()),
        },
    )
}

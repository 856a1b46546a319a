//! Serving: any byte range of an image's canonical tar, regenerated from its recipe and the
//! content objects, starting where the range starts, without hashing the whole stream.
//!
//! [`super::regenerate`] is what `acikit export` and `fsck` use: it regenerates the whole tar
//! and fails unless its SHA-512 is the image ID. A server cannot afford that on every download:
//! one SHA-512 stream runs at ~0.85 GB/s here, well below what the page cache and loopback
//! deliver, and a range request would have to regenerate (and hash) everything before its start.
//! [`tar_range`] is the serving path instead.
//!
//! # Seeking
//!
//! The recipe gives every record's length, so the range start is found by adding them up:
//! records that end before the start are passed over, and the objects they name are neither
//! opened nor read. The first object (or Meta record) the range touches is read from the right
//! offset (`pread`), and the thread stops at the range end. The recipe itself is still decoded
//! from its beginning (it is one zstd frame, ~0.2% of the tar: ~3 ms to reach the last byte of
//! the 211 MB Debian image).
//!
//! # What serving checks, and what it does not
//!
//! Objects are named by their SHA-256, were hashed when they were written, are never modified
//! (mode 0444, replaced only by a rename of the same content), and `fsck` re-hashes them all; the
//! client checks the image ID (or the signature) of what it downloads anyway. So serving does
//! not hash contents. It does check, for free or nearly:
//!
//! - before the response starts (an error here is a plain HTTP error): the recipe exists, its
//!   footer names this image and the tar length the index has (the `Content-Length` sent);
//! - every record it decodes is well formed (the recipe reader's structural checks);
//! - every object the range touches exists and has exactly the length the recipe gives
//!   (`fstat`), and reading it yields that many bytes;
//! - when the range runs to the end of the tar, the recipe is decoded to its End record
//!   before the last chunk is released, which checks the recipe's zstd checksum, its trailer
//!   against its records and its footer.
//!
//! A failure after the response started is delivered as an error item of the stream, which
//! makes the server abort the response: the client gets a truncated body (fewer bytes than
//! `Content-Length`), never silently wrong bytes of the right length for any of the above. The
//! last chunk is always held back until the range is complete (and, for the end of the tar,
//! checked), so a failure cannot come after the last byte was sent. What is *not* detected is
//! an object whose bytes changed but not its length: that is what `fsck` (and the client's
//! ID check) is for.
//!
//! # Speed
//!
//! One thread per response (`acikit-serve`) decodes the recipe and reads the objects straight
//! into [`CHUNK`]-byte buffers (one copy: page cache to buffer); the buffers go to the response
//! as `Bytes` without another copy and come back to a small pool when the server has written
//! them, so no buffer is allocated or zeroed per chunk. Objects are opened relative to the
//! store's object folder ([`Objects::Folder`]). On the Debian image (6,769 entries) this
//! regenerates as fast as `tokio::fs` reads the same tar from one file; what is left per object
//! is `openat`, `statx`, `pread` and `close`.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll};

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};
use tokio::sync::{mpsc, oneshot};

use super::digest::ContentDigest;
use super::paths::StorePaths;
use super::recipe::{RecipeReader, RecipeRecord, read_trailer};
use super::regenerate::{ObjectPaths, open_recipe_file, recipe_error};
use crate::{Error, ErrorKind, Result};

/// Where [`tar_range`] finds the content objects.
#[derive(Clone)]
pub enum Objects {
    /// A store's object folder ([`StorePaths::objects`]): it is opened once and each object
    /// relative to it ([`StorePaths::object_in_objects`]), which spares the kernel a walk of
    /// the whole path per object (about half the cost of opening one, and there is one per
    /// file of the image).
    Folder(PathBuf),
    /// Any mapping of digests to paths.
    Paths(ObjectPaths),
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Objects::Folder(dir) => f.debug_tuple("Folder").field(dir).finish(),
            Objects::Paths(_) => f.write_str("Paths(..)"),
        }
    }
}

/// [`Objects`], ready to open objects on the regenerating thread.
enum Opener<'a> {
    Folder { dir: &'a Path, fd: OwnedFd },
    Paths(&'a ObjectPaths),
}

impl<'a> Opener<'a> {
    fn new(objects: &'a Objects) -> Result<Opener<'a>> {
        match objects {
            Objects::Folder(dir) => {
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let fd = rustix::fs::open(dir, flags, Mode::empty()).map_err(|e| {
                    Error::io(
                        format!("opening the object folder {}", dir.display()),
                        e.into(),
                    )
                })?;
                Ok(Opener::Folder { dir, fd })
            }
            Objects::Paths(paths) => Ok(Opener::Paths(paths)),
        }
    }

    /// The path of an object (for messages, and to open it by path).
    fn path(&self, digest: &ContentDigest) -> PathBuf {
        match self {
            Opener::Folder { dir, .. } => dir.join(StorePaths::object_in_objects(digest)),
            Opener::Paths(paths) => paths(digest),
        }
    }

    fn open(&self, digest: &ContentDigest) -> io::Result<File> {
        match self {
            Opener::Folder { fd, .. } => {
                let name = StorePaths::object_in_objects(digest);
                let flags = OFlags::RDONLY | OFlags::CLOEXEC;
                Ok(File::from(rustix::fs::openat(
                    fd,
                    &name,
                    flags,
                    Mode::empty(),
                )?))
            }
            Opener::Paths(paths) => File::open(paths(digest)),
        }
    }
}

/// Size of the chunks handed to the response (the first and last ones may be shorter).
pub const CHUNK: usize = 256 * 1024;
/// Chunks queued between the regenerating thread and the response (4 MiB). On two loaded
/// cores (three busy loops beside server and client), 16 served the Debian image ~10% faster
/// than 8, as the thread can run ahead while it has a core; 32 gave no more.
const DEPTH: usize = 16;
/// Buffers kept for reuse (the queue, plus what the server is still writing).
const POOL: usize = DEPTH + 8;

/// Bytes `start..end` of the canonical tar of the image whose recipe is at `recipe`, as a
/// stream of chunks (a `futures` `Stream`, or [`TarRange::next_chunk`]), regenerated on a
/// thread of its own.
///
/// `image` is the raw image ID and `tar_size` the tar length the index has for it: the recipe
/// must agree with both, else [`ErrorKind::CorruptStore`] is returned before any byte is
/// produced. Later failures (a missing or resized object, a damaged recipe) are the stream's
/// last item, an error (see the module documentation for what is checked). Contents are not
/// hashed: use `super::regenerate` where the image ID must be proven.
///
/// Errors: [`ErrorKind::InvalidArgument`] unless `start <= end <= tar_size`.
pub async fn tar_range(
    recipe: PathBuf,
    objects: Objects,
    image: [u8; 64],
    tar_size: u64,
    start: u64,
    end: u64,
) -> Result<TarRange> {
    if start > end || end > tar_size {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("bytes {start}..{end} of a tar of {tar_size} bytes"),
        ));
    }
    let (tx, rx) = mpsc::channel(DEPTH);
    let (ready_tx, ready_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("acikit-serve".into())
        .spawn(move || {
            let job = Job {
                recipe: &recipe,
                objects: &objects,
                image: &image,
                tar_size,
                start,
                end,
            };
            serve_thread(&job, ready_tx, tx)
        })
        .map_err(|e| Error::io("cannot start the regenerating thread", e))?;
    match ready_rx.await {
        Ok(Ok(())) => Ok(TarRange {
            rx,
            left: end - start,
            failed: None,
        }),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(Error::new(
            ErrorKind::Internal,
            format!(
                "the regenerating thread of {} ended without an answer",
                image_name(&image)
            ),
        )),
    }
}

/// A byte range of an image's tar, being regenerated; made by [`tar_range`].
///
/// It yields exactly the bytes asked for, then ends; any failure is an error item (the last),
/// never a short clean end. Dropping it stops its thread.
#[derive(Debug)]
pub struct TarRange {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    /// Bytes still to come.
    left: u64,
    /// The error already delivered, delivered again on every later poll.
    failed: Option<(ErrorKind, String)>,
}

impl TarRange {
    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// The next chunk, without copying: `Ok(None)` once every byte of the range came.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx))
            .await
            .transpose()
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if let Some((kind, message)) = &self.failed {
            return Poll::Ready(Some(Err(Error::new(*kind, message.clone()).into())));
        }
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let item = match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(Ok(chunk)) if chunk.len() as u64 <= self.left => {
                self.left -= chunk.len() as u64;
                return Poll::Ready(Some(Ok(chunk)));
            }
            Some(Ok(chunk)) => Error::new(
                ErrorKind::Io,
                format!(
                    "the regenerated range is {} bytes too long",
                    chunk.len() as u64 - self.left
                ),
            ),
            Some(Err(err)) => Error::from(err),
            None => Error::new(
                ErrorKind::Internal,
                format!(
                    "the regenerating thread stopped {} bytes before the end",
                    self.left
                ),
            ),
        };
        self.failed = Some((item.kind(), item.message().to_string()));
        Poll::Ready(Some(Err(item.into())))
    }
}

impl futures_util::Stream for TarRange {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left > 0), None)
    }
}

/// What one regenerating thread does.
struct Job<'a> {
    recipe: &'a Path,
    objects: &'a Objects,
    image: &'a [u8; 64],
    tar_size: u64,
    start: u64,
    end: u64,
}

/// The regenerating thread: the checks before the response (answered on `ready`), then the
/// chunks, then a clean end or the error.
fn serve_thread(
    job: &Job<'_>,
    ready: oneshot::Sender<Result<()>>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let reader = match open_recipe(job) {
            Ok(reader) => reader,
            Err(err) => {
                let _ = ready.send(Err(err));
                return Ok(());
            }
        };
        let opener = match Opener::new(job.objects) {
            Ok(opener) => opener,
            Err(err) => {
                let _ = ready.send(Err(err));
                return Ok(());
            }
        };
        if ready.send(Ok(())).is_err() {
            return Ok(());
        }
        let mut out = Chunks::new(&tx);
        produce(job, &opener, reader, &mut out)
    }));
    let err = match result {
        Ok(Ok(())) => return,
        Ok(Err(err)) if err.kind() == ErrorKind::Cancelled => return,
        Ok(Err(err)) => err,
        Err(panic) => {
            crate::error::panicked(format!("serving {}", image_name(job.image)), panic.as_ref())
        }
    };
    // Fails harmlessly if the response is gone.
    let _ = tx.blocking_send(Err(err.into()));
}

/// `sha512-` and the hex digits: how an image is named in messages.
fn image_name(sha512: &[u8; 64]) -> String {
    format!("sha512-{}", hex::encode(sha512))
}

fn corrupt(message: String) -> Error {
    Error::new(ErrorKind::CorruptStore, message)
}

/// Opens the recipe and checks its footer against the image and the tar size.
fn open_recipe(job: &Job<'_>) -> Result<RecipeReader<File>> {
    let image = image_name(job.image);
    let recipe = job.recipe;
    let in_recipe = recipe_error(&image, recipe);
    let file = open_recipe_file(&image, recipe)?;
    let trailer = read_trailer(recipe).map_err(in_recipe)?;
    if trailer.image_sha512 != *job.image {
        return Err(corrupt(format!(
            "image {image}: the recipe {} says it is image {}",
            recipe.display(),
            image_name(&trailer.image_sha512)
        )));
    }
    if trailer.stream_len != job.tar_size {
        return Err(corrupt(format!(
            "image {image}: the recipe {} gives a tar of {} bytes, the index {}",
            recipe.display(),
            trailer.stream_len,
            job.tar_size
        )));
    }
    RecipeReader::new(file).map_err(in_recipe)
}

/// Walks the recipe to `job.start` without reading any object, then regenerates up to
/// `job.end`.
fn produce(
    job: &Job<'_>,
    objects: &Opener<'_>,
    mut reader: RecipeReader<File>,
    out: &mut Chunks<'_>,
) -> Result<()> {
    let image = image_name(job.image);
    let in_recipe = recipe_error(&image, job.recipe);
    let (start, end) = (job.start, job.end);
    let mut pos = 0u64;
    while pos < end {
        let Some(record) = reader.next_record().map_err(in_recipe)? else {
            return Err(corrupt(format!(
                "image {image}: the recipe {} ends after {pos} bytes of the tar",
                job.recipe.display()
            )));
        };
        let len = record.tar_len();
        let record_end = pos + len;
        if record_end > start {
            // The part of this record inside the range.
            let from = start.saturating_sub(pos);
            let to = len.min(end - pos);
            match record {
                RecipeRecord::Meta(bytes) => out.put(&bytes[from as usize..to as usize])?,
                RecipeRecord::Content { digest: None, .. } => {}
                RecipeRecord::Content {
                    digest: Some(digest),
                    ..
                } => {
                    let object = Object {
                        digest: &digest,
                        len,
                        at: pos,
                    };
                    object.copy(objects, &image, from, to, out)?;
                }
                RecipeRecord::Sparse { map, digest, .. } => {
                    let object = Object {
                        digest: &digest,
                        len: map.real_size,
                        at: pos,
                    };
                    // The record's bytes are the segments one after another: copy the part of
                    // each that falls in `from..to`, from where it lies in the object.
                    let file = object.open(objects, &image)?;
                    let mut seg_start = 0u64;
                    for seg in &map.segments {
                        let seg_end = seg_start + seg.length;
                        let lo = from.max(seg_start);
                        let hi = to.min(seg_end);
                        if lo < hi {
                            let shift = seg.offset - seg_start;
                            object.read(&file, objects, &image, lo + shift, hi + shift, out)?;
                        }
                        seg_start = seg_end;
                        if seg_start >= to {
                            break;
                        }
                    }
                }
            }
        }
        pos = record_end;
    }
    if end == job.tar_size {
        // The whole tail was served: the rest of the recipe must be empty, and reading to
        // its End record checks its checksum, trailer and footer.
        while reader.next_record().map_err(in_recipe)?.is_some() {}
    }
    out.finish()
}

/// A content object at offset `at` of the tar.
struct Object<'a> {
    digest: &'a ContentDigest,
    len: u64,
    at: u64,
}

impl Object<'_> {
    /// Appends its bytes `from..to` to the stream.
    fn copy(
        &self,
        objects: &Opener<'_>,
        image: &str,
        from: u64,
        to: u64,
        out: &mut Chunks<'_>,
    ) -> Result<()> {
        let file = self.open(objects, image)?;
        self.read(&file, objects, image, from, to, out)
    }

    /// Describes the object, for errors.
    fn what(&self, objects: &Opener<'_>, image: &str) -> String {
        format!(
            "image {image}: content object {} ({} bytes at offset {} of the tar, {})",
            self.digest,
            self.len,
            self.at,
            objects.path(self.digest).display()
        )
    }

    /// Opens the object, checking its size.
    fn open(&self, objects: &Opener<'_>, image: &str) -> Result<std::fs::File> {
        let what = || self.what(objects, image);
        let file = match objects.open(self.digest) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(corrupt(format!("{} is missing", what())));
            }
            Err(e) => return Err(Error::io(what(), e)),
        };
        let actual = file.metadata().map_err(|e| Error::io(what(), e))?.len();
        if actual != self.len {
            return Err(corrupt(format!("{} has {actual} bytes instead", what())));
        }
        Ok(file)
    }

    /// Appends the bytes `from..to` of the opened object to the stream.
    fn read(
        &self,
        file: &std::fs::File,
        objects: &Opener<'_>,
        image: &str,
        from: u64,
        to: u64,
        out: &mut Chunks<'_>,
    ) -> Result<()> {
        let what = || self.what(objects, image);
        // An object with holes: where the current data or hole run ends, and which it is
        // (`SEEK_DATA`/`SEEK_HOLE`); holes become zeros without being read.
        let sparse = std::os::unix::fs::MetadataExt::blocks(
            &file.metadata().map_err(|e| Error::io(what(), e))?,
        ) * 512
            < self.len;
        let mut run: Option<(bool, u64)> = None;
        let mut offset = from;
        while offset < to {
            let mut limit = to;
            if sparse {
                if run.is_none_or(|(_, end)| end <= offset) {
                    run = Some(
                        hole_or_data(file, offset, self.len).map_err(|e| Error::io(what(), e))?,
                    );
                }
                let (hole, end) = run.expect("just found");
                limit = limit.min(end);
                if hole {
                    let room = out.room()?;
                    let n = room
                        .len()
                        .min(usize::try_from(limit - offset).unwrap_or(usize::MAX));
                    room[..n].fill(0);
                    offset += n as u64;
                    out.advance(n);
                    continue;
                }
            }
            let room = out.room()?;
            let want = room
                .len()
                .min(usize::try_from(limit - offset).unwrap_or(usize::MAX));
            let n = match file.read_at(&mut room[..want], offset) {
                Ok(0) => {
                    return Err(corrupt(format!("{} ends after {offset} bytes", what())));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(what(), e)),
            };
            offset += n as u64;
            out.advance(n);
        }
        Ok(())
    }
}

/// Whether `offset` of `file` (of `len` bytes) is in a hole, and where that hole or data
/// run ends (`SEEK_DATA`/`SEEK_HOLE`; without them, all data).
fn hole_or_data(file: &File, offset: u64, len: u64) -> io::Result<(bool, u64)> {
    use rustix::fs::SeekFrom;
    use rustix::io::Errno;
    match rustix::fs::seek(file, SeekFrom::Data(offset)) {
        Ok(data) if data > offset => Ok((true, data.min(len))),
        Ok(_) => {
            let hole = rustix::fs::seek(file, SeekFrom::Hole(offset))?;
            Ok((false, hole.min(len).max(offset + 1)))
        }
        Err(Errno::NXIO) => Ok((true, len)),
        Err(Errno::INVAL | Errno::OPNOTSUPP) => Ok((false, len)),
        Err(e) => Err(e.into()),
    }
}

/// Fills pooled [`CHUNK`]-byte buffers and sends each, full, to the response; the last one
/// only from [`finish`](Self::finish).
struct Chunks<'a> {
    tx: &'a mpsc::Sender<io::Result<Bytes>>,
    /// The buffer being filled (empty: none yet).
    buf: Vec<u8>,
    filled: usize,
    /// Buffers the response has finished with.
    free: std_mpsc::Receiver<Vec<u8>>,
    home: std_mpsc::SyncSender<Vec<u8>>,
}

impl<'a> Chunks<'a> {
    fn new(tx: &'a mpsc::Sender<io::Result<Bytes>>) -> Chunks<'a> {
        let (home, free) = std_mpsc::sync_channel(POOL);
        Chunks {
            tx,
            buf: Vec::new(),
            filled: 0,
            free,
            home,
        }
    }

    /// The free part of the current buffer (never empty). A full buffer is sent first: so
    /// the last bytes stay here until [`finish`](Self::finish).
    fn room(&mut self) -> Result<&mut [u8]> {
        if self.filled == self.buf.len() {
            self.send()?;
            self.buf = self.free.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        }
        Ok(&mut self.buf[self.filled..])
    }

    fn advance(&mut self, n: usize) {
        self.filled += n;
    }

    fn put(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let room = self.room()?;
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.advance(n);
        }
        Ok(())
    }

    /// Sends the current buffer, if it holds anything.
    fn send(&mut self) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let chunk = Bytes::from_owner(Pooled {
            buf: std::mem::take(&mut self.buf),
            len: self.filled,
            home: self.home.clone(),
        });
        self.filled = 0;
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| Error::new(ErrorKind::Cancelled, "the response was dropped"))
    }

    /// Sends what is left: the range is complete.
    fn finish(&mut self) -> Result<()> {
        self.send()
    }
}

/// A chunk's buffer: back to the pool of its thread when the response drops the chunk.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    home: std_mpsc::SyncSender<Vec<u8>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Dropped instead when the pool is full or its thread is gone.
        let _ = self.home.try_send(std::mem::take(&mut self.buf));
    }
}

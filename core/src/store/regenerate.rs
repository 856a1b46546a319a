//! Export: regenerating an image's exact uncompressed tar from its recipe and the content
//! objects, hashing it as it streams.
//!
//! The recipe gives, in order, the tar's non-content bytes and, for each member's content, the
//! object holding it (see [`super::recipe`]). The regenerated stream is cut into [`CHUNK`]-byte
//! chunks (object data is read straight into them, 256 KiB at a time); each chunk goes to a
//! hashing thread (`acikit-sha512`) and to the output, so that reading the objects, writing the
//! output and the SHA-512 run side by side and an export goes at the speed of the hash alone.
//! Nothing is ever held whole: memory is a few chunks plus one Meta record of the recipe.
//!
//! The result must be the image: if an object is missing or has the wrong size, or if the
//! SHA-512 of what was produced is not the expected image ID, the export fails with
//! [`ErrorKind::CorruptStore`]. The async [`ExportReader`] delivers that failure as its last read
//! (after the data), never as a clean end.
//!
//! This is the path of `acikit export` and `fsck`, which promise the image ID. The server does
//! not use it for the canonical tar: [`super::range`] serves any byte range of it without the
//! whole-stream SHA-512 (which caps a stream at the speed of one hash) and seeks to the range.

use std::fs::File;
use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha512};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use super::digest::ContentDigest;
use super::recipe::{RecipeReader, RecipeRecord, RecipeTrailer};
use crate::archive::decode::ChunkReader;
use crate::{Error, ErrorKind, Result};

/// Where content objects live: maps a digest to its file path.
pub type ObjectPaths = Arc<dyn Fn(&ContentDigest) -> PathBuf + Send + Sync>;

/// Size of the chunks the regenerated stream is cut into (the last one may be shorter).
pub const CHUNK: usize = 256 * 1024;
/// Chunks queued for the hashing thread.
const HASHER_CHUNKS: usize = 8;
/// Chunks queued for the writer of [`regenerate_to`].
const WRITER_CHUNKS: usize = 8;
/// Chunks queued for an [`ExportReader`].
const READER_CHUNKS: usize = 8;

/// What a successful regeneration produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regenerated {
    /// Length of the tar.
    pub bytes: u64,
    /// Its SHA-512 (equal to the expected image ID).
    pub sha512: [u8; 64],
}

/// Regenerates the tar of the image whose recipe is at `recipe` and writes it to `out`
/// (blocking; flushes `out` at the end).
///
/// Errors: [`ErrorKind::CorruptStore`] if the recipe is damaged, an object is missing, shorter
/// or longer than the recipe says, or the SHA-512 of the result is not `expected_sha512` (the
/// message names the image and both hashes); [`ErrorKind::Io`] for other read or write errors.
/// On error, part of the tar may have been written: the caller deletes its output.
pub fn regenerate_to<W: Write>(
    recipe: &Path,
    objects: &ObjectPaths,
    expected_sha512: &[u8; 64],
    mut out: W,
) -> Result<Regenerated> {
    let write_error = |e| Error::io("writing the exported image", e);
    let mut write = |chunk: &Bytes| out.write_all(chunk).map_err(write_error);
    let done = regenerate(recipe, objects, expected_sha512, &mut write, true)?;
    out.flush().map_err(write_error)?;
    Ok(done)
}

/// Starts regenerating the image whose recipe is at `recipe` on a dedicated thread
/// (`acikit-export`), to be read through the returned [`ExportReader`].
///
/// The reader's last read is an error instead of a clean end if anything goes wrong, including a
/// SHA-512 that is not `expected_sha512` (see [`regenerate_to`] for the errors). Dropping the
/// reader stops the thread.
pub fn export_reader(
    recipe: PathBuf,
    objects: ObjectPaths,
    expected_sha512: [u8; 64],
) -> ExportReader {
    let (tx, rx) = mpsc::channel(READER_CHUNKS);
    let fallback = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("acikit-export".into())
        .spawn(move || export_thread(&recipe, &objects, &expected_sha512, tx));
    if let Err(e) = spawned {
        let err = Error::io("cannot start the export thread", e);
        let _ = fallback.try_send(Err(err.into()));
    }
    drop(fallback);
    ExportReader(ChunkReader::from_channel(rx))
}

/// The regenerated tar of an image, read asynchronously (`AsyncRead` and `AsyncBufRead`); made
/// by `export_reader`.
///
/// Reads return `Ok(0)` only at the end of a tar whose SHA-512 matched; any failure is an
/// [`io::Error`] that converts back to the [`Error`] (with `Error::from`), e.g. of kind
/// [`ErrorKind::CorruptStore`]. Dropping it stops the export thread.
#[derive(Debug)]
pub struct ExportReader(ChunkReader);

impl ExportReader {
    /// The next chunk of the tar, without copying: `Ok(None)` at the (verified) end.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        self.0.next_chunk().await
    }
}

impl AsyncRead for ExportReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncBufRead for ExportReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().0).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().0).consume(amt)
    }
}

/// The export thread: every chunk to the reader, then a clean end or the error.
fn export_thread(
    recipe: &Path,
    objects: &ObjectPaths,
    expected: &[u8; 64],
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut send = |chunk: &Bytes| {
            tx.blocking_send(Ok(chunk.clone()))
                .map_err(|_| Error::new(ErrorKind::Cancelled, "the export reader was dropped"))
        };
        regenerate(recipe, objects, expected, &mut send, false)
    }));
    let err = match result {
        // Dropping the sender is the reader's clean end.
        Ok(Ok(_)) => return,
        Ok(Err(err)) => err,
        Err(panic) => crate::error::panicked(
            format!("the export of {}", image_name(expected)),
            panic.as_ref(),
        ),
    };
    // Fails harmlessly if the reader is gone.
    let _ = tx.blocking_send(Err(err.into()));
}

/// `sha512-` and the hex digits: how an image is named in messages.
fn image_name(sha512: &[u8; 64]) -> String {
    format!("sha512-{}", hex::encode(sha512))
}

fn hasher_died() -> Error {
    Error::new(ErrorKind::Internal, "the hashing thread ended unexpectedly")
}

/// Regenerates the tar, handing each chunk to `emit` while a second thread hashes it; checks the
/// hash at the end.
///
/// With `writer_thread`, the recipe and objects are read on a thread of their own
/// (`acikit-export`) while the calling thread runs `emit` (a blocking write), so that reading,
/// writing and hashing all overlap; else `emit` (a quick hand-off) runs where they are read.
fn regenerate(
    recipe: &Path,
    objects: &ObjectPaths,
    expected: &[u8; 64],
    emit: &mut dyn FnMut(&Bytes) -> Result<()>,
    writer_thread: bool,
) -> Result<Regenerated> {
    let image = image_name(expected);
    let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<Bytes>(HASHER_CHUNKS);
    let hasher = std::thread::Builder::new()
        .name("acikit-sha512".into())
        .spawn(move || {
            let mut hasher = Sha512::new();
            for chunk in hash_rx {
                hasher.update(&chunk);
            }
            <[u8; 64]>::from(hasher.finalize())
        })
        .map_err(|e| Error::io("cannot start the hashing thread", e))?;
    let to_hasher = |chunk: &Bytes| hash_tx.send(chunk.clone()).map_err(|_| hasher_died());
    let produced = if writer_thread {
        produce_beside(recipe, objects, &image, &to_hasher, emit)
    } else {
        produce(recipe, objects, &image, &mut |chunk: Bytes| {
            to_hasher(&chunk)?;
            emit(&chunk)
        })
    };
    drop(hash_tx);
    let sha512 = hasher.join().map_err(|_| hasher_died())?;
    let (bytes, trailer) = produced?;
    if sha512 != *expected {
        return Err(Error::new(
            ErrorKind::CorruptStore,
            format!(
                "image {image}: the regenerated tar ({bytes} bytes) has the SHA-512 {}: \
                 a content object or the recipe {} is damaged",
                image_name(&sha512),
                recipe.display()
            ),
        ));
    }
    if trailer.image_sha512 != *expected {
        return Err(Error::new(
            ErrorKind::CorruptStore,
            format!(
                "image {image}: the recipe {} says it is image {}",
                recipe.display(),
                image_name(&trailer.image_sha512)
            ),
        ));
    }
    Ok(Regenerated { bytes, sha512 })
}

/// [`produce`] on a thread of its own, with `emit` on this one.
fn produce_beside(
    recipe: &Path,
    objects: &ObjectPaths,
    image: &str,
    to_hasher: &(dyn Fn(&Bytes) -> Result<()> + Sync),
    emit: &mut dyn FnMut(&Bytes) -> Result<()>,
) -> Result<(u64, RecipeTrailer)> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(WRITER_CHUNKS);
        let producer = std::thread::Builder::new()
            .name("acikit-export".into())
            .spawn_scoped(scope, move || {
                produce(recipe, objects, image, &mut |chunk: Bytes| {
                    to_hasher(&chunk)?;
                    tx.send(chunk)
                        .map_err(|_| Error::new(ErrorKind::Cancelled, "the output failed"))
                })
            })
            .map_err(|e| Error::io("cannot start the export thread", e))?;
        let mut failed = None;
        for chunk in &rx {
            if let Err(err) = emit(&chunk) {
                failed = Some(err);
                break;
            }
        }
        // Stops the producer if the output failed.
        drop(rx);
        let produced = producer.join().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Internal,
                format!("image {image}: the export thread panicked"),
            ))
        });
        match failed {
            Some(err) => Err(err),
            None => produced,
        }
    })
}

/// Puts "image IMAGE: recipe PATH:" before a recipe reading error's message.
pub(super) fn recipe_error<'a>(
    image: &'a str,
    recipe: &'a Path,
) -> impl Fn(Error) -> Error + Copy + 'a {
    move |e: Error| {
        Error::new(
            e.kind(),
            format!(
                "image {image}: recipe {}: {}",
                recipe.display(),
                e.message()
            ),
        )
    }
}

/// Opens image `image`'s recipe; a missing one is a `corrupt_store` error (the image is
/// indexed, so its recipe should be there).
pub(super) fn open_recipe_file(image: &str, recipe: &Path) -> Result<File> {
    File::open(recipe).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::new(
                ErrorKind::CorruptStore,
                format!("image {image}: its recipe {} is missing", recipe.display()),
            )
        } else {
            Error::io(
                format!("image {image}: opening its recipe {}", recipe.display()),
                e,
            )
        }
    })
}

/// Reads the recipe and the objects into chunks; returns the stream length and the trailer.
fn produce(
    recipe: &Path,
    objects: &ObjectPaths,
    image: &str,
    emit: &mut dyn FnMut(Bytes) -> Result<()>,
) -> Result<(u64, RecipeTrailer)> {
    let in_recipe = recipe_error(image, recipe);
    let file = open_recipe_file(image, recipe)?;
    let mut reader = RecipeReader::new(file).map_err(in_recipe)?;
    let mut chunks = Chunker {
        buf: BytesMut::new(),
        filled: 0,
        total: 0,
        emit,
    };
    while let Some(record) = reader.next_record().map_err(in_recipe)? {
        match record {
            RecipeRecord::Meta(bytes) => chunks.put(&bytes)?,
            RecipeRecord::Content { digest: None, .. } => {}
            RecipeRecord::Content {
                len,
                digest: Some(digest),
            } => copy_object(objects, &digest, len, image, &mut chunks)?,
            RecipeRecord::Sparse { len, map, digest } => {
                copy_sparse_object(objects, &digest, len, &map, image, &mut chunks)?
            }
        }
    }
    chunks.flush()?;
    let trailer = reader
        .trailer()
        .cloned()
        .expect("a trailer after the last record");
    Ok((chunks.total, trailer))
}

/// Appends the `len` bytes of object `digest` to the stream.
fn copy_object(
    objects: &ObjectPaths,
    digest: &ContentDigest,
    len: u64,
    image: &str,
    chunks: &mut Chunker<'_>,
) -> Result<()> {
    let path = objects(digest);
    let offset = chunks.position();
    let what = || {
        format!(
            "image {image}: content object {digest} ({len} bytes at offset {offset} of the tar, \
             {})",
            path.display()
        )
    };
    let io_error = |e: io::Error| Error::io(what(), e);
    let (mut file, meta) = open_object(&path, len, &what)?;
    let read = if std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < len {
        chunks.read_sparse_from(&mut file, len, io_error)?
    } else {
        chunks.read_from(&mut file, len, io_error)?
    };
    if read != len {
        return Err(Error::new(
            ErrorKind::CorruptStore,
            format!("{} ends after {read} bytes", what()),
        ));
    }
    Ok(())
}

/// Opens the content object at `path`, which must hold `len` bytes: a missing or resized
/// object is `corrupt_store`, named by `what`. Returns the file and its metadata.
fn open_object(
    path: &Path,
    len: u64,
    what: &dyn Fn() -> String,
) -> Result<(File, std::fs::Metadata)> {
    let io_error = |e: io::Error| Error::io(what(), e);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::CorruptStore,
                format!("{} is missing", what()),
            ));
        }
        Err(e) => return Err(io_error(e)),
    };
    let meta = file.metadata().map_err(io_error)?;
    if meta.len() != len {
        return Err(Error::new(
            ErrorKind::CorruptStore,
            format!("{} has {} bytes instead", what(), meta.len()),
        ));
    }
    Ok((file, meta))
}

/// Appends the stored bytes of a sparse member: the segments of `map` read from the object
/// `digest`, which holds the member's logical content (its holes are never read).
fn copy_sparse_object(
    objects: &ObjectPaths,
    digest: &ContentDigest,
    len: u64,
    map: &crate::archive::tar::SparseMap,
    image: &str,
    chunks: &mut Chunker<'_>,
) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let path = objects(digest);
    let offset = chunks.position();
    let what = || {
        format!(
            "image {image}: content object {digest} ({} bytes, of which {len} stored at offset \
             {offset} of the tar as a sparse member, {})",
            map.real_size,
            path.display()
        )
    };
    let io_error = |e: io::Error| Error::io(what(), e);
    let (mut file, _) = open_object(&path, map.real_size, &what)?;
    for seg in map.segments.iter().filter(|s| s.length > 0) {
        file.seek(SeekFrom::Start(seg.offset)).map_err(io_error)?;
        let read = chunks.read_from(&mut file, seg.length, io_error)?;
        if read != seg.length {
            return Err(Error::new(
                ErrorKind::CorruptStore,
                format!("{} ends early", what()),
            ));
        }
    }
    Ok(())
}

/// Cuts the stream into [`CHUNK`]-byte chunks, reading object data straight into them.
struct Chunker<'a> {
    /// The chunk being filled: empty, or [`CHUNK`] bytes of which `filled` are data.
    buf: BytesMut,
    filled: usize,
    /// Bytes emitted so far.
    total: u64,
    emit: &'a mut dyn FnMut(Bytes) -> Result<()>,
}

impl Chunker<'_> {
    /// Offset in the stream of the next byte.
    fn position(&self) -> u64 {
        self.total + self.filled as u64
    }

    /// The free part of the current chunk (never empty).
    fn room(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = BytesMut::zeroed(CHUNK);
        }
        &mut self.buf[self.filled..]
    }

    fn advance(&mut self, n: usize) -> Result<()> {
        self.filled += n;
        if self.filled == CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn put(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let room = self.room();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.advance(n)?;
        }
        Ok(())
    }

    /// Reads up to `len` bytes of `file` into the stream; returns how many (fewer at its end).
    fn read_from(
        &mut self,
        file: &mut File,
        len: u64,
        io_error: impl Fn(io::Error) -> Error,
    ) -> Result<u64> {
        let mut left = len;
        while left > 0 {
            let room = self.room();
            let want = room.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut room[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            };
            left -= n as u64;
            self.advance(n)?;
        }
        Ok(len - left)
    }

    /// Like [`Self::read_from`] for a file with holes: its data ranges are read
    /// (`SEEK_DATA`/`SEEK_HOLE`), its holes become zeros of the stream without being read.
    fn read_sparse_from(
        &mut self,
        file: &mut File,
        len: u64,
        io_error: impl Fn(io::Error) -> Error,
    ) -> Result<u64> {
        use rustix::fs::SeekFrom;
        use std::io::Seek;
        let mut pos = 0u64;
        while pos < len {
            let data = match rustix::fs::seek(&*file, SeekFrom::Data(pos)) {
                Ok(data) => data.min(len),
                Err(rustix::io::Errno::NXIO) => len,
                Err(_) => {
                    // No SEEK_DATA here: read the rest.
                    file.seek(io::SeekFrom::Start(pos)).map_err(&io_error)?;
                    return Ok(pos + self.read_from(file, len - pos, io_error)?);
                }
            };
            self.zeros(data - pos)?;
            if data >= len {
                break;
            }
            let hole = rustix::fs::seek(&*file, SeekFrom::Hole(data))
                .map_err(|e| io_error(e.into()))?
                .min(len);
            file.seek(io::SeekFrom::Start(data)).map_err(&io_error)?;
            let read = self.read_from(file, hole - data, &io_error)?;
            if read != hole - data {
                return Ok(data + read);
            }
            pos = hole;
        }
        Ok(len)
    }

    /// Appends `n` zeros: a new chunk is zeroed when it is made and written only up to
    /// `filled`, so its free part is zeros already.
    fn zeros(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let k = (self.room().len() as u64).min(n) as usize;
            self.advance(k)?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Emits the current chunk, if it holds anything.
    fn flush(&mut self) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let mut chunk = std::mem::take(&mut self.buf);
        chunk.truncate(self.filled);
        self.total += self.filled as u64;
        self.filled = 0;
        (self.emit)(chunk.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tar::TarReader;
    use crate::store::digest::ContentHasher;
    use crate::store::recipe::{RecipeSink, RecipeWriter, read_trailer};
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    fn sh(dir: &Path, script: &str) {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(dir)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A tar written by GNU tar in `format`, with a sparse file, an empty file, a file larger than
    /// a chunk, the same content twice, links and a directory.
    fn gnu_tar(format: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        sh(
            dir.path(),
            "mkdir -p rootfs/etc rootfs/empty-dir
             printf '{\"acKind\":\"ImageManifest\"}' > manifest
             echo hello > rootfs/etc/hello
             echo hello > rootfs/etc/hello-again
             : > rootfs/etc/empty
             head -c 700000 /dev/urandom > rootfs/big
             truncate -s 5M rootfs/sparse
             printf x | dd of=rootfs/sparse seek=1000 bs=1 conv=notrunc 2>/dev/null
             printf y | dd of=rootfs/sparse seek=3000000 bs=1 conv=notrunc 2>/dev/null
             ln -s etc/hello rootfs/link
             ln rootfs/etc/hello rootfs/hard",
        );
        let out = Command::new("tar")
            .args([
                "--sparse", "--format", format, "-cf", "-", "manifest", "rootfs",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    struct Imported {
        _dir: tempfile::TempDir,
        objects_dir: PathBuf,
        recipe: PathBuf,
        objects: ObjectPaths,
        sha512: [u8; 64],
        trailer: RecipeTrailer,
    }

    /// Imports `tar` as the store will: objects named by digest, and a recipe.
    async fn import(tar: &[u8]) -> Imported {
        let dir = tempfile::tempdir().unwrap();
        let objects_dir = dir.path().join("objects");
        std::fs::create_dir(&objects_dir).unwrap();
        let recipe = dir.path().join("recipe");
        let file = std::io::BufWriter::new(File::create(&recipe).unwrap());
        let sink = RecipeSink::new(RecipeWriter::new(file).unwrap());
        let mut reader = TarReader::with_sink(tar, sink);
        let mut entries = 0;
        while let Some(_entry) = reader.next_entry().await.unwrap() {
            entries += 1;
            let mut hasher = ContentHasher::default();
            let mut content = Vec::new();
            while let Some(chunk) = reader.read_content().await.unwrap() {
                hasher.update(&chunk);
                content.extend_from_slice(&chunk);
            }
            if reader.sink().pending_content().is_some() {
                let digest = (!content.is_empty()).then(|| hasher.finish());
                if let Some(digest) = digest {
                    let path = objects_dir.join(digest.to_hex());
                    if !path.exists() {
                        std::fs::write(path, &content).unwrap();
                    }
                }
                reader.sink_mut().content_digest(digest).unwrap();
            }
        }
        let sha512: [u8; 64] = Sha512::digest(tar).into();
        let (out, trailer) = reader.into_sink().finish(sha512, entries).unwrap();
        out.into_inner().unwrap().sync_all().unwrap();
        assert_eq!(read_trailer(&recipe).unwrap(), trailer);
        let dir_for_paths = objects_dir.clone();
        Imported {
            _dir: dir,
            objects_dir,
            recipe,
            objects: Arc::new(move |d: &ContentDigest| dir_for_paths.join(d.to_hex())),
            sha512,
            trailer,
        }
    }

    async fn read_export(image: &Imported) -> (Vec<u8>, io::Result<usize>) {
        let mut reader = export_reader(image.recipe.clone(), image.objects.clone(), image.sha512);
        let mut out = Vec::new();
        let result = reader.read_to_end(&mut out).await;
        (out, result)
    }

    async fn round_trip(tar: &[u8]) -> Imported {
        let image = import(tar).await;
        let mut out = Vec::new();
        let done = regenerate_to(&image.recipe, &image.objects, &image.sha512, &mut out).unwrap();
        assert!(out == tar, "regenerated tar differs");
        assert_eq!(done.bytes, tar.len() as u64);
        assert_eq!(done.sha512, image.sha512);
        let (exported, result) = read_export(&image).await;
        result.unwrap();
        assert!(exported == tar, "exported tar differs");
        image
    }

    #[tokio::test]
    async fn round_trips_gnu_tar_with_sparse_files() {
        for format in ["gnu", "posix", "oldgnu"] {
            let tar = gnu_tar(format);
            let image = round_trip(&tar).await;
            // Same content twice ("hello"), one object; the empty file has none.
            assert_eq!(image.trailer.entries, 11, "{format}");
            let objects = std::fs::read_dir(&image.objects_dir).unwrap().count() as u64;
            assert_eq!(objects, image.trailer.content_refs - 1, "{format}");
        }
    }

    #[tokio::test]
    async fn round_trips_trailing_bytes_and_huge_padding() {
        let mut tar = gnu_tar("gnu");
        // More than one Meta piece of trailing bytes after the end blocks.
        tar.extend((0..3_000_000u32).map(|i| (i % 253) as u8));
        round_trip(&tar).await;
    }

    fn expect_corrupt(result: Result<Regenerated>, what: &str) -> Error {
        let err = result.expect_err(what);
        assert_eq!(err.kind(), ErrorKind::CorruptStore, "{what}: {err}");
        err
    }

    async fn expect_export_fails(image: &Imported, what: &str) -> Error {
        let (_, result) = read_export(image).await;
        let err = Error::from(result.expect_err(what));
        assert_eq!(err.kind(), ErrorKind::CorruptStore, "{what}: {err}");
        err
    }

    fn regenerate(image: &Imported) -> Result<Regenerated> {
        regenerate_to(&image.recipe, &image.objects, &image.sha512, io::sink())
    }

    /// The object of the 700000-byte file.
    fn big_object(image: &Imported) -> PathBuf {
        std::fs::read_dir(&image.objects_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.metadata().unwrap().len() == 700000)
            .unwrap()
    }

    #[tokio::test]
    async fn missing_or_resized_objects_are_corrupt_store() {
        let image = import(&gnu_tar("gnu")).await;
        let object = big_object(&image);
        let original = std::fs::read(&object).unwrap();

        std::fs::remove_file(&object).unwrap();
        let err = expect_corrupt(regenerate(&image), "missing object");
        assert!(err.message().contains("is missing"), "{err}");
        expect_export_fails(&image, "missing object").await;

        std::fs::write(&object, &original[..1000]).unwrap();
        let err = expect_corrupt(regenerate(&image), "short object");
        assert!(err.message().contains("has 1000 bytes"), "{err}");
        expect_export_fails(&image, "short object").await;

        std::fs::write(&object, [&original[..], b"more"].concat()).unwrap();
        expect_corrupt(regenerate(&image), "long object");
        expect_export_fails(&image, "long object").await;

        std::fs::write(&object, &original).unwrap();
        regenerate(&image).unwrap();

        let recipe = std::fs::read(&image.recipe).unwrap();
        std::fs::write(&image.recipe, &recipe[..recipe.len() / 2]).unwrap();
        let err = expect_corrupt(regenerate(&image), "truncated recipe");
        assert!(err.message().contains("corrupt recipe"), "{err}");
        expect_export_fails(&image, "truncated recipe").await;
        std::fs::remove_file(&image.recipe).unwrap();
        expect_corrupt(regenerate(&image), "missing recipe");
    }

    #[tokio::test]
    async fn tampered_content_fails_the_hash_check() {
        let tar = gnu_tar("posix");
        let image = import(&tar).await;
        let object = big_object(&image);
        let mut content = std::fs::read(&object).unwrap();
        content[12345] ^= 1;
        std::fs::write(&object, &content).unwrap();

        let mut out = Vec::new();
        let err = expect_corrupt(
            regenerate_to(&image.recipe, &image.objects, &image.sha512, &mut out),
            "tampered object",
        );
        let expected_name = image_name(&image.sha512);
        let actual_name = image_name(&Sha512::digest(&out).into());
        assert!(err.message().contains(&expected_name), "{err}");
        assert!(err.message().contains(&actual_name), "{err}");
        assert_eq!(out.len(), tar.len());

        // The async reader gives all the bytes, then an error instead of a clean end.
        let mut reader = export_reader(image.recipe.clone(), image.objects.clone(), image.sha512);
        let mut got = Vec::new();
        let err = loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                Ok(None) => panic!("a clean end on a corrupt export"),
                Err(err) => break Error::from(err),
            }
        };
        assert_eq!(err.kind(), ErrorKind::CorruptStore, "{err}");
        assert!(got == out);
        // And it stays failed.
        assert!(reader.read(&mut [0u8; 16]).await.is_err());

        // The right tar checked against another image ID.
        content[12345] ^= 1;
        std::fs::write(&object, &content).unwrap();
        let other = [9u8; 64];
        let err = expect_corrupt(
            regenerate_to(&image.recipe, &image.objects, &other, io::sink()),
            "another image",
        );
        assert!(err.message().contains(&image_name(&other)), "{err}");
    }

    /// Sets its flag when dropped.
    struct DropProbe(Arc<AtomicBool>);

    impl Drop for DropProbe {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn export_reader_is_a_static_send_reader() {
        fn check<T: AsyncRead + AsyncBufRead + Send + Sync + Unpin + 'static>() {}
        check::<ExportReader>();
    }

    #[tokio::test]
    async fn dropping_the_reader_stops_the_thread() {
        let mut tar = gnu_tar("gnu");
        // Trailing bytes: 40 MB more than the channels can hold.
        tar.extend(std::iter::repeat_n(7u8, 40 << 20));
        let image = import(&tar).await;
        let dropped = Arc::new(AtomicBool::new(false));
        let probe = DropProbe(dropped.clone());
        let inner = image.objects.clone();
        let objects: ObjectPaths = Arc::new(move |d: &ContentDigest| {
            let _ = &probe;
            inner(d)
        });
        let mut reader = export_reader(image.recipe.clone(), objects, image.sha512);
        assert!(!reader.next_chunk().await.unwrap().unwrap().is_empty());
        drop(reader);
        let start = Instant::now();
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the export thread did not stop"
            );
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(10)))
                .await
                .unwrap();
        }
    }

    /// Recipe size per entry and export speed on a realistic tar: the Debian image of the
    /// benchmarks if it was built, else `/usr/share/doc`.
    /// `cargo test --release -p acikit --lib store::regenerate -- --ignored --nocapture`
    #[tokio::test]
    #[ignore = "a measurement; run with --ignored --nocapture"]
    async fn measure_realistic_tar() {
        let bench =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/debian-minbase.tar");
        let (name, tar) = if bench.exists() {
            ("debian-minbase.tar", std::fs::read(&bench).unwrap())
        } else {
            let out = Command::new("tar")
                .args(["-cf", "-", "-C", "/usr/share", "doc"])
                .output()
                .unwrap();
            ("/usr/share/doc", out.stdout)
        };
        let image = import(&tar).await;
        let recipe_len = std::fs::metadata(&image.recipe).unwrap().len();
        let entries = image.trailer.entries;
        println!(
            "{name}: {} bytes, {entries} entries, {} content refs; recipe {recipe_len} bytes = \
             {:.1} bytes/entry",
            tar.len(),
            image.trailer.content_refs,
            recipe_len as f64 / entries as f64
        );

        let tar_path = image.objects_dir.with_file_name("image.tar");
        std::fs::write(&tar_path, &tar).unwrap();
        let out_path = image.objects_dir.with_file_name("export.tar");
        let mut best = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..5 {
            let start = Instant::now();
            let status = Command::new("sha512sum")
                .arg(&tar_path)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            best.0 = best.0.min(start.elapsed().as_secs_f64());

            let start = Instant::now();
            regenerate_to(&image.recipe, &image.objects, &image.sha512, io::sink()).unwrap();
            best.1 = best.1.min(start.elapsed().as_secs_f64());

            let _ = std::fs::remove_file(&out_path);
            let start = Instant::now();
            let out = File::create(&out_path).unwrap();
            regenerate_to(&image.recipe, &image.objects, &image.sha512, out).unwrap();
            best.2 = best.2.min(start.elapsed().as_secs_f64());

            let start = Instant::now();
            let (exported, result) = read_export(&image).await;
            result.unwrap();
            assert_eq!(exported.len(), tar.len());
            best.3 = best.3.min(start.elapsed().as_secs_f64());
        }
        let mb = tar.len() as f64 / 1e6;
        println!(
            "sha512sum {:.3}s ({:.0} MB/s); regenerate_to(sink) {:.3}s = {:.2}x; \
             regenerate_to(file) {:.3}s = {:.2}x; export_reader {:.3}s = {:.2}x",
            best.0,
            mb / best.0,
            best.1,
            best.0 / best.1,
            best.2,
            best.0 / best.2,
            best.3,
            best.0 / best.3
        );
    }
}

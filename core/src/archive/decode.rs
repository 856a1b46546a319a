//! Decompression and image-ID hashing, off the async runtime and pipelined.
//!
//! This module owns turning an archive's bytes (gzip, bzip2, xz, zstd or plain) into the
//! uncompressed tar stream, and computing the image ID: the SHA-512 of that whole stream.
//!
//! Both steps are CPU-bound and run at comparable speeds (inflate ~400 MB/s, SHA-512 ~600 MB/s
//! on one core), so they run on two dedicated threads: the decoder thread (`acikit-decode`)
//! reads the source to its end, decompresses it in [`CHUNK_SIZE`] chunks and hands each chunk
//! (a cheap [`Bytes`] clone) both to the hashing thread (`acikit-sha512`) and to a bounded
//! channel read by the async side through [`ChunkReader`]. Run serially they would reach only
//! ~240 MB/s; side by side on two cores the pipeline goes as fast as its slowest step, and the
//! async runtime never blocks. Every channel is bounded, so memory stays bounded
//! (a few MiB) whatever the image size.
//!
//! A decoding error (corrupt or truncated stream, trailing garbage, unreadable source) is sent
//! to the reader in-band as its last item (an [`io::Error`] wrapping the [`Error`]) and is also
//! returned by [`DecodedStream::finish`]. The whole source is always read and checked, even
//! when the reader stops early.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::thread::JoinHandle;

use bytes::{Buf, Bytes, BytesMut};
use sha2::{Digest, Sha512};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::compression::{self, Compression, DETECT_LEN};
use crate::{Error, ErrorKind, Result};

/// Size of the uncompressed chunks the decoder thread hands out (the last one may be shorter).
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Read buffer between the source and the decompressor.
const READ_BUFFER: usize = 256 * 1024;
/// Chunks queued for the async reader.
const READER_CHUNKS: usize = 8;
/// Chunks queued for the hashing thread.
const HASHER_CHUNKS: usize = 8;

/// What [`DecodedStream::finish`] reports about a fully decoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeSummary {
    /// The compression detected from the magic bytes.
    pub compression: Compression,
    /// Bytes read from the source (the archive file's size).
    pub compressed_size: u64,
    /// Bytes of the uncompressed stream.
    pub uncompressed_size: u64,
    /// SHA-512 of the uncompressed stream: the raw image ID.
    pub sha512: [u8; 64],
}

/// Starts decoding `source` on a dedicated thread.
///
/// The uncompressed bytes are read through [`DecodedStream::reader`]; the image ID and sizes come
/// from [`DecodedStream::finish`].
pub fn decode<R: Read + Send + 'static>(source: R) -> DecodedStream {
    start(source, None)
}

/// Opens the archive at `path` and starts decoding it (see [`decode`]).
///
/// Errors: the file cannot be opened ([`ErrorKind::NotFound`] or [`ErrorKind::Io`], naming the
/// path).
pub async fn decode_file(path: impl AsRef<Path>) -> Result<DecodedStream> {
    let path = path.as_ref();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let file = file.into_std().await;
    Ok(start(file, Some(path.display().to_string())))
}

/// A stream being decoded and hashed on background threads.
///
/// Read the uncompressed bytes with [`reader`](Self::reader) (or [`take_reader`](Self::take_reader)),
/// then call [`finish`](Self::finish) for the image ID. Dropping it without `finish` stops the
/// background threads promptly (unless a taken reader is still being read).
#[derive(Debug)]
pub struct DecodedStream {
    reader: ChunkReader,
    shared: Arc<Shared>,
    done: oneshot::Receiver<Result<DecodeSummary>>,
}

impl DecodedStream {
    /// The async reader of the uncompressed stream.
    #[cfg(test)]
    pub fn reader(&mut self) -> &mut ChunkReader {
        &mut self.reader
    }

    /// Takes the async reader out, to own it elsewhere; later calls get a reader that fails.
    pub fn take_reader(&mut self) -> ChunkReader {
        std::mem::replace(&mut self.reader, ChunkReader::taken())
    }

    /// Waits until the whole source is decoded and hashed, and returns the summary or the first
    /// error.
    ///
    /// Whatever the reader did not read is still hashed (it is no longer forwarded: a reader
    /// taken with [`take_reader`](Self::take_reader) fails with [`ErrorKind::Cancelled`] once
    /// its current chunk is used up). Does not block the async runtime.
    pub async fn finish(self) -> Result<DecodeSummary> {
        let DecodedStream {
            reader,
            shared,
            done,
        } = self;
        drop(reader);
        shared.close();
        done.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Internal,
                "the decoder thread ended without a result",
            ))
        })
    }

    /// A stream that fails at once with `err` (the decoder thread could not be started).
    fn failed(err: Error) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let (done_tx, done_rx) = oneshot::channel();
        let _ = tx.try_send(Err(io::Error::from(twin(&err))));
        let _ = done_tx.send(Err(err));
        let shared = Shared::new(rx);
        DecodedStream {
            reader: ChunkReader::new(shared.clone()),
            shared,
            done: done_rx,
        }
    }
}

/// The receiving end of the uncompressed chunks, shared by the reader and [`DecodedStream`]
/// so that `finish` can stop the forwarding even while a taken reader is alive.
#[derive(Debug)]
struct Shared {
    state: Mutex<ReceiverState>,
}

#[derive(Debug)]
struct ReceiverState {
    /// `None` once the reader was dropped or the stream finished.
    rx: Option<mpsc::Receiver<io::Result<Bytes>>>,
    /// The reader's task, woken when `rx` is closed under it.
    waker: Option<Waker>,
}

impl Shared {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(ReceiverState {
                rx: Some(rx),
                waker: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ReceiverState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops forwarding: the decoder thread goes on hashing without a reader.
    fn close(&self) {
        let (rx, waker) = {
            let mut state = self.lock();
            (state.rx.take(), state.waker.take())
        };
        drop(rx);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Async reader of the uncompressed stream (`AsyncRead` and `AsyncBufRead`).
///
/// Reads return `Ok(0)` at the clean end of the stream, and the decoding error, if any, as an
/// [`io::Error`] that converts back to the [`Error`] (with `Error::from`). Dropping it early is
/// fine: the stream is still hashed to its end for [`DecodedStream::finish`].
#[derive(Debug)]
pub struct ChunkReader {
    /// `None` for the placeholder left behind by [`DecodedStream::take_reader`].
    shared: Option<Arc<Shared>>,
    /// The unread rest of the current chunk.
    chunk: Bytes,
    state: ReaderState,
}

#[derive(Debug)]
enum ReaderState {
    Open,
    Ended,
    Failed(ErrorKind, String),
}

impl ChunkReader {
    fn new(shared: Arc<Shared>) -> Self {
        ChunkReader {
            shared: Some(shared),
            chunk: Bytes::new(),
            state: ReaderState::Open,
        }
    }

    /// A reader of the chunks another producer thread sends on `rx`: the stream ends cleanly
    /// when every sender is dropped, and an `Err` item is its (final) error.
    pub(crate) fn from_channel(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChunkReader::new(Shared::new(rx))
    }

    fn taken() -> Self {
        ChunkReader {
            shared: None,
            chunk: Bytes::new(),
            state: ReaderState::Failed(
                ErrorKind::InvalidArgument,
                "the reader was taken by DecodedStream::take_reader".into(),
            ),
        }
    }

    /// The next chunk of the uncompressed stream, without copying: `Ok(None)` at the clean end.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.chunk.is_empty() {
            return Ok(Some(std::mem::take(&mut self.chunk)));
        }
        loop {
            match std::future::poll_fn(|cx| self.poll_receive(cx)).await? {
                Some(chunk) if chunk.is_empty() => continue,
                other => return Ok(other),
            }
        }
    }

    /// Receives the next chunk from the decoder thread (ignores the current chunk).
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        match &self.state {
            ReaderState::Open => {}
            ReaderState::Ended => return Poll::Ready(Ok(None)),
            ReaderState::Failed(kind, message) => {
                return Poll::Ready(Err(Error::new(*kind, message.clone()).into()));
            }
        }
        let Some(shared) = &self.shared else {
            return Poll::Ready(Ok(None));
        };
        let mut state = shared.lock();
        let Some(rx) = state.rx.as_mut() else {
            return Poll::Ready(Err(Error::new(
                ErrorKind::Cancelled,
                "the decoded stream was finished: its reader can no longer be read",
            )
            .into()));
        };
        match rx.poll_recv(cx) {
            Poll::Pending => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                self.state = ReaderState::Ended;
                Poll::Ready(Ok(None))
            }
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Ok(Some(chunk))),
            Poll::Ready(Some(Err(err))) => {
                let (kind, message) = match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
                    Some(e) => (e.kind(), e.message().to_string()),
                    None => (ErrorKind::Io, err.to_string()),
                };
                self.state = ReaderState::Failed(kind, message);
                Poll::Ready(Err(err))
            }
        }
    }

    /// Makes `self.chunk` non-empty, or reports the end (`false`).
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        while self.chunk.is_empty() {
            match ready!(self.poll_receive(cx))? {
                Some(chunk) => self.chunk = chunk,
                None => return Poll::Ready(Ok(false)),
            }
        }
        Poll::Ready(Ok(true))
    }
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.close();
        }
    }
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || !ready!(this.poll_chunk(cx))? {
            return Poll::Ready(Ok(()));
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk[..n]);
        this.chunk.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncBufRead for ChunkReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        ready!(this.poll_chunk(cx))?;
        Poll::Ready(Ok(&this.chunk[..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().chunk.advance(amt);
    }
}

/// The SHA-512 of the uncompressed stream, behind one small type so that a faster backend can be
/// swapped in.
struct StreamHasher(Sha512);

impl StreamHasher {
    fn new() -> Self {
        StreamHasher(Sha512::new())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self) -> [u8; 64] {
        self.0.finalize().into()
    }
}

/// The same error again (errors are not `Clone`): one goes in-band, one to `finish`.
fn twin(err: &Error) -> Error {
    Error::new(err.kind(), err.message())
}

fn start<R: Read + Send + 'static>(source: R, name: Option<String>) -> DecodedStream {
    let (tx, rx) = mpsc::channel(READER_CHUNKS);
    let (done_tx, done_rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("acikit-decode".into())
        .spawn(move || run(source, name, tx, done_tx));
    match spawned {
        Ok(_) => {
            let shared = Shared::new(rx);
            DecodedStream {
                reader: ChunkReader::new(shared.clone()),
                shared,
                done: done_rx,
            }
        }
        Err(e) => DecodedStream::failed(Error::io("cannot start the decoder thread", e)),
    }
}

/// Where the decoder thread sends each chunk.
struct Output {
    /// To the async reader; `None` once it is gone.
    reader: Option<mpsc::Sender<io::Result<Bytes>>>,
    hasher: Option<(std::sync::mpsc::SyncSender<Bytes>, JoinHandle<[u8; 64]>)>,
    /// Uncompressed bytes sent so far.
    uncompressed: u64,
}

impl Output {
    fn forwarding(&self) -> bool {
        self.reader.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    fn start_hasher(&mut self) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(HASHER_CHUNKS);
        let handle = std::thread::Builder::new()
            .name("acikit-sha512".into())
            .spawn(move || {
                let mut hasher = StreamHasher::new();
                for chunk in rx {
                    hasher.update(&chunk);
                }
                hasher.finish()
            })
            .map_err(|e| Error::io("cannot start the hashing thread", e))?;
        self.hasher = Some((tx, handle));
        Ok(())
    }

    fn emit(&mut self, chunk: Bytes) -> Result<()> {
        self.uncompressed += chunk.len() as u64;
        if let Some((tx, _)) = &self.hasher {
            tx.send(chunk.clone()).map_err(|_| hasher_died())?;
        }
        if let Some(tx) = &self.reader
            && tx.blocking_send(Ok(chunk)).is_err()
        {
            // The reader is gone: keep hashing, stop forwarding.
            self.reader = None;
        }
        Ok(())
    }

    fn digest(&mut self) -> Result<[u8; 64]> {
        let (tx, handle) = self.hasher.take().ok_or_else(hasher_died)?;
        drop(tx);
        handle.join().map_err(|_| hasher_died())
    }
}

fn hasher_died() -> Error {
    Error::new(ErrorKind::Internal, "the hashing thread ended unexpectedly")
}

/// The decoder thread.
fn run<R: Read>(
    source: R,
    name: Option<String>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    done: oneshot::Sender<Result<DecodeSummary>>,
) {
    let mut out = Output {
        reader: Some(tx),
        hasher: None,
        uncompressed: 0,
    };
    let mut compression = Compression::None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        decode_all(source, name.as_deref(), &mut out, &done, &mut compression)
    }));
    let result = result.unwrap_or_else(|panic| {
        Err(crate::error::panicked(
            format_args!(
                "the {compression} decoder at uncompressed offset {}",
                out.uncompressed
            ),
            panic.as_ref(),
        ))
    });
    match result {
        // Dropping the sender is the reader's clean end.
        Ok(Some(summary)) => {
            drop(out);
            let _ = done.send(Ok(summary));
        }
        // Nobody listens any more.
        Ok(None) => {}
        Err(err) => {
            let in_band = io::Error::from(twin(&err));
            let _ = done.send(Err(err));
            if let Some(tx) = out.reader.take() {
                let _ = tx.blocking_send(Err(in_band));
            }
        }
    }
}

/// Decodes the whole source; `Ok(None)` when it stopped because nobody listens any more.
fn decode_all<R: Read>(
    source: R,
    name: Option<&str>,
    out: &mut Output,
    done: &oneshot::Sender<Result<DecodeSummary>>,
    compression_out: &mut Compression,
) -> Result<Option<DecodeSummary>> {
    let source_state = Rc::new(SourceState::default());
    let mut counted = Counted {
        inner: source,
        state: source_state.clone(),
    };
    let source_name = name.unwrap_or("the image");
    let prefix = read_prefix(&mut counted, DETECT_LEN)
        .map_err(|e| Error::io(format!("reading {source_name}"), e))?;
    let compression = compression::detect(&prefix)?;
    *compression_out = compression;
    out.start_hasher()?;

    let fail = |err: io::Error, offset: u64| {
        if source_state.failed.get() || compression == Compression::None {
            Error::io(format!("reading {source_name}"), err)
        } else {
            let detail = if err.kind() == io::ErrorKind::UnexpectedEof {
                format!("unexpected end of file (the stream is truncated): {err}")
            } else {
                err.to_string()
            };
            Error::new(
                ErrorKind::CorruptCompression,
                format!(
                    "{compression} stream is corrupt at uncompressed offset {offset}: {detail}"
                ),
            )
            .with_source(err)
        }
    };

    let input = BufReader::with_capacity(READ_BUFFER, Read::chain(Cursor::new(prefix), counted));
    let mut decoder = Decoder::new(compression, input).map_err(|e| fail(e, 0))?;
    loop {
        if done.is_closed() && !out.forwarding() {
            return Ok(None);
        }
        let mut chunk = BytesMut::zeroed(CHUNK_SIZE);
        let mut filled = 0;
        while filled < CHUNK_SIZE {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e, out.uncompressed + filled as u64)),
            }
        }
        let end = filled < CHUNK_SIZE;
        if filled > 0 {
            chunk.truncate(filled);
            out.emit(chunk.freeze())?;
        }
        if end {
            break;
        }
    }
    // Every decoder reads its input to the end; make sure of it.
    match decoder.input().fill_buf() {
        Ok([]) => {}
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::CorruptCompression,
                format!(
                    "{compression} stream is corrupt at uncompressed offset {}: \
                     unexpected data after the end of the stream",
                    out.uncompressed
                ),
            ));
        }
        Err(e) => return Err(fail(e, out.uncompressed)),
    }
    let sha512 = out.digest()?;
    Ok(Some(DecodeSummary {
        compression,
        compressed_size: source_state.read.get(),
        uncompressed_size: out.uncompressed,
        sha512,
    }))
}

/// Reads up to `len` bytes (fewer only at the end of the source).
fn read_prefix(source: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(len);
    source.take(len as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// Counts the bytes read from the source and remembers whether it failed (to tell source I/O
/// errors from decoding errors).
#[derive(Default)]
struct SourceState {
    read: Cell<u64>,
    failed: Cell<bool>,
}

struct Counted<R> {
    inner: R,
    state: Rc<SourceState>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.state.read.set(self.state.read.get() + n as u64);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.state.failed.set(true);
                    return Err(e);
                }
            }
        }
    }
}

/// The decompressor for each compression, all reading the same buffered input.
enum Decoder<B: BufRead> {
    /// Passthrough; also the input left after the last gzip member.
    None(B),
    /// One gzip member at a time, so that data after the last member is named as such.
    Gzip(flate2::bufread::GzDecoder<B>),
    Bzip2(bzip2::bufread::MultiBzDecoder<B>),
    Xz(liblzma::bufread::XzDecoder<B>),
    Zstd(zstd::stream::read::Decoder<'static, B>),
    /// Only while switching gzip members.
    Switching,
}

impl<B: BufRead> Decoder<B> {
    fn new(compression: Compression, input: B) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Decoder::None(input),
            Compression::Gzip => Decoder::Gzip(flate2::bufread::GzDecoder::new(input)),
            Compression::Bzip2 => Decoder::Bzip2(bzip2::bufread::MultiBzDecoder::new(input)),
            Compression::Xz => Decoder::Xz(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(input)?),
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(d) => d.read(buf),
            Decoder::Gzip(d) => match d.read(buf)? {
                0 if !buf.is_empty() => self.next_gzip_member(buf),
                n => Ok(n),
            },
            Decoder::Bzip2(d) => d.read(buf),
            Decoder::Xz(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Switching => unreachable!("gzip member switch interrupted"),
        }
    }

    /// After a gzip member: the end of the input, another member, or trailing garbage.
    fn next_gzip_member(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Decoder::Gzip(member) = std::mem::replace(self, Decoder::Switching) else {
            unreachable!("not in a gzip member")
        };
        let mut input = member.into_inner();
        let next = input.fill_buf().map(|rest| rest.first().copied());
        let another = matches!(next, Ok(Some(0x1f)));
        *self = if another {
            Decoder::Gzip(flate2::bufread::GzDecoder::new(input))
        } else {
            Decoder::None(input)
        };
        match next {
            Err(e) => Err(e),
            Ok(None) => Ok(0),
            Ok(Some(0x1f)) => self.read(buf),
            Ok(Some(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected data after the last gzip member",
            )),
        }
    }

    /// The compressed input, after the decoder.
    fn input(&mut self) -> &mut B {
        match self {
            Decoder::None(d) => d,
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Bzip2(d) => d.get_mut(),
            Decoder::Xz(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
            Decoder::Switching => unreachable!("gzip member switch interrupted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    /// Sleeps without tokio's timer (the crate does not enable it).
    async fn sleep(duration: Duration) {
        tokio::task::spawn_blocking(move || std::thread::sleep(duration))
            .await
            .unwrap();
    }

    /// Semi-compressible bytes (text-like lines with random numbers).
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut out = Vec::with_capacity(len + 64);
        while out.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let line = format!(
                "rootfs/usr/lib/file-{} size={:x}\n",
                state >> 50,
                state >> 20
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(len);
        out
    }

    fn sha512(data: &[u8]) -> [u8; 64] {
        Sha512::digest(data).into()
    }

    /// Compresses with the system tool (`gzip`, `bzip2`, `xz`, `zstd`).
    fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        std::fs::write(&path, data).unwrap();
        let mut cmd = Command::new(tool);
        cmd.arg("-c");
        if tool == "zstd" {
            cmd.arg("-q");
        }
        let out = cmd.arg(&path).output().expect("compression tool");
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    const TOOLS: [(&str, Compression); 4] = [
        ("gzip", Compression::Gzip),
        ("bzip2", Compression::Bzip2),
        ("xz", Compression::Xz),
        ("zstd", Compression::Zstd),
    ];

    /// Decodes `input`, reading everything through the async reader.
    async fn run(input: Vec<u8>) -> (io::Result<Vec<u8>>, Result<DecodeSummary>) {
        let mut stream = decode(Cursor::new(input));
        let mut data = Vec::new();
        let read = stream.reader().read_to_end(&mut data).await.map(|_| data);
        (read, stream.finish().await)
    }

    async fn round_trip(input: Vec<u8>, expected: &[u8], compression: Compression) {
        let compressed_size = input.len() as u64;
        let (read, summary) = run(input).await;
        let data = read.unwrap();
        assert!(data == expected, "{compression}: output differs");
        let summary = summary.unwrap();
        assert_eq!(
            summary,
            DecodeSummary {
                compression,
                compressed_size,
                uncompressed_size: expected.len() as u64,
                sha512: sha512(expected),
            }
        );
    }

    /// Expects a CorruptCompression error both in-band and from `finish`.
    async fn expect_corrupt(input: Vec<u8>, what: &str) -> Error {
        let (read, summary) = run(input).await;
        let Err(read_err) = read else {
            panic!("{what}: the reader got no error");
        };
        let in_band = Error::from(read_err);
        assert_eq!(
            in_band.kind(),
            ErrorKind::CorruptCompression,
            "{what}: {in_band}"
        );
        let Err(err) = summary else {
            panic!("{what}: finish() returned no error");
        };
        assert_eq!(err.kind(), ErrorKind::CorruptCompression, "{what}: {err}");
        assert_eq!(err.message(), in_band.message());
        assert!(err.message().contains("at uncompressed offset"), "{err}");
        err
    }

    #[tokio::test]
    async fn round_trip_each_codec() {
        let data = sample(3_000_000, 1);
        for (tool, compression) in TOOLS {
            round_trip(compress(tool, &data), &data, compression).await;
        }
        // Small inputs: less than a chunk, less than the detection prefix.
        let small = b"tiny".to_vec();
        for (tool, compression) in TOOLS {
            round_trip(compress(tool, &small), &small, compression).await;
        }
        // An empty payload compressed is not an empty archive.
        for (tool, compression) in TOOLS {
            round_trip(compress(tool, b""), b"", compression).await;
        }
    }

    #[tokio::test]
    async fn uncompressed_passthrough() {
        let data = sample(1_000_000, 2);
        round_trip(data.clone(), &data, Compression::None).await;
        // Exactly one chunk, and a single byte.
        let data = sample(CHUNK_SIZE, 3);
        round_trip(data.clone(), &data, Compression::None).await;
        round_trip(b"x".to_vec(), b"x", Compression::None).await;
    }

    #[tokio::test]
    async fn multi_member_and_multi_stream() {
        let a = sample(700_000, 4);
        let b = sample(300_000, 5);
        let whole = [a.clone(), b.clone()].concat();
        for (tool, compression) in TOOLS {
            let input = [compress(tool, &a), compress(tool, &b)].concat();
            round_trip(input, &whole, compression).await;
        }
    }

    #[tokio::test]
    async fn zstd_skippable_frames() {
        let data = sample(100_000, 6);
        let skippable = |magic: u8| {
            let mut frame = vec![magic, 0x2a, 0x4d, 0x18, 5, 0, 0, 0];
            frame.extend_from_slice(b"hello");
            frame
        };
        let input = [skippable(0x50), compress("zstd", &data), skippable(0x5f)].concat();
        round_trip(input, &data, Compression::Zstd).await;
    }

    #[tokio::test]
    async fn corrupt_gzip_crc() {
        let data = sample(500_000, 7);
        let mut gz = compress("gzip", &data);
        let n = gz.len();
        gz[n - 6] ^= 0x01; // in the CRC-32 of the 8-byte trailer
        let err = expect_corrupt(gz, "bad crc").await;
        assert!(err.message().starts_with("gzip stream is corrupt"), "{err}");
        assert!(
            err.message().contains(&format!("offset {}", data.len())),
            "{err}"
        );
        // A bad ISIZE as well.
        let mut gz = compress("gzip", &data);
        let n = gz.len();
        gz[n - 1] ^= 0x01;
        expect_corrupt(gz, "bad isize").await;
    }

    #[tokio::test]
    async fn corrupt_data_in_the_middle() {
        let data = sample(2_000_000, 8);
        for (tool, _) in TOOLS {
            let mut input = compress(tool, &data);
            let mid = input.len() / 2;
            for b in &mut input[mid..mid + 4] {
                *b ^= 0x55;
            }
            let err = expect_corrupt(input, tool).await;
            assert!(
                err.message()
                    .starts_with(&format!("{tool} stream is corrupt")),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn truncated_streams() {
        let data = sample(1_000_000, 9);
        for (tool, _) in TOOLS {
            let input = compress(tool, &data);
            for keep in [input.len() - 1, input.len() - 4, input.len() / 2, 20, 8] {
                let err =
                    expect_corrupt(input[..keep].to_vec(), &format!("{tool} cut at {keep}")).await;
                assert!(
                    err.message()
                        .starts_with(&format!("{tool} stream is corrupt")),
                    "{err}"
                );
            }
        }
        let err = expect_corrupt(compress("gzip", &data)[..1000].to_vec(), "gzip").await;
        assert!(err.message().contains("truncated"), "{err}");
    }

    #[tokio::test]
    async fn garbage_after_the_last_stream() {
        let data = sample(200_000, 10);
        for (tool, _) in TOOLS {
            for garbage in [&b"garbage"[..], &[0u8; 512][..], &[0u8; 3][..], &[0x1f][..]] {
                let input = [compress(tool, &data), garbage.to_vec()].concat();
                if tool == "xz" && garbage.len() % 4 == 0 && garbage.iter().all(|b| *b == 0) {
                    // Stream padding: null bytes in multiples of four are valid xz.
                    round_trip(input, &data, Compression::Xz).await;
                    continue;
                }
                let what = format!("{tool} + {garbage:x?}");
                let err = expect_corrupt(input, &what).await;
                assert!(
                    err.message()
                        .starts_with(&format!("{tool} stream is corrupt")),
                    "{err}"
                );
                if tool == "gzip" && garbage[0] != 0x1f {
                    assert!(
                        err.message().ends_with("after the last gzip member"),
                        "{err}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn empty_source() {
        let (read, summary) = run(Vec::new()).await;
        assert_eq!(
            Error::from(read.unwrap_err()).kind(),
            ErrorKind::EmptyArchive
        );
        assert_eq!(summary.unwrap_err().kind(), ErrorKind::EmptyArchive);
    }

    #[tokio::test]
    async fn encrypted_source() {
        let (read, summary) = run(b"\n-----BEGIN PGP MESSAGE-----\n\njA0E\n".to_vec()).await;
        assert_eq!(Error::from(read.unwrap_err()).kind(), ErrorKind::Encrypted);
        assert_eq!(summary.unwrap_err().kind(), ErrorKind::Encrypted);
    }

    /// Fails with an I/O error after `good` bytes.
    struct Failing {
        data: Cursor<Vec<u8>>,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match Read::read(&mut self.data, buf)? {
                0 => Err(io::Error::other("disk on fire")),
                n => Ok(n),
            }
        }
    }

    #[tokio::test]
    async fn source_io_error_is_io() {
        let data = sample(1_000_000, 11);
        for input in [compress("gzip", &data), compress("xz", &data), data.clone()] {
            let half = input[..input.len() / 2].to_vec();
            let mut stream = decode(Failing {
                data: Cursor::new(half),
            });
            let mut out = Vec::new();
            let in_band = Error::from(stream.reader().read_to_end(&mut out).await.unwrap_err());
            assert_eq!(in_band.kind(), ErrorKind::Io, "{in_band}");
            let err = stream.finish().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Io, "{err}");
            assert!(err.message().contains("disk on fire"), "{err}");
        }
    }

    #[tokio::test]
    async fn decode_file_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = sample(400_000, 12);
        let path = dir.path().join("image.aci");
        std::fs::write(&path, compress("gzip", &data)).unwrap();
        let mut stream = decode_file(&path).await.unwrap();
        let mut out = Vec::new();
        stream.reader().read_to_end(&mut out).await.unwrap();
        assert!(out == data);
        let summary = stream.finish().await.unwrap();
        assert_eq!(summary.sha512, sha512(&data));
        assert_eq!(
            summary.compressed_size,
            std::fs::metadata(&path).unwrap().len()
        );

        let missing = dir.path().join("missing.aci");
        let err = decode_file(&missing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("missing.aci"), "{err}");
    }

    /// Counts the bytes read from it, and tells when it is dropped.
    struct Probe<R> {
        inner: R,
        read: Arc<AtomicU64>,
        dropped: Arc<AtomicBool>,
    }

    impl<R: Read> Read for Probe<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.fetch_add(n as u64, Ordering::SeqCst);
            Ok(n)
        }
    }

    impl<R> Drop for Probe<R> {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn probe<R: Read>(inner: R) -> (Probe<R>, Arc<AtomicU64>, Arc<AtomicBool>) {
        let read = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let p = Probe {
            inner,
            read: read.clone(),
            dropped: dropped.clone(),
        };
        (p, read, dropped)
    }

    #[tokio::test]
    async fn large_input_is_bounded_by_backpressure() {
        let data = sample(20_000_000, 13);
        let (source, read, _) = probe(Cursor::new(data.clone()));
        let mut stream = decode(source);
        // Nobody reads: the decoder must stall after a few MiB.
        sleep(Duration::from_millis(300)).await;
        let ahead = read.load(Ordering::SeqCst);
        let bound = ((READER_CHUNKS + HASHER_CHUNKS + 4) * CHUNK_SIZE + READ_BUFFER) as u64;
        assert!(ahead <= bound, "read {ahead} bytes ahead (bound {bound})");
        // Then read it all in small, odd-sized pieces.
        let reader = stream.reader();
        let mut out = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 1000];
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert!(out == data);
        let summary = stream.finish().await.unwrap();
        assert_eq!(summary.sha512, sha512(&data));
        assert_eq!(summary.uncompressed_size, data.len() as u64);

        // And compressed, through next_chunk.
        let mut stream = decode(Cursor::new(compress("gzip", &data)));
        let mut out = Vec::with_capacity(data.len());
        while let Some(chunk) = stream.reader().next_chunk().await.unwrap() {
            assert!(chunk.len() <= CHUNK_SIZE);
            out.extend_from_slice(&chunk);
        }
        assert!(out == data);
        assert_eq!(stream.finish().await.unwrap().sha512, sha512(&data));
    }

    #[tokio::test]
    async fn early_stop_still_hashes_everything() {
        let data = sample(10_000_000, 14);
        let gz = compress("gzip", &data);

        // The reader stays in the stream, read a little.
        let mut stream = decode(Cursor::new(gz.clone()));
        let mut head = [0u8; 100];
        stream.reader().read_exact(&mut head).await.unwrap();
        assert_eq!(&head[..], &data[..100]);
        let summary = stream.finish().await.unwrap();
        assert_eq!(summary.sha512, sha512(&data));
        assert_eq!(summary.uncompressed_size, data.len() as u64);

        // The reader is taken and dropped early.
        let mut stream = decode(Cursor::new(gz.clone()));
        let mut reader = stream.take_reader();
        reader.next_chunk().await.unwrap().unwrap();
        drop(reader);
        sleep(Duration::from_millis(50)).await;
        assert_eq!(stream.finish().await.unwrap().sha512, sha512(&data));

        // Never read at all.
        let stream = decode(Cursor::new(gz.clone()));
        assert_eq!(stream.finish().await.unwrap().sha512, sha512(&data));

        // finish() while a taken reader is still alive: the reader is cut off, not deadlocked.
        let mut stream = decode(Cursor::new(gz.clone()));
        let mut reader = stream.take_reader();
        reader.next_chunk().await.unwrap().unwrap();
        let summary = stream.finish().await.unwrap();
        assert_eq!(summary.sha512, sha512(&data));
        let err = Error::from(reader.next_chunk().await.unwrap_err());
        assert_eq!(err.kind(), ErrorKind::Cancelled);

        // A corrupt stream is reported by finish() even when the damage is past what was read.
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 6] ^= 1;
        let mut stream = decode(Cursor::new(bad));
        stream.reader().read_exact(&mut head).await.unwrap();
        let err = stream.finish().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptCompression);
    }

    #[tokio::test]
    async fn taken_reader_and_placeholder() {
        let data = sample(2_000_000, 15);
        let mut stream = decode(Cursor::new(compress("zstd", &data)));
        let mut reader = stream.take_reader();
        let placeholder = Error::from(stream.reader().next_chunk().await.unwrap_err());
        assert_eq!(placeholder.kind(), ErrorKind::InvalidArgument);
        // The stream itself is dropped; the owned reader still gets everything.
        drop(stream);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert!(out == data);
        assert_eq!(reader.read(&mut [0u8; 10]).await.unwrap(), 0);
    }

    async fn wait_dropped(dropped: &AtomicBool) {
        let start = Instant::now();
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the decoder thread did not exit"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn dropping_the_stream_stops_the_threads() {
        // An endless source: the thread only ends because nobody listens any more.
        let (source, _, dropped) = probe(io::repeat(b'a'));
        let mut stream = decode(source);
        stream.reader().next_chunk().await.unwrap().unwrap();
        drop(stream);
        wait_dropped(&dropped).await;

        // Same, with the reader dropped first (the decoder is hashing, not forwarding).
        let (source, _, dropped) = probe(io::repeat(b'a'));
        let mut stream = decode(source);
        drop(stream.take_reader());
        sleep(Duration::from_millis(50)).await;
        drop(stream);
        wait_dropped(&dropped).await;

        // And while finish() is pending and gets cancelled.
        let (source, _, dropped) = probe(io::repeat(b'a'));
        let stream = decode(source);
        let finish = tokio::spawn(stream.finish());
        sleep(Duration::from_millis(50)).await;
        finish.abort();
        assert!(finish.await.unwrap_err().is_cancelled());
        wait_dropped(&dropped).await;
    }
}

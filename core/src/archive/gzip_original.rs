//! Re-creating a gzip stream exactly from its content: a *correction record* per stream, made
//! with preflate-rs, that turns the decompressed bytes back into the very same compressed bytes.
//!
//! [`GzipRecorder`] is fed the compressed bytes in chunks, as an import reads them (bounded
//! memory: at most [`PLAIN_TEXT_LIMIT`] of decompressed text and the compressed bytes of the
//! DEFLATE blocks not yet complete are held at once). Each member keeps its header bytes as
//! they were (name, mtime, xfl, OS, extra, comment, header CRC), its DEFLATE stream as
//! preflate-rs chunks (the decompressed length of the chunk and its corrections) and its
//! 8-byte trailer. Every chunk is re-created from the record's bytes as soon as it is written,
//! and the re-created stream is hashed: [`GzipRecorder::finish`] says whether it matches the
//! original's size and SHA-256, so a record is only kept when it is known to work.
//!
//! [`recreate`] streams a record and the decompressed bytes into the original stream. A
//! damaged or hostile record gives an error or different bytes, never a crash or unbounded
//! memory: every length is bounded, and preflate-rs runs under `catch_unwind`. Callers
//! compare the result's SHA-256 with the one recorded before they let any byte out.
//!
//! The record format (all integers little-endian):
//!
//! ```text
//! "ACIKGZR1"
//! 0x01 u32 len, bytes            a member header, byte for byte
//! 0x02 u64 plain, u32 len, bytes a DEFLATE chunk: `plain` decompressed bytes, its corrections
//! 0x03 [8 bytes]                 a member trailer (CRC-32, ISIZE), byte for byte
//! 0x00                           the end
//! ```

use std::io::{Cursor, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use preflate_rs::{ExitCode, PreflateConfig, PreflateStreamProcessor, RecreateStreamProcessor};
use sha2::{Digest, Sha256};

use crate::{CancelToken, Error, ErrorKind, Result};

/// The first bytes of every correction record.
pub(crate) const MAGIC: &[u8; 8] = b"ACIKGZR1";
/// Most decompressed bytes one chunk holds (and a record may claim).
pub(crate) const PLAIN_TEXT_LIMIT: usize = 16 << 20;
/// Most bytes of corrections, or of a header, one record entry may claim.
const ENTRY_LIMIT: usize = 16 << 20;
/// Compressed bytes handed to preflate-rs at once.
const FEED: usize = 1 << 20;

const TAG_END: u8 = 0;
const TAG_HEADER: u8 = 1;
const TAG_CHUNK: u8 = 2;
const TAG_TRAILER: u8 = 3;

/// Why a gzip stream gets no correction record (its original bytes are kept instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unfit(pub String);

/// Where the recorder is in the stream.
enum State {
    /// Waiting for a member header (`first`: no member seen yet).
    Header { first: bool },
    /// Inside a member's DEFLATE stream.
    Deflate(Box<Member>),
    /// Waiting for a member's 8-byte trailer.
    Trailer,
    /// The stream cannot be recorded; the rest is only counted and hashed.
    Unfit(Unfit),
}

/// The analysis of one member's DEFLATE stream and the re-creation that checks it.
struct Member {
    analysis: PreflateStreamProcessor,
}

/// Makes the correction record of a gzip stream fed in chunks, writing it to `out`.
pub(crate) struct GzipRecorder<W: Write> {
    out: W,
    state: State,
    /// Compressed bytes received and not yet recorded.
    pending: Vec<u8>,
    /// Size and SHA-256 of the original stream (everything fed).
    original: (u64, Sha256),
    /// The thread re-creating the stream from the record, as it is written, and hashing it.
    check: Option<Checker>,
    /// Bytes of record written.
    written: u64,
}

/// What a finished recorder gives.
pub(crate) struct Recorded<W> {
    /// The record's writer, after the end tag.
    pub out: W,
    /// Bytes of record written.
    pub record_size: u64,
}

impl<W: Write> GzipRecorder<W> {
    /// A recorder writing its record to `out`.
    pub(crate) fn new(mut out: W) -> Result<Self> {
        out.write_all(MAGIC)
            .map_err(|e| Error::io("writing a gzip correction record", e))?;
        Ok(GzipRecorder {
            out,
            state: State::Header { first: true },
            pending: Vec::new(),
            original: (0, Sha256::new()),
            check: Some(Checker::start()?),
            written: MAGIC.len() as u64,
        })
    }

    /// Whether the stream was found unfit (then nothing more is recorded).
    pub(crate) fn unfit(&self) -> Option<&Unfit> {
        match &self.state {
            State::Unfit(u) => Some(u),
            _ => None,
        }
    }

    /// Feeds the next compressed bytes. Errors are I/O errors writing the record; a stream
    /// preflate-rs cannot record makes the recorder [`unfit`](Self::unfit), not an error.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        self.original.0 += bytes.len() as u64;
        self.original.1.update(bytes);
        if matches!(self.state, State::Unfit(_)) {
            return Ok(());
        }
        self.pending.extend_from_slice(bytes);
        self.advance(false)
    }

    /// Ends the stream: `Ok(Ok(record))` when the record re-creates exactly the bytes fed
    /// (same size and SHA-256), `Ok(Err(unfit))` when it does not or could not be made.
    pub(crate) fn finish(mut self) -> Result<std::result::Result<Recorded<W>, Unfit>> {
        self.advance(true)?;
        match &self.state {
            State::Unfit(u) => return Ok(Err(u.clone())),
            State::Header { first: false } if self.pending.is_empty() => {}
            _ => return Ok(Err(Unfit("the gzip stream ends inside a member".into()))),
        }
        self.put(&[TAG_END])?;
        self.out
            .flush()
            .map_err(|e| Error::io("writing a gzip correction record", e))?;
        let recreated = match self.check.take() {
            Some(check) => check.finish(),
            None => None,
        };
        let same = recreated.is_some_and(|(size, sha256)| {
            size == self.original.0
                && sha256 == <[u8; 32]>::from(self.original.1.clone().finalize())
        });
        if !same {
            return Ok(Err(Unfit(
                "the re-created gzip stream differs from the original".into(),
            )));
        }
        Ok(Ok(Recorded {
            out: self.out,
            record_size: self.written,
        }))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("writing a gzip correction record", e))
    }

    /// Hands the checker what the record holds next.
    fn check(&mut self, piece: Piece) {
        if let Some(check) = &self.check
            && check.tx.send(piece).is_err()
        {
            self.check = None; // it failed: `finish` finds the stream unfit
        }
    }

    fn give_up(&mut self, why: impl Into<String>) {
        self.state = State::Unfit(Unfit(why.into()));
        self.pending = Vec::new();
    }

    /// Records what `pending` allows; `eof`: no more bytes will come.
    fn advance(&mut self, eof: bool) -> Result<()> {
        loop {
            match &mut self.state {
                State::Unfit(_) => return Ok(()),
                State::Header { first } => {
                    if self.pending.is_empty() {
                        if *first && eof {
                            self.give_up("an empty gzip stream");
                        }
                        return Ok(());
                    }
                    match header_len(&self.pending) {
                        HeaderLen::Complete(n) => {
                            let header = self.pending.drain(..n).collect::<Vec<_>>();
                            self.put(&[TAG_HEADER])?;
                            self.put(&(n as u32).to_le_bytes())?;
                            self.put(&header)?;
                            self.check(Piece::Header(header));
                            let config = PreflateConfig {
                                plain_text_limit: PLAIN_TEXT_LIMIT,
                                verify_compression: false,
                                ..PreflateConfig::default()
                            };
                            self.state = State::Deflate(Box::new(Member {
                                analysis: PreflateStreamProcessor::new(&config),
                            }));
                        }
                        HeaderLen::Incomplete if !eof => return Ok(()),
                        HeaderLen::Incomplete => {
                            self.give_up("the gzip stream ends inside a member header");
                        }
                        HeaderLen::NotGzip => {
                            self.give_up("bytes that are not a gzip member follow the stream");
                        }
                    }
                }
                State::Deflate(_) => {
                    let State::Deflate(mut member) =
                        std::mem::replace(&mut self.state, State::Trailer)
                    else {
                        unreachable!("matched above")
                    };
                    match self.step_deflate(&mut member, eof)? {
                        Step::Wait => {
                            self.state = State::Deflate(member);
                            return Ok(());
                        }
                        Step::Again => self.state = State::Deflate(member),
                        Step::Done => self.state = State::Trailer,
                        Step::GiveUp(why) => self.give_up(why),
                    }
                }
                State::Trailer => {
                    if self.pending.len() < 8 {
                        if eof {
                            self.give_up("the gzip stream ends inside a member trailer");
                        }
                        return Ok(());
                    }
                    let trailer: Vec<u8> = self.pending.drain(..8).collect();
                    self.put(&[TAG_TRAILER])?;
                    self.put(&trailer)?;
                    self.check(Piece::Trailer(trailer));
                    self.state = State::Header { first: false };
                }
            }
        }
    }

    /// Records the next chunk of `member`'s DEFLATE stream from `pending`.
    fn step_deflate(&mut self, member: &mut Member, eof: bool) -> Result<Step> {
        if self.pending.is_empty() {
            return Ok(if eof {
                Step::GiveUp("the gzip stream ends inside a DEFLATE stream".into())
            } else {
                Step::Wait
            });
        }
        // Whole feeds only: preflate-rs estimates the encoder's parameters from the first
        // chunk, and fewer, larger chunks make a smaller record (each chunk's corrections end
        // their own arithmetic-coded block).
        if self.pending.len() < FEED && !eof {
            return Ok(Step::Wait);
        }
        let mut feed = self.pending.len().min(FEED);
        let chunk = loop {
            let step = catch_unwind(AssertUnwindSafe(|| {
                member.analysis.decompress(&self.pending[..feed])
            }));
            match step {
                Ok(Ok(chunk)) => break chunk,
                Ok(Err(e)) if e.exit_code() == ExitCode::ShortRead => {
                    if feed < self.pending.len() {
                        // A block longer than `feed`: try with everything there is.
                        feed = self.pending.len();
                        continue;
                    }
                    return Ok(if eof {
                        Step::GiveUp("the gzip stream ends inside a DEFLATE block".into())
                    } else {
                        Step::Wait
                    });
                }
                Ok(Err(e)) => return Ok(Step::GiveUp(format!("preflate-rs: {e:?}"))),
                Err(_) => {
                    return Ok(Step::GiveUp(
                        "preflate-rs failed on this DEFLATE stream".into(),
                    ));
                }
            }
        };
        let plain = member.analysis.plain_text().text().to_vec();
        member.analysis.shrink_to_dictionary();
        let done = member.analysis.is_done();
        if chunk.compressed_size == 0 && !done {
            return Ok(if eof {
                Step::GiveUp("the gzip stream ends inside a DEFLATE block".into())
            } else {
                Step::Wait
            });
        }
        self.pending.drain(..chunk.compressed_size);
        self.put(&[TAG_CHUNK])?;
        self.put(&(plain.len() as u64).to_le_bytes())?;
        self.put(&(chunk.corrections.len() as u32).to_le_bytes())?;
        self.put(&chunk.corrections)?;
        // Re-created from what the record holds, on the checker's thread.
        self.check(Piece::Chunk(plain, chunk.corrections));
        Ok(if done { Step::Done } else { Step::Again })
    }
}

/// What the checker is given, in stream order.
enum Piece {
    /// A member header, as recorded (a new member starts).
    Header(Vec<u8>),
    /// A chunk: its decompressed text and its corrections.
    Chunk(Vec<u8>, Vec<u8>),
    /// A member trailer.
    Trailer(Vec<u8>),
}

/// Re-creates the stream from the record's pieces on its own thread (beside the analysis)
/// and hashes it: the proof that the record works, over the whole stream.
struct Checker {
    tx: std::sync::mpsc::SyncSender<Piece>,
    join: std::thread::JoinHandle<Option<(u64, [u8; 32])>>,
}

impl Checker {
    fn start() -> Result<Checker> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(4);
        let join = std::thread::Builder::new()
            .name("acikit-gzip-check".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut member: Option<RecreateStreamProcessor> = None;
                for piece in rx {
                    let bytes = match piece {
                        Piece::Header(bytes) => {
                            member = Some(RecreateStreamProcessor::new());
                            bytes
                        }
                        Piece::Trailer(bytes) => bytes,
                        Piece::Chunk(plain, corrections) => {
                            let processor = member.as_mut()?;
                            let redone = catch_unwind(AssertUnwindSafe(|| {
                                processor.recompress(&mut Cursor::new(&plain), &corrections)
                            }));
                            match redone {
                                Ok(Ok((bytes, _))) => bytes,
                                _ => return None,
                            }
                        }
                    };
                    size += bytes.len() as u64;
                    hasher.update(&bytes);
                }
                Some((size, hasher.finalize().into()))
            })
            .map_err(|e| Error::io("starting the gzip record checker", e))?;
        Ok(Checker { tx, join })
    }

    /// The size and SHA-256 of the re-created stream; `None` if a chunk could not be
    /// re-created.
    fn finish(self) -> Option<(u64, [u8; 32])> {
        drop(self.tx);
        self.join.join().ok().flatten()
    }
}

/// What one step of a DEFLATE stream's recording leads to.
enum Step {
    /// More bytes are needed.
    Wait,
    /// A chunk was recorded; there may be more in `pending`.
    Again,
    /// The member's DEFLATE stream is complete.
    Done,
    /// The stream cannot be recorded.
    GiveUp(String),
}

/// How long the gzip member header at the start of some bytes is.
enum HeaderLen {
    Complete(usize),
    Incomplete,
    NotGzip,
}

fn header_len(b: &[u8]) -> HeaderLen {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if b.len() < 10 {
        let magic = [0x1f, 0x8b, 8];
        let n = b.len().min(3);
        return if b[..n] == magic[..n] {
            HeaderLen::Incomplete
        } else {
            HeaderLen::NotGzip
        };
    }
    if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3] & 0xe0 != 0 {
        return HeaderLen::NotGzip;
    }
    let flags = b[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = b.get(at..at + 2) else {
            return HeaderLen::Incomplete;
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match b
                .get(at..)
                .and_then(|rest| rest.iter().position(|&c| c == 0))
            {
                Some(zero) => at += zero + 1,
                None if b.len() - at.min(b.len()) > ENTRY_LIMIT => return HeaderLen::NotGzip,
                None => return HeaderLen::Incomplete,
            }
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if b.len() < at {
        HeaderLen::Incomplete
    } else {
        HeaderLen::Complete(at)
    }
}

/// Re-creates the gzip stream of `record` from the decompressed bytes `plain` into `out`.
/// A record that does not fit `plain` (or is damaged) is an error
/// ([`ErrorKind::CorruptStore`]); the caller checks the result's hash before using it.
pub(crate) fn recreate(
    record: &mut dyn Read,
    plain: &mut dyn Read,
    out: &mut dyn Write,
    cancel: &CancelToken,
) -> Result<()> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::CorruptStore,
            format!("damaged gzip correction record: {why}"),
        )
    };
    let writing = |e| Error::io("writing the re-created gzip stream", e);
    let mut magic = [0u8; 8];
    read_exact(record, &mut magic).map_err(|_| bad("too short"))?;
    if &magic != MAGIC {
        return Err(bad("not a correction record"));
    }
    let mut member: Option<RecreateStreamProcessor> = None;
    let mut text = Vec::new();
    loop {
        if cancel.is_cancelled() {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the operation was cancelled",
            ));
        }
        let mut tag = [0u8; 1];
        read_exact(record, &mut tag).map_err(|_| bad("truncated"))?;
        match tag[0] {
            TAG_END => break,
            TAG_HEADER => {
                let len = read_u32(record).map_err(|_| bad("truncated"))? as usize;
                if len > ENTRY_LIMIT {
                    return Err(bad("a header is too long"));
                }
                let mut header = vec![0u8; len];
                read_exact(record, &mut header).map_err(|_| bad("truncated"))?;
                out.write_all(&header).map_err(writing)?;
                member = Some(RecreateStreamProcessor::new());
            }
            TAG_CHUNK => {
                let plain_len = read_u64(record).map_err(|_| bad("truncated"))?;
                let len = read_u32(record).map_err(|_| bad("truncated"))? as usize;
                if plain_len > PLAIN_TEXT_LIMIT as u64 * 2 || len > ENTRY_LIMIT {
                    return Err(bad("a chunk is too long"));
                }
                let mut corrections = vec![0u8; len];
                read_exact(record, &mut corrections).map_err(|_| bad("truncated"))?;
                text.clear();
                plain
                    .take(plain_len)
                    .read_to_end(&mut text)
                    .map_err(|e| Error::io("reading the image's tar", e))?;
                if text.len() as u64 != plain_len {
                    return Err(bad("it claims more content than the image has"));
                }
                let Some(processor) = member.as_mut() else {
                    return Err(bad("a chunk outside a member"));
                };
                let redone = catch_unwind(AssertUnwindSafe(|| {
                    processor.recompress(&mut Cursor::new(&text), &corrections)
                }));
                match redone {
                    Ok(Ok((bytes, _))) => out.write_all(&bytes).map_err(writing)?,
                    _ => return Err(bad("preflate-rs cannot re-create a chunk")),
                }
            }
            TAG_TRAILER => {
                let mut trailer = [0u8; 8];
                read_exact(record, &mut trailer).map_err(|_| bad("truncated"))?;
                out.write_all(&trailer).map_err(writing)?;
                member = None;
            }
            _ => return Err(bad("an unknown entry")),
        }
    }
    let mut extra = [0u8; 1];
    match plain.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(bad("it covers less content than the image has")),
        Err(e) => Err(Error::io("reading the image's tar", e)),
    }
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(buf)
}

fn read_u32(r: &mut dyn Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut dyn Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(gz: &[u8], feed: usize) -> std::result::Result<Vec<u8>, Unfit> {
        let mut rec = GzipRecorder::new(Vec::new()).unwrap();
        for piece in gz.chunks(feed) {
            rec.feed(piece).unwrap();
        }
        rec.finish().unwrap().map(|r| r.out)
    }

    /// Text-like content with runs of zeros, as in a tar (sources of this crate).
    fn sample(len: usize) -> Vec<u8> {
        let text = [
            include_str!("layout.rs"),
            include_str!("decode.rs"),
            include_str!("compression.rs"),
        ]
        .concat();
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(&[0u8; 5000]);
        }
        out.truncate(len);
        out
    }

    /// GNU gzip's output at `level` (with the name and time it stores by default).
    fn gzip(data: &[u8], level: u32) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        std::fs::write(&path, data).unwrap();
        let out = std::process::Command::new("gzip")
            .arg(format!("-{level}"))
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    /// Our own gzip (flate2 on zlib-rs): recorded exactly, or found unfit, never wrong.
    #[test]
    fn zlib_rs_is_exact_or_unfit() {
        let data = sample(2 << 20);
        for level in [1, 6, 9] {
            let mut gz = flate2::GzBuilder::new()
                .filename("x.tar")
                .comment("hi")
                .mtime(1234)
                .write(Vec::new(), flate2::Compression::new(level));
            gz.write_all(&data).unwrap();
            let gz = gz.finish().unwrap();
            if let Ok(rec) = record(&gz, 1 << 16) {
                let mut out = Vec::new();
                recreate(&mut &rec[..], &mut &data[..], &mut out, &CancelToken::new()).unwrap();
                assert_eq!(out, gz, "level {level}");
            }
        }
    }

    #[test]
    fn round_trips_levels_feeds_and_members() {
        let data = sample(3 << 20);
        for level in [1, 6, 9] {
            let gz = gzip(&data, level);
            for feed in [4096, 1 << 20] {
                let rec = record(&gz, feed).unwrap();
                assert!(rec.len() < gz.len() / 20, "{} of {}", rec.len(), gz.len());
                let mut out = Vec::new();
                recreate(&mut &rec[..], &mut &data[..], &mut out, &CancelToken::new()).unwrap();
                assert_eq!(out, gz, "level {level}, feed {feed}");
            }
        }
        let mut two = gzip(&data[..1000], 6);
        two.extend(gzip(&data[1000..], 1));
        let rec = record(&two, 65536).unwrap();
        let mut out = Vec::new();
        recreate(&mut &rec[..], &mut &data[..], &mut out, &CancelToken::new()).unwrap();
        assert_eq!(out, two);
    }

    /// `ACIKIT_GZIP_SAMPLE=file.gz`: records and re-creates a real stream, timed.
    #[test]
    fn real_sample() {
        let Ok(path) = std::env::var("ACIKIT_GZIP_SAMPLE") else {
            return;
        };
        let gz = std::fs::read(path).unwrap();
        let mut data = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut data)
            .unwrap();
        let started = std::time::Instant::now();
        let rec = record(&gz, 1 << 20);
        eprintln!("record: {:?}", started.elapsed());
        let rec = rec.unwrap();
        eprintln!("{} bytes of record for {} bytes", rec.len(), gz.len());
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        recreate(&mut &rec[..], &mut &data[..], &mut out, &CancelToken::new()).unwrap();
        eprintln!("recreate: {:?}", started.elapsed());
        assert!(out == gz);
    }

    #[test]
    fn unfit_streams_and_damaged_records() {
        let data = sample(100_000);
        let gz = gzip(&data, 6);
        assert!(record(&gz[..gz.len() - 3], 1000).is_err());
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"junk");
        assert!(record(&trailing, 1000).is_err());
        let rec = record(&gz, 1000).unwrap();
        // Other content, or a flipped byte in the record: an error or other bytes.
        let mut other = data.clone();
        other[5000] ^= 1;
        let mut out = Vec::new();
        let r = recreate(
            &mut &rec[..],
            &mut &other[..],
            &mut out,
            &CancelToken::new(),
        );
        assert!(r.is_err() || out != gz);
        for at in [3, 9, 20, rec.len() / 2, rec.len() - 2] {
            let mut bad = rec.clone();
            bad[at] ^= 0x55;
            let mut out = Vec::new();
            let r = recreate(&mut &bad[..], &mut &data[..], &mut out, &CancelToken::new());
            assert!(r.is_err() || out != gz, "flip at {at}");
        }
    }
}

//! Re-creating an image's original zstd, xz or bzip2 bytes from its tar.
//!
//! zstd, xz and bzip2 encoders are deterministic: the same library version fed the same bytes
//! under the same settings writes the same stream. [`detect`] finds settings under which the
//! encoders we link write an image's original compressed bytes again from its tar, and
//! [`recreate`] writes them later. The caller keeps only the small [`RecompressParams`].
//!
//! How [`detect`] works, for each codec (`zstd`, `xz`, `bzip2` submodules):
//!
//! 1. **Scan** the original once: its size and SHA-256, its first [`HEAD_LEN`] bytes and what
//!    the container says (zstd frame header and frame count, skippable frames; xz stream flags,
//!    first block header, index from the stream's tail; bzip2 level and stream boundaries).
//!    A layout we cannot produce (several zstd frames, skippable frames, several xz streams or
//!    filters other than LZMA2, bzip2 streams of irregular size) ends the search: `Ok(None)`.
//! 2. **Candidates** follow from what the container fixes (zstd window, checksum and content
//!    size flags; xz check type, dictionary size, block size; bzip2 level) and what it does not
//!    (zstd level, long-distance matching and single- or multi-threaded job layout; xz preset
//!    and `-e`), likeliest first, at most [`MAX_CANDIDATES`].
//! 3. **Prefix filter**: each candidate's probe (the encoder itself, or for xz the raw LZMA2
//!    encoder over the first block's data, compared from after the block header, which serves
//!    every block layout) compresses the first [`PREFIX_IN`] bytes of the tar (read once,
//!    shared) into a sink that compares with the original's head and stops at the first
//!    differing byte. The probe is not finished (streams end differently per layout) unless the
//!    prefix is the whole tar: then an output equal to the whole original is verified byte for
//!    byte and returned at once. zstd's multi-threaded layout holds its output back until a job
//!    ends: it is probed finished, for the [`MAX_TWIN_PROBES`] whose single-threaded twin agreed
//!    furthest, and kept if its twin never differed or if it agreed further than its twin did
//!    before differing (see [`search`]).
//! 4. **Verify** the survivors, most agreeing bytes first, over the whole stream (size and
//!    SHA-256), at most [`MAX_VERIFICATIONS`] of them (an xz probe agreeing over a whole tar is
//!    verified at once). Only verified parameters are returned;
//!    anything else (no survivor, budget spent) is `Ok(None)`: the caller keeps the original.
//!
//! Memory stays bounded (the original's head, the tar's prefix, the encoders' own windows):
//! every pass streams from a fresh reader. Cancellation is checked between chunks.
//!
//! The parameters name the library version that wrote the verified stream (`library`); a later
//! build linking another version may write other bytes, which is why the caller hashes what
//! [`recreate`] writes before serving any of it.

mod bzip2;
mod xz;
mod zstd;

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::archive::compression::Compression;
use crate::{CancelToken, Error, ErrorKind, Result};

/// The encoder settings that re-create an image's original compressed bytes from its tar.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "codec", rename_all = "snake_case")]
pub enum RecompressParams {
    /// One Zstandard frame, as libzstd writes it.
    Zstd {
        /// The libzstd version that wrote the verified stream, e.g. `zstd 1.5.7`.
        library: String,
        /// The compression level (`ZSTD_c_compressionLevel`).
        level: i32,
        /// The window log, when set explicitly (with `long`), else the level's own.
        window_log: Option<u32>,
        /// Long-distance matching (`--long`).
        long: bool,
        /// The content checksum (XXH64) at the frame's end.
        checksum: bool,
        /// The content size written in the frame header (the encoder's pledged size).
        content_size: Option<u64>,
        /// Worker threads: 0 is the single-threaded encoder, 1 or more the multi-threaded job
        /// layout (whose output does not depend on the number of workers).
        workers: u32,
    },
    /// One xz stream of LZMA2 blocks, as liblzma writes it.
    Xz {
        /// The liblzma version that wrote the verified stream, e.g. `liblzma 5.8.4`.
        library: String,
        /// The preset level, 0 to 9.
        preset: u32,
        /// The preset's extreme variant (`-e`).
        extreme: bool,
        /// The LZMA2 dictionary size (the CLI shrinks it for small inputs).
        dict_size: u32,
        /// The integrity check: `none`, `crc32`, `crc64` or `sha256`.
        check: String,
        /// The multi-threaded encoder's block size (`xz -T`, `--block-size`): every block but the
        /// last holds this many uncompressed bytes and its header records its sizes. `None` is
        /// the single-threaded encoder (one block, sizes only in the index).
        block_size: Option<u64>,
    },
    /// bzip2 stream(s), as libbzip2 (1.0.8's format; we link its Rust port) writes them.
    Bzip2 {
        /// The library that wrote the verified stream, e.g. `libbz2-rs-sys 0.2 (bzip2 1.0.8)`.
        library: String,
        /// The block size level, 1 to 9 (`BZh1`..`BZh9`).
        level: u32,
        /// Concatenated streams (pbzip2): each holds this many uncompressed bytes (the last
        /// fewer). `None` is one stream.
        stream_size: Option<u64>,
    },
}

/// A fresh reader from the start of some bytes (called once per pass).
pub type OpenReader<'a> = &'a mut dyn FnMut() -> io::Result<Box<dyn Read + Send>>;

/// Finds parameters under which our linked encoder re-creates `original` (the compressed bytes)
/// from `decompressed` (their content), verified over the whole stream (same size and SHA-256),
/// or `Ok(None)`.
///
/// Only for [`Compression::Zstd`], [`Compression::Xz`] and [`Compression::Bzip2`]; any other
/// gives `Ok(None)`. Checks `cancel` between chunks ([`ErrorKind::Cancelled`]).
pub(crate) fn detect(
    compression: Compression,
    original: OpenReader<'_>,
    decompressed: OpenReader<'_>,
    cancel: &CancelToken,
) -> Result<Option<RecompressParams>> {
    let found = match compression {
        Compression::Zstd => zstd::candidates(original, cancel)?,
        Compression::Xz => xz::candidates(original, cancel)?,
        Compression::Bzip2 => bzip2::candidates(original, cancel)?,
        _ => return Ok(None),
    };
    match found {
        Some(found) if !found.candidates.is_empty() => search(&found, decompressed, cancel),
        _ => Ok(None),
    }
}

/// Writes the stream re-created from `decompressed` under `params` to `out` (streaming, bounded
/// memory). The bytes are only as right as `params`: the caller checks their hash.
pub(crate) fn recreate(
    params: &RecompressParams,
    decompressed: &mut dyn Read,
    out: &mut dyn Write,
    cancel: &CancelToken,
) -> Result<()> {
    let mut encoder = encoder(params, Box::new(out))?;
    pump(decompressed, &mut *encoder, u64::MAX, cancel)
        .map_err(|e| Error::io("re-creating the original compressed stream", e))?;
    encoder
        .finish()
        .map_err(|e| Error::io("re-creating the original compressed stream", e))?;
    Ok(())
}

/// How many bytes of the original's head the prefix filter compares: as far as the probe of
/// [`PREFIX_IN`] bytes of tar goes, since what a tar starts with (an incompressible file, say)
/// may compress the same at every level.
pub(crate) const HEAD_LEN: usize = 8 * 1024 * 1024;
/// How many bytes of the tar the prefix filter compresses at most per candidate.
pub(crate) const PREFIX_IN: usize = 8 * 1024 * 1024;
/// At most this many candidates go through the prefix filter.
pub(crate) const MAX_CANDIDATES: usize = 160;
/// At most this many survivors of the prefix filter are verified over the whole stream.
pub(crate) const MAX_VERIFICATIONS: usize = 3;
/// At most this many candidates with a twin (see [`search`]) go through the prefix filter.
pub(crate) const MAX_TWIN_PROBES: usize = 2;
/// The chunk size of every pass (cancellation is checked between chunks).
const CHUNK: usize = 64 * 1024;

/// What a codec's scan of the original proposes.
#[derive(Debug)]
pub(crate) struct Found {
    /// The original's size, hash and head.
    pub(crate) scan: Scan,
    /// The candidates, likeliest first.
    pub(crate) candidates: Vec<RecompressParams>,
    /// Where in the original the codec's probe output starts (see [`probe`]).
    pub(crate) probe_offset: usize,
}

/// What a scan of the original found, shared by the codecs.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The original's length in bytes.
    pub(crate) size: u64,
    /// The original's SHA-256.
    pub(crate) sha256: [u8; 32],
    /// The original's first [`HEAD_LEN`] bytes (or all of it).
    pub(crate) head: Vec<u8>,
}

/// An encoder writing into some sink; `finish` ends the stream and flushes it.
pub(crate) trait Encoder: Write {
    /// Ends the stream (trailers, checksums) and flushes everything to the sink.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Our encoder for `params`, writing to `out`.
fn encoder<'w>(
    params: &RecompressParams,
    out: Box<dyn Write + 'w>,
) -> Result<Box<dyn Encoder + 'w>> {
    match params {
        RecompressParams::Zstd { .. } => zstd::encoder(params, out),
        RecompressParams::Xz { .. } => xz::encoder(params, out),
        RecompressParams::Bzip2 { .. } => bzip2::encoder(params, out),
    }
}

/// The encoder the prefix filter runs for `params`: output that must equal the original's from
/// [`Found::probe_offset`] on, for as long as it goes (xz: the raw LZMA2 data of the first block,
/// whatever its header and layout).
fn probe<'w>(params: &RecompressParams, out: Box<dyn Write + 'w>) -> Result<Box<dyn Encoder + 'w>> {
    match params {
        RecompressParams::Xz { .. } => xz::probe(params, out),
        _ => encoder(params, out),
    }
}

/// How much of the tar the probe of `params` may take (xz: the first block's data).
fn probe_limit(params: &RecompressParams) -> u64 {
    match params {
        RecompressParams::Xz {
            block_size: Some(block_size),
            ..
        } => *block_size,
        _ => u64::MAX,
    }
}

/// The candidate `params` is judged against, if any (zstd's multi-threaded layout against its
/// single-threaded twin, see [`search`]).
fn twin(params: &RecompressParams) -> Option<RecompressParams> {
    match params {
        RecompressParams::Zstd { .. } => zstd::twin(params),
        _ => None,
    }
}

/// The error of a cancelled pass.
fn cancelled() -> Error {
    Error::new(
        ErrorKind::Cancelled,
        "re-creating the original compressed stream was cancelled",
    )
}

/// Copies at most `limit` bytes of `input` into `out`, in chunks, checking `cancel` between them.
/// A cancellation travels as an I/O error carrying [`ErrorKind::Cancelled`].
fn pump(
    input: &mut dyn Read,
    out: &mut dyn Write,
    limit: u64,
    cancel: &CancelToken,
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < limit {
        if cancel.is_cancelled() {
            return Err(io::Error::other(cancelled()));
        }
        let want = (limit - done).min(CHUNK as u64) as usize;
        let n = match input.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(done)
}

/// Opens a fresh reader, naming what failed.
fn open(reader: OpenReader<'_>, what: &str) -> Result<Box<dyn Read + Send>> {
    reader().map_err(|e| Error::io(format!("opening the {what}"), e))
}

/// A reader that hashes and counts what goes through it and keeps its first [`HEAD_LEN`] bytes,
/// for the codecs' scans.
pub(crate) struct ScanReader<'c> {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    cancel: &'c CancelToken,
}

impl<'c> ScanReader<'c> {
    /// Opens the original for a scan.
    pub(crate) fn open(original: OpenReader<'_>, cancel: &'c CancelToken) -> Result<Self> {
        Ok(ScanReader {
            inner: open(original, "original compressed stream")?,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            cancel,
        })
    }

    /// Reads exactly `buf.len()` bytes, or `false` if the input ends first.
    pub(crate) fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            let n = self
                .read(&mut buf[got..])
                .map_err(|e| Error::io("reading the original compressed stream", e))?;
            if n == 0 {
                return Ok(false);
            }
            got += n;
        }
        Ok(true)
    }

    /// Skips `n` bytes (reading and hashing them); `false` if the input ends first.
    pub(crate) fn skip(&mut self, n: u64) -> Result<bool> {
        let copied = io::copy(&mut (&mut *self).take(n), &mut io::sink())
            .map_err(|e| Error::io("reading the original compressed stream", e))?;
        Ok(copied == n)
    }

    /// Reads to the end, calling `each` on every chunk, and gives back what the scan found.
    pub(crate) fn finish_with(mut self, mut each: impl FnMut(&[u8])) -> Result<Scan> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = self
                .read(&mut buf)
                .map_err(|e| Error::io("reading the original compressed stream", e))?;
            if n == 0 {
                break;
            }
            each(&buf[..n]);
        }
        Ok(Scan {
            size: self.size,
            sha256: self.hasher.finalize().into(),
            head: self.head,
        })
    }
}

impl Read for ScanReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other(cancelled()));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        let keep = HEAD_LEN.saturating_sub(self.head.len()).min(n);
        self.head.extend_from_slice(&buf[..keep]);
        Ok(n)
    }
}

/// Why a prefix comparison stopped early (travels as an I/O error out of the encoder).
#[derive(Debug)]
enum Stop {
    /// A byte differed from the original's.
    Differs,
    /// Every byte of the original's head agreed.
    HeadAgrees,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Differs => "the output differs from the original",
            Stop::HeadAgrees => "the output agrees with the original's head",
        })
    }
}

impl std::error::Error for Stop {}

/// A sink comparing what it is given with the original's head.
struct CompareSink<'h> {
    head: &'h [u8],
    /// The original's whole length (to tell a complete head from a cut one).
    size: u64,
    pos: usize,
}

impl Write for CompareSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.head.len() - self.pos;
        let n = buf.len().min(room);
        if buf[..n] != self.head[self.pos..self.pos + n] {
            return Err(io::Error::other(Stop::Differs));
        }
        self.pos += n;
        if n < buf.len() {
            // More output than the original's head: longer than the original, or agreeing so far.
            if self.head.len() as u64 == self.size {
                return Err(io::Error::other(Stop::Differs));
            }
            return Err(io::Error::other(Stop::HeadAgrees));
        }
        if self.pos == self.head.len() && (self.pos as u64) < self.size {
            return Err(io::Error::other(Stop::HeadAgrees));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the prefix filter saw of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    /// The output differed from the original at this offset (from the probe offset).
    Differs(usize),
    /// This many bytes of output, all agreeing with the original.
    Agrees(usize),
}

impl Prefix {
    /// How many bytes agreed.
    fn agreed(self) -> usize {
        match self {
            Prefix::Differs(n) | Prefix::Agrees(n) => n,
        }
    }
}

/// Runs the prefix filter for one candidate. `finish`: end the probe's stream after the prefix
/// (for an encoder that holds its output back until then; the stream's end then differs from
/// the original's, unless the prefix was the whole tar).
fn prefix_test(
    params: &RecompressParams,
    found: &Found,
    tar_prefix: &[u8],
    finish: bool,
    cancel: &CancelToken,
) -> Result<Prefix> {
    let Some(head) = found.scan.head.get(found.probe_offset..) else {
        return Ok(Prefix::Differs(0));
    };
    let mut sink = CompareSink {
        head,
        size: found.scan.size - found.probe_offset as u64,
        pos: 0,
    };
    let outcome = (|| -> io::Result<()> {
        let mut encoder = probe(params, Box::new(&mut sink)).map_err(io::Error::other)?;
        pump(
            &mut &tar_prefix[..],
            &mut *encoder,
            probe_limit(params),
            cancel,
        )?;
        if finish {
            encoder.finish()?;
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => Ok(Prefix::Agrees(sink.pos)),
        Err(e) => match e.get_ref().and_then(|inner| inner.downcast_ref::<Stop>()) {
            Some(Stop::Differs) => Ok(Prefix::Differs(sink.pos)),
            Some(Stop::HeadAgrees) => Ok(Prefix::Agrees(sink.pos)),
            None => Err(Error::io("compressing the tar's prefix", e)),
        },
    }
}

/// A sink hashing and counting what it is given.
struct HashSink {
    hasher: Sha256,
    size: u64,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Re-creates the whole stream under `params` and compares its size and SHA-256 with the
/// original's.
fn verify(
    params: &RecompressParams,
    scan: &Scan,
    decompressed: OpenReader<'_>,
    cancel: &CancelToken,
) -> Result<bool> {
    let mut input = open(decompressed, "decompressed stream")?;
    let mut sink = HashSink {
        hasher: Sha256::new(),
        size: 0,
    };
    recreate(params, &mut input, &mut sink, cancel)?;
    Ok(sink.size == scan.size && <[u8; 32]>::from(sink.hasher.finalize()) == scan.sha256)
}

/// The prefix filter over the candidates, then whole-stream verification of the survivors, most
/// agreeing bytes first (ties in the codec's order).
///
/// A candidate with no twin survives if its probe never differed. A candidate with a twin (an
/// encoder that holds its output back, so its probe is finished and its stream's end differs)
/// is probed only if its twin agreed furthest among the twins ([`MAX_TWIN_PROBES`] of them), and
/// survives if its twin never differed, or if it agreed further than its twin did before
/// differing: where a version of the encoder differs, both differ at the same byte.
fn search(
    found: &Found,
    decompressed: OpenReader<'_>,
    cancel: &CancelToken,
) -> Result<Option<RecompressParams>> {
    let mut tar_prefix = Vec::new();
    {
        let mut input = open(&mut *decompressed, "decompressed stream")?;
        pump(&mut input, &mut tar_prefix, PREFIX_IN as u64 + 1, cancel)
            .map_err(|e| Error::io("reading the decompressed stream", e))?;
    }
    // A tar that fits in the prefix is compressed whole and the probe finished: where the probe
    // is the encoder itself, an output equal to the whole original is verified byte for byte.
    let whole = tar_prefix.len() <= PREFIX_IN;
    tar_prefix.truncate(PREFIX_IN);
    let exact = |result: Prefix| {
        found.probe_offset == 0 && whole && result == Prefix::Agrees(found.scan.size as usize)
    };
    let candidates: Vec<&RecompressParams> = found.candidates.iter().take(MAX_CANDIDATES).collect();
    let mut results: Vec<Option<Prefix>> = vec![None; candidates.len()];
    let mut twinned = Vec::new();
    let mut verifications = 0;
    for (i, params) in candidates.iter().enumerate() {
        match twin(params) {
            Some(twin) => twinned.push((i, twin)),
            None => {
                let mut result = prefix_test(params, found, &tar_prefix, whole, cancel)?;
                if exact(result) {
                    return Ok(Some((*params).clone()));
                }
                // A probe that is not the encoder itself (xz) agreeing over the whole tar:
                // verify it now rather than probing the others.
                if whole && matches!(result, Prefix::Agrees(_)) && verifications < MAX_VERIFICATIONS
                {
                    verifications += 1;
                    if verify(params, &found.scan, &mut *decompressed, cancel)? {
                        return Ok(Some((*params).clone()));
                    }
                    result = Prefix::Differs(result.agreed());
                }
                results[i] = Some(result);
            }
        }
    }
    let result_of = |results: &[Option<Prefix>], params: &RecompressParams| {
        candidates
            .iter()
            .position(|c| *c == params)
            .and_then(|j| results[j])
    };
    let mut twinned: Vec<(usize, Prefix)> = twinned
        .into_iter()
        .filter_map(|(i, twin)| Some((i, result_of(&results, &twin)?)))
        .collect();
    twinned.sort_by_key(|(_, twin)| std::cmp::Reverse(twin.agreed()));
    for (i, twin) in twinned.into_iter().take(MAX_TWIN_PROBES) {
        let own = prefix_test(candidates[i], found, &tar_prefix, true, cancel)?;
        if exact(own) {
            return Ok(Some(candidates[i].clone()));
        }
        // A twin that never differed says nothing against the layout (the finished probe may
        // differ where the twin's output stopped): it survives, ranked by its own agreement.
        let survives = match twin {
            Prefix::Agrees(_) => true,
            Prefix::Differs(n) => own.agreed() > n,
        };
        results[i] = Some(if survives {
            Prefix::Agrees(own.agreed())
        } else {
            Prefix::Differs(own.agreed())
        });
    }
    drop(tar_prefix);
    let mut survivors: Vec<(&RecompressParams, usize)> = candidates
        .iter()
        .zip(&results)
        .filter_map(|(params, result)| match result {
            Some(Prefix::Agrees(n)) => Some((*params, *n)),
            _ => None,
        })
        .collect();
    // Stable: equal agreement keeps the codec's order.
    survivors.sort_by_key(|(_, agreed)| std::cmp::Reverse(*agreed));
    for (params, _) in survivors
        .into_iter()
        .take(MAX_VERIFICATIONS.saturating_sub(verifications))
    {
        if verify(params, &found.scan, &mut *decompressed, cancel)? {
            return Ok(Some(params.clone()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_serialize_with_a_codec_tag() {
        let params = RecompressParams::Bzip2 {
            library: "x".into(),
            level: 9,
            stream_size: None,
        };
        let json = serde_json::to_string(&params).unwrap();
        assert_eq!(
            json,
            r#"{"codec":"bzip2","library":"x","level":9,"stream_size":null}"#
        );
        assert_eq!(
            serde_json::from_str::<RecompressParams>(&json).unwrap(),
            params
        );
    }

    #[test]
    fn compare_sink_stops_at_the_first_differing_byte() {
        let head = b"abcdef";
        let mut sink = CompareSink {
            head,
            size: 100,
            pos: 0,
        };
        assert_eq!(sink.write(b"abc").unwrap(), 3);
        let err = sink.write(b"dxf").unwrap_err();
        assert!(matches!(
            err.get_ref().unwrap().downcast_ref::<Stop>(),
            Some(Stop::Differs)
        ));
        let mut sink = CompareSink {
            head,
            size: 100,
            pos: 0,
        };
        let err = sink.write(b"abcdefgh").unwrap_err();
        assert!(matches!(
            err.get_ref().unwrap().downcast_ref::<Stop>(),
            Some(Stop::HeadAgrees)
        ));
        // A complete head: more output than the original is a difference.
        let mut sink = CompareSink {
            head,
            size: 6,
            pos: 0,
        };
        let err = sink.write(b"abcdefgh").unwrap_err();
        assert!(matches!(
            err.get_ref().unwrap().downcast_ref::<Stop>(),
            Some(Stop::Differs)
        ));
    }
}

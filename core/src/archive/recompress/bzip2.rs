//! bzip2: one stream, or concatenated streams of a fixed uncompressed size (pbzip2), re-created
//! by the bzip2 encoder we link (libbz2-rs-sys, the Rust port of libbzip2 1.0.8).
//!
//! The stream header's `BZh1`..`BZh9` fixes the block size; the block sort's result does not
//! depend on the work factor, so the level is the only setting. Stream boundaries are found by
//! their byte-aligned start (`BZh` + level + the block magic `1AY&SY`); with several streams,
//! the first one's uncompressed size (decoded in a second pass over it) is the chunk size.

use std::io::{self, Write};

use super::{Encoder, Found, OpenReader, RecompressParams, ScanReader, open};
use crate::{CancelToken, Error, ErrorKind, Result};

/// The encoder we link.
const LIBRARY: &str = "libbz2-rs-sys 0.2 (bzip2 1.0.8)";
/// A stream's start: `BZh`, a level digit, then the first block's magic.
const BLOCK_MAGIC: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
/// The length of the pattern that marks a stream's start.
const START_LEN: usize = 4 + BLOCK_MAGIC.len();

/// Finds stream starts in a stream given chunk by chunk.
#[derive(Debug, Default)]
pub(crate) struct StreamStarts {
    /// The last `START_LEN - 1` bytes of what came before.
    carry: Vec<u8>,
    /// Bytes seen before `carry`.
    offset: u64,
    /// Each start found: its offset and level.
    pub(crate) starts: Vec<(u64, u8)>,
}

impl StreamStarts {
    /// Looks for stream starts in the next chunk.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(chunk);
        let base = self.offset;
        if window.len() >= START_LEN {
            for i in 0..=window.len() - START_LEN {
                let w = &window[i..i + START_LEN];
                if &w[..3] == b"BZh" && (b'1'..=b'9').contains(&w[3]) && w[4..] == BLOCK_MAGIC {
                    self.starts.push((base + i as u64, w[3] - b'0'));
                }
            }
        }
        let keep = window.len().min(START_LEN - 1);
        self.offset = base + (window.len() - keep) as u64;
        self.carry = window[window.len() - keep..].to_vec();
    }
}

/// Scans the original and proposes the one candidate, or `None` for a layout we do not
/// re-create.
pub(super) fn candidates(original: OpenReader<'_>, cancel: &CancelToken) -> Result<Option<Found>> {
    let reader = ScanReader::open(&mut *original, cancel)?;
    let mut starts = StreamStarts::default();
    let scan = reader.finish_with(|chunk| starts.feed(chunk))?;
    let Some(&(0, level)) = starts.starts.first() else {
        return Ok(None);
    };
    if starts.starts.iter().any(|&(_, l)| l != level) {
        return Ok(None);
    }
    let stream_size = if starts.starts.len() > 1 {
        // The first stream's uncompressed size is the chunk size of them all.
        let input = open(original, "original compressed stream")?;
        let mut decoder = ::bzip2::read::BzDecoder::new(io::BufReader::new(input));
        let size = super::pump(&mut decoder, &mut io::sink(), u64::MAX, cancel)
            .map_err(|e| Error::io("decoding the first bzip2 stream", e))?;
        if size == 0 {
            return Ok(None);
        }
        Some(size)
    } else {
        None
    };
    Ok(Some(Found {
        scan,
        candidates: vec![RecompressParams::Bzip2 {
            library: LIBRARY.to_string(),
            level: u32::from(level),
            stream_size,
        }],
        probe_offset: 0,
    }))
}

/// The encoder `params` describe: one stream, or a new stream every `stream_size` bytes.
pub(super) fn encoder<'w>(
    params: &RecompressParams,
    out: Box<dyn Write + 'w>,
) -> Result<Box<dyn Encoder + 'w>> {
    let RecompressParams::Bzip2 {
        level, stream_size, ..
    } = params
    else {
        unreachable!("bzip2::encoder is only called with bzip2 parameters")
    };
    if !(1..=9).contains(level) || *stream_size == Some(0) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("bzip2: no level {level} or stream size {stream_size:?}"),
        ));
    }
    let level = ::bzip2::Compression::new(*level);
    Ok(Box::new(Bzip2Encoder {
        current: Some(::bzip2::write::BzEncoder::new(out, level)),
        level,
        stream_size: *stream_size,
        in_stream: 0,
    }))
}

/// The bzip2 crate's writer as an [`Encoder`], starting a new stream every `stream_size` bytes.
struct Bzip2Encoder<'w> {
    /// The stream being written (`None` only between two streams, or after an error).
    current: Option<::bzip2::write::BzEncoder<Box<dyn Write + 'w>>>,
    level: ::bzip2::Compression,
    stream_size: Option<u64>,
    /// Bytes given to the current stream.
    in_stream: u64,
}

impl Bzip2Encoder<'_> {
    /// Ends the current stream and starts the next one on the same sink.
    fn next_stream(&mut self) -> io::Result<()> {
        let current = self.current.take().expect("a current stream");
        let out = current.finish()?;
        self.current = Some(::bzip2::write::BzEncoder::new(out, self.level));
        self.in_stream = 0;
        Ok(())
    }
}

impl Write for Bzip2Encoder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut take = buf.len();
        if let Some(size) = self.stream_size {
            if self.in_stream == size {
                self.next_stream()?;
            }
            take = take.min((size - self.in_stream) as usize);
        }
        let current = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("the bzip2 encoder failed earlier"))?;
        let n = current.write(&buf[..take])?;
        self.in_stream += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A bzip2 flush ends a block early and changes the stream: never forwarded.
        Ok(())
    }
}

impl Encoder for Bzip2Encoder<'_> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        let current = self
            .current
            .take()
            .ok_or_else(|| io::Error::other("the bzip2 encoder failed earlier"))?;
        let mut out = current.finish()?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn stream_starts_across_chunk_boundaries() {
        let one = ::bzip2::read::BzEncoder::new(&b"hello"[..], ::bzip2::Compression::new(9));
        let mut first = Vec::new();
        { one }.read_to_end(&mut first).unwrap();
        let two = ::bzip2::read::BzEncoder::new(&b"world"[..], ::bzip2::Compression::new(9));
        let mut second = Vec::new();
        { two }.read_to_end(&mut second).unwrap();
        let all = [first.clone(), second].concat();
        // Fed in chunks of every size: the same two starts.
        for chunk in [1, 3, 7, 64] {
            let mut starts = StreamStarts::default();
            for part in all.chunks(chunk) {
                starts.feed(part);
            }
            assert_eq!(
                starts.starts,
                vec![(0, 9), (first.len() as u64, 9)],
                "chunks of {chunk}"
            );
        }
    }
}

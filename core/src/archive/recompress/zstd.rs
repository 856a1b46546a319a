//! Zstandard: one frame, re-created by the libzstd we link.
//!
//! The frame header fixes the checksum flag, the content size (the pledged size the encoder was
//! given: the CLI pledges a file's size, not stdin's) and the window; it leaves the level, long
//! distance matching (`--long`, which also sets the window log) and the job layout of the
//! multi-threaded encoder (the CLI's default above 512 KiB of input, whatever `-T`) open.
//! Several frames, skippable frames and dictionaries are not re-created.

use std::io::{self, Write};

use super::{Encoder, Found, OpenReader, RecompressParams, ScanReader};
use crate::{CancelToken, Error, ErrorKind, Result};

/// The frame magic number.
const MAGIC: u32 = 0xfd2f_b528;

/// What a frame header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// The header's length in bytes, magic included.
    pub(crate) len: usize,
    /// The window size in bytes (the content size for a single-segment frame).
    pub(crate) window: u64,
    /// The content size, when written.
    pub(crate) content_size: Option<u64>,
    /// A content checksum follows the last block.
    pub(crate) checksum: bool,
    /// The dictionary ID, 0 for none.
    pub(crate) dict_id: u32,
    /// The single-segment flag.
    pub(crate) single_segment: bool,
}

/// Parses a frame header at the start of `bytes`: `Ok(None)` if `bytes` is too short, an error if
/// it is not a zstd frame header.
pub(crate) fn parse_frame_header(bytes: &[u8]) -> Result<Option<FrameHeader>> {
    let invalid = |what: &str| Error::new(ErrorKind::CorruptCompression, format!("zstd: {what}"));
    if bytes.len() < 5 {
        return Ok(None);
    }
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != MAGIC {
        return Err(invalid("not a frame header"));
    }
    let fhd = bytes[4];
    if fhd & 0x08 != 0 {
        return Err(invalid("reserved bit set in the frame header"));
    }
    let fcs_flag = fhd >> 6;
    let single_segment = fhd & 0x20 != 0;
    let checksum = fhd & 0x04 != 0;
    let dict_len = [0usize, 1, 2, 4][(fhd & 0x03) as usize];
    let fcs_len = match fcs_flag {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let window_len = usize::from(!single_segment);
    let len = 5 + window_len + dict_len + fcs_len;
    if bytes.len() < len {
        return Ok(None);
    }
    let mut at = 5;
    let mut window = 0;
    if !single_segment {
        let wd = bytes[at];
        let exponent = u64::from(wd >> 3);
        let base = 1u64 << (10 + exponent);
        window = base + (base / 8) * u64::from(wd & 0x07);
        at += 1;
    }
    let mut dict_id = 0u32;
    for (i, b) in bytes[at..at + dict_len].iter().enumerate() {
        dict_id |= u32::from(*b) << (8 * i);
    }
    at += dict_len;
    let mut fcs = 0u64;
    for (i, b) in bytes[at..at + fcs_len].iter().enumerate() {
        fcs |= u64::from(*b) << (8 * i);
    }
    if fcs_len == 2 {
        fcs += 256;
    }
    let content_size = (fcs_len > 0).then_some(fcs);
    if single_segment {
        window = fcs;
    }
    Ok(Some(FrameHeader {
        len,
        window,
        content_size,
        checksum,
        dict_id,
        single_segment,
    }))
}

/// Walks one frame's blocks from just after its header to its end (checksum included).
fn skip_blocks(reader: &mut ScanReader<'_>, checksum: bool) -> Result<bool> {
    loop {
        let mut block = [0u8; 3];
        if !reader.read_exact_or_eof(&mut block)? {
            return Ok(false);
        }
        let header = u32::from_le_bytes([block[0], block[1], block[2], 0]);
        let last = header & 1 != 0;
        let size = u64::from(header >> 3);
        let skip = match (header >> 1) & 0x03 {
            0 | 2 => size,
            1 => 1,
            _ => return Ok(false),
        };
        if !reader.skip(skip)? {
            return Ok(false);
        }
        if last {
            return reader.skip(if checksum { 4 } else { 0 });
        }
    }
}

/// Scans the original and proposes candidates, or `None` for a layout we do not re-create.
pub(super) fn candidates(original: OpenReader<'_>, cancel: &CancelToken) -> Result<Option<Found>> {
    let mut reader = ScanReader::open(original, cancel)?;
    let mut frames = 0u32;
    let mut first: Option<FrameHeader> = None;
    loop {
        let mut magic = [0u8; 4];
        if !reader.read_exact_or_eof(&mut magic)? {
            break;
        }
        if u32::from_le_bytes(magic) != MAGIC {
            // A skippable frame (0x184D2A5?) or garbage: not a layout we write.
            return Ok(None);
        }
        let mut rest = [0u8; 18];
        rest[..4].copy_from_slice(&magic);
        if !reader.read_exact_or_eof(&mut rest[4..5])? {
            return Ok(None);
        }
        let probe_len = {
            // The descriptor alone tells the header's length.
            let fhd = rest[4];
            let single = fhd & 0x20 != 0;
            let fcs = match fhd >> 6 {
                0 if single => 1,
                0 => 0,
                1 => 2,
                2 => 4,
                _ => 8,
            };
            5 + usize::from(!single) + [0usize, 1, 2, 4][(fhd & 0x03) as usize] + fcs
        };
        if !reader.read_exact_or_eof(&mut rest[5..probe_len])? {
            return Ok(None);
        }
        let Ok(Some(header)) = parse_frame_header(&rest[..probe_len]) else {
            return Ok(None);
        };
        frames += 1;
        if frames > 1 {
            return Ok(None);
        }
        if !skip_blocks(&mut reader, header.checksum)? {
            return Ok(None);
        }
        first = Some(header);
    }
    let Some(header) = first else {
        return Ok(None);
    };
    let scan = reader.finish_with(|_| {})?;
    if header.dict_id != 0 {
        return Ok(None);
    }
    Ok(Some(Found {
        scan,
        candidates: candidate_list(&header),
        probe_offset: 0,
    }))
}

/// Levels likeliest first: the CLI's default, the extremes people pick, then the rest.
const LEVELS: [i32; 22] = [
    3, 19, 1, 9, 6, 2, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22,
];

/// Every (level, long, layout) the header allows, single-threaded before multi-threaded.
fn candidate_list(header: &FrameHeader) -> Vec<RecompressParams> {
    let window_log = (header.window.is_power_of_two() && !header.single_segment)
        .then(|| header.window.trailing_zeros());
    let mut longs: Vec<Option<u32>> = vec![None];
    // `--long[=N]` sets the window log (27 by default); a pledged size may shrink it.
    for log in [Some(27), window_log] {
        if let Some(log) = log
            && log >= 10
            && !longs.contains(&Some(log))
        {
            longs.push(Some(log));
        }
    }
    let mut list = Vec::new();
    for level in LEVELS {
        for long in &longs {
            for workers in [0, 1] {
                list.push(RecompressParams::Zstd {
                    library: library(),
                    level,
                    window_log: *long,
                    long: long.is_some(),
                    checksum: header.checksum,
                    content_size: header.content_size,
                    workers,
                });
            }
        }
    }
    list
}

/// The libzstd we link, e.g. `zstd 1.5.7`.
fn library() -> String {
    format!("zstd {}", ::zstd::zstd_safe::version_string())
}

/// The multi-threaded layout's single-threaded twin (same frame header and, up to where the
/// job layout shows, the same blocks); the single-threaded encoder has none.
pub(super) fn twin(params: &RecompressParams) -> Option<RecompressParams> {
    let mut twin = params.clone();
    match &mut twin {
        RecompressParams::Zstd { workers, .. } if *workers > 0 => {
            *workers = 0;
            Some(twin)
        }
        _ => None,
    }
}

/// The encoder `params` describe.
pub(super) fn encoder<'w>(
    params: &RecompressParams,
    out: Box<dyn Write + 'w>,
) -> Result<Box<dyn Encoder + 'w>> {
    let RecompressParams::Zstd {
        level,
        window_log,
        long,
        checksum,
        content_size,
        workers,
        ..
    } = params
    else {
        unreachable!("zstd::encoder is only called with zstd parameters")
    };
    let setup = || -> io::Result<::zstd::stream::write::Encoder<'static, Box<dyn Write + 'w>>> {
        let mut encoder = ::zstd::stream::write::Encoder::new(out, *level)?;
        encoder.include_checksum(*checksum)?;
        encoder.include_contentsize(content_size.is_some())?;
        encoder.include_dictid(false)?;
        if *workers > 0 {
            encoder.multithread(*workers)?;
        }
        if *long {
            encoder.long_distance_matching(true)?;
        }
        if let Some(log) = window_log {
            encoder.window_log(*log)?;
        }
        encoder.set_pledged_src_size(*content_size)?;
        Ok(encoder)
    };
    let encoder = setup().map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!("zstd: the encoder refuses these settings: {e}"),
        )
    })?;
    Ok(Box::new(ZstdEncoder(encoder)))
}

/// The zstd crate's writer as an [`Encoder`].
struct ZstdEncoder<'w>(::zstd::stream::write::Encoder<'static, Box<dyn Write + 'w>>);

impl Write for ZstdEncoder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A zstd flush ends a block early and changes the stream: never forwarded.
        Ok(())
    }
}

impl Encoder for ZstdEncoder<'_> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let mut out = self.0.finish()?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_with_window_and_content_size() {
        // FHD 0x84: FCS 4 bytes, checksum, no dict; window descriptor 0x58: 2^(10+11) = 2 MiB.
        let header = [0x28, 0xb5, 0x2f, 0xfd, 0x84, 0x58, 0x00, 0x18, 0x42, 0x00];
        let parsed = parse_frame_header(&header).unwrap().unwrap();
        assert_eq!(parsed.len, 10);
        assert_eq!(parsed.window, 2 << 20);
        assert_eq!(parsed.content_size, Some(0x0042_1800));
        assert!(parsed.checksum);
        assert_eq!(parsed.dict_id, 0);
        assert!(!parsed.single_segment);
    }

    #[test]
    fn single_segment_and_two_byte_content_size() {
        // FHD 0x60: FCS flag 1 (2 bytes, +256), single segment, no checksum.
        let header = [0x28, 0xb5, 0x2f, 0xfd, 0x60, 0x10, 0x00];
        let parsed = parse_frame_header(&header).unwrap().unwrap();
        assert_eq!(parsed.len, 7);
        assert_eq!(parsed.content_size, Some(0x10 + 256));
        assert_eq!(parsed.window, 0x10 + 256);
        assert!(parsed.single_segment);
        assert!(!parsed.checksum);
        // Cut short: not enough bytes yet.
        assert_eq!(parse_frame_header(&header[..6]).unwrap(), None);
    }

    #[test]
    fn no_content_size_and_a_dictionary_id() {
        // FHD 0x02: no FCS, 2-byte dict id; window 0x60 + mantissa 2: 2^22 + 2 * 2^19.
        let header = [0x28, 0xb5, 0x2f, 0xfd, 0x02, 0x62, 0x34, 0x12];
        let parsed = parse_frame_header(&header).unwrap().unwrap();
        assert_eq!(parsed.content_size, None);
        assert_eq!(parsed.dict_id, 0x1234);
        assert_eq!(parsed.window, (1 << 22) + 2 * (1 << 19));
        assert!(parse_frame_header(b"BZh91AY&SY").is_err());
    }

    #[test]
    fn our_own_frames_parse() {
        let data = vec![7u8; 100_000];
        let mut encoder = ::zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder.set_pledged_src_size(Some(100_000)).unwrap();
        encoder.write_all(&data).unwrap();
        let out = encoder.finish().unwrap();
        let parsed = parse_frame_header(&out).unwrap().unwrap();
        assert_eq!(parsed.content_size, Some(100_000));
        assert!(parsed.checksum);
    }
}

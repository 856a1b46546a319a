//! xz: one stream of LZMA2 blocks, re-created by the liblzma we link.
//!
//! The stream header fixes the check type; the first block header the filter chain (only a lone
//! LZMA2 filter is re-created) and its dictionary size, and whether the block headers record
//! their sizes (the multi-threaded encoder's layout: `xz -T`, `--block-size`); the index, read
//! from the stream's tail, every block's uncompressed size (all but the last must be equal: the
//! block size). The preset and `-e` are left open and probed on the raw LZMA2 data of the first
//! block, which does not depend on the block layout. Several streams, stream padding and other
//! filters (BCJ, delta) are not re-created.

use std::io::{self, Write};

use liblzma::stream::{Check, Filters, LzmaOptions, MtStreamBuilder, PRESET_EXTREME, Stream};

use super::{Encoder, Found, OpenReader, RecompressParams, ScanReader};
use crate::{CancelToken, Error, ErrorKind, Result};

/// The liblzma we link: liblzma-sys 0.4.9 builds its bundled 5.8.4 and links it statically.
const LIBRARY: &str = "liblzma 5.8.4";
/// How much of the stream's end the scan keeps for the footer and index.
const TAIL_LEN: usize = 64 * 1024;
/// The stream header's (and footer's) length.
const STREAM_HEADER_LEN: usize = 12;
/// The dictionary size of each preset, 0 to 9.
const PRESET_DICT: [u32; 10] = [
    256 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    4 << 20,
    8 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
];
/// The LZMA2 filter ID.
const FILTER_LZMA2: u64 = 0x21;

/// What the first block header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    /// The header's length in bytes.
    pub(crate) len: usize,
    /// The compressed size, when recorded.
    pub(crate) compressed_size: Option<u64>,
    /// The uncompressed size, when recorded.
    pub(crate) uncompressed_size: Option<u64>,
    /// The LZMA2 dictionary size, if the chain is LZMA2 alone.
    pub(crate) lzma2_dict: Option<u32>,
}

/// Reads a multibyte integer (7 bits a byte, least significant first) at `*at`.
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The dictionary size an LZMA2 properties byte encodes.
pub(crate) fn lzma2_dict_size(props: u8) -> Option<u32> {
    match props {
        0..=39 => Some((2 | u32::from(props & 1)) << (props / 2 + 11)),
        40 => Some(u32::MAX),
        _ => None,
    }
}

/// The check type of a stream header's flags.
pub(crate) fn check_name(id: u8) -> Option<&'static str> {
    match id {
        0x00 => Some("none"),
        0x01 => Some("crc32"),
        0x04 => Some("crc64"),
        0x0a => Some("sha256"),
        _ => None,
    }
}

/// Parses a block header at the start of `bytes`.
pub(crate) fn parse_block_header(bytes: &[u8]) -> Option<BlockHeader> {
    let size_byte = *bytes.first()?;
    if size_byte == 0 {
        return None; // The index: no block at all.
    }
    let len = (usize::from(size_byte) + 1) * 4;
    let header = bytes.get(..len)?;
    let flags = header[1];
    let filters = usize::from(flags & 0x03) + 1;
    let mut at = 2;
    let compressed_size = if flags & 0x40 != 0 {
        Some(varint(header, &mut at)?)
    } else {
        None
    };
    let uncompressed_size = if flags & 0x80 != 0 {
        Some(varint(header, &mut at)?)
    } else {
        None
    };
    let id = varint(header, &mut at)?;
    let props_len = varint(header, &mut at)?;
    let lzma2_dict = if filters == 1 && id == FILTER_LZMA2 && props_len == 1 {
        lzma2_dict_size(*header.get(at)?)
    } else {
        None
    };
    Some(BlockHeader {
        len,
        compressed_size,
        uncompressed_size,
        lzma2_dict,
    })
}

/// One index record: a block's unpadded and uncompressed sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Header + compressed data + check, without the padding.
    pub(crate) unpadded: u64,
    /// The block's uncompressed size.
    pub(crate) uncompressed: u64,
}

/// Parses the stream footer and the index before it from the end of a stream (`tail`), giving
/// the records and the index's length.
pub(crate) fn parse_tail(tail: &[u8]) -> Option<(Vec<Record>, usize)> {
    let footer = tail.get(tail.len().checked_sub(STREAM_HEADER_LEN)?..)?;
    if &footer[10..12] != b"YZ" {
        return None;
    }
    let backward = u32::from_le_bytes([footer[4], footer[5], footer[6], footer[7]]);
    let index_len = (usize::try_from(backward).ok()? + 1) * 4;
    let index_start = tail.len().checked_sub(STREAM_HEADER_LEN + index_len)?;
    let index = &tail[index_start..tail.len() - STREAM_HEADER_LEN];
    if index[0] != 0 {
        return None;
    }
    let mut at = 1;
    let count = varint(index, &mut at)?;
    let mut records = Vec::new();
    for _ in 0..count {
        let unpadded = varint(index, &mut at)?;
        let uncompressed = varint(index, &mut at)?;
        records.push(Record {
            unpadded,
            uncompressed,
        });
        if at > index.len() {
            return None;
        }
    }
    Some((records, index_len))
}

/// Scans the original and proposes candidates, or `None` for a layout we do not re-create.
pub(super) fn candidates(original: OpenReader<'_>, cancel: &CancelToken) -> Result<Option<Found>> {
    let reader = ScanReader::open(original, cancel)?;
    let mut tail: Vec<u8> = Vec::with_capacity(2 * TAIL_LEN);
    let scan = reader.finish_with(|chunk| {
        tail.extend_from_slice(chunk);
        if tail.len() > 2 * TAIL_LEN {
            tail.drain(..tail.len() - TAIL_LEN);
        }
    })?;
    let head = &scan.head;
    if head.len() < STREAM_HEADER_LEN || head[6] != 0 {
        return Ok(None);
    }
    let Some(check) = check_name(head[7]) else {
        return Ok(None);
    };
    let Some(block) = parse_block_header(&head[STREAM_HEADER_LEN..]) else {
        return Ok(None);
    };
    let Some(dict_size) = block.lzma2_dict else {
        return Ok(None);
    };
    let Some((records, index_len)) = parse_tail(&tail) else {
        return Ok(None);
    };
    // One stream, no padding: header + blocks + index + footer is the whole original.
    let blocks: u64 = records.iter().map(|r| r.unpadded.div_ceil(4) * 4).sum();
    let expected = 2 * STREAM_HEADER_LEN as u64 + blocks + index_len as u64;
    if records.is_empty() || expected != scan.size {
        return Ok(None);
    }
    let block_size = match (block.compressed_size, block.uncompressed_size) {
        (None, None) if records.len() == 1 => None,
        (Some(_), Some(first)) => {
            let (last, rest) = records.split_last().expect("not empty");
            if rest.iter().any(|r| r.uncompressed != first) || last.uncompressed > first {
                return Ok(None);
            }
            Some(first)
        }
        _ => return Ok(None),
    };
    // Presets whose own dictionary is the header's first (they name what the writer asked for;
    // presets 6 to 9 differ only in it), then the others.
    let mut presets: Vec<u32> = vec![6, 9, 0, 1, 2, 3, 4, 5, 7, 8];
    presets.sort_by_key(|&p| PRESET_DICT[p as usize] != dict_size);
    let mut candidates = Vec::new();
    for extreme in [false, true] {
        for &preset in &presets {
            candidates.push(RecompressParams::Xz {
                library: LIBRARY.to_string(),
                preset,
                extreme,
                dict_size,
                check: check.to_string(),
                block_size,
            });
        }
    }
    Ok(Some(Found {
        scan,
        candidates,
        probe_offset: STREAM_HEADER_LEN + block.len,
    }))
}

/// The parts of xz parameters.
struct Settings {
    filters: Filters,
    check: Check,
    block_size: Option<u64>,
}

/// The filter chain, check and layout `params` describe.
fn settings(params: &RecompressParams) -> Result<Settings> {
    let RecompressParams::Xz {
        preset,
        extreme,
        dict_size,
        check,
        block_size,
        ..
    } = params
    else {
        unreachable!("xz::settings is only called with xz parameters")
    };
    let unsupported = |what: String| Error::new(ErrorKind::Unsupported, format!("xz: {what}"));
    if *preset > 9 {
        return Err(unsupported(format!("no preset {preset}")));
    }
    let level = preset | if *extreme { PRESET_EXTREME } else { 0 };
    let mut options =
        LzmaOptions::new_preset(level).map_err(|e| unsupported(format!("preset {preset}: {e}")))?;
    options.dict_size(*dict_size);
    let mut filters = Filters::new();
    filters.lzma2(&options);
    let check = match check.as_str() {
        "none" => Check::None,
        "crc32" => Check::Crc32,
        "crc64" => Check::Crc64,
        "sha256" => Check::Sha256,
        other => return Err(unsupported(format!("no check type {other:?}"))),
    };
    Ok(Settings {
        filters,
        check,
        block_size: *block_size,
    })
}

/// The probe: the raw LZMA2 encoder (the first block's data, whatever its header).
pub(super) fn probe<'w>(
    params: &RecompressParams,
    out: Box<dyn Write + 'w>,
) -> Result<Box<dyn Encoder + 'w>> {
    let settings = settings(params)?;
    let stream = Stream::new_raw_encoder(&settings.filters).map_err(refused)?;
    Ok(Box::new(XzEncoder(liblzma::write::XzEncoder::new_stream(
        out, stream,
    ))))
}

/// The encoder `params` describe: single-threaded (one block) or multi-threaded (fixed blocks,
/// one worker: the output does not depend on the number of threads).
pub(super) fn encoder<'w>(
    params: &RecompressParams,
    out: Box<dyn Write + 'w>,
) -> Result<Box<dyn Encoder + 'w>> {
    let settings = settings(params)?;
    let stream = match settings.block_size {
        None => Stream::new_stream_encoder(&settings.filters, settings.check),
        Some(block_size) => MtStreamBuilder::new()
            .threads(1)
            .block_size(block_size)
            .check(settings.check)
            .filters(settings.filters)
            .encoder(),
    }
    .map_err(refused)?;
    Ok(Box::new(XzEncoder(liblzma::write::XzEncoder::new_stream(
        out, stream,
    ))))
}

/// liblzma refused the settings.
fn refused(e: liblzma::stream::Error) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("xz: the encoder refuses these settings: {e}"),
    )
}

/// The liblzma crate's writer as an [`Encoder`].
struct XzEncoder<'w>(liblzma::write::XzEncoder<Box<dyn Write + 'w>>);

impl Write for XzEncoder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // An LZMA2 sync flush changes the stream: never forwarded.
        Ok(())
    }
}

impl Encoder for XzEncoder<'_> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let mut out = self.0.finish()?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_sizes_of_the_presets() {
        assert_eq!(lzma2_dict_size(0), Some(4 << 10)); // the smallest
        assert_eq!(lzma2_dict_size(12), Some(256 << 10)); // -0
        assert_eq!(lzma2_dict_size(16), Some(1 << 20)); // -1
        assert_eq!(lzma2_dict_size(18), Some(2 << 20)); // -2
        assert_eq!(lzma2_dict_size(19), Some(3 << 20));
        assert_eq!(lzma2_dict_size(22), Some(8 << 20)); // -6
        assert_eq!(lzma2_dict_size(26), Some(32 << 20)); // -8
        assert_eq!(lzma2_dict_size(28), Some(64 << 20)); // -9
        assert_eq!(lzma2_dict_size(40), Some(u32::MAX));
        assert_eq!(lzma2_dict_size(41), None);
    }

    /// Compresses `data` with our encoder under `params`.
    fn ours(params: &RecompressParams, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = encoder(params, Box::new(&mut out)).unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap();
        out
    }

    fn params(block_size: Option<u64>, check: &str) -> RecompressParams {
        RecompressParams::Xz {
            library: LIBRARY.into(),
            preset: 0,
            extreme: false,
            dict_size: 256 << 10,
            check: check.into(),
            block_size,
        }
    }

    #[test]
    fn single_threaded_stream_parses() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let out = ours(&params(None, "crc32"), &data);
        assert_eq!(check_name(out[7]), Some("crc32"));
        let block = parse_block_header(&out[12..]).unwrap();
        assert_eq!(block.lzma2_dict, Some(256 << 10));
        assert_eq!(block.compressed_size, None);
        assert_eq!(block.uncompressed_size, None);
        let (records, index_len) = parse_tail(&out).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].uncompressed, 300_000);
        let blocks: u64 = records.iter().map(|r| r.unpadded.div_ceil(4) * 4).sum();
        assert_eq!(24 + blocks + index_len as u64, out.len() as u64);
    }

    #[test]
    fn multi_threaded_blocks_parse() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 241) as u8).collect();
        let out = ours(&params(Some(100_000), "sha256"), &data);
        assert_eq!(check_name(out[7]), Some("sha256"));
        let block = parse_block_header(&out[12..]).unwrap();
        assert_eq!(block.uncompressed_size, Some(100_000));
        assert!(block.compressed_size.is_some());
        let (records, _) = parse_tail(&out).unwrap();
        let sizes: Vec<u64> = records.iter().map(|r| r.uncompressed).collect();
        assert_eq!(sizes, vec![100_000, 100_000, 100_000]);
    }

    #[test]
    fn garbage_does_not_parse() {
        assert_eq!(parse_tail(b"not an xz stream at all"), None);
        assert_eq!(parse_block_header(&[0]), None);
        assert_eq!(parse_block_header(&[3, 0]), None);
    }
}

//! Recipes: per image, every non-content byte of its uncompressed tar plus, where each member's
//! content goes, a reference to it (length and SHA-256 digest of a content object).
//!
//! `recipe + objects == the original tar`, byte for byte, so the image ID (the SHA-512 of that
//! tar) can always be recomputed (see [`super::regenerate`]).
//!
//! # File format (version 2; version 1 is the same without the Sparse record)
//!
//! ```text
//! RECIPE_MAGIC                       "ACIKIT-RECIPE\n" + version byte 0x02 (0x01 is read too)
//! one zstd frame (with checksum) of the record stream:
//!   0x01 varint(n) bytes[n]          Meta: n non-content bytes, 1 <= n <= MAX_META_CHUNK
//!   0x02 varint(len) digest[32]      Content: len >= 1 bytes, the object named by digest
//!   0x03                             Content of length 0 (no object)
//!   0x04 varint(len) varint(real) format[1] varint(count) count * (varint(offset) varint(length))
//!        digest[32]                  Sparse: a GNU sparse member's `len` stored bytes, those of
//!                                    the object `digest` (its logical content, `real` bytes,
//!                                    holes as zeros) at the segments (offset, length)
//!   0x7f trailer[88]                 End: the trailer, then nothing more in the frame
//! footer[104]                        trailer[88] + check[8] + FOOTER_MAGIC[8]
//! ```
//!
//! Varints are unsigned LEB128; the trailer is `stream_len` (u64 LE), `image_sha512` (64 bytes),
//! `entries` (u64 LE), `content_refs` (u64 LE). The footer repeats the trailer uncompressed (with
//! the first 8 bytes of its SHA-256 as a check) so that [`read_trailer`] can read it without
//! decompressing; a full read checks that both copies agree.
//!
//! Consecutive non-content bytes are coalesced into one Meta record, split in pieces of at most
//! [`MAX_META_CHUNK`] so that neither side ever holds more than that in memory (an archive may end
//! with gigabytes of trailing bytes).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::digest::ContentDigest;
use crate::archive::tar::{Entry, RecordSink, SparseMap, SparseSegment};
use crate::{Error, ErrorKind, Result};

/// The first bytes of every recipe: a name and the format version (the last byte).
pub const RECIPE_MAGIC: &[u8] = b"ACIKIT-RECIPE\n\x02";
/// The magic of version 1 recipes (written before sparse members were stored by their logical
/// content), still read: they hold no Sparse record, and their Content records mean the same.
pub const RECIPE_MAGIC_V1: &[u8] = b"ACIKIT-RECIPE\n\x01";
/// The last bytes of every recipe.
pub const FOOTER_MAGIC: &[u8; 8] = b"ACIKEND\x01";
/// Largest Meta record: longer runs of non-content bytes are split.
pub const MAX_META_CHUNK: usize = 1 << 20;
/// zstd level of the record stream. Recipes are small (about 1 KiB of headers and padding per
/// member before compression), and level 1 is both the fastest and, on tar headers, about as
/// good as levels 2 to 8: on a Debian minbase image (6769 members), 73 bytes per member (32 of
/// them the digest) in 8 ms, against 67 bytes in 55 ms at level 9.
pub const RECIPE_LEVEL: i32 = 1;

const TAG_META: u8 = 0x01;
const TAG_CONTENT: u8 = 0x02;
const TAG_EMPTY: u8 = 0x03;
const TAG_SPARSE: u8 = 0x04;
const TAG_END: u8 = 0x7f;

const TRAILER_LEN: usize = 8 + 64 + 8 + 8;
/// Length of the uncompressed footer at the end of a recipe file.
pub const FOOTER_LEN: usize = TRAILER_LEN + 8 + FOOTER_MAGIC.len();
/// Largest zstd window the reader accepts (the writer's level uses far less); bounds memory on a
/// damaged recipe.
const MAX_WINDOW_LOG: u32 = 24;
/// Buffers between the file, the decompressor and the record parser.
const BUFFER: usize = 64 * 1024;

/// One record of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipeRecord {
    /// Non-content bytes of the tar, as read (a long run may come in several pieces).
    Meta(Vec<u8>),
    /// A member's content: `len` bytes, those of the content object named `digest`.
    Content {
        /// Number of content bytes.
        len: u64,
        /// The content object; `None` if and only if `len == 0`.
        digest: Option<ContentDigest>,
    },
    /// A GNU sparse member's content: `len` stored bytes, those of the object `digest` (the
    /// member's logical content, `map.real_size` bytes with its holes as zeros) at the
    /// segments of `map`, in order.
    Sparse {
        /// Number of content bytes the tar stores (the segments' lengths added up).
        len: u64,
        /// The member's sparse map (its dialect, logical size and data segments).
        map: SparseMap,
        /// The object holding the logical content.
        digest: ContentDigest,
    },
}

impl RecipeRecord {
    /// Bytes of the tar this record stands for.
    pub fn tar_len(&self) -> u64 {
        match self {
            RecipeRecord::Meta(bytes) => bytes.len() as u64,
            RecipeRecord::Content { len, .. } | RecipeRecord::Sparse { len, .. } => *len,
        }
    }

    /// The object this record references and that object's size, if any.
    pub fn object(&self) -> Option<(ContentDigest, u64)> {
        match self {
            RecipeRecord::Meta(_) | RecipeRecord::Content { digest: None, .. } => None,
            RecipeRecord::Content {
                len,
                digest: Some(digest),
            } => Some((*digest, *len)),
            RecipeRecord::Sparse { map, digest, .. } => Some((*digest, map.real_size)),
        }
    }
}

/// The code of a sparse dialect in a Sparse record.
fn sparse_format_code(format: &str) -> Result<u8> {
    Ok(match format {
        "gnu" => 1,
        "0.0" => 2,
        "0.1" => 3,
        "1.0" => 4,
        other => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("unknown sparse dialect {other:?}"),
            ));
        }
    })
}

/// The sparse dialect of a code in a Sparse record.
fn sparse_format_name(code: u8) -> Result<&'static str> {
    Ok(match code {
        1 => "gnu",
        2 => "0.0",
        3 => "0.1",
        4 => "1.0",
        other => return Err(corrupt(format!("unknown sparse dialect code {other}"))),
    })
}

/// Checks that `map` is well formed and stores `len` bytes (segments in order, inside the
/// logical size).
fn check_sparse(map: &SparseMap, len: u64) -> std::result::Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for seg in &map.segments {
        if seg.offset < end {
            return Err("its segments overlap or are out of order".into());
        }
        end = seg
            .offset
            .checked_add(seg.length)
            .filter(|&e| e <= map.real_size)
            .ok_or("a segment lies beyond the logical size")?;
        total += seg.length;
    }
    if total != len {
        return Err(format!("its segments hold {total} bytes, not {len}"));
    }
    Ok(())
}

/// What a recipe says about the whole stream, written after its last record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeTrailer {
    /// Length of the uncompressed tar: Meta plus Content bytes.
    pub stream_len: u64,
    /// SHA-512 of the uncompressed tar: the raw image ID.
    pub image_sha512: [u8; 64],
    /// Number of tar members (extension headers not counted), with or without content.
    pub entries: u64,
    /// Number of Content records that reference an object (non-empty contents).
    pub content_refs: u64,
}

impl RecipeTrailer {
    fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..8].copy_from_slice(&self.stream_len.to_le_bytes());
        out[8..72].copy_from_slice(&self.image_sha512);
        out[72..80].copy_from_slice(&self.entries.to_le_bytes());
        out[80..].copy_from_slice(&self.content_refs.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; TRAILER_LEN]) -> RecipeTrailer {
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        RecipeTrailer {
            stream_len: u64_at(0),
            image_sha512: bytes[8..72].try_into().expect("64 bytes"),
            entries: u64_at(72),
            content_refs: u64_at(80),
        }
    }

    fn footer(&self) -> [u8; FOOTER_LEN] {
        let trailer = self.encode();
        let mut out = [0u8; FOOTER_LEN];
        out[..TRAILER_LEN].copy_from_slice(&trailer);
        out[TRAILER_LEN..TRAILER_LEN + 8].copy_from_slice(&footer_check(&trailer));
        out[TRAILER_LEN + 8..].copy_from_slice(FOOTER_MAGIC);
        out
    }

    fn from_footer(footer: &[u8]) -> Result<RecipeTrailer> {
        let ok = footer.len() == FOOTER_LEN && footer.ends_with(FOOTER_MAGIC) && {
            let trailer: &[u8; TRAILER_LEN] = footer[..TRAILER_LEN].try_into().expect("trailer");
            footer[TRAILER_LEN..TRAILER_LEN + 8] == footer_check(trailer)
        };
        if !ok {
            return Err(corrupt("its footer is damaged or missing"));
        }
        Ok(RecipeTrailer::decode(
            footer[..TRAILER_LEN].try_into().expect("trailer"),
        ))
    }
}

fn footer_check(trailer: &[u8; TRAILER_LEN]) -> [u8; 8] {
    Sha256::digest(trailer)[..8].try_into().expect("8 bytes")
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::CorruptStore, format!("corrupt recipe: {what}"))
}

/// A read error of the recipe: damage (bad compressed data, truncation) or an OS I/O error.
fn read_error(err: io::Error) -> Error {
    if err.raw_os_error().is_some() {
        Error::io("reading the recipe", err)
    } else if err.kind() == io::ErrorKind::UnexpectedEof {
        corrupt("it is truncated")
    } else {
        Error::new(
            ErrorKind::CorruptStore,
            format!("corrupt recipe: its compressed data is damaged: {err}"),
        )
        .with_source(err)
    }
}

fn write_error(err: io::Error) -> Error {
    Error::io("writing the recipe", err)
}

fn put_varint(out: &mut impl Write, mut value: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    out.write_all(&buf[..n])
}

/// Writes a recipe: call [`meta`](Self::meta) and [`content`](Self::content) in stream order,
/// then [`finish`](Self::finish).
///
/// Dropping it without `finish` leaves an incomplete recipe that [`RecipeReader`] refuses.
pub struct RecipeWriter<W: Write> {
    out: BufWriter<zstd::stream::write::Encoder<'static, W>>,
    /// Coalesced non-content bytes not yet written (at most [`MAX_META_CHUNK`]).
    meta: Vec<u8>,
    stream_len: u64,
    content_records: u64,
    content_refs: u64,
}

impl<W: Write> std::fmt::Debug for RecipeWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipeWriter")
            .field("stream_len", &self.stream_len)
            .field("content_records", &self.content_records)
            .field("content_refs", &self.content_refs)
            .finish_non_exhaustive()
    }
}

impl<W: Write> RecipeWriter<W> {
    /// Starts a recipe on `out` (writes the magic at once).
    pub fn new(mut out: W) -> Result<Self> {
        out.write_all(RECIPE_MAGIC).map_err(write_error)?;
        let mut encoder =
            zstd::stream::write::Encoder::new(out, RECIPE_LEVEL).map_err(write_error)?;
        encoder.include_checksum(true).map_err(write_error)?;
        Ok(RecipeWriter {
            out: BufWriter::with_capacity(BUFFER, encoder),
            meta: Vec::new(),
            stream_len: 0,
            content_records: 0,
            content_refs: 0,
        })
    }

    /// Adds non-content bytes (consecutive calls are coalesced into one record).
    pub fn meta(&mut self, mut bytes: &[u8]) -> Result<()> {
        self.add_len(bytes.len() as u64)?;
        while !bytes.is_empty() {
            let take = bytes.len().min(MAX_META_CHUNK - self.meta.len());
            self.meta.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.meta.len() == MAX_META_CHUNK {
                self.flush_meta()?;
            }
        }
        Ok(())
    }

    /// Adds a member's content: `len` bytes, those of the object `digest` (`None` if and only if
    /// `len == 0`).
    pub fn content(&mut self, len: u64, digest: Option<ContentDigest>) -> Result<()> {
        match (len, digest) {
            (0, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "an empty content has no object: its digest must be None",
                ));
            }
            (1.., None) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("a content of {len} bytes needs the digest of its object"),
                ));
            }
            _ => {}
        }
        self.add_len(len)?;
        self.flush_meta()?;
        match digest {
            None => self.out.write_all(&[TAG_EMPTY]).map_err(write_error)?,
            Some(digest) => {
                self.out.write_all(&[TAG_CONTENT]).map_err(write_error)?;
                put_varint(&mut self.out, len).map_err(write_error)?;
                self.out.write_all(&digest.0).map_err(write_error)?;
                self.content_refs += 1;
            }
        }
        self.content_records += 1;
        Ok(())
    }

    /// Adds a GNU sparse member's content: `len` stored bytes at the segments of `map`, taken
    /// from the object `digest` that holds the logical content (`map.real_size` bytes).
    ///
    /// Errors ([`ErrorKind::InvalidArgument`]): the map is malformed or does not store `len`
    /// bytes, or its dialect is unknown.
    pub fn sparse(&mut self, len: u64, map: &SparseMap, digest: ContentDigest) -> Result<()> {
        check_sparse(map, len).map_err(|why| {
            Error::new(ErrorKind::InvalidArgument, format!("a sparse map: {why}"))
        })?;
        let format = sparse_format_code(map.format)?;
        self.add_len(len)?;
        self.flush_meta()?;
        let out = &mut self.out;
        out.write_all(&[TAG_SPARSE]).map_err(write_error)?;
        put_varint(out, len).map_err(write_error)?;
        put_varint(out, map.real_size).map_err(write_error)?;
        out.write_all(&[format]).map_err(write_error)?;
        put_varint(out, map.segments.len() as u64).map_err(write_error)?;
        for seg in &map.segments {
            put_varint(out, seg.offset).map_err(write_error)?;
            put_varint(out, seg.length).map_err(write_error)?;
        }
        out.write_all(&digest.0).map_err(write_error)?;
        self.content_refs += 1;
        self.content_records += 1;
        Ok(())
    }

    /// Bytes of the stream recorded so far (Meta plus Content).
    pub fn stream_len(&self) -> u64 {
        self.stream_len
    }

    /// Content records written so far (empty contents included).
    #[cfg(test)]
    pub fn content_records(&self) -> u64 {
        self.content_records
    }

    /// Content records written so far that reference an object (what
    /// [`RecipeTrailer::content_refs`] must say).
    pub fn content_refs(&self) -> u64 {
        self.content_refs
    }

    /// Ends the recipe with `trailer` and gives back the output (flushed).
    ///
    /// Errors ([`ErrorKind::InvalidArgument`]): the trailer's `stream_len` or `content_refs`
    /// differ from what was written, or `entries` is smaller than the number of Content records.
    pub fn finish(mut self, trailer: &RecipeTrailer) -> Result<W> {
        if trailer.stream_len != self.stream_len
            || trailer.content_refs != self.content_refs
            || trailer.entries < self.content_records
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the recipe trailer (stream_len {}, content_refs {}, entries {}) does not \
                     match the records written (stream_len {}, content_refs {}, {} contents)",
                    trailer.stream_len,
                    trailer.content_refs,
                    trailer.entries,
                    self.stream_len,
                    self.content_refs,
                    self.content_records
                ),
            ));
        }
        self.flush_meta()?;
        self.out.write_all(&[TAG_END]).map_err(write_error)?;
        self.out.write_all(&trailer.encode()).map_err(write_error)?;
        let encoder = self
            .out
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?;
        let mut out = encoder.finish().map_err(write_error)?;
        out.write_all(&trailer.footer()).map_err(write_error)?;
        out.flush().map_err(write_error)?;
        Ok(out)
    }

    fn add_len(&mut self, len: u64) -> Result<()> {
        self.stream_len = self
            .stream_len
            .checked_add(len)
            .ok_or_else(|| Error::new(ErrorKind::LimitExceeded, "the stream is too long"))?;
        Ok(())
    }

    fn flush_meta(&mut self) -> Result<()> {
        if self.meta.is_empty() {
            return Ok(());
        }
        self.out.write_all(&[TAG_META]).map_err(write_error)?;
        put_varint(&mut self.out, self.meta.len() as u64).map_err(write_error)?;
        self.out.write_all(&self.meta).map_err(write_error)?;
        self.meta.clear();
        Ok(())
    }
}

type Decompressed<R> = BufReader<zstd::stream::read::Decoder<'static, BufReader<R>>>;

enum ReadState<R: Read> {
    Records(Box<Decompressed<R>>),
    Done,
    Failed,
}

/// Reads a recipe record by record, streaming: memory stays bounded (a Meta record is at most
/// `MAX_META_CHUNK`, 1 MiB) whatever the recipe's size.
///
/// Every record is checked as it comes, and after the last one the trailer is checked against
/// the records (total length, number of references) and against the footer. A damaged or
/// truncated recipe gives an [`ErrorKind::CorruptStore`] error, never a panic.
pub struct RecipeReader<R: Read> {
    state: ReadState<R>,
    trailer: Option<RecipeTrailer>,
    stream_len: u64,
    content_records: u64,
    content_refs: u64,
}

impl<R: Read> std::fmt::Debug for RecipeReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipeReader")
            .field("stream_len", &self.stream_len)
            .field("content_records", &self.content_records)
            .field("trailer", &self.trailer)
            .finish_non_exhaustive()
    }
}

impl<R: Read> RecipeReader<R> {
    /// Starts reading the recipe in `input` (checks its magic and version).
    pub fn new(mut input: R) -> Result<Self> {
        let mut magic = [0u8; RECIPE_MAGIC.len()];
        read_exact(&mut input, &mut magic)?;
        let (name, version) = RECIPE_MAGIC.split_at(RECIPE_MAGIC.len() - 1);
        if !magic.starts_with(name) {
            return Err(corrupt("it does not start with the recipe magic"));
        }
        if magic[name.len()] != version[0] && magic[..] != *RECIPE_MAGIC_V1 {
            return Err(corrupt(format!(
                "unsupported recipe version {} (this build reads version {})",
                magic[name.len()],
                version[0]
            )));
        }
        let mut decoder =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUFFER, input))
                .map_err(read_error)?
                .single_frame();
        decoder.window_log_max(MAX_WINDOW_LOG).map_err(read_error)?;
        Ok(RecipeReader {
            state: ReadState::Records(Box::new(BufReader::with_capacity(BUFFER, decoder))),
            trailer: None,
            stream_len: 0,
            content_records: 0,
            content_refs: 0,
        })
    }

    /// The next record, or `None` after the last one (the trailer is then available).
    pub fn next_record(&mut self) -> Result<Option<RecipeRecord>> {
        let ReadState::Records(input) = &mut self.state else {
            return match self.state {
                ReadState::Failed => Err(corrupt("an earlier read failed")),
                _ => Ok(None),
            };
        };
        let result = Self::read_record(input);
        let record = match result {
            Ok(record) => record,
            Err(err) => {
                self.state = ReadState::Failed;
                return Err(err);
            }
        };
        let len = match &record {
            Some(RecipeRecord::Meta(bytes)) => bytes.len() as u64,
            Some(RecipeRecord::Content { len, digest }) => {
                self.content_records += 1;
                self.content_refs += u64::from(digest.is_some());
                *len
            }
            Some(RecipeRecord::Sparse { len, .. }) => {
                self.content_records += 1;
                self.content_refs += 1;
                *len
            }
            None => 0,
        };
        match self.stream_len.checked_add(len) {
            Some(total) => self.stream_len = total,
            None => {
                self.state = ReadState::Failed;
                return Err(corrupt("its records add up to more than 2^64 bytes"));
            }
        }
        if record.is_none() {
            let ReadState::Records(input) = std::mem::replace(&mut self.state, ReadState::Failed)
            else {
                unreachable!("reading records")
            };
            let trailer = self.end(*input)?;
            self.trailer = Some(trailer);
            self.state = ReadState::Done;
        }
        Ok(record)
    }

    /// The trailer, once [`next_record`](Self::next_record) returned `None`.
    pub fn trailer(&self) -> Option<&RecipeTrailer> {
        self.trailer.as_ref()
    }

    /// One record; `None` at the End record (whose trailer is then read by [`Self::end`]).
    fn read_record(input: &mut Decompressed<R>) -> Result<Option<RecipeRecord>> {
        let mut tag = [0u8; 1];
        read_exact(input, &mut tag)?;
        match tag[0] {
            TAG_META => {
                let n = get_varint(input)?;
                if n == 0 || n > MAX_META_CHUNK as u64 {
                    return Err(corrupt(format!("a Meta record of {n} bytes")));
                }
                let mut bytes = vec![0u8; n as usize];
                read_exact(input, &mut bytes)?;
                Ok(Some(RecipeRecord::Meta(bytes)))
            }
            TAG_CONTENT => {
                let len = get_varint(input)?;
                if len == 0 {
                    return Err(corrupt("an empty Content record with a digest"));
                }
                let mut digest = [0u8; 32];
                read_exact(input, &mut digest)?;
                Ok(Some(RecipeRecord::Content {
                    len,
                    digest: Some(ContentDigest(digest)),
                }))
            }
            TAG_EMPTY => Ok(Some(RecipeRecord::Content {
                len: 0,
                digest: None,
            })),
            TAG_SPARSE => {
                let len = get_varint(input)?;
                let real_size = get_varint(input)?;
                let mut format = [0u8; 1];
                read_exact(input, &mut format)?;
                let format = sparse_format_name(format[0])?;
                let count = get_varint(input)?;
                if count > crate::archive::tar::MAX_SPARSE_SEGMENTS as u64 {
                    return Err(corrupt(format!("a Sparse record of {count} segments")));
                }
                let mut segments = Vec::with_capacity(count.min(1024) as usize);
                for _ in 0..count {
                    segments.push(SparseSegment {
                        offset: get_varint(input)?,
                        length: get_varint(input)?,
                    });
                }
                let mut digest = [0u8; 32];
                read_exact(input, &mut digest)?;
                let map = SparseMap {
                    format,
                    real_size,
                    segments,
                };
                check_sparse(&map, len)
                    .map_err(|why| corrupt(format!("a Sparse record: {why}")))?;
                Ok(Some(RecipeRecord::Sparse {
                    len,
                    map,
                    digest: ContentDigest(digest),
                }))
            }
            TAG_END => Ok(None),
            other => Err(corrupt(format!("unknown record tag 0x{other:02x}"))),
        }
    }

    /// After the End tag: the trailer, the end of the frame and the footer, all checked.
    fn end(&self, mut input: Decompressed<R>) -> Result<RecipeTrailer> {
        let mut bytes = [0u8; TRAILER_LEN];
        read_exact(&mut input, &mut bytes)?;
        let trailer = RecipeTrailer::decode(&bytes);
        if trailer.stream_len != self.stream_len
            || trailer.content_refs != self.content_refs
            || trailer.entries < self.content_records
        {
            return Err(corrupt(format!(
                "its trailer (stream_len {}, content_refs {}, entries {}) does not match its \
                 records (stream_len {}, content_refs {}, {} contents)",
                trailer.stream_len,
                trailer.content_refs,
                trailer.entries,
                self.stream_len,
                self.content_refs,
                self.content_records
            )));
        }
        // The frame must end right after the trailer (this also checks its checksum).
        if input.read(&mut [0u8; 1]).map_err(read_error)? != 0 {
            return Err(corrupt("records follow its End record"));
        }
        let mut raw = input.into_inner().finish();
        let mut footer = Vec::with_capacity(FOOTER_LEN + 1);
        (&mut raw)
            .take(FOOTER_LEN as u64 + 1)
            .read_to_end(&mut footer)
            .map_err(read_error)?;
        if RecipeTrailer::from_footer(&footer)? != trailer {
            return Err(corrupt("its footer disagrees with its trailer"));
        }
        Ok(trailer)
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(read_error)
}

fn get_varint(input: &mut impl BufRead) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        read_exact(input, &mut byte)?;
        let bits = u64::from(byte[0] & 0x7f);
        if shift == 63 && bits > 1 {
            break;
        }
        value |= bits << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt("a length does not fit in 64 bits"))
}

/// Reads only the trailer of the recipe at `path`, from its uncompressed footer (without
/// decompressing the records, so without checking them: [`RecipeReader`] does).
pub fn read_trailer(path: &Path) -> Result<RecipeTrailer> {
    let context = |e| Error::io(format!("reading the recipe {}", path.display()), e);
    let with_path = |e: Error| Error::new(e.kind(), format!("{}: {}", path.display(), e.message()));
    let mut file = File::open(path).map_err(context)?;
    let len = file.metadata().map_err(context)?.len();
    if len < (RECIPE_MAGIC.len() + FOOTER_LEN) as u64 {
        return Err(with_path(corrupt("it is truncated")));
    }
    let mut magic = [0u8; RECIPE_MAGIC.len()];
    file.read_exact(&mut magic).map_err(context)?;
    if magic != RECIPE_MAGIC && magic != RECIPE_MAGIC_V1 {
        return Err(with_path(corrupt(
            "it does not start with the recipe magic of this version",
        )));
    }
    let mut footer = [0u8; FOOTER_LEN];
    file.seek(SeekFrom::End(-(FOOTER_LEN as i64)))
        .map_err(context)?;
    file.read_exact(&mut footer).map_err(context)?;
    RecipeTrailer::from_footer(&footer).map_err(with_path)
}

/// A [`RecordSink`] that writes a recipe while the tar reader reads the archive.
///
/// The tar reader hands it every non-content byte and, for each member with content, the
/// member's length ([`RecordSink::content`]); the importer reads that content, stores it as an
/// object and then calls [`content_digest`](Self::content_digest), which writes the Content
/// record. Between `content` and `content_digest` no other record may come (the tar reader sends
/// the next bytes only when asked for the next entry).
pub struct RecipeSink<W: Write> {
    writer: RecipeWriter<W>,
    /// The length of the member's content whose digest is awaited.
    pending: Option<u64>,
}

impl<W: Write> std::fmt::Debug for RecipeSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipeSink")
            .field("writer", &self.writer)
            .field("pending", &self.pending)
            .finish()
    }
}

impl<W: Write> RecipeSink<W> {
    /// A sink writing to `writer`.
    pub fn new(writer: RecipeWriter<W>) -> Self {
        RecipeSink {
            writer,
            pending: None,
        }
    }

    /// The length of the content whose digest is awaited, if any: the tar reader announced a
    /// member with content (every regular file, even empty, and any member with data).
    pub fn pending_content(&self) -> Option<u64> {
        self.pending
    }

    /// Writes the Content record of the announced member: `digest` of its content, `None` if and
    /// only if it is empty.
    ///
    /// Errors ([`ErrorKind::InvalidArgument`]): no content is pending (called twice, or for a
    /// member without content), or the digest does not fit the length.
    pub fn content_digest(&mut self, digest: Option<ContentDigest>) -> Result<()> {
        let len = self.pending.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "content_digest: no member content is pending",
            )
        })?;
        self.writer.content(len, digest)?;
        self.pending = None;
        Ok(())
    }

    /// Writes the Sparse record of the announced member (a GNU sparse member whose logical
    /// content is the object `digest`).
    ///
    /// Errors ([`ErrorKind::InvalidArgument`]): no content is pending, or `map` does not store
    /// the pending length.
    pub fn sparse_digest(&mut self, map: &SparseMap, digest: ContentDigest) -> Result<()> {
        let len = self.pending.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "sparse_digest: no member content is pending",
            )
        })?;
        self.writer.sparse(len, map, digest)?;
        self.pending = None;
        Ok(())
    }

    /// Ends the recipe: `image_sha512` is the SHA-512 of the whole stream and `entries` the
    /// number of members the tar reader yielded. Returns the output and the trailer written.
    pub fn finish(self, image_sha512: [u8; 64], entries: u64) -> Result<(W, RecipeTrailer)> {
        if let Some(len) = self.pending {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the recipe ends while a content of {len} bytes awaits its digest"),
            ));
        }
        let trailer = RecipeTrailer {
            stream_len: self.writer.stream_len(),
            image_sha512,
            entries,
            content_refs: self.writer.content_refs(),
        };
        let out = self.writer.finish(&trailer)?;
        Ok((out, trailer))
    }

    fn not_pending(&self, what: &str) -> Result<()> {
        match self.pending {
            None => Ok(()),
            Some(len) => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{what} while a content of {len} bytes awaits its digest \
                     (call content_digest after reading each member's content)"
                ),
            )),
        }
    }
}

impl<W: Write + Send> RecordSink for RecipeSink<W> {
    fn meta(&mut self, bytes: &[u8]) -> Result<()> {
        self.not_pending("non-content bytes came")?;
        self.writer.meta(bytes)
    }

    fn content(&mut self, entry: &Entry) -> Result<()> {
        self.not_pending("another member's content came")?;
        self.pending = Some(entry.size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer_for(writer_len: u64, refs: u64, entries: u64) -> RecipeTrailer {
        RecipeTrailer {
            stream_len: writer_len,
            image_sha512: [7u8; 64],
            entries,
            content_refs: refs,
        }
    }

    /// Writes `records` (merging nothing itself) and returns the recipe bytes and trailer.
    fn write(records: &[RecipeRecord]) -> (Vec<u8>, RecipeTrailer) {
        let mut writer = RecipeWriter::new(Vec::new()).unwrap();
        for record in records {
            match record {
                RecipeRecord::Meta(bytes) => writer.meta(bytes).unwrap(),
                RecipeRecord::Content { len, digest } => writer.content(*len, *digest).unwrap(),
                RecipeRecord::Sparse { len, map, digest } => {
                    writer.sparse(*len, map, *digest).unwrap()
                }
            }
        }
        let trailer = trailer_for(
            writer.stream_len(),
            writer.content_refs(),
            writer.content_records() + 3,
        );
        (writer.finish(&trailer).unwrap(), trailer)
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<RecipeRecord>, RecipeTrailer)> {
        let mut reader = RecipeReader::new(bytes)?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        assert_eq!(reader.next_record()?, None);
        Ok((records, reader.trailer().cloned().expect("trailer")))
    }

    /// Consecutive Meta records merged, for comparing.
    fn merged(records: &[RecipeRecord]) -> Vec<RecipeRecord> {
        let mut out: Vec<RecipeRecord> = Vec::new();
        for record in records {
            match (out.last_mut(), record) {
                (Some(RecipeRecord::Meta(last)), RecipeRecord::Meta(more)) => {
                    last.extend_from_slice(more)
                }
                _ => out.push(record.clone()),
            }
        }
        out
    }

    fn sample_records() -> Vec<RecipeRecord> {
        let header = |i: u8| {
            let mut h = vec![0u8; 512];
            h[..10].copy_from_slice(b"rootfs/abc");
            h[10] = i;
            h
        };
        vec![
            RecipeRecord::Meta(header(0)),
            RecipeRecord::Content {
                len: 3,
                digest: Some(ContentDigest::of(b"abc")),
            },
            RecipeRecord::Meta(vec![0; 509]),
            RecipeRecord::Meta(header(1)),
            RecipeRecord::Content {
                len: 0,
                digest: None,
            },
            RecipeRecord::Meta(header(2)),
            RecipeRecord::Content {
                len: 1 << 40,
                digest: Some(ContentDigest([0xab; 32])),
            },
            RecipeRecord::Content {
                len: 300,
                digest: Some(ContentDigest([1; 32])),
            },
            RecipeRecord::Meta(vec![0; 1024]),
        ]
    }

    #[test]
    fn round_trip() {
        let records = sample_records();
        let (bytes, trailer) = write(&records);
        assert!(bytes.starts_with(RECIPE_MAGIC));
        let (back, back_trailer) = read_all(&bytes).unwrap();
        assert_eq!(back, merged(&records));
        assert_eq!(back_trailer, trailer);
        assert_eq!(trailer.content_refs, 3);
        assert_eq!(
            trailer.stream_len,
            512 + 3 + 509 + 512 + 512 + (1 << 40) + 300 + 1024
        );

        // The footer gives the same trailer without decompressing.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipe");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_trailer(&path).unwrap(), trailer);

        // An empty stream is a valid recipe too.
        let (bytes, trailer) = write(&[]);
        assert_eq!(read_all(&bytes).unwrap(), (vec![], trailer));
    }

    fn sparse_map(format: &'static str, real_size: u64, segs: &[(u64, u64)]) -> SparseMap {
        SparseMap {
            format,
            real_size,
            segments: segs
                .iter()
                .map(|&(offset, length)| SparseSegment { offset, length })
                .collect(),
        }
    }

    #[test]
    fn sparse_records_round_trip_and_are_checked() {
        let mut records = sample_records();
        for (i, format) in ["gnu", "0.0", "0.1", "1.0"].into_iter().enumerate() {
            records.push(RecipeRecord::Sparse {
                len: 7,
                map: sparse_map(format, 1 << 30, &[(0, 2), (4096, 5), (1 << 30, 0)]),
                digest: ContentDigest([i as u8; 32]),
            });
            records.push(RecipeRecord::Meta(vec![9; 100]));
        }
        let (bytes, trailer) = write(&records);
        assert_eq!(trailer.content_refs, 3 + 4);
        let (back, _) = read_all(&bytes).unwrap();
        assert_eq!(back, merged(&records));
        assert_eq!(
            back.iter().filter_map(RecipeRecord::object).next_back(),
            Some((ContentDigest([3; 32]), 1 << 30))
        );

        // The writer refuses maps that do not hold the length, overlap or overrun.
        let kind = |map: SparseMap, len| {
            let mut writer = RecipeWriter::new(Vec::new()).unwrap();
            writer
                .sparse(len, &map, ContentDigest([0; 32]))
                .unwrap_err()
                .kind()
        };
        assert_eq!(
            kind(sparse_map("gnu", 10, &[(0, 2)]), 3),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(sparse_map("gnu", 10, &[(0, 4), (2, 1)]), 5),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(sparse_map("gnu", 10, &[(8, 4)]), 4),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(sparse_map("9.9", 10, &[(0, 1)]), 1),
            ErrorKind::InvalidArgument
        );

        // A reader refuses a Sparse record whose map is damaged, even in a valid frame.
        let mut stream = vec![TAG_SPARSE, 3, 10, 1, 1, 8, 4];
        stream.extend_from_slice(&[0; 32]);
        stream.push(TAG_END);
        let t = trailer_for(3, 1, 1);
        stream.extend_from_slice(&t.encode());
        let mut out = RECIPE_MAGIC.to_vec();
        let mut enc = zstd::stream::write::Encoder::new(&mut out, 3).unwrap();
        enc.include_checksum(true).unwrap();
        enc.write_all(&stream).unwrap();
        enc.finish().unwrap();
        out.extend_from_slice(&t.footer());
        let err = read_all(&out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptStore, "{err}");
    }

    #[test]
    fn version_1_recipes_are_still_read() {
        let records = sample_records();
        let (mut bytes, trailer) = write(&records);
        bytes[..RECIPE_MAGIC_V1.len()].copy_from_slice(RECIPE_MAGIC_V1);
        assert_eq!(
            read_all(&bytes).unwrap(),
            (merged(&records), trailer.clone())
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipe");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_trailer(&path).unwrap(), trailer);
    }

    #[test]
    fn long_meta_is_split_in_bounded_pieces() {
        let big: Vec<u8> = (0..(2 * MAX_META_CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut writer = RecipeWriter::new(Vec::new()).unwrap();
        for piece in big.chunks(100_000) {
            writer.meta(piece).unwrap();
        }
        let trailer = trailer_for(big.len() as u64, 0, 0);
        let bytes = writer.finish(&trailer).unwrap();
        let (records, _) = read_all(&bytes).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| matches!(
            r,
            RecipeRecord::Meta(b) if !b.is_empty() && b.len() <= MAX_META_CHUNK
        )));
        assert_eq!(merged(&records), vec![RecipeRecord::Meta(big)]);
    }

    #[test]
    fn writer_checks_its_input() {
        let mut writer = RecipeWriter::new(Vec::new()).unwrap();
        let kind = |r: Result<()>| r.unwrap_err().kind();
        assert_eq!(
            kind(writer.content(0, Some(ContentDigest([0; 32])))),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(writer.content(5, None)), ErrorKind::InvalidArgument);
        writer.meta(b"abc").unwrap();
        writer.content(2, Some(ContentDigest([0; 32]))).unwrap();
        // Wrong stream length, wrong count of references, too few entries.
        for trailer in [
            trailer_for(4, 1, 1),
            trailer_for(5, 0, 1),
            trailer_for(5, 1, 0),
        ] {
            let mut again = RecipeWriter::new(Vec::new()).unwrap();
            again.meta(b"abc").unwrap();
            again.content(2, Some(ContentDigest([0; 32]))).unwrap();
            assert_eq!(
                again.finish(&trailer).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
        writer.finish(&trailer_for(5, 1, 1)).unwrap();
    }

    #[test]
    fn damaged_recipes_are_errors_never_panics() {
        let records = sample_records();
        let (bytes, trailer) = write(&records);
        let expected = (merged(&records), trailer);
        // Every truncation.
        for len in 0..bytes.len() {
            let err = read_all(&bytes[..len]).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::CorruptStore,
                "truncated at {len}: {err}"
            );
        }
        // Extra bytes at the end.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            read_all(&longer).unwrap_err().kind(),
            ErrorKind::CorruptStore
        );
        // Every byte changed in a few ways: an error, or (a change zstd ignores, such as a larger
        // window size) exactly the original records.
        let mut undetected = 0;
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff, 0x10] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                match read_all(&damaged) {
                    Err(err) => assert_eq!(err.kind(), ErrorKind::CorruptStore, "{err}"),
                    Ok(got) => {
                        assert_eq!(got, expected, "byte {at} ^ {flip:#x} read as other records");
                        undetected += 1;
                    }
                }
            }
        }
        assert!(undetected < 8, "{undetected} changes went unnoticed");
        // Pseudo-random garbage after a valid magic.
        let mut state = 0x1234_5678_9abc_def0u64;
        for round in 0..200 {
            let mut garbage = RECIPE_MAGIC.to_vec();
            for _ in 0..(round * 7 % 300) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                garbage.push(state as u8);
            }
            assert_eq!(
                read_all(&garbage).unwrap_err().kind(),
                ErrorKind::CorruptStore
            );
        }
        // A bad version.
        let mut other_version = bytes.clone();
        other_version[RECIPE_MAGIC.len() - 1] = 3;
        let err = read_all(&other_version).unwrap_err();
        assert!(err.message().contains("version 3"), "{err}");
    }

    #[test]
    fn bad_records_inside_a_valid_frame_are_refused() {
        // Hand-made record streams, compressed properly: the structure itself is checked.
        let frame = |stream: &[u8], footer: Option<&RecipeTrailer>| {
            let mut out = RECIPE_MAGIC.to_vec();
            let mut enc = zstd::stream::write::Encoder::new(&mut out, 3).unwrap();
            enc.include_checksum(true).unwrap();
            enc.write_all(stream).unwrap();
            enc.finish().unwrap();
            if let Some(t) = footer {
                out.extend_from_slice(&t.footer());
            }
            out
        };
        let t = trailer_for(0, 0, 0);
        let end = |t: &RecipeTrailer| {
            let mut v = vec![TAG_END];
            v.extend_from_slice(&t.encode());
            v
        };
        let good = frame(&end(&t), Some(&t));
        assert!(read_all(&good).is_ok());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty meta", [&[TAG_META, 0][..], &end(&t)].concat()),
            (
                "huge meta",
                [&[TAG_META, 0x81, 0x80, 0x40][..], &end(&t)].concat(),
            ),
            ("content 0 with digest", {
                let mut v = vec![TAG_CONTENT, 0];
                v.extend_from_slice(&[0; 32]);
                [v, end(&t)].concat()
            }),
            ("unknown tag", [&[0x42][..], &end(&t)].concat()),
            ("varint overflow", {
                let mut v = vec![TAG_CONTENT];
                v.extend_from_slice(&[0xff; 10]);
                v.push(0x01);
                v.extend_from_slice(&[0; 32]);
                [v, end(&t)].concat()
            }),
            (
                "wrong stream_len",
                [&[TAG_META, 1, 9][..], &end(&t)].concat(),
            ),
            ("wrong refs", {
                let mut v = vec![TAG_CONTENT, 1];
                v.extend_from_slice(&[0; 32]);
                [v, end(&trailer_for(1, 0, 5))].concat()
            }),
            ("no end", vec![TAG_META, 1, 9]),
            ("data after end", [end(&t), vec![TAG_EMPTY]].concat()),
        ];
        for (what, stream) in cases {
            let err = read_all(&frame(&stream, Some(&t))).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::CorruptStore, "{what}: {err}");
        }
        // Footer missing, or disagreeing with the trailer.
        assert!(read_all(&frame(&end(&t), None)).is_err());
        assert!(read_all(&frame(&end(&t), Some(&trailer_for(0, 0, 1)))).is_err());
    }

    fn entry(size: u64) -> Entry {
        Entry {
            index: 0,
            header_offset: 0,
            path: b"rootfs/f".to_vec(),
            kind: crate::archive::tar::EntryKind::Regular,
            type_flag: b'0',
            format: crate::archive::tar::HeaderFormat::Gnu,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: Vec::new(),
            gname: Vec::new(),
            mtime: Default::default(),
            atime: None,
            ctime: None,
            size,
            link_target: None,
            device: None,
            xattrs: Default::default(),
            sparse: None,
        }
    }

    #[test]
    fn sink_pairs_contents_with_digests() {
        let mut sink = RecipeSink::new(RecipeWriter::new(Vec::new()).unwrap());
        let kind = |r: Result<()>| r.unwrap_err().kind();
        assert_eq!(kind(sink.content_digest(None)), ErrorKind::InvalidArgument);
        sink.meta(&[1; 512]).unwrap();
        sink.content(&entry(3)).unwrap();
        assert_eq!(sink.pending_content(), Some(3));
        // No other record before the digest.
        assert_eq!(kind(sink.meta(&[0; 509])), ErrorKind::InvalidArgument);
        assert_eq!(kind(sink.content(&entry(1))), ErrorKind::InvalidArgument);
        assert_eq!(kind(sink.content_digest(None)), ErrorKind::InvalidArgument);
        sink.content_digest(Some(ContentDigest::of(b"abc")))
            .unwrap();
        assert_eq!(
            kind(sink.content_digest(Some(ContentDigest::of(b"abc")))),
            ErrorKind::InvalidArgument
        );
        sink.meta(&[0; 509]).unwrap();
        sink.content(&entry(0)).unwrap();
        let unfinished = sink.finish([1; 64], 2).unwrap_err();
        assert_eq!(unfinished.kind(), ErrorKind::InvalidArgument);

        let mut sink = RecipeSink::new(RecipeWriter::new(Vec::new()).unwrap());
        sink.meta(&[1; 512]).unwrap();
        sink.content(&entry(0)).unwrap();
        sink.content_digest(None).unwrap();
        sink.meta(&[0; 1024]).unwrap();
        let (bytes, trailer) = sink.finish([1; 64], 4).unwrap();
        assert_eq!(trailer.stream_len, 1536);
        assert_eq!(trailer.content_refs, 0);
        let (records, back) = read_all(&bytes).unwrap();
        assert_eq!(back, trailer);
        assert_eq!(
            records,
            vec![
                RecipeRecord::Meta(vec![1; 512]),
                RecipeRecord::Content {
                    len: 0,
                    digest: None
                },
                RecipeRecord::Meta(vec![0; 1024]),
            ]
        );
    }
}

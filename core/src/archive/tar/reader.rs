//! [`TarReader`]: the streaming block reader. It walks the archive block by block,
//! joins extension headers to their member, yields [`Entry`] values and content chunks,
//! and hands every other byte to its [`RecordSink`].

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::BLOCK;
use super::entry::{Entry, EntryKind, HeaderFormat, Timestamp};
use super::header::{self, MAX_OCTAL_SIZE, RawHeader};
use super::pax::{PaxOverrides, PaxRecords};
use super::record::{NullSink, RecordSink};
use super::sparse::{self, PaxSparse};
use crate::{Error, ErrorKind, Result};

/// Bytes asked of the source at a time.
const READ_CHUNK: usize = 256 * 1024;

/// Largest extension header (PAX, GNU long name/link) accepted, by default.
pub const DEFAULT_MAX_EXTENSION: u64 = 1 << 20;

enum State {
    /// At a header boundary.
    Headers,
    /// Inside a member's content: bytes of content left, then bytes of padding.
    Content { remaining: u64, padding: u64 },
    /// After the end-of-archive blocks and everything that followed them.
    Done,
}

/// Extension headers seen before a member's main header.
#[derive(Default)]
struct Pending {
    pax: Option<PaxRecords>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }
}

/// A strict, streaming tar reader that keeps every non-content byte.
///
/// Call [`next_entry`](Self::next_entry) for each member, then optionally
/// [`read_content`](Self::read_content) until it returns `None`; unread content is
/// skipped by the next `next_entry`. After the last member, the end-of-archive blocks
/// and any bytes after them are read to the end of the source and recorded.
pub struct TarReader<R, S = NullSink> {
    src: R,
    buf: BytesMut,
    src_eof: bool,
    pos: u64,
    limit: u64,
    max_extension: u64,
    sink: S,
    state: State,
    next_index: u64,
    globals: PaxOverrides,
    current_path: Vec<u8>,
}

impl<R: AsyncRead + Unpin> TarReader<R, NullSink> {
    /// A reader that records nothing.
    pub fn new(src: R) -> Self {
        TarReader::with_sink(src, NullSink)
    }
}

impl<R: AsyncRead + Unpin, S: RecordSink> TarReader<R, S> {
    /// A reader that hands every non-content byte to `sink`.
    pub fn with_sink(src: R, sink: S) -> Self {
        TarReader {
            src,
            buf: BytesMut::with_capacity(READ_CHUNK),
            src_eof: false,
            pos: 0,
            limit: u64::MAX,
            max_extension: DEFAULT_MAX_EXTENSION,
            sink,
            state: State::Headers,
            next_index: 0,
            globals: PaxOverrides::default(),
            current_path: Vec::new(),
        }
    }

    /// Refuses streams longer than `bytes` with [`ErrorKind::LimitExceeded`].
    pub fn set_size_limit(&mut self, bytes: u64) {
        self.limit = bytes;
    }

    /// Refuses extension headers (PAX, long names) larger than `bytes`.
    pub fn set_extension_limit(&mut self, bytes: u64) {
        self.max_extension = bytes;
    }

    /// Bytes of the stream consumed so far (records and content).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Gives back the sink (after the last entry, it holds the whole record).
    pub fn into_sink(self) -> S {
        self.sink
    }

    /// The next member, or `None` after the end of the archive (by then the source has
    /// been read to its end).
    pub async fn next_entry(&mut self) -> Result<Option<Entry>> {
        match self.state {
            State::Done => return Ok(None),
            State::Content { .. } => self.skip_content().await?,
            State::Headers => {}
        }
        let start = self.pos;
        let mut pending = Pending::default();
        loop {
            let block = self.read_block(start).await?;
            if header::is_zero_block(&block) {
                return self.end_of_archive(&pending).await.map(|()| None);
            }
            if !header::checksum_ok(&block) {
                return Err(if self.pos == BLOCK as u64 {
                    Error::new(
                        ErrorKind::NotATar,
                        "the data is not a tar archive (no valid header at its start)",
                    )
                } else {
                    Error::new(
                        ErrorKind::BadHeader,
                        format!(
                            "header checksum mismatch at offset {}",
                            self.pos - BLOCK as u64
                        ),
                    )
                });
            }
            let raw = header::decode(&block)?;
            match raw.type_flag {
                b'x' => {
                    let data = self.read_extension(raw.size).await?;
                    let records = PaxRecords::parse(&data)?;
                    pending
                        .pax
                        .get_or_insert_with(PaxRecords::default)
                        .records
                        .extend(records.records);
                }
                b'g' => {
                    let data = self.read_extension(raw.size).await?;
                    let records = PaxRecords::parse(&data)?;
                    let mut check = PaxOverrides::default();
                    check.apply(&records)?;
                    check.check_global()?;
                    self.globals.apply(&records)?;
                }
                b'L' | b'K' => {
                    let data = self.read_extension(raw.size).await?;
                    let name = header::cstr(&data).to_vec();
                    let slot = if raw.type_flag == b'L' {
                        &mut pending.long_name
                    } else {
                        &mut pending.long_link
                    };
                    if slot.is_some() || name.is_empty() {
                        return Err(Error::new(
                            ErrorKind::BadLongName,
                            format!(
                                "GNU long-{} header is empty or repeated",
                                if raw.type_flag == b'L' {
                                    "name"
                                } else {
                                    "link"
                                }
                            ),
                        ));
                    }
                    *slot = Some(name);
                }
                _ => return self.member(start, raw, pending).await.map(Some),
            }
        }
    }

    /// The next chunk of the current member's content, or `None` at its end.
    pub async fn read_content(&mut self) -> Result<Option<Bytes>> {
        let State::Content { remaining, padding } = self.state else {
            return Ok(None);
        };
        if remaining == 0 {
            return Ok(None);
        }
        if self.buf.is_empty() && !self.read_more().await? {
            return Err(self.truncated("the archive ends inside a member's content"));
        }
        let n = remaining.min(self.buf.len() as u64);
        let chunk = self.buf.split_to(n as usize).freeze();
        self.pos += n;
        self.state = State::Content {
            remaining: remaining - n,
            padding,
        };
        Ok(Some(chunk))
    }

    async fn skip_content(&mut self) -> Result<()> {
        while self.read_content().await?.is_some() {}
        if let State::Content { padding, .. } = self.state {
            self.take_meta(
                padding as usize,
                "the archive ends inside a member's padding",
            )
            .await?;
        }
        self.state = State::Headers;
        Ok(())
    }

    async fn member(&mut self, start: u64, raw: RawHeader, pending: Pending) -> Result<Entry> {
        let mut o = self.globals.clone();
        if let Some(pax) = &pending.pax {
            o.apply(pax)?;
        }
        let pax_sparse = match &pending.pax {
            Some(pax) => sparse::from_pax(pax)?,
            None => PaxSparse::None,
        };
        let sparse_name = pending
            .pax
            .as_ref()
            .and_then(|p| p.get("GNU.sparse.name"))
            .map(<[u8]>::to_vec);
        let path = sparse_name
            .or(o.path.take())
            .or(pending.long_name)
            .unwrap_or_else(|| raw.name.clone());
        self.current_path.clone_from(&path);
        let mut kind = EntryKind::from_flag(raw.type_flag);
        if (raw.type_flag == b'\0' || (raw.type_flag == b'0' && raw.format == HeaderFormat::V7))
            && path.ends_with(b"/")
        {
            kind = EntryKind::Directory; // old archives mark directories by a trailing slash
        }
        let data_size = match o.size {
            Some(size) if size != raw.size && !(size > MAX_OCTAL_SIZE && raw.size == 0) => {
                return Err(self.named(Error::new(
                    ErrorKind::PaxSizeMismatch,
                    format!(
                        "PAX size {size} disagrees with the header's size {}",
                        raw.size
                    ),
                )));
            }
            Some(size) => size,
            None => raw.size,
        };
        let header_only = matches!(
            kind,
            EntryKind::Hardlink
                | EntryKind::Symlink
                | EntryKind::CharDevice
                | EntryKind::BlockDevice
                | EntryKind::Directory
                | EntryKind::Fifo
        );
        if header_only && data_size > 0 {
            return Err(self.named(Error::new(
                ErrorKind::UnexpectedData,
                format!("a {} member declares {data_size} bytes of data (tar readers disagree on skipping them)", kind.name()),
            )));
        }
        let mut map = None;
        let mut map_len = 0u64;
        if raw.type_flag == b'S' {
            let mut entries = raw.gnu_sparse.clone();
            let mut extended = raw.gnu_is_extended;
            while extended {
                let block = self.read_block(start).await?;
                entries.extend(header::decode_gnu_sparse(&block[..504])?);
                if entries.len() > sparse::MAX_SEGMENTS {
                    return Err(self.named(Error::new(
                        ErrorKind::BadSparseMap,
                        "sparse map has too many segments",
                    )));
                }
                extended = block[504] != 0;
            }
            map = Some(sparse::from_gnu(&entries, raw.gnu_real_size));
        }
        match pax_sparse {
            PaxSparse::None => {}
            PaxSparse::InHeader(m) => map = Some(m),
            PaxSparse::InData { real_size } => {
                let mut data = Vec::new();
                loop {
                    if data.len() as u64 + BLOCK as u64 > data_size.min(sparse::MAX_MAP_BYTES) {
                        return Err(self.named(Error::new(
                            ErrorKind::BadSparseMap,
                            "sparse 1.0 map does not end inside the member",
                        )));
                    }
                    let block = self.read_block(start).await?;
                    data.extend_from_slice(&block);
                    if let Some((m, taken)) =
                        sparse::parse_data_map(&data, real_size).map_err(|e| self.named(e))?
                    {
                        debug_assert_eq!(taken, data.len());
                        map = Some(m);
                        map_len = taken as u64;
                        break;
                    }
                }
            }
        }
        let size = data_size - map_len;
        if let Some(m) = &map {
            sparse::check(m, size).map_err(|e| self.named(e))?;
        }
        let device = matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice).then(|| {
            (
                o.dev_major.unwrap_or(raw.dev_major),
                o.dev_minor.unwrap_or(raw.dev_minor),
            )
        });
        let link_target = matches!(kind, EntryKind::Hardlink | EntryKind::Symlink).then(|| {
            o.linkpath
                .take()
                .or(pending.long_link)
                .unwrap_or_else(|| raw.link_name.clone())
        });
        let gnu_time = |secs: i64| (secs != 0).then_some(Timestamp { secs, nanos: 0 });
        let entry = Entry {
            index: self.next_index,
            header_offset: start,
            path,
            kind,
            type_flag: raw.type_flag,
            format: if pending.pax.is_some() {
                HeaderFormat::Pax
            } else {
                raw.format
            },
            mode: (raw.mode & 0o7777) as u32,
            uid: o.uid.unwrap_or(raw.uid),
            gid: o.gid.unwrap_or(raw.gid),
            uname: o.uname.take().unwrap_or(raw.uname),
            gname: o.gname.take().unwrap_or(raw.gname),
            mtime: o.mtime.unwrap_or(Timestamp {
                secs: raw.mtime,
                nanos: 0,
            }),
            atime: o.atime.or_else(|| gnu_time(raw.gnu_atime)),
            ctime: o.ctime.or_else(|| gnu_time(raw.gnu_ctime)),
            size,
            link_target,
            device,
            xattrs: o.xattrs,
            sparse: map,
        };
        self.next_index += 1;
        if size > 0 || kind == EntryKind::Regular {
            self.sink.content(&entry)?;
        }
        self.state = State::Content {
            remaining: size,
            padding: (BLOCK as u64 - data_size % BLOCK as u64) % BLOCK as u64,
        };
        Ok(entry)
    }

    async fn end_of_archive(&mut self, pending: &Pending) -> Result<()> {
        if !pending.is_empty() {
            return Err(Error::new(
                ErrorKind::BadPaxHeader,
                "an extension header is not followed by a member",
            ));
        }
        let second = self
            .read_block_or("the archive ends after a lone zero block")
            .await?;
        if !header::is_zero_block(&second) {
            return Err(Error::new(
                ErrorKind::BadHeader,
                format!(
                    "a zero block inside the archive at offset {}",
                    self.pos - 2 * BLOCK as u64
                ),
            ));
        }
        // Everything after the end blocks (record padding, trailing bytes) is kept as is.
        loop {
            let rest = self.buf.split().freeze();
            self.pos += rest.len() as u64;
            self.sink.meta(&rest)?;
            if !self.read_more().await? {
                break;
            }
        }
        self.state = State::Done;
        Ok(())
    }

    async fn read_extension(&mut self, size: u64) -> Result<Bytes> {
        if size > self.max_extension {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "extension header of {size} bytes exceeds the limit of {}",
                    self.max_extension
                ),
            ));
        }
        let padded = (size as usize).div_ceil(BLOCK) * BLOCK;
        let data = self
            .take_meta(padded, "the archive ends inside an extension header")
            .await?;
        Ok(data.slice(..size as usize))
    }

    async fn read_block(&mut self, start: u64) -> Result<[u8; BLOCK]> {
        if self.pos == 0 && self.buf.is_empty() && !self.read_more().await? {
            return Err(Error::new(ErrorKind::EmptyArchive, "the archive is empty"));
        }
        if self.pos == 0 && self.buf.len() < BLOCK {
            while self.buf.len() < BLOCK && self.read_more().await? {}
            if self.buf.len() < BLOCK {
                return Err(Error::new(
                    ErrorKind::NotATar,
                    "the data is too short to be a tar archive",
                ));
            }
        }
        while self.buf.len() < BLOCK && self.read_more().await? {}
        let why = if self.pos == start && self.buf.is_empty() {
            "the archive ends without end-of-archive blocks"
        } else {
            "the archive ends inside a header"
        };
        self.read_block_or(why).await
    }

    async fn read_block_or(&mut self, why: &str) -> Result<[u8; BLOCK]> {
        let bytes = self.take_meta(BLOCK, why).await?;
        Ok(bytes[..].try_into().expect("a block"))
    }

    /// Takes `n` bytes as non-content, handing them to the sink.
    async fn take_meta(&mut self, n: usize, why: &str) -> Result<Bytes> {
        while self.buf.len() < n {
            if !self.read_more().await? {
                return Err(self.truncated(why));
            }
        }
        let bytes = self.buf.split_to(n).freeze();
        self.pos += n as u64;
        self.sink.meta(&bytes)?;
        Ok(bytes)
    }

    async fn read_more(&mut self) -> Result<bool> {
        if self.src_eof {
            return Ok(false);
        }
        self.buf.reserve(READ_CHUNK);
        let n = self.src.read_buf(&mut self.buf).await?;
        if n == 0 {
            self.src_eof = true;
            return Ok(false);
        }
        if self.pos + self.buf.len() as u64 > self.limit {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "the archive is larger than the limit of {} bytes",
                    self.limit
                ),
            ));
        }
        Ok(true)
    }

    fn truncated(&self, why: &str) -> Error {
        let err = Error::new(
            ErrorKind::TruncatedArchive,
            format!("{why} (offset {})", self.pos + self.buf.len() as u64),
        );
        match self.state {
            State::Content { .. } => err.with_entry(&self.current_path),
            _ => err,
        }
    }

    fn named(&self, err: Error) -> Error {
        err.with_entry(&self.current_path)
    }
}

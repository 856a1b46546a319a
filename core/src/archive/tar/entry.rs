//! What the tar reader yields for each archive member: [`Entry`] and its parts.

/// The type of a tar member, from the header's type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file (`'0'`, v7 `'\0'`, or contiguous `'7'`).
    Regular,
    /// A hardlink to an earlier member (`'1'`).
    Hardlink,
    /// A symbolic link (`'2'`).
    Symlink,
    /// A character device (`'3'`).
    CharDevice,
    /// A block device (`'4'`).
    BlockDevice,
    /// A directory (`'5'`).
    Directory,
    /// A FIFO (`'6'`).
    Fifo,
    /// Any other type flag (GNU dumpdir `'D'`, multi-volume `'M'`, volume label `'V'`...).
    Other(u8),
}

impl EntryKind {
    /// The kind named by a header type flag (`'S'`, GNU sparse, is a regular file).
    pub fn from_flag(flag: u8) -> EntryKind {
        match flag {
            b'0' | b'\0' | b'7' | b'S' => EntryKind::Regular,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Other(other),
        }
    }

    /// A short human name: `regular file`, `directory`, `symlink`...
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Regular => "regular file",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Symlink => "symlink",
            EntryKind::CharDevice => "character device",
            EntryKind::BlockDevice => "block device",
            EntryKind::Directory => "directory",
            EntryKind::Fifo => "fifo",
            EntryKind::Other(_) => "unsupported",
        }
    }
}

/// Which header dialect described the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderFormat {
    /// Unix V7: no magic.
    V7,
    /// POSIX ustar (`"ustar\0" "00"`).
    Ustar,
    /// GNU (`"ustar  \0"`), possibly with long-name/long-link/sparse headers.
    Gnu,
    /// ustar header preceded by a PAX extended header (`'x'`).
    Pax,
}

/// A point in time: seconds since the Unix epoch plus nanoseconds (from PAX records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (may be negative).
    pub secs: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nanos: u32,
}

/// One data segment of a sparse file: `length` bytes at `offset` of the logical file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SparseSegment {
    /// Offset in the logical (expanded) file.
    pub offset: u64,
    /// Number of data bytes stored in the archive for this segment.
    pub length: u64,
}

/// The layout of a sparse file: its data segments in order and its logical size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SparseMap {
    /// Which GNU sparse dialect described it: `"gnu"` (old `'S'`), `"0.0"`, `"0.1"` or `"1.0"`.
    pub format: &'static str,
    /// Size of the logical file, holes included.
    pub real_size: u64,
    /// Data segments, sorted and non-overlapping; their lengths add up to the entry's `size`.
    pub segments: Vec<SparseSegment>,
}

/// One member of a tar archive, with every attribute the headers gave it.
///
/// Paths and names are raw bytes: tar archives may hold non-UTF-8 names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// 0-based position of the member in the archive (extension headers not counted).
    pub index: u64,
    /// Offset of the member's first header block (extension headers included) in the uncompressed stream.
    pub header_offset: u64,
    /// The member's path as stored (after PAX `path` / GNU long names), without normalisation.
    pub path: Vec<u8>,
    /// The member's type.
    pub kind: EntryKind,
    /// The raw type flag byte of the main header.
    pub type_flag: u8,
    /// Header dialect.
    pub format: HeaderFormat,
    /// Permission and mode bits (including setuid/setgid/sticky), without file-type bits.
    pub mode: u32,
    /// Owner user ID.
    pub uid: u64,
    /// Owner group ID.
    pub gid: u64,
    /// Owner user name (may be empty).
    pub uname: Vec<u8>,
    /// Owner group name (may be empty).
    pub gname: Vec<u8>,
    /// Modification time, with PAX sub-second precision when given.
    pub mtime: Timestamp,
    /// Access time, when a PAX or GNU header gave one.
    pub atime: Option<Timestamp>,
    /// Change time, when a PAX or GNU header gave one.
    pub ctime: Option<Timestamp>,
    /// Number of content bytes stored in the archive for this member (for a sparse file:
    /// the data segments only, not the holes, not the 1.0 in-data map).
    pub size: u64,
    /// Target of a symlink or hardlink.
    pub link_target: Option<Vec<u8>>,
    /// Major and minor device numbers of a character or block device.
    pub device: Option<(u64, u64)>,
    /// Extended attributes from PAX `SCHILY.xattr.*` (or `LIBARCHIVE.xattr.*`) records, in order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Sparse layout, for GNU sparse members.
    pub sparse: Option<SparseMap>,
}

impl Entry {
    /// Size of the member's logical content: the real size for a sparse file, else `size`.
    pub fn logical_size(&self) -> u64 {
        self.sparse.as_ref().map_or(self.size, |s| s.real_size)
    }
}

//! Our own streaming tar block reader, written to keep every byte.
//!
//! [`TarReader`] reads 512-byte blocks from any `AsyncRead`, decodes v7, ustar, GNU
//! (long names, sparse 0.0/0.1/1.0 and old-style, base-256 numbers) and PAX headers, and
//! yields one [`Entry`] per member with a stream of its content. Everything that is not file
//! content (headers, extension headers, sparse maps, padding, end blocks, trailing bytes) is
//! handed, in order, to a [`RecordSink`]; [`record::RecordLog`] keeps it in memory and
//! [`record::rebuild`] writes `records + contents` back into the original stream.

pub(crate) mod entry;
pub(crate) mod header;
pub(crate) mod pax;
pub(crate) mod reader;
pub(crate) mod record;
pub(crate) mod sparse;

#[cfg(test)]
pub use entry::HeaderFormat;
#[cfg_attr(not(feature = "render"), allow(unused_imports))]
pub use entry::SparseMap;
pub use entry::SparseSegment;
pub use entry::{Entry, EntryKind, Timestamp};
pub use reader::TarReader;
pub use record::{RecordLog, RecordSink};
/// Most segments a sparse map may hold.
pub(crate) use sparse::MAX_SEGMENTS as MAX_SPARSE_SEGMENTS;

/// Size of a tar block.
pub const BLOCK: usize = 512;

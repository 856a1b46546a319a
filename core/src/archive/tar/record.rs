//! Records of a tar stream: every byte that is not file content, in order, plus a
//! marker where each member's content goes. `records + contents == original stream`.

use std::io::Write;

use super::entry::Entry;
use crate::Result;

/// Receives, in stream order, the non-content bytes of a tar stream and a marker where
/// each member's content belongs. The store writes these into an image's recipe.
pub trait RecordSink: Send {
    /// Bytes that are not file content: headers, extension headers, sparse maps,
    /// padding, end-of-archive blocks, trailing bytes.
    fn meta(&mut self, bytes: &[u8]) -> Result<()>;
    /// The next `entry.size` bytes of the stream are the content of `entry`.
    fn content(&mut self, entry: &Entry) -> Result<()>;
}

/// A sink that keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl RecordSink for NullSink {
    fn meta(&mut self, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }
    fn content(&mut self, _entry: &Entry) -> Result<()> {
        Ok(())
    }
}

impl<S: RecordSink + ?Sized> RecordSink for &mut S {
    fn meta(&mut self, bytes: &[u8]) -> Result<()> {
        (**self).meta(bytes)
    }
    fn content(&mut self, entry: &Entry) -> Result<()> {
        (**self).content(entry)
    }
}

/// One record of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Non-content bytes, as read (consecutive meta bytes are merged).
    Meta(Vec<u8>),
    /// The content of member `index`: `len` bytes.
    Content {
        /// The member's index in the archive.
        index: u64,
        /// Number of content bytes.
        len: u64,
    },
}

/// A `RecordSink` that keeps the records in memory (for tests and small archives).
#[derive(Debug, Default, Clone)]
pub struct RecordLog {
    /// The records, in stream order.
    pub records: Vec<Record>,
}

impl RecordSink for RecordLog {
    fn meta(&mut self, bytes: &[u8]) -> Result<()> {
        match self.records.last_mut() {
            Some(Record::Meta(last)) => last.extend_from_slice(bytes),
            _ => self.records.push(Record::Meta(bytes.to_vec())),
        }
        Ok(())
    }

    fn content(&mut self, entry: &Entry) -> Result<()> {
        self.records.push(Record::Content {
            index: entry.index,
            len: entry.size,
        });
        Ok(())
    }
}

impl RecordLog {
    /// Total number of non-content bytes kept.
    pub fn meta_len(&self) -> u64 {
        self.records
            .iter()
            .map(|r| match r {
                Record::Meta(bytes) => bytes.len() as u64,
                Record::Content { .. } => 0,
            })
            .sum()
    }

    /// Writes the original stream back: meta bytes as kept, and for each content marker
    /// whatever `content(index, len, out)` writes (it must write exactly `len` bytes).
    pub fn rebuild<W: Write>(
        &self,
        out: &mut W,
        mut content: impl FnMut(u64, u64, &mut W) -> std::io::Result<()>,
    ) -> Result<()> {
        for record in &self.records {
            match record {
                Record::Meta(bytes) => out.write_all(bytes)?,
                Record::Content { index, len } => content(*index, *len, out)?,
            }
        }
        Ok(())
    }
}

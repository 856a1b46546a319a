//! Staging one large file of an import (content over [`HEAD_LEN`]) without writing what
//! the store already has.
//!
//! The first MiB is held in memory; its SHA-256 and the file's size look up candidate
//! objects in the side index ([`super::heads`]). While at least one candidate's bytes equal
//! the stream, nothing is written: the rest is compared chunk by chunk (and hashed). At
//! the first difference a staging file is started: the equal prefix is copied (and hashed)
//! from the candidate object, then the stream is written and hashed as usual. Content equal
//! to a candidate to its end is pinned (a hardlink), not written, and takes the
//! candidate's name without being hashed: its bytes are the object's, so the image
//! regenerates exactly (a damaged object would be `fsck`'s to report, as for any image
//! using it). Memory stays at the head plus one chunk.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::heads::{HEAD_LEN, HeadKey};
use super::objects::{LargeObjectWriter, Staging};
use super::{ContentDigest, ContentHasher};
use crate::{Error, Result};

/// One large file being staged; feed it with [`LargeContent::write`], end with
/// [`LargeContent::finish`].
pub struct LargeContent {
    size: u64,
    hasher: ContentHasher,
    /// Bytes received so far.
    received: u64,
    /// The head while it is gathered; then the buffer candidates are read into.
    buffer: Vec<u8>,
    key: Option<HeadKey>,
    state: State,
}

enum State {
    /// Gathering the head.
    Head,
    /// Comparing with objects equal to the stream so far (never empty).
    Comparing(Vec<Candidate>),
    /// Writing a staging file.
    Writing(LargeObjectWriter),
}

/// An object whose bytes equal the stream so far.
struct Candidate {
    digest: ContentDigest,
    file: File,
}

impl LargeContent {
    /// Starts a file of `size` bytes.
    pub fn new(size: u64) -> LargeContent {
        LargeContent {
            size,
            hasher: ContentHasher::default(),
            received: 0,
            buffer: Vec::with_capacity(HEAD_LEN.min(size as usize)),
            key: None,
            state: State::Head,
        }
    }

    /// Takes the next chunk of the file's content.
    pub fn write(&mut self, staging: &mut Staging, chunk: &[u8]) -> Result<()> {
        let mut rest = chunk;
        if let State::Head = self.state {
            let take = rest.len().min(HEAD_LEN - self.buffer.len());
            self.buffer.extend_from_slice(&rest[..take]);
            self.received += take as u64;
            rest = &rest[take..];
            if self.buffer.len() == HEAD_LEN {
                self.end_head(staging)?;
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        let at = self.received;
        self.received += rest.len() as u64;
        match &mut self.state {
            State::Head => unreachable!("the head is complete before more is taken"),
            State::Writing(writer) => {
                self.hasher.update(rest);
                writer.write(rest)
            }
            State::Comparing(candidates) => {
                let buffer = &mut self.buffer;
                let mut diverged = None;
                candidates.retain_mut(|c| {
                    let same = equal_at(&c.file, at, rest, buffer);
                    if !same && diverged.is_none() {
                        diverged = Some(c.file.try_clone());
                    }
                    same
                });
                if !candidates.is_empty() {
                    return Ok(());
                }
                // Every candidate differs here: the stream so far equals their first `at`
                // bytes, copied from one of them.
                let source = diverged
                    .expect("a candidate was dropped")
                    .map_err(|e| Error::io("reopening an object", e))?;
                let mut writer = staging.large_writer()?;
                writer.copy_hashing(&source, at, &mut self.hasher)?;
                self.hasher.update(rest);
                writer.write(rest)?;
                self.state = State::Writing(writer);
                Ok(())
            }
        }
    }

    /// Takes `len` zeros (a hole of a sparse member): once the file is being written they
    /// are hashed and skipped, leaving a hole, not copied.
    pub fn write_zeros(&mut self, staging: &mut Staging, mut len: u64) -> Result<()> {
        while len > 0 {
            if let State::Writing(writer) = &mut self.state {
                super::objects::hash_zeros(&mut self.hasher, len);
                writer.skip_zeros(len)?;
                self.received += len;
                return Ok(());
            }
            let piece = super::objects::zero_pieces(len)
                .next()
                .expect("len > 0 gives a piece");
            self.write(staging, piece)?;
            len -= piece.len() as u64;
        }
        Ok(())
    }

    /// The head is complete: look up candidates, keep those whose head is equal, or start
    /// writing.
    fn end_head(&mut self, staging: &mut Staging) -> Result<()> {
        let key = HeadKey::of(self.size, &self.buffer);
        self.key = Some(key);
        let digests = staging.heads()?.candidates(&key).to_vec();
        let mut candidates = Vec::new();
        let mut scratch = Vec::new();
        for digest in digests {
            let Ok(file) = File::open(staging.object_path(&digest)) else {
                continue; // removed since the entry was written: only a hint
            };
            if file.metadata().is_ok_and(|m| m.len() == self.size)
                && equal_at(&file, 0, &self.buffer, &mut scratch)
            {
                candidates.push(Candidate { digest, file });
            }
        }
        if candidates.is_empty() {
            let mut writer = staging.large_writer()?;
            self.hasher.update(&self.buffer);
            writer.write(&self.buffer)?;
            self.buffer = Vec::new();
            self.state = State::Writing(writer);
        } else {
            self.buffer.clear();
            self.state = State::Comparing(candidates);
        }
        Ok(())
    }

    /// Ends the file: stages it (pinned or written) and returns its digest.
    pub fn finish(mut self, staging: &mut Staging) -> Result<ContentDigest> {
        if let State::Head = self.state {
            // Shorter than a head (only if the caller sends small content here).
            let mut writer = staging.large_writer()?;
            self.hasher.update(&self.buffer);
            writer.write(&self.buffer)?;
            self.state = State::Writing(writer);
        }
        let (digest, in_store) = match self.state {
            State::Head => unreachable!("replaced above"),
            State::Writing(writer) => {
                let digest = self.hasher.finish();
                (digest, staging.put_file(writer, digest)?)
            }
            State::Comparing(candidates) => {
                let same = &candidates[0];
                (same.digest, !staging.pin_object(same.digest, &same.file)?)
            }
        };
        if let Some(key) = self.key {
            staging.note_head(key, digest, in_store)?;
        }
        Ok(digest)
    }
}

/// Whether `file` holds `bytes` at offset `at` (`scratch` is a reusable buffer).
fn equal_at(file: &File, at: u64, bytes: &[u8], scratch: &mut Vec<u8>) -> bool {
    scratch.resize(bytes.len(), 0);
    file.read_exact_at(scratch, at).is_ok() && scratch[..] == *bytes
}

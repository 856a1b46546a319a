//! The side index of large objects by size and head: `heads/<size>-<head>-<digest>`, one
//! empty file per large object, where `head` is the SHA-256 of the object's first
//! [`HEAD_LEN`] bytes. An import holding the first MiB of a large file looks up the objects
//! that could hold the same content here, then compares the rest byte for byte instead of
//! writing it (see [`super::large`]).
//!
//! The index is a hint, never trusted: an entry whose object is missing or whose head is
//! wrong only costs a failed comparison. Imports add entries for the large objects they
//! publish or find; `gc` removes the entries of objects it removed; `fsck` rebuilds it from
//! the objects. A store made before the index existed works without it, and fills it as
//! images are imported again (or at the next `fsck`).

use std::collections::HashMap;
use std::fs::{DirEntry, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::paths::StorePaths;
use super::{ContentDigest, ContentHasher};
use crate::{Error, Result};

/// Length of the head that keys a large object: its first MiB. Content longer than this
/// is "large" (the import holds smaller content whole in memory).
pub const HEAD_LEN: usize = 1 << 20;

/// At most this many candidates are compared for one large file.
pub const MAX_CANDIDATES: usize = 4;

/// What a large object is looked up by: its size and the SHA-256 of its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeadKey {
    /// Size of the whole content.
    pub size: u64,
    /// SHA-256 of the first [`HEAD_LEN`] bytes.
    pub head: ContentDigest,
}

impl HeadKey {
    /// The key of content of `size` bytes starting with `head` (its first [`HEAD_LEN`]
    /// bytes, or all of it when shorter).
    pub fn of(size: u64, head: &[u8]) -> HeadKey {
        HeadKey {
            size,
            head: ContentDigest::of(head),
        }
    }

    fn entry_name(&self, digest: &ContentDigest) -> String {
        format!("{}-{}-{}", self.size, self.head.to_hex(), digest.to_hex())
    }

    fn parse_entry(name: &str) -> Option<(HeadKey, ContentDigest)> {
        let mut parts = name.split('-');
        let size = parts.next()?.parse().ok()?;
        let head = ContentDigest::from_hex(parts.next()?).ok()?;
        let digest = ContentDigest::from_hex(parts.next()?).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some((HeadKey { size, head }, digest))
    }
}

/// The side index as read at one moment (an import reads it once, at its first large file).
#[derive(Debug, Default)]
pub struct HeadIndex {
    by_key: HashMap<HeadKey, Vec<ContentDigest>>,
}

impl HeadIndex {
    /// Reads the side index of the store at `paths` (empty if it does not exist yet).
    pub fn load(paths: &StorePaths) -> Result<HeadIndex> {
        let mut index = HeadIndex::default();
        for (key, digest, _) in list(paths)? {
            let digests = index.by_key.entry(key).or_default();
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        Ok(index)
    }

    /// The objects that may hold content with this key (at most [`MAX_CANDIDATES`]).
    pub fn candidates(&self, key: &HeadKey) -> &[ContentDigest] {
        self.by_key
            .get(key)
            .map_or(&[][..], |d| &d[..d.len().min(MAX_CANDIDATES)])
    }

    /// Whether the index has an entry for `digest` under `key`.
    pub fn contains(&self, key: &HeadKey, digest: &ContentDigest) -> bool {
        self.by_key.get(key).is_some_and(|d| d.contains(digest))
    }

    /// Adds an entry for `digest` under `key`, in the files and here, unless present.
    pub fn record(
        &mut self,
        paths: &StorePaths,
        key: HeadKey,
        digest: ContentDigest,
    ) -> Result<()> {
        if self.contains(&key, &digest) {
            return Ok(());
        }
        record(paths, &key, &digest)?;
        self.by_key.entry(key).or_default().push(digest);
        Ok(())
    }
}

/// Writes the entry of `digest` under `key` (nothing if it exists).
pub fn record(paths: &StorePaths, key: &HeadKey, digest: &ContentDigest) -> Result<()> {
    let dir = paths.heads();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(key.entry_name(digest));
    match File::create_new(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

/// The entries of the folder `dir` (none if it does not exist), each an error if it cannot
/// be read, for the side indexes (`heads/`, `archives/`).
pub(crate) fn dir_entries(dir: &Path) -> Result<impl Iterator<Item = Result<DirEntry>> + '_> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    Ok(entries
        .into_iter()
        .flatten()
        .map(move |entry| entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))))
}

/// Every entry: its key, its object and its path; names that are not entries are skipped.
fn list(paths: &StorePaths) -> Result<Vec<(HeadKey, ContentDigest, PathBuf)>> {
    let dir = paths.heads();
    let mut out = Vec::new();
    for entry in dir_entries(&dir)? {
        let entry = entry?;
        if let Some((key, digest)) = HeadKey::parse_entry(&entry.file_name().to_string_lossy()) {
            out.push((key, digest, entry.path()));
        }
    }
    Ok(out)
}

/// Removes the entries whose object is gone (`gc`, after removing objects, under the
/// exclusive commit lock). Returns how many were removed.
pub fn prune(paths: &StorePaths) -> Result<u64> {
    let mut removed = 0;
    for (_, digest, path) in list(paths)? {
        if !paths.object(&digest).exists() && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Rebuilds the side index from `objects` (every object file of the store, with its
/// digest): adds the missing entries of large objects and removes entries whose object is
/// missing, not large or has another head (`fsck`). Returns the entries added and removed.
pub fn rebuild(paths: &StorePaths, objects: &[(ContentDigest, PathBuf)]) -> Result<(u64, u64)> {
    let mut wanted = HashMap::new();
    for (digest, path) in objects {
        if let Some(key) = key_of_object(path)? {
            wanted.insert(key.entry_name(digest), (key, *digest));
        }
    }
    let mut removed = 0;
    for (key, digest, path) in list(paths)? {
        if wanted.remove(&key.entry_name(&digest)).is_none() && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    let mut added = 0;
    for (key, digest) in wanted.values() {
        record(paths, key, digest)?;
        added += 1;
    }
    Ok((added, removed))
}

/// The key of the object file at `path`, if it is large (`None` for small or unreadable
/// objects: `fsck` reports those itself).
fn key_of_object(path: &Path) -> Result<Option<HeadKey>> {
    let Ok(file) = File::open(path) else {
        return Ok(None);
    };
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    if size <= HEAD_LEN as u64 {
        return Ok(None);
    }
    let mut hasher = ContentHasher::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = HEAD_LEN;
    let mut file = file;
    while left > 0 {
        let n = file
            .read(&mut buf[..left.min(256 * 1024)])
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
        left -= n;
    }
    Ok(Some(HeadKey {
        size,
        head: hasher.finish(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_round_trip() {
        let key = HeadKey::of(3 << 20, b"head");
        let digest = ContentDigest::of(b"whole");
        let name = key.entry_name(&digest);
        assert_eq!(HeadKey::parse_entry(&name), Some((key, digest)));
        assert_eq!(HeadKey::parse_entry("12-ab-cd"), None);
        assert_eq!(HeadKey::parse_entry(&format!("{name}-x")), None);
    }
}

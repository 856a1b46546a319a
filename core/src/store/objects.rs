//! The content-addressed object store and the staging area of an import.
//!
//! Objects are immutable files named by the SHA-256 of their content, written once and
//! shared by every image (and every repeat inside one image). An import never writes into
//! `objects/` directly: it fills a private staging folder, where new content is written and
//! content already in the store is *pinned* by a hardlink (so a concurrent `gc` that removes
//! the object cannot take it away), then [`Staging::publish`] makes the data durable and
//! renames everything into place under the commit lock, just before the index commit.
//! Only a rename that creates an object counts it as new (a rename never replaces an
//! object), so concurrent imports of the same content count each object once in total.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ContentDigest;
use super::heads::{HeadIndex, HeadKey};
use super::paths::StorePaths;
use crate::{Error, Result};

/// Mode of content objects: read-only for everyone.
pub const OBJECT_MODE: u32 = 0o444;

/// Name of the lock file inside a staging folder; held for the staging's lifetime.
pub const STAGING_LOCK: &str = ".lock";

/// Prefix of staging folder names under `tmp/`.
pub const STAGING_PREFIX: &str = "import-";

/// Name prefix of the copies of pushed uploads in `tmp/` (see `serve::push`); each is
/// locked (flock) by its push while it is written.
pub const PUSH_COPY_PREFIX: &str = "push-";

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// The private staging folder of one import.
pub struct Staging {
    paths: StorePaths,
    dir: PathBuf,
    _lock: File,
    /// Every content staged (written or pinned), with its size.
    staged: HashMap<ContentDigest, u64>,
    /// Large contents written here, to enter in the side index once published.
    new_heads: Vec<(HeadKey, ContentDigest)>,
    heads: Option<HeadIndex>,
    staged_bytes: u64,
    new_bytes: u64,
    new_objects: u64,
    next_tmp: u64,
}

impl Staging {
    /// Creates a staging folder under the store's `tmp/` and locks it, so that `gc` and
    /// `fsck` can tell a live import from the leftovers of a killed one.
    pub fn create(paths: &StorePaths) -> Result<Staging> {
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        // Made and locked under a name the stale-staging sweep ignores, then renamed: the
        // sweep never sees an `import-` folder whose lock is not held yet.
        let forming = paths.tmp().join(format!("forming-{name}"));
        std::fs::create_dir_all(&forming)
            .map_err(|e| Error::io(format!("creating {}", forming.display()), e))?;
        let lock_path = forming.join(STAGING_LOCK);
        let lock = File::create(&lock_path)
            .map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| Error::io("locking the staging folder", e))?;
        let dir = paths.tmp().join(format!("{STAGING_PREFIX}{name}"));
        std::fs::rename(&forming, &dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Staging {
            paths: paths.clone(),
            dir,
            _lock: lock,
            staged: HashMap::new(),
            new_heads: Vec::new(),
            heads: None,
            staged_bytes: 0,
            new_bytes: 0,
            new_objects: 0,
            next_tmp: 0,
        })
    }

    /// The staging folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of content written into the staging folder so far (content the store
    /// already has is pinned or compared, not written).
    pub fn staged_bytes(&self) -> u64 {
        self.staged_bytes
    }

    /// Bytes of the objects [`Staging::publish`] created (0 before it ran).
    pub fn new_bytes(&self) -> u64 {
        self.new_bytes
    }

    /// Number of objects [`Staging::publish`] created (0 before it ran): objects another
    /// import published first are not counted.
    pub fn new_objects(&self) -> u64 {
        self.new_objects
    }

    /// The path of the object `digest` in the store.
    pub fn object_path(&self, digest: &ContentDigest) -> PathBuf {
        self.paths.object(digest)
    }

    /// The side index of large objects, read at the first call.
    pub fn heads(&mut self) -> Result<&HeadIndex> {
        if self.heads.is_none() {
            self.heads = Some(HeadIndex::load(&self.paths)?);
        }
        Ok(self.heads.as_ref().expect("just loaded"))
    }

    /// Notes that the large content `digest` has key `key`: its side-index entry is
    /// written now if the object is in the store, else when [`Staging::publish`] creates it.
    pub fn note_head(&mut self, key: HeadKey, digest: ContentDigest, in_store: bool) -> Result<()> {
        if !in_store {
            self.new_heads.push((key, digest));
            return Ok(());
        }
        self.heads()?;
        let paths = self.paths.clone();
        self.heads
            .as_mut()
            .expect("loaded above")
            .record(&paths, key, digest)
    }

    fn staged_path(&self, digest: &ContentDigest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Stages content held in memory under its digest.
    pub fn put_bytes(&mut self, digest: ContentDigest, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        if self.staged.contains_key(&digest) || self.pin_existing(&digest)? {
            self.staged.insert(digest, len);
            return Ok(());
        }
        let path = self.staged_path(&digest);
        let file =
            File::create(&path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        write_with_holes(&file, 0, bytes)
            .and_then(|()| extend_to(&file, len))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        set_object_mode(&file, &path)?;
        self.staged_bytes += len;
        self.staged.insert(digest, len);
        Ok(())
    }

    /// Stages the object `digest`, which the store had when `object` (an open handle on
    /// it) was opened: pinned by a hardlink, or, if a concurrent `gc` removed it meanwhile,
    /// copied from the handle. Returns whether it had to be copied.
    pub fn pin_object(&mut self, digest: ContentDigest, object: &File) -> Result<bool> {
        let len = object
            .metadata()
            .map_err(|e| Error::io("reading an object's size", e))?
            .len();
        if self.staged.contains_key(&digest) || self.pin_existing(&digest)? {
            self.staged.insert(digest, len);
            return Ok(false);
        }
        let mut writer = self.large_writer()?;
        writer.copy_from(object, len)?;
        self.put_file(writer, digest)?;
        Ok(true)
    }

    /// A writer for content too large to hold in memory; finish it with [`Staging::put_file`].
    pub fn large_writer(&mut self) -> Result<LargeObjectWriter> {
        let path = self.dir.join(format!("partial-{}", self.next_tmp));
        self.next_tmp += 1;
        let file =
            File::create(&path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(LargeObjectWriter {
            file,
            path,
            len: 0,
            tail: Vec::with_capacity(HOLE_BLOCK),
        })
    }

    /// Stages the content written to `writer`, whose SHA-256 is `digest` (the caller
    /// hashed what it wrote). Returns whether the store had it (then it is pinned and
    /// the file written is dropped).
    pub fn put_file(&mut self, writer: LargeObjectWriter, digest: ContentDigest) -> Result<bool> {
        let mut writer = writer;
        writer
            .finish()
            .map_err(|e| Error::io(format!("writing {}", writer.path.display()), e))?;
        let LargeObjectWriter {
            file, path, len, ..
        } = writer;
        self.staged_bytes += len;
        let already = self.staged.contains_key(&digest);
        let pinned = !already && self.pin_existing(&digest)?;
        if already || pinned {
            drop(file);
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        } else {
            set_object_mode(&file, &path)?;
            drop(file);
            let target = self.staged_path(&digest);
            std::fs::rename(&path, &target)
                .map_err(|e| Error::io(format!("renaming {}", path.display()), e))?;
        }
        self.staged.insert(digest, len);
        Ok(pinned)
    }

    /// Pins an object already in the store by hardlinking it into the staging folder;
    /// `false` if the store does not have it.
    fn pin_existing(&self, digest: &ContentDigest) -> Result<bool> {
        let object = self.paths.object(digest);
        let pinned = self.staged_path(digest);
        match std::fs::hard_link(&object, &pinned) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
            // EMLINK (too many links) or EXDEV: pin a copy instead.
            Err(e) if e.raw_os_error() == Some(31) || e.raw_os_error() == Some(18) => {
                std::fs::copy(&object, &pinned)
                    .map_err(|e| Error::io(format!("copying {}", object.display()), e))?;
                Ok(true)
            }
            Err(e) => Err(Error::io(format!("linking {}", object.display()), e)),
        }
    }

    /// Moves the staged objects into the store. Data is made durable first (one `syncfs`),
    /// then every object the store lacks is renamed into place (restoring any that a
    /// concurrent `gc` removed; an object already there is never replaced), then the
    /// renames are made durable. The objects created are counted ([`Staging::new_objects`],
    /// [`Staging::new_bytes`]) and the large ones entered in the side index. The caller
    /// holds the commit lock.
    pub fn publish(&mut self) -> Result<()> {
        sync_filesystem(&self.dir)?;
        let mut shards = HashSet::new();
        for (digest, len) in &self.staged {
            let target = self.paths.object(digest);
            let shard = target
                .parent()
                .expect("objects live in a shard folder")
                .to_path_buf();
            if shards.insert(shard.clone()) {
                std::fs::create_dir_all(&shard)
                    .map_err(|e| Error::io(format!("creating {}", shard.display()), e))?;
            }
            let staged = self.staged_path(digest);
            if rename_no_replace(&staged, &target)
                .map_err(|e| Error::io(format!("publishing {}", target.display()), e))?
            {
                self.new_objects += 1;
                self.new_bytes += len;
            }
        }
        sync_filesystem(&self.dir)?;
        for (key, digest) in std::mem::take(&mut self.new_heads) {
            self.note_head(key, digest, true)?;
        }
        Ok(())
    }

    /// Moves a finished file (the recipe) from the staging folder to `target`, durably.
    pub fn publish_file(&self, name: &str, target: &Path) -> Result<()> {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::rename(self.dir.join(name), target)
            .map_err(|e| Error::io(format!("publishing {}", target.display()), e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Streams one large object into the staging folder (the caller hashes it).
pub struct LargeObjectWriter {
    file: File,
    path: PathBuf,
    /// Bytes appended so far (the tail included).
    len: u64,
    /// The last bytes appended, not yet written: the start of a block (less than
    /// [`HOLE_BLOCK`] bytes, at offset `len - tail.len()`, which is block-aligned).
    tail: Vec<u8>,
}

impl LargeObjectWriter {
    /// Appends content; whole file-system blocks of zeros are left as holes (the bytes of
    /// a block not yet complete wait in `tail`, so blocks split across calls are judged whole).
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        let io = |e| Error::io(format!("writing {}", self.path.display()), e);
        let block = HOLE_BLOCK as u64;
        if !self.tail.is_empty() {
            let take = bytes.len().min(HOLE_BLOCK - self.tail.len());
            self.tail.extend_from_slice(&bytes[..take]);
            self.len += take as u64;
            bytes = &bytes[take..];
            if self.tail.len() < HOLE_BLOCK {
                return Ok(());
            }
            write_with_holes(&self.file, self.len - block, &self.tail).map_err(io)?;
            self.tail.clear();
        }
        // self.len is block-aligned here (the tail is empty).
        let whole = bytes.len() - bytes.len() % HOLE_BLOCK;
        write_with_holes(&self.file, self.len, &bytes[..whole]).map_err(io)?;
        self.len += whole as u64;
        self.tail.extend_from_slice(&bytes[whole..]);
        self.len += (bytes.len() - whole) as u64;
        Ok(())
    }

    /// Appends `len` zeros without writing them: the blocks they cover stay holes.
    pub fn skip_zeros(&mut self, mut len: u64) -> Result<()> {
        if !self.tail.is_empty() {
            let fill = len.min((HOLE_BLOCK - self.tail.len()) as u64);
            self.write(&ZEROS[..fill as usize])?;
            len -= fill;
            if len == 0 {
                return Ok(());
            }
        }
        // The tail is empty: `len` starts on a block boundary.
        let aligned = len - len % HOLE_BLOCK as u64;
        self.len += aligned;
        self.write(&ZEROS[..(len - aligned) as usize])
    }

    /// Writes the tail and sets the length (trailing holes): the object is complete.
    fn finish(&mut self) -> std::io::Result<()> {
        let start = self.len - self.tail.len() as u64;
        write_with_holes(&self.file, start, &self.tail)?;
        self.tail.clear();
        extend_to(&self.file, self.len)
    }

    /// Appends the first `len` bytes of `source` (read from its start, whatever its
    /// position; the kernel copies them when it can).
    pub fn copy_from(&mut self, source: &File, len: u64) -> Result<()> {
        if self.len != 0 || !self.tail.is_empty() {
            return Err(Error::new(
                crate::ErrorKind::InvalidArgument,
                "copy_from needs an empty object writer",
            ));
        }
        // Holes kept: the data ranges copied, the rest left unwritten.
        crate::fs::copy_file_data(source, &self.file, len)?;
        self.len += len;
        Ok(())
    }

    /// Appends the first `len` bytes of `source` (read from its start), adding them to
    /// `hasher`.
    pub fn copy_hashing(
        &mut self,
        source: &File,
        len: u64,
        hasher: &mut super::ContentHasher,
    ) -> Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0u64;
        while at < len {
            let want = buf.len().min((len - at) as usize);
            std::os::unix::fs::FileExt::read_exact_at(source, &mut buf[..want], at)
                .map_err(|e| Error::io("reading an object", e))?;
            hasher.update(&buf[..want]);
            self.write(&buf[..want])?;
            at += want as u64;
        }
        Ok(())
    }
}

/// Runs of zeros at least this long, aligned to it in the file, are left as holes when an
/// object is written (the block size of common file systems; on one with larger blocks the
/// file system allocates what it must).
pub const HOLE_BLOCK: usize = 4096;

/// A buffer of zeros, to hash the holes of objects without reading them.
static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];

/// Whether `bytes` are all zeros.
fn all_zero(bytes: &[u8]) -> bool {
    // memcmp against itself shifted by one: stops at the first byte that differs.
    bytes.first().is_none_or(|&b| b == 0) && bytes[1..] == bytes[..bytes.len().saturating_sub(1)]
}

/// Writes `bytes` at `offset` of `file`, leaving every aligned [`HOLE_BLOCK`] of zeros
/// unwritten (a hole, if nothing was written there before). The file may end up shorter
/// than `offset + bytes.len()` (trailing zeros): [`extend_to`] sets its length.
pub fn write_with_holes(file: &File, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let block = HOLE_BLOCK as u64;
    let mut pos = 0usize;
    // Data not yet written: bytes[run..pos].
    let mut run = 0usize;
    while pos < bytes.len() {
        let at = offset + pos as u64;
        let to_boundary = ((block - at % block) % block) as usize;
        if to_boundary > 0 {
            pos = (pos + to_boundary).min(bytes.len());
            continue;
        }
        let end = (pos + HOLE_BLOCK).min(bytes.len());
        if end - pos == HOLE_BLOCK && all_zero(&bytes[pos..end]) {
            if run < pos {
                file.write_all_at(&bytes[run..pos], offset + run as u64)?;
            }
            run = end;
        }
        pos = end;
    }
    if run < bytes.len() {
        file.write_all_at(&bytes[run..], offset + run as u64)?;
    }
    Ok(())
}

/// Sets the length of `file` to `len` if it is shorter (trailing holes).
pub fn extend_to(file: &File, len: u64) -> std::io::Result<()> {
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Feeds the first `len` bytes of `file` to `hasher`: its data read, its holes
/// (`SEEK_DATA`/`SEEK_HOLE`) hashed as zeros without being read.
pub fn hash_file(file: &File, len: u64, hasher: &mut super::ContentHasher) -> std::io::Result<()> {
    use rustix::fs::SeekFrom;
    use rustix::io::Errno;
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = |from: u64, to: u64, hasher: &mut super::ContentHasher| -> std::io::Result<()> {
        let mut at = from;
        while at < to {
            let want = buf.len().min((to - at) as usize);
            let n = file.read_at(&mut buf[..want], at)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(())
    };
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d.min(len),
            Err(Errno::NXIO) => len,
            // No SEEK_DATA here: read everything.
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return read(pos, len, hasher),
            Err(e) => return Err(e.into()),
        };
        hash_zeros(hasher, data - pos);
        if data >= len {
            break;
        }
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data))
            .map_err(std::io::Error::from)?
            .min(len);
        read(data, hole, hasher)?;
        pos = hole;
    }
    Ok(())
}

/// Feeds `len` zeros to `hasher`.
pub fn hash_zeros(hasher: &mut super::ContentHasher, mut len: u64) {
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..n]);
        len -= n as u64;
    }
}

/// `len` zeros, in pieces of at most 64 KiB (to feed code that takes slices).
pub fn zero_pieces(len: u64) -> impl Iterator<Item = &'static [u8]> {
    let step = ZEROS.len() as u64;
    (0..len.div_ceil(step)).map(move |i| &ZEROS[..(len - i * step).min(step) as usize])
}

/// Renames `from` to `to` unless `to` exists; `true` if it was renamed. Where the file
/// system has no `RENAME_NOREPLACE`, a hardlink does the same (and `from` stays).
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => match std::fs::hard_link(from, to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        },
        Err(e) => Err(e.into()),
    }
}

fn set_object_mode(file: &File, path: &Path) -> Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(OBJECT_MODE))
        .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))
}

/// Flushes every dirty page of the file system holding `path` (one `syncfs` call,
/// far cheaper than an fsync per object).
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io("syncfs", e.into()))
}

/// Removes staging folders left by killed imports (those whose lock is free), and
/// copies of pushed uploads left by killed servers (unlocked and a minute old).
/// Returns how many were removed.
pub fn remove_stale_staging(paths: &StorePaths) -> Result<u64> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(paths.tmp()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("listing tmp/", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing tmp/", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PUSH_COPY_PREFIX) {
            // A push copy nobody holds and that has not changed for a minute: left by a
            // server that was killed. A push holds its lock until it renames or deletes it.
            let path = entry.path();
            let stale = File::open(&path).is_ok_and(|f| f.try_lock().is_ok())
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60));
            if stale && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
            continue;
        }
        if !name.starts_with(STAGING_PREFIX) && !name.starts_with("forming-") {
            continue;
        }
        let dir = entry.path();
        let old = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60))
        };
        let stale = if name.starts_with(STAGING_PREFIX) {
            // Renamed to `import-` only once locked: a free lock means its owner is gone.
            File::open(dir.join(STAGING_LOCK)).map_or(true, |lock| lock.try_lock().is_ok())
        } else {
            old() // a `forming-` folder of a process killed while creating it
        };
        if stale && std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Content with zero runs of every alignment, fed in pieces of awkward sizes: the file
    /// holds it exactly, its aligned zero blocks are holes, and `hash_file` hashes it right.
    #[test]
    fn writer_leaves_zero_blocks_as_holes_across_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = Vec::new();
        content.extend_from_slice(&[7u8; 100]);
        content.resize(content.len() + (1 << 20), 0); // 1 MiB of zeros, unaligned start
        content.extend_from_slice(b"data");
        content.resize(content.len() + 3 * HOLE_BLOCK + 17, 0);
        content.push(1);
        let skipped = 5 << 20; // then zeros given as a hole, and zeros at the end
        for piece in [1usize, 511, 4096, 4097, 65536, 1 << 20] {
            let path = dir.path().join(format!("object-{piece}"));
            let file = File::create(&path).unwrap();
            let mut writer = LargeObjectWriter {
                file,
                path: path.clone(),
                len: 0,
                tail: Vec::new(),
            };
            for chunk in content.chunks(piece) {
                writer.write(chunk).unwrap();
            }
            writer.skip_zeros(skipped).unwrap();
            writer.write(&[2; 3]).unwrap();
            writer.skip_zeros(HOLE_BLOCK as u64 + 5).unwrap();
            writer.write(&vec![0; 2 * HOLE_BLOCK]).unwrap();
            writer.finish().unwrap();
            let mut expected = content.clone();
            expected.resize(expected.len() + skipped as usize, 0);
            expected.extend_from_slice(&[2; 3]);
            expected.resize(expected.len() + 3 * HOLE_BLOCK + 5, 0);
            let written = std::fs::read(&path).unwrap();
            assert!(written == expected, "pieces of {piece}");
            let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
            assert!(allocated <= 6 * HOLE_BLOCK as u64, "{piece}: {allocated}");
            let mut hasher = crate::store::ContentHasher::default();
            let file = File::open(&path).unwrap();
            hash_file(&file, expected.len() as u64, &mut hasher).unwrap();
            assert_eq!(hasher.finish(), ContentDigest::of(&expected));
        }
    }
}

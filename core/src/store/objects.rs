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
use std::io::Write;
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
        let mut file =
            File::create(&path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        file.write_all(bytes)
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
        Ok(LargeObjectWriter { file, path, len: 0 })
    }

    /// Stages the content written to `writer`, whose SHA-256 is `digest` (the caller
    /// hashed what it wrote). Returns whether the store had it (then it is pinned and
    /// the file written is dropped).
    pub fn put_file(&mut self, writer: LargeObjectWriter, digest: ContentDigest) -> Result<bool> {
        let LargeObjectWriter { file, path, len } = writer;
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
    len: u64,
}

impl LargeObjectWriter {
    /// Appends content.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.len += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    /// Appends the first `len` bytes of `source` (read from its start, whatever its
    /// position; the kernel copies them when it can).
    pub fn copy_from(&mut self, source: &File, len: u64) -> Result<()> {
        let mut source = PositionedReader {
            file: source,
            at: 0,
        };
        let copied = std::io::copy(&mut std::io::Read::take(&mut source, len), &mut self.file)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        if copied != len {
            return Err(Error::io(
                format!("copying into {}", self.path.display()),
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ));
        }
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

/// Reads a file from an offset with `pread`, leaving the handle's position alone.
struct PositionedReader<'a> {
    file: &'a File,
    at: u64,
}

impl std::io::Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
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

//! The content-addressed object store and the staging area of an import.
//!
//! Objects are immutable files named by the SHA-256 of their content, written once and
//! shared by every image (and every repeat inside one image). An import never writes into
//! `objects/` directly: it fills a private staging folder, where new content is written and
//! content already in the store is *pinned* by a hardlink (so a concurrent `gc` that removes
//! the object cannot take it away), then [`Staging::publish`] makes the data durable and
//! renames everything into place under the commit lock, just before the index commit.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::paths::StorePaths;
use super::{ContentDigest, ContentHasher};
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
    staged: HashSet<ContentDigest>,
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
            staged: HashSet::new(),
            new_bytes: 0,
            new_objects: 0,
            next_tmp: 0,
        })
    }

    /// The staging folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of content this import wrote that the store did not have.
    pub fn new_bytes(&self) -> u64 {
        self.new_bytes
    }

    /// Number of objects this import wrote that the store did not have.
    pub fn new_objects(&self) -> u64 {
        self.new_objects
    }

    fn staged_path(&self, digest: &ContentDigest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Stages content held in memory under its digest.
    pub fn put_bytes(&mut self, digest: ContentDigest, bytes: &[u8]) -> Result<()> {
        if self.staged.contains(&digest) || self.pin_existing(&digest)? {
            self.staged.insert(digest);
            return Ok(());
        }
        let path = self.staged_path(&digest);
        let mut file =
            File::create(&path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        file.write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        set_object_mode(&file, &path)?;
        self.new_bytes += bytes.len() as u64;
        self.new_objects += 1;
        self.staged.insert(digest);
        Ok(())
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
            hasher: ContentHasher::default(),
            len: 0,
        })
    }

    /// Stages the content written to `writer`; returns its digest.
    pub fn put_file(&mut self, writer: LargeObjectWriter) -> Result<ContentDigest> {
        let LargeObjectWriter {
            file,
            path,
            hasher,
            len,
        } = writer;
        let digest = hasher.finish();
        if self.staged.contains(&digest) || self.pin_existing(&digest)? {
            drop(file);
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        } else {
            set_object_mode(&file, &path)?;
            drop(file);
            let target = self.staged_path(&digest);
            std::fs::rename(&path, &target)
                .map_err(|e| Error::io(format!("renaming {}", path.display()), e))?;
            self.new_bytes += len;
            self.new_objects += 1;
        }
        self.staged.insert(digest);
        Ok(digest)
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
    /// then every object is renamed into place (restoring any that a concurrent `gc`
    /// removed), then the renames are made durable. The caller holds the commit lock.
    pub fn publish(&mut self) -> Result<()> {
        sync_filesystem(&self.dir)?;
        let mut shards = HashSet::new();
        for digest in &self.staged {
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
            std::fs::rename(&staged, &target)
                .map_err(|e| Error::io(format!("publishing {}", target.display()), e))?;
        }
        sync_filesystem(&self.dir)
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

/// Streams one large object into the staging folder, hashing as it writes.
pub struct LargeObjectWriter {
    file: File,
    path: PathBuf,
    hasher: ContentHasher,
    len: u64,
}

impl LargeObjectWriter {
    /// Appends content.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
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

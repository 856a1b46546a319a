//! The exploded tree of one stored image: its `rootfs/` on disk, built on first render,
//! cached, and built atomically.
//!
//! ```text
//! STORE/
//!   trees/sha512/<hex>/rootfs/    the tree of an image (read-only by convention)
//!   trees/sha512/<hex>.lock       taken while the tree is built (one builder at a time)
//!   checkouts/ab/abcd…            checkout objects, hardlinked into the trees
//!   tmp/tree-<pid>-<ns>-<n>/      a tree being built (holds .lock, out/rootfs, checkouts/)
//! ```
//!
//! **Source of truth.** A tree is made from the image's canonical tar regenerated from the
//! store ([`regenerate::export_reader`]), read with [`TarReader`]; the stream is hashed while it
//! is read and ends with an error unless it hashes to the image ID, so a corrupt store never
//! yields a tree (nor a checkout object: new ones are published only after that check). The
//! recipe is read alongside: its Content records come in the same order as the members that
//! have content, and give each member's content object.
//!
//! **Checkout objects.** A content object is `0444` and owned by the store's user, so it cannot
//! be linked into a tree as is. Each regular file with content becomes a *checkout object*: a
//! copy of the content object (a reflink where the file system can; holes kept for sparse
//! members) with the member's owner, mode, mtime and xattrs, named by the SHA-256 of (content
//! digest, sparse layout, uid, gid, mode, mtime, xattrs, occurrence) and hardlinked into the
//! tree. The occurrence counts the earlier members of the same image with the same key, so that
//! files that are separate in the archive stay separate inodes in the tree (the hardlink groups
//! are exactly those of the archive), while the same file in two images or two versions of an
//! image is one inode on disk. `EMLINK`/`EXDEV` fall back to a copy. Empty files are always
//! created in the tree, never linked. Checkout objects no tree uses any more (link count 1) are
//! removed by [`prune_checkouts`].
//!
//! **Everything else** (directories, symlinks, devices, FIFOs, tar hardlinks) is created with
//! [`fsops`], relative to the tree's root descriptor (directories reached with
//! [`fsops::open_dir_beneath`]), so whatever the archive holds, nothing is created outside the
//! tree. Directory metadata is applied last, deepest first, so that their mtimes stay as in the
//! archive.
//!
//! **Privileges.** Without root, device nodes, foreign owners and privileged xattrs fail with
//! [`ErrorKind::NeedsPrivilege`], or are skipped with warnings when the caller opts in
//! ([`Privileges::skip_unprivileged`]); a checkout object that could not be given its metadata
//! stays private to its tree (never shared).
//!
//! **When.** Trees are built on first render, not at import: an import stays one pass and costs
//! no extra disk for images that are only stored, fetched or exported.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use super::observe::Meter;
use crate::archive::layout::normalize_path;
use crate::archive::tar::{Entry, EntryKind, TarReader};
use crate::blocking::blocking;
use crate::fs::{self as fsops, NodeKind, NodeMeta, Privileges};
use crate::schema::ImageId;
use crate::store::paths::StorePaths;
use crate::store::recipe::{RecipeReader, RecipeRecord};
use crate::store::regenerate::ExportReader;
use crate::store::{ContentDigest, Store};
use crate::{Error, ErrorKind, Result};

/// Prefix of the folders of trees being built (and being removed) in `STORE/tmp/`.
const STAGE_PREFIX: &str = "tree-";
/// The lock file inside a stage folder, held while it is built.
const STAGE_LOCK: &str = ".lock";
/// At most this many warnings are kept (a summary line counts the rest).
const MAX_WARNINGS: usize = 50;

/// The exploded tree of an image, ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeBuilt {
    /// The tree: `STORE/trees/sha512/<hex>/rootfs`.
    pub path: PathBuf,
    /// The tree was already there (nothing was built).
    pub reused: bool,
    /// What was skipped or could not be reproduced (e.g. device nodes without root, when the
    /// caller opted in to skipping them).
    pub warnings: Vec<String>,
    /// Regular files in the tree (tar hardlinks not counted; 0 when reused).
    pub files: u64,
    /// Files hardlinked to checkout objects that were already in the store.
    pub linked_checkouts: u64,
    /// Checkout objects made for this tree.
    pub new_checkouts: u64,
}

/// Returns the exploded tree of the stored image `id`, building it if it is not there yet.
///
/// The tree is built in `STORE/tmp/` and renamed into place only once complete and verified
/// against the image ID; one process builds it at a time (a lock per image), others wait and
/// reuse it. Errors: [`ErrorKind::NotFound`] if the image is not in the store,
/// [`ErrorKind::CorruptStore`] if its recipe or objects do not give back the image,
/// [`ErrorKind::NeedsPrivilege`] for what needs root (see [`Privileges`]).
///
/// On a read-only store only a tree already there is returned;
/// [`ErrorKind::ReadOnlyStore`] otherwise (see `ensure_tree_in`).
pub async fn ensure_tree(store: &Store, id: &ImageId, privs: Privileges) -> Result<TreeBuilt> {
    ensure_tree_in(store, StorePaths::new(store.dir()), id, privs).await
}

/// [`ensure_tree`] with the render folders where `paths` says: with a render root
/// ([`StorePaths::with_render_root`]), the tree and its checkout objects are built (and
/// looked for) there, from the store's recipe and objects; that is how a read-only store
/// renders an image it has no tree of.
pub async fn ensure_tree_in(
    store: &Store,
    paths: StorePaths,
    id: &ImageId,
    privs: Privileges,
) -> Result<TreeBuilt> {
    ensure_tree_observed(store, paths, id, privs, Arc::new(Meter::silent())).await
}

/// [`ensure_tree_in`] counting each member of the image's tar on `meter` (one tick per
/// member): the build stops at the first tick after a cancellation, and its stage folder
/// is removed (nothing is published).
pub(crate) async fn ensure_tree_observed(
    store: &Store,
    paths: StorePaths,
    id: &ImageId,
    privs: Privileges,
    meter: Arc<Meter>,
) -> Result<TreeBuilt> {
    store.manifest(id).await?; // NotFound if the image is not stored
    if let Some(done) = existing(&paths, id) {
        return Ok(done);
    }
    if paths.trees().starts_with(store.dir()) {
        store.require_writable(&format!("build the rendered tree of {id}"))?;
    }
    let reader = store.export_reader(id).await?;
    let handle = tokio::runtime::Handle::current();
    let id = id.clone();
    blocking(move || build_locked(&paths, &id, reader, privs, &handle, &meter)).await
}

/// Removes the exploded tree of `id` (no error if there is none). The tree is first renamed
/// out of `trees/` so that a half-removed tree is never taken for a complete one.
pub fn remove_tree_of(paths: &StorePaths, id: &ImageId) -> Result<()> {
    let tree = paths.tree(id);
    let _ = std::fs::remove_file(lock_path(paths, id));
    if std::fs::symlink_metadata(&tree).is_err() {
        return Ok(());
    }
    let doomed = paths.render_tmp().join(stage_name("rm"));
    std::fs::create_dir_all(paths.render_tmp())
        .map_err(|e| Error::io(format!("creating {}", paths.render_tmp().display()), e))?;
    match std::fs::rename(&tree, &doomed) {
        Ok(()) => match fsops::remove_tree(&doomed) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()), // a stale-stage sweep won
            other => other,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", tree.display()), e)),
    }
}

/// Removes checkout objects that no tree uses any more (link count 1), and the shard folders
/// left empty, returning how many objects were removed and their bytes. Safe while trees are
/// built: a checkout removed just after a builder linked it leaves that tree intact (it only
/// loses the sharing), and a builder publishing into a shard removed meanwhile makes it again.
pub fn prune_checkouts(paths: &StorePaths) -> Result<(u64, u64)> {
    let root = paths.checkouts();
    let shards = match std::fs::read_dir(&root) {
        Ok(shards) => shards,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
    };
    let (mut count, mut bytes) = (0, 0);
    for shard in shards {
        let shard = shard.map_err(|e| Error::io(format!("listing {}", root.display()), e))?;
        let dir = match File::open(shard.path()) {
            Ok(dir) => dir,
            Err(_) => continue,
        };
        let names = std::fs::read_dir(shard.path())
            .map_err(|e| Error::io(format!("listing {}", shard.path().display()), e))?;
        for name in names {
            let name = name
                .map_err(|e| Error::io("listing checkouts", e))?
                .file_name();
            let Ok(st) = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if st.st_nlink <= 1 && rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).is_ok() {
                count += 1;
                bytes += st.st_blocks as u64 * 512;
            }
        }
        // Empty now: removed (rmdir refuses a shard a builder has just published into).
        let is_shard = shard.file_type().is_ok_and(|t| t.is_dir());
        if is_shard && std::fs::read_dir(shard.path()).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(shard.path());
        }
    }
    Ok((count, bytes))
}

// ---------------------------------------------------------------------------------------------

/// The lock file taken while the tree of `id` is built (and while it is set aside).
pub(crate) fn lock_path(paths: &StorePaths, id: &ImageId) -> PathBuf {
    paths.trees().join(format!("{}.lock", id.hex()))
}

fn existing(paths: &StorePaths, id: &ImageId) -> Option<TreeBuilt> {
    let rootfs = paths.tree(id).join("rootfs");
    std::fs::symlink_metadata(&rootfs)
        .is_ok_and(|m| m.is_dir())
        .then(|| TreeBuilt {
            path: rootfs,
            reused: true,
            warnings: Vec::new(),
            files: 0,
            linked_checkouts: 0,
            new_checkouts: 0,
        })
}

fn stage_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{STAGE_PREFIX}{kind}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `path` (and its parents) with mode 0700 if missing.
fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Removes the folders of tree builds whose process is gone (their lock is free), and of tree
/// removals that were interrupted (no lock, older than a minute); returns how many. Called
/// before each build; `gc` may call it too.
pub fn remove_stale_stages(paths: &StorePaths) -> u64 {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(paths.render_tmp()) else {
        return 0;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(STAGE_PREFIX.as_bytes()) {
            continue;
        }
        let dir = entry.path();
        let stale = match File::open(dir.join(STAGE_LOCK)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60)),
        };
        if stale && fsops::remove_tree(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A stage folder in `tmp/`, removed when dropped unless it was consumed.
struct Stage {
    dir: PathBuf,
    _lock: File,
}

impl Stage {
    fn create(paths: &StorePaths) -> Result<Stage> {
        private_dir(&paths.render_tmp())?;
        let dir = paths.render_tmp().join(stage_name("build"));
        std::fs::create_dir(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let lock = File::create(dir.join(STAGE_LOCK))
            .map_err(|e| Error::io(format!("creating the lock in {}", dir.display()), e))?;
        lock.lock()
            .map_err(|e| Error::io(format!("locking {}", dir.display()), e))?;
        Ok(Stage { dir, _lock: lock })
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fsops::remove_tree(&self.dir);
    }
}

/// Takes the build lock of the tree of `id` (made if missing), waiting for it; held until
/// the file is dropped. Its folder must exist.
pub(crate) fn lock_tree(paths: &StorePaths, id: &ImageId) -> Result<File> {
    let path = lock_path(paths, id);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    lock.lock()
        .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
    Ok(lock)
}

fn build_locked(
    paths: &StorePaths,
    id: &ImageId,
    reader: ExportReader,
    privs: Privileges,
    handle: &tokio::runtime::Handle,
    meter: &Meter,
) -> Result<TreeBuilt> {
    meter.tick(0)?;
    private_dir(&paths.trees())?;
    let lock = lock_tree(paths, id)?;
    if let Some(done) = existing(paths, id) {
        return Ok(done); // built by another process while we waited
    }
    let _ = remove_stale_stages(paths);
    let stage = Stage::create(paths)?;
    let mut built = match build(paths, id, reader, privs, handle, &stage, meter) {
        Ok(built) => built,
        Err(e) => {
            // Nothing published: the stage goes (dropped) and so does the lock file this
            // build made (a builder waiting on it still gets it, and publishing refuses to
            // replace a tree, so two builders at once stay safe).
            drop(stage);
            if existing(paths, id).is_none() {
                let _ = std::fs::remove_file(lock_path(paths, id));
            }
            drop(lock);
            return Err(e);
        }
    };
    // Publish the tree.
    let trees = File::open(paths.trees())
        .map_err(|e| Error::io(format!("opening {}", paths.trees().display()), e))?;
    let stage_fd = File::open(&stage.dir)
        .map_err(|e| Error::io(format!("opening {}", stage.dir.display()), e))?;
    match rustix::fs::renameat_with(&stage_fd, "out", &trees, id.hex(), RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(Errno::EXIST | Errno::NOTEMPTY) => built.reused = true, // someone else's won
        Err(Errno::INVAL) => {
            // No RENAME_NOREPLACE here: a plain rename still refuses a non-empty target.
            match rustix::fs::renameat(&stage_fd, "out", &trees, id.hex()) {
                Ok(()) => {}
                Err(Errno::EXIST | Errno::NOTEMPTY) => built.reused = true,
                Err(e) => return Err(Error::io("publishing the tree", e.into())),
            }
        }
        Err(e) => return Err(Error::io("publishing the tree", e.into())),
    }
    drop(stage);
    drop(lock);
    Ok(built)
}

/// The metadata of a tar member as a node of `kind`.
pub(crate) fn node_meta(entry: &Entry, kind: NodeKind) -> Result<NodeMeta> {
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| {
            Error::new(ErrorKind::InvalidValue, format!("{what} {v} is too large"))
                .with_entry(&entry.path)
        })
    };
    Ok(NodeMeta {
        kind,
        mode: entry.mode & 0o7777,
        uid: id(entry.uid, "uid")?,
        gid: id(entry.gid, "gid")?,
        mtime: entry.mtime,
        xattrs: entry.xattrs.clone(),
    })
}

/// The key of a checkout object, before the occurrence is added.
fn base_key(entry: &Entry, digest: &ContentDigest, meta: &NodeMeta) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"acikit checkout v1\0");
    h.update(digest.0);
    h.update(entry.size.to_le_bytes());
    match &entry.sparse {
        None => h.update([0u8]),
        Some(map) => {
            h.update([1u8]);
            h.update(map.real_size.to_le_bytes());
            h.update((map.segments.len() as u64).to_le_bytes());
            for s in &map.segments {
                h.update(s.offset.to_le_bytes());
                h.update(s.length.to_le_bytes());
            }
        }
    }
    h.update(meta.uid.to_le_bytes());
    h.update(meta.gid.to_le_bytes());
    h.update(meta.mode.to_le_bytes());
    h.update(meta.mtime.secs.to_le_bytes());
    h.update(meta.mtime.nanos.to_le_bytes());
    h.update((meta.xattrs.len() as u64).to_le_bytes());
    for (k, v) in &meta.xattrs {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k);
        h.update((v.len() as u64).to_le_bytes());
        h.update(v);
    }
    h.finalize().into()
}

fn checkout_key(base: &[u8; 32], occurrence: u64) -> String {
    let mut h = Sha256::new();
    h.update(base);
    h.update(occurrence.to_le_bytes());
    hex::encode(h.finalize())
}

/// The content object of a member, as its recipe record gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberContent {
    /// The object.
    pub digest: ContentDigest,
    /// Whether the object holds the member's logical content (holes as zeros): always, but
    /// for a sparse member recorded by a version 1 recipe, whose object holds its stored
    /// bytes (the data segments one after another).
    pub logical: bool,
}

/// The content of the tar member `entry` of `id`: the recipe's next Content or Sparse
/// record (its Meta records skipped) for a regular file or a member with data, `None` for
/// others.
pub(crate) fn member_content<R: std::io::Read>(
    recipe: &mut RecipeReader<R>,
    entry: &Entry,
    id: &ImageId,
) -> Result<Option<MemberContent>> {
    if entry.size == 0 && entry.kind != EntryKind::Regular {
        return Ok(None);
    }
    loop {
        match recipe.next_record()? {
            Some(RecipeRecord::Meta(_)) => continue,
            Some(RecipeRecord::Content { len, digest }) => {
                if len != entry.size {
                    return Err(corrupt(format!(
                        "the recipe of {id} does not match its tar (content of {} bytes where \
                         the member has {})",
                        len, entry.size
                    ))
                    .with_entry(&entry.path));
                }
                return Ok(digest.map(|digest| MemberContent {
                    digest,
                    logical: entry.sparse.is_none(),
                }));
            }
            Some(RecipeRecord::Sparse { len, map, digest }) => {
                if len != entry.size || entry.sparse.as_ref() != Some(&map) {
                    return Err(corrupt(format!(
                        "the recipe of {id} does not match its tar (a sparse content of {len} \
                         bytes where the member has {}, or another map)",
                        entry.size
                    ))
                    .with_entry(&entry.path));
                }
                return Ok(Some(MemberContent {
                    digest,
                    logical: true,
                }));
            }
            None => {
                return Err(corrupt(format!(
                    "the recipe of {id} has fewer contents than its tar"
                )));
            }
        }
    }
}

/// Checks that the recipe of `id`, its tar read to the end, has no Content record left.
pub(crate) fn recipe_done<R: std::io::Read>(
    recipe: &mut RecipeReader<R>,
    id: &ImageId,
) -> Result<()> {
    while let Some(record) = recipe.next_record()? {
        if let RecipeRecord::Content { .. } | RecipeRecord::Sparse { .. } = record {
            return Err(corrupt(format!(
                "the recipe of {id} has more contents than its tar"
            )));
        }
    }
    Ok(())
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::CorruptStore, what.to_string())
}

/// Splits a tree-relative path into its parent and last component.
pub(crate) fn split(rel: &[u8]) -> (&Path, &OsStr) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            Path::new(OsStr::from_bytes(&rel[..i])),
            OsStr::from_bytes(&rel[i + 1..]),
        ),
        None => (Path::new(""), OsStr::from_bytes(rel)),
    }
}

/// Where a member goes: `None` for `manifest` and the archive's root, `Some(b"")` for
/// `rootfs` itself, `Some(rel)` for what is below it.
pub(crate) fn tree_path(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let p = normalize_path(raw)?;
    if p.is_empty() || p == b"manifest" {
        return Ok(None);
    }
    if p == b"rootfs" {
        return Ok(Some(Vec::new()));
    }
    match p.strip_prefix(b"rootfs/") {
        Some(rel) => Ok(Some(rel.to_vec())),
        None => Err(Error::new(
            ErrorKind::ExtraTopLevelEntry,
            "the entry is neither the manifest nor below rootfs/",
        )
        .with_entry(raw)),
    }
}

struct Builder<'a> {
    paths: &'a StorePaths,
    privs: Privileges,
    warnings: Vec<String>,
    /// The tree's root (`out/rootfs` in the stage).
    root: OwnedFd,
    /// `checkouts/` in the stage: new checkout objects, published once the image is verified.
    staged: OwnedFd,
    /// Names of the staged checkout objects to publish.
    to_publish: Vec<String>,
    occurrences: HashMap<[u8; 32], u64>,
    /// Directories from the archive, with their metadata (applied at the end).
    dirs: Vec<(Vec<u8>, NodeMeta)>,
    /// Directories the archive implies without listing them.
    implied: Vec<Vec<u8>>,
    root_meta: Option<NodeMeta>,
    /// The last parent directory opened.
    parent: Option<(Vec<u8>, OwnedFd)>,
    reflink: bool,
    /// The owner this process gives what it cannot give the archive's owner (when skipping).
    own: Option<(u32, u32)>,
    /// Nodes that got that owner instead of the archive's.
    owners_replaced: u64,
    files: u64,
    linked_checkouts: u64,
    new_checkouts: u64,
}

fn build(
    paths: &StorePaths,
    id: &ImageId,
    reader: ExportReader,
    privs: Privileges,
    handle: &tokio::runtime::Handle,
    stage: &Stage,
    meter: &Meter,
) -> Result<TreeBuilt> {
    let out = stage.dir.join("out");
    for dir in [out.join("rootfs"), stage.dir.join("checkouts")] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let open = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening {}", p.display()), e.into()))
    };
    let mut b = Builder {
        paths,
        privs,
        warnings: Vec::new(),
        root: open(&out.join("rootfs"))?,
        staged: open(&stage.dir.join("checkouts"))?,
        to_publish: Vec::new(),
        occurrences: HashMap::new(),
        dirs: Vec::new(),
        implied: Vec::new(),
        root_meta: None,
        parent: None,
        reflink: true,
        own: (privs.skip_unprivileged && !privs.can_chown).then(|| {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            )
        }),
        owners_replaced: 0,
        files: 0,
        linked_checkouts: 0,
        new_checkouts: 0,
    };

    let recipe_path = paths.recipe(id);
    let recipe_file = File::open(&recipe_path)
        .map_err(|e| Error::io(format!("opening {}", recipe_path.display()), e))?;
    let mut recipe = RecipeReader::new(std::io::BufReader::new(recipe_file))?;
    let mut tar = TarReader::new(reader);
    while let Some(entry) = handle.block_on(tar.next_entry())? {
        let content = member_content(&mut recipe, &entry, id)?;
        b.member(&entry, content).map_err(|e| {
            if e.entry().is_some() {
                e
            } else {
                e.with_entry(&entry.path)
            }
        })?;
        meter.tick(1)?;
    }
    // The tar was read to its end: it hashed to the image ID. The recipe must be done too.
    recipe_done(&mut recipe, id)?;
    b.finish_dirs(&out)?;
    // Contents on disk before any name that points at them is published. A tree built in a
    // render root (a read-only store's render) is neither shared nor kept: like a run's
    // copy, it is not synced (a `syncfs` of a whole image would cost seconds for nothing).
    if paths.render_root().is_none() {
        crate::store::objects::sync_filesystem(&stage.dir)?;
    }
    b.publish_checkouts()?;
    if b.owners_replaced > 0 {
        let (uid, gid) = b.own.unwrap_or_default();
        b.warnings.insert(
            0,
            format!(
                "{} nodes are owned by {uid}:{gid} (this process) instead of the archive's \
                 owners: setting foreign owners needs root",
                b.owners_replaced
            ),
        );
    }
    // Name what warnings are about as in the archive, not by their place in the stage.
    if let Ok(stage_root) = std::fs::canonicalize(out.join("rootfs")) {
        let stage_root = stage_root.to_string_lossy().into_owned();
        for w in &mut b.warnings {
            *w = w.replace(&stage_root, "rootfs");
        }
    }
    let warnings = collapse(std::mem::take(&mut b.warnings));
    Ok(TreeBuilt {
        path: paths.tree(id).join("rootfs"),
        reused: false,
        warnings,
        files: b.files,
        linked_checkouts: b.linked_checkouts,
        new_checkouts: b.new_checkouts,
    })
}

/// Keeps the first [`MAX_WARNINGS`] warnings and counts the others.
fn collapse(mut warnings: Vec<String>) -> Vec<String> {
    if warnings.len() > MAX_WARNINGS {
        let more = warnings.len() - MAX_WARNINGS;
        warnings.truncate(MAX_WARNINGS);
        warnings.push(format!("... and {more} more warnings"));
    }
    warnings
}

impl Builder<'_> {
    /// The directory `rel` of the tree (created, with the missing ancestors, when the archive
    /// only implies it).
    fn dir(&mut self, rel: &[u8]) -> Result<BorrowedFd<'_>> {
        if self.parent.as_ref().is_none_or(|(p, _)| p != rel) {
            let path = Path::new(OsStr::from_bytes(rel));
            let fd = match fsops::open_dir_beneath(self.root.as_fd(), path) {
                Ok(fd) => fd,
                Err(e) if e.kind() == ErrorKind::NotFound => self.make_implied(rel)?,
                Err(e) => return Err(e),
            };
            self.parent = Some((rel.to_vec(), fd));
        }
        Ok(self.parent.as_ref().expect("just set").1.as_fd())
    }

    /// Creates the directories of `rel` that do not exist, one component at a time.
    fn make_implied(&mut self, rel: &[u8]) -> Result<OwnedFd> {
        let mut cur = fsops::open_dir_beneath(self.root.as_fd(), Path::new(""))?;
        let mut done = 0usize;
        for comp in rel.split(|&b| b == b'/') {
            let name = OsStr::from_bytes(comp);
            let sub = done + comp.len();
            match rustix::fs::mkdirat(&cur, name, Mode::RWXU) {
                Ok(()) => self.implied.push(rel[..sub].to_vec()),
                Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(Error::io(
                        format!(
                            "creating the directory {}",
                            String::from_utf8_lossy(&rel[..sub])
                        ),
                        e.into(),
                    ));
                }
            }
            cur = fsops::open_dir_beneath(cur.as_fd(), Path::new(name))?;
            done = sub + 1;
        }
        Ok(cur)
    }

    fn member(&mut self, entry: &Entry, content: Option<MemberContent>) -> Result<()> {
        let Some(rel) = tree_path(&entry.path)? else {
            return Ok(());
        };
        if rel.is_empty() {
            if entry.kind != EntryKind::Directory {
                return Err(Error::new(
                    ErrorKind::WrongTopLevelType,
                    "rootfs is not a directory",
                ));
            }
            self.root_meta = Some(self.meta(entry, NodeKind::Directory)?);
            return Ok(());
        }
        let (parent, name) = split(&rel);
        let parent = parent.as_os_str().as_bytes().to_vec();
        match entry.kind {
            EntryKind::Directory => {
                let meta = self.meta(entry, NodeKind::Directory)?;
                let dir = self.dir(&parent)?;
                match rustix::fs::mkdirat(dir, name, Mode::RWXU) {
                    Ok(()) => {}
                    // Created earlier as an implied parent.
                    Err(Errno::EXIST)
                        if fsops::lstat(dir, name).is_ok_and(|st| {
                            rustix::fs::FileType::from_raw_mode(st.st_mode)
                                == rustix::fs::FileType::Directory
                        }) => {}
                    Err(e) => {
                        return Err(Error::io(
                            format!("cannot create the directory {}", name.display()),
                            e.into(),
                        ));
                    }
                }
                self.dirs.push((rel, meta));
            }
            EntryKind::Regular => {
                self.files += 1;
                let meta = self.meta(entry, NodeKind::Regular)?;
                match content {
                    Some(content) => self.checkout(entry, content, meta, &parent, name)?,
                    None => {
                        let privs = self.privs;
                        let mut w = Vec::new();
                        let dir = self.dir(&parent)?;
                        let file = fsops::create_file(dir, name)?;
                        if entry.logical_size() > 0 {
                            // A sparse file that is all holes.
                            file.set_len(entry.logical_size())
                                .map_err(|e| Error::io("setting a file's size", e))?;
                        }
                        drop(file);
                        fsops::apply_meta(dir, name, &meta, &privs, &mut w)?;
                        self.warnings.append(&mut w);
                    }
                }
            }
            EntryKind::Hardlink => self.hardlink(entry, &parent, name)?,
            EntryKind::Symlink => {
                let target = entry.link_target.clone().unwrap_or_default();
                let meta = self.meta(entry, NodeKind::Symlink(target))?;
                self.special(&meta, &parent, name)?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                let (major, minor) = entry.device.unwrap_or((0, 0));
                let kind = if entry.kind == EntryKind::CharDevice {
                    NodeKind::CharDevice(major, minor)
                } else {
                    NodeKind::BlockDevice(major, minor)
                };
                let meta = self.meta(entry, kind)?;
                self.special(&meta, &parent, name)?;
            }
            EntryKind::Fifo => {
                let meta = self.meta(entry, NodeKind::Fifo)?;
                self.special(&meta, &parent, name)?;
            }
            EntryKind::Other(flag) => {
                return Err(Error::new(
                    ErrorKind::UnsupportedEntryType,
                    format!("entry type {:?} cannot be put in a tree", flag as char),
                ));
            }
        }
        Ok(())
    }

    /// The metadata of a member; when foreign owners are skipped, with this process's owner
    /// instead (so that checkout objects made without root are keyed by what they hold and
    /// can be shared by other unprivileged builds).
    fn meta(&mut self, entry: &Entry, kind: NodeKind) -> Result<NodeMeta> {
        let mut meta = node_meta(entry, kind)?;
        if let Some((uid, gid)) = self.own
            && (meta.uid, meta.gid) != (uid, gid)
        {
            meta.uid = uid;
            meta.gid = gid;
            self.owners_replaced += 1;
        }
        Ok(meta)
    }

    /// A symlink, device or FIFO.
    fn special(&mut self, meta: &NodeMeta, parent: &[u8], name: &OsStr) -> Result<()> {
        let privs = self.privs;
        let mut w = Vec::new();
        let dir = self.dir(parent)?;
        if fsops::create_node(dir, name, meta, &privs, &mut w)? {
            fsops::apply_meta(dir, name, meta, &privs, &mut w)?;
        }
        self.warnings.append(&mut w);
        Ok(())
    }

    fn hardlink(&mut self, entry: &Entry, parent: &[u8], name: &OsStr) -> Result<()> {
        let raw_target = entry.link_target.as_deref().unwrap_or_default();
        let target = match tree_path(raw_target)? {
            Some(t) if !t.is_empty() => t,
            _ => {
                return Err(Error::new(
                    ErrorKind::BadHardlink,
                    "the hardlink does not point below rootfs/",
                ));
            }
        };
        let (tparent, tname) = split(&target);
        let tdir = fsops::open_dir_beneath(self.root.as_fd(), tparent)?;
        let privs = self.privs;
        let dir = self.dir(parent)?;
        match rustix::fs::linkat(&tdir, tname, dir, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) if privs.skip_unprivileged => {
                self.warnings.push(format!(
                    "{}: not linked, its target {} was skipped",
                    String::from_utf8_lossy(&entry.path),
                    String::from_utf8_lossy(raw_target)
                ));
                Ok(())
            }
            Err(Errno::MLINK) => {
                // The inode has too many links: a copy, outside the hardlink group.
                let src = fsops::open_file(tdir.as_fd(), tname)?;
                let dst = fsops::create_file(dir, name)?;
                let size = src
                    .metadata()
                    .map_err(|e| Error::io("reading a file's size", e))?
                    .len();
                fsops::copy_file_data(&src, &dst, size)?;
                drop(dst);
                let meta = fsops::read_meta(tdir.as_fd(), tname)?;
                let mut w = Vec::new();
                fsops::apply_meta(dir, name, &meta, &privs, &mut w)?;
                w.push(format!(
                    "{}: copied instead of linked to {} (too many links)",
                    String::from_utf8_lossy(&entry.path),
                    String::from_utf8_lossy(raw_target)
                ));
                self.warnings.append(&mut w);
                Ok(())
            }
            Err(e) => Err(Error::io(
                format!("cannot link to {}", String::from_utf8_lossy(raw_target)),
                e.into(),
            )),
        }
    }

    /// A regular file with content: linked to its checkout object, made if needed.
    fn checkout(
        &mut self,
        entry: &Entry,
        content: MemberContent,
        meta: NodeMeta,
        parent: &[u8],
        name: &OsStr,
    ) -> Result<()> {
        let digest = &content.digest;
        let base = base_key(entry, digest, &meta);
        let occurrence = self.occurrences.entry(base).or_insert(0);
        let key = checkout_key(&base, *occurrence);
        *occurrence += 1;
        let published = self.paths.checkout(&key);
        let privs = self.privs;

        // Already in the store: link it.
        let dir = self.dir(parent)?;
        match rustix::fs::linkat(rustix::fs::CWD, &published, dir, name, AtFlags::empty()) {
            Ok(()) => {
                self.linked_checkouts += 1;
                return Ok(());
            }
            Err(Errno::NOENT) => {}
            Err(Errno::MLINK | Errno::XDEV) => {
                let src = File::open(&published)
                    .map_err(|e| Error::io(format!("opening {}", published.display()), e))?;
                let mut w = Vec::new();
                let dst = fsops::create_file(dir, name)?;
                fsops::copy_file_data(&src, &dst, entry.logical_size())?;
                drop(dst);
                fsops::apply_meta(dir, name, &meta, &privs, &mut w)?;
                self.warnings.append(&mut w);
                return Ok(());
            }
            Err(e) => {
                return Err(Error::io(
                    format!("linking {}", published.display()),
                    e.into(),
                ));
            }
        }

        // Make it in the stage.
        let object_path = self.paths.object(digest);
        let object = File::open(&object_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                corrupt(format!("the content object {digest} is missing"))
            } else {
                Error::io(format!("opening {}", object_path.display()), e)
            }
        })?;
        let key_name = OsStr::new(&key);
        let file = fsops::create_file(self.staged.as_fd(), key_name)?;
        match &entry.sparse {
            // The object is the logical content: copied with its holes.
            _ if content.logical && entry.sparse.is_some() => {
                fsops::copy_file_data(&object, &file, entry.logical_size())?;
            }
            Some(map) => {
                let mut at = 0u64;
                for seg in &map.segments {
                    fsops::copy_range(&object, at, &file, seg.offset, seg.length)?;
                    at += seg.length;
                }
                file.set_len(map.real_size)
                    .map_err(|e| Error::io("setting a file's size", e))?;
            }
            None => {
                let cloned = self.reflink
                    && match fsops::reflink_file(&object, &file) {
                        Ok(()) => true,
                        Err(e) if e.kind() == ErrorKind::InvalidArgument => {
                            self.reflink = false;
                            false
                        }
                        Err(e) => return Err(e),
                    };
                if !cloned {
                    // Holes of the object kept.
                    fsops::copy_file_data(&object, &file, entry.size)?;
                }
            }
        }
        drop(file);
        let mut w = Vec::new();
        fsops::apply_meta(self.staged.as_fd(), key_name, &meta, &privs, &mut w)?;
        // Something could not be applied: the object does not have the key's metadata, so it
        // stays private to this tree.
        let shareable = w.is_empty();
        self.warnings.append(&mut w);
        self.new_checkouts += 1;
        let staged = self.staged.try_clone().map_err(|e| Error::io("dup", e))?;
        let dir = self.dir(parent)?;
        match rustix::fs::linkat(&staged, key_name, dir, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(e) => {
                return Err(Error::io(
                    "linking a new checkout object into the tree",
                    e.into(),
                ));
            }
        }
        if shareable {
            self.to_publish.push(key);
        }
        Ok(())
    }

    /// Applies the metadata of the directories, deepest first, then of the root.
    fn finish_dirs(&mut self, out: &Path) -> Result<()> {
        self.parent = None;
        let privs = self.privs;
        let mut w = Vec::new();
        for rel in std::mem::take(&mut self.implied) {
            let (parent, name) = split(&rel);
            let dir = fsops::open_dir_beneath(self.root.as_fd(), parent)?;
            rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(0o755), AtFlags::empty())
                .map_err(|e| Error::io("chmod", e.into()))?;
        }
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.iter().filter(|&&b| b == b'/').count()));
        for (rel, meta) in &dirs {
            let (parent, name) = split(rel);
            let dir = fsops::open_dir_beneath(self.root.as_fd(), parent)?;
            fsops::apply_meta(dir.as_fd(), name, meta, &privs, &mut w)
                .map_err(|e| e.with_entry(rel))?;
        }
        let out_fd = rustix::fs::open(
            out,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening {}", out.display()), e.into()))?;
        match &self.root_meta {
            Some(meta) => {
                fsops::apply_meta(out_fd.as_fd(), OsStr::new("rootfs"), meta, &privs, &mut w)?
            }
            None => rustix::fs::chmodat(
                &out_fd,
                "rootfs",
                Mode::from_raw_mode(0o755),
                AtFlags::empty(),
            )
            .map_err(|e| Error::io("chmod", e.into()))?,
        }
        self.warnings.append(&mut w);
        Ok(())
    }

    /// Moves the new checkout objects into `STORE/checkouts/` (one already there wins: the
    /// tree keeps its own copy).
    fn publish_checkouts(&mut self) -> Result<()> {
        if self.to_publish.is_empty() {
            return Ok(());
        }
        private_dir(&self.paths.checkouts())?;
        let mut shard_fd: Option<(String, File)> = None;
        for key in std::mem::take(&mut self.to_publish) {
            let shard = &key[..2];
            // `gc` removes empty shards (prune_checkouts): one removed between its creation
            // here and the rename (ENOENT) is made again.
            let mut tries = 0;
            loop {
                if shard_fd.as_ref().is_none_or(|(s, _)| s != shard) {
                    let path = self.paths.checkouts().join(shard);
                    match std::fs::create_dir(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(Error::io(format!("creating {}", path.display()), e));
                        }
                    }
                    let fd = File::open(&path)
                        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                    shard_fd = Some((shard.to_string(), fd));
                }
                let (_, dir) = shard_fd.as_ref().expect("just set");
                let done = match rustix::fs::renameat_with(
                    &self.staged,
                    &key,
                    dir,
                    &key,
                    RenameFlags::NOREPLACE,
                ) {
                    Err(Errno::INVAL) => {
                        rustix::fs::linkat(&self.staged, &key, dir, &key, AtFlags::empty())
                    }
                    other => other,
                };
                match done {
                    Ok(()) | Err(Errno::EXIST) => break,
                    Err(Errno::NOENT) if tries < 10 => {
                        tries += 1;
                        shard_fd = None;
                    }
                    Err(e) => return Err(Error::io("publishing a checkout object", e.into())),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_paths() {
        assert_eq!(tree_path(b"manifest").unwrap(), None);
        assert_eq!(tree_path(b"./").unwrap(), None);
        assert_eq!(tree_path(b"rootfs/").unwrap(), Some(Vec::new()));
        assert_eq!(tree_path(b"./rootfs/a/b").unwrap(), Some(b"a/b".to_vec()));
        assert_eq!(
            tree_path(b"other").unwrap_err().kind(),
            ErrorKind::ExtraTopLevelEntry
        );
        assert_eq!(
            tree_path(b"rootfs/../x").unwrap_err().kind(),
            ErrorKind::PathTraversal
        );
        assert_eq!(split(b"a/b/c"), (Path::new("a/b"), OsStr::new("c")));
        assert_eq!(split(b"c"), (Path::new(""), OsStr::new("c")));
    }

    #[test]
    fn checkout_keys_depend_on_metadata_and_occurrence() {
        let entry = Entry {
            index: 0,
            header_offset: 0,
            path: b"rootfs/a".to_vec(),
            kind: EntryKind::Regular,
            type_flag: b'0',
            format: crate::archive::tar::HeaderFormat::Pax,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: Vec::new(),
            gname: Vec::new(),
            mtime: Default::default(),
            atime: None,
            ctime: None,
            size: 3,
            link_target: None,
            device: None,
            xattrs: Vec::new(),
            sparse: None,
        };
        let digest = ContentDigest::of(b"abc");
        let meta = node_meta(&entry, NodeKind::Regular).unwrap();
        let base = base_key(&entry, &digest, &meta);
        let mut other = meta.clone();
        other.mode = 0o755;
        assert_ne!(base, base_key(&entry, &digest, &other));
        other = meta.clone();
        other.xattrs.push((b"user.x".to_vec(), b"1".to_vec()));
        assert_ne!(base, base_key(&entry, &digest, &other));
        assert_ne!(checkout_key(&base, 0), checkout_key(&base, 1));
        assert_eq!(checkout_key(&base, 0).len(), 64);
    }
}

//! Verifying the render caches (exploded trees, stacks and so the checkout objects they link)
//! against the store, setting damaged ones aside and, with repair, rebuilding them: `fsck`'s
//! render part ([`check_render_caches`]).
//!
//! ```text
//! STORE/damaged/<tree|stack>-<name>-<ns>/runs.json   the live runs that used it when set aside
//! STORE/damaged/<tree|stack>-<name>-<ns>/cache/      the damaged tree or stack folder
//! ```
//!
//! **Trees.** The tree of an image is checked as it was built: the image's canonical tar is
//! regenerated from the store (and so checked against the image ID) and read alongside the
//! recipe, which gives each member's content digest. Every member must be in the tree with
//! its type, mode, owner, mtime (nanoseconds), xattrs, symlink target and device numbers; a
//! regular file must have the member's size and content (SHA-256 equal to the content
//! digest; for a sparse member, its data segments, and zeros elsewhere); a tar hardlink must
//! be the same inode as its target and separate archive files separate inodes. Then the tree
//! is walked for what the archive does not hold. Each distinct regular-file inode is hashed
//! once per `fsck` (trees share checkout objects), so a damaged checkout object makes every
//! tree that links it damaged. Memory is one entry per path of the image (paths, inodes)
//! and per distinct inode, never file contents.
//!
//! **Stacks.** A stack is damaged when one of its layers' trees is (its regular files are
//! those trees' inodes) or missing; otherwise its layers (from its `layers.json`) are
//! flattened again into `tmp/` ([`super::stack::scratch`]) and the two trees are compared
//! node by node (metadata, and contents where the inodes differ).
//!
//! **Damaged caches are set aside, never changed in place**, with or without repair: a
//! folder `STORE/damaged/<kind>-<name>-<ns>/` is made holding `runs.json` (the runs whose
//! lower tree it is, by run folder and creation time), then the cache's folder is renamed
//! into it as `cache/`. Renders look caches up by their place in `trees/` and `stacks/`, so
//! the next render rebuilds instead of serving it; a crash between the two steps leaves the
//! cache where it was (still damaged, found again by the next `fsck`) or an empty folder
//! (removed). The names of damaged checkout objects are unlinked from `checkouts/`, so no
//! new tree links them (trees and runs that link the inodes keep them). Nothing is written
//! into a cache: an overlay run whose lower layer it is keeps a lower layer that does not
//! change under it (renaming a lower layer's folder is not a change of the layer). A set-aside
//! cache is removed ([`remove_unused_damaged`], by `fsck --repair` and `gc`) once none of
//! the runs in its `runs.json` is still there.
//!
//! **Repair** rebuilds the damaged trees from the store ([`super::tree::ensure_tree`]) and the
//! damaged stacks from their layers (the same layers, so the same key), which makes new
//! checkout objects from the content objects.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufReader;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::deps::Layer;
use super::fsops::{self, NodeKind, NodeMeta, Privileges};
use super::{run, stack, tree, usage};
use crate::archive::tar::{Entry, EntryKind, SparseMap, TarReader};
use crate::progress::Observer;
use crate::schema::ImageId;
use crate::store::facade::join_error;
use crate::store::housekeeping::FsckProblem;
use crate::store::paths::StorePaths;
use crate::store::recipe::{RecipeReader, RecipeRecord};
use crate::store::regenerate::{self, ExportReader, ObjectPaths};
use crate::store::{ContentDigest, ContentHasher, Store};
use crate::{Error, ErrorKind, Result};

/// The fsck problem kind of a damaged tree or stack.
pub const DAMAGED_RENDER_CACHE: &str = "damaged_render_cache";
/// At most this many differences are listed per cache (the others are counted).
const MAX_DIFFERENCES: usize = 10;
/// A tar hardlink may be a copy when its target had this many links (`EMLINK`).
const MANY_LINKS: u64 = 60_000;
/// Name of the list of runs in a set-aside folder.
const RUNS_FILE: &str = "runs.json";
/// Name of the cache's folder in a set-aside folder.
const CACHE_DIR: &str = "cache";

/// What `fsck` did with the render caches (part of [`crate::store::FsckReport`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenderCacheReport {
    /// Exploded trees checked.
    pub trees_checked: u64,
    /// Stacks checked.
    pub stacks_checked: u64,
    /// Trees and stacks found damaged (each one is also an fsck problem).
    pub damaged: u64,
    /// Damaged trees and stacks moved to `STORE/damaged/` (the next render rebuilds them).
    pub set_aside: u64,
    /// Of those, used by a live run: kept in `STORE/damaged/` until the run is released.
    pub in_use: u64,
    /// Names of damaged checkout objects unlinked from `checkouts/`.
    pub checkouts_unlinked: u64,
    /// Trees and stacks rebuilt from the store (with repair).
    pub rebuilt: u64,
    /// Set-aside caches no run uses any more, removed (with repair).
    pub damaged_removed: u64,
    /// Set-aside caches left in `STORE/damaged/` (not an error; `gc` and `fsck --repair`
    /// remove them once their runs are released).
    pub damaged_left: u64,
    /// Trees that could not be checked, mostly because their image is broken (an fsck
    /// problem of its own); they are left as they are.
    pub unverified: u64,
}

/// The folder damaged caches are moved to.
pub fn damaged_dir(paths: &StorePaths) -> PathBuf {
    paths.root().join("damaged")
}

/// Checks every exploded tree and stack of the images in the store (see the module
/// documentation), sets the damaged ones aside and, with `repair`, rebuilds them and removes
/// the set-aside caches no run uses. Returns one [`DAMAGED_RENDER_CACHE`] problem per
/// damaged cache, naming the image or stack, the paths inside the rootfs and what differs.
pub async fn check_render_caches(
    store: &Store,
    repair: bool,
    observer: &Observer,
) -> Result<(Vec<FsckProblem>, RenderCacheReport)> {
    let paths = store.paths().clone();
    let mut report = RenderCacheReport::default();
    let indexed: HashSet<String> = store
        .list()
        .await?
        .into_iter()
        .map(|i| i.image_id.hex().to_string())
        .collect();
    let relaxed = unprivileged_owner(&paths);
    let mut verdicts = InodeVerdicts::default();
    let mut damaged: Vec<Damage> = Vec::new();

    // Trees.
    let mut hexes = usage::tree_images(&paths);
    hexes.sort();
    let mut tree_state: HashMap<String, bool> = HashMap::new(); // hex -> damaged
    for hex in hexes {
        observer.check()?;
        if !indexed.contains(&hex) {
            continue; // gc's business
        }
        let id = ImageId::parse(&format!("sha512-{hex}"))?;
        let reader =
            regenerate::export_reader(paths.recipe(&id), object_paths(&paths), id.sha512());
        let handle = tokio::runtime::Handle::current();
        let task_paths = paths.clone();
        let task_id = id.clone();
        let (outcome, back) = tokio::task::spawn_blocking(move || {
            let mut verdicts = verdicts;
            let outcome = verify_tree(
                &task_paths,
                &task_id,
                reader,
                &handle,
                &mut verdicts,
                relaxed,
            );
            (outcome, verdicts)
        })
        .await
        .map_err(join_error)?;
        verdicts = back;
        match outcome {
            Ok(diffs) => {
                report.trees_checked += 1;
                tree_state.insert(hex.clone(), !diffs.is_empty());
                if !diffs.is_empty() {
                    damaged.push(Damage {
                        cache: Cache::Tree(id),
                        diffs,
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
            // The image does not regenerate (its own fsck problem), or its tree cannot be
            // read as a whole: not checked, and left as it is.
            Err(_) => report.unverified += 1,
        }
    }

    // Stacks.
    let mut keys = usage::stack_keys(&paths);
    keys.sort();
    for key in keys {
        observer.check()?;
        let layers = match read_layers(&paths, &key) {
            Ok(layers) => layers,
            Err(e) => {
                let mut diffs = Diffs::default();
                diffs.push(b"", format!("its layers.json cannot be read: {e}"));
                report.stacks_checked += 1;
                damaged.push(Damage {
                    cache: Cache::Stack(key, None),
                    diffs,
                });
                continue;
            }
        };
        if layers.is_empty() || layers.iter().any(|l| !indexed.contains(l.image_id.hex())) {
            continue; // built from an image no longer stored: gc's business
        }
        report.stacks_checked += 1;
        let root = layers.last().map(|l| l.image_id.clone());
        let mut diffs = Diffs::default();
        for layer in &layers {
            match tree_state.get(layer.image_id.hex()) {
                Some(false) => {}
                Some(true) => diffs.push(
                    b"",
                    format!(
                        "it is built from the damaged tree of {} (it links its files)",
                        layer.image_id
                    ),
                ),
                None => diffs.push(
                    b"",
                    format!(
                        "the tree of its layer {} is missing or was not checked, so it cannot \
                         be checked",
                        layer.image_id
                    ),
                ),
            }
        }
        if diffs.is_empty() {
            let task_paths = paths.clone();
            let task_key = key.clone();
            diffs =
                tokio::task::spawn_blocking(move || verify_stack(&task_paths, &task_key, &layers))
                    .await
                    .map_err(join_error)??;
        }
        if !diffs.is_empty() {
            damaged.push(Damage {
                cache: Cache::Stack(key, root),
                diffs,
            });
        }
    }

    report.damaged = damaged.len() as u64;
    let mut problems = Vec::new();
    if !damaged.is_empty() {
        let task_paths = paths.clone();
        let inodes = std::mem::take(&mut verdicts.damaged);
        let (unlinked, aside) = tokio::task::spawn_blocking(move || -> Result<(u64, Vec<_>)> {
            let unlinked = unlink_checkouts(&task_paths, &inodes)?;
            let runs = run::list_runs(&task_paths.runs())?;
            let mut aside = Vec::new();
            for d in &damaged {
                aside.push(set_aside(&task_paths, &d.cache, &runs));
            }
            Ok((unlinked, damaged.into_iter().zip(aside).collect()))
        })
        .await
        .map_err(join_error)??;
        report.checkouts_unlinked = unlinked;
        for (damage, outcome) in aside {
            let mut what = damage.diffs.text();
            match outcome {
                Ok(users) => {
                    report.set_aside += 1;
                    if users > 0 {
                        report.in_use += 1;
                        what.push_str(&format!(
                            "; moved to damaged/ (used by {users} live run(s): removed once \
                             they are released)"
                        ));
                    } else {
                        what.push_str("; moved to damaged/");
                    }
                }
                Err(e) => what.push_str(&format!("; could not be set aside: {e}")),
            }
            if repair {
                match rebuild(store, &damage.cache).await {
                    Ok(()) => {
                        report.rebuilt += 1;
                        what.push_str("; rebuilt");
                    }
                    Err(e) => what.push_str(&format!("; not rebuilt: {e}")),
                }
            }
            problems.push(FsckProblem {
                kind: DAMAGED_RENDER_CACHE,
                subject: damage.cache.subject(),
                message: what,
            });
        }
    }
    let task_paths = paths.clone();
    let (removed, left) = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let removed = if repair {
            remove_unused_damaged(&task_paths)?
        } else {
            0
        };
        Ok((removed, count_damaged(&task_paths)))
    })
    .await
    .map_err(join_error)??;
    report.damaged_removed = removed;
    report.damaged_left = left;
    Ok((problems, report))
}

/// Removes the set-aside caches (`STORE/damaged/…`) none of whose runs is still there, and
/// returns how many. `gc` and `fsck --repair` call it (blocking).
pub fn remove_unused_damaged(paths: &StorePaths) -> Result<u64> {
    let dir = damaged_dir(paths);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let live: HashSet<(PathBuf, u64)> = run::list_runs(&paths.runs())?
        .into_iter()
        .map(|r| (r.run_dir, r.created_ms))
        .collect();
    let mut removed = 0;
    for entry in entries.flatten() {
        let folder = entry.path();
        let users: Vec<RunRef> = match std::fs::read(folder.join(RUNS_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            // Made but not finished (the cache is then still in place), or being removed.
            Err(_) => Vec::new(),
        };
        if users
            .iter()
            .any(|u| live.contains(&(u.run_dir.clone(), u.created_ms)))
        {
            continue;
        }
        match fsops::remove_tree(&folder) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn count_damaged(paths: &StorePaths) -> u64 {
    std::fs::read_dir(damaged_dir(paths)).map_or(0, |d| d.count() as u64)
}

// ---------------------------------------------------------------------------------------------

/// A tree or a stack.
enum Cache {
    Tree(ImageId),
    /// A stack's key, and its root image when known.
    Stack(String, Option<ImageId>),
}

impl Cache {
    fn subject(&self) -> String {
        match self {
            Cache::Tree(id) => id.to_string(),
            Cache::Stack(key, Some(root)) => format!("stack {key} of {root}"),
            Cache::Stack(key, None) => format!("stack {key}"),
        }
    }

    /// The folder renamed aside (`trees/sha512/<hex>`, `stacks/<key>`).
    fn folder(&self, paths: &StorePaths) -> PathBuf {
        match self {
            Cache::Tree(id) => paths.tree(id),
            Cache::Stack(key, _) => paths.stack(key),
        }
    }

    fn aside_name(&self) -> String {
        match self {
            Cache::Tree(id) => format!("tree-{}", id.hex()),
            Cache::Stack(key, _) => format!("stack-{key}"),
        }
    }
}

struct Damage {
    cache: Cache,
    diffs: Diffs,
}

/// The differences found in one cache: the first few in full, the others counted.
#[derive(Default)]
struct Diffs {
    items: Vec<String>,
    more: u64,
}

impl Diffs {
    fn push(&mut self, rel: &[u8], what: String) {
        if self.items.len() < MAX_DIFFERENCES {
            self.items
                .push(format!("/{}: {what}", String::from_utf8_lossy(rel)));
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn text(&self) -> String {
        let mut text = self.items.join("; ");
        if self.more > 0 {
            text.push_str(&format!("; and {} more differences", self.more));
        }
        text
    }
}

/// Verdicts on the regular-file inodes hashed so far, shared by every cache of one `fsck`.
#[derive(Default)]
struct InodeVerdicts {
    /// (device, inode, expected digest) -> what is wrong, if anything.
    content: HashMap<(u64, u64, [u8; 32]), Option<String>>,
    /// Regular-file inodes whose content or metadata is not what a tree needs: their
    /// checkout names are unlinked.
    damaged: HashSet<(u64, u64)>,
}

/// A run recorded in a set-aside folder.
#[derive(Debug, Serialize, Deserialize)]
struct RunRef {
    run_dir: PathBuf,
    created_ms: u64,
    target: PathBuf,
}

fn object_paths(paths: &StorePaths) -> ObjectPaths {
    let paths = paths.clone();
    std::sync::Arc::new(move |d: &ContentDigest| paths.object(d))
}

/// The owner an unprivileged build gives what it cannot give the archive's owner: the owner
/// of `trees/` when that is not root (a tree built without root has such nodes, and lacks
/// device nodes and privileged xattrs; those differences are not damage).
fn unprivileged_owner(paths: &StorePaths) -> Option<(u32, u32)> {
    let meta = std::fs::metadata(paths.trees()).ok()?;
    (meta.uid() != 0).then_some((meta.uid(), meta.gid()))
}

fn open_root(path: &Path) -> std::result::Result<OwnedFd, String> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| std::io::Error::from(e).to_string())
}

/// Splits a tree-relative path into its parent and last component.
fn split(rel: &[u8]) -> (&Path, &OsStr) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            Path::new(OsStr::from_bytes(&rel[..i])),
            OsStr::from_bytes(&rel[i + 1..]),
        ),
        None => (Path::new(""), OsStr::from_bytes(rel)),
    }
}

fn corrupt(what: String) -> Error {
    Error::new(ErrorKind::CorruptStore, what)
}

// ---------------------------------------------------------------------------------------------
// Trees

/// What the tree walk knows of a path of the image.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expected {
    /// A member of the archive.
    Member,
    /// A directory the archive implies (a parent of members) without listing it.
    Implied,
}

/// Checks the tree of `id` against its regenerated tar and recipe; returns the differences.
/// Errors only for the store's side ([`ErrorKind::CorruptStore`] when the image does not
/// regenerate).
fn verify_tree(
    paths: &StorePaths,
    id: &ImageId,
    reader: ExportReader,
    handle: &tokio::runtime::Handle,
    verdicts: &mut InodeVerdicts,
    relaxed: Option<(u32, u32)>,
) -> Result<Diffs> {
    let mut diffs = Diffs::default();
    let rootfs = paths.tree(id).join("rootfs");
    let root = match open_root(&rootfs) {
        Ok(root) => root,
        Err(e) => {
            diffs.push(b"", format!("the tree's rootfs cannot be opened: {e}"));
            return Ok(diffs);
        }
    };
    let recipe_path = paths.recipe(id);
    let recipe_file = File::open(&recipe_path)
        .map_err(|e| corrupt(format!("the recipe of {id} cannot be opened: {e}")))?;
    let mut recipe = RecipeReader::new(BufReader::new(recipe_file))?;
    let mut tar = TarReader::new(reader);
    let mut checker = TreeChecker {
        root: root.as_fd(),
        parent: None,
        expected: HashMap::new(),
        files: HashMap::new(),
        verdicts,
        relaxed,
        diffs: &mut diffs,
        buf: vec![0u8; 256 * 1024],
    };
    let mut root_seen = false;
    while let Some(entry) = handle.block_on(tar.next_entry())? {
        // The same pairing of members and Content records as the build.
        let content = if entry.size > 0 || entry.kind == EntryKind::Regular {
            loop {
                match recipe.next_record()? {
                    Some(RecipeRecord::Meta(_)) => continue,
                    Some(RecipeRecord::Content { len, digest }) => {
                        if len != entry.size {
                            return Err(corrupt(format!(
                                "the recipe of {id} does not match its tar"
                            )));
                        }
                        break digest;
                    }
                    None => {
                        return Err(corrupt(format!(
                            "the recipe of {id} has fewer contents than its tar"
                        )));
                    }
                }
            }
        } else {
            None
        };
        let Some(rel) = tree::tree_path(&entry.path).map_err(|e| corrupt(e.to_string()))? else {
            continue;
        };
        if rel.is_empty() {
            root_seen = true;
            let want = tree::node_meta(&entry, NodeKind::Directory)?;
            checker.check_root(Some(&want));
            continue;
        }
        checker.member(&entry, &rel, content)?;
    }
    while let Some(record) = recipe.next_record()? {
        if let RecipeRecord::Content { .. } = record {
            return Err(corrupt(format!(
                "the recipe of {id} has more contents than its tar"
            )));
        }
    }
    if !root_seen {
        checker.check_root(None);
    }
    checker.parent = None;
    checker.walk();
    Ok(diffs)
}

struct TreeChecker<'a> {
    root: BorrowedFd<'a>,
    /// The last parent directory opened (or why it could not be).
    parent: Option<(Vec<u8>, std::result::Result<OwnedFd, String>)>,
    expected: HashMap<Vec<u8>, Expected>,
    /// Regular-file inodes of the tree -> the first path that has it.
    files: HashMap<(u64, u64), Vec<u8>>,
    verdicts: &'a mut InodeVerdicts,
    relaxed: Option<(u32, u32)>,
    diffs: &'a mut Diffs,
    buf: Vec<u8>,
}

impl TreeChecker<'_> {
    fn check_root(&mut self, want: Option<&NodeMeta>) {
        let have = match fsops::read_meta(self.root, OsStr::new(".")) {
            Ok(have) => have,
            Err(e) => {
                self.diffs
                    .push(b"", format!("cannot be read: {}", e.message()));
                return;
            }
        };
        match want {
            Some(want) => {
                let _ = compare_meta(b"", &have, want, self.relaxed, self.diffs);
            }
            None if have.mode != 0o755 => self.diffs.push(
                b"",
                format!("mode {:04o} where it should be 0755", have.mode),
            ),
            None => {}
        }
    }

    /// The parent directory `parent` of the tree, taken out of the one-entry cache (give it
    /// back with [`TreeChecker::keep_parent`]); why it cannot be opened, if so (remembered).
    fn take_parent(&mut self, parent: &[u8]) -> std::result::Result<OwnedFd, String> {
        match self.parent.take() {
            Some((p, Ok(fd))) if p == parent => return Ok(fd),
            Some((p, Err(e))) if p == parent => {
                self.parent = Some((p, Err(e.clone())));
                return Err(e);
            }
            _ => {}
        }
        fsops::open_dir_beneath(self.root, Path::new(OsStr::from_bytes(parent))).map_err(|e| {
            let why = e.message().to_string();
            self.parent = Some((parent.to_vec(), Err(why.clone())));
            why
        })
    }

    fn keep_parent(&mut self, parent: Vec<u8>, fd: OwnedFd) {
        self.parent = Some((parent, Ok(fd)));
    }

    fn member(&mut self, entry: &Entry, rel: &[u8], content: Option<ContentDigest>) -> Result<()> {
        self.expected.insert(rel.to_vec(), Expected::Member);
        let mut at = rel.len();
        while let Some(i) = rel[..at].iter().rposition(|&b| b == b'/') {
            self.expected
                .entry(rel[..i].to_vec())
                .or_insert(Expected::Implied);
            at = i;
        }
        let (parent, name) = split(rel);
        let parent = parent.as_os_str().as_bytes().to_vec();
        let dir = match self.take_parent(&parent) {
            Ok(dir) => dir,
            Err(e) => {
                self.diffs
                    .push(rel, format!("missing (its folder cannot be opened: {e})"));
                return Ok(());
            }
        };
        let result = self.check_member(dir.as_fd(), entry, rel, name, content);
        self.keep_parent(parent, dir);
        result
    }

    /// Checks the member `entry` at `rel`, named `name` in its folder `dir`.
    fn check_member(
        &mut self,
        dir: BorrowedFd,
        entry: &Entry,
        rel: &[u8],
        name: &OsStr,
        content: Option<ContentDigest>,
    ) -> Result<()> {
        let relaxed = self.relaxed;
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                let skipped = relaxed.is_some()
                    && matches!(
                        entry.kind,
                        EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Hardlink
                    );
                if !skipped {
                    self.diffs.push(rel, "missing".into());
                }
                return Ok(());
            }
            Err(e) => {
                self.diffs
                    .push(rel, format!("cannot be read: {}", std::io::Error::from(e)));
                return Ok(());
            }
        };
        let kind = match entry.kind {
            EntryKind::Directory => NodeKind::Directory,
            EntryKind::Regular => NodeKind::Regular,
            EntryKind::Symlink => NodeKind::Symlink(entry.link_target.clone().unwrap_or_default()),
            EntryKind::CharDevice => {
                let (ma, mi) = entry.device.unwrap_or((0, 0));
                NodeKind::CharDevice(ma, mi)
            }
            EntryKind::BlockDevice => {
                let (ma, mi) = entry.device.unwrap_or((0, 0));
                NodeKind::BlockDevice(ma, mi)
            }
            EntryKind::Fifo => NodeKind::Fifo,
            EntryKind::Hardlink => return self.hardlink(entry, rel, &st),
            EntryKind::Other(_) => return Ok(()), // never built
        };
        let want = tree::node_meta(entry, kind)?;
        let have = match fsops::read_meta(dir, name) {
            Ok(have) => have,
            Err(e) => {
                self.diffs
                    .push(rel, format!("cannot be read: {}", e.message()));
                return Ok(());
            }
        };
        let meta_ok = compare_meta(rel, &have, &want, relaxed, self.diffs);
        if !matches!(want.kind, NodeKind::Regular) || !matches!(have.kind, NodeKind::Regular) {
            return Ok(());
        }
        let inode = (st.st_dev, st.st_ino);
        if let Some(other) = self.files.get(&inode) {
            self.diffs.push(
                rel,
                format!(
                    "is the same file as /{}, which the image keeps apart",
                    String::from_utf8_lossy(other)
                ),
            );
        } else {
            self.files.insert(inode, rel.to_vec());
        }
        let mut ok = meta_ok;
        if st.st_size as u64 != entry.logical_size() {
            self.diffs.push(
                rel,
                format!(
                    "{} bytes where the image has {}",
                    st.st_size,
                    entry.logical_size()
                ),
            );
            ok = false;
        } else if let Some(digest) = content {
            let key = (inode.0, inode.1, digest.0);
            let verdict = match self.verdicts.content.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let v = check_content(dir, name, entry, &digest, &mut self.buf);
                    self.verdicts.content.insert(key, v.clone());
                    v
                }
            };
            if let Some(what) = verdict {
                self.diffs.push(rel, what);
                ok = false;
            }
        }
        if !ok {
            self.verdicts.damaged.insert(inode);
        }
        Ok(())
    }

    /// A tar hardlink: the same inode as its target (or a copy when the target had too many
    /// links).
    fn hardlink(&mut self, entry: &Entry, rel: &[u8], st: &rustix::fs::Stat) -> Result<()> {
        let raw = entry.link_target.as_deref().unwrap_or_default();
        let Some(target) = tree::tree_path(raw).ok().flatten() else {
            return Ok(()); // refused at build time
        };
        let (tparent, tname) = split(&target);
        let target_st = fsops::open_dir_beneath(self.root, tparent)
            .and_then(|d| fsops::lstat(d.as_fd(), tname));
        match target_st {
            Ok(t) if (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino) => {}
            #[allow(clippy::unnecessary_cast)] // nlink_t is u32 on some targets
            Ok(t) if t.st_nlink as u64 >= MANY_LINKS => {}
            Ok(_) => self.diffs.push(
                rel,
                format!(
                    "is not the same file as /{} (a hardlink in the image)",
                    String::from_utf8_lossy(&target)
                ),
            ),
            Err(_) => {} // the target's own check reports it
        }
        Ok(())
    }

    /// Walks the tree for nodes the image does not have.
    fn walk(&mut self) {
        let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(rel) = pending.pop() {
            let dir = match fsops::open_dir_beneath(self.root, Path::new(OsStr::from_bytes(&rel))) {
                Ok(dir) => dir,
                Err(_) => continue, // reported with its members
            };
            let names = match list_dir(dir.as_fd()) {
                Ok(names) => names,
                Err(e) => {
                    self.diffs.push(&rel, format!("cannot be listed: {e}"));
                    continue;
                }
            };
            for (name, ty) in names {
                let mut path = rel.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name.as_bytes());
                match self.expected.get(&path) {
                    None => self.diffs.push(&path, "is not in the image".into()),
                    Some(Expected::Implied) if ty != FileType::Directory => self
                        .diffs
                        .push(&path, "should be a directory (the image implies it)".into()),
                    Some(_) if ty == FileType::Directory => pending.push(path),
                    Some(_) => {}
                }
            }
        }
    }
}

/// Compares the metadata of a node with what it should be, pushing the differences;
/// returns whether they agree. With `relaxed` (a tree built without root by that owner), what
/// an unprivileged build cannot reproduce is not a difference.
fn compare_meta(
    rel: &[u8],
    have: &NodeMeta,
    want: &NodeMeta,
    relaxed: Option<(u32, u32)>,
    diffs: &mut Diffs,
) -> bool {
    let before = diffs.items.len() as u64 + diffs.more;
    if have.kind != want.kind {
        let what = match (&have.kind, &want.kind) {
            (NodeKind::Symlink(h), NodeKind::Symlink(w)) => format!(
                "points to {:?} where the image has {:?}",
                String::from_utf8_lossy(h),
                String::from_utf8_lossy(w)
            ),
            (
                NodeKind::CharDevice(a, b) | NodeKind::BlockDevice(a, b),
                NodeKind::CharDevice(c, d) | NodeKind::BlockDevice(c, d),
            ) if have.kind.name() == want.kind.name() => {
                format!("device {a}:{b} where the image has {c}:{d}")
            }
            _ => format!(
                "is a {} where the image has a {}",
                have.kind.name(),
                want.kind.name()
            ),
        };
        diffs.push(rel, what);
        return false;
    }
    if !matches!(want.kind, NodeKind::Symlink(_)) && have.mode != want.mode {
        diffs.push(
            rel,
            format!(
                "mode {:04o} where the image has {:04o}",
                have.mode, want.mode
            ),
        );
    }
    if (have.uid, have.gid) != (want.uid, want.gid) && relaxed != Some((have.uid, have.gid)) {
        diffs.push(
            rel,
            format!(
                "owner {}:{} where the image has {}:{}",
                have.uid, have.gid, want.uid, want.gid
            ),
        );
    }
    if have.mtime != want.mtime {
        diffs.push(
            rel,
            format!(
                "mtime {}.{:09} where the image has {}.{:09}",
                have.mtime.secs, have.mtime.nanos, want.mtime.secs, want.mtime.nanos
            ),
        );
    }
    let special = !matches!(want.kind, NodeKind::Regular | NodeKind::Directory);
    // The host's own labels are not the image's.
    let has: Vec<_> = have
        .xattrs
        .iter()
        .filter(|(k, _)| {
            k.as_slice() != b"security.selinux" || want.xattrs.iter().any(|(w, _)| w == k)
        })
        .collect();
    let wants: Vec<_> = want
        .xattrs
        .iter()
        .filter(|(k, _)| {
            // What a build could not set (and warned about) is not kept.
            let user = k.starts_with(b"user.");
            let kept = has.iter().any(|(h, _)| h == k);
            kept || !((special && user) || (relaxed.is_some() && !user))
        })
        .collect();
    let mut has_sorted = has.clone();
    has_sorted.sort();
    let mut wants_sorted = wants.clone();
    wants_sorted.sort();
    if has_sorted != wants_sorted {
        let names = |list: &[&(Vec<u8>, Vec<u8>)]| {
            list.iter()
                .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), v.len()))
                .collect::<Vec<_>>()
                .join(",")
        };
        diffs.push(
            rel,
            format!(
                "xattrs [{}] where the image has [{}] (name=value bytes)",
                names(&has_sorted),
                names(&wants_sorted)
            ),
        );
    }
    diffs.items.len() as u64 + diffs.more == before
}

/// Hashes the regular file `name` as the member's content (its data segments for a sparse
/// member, whose other bytes must be zeros): `None` when it is `digest`.
fn check_content(
    dir: BorrowedFd,
    name: &OsStr,
    entry: &Entry,
    digest: &ContentDigest,
    buf: &mut [u8],
) -> Option<String> {
    let file = match fsops::open_file(dir, name) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot be read: {}", e.message())),
    };
    let hashed = match &entry.sparse {
        None => hash_range(&file, 0, entry.size, buf, None),
        Some(map) => hash_sparse(&file, map, buf),
    };
    match hashed {
        Ok(Ok(actual)) if actual == *digest => None,
        Ok(Ok(actual)) => Some(format!(
            "content hashes to sha256:{actual} where the image has sha256:{digest}"
        )),
        Ok(Err(what)) => Some(what),
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

/// Feeds `len` bytes of `file` from `offset` to `hasher` (a new one when `None`) and returns
/// its digest; an early end of file is a difference.
fn hash_range(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    hasher: Option<&mut ContentHasher>,
) -> std::io::Result<std::result::Result<ContentDigest, String>> {
    let mut own = ContentHasher::default();
    let hasher = match hasher {
        Some(h) => h,
        None => &mut own,
    };
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let want = (end - at).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Ok(Err(format!("ends at byte {at} where the image has {end}")));
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(Ok(own.finish()))
}

/// The digest of a sparse file's data segments, checking that its other bytes are zeros
/// (holes are skipped with `SEEK_DATA`/`SEEK_HOLE`).
fn hash_sparse(
    file: &File,
    map: &SparseMap,
    buf: &mut [u8],
) -> std::io::Result<std::result::Result<ContentDigest, String>> {
    let mut hasher = ContentHasher::default();
    let mut segments = map.segments.clone();
    segments.sort_by_key(|s| s.offset);
    let mut gap_start = 0u64;
    for seg in &segments {
        if let Some(what) = nonzero_in(file, gap_start, seg.offset, buf)? {
            return Ok(Err(what));
        }
        if let Err(what) = hash_range(file, seg.offset, seg.length, buf, Some(&mut hasher))? {
            return Ok(Err(what));
        }
        gap_start = gap_start.max(seg.offset + seg.length);
    }
    if let Some(what) = nonzero_in(file, gap_start, map.real_size, buf)? {
        return Ok(Err(what));
    }
    Ok(Ok(hasher.finish()))
}

/// Where a byte of `[start, end)` of `file` is not zero, if one is (holes are not read).
fn nonzero_in(
    file: &File,
    start: u64,
    end: u64,
    buf: &mut [u8],
) -> std::io::Result<Option<String>> {
    use rustix::fs::SeekFrom;
    let mut pos = start;
    while pos < end {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(data) => data,
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data))
            .map_err(std::io::Error::from)?
            .min(end);
        let mut at = data;
        while at < hole {
            let want = (hole - at).min(buf.len() as u64) as usize;
            let n = file.read_at(&mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Ok(Some(format!(
                    "byte {} is not zero where the image has a hole",
                    at + i as u64
                )));
            }
            at += n as u64;
        }
        pos = hole;
    }
    Ok(None)
}

/// The entries of `dir` (no `.`/`..`), sorted, with their types.
fn list_dir(dir: BorrowedFd) -> std::result::Result<Vec<(OsString, FileType)>, String> {
    let fail = |e: Errno| std::io::Error::from(e).to_string();
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from_vec(name.to_vec());
        let mut ty = entry.file_type();
        if ty == FileType::Unknown {
            ty = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode))
                .map_err(fail)?;
        }
        out.push((name, ty));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Stacks

#[derive(Deserialize)]
struct LayersFile {
    layers: Vec<LayerRecord>,
}

#[derive(Deserialize)]
struct LayerRecord {
    #[serde(rename = "imageID")]
    image_id: String,
    name: String,
    chain: Vec<String>,
    filters: Vec<Vec<String>>,
}

/// The layers a stack was built from (its `layers.json`).
fn read_layers(paths: &StorePaths, key: &str) -> Result<Vec<Layer>> {
    parse_layers(&paths.stack(key).join("layers.json"))
}

/// Reads a stack's `layers.json`.
fn parse_layers(path: &Path) -> Result<Vec<Layer>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let file: LayersFile = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidValue,
            format!("{} is not a layer list: {e}", path.display()),
        )
    })?;
    file.layers
        .into_iter()
        .map(|l| {
            Ok(Layer {
                image_id: ImageId::parse(&l.image_id)?,
                name: l.name,
                filters: l.filters,
                chain: l.chain,
            })
        })
        .collect()
}

/// Flattens the layers again in `tmp/` and compares the stack with the result.
fn verify_stack(paths: &StorePaths, key: &str, layers: &[Layer]) -> Result<Diffs> {
    let mut diffs = Diffs::default();
    if super::stack::stack_key(layers) != key {
        diffs.push(b"", "its layers.json does not give its key".into());
        return Ok(diffs);
    }
    let plan: Vec<(PathBuf, Layer)> = layers
        .iter()
        .map(|l| (paths.tree(&l.image_id).join("rootfs"), l.clone()))
        .collect();
    let root_whitelist = layers.last().map(stack::own_whitelist).unwrap_or_default();
    let mut privs = Privileges::detect();
    privs.skip_unprivileged = !privs.can_chown;
    let scratch = stack::scratch(paths, &plan, &root_whitelist, &privs)?;
    let actual = paths.stack(key).join("rootfs");
    compare_trees(&actual, &scratch.rootfs, &mut diffs);
    Ok(diffs)
}

/// Compares the tree at `actual` with the one at `expected`, node by node.
fn compare_trees(actual: &Path, expected: &Path, diffs: &mut Diffs) {
    let (a_root, e_root) = match (open_root(actual), open_root(expected)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) => {
            diffs.push(b"", format!("the stack's rootfs cannot be opened: {e}"));
            return;
        }
        (_, Err(e)) => {
            diffs.push(b"", format!("the expected stack cannot be opened: {e}"));
            return;
        }
    };
    let mut buf = vec![0u8; 256 * 1024];
    compare_node(
        a_root.as_fd(),
        e_root.as_fd(),
        OsStr::new("."),
        b"",
        diffs,
        &mut buf,
    );
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = pending.pop() {
        let rel_path = Path::new(OsStr::from_bytes(&rel));
        let (a_dir, e_dir) = match (
            fsops::open_dir_beneath(a_root.as_fd(), rel_path),
            fsops::open_dir_beneath(e_root.as_fd(), rel_path),
        ) {
            (Ok(a), Ok(e)) => (a, e),
            _ => continue, // a type difference, reported
        };
        let (a_list, e_list) = match (list_dir(a_dir.as_fd()), list_dir(e_dir.as_fd())) {
            (Ok(a), Ok(e)) => (a, e),
            (Err(e), _) | (_, Err(e)) => {
                diffs.push(&rel, format!("cannot be listed: {e}"));
                continue;
            }
        };
        let e_names: HashMap<&OsString, FileType> = e_list.iter().map(|(n, t)| (n, *t)).collect();
        let a_names: HashSet<&OsString> = a_list.iter().map(|(n, _)| n).collect();
        let join = |name: &OsStr| {
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
            path
        };
        for (name, ty) in &a_list {
            let path = join(name);
            match e_names.get(name) {
                None => diffs.push(&path, "is not in the layers".into()),
                Some(ety) => {
                    let same =
                        compare_node(a_dir.as_fd(), e_dir.as_fd(), name, &path, diffs, &mut buf);
                    if same && *ty == FileType::Directory && *ety == FileType::Directory {
                        pending.push(path);
                    }
                }
            }
        }
        for (name, _) in &e_list {
            if !a_names.contains(name) {
                diffs.push(&join(name), "missing (the layers have it)".into());
            }
        }
    }
}

/// Compares one node of two trees; returns whether their types agree (directories are then
/// walked).
fn compare_node(
    a_dir: BorrowedFd,
    e_dir: BorrowedFd,
    name: &OsStr,
    rel: &[u8],
    diffs: &mut Diffs,
    buf: &mut [u8],
) -> bool {
    let (have, want) = match (fsops::read_meta(a_dir, name), fsops::read_meta(e_dir, name)) {
        (Ok(h), Ok(w)) => (h, w),
        (Err(e), _) | (_, Err(e)) => {
            diffs.push(rel, format!("cannot be read: {}", e.message()));
            return false;
        }
    };
    compare_meta(rel, &have, &want, None, diffs);
    if have.kind.name() != want.kind.name() {
        return false;
    }
    if have.kind == NodeKind::Regular {
        let (Ok(a), Ok(e)) = (fsops::lstat(a_dir, name), fsops::lstat(e_dir, name)) else {
            return true;
        };
        if (a.st_dev, a.st_ino) != (e.st_dev, e.st_ino) {
            if a.st_size != e.st_size {
                diffs.push(
                    rel,
                    format!("{} bytes where the layers have {}", a.st_size, e.st_size),
                );
            } else {
                let mut digest = |dir: BorrowedFd| {
                    fsops::open_file(dir, name)
                        .ok()
                        .and_then(|f| hash_range(&f, 0, a.st_size as u64, buf, None).ok())
                        .and_then(|r| r.ok())
                };
                let ours = digest(a_dir);
                let theirs = digest(e_dir);
                if ours.is_none() || ours != theirs {
                    diffs.push(rel, "content differs from the layers'".into());
                }
            }
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Setting aside and rebuilding

/// Unlinks from `checkouts/` the names of the `damaged` inodes; returns how many.
fn unlink_checkouts(paths: &StorePaths, damaged: &HashSet<(u64, u64)>) -> Result<u64> {
    if damaged.is_empty() {
        return Ok(0);
    }
    let root = paths.checkouts();
    let shards = match std::fs::read_dir(&root) {
        Ok(shards) => shards,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
    };
    let mut unlinked = 0;
    for shard in shards.flatten() {
        let Ok(dir) = File::open(shard.path()) else {
            continue;
        };
        let Ok(names) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for name in names.flatten() {
            let name = name.file_name();
            let Ok(st) = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if damaged.contains(&(st.st_dev, st.st_ino))
                && rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).is_ok()
            {
                unlinked += 1;
            }
        }
    }
    Ok(unlinked)
}

/// Moves a damaged cache to `STORE/damaged/` (see the module documentation); returns how
/// many live runs use it.
fn set_aside(paths: &StorePaths, cache: &Cache, runs: &[run::RunRecord]) -> Result<usize> {
    let folder = cache.folder(paths);
    // A tree is set aside under its build lock, so no builder is publishing it meanwhile.
    let _lock = match cache {
        Cache::Tree(id) => {
            let path = tree::lock_path(paths, id);
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            lock.lock()
                .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
            Some(lock)
        }
        Cache::Stack(..) => None,
    };
    let rootfs = std::fs::canonicalize(folder.join("rootfs")).unwrap_or(folder.join("rootfs"));
    // A run recorded with this cache's path uses it unless it used a cache set aside from
    // the same place before (this one was built after that, so after the run).
    let earlier = earlier_users(paths, cache);
    let users: Vec<RunRef> = runs
        .iter()
        .filter(|r| r.lower == rootfs && !earlier.contains(&(r.run_dir.clone(), r.created_ms)))
        .map(|r| RunRef {
            run_dir: r.run_dir.clone(),
            created_ms: r.created_ms,
            target: r.target.clone(),
        })
        .collect();
    let aside_root = damaged_dir(paths);
    std::fs::create_dir_all(&aside_root)
        .map_err(|e| Error::io(format!("creating {}", aside_root.display()), e))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let entry = aside_root.join(format!("{}-{nanos}", cache.aside_name()));
    std::fs::create_dir(&entry)
        .map_err(|e| Error::io(format!("creating {}", entry.display()), e))?;
    // The list of runs first: a folder holding a cache always says who uses it.
    let list = entry.join(RUNS_FILE);
    let partial = entry.join(".runs.json.partial");
    std::fs::write(
        &partial,
        serde_json::to_vec_pretty(&users).unwrap_or_default(),
    )
    .and_then(|()| std::fs::rename(&partial, &list))
    .map_err(|e| Error::io(format!("writing {}", list.display()), e))?;
    match std::fs::rename(&folder, entry.join(CACHE_DIR)) {
        Ok(()) => Ok(users.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = fsops::remove_tree(&entry);
            Ok(0) // removed meanwhile (rm, gc)
        }
        Err(e) => {
            let _ = fsops::remove_tree(&entry);
            Err(Error::io(format!("moving {} aside", folder.display()), e))
        }
    }
}

/// The runs listed by the caches set aside earlier from the same place as `cache`.
fn earlier_users(paths: &StorePaths, cache: &Cache) -> HashSet<(PathBuf, u64)> {
    let prefix = format!("{}-", cache.aside_name());
    let Ok(entries) = std::fs::read_dir(damaged_dir(paths)) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| std::fs::read(e.path().join(RUNS_FILE)).ok())
        .flat_map(|bytes| serde_json::from_slice::<Vec<RunRef>>(&bytes).unwrap_or_default())
        .map(|u| (u.run_dir, u.created_ms))
        .collect()
}

/// Rebuilds a tree or stack from the store.
async fn rebuild(store: &Store, cache: &Cache) -> Result<()> {
    let mut privs = Privileges::detect();
    privs.skip_unprivileged = !privs.can_chown;
    match cache {
        Cache::Tree(id) => tree::ensure_tree(store, id, privs).await.map(|_| ()),
        Cache::Stack(key, _) => {
            let paths = store.paths().clone();
            let layers = read_layers_aside(&paths, key)?;
            let mut plan = Vec::new();
            for layer in &layers {
                let tree = tree::ensure_tree(store, &layer.image_id, privs).await?;
                plan.push((tree.path, layer.clone()));
            }
            let root_whitelist = layers.last().map(stack::own_whitelist).unwrap_or_default();
            let key = key.clone();
            tokio::task::spawn_blocking(move || {
                stack::build(&paths, &key, &plan, &root_whitelist, &privs)
            })
            .await
            .map_err(join_error)??;
            Ok(())
        }
    }
}

/// The layers of a stack just set aside (its `layers.json` is now in `damaged/`).
fn read_layers_aside(paths: &StorePaths, key: &str) -> Result<Vec<Layer>> {
    if let Ok(layers) = read_layers(paths, key) {
        return Ok(layers);
    }
    let prefix = format!("stack-{key}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(damaged_dir(paths))
        .map_err(|e| Error::io("listing damaged/", e))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    let Some(latest) = found.pop() else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("the layers of stack {key} are unknown"),
        ));
    };
    parse_layers(&latest.join(CACHE_DIR).join("layers.json"))
}

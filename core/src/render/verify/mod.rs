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
//!
//! Parts: `tree_check` (a tree against its tar), `stack_check` (a stack against its layers),
//! `aside` (setting aside, removing, rebuilding); this module runs them in turn.

mod aside;
mod stack_check;
mod tree_check;

pub use aside::remove_unused_damaged;
use aside::{count_damaged, rebuild, set_aside, unlink_checkouts};
use stack_check::{parse_layers, read_layers, verify_stack};
use tree::split;
use tree_check::{compare_meta, hash_range, list_dir, verify_tree};

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufReader;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::deps::Layer;
use super::{run, stack, tree, usage};
use crate::archive::tar::{Entry, EntryKind, SparseMap, TarReader};
use crate::blocking::{blocking, blocking_value};
use crate::fs::{self as fsops, NodeKind, NodeMeta, Privileges};
use crate::progress::Observer;
use crate::schema::ImageId;
use crate::store::housekeeping::FsckProblem;
use crate::store::paths::StorePaths;
use crate::store::recipe::RecipeReader;
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

/// What `fsck` did with the render caches (part of [`crate::FsckReport`]).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct RenderCacheReport {
    /// Exploded trees checked.
    pub trees_checked: u64,
    /// Stacks checked.
    pub stacks_checked: u64,
    /// Composefs metadata images checked (made again from the recipes and compared).
    pub composefs_checked: u64,
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
    /// problem of its own), and, on a read-only store, stacks whose layer trees are sound
    /// (they cannot be re-flattened there); they are left as they are.
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
///
/// A read-only store is checked without writing: trees are checked as usual, stacks only
/// through their layer trees (re-flattening one needs a scratch folder in the store: such
/// stacks count as [`RenderCacheReport::unverified`]), and nothing is set aside.
pub async fn check_render_caches(
    store: &Store,
    repair: bool,
    observer: &Observer,
) -> Result<(Vec<FsckProblem>, RenderCacheReport)> {
    let writable = !store.is_read_only();
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
        let (outcome, back) = blocking_value(move || {
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
        .await?;
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
        if diffs.is_empty() && !writable {
            report.unverified += 1;
            continue;
        }
        if diffs.is_empty() {
            let task_paths = paths.clone();
            let task_key = key.clone();
            diffs = blocking(move || verify_stack(&task_paths, &task_key, &layers)).await?;
        }
        if !diffs.is_empty() {
            damaged.push(Damage {
                cache: Cache::Stack(key, root),
                diffs,
            });
        }
    }

    let (mut problems, composefs_checked) =
        super::composefs::verify_images(store, &indexed, repair, observer).await?;
    report.composefs_checked = composefs_checked;
    report.damaged = damaged.len() as u64 + problems.len() as u64;
    if !writable {
        for damage in damaged {
            let mut what = damage.diffs.text();
            what.push_str("; not set aside: the store is read-only");
            problems.push(FsckProblem {
                kind: DAMAGED_RENDER_CACHE,
                subject: damage.cache.subject(),
                message: what,
            });
        }
        report.damaged_left = count_damaged(&paths);
        return Ok((problems, report));
    }
    if !damaged.is_empty() {
        let task_paths = paths.clone();
        let inodes = std::mem::take(&mut verdicts.damaged);
        let (unlinked, aside) = blocking(move || -> Result<(u64, Vec<_>)> {
            let unlinked = unlink_checkouts(&task_paths, &inodes)?;
            let runs = run::list_runs(&task_paths.runs())?;
            let mut aside = Vec::new();
            for d in &damaged {
                aside.push(set_aside(&task_paths, &d.cache, &runs));
            }
            Ok((unlinked, damaged.into_iter().zip(aside).collect()))
        })
        .await?;
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
    let (removed, left) = blocking(move || -> Result<(u64, u64)> {
        let removed = if repair {
            remove_unused_damaged(&task_paths)?
        } else {
            0
        };
        Ok((removed, count_damaged(&task_paths)))
    })
    .await?;
    report.damaged_removed = removed;
    report.damaged_left = left;
    Ok((problems, report))
}

// ---------------------------------------------------------------------------------------------

/// The layers of the composefs image folder `dir` (its `layers.json`, as a stack's).
pub(crate) fn composefs_layers(dir: &Path) -> Result<Vec<super::deps::Layer>> {
    parse_layers(&dir.join("layers.json"))
}

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

fn corrupt(what: String) -> Error {
    Error::new(ErrorKind::CorruptStore, what)
}

//! Rendered stacks: the flattened rootfs of an image with dependencies or a `pathWhitelist`,
//! built once, atomically, and cached.
//!
//! ```text
//! STORE/stacks/<key>/rootfs/        the flattened rootfs (read-only by convention)
//! STORE/stacks/<key>/layers.json    the layers it was built from (image IDs, filters, chains)
//! STORE/tmp/stack-<pid>-<time>-<n>/ a stack being built (holds .lock while its builder lives)
//! ```
//!
//! The key ([`stack_key`]) is a SHA-256 of the list of (image ID, whitelists) of the layers, so
//! two images with the same layers and filters share one stack, and a second render of an
//! image reuses it. An image with no dependencies and no whitelist has no stack: its exploded
//! tree ([`super::tree::ensure_tree`]) is returned as is.
//!
//! A stack is built in `tmp/` and renamed into `stacks/` when complete (after a `syncfs`), so a
//! half-built stack is never used; a builder that was killed leaves a `tmp/stack-…` folder
//! whose lock is free, removed by the next build. Two processes building the same stack at
//! once both succeed: the first rename wins and the other uses it.
//!
//! Building follows ace.md "Filesystem Setup": each layer's exploded tree is applied in order
//! ([`super::deps::resolve_layers`]); a path of a layer that its filters do not keep
//! ([`super::deps::PathFilter`]) is skipped (a directory with its subtree). When the target
//! already holds the path: a directory onto a directory is kept and takes the later layer's
//! metadata; anything else is removed first (a symlink to a directory is unlinked, never
//! followed) and the new node is created. Regular files are hardlinked from the layer's tree
//! (same inode: no copy, and the same owner, mode, mtime and xattrs), with a copy where a link
//! is impossible (`EMLINK`, `EXDEV`, `EPERM`); directories, symlinks, device nodes and fifos are
//! created with [`fsops::create_node`] and given their metadata with [`fsops::apply_meta`].
//! Every operation is relative to a directory descriptor opened with
//! [`fsops::open_dir_beneath`] (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so a symlink an
//! earlier layer left at `etc` can never make a later layer write through it. Directories are
//! created `0700` and get their final owner, mode, xattrs and mtime at the end, children
//! before parents (so their mtimes are those of the layer and read-only directories can be
//! filled). Last, the root image's whitelist removes everything it does not keep (step 3).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use super::deps::{Layer, PathFilter, resolve_layers};
use super::observe::Meter;
use super::tree::ensure_tree_observed;
use crate::blocking::blocking;
use crate::fs::{self as fsops, NodeKind, NodeMeta, Privileges};
use crate::progress::{Observer, Phase};
use crate::schema::ImageId;
use crate::store::Store;
use crate::store::paths::StorePaths;
use crate::{Error, Result};

/// The flattened rootfs of an image.
#[derive(Debug, Clone)]
pub struct StackBuilt {
    /// The flattened rootfs: `STORE/stacks/<key>/rootfs`, or the image's exploded tree when it
    /// has no dependencies and no whitelist. Shared and cached: never write into it.
    pub path: PathBuf,
    /// Whether it was already there (nothing was built).
    pub reused: bool,
    /// The layers, in the order they were applied.
    pub layers: Vec<Layer>,
    /// What was skipped or could not be reproduced (see [`Privileges::skip_unprivileged`]).
    pub warnings: Vec<String>,
}

/// The cache key of a stack: hex SHA-256 over the list of (image ID, whitelists) of its layers,
/// in order. Names and chains are not part of it.
pub fn stack_key(layers: &[Layer]) -> String {
    let mut h = Sha256::new();
    let mut put = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    put(b"acikit-stack-v1");
    put(&(layers.len() as u64).to_le_bytes());
    for layer in layers {
        put(layer.image_id.as_str().as_bytes());
        put(&(layer.filters.len() as u64).to_le_bytes());
        for list in &layer.filters {
            put(&(list.len() as u64).to_le_bytes());
            for entry in list {
                put(entry.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// Folder of a stack being built, under `tmp/`.
const BUILD_PREFIX: &str = "stack-";
/// The lock a live builder holds in its folder.
const BUILD_LOCK: &str = ".lock";

static BUILD_SEQ: AtomicU64 = AtomicU64::new(0);

/// The flattened rootfs of `root`: its exploded tree when it has no dependencies and no
/// whitelist, else the cached stack `STORE/stacks/<key>/rootfs`, built now if missing. See
/// the module documentation.
///
/// On a read-only store only a stack (or tree) already there is returned;
/// [`ErrorKind::ReadOnlyStore`](crate::ErrorKind::ReadOnlyStore) otherwise (see
/// `ensure_stack_in`).
pub async fn ensure_stack(store: &Store, root: &ImageId, privs: Privileges) -> Result<StackBuilt> {
    ensure_stack_in(store, StorePaths::new(store.dir()), root, privs).await
}

/// The stack of `root` if the store already has it (or, for an image without dependencies
/// and whitelist, its tree); nothing is built.
pub async fn cached_stack(store: &Store, root: &ImageId) -> Result<Option<StackBuilt>> {
    let layers = resolve_layers(store, root).await?;
    let paths = StorePaths::new(store.dir());
    let rootfs = if layers.len() == 1 && layers[0].filters.is_empty() {
        paths.tree(root).join("rootfs")
    } else {
        paths.stack(&stack_key(&layers)).join("rootfs")
    };
    Ok(is_dir(&rootfs).then(|| StackBuilt {
        path: rootfs,
        reused: true,
        layers,
        warnings: Vec::new(),
    }))
}

/// [`ensure_stack`] with the render folders where `paths` says (see
/// [`super::tree::ensure_tree_in`]): with a render root, the stack and the trees of its
/// layers are built there.
pub async fn ensure_stack_in(
    store: &Store,
    paths: StorePaths,
    root: &ImageId,
    privs: Privileges,
) -> Result<StackBuilt> {
    ensure_stack_observed(store, paths, root, privs, &Observer::default()).await
}

/// [`ensure_stack_in`] reporting [`Phase::Checkout`] to `observer` when something is built:
/// entries of the trees built (their tars' members) and of the layers flattened (their
/// tars' members again, an estimate of the nodes laid), of their sum. It stops at the next
/// entry once cancelled; what was being built is removed (nothing is published).
pub(crate) async fn ensure_stack_observed(
    store: &Store,
    paths: StorePaths,
    root: &ImageId,
    privs: Privileges,
    observer: &Observer,
) -> Result<StackBuilt> {
    let layers = resolve_layers(store, root).await?;
    observer.check()?;
    if layers.len() == 1 && layers[0].filters.is_empty() {
        let meter = if is_dir(&paths.tree(root).join("rootfs")) {
            Meter::silent()
        } else {
            Meter::new(observer, Phase::Checkout, store.entry_count(root).await?)
        };
        let meter = Arc::new(meter);
        meter.start()?;
        let tree = ensure_tree_observed(store, paths, root, privs, meter.clone()).await?;
        meter.finish();
        return Ok(StackBuilt {
            path: tree.path,
            reused: tree.reused,
            layers,
            warnings: tree.warnings,
        });
    }

    let key = stack_key(&layers);
    let done = paths.stack(&key);
    let rootfs = done.join("rootfs");
    if is_dir(&rootfs) {
        return Ok(StackBuilt {
            path: rootfs,
            reused: true,
            layers,
            warnings: Vec::new(),
        });
    }
    if paths.stacks().starts_with(store.dir()) {
        store.require_writable(&format!("build the rendered stack of {root}"))?;
    }

    // The total: the members of the trees to build, then of every layer to flatten.
    let mut total = 0;
    let mut counted: HashMap<&ImageId, u64> = HashMap::new();
    for layer in &layers {
        let entries = match counted.get(&layer.image_id) {
            Some(&entries) => entries,
            None => {
                let entries = store.entry_count(&layer.image_id).await?;
                counted.insert(&layer.image_id, entries);
                if !is_dir(&paths.tree(&layer.image_id).join("rootfs")) {
                    total += entries;
                }
                entries
            }
        };
        total += entries;
    }
    let meter = Arc::new(Meter::new(observer, Phase::Checkout, total));
    meter.start()?;

    let mut warnings = Vec::new();
    let mut trees: HashMap<ImageId, PathBuf> = HashMap::new();
    for layer in &layers {
        if !trees.contains_key(&layer.image_id) {
            let tree =
                ensure_tree_observed(store, paths.clone(), &layer.image_id, privs, meter.clone())
                    .await?;
            warnings.extend(tree.warnings);
            trees.insert(layer.image_id.clone(), tree.path);
        }
    }

    let plan: Vec<(PathBuf, Layer)> = layers
        .iter()
        .map(|l| (trees[&l.image_id].clone(), l.clone()))
        .collect();
    let root_whitelist = layers.last().map(own_whitelist).unwrap_or_default();
    let flattening = meter.clone();
    let (reused, build_warnings) =
        blocking(move || build(&paths, &key, &plan, &root_whitelist, &privs, &flattening)).await?;
    meter.finish();
    warnings.extend(build_warnings);
    Ok(StackBuilt {
        path: rootfs,
        reused,
        layers,
        warnings,
    })
}

/// The root layer's own whitelist: the last of its filters (its chain is itself alone, so its
/// filters are its own whitelist or nothing).
pub(crate) fn own_whitelist(root: &Layer) -> Vec<String> {
    root.filters.last().cloned().unwrap_or_default()
}

fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Builds the stack `key` in `tmp/` and renames it into `stacks/`. Returns whether another
/// builder finished it first (then that one is used), and the warnings. `plan` gives each
/// layer with the path of its exploded tree; `root_whitelist` is [`own_whitelist`] of the
/// root layer.
pub(crate) fn build(
    paths: &StorePaths,
    key: &str,
    plan: &[(PathBuf, Layer)],
    root_whitelist: &[String],
    privs: &Privileges,
    meter: &Meter,
) -> Result<(bool, Vec<String>)> {
    meter.tick(0)?;
    remove_stale_builds(paths);
    let mut warnings = Vec::new();
    let (folder, _lock) = create_build_folder(paths)?;
    let result = (|| {
        let staged = folder.join("stack");
        flatten(
            &staged.join("rootfs"),
            plan,
            root_whitelist,
            privs,
            &mut warnings,
            meter,
        )?;

        let listing = serde_json::json!({
            "layers": plan.iter().map(|(_, l)| serde_json::json!({
                "imageID": l.image_id.as_str(),
                "name": l.name,
                "chain": l.chain,
                "filters": l.filters,
            })).collect::<Vec<_>>(),
        });
        let listing_path = staged.join("layers.json");
        std::fs::write(
            &listing_path,
            serde_json::to_vec_pretty(&listing).unwrap_or_default(),
        )
        .map_err(|e| Error::io(format!("writing {}", listing_path.display()), e))?;

        // Not for a stack built in a render root: it is neither shared nor kept.
        if paths.render_root().is_none() {
            crate::store::objects::sync_filesystem(&staged)?;
        }
        let done = paths.stack(key);
        std::fs::create_dir_all(paths.stacks())
            .map_err(|e| Error::io(format!("creating {}", paths.stacks().display()), e))?;
        match std::fs::rename(&staged, &done) {
            Ok(()) => Ok(false),
            // Another builder renamed the same stack first (a rename onto a non-empty folder
            // fails): use that one.
            Err(_) if is_dir(&done.join("rootfs")) => Ok(true),
            Err(e) => Err(Error::io(
                format!("moving the stack into {}", done.display()),
                e,
            )),
        }
    })();
    let _ = fsops::remove_tree(&folder);
    result.map(|reused| (reused, warnings))
}

/// A flattened rootfs built in `tmp/` for comparison only (never published): removed, with
/// its build folder, when dropped. See [`scratch`].
pub(crate) struct Scratch {
    folder: PathBuf,
    _lock: std::fs::File,
    /// The flattened rootfs.
    pub rootfs: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fsops::remove_tree(&self.folder);
    }
}

/// Flattens `plan` as [`build`] does, into a build folder of `tmp/` that is never renamed
/// into `stacks/`: what the stack of these layers must hold, to compare a cached one with.
pub(crate) fn scratch(
    paths: &StorePaths,
    plan: &[(PathBuf, Layer)],
    root_whitelist: &[String],
    privs: &Privileges,
) -> Result<Scratch> {
    let (folder, lock) = create_build_folder(paths)?;
    let scratch = Scratch {
        rootfs: folder.join("stack").join("rootfs"),
        folder,
        _lock: lock,
    };
    let mut warnings = Vec::new();
    flatten(
        &scratch.rootfs,
        plan,
        root_whitelist,
        privs,
        &mut warnings,
        &Meter::silent(),
    )?;
    Ok(scratch)
}

/// Creates `rootfs` and lays the layers of `plan` onto it, then applies the root's whitelist
/// and gives the directories their metadata.
fn flatten(
    rootfs: &Path,
    plan: &[(PathBuf, Layer)],
    root_whitelist: &[String],
    privs: &Privileges,
    warnings: &mut Vec<String>,
    meter: &Meter,
) -> Result<()> {
    std::fs::create_dir_all(rootfs)
        .map_err(|e| Error::io(format!("creating {}", rootfs.display()), e))?;
    let target = open_root(rootfs)?;
    let mut builder = Builder {
        target: target.as_fd(),
        dirs: BTreeMap::new(),
        privs,
        warnings,
        meter,
    };
    for (tree, layer) in plan {
        builder.apply_layer(tree, layer)?;
    }
    if !root_whitelist.is_empty() {
        builder.prune(&PathFilter::new(&[root_whitelist.to_vec()]))?;
    }
    builder.finish_dirs()
}

fn open_root(path: &Path) -> Result<std::os::fd::OwnedFd> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening {}", path.display()), e.into()))
}

/// Creates `tmp/stack-…/` holding a locked `.lock` (made under a `forming-` name the sweeps
/// know, then renamed, so a live builder's folder is never seen without its lock).
fn create_build_folder(paths: &StorePaths) -> Result<(PathBuf, std::fs::File)> {
    let name = format!(
        "{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
        BUILD_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let forming = paths
        .render_tmp()
        .join(format!("forming-{BUILD_PREFIX}{name}"));
    std::fs::create_dir_all(&forming)
        .map_err(|e| Error::io(format!("creating {}", forming.display()), e))?;
    let lock_path = forming.join(BUILD_LOCK);
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
    lock.lock()
        .map_err(|e| Error::io("locking the stack build folder", e))?;
    let folder = paths.render_tmp().join(format!("{BUILD_PREFIX}{name}"));
    std::fs::rename(&forming, &folder)
        .map_err(|e| Error::io(format!("creating {}", folder.display()), e))?;
    Ok((folder, lock))
}

/// Removes `tmp/stack-…` folders of builders that are gone (their lock is free).
fn remove_stale_builds(paths: &StorePaths) {
    let Ok(entries) = std::fs::read_dir(paths.render_tmp()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(BUILD_PREFIX)
        {
            continue;
        }
        let dir = entry.path();
        let free =
            std::fs::File::open(dir.join(BUILD_LOCK)).map_or(true, |lock| lock.try_lock().is_ok());
        if free {
            let _ = fsops::remove_tree(&dir);
        }
    }
}

/// Applies layers onto the stack being built.
struct Builder<'a> {
    target: BorrowedFd<'a>,
    /// Final metadata of every directory of the stack, by path (`""` is the root).
    dirs: BTreeMap<PathBuf, NodeMeta>,
    privs: &'a Privileges,
    warnings: &'a mut Vec<String>,
    /// Ticked once per entry of a layer.
    meter: &'a Meter,
}

/// What the target holds at a name, if anything.
fn lstat_opt(dir: BorrowedFd, name: &OsStr) -> Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::io(format!("cannot inspect {name:?}"), e.into())),
    }
}

/// The entries of `dir` (no `.`/`..`), sorted, with their types.
fn list_dir(dir: BorrowedFd, shown: &Path) -> Result<Vec<(OsString, FileType)>> {
    let fail = |e: Errno| {
        Error::io(
            format!("reading the directory {}", shown.display()),
            e.into(),
        )
    };
    fsops::list_dir_with(dir, fail, |name| fsops::lstat(dir, name))
}

impl Builder<'_> {
    /// Forgets the directory metadata recorded at and below `rel` (it was removed).
    fn forget_dirs(&mut self, rel: &Path) {
        let below: Vec<PathBuf> = self
            .dirs
            .range(rel.to_path_buf()..)
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(rel))
            .cloned()
            .collect();
        for p in below {
            self.dirs.remove(&p);
        }
    }

    /// Lays the tree of one layer onto the stack, as its filters allow.
    fn apply_layer(&mut self, tree: &Path, layer: &Layer) -> Result<()> {
        let filter = PathFilter::new(&layer.filters);
        let source_root = open_root(tree)?;
        let root_meta = fsops::read_meta(source_root.as_fd(), OsStr::new("."))?;
        self.dirs.insert(PathBuf::new(), root_meta);

        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            let shown = tree.join(&rel);
            let src = fsops::open_dir_beneath(source_root.as_fd(), &rel)?;
            let dst = fsops::open_dir_beneath(self.target, &rel)?;
            for (name, ty) in list_dir(src.as_fd(), &shown)? {
                self.meter.tick(1)?;
                let path = rel.join(&name);
                let src_is_dir = ty == FileType::Directory;
                if !filter.keeps(&path, src_is_dir) {
                    continue;
                }
                let existing = lstat_opt(dst.as_fd(), &name)?;
                if src_is_dir && existing == Some(FileType::Directory) {
                    let meta = fsops::read_meta(src.as_fd(), &name)?;
                    self.dirs.insert(path.clone(), meta);
                    pending.push(path);
                    continue;
                }
                if let Some(kind) = existing {
                    fsops::remove_node(dst.as_fd(), &name).map_err(|e| {
                        Error::new(
                            e.kind(),
                            format!(
                                "replacing /{} with the one of {}: {}",
                                path.display(),
                                layer.chain_text(),
                                e.message()
                            ),
                        )
                    })?;
                    if kind == FileType::Directory {
                        self.forget_dirs(&path);
                    }
                }
                match ty {
                    FileType::RegularFile => {
                        self.link_file(src.as_fd(), dst.as_fd(), &name)?;
                    }
                    FileType::Directory => {
                        let meta = fsops::read_meta(src.as_fd(), &name)?;
                        fsops::create_node(dst.as_fd(), &name, &meta, self.privs, self.warnings)?;
                        self.dirs.insert(path.clone(), meta);
                        pending.push(path);
                    }
                    FileType::Symlink
                    | FileType::CharacterDevice
                    | FileType::BlockDevice
                    | FileType::Fifo => {
                        let meta = fsops::read_meta(src.as_fd(), &name)?;
                        if fsops::create_node(dst.as_fd(), &name, &meta, self.privs, self.warnings)?
                        {
                            fsops::apply_meta(
                                dst.as_fd(),
                                &name,
                                &meta,
                                self.privs,
                                self.warnings,
                            )?;
                        }
                    }
                    _ => self.warnings.push(format!(
                        "{}: a socket or unknown file type; skipped",
                        shown.join(&name).display()
                    )),
                }
            }
        }
        Ok(())
    }

    /// Hardlinks the regular file `name` of `src` into `dst`, or copies it (with its metadata)
    /// where a link is impossible.
    fn link_file(&mut self, src: BorrowedFd, dst: BorrowedFd, name: &OsStr) -> Result<()> {
        match rustix::fs::linkat(src, name, dst, name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(Errno::MLINK | Errno::XDEV | Errno::PERM) => {}
            Err(e) => return Err(Error::io(format!("cannot link {name:?}"), e.into())),
        }
        let meta = fsops::read_meta(src, name)?;
        let size = fsops::lstat(src, name)?.st_size as u64;
        let from = fsops::open_file(src, name)?;
        let to = fsops::create_file(dst, name)?;
        fsops::copy_file_data(&from, &to, size)?;
        drop(to);
        fsops::apply_meta(dst, name, &meta, self.privs, self.warnings)
    }

    /// Removes everything `filter` does not keep (step 3 of "Filesystem Setup").
    fn prune(&mut self, filter: &PathFilter) -> Result<()> {
        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            let dir = fsops::open_dir_beneath(self.target, &rel)?;
            for (name, ty) in list_dir(dir.as_fd(), &rel)? {
                let path = rel.join(&name);
                let is_dir = ty == FileType::Directory;
                if filter.keeps(&path, is_dir) {
                    if is_dir {
                        pending.push(path);
                    }
                } else {
                    fsops::remove_node(dir.as_fd(), &name)?;
                    if is_dir {
                        self.forget_dirs(&path);
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives every directory its final metadata, children before parents.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut dirs: Vec<(PathBuf, NodeMeta)> =
            std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, mut meta) in dirs {
            meta.kind = NodeKind::Directory;
            let (parent, name) = match (rel.parent(), rel.file_name()) {
                (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_os_string()),
                _ => (PathBuf::new(), OsString::from(".")),
            };
            let dir = fsops::open_dir_beneath(self.target, &parent)?;
            fsops::apply_meta(dir.as_fd(), &name, &meta, self.privs, self.warnings)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(id_digit: char, filters: Vec<Vec<String>>) -> Layer {
        Layer {
            image_id: ImageId::parse(&format!("sha512-{}", id_digit.to_string().repeat(128)))
                .unwrap(),
            name: format!("example.com/{id_digit}"),
            filters,
            chain: vec![],
        }
    }

    #[test]
    fn key_depends_on_ids_filters_and_order_only() {
        let a = layer('a', vec![]);
        let b = layer('b', vec![]);
        let key = stack_key(&[a.clone(), b.clone()]);
        assert_eq!(key.len(), 64);
        assert_eq!(key, stack_key(&[a.clone(), b.clone()]));
        assert_ne!(key, stack_key(&[b.clone(), a.clone()]));
        let mut renamed = a.clone();
        renamed.name = "other".into();
        renamed.chain = vec!["x".into()];
        assert_eq!(key, stack_key(&[renamed, b.clone()]));
        let filtered = layer('a', vec![vec!["/x".into()]]);
        assert_ne!(key, stack_key(&[filtered, b.clone()]));
        // Entry boundaries matter.
        let ab = layer('a', vec![vec!["/ab".into()]]);
        let a_b = layer('a', vec![vec!["/a".into(), "b".into()]]);
        assert_ne!(stack_key(&[ab]), stack_key(&[a_b]));
    }
}

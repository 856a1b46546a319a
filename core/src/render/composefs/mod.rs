//! The `composefs` strategy: a run is an overlay of a cached EROFS metadata image over the
//! store's object folder, so nothing of the image is copied, not even once.
//!
//! ```text
//! STORE/
//!   composefs/<stack key>/meta.erofs   the metadata of the flattened rootfs (no contents)
//!   composefs/<stack key>/layers.json  its layers, as a stack's
//!   tmp/composefs-<pid>-<ns>-<n>/      one being built
//!   runs/<key>/meta                    the EROFS mount point while a run is made
//! ```
//!
//! **The image** ([`erofs`]) holds names, types, owners, modes, mtimes, xattrs, symlinks,
//! devices and hardlinks of the image's rootfs (with its dependencies and whitelists: one
//! image per stack, keyed by [`super::stack::stack_key`], so an image without dependencies
//! has its own); each regular file with content carries the overlayfs xattrs
//! `trusted.overlay.metacopy` and `trusted.overlay.redirect = /ab/abcd…`, the path of its
//! content object under `objects/sha256/`. It is made from the recipes alone ([`meta`]):
//! the tar headers are in the recipe, so no content is read or hashed; the objects and
//! recipes are trusted as the store keeps them (`fsck` checks them). Sparse files work
//! because objects hold the logical content with its holes.
//!
//! **A run** mounts the image (a file-backed EROFS mount, Linux 6.12+) read-only at
//! `runs/<key>/meta`, then overlayfs on the target with
//! `lowerdir=runs/<key>/meta::STORE/objects/sha256` (the object folder as a data-only
//! layer, Linux 6.5+), `redirect_dir=on,metacopy=on`, and a private `upper/` and `work/`
//! as the overlay strategy's; then it detaches the EROFS mount point (overlayfs holds its
//! own reference), so a complete run is one mount. A write copies the file up into
//! `upper/`: the objects are only ever read. The paths are the store's at mount time, so a
//! store moved or copied elsewhere still renders. A crash between the mounts leaves
//! `runs/<key>/meta` mounted: `release` and dead-run cleaning unmount it
//! ([`unmount_meta`], called by `run::remove_overlay_dirs`).
//!
//! Needs root (`CAP_SYS_ADMIN`), and a kernel with erofs and overlayfs; otherwise
//! `needs_privilege` or `unsupported`, and `auto` falls back to the other strategies.

pub(crate) mod erofs;
pub(crate) mod meta;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::Errno;

use super::deps::{Layer, resolve_layers};
use super::observe::Meter;
use super::stack::{own_whitelist, stack_key};
use crate::blocking::blocking;
use crate::progress::{Observer, Phase};
use crate::schema::ImageId;
use crate::store::Store;
use crate::store::paths::StorePaths;
use crate::{Error, ErrorKind, Result};

/// The metadata image file in a cache folder.
pub(crate) const IMAGE: &str = "meta.erofs";
/// The layer listing in a cache folder.
const LAYERS: &str = "layers.json";
/// Prefix of build folders under `tmp/`.
const BUILD_PREFIX: &str = "composefs-";
/// The EROFS mount point in a run folder.
pub(crate) const META_MOUNT: &str = "meta";

/// A composefs metadata image, ready.
#[derive(Debug, Clone)]
pub(crate) struct ImageBuilt {
    /// Its cache folder, `STORE/composefs/<key>` (the run's `lower`).
    pub path: PathBuf,
    /// It was already there.
    pub reused: bool,
    /// The layers it holds, in order.
    pub layers: Vec<Layer>,
}

/// Whether composefs runs can be made here: `CAP_SYS_ADMIN`, and a kernel with erofs and
/// overlayfs. [`ErrorKind::NeedsPrivilege`] or [`ErrorKind::Unsupported`] otherwise.
pub(crate) fn check_available() -> Result<()> {
    if !super::protect::can_mount() {
        return Err(Error::new(
            ErrorKind::NeedsPrivilege,
            "a composefs run mounts an EROFS image and an overlay: that needs root \
             (CAP_SYS_ADMIN); use the copy or reflink strategy",
        ));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for fs in ["erofs", "overlay"] {
        if !filesystems.split_whitespace().any(|f| f == fs) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "this kernel has no {fs} file system (see /proc/filesystems), which composefs runs need"
                ),
            ));
        }
    }
    Ok(())
}

/// The composefs image of `root` with its dependencies and whitelists, built if missing
/// (progress: [`Phase::Checkout`], one tick per tar member of each layer read).
pub(crate) async fn ensure_image(
    store: &Store,
    root: &ImageId,
    observer: &Observer,
) -> Result<ImageBuilt> {
    let layers = resolve_layers(store, root).await?;
    observer.check()?;
    let paths = StorePaths::new(store.dir());
    let key = stack_key(&layers);
    let dir = paths.composefs_image(&key);
    if dir.join(IMAGE).is_file() {
        return Ok(ImageBuilt {
            path: dir,
            reused: true,
            layers,
        });
    }
    store.require_writable(&format!("build the composefs image of {root}"))?;
    let mut total = 0;
    let mut distinct: Vec<ImageId> = Vec::new();
    for layer in &layers {
        if !distinct.contains(&layer.image_id) {
            distinct.push(layer.image_id.clone());
            total += store.entry_count(&layer.image_id).await?;
        }
    }
    let meter = Meter::new(observer, Phase::Checkout, total);
    meter.start()?;
    let handle = tokio::runtime::Handle::current();
    let build_layers = layers.clone();
    let reused = blocking(move || {
        build(&paths, &key, &build_layers, &distinct, &handle, &meter).inspect(|_| meter.finish())
    })
    .await?;
    Ok(ImageBuilt {
        path: dir,
        reused,
        layers,
    })
}

/// Builds the image `key` in `tmp/` and renames its folder into `composefs/`; returns
/// whether another builder's was there first.
fn build(
    paths: &StorePaths,
    key: &str,
    layers: &[Layer],
    distinct: &[ImageId],
    handle: &tokio::runtime::Handle,
    meter: &Meter,
) -> Result<bool> {
    remove_stale_builds(paths);
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = paths.tmp();
    let folder = tmp.join(format!(
        "{BUILD_PREFIX}{}-{}-{}",
        std::process::id(),
        super::run::now_ms(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&folder)
        .map_err(|e| Error::io(format!("creating {}", folder.display()), e))?;
    let result = (|| {
        let tree = flattened(paths, layers, distinct, handle, meter)?;
        let image_path = folder.join(IMAGE);
        let file = File::create(&image_path)
            .map_err(|e| Error::io(format!("creating {}", image_path.display()), e))?;
        let mut out = BufWriter::new(file);
        erofs::write_image(&tree, &mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", image_path.display()), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", image_path.display()), e))?;
        let listing = serde_json::json!({
            "layers": layers.iter().map(|l| serde_json::json!({
                "imageID": l.image_id.as_str(),
                "name": l.name,
                "chain": l.chain,
                "filters": l.filters,
            })).collect::<Vec<_>>(),
        });
        let listing_path = folder.join(LAYERS);
        let mut f = File::create(&listing_path)
            .map_err(|e| Error::io(format!("creating {}", listing_path.display()), e))?;
        f.write_all(&serde_json::to_vec_pretty(&listing).unwrap_or_default())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", listing_path.display()), e))?;
        std::fs::create_dir_all(paths.composefs())
            .map_err(|e| Error::io(format!("creating {}", paths.composefs().display()), e))?;
        let done = paths.composefs_image(key);
        match std::fs::rename(&folder, &done) {
            Ok(()) => Ok(false),
            Err(_) if done.join(IMAGE).is_file() => Ok(true),
            Err(e) => Err(Error::io(
                format!("moving the image into {}", done.display()),
                e,
            )),
        }
    })();
    let _ = crate::fs::remove_tree(&folder);
    result
}

/// The flattened metadata tree of `layers` (`distinct`: their images, each once), from
/// the recipes.
fn flattened(
    paths: &StorePaths,
    layers: &[Layer],
    distinct: &[ImageId],
    handle: &tokio::runtime::Handle,
    meter: &Meter,
) -> Result<meta::MetaTree> {
    let mut trees = HashMap::new();
    for id in distinct {
        trees.insert(
            id.clone(),
            meta::read_layer(&paths.recipe(id), handle, meter)?,
        );
    }
    let plan: Vec<(&meta::MetaTree, &Layer)> =
        layers.iter().map(|l| (&trees[&l.image_id], l)).collect();
    let whitelist = layers.last().map(own_whitelist).unwrap_or_default();
    meta::flatten(&plan, &whitelist, &Meter::silent())
}

/// `fsck` of the composefs images whose layers are all in `indexed` (hex IDs): each is
/// made again from the recipes and must be the same bytes. A damaged one is one
/// `damaged_render_cache` problem and, on a writable store, removed (runs using it keep
/// their mount; the next render builds it again), or rebuilt at once with `repair`.
/// Returns the problems and how many images were checked.
pub(crate) async fn verify_images(
    store: &Store,
    indexed: &std::collections::HashSet<String>,
    repair: bool,
    observer: &Observer,
) -> Result<(Vec<crate::store::housekeeping::FsckProblem>, u64)> {
    let paths = store.paths().clone();
    let mut keys = image_keys(&paths);
    keys.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for key in keys {
        observer.check()?;
        let layers = match super::verify::composefs_layers(&paths.composefs_image(&key)) {
            Ok(layers) => layers,
            Err(e) => {
                problems.push(damaged(
                    &key,
                    None,
                    format!("its layers.json cannot be read: {e}"),
                ));
                continue;
            }
        };
        if layers.is_empty() || layers.iter().any(|l| !indexed.contains(l.image_id.hex())) {
            continue; // gc's business
        }
        checked += 1;
        let root = layers.last().map(|l| l.image_id.clone());
        let handle = tokio::runtime::Handle::current();
        let task_paths = paths.clone();
        let task_key = key.clone();
        let task_layers = layers.clone();
        let differs = blocking(move || -> Result<Option<String>> {
            let mut distinct: Vec<ImageId> = Vec::new();
            for l in &task_layers {
                if !distinct.contains(&l.image_id) {
                    distinct.push(l.image_id.clone());
                }
            }
            let tree = flattened(
                &task_paths,
                &task_layers,
                &distinct,
                &handle,
                &Meter::silent(),
            )?;
            let mut expected = Vec::new();
            erofs::write_image(&tree, &mut expected)?;
            let path = task_paths.composefs_image(&task_key).join(IMAGE);
            Ok(match std::fs::read(&path) {
                Ok(found) if found == expected => None,
                Ok(found) => Some(format!(
                    "its metadata image is not the one its layers give ({} bytes where {} are \
                     expected, or other bytes)",
                    found.len(),
                    expected.len()
                )),
                Err(e) => Some(format!("its metadata image cannot be read: {e}")),
            })
        })
        .await;
        let why = match differs {
            Ok(None) => continue,
            Ok(Some(why)) => why,
            Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
            // The images do not read (their own fsck problems): not checked.
            Err(_) => continue,
        };
        let mut what = why;
        if !store.is_read_only() {
            let task_paths = paths.clone();
            let task_key = key.clone();
            match blocking(move || remove_image(&task_paths, &task_key)).await {
                Ok(_) => what.push_str("; removed (the next render builds it again)"),
                Err(e) => what.push_str(&format!("; could not be removed: {e}")),
            }
            if repair && let Some(root) = &root {
                match ensure_image(store, root, &Observer::default()).await {
                    Ok(_) => what.push_str("; rebuilt"),
                    Err(e) => what.push_str(&format!("; not rebuilt: {e}")),
                }
            }
        }
        problems.push(damaged(&key, root.as_ref(), what));
    }
    Ok((problems, checked))
}

/// A `damaged_render_cache` problem of the composefs image `key`.
fn damaged(
    key: &str,
    root: Option<&ImageId>,
    message: String,
) -> crate::store::housekeeping::FsckProblem {
    crate::store::housekeeping::FsckProblem {
        kind: super::verify::DAMAGED_RENDER_CACHE,
        subject: match root {
            Some(root) => format!("composefs image {key} of {root}"),
            None => format!("composefs image {key}"),
        },
        message,
    }
}

/// Removes the build folders of builders that are gone (their pid no longer runs).
/// Returns how many.
pub(crate) fn remove_stale_builds(paths: &StorePaths) -> u64 {
    let Ok(entries) = std::fs::read_dir(paths.tmp()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(BUILD_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && crate::fs::remove_tree(&entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The cache keys of the composefs images in the store.
pub(crate) fn image_keys(paths: &StorePaths) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(paths.composefs()) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

/// Hex digests of the images the composefs image `key` holds (from its `layers.json`).
pub(crate) fn image_layers(
    paths: &StorePaths,
    key: &str,
) -> Result<std::collections::HashSet<String>> {
    crate::render::usage::layer_images(&paths.composefs_image(key).join(LAYERS))
}

/// Removes the composefs image `key` (renamed out of `composefs/` first). A run using it
/// keeps working: its mount holds the file.
pub(crate) fn remove_image(paths: &StorePaths, key: &str) -> Result<bool> {
    let dir = paths.composefs_image(key);
    let doomed = paths.tmp().join(format!(
        "{BUILD_PREFIX}removed-{key}-{}",
        std::process::id()
    ));
    let _ = std::fs::create_dir_all(paths.tmp());
    match std::fs::rename(&dir, &doomed) {
        Ok(()) => {
            crate::fs::remove_tree(&doomed)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}

/// The store's object folder for the composefs cache folder `cache`
/// (`STORE/composefs/<key>` -> `STORE/objects/sha256`).
fn data_layer(cache: &Path) -> Option<PathBuf> {
    let store = cache.parent()?.parent()?;
    Some(StorePaths::new(store).objects())
}

/// Mounts the composefs run of the cache folder `cache` on `target`, with its EROFS mount
/// point, `upper/` and `work/` in `run_dir`.
pub(crate) fn mount_run(cache: &Path, run_dir: &Path, target: &Path) -> Result<()> {
    check_available()?;
    let image = cache.join(IMAGE);
    let data = data_layer(cache)
        .filter(|_| image.is_file())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} is not a composefs image folder: composefs runs are made by Store::render \
                 (acikit render --strategy composefs), not from a tree",
                    cache.display()
                ),
            )
        })?;
    std::fs::create_dir_all(&data)
        .map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
    let meta = run_dir.join(META_MOUNT);
    let upper = run_dir.join(super::run::UPPER);
    let work = run_dir.join(super::run::WORK);
    for dir in [&meta, &upper, &work] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    mount_erofs(&image, &meta)?;
    let mounted = (|| {
        copy_root_meta(&meta, &upper)?;
        let options = format!(
            "lowerdir={}::{},upperdir={},workdir={},redirect_dir=on,metacopy=on",
            super::run::escape_overlay_path(&meta)?,
            super::run::escape_overlay_path(&data)?,
            super::run::escape_overlay_path(&upper)?,
            super::run::escape_overlay_path(&work)?,
        );
        let mut done = super::run::mount_overlay_with(target, &format!("{options},volatile"));
        if done == Err(Errno::INVAL) {
            done = super::run::mount_overlay_with(target, &options);
        }
        done.map_err(|e| {
            let io = std::io::Error::from(e);
            let what = format!("cannot mount the composefs overlay on {}", target.display());
            match e {
                Errno::PERM | Errno::ACCESS => Error::new(
                    ErrorKind::NeedsPrivilege,
                    format!("{what}: mounting needs root (CAP_SYS_ADMIN) ({io})"),
                ),
                Errno::NODEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP | Errno::XDEV => {
                    Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "{what}: this kernel's overlayfs refused a data-only lower layer \
                             with metacopy (Linux 6.5+ needed) ({io})"
                        ),
                    )
                }
                Errno::NAMETOOLONG => Error::new(
                    ErrorKind::Unsupported,
                    format!("{what}: the store and runs paths are too long for the mount options"),
                ),
                _ => Error::new(ErrorKind::Io, format!("{what}: {io}")),
            }
            .with_source(io)
        })
    })();
    // The overlay holds its own reference to the EROFS mount: the mount point goes.
    let detached = unmount_meta(run_dir);
    mounted?;
    detached
}

/// A file-backed, read-only EROFS mount of `image` on `at`.
fn mount_erofs(image: &Path, at: &Path) -> Result<()> {
    rustix::mount::mount(image, at, "erofs", rustix::mount::MountFlags::RDONLY, c"").map_err(|e| {
        let io = std::io::Error::from(e);
        let what = format!("cannot mount the composefs image {}", image.display());
        match e {
            Errno::PERM | Errno::ACCESS => Error::new(
                ErrorKind::NeedsPrivilege,
                format!("{what}: mounting needs root (CAP_SYS_ADMIN) ({io})"),
            ),
            Errno::NODEV | Errno::NOTBLK | Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS => {
                Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{what}: this kernel cannot mount an EROFS image from a file \
                         (Linux 6.12+ with EROFS_FS_BACKED_BY_FILE) ({io})"
                    ),
                )
            }
            _ => Error::new(ErrorKind::Io, format!("{what}: {io}")),
        }
        .with_source(io)
    })
}

/// Gives `upper` (the merged root) the owner, mode and times of the image's root at `meta`.
fn copy_root_meta(meta: &Path, upper: &Path) -> Result<()> {
    let root = std::fs::metadata(meta)
        .map_err(|e| Error::io(format!("cannot stat {}", meta.display()), e))?;
    let _ = std::os::unix::fs::chown(upper, Some(root.uid()), Some(root.gid()));
    std::fs::set_permissions(upper, std::fs::Permissions::from_mode(root.mode() & 0o7777))
        .map_err(|e| Error::io(format!("cannot set the mode of {}", upper.display()), e))?;
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(root.atime(), root.atime_nsec()),
        last_modification: ts(root.mtime(), root.mtime_nsec()),
    };
    rustix::fs::utimensat(rustix::fs::CWD, upper, &times, rustix::fs::AtFlags::empty()).map_err(
        |e| {
            Error::io(
                format!("cannot set the times of {}", upper.display()),
                e.into(),
            )
        },
    )
}

/// Unmounts (detaches) the EROFS mount point of the run folder `run_dir`, however many
/// times it was mounted, and removes it. Nothing to do when there is none.
pub(crate) fn unmount_meta(run_dir: &Path) -> Result<()> {
    let meta = run_dir.join(META_MOUNT);
    for _ in 0..4 {
        if !super::run::mount_points().contains(meta.as_os_str().as_encoded_bytes()) {
            break;
        }
        rustix::mount::unmount(&meta, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| Error::io(format!("cannot unmount {}", meta.display()), e.into()))?;
    }
    match std::fs::remove_dir(&meta) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}", meta.display()), e)),
    }
}

/// Makes the composefs run of `id` at `target` (see [`super::Store::render`]).
pub(crate) async fn render(
    store: &Store,
    id: &ImageId,
    target: &Path,
    privs: super::Privileges,
    observer: &Observer,
) -> Result<super::Rendered> {
    check_available()?;
    let image = ensure_image(store, id, observer).await?;
    let runs = store.paths().runs();
    let lower = image.path.clone();
    let target = target.to_path_buf();
    let options = super::run::RunOptions {
        strategy: super::Strategy::Composefs,
        allow_unprotected_hardlink: false,
    };
    let obs = observer.clone();
    let handle = blocking(move || {
        super::run::create_run_observed(&runs, &lower, &target, &options, &privs, &obs)
    })
    .await?;
    Ok(super::Rendered {
        image_id: id.clone(),
        target: handle.target,
        strategy: handle.strategy,
        read_only: false,
        protected: false,
        layers: image.layers.into_iter().map(|l| l.image_id).collect(),
        cached: image.reused,
        warnings: handle.warnings,
    })
}

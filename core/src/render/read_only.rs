//! Rendering from a read-only store, which must not be written: no tree, stack or checkout
//! is cached and no run is recorded in it.
//!
//! - An image whose tree (or stack) the store already has is rendered from it as usual, by
//!   any strategy (an overlay's lower folder may be on a read-only mount).
//! - An image it has none of is built without caching, straight into the run: a run is
//!   recorded by `copy` from an empty folder (so the target is checked, made and recorded
//!   first, as for any run), then the tree (or stack) is built in a scratch folder beside
//!   the target, on the same file system, from the store's recipe and objects (its tar is
//!   regenerated and checked against the image ID, as always), and renamed over the empty
//!   target. The scratch folder (with the checkout objects, whose other links are the run's
//!   files) is removed. `auto` gives `copy` (with a warning); `overlay`, `reflink` and
//!   `hardlink` need a cached tree to share, and fail with [`ErrorKind::Unsupported`].
//! - Run records go outside the store: [`outside_runs_dir`]. [`Store::release`] looks there
//!   and in the store's own `runs/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::fsops::{self, Privileges};
use super::run::{self, Strategy};
use super::stack;
use super::{RenderOptions, Rendered};
use crate::blocking::{blocking, blocking_value};
use crate::schema::ImageId;
use crate::store::Store;
use crate::store::paths::StorePaths;
use crate::{Error, ErrorKind, Result};

/// Where the records of runs rendered from the read-only store at `store_root` go, by
/// default: `$XDG_RUNTIME_DIR/acikit/runs`, else `/run/acikit/runs` for root, else
/// `$XDG_CACHE_HOME/acikit/runs` (`~/.cache/acikit/runs`), each in a folder named after the
/// store's canonical path (16 hex digits of its SHA-256), so each store lists its own runs.
///
/// The first two are cleared at reboot, as overlay mounts are; a run made by copy outlives
/// a reboot, but its record does not: remove such a folder by hand.
///
/// ```
/// let runs = acikit::render::outside_runs_dir(std::path::Path::new("/srv/store"));
/// assert!(runs.ends_with(runs.file_name().unwrap()));
/// assert_eq!(runs.file_name().unwrap().len(), 16); // the store's folder, hashed
/// ```
pub fn outside_runs_dir(store_root: &Path) -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = if let Some(dir) = var("XDG_RUNTIME_DIR") {
        PathBuf::from(dir).join("acikit/runs")
    } else if rustix::process::geteuid().is_root() {
        PathBuf::from("/run/acikit/runs")
    } else if let Some(dir) = var("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("acikit/runs")
    } else {
        let home = var("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".cache/acikit/runs")
    };
    let canonical = std::fs::canonicalize(store_root).unwrap_or_else(|_| store_root.into());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    base.join(&hex::encode(digest)[..16])
}

/// [`Store::render`] on a read-only store (see the module documentation).
pub(super) async fn render(
    store: &Store,
    id: &ImageId,
    target: &Path,
    options: RenderOptions,
    privs: Privileges,
) -> Result<Rendered> {
    let runs = store.outside_runs().to_path_buf();
    if let Some(stack) = stack::cached_stack(store, id).await? {
        let lower = stack.path.clone();
        let target = target.to_path_buf();
        let handle = blocking(move || {
            let run_options = run::RunOptions {
                strategy: options.strategy,
                allow_unprotected_hardlink: options.allow_unprotected_hardlink,
            };
            run::create_run_with(&runs, &lower, &target, &run_options, &privs)
        })
        .await?;
        return Ok(Rendered::of_run(id, stack, handle, true, Vec::new()));
    }

    let mut warnings = Vec::new();
    match options.strategy {
        Strategy::Copy => {}
        Strategy::Auto => warnings.push(format!(
            "the store at {} is read-only and has no rendered tree of {id}: rendered by copy, \
             not cached",
            store.dir().display()
        )),
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "cannot render {id} by {other}: the store at {} is read-only and has no \
                     rendered tree of it to share; render by copy (or once where the store can \
                     be written, which caches the tree)",
                    store.dir().display()
                ),
            ));
        }
    }

    let scratch = {
        let target = target.to_path_buf();
        blocking(move || Scratch::beside(&target)).await?
    };
    let handle = {
        let empty = scratch.empty.clone();
        let target = target.to_path_buf();
        let runs = runs.clone();
        blocking_value(move || run::create_run(&runs, &empty, &target, Strategy::Copy, &privs))
            .await?
    };
    let handle = match handle {
        Ok(handle) => handle,
        Err(err) => {
            scratch.remove().await;
            return Err(err);
        }
    };
    let built = async {
        let paths = StorePaths::new(store.dir()).with_render_root(&scratch.render);
        let stack = stack::ensure_stack_in(store, paths, id, privs).await?;
        let from = stack.path.clone();
        let to = handle.target.clone();
        blocking(move || {
            std::fs::rename(&from, &to).map_err(|e| {
                Error::io(
                    format!("moving the rendered tree into place at {}", to.display()),
                    e,
                )
            })
        })
        .await?;
        Ok::<_, Error>(stack)
    }
    .await;
    scratch.remove().await;
    match built {
        Ok(stack) => Ok(Rendered::of_run(id, stack, handle, false, warnings)),
        Err(err) => {
            let target = handle.target.clone();
            let _ = blocking(move || run::release_run(&runs, &target)).await;
            Err(err)
        }
    }
}

/// The scratch folder of one uncached render, beside its target: `empty/` (the lower folder
/// of the run's record), `render/` (the render root the tree is built in) and `.lock`, held
/// while it is used. Removed by [`Scratch::remove`], or when dropped (a render cut short);
/// one a killed process left (its lock free) goes at the next render to the same target.
struct Scratch {
    dir: PathBuf,
    empty: PathBuf,
    render: PathBuf,
    removed: bool,
    _lock: Option<std::fs::File>,
}

/// The lock file in a scratch folder.
const SCRATCH_LOCK: &str = ".lock";

impl Scratch {
    /// Makes `.NAME.acikit-render-PID-N` (mode 0700) in the target's folder, which is made
    /// if missing (as [`run::create_run`] would).
    fn beside(target: &Path) -> Result<Scratch> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = target.file_name().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the target {} does not end with a folder name",
                    target.display()
                ),
            )
        })?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        let prefix = format!(".{}.acikit-render-", name.to_string_lossy());
        remove_stale_scratch(&parent, &prefix);
        let dir = parent.join(format!(
            "{prefix}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut scratch = Scratch {
            empty: dir.join("empty"),
            render: dir.join("render"),
            dir,
            removed: false,
            _lock: None,
        };
        for folder in [&scratch.dir, &scratch.empty, &scratch.render] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(folder)
                .map_err(|e| Error::io(format!("cannot create {}", folder.display()), e))?;
        }
        let lock_path = scratch.dir.join(SCRATCH_LOCK);
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| Error::io(format!("creating {}", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        scratch._lock = Some(lock);
        Ok(scratch)
    }

    /// Removes the folder, off the async runtime.
    async fn remove(mut self) {
        self.removed = true;
        let dir = self.dir.clone();
        let _ = blocking(move || fsops::remove_tree(&dir)).await;
    }
}

/// Removes the scratch folders named `PREFIX…` in `parent` whose lock is free (their render
/// was killed). A folder just made, before its lock, is younger than a minute: kept.
fn remove_stale_scratch(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let dir = entry.path();
        let stale = match std::fs::File::open(dir.join(SCRATCH_LOCK)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60)),
        };
        if stale {
            let _ = fsops::remove_tree(&dir);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fsops::remove_tree(&self.dir);
        }
    }
}

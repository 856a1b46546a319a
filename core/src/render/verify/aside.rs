//! Setting damaged caches aside, removing them once unused, and rebuilding them.

use super::*;
use crate::blocking::blocking;
use crate::render::observe::Meter;

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

pub(super) fn count_damaged(paths: &StorePaths) -> u64 {
    std::fs::read_dir(damaged_dir(paths)).map_or(0, |d| d.count() as u64)
}

/// Unlinks from `checkouts/` the names of the `damaged` inodes; returns how many.
pub(super) fn unlink_checkouts(paths: &StorePaths, damaged: &HashSet<(u64, u64)>) -> Result<u64> {
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
pub(super) fn set_aside(
    paths: &StorePaths,
    cache: &Cache,
    runs: &[run::RunRecord],
) -> Result<usize> {
    let folder = cache.folder(paths);
    // A tree is set aside under its build lock, so no builder is publishing it meanwhile.
    let _lock = match cache {
        Cache::Tree(id) => Some(tree::lock_tree(paths, id)?),
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
pub(super) async fn rebuild(store: &Store, cache: &Cache) -> Result<()> {
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
            blocking(move || {
                stack::build(
                    &paths,
                    &key,
                    &plan,
                    &root_whitelist,
                    &privs,
                    &Meter::silent(),
                )
            })
            .await?;
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

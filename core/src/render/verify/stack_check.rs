//! Checking a stack against its layers, flattened again in `tmp/`.

use super::*;

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
pub(super) fn read_layers(paths: &StorePaths, key: &str) -> Result<Vec<Layer>> {
    parse_layers(&paths.stack(key).join("layers.json"))
}

/// Reads a stack's `layers.json`.
pub(super) fn parse_layers(path: &Path) -> Result<Vec<Layer>> {
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
pub(super) fn verify_stack(paths: &StorePaths, key: &str, layers: &[Layer]) -> Result<Diffs> {
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

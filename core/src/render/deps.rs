//! Dependency resolution and `pathWhitelist` filtering, as ace.md "Filesystem Setup" says.
//!
//! [`resolve_layers`] turns an image into the ordered list of [`Layer`]s whose rootfs are laid
//! down one after the other: the dependencies depth-first in list order, each dependency's own
//! layers before it, then the image itself. `A -> [B, C], C -> [D]` gives `B, D, C, A`; the
//! diamond `A -> [B, C], B -> [D], C -> [D]` gives `D, B, D, C, A`: an image reached through
//! several paths is applied once per path, each time filtered by the whitelists of *that*
//! path (the Go `acirenderer` can filter a dependency by a sibling's whitelist; we never do).
//!
//! **Matching** (aci.md "Dependency Matching"): a dependency with an `imageID` is the image
//! with that ID, whose name must be the dependency's `imageName` and whose labels must match
//! the dependency's labels; if that ID is not in the store but an image of that name and
//! labels is, the error names both IDs. Without an `imageID`, the newest import with that name
//! whose labels match wins (a label absent from the dependency matches any value; no
//! `version` means the newest). When the dependency gives a `size`, it must equal either the
//! archive size the image was imported from or the size of its canonical (uncompressed) tar:
//! the spec says "the size of the image" without saying whether compressed or not, and the
//! same image can be imported from a gzip, a zstd or a plain tar, so both are accepted.
//!
//! **Errors**: a cycle (`A -> B -> A`, or an image depending on itself) is a
//! [`ErrorKind::DependencyCycle`] naming the chain (`a -> b -> a`) instead of looping forever;
//! a dependency not in the store is [`ErrorKind::MissingDependency`] naming the chain and what
//! was asked; an ID, name, label or size that does not match is
//! [`ErrorKind::DependencyMismatch`]. A graph of shared dependencies can describe
//! exponentially many paths: more than [`MAX_LAYERS`] layers is [`ErrorKind::LimitExceeded`].
//!
//! **Whitelists** (aci.md `pathWhitelist`: absolute paths, an empty list means no filter):
//! a path of a layer is kept iff every non-empty whitelist in the layer's
//! [`Layer::filters`] keeps it ([`keeps`], [`PathFilter`]). A whitelist keeps
//! - the root directory;
//! - each path it lists; an entry ending in `/` names a directory and keeps only a directory;
//!   an entry names one path, never a subtree (the list "must be a complete and absolute
//!   set"), so listing `/etc/` keeps the directory `etc`, not `etc/passwd`;
//! - the ancestors of a listed path, as directories only (they must exist for the listed
//!   path to exist; a symlink or file at an ancestor's place is not kept).
//!
//! Entries are compared after lexical normalization (`//`, `.` and `..` resolved).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::schema::{Dependency, ImageId, ImageIdPrefix, ImageManifest, ImageName, Label};
use crate::store::{ImageInfo, ImageQuery, Store};
use crate::{Error, ErrorKind, Result};

/// The most layers one image may expand to (counting every path through shared
/// dependencies). Guards against exponential blow-up on deep diamonds.
pub const MAX_LAYERS: usize = 1000;

/// One rootfs to lay down, in order, with the whitelists that filter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The image whose rootfs this layer is.
    pub image_id: ImageId,
    /// Its name.
    pub name: String,
    /// Whitelists that filter this layer: its own and those of every image on the path from
    /// the root image down to it (never a sibling's), root first; empty lists are left out,
    /// so an empty vec means no filter.
    pub filters: Vec<Vec<String>>,
    /// Names from the root image down to this layer (inclusive), for messages.
    pub chain: Vec<String>,
}

impl Layer {
    /// The chain as `a -> b -> c`.
    pub fn chain_text(&self) -> String {
        self.chain.join(" -> ")
    }
}

/// One image on the path being walked.
struct Frame {
    image_id: ImageId,
    name: String,
    whitelist: Vec<String>,
    dependencies: Vec<Dependency>,
    next: usize,
}

/// Resolves the layers of `root`: its dependencies depth-first in list order (each
/// dependency's own layers before it), then `root` itself. See the module documentation for
/// matching, errors and filters.
pub async fn resolve_layers(store: &Store, root: &ImageId) -> Result<Vec<Layer>> {
    let mut found: HashMap<String, ImageInfo> = HashMap::new();
    let mut manifests: HashMap<ImageId, ImageManifest> = HashMap::new();
    let mut layers = Vec::new();
    let mut visited = 1usize;

    let manifest = load_manifest(store, &mut manifests, root).await?;
    let mut stack = vec![Frame {
        image_id: root.clone(),
        name: manifest.name.as_str().to_string(),
        whitelist: manifest.path_whitelist.clone(),
        dependencies: manifest.dependencies.clone(),
        next: 0,
    }];

    while let Some(top) = stack.last_mut() {
        if top.next == top.dependencies.len() {
            layers.push(Layer {
                image_id: top.image_id.clone(),
                name: top.name.clone(),
                filters: stack
                    .iter()
                    .filter(|f| !f.whitelist.is_empty())
                    .map(|f| f.whitelist.clone())
                    .collect(),
                chain: stack.iter().map(|f| f.name.clone()).collect(),
            });
            stack.pop();
            continue;
        }
        let dep = top.dependencies[top.next].clone();
        top.next += 1;
        let names: Vec<&str> = stack.iter().map(|f| f.name.as_str()).collect();
        let chain = names.join(" -> ");

        let key = serde_json::to_string(&dep).unwrap_or_default();
        let info = match found.get(&key) {
            Some(info) => info.clone(),
            None => {
                let info = find_dependency(store, &dep, &chain).await?;
                found.insert(key, info.clone());
                info
            }
        };

        if let Some(at) = stack.iter().position(|f| f.image_id == info.image_id) {
            let mut cycle: Vec<&str> = stack[at..].iter().map(|f| f.name.as_str()).collect();
            cycle.push(info.name.as_str());
            let prefix = if at == 0 {
                String::new()
            } else {
                format!(", reached through {}", names[..=at].join(" -> "))
            };
            return Err(Error::new(
                ErrorKind::DependencyCycle,
                format!(
                    "dependency cycle: {}{prefix}; image {} appears twice on that path",
                    cycle.join(" -> "),
                    info.image_id
                ),
            ));
        }

        visited += 1;
        if visited > MAX_LAYERS {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "{} expands to more than {MAX_LAYERS} layers (counting each path through \
                     shared dependencies); stopped at {chain} -> {}",
                    names[0], info.name
                ),
            ));
        }

        let manifest = load_manifest(store, &mut manifests, &info.image_id).await?;
        stack.push(Frame {
            image_id: info.image_id.clone(),
            name: manifest.name.as_str().to_string(),
            whitelist: manifest.path_whitelist.clone(),
            dependencies: manifest.dependencies.clone(),
            next: 0,
        });
    }
    Ok(layers)
}

/// The parsed manifest of `id`, read once per resolution.
async fn load_manifest<'m>(
    store: &Store,
    cache: &'m mut HashMap<ImageId, ImageManifest>,
    id: &ImageId,
) -> Result<&'m ImageManifest> {
    if !cache.contains_key(id) {
        let bytes = store.manifest(id).await?;
        let manifest = ImageManifest::parse(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::CorruptStore,
                format!("the stored manifest of {id} does not parse: {e}"),
            )
        })?;
        cache.insert(id.clone(), manifest);
    }
    Ok(&cache[id])
}

/// `name` with its labels, as a dependency asks for it.
fn describe(dep: &Dependency) -> String {
    let mut text = dep.image_name.as_str().to_string();
    if !dep.labels.is_empty() {
        let labels: Vec<String> = dep
            .labels
            .iter()
            .map(|l| format!("{}={}", l.name.as_str(), l.value))
            .collect();
        text.push_str(&format!(" [{}]", labels.join(", ")));
    }
    text
}

fn labels_text(labels: &[Label]) -> String {
    let labels: Vec<String> = labels.iter().map(Label::to_string).collect();
    format!("[{}]", labels.join(", "))
}

/// Finds the image a dependency names and checks its ID, name, labels and size.
async fn find_dependency(store: &Store, dep: &Dependency, chain: &str) -> Result<ImageInfo> {
    let asked = describe(dep);
    let wanted: Vec<Label> = dep.labels.iter().map(Label::from).collect();
    let by_name = ImageQuery::Name(ImageName::new(dep.image_name.clone(), wanted.clone()));
    let missing = |what: String| {
        Error::new(
            ErrorKind::MissingDependency,
            format!("{chain} depends on {what}, which is not in the store"),
        )
    };
    let mismatch = |what: String| {
        Error::new(
            ErrorKind::DependencyMismatch,
            format!("{chain} depends on {what}"),
        )
    };

    let info = match &dep.image_id {
        Some(id) => match store
            .resolve(&ImageQuery::Id(ImageIdPrefix::from(id.clone())))
            .await
        {
            Ok(info) => {
                if info.name != dep.image_name.as_str() {
                    return Err(mismatch(format!(
                        "{asked} with imageID {id}, but the image with that ID is named {}",
                        info.name
                    )));
                }
                if !wanted
                    .iter()
                    .all(|l| info.label(&l.name) == Some(l.value.as_str()))
                {
                    return Err(mismatch(format!(
                        "{asked} with imageID {id}, but that image has labels {}",
                        labels_text(&info.labels)
                    )));
                }
                info
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return match store.resolve(&by_name).await {
                    Ok(other) => Err(mismatch(format!(
                        "{asked} with imageID {id}, but the store's {} is {}",
                        other.name, other.image_id
                    ))),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        Err(missing(format!("{asked} with imageID {id}")))
                    }
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        },
        None => match store.resolve(&by_name).await {
            Ok(info) => info,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing(asked)),
            Err(e) => return Err(e),
        },
    };

    if let Some(size) = dep.size
        && size != info.archive_size
        && size != info.tar_size
    {
        return Err(mismatch(format!(
            "{asked} of size {size} bytes, but {} is {} bytes as imported and {} bytes as a tar",
            info.image_id, info.archive_size, info.tar_size
        )));
    }
    Ok(info)
}

// ---------------------------------------------------------------------------------------
// Whitelists.

/// Lexically normalized components of a path (no root, `.` dropped, `..` popped).
fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out.iter().collect()
}

/// One compiled whitelist.
#[derive(Debug, Clone, Default)]
struct Whitelist {
    /// Listed paths, with whether the entry named a directory (trailing `/`).
    listed: HashMap<PathBuf, bool>,
    /// Proper ancestors of listed paths.
    ancestors: HashSet<PathBuf>,
}

impl Whitelist {
    fn new(entries: &[String]) -> Whitelist {
        let mut list = Whitelist::default();
        for entry in entries {
            let dir_only = entry.ends_with('/');
            let path = normalize(Path::new(entry));
            let mut parent = path.parent();
            while let Some(p) = parent {
                list.ancestors.insert(p.to_path_buf());
                parent = p.parent();
            }
            let slot = list.listed.entry(path).or_insert(dir_only);
            // `/x` and `/x/` both listed: `/x` keeps any type.
            *slot &= dir_only;
        }
        list
    }

    fn keeps(&self, path: &Path, is_dir: bool) -> bool {
        if path.as_os_str().is_empty() {
            return true;
        }
        if let Some(&dir_only) = self.listed.get(path)
            && (is_dir || !dir_only)
        {
            return true;
        }
        is_dir && self.ancestors.contains(path)
    }
}

/// The whitelists of a layer, compiled for fast lookups (see [`keeps`]).
#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    lists: Vec<Whitelist>,
}

impl PathFilter {
    /// Compiles `filters` (empty whitelists are ignored).
    pub fn new(filters: &[Vec<String>]) -> PathFilter {
        PathFilter {
            lists: filters
                .iter()
                .filter(|l| !l.is_empty())
                .map(|l| Whitelist::new(l))
                .collect(),
        }
    }

    /// Whether `path` (relative to the rootfs) is kept; `is_dir` says whether it is a
    /// directory there.
    pub fn keeps(&self, path: &Path, is_dir: bool) -> bool {
        if self.lists.is_empty() {
            return true;
        }
        let path = normalize(path);
        self.lists.iter().all(|l| l.keeps(&path, is_dir))
    }
}

/// Whether a file at `path` (relative to the rootfs; a leading `/` is ignored) of a layer
/// filtered by `filters` is kept: iff every non-empty whitelist keeps it. A whitelist keeps
/// the root, each path it lists (an entry ending in `/` only as a directory) and, as
/// directories, the ancestors of listed paths. Compile once with `PathFilter` to test many
/// paths.
pub fn keeps(filters: &[Vec<String>], path: &Path, is_dir: bool) -> bool {
    PathFilter::new(filters).keeps(path, is_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wl(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| s.to_string()).collect()
    }

    fn k(filters: &[Vec<String>], path: &str, is_dir: bool) -> bool {
        keeps(filters, Path::new(path), is_dir)
    }

    #[test]
    fn no_filter_keeps_everything() {
        assert!(k(&[], "etc/passwd", false));
        assert!(k(&[vec![]], "etc/passwd", false));
        assert!(k(&[vec![], vec![]], "x", true));
    }

    #[test]
    fn listed_paths_and_ancestors() {
        let f = [wl(&["/etc/passwd", "/usr/bin/sh"])];
        assert!(k(&f, "", true), "root");
        assert!(k(&f, "etc/passwd", false));
        assert!(k(&f, "/etc/passwd", false), "leading slash ignored");
        assert!(k(&f, "./etc//passwd", false), "normalized");
        assert!(k(&f, "etc", true), "ancestor directory");
        assert!(k(&f, "usr", true));
        assert!(k(&f, "usr/bin", true));
        assert!(
            !k(&f, "etc", false),
            "an ancestor is kept only as a directory"
        );
        assert!(!k(&f, "etc/shadow", false));
        assert!(!k(&f, "etc/passwd/x", false), "an entry is not a subtree");
        assert!(!k(&f, "usr/bin/bash", false));
        assert!(!k(&f, "var", true));
        assert!(!k(&f, "etc/passwd-", false));
        assert!(!k(&f, "et", true));
    }

    #[test]
    fn trailing_slash_names_a_directory() {
        let f = [wl(&["/etc/systemd/system/"])];
        assert!(k(&f, "etc/systemd/system", true));
        assert!(!k(&f, "etc/systemd/system", false));
        assert!(!k(&f, "etc/systemd/system/unit", false));
        assert!(k(&f, "etc/systemd", true));
        // Listed with and without the slash: any type.
        let f = [wl(&["/x/", "/x"])];
        assert!(k(&f, "x", false));
        // A plain entry keeps a directory too.
        let f = [wl(&["/data"])];
        assert!(k(&f, "data", true));
        assert!(k(&f, "data", false));
    }

    #[test]
    fn every_non_empty_whitelist_must_keep() {
        let f = [
            wl(&["/etc/passwd", "/etc/group"]),
            vec![],
            wl(&["/etc/passwd"]),
        ];
        assert!(k(&f, "etc/passwd", false));
        assert!(!k(&f, "etc/group", false));
        assert!(k(&f, "etc", true));
        let f = [wl(&["/a/b"]), wl(&["/a/"])];
        assert!(k(&f, "a", true));
        assert!(!k(&f, "a/b", false));
    }

    #[test]
    fn parent_components_are_resolved() {
        let f = [wl(&["/a/../b/c"])];
        assert!(k(&f, "b/c", false));
        assert!(k(&f, "b", true));
        assert!(!k(&f, "a", true));
    }
}

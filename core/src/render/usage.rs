//! What live runs still use: the trees and stacks `rm` and `gc` must leave alone, and
//! the images each stack was built from.

use std::collections::HashSet;
use std::path::Path;

use super::run;
use crate::store::paths::StorePaths;
use crate::{Error, Result};

/// Trees and stacks in use by runs not yet released.
#[derive(Debug, Clone, Default)]
pub struct InUse {
    /// Hex digests of images whose exploded tree a run uses, directly or through a stack.
    pub images: HashSet<String>,
    /// Keys of stacks a run uses.
    pub stacks: HashSet<String>,
    /// Keys of composefs images a run uses.
    pub composefs: HashSet<String>,
}

impl InUse {
    /// Whether image `hex` (its tree, or a stack holding it) is in use.
    pub fn uses_image(&self, hex: &str) -> bool {
        self.images.contains(hex)
    }
}

/// Reads the run records of the store.
pub fn in_use(paths: &StorePaths) -> Result<InUse> {
    let mut used = InUse::default();
    for record in run::list_runs(&paths.runs())? {
        let lower = record.lower.as_path();
        if let Some(hex) = component_under(lower, &paths.trees()) {
            used.images.insert(hex);
        } else if let Some(key) = component_under(lower, &paths.stacks()) {
            used.images.extend(stack_images(paths, &key)?);
            used.stacks.insert(key);
        } else if let Some(key) = component_under(lower, &paths.composefs()) {
            used.images
                .extend(super::composefs::image_layers(paths, &key)?);
            used.composefs.insert(key);
        }
    }
    Ok(used)
}

/// Hex digests of the images a stack was built from (from its `layers.json`).
pub fn stack_images(paths: &StorePaths, key: &str) -> Result<HashSet<String>> {
    layer_images(&paths.stack(key).join("layers.json"))
}

/// Hex digests of the images a `layers.json` listing names (a stack's or a composefs
/// image's); none when the listing is missing.
pub(crate) fn layer_images(listing: &Path) -> Result<HashSet<String>> {
    let bytes = match std::fs::read(listing) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(Error::io(format!("reading {}", listing.display()), e)),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(value["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|layer| layer["imageID"].as_str())
        .filter_map(|id| id.strip_prefix("sha512-"))
        .map(str::to_string)
        .collect())
}

/// Every stack key in the store.
pub fn stack_keys(paths: &StorePaths) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(paths.stacks()) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

/// Hex digests of the images that have an exploded tree.
pub fn tree_images(paths: &StorePaths) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(paths.trees()) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

/// The first path component of `path` below `root`, if `path` is inside `root`.
fn component_under(path: &Path, root: &Path) -> Option<String> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let rest = path.strip_prefix(&root).ok()?;
    rest.components()
        .next()?
        .as_os_str()
        .to_str()
        .map(str::to_string)
}

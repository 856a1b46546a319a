//! Which content objects the images reference, read from their recipes.
//!
//! The recipes are the one record of references: the index keeps no per-object rows
//! (they cost more disk than a new image version usually adds). `gc` and `rm` call
//! [`referenced_objects`] under the exclusive commit lock, when no import can commit, so
//! the list of images and their recipes cannot change under them except by `rm`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::ContentDigest;
use super::index::Index;
use super::paths::StorePaths;
use super::recipe::RecipeReader;
use crate::blocking::blocking_value;
use crate::{Error, ErrorKind, Result};

/// The distinct objects the recipe at `path` references, with their sizes.
pub fn recipe_objects(path: &Path) -> Result<HashMap<ContentDigest, u64>> {
    let file = File::open(path)
        .map_err(|e| Error::io(format!("opening the recipe {}", path.display()), e))?;
    let mut reader = RecipeReader::new(BufReader::new(file))?;
    let mut objects = HashMap::new();
    while let Some(record) = reader.next_record()? {
        if let Some((digest, len)) = record.object() {
            objects.insert(digest, len);
        }
    }
    Ok(objects)
}

/// How to treat an indexed image whose recipe cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingRecipe {
    /// Fail with [`ErrorKind::CorruptStore`]: deleting objects on an incomplete list of
    /// references could destroy content (`gc`, `rm`).
    Fail,
    /// Leave the image out (`fsck`, which reports the image as broken anyway).
    Skip,
}

/// Every object some indexed image references. An image removed while the recipes are
/// read is left out; an image still indexed without a readable recipe is handled as
/// `missing` says.
pub async fn referenced_objects(
    paths: &StorePaths,
    index: &Index,
    missing: MissingRecipe,
) -> Result<HashSet<ContentDigest>> {
    let images = index.list().await?;
    let mut referenced = HashSet::new();
    for record in images {
        let recipe = paths.recipe(&record.image_id);
        let read = blocking_value(move || recipe_objects(&recipe)).await?;
        match read {
            Ok(objects) => referenced.extend(objects.into_keys()),
            Err(_) if index.get(&record.image_id).await?.is_none() => {}
            Err(_) if missing == MissingRecipe::Skip => {}
            Err(err) => {
                return Err(Error::new(
                    ErrorKind::CorruptStore,
                    format!(
                        "cannot read which objects {} uses ({}); run `acikit fsck --repair` first",
                        record.image_id,
                        err.message()
                    ),
                ));
            }
        }
    }
    Ok(referenced)
}

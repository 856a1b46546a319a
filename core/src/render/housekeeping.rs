//! Keeping the render caches in order: what `gc` and `rm` do to exploded trees, stacks,
//! checkout objects and runs (the store's own part is `store::housekeeping`'s; the
//! [`Store`](crate::Store) methods in `crate::facade` run both).

use std::collections::HashSet;

use super::{composefs, reap, tree, usage, verify};
use crate::Result;
use crate::blocking::blocking;
use crate::fs as fsops;
use crate::schema::ImageId;
use crate::store::paths::StorePaths;

/// What `gc` removed from the render caches (part of `crate::facade::GcReport`).
#[derive(Debug, Default)]
pub(crate) struct RenderGc {
    /// Exploded trees and stacks of images no longer in the store, and damaged ones `fsck`
    /// set aside that no live run uses, removed.
    pub renders_removed: u64,
    /// Checkout objects no tree uses any more, removed.
    pub checkouts_removed: u64,
    /// Staging folders of killed renders and dead runs, removed.
    pub staging_removed: u64,
    /// Dead runs cleaned (see [`reap`]).
    pub dead_runs_removed: u64,
    /// The dead runs that could not be cleaned, and why (kept for a later try).
    pub failures: Vec<String>,
}

/// `gc` of the render caches: cleans dead runs, then removes the trees and stacks of the
/// images not in `indexed` (hex IDs) that no live run uses, stale tree stages, the
/// checkout objects no tree uses and the set-aside damaged caches no run uses.
pub(crate) async fn gc(paths: &StorePaths, indexed: HashSet<String>) -> Result<RenderGc> {
    let runs = paths.runs();
    let reaped = blocking(move || reap::reap_dead_runs(&runs)).await?;
    let gone: HashSet<String> = tree_and_stack_images(paths)?
        .into_iter()
        .filter(|hex| !indexed.contains(hex))
        .collect();
    let paths_owned = paths.clone();
    let renders = blocking(move || -> Result<(u64, u64, u64)> {
        let (trees, stacks) = remove_renders_of(&paths_owned, &gone)?;
        let stale =
            tree::remove_stale_stages(&paths_owned) + composefs::remove_stale_builds(&paths_owned);
        let (checkouts, _) = tree::prune_checkouts(&paths_owned)?;
        let damaged = verify::remove_unused_damaged(&paths_owned)?;
        Ok((trees + stacks + damaged, stale, checkouts))
    })
    .await?;
    Ok(RenderGc {
        renders_removed: renders.0,
        checkouts_removed: renders.2,
        staging_removed: reaped.staging + renders.1,
        dead_runs_removed: reaped.runs,
        failures: reaped.failures,
    })
}

/// What live runs use, after cleaning the dead runs (they use nothing), for `rm`.
pub(crate) async fn in_use_by_live_runs(paths: &StorePaths) -> Result<usage::InUse> {
    let runs = paths.runs();
    let _ = blocking(move || reap::reap_dead_runs(&runs)).await;
    usage::in_use(paths)
}

/// The dead runs and the stale staging of runs, for `fsck` (nothing is cleaned).
pub(crate) async fn dead_runs(paths: &StorePaths) -> Result<reap::DeadRuns> {
    let runs = paths.runs();
    blocking(move || reap::find_dead_runs(&runs)).await
}

/// Images that have an exploded tree or are part of a stack.
fn tree_and_stack_images(paths: &StorePaths) -> Result<HashSet<String>> {
    let mut images: HashSet<String> = usage::tree_images(paths).into_iter().collect();
    for key in usage::stack_keys(paths) {
        images.extend(usage::stack_images(paths, &key)?);
    }
    for key in composefs::image_keys(paths) {
        images.extend(composefs::image_layers(paths, &key)?);
    }
    Ok(images)
}

/// Removes the exploded trees of `images` and the stacks and composefs images built from
/// any of them, except what a live run uses. Returns (trees, stacks and composefs images)
/// removed.
pub(crate) fn remove_renders_of(
    paths: &StorePaths,
    images: &HashSet<String>,
) -> Result<(u64, u64)> {
    if images.is_empty() {
        return Ok((0, 0));
    }
    let used = usage::in_use(paths)?;
    let mut trees = 0;
    for hex in usage::tree_images(paths) {
        if images.contains(&hex) && !used.uses_image(&hex) {
            let id = ImageId::parse(&format!("sha512-{hex}"))?;
            tree::remove_tree_of(paths, &id)?;
            trees += 1;
        }
    }
    let mut stacks = 0;
    for key in usage::stack_keys(paths) {
        if used.stacks.contains(&key) {
            continue;
        }
        if usage::stack_images(paths, &key)?
            .iter()
            .any(|hex| images.contains(hex))
        {
            let dir = paths.stack(&key);
            let doomed = paths
                .tmp()
                .join(format!("stack-removed-{key}-{}", std::process::id()));
            if std::fs::rename(&dir, &doomed).is_ok() {
                fsops::remove_tree(&doomed)?;
                stacks += 1;
            }
        }
    }
    for key in composefs::image_keys(paths) {
        if !used.composefs.contains(&key)
            && composefs::image_layers(paths, &key)?
                .iter()
                .any(|hex| images.contains(hex))
            && composefs::remove_image(paths, &key)?
        {
            stacks += 1;
        }
    }
    Ok((trees, stacks))
}

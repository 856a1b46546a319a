//! Rendering images into root filesystems, as ace.md "Filesystem Setup" says.
//!
//! - [`fsops`]: directory-relative file-system primitives that never follow symlinks;
//! - [`tree`]: the exploded tree of one stored image (built on first render, cached),
//!   whose files are hardlinks to shared *checkout objects*;
//! - [`deps`]: dependency resolution (depth-first, list order) and pathWhitelist filtering;
//! - [`stack`]: the flattened rootfs of an image and its dependencies, cached by layers;
//! - [`run`]: a clean per-run copy of a stack (overlay, reflink, hardlink, copy);
//! - [`usage`]: what runs and stacks still use, so `rm` and `gc` never pull it away;
//! - [`verify`]: `fsck` of trees, stacks and checkout objects; damaged ones set aside, rebuilt.

pub mod deps;
pub mod fsops;
pub mod run;
pub mod stack;
pub mod tree;
pub mod usage;
pub mod verify;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use fsops::Privileges;
pub use run::{RunRecord, Strategy};

use crate::schema::ImageId;
use crate::store::facade::join_error;
use crate::{Result, Store};

/// Options of [`Store::render`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// How the run's copy is made (`Auto` picks the best available and reports it).
    pub strategy: Strategy,
    /// Skip device nodes and foreign owners that need root, with a warning, instead of
    /// failing with `needs_privilege`.
    pub skip_unprivileged: bool,
}

/// A rendered run: a clean rootfs at `target`, to be released with [`Store::release`].
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    /// The image rendered.
    pub image_id: ImageId,
    /// The run's rootfs.
    pub target: PathBuf,
    /// The strategy used (what `auto` chose).
    pub strategy: Strategy,
    /// Whether the rootfs must only be read (`hardlink`: it shares inodes with the cache).
    pub read_only: bool,
    /// The layers applied, in order (image IDs; a dependency reached twice appears twice).
    pub layers: Vec<ImageId>,
    /// Whether the flattened rootfs came from the cache.
    pub cached: bool,
    /// What was skipped or fallen back from.
    pub warnings: Vec<String>,
}

impl Store {
    /// Renders `id` with its dependencies and pathWhitelist into `target` (missing or an
    /// empty folder): the flattened rootfs is built once and cached, then each run gets a
    /// clean copy by the strategy asked. A write in one run is never seen by the store,
    /// the cache or another run (`hardlink` runs are read-only and say so).
    pub async fn render(
        &self,
        id: &ImageId,
        target: impl AsRef<Path>,
        options: RenderOptions,
    ) -> Result<Rendered> {
        let mut privs = Privileges::detect();
        privs.skip_unprivileged = options.skip_unprivileged;
        let stack = stack::ensure_stack(self, id, privs).await?;
        let runs = self.paths().runs();
        let lower = stack.path.clone();
        let target = target.as_ref().to_path_buf();
        let handle = tokio::task::spawn_blocking(move || {
            run::create_run(&runs, &lower, &target, options.strategy, &privs)
        })
        .await
        .map_err(join_error)??;
        let mut warnings = stack.warnings;
        warnings.extend(handle.warnings);
        Ok(Rendered {
            image_id: id.clone(),
            target: handle.target,
            strategy: handle.strategy,
            read_only: handle.read_only,
            layers: stack.layers.into_iter().map(|l| l.image_id).collect(),
            cached: stack.reused,
            warnings,
        })
    }

    /// Undoes a run made by [`Store::render`]: unmounts or removes its rootfs.
    pub async fn release(&self, target: impl AsRef<Path>) -> Result<()> {
        let runs = self.paths().runs();
        let target = target.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || run::release_run(&runs, &target))
            .await
            .map_err(join_error)?
    }

    /// The runs made from this store and not yet released.
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        let runs = self.paths().runs();
        tokio::task::spawn_blocking(move || run::list_runs(&runs))
            .await
            .map_err(join_error)?
    }
}

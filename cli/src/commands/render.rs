//! `render` and `release`: clean per-run root filesystems from the store.

use std::path::Path;
use std::process::ExitCode;

use acikit::render::{RenderOptions, Strategy};
use acikit::{Label, Store};

use super::interrupt::Interrupt;
use super::progress;
use super::store::{fail, open, resolve};

/// `--strategy` of `render`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StrategyArg {
    /// The best available: composefs (root), else overlay, else reflink, else copy.
    Auto,
    /// overlayfs over the cached tree (needs root).
    Overlay,
    /// A reflink copy (btrfs, XFS).
    Reflink,
    /// A hardlink farm: fast, read-only (mounted read-only as root; else only with
    /// --unprotected-read-only).
    Hardlink,
    /// A full copy.
    Copy,
    /// An EROFS metadata image over the store's objects: no copy at all, even on the first
    /// render (needs root and Linux 6.12+).
    Composefs,
}

/// The flags of `render` that shape the run.
pub struct RenderFlags {
    /// `--strategy`.
    pub strategy: StrategyArg,
    /// `--skip-unprivileged`.
    pub skip_unprivileged: bool,
    /// `--unprotected-read-only`: a hardlink run without the read-only mount is allowed.
    pub unprotected_read_only: bool,
}

/// `acikit render IMAGE DIR`
pub async fn render(
    dir: &Path,
    image: &str,
    labels: &[Label],
    target: &Path,
    flags: RenderFlags,
    json: bool,
) -> ExitCode {
    let store: Store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let id = match resolve(&store, image, labels).await {
        Ok(id) => id,
        Err(err) => return fail(&err),
    };
    let strategy = match flags.strategy {
        StrategyArg::Auto => Strategy::Auto,
        StrategyArg::Overlay => Strategy::Overlay,
        StrategyArg::Reflink => Strategy::Reflink,
        StrategyArg::Hardlink => Strategy::Hardlink,
        StrategyArg::Copy => Strategy::Copy,
        StrategyArg::Composefs => Strategy::Composefs,
    };
    // Ctrl-C (SIGINT) cancels the render, which then leaves nothing behind (no half-made
    // run). The handler is in place before the render starts.
    let (observer, bar) = progress::render_observer();
    let interrupt = Interrupt::cancels(&observer.cancel, "render");
    let result = store
        .render(
            &id,
            target,
            RenderOptions::default()
                .strategy(strategy)
                .skip_unprivileged(flags.skip_unprivileged)
                .allow_unprotected_hardlink(flags.unprotected_read_only),
            observer,
        )
        .await;
    drop(interrupt);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(rendered) => {
            for warning in &rendered.warnings {
                errln!("warning: {warning}");
            }
            if json {
                crate::report::print_json(&rendered);
            } else {
                let note = match (rendered.read_only, rendered.protected) {
                    (true, true) => " (mounted read-only)",
                    (true, false) => " (read-only, NOT protected: do not write into it)",
                    _ => "",
                };
                outln!(
                    "{}: {} rendered with {}{note}, {} layers{}",
                    rendered.target.display(),
                    rendered.image_id,
                    rendered.strategy.as_str(),
                    rendered.layers.len(),
                    if rendered.cached {
                        ", from the cache"
                    } else {
                        ""
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// `acikit release DIR`
pub async fn release(dir: &Path, target: &Path) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match store.release(target).await {
        Ok(()) => {
            outln!("released {}", target.display());
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

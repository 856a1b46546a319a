//! `render` and `release`: clean per-run root filesystems from the store.

use std::path::Path;
use std::process::ExitCode;

use acikit::Store;
use acikit::render::{RenderOptions, Strategy};

use super::store::{fail, open, resolve};

/// `--strategy` of `render`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StrategyArg {
    /// The best available: overlay (root), else reflink, else copy.
    Auto,
    /// overlayfs over the cached tree (needs root).
    Overlay,
    /// A reflink copy (btrfs, XFS).
    Reflink,
    /// A hardlink farm: fast, for read-only use only.
    Hardlink,
    /// A full copy.
    Copy,
}

/// `acikit render IMAGE DIR`
pub async fn render(
    dir: &Path,
    image: &str,
    labels: &[(String, String)],
    target: &Path,
    strategy: StrategyArg,
    skip_unprivileged: bool,
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
    let strategy = match strategy {
        StrategyArg::Auto => Strategy::Auto,
        StrategyArg::Overlay => Strategy::Overlay,
        StrategyArg::Reflink => Strategy::Reflink,
        StrategyArg::Hardlink => Strategy::Hardlink,
        StrategyArg::Copy => Strategy::Copy,
    };
    match store
        .render(
            &id,
            target,
            RenderOptions {
                strategy,
                skip_unprivileged,
            },
        )
        .await
    {
        Ok(rendered) => {
            for warning in &rendered.warnings {
                errln!("warning: {warning}");
            }
            if json {
                crate::report::print_json(&rendered);
            } else {
                let note = if rendered.read_only {
                    " (read-only: do not write into it)"
                } else {
                    ""
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

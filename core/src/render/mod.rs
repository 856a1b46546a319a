//! Rendering images into root filesystems, as ace.md "Filesystem Setup" says.
//!
//! - `tree`: the exploded tree of one stored image (built on first render, cached),
//!   whose files are hardlinks to shared *checkout objects*;
//! - `deps`: dependency resolution (depth-first, list order) and pathWhitelist filtering;
//! - `stack`: the flattened rootfs of an image and its dependencies, cached by layers;
//! - `run`: a clean per-run copy of a stack (overlay, reflink, hardlink, copy, composefs);
//! - `composefs`: EROFS metadata images over the object folder (no copy at all);
//! - `protect`: the read-only mount over a hardlink run, so it cannot write to the cache;
//! - `process`: a run's creator (pid and start time), to tell whether it still runs;
//! - `reap`: dead runs (killed creators, removed targets), found and cleaned;
//! - `housekeeping`: what `gc` and `rm` do to trees, stacks, checkouts and runs;
//! - `usage`: what runs and stacks still use, so `rm` and `gc` never pull it away;
//! - `read_only`: rendering from a read-only store (cached trees, or built without caching
//!   straight into the run; run records outside the store);
//! - `verify`: `fsck` of trees, stacks and checkout objects; damaged ones set aside, rebuilt.

pub(crate) mod composefs;
pub(crate) mod deps;
pub(crate) mod housekeeping;
mod observe;
pub(crate) mod process;
pub(crate) mod protect;
pub(crate) mod read_only;
pub(crate) mod reap;
pub(crate) mod run;
pub(crate) mod stack;
pub(crate) mod tree;
pub(crate) mod usage;
pub(crate) mod verify;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub(crate) use crate::fs::Privileges;
pub use process::ProcessIdentity;
pub use read_only::outside_runs_dir;
use run::RunOptions;
pub use run::{RunRecord, Strategy};
pub use verify::RenderCacheReport;

use crate::blocking::blocking;
use crate::progress::Observer;
use crate::schema::ImageId;
use crate::store::paths::StorePaths;
use crate::{Error, ErrorKind, Result, Store};

/// Options of [`Store::render`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RenderOptions {
    /// How the run's copy is made (`Auto` picks the best available and reports it).
    pub strategy: Strategy,
    /// Skip device nodes and foreign owners that need root, with a warning, instead of
    /// failing with `needs_privilege`.
    pub skip_unprivileged: bool,
    /// Allow a `hardlink` run that cannot be protected by a read-only mount (without
    /// `CAP_SYS_ADMIN`, or when the mount fails): the caller promises to only read it, as a
    /// write there would change the store's cache and every later render. Without it such a
    /// run is refused (`needs_privilege` or `unsupported`).
    pub allow_unprotected_hardlink: bool,
}

impl RenderOptions {
    /// Sets [`strategy`](Self::strategy).
    pub fn strategy(mut self, strategy: Strategy) -> RenderOptions {
        self.strategy = strategy;
        self
    }

    /// Sets [`skip_unprivileged`](Self::skip_unprivileged).
    pub fn skip_unprivileged(mut self, skip: bool) -> RenderOptions {
        self.skip_unprivileged = skip;
        self
    }

    /// Sets [`allow_unprotected_hardlink`](Self::allow_unprotected_hardlink).
    pub fn allow_unprotected_hardlink(mut self, allow: bool) -> RenderOptions {
        self.allow_unprotected_hardlink = allow;
        self
    }
}

/// A rendered run: a clean rootfs at `target`, to be released with [`Store::release`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Rendered {
    /// The image rendered.
    pub image_id: ImageId,
    /// The run's rootfs.
    pub target: PathBuf,
    /// The strategy used (what `auto` chose).
    pub strategy: Strategy,
    /// Whether the rootfs must only be read (`hardlink`: it shares inodes with the cache).
    pub read_only: bool,
    /// Whether a read-only mount enforces that (`hardlink` as root): writes fail with
    /// `EROFS`. A read-only run that is not protected must be left alone by the caller.
    pub protected: bool,
    /// The layers applied, in order (image IDs; a dependency reached twice appears twice).
    pub layers: Vec<ImageId>,
    /// Whether the flattened rootfs came from the cache.
    pub cached: bool,
    /// What was skipped or fallen back from.
    pub warnings: Vec<String>,
}

impl Rendered {
    /// The run `handle` made of `id`'s `stack`; its warnings are `warnings`, then the
    /// stack's, then the run's.
    pub(crate) fn of_run(
        id: &ImageId,
        stack: stack::StackBuilt,
        handle: run::RunHandle,
        cached: bool,
        mut warnings: Vec<String>,
    ) -> Rendered {
        warnings.extend(stack.warnings);
        warnings.extend(handle.warnings);
        Rendered {
            image_id: id.clone(),
            target: handle.target,
            strategy: handle.strategy,
            read_only: handle.read_only,
            protected: handle.protected,
            layers: stack.layers.into_iter().map(|l| l.image_id).collect(),
            cached,
            warnings,
        }
    }
}

impl Store {
    /// Renders `id` with its dependencies and pathWhitelist into `target` (missing or an
    /// empty folder): the flattened rootfs is built once and cached, then each run gets a
    /// clean copy by the strategy asked. A write in one run is never seen by the store,
    /// the cache or another run: `hardlink` runs are mounted read-only, and refused where
    /// they cannot be unless [`RenderOptions::allow_unprotected_hardlink`].
    ///
    /// A read-only store is not written: a tree or stack it has is used as is, any other
    /// is built without caching straight into the run (by copy), and the run is recorded
    /// outside the store (see `read_only`).
    ///
    /// Progress goes to `observer` in two phases: [`Phase::Checkout`](crate::progress::Phase)
    /// while the cached tree or stack is built (first render only), then
    /// [`Phase::Render`](crate::progress::Phase) while the run is made; both count entries
    /// of a total known beforehand. Cancelled (`observer.cancel`), it stops at the next
    /// entry with [`ErrorKind::Cancelled`] and leaves nothing: the target as it was, no run
    /// record, no mount, no partial tree or stack (one completed before the cancellation
    /// stays cached).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-render");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{Observer, RenderOptions, Strategy};
    ///
    /// // `Copy` works everywhere, unprivileged; `Auto` picks the fastest available.
    /// let mut options = RenderOptions::default();
    /// options.strategy = Strategy::Copy;
    /// let target = dir.join("rootfs");
    /// let rendered = store.render(&id, &target, options, Observer::default()).await?;
    /// assert_eq!(rendered.strategy, Strategy::Copy);
    /// assert_eq!(rendered.layers, [id.clone()]);
    /// assert_eq!(std::fs::read(target.join("etc/hello")).unwrap(), b"hello\n");
    /// store.release(&target).await?;
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn render(
        &self,
        id: &ImageId,
        target: impl AsRef<Path>,
        options: RenderOptions,
        observer: Observer,
    ) -> impl Future<Output = Result<Rendered>> + Send + 'static {
        let store = self.clone();
        let id = id.clone();
        let target = target.as_ref().to_path_buf();
        async move { store.render_owned(id, target, options, observer).await }
    }

    /// [`Store::render`], owning its inputs.
    async fn render_owned(
        self,
        id: ImageId,
        target: PathBuf,
        options: RenderOptions,
        observer: Observer,
    ) -> Result<Rendered> {
        observer.check()?;
        let id = &id;
        if options.strategy == Strategy::Hardlink && !options.allow_unprotected_hardlink {
            run::refuse_unprotectable_hardlink()?;
        }
        let mut privs = Privileges::detect();
        privs.skip_unprivileged = options.skip_unprivileged;
        let run_options = RunOptions {
            strategy: options.strategy,
            allow_unprotected_hardlink: options.allow_unprotected_hardlink,
        };
        if self.is_read_only() {
            if options.strategy == Strategy::Composefs {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "cannot render {id} by composefs: the store at {} is read-only, and a \
                         composefs run mounts its metadata image from the store's cache",
                        self.dir().display()
                    ),
                ));
            }
            return read_only::render(&self, id, &target, options, privs, observer).await;
        }
        let mut warnings = Vec::new();
        if matches!(options.strategy, Strategy::Composefs | Strategy::Auto) {
            match composefs::render(&self, id, &target, privs, &observer).await {
                Ok(rendered) => return Ok(rendered),
                Err(e)
                    if options.strategy == Strategy::Auto
                        && matches!(
                            e.kind(),
                            ErrorKind::Unsupported | ErrorKind::NeedsPrivilege
                        ) =>
                {
                    // Quietly for an unprivileged process, which cannot be expected to mount.
                    if e.kind() != ErrorKind::NeedsPrivilege {
                        warnings.push(format!("composefs not used: {}", e.message()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let paths = StorePaths::new(self.dir());
        let stack = stack::ensure_stack_observed(&self, paths, id, privs, &observer).await?;
        let runs = self.paths().runs();
        let lower = stack.path.clone();
        let handle = blocking(move || {
            run::create_run_observed(&runs, &lower, &target, &run_options, &privs, &observer)
        })
        .await?;
        let cached = stack.reused;
        Ok(Rendered::of_run(id, stack, handle, cached, warnings))
    }

    /// Undoes a run made by [`Store::render`]: unmounts or removes its rootfs. The run's
    /// record is looked for in the store (`runs/`) and where runs made while the store was
    /// read-only are recorded ([`outside_runs_dir`]), the latter first on a read-only store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-release");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{Observer, RenderOptions, Strategy};
    ///
    /// let mut options = RenderOptions::default();
    /// options.strategy = Strategy::Copy;
    /// let target = dir.join("rootfs");
    /// store.render(&id, &target, options, Observer::default()).await?;
    /// assert_eq!(store.runs().await?.len(), 1);
    ///
    /// store.release(&target).await?;
    /// assert!(!target.join("etc/hello").exists());
    /// assert!(store.runs().await?.is_empty());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn release(
        &self,
        target: impl AsRef<Path>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (first, second) = self.runs_dirs();
        let target = target.as_ref().to_path_buf();
        blocking(move || match run::release_run(&first, &target) {
            Err(err) if err.kind() == ErrorKind::NotFound => {
                match run::release_run(&second, &target) {
                    Err(again) if again.kind() == ErrorKind::NotFound => Err(err),
                    other => other,
                }
            }
            other => other,
        })
    }

    /// The runs made from this store and not yet released (those recorded in the store,
    /// then those made while it was read-only, or the other way round on a read-only store).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-runs");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{Observer, RenderOptions, Strategy};
    ///
    /// assert!(store.runs().await?.is_empty());
    /// let mut options = RenderOptions::default();
    /// options.strategy = Strategy::Copy;
    /// let target = dir.join("rootfs");
    /// store.render(&id, &target, options, Observer::default()).await?;
    /// let runs = store.runs().await?;
    /// assert_eq!(runs.len(), 1);
    /// assert_eq!(runs[0].strategy, Strategy::Copy);
    /// assert_eq!(runs[0].pid, std::process::id());
    /// store.release(&target).await?;
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn runs(&self) -> impl Future<Output = Result<Vec<RunRecord>>> + Send + 'static {
        let (first, second) = self.runs_dirs();
        blocking(move || {
            let mut runs = run::list_runs(&first)?;
            runs.extend(run::list_runs(&second)?);
            Ok(runs)
        })
    }

    /// The folders run records are in, the one new runs go to first.
    fn runs_dirs(&self) -> (PathBuf, PathBuf) {
        let own = self.paths().runs();
        let outside = self.outside_runs().to_path_buf();
        if self.is_read_only() {
            (outside, own)
        } else {
            (own, outside)
        }
    }
}

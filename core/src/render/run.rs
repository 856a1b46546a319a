//! A clean per-run copy of a rendered root filesystem.
//!
//! The spec wants every execution of an app to start from a clean copy of its rendered
//! filesystem (ace.md, "Filesystem Setup"). [`create_run`] makes one from a read-only
//! flattened tree (the *lower* tree: a cached exploded tree or rendered stack) in a target
//! folder, by one of these [`Strategy`]s:
//!
//! | strategy | cost | needs | writes go to |
//! | --- | --- | --- | --- |
//! | `overlay` | one `mount(2)`, no data | root (`CAP_SYS_ADMIN`), overlayfs | `STORE/runs/<id>/upper` |
//! | `reflink` | one `FICLONE` per file, shared extents | lower and target on one btrfs / XFS (`reflink=1`) | the target (copy on write) |
//! | `hardlink` | one `link(2)` per file, symlink or device; a `mkdir(2)` per folder; a read-only bind mount | lower and target on one file system; root (`CAP_SYS_ADMIN`) for the mount | nowhere: `EROFS` (unprotected: **the lower tree**, so refused unless allowed) |
//! | `copy` | every byte | nothing | the target |
//!
//! `auto` tries overlay, then reflink (probed with one `FICLONE`), then copy, and the
//! [`RunHandle`] says which it chose. Whatever the strategy, the lower tree is never
//! written, and a write inside one run is never visible in the lower tree or another run.
//! `hardlink` shares inodes with the lower tree, so it is mounted read-only
//! ([`super::protect`], [`RunHandle::protected`]), and refused where it cannot be unless
//! [`RunOptions::allow_unprotected_hardlink`] says the caller will only read it.
//!
//! Every run has a record on disk, `STORE/runs/<sha256 of the canonical target>/record.json`
//! (plus `upper/` and `work/` for an overlay), written before anything is mounted or copied,
//! so that [`release_run`] in another process, even after the creating process was killed,
//! finds what to unmount and remove. A run folder is locked (`flock` on its `lock` file) while
//! a run is created or released. The record names its creator (pid and start time), so runs
//! whose creator died before finishing are found and cleaned ([`super::reap`]).
//!
//! The target is a folder that does not exist (it is created, with its missing parents) or
//! is empty; [`release_run`] removes it in both cases. A copy (reflink, hardlink, copy) is
//! made in a hidden sibling of the target, `.NAME.acikit-run-KEY`, and renamed over the
//! empty target when complete, so the target is never seen half copied.
//!
//! Overlay runs are mounted `volatile` where the kernel has it (Linux 5.10+): an upper folder
//! is thrown away at release and never mounted again, so nothing in it needs syncing (an
//! `fsync` inside a run returns at once, and unmounting does not flush the host file
//! system). The lower tree must not change while an overlay run uses it (overlayfs leaves
//! that undefined).

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::observe::Meter;
use super::process::ProcessIdentity;
use super::protect;
use crate::error::{Error, ErrorKind, Result};
use crate::fs::{self as fsops, CopyMode, CopyStats, Privileges};
use crate::progress::{Observer, Phase};

/// How [`create_run`] makes the per-run copy of the lower tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// The best available here: `overlay`, else `reflink`, else `copy` (never `hardlink`,
    /// which is read-only). The handle reports the choice.
    #[default]
    Auto,
    /// An overlayfs mount on the target, the lower tree as its lower layer and a fresh
    /// `upper/` and `work/` per run under the runs folder: nearly free. Needs root
    /// (`CAP_SYS_ADMIN`) and a kernel with overlayfs.
    Overlay,
    /// A copy whose regular files are clones (`FICLONE`) sharing extents with the lower tree:
    /// only when the lower tree and the target are on one reflink-capable file system
    /// (btrfs, XFS with `reflink=1`).
    Reflink,
    /// A hardlink farm: directories (and FIFOs) are made, regular files, symlinks and device
    /// nodes are hardlinks to the lower tree's. Fast, but **read-only**: a node shares its
    /// inode with the lower tree, so writing to a file (or changing the owner, mode, times or
    /// xattrs of any linked node) would change the lower tree and every other run; the run is
    /// therefore mounted read-only (root), or refused unless the caller allows it unprotected.
    /// A symlink's target and a device's numbers cannot be changed in place, so sharing them
    /// exposes nothing a read-only run could not see anyway; FIFOs are not shared (one FIFO
    /// inode is one pipe: runs could talk through it). [`RunHandle::read_only`] is `true`.
    Hardlink,
    /// A full copy: always available.
    Copy,
    /// composefs: an EROFS image of the rootfs's metadata (cached per image or stack, no
    /// contents) and the store's object folder as the data-only lower layer of an overlay,
    /// with a fresh `upper/` and `work/` per run as `overlay`: no copy of any file, even on
    /// the first render. Needs root (`CAP_SYS_ADMIN`) and Linux 6.12+ (file-backed EROFS,
    /// overlayfs data-only layers); made by `Store::render` only (see `render::composefs`).
    Composefs,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 6] = [
        Strategy::Auto,
        Strategy::Overlay,
        Strategy::Reflink,
        Strategy::Hardlink,
        Strategy::Copy,
        Strategy::Composefs,
    ];

    /// The name of the strategy (`"auto"`, `"overlay"`, ...), as [`FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Overlay => "overlay",
            Strategy::Reflink => "reflink",
            Strategy::Hardlink => "hardlink",
            Strategy::Copy => "copy",
            Strategy::Composefs => "composefs",
        }
    }

    /// Whether a run made this way must only be read (`hardlink`).
    pub fn is_read_only(self) -> bool {
        self == Strategy::Hardlink
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Strategy> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "unknown render strategy {s:?} (expected auto, overlay, reflink, hardlink, copy or composefs)"
                    ),
                )
            })
    }
}

/// A run made by [`create_run`]; give its target to [`release_run`] to undo it.
#[derive(Debug, Clone)]
pub struct RunHandle {
    /// The run's root filesystem (canonical path).
    pub target: PathBuf,
    /// The strategy used (never [`Strategy::Auto`]: what `auto` chose).
    pub strategy: Strategy,
    /// `true` for [`Strategy::Hardlink`]: the run shares inodes with the lower tree, so
    /// writing to a file would change the lower tree and every other run.
    pub read_only: bool,
    /// A `hardlink` run under a read-only bind mount: writes fail with `EROFS`. `false` for
    /// other strategies and for a hardlink run allowed unprotected.
    pub protected: bool,
    /// The run's folder under the runs folder (record, and `upper/` + `work/` for overlay).
    pub run_dir: PathBuf,
    /// What the copy did (`None` for overlay).
    pub stats: Option<CopyStats>,
    /// Things skipped or fallen back from (e.g. why `auto` did not use overlay).
    pub warnings: Vec<String>,
}

/// The record of a run on disk (`record.json` in its run folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// The run's root filesystem (canonical path).
    pub target: PathBuf,
    /// The strategy used (for a run still being created: the one being tried).
    pub strategy: Strategy,
    /// The lower tree it was made from (canonical path).
    pub lower: PathBuf,
    /// When the run was created, in Unix milliseconds.
    pub created_ms: u64,
    /// Whether the run must only be read (`hardlink`).
    pub read_only: bool,
    /// The process that created it.
    pub pid: u32,
    /// `false` while the run is being created (or if its creator died before finishing):
    /// such a run can still be released.
    pub complete: bool,
    /// When the creating process started (clock ticks since boot, `/proc/PID/stat`), so a
    /// later process with the same pid is not taken for it; `None` in records written
    /// before this was kept.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// The boot the creating process ran in (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    pub boot_id: Option<String>,
    /// A `hardlink` run protected by a read-only bind mount over its target (for a run
    /// still being created: one is, or is about to be, mounted). Release unmounts it first.
    #[serde(default)]
    pub protected: bool,
    /// The target was an empty folder given by the caller (else the run made it). Release
    /// removes it either way; cleaning a dead run leaves such a folder in place, empty.
    #[serde(default)]
    pub target_existed: bool,
    /// The identity of the root folder of the run's copy (reflink, hardlink, copy: its
    /// inode and birth time, see `dir_identity`), written before the copy is moved over
    /// the target: a dead run's target is removed only when it is this copy or an empty
    /// folder, never files someone else put there.
    #[serde(default)]
    pub copy_identity: Option<String>,
    /// The run's folder (not stored: where the record was read from).
    #[serde(skip)]
    pub run_dir: PathBuf,
}

impl RunRecord {
    /// The process that created the run.
    pub fn creator(&self) -> ProcessIdentity {
        ProcessIdentity {
            pid: self.pid,
            start_ticks: self.start_ticks,
            boot_id: self.boot_id.clone(),
        }
    }
}

/// What [`create_run_with`] is asked to make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// How the copy is made.
    pub strategy: Strategy,
    /// Allow a `hardlink` run that cannot be protected by a read-only mount (no
    /// `CAP_SYS_ADMIN`, or the mount failed): the caller promises to only read it, since a
    /// write there changes the store's cache. Without it such a run is refused.
    pub allow_unprotected_hardlink: bool,
}

pub(super) const RECORD: &str = "record.json";
pub(super) const LOCK: &str = "lock";
pub(super) const UPPER: &str = "upper";
pub(super) const WORK: &str = "work";
pub(super) const STAGING_PREFIX: &str = ".tmp-";

/// Makes a clean per-run copy of `lower` (a read-only rendered tree) in `target` by
/// `strategy`, recorded under `runs_dir` (`STORE/runs`).
///
/// `target` must not exist (it is made, with missing parents) or be an empty folder; it must
/// not be inside `lower`. Errors: [`ErrorKind::InvalidArgument`] for a non-empty target or a
/// target that already has a run, [`ErrorKind::NotFound`] for a missing lower tree,
/// [`ErrorKind::NeedsPrivilege`] for `overlay` without `CAP_SYS_ADMIN`,
/// [`ErrorKind::Unsupported`] for a strategy this kernel or these file systems cannot do.
/// On error nothing is left behind (a target that existed is left empty).
///
/// A `hardlink` run is protected by a read-only mount, and refused where it cannot be
/// ([`create_run_with`] can allow it unprotected).
pub fn create_run(
    runs_dir: &Path,
    lower: &Path,
    target: &Path,
    strategy: Strategy,
    privs: &Privileges,
) -> Result<RunHandle> {
    let options = RunOptions {
        strategy,
        allow_unprotected_hardlink: false,
    };
    create_run_with(runs_dir, lower, target, &options, privs)
}

/// [`create_run`] with every option. A `hardlink` run gets a read-only bind mount over its
/// target once the farm is made; where that is impossible (no `CAP_SYS_ADMIN`: refused
/// before any work; or the mount fails) it is [`ErrorKind::NeedsPrivilege`] or
/// [`ErrorKind::Unsupported`] unless `options.allow_unprotected_hardlink`, which makes it
/// unprotected with a warning. Dead runs found under `runs_dir` are cleaned first
/// (`super::reap`).
pub fn create_run_with(
    runs_dir: &Path,
    lower: &Path,
    target: &Path,
    options: &RunOptions,
    privs: &Privileges,
) -> Result<RunHandle> {
    create_run_observed(
        runs_dir,
        lower,
        target,
        options,
        privs,
        &Observer::default(),
    )
}

/// [`create_run_with`] reporting [`Phase::Render`] to `observer`: entries of the lower tree
/// copied (linked, cloned) of their number, or one event once an overlay is mounted. Once
/// `observer` is cancelled it stops at the next entry with [`ErrorKind::Cancelled`] and,
/// as on any error, undoes what was made: no record, no mount, the target as it was.
pub(crate) fn create_run_observed(
    runs_dir: &Path,
    lower: &Path,
    target: &Path,
    options: &RunOptions,
    privs: &Privileges,
    observer: &Observer,
) -> Result<RunHandle> {
    observer.check()?;
    let strategy = options.strategy;
    if strategy == Strategy::Hardlink && !options.allow_unprotected_hardlink {
        refuse_unprotectable_hardlink()?;
    }
    let lower = std::fs::canonicalize(lower)
        .map_err(|e| Error::io(format!("lower tree {}", lower.display()), e))?;
    let lower_meta = std::fs::metadata(&lower)
        .map_err(|e| Error::io(format!("lower tree {}", lower.display()), e))?;
    if !lower_meta.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the lower tree {} is not a directory", lower.display()),
        ));
    }
    utf8(&lower, "lower tree")?;
    let (target, existed) = resolve_new_target(target)?;
    utf8(&target, "target")?;
    if target.starts_with(&lower) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the target {} is inside the lower tree {}",
                target.display(),
                lower.display()
            ),
        ));
    }
    std::fs::create_dir_all(runs_dir)
        .map_err(|e| Error::io(format!("cannot create {}", runs_dir.display()), e))?;
    let runs_dir = std::fs::canonicalize(runs_dir)
        .map_err(|e| Error::io(format!("runs folder {}", runs_dir.display()), e))?;
    utf8(&runs_dir, "runs folder")?;
    if runs_dir.starts_with(&lower) || runs_dir.starts_with(&target) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the runs folder {} is inside the lower tree or the target",
                runs_dir.display()
            ),
        ));
    }
    // Best effort: dead runs and staging folders of killed creates (what cannot be cleaned
    // now is left for gc).
    let _ = super::reap::reap_dead_runs(&runs_dir);

    // Publish the record before touching the target, so that a killed process's run can be
    // found and undone.
    let first = match strategy {
        Strategy::Auto => Strategy::Overlay,
        s => s,
    };
    let creator = ProcessIdentity::current();
    let mut record = RunRecord {
        target: target.clone(),
        strategy: first,
        lower: lower.clone(),
        created_ms: now_ms(),
        read_only: first.is_read_only(),
        pid: creator.pid,
        complete: false,
        start_ticks: creator.start_ticks,
        boot_id: creator.boot_id,
        protected: false,
        target_existed: existed,
        copy_identity: None,
        run_dir: runs_dir.join(target_key(&target)),
    };
    let lock = publish_run_dir(&runs_dir, &record)?;
    if !existed && let Err(e) = make_target_dir(&target) {
        // Someone else made it meanwhile: not ours to remove.
        let _ = remove_run_dir(&record.run_dir);
        return Err(e);
    }

    let mut warnings = Vec::new();
    let made = make_run(&mut record, options, privs, &mut warnings, observer);
    match made {
        Ok(stats) => {
            record.complete = true;
            if let Err(e) = write_record(&record.run_dir, &record, false) {
                let _ = undo(&record, existed);
                let _ = remove_run_dir(&record.run_dir);
                return Err(e);
            }
            drop(lock);
            Ok(RunHandle {
                target,
                strategy: record.strategy,
                read_only: record.read_only,
                protected: record.protected,
                run_dir: record.run_dir,
                stats,
                warnings,
            })
        }
        Err(e) => {
            // Undo what was made; keep the record if that fails, so release can retry.
            if undo(&record, existed).is_ok() {
                let _ = remove_run_dir(&record.run_dir);
            }
            drop(lock);
            Err(e)
        }
    }
}

/// Undoes the run at `target`: unmounts an overlay, removes the copy, the target folder,
/// the overlay's upper and work folders and the run's record. Works from any process (the
/// creator may have died). [`ErrorKind::NotFound`] if `target` has no run under `runs_dir`.
pub fn release_run(runs_dir: &Path, target: &Path) -> Result<()> {
    let runs = std::fs::canonicalize(runs_dir).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        Error::new(
            kind,
            format!(
                "no run at {}: {}: {e}",
                target.display(),
                runs_dir.display()
            ),
        )
    })?;
    let canonical = resolve_existing_target(target)?;
    let run_dir = runs.join(target_key(&canonical));
    let not_found = || {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no run at {} (no record under {})",
                target.display(),
                runs.display()
            ),
        )
    };
    let Some(lock) = lock_run_dir(&run_dir)? else {
        return Err(not_found());
    };
    match read_record(&run_dir) {
        Ok(Some(record)) => {
            // Pre-existing targets are removed on release too (see the module docs).
            undo(&record, false)?;
        }
        // An earlier release removed the record and was interrupted: only folders are left.
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    remove_run_dir(&run_dir)?;
    drop(lock);
    Ok(())
}

/// Undoes the run at `target` made by this process that must not stay (its render failed
/// after the run was made): as [`release_run`], but a target that was an empty folder
/// before the run is left in place, empty, as a failed [`create_run`] leaves it.
pub(super) fn abandon_run(runs_dir: &Path, target: &Path) -> Result<()> {
    let run_dir = run_dir_for(runs_dir, target);
    let Some(lock) = lock_run_dir(&run_dir)? else {
        return Ok(());
    };
    if let Some(record) = read_record(&run_dir)? {
        undo(&record, record.target_existed)?;
    }
    remove_run_dir(&run_dir)?;
    drop(lock);
    Ok(())
}

/// The run folder `create_run` uses for `target` (which must be canonical).
fn run_dir_for(runs_dir: &Path, target: &Path) -> PathBuf {
    runs_dir.join(target_key(target))
}

/// The runs recorded under `runs_dir`, oldest first (including runs whose creator died
/// before finishing: [`RunRecord::complete`] is `false`).
pub fn list_runs(runs_dir: &Path) -> Result<Vec<RunRecord>> {
    let entries = match std::fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot read {}", runs_dir.display()), e)),
    };
    let mut records = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::io(format!("cannot read {}", runs_dir.display()), e))?;
        let name = entry.file_name();
        if !is_key(name.as_bytes()) {
            continue;
        }
        if let Some(record) = read_record(&entry.path())? {
            records.push(record);
        }
    }
    records.sort_by(|a, b| (a.created_ms, &a.target).cmp(&(b.created_ms, &b.target)));
    Ok(records)
}

// ---------------------------------------------------------------------------------------------
// Making a run

/// Makes the run as `strategy` says, updating `record` with what is tried; returns the copy
/// statistics (`None` for overlay).
fn make_run(
    record: &mut RunRecord,
    options: &RunOptions,
    privs: &Privileges,
    warnings: &mut Vec<String>,
    observer: &Observer,
) -> Result<Option<CopyStats>> {
    let strategy = options.strategy;
    let target = record.target.clone();
    let lower = record.lower.clone();
    // An overlay is one mount: one event, then a checkpoint (a cancelled run is unmounted).
    let mounted = || {
        Meter::new(observer, Phase::Render, 1).finish();
        observer.check().map(|()| None)
    };
    let chosen = match strategy {
        Strategy::Overlay => {
            mount_overlay(&lower, &record.run_dir, &target)?;
            return mounted();
        }
        Strategy::Composefs => {
            super::composefs::mount_run(&lower, &record.run_dir, &target)?;
            return mounted();
        }
        Strategy::Auto => match mount_overlay(&lower, &record.run_dir, &target) {
            Ok(()) => return mounted(),
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::NeedsPrivilege) => {
                // Quietly for an unprivileged process, which cannot be expected to mount.
                if privs.can_mknod {
                    warnings.push(format!("overlay not used: {}", e.message()));
                }
                remove_overlay_dirs(&record.run_dir)?;
                match probe_reflink(&lower, &target)? {
                    Probe::Works => Strategy::Reflink,
                    Probe::Fails(_) | Probe::NoFile => Strategy::Copy,
                }
            }
            Err(e) => return Err(e),
        },
        Strategy::Reflink => {
            if let Probe::Fails(why) = probe_reflink(&lower, &target)? {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "cannot reflink from {} to {} ({why}): reflinks need the lower tree and \
                         the target on one btrfs or XFS (reflink=1) file system",
                        lower.display(),
                        target.display()
                    ),
                ));
            }
            Strategy::Reflink
        }
        Strategy::Hardlink => {
            if dev_of(&lower)? != dev_of(&target)? {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "cannot hardlink from {} to {}: they are on different file systems",
                        lower.display(),
                        target.display()
                    ),
                ));
            }
            Strategy::Hardlink
        }
        Strategy::Copy => Strategy::Copy,
    };
    if chosen != record.strategy {
        record.strategy = chosen;
        record.read_only = chosen.is_read_only();
        write_record(&record.run_dir, record, true)?;
    }
    let mode = match chosen {
        Strategy::Reflink => CopyMode::Reflink,
        Strategy::Hardlink => CopyMode::Hardlink,
        _ => CopyMode::Copy,
    };
    // The copy is made next to the target, then renamed over the (empty) target: the target
    // is never seen half copied. copy_tree gives it the lower root's owner, mode and mtime.
    let staging = copy_staging(record);
    remove_if_present(&staging)?;
    let meter = Meter::new(observer, Phase::Render, count_entries(&lower, observer)?);
    meter.start()?;
    let tick = |n| meter.tick(n);
    let stats = fsops::copy_tree_ticked(&lower, &staging, mode, privs, warnings, &tick);
    let stats = stats.map_err(|e| {
        if mode == CopyMode::Reflink && e.kind() == ErrorKind::InvalidArgument {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "reflink copy to {} failed: {}",
                    target.display(),
                    e.message()
                ),
            )
        } else {
            e
        }
    })?;
    meter.finish();
    observer.check()?;
    // Before the copy takes the target's place, the record names it (so that cleaning a dead
    // run removes this copy and nothing else) and says whether a mount will protect it (so
    // that a release after a crash unmounts it).
    record.copy_identity = Some(
        dir_identity(&staging)
            .map_err(|e| Error::io(format!("cannot stat {}", staging.display()), e))?,
    );
    record.protected = chosen == Strategy::Hardlink && protect::can_mount();
    write_record(&record.run_dir, record, false)?;
    std::fs::rename(&staging, &target).map_err(|e| {
        if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the target {} is a mount point: give a folder inside it",
                    target.display()
                ),
            )
        } else {
            Error::io(
                format!("cannot move the copy into place at {}", target.display()),
                e,
            )
        }
    })?;
    if chosen == Strategy::Hardlink {
        protect_hardlink_run(record, options, warnings)?;
    }
    Ok(Some(stats))
}

/// The number of entries below `root` (not following symlinks): the total of a copy's
/// progress. Stops once `observer` is cancelled.
fn count_entries(root: &Path, observer: &Observer) -> Result<u64> {
    let mut count = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        observer.check()?;
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
            count += 1;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    Ok(count)
}

/// Refuses a `hardlink` run this process cannot protect (no `CAP_SYS_ADMIN`), before any
/// work: [`ErrorKind::NeedsPrivilege`].
pub(crate) fn refuse_unprotectable_hardlink() -> Result<()> {
    if protect::can_mount() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::NeedsPrivilege,
        "a hardlink run shares its files with the store's cache, so a write there would \
         change every later render; protecting it with a read-only mount needs root \
         (CAP_SYS_ADMIN). Use the copy, reflink or overlay strategy, or allow an unprotected \
         run that will only be read (`--unprotected-read-only`, \
         RenderOptions::allow_unprotected_hardlink)",
    ))
}

/// Mounts the hardlink farm at the target read-only (the record already says it may be
/// mounted). Where that fails: an error, or with `allow_unprotected_hardlink` an
/// unprotected run and a warning.
fn protect_hardlink_run(
    record: &mut RunRecord,
    options: &RunOptions,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let failed = if record.protected {
        match protect::mount_read_only(&record.target) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        }
    } else {
        Error::new(
            ErrorKind::NeedsPrivilege,
            format!(
                "cannot protect the hardlink run at {} with a read-only mount: mounting needs \
                 root (CAP_SYS_ADMIN)",
                record.target.display()
            ),
        )
    };
    record.protected = false;
    if !options.allow_unprotected_hardlink {
        return Err(failed);
    }
    warnings.push(format!(
        "{}; the run is NOT protected: only read it (a write changes the store's cache)",
        failed.message()
    ));
    Ok(())
}

/// Where a copy of the run of `record` is made before it is renamed over the target: a
/// hidden sibling of the target, named after the run.
pub(super) fn copy_staging(record: &RunRecord) -> PathBuf {
    let name = record
        .target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = record
        .run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = &key[..key.len().min(16)];
    record
        .target
        .with_file_name(format!(".{name}.acikit-run-{key}"))
}

/// What tells the folder at `path` from another made later at the same place: its inode and
/// birth time (inode numbers are reused at once on ext4), or its mtime where the file system
/// keeps no birth time.
pub fn dir_identity(path: &Path) -> std::io::Result<String> {
    use rustix::fs::{AtFlags, StatxFlags};
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::INO | StatxFlags::BTIME | StatxFlags::MTIME,
    )?;
    let (what, time) = if st.stx_mask & StatxFlags::BTIME.bits() != 0 {
        ("born", st.stx_btime)
    } else {
        ("mtime", st.stx_mtime)
    };
    Ok(format!(
        "ino={} {what}={}.{:09}",
        st.stx_ino, time.tv_sec, time.tv_nsec
    ))
}

/// Removes the tree at `path` if there is one.
pub(super) fn remove_if_present(path: &Path) -> Result<()> {
    match fsops::remove_tree(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Resolves the target of a new run to a canonical path; makes missing parents. Returns the
/// path and whether the target existed (as an empty folder).
fn resolve_new_target(target: &Path) -> Result<(PathBuf, bool)> {
    // A target that vanishes while we look (another create_run moving it into place) is
    // looked at again.
    for _ in 0..3 {
        match existing_empty_target(target) {
            Ok(Some(canonical)) => return Ok((canonical, true)),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        let (parent, name) = split_target(target)?;
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        let parent = std::fs::canonicalize(&parent)
            .map_err(|e| Error::io(format!("target folder {}", parent.display()), e))?;
        let canonical = parent.join(name);
        if std::fs::symlink_metadata(&canonical).is_err() {
            return Ok((canonical, false));
        }
    }
    Err(Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "the target {} keeps changing (another process is using it?)",
            target.display()
        ),
    ))
}

/// The canonical path of `target` if it is an empty folder, `None` if it does not exist,
/// [`ErrorKind::InvalidArgument`] if it is something else.
fn existing_empty_target(target: &Path) -> Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(target) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("target {}", target.display()), e)),
    }
    let canonical = std::fs::canonicalize(target).map_err(|e| {
        if std::fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink()) {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("the target {} is a symlink to nothing", target.display()),
            )
        } else {
            Error::io(format!("target {}", target.display()), e)
        }
    })?;
    let meta = std::fs::metadata(&canonical)
        .map_err(|e| Error::io(format!("target {}", target.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the target {} is not a directory", target.display()),
        ));
    }
    let mut entries = std::fs::read_dir(&canonical)
        .map_err(|e| Error::io(format!("cannot read {}", target.display()), e))?;
    if entries.next().is_some() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the target {} is not empty (or already holds a run)",
                target.display()
            ),
        ));
    }
    Ok(Some(canonical))
}

/// Resolves the target of an existing run as [`resolve_new_target`] did, whether or not the
/// target still exists.
fn resolve_existing_target(target: &Path) -> Result<PathBuf> {
    if let Ok(canonical) = std::fs::canonicalize(target) {
        return Ok(canonical);
    }
    let (parent, name) = split_target(target)?;
    match std::fs::canonicalize(&parent) {
        Ok(parent) => Ok(parent.join(name)),
        Err(_) => std::path::absolute(target)
            .map_err(|e| Error::io(format!("target {}", target.display()), e)),
    }
}

/// The parent folder and the last component of `target`, which must end with a name.
fn split_target(target: &Path) -> Result<(PathBuf, std::ffi::OsString)> {
    match target.components().next_back() {
        Some(Component::Normal(name)) => {
            let parent = match target.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            Ok((parent, name.to_os_string()))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the target {} does not end with a folder name",
                target.display()
            ),
        )),
    }
}

fn make_target_dir(target: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(target)
        .map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::AlreadyExists {
                ErrorKind::InvalidArgument
            } else {
                ErrorKind::Io
            };
            Error::new(
                kind,
                format!("cannot create the target {}: {e}", target.display()),
            )
            .with_source(e)
        })
}

fn dev_of(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.dev())
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))
}

fn utf8(path: &Path, what: &str) -> Result<()> {
    if path.to_str().is_none() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the {what} path {} is not UTF-8 (run records store paths as text)",
                path.display()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Overlay

/// Mounts an overlay of `lower` on `target` with `run_dir/upper` and `run_dir/work`.
fn mount_overlay(lower: &Path, run_dir: &Path, target: &Path) -> Result<()> {
    let upper = run_dir.join(UPPER);
    let work = run_dir.join(WORK);
    for dir in [&upper, &work] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    // The merged root directory is the upper one: give it the lower root's owner, mode and
    // times (mtime last), so that the run's root looks like the image's.
    let root = std::fs::metadata(lower)
        .map_err(|e| Error::io(format!("cannot stat {}", lower.display()), e))?;
    let _ = std::os::unix::fs::chown(&upper, Some(root.uid()), Some(root.gid()));
    std::fs::set_permissions(
        &upper,
        std::fs::Permissions::from_mode(root.mode() & 0o7777),
    )
    .map_err(|e| Error::io(format!("cannot set the mode of {}", upper.display()), e))?;
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: root.atime(),
            tv_nsec: root.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: root.mtime(),
            tv_nsec: root.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        &upper,
        &times,
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| {
        Error::io(
            format!("cannot set the times of {}", upper.display()),
            e.into(),
        )
    })?;

    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape_overlay_path(lower)?,
        escape_overlay_path(&upper)?,
        escape_overlay_path(&work)?
    );
    // `volatile` (Linux 5.10+): the upper folder is thrown away at release and never mounted
    // again, so overlayfs need not sync it (an fsync inside the run is a no-op, and unmounting
    // does not flush the whole host file system). Without it on older kernels (EINVAL).
    let mut mounted = mount_overlay_with(target, &format!("{options},volatile"));
    if mounted == Err(Errno::INVAL) {
        mounted = mount_overlay_with(target, &options);
    }
    mounted.map_err(|e| {
        let what = format!("cannot mount an overlay on {}", target.display());
        let io = std::io::Error::from(e);
        match e {
            Errno::PERM | Errno::ACCESS => Error::new(
                ErrorKind::NeedsPrivilege,
                format!("{what}: mounting needs root (CAP_SYS_ADMIN) ({io})"),
            ),
            Errno::NODEV | Errno::NOSYS => Error::new(
                ErrorKind::Unsupported,
                format!("{what}: this kernel has no overlayfs ({io})"),
            ),
            Errno::NAMETOOLONG => Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{what}: the paths of the lower tree {} and the runs folder are too long \
                     for the mount options (4 KiB)",
                    lower.display()
                ),
            ),
            Errno::INVAL | Errno::OPNOTSUPP | Errno::XDEV | Errno::LOOP => Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{what}: overlayfs refused the lower tree {} or the upper folder {} \
                     (their file systems cannot be overlay layers?) ({io})",
                    lower.display(),
                    upper.display()
                ),
            ),
            _ => Error::new(ErrorKind::Io, format!("{what}: {io}")),
        }
        .with_source(io)
    })
}

/// `mount -t overlay overlay -o OPTIONS TARGET`.
pub(super) fn mount_overlay_with(target: &Path, options: &str) -> std::result::Result<(), Errno> {
    // mount(2) copies at most one page of options: a longer string would be cut.
    if options.len() >= 4096 {
        return Err(Errno::NAMETOOLONG);
    }
    let data = std::ffi::CString::new(options).map_err(|_| Errno::INVAL)?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        data.as_c_str(),
    )
}

/// `path` for overlayfs mount options: `\`, `,` and `:` escaped with a backslash.
pub(super) fn escape_overlay_path(path: &Path) -> Result<String> {
    let s = path.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{} is not UTF-8", path.display()),
        )
    })?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

pub(super) fn remove_overlay_dirs(run_dir: &Path) -> Result<()> {
    // A composefs run whose creator died between its mounts: its EROFS mount point.
    super::composefs::unmount_meta(run_dir)?;
    for name in [UPPER, WORK] {
        remove_if_present(&run_dir.join(name))?;
    }
    Ok(())
}

/// The type of the file system mounted on `path` (the top of the stack), if `path` is a
/// mount point of this mount namespace.
fn mounted_fs_type(path: &Path) -> Option<String> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    let mut found = None;
    for line in info.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if fields.len() < 5 || unescape_mountinfo(fields[4]) != want {
            continue;
        }
        let sep = fields.iter().position(|f| *f == b"-")?;
        found = fields
            .get(sep + 1)
            .map(|t| String::from_utf8_lossy(t).into_owned());
    }
    found
}

/// Every mount point of this mount namespace (from `/proc/self/mountinfo`), as bytes.
pub(super) fn mount_points() -> std::collections::HashSet<Vec<u8>> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Default::default();
    };
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(unescape_mountinfo)
        .collect()
}

/// Undoes the octal escapes (`\040` for a space...) of a mountinfo field.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reflink probe

enum Probe {
    Works,
    Fails(String),
    NoFile,
}

/// Tries one `FICLONE` of a non-empty regular file of `lower` into an unnamed file in the
/// folder `target`.
fn probe_reflink(lower: &Path, target: &Path) -> Result<Probe> {
    let Some(src) = find_probe_file(lower) else {
        return Ok(Probe::NoFile);
    };
    let dst = match rustix::fs::open(
        target,
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => File::from(fd),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {
            // No O_TMPFILE here: a named file, removed at once.
            let path = target.join(format!(".acikit-reflink-probe-{}", std::process::id()));
            let fd = rustix::fs::open(
                &path,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e.into()))?;
            let _ = std::fs::remove_file(&path);
            File::from(fd)
        }
        Err(e) => {
            return Err(Error::io(
                format!("cannot create a file in {}", target.display()),
                e.into(),
            ));
        }
    };
    match fsops::reflink_file(&src, &dst) {
        Ok(()) => Ok(Probe::Works),
        Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(Probe::Fails(e.message().into())),
        Err(e) => Ok(Probe::Fails(e.to_string())),
    }
}

/// The first readable non-empty regular file of `lower` (breadth first, a bounded search).
fn find_probe_file(lower: &Path) -> Option<File> {
    let mut dirs = std::collections::VecDeque::from([lower.to_path_buf()]);
    let mut seen = 0;
    while let Some(dir) = dirs.pop_front() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > 10_000 {
                return None;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push_back(entry.path());
            } else if meta.is_file()
                && meta.len() > 0
                && let Ok(fd) = rustix::fs::open(
                    entry.path(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            {
                return Some(File::from(fd));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Undoing a run

/// Undoes what `record` says was (or was being) made. With `keep_target`, an emptied target
/// folder is left in place.
fn undo(record: &RunRecord, keep_target: bool) -> Result<()> {
    let target = &record.target;
    match record.strategy {
        Strategy::Overlay | Strategy::Auto | Strategy::Composefs => {
            if mounted_fs_type(target).as_deref() == Some("overlay") {
                unmount(target)?;
            }
            remove_overlay_dirs(&record.run_dir)?;
            if !keep_target {
                match std::fs::remove_dir(target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // A mount point the caller gave: leave it (it is empty).
                    Err(e) if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) => {}
                    Err(e) => {
                        return Err(Error::io(
                            format!(
                                "the target {} cannot be removed after unmounting its overlay",
                                target.display()
                            ),
                            e,
                        ));
                    }
                }
            }
        }
        Strategy::Reflink | Strategy::Hardlink | Strategy::Copy => {
            if record.protected {
                unmount_read_only(target)?;
            }
            // A copy interrupted before it was moved into place.
            remove_if_present(&copy_staging(record))?;
            if keep_target {
                clear_dir(target)?;
            } else {
                remove_if_present(target)?;
            }
        }
    }
    if keep_target && std::fs::symlink_metadata(target).is_err() {
        make_target_dir(target)?;
    }
    Ok(())
}

fn unmount(target: &Path) -> Result<()> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::NOFOLLOW).map_err(|e| {
        let io = std::io::Error::from(e);
        if e == Errno::BUSY {
            Error::new(
                ErrorKind::Io,
                format!(
                    "the run at {} is still in use (a process has a file or its working \
                     folder there): stop it and release again ({io})",
                    target.display()
                ),
            )
            .with_source(io)
        } else {
            Error::io(format!("cannot unmount {}", target.display()), io)
        }
    })
}

/// Unmounts the read-only bind mount(s) of a protected hardlink run at `target`, if any.
fn unmount_read_only(target: &Path) -> Result<()> {
    // One mount, or two if bound twice by a creator killed between two attempts; bounded.
    for _ in 0..4 {
        if mounted_fs_type(target).is_none() {
            return Ok(());
        }
        unmount(target)?;
    }
    Ok(())
}

/// Removes everything inside `dir` (a missing `dir` is fine).
pub(super) fn clear_dir(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
        fsops::remove_tree(&entry.path())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Run folders, records and locks

/// The run folder name of a canonical target: the SHA-256 of its path, in hex.
fn target_key(target: &Path) -> String {
    hex::encode(Sha256::digest(target.as_os_str().as_bytes()))
}

pub(super) fn is_key(name: &[u8]) -> bool {
    name.len() == 64 && name.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Creates the run folder of `record` with its record and lock, atomically (staged, then
/// renamed into place); returns the held lock. [`ErrorKind::InvalidArgument`] if the target
/// already has a run.
fn publish_run_dir(runs_dir: &Path, record: &RunRecord) -> Result<File> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let staging = runs_dir.join(format!(
        "{STAGING_PREFIX}{}-{}-{}",
        std::process::id(),
        now_ms(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| Error::io(format!("cannot create {}", staging.display()), e))?;
    let staged = (|| {
        let lock = open_lock(&staging.join(LOCK), true)?;
        lock.lock()
            .map_err(|e| Error::io(format!("cannot lock {}", staging.display()), e))?;
        write_record(&staging, record, true)?;
        rename_no_replace(&staging, &record.run_dir).map_err(|e| {
            if matches!(e, Errno::EXIST | Errno::NOTEMPTY) {
                let by = read_record(&record.run_dir)
                    .ok()
                    .flatten()
                    .map(|r| format!(" ({} run made by process {})", r.strategy, r.pid))
                    .unwrap_or_default();
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the target {} already has a run{by}: release it first",
                        record.target.display()
                    ),
                )
            } else {
                Error::io(
                    format!("cannot create {}", record.run_dir.display()),
                    e.into(),
                )
            }
        })?;
        Ok(lock)
    })();
    if staged.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    staged
}

fn rename_no_replace(from: &Path, to: &Path) -> std::result::Result<(), Errno> {
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, from, cwd, to, rustix::fs::RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS) => {
            // A file system without RENAME_NOREPLACE: rename(2) still refuses a non-empty
            // destination folder, and run folders are never empty.
            rustix::fs::rename(from, to)
        }
        other => other,
    }
}

pub(super) fn open_lock(path: &Path, create: bool) -> Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))
}

/// Locks the run folder `run_dir`; `None` if it does not exist (or was removed while we
/// waited for its lock).
fn lock_run_dir(run_dir: &Path) -> Result<Option<File>> {
    lock_run_dir_with(run_dir, true)
}

/// Locks the run folder `run_dir` if no one holds its lock; `None` if someone does (a run
/// being created or released), or if it does not exist.
pub(super) fn try_lock_run_dir(run_dir: &Path) -> Result<Option<File>> {
    lock_run_dir_with(run_dir, false)
}

fn lock_run_dir_with(run_dir: &Path, wait: bool) -> Result<Option<File>> {
    let path = run_dir.join(LOCK);
    loop {
        let lock = match open_lock(&path, false) {
            Ok(lock) => lock,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if wait {
            lock.lock()
                .map_err(|e| Error::io(format!("cannot lock {}", path.display()), e))?;
        } else {
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("cannot lock {}", path.display()), e));
                }
            }
        }
        // The folder may have been released (and even made again) while we waited.
        let held = rustix::fs::fstat(lock.as_fd())
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e.into()))?;
        match std::fs::metadata(&path) {
            Ok(now) if now.dev() == held.st_dev && now.ino() == held.st_ino => {
                return Ok(Some(lock));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("cannot stat {}", path.display()), e)),
        }
    }
}

/// Writes `record.json` in `dir` atomically (and with `durable`, synced: the first record
/// of a run and a change of strategy are; marking it complete needs not be, as a run left
/// marked incomplete is released the same way).
fn write_record(dir: &Path, record: &RunRecord, durable: bool) -> Result<()> {
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot encode the run record: {e}")))?;
    let tmp = dir.join(format!("{RECORD}.tmp"));
    let path = dir.join(RECORD);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&json)?;
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Reads `record.json` of the run folder `dir`; `None` if it has none.
pub(super) fn read_record(dir: &Path) -> Result<Option<RunRecord>> {
    let path = dir.join(RECORD);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    let mut record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorKind::CorruptStore,
            format!("the run record {} is damaged: {e}", path.display()),
        )
    })?;
    record.run_dir = dir.to_path_buf();
    Ok(Some(record))
}

/// Removes a run folder: its record first (so a release interrupted later finds only
/// folders to remove), then the rest.
pub(super) fn remove_run_dir(run_dir: &Path) -> Result<()> {
    match std::fs::remove_file(run_dir.join(RECORD)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("cannot remove {}", run_dir.join(RECORD).display()),
                e,
            ));
        }
    }
    match fsops::remove_tree(run_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!("fast".parse::<Strategy>().is_err());
    }

    #[test]
    fn overlay_paths_are_escaped() {
        assert_eq!(
            escape_overlay_path(Path::new("/a,b:c\\d")).unwrap(),
            "/a\\,b\\:c\\\\d"
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(b"/a\\040b\\134c"), b"/a b\\c");
        assert_eq!(unescape_mountinfo(b"/plain\\"), b"/plain\\");
    }

    #[test]
    fn keys_are_hex_sha256() {
        let key = target_key(Path::new("/run/x"));
        assert!(is_key(key.as_bytes()));
        assert!(!is_key(b".tmp-1-2-3"));
    }
}

//! Dead runs: runs whose creator was killed before finishing, or whose rootfs was removed
//! without `release`, found and cleaned so that they neither hold images (`rm`: `in_use`)
//! nor leave copies beside their targets.
//!
//! A run is **dead** when all of these hold:
//! - its creator is gone: no process with its pid and start time in this boot
//!   ([`RunRecord::creator`]), and no one holds its folder's lock (a create or release in
//!   progress, in any process or pid namespace, holds it);
//! - nothing is mounted on its target (in this mount namespace);
//! - it never completed, or its target no longer exists.
//!
//! So a live run (creator alive, or a complete run whose target is there) is never touched;
//! the only way to end one is `release`. Cleaning a dead run removes the hidden copy beside
//! its target (`.NAME.acikit-run-KEY`, named from the record), its `upper/` and `work/`
//! folders, its target when that is the run's own copy (by the inode and birth time the record
//! names) or an
//! empty folder the run made (a folder the caller gave is left, emptied of the run's copy),
//! then its run folder. Also cleaned: run folders without a record (a release killed
//! half-way) and staging folders of creates killed before publishing their record, both when
//! no one holds their lock.
//!
//! `render` cleans its store's dead runs before making a new one, `gc` cleans them and
//! `fsck` counts them ([`find_dead_runs`]); `rm` cleans them before it decides an image is in
//! use.

use std::io::ErrorKind as IoKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::process::ProcessIdentity;
use super::run::{self, RunRecord};
use crate::error::{Error, ErrorKind, Result};

/// What is left of killed or abandoned runs in a runs folder.
#[derive(Debug, Clone, Default)]
pub struct DeadRuns {
    /// Dead runs (see the module docs).
    pub runs: Vec<RunRecord>,
    /// Run folders without a record whose lock is free (a release or clean-up killed
    /// half-way).
    pub orphan_folders: Vec<PathBuf>,
    /// Staging folders of creates killed before they published their run folder.
    pub stale_staging: Vec<PathBuf>,
}

impl DeadRuns {
    /// Dead runs and orphan run folders (what `fsck` reports as dead runs).
    pub fn dead_count(&self) -> u64 {
        (self.runs.len() + self.orphan_folders.len()) as u64
    }
}

/// What [`reap_dead_runs`] removed.
#[derive(Debug, Clone, Default)]
pub struct Reaped {
    /// Dead runs and orphan run folders removed.
    pub runs: u64,
    /// Stale staging folders removed.
    pub staging: u64,
    /// Dead runs that could not be cleaned (each with why); they are kept for a later try.
    pub failures: Vec<String>,
}

/// Finds what [`reap_dead_runs`] would clean, changing nothing.
pub fn find_dead_runs(runs_dir: &Path) -> Result<DeadRuns> {
    let mut found = DeadRuns::default();
    let entries = read_runs_dir(runs_dir)?;
    let mut mounts = None;
    for (name, path) in entries {
        if name.starts_with(run::STAGING_PREFIX.as_bytes()) {
            if staging_is_stale(&path, &name) {
                found.stale_staging.push(path);
            }
            continue;
        }
        if !run::is_key(&name) {
            continue;
        }
        let Some(_lock) = run::try_lock_run_dir(&path)? else {
            if orphan_without_lock(&path) {
                found.orphan_folders.push(path);
            }
            continue;
        };
        match run::read_record(&path) {
            Ok(Some(record)) => {
                let mounts = mounts.get_or_insert_with(run::mount_points);
                if is_dead(&record, mounts) {
                    found.runs.push(record);
                }
            }
            Ok(None) => found.orphan_folders.push(path),
            // A damaged record is fsck's to report, not a dead run.
            Err(_) => {}
        }
    }
    Ok(found)
}

/// Cleans the dead runs, orphan run folders and stale staging folders of `runs_dir` (see
/// the module docs). A run that cannot be cleaned is reported in `Reaped::failures` and
/// kept; only an unreadable runs folder is an error.
pub fn reap_dead_runs(runs_dir: &Path) -> Result<Reaped> {
    let mut reaped = Reaped::default();
    let entries = read_runs_dir(runs_dir)?;
    let mut mounts = None;
    for (name, path) in entries {
        if name.starts_with(run::STAGING_PREFIX.as_bytes()) {
            if staging_is_stale(&path, &name) && run::remove_if_present(&path).is_ok() {
                reaped.staging += 1;
            }
            continue;
        }
        if !run::is_key(&name) {
            continue;
        }
        // Cheap first look, without a lock: most runs are live and complete.
        if let Ok(Some(record)) = run::read_record(&path)
            && record.complete
            && present(&record.target)
        {
            continue;
        }
        let lock = match run::try_lock_run_dir(&path) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                if orphan_without_lock(&path) && run::remove_if_present(&path).is_ok() {
                    reaped.runs += 1;
                }
                continue;
            }
            Err(e) => {
                reaped.failures.push(e.to_string());
                continue;
            }
        };
        // Read again under the lock: the run may have completed or been released.
        let outcome = match run::read_record(&path) {
            Ok(Some(record)) => {
                let mounts = mounts.get_or_insert_with(run::mount_points);
                if !is_dead(&record, mounts) {
                    continue;
                }
                clean_dead_run(&record)
            }
            Ok(None) => run::remove_run_dir(&path),
            Err(_) => continue,
        };
        drop(lock);
        match outcome {
            Ok(()) => reaped.runs += 1,
            Err(e) => reaped.failures.push(format!(
                "the dead run in {} cannot be cleaned: {e}",
                path.display()
            )),
        }
    }
    Ok(reaped)
}

/// Whether `record` is a dead run (see the module docs); the caller holds its lock.
fn is_dead(record: &RunRecord, mounts: &std::collections::HashSet<Vec<u8>>) -> bool {
    if record.complete && present(&record.target) {
        return false;
    }
    if record.creator().is_alive() {
        return false;
    }
    !mounts.contains(record.target.as_os_str().as_bytes())
}

/// Removes what a dead run made, then its run folder.
fn clean_dead_run(record: &RunRecord) -> Result<()> {
    run::remove_if_present(&run::copy_staging(record))?;
    run::remove_overlay_dirs(&record.run_dir)?;
    clean_target(record)?;
    run::remove_run_dir(&record.run_dir)
}

/// Removes the target of a dead run when it is the run's: its copy (by inode) or an empty
/// folder it made. A folder the caller gave stays (emptied of the run's copy); anything else
/// found there is not the run's and stays.
fn clean_target(record: &RunRecord) -> Result<()> {
    let target = &record.target;
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot stat {}", target.display()), e)),
    };
    if !meta.is_dir() {
        return Ok(());
    }
    if record.copy_identity.is_some() && record.copy_identity == run::dir_identity(target).ok() {
        return if record.target_existed {
            run::clear_dir(target)
        } else {
            run::remove_if_present(target)
        };
    }
    if record.target_existed {
        return Ok(());
    }
    match std::fs::remove_dir(target) {
        Ok(()) => Ok(()),
        // Not empty (someone else's files), or gone meanwhile: not the run's to remove.
        Err(e) if matches!(e.kind(), IoKind::NotFound | IoKind::DirectoryNotEmpty) => Ok(()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}", target.display()), e)),
    }
}

/// The entries of the runs folder (name, path); none if it does not exist.
fn read_runs_dir(runs_dir: &Path) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    let entries = match std::fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot read {}", runs_dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::io(format!("cannot read {}", runs_dir.display()), e))?;
        out.push((entry.file_name().as_bytes().to_vec(), entry.path()));
    }
    Ok(out)
}

fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// A staging folder (`.tmp-PID-MS-N`) of a create killed before it published its run
/// folder: its lock is free (or it has none yet), and its creator is gone or it is older
/// than a minute (a live create makes the folder, then takes the lock).
fn staging_is_stale(path: &Path, name: &[u8]) -> bool {
    let free = match run::open_lock(&path.join(run::LOCK), false) {
        Ok(lock) => lock.try_lock().is_ok(),
        Err(e) => e.kind() == ErrorKind::NotFound,
    };
    if !free {
        return false;
    }
    let creator_gone = staging_pid(name).is_some_and(|pid| {
        !ProcessIdentity {
            pid,
            start_ticks: None,
            boot_id: None,
        }
        .is_alive()
    });
    creator_gone || older_than_a_minute(path)
}

/// The pid in a staging folder's name.
fn staging_pid(name: &[u8]) -> Option<u32> {
    let rest = name.strip_prefix(run::STAGING_PREFIX.as_bytes())?;
    let pid = rest.split(|&b| b == b'-').next()?;
    std::str::from_utf8(pid).ok()?.parse().ok()
}

/// A run folder whose lock file is missing, left by a removal killed half-way: only when it
/// has no record either and has not changed for a minute (a removal in progress may be
/// between the two).
fn orphan_without_lock(path: &Path) -> bool {
    !path.join(run::LOCK).exists()
        && !path.join(run::RECORD).exists()
        && path.is_dir()
        && older_than_a_minute(path)
}

fn older_than_a_minute(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() >= 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_give_their_pid() {
        assert_eq!(staging_pid(b".tmp-1234-5678-9"), Some(1234));
        assert_eq!(staging_pid(b".tmp-x-1-2"), None);
        assert_eq!(staging_pid(b"abc"), None);
    }
}

//! Copying a directory tree on several threads, preserving every kind of node, owners,
//! modes, mtimes, xattrs and hardlink groups; regular files are copied, cloned or hardlinked
//! ([`CopyMode`]). Each thread holds at most 3 directory descriptors (directories below the
//! roots are reopened with [`open_dir_beneath`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::apply::{Current, Target, set_meta};
use super::content::{copy_file_data_blocks, open_file, reflink_file};
use super::create::create_node;
use super::meta::{NodeKind, NodeMeta, lstat, meta_from_stat, meta_of};
use super::names::{check_name, display_path, os_error};
use super::privileges::Privileges;
use super::walk::{open_dir_beneath, open_subdir, split_parent};
use super::xattr::{read_xattrs, read_xattrs_fd};
use crate::error::{Error, ErrorKind, Result};

/// How [`copy_tree`] makes regular files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyMode {
    /// Hardlink each regular file, symlink and device node to the source (shares the inode,
    /// so its metadata and hardlink group: the result is for read-only use); FIFOs are created
    /// (a shared FIFO would be one pipe between every copy and the source). A copy where a
    /// link is impossible (`EMLINK`, `EXDEV`, `EPERM`).
    Hardlink,
    /// Clone each regular file (`FICLONE`); fails with [`ErrorKind::InvalidArgument`] when the
    /// file system cannot.
    Reflink,
    /// Copy each regular file (`copy_file_range`, holes kept).
    Copy,
}

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyStats {
    /// Regular files in the tree.
    pub files: u64,
    /// Total size of the regular files that were read (holes included): the files a
    /// hardlink farm links are not (nor stat'ed).
    pub bytes: u64,
    /// Files made by a hardlink (to the source, or to the copy of an earlier member of the
    /// same hardlink group).
    pub linked: u64,
    /// Files cloned with `FICLONE`.
    pub reflinked: u64,
    /// Files copied byte by byte (including empty files and fallbacks from a failed link).
    pub copied: u64,
}

/// The default number of threads of [`copy_tree`] is the number of CPUs this process may use,
/// at most this many.
pub const MAX_COPY_THREADS: usize = 4;

/// How many threads [`copy_tree`] uses: `ACIKIT_RENDER_THREADS` when set to a positive number
/// (at most 64), else the CPUs this process may use, at most [`MAX_COPY_THREADS`].
pub fn copy_threads() -> usize {
    let asked = std::env::var("ACIKIT_RENDER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    match asked {
        Some(n) => n.min(64),
        None => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_COPY_THREADS),
    }
}

/// What a node the copy creates is like before its metadata is applied: its owner, and
/// whether it gets exactly the permission bits it is created with.
#[derive(Debug, Clone, Copy)]
struct Fresh {
    uid: u32,
    gid: u32,
    /// The umask, when a node created with permission bits `p` has exactly `p & !umask`: none
    /// when the destination root inherits a default ACL or the setgid bit, or the umask is
    /// unknown (then every mode is set with `chmod`).
    umask: Option<u32>,
}

impl Fresh {
    /// Learns it from the just created destination root: every node created below it, before
    /// the metadata of its folder is applied, gets the root's owner (this process's, or the
    /// group inherited from a setgid parent or a `grpid` mount, down the whole tree).
    fn probe(dst_root: BorrowedFd) -> Result<Fresh> {
        let st = rustix::fs::fstat(dst_root).map_err(|e| {
            os_error(
                format!(
                    "cannot stat {}",
                    display_path(dst_root, OsStr::new("")).display()
                ),
                e,
            )
        })?;
        let mut acl = [0u8; 64];
        let default_acl = !matches!(
            rustix::fs::fgetxattr(dst_root, "system.posix_acl_default", &mut acl[..]),
            Err(Errno::NODATA | Errno::NOTSUP)
        );
        let umask = if default_acl || st.st_mode & 0o2000 != 0 {
            None
        } else {
            process_umask()
        };
        Ok(Fresh {
            uid: st.st_uid,
            gid: st.st_gid,
            umask,
        })
    }

    /// Whether a node created with `mode & 0o777` has exactly `mode`.
    fn exact(&self, mode: u32) -> bool {
        self.umask
            .is_some_and(|umask| mode & 0o7000 == 0 && mode & umask & 0o777 == 0)
    }

    /// The state of a node just created with `mode & 0o777` (or a symlink, with no mode).
    fn current(&self, mode: u32, symlink: bool, special: bool) -> Current {
        Current {
            uid: self.uid,
            gid: self.gid,
            set_mode: !symlink && !self.exact(mode),
            special,
        }
    }
}

/// The umask of this process (`Umask:` in `/proc/self/status`, Linux 4.7+), without changing
/// it.
fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

/// A directory to copy: its path relative to both roots.
struct DirTask {
    rel: PathBuf,
    parent: Option<Arc<DirTask>>,
    /// 1 until its own entries are made, plus its subdirectories not complete yet: at 0 its
    /// metadata is applied (after everything inside it, so its mtime stays) and its parent is
    /// told.
    pending: AtomicUsize,
    /// The source directory's metadata, read when the directory is listed.
    meta: OnceLock<NodeMeta>,
}

/// Where the first copy of a hardlink group is.
enum Group {
    /// Being created by a thread (others wait: it is one `openat` or `mknodat` away).
    Creating,
    /// Made as this name in this directory.
    Made(Arc<DirTask>, OsString),
}

struct Queue {
    tasks: Vec<Arc<DirTask>>,
    /// Threads copying a directory now.
    busy: usize,
    /// Threads waiting for a directory (woken only when there are: a wake is a system call).
    idle: usize,
    error: Option<Error>,
}

/// The hardlink groups met so far, by (device, inode) of the source.
#[derive(Default)]
struct Groups {
    map: HashMap<(u64, u64), Group>,
    /// Threads waiting for a group's first copy.
    waiting: usize,
}

/// What one thread gathers.
#[derive(Default)]
struct Worker {
    stats: CopyStats,
    warnings: Vec<String>,
    /// Buffer for `getdents64`.
    buf: Vec<std::mem::MaybeUninit<u8>>,
}

struct TreeCopier<'a> {
    mode: CopyMode,
    privs: &'a Privileges,
    src_root: OwnedFd,
    dst_root: OwnedFd,
    fresh: Fresh,
    queue: Mutex<Queue>,
    wake: Condvar,
    groups: Mutex<Groups>,
    group_made: Condvar,
    failed: AtomicBool,
    tick: Option<&'a CopyTick<'a>>,
}

/// What [`TreeCopier::join_group`] found.
enum Join<'c> {
    /// Linked to the group's first copy: done.
    Linked,
    /// This is the first member: make it, then call [`Claim::made`].
    First(Claim<'c>),
    /// Not in a group, or the group's inode is full (`EMLINK`): make it on its own.
    Alone,
}

/// The right to make the first copy of a hardlink group; dropped without [`Claim::made`], it
/// lets another member try.
struct Claim<'c> {
    groups: &'c Mutex<Groups>,
    made: &'c Condvar,
    key: (u64, u64),
    done: bool,
}

impl Claim<'_> {
    fn made(mut self, dir: &Arc<DirTask>, name: &OsStr) {
        let mut groups = lock(self.groups);
        groups
            .map
            .insert(self.key, Group::Made(dir.clone(), name.to_os_string()));
        self.done = true;
        if groups.waiting > 0 {
            self.made.notify_all();
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut groups = lock(self.groups);
            groups.map.remove(&self.key);
            if groups.waiting > 0 {
                self.made.notify_all();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TreeCopier<'_> {
    /// Takes directories from the queue until none is left anywhere (or one failed).
    fn work(&self, w: &mut Worker) {
        loop {
            let task = {
                let mut q = lock(&self.queue);
                loop {
                    if q.error.is_some() {
                        return;
                    }
                    if let Some(task) = q.tasks.pop() {
                        q.busy += 1;
                        break task;
                    }
                    if q.busy == 0 {
                        return;
                    }
                    q.idle += 1;
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                    q.idle -= 1;
                }
            };
            let result = self.copy_dir(&task, w);
            let mut q = lock(&self.queue);
            q.busy -= 1;
            match result {
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    q.error.get_or_insert(e);
                    if q.idle > 0 {
                        self.wake.notify_all();
                    }
                }
                Ok(()) if q.busy == 0 && q.tasks.is_empty() && q.idle > 0 => self.wake.notify_all(),
                Ok(()) => {}
            }
        }
    }

    /// Copies the entries of one directory (subdirectories are created and queued).
    fn copy_dir(&self, task: &Arc<DirTask>, w: &mut Worker) -> Result<()> {
        let src = open_dir_beneath(self.src_root.as_fd(), &task.rel)?;
        let dst = open_dir_beneath(self.dst_root.as_fd(), &task.rel)?;
        if task.meta.get().is_none() {
            let st = rustix::fs::fstat(&src).map_err(|e| {
                os_error(
                    format!(
                        "cannot stat {}",
                        display_path(src.as_fd(), OsStr::new("")).display()
                    ),
                    e,
                )
            })?;
            let meta = meta_of(NodeKind::Directory, &st, read_xattrs_fd(src.as_fd())?);
            let _ = task.meta.set(meta);
        }
        let mut subdirs = Vec::new();
        for (name, mut ty) in read_entries(src.as_fd(), &mut w.buf)? {
            if self.failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let Some(tick) = self.tick {
                tick(1)?;
            }
            if ty == FileType::Unknown {
                ty = FileType::from_raw_mode(lstat(src.as_fd(), &name)?.st_mode);
            }
            if ty == FileType::Directory {
                rustix::fs::mkdirat(&dst, &name, Mode::RWXU).map_err(|e| {
                    os_error(
                        format!(
                            "cannot create {}",
                            display_path(dst.as_fd(), &name).display()
                        ),
                        e,
                    )
                })?;
                subdirs.push(name);
            } else {
                self.copy_leaf(src.as_fd(), dst.as_fd(), task, &name, ty, w)?;
            }
        }
        if !subdirs.is_empty() {
            task.pending.fetch_add(subdirs.len(), Ordering::AcqRel);
            let mut q = lock(&self.queue);
            // Popped from the end: visited in name order.
            for name in subdirs.into_iter().rev() {
                q.tasks.push(Arc::new(DirTask {
                    rel: task.rel.join(&name),
                    parent: Some(task.clone()),
                    pending: AtomicUsize::new(1),
                    meta: OnceLock::new(),
                }));
            }
            let idle = q.idle;
            drop(q);
            if idle > 0 {
                self.wake.notify_all();
            }
        }
        drop(src);
        self.complete(task.clone(), Some(dst), w)
    }

    /// One thing of `task` is done: when it was the last, applies the directory's metadata
    /// and goes on with its parent.
    fn complete(
        &self,
        mut task: Arc<DirTask>,
        mut fd: Option<OwnedFd>,
        w: &mut Worker,
    ) -> Result<()> {
        loop {
            if task.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
                return Ok(());
            }
            let dir = match fd.take() {
                Some(fd) => fd,
                None => open_dir_beneath(self.dst_root.as_fd(), &task.rel)?,
            };
            let meta = task.meta.get().expect("read when the directory was listed");
            // Created 0700 (to be filled): the mode is always set.
            let now = Current {
                uid: self.fresh.uid,
                gid: self.fresh.gid,
                set_mode: true,
                special: false,
            };
            set_meta(
                Target::Fd(dir.as_fd()),
                now,
                meta,
                self.privs,
                &mut w.warnings,
            )?;
            drop(dir);
            match &task.parent {
                Some(parent) => task = parent.clone(),
                None => return Ok(()),
            }
        }
    }

    /// Copies the non-directory `name` (of type `ty`) of `src` into `dst`.
    fn copy_leaf(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        task: &Arc<DirTask>,
        name: &OsStr,
        ty: FileType,
        w: &mut Worker,
    ) -> Result<()> {
        // A hardlink farm links regular files, symlinks and devices to the source: no stat,
        // and the inode (so its owner, mode, mtime, xattrs and hardlink group) is the
        // source's. Never a FIFO: one shared FIFO inode would be one pipe between every run
        // and the lower tree.
        let linkable = matches!(
            ty,
            FileType::RegularFile
                | FileType::Symlink
                | FileType::CharacterDevice
                | FileType::BlockDevice
        );
        if self.mode == CopyMode::Hardlink && linkable {
            match rustix::fs::linkat(src, name, dst, name, AtFlags::empty()) {
                Ok(()) => {
                    if ty == FileType::RegularFile {
                        w.stats.files += 1;
                        w.stats.linked += 1;
                    }
                    return Ok(());
                }
                Err(Errno::MLINK | Errno::XDEV | Errno::PERM) => {} // made below
                Err(e) => {
                    return Err(os_error(
                        format!("cannot link {}", display_path(dst, name).display()),
                        e,
                    ));
                }
            }
        }
        if ty == FileType::RegularFile {
            self.copy_regular(src, dst, task, name, w)
        } else {
            self.copy_special(src, dst, task, name, w)
        }
    }

    /// Links `name` in `dst` to the first copy of its hardlink group, or claims to be it.
    fn join_group(
        &self,
        st: &rustix::fs::Stat,
        dst: BorrowedFd,
        name: &OsStr,
        w: &mut Worker,
    ) -> Result<Join<'_>> {
        if st.st_nlink <= 1 {
            return Ok(Join::Alone);
        }
        #[allow(clippy::unnecessary_cast)] // dev_t and ino_t widths vary by target
        let key = (st.st_dev as u64, st.st_ino as u64);
        let mut groups = lock(&self.groups);
        let (dir, first) = loop {
            match groups.map.get(&key) {
                None => {
                    groups.map.insert(key, Group::Creating);
                    return Ok(Join::First(Claim {
                        groups: &self.groups,
                        made: &self.group_made,
                        key,
                        done: false,
                    }));
                }
                Some(Group::Creating) => {
                    groups.waiting += 1;
                    groups = self
                        .group_made
                        .wait(groups)
                        .unwrap_or_else(|e| e.into_inner());
                    groups.waiting -= 1;
                }
                Some(Group::Made(dir, first)) => break (dir.clone(), first.clone()),
            }
        };
        drop(groups);
        let parent = open_dir_beneath(self.dst_root.as_fd(), &dir.rel)?;
        match rustix::fs::linkat(&parent, &first, dst, name, AtFlags::empty()) {
            Ok(()) => {
                if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                    w.stats.linked += 1;
                }
                Ok(Join::Linked)
            }
            Err(Errno::MLINK) => Ok(Join::Alone), // copied on its own
            Err(e) => Err(os_error(
                format!("cannot link {}", display_path(dst, name).display()),
                e,
            )),
        }
    }

    /// Copies (or clones) a regular file: `openat` + `fstat` + `flistxattr` of the source,
    /// `openat` of the copy with its final permission bits where they come out exact,
    /// `copy_file_range`, then only the metadata calls that change something.
    fn copy_regular(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        task: &Arc<DirTask>,
        name: &OsStr,
        w: &mut Worker,
    ) -> Result<()> {
        let src_file = open_file(src, name)?;
        let st = rustix::fs::fstat(&src_file).map_err(|e| {
            os_error(
                format!("cannot stat {}", display_path(src, name).display()),
                e,
            )
        })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(changed(src, name));
        }
        let size = st.st_size as u64;
        w.stats.files += 1;
        w.stats.bytes += size;
        let claim = match self.join_group(&st, dst, name, w)? {
            Join::Linked => return Ok(()),
            Join::First(claim) => Some(claim),
            Join::Alone => None,
        };
        let meta = meta_of(NodeKind::Regular, &st, read_xattrs_fd(src_file.as_fd())?);
        let exact = self.fresh.exact(meta.mode);
        let perm = if exact { meta.mode & 0o777 } else { 0o600 };
        check_name(name)?;
        let dst_file = rustix::fs::openat(
            dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(perm),
        )
        .map(File::from)
        .map_err(|e| {
            os_error(
                format!("cannot create {}", display_path(dst, name).display()),
                e,
            )
        })?;
        if let Some(claim) = claim {
            claim.made(task, name);
        }
        if size > 0 && self.mode == CopyMode::Reflink {
            reflink_file(&src_file, &dst_file)?;
            w.stats.reflinked += 1;
        } else {
            if size > 0 {
                copy_file_data_blocks(&src_file, &dst_file, size, st.st_blocks as u64)?;
            }
            w.stats.copied += 1;
        }
        let now = self.fresh.current(meta.mode, false, false);
        set_meta(
            Target::Fd(dst_file.as_fd()),
            now,
            &meta,
            self.privs,
            &mut w.warnings,
        )
    }

    /// Copies a symlink, device node or FIFO.
    fn copy_special(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        task: &Arc<DirTask>,
        name: &OsStr,
        w: &mut Worker,
    ) -> Result<()> {
        let st = lstat(src, name)?;
        let ty = FileType::from_raw_mode(st.st_mode);
        if matches!(ty, FileType::RegularFile | FileType::Directory) {
            return Err(changed(src, name));
        }
        let claim = match self.join_group(&st, dst, name, w)? {
            Join::Linked => return Ok(()),
            Join::First(claim) => Some(claim),
            Join::Alone => None,
        };
        let meta = meta_from_stat(src, name, &st, read_xattrs(src, name)?)?;
        if create_node(dst, name, &meta, self.privs, &mut w.warnings)? {
            if let Some(claim) = claim {
                claim.made(task, name);
            }
            let now = self.fresh.current(meta.mode, ty == FileType::Symlink, true);
            set_meta(
                Target::At(dst, name),
                now,
                &meta,
                self.privs,
                &mut w.warnings,
            )?;
        }
        Ok(())
    }
}

/// The error for a source node whose type changed while it was copied.
fn changed(dir: BorrowedFd, name: &OsStr) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{} changed while it was copied",
            display_path(dir, name).display()
        ),
    )
}

/// The entries of the directory `dir` (open at its start), without `.` and `..`, sorted by
/// name, with the types their directory entries give (`Unknown` where the file system does not
/// say). One `getdents64` per 64 KiB of entries, plus the one that finds the end.
fn read_entries(
    dir: BorrowedFd,
    buf: &mut Vec<std::mem::MaybeUninit<u8>>,
) -> Result<Vec<(OsString, FileType)>> {
    if buf.is_empty() {
        buf.resize(64 << 10, std::mem::MaybeUninit::uninit());
    }
    let mut out = Vec::new();
    let mut raw = rustix::fs::RawDir::new(dir, &mut buf[..]);
    while let Some(entry) = raw.next() {
        let entry = entry.map_err(|e| {
            os_error(
                format!(
                    "cannot read the directory {}",
                    display_path(dir, OsStr::new("")).display()
                ),
                e,
            )
        })?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsString::from_vec(name.to_vec()), entry.file_type()));
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Copies the directory tree `src` to `dst` (created here; it must not exist), preserving
/// every kind of node, owners, modes, mtimes (directories' after their contents), xattrs and
/// hardlink groups (files that share an inode in `src` share one in `dst`). Regular files are
/// made as `mode` says: see [`CopyMode`]. Symlinks are copied, never followed (`src` itself
/// must be a directory, not a symlink to one). Uses [`copy_threads`] threads.
#[cfg(test)]
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    mode: CopyMode,
    privs: &Privileges,
    warnings: &mut Vec<String>,
) -> Result<CopyStats> {
    copy_tree_with(src, dst, mode, privs, warnings, copy_threads())
}

/// [`copy_tree`] with `threads` threads (the calling one and `threads - 1` more).
///
/// The threads share a stack of directories to copy: a thread takes one, makes its files,
/// symlinks and devices, creates its subdirectories (mode 0700) and pushes them; a directory
/// gets its owner, mode, xattrs and mtime once everything below it is done (the last thread to
/// finish inside it applies them), so the result does not depend on the number of threads or
/// their timing. Each thread holds at most 3 descriptors of directories (the two it fills,
/// and one it links from) whatever the depth of the tree. The first member of a hardlink group
/// that a thread reaches is made; the others are linked to it (a thread reaching one while the
/// first is being created waits for that `openat`).
#[cfg(test)]
pub fn copy_tree_with(
    src: &Path,
    dst: &Path,
    mode: CopyMode,
    privs: &Privileges,
    warnings: &mut Vec<String>,
    threads: usize,
) -> Result<CopyStats> {
    copy_tree_inner(src, dst, mode, privs, warnings, threads, None)
}

/// Called by [`copy_tree_ticked`] before each entry is copied, with the number of entries
/// (1); an error stops the copy (the partial copy is left for the caller to remove) and is
/// returned.
pub type CopyTick<'a> = dyn Fn(u64) -> Result<()> + Sync + 'a;

/// [`copy_tree`] calling `tick` before each entry below `src` is copied: the caller's
/// progress and cancellation checkpoint.
pub fn copy_tree_ticked(
    src: &Path,
    dst: &Path,
    mode: CopyMode,
    privs: &Privileges,
    warnings: &mut Vec<String>,
    tick: &CopyTick<'_>,
) -> Result<CopyStats> {
    copy_tree_inner(src, dst, mode, privs, warnings, copy_threads(), Some(tick))
}

fn copy_tree_inner(
    src: &Path,
    dst: &Path,
    mode: CopyMode,
    privs: &Privileges,
    warnings: &mut Vec<String>,
    threads: usize,
    tick: Option<&CopyTick<'_>>,
) -> Result<CopyStats> {
    let (src_parent, src_name) = split_parent(src)?;
    let src_root = open_subdir(src_parent.as_fd(), &src_name).map_err(|e| match e {
        Errno::LOOP | Errno::NOTDIR => Error::new(
            ErrorKind::InvalidArgument,
            format!("{} is not a directory", src.display()),
        ),
        e => os_error(format!("cannot open {}", src.display()), e),
    })?;
    let root_st = rustix::fs::fstat(&src_root)
        .map_err(|e| os_error(format!("cannot stat {}", src.display()), e))?;
    let root_meta = meta_of(
        NodeKind::Directory,
        &root_st,
        read_xattrs_fd(src_root.as_fd())?,
    );
    let (dst_parent, dst_name) = split_parent(dst)?;
    rustix::fs::mkdirat(&dst_parent, &dst_name, Mode::RWXU)
        .map_err(|e| os_error(format!("cannot create {}", dst.display()), e))?;
    let dst_root = open_subdir(dst_parent.as_fd(), &dst_name)
        .map_err(|e| os_error(format!("cannot open {}", dst.display()), e))?;
    let fresh = Fresh::probe(dst_root.as_fd())?;

    let root = Arc::new(DirTask {
        rel: PathBuf::new(),
        parent: None,
        pending: AtomicUsize::new(1),
        meta: OnceLock::from(root_meta),
    });
    let copier = TreeCopier {
        mode,
        privs,
        src_root,
        dst_root,
        fresh,
        queue: Mutex::new(Queue {
            tasks: vec![root],
            busy: 0,
            idle: 0,
            error: None,
        }),
        wake: Condvar::new(),
        groups: Mutex::new(Groups::default()),
        group_made: Condvar::new(),
        failed: AtomicBool::new(false),
        tick,
    };
    let mut workers: Vec<Worker> = (0..threads.max(1)).map(|_| Worker::default()).collect();
    std::thread::scope(|scope| {
        let (own, others) = workers.split_first_mut().expect("one worker at least");
        for w in others {
            let copier = &copier;
            // A thread that cannot be started leaves its share to the others.
            let _ = std::thread::Builder::new()
                .name("acikit-copy".into())
                .spawn_scoped(scope, move || copier.work(w));
        }
        copier.work(own);
    });
    if let Some(e) = lock(&copier.queue).error.take() {
        return Err(e);
    }
    let mut stats = CopyStats::default();
    for w in workers {
        stats.files += w.stats.files;
        stats.bytes += w.stats.bytes;
        stats.linked += w.stats.linked;
        stats.reflinked += w.stats.reflinked;
        stats.copied += w.stats.copied;
        warnings.extend(w.warnings);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::meta::read_meta;
    use crate::fs::remove::remove_tree;
    use crate::fs::test_support::{dir_fd, is_root};
    use crate::fs::walk::FD_WINDOW;
    use rustix::fs::{Timespec, Timestamps};
    use std::collections::BTreeMap;

    /// Builds a tree with every kind, a hardlink group, identical separate files, an empty
    /// file, a sparse file, xattrs and special modes.
    fn sample_tree(root: &Path) {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let set_mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::write(root.join("one"), b"same content").unwrap();
        std::fs::write(root.join("a/two"), b"same content").unwrap();
        std::fs::write(root.join("a/b/grp"), b"group").unwrap();
        std::fs::hard_link(root.join("a/b/grp"), root.join("grp2")).unwrap();
        std::fs::hard_link(root.join("a/b/grp"), root.join("a/b/c/grp3")).unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::hard_link(root.join("empty"), root.join("a/empty-link")).unwrap();
        {
            let f = File::create(root.join("sparse")).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"start", 0).unwrap();
            f.write_all_at(b"end", 64 << 20).unwrap();
        }
        symlink("../one", root.join("a/link")).unwrap();
        symlink("/etc/passwd", root.join("abs-link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        if is_root() {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                root.join("null"),
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                rustix::fs::makedev(1, 3),
            )
            .unwrap();
            std::os::unix::fs::chown(root.join("a/two"), Some(1000), Some(2000)).unwrap();
            std::os::unix::fs::lchown(root.join("a/link"), Some(3), Some(4)).unwrap();
        }
        rustix::fs::setxattr(
            root.join("one").as_path(),
            "user.k",
            b"v",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::setxattr(
            root.join("a/b").as_path(),
            "user.dir",
            b"x",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        set_mode(&root.join("one"), 0o4755);
        set_mode(&root.join("tmp"), 0o1777);
        set_mode(&root.join("a/b/c"), 0o555);
        set_mode(&root.join("a/two"), 0o400);
        // Directory mtimes last, deepest first.
        for (i, p) in ["a/b/c", "a/b", "a", "tmp", ""].iter().enumerate() {
            let times = Timestamps {
                last_access: Timespec {
                    tv_sec: 1_000_000 + i as i64,
                    tv_nsec: 1000 + i as i64,
                },
                last_modification: Timespec {
                    tv_sec: 1_000_000 + i as i64,
                    tv_nsec: 1000 + i as i64,
                },
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                root.join(p),
                &times,
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
    }

    /// Every path with its metadata and content, and the hardlink partition.
    type Snapshot = BTreeMap<PathBuf, (NodeMeta, u64, Vec<u8>, u64)>;

    fn snapshot(root: &Path) -> Snapshot {
        let mut out = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let full = root.join(&rel);
            let (parent, name) = split_parent(&full).unwrap();
            let mut m = read_meta(parent.as_fd(), &name).unwrap();
            m.xattrs.retain(|(k, _)| k.starts_with(b"user."));
            let st = lstat(parent.as_fd(), &name).unwrap();
            let content = if m.kind == NodeKind::Regular {
                std::fs::read(&full).unwrap()
            } else {
                Vec::new()
            };
            if m.kind == NodeKind::Directory {
                for e in std::fs::read_dir(&full).unwrap() {
                    stack.push(rel.join(e.unwrap().file_name()));
                }
            }
            out.insert(rel, (m, st.st_ino as u64, content, st.st_blocks as u64));
        }
        out
    }

    /// The partition of paths into inodes (non-directories).
    fn groups(s: &Snapshot) -> Vec<Vec<PathBuf>> {
        let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
        for (p, (m, ino, _, _)) in s {
            if m.kind != NodeKind::Directory {
                by_ino.entry(*ino).or_default().push(p.clone());
            }
        }
        let mut v: Vec<_> = by_ino.into_values().collect();
        v.sort();
        v
    }

    fn check_copy(mode: CopyMode) {
        for threads in [1, 2, 5] {
            check_copy_threads(mode, threads);
        }
    }

    fn check_copy_threads(mode: CopyMode, threads: usize) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        sample_tree(&src);
        let dst = tmp.path().join("dst");
        let privs = Privileges::detect();
        let mut warnings = Vec::new();
        let stats = match copy_tree_with(&src, &dst, mode, &privs, &mut warnings, threads) {
            Ok(s) => s,
            Err(e) if mode == CopyMode::Reflink && e.kind() == ErrorKind::InvalidArgument => {
                eprintln!("skipped: {e}");
                remove_tree(&dst).unwrap();
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(warnings.is_empty(), "{warnings:?}");
        let a = snapshot(&src);
        let b = snapshot(&dst);
        assert_eq!(a.len(), b.len());
        for ((pa, (ma, _, ca, _)), (pb, (mb, _, cb, blocks))) in a.iter().zip(&b) {
            assert_eq!(pa, pb);
            assert_eq!(ma, mb, "{}", pa.display());
            assert_eq!(ca, cb, "{}", pa.display());
            if pa == Path::new("sparse") {
                assert!(*blocks < 1024, "sparse copy allocates {blocks} blocks");
            }
        }
        assert_eq!(groups(&a), groups(&b));
        assert_eq!(stats.files, 8, "{stats:?}");
        // The copies share no inode with the source, except hardlinks in Hardlink mode.
        let src_inos: std::collections::HashSet<u64> = a.values().map(|v| v.1).collect();
        let shared = b.values().filter(|v| src_inos.contains(&v.1)).count();
        match mode {
            CopyMode::Hardlink => {
                // Every regular file (empty ones too), both symlinks and the device node are
                // links to the source; the FIFO is not (it would be one pipe for all).
                let device = usize::from(is_root());
                assert_eq!(shared, 8 + 2 + device, "{stats:?}");
                assert_eq!(stats.linked, 8, "{stats:?}");
                assert!(!src_inos.contains(&b[Path::new("fifo")].1));
            }
            _ => assert_eq!(shared, 0),
        }
        remove_tree(&dst).unwrap();
        assert!(!dst.exists());
        // dst must not exist
        std::fs::create_dir(&dst).unwrap();
        assert!(copy_tree(&src, &dst, mode, &privs, &mut warnings).is_err());
    }

    #[test]
    fn copy_tree_copy() {
        check_copy(CopyMode::Copy);
    }

    #[test]
    fn copy_tree_hardlink() {
        check_copy(CopyMode::Hardlink);
    }

    #[test]
    fn copy_tree_reflink() {
        check_copy(CopyMode::Reflink);
    }

    #[test]
    fn deep_trees_copy_and_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let mut p = src.clone();
        for i in 0..(FD_WINDOW * 3 + 5) {
            p.push(format!("{}", i % 10));
            if i % 7 == 0 {
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("f"), i.to_string()).unwrap();
            }
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("deepest"), b"x").unwrap();
        let dst = tmp.path().join("dst");
        let privs = Privileges::detect();
        let stats = copy_tree(&src, &dst, CopyMode::Copy, &privs, &mut Vec::new()).unwrap();
        assert_eq!(stats.files, (FD_WINDOW * 3 + 5).div_ceil(7) as u64 + 1);
        let deep = dst.join(p.strip_prefix(&src).unwrap()).join("deepest");
        assert_eq!(std::fs::read(deep).unwrap(), b"x");
        remove_tree(&dst).unwrap();
        remove_tree(&src).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    /// A tree deeper than PATH_MAX (directories are reopened beneath the roots one component
    /// at a time there), copied by several threads.
    #[test]
    fn copy_tree_beyond_path_max() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let long = "d".repeat(200);
        let mut cur = dir_fd(&src);
        for i in 0..30 {
            rustix::fs::mkdirat(&cur, long.as_str(), Mode::RWXU).unwrap();
            let f = rustix::fs::openat(
                &cur,
                format!("f{i}").as_str(),
                OFlags::WRONLY | OFlags::CREATE,
                Mode::from_raw_mode(0o640),
            )
            .unwrap();
            rustix::io::write(&f, i.to_string().as_bytes()).unwrap();
            cur = open_subdir(cur.as_fd(), OsStr::new(&long)).unwrap();
        }
        let dst = tmp.path().join("dst");
        let privs = Privileges::detect();
        for mode in [CopyMode::Copy, CopyMode::Hardlink] {
            let stats = copy_tree_with(&src, &dst, mode, &privs, &mut Vec::new(), 3).unwrap();
            assert_eq!(stats.files, 30, "{mode:?}");
            let mut cur = dir_fd(&dst);
            for i in 0..30 {
                let f = rustix::fs::openat(
                    &cur,
                    format!("f{i}").as_str(),
                    OFlags::RDONLY,
                    Mode::empty(),
                )
                .unwrap();
                let mut buf = [0u8; 8];
                let n = rustix::io::read(&f, &mut buf).unwrap();
                assert_eq!(&buf[..n], i.to_string().as_bytes());
                cur = open_subdir(cur.as_fd(), OsStr::new(&long)).unwrap();
            }
            remove_tree(&dst).unwrap();
        }
        remove_tree(&src).unwrap();
    }
}

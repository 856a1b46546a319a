//! Directory-relative file-system primitives for building and copying trees.
//!
//! Every operation here works relative to a directory file descriptor and never follows a
//! symlink: nodes are inspected with `lstat`/`llistxattr`, owners set with
//! `fchownat(AT_SYMLINK_NOFOLLOW)`, times with `utimensat(AT_SYMLINK_NOFOLLOW)`, and
//! directories are entered with `O_NOFOLLOW | O_DIRECTORY` (or `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so whatever a tree holds, nothing is read or
//! written outside it.
//!
//! Extended attributes have no `*at` system calls before Linux 6.13: they are reached through
//! `/proc/self/fd/<dir>/<name>` with the `l*xattr` calls, which resolve the directory through
//! its descriptor and do not follow the final component.
//!
//! Walks are iterative: [`remove_tree`] and [`remove_node`] keep at most [`FD_WINDOW`]
//! directory descriptors open whatever the depth of the tree, [`copy_tree`] at most 3 per
//! thread (it reopens directories below its roots with [`open_dir_beneath`]).

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::archive::tar::Timestamp;
use crate::error::{Error, ErrorKind, Result};

/// How many directory descriptors a walk keeps open at most (deeper levels are reopened
/// from their nearest open ancestor when the walk comes back to them).
pub const FD_WINDOW: usize = 32;

/// The type of a file-system node, with what the type needs to be created.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A directory.
    Directory,
    /// A regular file.
    Regular,
    /// A symbolic link with its target.
    Symlink(Vec<u8>),
    /// A character device (major, minor).
    CharDevice(u64, u64),
    /// A block device (major, minor).
    BlockDevice(u64, u64),
    /// A FIFO.
    Fifo,
}

impl NodeKind {
    /// A short human name: `directory`, `character device`...
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Directory => "directory",
            NodeKind::Regular => "regular file",
            NodeKind::Symlink(_) => "symlink",
            NodeKind::CharDevice(..) => "character device",
            NodeKind::BlockDevice(..) => "block device",
            NodeKind::Fifo => "fifo",
        }
    }
}

/// The metadata of a node: what an archive member or `lstat` + xattrs say about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeMeta {
    /// Type of the node.
    pub kind: NodeKind,
    /// Permission bits plus setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Extended attributes (name, value), in the order they are applied.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the current process may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Privileges {
    /// Files may be given any owner.
    pub can_chown: bool,
    /// Device nodes may be created.
    pub can_mknod: bool,
    /// Opt-in: a device node or foreign owner that cannot be created is skipped with a warning
    /// instead of failing with [`ErrorKind::NeedsPrivilege`].
    pub skip_unprivileged: bool,
}

impl Privileges {
    /// The privileges of this process: all when its effective user ID is 0.
    pub fn detect() -> Privileges {
        let root = rustix::process::geteuid().is_root();
        Privileges {
            can_chown: root,
            can_mknod: root,
            skip_unprivileged: false,
        }
    }

    /// The same privileges, skipping what needs more than they allow (with a warning).
    pub fn skipping_unprivileged(self) -> Privileges {
        Privileges {
            skip_unprivileged: true,
            ..self
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// Errors and paths for messages

/// A path naming `name` in `dir`, for messages (`/proc/self/fd` tells where `dir` is).
fn display_path(dir: BorrowedFd, name: &OsStr) -> PathBuf {
    let link = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let base = std::fs::read_link(link).unwrap_or_default();
    if name.is_empty() || name == "." {
        base
    } else {
        base.join(name)
    }
}

fn os_error(context: impl std::fmt::Display, errno: Errno) -> Error {
    Error::io(context, std::io::Error::from(errno))
}

/// A [`ErrorKind::NeedsPrivilege`] error, or a warning when the caller opted to skip.
fn needs_privilege(
    what: String,
    privs: &Privileges,
    warnings: &mut Vec<String>,
    skipped: &str,
) -> Result<()> {
    if privs.skip_unprivileged {
        warnings.push(format!("{what} needs root: {skipped}"));
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::NeedsPrivilege,
            format!("{what} needs root; pass skip_unprivileged to skip it"),
        ))
    }
}

/// `/proc/self/fd/<dir>/<name>`: the path the `l*xattr` calls use for `name` in `dir`.
fn proc_path(dir: BorrowedFd, name: &OsStr) -> CString {
    let mut bytes = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    if name.is_empty() {
        bytes.push(b'.');
    } else {
        bytes.extend_from_slice(name.as_bytes());
    }
    // A file name never holds a NUL byte; one that does cannot be reached anyway.
    CString::new(bytes).unwrap_or_default()
}

fn check_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::new(
            ErrorKind::BadPath,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(())
}

fn to_timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.min(999_999_999) as _,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading metadata

/// `lstat` of `name` in `dir`.
pub fn lstat(dir: BorrowedFd, name: &OsStr) -> Result<rustix::fs::Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
        os_error(
            format!("cannot stat {}", display_path(dir, name).display()),
            e,
        )
    })
}

/// The extended attributes of `name` in `dir` (not following a symlink), sorted by name.
/// A file system without xattr support gives none.
pub fn read_xattrs(dir: BorrowedFd, name: &OsStr) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = proc_path(dir, name);
    let fail = |e: Errno| {
        os_error(
            format!(
                "cannot read the xattrs of {}",
                display_path(dir, name).display()
            ),
            e,
        )
    };
    read_xattrs_with(
        |buf| match buf {
            Some(buf) => rustix::fs::llistxattr(path.as_c_str(), buf),
            None => rustix::fs::llistxattr_query(path.as_c_str()),
        },
        |key, buf| match buf {
            Some(buf) => rustix::fs::lgetxattr(path.as_c_str(), key, buf),
            None => rustix::fs::lgetxattr_query(path.as_c_str(), key),
        },
    )
    .map_err(fail)
}

/// The extended attributes of the open node `fd`, sorted by name (none where the file system
/// has no xattr support).
fn read_xattrs_fd(fd: BorrowedFd) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    read_xattrs_with(
        |buf| match buf {
            Some(buf) => rustix::fs::flistxattr(fd, buf),
            None => rustix::fs::flistxattr_query(fd),
        },
        |key, buf| match buf {
            Some(buf) => rustix::fs::fgetxattr(fd, key, buf),
            None => rustix::fs::fgetxattr_query(fd, key),
        },
    )
    .map_err(|e| {
        os_error(
            format!(
                "cannot read the xattrs of {}",
                display_path(fd, OsStr::new("")).display()
            ),
            e,
        )
    })
}

/// Lists and reads xattrs with `list` and `get` (the `l*` or `f*` calls; `None` asks for
/// the size). The list is asked for once into a buffer big enough for nearly every node (a
/// node without xattrs costs one call), and again at the size the kernel gives when it does
/// not fit.
fn read_xattrs_with(
    list: impl Fn(Option<&mut [u8]>) -> rustix::io::Result<usize>,
    get: impl Fn(&CStr, Option<&mut [u8]>) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = [0u8; 1024];
    let mut big = Vec::new();
    let listed: &[u8] = match list(Some(&mut names[..])) {
        Ok(0) | Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Ok(n) => &names[..n],
        Err(Errno::RANGE) => loop {
            let size = match list(None) {
                Ok(0) | Err(Errno::NOTSUP) => return Ok(Vec::new()),
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            big.resize(size, 0);
            match list(Some(&mut big[..])) {
                Ok(n) => break &big[..n],
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        },
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; 256];
    for key in listed.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let key_c = CString::new(key).unwrap_or_default();
        loop {
            match get(key_c.as_c_str(), Some(&mut value[..])) {
                Ok(n) => {
                    out.push((key.to_vec(), value[..n].to_vec()));
                    break;
                }
                Err(Errno::RANGE) => {
                    let size = match get(key_c.as_c_str(), None) {
                        Ok(n) => n,
                        Err(Errno::NODATA) => break,
                        Err(e) => return Err(e),
                    };
                    value.resize(size.max(value.len() * 2), 0);
                }
                Err(Errno::NODATA) => break,
                Err(e) => return Err(e),
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The metadata `st` gives a node of `kind`, with `xattrs`.
fn meta_of(kind: NodeKind, st: &rustix::fs::Stat, xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> NodeMeta {
    NodeMeta {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: Timestamp {
            #[allow(clippy::unnecessary_cast)] // c_long is i32 on 32-bit targets
            secs: st.st_mtime as i64,
            nanos: st.st_mtime_nsec as u32,
        },
        xattrs,
    }
}

fn meta_from_stat(
    dir: BorrowedFd,
    name: &OsStr,
    st: &rustix::fs::Stat,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<NodeMeta> {
    let dev = || {
        (
            rustix::fs::major(st.st_rdev) as u64,
            rustix::fs::minor(st.st_rdev) as u64,
        )
    };
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => NodeKind::Directory,
        FileType::RegularFile => NodeKind::Regular,
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| {
                os_error(
                    format!(
                        "cannot read the symlink {}",
                        display_path(dir, name).display()
                    ),
                    e,
                )
            })?;
            NodeKind::Symlink(target.into_bytes())
        }
        FileType::CharacterDevice => {
            let (ma, mi) = dev();
            NodeKind::CharDevice(ma, mi)
        }
        FileType::BlockDevice => {
            let (ma, mi) = dev();
            NodeKind::BlockDevice(ma, mi)
        }
        FileType::Fifo => NodeKind::Fifo,
        _ => {
            return Err(Error::new(
                ErrorKind::UnsupportedEntryType,
                format!(
                    "{} is a socket or an unknown kind of file",
                    display_path(dir, name).display()
                ),
            ));
        }
    };
    Ok(meta_of(kind, st, xattrs))
}

/// The metadata of `name` in `dir` (`lstat` + `llistxattr`/`lgetxattr`; a symlink is not
/// followed). `name` may be `.` for `dir` itself.
pub fn read_meta(dir: BorrowedFd, name: &OsStr) -> Result<NodeMeta> {
    let st = lstat(dir, name)?;
    let xattrs = read_xattrs(dir, name)?;
    meta_from_stat(dir, name, &st, xattrs)
}

// ---------------------------------------------------------------------------------------------
// Applying metadata

/// Gives `name` in `dir` the owner, mode, xattrs and mtime of `meta`, in that order (`chown`
/// clears setuid/setgid and `security.capability`, so it comes first; the mtime comes last).
/// A symlink is never followed and gets no mode. The node's type is not checked against
/// `meta.kind`.
///
/// Without the privilege to set a foreign owner (or a privileged xattr), this fails with
/// [`ErrorKind::NeedsPrivilege`], or pushes a warning and goes on when
/// `privs.skip_unprivileged` is set.
pub fn apply_meta(
    dir: BorrowedFd,
    name: &OsStr,
    meta: &NodeMeta,
    privs: &Privileges,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let st = lstat(dir, name)?;
    let file_type = FileType::from_raw_mode(st.st_mode);
    let now = Current {
        uid: st.st_uid,
        gid: st.st_gid,
        set_mode: file_type != FileType::Symlink,
        special: !matches!(file_type, FileType::RegularFile | FileType::Directory),
    };
    set_meta(Target::At(dir, name), now, meta, privs, warnings)
}

/// The node [`set_meta`] changes: an open descriptor of it (not `O_PATH`), or a name in a
/// directory (never followed).
#[derive(Clone, Copy)]
enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

impl Target<'_> {
    fn shown(self) -> PathBuf {
        match self {
            Target::Fd(fd) => display_path(fd, OsStr::new("")),
            Target::At(dir, name) => display_path(dir, name),
        }
    }
}

/// What [`set_meta`] knows of the node before it: its owner, whether its mode must be set
/// (not for a symlink, nor for a node created with its final mode), and whether it is neither
/// a regular file nor a directory.
#[derive(Clone, Copy)]
struct Current {
    uid: u32,
    gid: u32,
    set_mode: bool,
    special: bool,
}

/// [`apply_meta`] without the `lstat`: the owner is changed only when it differs from
/// `now`'s, the mode only when `now.set_mode`.
fn set_meta(
    node: Target,
    now: Current,
    meta: &NodeMeta,
    privs: &Privileges,
    warnings: &mut Vec<String>,
) -> Result<()> {
    if now.uid != meta.uid || now.gid != meta.gid {
        // u32::MAX would mean "unchanged" to the kernel: accepted as a no-op.
        let uid = Some(rustix::fs::Uid::from_raw(meta.uid));
        let gid = Some(rustix::fs::Gid::from_raw(meta.gid));
        let done = match node {
            Target::Fd(fd) => rustix::fs::fchown(fd, uid, gid),
            Target::At(dir, name) => {
                rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        match done {
            Ok(()) => {}
            Err(Errno::PERM) => needs_privilege(
                format!(
                    "giving {} the owner {}:{}",
                    node.shown().display(),
                    meta.uid,
                    meta.gid
                ),
                privs,
                warnings,
                "it keeps its current owner",
            )?,
            Err(e) => {
                return Err(os_error(
                    format!("cannot change the owner of {}", node.shown().display()),
                    e,
                ));
            }
        }
    }
    if now.set_mode {
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        match node {
            Target::Fd(fd) => rustix::fs::fchmod(fd, mode),
            Target::At(dir, name) => rustix::fs::chmodat(dir, name, mode, AtFlags::empty()),
        }
        .map_err(|e| {
            os_error(
                format!("cannot change the mode of {}", node.shown().display()),
                e,
            )
        })?;
    }
    if !meta.xattrs.is_empty() {
        let path = match node {
            Target::Fd(_) => None,
            Target::At(dir, name) => Some(proc_path(dir, name)),
        };
        for (key, value) in &meta.xattrs {
            let key_os = OsStr::from_bytes(key);
            let flags = rustix::fs::XattrFlags::empty();
            let done = match (node, &path) {
                (Target::Fd(fd), _) => rustix::fs::fsetxattr(fd, key_os, value, flags),
                (_, Some(path)) => rustix::fs::lsetxattr(path.as_c_str(), key_os, value, flags),
                (_, None) => unreachable!("a path for a named node"),
            };
            match done {
                Ok(()) => {}
                Err(Errno::PERM) if now.special && key.starts_with(b"user.") => {
                    warnings.push(format!(
                        "{}: the xattr {} is not allowed on a {}; skipped",
                        node.shown().display(),
                        key_os.to_string_lossy(),
                        meta.kind.name()
                    ));
                }
                Err(Errno::PERM) => needs_privilege(
                    format!(
                        "setting the xattr {} of {}",
                        key_os.to_string_lossy(),
                        node.shown().display()
                    ),
                    privs,
                    warnings,
                    "it is left out",
                )?,
                Err(e) => {
                    return Err(os_error(
                        format!(
                            "cannot set the xattr {} of {}",
                            key_os.to_string_lossy(),
                            node.shown().display()
                        ),
                        e,
                    ));
                }
            }
        }
    }
    let times = Timestamps {
        last_access: to_timespec(meta.mtime),
        last_modification: to_timespec(meta.mtime),
    };
    match node {
        Target::Fd(fd) => rustix::fs::futimens(fd, &times),
        Target::At(dir, name) => {
            rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
        }
    }
    .map_err(|e| {
        os_error(
            format!("cannot set the mtime of {}", node.shown().display()),
            e,
        )
    })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Creating and removing nodes

/// Creates `name` in `dir` as `meta.kind` says, without applying its metadata (call
/// [`apply_meta`] after; for a directory, after its contents). A directory is created with
/// mode `0700` so that it can be filled; other nodes with `meta.mode & 0777` (less the umask).
/// A regular file is created empty (callers normally create and fill regular files
/// themselves). Fails if `name` exists.
///
/// Returns `false` when the node needs a privilege this process lacks and
/// `privs.skip_unprivileged` is set (a warning is pushed); without it that is a
/// [`ErrorKind::NeedsPrivilege`] error.
pub fn create_node(
    dir: BorrowedFd,
    name: &OsStr,
    meta: &NodeMeta,
    privs: &Privileges,
    warnings: &mut Vec<String>,
) -> Result<bool> {
    check_name(name)?;
    let perm = Mode::from_raw_mode(meta.mode & 0o777);
    let result = match &meta.kind {
        NodeKind::Directory => rustix::fs::mkdirat(dir, name, Mode::RWXU),
        NodeKind::Regular => rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            perm,
        )
        .map(drop),
        NodeKind::Symlink(target) => rustix::fs::symlinkat(OsStr::from_bytes(target), dir, name),
        NodeKind::CharDevice(ma, mi) | NodeKind::BlockDevice(ma, mi) => {
            let file_type = if matches!(meta.kind, NodeKind::CharDevice(..)) {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            let (Ok(ma32), Ok(mi32)) = (u32::try_from(*ma), u32::try_from(*mi)) else {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "device numbers {ma},{mi} of {} are too large",
                        display_path(dir, name).display()
                    ),
                ));
            };
            rustix::fs::mknodat(dir, name, file_type, perm, rustix::fs::makedev(ma32, mi32))
        }
        NodeKind::Fifo => rustix::fs::mknodat(dir, name, FileType::Fifo, perm, 0),
    };
    match result {
        Ok(()) => Ok(true),
        Err(Errno::PERM)
            if matches!(
                meta.kind,
                NodeKind::CharDevice(..) | NodeKind::BlockDevice(..)
            ) =>
        {
            needs_privilege(
                format!(
                    "creating the {} {}",
                    meta.kind.name(),
                    display_path(dir, name).display()
                ),
                privs,
                warnings,
                "skipped",
            )?;
            Ok(false)
        }
        Err(e) => Err(os_error(
            format!(
                "cannot create the {} {}",
                meta.kind.name(),
                display_path(dir, name).display()
            ),
            e,
        )),
    }
}

/// Removes `name` from `dir`: `unlinkat` for anything but a directory (a symlink to a
/// directory is unlinked, never followed); a directory is emptied recursively (entered with
/// `O_NOFOLLOW | O_DIRECTORY`, made writable first when it is read-only) and removed.
pub fn remove_node(dir: BorrowedFd, name: &OsStr) -> Result<()> {
    check_name(name)?;
    let st = lstat(dir, name)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| {
            os_error(
                format!("cannot remove {}", display_path(dir, name).display()),
                e,
            )
        });
    }
    let fd = open_subdir_writable(dir, name)?;
    remove_contents(fd)?;
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| {
        os_error(
            format!("cannot remove {}", display_path(dir, name).display()),
            e,
        )
    })
}

/// Removes the tree at `path` (a directory or any other node), even with read-only
/// directories and files in it; the last component of `path` and everything below it are
/// never followed if they are symlinks. A missing `path` is [`ErrorKind::NotFound`].
pub fn remove_tree(path: &Path) -> Result<()> {
    let (parent, name) = split_parent(path)?;
    remove_node(parent.as_fd(), &name)
}

/// Opens the parent of `path` (following symlinks: the caller chose that path) and returns
/// it with the last component.
fn split_parent(path: &Path) -> Result<(OwnedFd, OsString)> {
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n.to_os_string(),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{} does not end with a file name", path.display()),
            ));
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| os_error(format!("cannot open {}", parent.display()), e))?;
    Ok((fd, name))
}

fn open_subdir(dir: BorrowedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory `name` in `dir` for removing its entries: gives it `u+rwx` first when
/// this process could not otherwise (a read-only tree made by an unprivileged user).
fn open_subdir_writable(dir: BorrowedFd, name: &OsStr) -> Result<OwnedFd> {
    let fail = |e: Errno| {
        os_error(
            format!(
                "cannot open the directory {}",
                display_path(dir, name).display()
            ),
            e,
        )
    };
    let fd = match open_subdir(dir, name) {
        Ok(fd) => fd,
        Err(Errno::ACCESS) => {
            // O_PATH needs no permission; chmod through /proc reaches the directory itself.
            let path_fd = rustix::fs::openat(
                dir,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail)?;
            let st = rustix::fs::fstat(&path_fd).map_err(fail)?;
            let proc = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
            rustix::fs::chmod(
                proc.as_str(),
                Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700),
            )
            .map_err(fail)?;
            open_subdir(dir, name).map_err(fail)?
        }
        Err(e) => return Err(fail(e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(fail)?;
    if st.st_mode & 0o700 != 0o700 && !rustix::process::geteuid().is_root() {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700))
            .map_err(fail)?;
    }
    Ok(fd)
}

/// The entries of the directory `dir` (without `.` and `..`), sorted by name, with their
/// types (`lstat`ed when the directory entry does not say).
fn list_dir(dir: BorrowedFd) -> Result<Vec<(OsString, FileType)>> {
    let fail = |e: Errno| {
        os_error(
            format!(
                "cannot read the directory {}",
                display_path(dir, OsStr::new("")).display()
            ),
            e,
        )
    };
    list_dir_with(dir, fail, |name| lstat(dir, name))
}

/// The entries of the directory `dir` (without `.` and `..`), sorted by name, with their
/// types (found by `lstat` when the directory entry does not say); `fail` makes the error
/// of a failed read. [`list_dir`] and its like elsewhere differ only in their errors.
pub(crate) fn list_dir_with<E>(
    dir: BorrowedFd,
    fail: impl Fn(Errno) -> E,
    lstat: impl Fn(&OsStr) -> std::result::Result<rustix::fs::Stat, E>,
) -> std::result::Result<Vec<(OsString, FileType)>, E> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(&fail)? {
        let entry = entry.map_err(&fail)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from_vec(name.to_vec());
        let mut ty = entry.file_type();
        if ty == FileType::Unknown {
            ty = FileType::from_raw_mode(lstat(&name)?.st_mode);
        }
        out.push((name, ty));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A chain of directories from a base descriptor, keeping at most [`FD_WINDOW`] of them open.
struct FdChain {
    base: OwnedFd,
    names: Vec<OsString>,
    fds: Vec<Option<OwnedFd>>,
}

impl FdChain {
    fn new(base: OwnedFd) -> FdChain {
        FdChain {
            base,
            names: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// Enters `name`, already opened as `fd`.
    fn push(&mut self, name: OsString, fd: OwnedFd) {
        self.names.push(name);
        self.fds.push(Some(fd));
        let n = self.fds.len();
        if n > FD_WINDOW {
            self.fds[n - 1 - FD_WINDOW] = None;
        }
    }

    /// Leaves the deepest directory, returning its name.
    fn pop(&mut self) -> Option<OsString> {
        self.fds.pop();
        self.names.pop()
    }

    /// The descriptor of the deepest directory, reopened when it was closed.
    fn top(&mut self) -> Result<BorrowedFd<'_>> {
        let n = self.fds.len();
        if n == 0 {
            return Ok(self.base.as_fd());
        }
        if self.fds[n - 1].is_none() {
            let start = (0..n).rev().find(|&i| self.fds[i].is_some());
            let mut cur: Option<OwnedFd> = None;
            let first = start.map_or(0, |i| i + 1);
            for i in first..n {
                let parent = match (&cur, start) {
                    (Some(fd), _) => fd.as_fd(),
                    (None, Some(s)) => self.fds[s].as_ref().unwrap().as_fd(),
                    (None, None) => self.base.as_fd(),
                };
                let fd = open_subdir(parent, &self.names[i]).map_err(|e| {
                    os_error(
                        format!(
                            "cannot reopen the directory {}",
                            display_path(parent, &self.names[i]).display()
                        ),
                        e,
                    )
                })?;
                cur = Some(fd);
            }
            self.fds[n - 1] = cur;
        }
        Ok(self.fds[n - 1].as_ref().unwrap().as_fd())
    }
}

/// Empties the directory `fd` (iteratively, any depth).
fn remove_contents(fd: OwnedFd) -> Result<()> {
    let mut chain = FdChain::new(fd);
    let mut pending: Vec<Vec<OsString>> = vec![drain_dir(chain.top()?)?];
    loop {
        let next = pending.last_mut().and_then(|p| p.pop());
        match next {
            Some(name) => {
                let sub = open_subdir_writable(chain.top()?, &name)?;
                chain.push(name, sub);
                pending.push(drain_dir(chain.top()?)?);
            }
            None => {
                pending.pop();
                let Some(name) = chain.pop() else { break };
                let parent = chain.top()?;
                rustix::fs::unlinkat(parent, &name, AtFlags::REMOVEDIR).map_err(|e| {
                    os_error(
                        format!("cannot remove {}", display_path(parent, &name).display()),
                        e,
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// Unlinks every non-directory in `dir`, returning the names of its subdirectories.
fn drain_dir(dir: BorrowedFd) -> Result<Vec<OsString>> {
    let mut subdirs = Vec::new();
    for (name, ty) in list_dir(dir)? {
        if ty == FileType::Directory {
            subdirs.push(name);
            continue;
        }
        match rustix::fs::unlinkat(dir, &name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(os_error(
                    format!("cannot remove {}", display_path(dir, &name).display()),
                    e,
                ));
            }
        }
    }
    subdirs.reverse(); // popped from the end: visit in name order
    Ok(subdirs)
}

// ---------------------------------------------------------------------------------------------
// Opening directories beneath a root

/// Whether `rel` below `root` is a symlink (its parent reached without following any).
fn ends_in_symlink(root: BorrowedFd, rel: &Path) -> bool {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return false;
    };
    open_dir_beneath(root, parent).is_ok_and(|fd| {
        lstat(fd.as_fd(), name)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    })
}

static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// Opens the directory `rel` below `root` without ever leaving it: `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, or, on kernels without
/// `openat2` (and for a path longer than `PATH_MAX`), one `openat(O_NOFOLLOW | O_DIRECTORY)`
/// per component. An empty `rel` (or `.`)
/// opens `root` itself. A symlink component, a `..` component or an absolute path is
/// [`ErrorKind::PathTraversal`]; a component that is not a directory is
/// [`ErrorKind::ParentNotDirectory`].
pub fn open_dir_beneath(root: BorrowedFd, rel: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let refused = |e: Errno| -> Error {
        let shown = display_path(root, rel.as_os_str());
        match e {
            Errno::LOOP | Errno::XDEV => Error::new(
                ErrorKind::PathTraversal,
                format!(
                    "{} leads through a symlink or out of its tree",
                    shown.display()
                ),
            ),
            Errno::NOTDIR if ends_in_symlink(root, rel) => Error::new(
                ErrorKind::PathTraversal,
                format!("{} is a symlink", shown.display()),
            ),
            Errno::NOTDIR => Error::new(
                ErrorKind::ParentNotDirectory,
                format!("{} is not a directory", shown.display()),
            ),
            e => os_error(format!("cannot open the directory {}", shown.display()), e),
        }
    };
    if rel.as_os_str().is_empty() || rel == Path::new(".") {
        return rustix::fs::openat(root, ".", flags, Mode::empty()).map_err(refused);
    }
    if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
        return Err(Error::new(
            ErrorKind::PathTraversal,
            format!("{} is not a path beneath its root", rel.display()),
        ));
    }
    if !OPENAT2_MISSING.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        loop {
            match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                Err(Errno::NOSYS) => {
                    OPENAT2_MISSING.store(true, Ordering::Relaxed);
                    break;
                }
                // Longer than PATH_MAX: one component at a time below.
                Err(Errno::NAMETOOLONG) => break,
                Err(e) => return Err(refused(e)),
            }
        }
    }
    let mut cur: Option<OwnedFd> = None;
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            continue;
        };
        let parent = cur.as_ref().map_or(root, |fd| fd.as_fd());
        let fd = rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(refused)?;
        cur = Some(fd);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", flags, Mode::empty()).map_err(refused),
    }
}

// ---------------------------------------------------------------------------------------------
// Copying file contents

/// Creates `name` in `dir` as a new, empty regular file open for writing.
pub fn create_file(dir: BorrowedFd, name: &OsStr) -> Result<File> {
    check_name(name)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| {
        os_error(
            format!("cannot create {}", display_path(dir, name).display()),
            e,
        )
    })?;
    Ok(File::from(fd))
}

/// Opens the regular file `name` in `dir` for reading, refusing a symlink.
pub fn open_file(dir: BorrowedFd, name: &OsStr) -> Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        os_error(
            format!("cannot open {}", display_path(dir, name).display()),
            e,
        )
    })?;
    Ok(File::from(fd))
}

/// Whether an error from `FICLONE` means the file systems cannot clone.
fn cannot_reflink(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::NOSYS | Errno::BADF
    )
}

/// Clones `src` into `dst` (`FICLONE`); [`ErrorKind::InvalidArgument`] "the file system cannot
/// reflink" when the file system does not support it.
pub fn reflink_file(src: &File, dst: &File) -> Result<()> {
    match rustix::fs::ioctl_ficlone(dst, src) {
        Ok(()) => Ok(()),
        Err(e) if cannot_reflink(e) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the file system cannot reflink ({e})"),
        )
        .with_source(std::io::Error::from(e))),
        Err(e) => Err(os_error("cannot reflink a file", e)),
    }
}

/// Copies `len` bytes from `src` at `off_in` to `dst` at `off_out` (`copy_file_range`, with a
/// read/write fallback).
pub fn copy_range(
    src: &File,
    mut off_in: u64,
    dst: &File,
    mut off_out: u64,
    len: u64,
) -> Result<()> {
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    "the source file is shorter than it was (changed while copied?)",
                ));
            }
            Ok(n) => left -= n as u64,
            Err(Errno::INTR) => continue,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM) => {
                return copy_range_rw(src, off_in, dst, off_out, left);
            }
            Err(e) => return Err(os_error("cannot copy a file", e)),
        }
    }
    Ok(())
}

fn copy_range_rw(src: &File, off_in: u64, dst: &File, off_out: u64, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = src
            .read_at(&mut buf[..want], off_in + done)
            .map_err(|e| Error::io("cannot read a file", e))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::Io,
                "the source file is shorter than it was (changed while copied?)",
            ));
        }
        dst.write_all_at(&buf[..n], off_out + done)
            .map_err(|e| Error::io("cannot write a file", e))?;
        done += n as u64;
    }
    Ok(())
}

/// Copies the whole content of `src` (of `size` bytes) into the empty file `dst`, keeping
/// holes when `src` has some.
pub fn copy_file_data(src: &File, dst: &File, size: u64) -> Result<()> {
    let st = rustix::fs::fstat(src).map_err(|e| os_error("cannot stat a file", e))?;
    copy_file_data_blocks(src, dst, size, st.st_blocks as u64)
}

/// [`copy_file_data`] for a source whose `st_blocks` is known.
fn copy_file_data_blocks(src: &File, dst: &File, size: u64, blocks: u64) -> Result<()> {
    let sparse = blocks.saturating_mul(512) < size;
    if !sparse {
        return copy_range(src, 0, dst, 0, size);
    }
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(src, rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL) if pos == 0 => return copy_range(src, 0, dst, 0, size),
            Err(e) => return Err(os_error("cannot seek in a file", e)),
        };
        if data >= size {
            break;
        }
        let hole = match rustix::fs::seek(src, rustix::fs::SeekFrom::Hole(data)) {
            Ok(h) => h.min(size),
            Err(e) => return Err(os_error("cannot seek in a file", e)),
        };
        copy_range(src, data, dst, data, hole - data)?;
        pos = hole;
    }
    rustix::fs::ftruncate(dst, size).map_err(|e| os_error("cannot set a file's size", e))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Copying trees

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
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn dir_fd(path: &Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    fn meta(kind: NodeKind, mode: u32, secs: i64, nanos: u32) -> NodeMeta {
        NodeMeta {
            kind,
            mode,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            mtime: Timestamp { secs, nanos },
            xattrs: Vec::new(),
        }
    }

    fn user_xattrs(m: &NodeMeta) -> Vec<(Vec<u8>, Vec<u8>)> {
        m.xattrs
            .iter()
            .filter(|(k, _)| k.starts_with(b"user."))
            .cloned()
            .collect()
    }

    /// Creates every kind of node, applies metadata and reads it back.
    #[test]
    fn create_apply_read_every_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_fd(tmp.path());
        let privs = Privileges::detect();
        let mut warnings = Vec::new();
        let mut nodes = vec![
            ("d", {
                let mut m = meta(NodeKind::Directory, 0o1777, 1_600_000_000, 123_456_789);
                m.xattrs = vec![(b"user.dir".to_vec(), b"d".to_vec())];
                m
            }),
            ("f", {
                let mut m = meta(NodeKind::Regular, 0o4755, -5, 1);
                m.xattrs = vec![
                    (b"user.a".to_vec(), b"1".to_vec()),
                    (b"user.b".to_vec(), Vec::new()),
                ];
                m
            }),
            ("g", meta(NodeKind::Regular, 0o2640, 0, 999_999_999)),
            (
                "l",
                meta(
                    NodeKind::Symlink(b"../no/such/target".to_vec()),
                    0o777,
                    42,
                    500,
                ),
            ),
            ("p", meta(NodeKind::Fifo, 0o600, 7, 0)),
        ];
        if is_root() {
            let mut c = meta(NodeKind::CharDevice(1, 3), 0o666, 8, 0);
            c.uid = 1234;
            c.gid = 5678;
            nodes.push(("c", c));
            nodes.push(("b", meta(NodeKind::BlockDevice(7, 1000), 0o660, 9, 9)));
            let mut owned = meta(NodeKind::Regular, 0o6755, 10, 10);
            owned.uid = 4321;
            owned.gid = 8765;
            nodes.push(("owned", owned));
        }
        for (name, m) in &nodes {
            let name = OsStr::new(name);
            assert!(create_node(dir.as_fd(), name, m, &privs, &mut warnings).unwrap());
            apply_meta(dir.as_fd(), name, m, &privs, &mut warnings).unwrap();
        }
        assert!(warnings.is_empty(), "{warnings:?}");
        for (name, m) in &nodes {
            let got = read_meta(dir.as_fd(), OsStr::new(name)).unwrap();
            let NodeMeta { xattrs, .. } = m;
            assert_eq!(got.kind, m.kind, "{name}");
            if !matches!(m.kind, NodeKind::Symlink(_)) {
                assert_eq!(got.mode, m.mode, "{name}");
            }
            assert_eq!((got.uid, got.gid), (m.uid, m.gid), "{name}");
            assert_eq!(got.mtime, m.mtime, "{name}");
            assert_eq!(&user_xattrs(&got), xattrs, "{name}");
        }
        // Creating over an existing node fails; names with a slash are refused.
        let f = &nodes[1].1;
        assert!(create_node(dir.as_fd(), OsStr::new("f"), f, &privs, &mut warnings).is_err());
        let err = create_node(dir.as_fd(), OsStr::new("a/b"), f, &privs, &mut warnings);
        assert_eq!(err.unwrap_err().kind(), ErrorKind::BadPath);
    }

    /// A symlink's metadata is applied to the link, never to its target.
    #[test]
    fn apply_meta_never_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_fd(tmp.path());
        std::fs::write(tmp.path().join("target"), b"x").unwrap();
        std::fs::set_permissions(
            tmp.path().join("target"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let before = std::fs::metadata(tmp.path().join("target")).unwrap();
        let m = meta(NodeKind::Symlink(b"target".to_vec()), 0o777, 1000, 5);
        let privs = Privileges::detect();
        let mut warnings = Vec::new();
        create_node(dir.as_fd(), OsStr::new("link"), &m, &privs, &mut warnings).unwrap();
        let mut m2 = m.clone();
        m2.mode = 0o4000;
        apply_meta(dir.as_fd(), OsStr::new("link"), &m2, &privs, &mut warnings).unwrap();
        let after = std::fs::metadata(tmp.path().join("target")).unwrap();
        assert_eq!(before.mode(), after.mode());
        assert_eq!(before.mtime(), after.mtime());
        let link = std::fs::symlink_metadata(tmp.path().join("link")).unwrap();
        assert_eq!((link.mtime(), link.mtime_nsec()), (1000, 5));
    }

    #[test]
    fn open_dir_beneath_refuses_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("d", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("..", root.join("d/up")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        let fd = dir_fd(&root);
        let fd = fd.as_fd();
        assert!(open_dir_beneath(fd, Path::new("d/e")).is_ok());
        assert!(open_dir_beneath(fd, Path::new("./d/./e/")).is_ok());
        assert!(open_dir_beneath(fd, Path::new("")).is_ok());
        for bad in [
            "abs", "rel", "rel/e", "d/up", "d/up/d", "../root", "d/../d", "/tmp",
        ] {
            let err = open_dir_beneath(fd, Path::new(bad)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PathTraversal, "{bad}: {err}");
        }
        let err = open_dir_beneath(fd, Path::new("file/x")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ParentNotDirectory, "{err}");
        let err = open_dir_beneath(fd, Path::new("file")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ParentNotDirectory, "{err}");
        assert_eq!(
            open_dir_beneath(fd, Path::new("nope")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // The walking fallback refuses the same.
        OPENAT2_MISSING.store(true, Ordering::Relaxed);
        for bad in ["abs", "rel", "rel/e", "d/up", "d/up/d"] {
            let err = open_dir_beneath(fd, Path::new(bad)).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::PathTraversal | ErrorKind::ParentNotDirectory
                ),
                "{bad}: {err}"
            );
        }
        assert!(open_dir_beneath(fd, Path::new("d/e")).is_ok());
        OPENAT2_MISSING.store(false, Ordering::Relaxed);
    }

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

    #[test]
    fn remove_tree_read_only_and_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let root = tmp.path().join("tree");
        std::fs::create_dir_all(root.join("ro/sub")).unwrap();
        std::fs::write(root.join("ro/sub/f"), b"f").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("ro/to-outside")).unwrap();
        for (p, m) in [("ro/sub/f", 0o444), ("ro/sub", 0o555), ("ro", 0o000)] {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap();
        }
        // A symlink as the tree itself is removed, not followed.
        std::os::unix::fs::symlink(&outside, tmp.path().join("link")).unwrap();
        remove_tree(&tmp.path().join("link")).unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"k");
        assert_eq!(remove_tree(&root).unwrap_err().kind(), ErrorKind::NotFound);
        // remove_node on a file and a directory.
        let fd = dir_fd(tmp.path());
        remove_node(fd.as_fd(), OsStr::new("outside")).unwrap();
        assert!(!outside.exists());
    }

    /// Runs `test` of this test binary again as `nobody` with `dir` in `ACIKIT_CHILD_DIR`;
    /// `None` when that is impossible (not root, no `setpriv`).
    fn run_as_nobody(test: &str, dir: &Path) -> Option<std::process::Output> {
        let exe = std::env::current_exe().ok()?;
        let found = std::process::Command::new("sh")
            .args(["-c", "command -v setpriv"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !is_root() || !found {
            return None;
        }
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("ACIKIT_CHILD_DIR", dir)
            .output()
            .ok()?;
        Some(out)
    }

    #[test]
    fn unprivileged_needs_root_or_skips() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let Some(out) = run_as_nobody("fs::tests::unprivileged_child", tmp.path()) else {
            eprintln!("skipped: needs root and setpriv to run a child as nobody");
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD OK"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The unprivileged half of [`unprivileged_needs_root_or_skips`] (does nothing unless run
    /// by it).
    #[test]
    fn unprivileged_child() {
        let Some(dir) = std::env::var_os("ACIKIT_CHILD_DIR") else {
            return;
        };
        assert!(!is_root());
        let dir = PathBuf::from(dir);
        let fd = dir_fd(&dir);
        let privs = Privileges::detect();
        assert!(!privs.can_chown && !privs.can_mknod && !privs.skip_unprivileged);
        let mut warnings = Vec::new();
        // A device node: an error naming it, or a warning and a skip.
        let dev = meta(NodeKind::CharDevice(1, 3), 0o666, 0, 0);
        let err =
            create_node(fd.as_fd(), OsStr::new("null"), &dev, &privs, &mut warnings).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NeedsPrivilege);
        assert!(
            err.message().contains("character device") && err.message().contains("null"),
            "{err}"
        );
        let skip = privs.skipping_unprivileged();
        assert!(!create_node(fd.as_fd(), OsStr::new("null"), &dev, &skip, &mut warnings).unwrap());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(!dir.join("null").exists());
        // A foreign owner: the same; the rest of the metadata is still applied when skipping.
        let mut owned = meta(NodeKind::Regular, 0o640, 1234, 5);
        owned.uid = 0;
        create_node(fd.as_fd(), OsStr::new("f"), &owned, &privs, &mut warnings).unwrap();
        let err =
            apply_meta(fd.as_fd(), OsStr::new("f"), &owned, &privs, &mut warnings).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NeedsPrivilege, "{err}");
        apply_meta(fd.as_fd(), OsStr::new("f"), &owned, &skip, &mut warnings).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let got = read_meta(fd.as_fd(), OsStr::new("f")).unwrap();
        assert_eq!((got.mode, got.mtime), (0o640, owned.mtime));
        // A read-only tree of ours is removed.
        let tree = dir.join("ro");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), b"x").unwrap();
        for (p, m) in [("a/b/f", 0o400), ("a/b", 0o500), ("a", 0o000), ("", 0o500)] {
            std::fs::set_permissions(
                tree.join(p),
                std::os::unix::fs::PermissionsExt::from_mode(m),
            )
            .unwrap();
        }
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        println!("CHILD OK");
    }
}

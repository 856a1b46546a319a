//! Walking directories safely: opening a directory beneath a root without leaving it, opening
//! the parent of a path, listing a directory, and chains of directory descriptors that keep at
//! most [`FD_WINDOW`] open.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::meta::lstat;
use super::names::{display_path, os_error};
use crate::error::{Error, ErrorKind, Result};

/// How many directory descriptors a walk keeps open at most (deeper levels are reopened
/// from their nearest open ancestor when the walk comes back to them).
pub const FD_WINDOW: usize = 32;

/// Opens the parent of `path` (following symlinks: the caller chose that path) and returns
/// it with the last component.
pub(super) fn split_parent(path: &Path) -> Result<(OwnedFd, OsString)> {
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

pub(super) fn open_subdir(dir: BorrowedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The entries of the directory `dir` (without `.` and `..`), sorted by name, with their
/// types (`lstat`ed when the directory entry does not say).
pub(super) fn list_dir(dir: BorrowedFd) -> Result<Vec<(OsString, FileType)>> {
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
pub(super) struct FdChain {
    base: OwnedFd,
    names: Vec<OsString>,
    fds: Vec<Option<OwnedFd>>,
}

impl FdChain {
    pub(super) fn new(base: OwnedFd) -> FdChain {
        FdChain {
            base,
            names: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// Enters `name`, already opened as `fd`.
    pub(super) fn push(&mut self, name: OsString, fd: OwnedFd) {
        self.names.push(name);
        self.fds.push(Some(fd));
        let n = self.fds.len();
        if n > FD_WINDOW {
            self.fds[n - 1 - FD_WINDOW] = None;
        }
    }

    /// Leaves the deepest directory, returning its name.
    pub(super) fn pop(&mut self) -> Option<OsString> {
        self.fds.pop();
        self.names.pop()
    }

    /// The descriptor of the deepest directory, reopened when it was closed.
    pub(super) fn top(&mut self) -> Result<BorrowedFd<'_>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::test_support::dir_fd;

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
}

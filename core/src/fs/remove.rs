//! Removing a node or a whole tree, even a read-only one, never following a symlink; at most
//! [`FD_WINDOW`](super::walk::FD_WINDOW) directory descriptors open whatever the depth.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::meta::lstat;
use super::names::{check_name, display_path, os_error};
use super::walk::{FdChain, list_dir, open_subdir, split_parent};
use crate::error::Result;

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
/// never followed if they are symlinks. A missing `path` is
/// [`ErrorKind::NotFound`](crate::error::ErrorKind::NotFound).
pub fn remove_tree(path: &Path) -> Result<()> {
    let (parent, name) = split_parent(path)?;
    remove_node(parent.as_fd(), &name)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::fs::test_support::dir_fd;

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
}

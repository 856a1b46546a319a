//! Naming nodes: the path a message shows for a name in a directory, the error of a failed
//! system call on it, and the check that a name is a single file name.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::io::Errno;

use crate::error::{Error, ErrorKind, Result};

/// A path naming `name` in `dir`, for messages (`/proc/self/fd` tells where `dir` is).
pub(super) fn display_path(dir: BorrowedFd, name: &OsStr) -> PathBuf {
    let link = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let base = std::fs::read_link(link).unwrap_or_default();
    if name.is_empty() || name == "." {
        base
    } else {
        base.join(name)
    }
}

pub(super) fn os_error(context: impl std::fmt::Display, errno: Errno) -> Error {
    Error::io(context, std::io::Error::from(errno))
}

/// Refuses `name` unless it is a single file name (not empty, `.`, `..`, nor holding a
/// slash or a NUL byte): [`ErrorKind::BadPath`].
pub(super) fn check_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::new(
            ErrorKind::BadPath,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(())
}

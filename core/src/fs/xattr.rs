//! Reading extended attributes (writing them is part of applying metadata). They have no
//! `*at` system calls before Linux 6.13: a node named in a directory is reached through
//! `/proc/self/fd/<dir>/<name>` with the `l*xattr` calls.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::io::Errno;

use super::names::{display_path, os_error};
use crate::error::Result;

/// `/proc/self/fd/<dir>/<name>`: the path the `l*xattr` calls use for `name` in `dir`.
pub(super) fn proc_path(dir: BorrowedFd, name: &OsStr) -> CString {
    let mut bytes = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    if name.is_empty() {
        bytes.push(b'.');
    } else {
        bytes.extend_from_slice(name.as_bytes());
    }
    // A file name never holds a NUL byte; one that does cannot be reached anyway.
    CString::new(bytes).unwrap_or_default()
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
pub(super) fn read_xattrs_fd(fd: BorrowedFd) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
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

//! Node metadata: the type of a node ([`NodeKind`]), what `lstat` and the xattrs say about it
//! ([`NodeMeta`]), and reading it without following a symlink.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, FileType};

use super::names::{display_path, os_error};
use super::xattr::read_xattrs;
use crate::archive::tar::Timestamp;
use crate::error::{Error, ErrorKind, Result};

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

/// `lstat` of `name` in `dir`.
pub fn lstat(dir: BorrowedFd, name: &OsStr) -> Result<rustix::fs::Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
        os_error(
            format!("cannot stat {}", display_path(dir, name).display()),
            e,
        )
    })
}

/// The metadata `st` gives a node of `kind`, with `xattrs`.
pub(super) fn meta_of(
    kind: NodeKind,
    st: &rustix::fs::Stat,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
) -> NodeMeta {
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

pub(super) fn meta_from_stat(
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

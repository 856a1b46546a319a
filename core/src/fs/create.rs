//! Creating a node of any kind (its metadata is applied afterwards).

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::meta::{NodeKind, NodeMeta};
use super::names::{check_name, display_path, os_error};
use super::privileges::{Privileges, needs_privilege};
use crate::error::{Error, ErrorKind, Result};

/// Creates `name` in `dir` as `meta.kind` says, without applying its metadata (call
/// [`apply_meta`](super::apply_meta) after; for a directory, after its contents). A directory
/// is created with mode `0700` so that it can be filled; other nodes with `meta.mode & 0777`
/// (less the umask).
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

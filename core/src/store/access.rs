//! Whether a store can be written: a store on a read-only mount (a read-only bind mount or
//! NFS export, read-only media), in a folder this user cannot write, or opened read-only on
//! purpose ([`crate::store::StoreOptions::read_only`]) serves every read and refuses every
//! write at once with [`ErrorKind::ReadOnlyStore`].

use std::path::Path;

use rustix::fs::{Access, AtFlags, StatVfsMountFlags};
use rustix::io::Errno;

use crate::{Error, ErrorKind, Result};

/// Why a store is read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnlyReason {
    /// The caller asked for it (`StoreOptions::read_only`, `acikit --read-only`).
    Asked,
    /// The store folder is on a read-only mount (`statvfs` reports `ST_RDONLY`).
    ReadOnlyMount,
    /// This user may not write the store folder (`access(W_OK)` fails).
    NotWritable,
}

impl std::fmt::Display for ReadOnlyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadOnlyReason::Asked => "opened read-only",
            ReadOnlyReason::ReadOnlyMount => "on a read-only mount",
            ReadOnlyReason::NotWritable => "a folder this user cannot write",
        })
    }
}

/// Whether the existing store folder `root` is read-only, and why; `None` when it can be
/// written or does not exist (it will be created). Asked-for read-only wins.
pub fn detect(root: &Path, asked: bool) -> Result<Option<ReadOnlyReason>> {
    if asked {
        return Ok(Some(ReadOnlyReason::Asked));
    }
    match rustix::fs::statvfs(root) {
        Ok(st) if st.f_flag.contains(StatVfsMountFlags::RDONLY) => {
            return Ok(Some(ReadOnlyReason::ReadOnlyMount));
        }
        Ok(_) => {}
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => {
            return Err(Error::io(
                format!("checking the store folder {}", root.display()),
                e.into(),
            ));
        }
    }
    match rustix::fs::accessat(rustix::fs::CWD, root, Access::WRITE_OK, AtFlags::EACCESS) {
        Ok(()) => Ok(None),
        Err(Errno::ACCESS | Errno::PERM | Errno::ROFS) => Ok(Some(ReadOnlyReason::NotWritable)),
        Err(e) => Err(Error::io(
            format!("checking the store folder {}", root.display()),
            e.into(),
        )),
    }
}

/// The error of a write refused on the read-only store at `root`: `operation` says what
/// was refused ("import", "remove images", ...).
pub fn refused(root: &Path, reason: &ReadOnlyReason, operation: &str) -> Error {
    Error::new(
        ErrorKind::ReadOnlyStore,
        format!(
            "cannot {operation}: the store at {} is read-only ({reason}); nothing was changed",
            root.display()
        ),
    )
}

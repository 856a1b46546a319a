//! Helpers the unit tests of the `fs` modules share.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::meta::{NodeKind, NodeMeta};
use crate::archive::tar::Timestamp;

/// Whether this process runs as root.
pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// An open descriptor of the directory `path`.
pub(super) fn dir_fd(path: &Path) -> OwnedFd {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// Metadata of `kind` owned by this process.
pub(super) fn meta(kind: NodeKind, mode: u32, secs: i64, nanos: u32) -> NodeMeta {
    NodeMeta {
        kind,
        mode,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        mtime: Timestamp { secs, nanos },
        xattrs: Vec::new(),
    }
}

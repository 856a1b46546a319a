//! Applying metadata to a node: owner, mode, xattrs and mtime, in that order, never following
//! a symlink.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};
use rustix::io::Errno;

use super::meta::{NodeMeta, lstat};
use super::names::{display_path, os_error};
use super::privileges::{Privileges, needs_privilege};
use super::xattr::proc_path;
use crate::archive::tar::Timestamp;
use crate::error::Result;

fn to_timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.min(999_999_999) as _,
    }
}

/// Gives `name` in `dir` the owner, mode, xattrs and mtime of `meta`, in that order (`chown`
/// clears setuid/setgid and `security.capability`, so it comes first; the mtime comes last).
/// A symlink is never followed and gets no mode. The node's type is not checked against
/// `meta.kind`.
///
/// Without the privilege to set a foreign owner (or a privileged xattr), this fails with
/// [`ErrorKind::NeedsPrivilege`](crate::error::ErrorKind::NeedsPrivilege), or pushes a
/// warning and goes on when `privs.skip_unprivileged` is set.
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
pub(super) enum Target<'a> {
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
pub(super) struct Current {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) set_mode: bool,
    pub(super) special: bool,
}

/// [`apply_meta`] without the `lstat`: the owner is changed only when it differs from
/// `now`'s, the mode only when `now.set_mode`.
pub(super) fn set_meta(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::fs::create::create_node;
    use crate::fs::meta::{NodeKind, read_meta};
    use crate::fs::test_support::{dir_fd, is_root, meta};
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

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
}

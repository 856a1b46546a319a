//! What the current process may create, and the error (or warning) when it may not.

use crate::error::{Error, ErrorKind, Result};

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

/// A [`ErrorKind::NeedsPrivilege`] error, or a warning when the caller opted to skip.
pub(super) fn needs_privilege(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::apply::apply_meta;
    use crate::fs::create::create_node;
    use crate::fs::meta::{NodeKind, read_meta};
    use crate::fs::remove::remove_tree;
    use crate::fs::test_support::{dir_fd, is_root, meta};
    use std::ffi::OsStr;
    use std::os::fd::AsFd;
    use std::path::{Path, PathBuf};

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
        // The child's name as the test harness knows it: this module's path without the crate.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let child = format!("{module}::unprivileged_child");
        let Some(out) = run_as_nobody(&child, tmp.path()) else {
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

//! The read-only bind mount that protects a `hardlink` run: its files share their inodes
//! with the store's checkout cache, so a write through the run (even by root, the usual
//! user of a rootfs) would change the cache and every later render. Mounted over the run's
//! target (bind, then remount `MS_BIND | MS_RDONLY`), any write there fails with `EROFS`.

use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::error::{Error, ErrorKind, Result};

/// `CAP_SYS_ADMIN`, the capability `mount(2)` needs.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process may mount (it has `CAP_SYS_ADMIN` in its effective set, as root
/// usually has): a cheap test before any work, the mount itself being the real one.
pub fn can_mount() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return rustix::process::geteuid().is_root();
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Mounts `target` read-only on itself. On error nothing is left mounted; the error is
/// [`ErrorKind::NeedsPrivilege`] when mounting is not allowed, [`ErrorKind::Unsupported`]
/// otherwise.
pub fn mount_read_only(target: &Path) -> Result<()> {
    let failed = |step: &str, e: Errno| {
        let io = std::io::Error::from(e);
        let kind = if matches!(e, Errno::PERM | Errno::ACCESS) {
            ErrorKind::NeedsPrivilege
        } else {
            ErrorKind::Unsupported
        };
        Error::new(
            kind,
            format!(
                "cannot protect the hardlink run at {} with a read-only mount ({step}: {io})",
                target.display()
            ),
        )
        .with_source(io)
    };
    rustix::mount::mount_bind(target, target).map_err(|e| failed("bind", e))?;
    let remounted =
        rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, c"");
    if let Err(e) = remounted {
        let _ = rustix::mount::unmount(target, UnmountFlags::NOFOLLOW);
        return Err(failed("read-only remount", e));
    }
    Ok(())
}

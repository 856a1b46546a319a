//! Per-run copies of a rendered rootfs (`acikit::render::run`): isolation between runs and
//! from the lower tree for every strategy, release (also after the creating process was
//! killed), overlay as root, reflinks on a loop-mounted XFS image, hardlink runs protected
//! by a read-only mount (and refused unprotected unless allowed, as `nobody`), dead runs
//! found and cleaned (`acikit::render::reap`), and the errors.
//!
//! The lower tree is made by hand here (directories, files, symlinks, a fifo, a hardlink
//! pair, xattrs, a setuid file, and as root a device node and a foreign owner).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{have, is_root, kind_name, sh};
use acikit::ErrorKind;
use acikit::testing::privileges::Privileges;
use acikit::testing::reap;
use acikit::testing::run::{
    RunHandle, RunOptions, Strategy, create_run, create_run_with, list_runs, release_run,
};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Builds the lower tree in `dir/lower`.
fn make_lower(dir: &Path) -> PathBuf {
    let lower = dir.join("lower");
    std::fs::create_dir_all(&lower).unwrap();
    let big: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir_all(lower.join("usr/bin")).unwrap();
    std::fs::write(lower.join("usr/bin/tool"), &big).unwrap();
    sh(
        &lower,
        r#"
        mkdir -p etc usr/share/doc/pkg var/empty tmp run
        printf '127.0.0.1 localhost\n' > etc/hosts
        printf 'root:x:0:0:root:/root:/bin/sh\n' > etc/passwd
        : > etc/empty
        printf 'docs\n' > usr/share/doc/pkg/README
        chmod 0755 usr/bin/tool
        ln usr/bin/tool usr/bin/tool-alias
        printf 'setuid\n' > usr/bin/su-tool && chmod 4755 usr/bin/su-tool
        ln -s tool usr/bin/link-to-tool
        ln -s ../usr/share/zoneinfo/UTC etc/localtime
        ln -s usr/share lib
        mkfifo run/fifo
        chmod 0700 var/empty
        chmod 1777 tmp
        touch -h -d '2001-02-03 04:05:06' etc/hosts usr/bin/link-to-tool usr/share/doc/pkg
        "#,
    );
    rustix::fs::lsetxattr(
        lower.join("etc/hosts"),
        "user.acikit",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("user xattrs (the temporary folder's file system must allow them)");
    if is_root() {
        sh(
            &lower,
            "mkdir dev && mknod dev/null c 1 3 && chown 1000:1001 etc/passwd",
        );
    }
    // An old root mtime, which a run's root must show too (an overlay's root is its upper
    // folder, made now).
    sh(&lower, "touch -d '2002-03-04 05:06:07.123456789' .");
    lower
}

/// What a test compares of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Size and content of regular files; the target of symlinks.
    content: Vec<u8>,
    rdev: u64,
    /// Modification time (an overlay's root is its upper folder, given the lower root's).
    mtime: (i64, i64),
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The first path (in order) of the hardlink group this file is in, if any.
    link_group: Option<PathBuf>,
}

/// Every node of the tree at `root`, by relative path (`""` for the root), never following
/// symlinks.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = kind_name(&ft);
        let content = match kind {
            "file" => std::fs::read(&path).unwrap(),
            "symlink" => std::fs::read_link(&path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
            _ => Vec::new(),
        };
        if kind == "file" && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
        if kind == "dir" {
            let mut names: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for name in names.into_iter().rev() {
                stack.push(rel.join(name));
            }
        }
        let mtime = (meta.mtime(), meta.mtime_nsec());
        out.insert(
            rel,
            Node {
                kind,
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                content,
                rdev: meta.rdev(),
                mtime,
                xattrs: user_xattrs(&path),
                link_group: None,
            },
        );
    }
    for mut paths in inodes.into_values() {
        if paths.len() > 1 {
            paths.sort();
            for p in &paths {
                out.get_mut(p).unwrap().link_group = Some(paths[0].clone());
            }
        }
    }
    out
}

fn user_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let mut value = vec![0u8; 4096];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        out.insert(name.to_vec(), value[..len].to_vec());
    }
    out
}

/// Asserts two snapshots are equal, naming the first difference.
fn assert_same(what: &str, got: &BTreeMap<PathBuf, Node>, want: &BTreeMap<PathBuf, Node>) {
    for (path, node) in want {
        match got.get(path) {
            None => panic!("{what}: {} is missing", path.display()),
            Some(g) => assert_eq!(g, node, "{what}: {} differs", path.display()),
        }
    }
    for path in got.keys() {
        assert!(
            want.contains_key(path),
            "{what}: {} should not be there",
            path.display()
        );
    }
}

/// Writes, modifies and deletes inside a run.
fn scribble(run: &Path) {
    std::fs::write(run.join("etc/hosts"), "changed\n").unwrap();
    let mut tool = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("usr/bin/tool"))
        .unwrap();
    tool.write_all(b"appended").unwrap();
    drop(tool);
    std::fs::remove_file(run.join("etc/passwd")).unwrap();
    std::fs::remove_dir_all(run.join("usr/share/doc")).unwrap();
    std::fs::write(run.join("etc/new"), "new\n").unwrap();
    std::fs::set_permissions(
        run.join("usr/bin/su-tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        run.join("etc/hosts"),
        "user.acikit",
        b"changed",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    std::fs::remove_file(run.join("usr/bin/link-to-tool")).unwrap();
    std::fs::write(run.join("usr/bin/link-to-tool"), "not a link\n").unwrap();
    std::fs::rename(run.join("etc/empty"), run.join("etc/empty2")).unwrap();
    std::fs::create_dir(run.join("var/empty/sub")).unwrap();
    std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o700)).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(run.join("usr/bin/tool-alias"), Some(4242), Some(4242)).unwrap();
    }
}

/// Checks that `scribble` happened in `run`.
fn assert_scribbled(run: &Path) {
    assert_eq!(std::fs::read(run.join("etc/hosts")).unwrap(), b"changed\n");
    assert!(!run.join("etc/passwd").exists());
    assert!(!run.join("usr/share/doc").exists());
    assert!(run.join("etc/new").exists());
    assert!(run.join("etc/empty2").exists());
    assert!(
        std::fs::read(run.join("usr/bin/tool"))
            .unwrap()
            .ends_with(b"appended")
    );
    assert_eq!(
        user_xattrs(&run.join("etc/hosts"))[&b"user.acikit".to_vec()],
        b"changed"
    );
}

/// The mount points of this mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let info = std::fs::read("/proc/self/mountinfo").unwrap();
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| {
            let mut out = Vec::new();
            let mut i = 0;
            while i < field.len() {
                if field[i] == b'\\' && i + 3 < field.len() {
                    let oct = std::str::from_utf8(&field[i + 1..i + 4]).unwrap();
                    out.push(u8::from_str_radix(oct, 8).unwrap());
                    i += 4;
                } else {
                    out.push(field[i]);
                    i += 1;
                }
            }
            PathBuf::from(std::ffi::OsStr::from_bytes(&out))
        })
        .collect()
}

fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// Runs the whole isolation scenario for `strategy` with everything under `base`; returns
/// the handle of run 1 (already released) for further checks.
fn isolation(base: &Path, strategy: Strategy, expect: Strategy) -> RunHandle {
    let privs = Privileges::detect();
    let lower = make_lower(base);
    let before = snapshot(&lower);
    let runs = base.join("store/runs");
    let t1 = base.join("targets/run1");
    let t2 = base.join("targets/run2");

    let started = Instant::now();
    let h1 = create_run(&runs, &lower, &t1, strategy, &privs).unwrap();
    let create_ms = started.elapsed().as_secs_f64() * 1e3;
    let h2 = create_run(&runs, &lower, &t2, strategy, &privs).unwrap();
    assert_eq!(h1.strategy, expect, "warnings: {:?}", h1.warnings);
    assert_eq!(h2.strategy, expect);
    assert_eq!(h1.read_only, expect == Strategy::Hardlink);
    assert_eq!(h1.target, std::fs::canonicalize(&t1).unwrap());
    assert_eq!(h1.stats.is_none(), expect == Strategy::Overlay);
    // As root a hardlink run is protected by a read-only mount.
    assert_eq!(h1.protected, expect == Strategy::Hardlink);
    assert_eq!(
        is_mounted(&h1.target),
        expect == Strategy::Overlay || h1.protected
    );

    assert_same("run 1 as made", &snapshot(&t1), &before);
    assert_same("run 2 as made", &snapshot(&t2), &before);

    let records = list_runs(&runs).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(r.complete);
        assert_eq!(r.strategy, expect);
        assert_eq!(r.lower, std::fs::canonicalize(&lower).unwrap());
        assert_eq!(r.pid, std::process::id());
        assert!(r.start_ticks.is_some() && r.boot_id.is_some());
        assert_eq!(r.protected, expect == Strategy::Hardlink);
        assert!(r.run_dir.join("record.json").is_file());
    }

    if h1.read_only {
        // A hardlink farm shares inodes with the lower tree: it is documented read-only,
        // so there is nothing to write; the handle says so.
        assert_eq!(expect, Strategy::Hardlink);
        assert_eq!(
            std::fs::metadata(t1.join("usr/bin/su-tool")).unwrap().ino(),
            std::fs::metadata(lower.join("usr/bin/su-tool"))
                .unwrap()
                .ino()
        );
    } else {
        scribble(&t1);
        assert_scribbled(&t1);
        // A third run made after the writes starts clean too.
        let t3 = base.join("targets/run3");
        create_run(&runs, &lower, &t3, strategy, &privs).unwrap();
        assert_same("run 3 after writes in run 1", &snapshot(&t3), &before);
        release_run(&runs, &t3).unwrap();
    }
    assert_same("lower after writes in run 1", &snapshot(&lower), &before);
    assert_same("run 2 after writes in run 1", &snapshot(&t2), &before);

    let started = Instant::now();
    release_run(&runs, &t1).unwrap();
    let release_ms = started.elapsed().as_secs_f64() * 1e3;
    release_run(&runs, &t2).unwrap();
    eprintln!("{strategy} -> {expect}: create {create_ms:.1} ms, release {release_ms:.1} ms");

    for t in [&t1, &t2] {
        assert!(!t.exists(), "{} still exists after release", t.display());
        assert!(!is_mounted(t), "{} still mounted", t.display());
    }
    assert!(list_runs(&runs).unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(&runs).unwrap().count(),
        0,
        "runs folder not empty"
    );
    assert_same("lower after release", &snapshot(&lower), &before);
    assert_eq!(
        release_run(&runs, &t1).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    h1
}

// ---------------------------------------------------------------------------------------------
// Isolation for every strategy

#[test]
fn copy_runs_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    isolation(dir.path(), Strategy::Copy, Strategy::Copy);
}

#[test]
fn hardlink_runs_are_read_only_and_leave_the_lower_tree_alone() {
    if !is_root() {
        eprintln!("SKIPPED: a protected hardlink run needs root (see the unprivileged test)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = isolation(dir.path(), Strategy::Hardlink, Strategy::Hardlink);
    assert!(h.read_only);
    assert!(h.stats.unwrap().linked > 0);
}

#[test]
fn overlay_runs_are_isolated() {
    if !is_root() {
        eprintln!("SKIPPED: overlay runs need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    isolation(dir.path(), Strategy::Overlay, Strategy::Overlay);
}

#[test]
fn auto_chooses_overlay_as_root() {
    let dir = tempfile::tempdir().unwrap();
    if is_root() {
        let h = isolation(dir.path(), Strategy::Auto, Strategy::Overlay);
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
    } else {
        // Without root: reflink where the file system can, else copy; never hardlink.
        let privs = Privileges::detect();
        let lower = make_lower(dir.path());
        let runs = dir.path().join("runs");
        let h = create_run(&runs, &lower, &dir.path().join("t"), Strategy::Auto, &privs).unwrap();
        assert!(matches!(h.strategy, Strategy::Reflink | Strategy::Copy));
        assert!(!h.read_only);
        release_run(&runs, &h.target).unwrap();
    }
}

#[test]
fn reflink_elsewhere_is_unsupported_or_really_reflinks() {
    let dir = tempfile::tempdir().unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(dir.path());
    let runs = dir.path().join("store/runs");
    let target = dir.path().join("target");
    match create_run(&runs, &lower, &target, Strategy::Reflink, &privs) {
        Ok(h) => {
            // This temporary folder is on btrfs or XFS.
            assert!(h.stats.unwrap().reflinked > 0);
            release_run(&runs, &target).unwrap();
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(e.message().contains("btrfs or XFS"), "{e}");
            assert!(!target.exists(), "a failed run leaves no target");
            assert!(list_runs(&runs).unwrap().is_empty());
            assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
        }
    }
}

/// A loop-mounted XFS image with reflinks, unmounted and detached on drop.
struct XfsImage {
    mnt: PathBuf,
    loop_dev: String,
    _dir: tempfile::TempDir,
}

impl XfsImage {
    /// Makes and mounts the image, or says why it cannot here.
    fn new() -> Result<XfsImage, String> {
        if !is_root() {
            return Err("loop mounts need root".into());
        }
        for tool in ["mkfs.xfs", "losetup", "mount", "umount", "truncate"] {
            if !have(tool) {
                return Err(format!("{tool} is missing (apt-get install xfsprogs)"));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("xfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let run = |cmd: &mut Command| -> Result<String, String> {
            let out = cmd.output().map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            } else {
                Err(format!(
                    "{cmd:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        run(Command::new("truncate").arg("-s").arg("300M").arg(&img))?;
        run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&img))?;
        let loop_dev = run(Command::new("losetup").args(["--find", "--show"]).arg(&img))
            .map_err(|e| format!("no loop device available: {e}"))?;
        let image = XfsImage {
            mnt,
            loop_dev,
            _dir: dir,
        };
        run(Command::new("mount").arg(&image.loop_dev).arg(&image.mnt))?;
        Ok(image)
    }
}

impl Drop for XfsImage {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let ok = Command::new("umount")
                .arg(&self.mnt)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.loop_dev)
            .status();
    }
}

#[test]
fn reflink_runs_on_xfs_share_extents_and_are_isolated() {
    let image = match XfsImage::new() {
        Ok(image) => image,
        Err(why) => {
            eprintln!("SKIPPED: no XFS image with reflinks here: {why}");
            return;
        }
    };
    let base = image.mnt.join("work");
    std::fs::create_dir(&base).unwrap();
    let h = isolation(&base, Strategy::Reflink, Strategy::Reflink);
    let stats = h.stats.unwrap();
    // Every non-empty file is a clone, but for the second member of the hardlink pair
    // (a link to the first one's clone) and the empty file (always created).
    assert_eq!(stats.reflinked, 5, "{stats:?}");

    // The clones share their extents with the lower tree (as filefrag shows).
    let privs = Privileges::detect();
    let lower = base.join("lower");
    let runs = base.join("store/runs");
    let target = base.join("targets/shared");
    create_run(&runs, &lower, &target, Strategy::Reflink, &privs).unwrap();
    if have("filefrag") {
        let out = Command::new("filefrag")
            .arg("-v")
            .arg(target.join("usr/bin/tool"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("shared"), "no shared extent:\n{text}");
    }
    release_run(&runs, &target).unwrap();

    // Hardlinks cannot cross file systems: a lower tree here, a target outside.
    let outside = tempfile::tempdir().unwrap();
    let err = create_run(
        &runs,
        &lower,
        &outside.path().join("t"),
        Strategy::Hardlink,
        &privs,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(!outside.path().join("t").exists());
    // ... and neither can reflinks.
    let err = create_run(
        &runs,
        &lower,
        &outside.path().join("t"),
        Strategy::Reflink,
        &privs,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(list_runs(&runs).unwrap().is_empty());
    drop(image);
}

// ---------------------------------------------------------------------------------------------
// Records, release after a crash, odd paths

/// Not a test on its own: the child process of
/// `overlay_run_of_a_killed_process_can_be_released` (it does nothing unless asked).
#[test]
fn child_creates_a_run_and_waits() {
    let (Ok(runs), Ok(lower), Ok(target)) = (
        std::env::var("ACIKIT_TEST_CHILD_RUNS"),
        std::env::var("ACIKIT_TEST_CHILD_LOWER"),
        std::env::var("ACIKIT_TEST_CHILD_TARGET"),
    ) else {
        return;
    };
    let strategy = std::env::var("ACIKIT_TEST_CHILD_STRATEGY")
        .map_or(Strategy::Overlay, |s| s.parse().unwrap());
    let h = create_run(
        Path::new(&runs),
        Path::new(&lower),
        Path::new(&target),
        strategy,
        &Privileges::detect(),
    )
    .unwrap();
    if strategy == Strategy::Overlay {
        std::fs::write(h.target.join("etc/written-by-child"), "x").unwrap();
    }
    println!("READY");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Kills a child process when a test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn overlay_run_of_a_killed_process_can_be_released() {
    if !is_root() {
        eprintln!("SKIPPED: overlay runs need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lower = make_lower(dir.path());
    let before = snapshot(&lower);
    let runs = dir.path().join("store/runs");
    let target = dir.path().join("target");
    let pid = run_made_by_a_killed_child(&runs, &lower, &target, Strategy::Overlay);

    assert!(is_mounted(&target), "the overlay outlives its creator");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(target.to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" - overlay "), "{line}");
    assert!(line.contains("volatile"), "mounted volatile: {line}");
    assert!(target.join("etc/written-by-child").exists());
    let records = list_runs(&runs).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].pid, pid);
    assert_eq!(records[0].strategy, Strategy::Overlay);
    assert!(records[0].complete);
    assert!(
        records[0]
            .run_dir
            .join("upper/etc/written-by-child")
            .exists()
    );

    release_run(&runs, &target).unwrap();
    assert!(!is_mounted(&target));
    assert!(!target.exists());
    assert!(list_runs(&runs).unwrap().is_empty());
    assert_same("lower", &snapshot(&lower), &before);
}

#[test]
fn overlay_handles_commas_colons_and_backslashes_in_paths() {
    if !is_root() {
        eprintln!("SKIPPED: overlay runs need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a,b:c\\d e");
    std::fs::create_dir(&odd).unwrap();
    let lower = make_lower(&odd);
    let before = snapshot(&lower);
    let runs = odd.join("store,x:y\\z/runs");
    let target = odd.join("tar,get:\\");
    let privs = Privileges::detect();
    let h = create_run(&runs, &lower, &target, Strategy::Overlay, &privs).unwrap();
    assert!(is_mounted(&h.target));
    assert_same("run", &snapshot(&target), &before);
    std::fs::write(target.join("etc/new"), "x").unwrap();
    assert!(h.run_dir.join("upper/etc/new").exists());
    assert!(!lower.join("etc/new").exists());
    release_run(&runs, &target).unwrap();
    assert!(!is_mounted(&h.target));
    assert!(!target.exists());
}

#[test]
fn an_existing_empty_target_is_used_and_removed_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(dir.path());
    let runs = dir.path().join("runs");
    let target = dir.path().join("empty");
    for strategy in [Strategy::Copy, Strategy::Auto] {
        std::fs::create_dir(&target).unwrap();
        let h = create_run(&runs, &lower, &target, strategy, &privs).unwrap();
        assert!(target.join("etc/hosts").is_file());
        // Relative paths name the same run.
        let rel = pathdiff(&target);
        release_run(&runs, &rel).unwrap();
        assert!(!target.exists(), "{}", h.strategy);
    }
}

/// `path` relative to the current folder, through `..` components.
fn pathdiff(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let common = cwd
        .components()
        .zip(path.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in cwd.components().skip(common) {
        rel.push("..");
    }
    for c in path.components().skip(common) {
        rel.push(c);
    }
    rel
}

#[test]
fn leftovers_of_a_dead_create_are_cleaned_or_released() {
    let dir = tempfile::tempdir().unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(dir.path());
    let runs = dir.path().join("runs");
    // A staging folder of a create_run that died before publishing (its lock is free).
    let stale = runs.join(".tmp-1-2-3");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("lock"), "").unwrap();
    sh(&runs, "touch -d '2001-01-01' .tmp-1-2-3");
    // A run whose creator died in the middle of the copy: its record says so.
    let target = dir.path().join("t");
    let h = create_run(&runs, &lower, &target, Strategy::Copy, &privs).unwrap();
    assert!(!stale.exists(), "the stale staging folder is removed");
    let record = h.run_dir.join("record.json");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(
        &record,
        text.replace("\"complete\": true", "\"complete\": false"),
    )
    .unwrap();
    // ... and left its copy next to the target, not yet moved into place.
    let key = h.run_dir.file_name().unwrap().to_str().unwrap();
    let half_copy = dir.path().join(format!(".t.acikit-run-{}", &key[..16]));
    std::fs::create_dir_all(half_copy.join("etc")).unwrap();
    let listed = list_runs(&runs).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].complete);
    release_run(&runs, &target).unwrap();
    assert!(!target.exists());
    assert!(!half_copy.exists());
    assert!(list_runs(&runs).unwrap().is_empty());
    // A damaged record is reported, not skipped.
    let h = create_run(&runs, &lower, &target, Strategy::Copy, &privs).unwrap();
    std::fs::write(h.run_dir.join("record.json"), "{").unwrap();
    assert_eq!(
        list_runs(&runs).unwrap_err().kind(),
        ErrorKind::CorruptStore
    );
}

#[test]
fn concurrent_creates_on_one_target_make_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let lower = make_lower(dir.path());
    let runs = dir.path().join("runs");
    let target = dir.path().join("t");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    create_run(
                        &runs,
                        &lower,
                        &target,
                        Strategy::Copy,
                        &Privileges::detect(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
    }
    assert_same("the one run", &snapshot(&target), &snapshot(&lower));
    release_run(&runs, &target).unwrap();
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Hardlink runs cannot write to the lower tree

const EROFS: i32 = 30;

#[test]
fn a_write_into_a_protected_hardlink_run_fails_and_every_later_run_is_clean() {
    if !is_root() {
        eprintln!("SKIPPED: a protected hardlink run needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(dir.path());
    let before = snapshot(&lower);
    let runs = dir.path().join("store/runs");
    let run = dir.path().join("hard");
    let h = create_run(&runs, &lower, &run, Strategy::Hardlink, &privs).unwrap();
    assert!(h.read_only && h.protected, "{h:?}");
    assert!(is_mounted(&h.target));
    // Root, the usual user of a rootfs: `echo X > RUN/etc/hosts`.
    let err = std::fs::write(run.join("etc/hosts"), "X\n").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EROFS), "{err}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("echo X > '{}/etc/passwd'", run.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{out:?}"
    );
    // Nor may any shared inode's metadata change, nor the tree.
    let chmod = std::fs::set_permissions(
        run.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o777),
    );
    assert_eq!(chmod.unwrap_err().raw_os_error(), Some(EROFS));
    let chown = std::os::unix::fs::lchown(run.join("etc/hosts"), Some(1), Some(1));
    assert_eq!(chown.unwrap_err().raw_os_error(), Some(EROFS));
    let xattr = rustix::fs::lsetxattr(
        run.join("etc/hosts"),
        "user.acikit",
        b"changed",
        rustix::fs::XattrFlags::empty(),
    );
    assert_eq!(xattr.unwrap_err().raw_os_error(), EROFS);
    let created = std::fs::write(run.join("etc/new"), "x");
    assert_eq!(created.unwrap_err().raw_os_error(), Some(EROFS));
    let removed = std::fs::remove_file(run.join("etc/hosts"));
    assert_eq!(removed.unwrap_err().raw_os_error(), Some(EROFS));
    assert_same("the run", &snapshot(&run), &before);
    assert_same("the lower tree", &snapshot(&lower), &before);

    // Every later run starts from the clean lower tree.
    for strategy in [Strategy::Copy, Strategy::Overlay, Strategy::Hardlink] {
        let later = dir.path().join(format!("later-{strategy}"));
        create_run(&runs, &lower, &later, strategy, &privs).unwrap();
        assert_same(
            &format!("a later {strategy} run"),
            &snapshot(&later),
            &before,
        );
        release_run(&runs, &later).unwrap();
    }
    release_run(&runs, &run).unwrap();
    assert!(!is_mounted(&h.target));
    assert!(!run.exists());
    assert!(list_runs(&runs).unwrap().is_empty());
    assert_same("the lower tree after release", &snapshot(&lower), &before);
}

/// Starts `child_creates_a_run_and_waits` making a `strategy` run, waits until it is made,
/// then kills it (SIGKILL: no destructor, no release); returns its pid.
fn run_made_by_a_killed_child(runs: &Path, lower: &Path, target: &Path, strategy: Strategy) -> u32 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "render_run::child_creates_a_run_and_waits",
            "--nocapture",
        ])
        .env("ACIKIT_TEST_CHILD_RUNS", runs)
        .env("ACIKIT_TEST_CHILD_LOWER", lower)
        .env("ACIKIT_TEST_CHILD_TARGET", target)
        .env("ACIKIT_TEST_CHILD_STRATEGY", strategy.as_str())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let mut child = KillOnDrop(child);
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(|line| line.ok())
        .any(|line| line.trim() == "READY");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(ready, "the child did not make its run");
    pid
}

#[test]
fn protected_hardlink_run_of_a_killed_process_can_be_released() {
    if !is_root() {
        eprintln!("SKIPPED: a protected hardlink run needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lower = make_lower(dir.path());
    let before = snapshot(&lower);
    let runs = dir.path().join("store/runs");
    let target = dir.path().join("target");
    let pid = run_made_by_a_killed_child(&runs, &lower, &target, Strategy::Hardlink);
    assert!(
        is_mounted(&target),
        "the read-only mount outlives its creator"
    );
    let err = std::fs::write(target.join("etc/hosts"), "X").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EROFS), "{err}");
    let records = list_runs(&runs).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].pid, pid);
    assert!(records[0].complete && records[0].protected);
    // Complete and its target there: a live run, which no clean-up touches.
    assert_eq!(reap::find_dead_runs(&runs).unwrap().dead_count(), 0);
    assert_eq!(reap::reap_dead_runs(&runs).unwrap().runs, 0);
    assert!(is_mounted(&target));

    release_run(&runs, &target).unwrap();
    assert!(!is_mounted(&target));
    assert!(!target.exists());
    assert!(list_runs(&runs).unwrap().is_empty());
    assert_same("lower", &snapshot(&lower), &before);
}

/// Not a test on its own: the part of `unprivileged_hardlink_runs_need_the_caller_to_allow_them`
/// that runs as `nobody` (it does nothing unless asked).
#[test]
fn child_makes_unprivileged_hardlink_runs() {
    let Ok(base) = std::env::var("ACIKIT_TEST_UNPRIVILEGED_DIR") else {
        return;
    };
    assert!(!is_root());
    let base = Path::new(&base);
    let lower = make_lower(base);
    let runs = base.join("runs");
    let privs = Privileges::detect();
    let refused = base.join("refused");
    let err = create_run(&runs, &lower, &refused, Strategy::Hardlink, &privs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NeedsPrivilege, "{err}");
    assert!(err.message().contains("read-only"), "{err}");
    assert!(!refused.exists());
    assert!(list_runs(&runs).unwrap().is_empty());

    let allowed = RunOptions {
        strategy: Strategy::Hardlink,
        allow_unprotected_hardlink: true,
    };
    let run = base.join("allowed");
    let h = create_run_with(&runs, &lower, &run, &allowed, &privs).unwrap();
    assert_eq!(h.strategy, Strategy::Hardlink);
    assert!(h.read_only && !h.protected, "{h:?}");
    assert!(
        h.warnings.iter().any(|w| w.contains("NOT protected")),
        "{:?}",
        h.warnings
    );
    assert!(!is_mounted(&h.target));
    assert_eq!(
        std::fs::metadata(run.join("usr/bin/tool")).unwrap().ino(),
        std::fs::metadata(lower.join("usr/bin/tool")).unwrap().ino()
    );
    assert!(!list_runs(&runs).unwrap()[0].protected);
    release_run(&runs, &run).unwrap();
    assert!(!run.exists());

    // auto never picks hardlink, allowed or not.
    for allow in [false, true] {
        let options = RunOptions {
            strategy: Strategy::Auto,
            allow_unprotected_hardlink: allow,
        };
        let h = create_run_with(&runs, &lower, &base.join("auto"), &options, &privs).unwrap();
        assert!(
            matches!(h.strategy, Strategy::Reflink | Strategy::Copy),
            "{h:?}"
        );
        assert!(!h.read_only && !h.protected);
        release_run(&runs, &h.target).unwrap();
    }
    println!("CHILD-OK");
}

#[test]
fn unprivileged_hardlink_runs_need_the_caller_to_allow_them() {
    if !is_root() || !have("setpriv") {
        eprintln!("SKIPPED: needs root and setpriv to run a child as nobody");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "render_run::child_makes_unprivileged_hardlink_runs",
            "--nocapture",
        ])
        .env("ACIKIT_TEST_UNPRIVILEGED_DIR", dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Dead runs

/// The pid of a process that has exited (and been waited for).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Rewrites the record of the run at `run_dir` as a killed creator would have left it.
fn edit_record(run_dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = run_dir.join("record.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(value.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// The hidden copy beside `target` of the run at `run_dir`.
fn staging_of(target: &Path, run_dir: &Path) -> PathBuf {
    let key = run_dir.file_name().unwrap().to_str().unwrap();
    let name = target.file_name().unwrap().to_str().unwrap();
    target.with_file_name(format!(".{name}.acikit-run-{}", &key[..16]))
}

#[test]
fn dead_runs_are_found_and_cleaned_and_live_runs_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(&base);
    let runs = base.join("store/runs");
    let targets = base.join("targets");
    let copy = |name: &str| {
        create_run(&runs, &lower, &targets.join(name), Strategy::Copy, &privs).unwrap()
    };
    let gone = dead_pid();
    let kill_creator = |record: &mut serde_json::Map<String, serde_json::Value>| {
        record.insert("pid".into(), gone.into());
    };
    let incomplete = |record: &mut serde_json::Map<String, serde_json::Value>| {
        record.insert("complete".into(), false.into());
    };

    // Every run is made first: making a run cleans the dead runs already there.
    let mid_copy = copy("mid-copy");
    let removed = copy("removed");
    let moved = copy("moved");
    let foreign = copy("foreign");
    let old = copy("old");
    let reused = copy("reused");
    let half_released = copy("half-released");
    let live = copy("live");
    let creating = copy("creating");

    // Killed in the middle of its copy: half a copy beside the empty target it made.
    let mid_copy_staging = staging_of(&mid_copy.target, &mid_copy.run_dir);
    std::fs::rename(&mid_copy.target, &mid_copy_staging).unwrap();
    std::fs::remove_dir_all(mid_copy_staging.join("usr")).unwrap();
    std::fs::create_dir(&mid_copy.target).unwrap();
    edit_record(&mid_copy.run_dir, |r| {
        kill_creator(r);
        incomplete(r);
    });
    // Complete, but its rootfs was removed by hand instead of released.
    std::fs::remove_dir_all(&removed.target).unwrap();
    edit_record(&removed.run_dir, kill_creator);
    // Killed just after its copy was moved into place, before it was marked complete.
    edit_record(&moved.run_dir, |r| {
        kill_creator(r);
        incomplete(r);
    });
    // Killed before its copy was moved, and someone put their own files at the target.
    std::fs::remove_dir_all(&foreign.target).unwrap();
    std::fs::create_dir(&foreign.target).unwrap();
    std::fs::write(foreign.target.join("mine"), "keep me").unwrap();
    edit_record(&foreign.run_dir, |r| {
        kill_creator(r);
        incomplete(r);
    });
    // Written by an older version (no start time, boot, copy inode...), killed before its
    // copy: an empty target.
    std::fs::remove_dir_all(&old.target).unwrap();
    std::fs::create_dir(&old.target).unwrap();
    edit_record(&old.run_dir, |r| {
        for field in [
            "start_ticks",
            "boot_id",
            "protected",
            "target_existed",
            "copy_identity",
        ] {
            assert!(r.remove(field).is_some(), "{field}");
        }
        kill_creator(r);
        incomplete(r);
    });
    // Its pid now belongs to another process (this one), started at another time.
    std::fs::remove_dir_all(&reused.target).unwrap();
    std::fs::create_dir(&reused.target).unwrap();
    edit_record(&reused.run_dir, |r| {
        let ticks = r["start_ticks"].as_u64().unwrap();
        r.insert("start_ticks".into(), (ticks + 1).into());
        incomplete(r);
    });
    // A release killed half-way: a run folder with its lock and no record.
    std::fs::remove_dir_all(&half_released.target).unwrap();
    std::fs::remove_file(half_released.run_dir.join("record.json")).unwrap();
    std::fs::create_dir(half_released.run_dir.join("upper")).unwrap();
    // A create killed before it published its run folder (a minute has not passed).
    let staging = runs.join(format!(".tmp-{gone}-1-2"));
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("lock"), "").unwrap();
    // Live: complete with its target, though its creator is gone.
    edit_record(&live.run_dir, kill_creator);
    // Live: not complete, but its creator (this process) runs.
    edit_record(&creating.run_dir, incomplete);

    let found = reap::find_dead_runs(&runs).unwrap();
    let mut dead: Vec<PathBuf> = found.runs.iter().map(|r| r.target.clone()).collect();
    dead.sort();
    let mut want: Vec<PathBuf> = [&mid_copy, &removed, &moved, &foreign, &old, &reused]
        .iter()
        .map(|h| h.target.clone())
        .collect();
    want.sort();
    assert_eq!(dead, want);
    assert_eq!(found.orphan_folders, [half_released.run_dir.as_path()]);
    assert_eq!(found.stale_staging, [staging.as_path()]);
    assert_eq!(found.dead_count(), 7);
    assert_eq!(
        list_runs(&runs).unwrap().len(),
        8,
        "finding changes nothing"
    );

    let reaped = reap::reap_dead_runs(&runs).unwrap();
    assert!(reaped.failures.is_empty(), "{:?}", reaped.failures);
    assert_eq!((reaped.runs, reaped.staging), (7, 1));
    for h in [&mid_copy, &removed, &moved, &old, &reused] {
        assert!(!h.target.exists(), "{}", h.target.display());
    }
    assert!(!mid_copy_staging.exists(), "the half copy is removed");
    assert_eq!(
        std::fs::read_to_string(foreign.target.join("mine")).unwrap(),
        "keep me",
        "files that are not the run's stay"
    );
    let mut left: Vec<String> = std::fs::read_dir(&targets)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["creating", "foreign", "live"]);
    let mut listed: Vec<PathBuf> = list_runs(&runs)
        .unwrap()
        .into_iter()
        .map(|r| r.target)
        .collect();
    listed.sort();
    assert_eq!(listed, [creating.target.clone(), live.target.clone()]);
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 2);
    assert_same("a live run", &snapshot(&live.target), &snapshot(&lower));
    assert_eq!(reap::find_dead_runs(&runs).unwrap().dead_count(), 0);

    // A new run cleans the dead runs of its runs folder first.
    let killed = copy("killed");
    std::fs::remove_dir_all(&killed.target).unwrap();
    std::fs::create_dir(&killed.target).unwrap();
    edit_record(&killed.run_dir, |r| {
        kill_creator(r);
        incomplete(r);
    });
    let next = copy("next");
    assert!(!killed.target.exists());
    assert!(!killed.run_dir.exists());
    for h in [&live, &creating, &next] {
        release_run(&runs, &h.target).unwrap();
    }
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
}

#[test]
fn a_dead_run_in_a_folder_the_caller_gave_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(dir.path());
    let runs = dir.path().join("runs");
    let target = dir.path().join("given");
    std::fs::create_dir(&target).unwrap();
    let h = create_run(&runs, &lower, &target, Strategy::Copy, &privs).unwrap();
    let gone = dead_pid();
    edit_record(&h.run_dir, |r| {
        r.insert("pid".into(), gone.into());
        r.insert("complete".into(), false.into());
    });
    assert_eq!(reap::reap_dead_runs(&runs).unwrap().runs, 1);
    assert!(target.is_dir());
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert!(list_runs(&runs).unwrap().is_empty());
}

#[test]
fn records_of_older_versions_are_read_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(dir.path());
    let runs = dir.path().join("runs");
    let target = dir.path().join("t");
    let h = create_run(&runs, &lower, &target, Strategy::Copy, &privs).unwrap();
    // The record as the code before start times and protection wrote it.
    let old = format!(
        r#"{{
  "target": "{}",
  "strategy": "hardlink",
  "lower": "{}",
  "created_ms": 1700000000000,
  "read_only": true,
  "pid": {},
  "complete": true
}}"#,
        h.target.display(),
        std::fs::canonicalize(&lower).unwrap().display(),
        std::process::id()
    );
    std::fs::write(h.run_dir.join("record.json"), old).unwrap();
    let records = list_runs(&runs).unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert!(record.complete && record.read_only && !record.protected);
    assert_eq!((record.start_ticks, &record.copy_identity), (None, &None));
    assert!(record.creator().is_alive());
    release_run(&runs, &target).unwrap();
    assert!(!target.exists());
    assert!(list_runs(&runs).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn a_non_empty_target_is_an_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let privs = Privileges::detect();
    let lower = make_lower(dir.path());
    let runs = dir.path().join("runs");
    let target = dir.path().join("full");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), "mine").unwrap();
    for strategy in Strategy::ALL {
        let err = create_run(&runs, &lower, &target, strategy, &privs).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{strategy}: {err}");
        assert!(err.message().contains("not empty"), "{err}");
    }
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"mine");
    assert!(list_runs(&runs).unwrap().is_empty());

    // A file is not a target either, and neither is a folder inside the lower tree.
    let err = create_run(&runs, &lower, &target.join("keep"), Strategy::Copy, &privs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = create_run(&runs, &lower, &lower.join("new"), Strategy::Copy, &privs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!lower.join("new").exists());
    // A missing lower tree is not found.
    let err = create_run(
        &runs,
        &dir.path().join("nope"),
        &dir.path().join("t"),
        Strategy::Copy,
        &privs,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn releasing_an_unknown_target_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    // No runs folder at all, then an empty one, then a folder that is not a run.
    let err = release_run(&runs, &dir.path().join("t")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    std::fs::create_dir(&runs).unwrap();
    let err = release_run(&runs, &dir.path().join("t")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = release_run(&runs, dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(dir.path().exists());
}

#[test]
fn strategies_parse_and_print() {
    for (name, s) in [
        ("auto", Strategy::Auto),
        ("overlay", Strategy::Overlay),
        ("reflink", Strategy::Reflink),
        ("hardlink", Strategy::Hardlink),
        ("copy", Strategy::Copy),
    ] {
        assert_eq!(name.parse::<Strategy>().unwrap(), s);
        assert_eq!(s.to_string(), name);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
        assert_eq!(s.is_read_only(), s == Strategy::Hardlink);
    }
    let err = "fast".parse::<Strategy>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Timings (run by hand: `cargo test --release -p acikit --test it -- render_run:: --ignored
// --nocapture`; ACIKIT_BENCH_ROOTFS names the tree, by default the bench's Debian rootfs)

#[test]
#[ignore]
fn timings_on_a_big_tree() {
    let lower = std::env::var_os("ACIKIT_BENCH_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/layout/rootfs")
        });
    if !lower.is_dir() {
        eprintln!("SKIPPED: no tree at {}", lower.display());
        return;
    }
    let lower = std::fs::canonicalize(lower).unwrap();
    let work = tempfile::tempdir_in(lower.parent().unwrap()).unwrap();
    let runs = work.path().join("runs");
    let privs = Privileges::detect();
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    sh(work.path(), "sync");
    let mut strategies = vec![Strategy::Hardlink, Strategy::Copy];
    if is_root() {
        strategies.insert(0, Strategy::Overlay);
    }
    for strategy in strategies {
        for round in 0..2 {
            let target = work.path().join(format!("{strategy}-{round}"));
            let create = time(&mut || {
                create_run(&runs, &lower, &target, strategy, &privs).unwrap();
            });
            let release = time(&mut || release_run(&runs, &target).unwrap());
            eprintln!("{strategy} round {round}: create {create:.1} ms, release {release:.1} ms");
        }
    }
    for round in 0..2 {
        let target = work.path().join(format!("cp-{round}"));
        let cp = time(&mut || {
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&lower)
                .arg(&target)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        });
        let rm = time(&mut || std::fs::remove_dir_all(&target).unwrap());
        eprintln!("cp -a round {round}: {cp:.1} ms (rm -r {rm:.1} ms)");
    }
}

//! Per-run copies of a rendered rootfs (`acikit::render::run`): isolation between runs and
//! from the lower tree for every strategy, release (also after the creating process was
//! killed), overlay as root, reflinks on a loop-mounted XFS image, and the errors.
//!
//! The lower tree is made by hand here (directories, files, symlinks, a fifo, a hardlink
//! pair, xattrs, a setuid file, and as root a device node and a foreign owner).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acikit::ErrorKind;
use acikit::render::fsops::Privileges;
use acikit::render::run::{RunHandle, Strategy, create_run, list_runs, release_run};
use common::kind_name;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

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
    assert_eq!(is_mounted(&h1.target), expect == Strategy::Overlay);

    assert_same("run 1 as made", &snapshot(&t1), &before);
    assert_same("run 2 as made", &snapshot(&t2), &before);

    let records = list_runs(&runs).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(r.complete);
        assert_eq!(r.strategy, expect);
        assert_eq!(r.lower, std::fs::canonicalize(&lower).unwrap());
        assert_eq!(r.pid, std::process::id());
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
    let h = create_run(
        Path::new(&runs),
        Path::new(&lower),
        Path::new(&target),
        Strategy::Overlay,
        &Privileges::detect(),
    )
    .unwrap();
    std::fs::write(h.target.join("etc/written-by-child"), "x").unwrap();
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
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_creates_a_run_and_waits", "--nocapture"])
        .env("ACIKIT_TEST_CHILD_RUNS", &runs)
        .env("ACIKIT_TEST_CHILD_LOWER", &lower)
        .env("ACIKIT_TEST_CHILD_TARGET", &target)
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
    child.0.kill().unwrap(); // SIGKILL: no destructor, no release
    child.0.wait().unwrap();
    assert!(ready, "the child did not make its run");

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
// Timings (run by hand: `cargo test --release -p acikit --test render_run -- --ignored
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

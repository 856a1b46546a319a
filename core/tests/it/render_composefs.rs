//! The `composefs` strategy (`render::composefs`): a run is an overlay of a cached EROFS
//! metadata image over the store's objects. Its rootfs must be what GNU tar extracts
//! (owners, modes, mtimes, xattrs with `security.capability`, devices, FIFOs, hardlink
//! groups, sparse files, empty files, long names), writes must stay in the run (the
//! objects never change, `fsck` stays clean, another run does not see them), dependencies
//! and whitelists give what the stack gives, the image passes `fsck.erofs`, and nothing
//! stays mounted after `release` or after `gc` cleaned a run whose creator died between
//! its two mounts. Needs root (skipped otherwise); the unprivileged error is checked as
//! `nobody`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::*;
use crate::render_tree::{compare, import, layout, snapshot, tar_extract, xattrs_of};
use acikit::progress::Observer;
use acikit::schema::ImageId;
use acikit::{ErrorKind, RenderOptions, Store, Strategy};

fn composefs() -> RenderOptions {
    RenderOptions::default().strategy(Strategy::Composefs)
}

/// Whether this test can mount (root, erofs and overlay in the kernel).
fn can_run() -> bool {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let ok = is_root() && fs.contains("erofs") && fs.contains("overlay");
    if !ok {
        eprintln!("skipped: needs root and a kernel with erofs and overlay");
    }
    ok
}

/// Mount points under `dir` (from this namespace's mountinfo).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Unmounts whatever a failed test left under `dir` (so a failure never leaks mounts).
struct Unmounter(PathBuf);

impl Drop for Unmounter {
    fn drop(&mut self) {
        let mut left = mounts_under(&self.0);
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// The SHA-256 of every object file, by name.
fn objects(store: &Path) -> BTreeMap<PathBuf, (u32, [u8; 32])> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    for path in files_under(&store.join("objects")) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        out.insert(path, (meta.mode(), sha2::Sha256::digest(&bytes).into()));
    }
    out
}

async fn render_and_compare(format: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = Unmounter(tmp.path().to_path_buf());
    let layout = layout(tmp.path(), format == "posix");
    // A long name and an empty file besides what the layout has.
    let long = "n".repeat(250);
    sh(
        &layout,
        &format!("mkdir -p rootfs/long && : > rootfs/long/{long} && : > rootfs/etc/empty-too"),
    );
    let writer = WRITERS.iter().find(|w| w.name == format).unwrap();
    let tar = tmp.path().join(format!("{format}.tar"));
    write_tar(&layout, writer, &tar);
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id = import(&store, &tar).await;
    let target = tmp.path().join("run");
    let rendered = store
        .render(&id, &target, composefs(), Observer::default())
        .await
        .unwrap();
    assert_eq!(rendered.strategy, Strategy::Composefs);
    assert!(!rendered.cached && !rendered.read_only);
    assert!(rendered.warnings.is_empty(), "{:?}", rendered.warnings);
    // No tree, no checkout object: only the metadata image.
    assert!(!store.dir().join("trees").exists());
    assert!(!store.dir().join("checkouts").exists());
    let extracted = tmp.path().join("extracted");
    tar_extract(&tar, &extracted);
    let n = compare(&target, &extracted.join("rootfs"), format);
    assert!(n > 20, "{n} paths");
    let sparse = std::fs::metadata(target.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 5 << 20);
    assert!(
        sparse.blocks() * 512 < 256 * 1024,
        "{} blocks",
        sparse.blocks()
    );
    if format == "posix" && have("setcap") {
        let x = xattrs_of(&target.join("bin/ping"));
        assert!(x.iter().any(|(k, _)| k == b"security.capability"), "{x:?}");
    }
    // The image passes the EROFS checker where it is installed.
    if have("fsck.erofs") {
        let images = files_under(&store.dir().join("composefs"));
        let image = images.iter().find(|p| p.ends_with("meta.erofs")).unwrap();
        sh(tmp.path(), &format!("fsck.erofs '{}'", image.display()));
    }
    // A second render reuses the image.
    let again = tmp.path().join("again");
    let second = store
        .render(&id, &again, composefs(), Observer::default())
        .await
        .unwrap();
    assert!(second.cached);
    store.release(&again).await.unwrap();
    store.release(&target).await.unwrap();
    assert!(!target.exists());
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new());
    assert!(store.runs().await.unwrap().is_empty());
}

#[tokio::test]
async fn posix_image_matches_gnu_tar() {
    if can_run() {
        render_and_compare("posix").await;
    }
}

#[tokio::test]
async fn gnu_sparse_image_matches_gnu_tar() {
    if can_run() {
        render_and_compare("gnu").await;
    }
}

/// The Debian minbase image (`ACIKIT_BENCH_DIR`, else `target/bench`): 0 mismatches with
/// GNU tar, and the first render is fast.
#[tokio::test]
async fn debian_minbase_matches_gnu_tar() {
    if !can_run() {
        return;
    }
    let bench = std::env::var_os("ACIKIT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench"));
    let image = bench.join("debian-minbase.aci");
    if !image.exists() {
        eprintln!("skipped: {} is missing (see bench/)", image.display());
        return;
    }
    let tmp = tempfile::tempdir_in(&bench).unwrap();
    let _guard = Unmounter(tmp.path().to_path_buf());
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id = import(&store, &image).await;
    let target = tmp.path().join("run");
    let started = Instant::now();
    store
        .render(&id, &target, composefs(), Observer::default())
        .await
        .unwrap();
    let first = started.elapsed();
    let extracted = tmp.path().join("extracted");
    tar_extract(&image, &extracted);
    let n = compare(&target, &extracted.join("rootfs"), "debian-minbase");
    eprintln!("debian-minbase: composefs first render {first:?}, {n} paths");
    assert!(n > 6000, "{n} paths");
    store.release(&target).await.unwrap();
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new());
}

/// Writes, truncates, chmods, renames and removals in one run reach neither the objects,
/// nor the cached image, nor a second run of the same image; `fsck` stays clean.
#[tokio::test]
async fn writes_stay_in_their_run() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = Unmounter(tmp.path().to_path_buf());
    let layout = layout(tmp.path(), false);
    let tar = tmp.path().join("image.tar");
    write_tar(
        &layout,
        WRITERS.iter().find(|w| w.name == "posix").unwrap(),
        &tar,
    );
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id = import(&store, &tar).await;
    let before = objects(store.dir());
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    for t in [&one, &two] {
        store
            .render(&id, t, composefs(), Observer::default())
            .await
            .unwrap();
    }
    let pristine = snapshot(&two);
    for step in [
        "echo changed >> etc/passwd",
        "truncate -s 1 bin/big",
        "chmod 0600 etc/one",
        "mv etc/one-again etc/renamed",
        "rm bin/big-copy",
        "echo new > etc/new-file",
        ": > sparse",
        "chown 99:99 etc/empty",
        "setfattr -n user.comment -v changed etc/passwd-hardlink || true",
    ] {
        sh(&one, step);
    }
    assert!(
        std::fs::read_to_string(one.join("etc/passwd"))
            .unwrap()
            .contains("changed")
    );
    assert_eq!(std::fs::metadata(one.join("bin/big")).unwrap().len(), 1);
    // The other run, the objects and fsck see none of it.
    let after = snapshot(&two);
    assert!(after.nodes == pristine.nodes, "the second run changed");
    assert_eq!(objects(store.dir()), before, "the objects changed");
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // A third run after the writes is pristine too.
    let three = tmp.path().join("three");
    store
        .render(&id, &three, composefs(), Observer::default())
        .await
        .unwrap();
    assert!(
        snapshot(&three).nodes == pristine.nodes,
        "a later run changed"
    );
    for t in [&one, &two, &three] {
        store.release(t).await.unwrap();
    }
    assert_eq!(mounts_under(tmp.path()), Vec::<String>::new());
}

/// A run whose creator died between the EROFS mount and the overlay leaves the EROFS
/// mounted in its run folder: `release` unmounts it, and so does `gc` for a dead run.
#[tokio::test]
async fn a_crash_between_the_mounts_leaves_nothing_after_release_or_gc() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = Unmounter(tmp.path().to_path_buf());
    let layout = make_layout(tmp.path(), false);
    let tar = tmp.path().join("image.tar");
    write_tar(
        &layout,
        WRITERS.iter().find(|w| w.name == "posix").unwrap(),
        &tar,
    );
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id = import(&store, &tar).await;
    let image = |store: &Store| {
        files_under(&store.dir().join("composefs"))
            .into_iter()
            .find(|p| p.ends_with("meta.erofs"))
            .unwrap()
    };
    for how in ["release", "gc"] {
        let target = tmp.path().join(how);
        store
            .render(&id, &target, composefs(), Observer::default())
            .await
            .unwrap();
        let run = store.runs().await.unwrap().pop().unwrap();
        // Back to the state between the two mounts: the overlay gone, the EROFS mounted.
        rustix::mount::unmount(&target, rustix::mount::UnmountFlags::empty()).unwrap();
        let meta = run.run_dir.join("meta");
        std::fs::create_dir(&meta).unwrap();
        rustix::mount::mount(
            image(&store),
            &meta,
            "erofs",
            rustix::mount::MountFlags::RDONLY,
            c"",
        )
        .unwrap();
        assert_eq!(mounts_under(tmp.path()).len(), 1);
        if how == "release" {
            store.release(&target).await.unwrap();
        } else {
            // Its creator is gone: a pid that does not run, an incomplete record.
            let record = run.run_dir.join("record.json");
            let mut json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
            json["pid"] = serde_json::json!(u32::MAX - 1);
            json["complete"] = serde_json::json!(false);
            std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
            let report = store.gc(Observer::default()).await.unwrap();
            assert_eq!(report.dead_runs_removed, 1, "{report:?}");
        }
        assert_eq!(mounts_under(tmp.path()), Vec::<String>::new(), "{how}");
        assert!(!run.run_dir.exists(), "{how}");
        assert!(!target.exists(), "{how}");
    }
}

/// A store moved to another folder still renders (the image names objects relative to
/// the object folder, which is the store's at mount time).
#[tokio::test]
async fn a_moved_store_still_renders() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = Unmounter(tmp.path().to_path_buf());
    let layout = make_layout(tmp.path(), false);
    let tar = tmp.path().join("image.tar");
    write_tar(
        &layout,
        WRITERS.iter().find(|w| w.name == "posix").unwrap(),
        &tar,
    );
    let id: ImageId;
    {
        let store = Store::open(tmp.path().join("store")).await.unwrap();
        id = import(&store, &tar).await;
        let t = tmp.path().join("first");
        store
            .render(&id, &t, composefs(), Observer::default())
            .await
            .unwrap();
        store.release(&t).await.unwrap();
        store.close().await;
    }
    std::fs::rename(tmp.path().join("store"), tmp.path().join("moved")).unwrap();
    let store = Store::open(tmp.path().join("moved")).await.unwrap();
    let t = tmp.path().join("second");
    let rendered = store
        .render(&id, &t, composefs(), Observer::default())
        .await
        .unwrap();
    assert!(rendered.cached);
    let extracted = tmp.path().join("extracted");
    tar_extract(&tar, &extracted);
    compare(&t, &extracted.join("rootfs"), "moved");
    store.release(&t).await.unwrap();
}

/// `auto` picks composefs as root; without root `composefs` is `needs_privilege` and
/// `auto` falls back to a copy (checked as `nobody`).
#[tokio::test]
async fn auto_picks_composefs_and_unprivileged_falls_back() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _guard = Unmounter(tmp.path().to_path_buf());
    std::fs::set_permissions(tmp.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let layout = tmp.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(layout.join("manifest"), MANIFEST).unwrap();
    std::fs::write(layout.join("rootfs/etc/hello"), "hello\n").unwrap();
    let tar = tmp.path().join("image.tar");
    sh(
        &layout,
        &format!("tar --format=posix -cf '{}' manifest rootfs", tar.display()),
    );
    std::fs::set_permissions(&tar, PermissionsExt::from_mode(0o644)).unwrap();

    let store = Store::open(tmp.path().join("root-store")).await.unwrap();
    let id = import(&store, &tar).await;
    let target = tmp.path().join("auto");
    let rendered = store
        .render(&id, &target, RenderOptions::default(), Observer::default())
        .await
        .unwrap();
    assert_eq!(rendered.strategy, Strategy::Composefs);
    assert_eq!(std::fs::read(target.join("etc/hello")).unwrap(), b"hello\n");
    store.release(&target).await.unwrap();

    if !have("setpriv") {
        eprintln!("skipped the unprivileged half: no setpriv");
        return;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "render_composefs::unprivileged_child",
            "--nocapture",
        ])
        .env("ACIKIT_CHILD_DIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The unprivileged half of `auto_picks_composefs_and_unprivileged_falls_back`.
#[tokio::test]
async fn unprivileged_child() {
    let Some(dir) = std::env::var_os("ACIKIT_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = Store::open(dir.join("user-store")).await.unwrap();
    let id = import(&store, &dir.join("image.tar")).await;
    let target = dir.join("user-run");
    let err = store
        .render(&id, &target, composefs(), Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NeedsPrivilege, "{err}");
    assert!(err.message().contains("composefs"), "{err}");
    assert!(!target.exists());
    assert!(!store.dir().join("composefs").exists());
    let rendered = store
        .render(
            &id,
            &target,
            RenderOptions::default().skip_unprivileged(true),
            Observer::default(),
        )
        .await
        .unwrap();
    assert_ne!(rendered.strategy, Strategy::Composefs);
    assert_eq!(std::fs::read(target.join("etc/hello")).unwrap(), b"hello\n");
    store.release(&target).await.unwrap();
    println!("CHILD OK");
}

/// The paths whose nodes differ between two rootfs snapshots (hardlink groups aside).
fn differences(a: &Path, b: &Path) -> Vec<String> {
    let (a, b) = (snapshot(a), snapshot(b));
    let mut out = Vec::new();
    for path in a.nodes.keys().chain(b.nodes.keys()) {
        if a.nodes.get(path) != b.nodes.get(path) && !out.contains(&path.display().to_string()) {
            out.push(path.display().to_string());
        }
    }
    out
}

/// Dependencies and whitelists: the composefs run of an image with both is node for node
/// the copy of its flattened stack.
#[tokio::test]
async fn dependencies_and_whitelists_match_the_stack() {
    if !can_run() {
        return;
    }
    let mut f = ImageFixture::new().await;
    let _guard = Unmounter(f.dir.path().to_path_buf());
    let mut image = |name: &str, extra: serde_json::Value, script: &str| {
        let manifest = serde_json::json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": format!("example.com/{name}"),
            "labels": [{"name": "version", "value": "1.0.0"}, {"name": "os", "value": "linux"},
                       {"name": "arch", "value": "amd64"}],
        });
        let (layout, tar) = f.layout(manifest, extra, script);
        sh(
            &layout,
            &format!(
                "tar --format=gnu --xattrs -cf '{}' manifest rootfs",
                tar.display()
            ),
        );
        tar
    };
    let b = image(
        "b",
        serde_json::json!({}),
        "mkdir -p etc opt/dir sub && echo b > etc/keep && echo b > etc/drop && echo b > b-only && \
         echo x > opt/dir/f && ln etc/keep etc/keep-link && ln -s opt/dir link && mkfifo fifo && \
         chmod 0700 opt && touch -d '2001-01-01' opt/dir",
    );
    let d = image(
        "d",
        serde_json::json!({"pathWhitelist": ["/d-kept", "/sub/"]}),
        "mkdir -p sub && echo d > d-kept && echo d > d-dropped && echo d > sub/in && \
         echo d > etc-file",
    );
    let a = image(
        "a",
        serde_json::json!({"dependencies": [{"imageName": "example.com/b"},
                                            {"imageName": "example.com/d"}]}),
        "mkdir -p etc && echo a > etc/keep && echo a > a-only && rm -rf link; mkdir link && \
         echo a > link/inside && chmod 0750 etc",
    );
    let mut ids = Vec::new();
    for tar in [b, d, a] {
        ids.push(import(&f.store, &tar).await);
    }
    let a = ids.pop().unwrap();
    let cfs = f.dir.path().join("cfs");
    let copy = f.dir.path().join("copy");
    let rendered = f
        .store
        .render(&a, &cfs, composefs(), Observer::default())
        .await
        .unwrap();
    assert_eq!(rendered.strategy, Strategy::Composefs);
    assert_eq!(rendered.layers.len(), 3);
    f.store
        .render(
            &a,
            &copy,
            RenderOptions::default().strategy(Strategy::Copy),
            Observer::default(),
        )
        .await
        .unwrap();
    assert_eq!(differences(&cfs, &copy), Vec::<String>::new());
    assert_eq!(
        std::fs::read_to_string(cfs.join("etc/keep")).unwrap(),
        "a\n"
    );
    assert!(cfs.join("d-kept").exists() && !cfs.join("d-dropped").exists());
    assert!(cfs.join("link").is_dir() && !cfs.join("opt/dir/inside").exists());
    // The image of d alone, with its own whitelist, is another cache.
    let d_only = f.dir.path().join("d-only");
    f.store
        .render(&ids[1], &d_only, composefs(), Observer::default())
        .await
        .unwrap();
    assert!(d_only.join("d-kept").exists() && d_only.join("sub").is_dir());
    assert!(!d_only.join("etc-file").exists() && !d_only.join("d-dropped").exists());
    assert_eq!(files_under(&f.store.dir().join("composefs")).len(), 4);

    // fsck checks both images; a damaged one is reported and removed, and made again.
    let report = f.store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let images: Vec<PathBuf> = files_under(&f.store.dir().join("composefs"))
        .into_iter()
        .filter(|p| p.ends_with("meta.erofs"))
        .collect();
    let bytes = std::fs::read(&images[0]).unwrap();
    let mut damaged = bytes.clone();
    damaged[1024 + 200] ^= 0xff;
    std::fs::write(&images[0], &damaged).unwrap();
    let report = f.store.fsck(false, Observer::default()).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].kind, "damaged_render_cache");
    assert!(
        report.problems[0].subject.starts_with("composefs image"),
        "{:?}",
        report.problems
    );
    assert!(!images[0].exists());
    // The runs still read their files; a new render rebuilds the image.
    assert_eq!(std::fs::read_to_string(cfs.join("a-only")).unwrap(), "a\n");
    for t in [&cfs, &copy, &d_only] {
        f.store.release(t).await.unwrap();
    }
    let again = f.dir.path().join("again");
    f.store
        .render(&ids[1], &again, composefs(), Observer::default())
        .await
        .unwrap();
    f.store.release(&again).await.unwrap();
    f.store
        .render(&a, &again, composefs(), Observer::default())
        .await
        .unwrap();
    assert!(images[0].exists(), "made again");

    // rm refuses an image a live run uses, then removes its composefs images.
    let err = f.store.remove(&ids[0]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InUse, "{err}");
    f.store.release(&again).await.unwrap();
    f.store.remove(&a).await.unwrap();
    f.store.remove(&ids[0]).await.unwrap();
    let left: Vec<PathBuf> = files_under(&f.store.dir().join("composefs"));
    assert_eq!(left.len(), 2, "d's own image stays: {left:?}");
    f.store.remove(&ids[1]).await.unwrap();
    assert!(files_under(&f.store.dir().join("composefs")).is_empty());
    assert_eq!(mounts_under(f.dir.path()), Vec::<String>::new());
}

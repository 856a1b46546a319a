//! Exploded trees (`acikit::render::tree`): an image imported into a store and exploded with
//! `ensure_tree` must be the tree GNU tar extracts from the same archive: every path with its
//! type, mode, owner, mtime (with nanoseconds), size, symlink target, device numbers, xattrs,
//! content and hardlink groups; sparse files stay sparse. Trees are cached, and the same file in
//! two images is one inode (a checkout object) while separate files of one archive stay apart.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::*;
use acikit::Store;
use acikit::schema::ImageId;
use acikit::store::ImportOptions;
use acikit::testing::paths::StorePaths;
use acikit::testing::privileges::Privileges;
use acikit::testing::tree::{TreeBuilt, ensure_tree, remove_tree_of};

/// What we compare of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,
    target: Option<PathBuf>,
    rdev: Option<(u64, u64)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    content: Option<[u8; 32]>,
}

pub(crate) struct Snapshot {
    pub(crate) nodes: BTreeMap<PathBuf, Node>,
    inodes: BTreeMap<PathBuf, u64>,
    blocks: BTreeMap<PathBuf, u64>,
}

pub(crate) fn xattrs_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut buf[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        // Labels the host adds on its own are not the archive's.
        if name.starts_with(b"security.selinux") {
            continue;
        }
        let mut value = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    out
}

fn sha256_file(path: &Path) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().into()
}

pub(crate) fn snapshot(root: &Path) -> Snapshot {
    let mut s = Snapshot {
        nodes: BTreeMap::new(),
        inodes: BTreeMap::new(),
        blocks: BTreeMap::new(),
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let m = std::fs::symlink_metadata(&full).unwrap();
        let ft = m.file_type();
        let kind = kind_name(&ft);
        if ft.is_dir() {
            for e in std::fs::read_dir(&full).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        let dev = m.rdev();
        s.nodes.insert(
            rel.clone(),
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                size: if ft.is_dir() { 0 } else { m.size() },
                target: ft.is_symlink().then(|| std::fs::read_link(&full).unwrap()),
                rdev: (ft.is_char_device() || ft.is_block_device())
                    .then(|| (rustix::fs::major(dev) as u64, rustix::fs::minor(dev) as u64)),
                xattrs: xattrs_of(&full),
                content: ft.is_file().then(|| sha256_file(&full)),
            },
        );
        if !ft.is_dir() {
            s.inodes.insert(rel.clone(), m.ino());
        }
        s.blocks.insert(rel, m.blocks());
    }
    s
}

/// The partition of paths into inodes.
pub(crate) fn groups(s: &Snapshot) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_ino: BTreeMap<u64, BTreeSet<PathBuf>> = BTreeMap::new();
    for (p, ino) in &s.inodes {
        by_ino.entry(*ino).or_default().insert(p.clone());
    }
    by_ino.into_values().collect()
}

/// Compares our tree with the one GNU tar extracted; returns the number of paths.
pub(crate) fn compare(ours: &Path, theirs: &Path, what: &str) -> usize {
    let a = snapshot(ours);
    let b = snapshot(theirs);
    let pa: BTreeSet<_> = a.nodes.keys().collect();
    let pb: BTreeSet<_> = b.nodes.keys().collect();
    assert_eq!(
        pa.symmetric_difference(&pb).collect::<Vec<_>>(),
        Vec::<&&PathBuf>::new(),
        "{what}: the same paths"
    );
    let mut differences = Vec::new();
    for (path, node) in &a.nodes {
        let other = &b.nodes[path];
        if node != other {
            differences.push(format!(
                "{}:\n  ours {node:?}\n  tar  {other:?}",
                path.display()
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{what}: {} differences:\n{}",
        differences.len(),
        differences[..differences.len().min(20)].join("\n")
    );
    assert_eq!(groups(&a), groups(&b), "{what}: hardlink groups");
    a.nodes.len()
}

pub(crate) async fn import(store: &Store, archive: &Path) -> ImageId {
    store
        .import_file(
            archive,
            ImportOptions::default(),
            acikit::progress::Observer::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("importing {}: {e}", archive.display()))
        .image_id
}

pub(crate) fn tar_extract(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    sh(
        into,
        &format!(
            "tar --numeric-owner --xattrs --xattrs-include='*' -xpf '{}' -C '{}'",
            archive.display(),
            into.display()
        ),
    );
}

fn privs() -> Privileges {
    // Tests also run unprivileged: what needs root is then skipped with warnings.
    let p = Privileges::detect();
    if is_root() {
        p
    } else {
        p.skipping_unprivileged()
    }
}

/// A layout with every kind of member, plus a file equal to another in content and metadata
/// but not linked to it, and (with `setcap`) a file capability.
pub(crate) fn layout(dir: &Path, caps: bool) -> PathBuf {
    let layout = make_layout(dir, true);
    sh(
        &layout,
        "cp -p rootfs/bin/big-copy rootfs/bin/big-copy-2 && \
         printf 'x' > rootfs/etc/one && cp -p rootfs/etc/one rootfs/etc/one-again && \
         chmod 0640 rootfs/etc/one rootfs/etc/one-again && \
         touch -d '2020-01-01 00:00:00.5' rootfs/etc/one rootfs/etc/one-again && \
         mkdir -p rootfs/ro/inner && printf 'r' > rootfs/ro/inner/f && \
         chmod 0555 rootfs/ro/inner && chmod 0500 rootfs/ro && \
         touch -d '1999-12-31 23:59:59.999' rootfs/ro/inner rootfs/ro",
    );
    if is_root() {
        sh(
            &layout,
            "chown 1234:5678 rootfs/etc/one-again && chown -h 42:43 rootfs/bin/passwd-link && \
             chown 7:8 rootfs/empty-dir && chmod 2755 rootfs/etc",
        );
    }
    if caps && is_root() && have("setcap") {
        sh(
            &layout,
            "cp -p rootfs/bin/big-copy rootfs/bin/ping && setcap cap_net_raw+ep rootfs/bin/ping",
        );
    }
    layout
}

async fn explode_and_compare(format: &str, caps: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = layout(tmp.path(), caps);
    let writer = WRITERS.iter().find(|w| w.name == format).unwrap();
    let tar = tmp.path().join(format!("{format}.tar"));
    write_tar(&layout, writer, &tar);
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id = import(&store, &tar).await;
    let built = ensure_tree(&store, &id, privs()).await.unwrap();
    assert!(!built.reused);
    if is_root() {
        assert!(built.warnings.is_empty(), "{:?}", built.warnings);
    }
    let extracted = tmp.path().join("extracted");
    tar_extract(&tar, &extracted);
    let n = compare(&built.path, &extracted.join("rootfs"), format);
    assert!(n > 20, "{n} paths");
    // Sparse members stay sparse (5 MiB logical, a few blocks allocated).
    let sparse = std::fs::metadata(built.path.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 5 << 20);
    assert!(
        sparse.blocks() * 512 < 256 * 1024,
        "{format}: the sparse file allocates {} blocks",
        sparse.blocks()
    );
    if caps && is_root() && have("setcap") {
        let x = xattrs_of(&built.path.join("bin/ping"));
        assert!(x.iter().any(|(k, _)| k == b"security.capability"), "{x:?}");
    }
    // Separate files stay separate; hardlinks stay linked.
    let ino = |p: &str| std::fs::symlink_metadata(built.path.join(p)).unwrap().ino();
    assert_ne!(ino("bin/big-copy"), ino("bin/big-copy-2"));
    assert_eq!(ino("etc/passwd"), ino("etc/passwd-hardlink"));
    assert!(
        built.new_checkouts > 10 && built.files > built.new_checkouts,
        "{built:?}"
    );
}

#[tokio::test]
async fn posix_xattrs_sparse_matches_gnu_tar() {
    explode_and_compare("posix", true).await;
}

#[tokio::test]
async fn gnu_sparse_matches_gnu_tar() {
    explode_and_compare("gnu", false).await;
}

#[tokio::test]
async fn second_ensure_is_reused_and_removal_works() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = layout(tmp.path(), false);
    let tar = tmp.path().join("image.tar");
    write_tar(
        &layout,
        WRITERS.iter().find(|w| w.name == "posix").unwrap(),
        &tar,
    );
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id = import(&store, &tar).await;
    let first = ensure_tree(&store, &id, privs()).await.unwrap();
    assert!(!first.reused);
    let started = Instant::now();
    let second = ensure_tree(&store, &id, privs()).await.unwrap();
    assert!(second.reused);
    assert_eq!(second.path, first.path);
    assert!(
        started.elapsed().as_millis() < 500,
        "{:?}",
        started.elapsed()
    );
    // Nothing is left in tmp/.
    let tmp_entries: Vec<_> = std::fs::read_dir(tmp.path().join("store/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp_entries.is_empty(), "{tmp_entries:?}");
    // Concurrent builders of the same image: one tree.
    let paths = StorePaths::new(store.dir());
    remove_tree_of(&paths, &id).unwrap();
    assert!(!first.path.exists());
    let (a, b) = tokio::join!(
        ensure_tree(&store, &id, privs()),
        ensure_tree(&store, &id, privs())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.path, b.path);
    assert!(
        a.reused || b.reused,
        "one builds, the other waits: {a:?} {b:?}"
    );
    // The second build reused the checkout objects of the first.
    let built = if a.reused { &b } else { &a };
    assert_eq!(built.new_checkouts, 0, "{built:?}");
    assert!(built.linked_checkouts > 0);
    // Pruning after removal frees the checkouts, and their shard folders.
    remove_tree_of(&paths, &id).unwrap();
    let (pruned, _) = acikit::testing::tree::prune_checkouts(&paths).unwrap();
    assert_eq!(pruned, built.linked_checkouts);
    let shards: Vec<_> = std::fs::read_dir(paths.checkouts())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(shards.is_empty(), "empty shards left: {shards:?}");
    remove_tree_of(&paths, &id).unwrap(); // no tree: fine
    // A later build publishes into shards made again.
    let again = ensure_tree(&store, &id, privs()).await.unwrap();
    assert!(!again.reused);
    assert_eq!(again.new_checkouts, pruned, "{again:?}");
    assert_eq!(files_under(&paths.checkouts()).len() as u64, pruned);
    // A shard that still holds a used checkout is kept.
    let (none, _) = acikit::testing::tree::prune_checkouts(&paths).unwrap();
    assert_eq!(none, 0);
    assert_eq!(files_under(&paths.checkouts()).len() as u64, pruned);
}

#[tokio::test]
async fn corrupt_store_yields_no_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = layout(tmp.path(), false);
    let tar = tmp.path().join("image.tar");
    write_tar(
        &layout,
        WRITERS.iter().find(|w| w.name == "posix").unwrap(),
        &tar,
    );
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id = import(&store, &tar).await;
    // Damage one object (same size) in place.
    let mut objects: Vec<_> = files_under(&tmp.path().join("store/objects"));
    objects.sort();
    let victim = objects
        .iter()
        .find(|p| std::fs::metadata(p).unwrap().len() == 1 << 20)
        .unwrap();
    let mut perms = std::fs::metadata(victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(victim, perms).unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(victim, bytes).unwrap();
    let err = ensure_tree(&store, &id, privs()).await.unwrap_err();
    assert_eq!(err.kind(), acikit::ErrorKind::CorruptStore, "{err}");
    let paths = StorePaths::new(store.dir());
    assert!(!paths.tree(&id).exists());
    assert!(!paths.checkouts().exists() || files_under(&paths.checkouts()).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(paths.tmp()).unwrap().collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn two_images_share_checkout_inodes() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = layout(tmp.path(), false);
    let posix = WRITERS.iter().find(|w| w.name == "posix").unwrap();
    let tar1 = tmp.path().join("v1.tar");
    write_tar(&layout, posix, &tar1);
    // Version 2: another manifest, one file changed.
    std::fs::write(layout.join("manifest"), MANIFEST.replace("1.0.0", "2.0.0")).unwrap();
    sh(&layout, "printf 'changed\\n' > rootfs/etc/changed");
    let tar2 = tmp.path().join("v2.tar");
    write_tar(&layout, posix, &tar2);
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let id1 = import(&store, &tar1).await;
    let id2 = import(&store, &tar2).await;
    assert_ne!(id1, id2);
    let t1 = ensure_tree(&store, &id1, privs()).await.unwrap();
    let t2 = ensure_tree(&store, &id2, privs()).await.unwrap();
    assert_eq!(t2.new_checkouts, 1, "{t2:?}");
    assert_eq!(t2.linked_checkouts, t1.new_checkouts, "{t2:?}");
    let ino = |t: &TreeBuilt, p: &str| std::fs::symlink_metadata(t.path.join(p)).unwrap().ino();
    for p in [
        "bin/big",
        "bin/big-copy",
        "bin/big-copy-2",
        "etc/passwd",
        "etc/one",
    ] {
        assert_eq!(ino(&t1, p), ino(&t2, p), "{p} is one inode in both trees");
    }
    // Within one image, separate identical files stay separate, links stay links.
    assert_ne!(ino(&t1, "bin/big-copy"), ino(&t1, "bin/big-copy-2"));
    assert_ne!(ino(&t1, "etc/one"), ino(&t1, "etc/one-again"));
    assert_eq!(ino(&t1, "etc/passwd"), ino(&t1, "etc/passwd-hardlink"));
    // Empty files are never shared.
    assert_ne!(ino(&t1, "etc/empty"), ino(&t2, "etc/empty"));
    // Both still match GNU tar.
    let x2 = tmp.path().join("x2");
    tar_extract(&tar2, &x2);
    compare(&t2.path, &x2.join("rootfs"), "v2");
}

#[tokio::test]
async fn debian_minbase_matches_gnu_tar() {
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/debian-minbase.aci");
    if !image.exists() {
        eprintln!("skipped: {} is missing (see bench/)", image.display());
        return;
    }
    let tmp =
        tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")).unwrap();
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let started = Instant::now();
    let id = import(&store, &image).await;
    let import_time = started.elapsed();
    let started = Instant::now();
    let built = ensure_tree(&store, &id, privs()).await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    let again = ensure_tree(&store, &id, privs()).await.unwrap();
    let second = started.elapsed();
    assert!(again.reused);
    eprintln!(
        "debian-minbase: ensure_tree first {first:?} ({} files, {} new checkouts), second {second:?}",
        built.files, built.new_checkouts
    );
    if is_root() {
        assert!(built.warnings.is_empty(), "{:?}", built.warnings);
    }
    let extracted = tmp.path().join("extracted");
    let started = Instant::now();
    tar_extract(&image, &extracted);
    let tar_time = started.elapsed();
    let started = Instant::now();
    let n = compare(&built.path, &extracted.join("rootfs"), "debian-minbase");
    eprintln!(
        "debian-minbase: import {import_time:?}, GNU tar -x {tar_time:?}, comparison {:?}",
        started.elapsed()
    );
    assert!(n > 6000, "{n} paths");
}

/// As `nobody`, an image with device nodes and root-owned files: without opting in, a
/// `needs_privilege` error and nothing left behind; opting in, a tree with warnings, without
/// the devices, owned by this process, and removable.
#[tokio::test]
async fn unprivileged_needs_root_or_skips() {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v setpriv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_root() || !found {
        eprintln!("skipped: needs root (to write the image) and setpriv (to run as nobody)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let layout = layout(tmp.path(), false);
    let tar = tmp.path().join("image.tar");
    write_tar(
        &layout,
        WRITERS.iter().find(|w| w.name == "posix").unwrap(),
        &tar,
    );
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "render_tree::unprivileged_child", "--nocapture"])
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

/// The unprivileged half of `unprivileged_needs_root_or_skips` (does nothing unless run by it).
#[tokio::test]
async fn unprivileged_child() {
    let Some(dir) = std::env::var_os("ACIKIT_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = Store::open(dir.join("store")).await.unwrap();
    let id = import(&store, &dir.join("image.tar")).await;
    let paths = StorePaths::new(store.dir());
    let privs = Privileges::detect();
    assert!(!privs.can_chown && !privs.can_mknod);
    let err = ensure_tree(&store, &id, privs).await.unwrap_err();
    assert_eq!(err.kind(), acikit::ErrorKind::NeedsPrivilege, "{err}");
    assert!(err.to_string().contains("needs root"), "{err}");
    assert!(!paths.tree(&id).exists());
    assert_eq!(std::fs::read_dir(paths.tmp()).unwrap().count(), 0);

    let built = ensure_tree(&store, &id, privs.skipping_unprivileged())
        .await
        .unwrap();
    let all = built.warnings.join("\n");
    assert!(all.contains("character device rootfs/bin/null"), "{all}");
    assert!(all.contains("block device"), "{all}");
    assert!(all.contains("instead of the archive's owners"), "{all}");
    assert!(!built.path.join("bin/null").exists());
    assert!(!built.path.join("bin/loop").exists());
    let me = rustix::process::geteuid().as_raw();
    let meta = std::fs::symlink_metadata(built.path.join("etc/one-again")).unwrap();
    assert_eq!(meta.uid(), me);
    assert_eq!(meta.mode() & 0o7777, 0o640);
    let big = std::fs::symlink_metadata(built.path.join("bin/big")).unwrap();
    assert_eq!(big.mode() & 0o7777, 0o4755);
    // Checkout objects made without root are shared too: a second build links them all.
    remove_tree_of(&paths, &id).unwrap();
    let again = ensure_tree(&store, &id, privs.skipping_unprivileged())
        .await
        .unwrap();
    assert_eq!(again.new_checkouts, 0, "{again:?}");
    assert_eq!(again.linked_checkouts, built.new_checkouts);
    // Read-only directories (ro/ is 0500) do not stop the removal.
    remove_tree_of(&paths, &id).unwrap();
    assert!(!paths.tree(&id).exists());
    println!("CHILD OK");
}

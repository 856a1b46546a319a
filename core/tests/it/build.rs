//! `acikit::build::Builder` on real trees: reproducibility (twice, after touching atimes and
//! ctimes, with every compression), an image with every kind of node (device, fifo,
//! hardlinks, symlinks, setuid, xattrs, a capability, a sparse file, long and non-UTF-8 names)
//! checked against GNU tar and through a store round trip, the mtime clamp, and refused
//! layouts that leave no output behind.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::common::{
    self, MANIFEST, have, is_root, make_layout, read_back, sh, sha512sum, small_layout,
};
use acikit::build::{BuildCompression, Builder, Built};
use acikit::store::{ExportCompression, ImportOptions};
use acikit::{ErrorKind, Store};

async fn build(dir: &Path, out: &Path, compression: BuildCompression) -> Built {
    Builder::new()
        .compression(compression)
        .build(dir, out, acikit::progress::Observer::default())
        .await
        .unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn same_folder_twice_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_layout(tmp.path(), true);
    for (compression, name) in [
        (BuildCompression::None, "tar"),
        (BuildCompression::Gzip, "gz"),
        (BuildCompression::Zstd, "zst"),
    ] {
        let a = tmp.path().join(format!("a.{name}"));
        let b = tmp.path().join(format!("b.{name}"));
        let built_a = build(&layout, &a, compression).await;
        // Reading changed the atimes; change the ctimes too (chmod to the same mode, a
        // no-op xattr write) and build again.
        sh(
            &layout,
            "find rootfs -exec touch -h -a -d '2030-01-01' {} + ; chmod 0644 rootfs/etc/passwd; \
             setfattr -n user.comment -v 'hello xattr' rootfs/etc/passwd",
        );
        let built_b = build(&layout, &b, compression).await;
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{name} builds differ"
        );
        assert_eq!(built_a.image_id, built_b.image_id);
        assert_eq!(built_a.size, std::fs::metadata(&a).unwrap().len());
        // The image ID is the sha512 of the uncompressed tar.
        let tar = tmp.path().join(format!("plain-{name}.tar"));
        let decompress = match compression {
            BuildCompression::None => "cat",
            BuildCompression::Gzip => "gzip -dc",
            BuildCompression::Zstd => "zstd -dcq",
            other => panic!("no decompressor for {other:?}"),
        };
        sh(
            tmp.path(),
            &format!("{decompress} < '{}' > '{}'", a.display(), tar.display()),
        );
        assert_eq!(sha512sum(&tar), built_a.image_id.to_string());
    }
    // The gzip header names no file and carries mtime 0.
    let gz = std::fs::read(tmp.path().join("a.gz")).unwrap();
    assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0], "no FNAME flag");
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "mtime 0");
}

#[tokio::test]
async fn mtime_clamp_sets_newer_files_to_the_clamp() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_layout(tmp.path(), false);
    // etc/passwd is from 2001 (older than the clamp); everything else is new.
    let clamp = 1_500_000_000i64;
    let out = tmp.path().join("clamped.tar");
    Builder::new()
        .compression(BuildCompression::None)
        .mtime_clamp(Some(clamp))
        .build(&layout, &out, acikit::progress::Observer::default())
        .await
        .unwrap();
    let back = read_back(&std::fs::read(&out).unwrap()).await.unwrap();
    let mut saw_old = false;
    for e in &back.entries {
        if e.path == b"rootfs/etc/passwd" || e.path == b"rootfs/etc/passwd-hardlink" {
            assert_eq!(e.mtime.secs, 981_173_106, "older mtime kept");
            assert_eq!(e.mtime.nanos, 123_456_789, "with its nanoseconds");
            saw_old = true;
        } else {
            assert_eq!(
                e.mtime.secs,
                clamp,
                "{:?}",
                String::from_utf8_lossy(&e.path)
            );
            assert_eq!(e.mtime.nanos, 0);
        }
        assert!(e.atime.is_none() && e.ctime.is_none());
        assert!(e.uname.is_empty() && e.gname.is_empty());
    }
    assert!(saw_old);
    // Without the clamp the new files keep their own time.
    let plain = tmp.path().join("plain.tar");
    build(&layout, &plain, BuildCompression::None).await;
    let back = read_back(&std::fs::read(&plain).unwrap()).await.unwrap();
    assert!(back.entries.iter().any(|e| e.mtime.secs > clamp));
}

/// The entries of `tar -tvf --numeric-owner`, by path: the listing line.
fn gnu_listing(archive: &Path) -> Vec<String> {
    run(Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(archive))
    .lines()
    .map(str::to_string)
    .collect()
}

#[tokio::test]
async fn every_kind_of_node_builds_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_layout(tmp.path(), true);
    let rootfs = layout.join("rootfs");
    // More: a second hardlink, a setgid directory, an owner, a capability.
    sh(
        &rootfs,
        "ln etc/passwd bin/passwd-2 && mkdir -m 2750 shared && chown 1234:5678 shared \
         && chown -h 42:43 bin/passwd-link",
    );
    let with_cap = have("setcap") && is_root();
    if with_cap {
        sh(&rootfs, "setcap cap_net_bind_service=+ep bin/big-copy");
    } else {
        eprintln!("setcap is missing (or not root): the security.capability check is skipped");
    }
    assert!(
        is_root(),
        "this test makes device nodes and owners: run as root"
    );

    let out = tmp.path().join("image.aci");
    let built = build(&layout, &out, BuildCompression::None).await;
    assert!(built.sparse_files >= 1);
    assert_eq!(built.hardlinks, 2);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(sha512sum(&out), built.image_id.to_string());

    // Our reader: order, and what each entry holds.
    let back = read_back(&bytes).await.unwrap();
    assert_eq!(
        back.rebuilt, bytes,
        "records + contents rebuild the archive"
    );
    let paths: Vec<&[u8]> = back.entries.iter().map(|e| &e.path[..]).collect();
    assert_eq!(paths[0], b"manifest");
    assert_eq!(paths[1], b"rootfs");
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries sorted bytewise");
    let entry = |p: &str| {
        let i = paths
            .iter()
            .position(|x| *x == p.as_bytes())
            .unwrap_or_else(|| panic!("{p}"));
        (&back.entries[i], &back.contents[i])
    };
    // Hardlinks point at the first path in sorted order.
    let (e, _) = entry("rootfs/etc/passwd");
    assert_eq!(e.link_target.as_deref(), Some(&b"rootfs/bin/passwd-2"[..]));
    let (e, _) = entry("rootfs/etc/passwd-hardlink");
    assert_eq!(e.link_target.as_deref(), Some(&b"rootfs/bin/passwd-2"[..]));
    let (e, _) = entry("rootfs/bin/passwd-2");
    assert_eq!(
        e.xattrs,
        vec![(b"user.comment".to_vec(), b"hello xattr".to_vec())]
    );
    let (e, _) = entry("rootfs/bin");
    assert_eq!(
        e.xattrs,
        vec![(b"user.dir".to_vec(), b"\x00\x01binary".to_vec())]
    );
    let (e, _) = entry("rootfs/bin/big");
    assert_eq!(e.mode, 0o4755);
    let (e, _) = entry("rootfs/empty-dir");
    assert_eq!(e.mode, 0o1777);
    let (e, _) = entry("rootfs/shared");
    assert_eq!((e.mode, e.uid, e.gid), (0o2750, 1234, 5678));
    let (e, _) = entry("rootfs/bin/null");
    assert_eq!(e.device, Some((1, 3)));
    let (e, _) = entry("rootfs/bin/loop");
    assert_eq!(e.device, Some((7, 0)));
    let (e, data) = entry("rootfs/sparse");
    let map = e.sparse.as_ref().expect("stored sparse");
    assert_eq!(map.format, "1.0");
    assert_eq!(map.real_size, 5 << 20);
    assert!(e.size < 1 << 20, "holes are not stored");
    assert_eq!(
        common::expand_sparse(e, data),
        std::fs::read(rootfs.join("sparse")).unwrap()
    );
    if with_cap {
        let (e, _) = entry("rootfs/bin/big-copy");
        assert!(
            e.xattrs.iter().any(|(k, _)| k == b"security.capability"),
            "{:?}",
            e.xattrs
        );
    }

    // GNU tar lists what the tree holds.
    let listing = gnu_listing(&out);
    let line = |suffix: &str| {
        listing
            .iter()
            .find(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} in {listing:#?}"))
            .clone()
    };
    assert!(line("rootfs/bin/null").starts_with("crw"));
    assert!(line("rootfs/bin/null").contains("1,3"));
    assert!(line("rootfs/bin/loop").starts_with("brw"));
    assert!(line("rootfs/bin/fifo").starts_with("prw"));
    assert!(line("rootfs/bin/big").starts_with("-rwsr-xr-x"));
    assert!(line("rootfs/empty-dir").starts_with("drwxrwxrwt"));
    assert!(line("rootfs/shared").contains("1234/5678"));
    assert!(line("rootfs/bin/passwd-link -> ../etc/passwd").starts_with("lrwxrwxrwx"));
    assert!(line("rootfs/etc/passwd link to rootfs/bin/passwd-2").starts_with('h'));
    assert!(listing.iter().any(|l| l.contains(&"f".repeat(120))));

    // GNU tar extracts the same tree.
    let ex = tmp.path().join("extracted");
    std::fs::create_dir(&ex).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&out)
        .arg("-C")
        .arg(&ex));
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&rootfs)
        .arg(ex.join("rootfs"))
        .output()
        .unwrap();
    // diff reports special files it cannot compare; the same type on both sides is fine.
    let differences: Vec<String> = String::from_utf8_lossy(&diff.stdout)
        .lines()
        .filter(|l| {
            let same_type = l.split_once(" is a ").and_then(|(_, rest)| {
                rest.split_once(" while file ")
                    .map(|(a, b)| b.ends_with(&format!(" is a {a}")))
            });
            same_type != Some(true)
        })
        .map(str::to_string)
        .collect();
    assert!(differences.is_empty(), "contents differ: {differences:#?}");
    let snapshot = |root: &Path| -> String {
        run(Command::new("sh").arg("-c").arg(format!(
            "cd '{}' && find . -exec stat -c '%n %f %u:%g %t:%T %s %Y %h' {{}} + | sort \
             && getfattr -R -h -d -m - --absolute-names . 2>/dev/null | grep -v '^$' | sort",
            root.display()
        )))
    };
    let mut before = snapshot(&rootfs);
    let mut after = snapshot(&ex.join("rootfs"));
    // Directory mtimes of the extraction can be touched by later entries; GNU tar sets
    // them at the end, so they should agree, but the top folder's own link count may not.
    before = before
        .lines()
        .filter(|l| !l.starts_with(". "))
        .collect::<Vec<_>>()
        .join("\n");
    after = after
        .lines()
        .filter(|l| !l.starts_with(". "))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        before, after,
        "modes, owners, devices, sizes, mtimes, links or xattrs differ"
    );
    let ino = |p: &str| std::fs::metadata(ex.join(p)).unwrap().ino();
    assert_eq!(ino("rootfs/etc/passwd"), ino("rootfs/bin/passwd-2"));
    assert_eq!(
        ino("rootfs/etc/passwd-hardlink"),
        ino("rootfs/bin/passwd-2")
    );

    // The store imports it and exports the same bytes.
    let store = Store::open(tmp.path().join("store")).await.unwrap();
    let imported = store
        .import_file(
            &out,
            ImportOptions::default(),
            acikit::progress::Observer::default(),
        )
        .await
        .unwrap();
    assert_eq!(imported.image_id, built.image_id);
    let exported = tmp.path().join("exported.aci");
    store
        .export_to(
            &imported.image_id,
            &exported,
            ExportCompression::None,
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&exported).unwrap(), bytes);
}

#[tokio::test]
async fn invalid_layouts_are_refused_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("image.aci");
    let refuse = |dir: std::path::PathBuf, kind: ErrorKind| {
        let out = out.clone();
        let out_dir = out_dir.clone();
        async move {
            let err = Builder::new()
                .build(&dir, &out, acikit::progress::Observer::default())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
            let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
            assert!(left.is_empty(), "output left behind: {left:?}");
        }
    };

    let no_manifest = tmp.path().join("no-manifest");
    std::fs::create_dir_all(no_manifest.join("rootfs")).unwrap();
    refuse(no_manifest, ErrorKind::MissingManifest).await;

    let no_rootfs = tmp.path().join("no-rootfs");
    std::fs::create_dir_all(&no_rootfs).unwrap();
    std::fs::write(no_rootfs.join("manifest"), MANIFEST).unwrap();
    refuse(no_rootfs, ErrorKind::MissingRootfs).await;

    let bad = small_layout(
        &tmp.path().join("bad"),
        br#"{"acKind":"ImageManifest","name":"UPPER"}"#,
    );
    refuse(bad, ErrorKind::InvalidManifest).await;

    let not_json = small_layout(&tmp.path().join("notjson"), b"not json");
    refuse(not_json, ErrorKind::InvalidManifest).await;

    let link_rootfs = tmp.path().join("link-rootfs");
    std::fs::create_dir_all(&link_rootfs).unwrap();
    std::fs::write(link_rootfs.join("manifest"), MANIFEST).unwrap();
    std::os::unix::fs::symlink("/", link_rootfs.join("rootfs")).unwrap();
    refuse(link_rootfs, ErrorKind::WrongTopLevelType).await;

    let socket = small_layout(&tmp.path().join("socket"), MANIFEST.as_bytes());
    let _listener = std::os::unix::net::UnixListener::bind(socket.join("rootfs/etc/sock")).unwrap();
    let err = Builder::new()
        .build(&socket, &out, acikit::progress::Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedEntryType, "{err}");
    assert_eq!(err.entry(), Some("rootfs/etc/sock"));
    assert!(std::fs::read_dir(&out_dir).unwrap().next().is_none());

    // A cancelled build leaves nothing either.
    let good = small_layout(&tmp.path().join("good"), MANIFEST.as_bytes());
    let observer = acikit::progress::Observer::default();
    observer.cancel.cancel();
    let err = Builder::new()
        .build(&good, &out, observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(std::fs::read_dir(&out_dir).unwrap().next().is_none());
    // And the same layout builds.
    Builder::new()
        .build(&good, &out, acikit::progress::Observer::default())
        .await
        .unwrap();
    assert!(out.exists());
}

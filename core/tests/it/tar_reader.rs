//! The tar reader against archives written by GNU tar, bsdtar and Python's tarfile:
//! every byte kept (`records + contents == original`), every attribute decoded.

use std::collections::HashMap;

use crate::common::*;
use acikit::testing::tar::EntryKind;

#[tokio::test]
async fn every_writer_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let layout = make_layout(dir.path(), true);
    let original_sparse = std::fs::read(layout.join("rootfs/sparse")).unwrap();
    let passwd = std::fs::read(layout.join("rootfs/etc/passwd")).unwrap();
    let mut tested = 0;
    for writer in WRITERS {
        if !have(writer.needs) {
            eprintln!(
                "skipping {}: {} is not installed",
                writer.name, writer.needs
            );
            continue;
        }
        let tar = dir.path().join(format!("{}.tar", writer.name));
        write_tar(&layout, writer, &tar);
        let bytes = std::fs::read(&tar).unwrap();
        let back = read_back(&bytes)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", writer.name));
        assert!(
            back.rebuilt == bytes,
            "{}: rebuilt stream differs",
            writer.name
        );
        let by_path: HashMap<&[u8], usize> = back
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.strip_suffix(b"/").unwrap_or(&e.path), i))
            .collect();
        let get = |p: &str| {
            let i = *by_path
                .get(p.as_bytes())
                .unwrap_or_else(|| panic!("{}: no {p}", writer.name));
            (&back.entries[i], &back.contents[i])
        };
        let (manifest, content) = get("manifest");
        assert_eq!(manifest.kind, EntryKind::Regular);
        assert_eq!(content.as_slice(), MANIFEST.as_bytes());
        // Of two hardlinked names, the first in the archive holds the content.
        let (a, b) = (get("rootfs/etc/passwd"), get("rootfs/etc/passwd-hardlink"));
        let ((e, content), (link, _)) = if a.0.index < b.0.index {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(content, &passwd, "{}", writer.name);
        assert_eq!(link.kind, EntryKind::Hardlink, "{}", writer.name);
        assert_eq!(
            link.link_target.as_deref(),
            Some(&e.path[..]),
            "{}",
            writer.name
        );
        assert_eq!(e.mtime.secs, 981_173_106, "{}", writer.name);
        if writer.name.starts_with("posix") || writer.name == "bsdtar-pax" {
            assert_eq!(
                e.mtime.nanos, 123_456_789,
                "{}: PAX sub-second mtime",
                writer.name
            );
        }
        if writer.name == "python-pax" {
            // Python writes the float it holds: 981173106.1234568.
            assert_eq!(
                e.mtime.nanos, 123_456_800,
                "{}: PAX sub-second mtime",
                writer.name
            );
        }
        if writer.xattrs {
            assert!(
                e.xattrs
                    .contains(&(b"user.comment".to_vec(), b"hello xattr".to_vec())),
                "{}: xattrs {:?}",
                writer.name,
                e.xattrs
            );
        }
        assert_eq!(get("rootfs/bin/big").0.mode, 0o4755, "{}", writer.name);
        assert_eq!(get("rootfs/empty-dir").0.mode, 0o1777, "{}", writer.name);
        assert_eq!(
            get("rootfs/empty-dir").0.kind,
            EntryKind::Directory,
            "{}",
            writer.name
        );
        if writer.long_names {
            let (sym, _) = get("rootfs/bin/passwd-link");
            assert_eq!(sym.kind, EntryKind::Symlink);
            assert_eq!(sym.link_target.as_deref(), Some(&b"../etc/passwd"[..]));
            let long_target = get("rootfs/bin/long-link").0.link_target.clone().unwrap();
            assert!(long_target.len() > 200, "{}: long link target", writer.name);
            assert_eq!(get("rootfs/bin/fifo").0.kind, EntryKind::Fifo);
            let deep = format!(
                "rootfs/{}/{}/{}/file",
                "a".repeat(100),
                "b".repeat(100),
                "c".repeat(60)
            );
            assert_eq!(get(&deep).1.as_slice(), b"deep\n", "{}", writer.name);
            if is_root() {
                let (null, _) = get("rootfs/bin/null");
                assert_eq!(
                    (null.kind, null.device),
                    (EntryKind::CharDevice, Some((1, 3))),
                    "{}",
                    writer.name
                );
                let (lp, _) = get("rootfs/bin/loop");
                assert_eq!(
                    (lp.kind, lp.device),
                    (EntryKind::BlockDevice, Some((7, 0))),
                    "{}",
                    writer.name
                );
            }
            if writer.non_utf8 {
                let latin1: &[u8] = b"rootfs/caf\xe9-latin1";
                assert!(
                    by_path.contains_key(latin1),
                    "{}: non-UTF-8 name",
                    writer.name
                );
            }
            let (sparse, data) = get("rootfs/sparse");
            assert_eq!(sparse.logical_size(), 5 * 1024 * 1024, "{}", writer.name);
            if writer.sparse {
                assert!(sparse.sparse.is_some(), "{}: sparse map", writer.name);
                assert!(
                    data.len() < 100_000,
                    "{}: holes are not stored",
                    writer.name
                );
            }
            assert!(
                expand_sparse(sparse, data) == original_sparse,
                "{}: sparse content",
                writer.name
            );
        }
        tested += 1;
    }
    assert!(tested >= 7, "at least GNU tar and Python wrote archives");
}

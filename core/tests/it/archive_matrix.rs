//! `inspect_file` accepts real image archives from every writer (GNU tar, bsdtar, Python's
//! tarfile, in every format) under every compression (none, gzip, bzip2, xz, zstd), and
//! reports the right image ID (`sha512sum` of the uncompressed tar), compression, sizes and
//! counts. Also: multi-member gzip, GNU record padding, trailing bytes after the end blocks,
//! and names and link targets longer than 255 bytes.

use std::path::{Path, PathBuf};

use crate::common::*;
use acikit::ErrorKind;
use acikit::archive::Compression;
use acikit::archive::Limits;
use acikit::archive::{Inspection, inspect_file};
use acikit::progress::Observer;
use acikit::testing::tar::EntryKind;

fn compression_named(name: &str) -> Compression {
    match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "bzip2" => Compression::Bzip2,
        "xz" => Compression::Xz,
        "zstd" => Compression::Zstd,
        other => panic!("unknown compressor {other}"),
    }
}

/// Inspects `path`, panicking with `what` and the error on failure.
async fn inspect_ok(path: &Path, what: &str) -> Inspection {
    inspect_file(path, Limits::default(), Observer::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The counts the layout validator must report, from what the tar reader saw.
struct Expected {
    entries: u64,
    regular_files: u64,
    content_bytes: u64,
}

fn expected_counts(back: &ReadBack) -> Expected {
    let under_rootfs = |p: &[u8]| {
        let mut p = p;
        while let Some(rest) = p.strip_prefix(b"./") {
            p = rest;
        }
        p.starts_with(b"rootfs/") && p.len() > b"rootfs/".len()
    };
    let files: Vec<_> = back
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Regular && under_rootfs(&e.path))
        .collect();
    Expected {
        entries: back.entries.len() as u64,
        regular_files: files.len() as u64,
        content_bytes: files.iter().map(|e| e.logical_size()).sum(),
    }
}

/// One writer's archive, compressed every way: (compressor name, file).
struct Written {
    writer: &'static Writer,
    tar: PathBuf,
    compressed: Vec<(&'static str, PathBuf)>,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_writer_and_compressor_is_valid_with_the_right_id() {
    let dir = tempfile::tempdir().unwrap();
    let layout = make_layout(dir.path(), true);
    let writers: Vec<&'static Writer> = WRITERS
        .iter()
        .filter(|w| {
            let ok = have(w.needs);
            if !ok {
                eprintln!("skipping {}: {} is not installed", w.name, w.needs);
            }
            ok
        })
        .collect();
    for (name, command) in COMPRESSORS {
        let program = command.split(' ').next().unwrap();
        assert!(
            have(program),
            "compressor {name} ({program}) is not installed"
        );
    }
    // Writing and compressing dominate the run time: one thread per writer.
    let written: Vec<Written> = std::thread::scope(|s| {
        let handles: Vec<_> = writers
            .iter()
            .map(|&writer| {
                let (dir, layout) = (dir.path(), &layout);
                s.spawn(move || {
                    let tar = dir.join(format!("{}.tar", writer.name));
                    write_tar(layout, writer, &tar);
                    let compressed = COMPRESSORS
                        .iter()
                        .map(|&(name, command)| {
                            let out = dir.join(format!("{}.{name}.aci", writer.name));
                            compress(&tar, command, &out);
                            (name, out)
                        })
                        .collect();
                    Written {
                        writer,
                        tar,
                        compressed,
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut checked = 0;
    for w in &written {
        let name = w.writer.name;
        let bytes = std::fs::read(&w.tar).unwrap();
        if name == "gnu" {
            assert_eq!(
                bytes.len() % 10240,
                0,
                "GNU tar pads to 10 KiB records by default"
            );
        }
        let back = read_back(&bytes)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(back.rebuilt == bytes, "{name}: rebuilt stream differs");
        let expected = expected_counts(&back);
        let id = sha512sum(&w.tar);
        for (comp, path) in &w.compressed {
            let what = format!("{name} + {comp}");
            let got = inspect_ok(path, &what).await;
            assert_eq!(got.image_id.to_string(), id, "{what}: image ID");
            assert_eq!(got.compression, compression_named(comp), "{what}");
            assert_eq!(got.compression.as_str(), *comp, "{what}");
            assert_eq!(got.uncompressed_size, bytes.len() as u64, "{what}");
            let file_len = std::fs::metadata(path).unwrap().len();
            assert_eq!(got.compressed_size, file_len, "{what}: compressed size");
            assert_eq!(got.manifest.raw(), MANIFEST.as_bytes(), "{what}: manifest");
            assert_eq!(got.entries, expected.entries, "{what}: entries");
            assert_eq!(
                got.regular_files, expected.regular_files,
                "{what}: regular files"
            );
            assert_eq!(
                got.content_bytes, expected.content_bytes,
                "{what}: content bytes"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 7 * COMPRESSORS.len(),
        "at least GNU tar and Python wrote archives"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_member_gzip_is_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let layout = make_layout(dir.path(), false);
    let tar = dir.path().join("whole.tar");
    write_tar(&layout, &WRITERS[0], &tar);
    let bytes = std::fs::read(&tar).unwrap();
    // Split inside a member's content, at an odd offset.
    let cut = bytes.len() / 2 + 123;
    std::fs::write(dir.path().join("a"), &bytes[..cut]).unwrap();
    std::fs::write(dir.path().join("b"), &bytes[cut..]).unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    sh(
        dir.path(),
        "gzip -c a > multi.aci; gzip -c empty >> multi.aci; gzip -c b >> multi.aci",
    );
    let multi = dir.path().join("multi.aci");
    // gzip itself sees one stream.
    sh(dir.path(), "gzip -dc multi.aci | cmp - whole.tar");
    let got = inspect_ok(&multi, "three gzip members").await;
    assert_eq!(got.image_id.to_string(), sha512sum(&tar));
    assert_eq!(got.compression, Compression::Gzip);
    assert_eq!(got.uncompressed_size, bytes.len() as u64);
    assert_eq!(
        got.compressed_size,
        std::fs::metadata(&multi).unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn record_padding_and_trailing_bytes_are_part_of_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let layout = make_layout(dir.path(), false);
    let tar = dir.path().join("padded.tar");
    write_tar(&layout, &WRITERS[0], &tar);
    let padded = std::fs::read(&tar).unwrap();
    assert_eq!(padded.len() % 10240, 0, "GNU tar pads to 10 KiB records");
    let end = padded.len() - padded.iter().rev().take_while(|&&b| b == 0).count();
    assert!(
        padded.len() - end >= 1024 + 512,
        "end blocks and record padding"
    );
    let got = inspect_ok(&tar, "GNU tar with record padding").await;
    assert_eq!(got.image_id.to_string(), sha512sum(&tar));
    assert_eq!(got.uncompressed_size, padded.len() as u64);

    let mut trailing = padded.clone();
    trailing.extend((0..1000u32).map(|i| b"trailing garbage\n"[i as usize % 17]));
    let path = dir.path().join("trailing.tar");
    std::fs::write(&path, &trailing).unwrap();
    let got = inspect_ok(&path, "trailing bytes").await;
    assert_eq!(
        got.image_id.to_string(),
        sha512sum(&path),
        "the ID covers the trailing bytes"
    );
    assert_ne!(got.image_id.to_string(), sha512sum(&tar));
    assert_eq!(got.uncompressed_size, trailing.len() as u64);
    let back = read_back(&trailing).await.unwrap();
    assert!(
        back.rebuilt == trailing,
        "rebuilt stream keeps the trailing bytes"
    );

    // The same, gzip-compressed: same ID.
    let gz = dir.path().join("trailing.aci");
    compress(&path, "gzip -c", &gz);
    let got = inspect_ok(&gz, "trailing bytes, gzip").await;
    assert_eq!(got.image_id.to_string(), sha512sum(&path));
    assert_eq!(got.compression, Compression::Gzip);
}

#[tokio::test(flavor = "multi_thread")]
async fn gnu_long_names_and_link_targets() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("long");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(layout.join("manifest"), MANIFEST).unwrap();
    let deep = format!(
        "{}/{}/{}",
        "a".repeat(200),
        "b".repeat(200),
        "c".repeat(200)
    );
    let target = "t/".repeat(600); // 1200 bytes
    sh(
        &layout,
        &format!(
            "cd rootfs && mkdir -p {deep} && printf long > {deep}/file && \
             ln {deep}/file hard && ln -s {target}end {deep}/sym && \
             ln -s {target}end short-sym"
        ),
    );
    let tar = dir.path().join("long.tar");
    sh(
        &layout,
        &format!("tar --format=gnu -cf '{}' manifest rootfs", tar.display()),
    );
    let bytes = std::fs::read(&tar).unwrap();
    let back = read_back(&bytes).await.unwrap();
    assert!(back.rebuilt == bytes);
    let file_path = format!("rootfs/{deep}/file");
    assert!(file_path.len() > 600);
    let entry = |p: &str| {
        back.entries
            .iter()
            .find(|e| e.path == p.as_bytes())
            .unwrap_or_else(|| panic!("no entry {p}"))
    };
    assert_eq!(entry(&file_path).kind, EntryKind::Regular);
    let sym = entry(&format!("rootfs/{deep}/sym"));
    assert_eq!(
        sym.link_target.as_deref(),
        Some(format!("{target}end").as_bytes())
    );
    // GNU tar writes the long hardlink target in a long-link ('K') header.
    let hard = entry("rootfs/hard");
    assert_eq!(hard.kind, EntryKind::Hardlink);
    assert_eq!(hard.link_target.as_deref(), Some(file_path.as_bytes()));

    let got = inspect_ok(&tar, "GNU long names").await;
    assert_eq!(got.image_id.to_string(), sha512sum(&tar));
    assert_eq!(got.entries, back.entries.len() as u64);
    assert_eq!(got.regular_files, 1, "the hardlink is not counted");
    assert_eq!(got.content_bytes, 4);

    // The whole long names are checked, not the 100 bytes of the header field.
    let mut short = Limits::default();
    short.max_path_len = 300;
    let err = inspect_file(&tar, short, Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
}

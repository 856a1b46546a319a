//! Every archive of the foundation tests round-trips through the store: imported
//! (`Store::import_file`) into a fresh store, exported (`Store::export_to`, and the async
//! `Store::export_reader`) byte for byte as the tool wrote the tar, with
//! `sha512sum(export) == image ID`. Every writer (GNU tar in every format including the
//! three sparse versions, bsdtar, Python) under every compressor; GNU record padding (10 KiB
//! and 32 KiB), trailing bytes after the end blocks, multi-member gzip; gzip and zstd
//! exports read back by the system tools, and deterministic gzip.

use std::path::{Path, PathBuf};

use crate::common::*;
use acikit::progress::Observer;
use acikit::schema::ImageId;
use acikit::store::{ExportCompression, ImportOptions};
use acikit::{ErrorKind, Store};
use tokio::io::AsyncReadExt;

/// One writer's tar, compressed every way: (compressor name, file).
struct Written {
    writer: &'static Writer,
    tar: PathBuf,
    compressed: Vec<(&'static str, PathBuf)>,
}

/// Where [`round_trip`] exports the image of the store at `store_dir`: beside the store, not
/// inside it (exports into the store folder are refused).
fn export_path(store_dir: &Path) -> std::path::PathBuf {
    let mut name = store_dir.file_name().unwrap().to_os_string();
    name.push(".export.tar");
    store_dir.with_file_name(name)
}

/// Imports `archive` into a fresh store at `store_dir`, checks the import's figures, exports
/// the image to a file and through the async reader, and checks both against `tar` (the
/// uncompressed bytes the tool wrote) and `sha512sum`. Returns the store.
async fn round_trip(store_dir: &Path, archive: &Path, tar: &[u8], id: &str, what: &str) -> Store {
    let store = Store::open(store_dir)
        .await
        .unwrap_or_else(|e| panic!("{what}: opening the store: {e}"));
    let imported = store
        .import_file(archive, ImportOptions::default(), Observer::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: import: {e}"));
    assert_eq!(imported.image_id.as_str(), id, "{what}: image ID");
    assert!(!imported.already_present, "{what}: a fresh store");
    assert_eq!(imported.tar_size, tar.len() as u64, "{what}: tar size");
    assert_eq!(
        imported.archive_size,
        std::fs::metadata(archive).unwrap().len(),
        "{what}: archive size"
    );
    assert_eq!(
        imported.name, "example.com/test",
        "{what}: name from the manifest"
    );

    let image_id = ImageId::parse(id).unwrap();
    let out = export_path(store_dir);
    let exported = store
        .export_to(
            &image_id,
            &out,
            ExportCompression::None,
            Observer::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: export: {e}"));
    assert_eq!(exported.tar_size, tar.len() as u64, "{what}");
    assert_eq!(exported.written, tar.len() as u64, "{what}");
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        bytes == tar,
        "{what}: the export differs from the tar the tool wrote ({} vs {} bytes, first difference at {:?})",
        bytes.len(),
        tar.len(),
        bytes.iter().zip(tar).position(|(a, b)| a != b)
    );
    assert_eq!(sha512sum(&out), id, "{what}: sha512sum of the export");
    std::fs::remove_file(&out).unwrap();

    let mut reader = store
        .export_reader(&image_id)
        .await
        .unwrap_or_else(|e| panic!("{what}: export_reader: {e}"));
    let mut streamed = Vec::with_capacity(tar.len());
    reader
        .read_to_end(&mut streamed)
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the export stream: {e}"));
    assert!(
        streamed == tar,
        "{what}: the export stream differs from the tar"
    );
    store
}

fn installed_writers() -> Vec<&'static Writer> {
    WRITERS
        .iter()
        .filter(|w| {
            let ok = have(w.needs);
            if !ok {
                eprintln!("skipping {}: {} is not installed", w.name, w.needs);
            }
            ok
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_writer_and_compressor_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let layout = make_layout(dir.path(), true);
    for (name, command) in COMPRESSORS {
        let program = command.split(' ').next().unwrap();
        assert!(
            have(program),
            "compressor {name} ({program}) is not installed"
        );
    }
    let writers = installed_writers();
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

    let mut round_trips = 0;
    for w in &written {
        let name = w.writer.name;
        let tar = std::fs::read(&w.tar).unwrap();
        let id = sha512sum(&w.tar);
        // The archive really holds what the case is about.
        if name == "gnu" {
            assert_eq!(tar.len() % 10240, 0, "GNU tar pads to 10 KiB records");
        }
        if w.writer.sparse {
            // The 5 MiB sparse file holds 22 bytes of data: a sparse member keeps the tar
            // near the 2 MiB of the other files.
            assert!(
                tar.len() < 4 << 20,
                "{name}: the sparse file is stored sparse ({} bytes)",
                tar.len()
            );
        }
        for (comp, archive) in &w.compressed {
            let what = format!("{name} + {comp}");
            let store_dir = dir.path().join(format!("store-{name}-{comp}"));
            let store = round_trip(&store_dir, archive, &tar, &id, &what).await;
            if *comp == "none" {
                let report = store.fsck(false, Observer::default()).await.unwrap();
                assert!(report.is_clean(), "{what}: fsck: {:?}", report.problems);
                assert_eq!(report.images_checked, 1);
            }
            drop(store);
            std::fs::remove_dir_all(&store_dir).unwrap();
            round_trips += 1;
        }
    }
    assert!(
        round_trips >= 7 * COMPRESSORS.len(),
        "at least GNU tar and Python wrote archives"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn record_padding_trailing_bytes_and_multi_member_gzip_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = make_layout(d, false);

    // GNU tar's default 10 KiB records, and 32 KiB records (-b 64).
    let padded = d.join("padded.tar");
    write_tar(&layout, &WRITERS[0], &padded);
    let padded_bytes = std::fs::read(&padded).unwrap();
    assert_eq!(padded_bytes.len() % 10240, 0);
    let zeros = padded_bytes.iter().rev().take_while(|&&b| b == 0).count();
    assert!(zeros >= 1024 + 512, "end blocks and record padding");
    let b64 = d.join("b64.tar");
    sh(
        &layout,
        &format!(
            "tar --format=gnu --sparse -b 64 -cf '{}' manifest rootfs",
            b64.display()
        ),
    );
    let b64_bytes = std::fs::read(&b64).unwrap();
    assert_eq!(b64_bytes.len() % (64 * 512), 0, "32 KiB records");

    // 1000 non-zero bytes after the end blocks.
    let mut trailing_bytes = padded_bytes.clone();
    trailing_bytes.extend((0..1000u32).map(|i| b"trailing garbage\n"[i as usize % 17]));
    let trailing = d.join("trailing.tar");
    std::fs::write(&trailing, &trailing_bytes).unwrap();
    let trailing_gz = d.join("trailing.aci");
    compress(&trailing, "gzip -c", &trailing_gz);

    // Three gzip members, one empty, split inside a member's content.
    let cut = padded_bytes.len() / 2 + 123;
    std::fs::write(d.join("a"), &padded_bytes[..cut]).unwrap();
    std::fs::write(d.join("b"), &padded_bytes[cut..]).unwrap();
    std::fs::write(d.join("empty"), b"").unwrap();
    sh(
        d,
        "gzip -c a > multi.aci; gzip -c empty >> multi.aci; gzip -c b >> multi.aci",
    );
    sh(d, "gzip -dc multi.aci | cmp - padded.tar");

    let cases: [(&str, &Path, &[u8], &Path); 5] = [
        ("10 KiB records", &padded, &padded_bytes, &padded),
        ("32 KiB records", &b64, &b64_bytes, &b64),
        ("trailing bytes", &trailing, &trailing_bytes, &trailing),
        (
            "trailing bytes, gzip",
            &trailing_gz,
            &trailing_bytes,
            &trailing,
        ),
        (
            "multi-member gzip",
            &d.join("multi.aci"),
            &padded_bytes,
            &padded,
        ),
    ];
    for (what, archive, tar, tar_path) in cases {
        let id = sha512sum(tar_path);
        let store_dir = d.join(format!("store-{}", what.replace([' ', ','], "-")));
        round_trip(&store_dir, archive, tar, &id, what).await;
    }
    assert_ne!(
        sha512sum(&trailing),
        sha512sum(&padded),
        "the ID covers the trailing bytes"
    );
}

/// Exports `id` to `out` with `compression`; checks the figures and returns the file's bytes.
async fn export(
    store: &Store,
    id: &ImageId,
    out: &Path,
    compression: ExportCompression,
    tar_size: usize,
) -> Vec<u8> {
    let exported = store
        .export_to(id, out, compression, Observer::default())
        .await
        .unwrap_or_else(|e| panic!("{compression:?} export: {e}"));
    assert_eq!(
        exported.tar_size, tar_size as u64,
        "{compression:?}: tar size"
    );
    assert_eq!(
        exported.written,
        std::fs::metadata(out).unwrap().len(),
        "{compression:?}: written"
    );
    std::fs::read(out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_zstd_exports_decompress_to_the_tar() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layout = make_layout(d, false);
    // POSIX with xattrs and a sparse file: the richest archive.
    let tar = d.join("image.tar");
    write_tar(&layout, &WRITERS[1], &tar);
    let tar_bytes = std::fs::read(&tar).unwrap();
    let id = ImageId::parse(&sha512sum(&tar)).unwrap();
    let archive = d.join("image.aci");
    compress(&tar, "gzip -c", &archive);
    let store = Store::open(d.join("store")).await.unwrap();
    store
        .import_file(&archive, ImportOptions::default(), Observer::default())
        .await
        .unwrap();

    let gz1 = export(
        &store,
        &id,
        &d.join("one.tar.gz"),
        ExportCompression::Gzip,
        tar_bytes.len(),
    )
    .await;
    let gz2 = export(
        &store,
        &id,
        &d.join("two.tar.gz"),
        ExportCompression::Gzip,
        tar_bytes.len(),
    )
    .await;
    assert_eq!(&gz1[..3], &[0x1f, 0x8b, 8], "gzip magic, deflate");
    assert_eq!(&gz1[4..8], &[0, 0, 0, 0], "no modification time");
    assert!(gz1 == gz2, "gzip export is deterministic");
    assert!(gz1.len() < tar_bytes.len(), "gzip compresses the tar");
    sh(
        d,
        "gzip -t one.tar.gz && gzip -dc one.tar.gz | cmp - image.tar",
    );

    let zst = export(
        &store,
        &id,
        &d.join("image.tar.zst"),
        ExportCompression::Zstd,
        tar_bytes.len(),
    )
    .await;
    assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    sh(
        d,
        "zstd -q -t image.tar.zst && zstd -q -dc image.tar.zst | cmp - image.tar",
    );

    // A compressed export imports back as the same image.
    let again = store
        .import_file(
            d.join("image.tar.zst"),
            ImportOptions::default(),
            Observer::default(),
        )
        .await
        .unwrap();
    assert_eq!(again.image_id, id);
    assert!(again.already_present);

    // Exporting an image the store does not have fails and writes nothing.
    let unknown = ImageId::parse(&format!("sha512-{}", "0".repeat(128))).unwrap();
    let out = d.join("unknown.tar");
    let err = store
        .export_to(&unknown, &out, ExportCompression::Gzip, Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!out.exists());
}

//! The exact original compressed bytes of an image (issue 16, item 3): gzip written by GNU gzip
//! (-1, -6, -9, -n), pigz, Python's gzip module, our own gzip (zlib-rs) and several members
//! gives back the very same bytes through `export --compression original`; zstd, xz and bzip2
//! are kept (or re-created) and reported; a damaged correction record or kept file is found
//! and never given out; `rm` and `gc` remove the files; a cancelled import leaves none; an
//! import with recording off has no original.

use std::path::{Path, PathBuf};

use crate::common::*;
use acikit::progress::Observer;
use acikit::schema::ImageId;
use acikit::store::{ExportCompression, ImportOptions, OriginalForm};
use acikit::{ErrorKind, Store};

/// A tar of real files (this crate's sources, some zeros, some noise): what gzip sees in images.
fn sample_tar(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, path) in files_under(&src).into_iter().take(40).enumerate() {
        if path.is_file() {
            files.push((format!("src/{i}.rs"), std::fs::read(&path).unwrap()));
        }
    }
    files.push(("zeros".into(), vec![0u8; 300_000]));
    files.push(("noise".into(), pseudo_random(7, 200_000)));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    let out = dir.join("image.tar");
    image_tar(
        &dir.join("layout"),
        &manifest_for("example.com/original", "1.0.0"),
        &refs,
        &out,
    );
    out
}

/// Imports `archive` into a fresh store under `dir`, exports its original and checks it is
/// the archive byte for byte, both as the import kept it (pending) and after the compaction.
/// Returns the store, the image and its compacted original form.
async fn round_trip(dir: &Path, archive: &Path, what: &str) -> (Store, ImageId, OriginalForm) {
    let store = Store::open(dir.join(format!("store-{what}")))
        .await
        .unwrap();
    let imported = store
        .import_file(
            archive,
            ImportOptions::default().record_original(true),
            Observer::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: import: {e}"));
    let size = std::fs::metadata(archive).unwrap().len();
    let kept = store
        .original(&imported.image_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: no original recorded"));
    assert_eq!(kept.size, size, "{what}");
    if kept.compression != "none" {
        assert_eq!(
            kept.form,
            OriginalForm::Kept,
            "{what}: kept until compacted"
        );
        assert!(kept.pending, "{what}: kept until compacted");
        assert_eq!(kept.kept_bytes, size, "{what}");
    }
    export_is(&store, &imported.image_id, dir, archive, what).await;
    let compaction = store.compact_originals(Observer::default()).await.unwrap();
    let original = store.original(&imported.image_id).await.unwrap().unwrap();
    assert!(!original.pending, "{what}: compacted");
    assert_eq!(
        compaction.compacted + compaction.kept,
        u64::from(kept.pending),
        "{what}: {compaction:?}"
    );
    assert_eq!(
        (original.size, &original.sha256),
        (size, &kept.sha256),
        "{what}"
    );
    export_is(&store, &imported.image_id, dir, archive, what).await;
    (store, imported.image_id, original.form)
}

/// Exports the original of `id` and checks it is `archive`, byte for byte.
async fn export_is(store: &Store, id: &ImageId, dir: &Path, archive: &Path, what: &str) {
    let size = std::fs::metadata(archive).unwrap().len();
    let out = dir.join(format!("{what}.out"));
    let exported = store
        .export_to(id, &out, ExportCompression::Original, Observer::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: export: {e}"));
    assert_eq!(exported.written, size, "{what}");
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(archive).unwrap(),
        "{what}: the original, byte for byte"
    );
    std::fs::remove_file(&out).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_from_every_writer_comes_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tar = sample_tar(dir);
    let t = tar.display();
    let mut writers: Vec<(&str, String, bool)> = vec![
        ("gzip-1", format!("gzip -1 -c '{t}' > gzip-1.aci"), true),
        ("gzip-6", format!("gzip -6 -c '{t}' > gzip-6.aci"), true),
        ("gzip-9", format!("gzip -9 -c '{t}' > gzip-9.aci"), true),
        ("gzip-n", format!("gzip -n -c < '{t}' > gzip-n.aci"), true),
        (
            "python",
            format!(
                "python3 -c 'import gzip,sys; sys.stdout.buffer.write(gzip.compress(open(\"{t}\",\"rb\").read(), 9, mtime=1))' > python.aci"
            ),
            false,
        ),
        (
            "multi",
            format!(
                "head -c 100000 '{t}' | gzip -c > multi.aci; tail -c +100001 '{t}' | gzip -1 -c >> multi.aci"
            ),
            true,
        ),
    ];
    if have("pigz") {
        writers.push(("pigz", format!("pigz -c '{t}' > pigz.aci"), false));
    } else {
        eprintln!("pigz not installed: skipped");
    }
    let mut forms = Vec::new();
    for (what, script, must_be_gzip) in &writers {
        sh(dir, script);
        let (store, _, form) = round_trip(dir, &dir.join(format!("{what}.aci")), what).await;
        forms.push((*what, form));
        if *must_be_gzip {
            assert_eq!(form, OriginalForm::Gzip, "{what}: a correction record");
        } else {
            assert!(
                matches!(form, OriginalForm::Gzip | OriginalForm::Kept),
                "{what}"
            );
        }
        store.close().await;
    }
    // Ours (flate2 on zlib-rs): exact either way.
    let ours = dir.join("ours.aci");
    {
        use std::io::Write;
        let mut gz = flate2::GzBuilder::new().mtime(0).write(
            std::fs::File::create(&ours).unwrap(),
            flate2::Compression::new(6),
        );
        gz.write_all(&std::fs::read(&tar).unwrap()).unwrap();
        gz.finish().unwrap();
    }
    let (store, _, form) = round_trip(dir, &ours, "ours").await;
    forms.push(("ours", form));
    assert!(
        matches!(form, OriginalForm::Gzip | OriginalForm::GzipExport),
        "our own gzip export is re-created, not kept: {form:?}"
    );
    store.close().await;
    eprintln!("original forms: {forms:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_compressions_are_kept_or_recompressed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tar = sample_tar(dir);
    for (what, command) in [
        ("zstd", "zstd -q -19 -c"),
        ("xz", "xz -c"),
        ("bzip2", "bzip2 -c"),
    ] {
        let archive = dir.join(format!("{what}.aci"));
        compress(&tar, command, &archive);
        let (store, id, form) = round_trip(dir, &archive, what).await;
        assert!(
            matches!(form, OriginalForm::Kept | OriginalForm::Recompress),
            "{what}: {form:?}"
        );
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.original_records, 1);
        assert_eq!(stats.original_images[0].image_id, id);
        if form == OriginalForm::Kept {
            let size = std::fs::metadata(&archive).unwrap().len();
            assert_eq!(stats.original_kept_bytes, size, "{what}: kept whole");
            assert_eq!(stats.original_forms.get("kept"), Some(&1));
            assert!(stats.original_images[0].original.reason.is_some());
        }
        store.close().await;
    }
    // A plain tar's original is the tar: nothing kept.
    let (store, _, form) = round_trip(dir, &tar, "tar").await;
    assert_eq!(form, OriginalForm::None);
    assert_eq!(store.stats().await.unwrap().original_kept_bytes, 0);
    store.close().await;
}

/// Flips a byte at a quarter, half and three quarters of `path` (one byte alone may fall in
/// the unused tail of an arithmetic-coded block of corrections and change nothing re-created).
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for quarter in 1..4 {
        let at = bytes.len() * quarter / 4;
        bytes[at] ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_records_are_found_and_never_given_out() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tar = sample_tar(dir);
    sh(dir, &format!("gzip -9 -c '{}' > image.aci", tar.display()));
    sh(dir, &format!("xz -c '{}' > image.xz.aci", tar.display()));
    for (what, archive, file) in [
        ("gzip", dir.join("image.aci"), "gzc"),
        ("xz", dir.join("image.xz.aci"), "aci"),
    ] {
        let (store, id, _) = round_trip(dir, &archive, what).await;
        let kept = store
            .dir()
            .join("originals")
            .join(format!("{}.{file}", id.hex()));
        if !kept.exists() {
            eprintln!("{what}: nothing kept (re-created by parameters): skipped");
            continue;
        }
        damage(&kept);
        let out = dir.join(format!("{what}-damaged.out"));
        let err = store
            .export_to(&id, &out, ExportCompression::Original, Observer::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptStore, "{what}: {err}");
        assert!(!out.exists(), "{what}: no byte given out");
        // Into a writer: nothing written either.
        let (tx, written) = shared_buffer();
        let err = store
            .export_to_writer(&id, tx, ExportCompression::Original, Observer::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptStore);
        assert!(
            written.lock().unwrap().is_empty(),
            "{what}: no byte written"
        );
        let report = store.fsck(false, Observer::default()).await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.kind == "damaged_original" && p.subject == id.to_string()),
            "{what}: {:?}",
            report.problems
        );
        // The image itself is fine: its tar still exports.
        store
            .export_to(&id, &out, ExportCompression::None, Observer::default())
            .await
            .unwrap();
        store.close().await;
    }
}

/// A writer whose bytes the test can read afterwards.
fn shared_buffer() -> (SharedWriter, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    (SharedWriter(buf.clone()), buf)
}

struct SharedWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The names of the files in `originals/` of the store at `dir`.
fn originals(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("originals")) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_gc_cancel_and_recording_off_leave_no_original_files() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tar = sample_tar(dir);
    sh(dir, &format!("gzip -c '{}' > image.aci", tar.display()));
    sh(
        dir,
        &format!("zstd -q -c '{}' > image.zst.aci", tar.display()),
    );
    let archive = dir.join("image.aci");
    let (store, id, _) = round_trip(dir, &archive, "rm").await;
    assert!(!originals(store.dir()).is_empty());
    store.remove(&id).await.unwrap();
    assert_eq!(
        originals(store.dir()),
        Vec::<String>::new(),
        "rm removes them"
    );

    // gc: files of an image no longer indexed (as an interrupted rm leaves them).
    let imported = store
        .import_file(
            &dir.join("image.zst.aci"),
            ImportOptions::default().record_original(true),
            Observer::default(),
        )
        .await
        .unwrap();
    let names = originals(store.dir());
    assert!(names.iter().any(|n| n.ends_with(".json")), "{names:?}");
    let orphan = ImageId::parse(&format!("sha512-{}", "ab".repeat(64))).unwrap();
    for name in &names {
        let ext = name.rsplit('.').next().unwrap();
        std::fs::copy(
            store.dir().join("originals").join(name),
            store
                .dir()
                .join("originals")
                .join(format!("{}.{ext}", orphan.hex())),
        )
        .unwrap();
    }
    store.gc(Observer::default()).await.unwrap();
    let after = originals(store.dir());
    assert!(
        after.iter().all(|n| n.starts_with(imported.image_id.hex())),
        "{after:?}"
    );
    assert_eq!(after.len(), names.len());
    store.close().await;

    // Recording off: no original, and exporting it is a clear error.
    let store = Store::open(dir.join("store-off")).await.unwrap();
    let imported = store
        .import_file(
            &archive,
            ImportOptions::default().record_original(false),
            Observer::default(),
        )
        .await
        .unwrap();
    assert_eq!(store.original(&imported.image_id).await.unwrap(), None);
    let err = store
        .export_to(
            &imported.image_id,
            dir.join("off.out"),
            ExportCompression::Original,
            Observer::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("no original form"), "{err}");
    // Importing the same archive again with recording on adds it.
    store
        .import_file(
            &archive,
            ImportOptions::default().record_original(true),
            Observer::default(),
        )
        .await
        .unwrap();
    assert!(store.original(&imported.image_id).await.unwrap().is_some());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_import_leaves_no_original() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let image = big_image(dir, 8, 1 << 20, 3);
    let archive = dir.join("big.aci");
    sh(
        dir,
        &format!(
            "gzip -1 -c '{}' > '{}'",
            image.path.display(),
            archive.display()
        ),
    );
    let store = Store::open(dir.join("store")).await.unwrap();
    let (observer, _seen) = crate::common::observe::cancel_at_first_event();
    let err = store
        .import_file(
            &archive,
            ImportOptions::default().record_original(true),
            observer,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(originals(store.dir()).is_empty());
    let tmp: Vec<_> = std::fs::read_dir(store.dir().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_survives_a_store_move() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tar = sample_tar(dir);
    sh(
        dir,
        &format!("gzip -9 -n -c '{}' > image.aci", tar.display()),
    );
    let archive = dir.join("image.aci");
    let (store, id, form) = round_trip(dir, &archive, "before").await;
    assert_eq!(form, OriginalForm::Gzip);
    let from = store.dir().to_path_buf();
    store.close().await;
    let to = dir.join("moved");
    std::fs::rename(&from, &to).unwrap();
    let store = Store::open(&to).await.unwrap();
    let out = dir.join("moved.out");
    store
        .export_to(&id, &out, ExportCompression::Original, Observer::default())
        .await
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&archive).unwrap());
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_or_damaged_compaction_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tar = sample_tar(dir);
    sh(dir, &format!("gzip -6 -c '{}' > image.aci", tar.display()));
    let archive = dir.join("image.aci");
    let store = Store::open(dir.join("store")).await.unwrap();
    let id = store
        .import_file(
            &archive,
            ImportOptions::default().record_original(true),
            Observer::default(),
        )
        .await
        .unwrap()
        .image_id;
    let before = originals(store.dir());

    // Cancelled: still pending, the same files, nothing left in tmp/.
    let (observer, _seen) = crate::common::observe::cancel_at_first_event();
    let err = store.compact_originals(observer).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(store.original(&id).await.unwrap().unwrap().pending);
    assert_eq!(originals(store.dir()), before);
    let tmp: Vec<_> = std::fs::read_dir(store.dir().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // Damaged kept bytes: nothing is made from them; the error names the file, and the
    // record stays pending for fsck to report.
    let kept = store
        .dir()
        .join("originals")
        .join(format!("{}.aci", id.hex()));
    damage(&kept);
    let err = store
        .compact_originals(Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptStore, "{err}");
    assert!(err.message().contains(&kept.display().to_string()), "{err}");
    assert!(store.original(&id).await.unwrap().unwrap().pending);
    assert_eq!(originals(store.dir()), before);
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(
        report.problems.iter().any(|p| p.kind == "damaged_original"),
        "{:?}",
        report.problems
    );
    store.close().await;
}

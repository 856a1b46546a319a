//! Content digests across tar encodings, and sparse objects: the same tree written by GNU tar
//! (with and without `--sparse`, in each sparse dialect), bsdtar and Python's tarfile into one
//! store gives one object per distinct file content, and each image still exports byte for
//! byte; a 1 GiB sparse file imports, renders with each strategy and exports with a few KB
//! allocated; a dense file of zeros becomes an object without data blocks; a store whose
//! recipes are of version 1 (sparse members stored by their data segments) still exports
//! exactly and passes `fsck`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use acikit::progress::Observer;
use acikit::schema::ImageId;
use acikit::store::{ExportCompression, ImportOptions};
use acikit::testing::range::{Objects, tar_range};
use acikit::{RenderOptions, Store, Strategy};

/// The distinct contents of the non-empty regular files under `dir` (hardlinks once).
fn distinct_contents(dir: &Path, out: &mut HashSet<Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            distinct_contents(&entry.path(), out);
        } else if ft.is_file() && entry.metadata().unwrap().len() > 0 {
            out.insert(sha256_of(&std::fs::read(entry.path()).unwrap()));
        }
    }
}

fn sha256_of(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Bytes allocated on disk for `path`.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Every object file of the store at `store_dir`, with its logical and allocated sizes.
fn objects(store_dir: &Path) -> Vec<(PathBuf, u64, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![store_dir.join("objects")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let m = entry.metadata().unwrap();
                out.push((entry.path(), m.len(), m.blocks() * 512));
            }
        }
    }
    out
}

/// Imports `tar` and checks that its export is the tar itself (its image ID).
async fn import_and_export(store: &Store, tar: &Path, out: &Path, what: &str) -> ImageId {
    let imported = store
        .import_file(tar, ImportOptions::default(), Observer::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: import: {e}"));
    let id = ImageId::parse(&sha512sum(tar)).unwrap();
    assert_eq!(imported.image_id, id, "{what}");
    store
        .export_to(&id, out, ExportCompression::None, Observer::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: export: {e}"));
    assert_eq!(
        std::fs::read(out).unwrap(),
        std::fs::read(tar).unwrap(),
        "{what}: the export is the tar, byte for byte"
    );
    std::fs::remove_file(out).unwrap();
    id
}

/// Checks the range reads of serve (`tar_range`) of `id` against its tar.
async fn check_ranges(store: &Store, id: &ImageId, tar_bytes: &[u8], ranges: &[(u64, u64)]) {
    let paths = acikit::testing::paths::of(store);
    for &(from, to) in ranges {
        let mut range = tar_range(
            paths.recipe(id),
            Objects::Folder(paths.objects()),
            id.sha512(),
            tar_bytes.len() as u64,
            from,
            to,
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = range.next_chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert!(got == tar_bytes[from as usize..to as usize], "{from}..{to}");
    }
}

/// A layout with a sparse file (holes and data), a dense file of zeros, a dense file whose
/// content equals the sparse file's logical content, a random file over 1 MiB and small files.
fn mixed_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(layout.join("manifest"), MANIFEST).unwrap();
    sh(
        &layout,
        r#"
cd rootfs
truncate -s 6M sparse
printf 'data in the middle' | dd of=sparse bs=1 seek=2000000 conv=notrunc 2>/dev/null
head -c 9000 /dev/urandom | dd of=sparse bs=1 seek=4194304 conv=notrunc 2>/dev/null
printf 'tail' | dd of=sparse bs=1 seek=6291000 conv=notrunc 2>/dev/null
cp --sparse=never sparse dense-copy-of-sparse
head -c 3145728 /dev/zero > zeros
head -c 1500000 /dev/urandom > random
printf 'hello\n' > etc/hello
printf 'root:x:0:0::/root:/bin/sh\n' > etc/passwd
"#,
    );
    layout
}

/// The tar writers of the test: GNU tar with and without `--sparse` in each format and
/// sparse dialect, bsdtar, Python's tarfile.
const WRITERS: &[(&str, &str, &str)] = &[
    (
        "gnu-sparse",
        "tar",
        "tar --format=gnu --sparse -cf \"$OUT\" manifest rootfs",
    ),
    (
        "gnu-dense",
        "tar",
        "tar --format=gnu -cf \"$OUT\" manifest rootfs",
    ),
    (
        "posix-dense",
        "tar",
        "tar --format=posix -cf \"$OUT\" manifest rootfs",
    ),
    (
        "posix-sparse-0.0",
        "tar",
        "tar --format=posix --sparse --sparse-version=0.0 -cf \"$OUT\" manifest rootfs",
    ),
    (
        "posix-sparse-0.1",
        "tar",
        "tar --format=posix --sparse --sparse-version=0.1 -cf \"$OUT\" manifest rootfs",
    ),
    (
        "posix-sparse-1.0",
        "tar",
        "tar --format=posix --sparse --sparse-version=1.0 -cf \"$OUT\" manifest rootfs",
    ),
    (
        "bsdtar-pax",
        "bsdtar",
        "bsdtar --format=pax -cf \"$OUT\" manifest rootfs",
    ),
    (
        "bsdtar-gnutar",
        "bsdtar",
        "bsdtar --format=gnutar -cf \"$OUT\" manifest rootfs",
    ),
    (
        "python-pax",
        "python3",
        "python3 -c \"import tarfile,os; t=tarfile.open(os.environ['OUT'],'w',format=tarfile.PAX_FORMAT); t.add('manifest'); t.add('rootfs'); t.close()\"",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn one_object_per_content_whatever_wrote_the_tar() {
    let dir = tempfile::tempdir().unwrap();
    let layout = mixed_layout(dir.path());
    let mut contents = HashSet::new();
    contents.insert(sha256_of(MANIFEST.as_bytes()));
    distinct_contents(&layout.join("rootfs"), &mut contents);
    // manifest, sparse (= dense-copy-of-sparse), zeros, random, hello, passwd
    assert_eq!(contents.len(), 6);

    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    let out = dir.path().join("export.tar");
    let mut ids = HashSet::new();
    let mut sparse_members = 0;
    for (name, needs, script) in WRITERS {
        if !have(needs) {
            continue;
        }
        let tar = dir.path().join(format!("{name}.tar"));
        sh(
            &layout,
            &format!("OUT='{}'; export OUT; {script}", tar.display()),
        );
        if name.contains("sparse") {
            // The archive really holds sparse members: smaller than the 16.5 MB of files.
            assert!(std::fs::metadata(&tar).unwrap().len() < 12 << 20, "{name}");
            sparse_members += 1;
        }
        ids.insert(import_and_export(&store, &tar, &out, name).await);
        let stats = store.stats().await.unwrap();
        assert_eq!(
            stats.objects,
            contents.len() as u64,
            "{name}: one object per distinct content, whatever the encoding"
        );
    }
    assert!(ids.len() >= 6 && sparse_members >= 4, "{ids:?}");

    // The objects of holes and of dense zeros have (almost) no data blocks.
    let objects = objects(&store_dir);
    let zeros = objects.iter().find(|o| o.1 == 3 << 20).expect("the zeros");
    assert!(
        zeros.2 <= 4096,
        "a file of zeros allocates {} bytes",
        zeros.2
    );
    let sparse = objects
        .iter()
        .find(|o| o.1 == 6 << 20)
        .expect("the sparse file");
    assert!(
        sparse.2 <= 64 << 10,
        "the sparse file allocates {} bytes",
        sparse.2
    );
    let stats = store.stats().await.unwrap();
    assert!(
        stats.objects_disk_bytes < stats.object_bytes / 4,
        "allocated {} of {} logical bytes",
        stats.objects_disk_bytes,
        stats.object_bytes
    );

    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.images_checked, ids.len() as u64);
    assert_eq!(report.objects_checked, contents.len() as u64);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sparse_gibibyte_imports_renders_and_exports_with_a_few_kb() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(layout.join("manifest"), MANIFEST).unwrap();
    sh(
        &layout,
        r#"
truncate -s 1G rootfs/huge
printf 'head' | dd of=rootfs/huge bs=1 conv=notrunc 2>/dev/null
printf 'middle' | dd of=rootfs/huge bs=1 seek=536870912 conv=notrunc 2>/dev/null
printf 'end' | dd of=rootfs/huge bs=1 seek=1073741821 conv=notrunc 2>/dev/null
tar --format=posix --sparse --sparse-version=1.0 -cf ../huge.tar manifest rootfs
"#,
    );
    let tar = dir.path().join("huge.tar");
    assert!(std::fs::metadata(&tar).unwrap().len() < 1 << 20);
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    let id = import_and_export(&store, &tar, &dir.path().join("export.tar"), "1 GiB").await;
    let huge = objects(&store_dir)
        .into_iter()
        .find(|o| o.1 == 1 << 30)
        .expect("the 1 GiB object");
    assert!(huge.2 <= 16 << 10, "the object allocates {} bytes", huge.2);

    // The range reads of serve: the last bytes and a window around the middle.
    let tar_bytes = std::fs::read(&tar).unwrap();
    let len = tar_bytes.len() as u64;
    check_ranges(
        &store,
        &id,
        &tar_bytes,
        &[(0, len), (len / 2 - 700, len / 2 + 900), (len - 3000, len)],
    )
    .await;

    let mut strategies = vec![Strategy::Copy, Strategy::Hardlink];
    if is_root() {
        strategies.push(Strategy::Overlay);
        strategies.push(Strategy::Composefs);
    }
    for strategy in strategies {
        let target = dir.path().join(format!("run-{strategy:?}"));
        let mut options = RenderOptions::default();
        options.strategy = strategy;
        options.allow_unprotected_hardlink = true;
        let rendered = store
            .render(&id, &target, options, Observer::default())
            .await
            .unwrap_or_else(|e| panic!("{strategy:?}: {e}"));
        assert_eq!(rendered.strategy, strategy);
        let file = target.join("huge");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 1 << 30);
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&file).unwrap();
        let mut buf = [0u8; 6];
        f.read_exact_at(&mut buf, 536870912).unwrap();
        assert_eq!(&buf, b"middle", "{strategy:?}");
        f.read_exact_at(&mut buf[..3], (1 << 30) - 3).unwrap();
        assert_eq!(&buf[..3], b"end", "{strategy:?}");
        f.read_exact_at(&mut buf, 1 << 20).unwrap();
        assert_eq!(buf, [0; 6], "{strategy:?}");
        drop(f);
        // Once opened: overlayfs looks a composefs file's data up in the object folder lazily,
        // and until then shows the metadata image's block count (that of a full file).
        assert!(
            allocated(&file) <= 16 << 10,
            "{strategy:?}: the rendered file allocates {} bytes",
            allocated(&file)
        );
        store.release(&target).await.unwrap();
    }
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dense_file_of_zeros_becomes_a_sparse_object() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(layout.join("manifest"), MANIFEST).unwrap();
    // Zeros (small and large), and zeros around data not aligned to blocks.
    sh(
        &layout,
        r#"
head -c 20000000 /dev/zero > rootfs/zeros
head -c 600000 /dev/zero > rootfs/small-zeros
{ head -c 5000 /dev/zero; printf 'x'; head -c 3000000 /dev/zero; printf 'y'; } > rootfs/mixed
python3 -c "import tarfile; t=tarfile.open('../dense.tar','w',format=tarfile.PAX_FORMAT); t.add('manifest'); t.add('rootfs'); t.close()"
"#,
    );
    let tar = dir.path().join("dense.tar");
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    let id = import_and_export(&store, &tar, &dir.path().join("export.tar"), "zeros").await;
    let objects = objects(&store_dir);
    for (len, most) in [(20000000, 4096), (600000, 4096), (3005002, 3 * 4096)] {
        let object = objects.iter().find(|o| o.1 == len).expect("the object");
        assert!(object.2 <= most, "{len} bytes allocate {}", object.2);
    }
    // Served by ranges (holes of the objects filled with zeros, not read), exactly.
    let tar_bytes = std::fs::read(&tar).unwrap();
    let len = tar_bytes.len() as u64;
    let mut ranges = vec![(0, len), (len - 5000, len)];
    for k in 1..40 {
        let at = len * k / 40;
        ranges.push((at - 1000, at + 300_001));
    }
    check_ranges(&store, &id, &tar_bytes, &ranges).await;
    // Rendered with the holes kept, byte-exact.
    let target = dir.path().join("run");
    let mut options = RenderOptions::default();
    options.strategy = Strategy::Copy;
    store
        .render(&id, &target, options, Observer::default())
        .await
        .unwrap();
    for name in ["zeros", "small-zeros", "mixed"] {
        let file = target.join(name);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            std::fs::read(layout.join("rootfs").join(name)).unwrap(),
            "{name}"
        );
        assert!(allocated(&file) <= 3 * 4096, "{name}: {}", allocated(&file));
    }
    store.release(&target).await.unwrap();
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.close().await;
}

/// Rewrites the recipe of `id` in the form of version 1 (before content digests): each
/// sparse member's Content record names an object holding its stored data segments back to
/// back, written into the store. Returns how many members it rewrote.
fn downgrade_recipe(store: &Store, id: &ImageId) -> usize {
    use acikit::testing::recipe::{
        RECIPE_MAGIC_V1, RecipeReader, RecipeRecord, RecipeTrailer, RecipeWriter,
    };
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let paths = acikit::testing::paths::of(store);
    let recipe = paths.recipe(id);
    let mut reader = RecipeReader::new(std::fs::File::open(&recipe).unwrap()).unwrap();
    let mut writer = RecipeWriter::new(Vec::new()).unwrap();
    let mut rewritten = 0;
    while let Some(record) = reader.next_record().unwrap() {
        match record {
            RecipeRecord::Meta(bytes) => writer.meta(&bytes).unwrap(),
            RecipeRecord::Content { len, digest } => writer.content(len, digest).unwrap(),
            RecipeRecord::Sparse { len: 0, .. } => {
                writer.content(0, None).unwrap();
                rewritten += 1;
            }
            RecipeRecord::Sparse { len, map, digest } => {
                let object = std::fs::File::open(paths.object(&digest)).unwrap();
                let mut stored = Vec::new();
                for seg in &map.segments {
                    let mut buf = vec![0u8; seg.length as usize];
                    object.read_exact_at(&mut buf, seg.offset).unwrap();
                    stored.extend_from_slice(&buf);
                }
                assert_eq!(stored.len() as u64, len);
                let old = acikit::store::ContentDigest::of(&stored);
                let path = paths.object(&old);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &stored).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
                writer.content(len, Some(old)).unwrap();
                rewritten += 1;
            }
        }
    }
    let trailer: RecipeTrailer = reader.trailer().unwrap().clone();
    let mut bytes = writer.finish(&trailer).unwrap();
    bytes[..RECIPE_MAGIC_V1.len()].copy_from_slice(RECIPE_MAGIC_V1);
    std::fs::write(&recipe, bytes).unwrap();
    rewritten
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_of_version_1_recipes_still_exports_renders_and_passes_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let layout = mixed_layout(dir.path());
    let out = dir.path().join("export.tar");
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    let mut ids = Vec::new();
    for (name, _, script) in &WRITERS[..6] {
        let tar = dir.path().join(format!("{name}.tar"));
        sh(
            &layout,
            &format!("OUT='{}'; export OUT; {script}", tar.display()),
        );
        let id = import_and_export(&store, &tar, &out, name).await;
        let rewritten = downgrade_recipe(&store, &id);
        assert_eq!(
            rewritten > 0,
            name.contains("sparse"),
            "{name}: {rewritten}"
        );
        ids.push((id, tar));
    }
    // The logical objects of the sparse members are no longer referenced by the sparse
    // images, but still by the dense ones: gc keeps them; the old-form objects are used.
    store.gc(Observer::default()).await.unwrap();
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.unreferenced_objects, 0);
    for (id, tar) in &ids {
        store
            .export_to(id, &out, ExportCompression::None, Observer::default())
            .await
            .unwrap();
        assert!(std::fs::read(&out).unwrap() == std::fs::read(tar).unwrap());
        let target = dir.path().join("run");
        let mut options = RenderOptions::default();
        options.strategy = Strategy::Copy;
        store
            .render(id, &target, options, Observer::default())
            .await
            .unwrap();
        for name in ["sparse", "zeros", "random", "dense-copy-of-sparse"] {
            assert!(
                std::fs::read(target.join(name)).unwrap()
                    == std::fs::read(layout.join("rootfs").join(name)).unwrap(),
                "{name}"
            );
        }
        assert!(allocated(&target.join("sparse")) <= 64 << 10);
        store.release(&target).await.unwrap();
    }
    store.close().await;
}

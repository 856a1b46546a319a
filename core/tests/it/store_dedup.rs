//! Import de-duplicates before writing: content the store has is never written to staging,
//! also for files over 1 MiB (compared with the stored objects through the side index of
//! large objects), so re-importing a stored image works on a full disk; a large file that
//! differs after its first MiB is written whole and right; the side index is pruned by
//! `gc` and rebuilt by `fsck`; concurrent imports count each new object once in total; a
//! file whose bytes were imported before is found by its digest (`archives/`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use crate::common::*;
use acikit::Store;
use acikit::progress::Observer;
use acikit::schema::ImageId;
use acikit::store::{ExportCompression, ImportGate, ImportOptions, Imported};

const MIB: usize = 1 << 20;

/// An image archive on disk with its ID.
struct Image {
    path: PathBuf,
    id: ImageId,
}

impl Image {
    fn at(path: PathBuf) -> Image {
        let id = ImageId::parse(&sha512sum(&path)).unwrap();
        Image { path, id }
    }
}

/// Files of the test images: three large ones (one just over 1 MiB), small ones.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("usr/lib/big-a", pseudo_random(1, 3 * MIB + 123)),
        ("usr/lib/big-b", pseudo_random(2, 2 * MIB)),
        ("usr/lib/big-c", pseudo_random(3, MIB + 1)),
        ("etc/small", b"small file\n".to_vec()),
        ("etc/medium", pseudo_random(4, 300 * 1024)),
    ]
}

fn large_bytes(files: &[(&str, Vec<u8>)]) -> u64 {
    files
        .iter()
        .map(|(_, c)| c.len() as u64)
        .filter(|&n| n > MIB as u64)
        .sum()
}

/// Archives `files` with GNU tar at `dir/<tag>.tar` (the layout in `dir/<tag>/`).
fn gnu_image(dir: &Path, tag: &str, manifest: &str, files: &[(&str, Vec<u8>)]) -> Image {
    let path = dir.join(format!("{tag}.tar"));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
    image_tar(&dir.join(tag), manifest, &refs, &path);
    Image::at(path)
}

/// Packs the layout `dir/<layout>/` again with Python's tarfile (PAX): the same contents
/// in other header bytes, so another image ID.
fn python_repack(dir: &Path, layout: &str, tag: &str) -> Image {
    let path = dir.join(format!("{tag}.tar"));
    sh(
        &dir.join(layout),
        &format!(
            "python3 -c \"import tarfile; t = tarfile.open('{}', 'w', format=tarfile.PAX_FORMAT); \
             t.add('manifest'); t.add('rootfs'); t.close()\"",
            path.display()
        ),
    );
    Image::at(path)
}

async fn import(store: &Store, image: &Image) -> Imported {
    store
        .import_file(&image.path, ImportOptions::default(), Observer::default())
        .await
        .unwrap_or_else(|e| panic!("importing {}: {e}", image.path.display()))
}

/// Exports `image` and checks it equals the archive it was imported from.
async fn assert_exports(store: &Store, image: &Image, out_dir: &Path) {
    let out = out_dir.join("export.tar");
    store
        .export_to(
            &image.id,
            &out,
            ExportCompression::None,
            Observer::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("exporting {}: {e}", image.id));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&image.path).unwrap(),
        "the export of {} differs from its archive",
        image.id
    );
    std::fs::remove_file(out).unwrap();
}

/// Free bytes of the file system holding `path` (for root, as `df` shows them).
fn free_bytes(path: &Path) -> u64 {
    let stat = rustix::fs::statvfs(path).unwrap();
    stat.f_bavail * stat.f_frsize
}

/// Entries of the store's side index of large objects.
fn head_entries(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.join("heads"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A tmpfs of `size` mounted at `dir/mnt`, unmounted when dropped.
struct Tmpfs {
    mnt: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        sh(
            dir,
            &format!(
                "mount -t tmpfs -o size={size} acikit-test '{}'",
                mnt.display()
            ),
        );
        Tmpfs { mnt }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reimport_on_a_full_disk_writes_nothing_to_staging() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = files();
    let image = gnu_image(dir.path(), "v1", MANIFEST, &files);
    let repacked = python_repack(dir.path(), "v1", "v1-python");
    assert_ne!(image.id, repacked.id, "the re-pack must be another image");
    // The same tar gzipped: other archive bytes (no shortcut by the file's digest), the
    // same image, read through in full.
    sh(dir.path(), "gzip -1 -c v1.tar > v1.tar.gz");
    let gzipped = Image {
        path: dir.path().join("v1.tar.gz"),
        id: image.id.clone(),
    };

    let fs = Tmpfs::mount(dir.path(), "16m");
    let store_dir = fs.mnt.join("store");
    let store = Store::open(&store_dir).await.unwrap();
    let first = import(&store, &image).await;
    assert_eq!(first.new_bytes, first.staged_bytes, "{first:?}");
    assert!(first.staged_bytes >= large_bytes(&files), "{first:?}");
    assert_eq!(
        head_entries(&store_dir).len(),
        3,
        "one entry per large object"
    );

    // Fill the disk: less room than the smallest large file, some for the recipe and index.
    let slack = 512 * 1024;
    let fill = free_bytes(&fs.mnt) - slack;
    sh(
        &fs.mnt,
        &format!("fallocate -l {fill} '{}'", fs.mnt.join("filler").display()),
    );
    assert!(free_bytes(&fs.mnt) <= slack, "{}", free_bytes(&fs.mnt));

    for same in [&image, &gzipped] {
        let again = import(&store, same).await;
        assert!(again.already_present, "{again:?}");
        assert_eq!(again.image_id, image.id);
        assert_eq!(
            (again.staged_bytes, again.new_bytes, again.new_objects),
            (0, 0, 0),
            "{again:?}"
        );
    }
    let other = import(&store, &repacked).await;
    assert!(!other.already_present, "{other:?}");
    assert_eq!(
        (other.staged_bytes, other.new_bytes, other.new_objects),
        (0, 0, 0),
        "same contents, nothing new: {other:?}"
    );
    assert!(
        std::fs::read_dir(store_dir.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no staging folder is left"
    );
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    assert_exports(&store, &image, &out).await;
    assert_exports(&store, &repacked, &out).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_file_that_differs_after_its_head_is_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = files();
    let image = gnu_image(dir.path(), "v1", MANIFEST, &files);
    // v2: big-a equal for 2 MiB then different (same size, same head), big-b with another
    // first MiB, big-c unchanged, and a copy of big-a's first 3 MiB under another size.
    let big_a = files[0].1.clone();
    let mut changed_tail = big_a.clone();
    let at = 2 * MIB + 77;
    changed_tail[at] ^= 1;
    let mut changed_head = files[1].1.clone();
    changed_head[10] ^= 1;
    let shorter = big_a[..3 * MIB].to_vec();
    files[0].1 = changed_tail.clone();
    files[1].1 = changed_head.clone();
    files.push(("usr/lib/shorter", shorter.clone()));
    let v2 = gnu_image(
        dir.path(),
        "v2",
        &manifest_for("example.com/test", "2.0.0"),
        &files,
    );

    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    import(&store, &image).await;
    let second = import(&store, &v2).await;
    let written = (changed_tail.len() + changed_head.len() + shorter.len()) as u64;
    let manifest = manifest_for("example.com/test", "2.0.0").len() as u64;
    assert_eq!(second.new_objects, 4, "{second:?}");
    assert_eq!(second.new_bytes, written + manifest, "{second:?}");
    assert_eq!(second.staged_bytes, written + manifest, "{second:?}");
    assert_exports(&store, &image, dir.path()).await;
    assert_exports(&store, &v2, dir.path()).await;
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.head_entries_fixed, 0, "{report:?}");
    assert_eq!(head_entries(&store_dir).len(), 6, "3 large objects each");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_side_index_is_refilled_pruned_by_gc_and_rebuilt_by_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let files = files();
    let image = gnu_image(dir.path(), "v1", MANIFEST, &files);
    let repacked = python_repack(dir.path(), "v1", "v1-python");
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    import(&store, &image).await;
    let entries = head_entries(&store_dir);
    assert_eq!(entries.len(), 3);

    // A store made before the side index: still works, writes the large files once more
    // (found stored at the end, so nothing new) and fills the index.
    std::fs::remove_dir_all(store_dir.join("heads")).unwrap();
    std::fs::remove_dir_all(store_dir.join("archives")).unwrap();
    let again = import(&store, &image).await;
    assert!(again.already_present);
    assert_eq!(again.staged_bytes, large_bytes(&files), "{again:?}");
    assert_eq!(head_entries(&store_dir), entries, "refilled by the import");
    let other = import(&store, &repacked).await;
    assert_eq!(other.staged_bytes, 0, "{other:?}");

    // fsck rebuilds it.
    std::fs::remove_dir_all(store_dir.join("heads")).unwrap();
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.head_entries_fixed, 3, "{report:?}");
    assert_eq!(head_entries(&store_dir), entries);
    std::fs::write(
        store_dir
            .join("heads")
            .join(format!("5-{0}-{0}", "ab".repeat(32))),
        b"",
    )
    .unwrap();
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert_eq!(report.head_entries_fixed, 1, "the stray entry: {report:?}");
    assert_eq!(head_entries(&store_dir), entries);

    // gc removes the entries of the objects and images it removes.
    assert_eq!(files_under(&store_dir.join("archives")).len(), 2);
    store.remove(&image.id).await.unwrap();
    store.gc(Observer::default()).await.unwrap();
    assert_eq!(files_under(&store_dir.join("archives")).len(), 1);
    store.remove(&repacked.id).await.unwrap();
    store.gc(Observer::default()).await.unwrap();
    assert!(files_under(&store_dir.join("archives")).is_empty());
    assert!(
        head_entries(&store_dir).is_empty(),
        "{:?}",
        head_entries(&store_dir)
    );
    // The entry gone with its image, the file is imported in full again.
    let back = import(&store, &image).await;
    assert!(!back.already_present, "{back:?}");
    assert_eq!(back.new_objects, files.len() as u64 + 1, "{back:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_imports_count_each_new_object_once_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let files = files();
    let image = gnu_image(dir.path(), "v1", MANIFEST, &files);
    let repacked = python_repack(dir.path(), "v1", "v1-python");
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    // Every import stages everything before any publishes: they wait for each other at
    // the gate, which runs between staging and the commit.
    let barrier = Arc::new(Barrier::new(3));
    let options = || {
        ImportOptions::default().gate(ImportGate::new({
            let barrier = barrier.clone();
            move |_| {
                barrier.wait();
                Ok(())
            }
        }))
    };
    let (a, b, c) = tokio::join!(
        store.import_file(&image.path, options(), Observer::default()),
        store.import_file(&image.path, options(), Observer::default()),
        store.import_file(&repacked.path, options(), Observer::default()),
    );
    let results = [a.unwrap(), b.unwrap(), c.unwrap()];
    let objects = files_under(&store_dir.join("objects"));
    let object_bytes: u64 = objects
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let new_objects: u64 = results.iter().map(|r| r.new_objects).sum();
    let new_bytes: u64 = results.iter().map(|r| r.new_bytes).sum();
    assert_eq!(objects.len(), files.len() + 1, "the files and the manifest");
    assert_eq!(new_objects, objects.len() as u64, "{results:#?}");
    assert_eq!(new_bytes, object_bytes, "{results:#?}");
    let present = results.iter().filter(|r| r.already_present).count();
    assert_eq!(
        present, 1,
        "one of the two imports of {}: {results:#?}",
        image.id
    );
    store.close().await;
}

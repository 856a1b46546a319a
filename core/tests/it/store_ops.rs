//! The store's operations on real archives (GNU tar, Python's tarfile, gzip): lookup by ID,
//! prefix (ambiguous prefixes list the candidates), name and labels; de-duplication across
//! and inside images with exact byte counts; idempotent re-import; `remove`, `gc` (orphan
//! objects and recipes, stale and live staging folders), `fsck` on tampered and missing
//! objects with repair; exports of damaged images fail and leave no file; hostile archives
//! and cancelled imports leave nothing in the store; progress events.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::{self, *};
use acikit::progress::{CancelToken, Observer, Phase, Progress};
use acikit::schema::ImageId;
use acikit::store::{
    ContentDigest, ExportCompression, ImageQuery, ImportOptions, IndexBackend, StoreOptions,
};
use acikit::{Error, ErrorKind, Store};
use tokio::io::AsyncReadExt;

// ---------------------------------------------------------------------------------------
// Helpers.

async fn import(store: &Store, image: &Image) -> acikit::store::Imported {
    store
        .import_file(&image.path, ImportOptions::default(), Observer::default())
        .await
        .unwrap_or_else(|e| panic!("importing {}: {e}", image.path.display()))
}

fn id_query(text: &str) -> ImageQuery {
    ImageQuery::parse(text, &[]).unwrap()
}

async fn resolve_err(store: &Store, query: &ImageQuery) -> Error {
    match store.resolve(query).await {
        Ok(found) => panic!("{query:?} resolved to {}", found.image_id),
        Err(err) => err,
    }
}

/// Exports `image` and checks it is byte-identical to the tar it was imported from.
async fn assert_exports(store: &Store, image: &Image) {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("export.tar");
    store
        .export_to(
            &image.id,
            &path,
            ExportCompression::None,
            Observer::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("exporting {}: {e}", image.id));
    assert!(
        std::fs::read(&path).unwrap() == image.bytes,
        "the export of {} differs from its tar",
        image.id
    );
}

/// The SHA-256 object path of `content` in the store at `dir`.
fn object_path(dir: &Path, content: &[u8]) -> PathBuf {
    let hex = ContentDigest::of(content).to_hex();
    dir.join("objects/sha256").join(&hex[..2]).join(hex)
}

/// Object files on disk, and the sum of their sizes.
fn objects_on_disk(dir: &Path) -> (usize, u64) {
    let files = files_under(&dir.join("objects"));
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    (files.len(), bytes)
}

/// Entries of the store's `tmp/` folder.
fn tmp_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Asserts the store holds nothing at all: no image, object, recipe or staging folder.
async fn assert_empty(store: &Store, what: &str) {
    let dir = store.dir();
    let images = store.list().await.unwrap();
    assert!(images.is_empty(), "{what}: images left: {images:?}");
    let objects = files_under(&dir.join("objects"));
    assert!(objects.is_empty(), "{what}: objects left: {objects:?}");
    let recipes = files_under(&dir.join("recipes"));
    assert!(recipes.is_empty(), "{what}: recipes left: {recipes:?}");
    let tmp = tmp_entries(dir);
    assert!(tmp.is_empty(), "{what}: tmp/ not empty: {tmp:?}");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.images, 0, "{what}");
    assert_eq!(stats.object_bytes, 0, "{what}");
}

/// Makes an object file writable and flips one byte of it in the middle.
fn tamper(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Two related images: `a` (version 1.0.0) and `b` (2.0.0), which shares most of `a`'s
/// files, changes one and adds one; both hold one content three times. With the bytes of
/// each file so that the tests can compute exact sizes and object paths.
struct Pair {
    a: Image,
    b: Image,
    manifest_a: String,
    manifest_b: String,
    /// Content of `a` and `b` (both).
    shared: Vec<Vec<u8>>,
    /// Content repeated three times in each image.
    repeated: Vec<u8>,
    /// Content only `a` has (its `f1`).
    only_a: Vec<u8>,
    /// Content only `b` has (its `f1` and `extra`).
    only_b: Vec<Vec<u8>>,
}

const CHUNK: usize = 256 * 1024;

fn make_pair(dir: &Path) -> Pair {
    let shared: Vec<Vec<u8>> = [0u64, 2, 3, 4, 5, 6, 7]
        .iter()
        .map(|&i| pseudo_random(100 + i, CHUNK))
        .collect();
    let repeated = pseudo_random(200, CHUNK);
    let only_a = pseudo_random(101, CHUNK);
    let only_b = vec![pseudo_random(301, CHUNK), pseudo_random(302, 100 * 1024)];
    let names = ["f0", "f2", "f3", "f4", "f5", "f6", "f7"];
    let mut files_a: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&shared)
        .map(|(n, c)| (*n, c.as_slice()))
        .collect();
    files_a.extend([
        ("r/one", repeated.as_slice()),
        ("r/two", repeated.as_slice()),
        ("r/three", repeated.as_slice()),
        ("etc/empty", b"".as_slice()),
    ]);
    let mut files_b = files_a.clone();
    files_a.push(("f1", &only_a));
    files_b.push(("f1", &only_b[0]));
    files_b.push(("extra", &only_b[1]));
    let manifest_a = manifest_for("example.com/pair", "1.0.0");
    let manifest_b = manifest_for("example.com/pair", "2.0.0");
    Pair {
        a: make_image(dir, "a", &manifest_a, &files_a),
        b: make_image(dir, "b", &manifest_b, &files_b),
        manifest_a,
        manifest_b,
        shared,
        repeated,
        only_a,
        only_b,
    }
}

impl Pair {
    /// Distinct content bytes of `a` (the manifest is content too).
    fn distinct_a(&self) -> u64 {
        (self.manifest_a.len() + self.shared.len() * CHUNK + CHUNK + self.only_a.len()) as u64
    }
    /// Distinct content bytes of `b`.
    fn distinct_b(&self) -> u64 {
        (self.manifest_b.len()
            + self.shared.len() * CHUNK
            + CHUNK
            + self.only_b.iter().map(Vec::len).sum::<usize>()) as u64
    }
    /// Content bytes `b` adds to a store that has `a`.
    fn new_in_b(&self) -> u64 {
        (self.manifest_b.len() + self.only_b.iter().map(Vec::len).sum::<usize>()) as u64
    }
}

// ---------------------------------------------------------------------------------------
// Lookup.

#[tokio::test(flavor = "multi_thread")]
async fn lookup_by_id_prefix_and_ambiguous_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).await.unwrap();
    // Import distinct images until two IDs share their first hex digit (at most 17).
    let mut ids: Vec<ImageId> = Vec::new();
    let (first, second) = 'found: {
        for i in 0..17 {
            let layout = small_layout(
                &dir.path().join(format!("img{i}")),
                manifest_for("example.com/many", &format!("0.0.{i}")).as_bytes(),
            );
            let tar = dir.path().join(format!("img{i}.tar"));
            sh(
                &layout,
                &format!("tar --format=gnu -cf '{}' manifest rootfs", tar.display()),
            );
            let imported = store
                .import_file(&tar, ImportOptions::default(), Observer::default())
                .await
                .unwrap();
            assert_eq!(imported.image_id.as_str(), sha512sum(&tar));
            let id = imported.image_id;
            if let Some(other) = ids.iter().find(|o| o.hex()[..1] == id.hex()[..1]) {
                break 'found (other.clone(), id);
            }
            ids.push(id);
        }
        unreachable!("17 IDs over 16 first digits always share one");
    };
    ids.push(second.clone());

    // Full ID, as a query text and as a prefix of itself.
    for id in &ids {
        let found = store.resolve(&id_query(id.as_str())).await.unwrap();
        assert_eq!(&found.image_id, id);
        assert_eq!(found.name, "example.com/many");
    }
    // A unique prefix of 8 hex digits.
    for id in &ids {
        let prefix = format!("sha512-{}", &id.hex()[..8]);
        if ids
            .iter()
            .filter(|o| o.hex().starts_with(&id.hex()[..8]))
            .count()
            == 1
        {
            let found = store.resolve(&id_query(&prefix)).await.unwrap();
            assert_eq!(&found.image_id, id, "{prefix}");
        }
    }
    // The shared first digit is ambiguous; the message lists every candidate.
    let digit = &first.hex()[..1];
    let candidates: Vec<&ImageId> = ids.iter().filter(|o| o.hex().starts_with(digit)).collect();
    assert!(candidates.len() >= 2);
    let err = resolve_err(&store, &id_query(&format!("sha512-{digit}"))).await;
    assert_eq!(err.kind(), ErrorKind::AmbiguousImage, "{err}");
    for id in &candidates {
        assert!(
            err.message().contains(id.as_str()),
            "the message lists {id}: {err}"
        );
    }
    // Unknown: a full ID and a prefix no image has.
    let unknown_hex = (0..16u32)
        .map(|d| format!("{d:x}"))
        .flat_map(|a| (0..16u32).map(move |b| format!("{a}{b:x}")))
        .find(|p| !ids.iter().any(|id| id.hex().starts_with(p.as_str())))
        .expect("17 IDs cannot cover 256 two-digit prefixes");
    let err = resolve_err(&store, &id_query(&format!("sha512-{unknown_hex}"))).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let unknown_full = format!("sha512-{unknown_hex}{}", "0".repeat(126));
    let err = resolve_err(&store, &id_query(&unknown_full)).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // An ID with labels, or a malformed prefix, is not a query.
    let labels = [acikit::Label::new("os", "linux")];
    let err = ImageQuery::parse(first.as_str(), &labels).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = ImageQuery::parse("sha512-XYZ", &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidValue, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lookup_by_name_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files: [(&str, &[u8]); 1] = [("etc/hostname", b"app\n")];
    let v1 = make_image(d, "v1", &manifest_for("example.com/app", "1.0.0"), &files);
    let v2 = make_image(d, "v2", &manifest_for("example.com/app", "2.0.0"), &files);
    // A name imported in the opposite order: the newest import wins, not the highest version.
    let new_old = make_image(d, "n2", &manifest_for("example.com/other", "2.0.0"), &files);
    let new_new = make_image(d, "n1", &manifest_for("example.com/other", "1.0.0"), &files);
    let store = Store::open(d.join("store")).await.unwrap();
    for image in [&v1, &v2, &new_old, &new_new] {
        import(&store, image).await;
        // Import times are in milliseconds: keep them apart.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let label = acikit::Label::new;
    let find = |text: &str, labels: &[acikit::Label]| {
        let query = ImageQuery::parse(text, labels).unwrap();
        let store = store.clone();
        async move { store.resolve(&query).await }
    };

    let got = find("example.com/app", &[]).await.unwrap();
    assert_eq!(got.image_id, v2.id, "no version: the newest import");
    assert_eq!(got.label("version"), Some("2.0.0"));
    let got = find("example.com/app:1.0.0", &[]).await.unwrap();
    assert_eq!(got.image_id, v1.id, "name:version");
    let got = find("example.com/app", &[label("version", "1.0.0")])
        .await
        .unwrap();
    assert_eq!(got.image_id, v1.id, "version as a label");
    // Labels absent from the query match any value.
    let got = find("example.com/app", &[label("os", "linux")])
        .await
        .unwrap();
    assert_eq!(got.image_id, v2.id, "os given, arch and version absent");
    let got = find(
        "example.com/app:1.0.0",
        &[label("os", "linux"), label("arch", "amd64")],
    )
    .await
    .unwrap();
    assert_eq!(got.image_id, v1.id, "every label given");
    let got = find("example.com/other", &[]).await.unwrap();
    assert_eq!(
        got.image_id, new_new.id,
        "the newest import, though its version is lower"
    );

    // A wrong label value, an unknown version or name, a label the images lack.
    for (text, labels) in [
        ("example.com/app", vec![label("os", "freebsd")]),
        ("example.com/app:3.0.0", vec![]),
        ("example.com/app:1.0.0", vec![label("arch", "arm64")]),
        ("example.com/nothing", vec![]),
        ("example.com/app", vec![label("channel", "stable")]),
    ] {
        let err = find(text, &labels).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{text} {labels:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// De-duplication, re-import, remove, gc.

#[tokio::test(flavor = "multi_thread")]
async fn dedup_across_images_and_inside_one_and_idempotent_reimport() {
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();

    let a = import(&store, &pair.a).await;
    assert!(!a.already_present);
    // The repeated content is stored once: manifest, 7 shared, f1, one repeated.
    assert_eq!(a.new_objects, 10, "{a:?}");
    assert_eq!(a.new_bytes, pair.distinct_a(), "{a:?}");
    assert_eq!(objects_on_disk(&store_dir), (10, pair.distinct_a()));
    assert_eq!(
        std::fs::read(object_path(&store_dir, &pair.repeated)).unwrap(),
        pair.repeated
    );
    for object in files_under(&store_dir.join("objects")) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&object).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o444, "objects are read-only: {}", object.display());
    }

    let b = import(&store, &pair.b).await;
    assert!(!b.already_present);
    assert_eq!(b.new_objects, 3, "manifest, f1 and extra: {b:?}");
    assert_eq!(
        b.new_bytes,
        pair.new_in_b(),
        "only the changed bytes: {b:?}"
    );

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.images, 2);
    assert_eq!(
        stats.logical_bytes,
        (pair.a.bytes.len() + pair.b.bytes.len()) as u64
    );
    assert_eq!(stats.object_bytes, pair.distinct_a() + pair.new_in_b());
    // Every file counts in full: the content repeated three times in each image too.
    assert_eq!(
        stats.referenced_content_bytes,
        pair.distinct_a() + pair.distinct_b() + 2 * 2 * pair.repeated.len() as u64
    );
    assert!(stats.dedup_ratio > 1.5, "{stats:?}");
    let (count, bytes) = objects_on_disk(&store_dir);
    assert_eq!((count, bytes), (13, stats.object_bytes), "on disk");
    assert!(stats.objects_disk_bytes >= bytes, "{stats:?}");
    assert!(stats.disk_bytes >= stats.objects_disk_bytes + stats.recipes_disk_bytes);
    assert!(stats.recipes_disk_bytes > 0);

    // Re-import, from the tar and from a gzip of it: nothing changes.
    let gz = dir.path().join("a.aci");
    compress(&pair.a.path, "gzip -c", &gz);
    for path in [&pair.a.path, &gz] {
        let again = store
            .import_file(path, ImportOptions::default(), Observer::default())
            .await
            .unwrap();
        assert!(again.already_present, "{again:?}");
        assert_eq!(again.new_bytes, 0);
        assert_eq!(again.new_objects, 0);
        assert_eq!(again.image_id, pair.a.id);
        assert_eq!(objects_on_disk(&store_dir), (count, bytes));
        assert_eq!(store.list().await.unwrap().len(), 2);
        assert!(tmp_entries(&store_dir).is_empty());
    }
    assert_exports(&store, &pair.a).await;
    assert_exports(&store, &pair.b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_drops_only_the_objects_no_other_image_uses() {
    remove_and_gc(None).await;
}

/// A push's copy of its upload in `tmp/` is locked while the push runs; one a killed
/// server left (unlocked, a minute old) goes with gc, a live one stays.
#[tokio::test(flavor = "multi_thread")]
async fn gc_removes_push_copies_of_killed_servers_only() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    let tmp = store_dir.join("tmp");
    for name in ["push-1-1.aci", "push-1-2.aci", "push-1-3.aci"] {
        std::fs::write(tmp.join(name), b"upload").unwrap();
    }
    sh(&tmp, "touch -d '2 minutes ago' push-1-1.aci push-1-2.aci");
    let live = std::fs::File::open(tmp.join("push-1-2.aci")).unwrap();
    live.lock().unwrap();

    let gc = store.gc(Observer::default()).await.unwrap();
    assert_eq!(gc.staging_removed, 1, "{gc:?}");
    assert!(
        !tmp.join("push-1-1.aci").exists(),
        "left by a killed server"
    );
    assert!(
        tmp.join("push-1-2.aci").exists(),
        "locked: a push is writing it"
    );
    assert!(tmp.join("push-1-3.aci").exists(), "too recent to judge");
    drop(live);
}

/// Several images in one call: each gets its own result, shared objects stay until the
/// last image using them goes.
#[tokio::test(flavor = "multi_thread")]
async fn remove_many_removes_each_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let lone = make_image(
        dir.path(),
        "lone",
        &manifest_for("example.com/lone", "1"),
        &[("only", &pseudo_random(900, 64 * 1024))],
    );
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    import(&store, &pair.a).await;
    import(&store, &pair.b).await;
    import(&store, &lone).await;

    // b and a lone image go, a stays whole; an unknown ID fails alone.
    let results = store
        .remove_many(vec![pair.b.id.clone(), pair.b.id.clone(), lone.id.clone()])
        .await;
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert_eq!(objects_on_disk(&store_dir), (10, pair.distinct_a()));
    assert_exports(&store, &pair.a).await;

    let results = store.remove_many(vec![pair.a.id.clone()]).await;
    assert!(results[0].is_ok());
    assert_empty(&store, "after removing all three").await;
}

/// The same with the index in PostgreSQL, then `fsck` finds the store clean.
#[tokio::test(flavor = "multi_thread")]
async fn remove_gc_and_fsck_with_a_postgresql_index() {
    let schema = common::postgres::TestSchema::new("store_ops");
    remove_and_gc(Some(&schema.url)).await;
}

async fn remove_and_gc(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let store_dir = dir.path().join("store");
    let mut options = StoreOptions::default();
    options.database_url = database.map(str::to_string);
    let store = Store::open_with(&store_dir, options).await.unwrap();
    let backend = if database.is_some() {
        IndexBackend::Postgres
    } else {
        IndexBackend::Sqlite
    };
    assert_eq!(store.index_backend(), backend);
    import(&store, &pair.a).await;
    import(&store, &pair.b).await;

    store.remove(&pair.b.id).await.unwrap();
    for content in &pair.only_b {
        assert!(!object_path(&store_dir, content).exists(), "b's own object");
    }
    assert!(!object_path(&store_dir, pair.manifest_b.as_bytes()).exists());
    for content in pair.shared.iter().chain([&pair.repeated, &pair.only_a]) {
        assert!(object_path(&store_dir, content).exists(), "a's object");
    }
    assert_eq!(objects_on_disk(&store_dir), (10, pair.distinct_a()));
    let recipes = files_under(&store_dir.join("recipes"));
    assert_eq!(recipes.len(), 1, "{recipes:?}");
    assert!(recipes[0].to_string_lossy().contains(pair.a.id.hex()));
    let images = store.list().await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].image_id, pair.a.id);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.object_bytes, pair.distinct_a());
    assert_exports(&store, &pair.a).await;

    let err = store.remove(&pair.b.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = resolve_err(&store, &id_query(pair.b.id.as_str())).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // Nothing left for gc.
    let gc = store.gc(Observer::default()).await.unwrap();
    assert_eq!(
        (
            gc.objects_removed,
            gc.bytes_removed,
            gc.recipes_removed,
            gc.staging_removed
        ),
        (0, 0, 0, 0),
        "{gc:?}"
    );
    // b imports again (its objects restored), and removing a then leaves b whole.
    let b = import(&store, &pair.b).await;
    assert_eq!(b.new_bytes, pair.new_in_b());
    store.remove(&pair.a.id).await.unwrap();
    assert!(!object_path(&store_dir, &pair.only_a).exists());
    assert_eq!(objects_on_disk(&store_dir), (11, pair.distinct_b()));
    assert_exports(&store, &pair.b).await;
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.images_checked, 1);
    store.remove(&pair.b.id).await.unwrap();
    assert_empty(&store, "after removing both").await;
    store.close().await;
}

/// The recipes are the record of which objects an image uses: with one missing, gc must
/// refuse rather than delete objects on an incomplete list; `fsck --repair` drops the
/// broken image, then gc removes exactly its own objects.
#[tokio::test(flavor = "multi_thread")]
async fn gc_refuses_while_an_indexed_image_has_no_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    import(&store, &pair.a).await;
    import(&store, &pair.b).await;
    let before = objects_on_disk(&store_dir);
    std::fs::remove_file(acikit::testing::paths::of(&store).recipe(&pair.a.id)).unwrap();

    let err = store.gc(Observer::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptStore, "{err}");
    assert!(err.to_string().contains(pair.a.id.as_str()), "{err}");
    assert_eq!(objects_on_disk(&store_dir), before, "gc deleted nothing");

    let report = store.fsck(true, Observer::default()).await.unwrap();
    assert_eq!(report.images_dropped, vec![pair.a.id.clone()], "{report:?}");
    let gc = store.gc(Observer::default()).await.unwrap();
    assert_eq!(gc.objects_removed, 2, "only a's manifest and file: {gc:?}");
    assert!(!object_path(&store_dir, &pair.only_a).exists());
    assert!(!object_path(&store_dir, pair.manifest_a.as_bytes()).exists());
    assert_exports(&store, &pair.b).await;
}

/// An import gate sees the staged image's ID and manifest; when it fails, the import fails
/// with its error and leaves nothing, also when the store already has the image.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_import_gate_leaves_nothing() {
    use acikit::store::ImportGate;
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let store = Store::open(dir.path().join("store")).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let refuse = |seen: Arc<Mutex<Vec<(ImageId, String)>>>| {
        ImportOptions::default().gate(ImportGate::new(move |staged| {
            assert_eq!(staged.tar_size, staged.archive_size, "an uncompressed tar");
            seen.lock()
                .unwrap()
                .push((staged.image_id.clone(), staged.manifest.name.to_string()));
            Err(Error::new(ErrorKind::BadSignature, "refused by the test"))
        }))
    };
    let err = store
        .import_file(&pair.a.path, refuse(seen.clone()), Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(pair.a.id.clone(), "example.com/pair".to_string())]
    );
    assert_empty(&store, "after a refused import").await;

    import(&store, &pair.a).await;
    let err = store
        .import_file(&pair.a.path, refuse(seen.clone()), Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
    assert_eq!(store.list().await.unwrap().len(), 1);
    assert_exports(&store, &pair.a).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_removes_orphans_and_stale_staging_but_not_live_imports() {
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    import(&store, &pair.a).await;

    let gc = store.gc(Observer::default()).await.unwrap();
    assert_eq!(
        (gc.objects_removed, gc.recipes_removed, gc.staging_removed),
        (0, 0, 0),
        "nothing to do: {gc:?}"
    );
    let before = objects_on_disk(&store_dir);

    // An orphan object, an orphan recipe, stale staging folders (free lock; no lock file;
    // a `forming-` folder left long ago), a live one (its lock held) and one being formed
    // right now (no lock yet: imports lock it before renaming it to `import-`).
    let orphan = b"an object no image references\n";
    let orphan_path = object_path(&store_dir, orphan);
    std::fs::create_dir_all(orphan_path.parent().unwrap()).unwrap();
    std::fs::write(&orphan_path, orphan).unwrap();
    let recipe = store_dir
        .join("recipes/sha512/ab")
        .join(format!("{}.recipe", "ab".repeat(64)));
    std::fs::create_dir_all(recipe.parent().unwrap()).unwrap();
    std::fs::write(&recipe, b"not a real recipe").unwrap();
    let tmp = store_dir.join("tmp");
    for name in [
        "import-dead-1",
        "import-live-1",
        "import-nolock-1",
        "forming-fresh-1",
        "forming-old-1",
    ] {
        std::fs::create_dir_all(tmp.join(name)).unwrap();
        std::fs::write(tmp.join(name).join("partial-0"), b"half an object").unwrap();
    }
    std::fs::write(tmp.join("import-dead-1/.lock"), b"").unwrap();
    let live_lock = std::fs::File::create(tmp.join("import-live-1/.lock")).unwrap();
    live_lock.lock().unwrap();
    sh(&tmp, "touch -d '2 hours ago' forming-old-1");

    let gc = store.gc(Observer::default()).await.unwrap();
    assert_eq!(gc.objects_removed, 1, "{gc:?}");
    assert_eq!(gc.bytes_removed, orphan.len() as u64, "{gc:?}");
    assert_eq!(gc.recipes_removed, 1, "{gc:?}");
    assert_eq!(
        gc.staging_removed, 3,
        "dead-1, nolock-1 and forming-old-1: {gc:?}"
    );
    assert!(!orphan_path.exists());
    assert!(!recipe.exists());
    let mut left = tmp_entries(&store_dir);
    left.sort();
    assert_eq!(left, ["forming-fresh-1", "import-live-1"]);
    assert_eq!(objects_on_disk(&store_dir), before);
    assert_exports(&store, &pair.a).await;

    // Once the live import ends (its lock is released), the next open removes its folder;
    // the fresh one is kept until it is old.
    drop(live_lock);
    std::fs::create_dir_all(tmp.join("import-dead-2")).unwrap();
    std::fs::write(tmp.join("import-dead-2/.lock"), b"").unwrap();
    drop(store);
    // A process another test spawns at that moment may hold a copy of the lock's descriptor
    // for an instant (between fork and exec); the next open then removes the folder.
    let mut store = Store::open(&store_dir).await.unwrap();
    for _ in 0..20 {
        if tmp_entries(&store_dir) == ["forming-fresh-1"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(store);
        store = Store::open(&store_dir).await.unwrap();
    }
    assert_eq!(tmp_entries(&store_dir), ["forming-fresh-1"]);
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.unreferenced_objects, 0);
    assert_eq!(report.stale_staging, 0);
    assert_exports(&store, &pair.a).await;
}

// ---------------------------------------------------------------------------------------
// fsck and damaged images.

#[tokio::test(flavor = "multi_thread")]
async fn fsck_reports_and_repairs_a_tampered_object() {
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    import(&store, &pair.a).await;
    import(&store, &pair.b).await;

    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.objects_checked, 13);
    assert_eq!(report.images_checked, 2);
    assert_eq!(report.unreferenced_objects, 0);

    // One byte of an object only b uses.
    let damaged = object_path(&store_dir, &pair.only_b[0]);
    tamper(&damaged);
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(!report.is_clean());
    let hex = ContentDigest::of(&pair.only_b[0]).to_hex();
    let kinds: BTreeSet<(&str, bool)> = report
        .problems
        .iter()
        .map(|p| {
            (
                p.kind,
                p.subject.contains(&hex) || p.subject == pair.b.id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([("broken_image", true), ("corrupt_object", true)]),
        "{:?}",
        report.problems
    );
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(report.images_dropped.is_empty(), "no repair asked");
    assert_eq!(store.list().await.unwrap().len(), 2);

    // Exporting b fails loudly and leaves no file, not even a partial one, whatever the
    // compression; the async reader ends with the same error.
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for compression in [
        ExportCompression::None,
        ExportCompression::Gzip,
        ExportCompression::Zstd,
    ] {
        let err = store
            .export_to(
                &pair.b.id,
                out_dir.join("b.tar"),
                compression,
                Observer::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::CorruptStore,
            "{compression:?}: {err}"
        );
        assert!(
            err.to_string().contains(pair.b.id.as_str()),
            "the error names the image: {err}"
        );
        let left = files_under(&out_dir);
        assert!(left.is_empty(), "{compression:?}: left {left:?}");
    }
    let mut reader = store.export_reader(&pair.b.id).await.unwrap();
    let err = reader.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(Error::from(err).kind(), ErrorKind::CorruptStore);
    // An existing output file is not replaced by a failed export.
    std::fs::write(out_dir.join("keep.tar"), b"keep me").unwrap();
    store
        .export_to(
            &pair.b.id,
            out_dir.join("keep.tar"),
            ExportCompression::None,
            Observer::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(std::fs::read(out_dir.join("keep.tar")).unwrap(), b"keep me");
    assert_eq!(files_under(&out_dir).len(), 1);
    // a is untouched.
    assert_exports(&store, &pair.a).await;

    // Repair drops b (and the corrupt object); the store is then clean.
    let report = store.fsck(true, Observer::default()).await.unwrap();
    assert_eq!(report.images_dropped, std::slice::from_ref(&pair.b.id));
    assert!(!damaged.exists(), "the corrupt object is removed");
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.images_checked, 1);
    let images = store.list().await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].image_id, pair.a.id);
    assert_exports(&store, &pair.a).await;
    // b's other objects are unreferenced now, and gc takes them.
    assert_eq!(report.unreferenced_objects, 2, "b's manifest and extra");
    let gc = store.gc(Observer::default()).await.unwrap();
    assert_eq!(gc.objects_removed, 2, "{gc:?}");
    assert_eq!(objects_on_disk(&store_dir), (10, pair.distinct_a()));
    // And b imports again, whole.
    let b = import(&store, &pair.b).await;
    assert!(!b.already_present);
    assert_exports(&store, &pair.b).await;
    assert!(
        store
            .fsck(false, Observer::default())
            .await
            .unwrap()
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_shared_damaged_object_breaks_every_image_using_it() {
    let dir = tempfile::tempdir().unwrap();
    let pair = make_pair(dir.path());
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).await.unwrap();
    import(&store, &pair.a).await;
    import(&store, &pair.b).await;

    // A missing object only a uses: a is broken, b is not.
    std::fs::remove_file(object_path(&store_dir, &pair.only_a)).unwrap();
    let report = store.fsck(false, Observer::default()).await.unwrap();
    let broken: Vec<&str> = report
        .problems
        .iter()
        .filter(|p| p.kind == "broken_image")
        .map(|p| p.subject.as_str())
        .collect();
    assert_eq!(broken, [pair.a.id.as_str()], "{:?}", report.problems);
    let out = dir.path().join("export-a.tar");
    let err = store
        .export_to(
            &pair.a.id,
            &out,
            ExportCompression::None,
            Observer::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptStore, "{err}");
    assert!(!out.exists());
    assert_exports(&store, &pair.b).await;

    // A damaged shared object (the repeated content): both images are broken.
    tamper(&object_path(&store_dir, &pair.repeated));
    let report = store.fsck(true, Observer::default()).await.unwrap();
    let mut dropped = report.images_dropped.clone();
    dropped.sort();
    let mut both = vec![pair.a.id.clone(), pair.b.id.clone()];
    both.sort();
    assert_eq!(dropped, both, "{:?}", report.problems);
    assert!(store.list().await.unwrap().is_empty());
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    store.gc(Observer::default()).await.unwrap();
    assert_empty(&store, "after repair and gc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_fsck_repair_never_drops_a_healthy_image() {
    let dir = tempfile::tempdir().unwrap();
    // One large image, so regenerating it takes a while.
    let files: Vec<(String, Vec<u8>)> = (0..96)
        .map(|i| (format!("data/f{i}"), pseudo_random(1000 + i, CHUNK)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    let image = make_image(
        dir.path(),
        "big",
        &manifest_for("example.com/big", "1.0.0"),
        &refs,
    );
    let store = Store::open(dir.path().join("store")).await.unwrap();
    import(&store, &image).await;

    // Cancel shortly after the object scan, while the image is being regenerated.
    let cancel = CancelToken::new();
    let objects = files.len() as u64 + 1;
    let trigger = cancel.clone();
    let progress = Arc::new(move |p: Progress| {
        if p.phase == Phase::Fsck && p.done == objects {
            let trigger = trigger.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                trigger.cancel();
            });
        }
    });
    let observer = Observer {
        progress: Some(progress),
        cancel,
    };
    match store.fsck(true, observer).await {
        Err(err) => assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}"),
        Ok(report) => {
            // The cancellation came too late to matter; still nothing may be dropped.
            assert!(
                report.images_dropped.is_empty(),
                "a cancelled fsck --repair dropped a healthy image: {:?}",
                report.problems
            );
        }
    }
    let images = store.list().await.unwrap();
    assert_eq!(images.len(), 1, "the healthy image is still there");
    assert_exports(&store, &image).await;
}

// ---------------------------------------------------------------------------------------
// Nothing left behind.

fn gnu(dir: &Path, body: &str) -> Vec<u8> {
    py_tar(dir, "gnu", body)
}

/// Archives refused part-way, several after content was already staged.
/// A hostile case: name, the kind it is refused with, and its builder.
type HostileCase = (&'static str, ErrorKind, fn(&Path) -> Vec<u8>);

fn hostile_cases() -> Vec<HostileCase> {
    use ErrorKind as K;
    vec![
        ("dotdot", K::PathTraversal, |d| {
            gnu(
                d,
                "base(); f('rootfs/a', b'a' * 5000); f('rootfs/../x', b'x')",
            )
        }),
        ("duplicate", K::DuplicateEntry, |d| {
            gnu(
                d,
                "base(); f('rootfs/a', b'1' * 3000); f('rootfs/b', b'2'); f('rootfs/a', b'3')",
            )
        }),
        ("large-then-duplicate", K::DuplicateEntry, |d| {
            gnu(
                d,
                "base(); f('rootfs/big', os.urandom(3 << 20)); f('rootfs/a', b'1'); f('rootfs/a', b'2')",
            )
        }),
        ("hardlink-to-later", K::BadHardlink, |d| {
            gnu(
                d,
                "base(); f('rootfs/a', b'a' * 700); hard('rootfs/h', 'rootfs/b'); f('rootfs/b', b'b')",
            )
        }),
        ("bad-manifest", K::InvalidManifest, |d| {
            let layout = small_layout(
                d,
                br#"{"acKind":"PodManifest","acVersion":"0.8.11","name":"-Bad Name-"}"#,
            );
            sh(&layout, "tar --format=gnu -cf ../bad.tar manifest rootfs");
            std::fs::read(d.join("bad.tar")).unwrap()
        }),
        ("missing-rootfs", K::MissingRootfs, |d| {
            gnu(d, "f('manifest', M)")
        }),
        ("truncated-in-content", K::TruncatedArchive, |d| {
            let tar = gnu(
                d,
                "base(); f('rootfs/small', b's' * 900); f('rootfs/big', bytes(range(256)) * 40); f('rootfs/after', b'x')",
            );
            let at = header_offset(&tar, b"rootfs/big");
            tar[..at + 512 + 5000].to_vec()
        }),
        ("truncated-gzip", K::CorruptCompression, |d| {
            let gz = valid_gzip(d);
            gz[..gz.len() / 2].to_vec()
        }),
        ("gzip-bad-crc", K::CorruptCompression, |d| {
            let mut gz = valid_gzip(d);
            let at = gz.len() - 8;
            gz[at] ^= 0x01;
            gz
        }),
        ("gzip-trailing-garbage", K::CorruptCompression, |d| {
            let mut gz = valid_gzip(d);
            gz.extend_from_slice(b"not gzip at all");
            gz
        }),
        ("pax-size-mismatch", K::PaxSizeMismatch, |d| {
            py_tar(
                d,
                "pax",
                "base(); f('rootfs/z', b'z' * 2000); f('rootfs/a', b'hello', pax_headers={'size': str(5 + 512)}); f('rootfs/b', b'b')",
            )
        }),
        ("bad-checksum-mid-archive", K::BadHeader, |d| {
            let mut tar = gnu(
                d,
                "base(); f('rootfs/big', bytes(range(256)) * 40); f('rootfs/after', b'x')",
            );
            let at = header_offset(&tar, b"rootfs/after");
            tar[at + 140] = if tar[at + 140] == b'1' { b'2' } else { b'1' };
            tar
        }),
        ("random-bytes", K::NotATar, |_| pseudo_random(7, 64 * 1024)),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_archives_leave_nothing_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).await.unwrap();
    let mut ran = 0;
    for (name, kind, build) in hostile_cases() {
        let work = dir.path().join(name);
        std::fs::create_dir_all(&work).unwrap();
        let bytes = build(&work);
        let file = work.join("image.aci");
        std::fs::write(&file, &bytes).unwrap();
        for (how, result) in [
            (
                "import_file",
                store
                    .import_file(&file, ImportOptions::default(), Observer::default())
                    .await,
            ),
            (
                "import",
                store
                    .import(
                        std::io::Cursor::new(bytes),
                        ImportOptions::default(),
                        Observer::default(),
                    )
                    .await,
            ),
        ] {
            match result {
                Ok(imported) => panic!("{name} ({how}): imported as {}", imported.image_id),
                Err(err) => assert_eq!(err.kind(), kind, "{name} ({how}): {err}"),
            }
            assert_empty(&store, &format!("{name} ({how})")).await;
        }
        ran += 1;
    }
    assert_eq!(ran, hostile_cases().len());
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean());
    assert_eq!(report.objects_checked, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_imports_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 12, CHUNK, 500);
    let gz = dir.path().join("big.aci");
    compress(&image.path, "gzip -c", &gz);
    let store = Store::open(dir.path().join("store")).await.unwrap();

    // Cancelled before it starts.
    for path in [&image.path, &gz] {
        let cancel = CancelToken::new();
        cancel.cancel();
        let observer = Observer {
            progress: None,
            cancel,
        };
        let err = store
            .import_file(path, ImportOptions::default(), observer)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
        assert_empty(&store, "cancelled before the start").await;
    }

    // Cancelled at the first progress event, part-way through the content.
    for path in [&image.path, &gz] {
        let cancel = CancelToken::new();
        let trigger = cancel.clone();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let observer = Observer {
            progress: Some(Arc::new(move |p: Progress| {
                log.lock().unwrap().push(p);
                trigger.cancel();
            })),
            cancel,
        };
        let err = store
            .import_file(path, ImportOptions::default(), observer)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0].phase, Phase::Import);
        assert!(seen[0].done < image.bytes.len() as u64, "{seen:?}");
        assert_empty(&store, "cancelled part-way").await;
    }

    // The store is still usable.
    import(&store, &image).await;
    assert_exports(&store, &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_progress_ends_at_the_archive_size() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 12, CHUNK, 500);
    let gz = dir.path().join("big.aci");
    compress(&image.path, "gzip -c", &gz);
    let store = Store::open(dir.path().join("store")).await.unwrap();
    for (i, path) in [&image.path, &gz].into_iter().enumerate() {
        if i > 0 {
            store.remove(&image.id).await.unwrap();
        }
        let size = std::fs::metadata(path).unwrap().len();
        assert!(size > 2 << 20);
        let seen = Arc::new(Mutex::new(Vec::<Progress>::new()));
        let log = seen.clone();
        let observer = Observer {
            progress: Some(Arc::new(move |p| log.lock().unwrap().push(p))),
            ..Observer::default()
        };
        let imported = store
            .import_file(path, ImportOptions::default(), observer)
            .await
            .unwrap();
        assert_eq!(imported.image_id, image.id);
        let seen = seen.lock().unwrap().clone();
        let events: Vec<&Progress> = seen.iter().filter(|p| p.phase == Phase::Import).collect();
        assert!(events.len() >= 2, "{}: {seen:?}", path.display());
        assert!(
            events.windows(2).all(|w| w[0].done <= w[1].done),
            "monotonic: {seen:?}"
        );
        assert!(events.iter().all(|p| p.total == Some(size)), "{seen:?}");
        let last = events.last().unwrap();
        assert_eq!((last.done, last.total), (size, Some(size)), "{seen:?}");
        let last_import_at = seen.iter().rposition(|p| p.phase == Phase::Import).unwrap();
        assert!(
            seen[last_import_at..]
                .iter()
                .any(|p| p.phase == Phase::Commit),
            "a commit event after the import: {seen:?}"
        );
    }

    // Export reports progress too, up to the tar size.
    let seen = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let log = seen.clone();
    let observer = Observer {
        progress: Some(Arc::new(move |p| log.lock().unwrap().push(p))),
        ..Observer::default()
    };
    store
        .export_to(
            &image.id,
            dir.path().join("out.tar"),
            ExportCompression::None,
            observer,
        )
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|p| p.phase == Phase::Export));
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert!(seen.last().unwrap().done <= image.bytes.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_export_is_cancelled_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 12, CHUNK, 500);
    let store = Store::open(dir.path().join("store")).await.unwrap();
    import(&store, &image).await;
    // Cancelled before it starts, and at the first progress event (part-way).
    for (early, compression) in [
        (true, ExportCompression::None),
        (false, ExportCompression::None),
        (false, ExportCompression::Gzip),
    ] {
        let what = format!("cancelled early: {early}, {compression:?}");
        let cancel = CancelToken::new();
        let trigger = cancel.clone();
        if early {
            cancel.cancel();
        }
        let observer = Observer {
            progress: Some(Arc::new(move |_| trigger.cancel())),
            cancel,
        };
        let out = dir.path().join("out.tar");
        let err = store
            .export_to(&image.id, &out, compression, observer)
            .await
            .unwrap_err();
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("out.tar"))
            .collect();
        assert!(left.is_empty(), "{what}: left {left:?}");
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{what}: {err}");
    }
    assert_exports(&store, &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_never_fail_while_gc_runs_in_a_loop() {
    // gc (and every `Store::open`) removes staging folders whose lock is free: a live
    // import's folder must never look like that, at any moment of its life.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).await.unwrap();
    let files: [(&str, &[u8]); 1] = [("etc/hostname", b"tiny\n")];
    let image = make_image(
        dir.path(),
        "tiny",
        &manifest_for("example.com/tiny", "1.0.0"),
        &files,
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two collectors, so that one of them is often listing `tmp/`.
    let collectors: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut runs = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    store.gc(Observer::default()).await.unwrap();
                    runs += 1;
                }
                runs
            })
        })
        .collect();
    let mut failures = Vec::new();
    const IMPORTS: u32 = 800;
    for _ in 0..IMPORTS {
        if let Err(err) = store
            .import_file(&image.path, ImportOptions::default(), Observer::default())
            .await
        {
            failures.push(err.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut runs = 0;
    for collector in collectors {
        runs += collector.await.unwrap();
    }
    eprintln!("{IMPORTS} imports during {runs} gc runs");
    assert!(
        failures.is_empty(),
        "{} of {IMPORTS} imports failed while gc ran: {failures:?}",
        failures.len()
    );
    assert_eq!(store.list().await.unwrap().len(), 1);
    assert!(tmp_entries(store.dir()).is_empty());
    assert!(
        store
            .fsck(false, Observer::default())
            .await
            .unwrap()
            .is_clean()
    );
    assert_exports(&store, &image).await;
}

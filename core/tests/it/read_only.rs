//! Read-only stores serve every read without writing: a store on a real read-only bind mount
//! (`mount --bind STORE RO && mount -o remount,bind,ro RO`: root ignores permission bits, a
//! read-only mount it cannot ignore) lists, resolves, gives manifests, exports (to a file and
//! as a stream), sizes, checks (fsck without repair), renders (a cached tree by overlay and by
//! copy, an image without a cached tree, an image with a dependency) into folders elsewhere
//! and releases them, and serves downloads, discovery and the JSON API; every write fails at
//! once with `read_only_store`. A store opened read-only on purpose writes nothing either
//! (files and use records unchanged), also with a PostgreSQL index; a schema that needs a
//! migration is a clear error; a run made read-only is released once the store is writable.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::{self, *};
use acikit::progress::Observer;
use acikit::render::{RenderOptions, Strategy};
use acikit::serve::{ServeOptions, Server};
use acikit::store::{ExportCompression, ImageQuery, ImportOptions, StoreOptions};
use acikit::{Error, ErrorKind, Store};
use tokio::io::AsyncReadExt;

/// A read-only bind mount of a folder, unmounted when dropped.
struct ReadOnlyMount {
    path: PathBuf,
}

impl ReadOnlyMount {
    fn new(source: &Path, path: &Path) -> ReadOnlyMount {
        std::fs::create_dir_all(path).unwrap();
        let mounted = std::process::Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(path)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount --bind");
        let guard = ReadOnlyMount {
            path: path.to_path_buf(),
        };
        let remounted = std::process::Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(path)
            .status()
            .unwrap();
        assert!(remounted.success(), "remount read-only");
        guard
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

/// Every path under `dir` with its type, size, mode and mtime (SQLite's `-wal` and `-shm`
/// left out: a read-only connection may make them, they are not the database).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with("-wal") || name.ends_with("-shm") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let size = if meta.is_dir() { 0 } else { meta.len() };
            out.insert(
                path.strip_prefix(dir).unwrap().to_path_buf(),
                (meta.mode(), size, meta.mtime(), meta.mtime_nsec()),
            );
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// Asserts `result` is the read-only error naming the store at `dir`.
fn assert_refused<T: std::fmt::Debug>(result: acikit::Result<T>, dir: &Path, what: &str) {
    let err: Error = result.expect_err(what);
    assert_eq!(err.kind(), ErrorKind::ReadOnlyStore, "{what}: {err}");
    assert!(
        err.message().contains(&dir.display().to_string()),
        "{what}: the error names the store: {err}"
    );
}

/// The images of the tests: `a` (rendered once while the store was writable, so its tree is
/// cached), `b` (never rendered) and `c` (never rendered, depends on `b`).
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store_dir: PathBuf,
    a: Image,
    b: Image,
    c: Image,
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let a = make_image(
        &root,
        "a",
        &manifest_with_deps("a", &[]),
        &[
            ("etc/a.conf", b"alpha\n"),
            ("bin/tool", &pseudo_random(1, 70_000)),
        ],
    );
    let b = make_image(
        &root,
        "b",
        &manifest_with_deps("b", &[]),
        &[
            ("etc/b.conf", b"beta\n"),
            ("usr/lib/data", &pseudo_random(2, 9_000)),
        ],
    );
    let c = make_image(
        &root,
        "c",
        &manifest_with_deps("c", &["b"]),
        &[("etc/c.conf", b"gamma\n")],
    );
    let store_dir = root.join("store");
    let store = Store::open(&store_dir).await.unwrap();
    for image in [&a, &b, &c] {
        store
            .import_file(&image.path, ImportOptions::default(), Observer::default())
            .await
            .unwrap();
    }
    // a's tree is cached by a first render (by copy: as root, auto would take composefs,
    // which caches a metadata image instead).
    let first = root.join("first-run");
    store
        .render(
            &a.id,
            &first,
            RenderOptions::default().strategy(Strategy::Copy),
            Observer::default(),
        )
        .await
        .unwrap();
    store.release(&first).await.unwrap();
    assert!(
        acikit::testing::paths::of(&store)
            .tree(&a.id)
            .join("rootfs")
            .is_dir()
    );
    store.close().await;
    Fixture {
        _tmp: tmp,
        root,
        store_dir,
        a,
        b,
        c,
    }
}

fn options(root: &Path) -> StoreOptions {
    StoreOptions::default().runs_dir(root.join("outside-runs"))
}

/// Every read, on `store` (read-only), with files of the test under `root`.
async fn every_read_works(store: &Store, f: &Fixture, root: &Path) {
    assert!(store.is_read_only());

    // list, resolve, manifest.
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 3);
    let by_name = store
        .resolve(&ImageQuery::parse("example.test/b:1", &[]).unwrap())
        .await
        .unwrap();
    assert_eq!(by_name.image_id, f.b.id);
    let prefix = &f.a.id.as_str()[..20];
    let by_prefix = store
        .resolve(&ImageQuery::parse(prefix, &[]).unwrap())
        .await
        .unwrap();
    assert_eq!(by_prefix.image_id, f.a.id);
    let manifest = store.manifest(&f.c.id).await.unwrap();
    assert_eq!(manifest, manifest_with_deps("c", &["b"]).as_bytes());

    // export to a file elsewhere, and as a stream (what `export` to stdout reads).
    let out = root.join("exports/a.tar");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let exported = store
        .export_to(&f.a.id, &out, ExportCompression::None, Observer::default())
        .await
        .unwrap();
    assert_eq!(exported.tar_size, f.a.bytes.len() as u64);
    assert!(std::fs::read(&out).unwrap() == f.a.bytes);
    let mut streamed = Vec::new();
    store
        .export_reader(&f.b.id)
        .await
        .unwrap()
        .read_to_end(&mut streamed)
        .await
        .unwrap();
    assert!(streamed == f.b.bytes);

    // stats, fsck (reporting only).
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.images, 3);
    assert!(stats.objects > 0);
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.images_checked, 3);

    // render: a's cached tree, by copy and (as root) by overlay.
    let runs = root.join("runs");
    let strategies = if is_root() {
        vec![Strategy::Copy, Strategy::Overlay]
    } else {
        vec![Strategy::Copy]
    };
    for strategy in strategies {
        let target = runs.join(format!("a-{strategy}"));
        let rendered = store
            .render(
                &f.a.id,
                &target,
                RenderOptions::default().strategy(strategy),
                Observer::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("render a by {strategy}: {e}"));
        assert!(rendered.cached);
        assert_eq!(rendered.strategy, strategy);
        assert_eq!(
            std::fs::read(target.join("etc/a.conf")).unwrap(),
            b"alpha\n"
        );
        std::fs::write(target.join("etc/a.conf"), b"changed in the run\n").unwrap();
        assert_eq!(store.runs().await.unwrap().len(), 1);
        store.release(&target).await.unwrap();
        assert!(!target.exists());
        assert!(store.runs().await.unwrap().is_empty());
    }

    // render: b has no cached tree: built straight into the run, by copy.
    let target = runs.join("b");
    let rendered = store
        .render(
            &f.b.id,
            &target,
            RenderOptions::default(),
            Observer::default(),
        )
        .await
        .unwrap();
    assert!(!rendered.cached);
    assert_eq!(rendered.strategy, Strategy::Copy);
    assert!(!rendered.read_only);
    assert!(rendered.warnings.iter().any(|w| w.contains("read-only")));
    assert_eq!(std::fs::read(target.join("etc/b.conf")).unwrap(), b"beta\n");
    assert_eq!(
        std::fs::read(target.join("usr/lib/data")).unwrap(),
        pseudo_random(2, 9_000)
    );
    // The run is private: one link per file, and it can be written.
    assert_eq!(
        std::fs::metadata(target.join("usr/lib/data"))
            .unwrap()
            .nlink(),
        1
    );
    std::fs::write(target.join("etc/b.conf"), b"changed\n").unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "b")
        .collect();
    assert!(
        leftovers.is_empty(),
        "scratch left beside the run: {leftovers:?}"
    );
    store.release(&target).await.unwrap();
    assert!(!target.exists());

    // c (depends on b), no cached stack: built without caching too.
    let target = runs.join("c");
    let rendered = store
        .render(
            &f.c.id,
            &target,
            RenderOptions::default(),
            Observer::default(),
        )
        .await
        .unwrap();
    assert_eq!(rendered.layers, vec![f.b.id.clone(), f.c.id.clone()]);
    assert_eq!(std::fs::read(target.join("etc/b.conf")).unwrap(), b"beta\n");
    assert_eq!(
        std::fs::read(target.join("etc/c.conf")).unwrap(),
        b"gamma\n"
    );
    store.release(&target).await.unwrap();

    // Sharing needs a cached tree.
    let err = store
        .render(
            &f.b.id,
            runs.join("b-overlay"),
            RenderOptions::default().strategy(Strategy::Overlay),
            Observer::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(!runs.join("b-overlay").exists());

    // serve: a download, discovery, the JSON API; a push is refused.
    let mut options = ServeOptions::new("127.0.0.1:0".parse().unwrap());
    options.push_token = Some("token".into());
    let server = Server::new(store.clone(), options).start().await.unwrap();
    let base = format!("http://example.test:{}", server.local_addr().port());
    let http = reqwest::Client::builder()
        .resolve("example.test", server.local_addr())
        .build()
        .unwrap();
    for path in [
        format!("/blobs/{}", f.a.id),
        "/images/linux/amd64/example.test/a/1.aci".to_string(),
    ] {
        let download = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(download.status(), 200, "{path}");
        assert!(download.bytes().await.unwrap() == f.a.bytes, "{path}");
    }
    let keys = http
        .get(format!("{base}/pubkeys.asc"))
        .send()
        .await
        .unwrap();
    assert!(!keys.status().is_server_error(), "{}", keys.status());
    let api = http.get(format!("{base}/api/images")).send().await.unwrap();
    assert_eq!(api.status(), 200);
    let api: serde_json::Value = serde_json::from_slice(&api.bytes().await.unwrap()).unwrap();
    assert_eq!(api["images"].as_array().unwrap().len(), 3, "{api}");
    let stats = http.get(format!("{base}/api/stats")).send().await.unwrap();
    assert_eq!(stats.status(), 200);
    let page = http
        .get(format!("{base}/a?ac-discovery=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("ac-discovery"));
    let push = http
        .post(format!("{base}/push"))
        .bearer_auth("token")
        .body(f.b.bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 403);
    let body = push.text().await.unwrap();
    assert!(body.contains("read_only_store"), "{body}");
    server.shutdown(std::time::Duration::from_secs(1));
}

/// Every write, refused at once with `read_only_store` naming the store at `dir`.
async fn every_write_is_refused(store: &Store, f: &Fixture, dir: &Path) {
    assert_refused(
        store
            .import_file(&f.a.path, ImportOptions::default(), Observer::default())
            .await,
        dir,
        "import",
    );
    assert_refused(store.remove(&f.b.id).await, dir, "rm");
    for result in store
        .remove_many(vec![f.a.id.clone(), f.b.id.clone()])
        .await
    {
        assert_refused(result, dir, "rm of several");
    }
    assert_refused(store.gc(Observer::default()).await, dir, "gc");
    assert_refused(
        store.fsck(true, Observer::default()).await,
        dir,
        "fsck --repair",
    );
    assert_refused(store.trust_to_change(), dir, "trust add");
    assert_refused(
        acikit::testing::tree::ensure_tree(
            &store.clone(),
            &f.b.id,
            acikit::testing::privileges::Privileges::detect(),
        )
        .await,
        dir,
        "caching a tree",
    );
    assert_eq!(store.list().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_read_only_mount_serves_every_read_and_refuses_writes() {
    if !is_root() {
        eprintln!("skipped: needs root for a read-only bind mount");
        return;
    }
    let f = fixture().await;
    let before = snapshot(&f.store_dir);
    let ro = f.root.join("ro-store");
    let _mount = ReadOnlyMount::new(&f.store_dir, &ro);
    let store = Store::open_with(&ro, options(&f.root)).await.unwrap();
    every_read_works(&store, &f, &f.root).await;
    every_write_is_refused(&store, &f, &ro).await;
    store.close().await;
    assert_eq!(before, snapshot(&f.store_dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_read_only_writes_nothing() {
    let f = fixture().await;
    let used_before: Vec<i64> = {
        let store = Store::open(&f.store_dir).await.unwrap();
        let list = store.list().await.unwrap();
        store.close().await;
        list.iter().map(|i| i.last_used_at_ms).collect()
    };
    let before = snapshot(&f.store_dir);
    let store = Store::open_with(&f.store_dir, options(&f.root).read_only(true))
        .await
        .unwrap();
    every_read_works(&store, &f, &f.root).await;
    every_write_is_refused(&store, &f, &f.store_dir).await;
    store.close().await;
    assert_eq!(before, snapshot(&f.store_dir));
    let store = Store::open(&f.store_dir).await.unwrap();
    let used_after: Vec<i64> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|i| i.last_used_at_ms)
        .collect();
    assert_eq!(used_before, used_after, "no use was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_needing_a_migration_is_a_clear_error() {
    let f = fixture().await;
    sh(
        &f.store_dir,
        "python3 -c \"import sqlite3; c = sqlite3.connect('index.db'); \
         c.execute('DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)'); \
         c.commit(); c.close()\"",
    );
    let err = Store::open_with(&f.store_dir, options(&f.root).read_only(true))
        .await
        .err()
        .expect("a schema that needs a migration is refused");
    assert_eq!(err.kind(), ErrorKind::ReadOnlyStore, "{err}");
    assert!(err.message().contains("migration"), "{err}");

    // And a missing store is not made.
    let missing = f.root.join("no-store");
    let err = Store::open_with(&missing, options(&f.root).read_only(true))
        .await
        .err()
        .expect("no store");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!missing.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_made_read_only_is_released_once_the_store_is_writable() {
    let f = fixture().await;
    let store = Store::open_with(&f.store_dir, options(&f.root).read_only(true))
        .await
        .unwrap();
    let target = f.root.join("runs/b");
    // What a killed render left beside the target (its lock free) goes.
    let stale = f.root.join("runs/.b.acikit-render-999999-0");
    std::fs::create_dir_all(stale.join("render/tmp")).unwrap();
    std::fs::write(stale.join(".lock"), b"").unwrap();
    store
        .render(
            &f.b.id,
            &target,
            RenderOptions::default(),
            Observer::default(),
        )
        .await
        .unwrap();
    assert!(!stale.exists());
    store.close().await;
    let writable = Store::open_with(&f.store_dir, options(&f.root))
        .await
        .unwrap();
    assert!(!writable.is_read_only());
    assert_eq!(writable.runs().await.unwrap().len(), 1);
    writable.release(&target).await.unwrap();
    assert!(!target.exists());
    assert!(writable.runs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_indexed_in_postgresql_reads_without_writing() {
    let schema = common::postgres::TestSchema::new("read_only");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = make_image(
        root,
        "a",
        &manifest_with_deps("a", &[]),
        &[("etc/a.conf", b"alpha\n")],
    );
    let store_dir = root.join("store");
    let writable = Store::open_with(&store_dir, options(root).database_url(schema.url.clone()))
        .await
        .unwrap();
    writable
        .import_file(&a.path, ImportOptions::default(), Observer::default())
        .await
        .unwrap();
    let used = writable.list().await.unwrap()[0].last_used_at_ms;
    writable.close().await;

    // Opened again read-only with the same URL: no migration, no write.
    let store = Store::open_with(
        &store_dir,
        options(root)
            .database_url(schema.url.clone())
            .read_only(true),
    )
    .await
    .unwrap();
    assert!(store.is_read_only());
    let out = root.join("a-export.tar");
    store
        .export_to(&a.id, &out, ExportCompression::None, Observer::default())
        .await
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == a.bytes);
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_refused(store.remove(&a.id).await, &store_dir, "rm");
    assert_refused(store.gc(Observer::default()).await, &store_dir, "gc");
    assert_eq!(store.list().await.unwrap()[0].last_used_at_ms, used);
    store.close().await;
}

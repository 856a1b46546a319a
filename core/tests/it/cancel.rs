//! Every long call follows one Observer convention (the observer is the last parameter, by
//! value): cancelled mid-way (a progress callback cancels the token at the first event)
//! or before it starts, it returns `Cancelled` and leaves the store as it was (same files,
//! same index, `fsck` clean) and, for build and export, no output file nor temporary beside
//! it. Progress events of import, export and build never go back and end at the total.
//! And every public async method of `Store`, and every long free function, returns a
//! `'static + Send` future.

use crate::common::observe::{
    assert_monotonic_to, assert_unchanged, cancel_at_first_event, cancelled_before, recording,
    snapshot,
};
use crate::common::{big_image, files_under, manifest_for, pseudo_random};
use acikit::build::Builder;
use acikit::progress::{Observer, Phase};
use acikit::store::{ExportCompression, ImageQuery, ImportOptions};
use acikit::{ErrorKind, Label, Store};

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_imports_leave_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 6, 1 << 20, 900);
    let store = Store::open(dir.path().join("store")).await.unwrap();
    let before = snapshot(&store).await;

    let (observer, seen) = cancel_at_first_event();
    let err = store
        .import_file(&image.path, ImportOptions::default(), observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].done < image.bytes.len() as u64, "mid-way: {seen:?}");
    assert_unchanged(&store, &before, "import_file").await;

    let (observer, seen) = cancel_at_first_event();
    let reader = std::io::Cursor::new(image.bytes.clone());
    let err = store
        .import(reader, ImportOptions::default(), observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(!seen.lock().unwrap().is_empty());
    assert_unchanged(&store, &before, "import from a reader").await;

    // And progress of a whole import never goes back and ends at the archive size.
    let (observer, seen) = recording();
    store
        .import_file(&image.path, ImportOptions::default(), observer)
        .await
        .unwrap();
    let size = image.bytes.len() as u64;
    assert_monotonic_to(&seen.lock().unwrap(), Phase::Import, size, "import");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_exports_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 6, 1 << 20, 900);
    let store = Store::open(dir.path().join("store")).await.unwrap();
    store
        .import_file(&image.path, ImportOptions::default(), Observer::default())
        .await
        .unwrap();
    let before = snapshot(&store).await;
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("big.tar");

    let (observer, seen) = cancel_at_first_event();
    let err = store
        .export_to(&image.id, &out, ExportCompression::None, observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(!seen.lock().unwrap().is_empty(), "cancelled mid-way");
    assert!(
        files_under(&out_dir).is_empty(),
        "{:?}",
        files_under(&out_dir)
    );
    assert_unchanged(&store, &before, "export_to").await;

    let (observer, seen) = cancel_at_first_event();
    let err = store
        .export_to_writer(
            &image.id,
            std::io::sink(),
            ExportCompression::Gzip,
            observer,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(!seen.lock().unwrap().is_empty(), "cancelled mid-way");

    // A whole export: progress never goes back and ends at the tar size.
    let (observer, seen) = recording();
    let exported = store
        .export_to(&image.id, &out, ExportCompression::None, observer)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), image.bytes);
    let seen = seen.lock().unwrap().clone();
    assert_monotonic_to(&seen, Phase::Export, exported.tar_size, "export");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_builds_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        manifest_for("example.com/built", "1.0.0"),
    )
    .unwrap();
    for i in 0..6 {
        let bytes = pseudo_random(700 + i, 1 << 20);
        std::fs::write(layout.join(format!("rootfs/f{i}")), bytes).unwrap();
    }
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("built.aci");

    let (observer, seen) = cancel_at_first_event();
    let err = Builder::new()
        .build(&layout, &out, observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(!seen.lock().unwrap().is_empty(), "cancelled mid-way");
    assert!(
        files_under(&out_dir).is_empty(),
        "{:?}",
        files_under(&out_dir)
    );

    let (observer, _) = cancel_at_first_event();
    let err = Builder::new()
        .build_to_writer(&layout, std::io::sink(), observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");

    let (observer, seen) = recording();
    Builder::new().build(&layout, &out, observer).await.unwrap();
    assert_monotonic_to(&seen.lock().unwrap(), Phase::Build, 6 << 20, "build");
}

/// gc and fsck of a small store finish between two checks; a token cancelled before the
/// call stops them at their first check.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_gc_and_fsck_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 6, 1 << 20, 900);
    let store = Store::open(dir.path().join("store")).await.unwrap();
    store
        .import_file(&image.path, ImportOptions::default(), Observer::default())
        .await
        .unwrap();
    let before = snapshot(&store).await;
    let err = store.gc(cancelled_before()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert_unchanged(&store, &before, "gc").await;
    let err = store.fsck(true, cancelled_before()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert_unchanged(&store, &before, "fsck").await;
}

fn assert_static<F: Future + Send + 'static>(future: F) -> F {
    future
}

/// Every public async method of `Store` returns a future that owns its inputs: made from
/// borrowed temporaries that are gone before it runs, and spawned.
#[tokio::test(flavor = "multi_thread")]
async fn store_futures_are_static_and_send() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 6, 1 << 20, 900);
    let store = {
        let path = dir.path().join("store");
        assert_static(Store::open(path.as_path()))
    }
    .await
    .unwrap();
    let id = image.id.clone();
    let imported = {
        let path = image.path.clone();
        let store = store.clone();
        tokio::spawn(assert_static(store.import_file(
            &path,
            ImportOptions::default(),
            Observer::default(),
        )))
    };
    imported.await.unwrap().unwrap();
    let query = ImageQuery::parse("example.com/big", &[Label::new("version", "1.0.0")]).unwrap();
    let out = dir.path().join("out.tar");
    let futures = {
        let (query, id, out) = (query.clone(), id.clone(), out.clone());
        (
            tokio::spawn(assert_static(store.resolve(&query))),
            tokio::spawn(assert_static(store.resolve_matches(&query))),
            tokio::spawn(assert_static(store.list())),
            tokio::spawn(assert_static(store.manifest(&id))),
            tokio::spawn(assert_static(store.stats())),
            tokio::spawn(assert_static(store.export_to(
                &id,
                &out,
                ExportCompression::None,
                Observer::default(),
            ))),
        )
    };
    assert_eq!(futures.0.await.unwrap().unwrap().image_id, id);
    futures.1.await.unwrap().unwrap();
    futures.2.await.unwrap().unwrap();
    futures.3.await.unwrap().unwrap();
    futures.4.await.unwrap().unwrap();
    futures.5.await.unwrap().unwrap();
    let more = {
        let id = id.clone();
        (
            tokio::spawn(assert_static(store.export_reader(&id))),
            tokio::spawn(assert_static(store.export_to_writer(
                &id,
                std::io::sink(),
                ExportCompression::None,
                Observer::default(),
            ))),
            tokio::spawn(assert_static(store.fsck(false, Observer::default()))),
            tokio::spawn(assert_static(store.runs())),
        )
    };
    more.0.await.unwrap().unwrap();
    more.1.await.unwrap().unwrap();
    more.2.await.unwrap().unwrap();
    more.3.await.unwrap().unwrap();
    // Type-checked only (they change or need more setup): the future is still built from
    // temporaries.
    let _ = {
        let target = dir.path().join("run");
        (
            assert_static(store.render(
                &id,
                &target,
                acikit::render::RenderOptions::default(),
                Observer::default(),
            )),
            assert_static(store.release(&target)),
            assert_static(store.fetch(
                acikit::fetch::FetchSource::parse("example.com/big", &[]).unwrap(),
                acikit::fetch::FetchOptions::default(),
                Observer::default(),
            )),
            assert_static(store.import(
                std::io::empty(),
                ImportOptions::default(),
                Observer::default(),
            )),
            assert_static(store.remove_many(vec![id.clone()])),
            assert_static(store.remove(&id)),
            assert_static(store.gc(Observer::default())),
            assert_static(store.close()),
        )
    };
}

/// The long free functions own their inputs too: each future is built from temporaries
/// dropped before it is awaited (inspect_file runs; the others need a server or a key and
/// are type-checked only).
#[tokio::test(flavor = "multi_thread")]
async fn free_function_futures_are_static_and_send() {
    let dir = tempfile::tempdir().unwrap();
    let image = big_image(dir.path(), 6, 1 << 20, 900);
    let inspected = {
        let path = image.path.clone();
        tokio::spawn(assert_static(acikit::inspect_file(
            &path,
            acikit::Limits::default(),
            Observer::default(),
        )))
    };
    assert_eq!(inspected.await.unwrap().unwrap().image_id, image.id);
    let _ = {
        let client = acikit::net::HttpClient::new(acikit::net::NetOptions::default()).unwrap();
        let name = acikit::ImageName::parse("example.com/big:1.0.0", &[]).unwrap();
        let options = acikit::discovery::DiscoveryOptions::default();
        let path = image.path.clone();
        let signature = b"not a signature".to_vec();
        (
            assert_static(acikit::discovery::discover(
                &client,
                &name,
                &options,
                Observer::default(),
            )),
            assert_static(acikit::serve::push_file(
                &client,
                "https://127.0.0.1:1",
                &path,
                Some(&signature),
                "token",
                Observer::default(),
            )),
            assert_static(Builder::new().build(
                dir.path().join("layout"),
                dir.path().join("out.aci"),
                Observer::default(),
            )),
        )
    };
}

//! The public surface a binding wraps: the crate-root re-exports, and the path-based calls
//! `acikit::inspect_file` and `acikit::trust::sign_file` with their observer (progress and
//! cancellation).

use std::sync::{Arc, Mutex};

use crate::common::gpg::Gpg;
use crate::common::{image_tar, manifest_for, pseudo_random};

use acikit::trust::{TrustScope, TrustStore, sign_file, verify_detached};
use acikit::{ErrorKind, Limits, Observer, Phase, Progress, inspect_file};

/// An observer that records every progress event.
fn recording() -> (Observer, Arc<Mutex<Vec<Progress>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let observer = Observer {
        progress: Some(Arc::new(move |p| sink.lock().unwrap().push(p))),
        ..Observer::default()
    };
    (observer, events)
}

/// An observer whose token is already cancelled.
fn cancelled() -> Observer {
    let observer = Observer::default();
    observer.cancel.cancel();
    observer
}

/// The crate root names the types and calls a binding wraps, so it never has to reach into
/// submodules: this only has to compile.
#[test]
fn crate_root_reexports_the_main_types() {
    #[allow(unused_imports)]
    use acikit::{
        BuildCompression, Builder, Built, CancelToken, Error, ErrorCategory, ErrorKind,
        ExportCompression, Exported, FetchOptions, FetchOutcome, FetchSource, Fetched, ImageId,
        ImageInfo, ImageManifest, ImageQuery, ImportOptions, Imported, Inspection, Limits,
        Observer, Phase, Progress, RenderOptions, Rendered, Result, RunningServer, ServeOptions,
        Server, Store, StoreOptions, Strategy, inspect_file,
    };
}

#[tokio::test]
async fn inspect_file_reports_inspect_progress_to_the_uncompressed_size() {
    let dir = tempfile::tempdir().unwrap();
    let aci = dir.path().join("big.aci");
    // Three files of 1.5 MiB: several progress events.
    let blob = pseudo_random(7, 3 << 19);
    let files: Vec<(&str, &[u8])> = vec![("a", &blob), ("b", &blob), ("c", &blob)];
    image_tar(
        &dir.path().join("layout"),
        &manifest_for("example.com/big", "1.0.0"),
        &files,
        &aci,
    );
    let (observer, events) = recording();
    let inspection = inspect_file(&aci, Limits::default(), observer)
        .await
        .unwrap();
    let events = events.lock().unwrap();
    assert!(events.len() >= 3, "{events:?}");
    assert!(events.iter().all(|p| p.phase == Phase::Inspect));
    assert!(
        events.windows(2).all(|w| w[0].done <= w[1].done),
        "{events:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last.done, inspection.uncompressed_size);
    assert_eq!(last.total, Some(inspection.uncompressed_size));
}

#[tokio::test]
async fn inspect_file_cancelled_returns_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let aci = dir.path().join("small.aci");
    image_tar(
        &dir.path().join("layout"),
        &manifest_for("example.com/small", "1.0.0"),
        &[("etc/hello", b"hello\n")],
        &aci,
    );
    let err = inspect_file(&aci, Limits::default(), cancelled())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    // The same file inspects fine with a live observer.
    inspect_file(&aci, Limits::default(), Observer::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn sign_file_signs_what_gpg_and_our_verifier_accept() {
    let gpg = Gpg::in_dir(tempfile::Builder::new().prefix("gpg").tempdir().unwrap());
    let fpr = gpg.gen_key(&[], "Ed <ed@example.com>", "ed25519", "sign", "never");
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("image.aci");
    let bytes = pseudo_random(3, (3 << 20) + 5);
    std::fs::write(&path, &bytes).unwrap();

    let (observer, events) = recording();
    let signed = sign_file(path.clone(), gpg.export_secret(&fpr), None, observer)
        .await
        .unwrap();
    assert_eq!(signed.fingerprint, fpr);
    assert_eq!(signed.data_len, bytes.len() as u64);
    let events = events.lock().unwrap().clone();
    assert!(events.len() >= 3, "{events:?}");
    assert!(events.iter().all(|p| p.phase == Phase::Sign));
    assert!(events.iter().all(|p| p.total == Some(bytes.len() as u64)));
    assert_eq!(events.last().unwrap().done, bytes.len() as u64);

    let sig = work.path().join("image.aci.asc");
    std::fs::write(&sig, &signed.armored).unwrap();
    let (ok, status) = gpg.verify(&sig, &path);
    assert!(ok, "gpg --verify refused the signature: {status}");
    let trust = TrustStore::new(work.path().join("trust"));
    trust
        .add(
            &gpg.export(&fpr),
            TrustScope::prefix("example.com").unwrap(),
        )
        .unwrap();
    verify_detached(&trust, "example.com/app", &signed.armored, &bytes[..]).unwrap();
}

#[tokio::test]
async fn sign_file_errors_are_typed() {
    let gpg = Gpg::in_dir(tempfile::Builder::new().prefix("gpg").tempdir().unwrap());
    let fpr = gpg.gen_key(&[], "Ed <ed@example.com>", "ed25519", "sign", "never");
    let secret = gpg.export_secret(&fpr);
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("image.aci");
    std::fs::write(&path, pseudo_random(5, 1 << 16)).unwrap();

    let err = sign_file(path.clone(), secret.clone(), None, cancelled())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");

    let missing = work.path().join("missing.aci");
    let err = sign_file(missing, secret, None, Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("missing.aci"), "{err}");

    let err = sign_file(path, gpg.export(&fpr), None, Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadOpenpgp, "{err}");
}

//! `Store::fetch` against a real HTTPS server in this process (axum + rustls, a test CA),
//! with images made by GNU tar + gzip and signatures made by real gpg keys: discovery,
//! signature checks (good, substituted image, untrusted, another prefix, SHA-1), name and label
//! validation, size limits, resume after a dropped connection, max-age and 304, 202,
//! cancellation (mid-download, and in a dependency) and download progress, dependencies,
//! concurrent fetches, and `file://` URLs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::common::gpg::Gpg;
use crate::common::https::{TestServer, meta_page};
use crate::common::observe::{
    assert_monotonic_to, assert_unchanged, cancel_when, recording, snapshot,
};
use crate::common::*;
use acikit::fetch::{FetchOptions, FetchOutcome, FetchSource, RetryPolicy};
use acikit::progress::{Observer, Phase};
use acikit::trust::TrustScope;
use acikit::{ErrorKind, Store};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

// ---------------------------------------------------------------------------------------
// Keys and images.

struct Keys {
    gpg: Gpg,
    /// Trusted for `example.test/acme` in most tests.
    acme: String,
    acme_public: Vec<u8>,
    /// Never trusted.
    stranger: String,
    /// Made and used on 2020-01-01 (gpg's faked time), expired two days later; its public
    /// key, exported then.
    expired: String,
    expired_public: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gpg = Gpg::new();
        let acme = gpg.gen_key(&[], "Acme <acme@example.test>", "ed25519", "sign", "never");
        let stranger = gpg.gen_key(&[], "Stranger <x@other.test>", "rsa2048", "sign", "never");
        let acme_public = gpg.export(&acme);
        let then = ["--faked-system-time", "20200101T000000!"];
        let expired = gpg.gen_key(&then, "Old <old@example.test>", "ed25519", "sign", "2d");
        let expired_public = gpg.export(&expired);
        Keys {
            gpg,
            acme,
            acme_public,
            stranger,
            expired,
            expired_public,
        }
    })
}

/// A gzip ACI (~600 KB, random content so gzip keeps it large) and its signatures.
struct Aci {
    bytes: Vec<u8>,
    id: String,
    /// Signed by the acme key, SHA-256.
    sig: Vec<u8>,
}

fn sign(dir: &Path, bytes: &[u8], extra: &[&str], signer: &str) -> Vec<u8> {
    let path = dir.join(format!("to-sign-{}", rand_tag()));
    std::fs::write(&path, bytes).unwrap();
    keys().gpg.sign(extra, &format!("{signer}!"), &path)
}

fn rand_tag() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn make_aci(dir: &Path, manifest: &str, seed: u64) -> Aci {
    make_aci_sized(dir, manifest, seed, 600 * 1024)
}

/// [`make_aci`] with `len` random bytes in its one big file.
fn make_aci_sized(dir: &Path, manifest: &str, seed: u64, len: usize) -> Aci {
    let tag = format!("img{}", rand_tag());
    let tar = dir.join(format!("{tag}.tar"));
    let content = pseudo_random(seed, len);
    image_tar(
        &dir.join(&tag),
        manifest,
        &[("bin/app", &content), ("etc/conf", b"x=1\n")],
        &tar,
    );
    let id = sha512sum(&tar);
    sh(
        dir,
        &format!("gzip -n -6 -c '{}' > '{tag}.aci'", tar.display()),
    );
    let bytes = std::fs::read(dir.join(format!("{tag}.aci"))).unwrap();
    let sig = sign(dir, &bytes, &["--digest-algo", "SHA256"], &keys().acme);
    Aci { bytes, id, sig }
}

fn manifest_with_dep(name: &str, version: &str, dep: &str, dep_version: &str) -> String {
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{{"name":"version","value":"{version}"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],"dependencies":[{{"imageName":"{dep}","labels":[{{"name":"version","value":"{dep_version}"}}]}}]}}"#
    )
}

// ---------------------------------------------------------------------------------------
// The image repository.

#[derive(Clone, Default)]
struct Served {
    bytes: Arc<Vec<u8>>,
    etag: Option<String>,
    cache_control: Option<String>,
    /// The next full GET sends only this many bytes, then breaks the connection.
    drop_after: Option<usize>,
    /// Answer 202 this many times first.
    not_ready: u32,
    /// Answer 503 this many times first (after the 202s).
    unavailable: u32,
}

#[derive(Default)]
struct Repo {
    files: Mutex<HashMap<String, Served>>,
    discovery: Mutex<String>,
    /// The `Range` header of each image request (empty when absent).
    ranges: Mutex<Vec<String>>,
}

impl Repo {
    fn put(&self, path: &str, served: Served) {
        self.files.lock().unwrap().insert(path.to_string(), served);
    }
}

async fn serve(State(repo): State<Arc<Repo>>, uri: Uri, headers: HeaderMap) -> Response {
    if uri.query().is_some_and(|q| q.contains("ac-discovery=1")) {
        let page = repo.discovery.lock().unwrap().clone();
        return ([(header::CONTENT_TYPE, "text/html")], page).into_response();
    }
    let path = uri.path().to_string();
    let served = {
        let mut files = repo.files.lock().unwrap();
        let Some(served) = files.get_mut(&path) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if served.not_ready > 0 {
            served.not_ready -= 1;
            return StatusCode::ACCEPTED.into_response();
        }
        if served.unavailable > 0 {
            served.unavailable -= 1;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let snapshot = served.clone();
        if !headers.contains_key(header::RANGE) {
            served.drop_after = None;
        }
        snapshot
    };
    let get = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if path.ends_with(".aci") {
        repo.ranges
            .lock()
            .unwrap()
            .push(get(header::RANGE).unwrap_or_default());
    }
    let mut out = HeaderMap::new();
    if let Some(etag) = &served.etag {
        out.insert(header::ETAG, etag.parse().unwrap());
    }
    if let Some(cc) = &served.cache_control {
        out.insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    if served.etag.is_some() && get(header::IF_NONE_MATCH) == served.etag {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let len = served.bytes.len();
    let range_ok = get(header::IF_RANGE).is_none_or(|v| Some(v) == served.etag);
    let start = match get(header::RANGE) {
        Some(r) if range_ok => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let status = if start > 0 {
        out.insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", len - 1).parse().unwrap(),
        );
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    out.insert(header::CONTENT_LENGTH, (len - start).into());
    let bytes = served.bytes.clone();
    let body = match served.drop_after {
        Some(cut) if start == 0 => {
            // The first part, a pause (so the client surely reads it), then a broken
            // connection.
            use futures_util::StreamExt;
            let first = Bytes::copy_from_slice(&bytes[..cut]);
            let stream = futures_util::stream::iter([Some(first), None]).then(|part| async move {
                match part {
                    Some(bytes) => Ok(bytes),
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Err(std::io::Error::other(
                            "the test server drops the connection",
                        ))
                    }
                }
            });
            Body::from_stream(stream)
        }
        _ => Body::from(bytes[start..].to_vec()),
    };
    (status, out, body).into_response()
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    repo: Arc<Repo>,
    server: TestServer,
    store: Store,
}

impl Setup {
    /// A server whose discovery page maps `example.test/acme/...` to `/images/...`, and
    /// an empty store that trusts the acme key for `example.test/acme`.
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let repo = Arc::new(Repo::default());
        let state = repo.clone();
        let server = TestServer::start_with(true, move |port| {
            *state.discovery.lock().unwrap() = meta_page(&[(
                "ac-discovery",
                &format!(
                    "example.test/acme https://example.test:{port}/images/{{name}}-{{version}}.{{ext}}"
                ),
            )]);
            Router::new().fallback(serve).with_state(state)
        })
        .await;
        let store = Store::open(dir.path().join("store")).await.unwrap();
        store
            .trust()
            .unwrap()
            .add(
                &keys().acme_public,
                TrustScope::prefix("example.test/acme").unwrap(),
            )
            .unwrap();
        Setup {
            dir: dir.path().to_path_buf(),
            _dir: dir,
            repo,
            server,
            store,
        }
    }

    /// Serves `aci` (and `sig`) as `name` version `version`.
    fn publish(&self, name: &str, version: &str, bytes: &[u8], sig: &[u8], tweak: Served) {
        let path = format!("/images/{name}-{version}.aci");
        self.repo.put(
            &path,
            Served {
                bytes: Arc::new(bytes.to_vec()),
                ..tweak
            },
        );
        self.repo.put(
            &format!("{path}.asc"),
            Served {
                bytes: Arc::new(sig.to_vec()),
                ..Served::default()
            },
        );
    }

    /// Fetches `name` at `version` by discovery with [`Setup::options`].
    async fn fetch(&self, name: &str, version: &str) -> acikit::Result<acikit::fetch::Fetched> {
        self.store
            .fetch(by_name(name, version), self.options(), Observer::default())
            .await
    }

    fn options(&self) -> FetchOptions {
        FetchOptions::default()
            .net(self.server.net_options())
            .retry(
                RetryPolicy::default()
                    .attempts(3)
                    .delays(Duration::from_millis(10), Duration::from_millis(50))
                    .not_ready(5, Duration::from_millis(10)),
            )
    }

    fn image_requests(&self) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/images/"))
            .map(|r| r.path)
            .collect()
    }

    /// Asserts the server saw `n` requests for `path`.
    fn assert_gets(&self, path: &str, n: usize) {
        let requests = self.image_requests();
        let gets = requests.iter().filter(|p| *p == path).count();
        assert_eq!(gets, n, "requests for {path}: {requests:?}");
    }

    async fn assert_empty(&self, what: &str) {
        assert!(self.store.list().await.unwrap().is_empty(), "{what}");
        let objects = files_under(&self.store.dir().join("objects"));
        assert!(objects.is_empty(), "{what}: objects left: {objects:?}");
        let tmp = files_under(&self.store.dir().join("tmp"));
        assert!(tmp.is_empty(), "{what}: tmp left: {tmp:?}");
    }
}

fn by_name(name: &str, version: &str) -> FetchSource {
    FetchSource::parse(&format!("{name}:{version}"), &[]).unwrap()
}

const APP: &str = "example.test/acme/app";

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread")]
async fn fetch_by_name_verifies_and_imports() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 1);
    s.publish(APP, "1.0.0", &aci.bytes, &aci.sig, Served::default());

    let fetched = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(fetched.image_id.as_str(), aci.id);
    assert_eq!(fetched.outcome, FetchOutcome::Downloaded);
    let signature = fetched.signature.expect("verified");
    assert_eq!(signature.fingerprint, keys().acme);
    // The signature is fetched before the image.
    let path = format!("/images/{APP}-1.0.0.aci");
    assert_eq!(s.image_requests(), vec![format!("{path}.asc"), path]);
    // What the store regenerates hashes to the image ID.
    let out = s.dir.join("export.tar");
    s.store
        .export_to(
            &fetched.image_id,
            &out,
            acikit::store::ExportCompression::None,
            Observer::default(),
        )
        .await
        .unwrap();
    assert_eq!(sha512sum(&out), aci.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_signature_leaves_nothing() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 2);
    let k = keys();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, ErrorKind)> = vec![
        (
            // Another valid image of the same name, served with the first one's signature.
            "substituted image",
            make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 22).bytes,
            aci.sig.clone(),
            ErrorKind::BadSignature,
        ),
        (
            "untrusted key",
            aci.bytes.clone(),
            sign(&s.dir, &aci.bytes, &[], &k.stranger),
            ErrorKind::UntrustedKey,
        ),
        (
            "SHA-1 signature",
            aci.bytes.clone(),
            sign(
                &s.dir,
                &aci.bytes,
                &["--digest-algo", "SHA1", "--weak-digest", "SHA224"],
                &k.acme,
            ),
            ErrorKind::WeakSignatureHash,
        ),
        (
            "expired key",
            aci.bytes.clone(),
            sign(
                &s.dir,
                &aci.bytes,
                &["--faked-system-time", "20200101T000100!"],
                &k.expired,
            ),
            ErrorKind::KeyExpired,
        ),
        (
            "garbage signature",
            aci.bytes.clone(),
            b"not a signature".to_vec(),
            ErrorKind::BadOpenpgp,
        ),
    ];
    // The expired key, trusted back when it was valid: written where the store keeps it
    // (`add` refuses an expired key today).
    let prefix_dir = s
        .store
        .trust()
        .unwrap()
        .dir()
        .join("prefix.d")
        .join("example.test,acme");
    std::fs::create_dir_all(&prefix_dir).unwrap();
    std::fs::write(
        prefix_dir.join(format!("{}.asc", k.expired)),
        &k.expired_public,
    )
    .unwrap();
    for (what, bytes, sig, kind) in cases {
        s.publish(APP, "1.0.0", &bytes, &sig, Served::default());
        let err = s.fetch(APP, "1.0.0").await.unwrap_err();
        assert_eq!(err.kind(), kind, "{what}: {err}");
        s.assert_empty(what).await;
    }
    // Refused from the signature alone (untrusted, weak hash, expired, garbage): the image
    // itself was requested only for the substituted one.
    s.assert_gets(&format!("/images/{APP}-1.0.0.aci"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_trusted_for_another_prefix_is_refused() {
    let s = Setup::new().await;
    let other = "example.test/other/app";
    let aci = make_aci(&s.dir, &manifest_for(other, "1.0.0"), 3);
    // The page serves every example.test name; the acme key covers only example.test/acme.
    *s.repo.discovery.lock().unwrap() = meta_page(&[(
        "ac-discovery",
        &format!(
            "example.test https://example.test:{}/images/{{name}}-{{version}}.{{ext}}",
            s.server.port
        ),
    )]);
    s.publish(other, "1.0.0", &aci.bytes, &aci.sig, Served::default());
    let err = s.fetch(other, "1.0.0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyWrongPrefix, "{err}");
    s.assert_empty("wrong prefix").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn name_and_label_mismatches_are_refused() {
    let s = Setup::new().await;
    // Served as app 1.0.0, but the manifest says another name, then another version.
    for (manifest, what) in [
        (manifest_for("example.test/acme/impostor", "1.0.0"), "name"),
        (manifest_for(APP, "2.0.0"), "version"),
    ] {
        let aci = make_aci(&s.dir, &manifest, 4);
        s.publish(APP, "1.0.0", &aci.bytes, &aci.sig, Served::default());
        let err = s.fetch(APP, "1.0.0").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ImageMismatch, "{what}: {err}");
        s.assert_empty(what).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_image_is_refused() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 5);
    s.publish(APP, "1.0.0", &aci.bytes, &aci.sig, Served::default());
    let options = s.options().max_size(aci.bytes.len() as u64 - 1);
    let err = s
        .store
        .fetch(by_name(APP, "1.0.0"), options, Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    s.assert_empty("oversized").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_resumes_with_a_range_request() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 6);
    let half = aci.bytes.len() / 2;
    s.publish(
        APP,
        "1.0.0",
        &aci.bytes,
        &aci.sig,
        Served {
            etag: Some("\"v1\"".into()),
            drop_after: Some(half),
            ..Served::default()
        },
    );
    let fetched = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(fetched.image_id.as_str(), aci.id);
    assert!(fetched.signature.is_some());
    let ranges = s.repo.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![String::new(), format!("bytes={half}-")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn within_max_age_nothing_is_requested() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 7);
    s.publish(
        APP,
        "1.0.0",
        &aci.bytes,
        &aci.sig,
        Served {
            etag: Some("\"v1\"".into()),
            cache_control: Some("max-age=3600".into()),
            ..Served::default()
        },
    );
    let first = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(first.outcome, FetchOutcome::Downloaded);
    s.server.clear_requests();
    let again = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(again.outcome, FetchOutcome::Cached);
    assert_eq!(again.image_id, first.image_id);
    assert!(s.server.requests().is_empty(), "{:?}", s.server.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_copy_is_revalidated_with_304() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 8);
    s.publish(
        APP,
        "1.0.0",
        &aci.bytes,
        &aci.sig,
        Served {
            etag: Some("\"v1\"".into()),
            cache_control: Some("max-age=0".into()),
            ..Served::default()
        },
    );
    let first = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(first.outcome, FetchOutcome::Downloaded);
    s.repo.ranges.lock().unwrap().clear();
    let again = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(again.outcome, FetchOutcome::NotModified);
    assert_eq!(again.image_id, first.image_id);
    // One image request, answered 304 (no body): the log has it once.
    assert_eq!(s.repo.ranges.lock().unwrap().len(), 1);
    assert_eq!(s.store.list().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_answers_are_waited_through() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 9);
    s.publish(
        APP,
        "1.0.0",
        &aci.bytes,
        &aci.sig,
        Served {
            not_ready: 2,
            ..Served::default()
        },
    );
    let fetched = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(fetched.image_id.as_str(), aci.id);
    // Two 202 answers, then the image.
    s.assert_gets(&format!("/images/{APP}-1.0.0.aci"), 3);

    // Past the limit: not_ready.
    s.publish(
        APP,
        "2.0.0",
        &aci.bytes,
        &aci.sig,
        Served {
            not_ready: 100,
            ..Served::default()
        },
    );
    let err = s.fetch(APP, "2.0.0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("not ready"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_then_given_up() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 17);
    s.publish(
        APP,
        "1.0.0",
        &aci.bytes,
        &aci.sig,
        Served {
            unavailable: 2,
            ..Served::default()
        },
    );
    let fetched = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(fetched.image_id.as_str(), aci.id);
    // Two 503 answers, then the image.
    s.assert_gets(&format!("/images/{APP}-1.0.0.aci"), 3);

    // More failures in a row than the policy allows (3 retries): a network error.
    s.publish(
        APP,
        "2.0.0",
        &aci.bytes,
        &aci.sig,
        Served {
            unavailable: 10,
            ..Served::default()
        },
    );
    let err = s.fetch(APP, "2.0.0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    // One try and three retries.
    s.assert_gets(&format!("/images/{APP}-2.0.0.aci"), 4);
}

/// Cancelled at its first download event, a fetch of a 4 MiB image stops mid-way with
/// `cancelled` and leaves the store as it was: the same files (no staging folder, no
/// object), nothing listed, fsck clean, and no fetch record (the next fetch downloads the
/// image again, with progress that never goes back and ends at the archive size).
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_fetch_leaves_nothing() {
    let s = Setup::new().await;
    let aci = make_aci_sized(&s.dir, &manifest_for(APP, "1.0.0"), 10, 4 << 20);
    s.publish(APP, "1.0.0", &aci.bytes, &aci.sig, Served::default());
    let before = snapshot(&s.store).await;
    let (observer, seen) = cancel_when(|p| p.phase == Phase::Download);
    let err = s
        .store
        .fetch(by_name(APP, "1.0.0"), s.options(), observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let seen = seen.lock().unwrap().clone();
    let first = seen
        .iter()
        .find(|p| p.phase == Phase::Download)
        .expect("the download started");
    assert!(
        first.done < aci.bytes.len() as u64,
        "cancelled mid-way: {seen:?}"
    );
    s.assert_empty("cancelled").await;
    assert_unchanged(&s.store, &before, "cancelled fetch").await;

    // The whole fetch: downloaded again (no record says the image is cached), download
    // progress never goes back and ends at the archive's size.
    let (observer, seen) = recording();
    let fetched = s
        .store
        .fetch(by_name(APP, "1.0.0"), s.options(), observer)
        .await
        .unwrap();
    assert_eq!(fetched.outcome, FetchOutcome::Downloaded);
    assert_eq!(fetched.image_id.as_str(), aci.id);
    let seen = seen.lock().unwrap().clone();
    assert_monotonic_to(&seen, Phase::Download, aci.bytes.len() as u64, "fetch");
    assert!(
        seen.iter()
            .filter(|p| p.phase == Phase::Download)
            .all(|p| p.total == Some(aci.bytes.len() as u64)),
        "the total is the archive size: {seen:?}"
    );
}

/// Cancelled while its dependency downloads, a fetch stops with `cancelled`: the image
/// itself, verified and committed before its dependencies are looked at, stays (whole,
/// fsck clean); nothing of the dependency is left (no staging folder, not listed); the
/// same fetch then adds the dependency.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_cancelled_in_its_dependency_leaves_no_part_of_it() {
    let s = Setup::new().await;
    let base = "example.test/acme/base";
    // The dependency is much larger than the image: its download events are told apart by
    // their total.
    let dep = make_aci_sized(&s.dir, &manifest_for(base, "3.0.0"), 23, 3 << 20);
    let app = make_aci(&s.dir, &manifest_with_dep(APP, "1.0.0", base, "3.0.0"), 24);
    let dep_size = dep.bytes.len() as u64;
    s.publish(base, "3.0.0", &dep.bytes, &dep.sig, Served::default());
    s.publish(APP, "1.0.0", &app.bytes, &app.sig, Served::default());
    let (observer, seen) =
        cancel_when(move |p| p.phase == Phase::Download && p.total == Some(dep_size));
    let err = s
        .store
        .fetch(by_name(APP, "1.0.0"), s.options(), observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(
        err.to_string().contains(base),
        "names the dependency: {err}"
    );
    let seen = seen.lock().unwrap().clone();
    let first = seen
        .iter()
        .find(|p| p.phase == Phase::Download && p.total == Some(dep_size))
        .expect("the dependency's download started");
    assert!(first.done < dep_size, "cancelled mid-way: {seen:?}");
    let listed: Vec<String> = s
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.image_id.to_string())
        .collect();
    assert_eq!(listed, vec![app.id.clone()], "only the image itself");
    let tmp = files_under(&s.store.dir().join("tmp"));
    assert!(tmp.is_empty(), "tmp left: {tmp:?}");
    let report = s.store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    let fetched = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(fetched.dependencies.len(), 1);
    assert_eq!(fetched.dependencies[0].image_id.as_str(), dep.id);
    assert_eq!(s.store.list().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn dependencies_are_fetched_by_name() {
    let s = Setup::new().await;
    let base = "example.test/acme/base";
    let dep = make_aci(&s.dir, &manifest_for(base, "3.0.0"), 11);
    let app = make_aci(&s.dir, &manifest_with_dep(APP, "1.0.0", base, "3.0.0"), 12);
    s.publish(base, "3.0.0", &dep.bytes, &dep.sig, Served::default());
    s.publish(APP, "1.0.0", &app.bytes, &app.sig, Served::default());
    let fetched = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(fetched.image_id.as_str(), app.id);
    assert_eq!(fetched.dependencies.len(), 1);
    assert_eq!(fetched.dependencies[0].image_id.as_str(), dep.id);
    assert!(fetched.dependencies[0].signature.is_some());
    assert_eq!(s.store.list().await.unwrap().len(), 2);

    // A missing dependency names the chain.
    let lone = make_aci(
        &s.dir,
        &manifest_with_dep(APP, "2.0.0", "example.test/acme/gone", "1"),
        13,
    );
    s.publish(APP, "2.0.0", &lone.bytes, &lone.sig, Served::default());
    let err = s.fetch(APP, "2.0.0").await.unwrap_err();
    assert!(err.to_string().contains("example.test/acme/gone"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_with_another_id_or_size_is_refused() {
    let s = Setup::new().await;
    let base = "example.test/acme/base";
    let dep = make_aci(&s.dir, &manifest_for(base, "3.0.0"), 18);
    s.publish(base, "3.0.0", &dep.bytes, &dep.sig, Served::default());
    let wrong_id = format!("sha512-{}", "0".repeat(128));
    for (pin, version) in [
        (format!(r#""imageID":"{wrong_id}""#), "1.0.0"),
        (r#""size":12345"#.to_string(), "2.0.0"),
    ] {
        let manifest = format!(
            r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{APP}","labels":[{{"name":"version","value":"{version}"}}],"dependencies":[{{"imageName":"{base}",{pin},"labels":[{{"name":"version","value":"3.0.0"}}]}}]}}"#
        );
        let app = make_aci(&s.dir, &manifest, 19);
        s.publish(APP, version, &app.bytes, &app.sig, Served::default());
        let err = s.fetch(APP, version).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DependencyMismatch, "{pin}: {err}");
        assert!(err.to_string().contains(base), "{err}");
    }
    // The dependency itself was never committed under the wrong pin.
    let names: Vec<String> = s
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert!(!names.iter().any(|n| n == base), "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_are_tried_in_order() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 20);
    // Two templates: the first names a mirror that does not have the image.
    *s.repo.discovery.lock().unwrap() = meta_page(&[
        (
            "ac-discovery",
            &format!(
                "example.test/acme https://example.test:{}/mirror/{{name}}-{{version}}.{{ext}}",
                s.server.port
            ),
        ),
        (
            "ac-discovery",
            &format!(
                "example.test/acme https://example.test:{}/images/{{name}}-{{version}}.{{ext}}",
                s.server.port
            ),
        ),
    ]);
    s.publish(APP, "1.0.0", &aci.bytes, &aci.sig, Served::default());
    let fetched = s.fetch(APP, "1.0.0").await.unwrap();
    assert_eq!(fetched.image_id.as_str(), aci.id);
    assert!(fetched.url.unwrap().contains("/images/"));
    let mirror: Vec<String> = s
        .server
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.starts_with("/mirror/"))
        .collect();
    assert_eq!(
        mirror,
        vec![format!("/mirror/{APP}-1.0.0.aci.asc")],
        "tried first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_fetches_of_one_image_at_once_leave_one_copy() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 14);
    s.publish(APP, "1.0.0", &aci.bytes, &aci.sig, Served::default());
    let (a, b) = tokio::join!(
        s.store
            .fetch(by_name(APP, "1.0.0"), s.options(), Observer::default()),
        s.store
            .fetch(by_name(APP, "1.0.0"), s.options(), Observer::default()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.image_id, b.image_id);
    assert_eq!(s.store.list().await.unwrap().len(), 1);
    let report = s.store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_urls_are_verified_too() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 15);
    let path = s.dir.join("app.aci");
    std::fs::write(&path, &aci.bytes).unwrap();
    let url = format!("file://{}", path.display());
    // No signature next to it: refused.
    let err = s
        .store
        .fetch(
            FetchSource::parse(&url, &[]).unwrap(),
            s.options(),
            Observer::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    s.assert_empty("no signature").await;
    // With one, verified against the name in the manifest.
    std::fs::write(s.dir.join("app.aci.asc"), &aci.sig).unwrap();
    let fetched = s
        .store
        .fetch(
            FetchSource::parse(&url, &[]).unwrap(),
            s.options(),
            Observer::default(),
        )
        .await
        .unwrap();
    assert_eq!(fetched.image_id.as_str(), aci.id);
    assert_eq!(fetched.signature.unwrap().fingerprint, keys().acme);
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_image_skips_the_signature_only_when_asked() {
    let s = Setup::new().await;
    let aci = make_aci(&s.dir, &manifest_for(APP, "1.0.0"), 16);
    s.repo.put(
        &format!("/images/{APP}-1.0.0.aci"),
        Served {
            bytes: Arc::new(aci.bytes.clone()),
            ..Served::default()
        },
    );
    let err = s.fetch(APP, "1.0.0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "no signature: {err}");
    s.assert_empty("unsigned").await;
    let mut options = s.options();
    options.net.insecure.image = true;
    let fetched = s
        .store
        .fetch(by_name(APP, "1.0.0"), options, Observer::default())
        .await
        .unwrap();
    assert_eq!(fetched.image_id.as_str(), aci.id);
    assert!(fetched.signature.is_none());
}

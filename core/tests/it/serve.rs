//! `acikit serve` in this process: a real HTTPS server (rustls, the test CA) over a store,
//! pushed to with real gpg signatures over GNU tar + gzip images, fetched from with
//! `Store::fetch` through discovery and with plain HTTP requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common::gpg::Gpg;
use crate::common::https::{TEST_HOSTS, test_ca};
use crate::common::observe::{
    assert_monotonic_to, assert_unchanged, cancel_when, recording, snapshot,
};
use crate::common::postgres::TestSchema;
use crate::common::*;
use acikit::fetch::{FetchOptions, FetchSource};
use acikit::net::HttpClient;
use acikit::serve::push_file;
use acikit::serve::{RunningServer, ServeOptions, ServedForm, Server, TlsFiles};
use acikit::store::{IndexBackend, StoreOptions};
use acikit::trust::{TrustScope, verify_detached};
use acikit::{ErrorKind, Store};

const TOKEN: &str = "s3cret-token";

struct Keys {
    gpg: Gpg,
    acme: String,
    acme_public: Vec<u8>,
    stranger: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gpg = Gpg::new();
        let acme = gpg.gen_key(&[], "Acme <acme@example.test>", "ed25519", "sign", "never");
        let stranger = gpg.gen_key(&[], "Stranger <x@other.test>", "ed25519", "sign", "never");
        let acme_public = gpg.export(&acme);
        Keys {
            gpg,
            acme,
            acme_public,
            stranger,
        }
    })
}

/// A gzip ACI made by GNU tar + `gzip -n`, its ID and file.
struct Aci {
    path: PathBuf,
    bytes: Vec<u8>,
    id: String,
}

fn make_aci(dir: &Path, tag: &str, name: &str, version: &str, seed: u64) -> Aci {
    make_aci_sized(dir, tag, name, version, seed, 700 * 1024)
}

/// [`make_aci`] with `len` random bytes in its one big file.
fn make_aci_sized(dir: &Path, tag: &str, name: &str, version: &str, seed: u64, len: usize) -> Aci {
    let tar = dir.join(format!("{tag}.tar"));
    let content = pseudo_random(seed, len);
    image_tar(
        &dir.join(tag),
        &manifest_for(name, version),
        &[("bin/app", &content), ("etc/conf", b"x=1\n")],
        &tar,
    );
    let id = sha512sum(&tar);
    sh(
        dir,
        &format!("gzip -n -6 -c '{}' > '{tag}.aci'", tar.display()),
    );
    let path = dir.join(format!("{tag}.aci"));
    Aci {
        bytes: std::fs::read(&path).unwrap(),
        path,
        id,
    }
}

fn sign(path: &Path, signer: &str) -> Vec<u8> {
    keys()
        .gpg
        .sign(&["--digest-algo", "SHA256"], &format!("{signer}!"), path)
}

struct Setup {
    _dir: Arc<tempfile::TempDir>,
    dir: PathBuf,
    store: Store,
    server: RunningServer,
    port: u16,
    addr: SocketAddr,
    ca_file: PathBuf,
}

impl Setup {
    /// A server on a new store with the SQLite index.
    async fn new(require_signature: bool) -> Setup {
        Setup::start(
            Arc::new(tempfile::tempdir().unwrap()),
            require_signature,
            None,
        )
        .await
    }

    /// A server on the store `server-store` in `dir` (new or not), indexed in
    /// `database` (a PostgreSQL URL) or in SQLite.
    async fn start(
        dir: Arc<tempfile::TempDir>,
        require_signature: bool,
        database: Option<&str>,
    ) -> Setup {
        let root = dir.path().to_path_buf();
        let ca = test_ca();
        std::fs::write(root.join("cert.pem"), &ca.cert_pem).unwrap();
        std::fs::write(root.join("key.pem"), &ca.key_pem).unwrap();
        std::fs::write(root.join("ca.pem"), &ca.ca_pem).unwrap();
        let mut options = StoreOptions::default();
        options.database_url = database.map(str::to_string);
        let store = Store::open_with(root.join("server-store"), options)
            .await
            .unwrap();
        store
            .trust()
            .unwrap()
            .add(
                &keys().acme_public,
                TrustScope::prefix("example.test/acme").unwrap(),
            )
            .unwrap();
        let mut options = ServeOptions::new("127.0.0.1:0".parse().unwrap());
        options.tls = Some(TlsFiles::new(root.join("cert.pem"), root.join("key.pem")));
        options.push_token = Some(TOKEN.to_string());
        options.require_signature = require_signature;
        let server = Server::new(store.clone(), options).start().await.unwrap();
        let addr = server.local_addr();
        Setup {
            _dir: dir,
            dir: root.clone(),
            store,
            port: addr.port(),
            addr,
            server,
            ca_file: root.join("ca.pem"),
        }
    }

    fn net(&self) -> acikit::net::NetOptions {
        let mut options = acikit::net::NetOptions::default();
        options.ca_certs = vec![acikit::net::CaCert::Path(self.ca_file.clone())];
        options.port = Some(self.port);
        options.resolve = TEST_HOSTS
            .iter()
            .map(|h| (h.to_string(), self.addr))
            .collect();
        options
    }

    fn client(&self) -> HttpClient {
        HttpClient::new(self.net()).unwrap()
    }

    fn base(&self) -> String {
        format!("https://example.test:{}", self.port)
    }

    fn reqwest(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(test_ca().ca_pem.as_bytes()).unwrap(),
        );
        for h in TEST_HOSTS {
            builder = builder.resolve(h, self.addr);
        }
        builder.build().unwrap()
    }

    async fn push(
        &self,
        aci: &Path,
        sig: Option<&[u8]>,
        token: &str,
    ) -> acikit::Result<acikit::serve::Pushed> {
        push_file(
            &self.client(),
            &self.base(),
            aci,
            sig,
            token,
            acikit::progress::Observer::default(),
        )
        .await
    }

    async fn assert_empty(&self, what: &str) {
        assert!(self.store.list().await.unwrap().is_empty(), "{what}");
        let objects = files_under(&self.store.dir().join("objects"));
        assert!(objects.is_empty(), "{what}: objects left: {objects:?}");
        let tmp = files_under(&self.store.dir().join("tmp"));
        assert!(tmp.is_empty(), "{what}: tmp left: {tmp:?}");
        self.assert_no_push_files(what);
    }

    fn assert_no_push_files(&self, what: &str) {
        let sigs = files_under(&self.store.dir().join("signatures"));
        assert!(sigs.is_empty(), "{what}: signatures left: {sigs:?}");
        let originals = files_under(&self.store.dir().join("originals"));
        assert!(
            originals.is_empty(),
            "{what}: originals left: {originals:?}"
        );
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self
            .reqwest()
            .get(format!("{}{path}", self.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    /// The JSON API record of the one image named `name`.
    async fn api_image(&self, name: &str) -> serde_json::Value {
        let api = self.get_json(&format!("/api/images?name={name}")).await;
        let images = api["images"].as_array().unwrap();
        assert_eq!(images.len(), 1, "{api}");
        images[0].clone()
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn sha512_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha512-{}", hex::encode(sha2::Sha512::digest(bytes)))
}

/// A new client store in `dir` that trusts the acme key fetches version 1.0.0 of `name`
/// from `server` through discovery.
async fn fetch_as_client(
    dir: &Path,
    server: &Setup,
    name: &str,
) -> (Store, acikit::fetch::Fetched) {
    let client_store = Store::open(dir.join("client-store")).await.unwrap();
    client_store
        .trust()
        .unwrap()
        .add(
            &keys().acme_public,
            TrustScope::prefix("example.test/acme").unwrap(),
        )
        .unwrap();
    let fetched = client_store
        .fetch(
            FetchSource::Name(
                acikit::ImageName::parse(name, &[acikit::Label::new("version", "1.0.0")]).unwrap(),
            ),
            FetchOptions::default().net(server.net()),
            acikit::progress::Observer::default(),
        )
        .await
        .unwrap();
    (client_store, fetched)
}

const IMAGE_PATH: &str = "/images/linux/amd64/example.test/acme/app/1.0.0.aci";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushed_image_is_discovered_fetched_and_verified() {
    let s = Setup::new(true).await;
    let aci = make_aci(&s.dir, "app", "example.test/acme/app", "1.0.0", 1);
    let sig = sign(&aci.path, &keys().acme);
    let pushed = s.push(&aci.path, Some(&sig), TOKEN).await.unwrap();
    assert_eq!(pushed.image_id.to_string(), aci.id);
    assert_eq!(
        pushed.form,
        ServedForm::Original,
        "GNU gzip is not our gzip"
    );
    assert!(pushed.signed);
    assert_eq!(pushed.verified_by.as_deref(), Some(keys().acme.as_str()));

    // A second, empty store fetches it through discovery and verifies the signature.
    let (client_store, fetched) = fetch_as_client(&s.dir, &s, "example.test/acme/app").await;
    assert_eq!(fetched.image_id.to_string(), aci.id);
    assert!(fetched.signature.is_some());

    // The served bytes: the original upload, decompressing to the image ID, and the served
    // signature verifies over them.
    let http = s.reqwest();
    let url = format!("{}{IMAGE_PATH}", s.base());
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        aci.bytes.len().to_string()
    );
    let served = response.bytes().await.unwrap();
    assert_eq!(served.as_ref(), aci.bytes.as_slice());
    assert_eq!(sha512_hex(&gunzip(&served)), aci.id);
    let served_sig = http
        .get(format!("{url}.asc"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let trust = client_store.trust().unwrap();
    verify_detached(&trust, "example.test/acme/app", &served_sig, &served[..]).unwrap();
    // ... and gpg agrees.
    std::fs::write(s.dir.join("served.aci"), &served).unwrap();
    std::fs::write(s.dir.join("served.aci.asc"), &served_sig).unwrap();
    keys().gpg.run(
        &[
            "--verify",
            s.dir.join("served.aci.asc").to_str().unwrap(),
            s.dir.join("served.aci").to_str().unwrap(),
        ],
        None,
    );

    // Conditional and range requests.
    let not_modified = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    let part = http
        .get(&url)
        .header("range", "bytes=1000-4999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes 1000-4999/{}", aci.bytes.len())
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &aci.bytes[1000..5000]);

    // The uncompressed form: ETag = image ID, Content-Length = tar size, ranges.
    let blob = format!("{}/blobs/{}", s.base(), aci.id);
    let tar = http.get(&blob).send().await.unwrap();
    assert_eq!(tar.status(), 200);
    assert_eq!(
        tar.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", aci.id)
    );
    let tar_len: usize = tar.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let tar = tar.bytes().await.unwrap();
    assert_eq!(tar.len(), tar_len);
    assert_eq!(sha512_hex(&tar), aci.id);
    let tail = http
        .get(&blob)
        .header("range", "bytes=600000-")
        .header("if-range", format!("\"{}\"", aci.id))
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &tar[600_000..]);
    let stale = http
        .get(&blob)
        .header("range", "bytes=600000-")
        .header("if-range", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200, "a stale If-Range gets the whole tar");
    let inm = http
        .get(&blob)
        .header("if-none-match", format!("\"{}\"", aci.id))
        .send()
        .await
        .unwrap();
    assert_eq!(inm.status(), 304);

    // Four concurrent downloads of the same image all complete and match.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let http = http.clone();
        let blob = blob.clone();
        tasks.push(tokio::spawn(async move {
            http.get(&blob).send().await.unwrap().bytes().await.unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(sha512_hex(&task.await.unwrap()), aci.id);
    }

    // The JSON API answers from the index.
    let api = s
        .get_json("/api/images?name=example.test/acme/app&label=version=1.0.0")
        .await;
    let images = api["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{api}");
    assert_eq!(images[0]["image_id"], aci.id.as_str());
    assert_eq!(images[0]["served_form"], "original");
    let none = s.get_json("/api/images?label=version=9").await;
    assert!(none["images"].as_array().unwrap().is_empty());
    let stats = s.get_json("/api/stats").await;
    // GNU gzip: kept whole until compacted, then re-created from a correction record.
    assert_eq!(stats["original_records"], 1, "{stats}");
    assert_eq!(stats["originals"], 1, "{stats}");
    s.store
        .compact_originals(acikit::progress::Observer::default())
        .await
        .unwrap();
    let stats = s.get_json("/api/stats").await;
    assert_eq!(stats["originals"], 0, "{stats}");
    let kept = stats["original_kept_bytes"].as_u64().unwrap();
    assert!(kept > 0 && kept < aci.bytes.len() as u64 / 50, "{stats}");

    // The served keys are the trusted ones.
    let keys_served = http
        .get(format!("{}/pubkeys.asc", s.base()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&keys_served).contains("BEGIN PGP PUBLIC KEY BLOCK"));
    s.server.shutdown(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_gzip_export_is_served_regenerated() {
    let s = Setup::new(true).await;
    // An image exported by our deterministic gzip, signed: the server keeps no copy and
    // regenerates the same bytes.
    let aci = make_aci(&s.dir, "gz", "example.test/acme/gz", "2.0", 2);
    let scratch = Store::open(s.dir.join("scratch")).await.unwrap();
    let imported = scratch
        .import_file(
            &aci.path,
            Default::default(),
            acikit::progress::Observer::default(),
        )
        .await
        .unwrap();
    let exported = s.dir.join("ours.aci");
    scratch
        .export_to(
            &imported.image_id,
            &exported,
            acikit::store::ExportCompression::Gzip,
            Default::default(),
        )
        .await
        .unwrap();
    let ours = std::fs::read(&exported).unwrap();
    let sig = sign(&exported, &keys().acme);
    let pushed = s.push(&exported, Some(&sig), TOKEN).await.unwrap();
    assert_eq!(pushed.form, ServedForm::Gzip);
    // Kept whole until compacted; then re-created (a correction record, or our export
    // itself), never kept whole.
    let original = s.store.original(&imported.image_id).await.unwrap().unwrap();
    assert!(original.pending, "{original:?}");
    s.store
        .compact_originals(acikit::progress::Observer::default())
        .await
        .unwrap();
    let original = s.store.original(&imported.image_id).await.unwrap().unwrap();
    assert!(
        matches!(
            original.form,
            acikit::store::OriginalForm::Gzip | acikit::store::OriginalForm::GzipExport
        ),
        "{original:?}"
    );
    let originals = files_under(&s.store.dir().join("originals"));
    assert!(
        originals.iter().all(|p| p.extension().unwrap() != "aci"),
        "{originals:?}"
    );

    let http = s.reqwest();
    let url = format!(
        "{}/images/linux/amd64/example.test/acme/gz/latest.aci",
        s.base()
    );
    let served = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.as_ref(), ours.as_slice());
    assert_eq!(sha512_hex(&gunzip(&served)), aci.id);
    let sig_served = http
        .get(format!("{url}.asc"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    verify_detached(
        &s.store.trust().unwrap(),
        "example.test/acme/gz",
        &sig_served,
        &served[..],
    )
    .unwrap();
    let part = http
        .get(&url)
        .header("range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &ours[100..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsigned_tar_push_is_served_as_the_tar() {
    let s = Setup::new(false).await;
    let aci = make_aci(&s.dir, "plain", "example.test/acme/plain", "1", 3);
    let tar = s.dir.join("plain.tar");
    let pushed = s.push(&tar, None, TOKEN).await.unwrap();
    assert_eq!(pushed.image_id.to_string(), aci.id);
    assert_eq!(pushed.form, ServedForm::Tar);
    assert!(!pushed.signed);
    let http = s.reqwest();
    let url = format!(
        "{}/images/linux/amd64/example.test/acme/plain/1.aci",
        s.base()
    );
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(
        response.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", aci.id)
    );
    assert_eq!(sha512_hex(&response.bytes().await.unwrap()), aci.id);
    let sig = http.get(format!("{url}.asc")).send().await.unwrap();
    assert_eq!(sig.status(), 404);
    // Discovery answers for the name and for names above it, not for others.
    let page = http
        .get(format!("{}/acme?ac-discovery=1", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(&format!(
            "content=\"example.test/acme https://example.test:{}/images/{{os}}/{{arch}}/{{name}}/{{version}}.{{ext}}\"",
            s.port
        )),
        "{page}"
    );
    let other = http
        .get(format!("{}/nothing?ac-discovery=1", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_pushes_are_refused_and_store_nothing() {
    let s = Setup::new(true).await;
    let aci = make_aci(&s.dir, "app", "example.test/acme/app", "1.0.0", 4);
    let good_sig = sign(&aci.path, &keys().acme);

    // A bad token.
    let err = s
        .push(&aci.path, Some(&good_sig), "wrong")
        .await
        .unwrap_err();
    assert!(err.message().contains("HTTP 401"), "{err}");
    s.assert_empty("bad token").await;

    // No signature while one is required.
    let err = s.push(&aci.path, None, TOKEN).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UntrustedKey, "{err}");
    s.assert_empty("no signature").await;

    // A signature by an untrusted key.
    let stranger_sig = sign(&aci.path, &keys().stranger);
    let err = s
        .push(&aci.path, Some(&stranger_sig), TOKEN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UntrustedKey, "{err}");
    s.assert_empty("untrusted key").await;

    // A trusted key's signature over other bytes.
    let other = make_aci(&s.dir, "other", "example.test/acme/app", "1.0.1", 5);
    let err = s
        .push(&other.path, Some(&good_sig), TOKEN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
    s.assert_empty("bad signature").await;

    // A trusted key, but for another prefix.
    let foreign = make_aci(&s.dir, "foreign", "example.test/other/app", "1", 6);
    let foreign_sig = sign(&foreign.path, &keys().acme);
    let err = s
        .push(&foreign.path, Some(&foreign_sig), TOKEN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyWrongPrefix, "{err}");
    s.assert_empty("wrong prefix").await;

    // A hostile archive (a path escaping rootfs), signed by the trusted key.
    let hostile = s.dir.join("hostile.aci");
    let tar = py_tar(&s.dir, "gnu", "base(); f('rootfs/../../etc/evil', b'x')");
    std::fs::write(&hostile, &tar).unwrap();
    let hostile_sig = sign(&hostile, &keys().acme);
    let err = s
        .push(&hostile, Some(&hostile_sig), TOKEN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PathTraversal, "{err}");
    s.assert_empty("hostile archive").await;

    // After all that, the good push still works.
    let pushed = s.push(&aci.path, Some(&good_sig), TOKEN).await.unwrap();
    assert_eq!(pushed.image_id.to_string(), aci.id);
}

/// Two server processes' worth of state (each its own store handle, connection pool
/// and server) on one store folder and one PostgreSQL index: what one pushes, the
/// other lists, serves and lets a client fetch through discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_one_postgresql_index() {
    let schema = TestSchema::new("two_servers");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let a = Setup::start(dir.clone(), true, Some(&schema.url)).await;
    let b = Setup::start(dir.clone(), true, Some(&schema.url)).await;
    assert_eq!(a.store.index_backend(), IndexBackend::Postgres);
    assert_ne!(a.port, b.port);
    assert!(
        !a.store.dir().join("index.db").exists(),
        "no SQLite index beside PostgreSQL"
    );

    // Push through A.
    let aci = make_aci(&a.dir, "shared", "example.test/acme/shared", "1.0.0", 7);
    let sig = sign(&aci.path, &keys().acme);
    let pushed = a.push(&aci.path, Some(&sig), TOKEN).await.unwrap();
    assert_eq!(pushed.image_id.to_string(), aci.id);

    // B lists it from the shared index ...
    let http = b.reqwest();
    let api = b
        .get_json("/api/images?name=example.test/acme/shared")
        .await;
    let images = api["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{api}");
    assert_eq!(images[0]["image_id"], aci.id.as_str());

    // ... serves its bytes and signature ...
    let url = format!(
        "{}/images/linux/amd64/example.test/acme/shared/1.0.0.aci",
        b.base()
    );
    let served = http.get(&url).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let served = served.bytes().await.unwrap();
    assert_eq!(sha512_hex(&gunzip(&served)), aci.id);
    let served_sig = http.get(format!("{url}.asc")).send().await.unwrap();
    assert_eq!(served_sig.status(), 200);
    let served_sig = served_sig.bytes().await.unwrap();
    let trust = b.store.trust().unwrap();
    verify_detached(&trust, "example.test/acme/shared", &served_sig, &served[..]).unwrap();
    let tar = http
        .get(format!("{}/blobs/{}", b.base(), aci.id))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha512_hex(&tar), aci.id);

    // ... and a client fetches it by name through B's discovery.
    let (_client_store, fetched) = fetch_as_client(&a.dir, &b, "example.test/acme/shared").await;
    assert_eq!(fetched.image_id.to_string(), aci.id);
    assert!(fetched.signature.is_some());

    // The same push through B changes nothing; both stores see one image.
    let again = b.push(&aci.path, Some(&sig), TOKEN).await.unwrap();
    assert_eq!(again.image_id.to_string(), aci.id);
    assert_eq!(a.store.list().await.unwrap().len(), 1);
    assert_eq!(b.store.list().await.unwrap().len(), 1);

    // The store keeps its index: opened again with the URL it is the same one, and
    // opening it with another database is refused.
    let reopened = Store::open_with(
        a.store.dir(),
        StoreOptions::default().database_url(schema.url.clone()),
    )
    .await
    .unwrap();
    assert_eq!(reopened.list().await.unwrap().len(), 1);
    let other = TestSchema::new("two_servers_other");
    let err = Store::open_with(
        a.store.dir(),
        StoreOptions::default().database_url(other.url.clone()),
    )
    .await
    .err()
    .expect("another database is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    a.server.shutdown(Duration::from_secs(1));
    b.server.shutdown(Duration::from_secs(1));
    a.store.close().await;
    b.store.close().await;
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushed_signatures_are_checked_without_require_signature() {
    let s = Setup::new(false).await;
    let aci = make_aci(&s.dir, "app", "example.test/acme/app", "1.0.0", 7);
    let other = make_aci(&s.dir, "other", "example.test/acme/app", "1.0.1", 8);
    let good_sig = sign(&aci.path, &keys().acme);

    // Not an OpenPGP signature.
    let err = s
        .push(&aci.path, Some(b"not a signature\n"), TOKEN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadOpenpgp, "{err}");
    s.assert_empty("garbage signature").await;

    // A trusted key's signature over other bytes.
    let err = s
        .push(&other.path, Some(&good_sig), TOKEN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
    s.assert_empty("bad signature").await;

    // The image pushed unsigned; a wrong signature pushed with it later leaves it as it was.
    let pushed = s.push(&aci.path, None, TOKEN).await.unwrap();
    assert!(!pushed.signed && !pushed.signature_checked);
    let wrong = sign(&other.path, &keys().acme);
    let err = s.push(&aci.path, Some(&wrong), TOKEN).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
    let sigs = files_under(&s.store.dir().join("signatures"));
    assert!(
        sigs.is_empty(),
        "bad signature over a stored image: {sigs:?}"
    );
    assert_eq!(s.store.list().await.unwrap().len(), 1);
    let record = s.api_image("example.test/acme/app").await;
    assert_eq!(record["signed"], false, "{record}");
    assert!(
        files_under(&s.store.dir().join("tmp")).is_empty(),
        "the upload copy is gone"
    );

    // A key the server does not know: stored, and recorded as unchecked.
    let stranger_sig = sign(&aci.path, &keys().stranger);
    let pushed = s.push(&aci.path, Some(&stranger_sig), TOKEN).await.unwrap();
    assert!(pushed.signed);
    assert!(!pushed.signature_checked);
    assert_eq!(pushed.verified_by, None);
    let record = s.api_image("example.test/acme/app").await;
    assert_eq!(record["signed"], true, "{record}");
    assert_eq!(record["signature_checked"], false, "{record}");
    assert!(record["verified_by"].is_null(), "{record}");
    let url = format!("{}{IMAGE_PATH}.asc", s.base());
    let served_sig = s.reqwest().get(&url).send().await.unwrap();
    assert_eq!(served_sig.status(), 200);
    assert_eq!(
        served_sig.bytes().await.unwrap().as_ref(),
        &stranger_sig[..]
    );

    // The trusted key's good signature: verified, and the record says by which key.
    let pushed = s.push(&aci.path, Some(&good_sig), TOKEN).await.unwrap();
    assert!(pushed.signed && pushed.signature_checked);
    assert_eq!(pushed.verified_by.as_deref(), Some(keys().acme.as_str()));
    let record = s.api_image("example.test/acme/app").await;
    assert_eq!(record["signature_checked"], true, "{record}");
    assert_eq!(record["verified_by"], keys().acme.as_str(), "{record}");
    assert_eq!(record["served_form"], "original", "{record}");

    // A trusted key outside its scope: verified all the same (clients check scopes).
    let foreign = make_aci(&s.dir, "foreign", "example.test/other/app", "1", 11);
    let pushed = s
        .push(
            &foreign.path,
            Some(&sign(&foreign.path, &keys().acme)),
            TOKEN,
        )
        .await
        .unwrap();
    assert!(pushed.signature_checked);
    assert_eq!(pushed.verified_by.as_deref(), Some(keys().acme.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rm_gc_and_fsck_leave_no_push_files_behind() {
    let s = Setup::new(true).await;
    let a = make_aci(&s.dir, "a", "example.test/acme/a", "1", 9);
    let b = make_aci(&s.dir, "b", "example.test/acme/b", "1", 10);
    let pushed_a = s
        .push(&a.path, Some(&sign(&a.path, &keys().acme)), TOKEN)
        .await
        .unwrap();
    let pushed_b = s
        .push(&b.path, Some(&sign(&b.path, &keys().acme)), TOKEN)
        .await
        .unwrap();
    assert_eq!(pushed_a.form, ServedForm::Original);
    assert_eq!(pushed_b.form, ServedForm::Original);
    // Both uploads are kept whole until compacted into correction records.
    assert_eq!(s.store.stats().await.unwrap().originals, 2);
    let compaction = s
        .store
        .compact_originals(acikit::progress::Observer::default())
        .await
        .unwrap();
    assert_eq!((compaction.compacted, compaction.kept), (2, 0));

    // Stats count the kept signatures and original records, and the server reports the same.
    let stats = s.store.stats().await.unwrap();
    let both = (a.bytes.len() + b.bytes.len()) as u64;
    assert_eq!(
        (
            stats.signed_images,
            stats.original_records,
            stats.original_compressed_bytes
        ),
        (2, 2, both)
    );
    assert_eq!(stats.originals, 0, "re-created from correction records");
    assert!(stats.originals_disk_bytes >= stats.original_kept_bytes);
    assert!(stats.signatures_disk_bytes > 0);
    assert_eq!(
        stats.disk_bytes,
        stats.objects_disk_bytes
            + stats.recipes_disk_bytes
            + stats.index_disk_bytes
            + stats.signatures_disk_bytes
            + stats.originals_disk_bytes
    );
    let api = s.get_json("/api/stats").await;
    assert_eq!(api["images"], 2, "{api}");
    assert_eq!(api["signed_images"], stats.signed_images, "{api}");
    assert_eq!(api["original_records"], stats.original_records, "{api}");
    assert_eq!(
        api["original_kept_bytes"], stats.original_kept_bytes,
        "{api}"
    );

    // rm takes the image's signature and original with it, and only those.
    let paths = acikit::testing::paths::of(&s.store).clone();
    let original_files = |id: &acikit::schema::ImageId| {
        let dir = paths.originals();
        [
            dir.join(format!("{}.json", id.hex())),
            dir.join(format!("{}.gzc", id.hex())),
        ]
    };
    s.store.remove(&pushed_a.image_id).await.unwrap();
    let [a_json, a_gzc] = original_files(&pushed_a.image_id);
    for path in [
        paths.signature(&pushed_a.image_id),
        paths.signature_record(&pushed_a.image_id),
        a_json.clone(),
        a_gzc.clone(),
    ] {
        assert!(!path.exists(), "{} is left", path.display());
    }
    let [b_json, b_gzc] = original_files(&pushed_b.image_id);
    let b_files = [
        paths.signature(&pushed_b.image_id),
        paths.signature_record(&pushed_b.image_id),
        b_json,
        b_gzc,
    ];
    for path in &b_files {
        assert!(path.exists(), "{} is gone", path.display());
    }
    let stats = s.store.stats().await.unwrap();
    assert_eq!(
        (
            stats.signed_images,
            stats.original_records,
            stats.original_compressed_bytes
        ),
        (1, 1, b.bytes.len() as u64)
    );

    // What a crash can leave: files of an image no longer indexed, and a temporary file.
    let leave_orphans = || {
        for (from, to) in b_files.iter().zip([
            paths.signature(&pushed_a.image_id),
            paths.signature_record(&pushed_a.image_id),
            a_json.clone(),
            a_gzc.clone(),
        ]) {
            std::fs::copy(from, to).unwrap();
        }
        std::fs::write(paths.signatures().join(".x.asc.tmp-1"), b"partial").unwrap();
    };
    leave_orphans();
    let report = s.store.fsck(false, Default::default()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.orphan_push_files, 5, "{report:?}");
    assert_eq!(report.push_files_removed, 0);
    assert!(a_gzc.exists(), "fsck alone keeps them");
    let gc = s.store.gc(Default::default()).await.unwrap();
    assert_eq!(gc.push_files_removed, 5, "{gc:?}");
    assert_eq!(files_under(&paths.signatures()).len(), 2);
    assert_eq!(files_under(&paths.originals()).len(), 2);
    for path in &b_files {
        assert!(path.exists(), "gc removed {}", path.display());
    }
    // ... and b is still served with its signature.
    let sig = s
        .reqwest()
        .get(format!(
            "{}/images/linux/amd64/example.test/acme/b/1.aci.asc",
            s.base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(sig.status(), 200);

    leave_orphans();
    let report = s.store.fsck(true, Default::default()).await.unwrap();
    assert_eq!(
        (report.orphan_push_files, report.push_files_removed),
        (5, 5),
        "{report:?}"
    );
    assert_eq!(files_under(&paths.signatures()).len(), 2);
    let report = s.store.fsck(false, Default::default()).await.unwrap();
    assert_eq!(report.orphan_push_files, 0, "{report:?}");

    s.store.remove(&pushed_b.image_id).await.unwrap();
    s.assert_empty("after rm of both").await;
    let api = s.get_json("/api/stats").await;
    assert_eq!(api["original_records"], 0, "{api}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_a_download_in_flight_finish() {
    let mut s = Setup::new(false).await;
    // A tar larger than the socket buffers, so the response is still being sent when the
    // shutdown starts (the client stops reading).
    let tar = s.dir.join("big.tar");
    image_tar(
        &s.dir.join("big"),
        &manifest_for("example.test/acme/big", "1"),
        &[("big", &vec![0x5a; 48 << 20])],
        &tar,
    );
    let imported = s
        .store
        .import_file(
            &tar,
            Default::default(),
            acikit::progress::Observer::default(),
        )
        .await
        .unwrap();
    let id = imported.image_id.to_string();

    let http = s.reqwest();
    let mut response = http
        .get(format!("{}/blobs/{id}", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.chunk().await.unwrap().unwrap().to_vec();

    s.server.shutdown(Duration::from_secs(60));
    // New connections are refused...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(s.addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... while the download goes on: the server waits for it.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), s.server.wait())
            .await
            .is_err(),
        "the server stopped with a response in flight"
    );
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body.len() as u64, imported.tar_size);
    assert_eq!(sha512_hex(&body), id);
    tokio::time::timeout(Duration::from_secs(10), s.server.wait())
        .await
        .expect("the server stops once the download is done")
        .unwrap();
}

/// A push cancelled mid-upload (at its first progress event past 0 of an 8 MiB file)
/// returns `cancelled`; the server, which sees the upload break, keeps nothing of it: the
/// same files in its store (no upload copy in `tmp/`, no original, no signature), no image,
/// fsck clean. The same push then succeeds, its progress never going back and ending at
/// the file's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_cancelled_mid_upload_leaves_the_server_store_as_it_was() {
    let s = Setup::new(false).await;
    let aci = make_aci_sized(&s.dir, "big", "example.test/acme/big", "1.0.0", 31, 8 << 20);
    let sig = sign(&aci.path, &keys().acme);
    let size = aci.bytes.len() as u64;
    let before = snapshot(&s.store).await;

    let (observer, seen) = cancel_when(|p| p.phase == acikit::Phase::Push && p.done > 0);
    let err = push_file(
        &s.client(),
        &s.base(),
        &aci.path,
        Some(&sig),
        TOKEN,
        observer,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let seen = seen.lock().unwrap().clone();
    let first = seen
        .iter()
        .find(|p| p.phase == acikit::Phase::Push && p.done > 0)
        .expect("the upload started");
    assert!(first.done < size, "cancelled mid-way: {seen:?}");
    // The server learns of the broken upload on its own time (its import thread may even
    // start staging after the client gave up): wait until its store has been as before for
    // two seconds in a row (at most 20 seconds), then it must be as before.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut settled = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        if snapshot(&s.store).await != before {
            settled = std::time::Instant::now();
        } else if settled.elapsed() >= Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_unchanged(&s.store, &before, "cancelled push").await;
    s.assert_empty("cancelled push").await;

    let (observer, seen) = recording();
    let pushed = push_file(
        &s.client(),
        &s.base(),
        &aci.path,
        Some(&sig),
        TOKEN,
        observer,
    )
    .await
    .unwrap();
    assert_eq!(pushed.image_id.to_string(), aci.id);
    assert!(!pushed.already_present);
    assert_monotonic_to(&seen.lock().unwrap(), acikit::Phase::Push, size, "push");
}

/// Issue 16: an image a publisher signed, fetched from the publisher's server into a store,
/// is served by a server on that store in its original form with the publisher's signature,
/// and `gpg --verify` passes against the publisher's key; a damaged correction record is
/// never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetched_signed_image_is_served_again_with_the_publishers_signature() {
    let publisher = Setup::new(true).await;
    let aci = make_aci(&publisher.dir, "app", "example.test/acme/app", "1.0.0", 11);
    let sig = sign(&aci.path, &keys().acme);
    publisher.push(&aci.path, Some(&sig), TOKEN).await.unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let (client_store, fetched) =
        fetch_as_client(client_dir.path(), &publisher, "example.test/acme/app").await;
    assert!(fetched.signature.is_some());
    let original = client_store
        .original(&fetched.image_id)
        .await
        .unwrap()
        .expect("recorded on fetch");
    assert_eq!(original.size, aci.bytes.len() as u64);

    // Our server on the client's store.
    let root = publisher.dir.clone();
    let mut options = ServeOptions::new("127.0.0.1:0".parse().unwrap());
    options.tls = Some(TlsFiles::new(root.join("cert.pem"), root.join("key.pem")));
    let ours = Server::new(client_store.clone(), options)
        .start()
        .await
        .unwrap();
    let addr = ours.local_addr();
    let mut builder = reqwest::Client::builder().tls_certs_merge(
        reqwest::Certificate::from_pem_bundle(test_ca().ca_pem.as_bytes()).unwrap(),
    );
    for h in TEST_HOSTS {
        builder = builder.resolve(h, addr);
    }
    let http = builder.build().unwrap();
    let url = format!("https://example.test:{}{IMAGE_PATH}", addr.port());
    let served = http.get(&url).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let served = served.bytes().await.unwrap();
    assert!(
        served.as_ref() == aci.bytes.as_slice(),
        "the publisher's bytes"
    );
    let served_sig = http
        .get(format!("{url}.asc"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served_sig.as_ref(), sig.as_slice());
    let dir = client_dir.path();
    std::fs::write(dir.join("served.aci"), &served).unwrap();
    std::fs::write(dir.join("served.aci.asc"), &served_sig).unwrap();
    let (good, output) = keys()
        .gpg
        .verify(&dir.join("served.aci.asc"), &dir.join("served.aci"));
    assert!(good, "gpg --verify: {output}");
    let api = http
        .get(format!(
            "https://example.test:{}/api/images?name=example.test/acme/app",
            addr.port()
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let api: serde_json::Value = serde_json::from_slice(&api).unwrap();
    let image = &api["images"][0];
    assert_eq!(image["served_form"], "original", "{api}");
    assert_eq!(image["signed"], true);
    assert_eq!(image["original_form"], original.form.as_str());

    // The fetch kept the download whole; compacted, the original is re-created for the first
    // request and served from its checked copy afterwards; a damaged copy is made again.
    assert!(original.pending, "{original:?}");
    client_store
        .compact_originals(acikit::progress::Observer::default())
        .await
        .unwrap();
    let hex = fetched.image_id.hex().to_string();
    let originals = client_store.dir().join("originals");
    let copy = originals.join(format!("{hex}.served"));
    let flip = |file: &Path| {
        let mut bytes = std::fs::read(file).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x21;
        std::fs::write(file, bytes).unwrap();
    };
    for round in 0..3 {
        if round == 2 {
            flip(&copy);
        }
        let again = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert!(again.as_ref() == aci.bytes.as_slice(), "round {round}");
        assert!(copy.exists(), "round {round}");
    }

    // A damaged correction record (or kept file) with no good copy: an error, not one wrong
    // byte.
    let file = [format!("{hex}.gzc"), format!("{hex}.aci")]
        .into_iter()
        .map(|n| originals.join(n))
        .find(|p| p.exists())
        .expect("a correction record or a kept file");
    flip(&file);
    flip(&copy);
    let response = http.get(&url).send().await.unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    assert!(status.is_server_error(), "{status}");
    assert!(
        !body.starts_with(&aci.bytes[..16]),
        "no byte of the image is served"
    );
    ours.shutdown(Duration::from_secs(1));
    publisher.server.shutdown(Duration::from_secs(1));
}

//! In-process test servers for discovery and fetch: a test CA and leaf certificate made
//! with rcgen, an axum router served over TLS (axum-server + rustls, aws-lc-rs) or plain
//! HTTP on 127.0.0.1, and a log of every request (method, host, path and query,
//! `Authorization` header) for assertions.
//!
//! The leaf certificate is valid for [`TEST_HOSTS`]; [`TestServer::net_options`] maps
//! those names to the server with `NetOptions::resolve`, trusts the CA and sets the
//! discovery port, so `https://example.test:PORT/...` reaches the server.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use acikit::net::{CaCert, NetOptions};
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The names the test leaf certificate is valid for (besides `127.0.0.1`).
pub const TEST_HOSTS: &[&str] = &["localhost", "example.test", "other.test", "keys.test"];

/// A test CA and a leaf certificate it signed, all PEM.
#[derive(Clone)]
pub struct TestCa {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// The leaf certificate for [`TEST_HOSTS`] and `127.0.0.1`.
    pub cert_pem: String,
    /// The leaf's private key.
    pub key_pem: String,
}

/// One CA per test binary (generating keys is the slow part).
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "acikit test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut names: Vec<String> = TEST_HOSTS.iter().map(|h| h.to_string()).collect();
        names.push("127.0.0.1".to_string());
        let mut leaf_params = CertificateParams::new(names).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    })
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `HEAD`...
    pub method: String,
    /// The authority asked for (`Host` header, or the HTTP/2 `:authority`), with port.
    pub host: String,
    /// Path and query, e.g. `/acme/app?ac-discovery=1`.
    pub path: String,
    /// The `Authorization` header, if sent.
    pub authorization: Option<String>,
}

impl LoggedRequest {
    /// The host without the port.
    pub fn hostname(&self) -> &str {
        self.host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, _)| h)
    }
}

/// A running test server; stopped when dropped.
pub struct TestServer {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// Its port.
    pub port: u16,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// The CA that signed its certificate, PEM.
    pub ca_pem: String,
    /// The CA written to a file (for `--ca-cert`).
    pub ca_file: PathBuf,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
    handle: Handle<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Serves `router` over TLS.
    pub async fn start(router: Router) -> TestServer {
        TestServer::start_with(true, |_| router).await
    }

    /// Serves `router` over plain HTTP.
    pub async fn start_plain(router: Router) -> TestServer {
        TestServer::start_with(false, |_| router).await
    }

    /// Serves the router `make` builds from the port (for absolute redirects), over TLS
    /// when `tls`.
    pub async fn start_with(tls: bool, make: impl FnOnce(u16) -> Router) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<LoggedRequest>>> = Arc::default();
        let logged = log.clone();
        let router =
            make(addr.port()).layer(middleware::from_fn(move |request: Request, next: Next| {
                let log = logged.clone();
                async move {
                    let host = request
                        .uri()
                        .authority()
                        .map(|a| a.to_string())
                        .or_else(|| {
                            request
                                .headers()
                                .get("host")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                    log.lock().unwrap().push(LoggedRequest {
                        method: request.method().to_string(),
                        host,
                        path: request
                            .uri()
                            .path_and_query()
                            .map_or_else(|| "/".to_string(), |p| p.to_string()),
                        authorization: request
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap_or("<binary>").to_string()),
                    });
                    next.run(request).await
                }
            }));
        let ca = test_ca();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.ca_pem).unwrap();
        let handle = Handle::new();
        let service = router.into_make_service();
        if tls {
            let config = RustlsConfig::from_pem(
                ca.cert_pem.clone().into_bytes(),
                ca.key_pem.clone().into_bytes(),
            )
            .await
            .unwrap();
            let server = axum_server::from_tcp_rustls(listener, config)
                .unwrap()
                .handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await });
        } else {
            let server = axum_server::from_tcp(listener)
                .unwrap()
                .handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await });
        }
        handle.listening().await.expect("the test server listens");
        TestServer {
            addr,
            port: addr.port(),
            tls,
            ca_pem: ca.ca_pem.clone(),
            ca_file,
            log,
            handle,
            _dir: dir,
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().unwrap().clone()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.log.lock().unwrap().clear();
    }

    /// `https://HOST:PORT/PATH` (or `http://`).
    pub fn url(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{path}", self.port)
    }

    /// Net options reaching this server: [`TEST_HOSTS`] resolved to it, its CA trusted,
    /// discovery on its port.
    pub fn net_options(&self) -> NetOptions {
        let mut options = NetOptions::default();
        options.ca_certs = vec![CaCert::Pem(self.ca_pem.clone().into_bytes())];
        options.port = Some(self.port);
        options.resolve = TEST_HOSTS
            .iter()
            .map(|h| (h.to_string(), self.addr))
            .collect();
        options
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// An HTML page holding the given `(meta name, content)` tags in its head.
pub fn meta_page(tags: &[(&str, &str)]) -> String {
    let mut html = String::from("<!DOCTYPE html>\n<html><head><title>discovery</title>\n");
    for (name, content) in tags {
        html.push_str(&format!("<meta name=\"{name}\" content=\"{content}\">\n"));
    }
    html.push_str("</head><body>acikit test</body></html>\n");
    html
}

//! An HTTP(S) image repository over a [`Store`] (`acikit serve`): appc meta discovery, images
//! regenerated on the fly from the exploded store, their signatures and the trusted public
//! keys, a JSON API answered from the index, and pushes.
//!
//! URL layout (see "Serve and push" in `docs/ARCHITECTURE.md`):
//!
//! ```text
//! GET  /<any path>?ac-discovery=1               meta tags for the name HOST/<path>
//! GET  /images/{os}/{arch}/{name}/{version}.aci  the image, in the form its signature covers
//! GET  /images/{os}/{arch}/{name}/{version}.aci.asc  its signature
//! GET  /blobs/<image ID>                        the canonical tar (ETag = image ID)
//! GET  /pubkeys.asc                             the armored public keys the store trusts
//! GET  /api/images?name=N&prefix=P&label=K=V    images from the index (JSON)
//! GET  /api/stats                               counts: images, signed, original records, kept
//! POST /push                                    an ACI (bearer token; signature header)
//! GET  /files/<file name>                       plain files given in `ServeOptions::files`
//! ```
//!
//! - `records`: the signature, served form and original upload kept per pushed image;
//! - `http`: ETag, conditional and range requests, streamed bodies;
//! - `push`: the upload path.

mod http;
pub(crate) mod push;
pub(crate) mod records;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum_server::Handle;
use serde::Serialize;

use self::http::Source;
use self::records::RecordPaths;
use crate::blocking::blocking;
use crate::schema::ImageId;
use crate::store::index::ImageRecord;
use crate::store::{Store, housekeeping};
use crate::{Error, ErrorKind, Result};

pub use push::{Pushed, SIGNATURE_HEADER, push_file};
pub use records::{ServeRecord, ServedForm};

/// TLS certificate chain and private key, PEM files.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The certificate chain file `cert` (PEM, leaf first) and its private key file `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// How a [`Server`] runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where to listen (port 0: any free port; see [`RunningServer::local_addr`]).
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate; plain HTTP without.
    pub tls: Option<TlsFiles>,
    /// The bearer token `POST /push` requires; pushes are refused (404) without one.
    pub push_token: Option<String>,
    /// Accept only pushes whose signature verifies against the store's trusted keys, for a
    /// key trusted for the image's name.
    pub require_signature: bool,
    /// The base URL written into discovery templates and key URLs (e.g.
    /// `https://images.example.com`); default: the request's scheme and `Host`.
    pub public_url: Option<String>,
    /// Host names answered for in discovery; empty: any.
    pub hosts: Vec<String>,
    /// Plain files served at `/files/<file name>` (same range and ETag handling; for
    /// benchmarks and mirrors).
    pub files: Vec<PathBuf>,
}

impl ServeOptions {
    /// Options listening on `listen`, plain HTTP, pushes off.
    ///
    /// ```
    /// use acikit::ServeOptions;
    ///
    /// let mut options = ServeOptions::new("127.0.0.1:0".parse().unwrap());
    /// assert!(options.tls.is_none() && options.push_token.is_none());
    /// // Pushes need a bearer token.
    /// options.push_token = Some("s3cret".to_string());
    /// ```
    pub fn new(listen: SocketAddr) -> ServeOptions {
        ServeOptions {
            listen,
            tls: None,
            push_token: None,
            require_signature: false,
            public_url: None,
            hosts: Vec::new(),
            files: Vec::new(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) options: ServeOptions,
}

/// An image repository over a store.
pub struct Server {
    shared: Arc<Shared>,
}

/// A server that is listening; dropping it does not stop it.
///
/// To stop it: [`stop`](Self::stop), or [`shutdown`](Self::shutdown) then
/// [`wait`](Self::wait) (e.g. to force the end with [`shutdown_now`](Self::shutdown_now)
/// when a second signal comes during the grace period). The store stays open: close it
/// with [`Store::close`] once nothing else uses it.
pub struct RunningServer {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    /// `None` once [`wait`](Self::wait) has seen the end.
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// A server for `store`.
    pub fn new(store: Store, options: ServeOptions) -> Server {
        Server {
            shared: Arc::new(Shared { store, options }),
        }
    }

    /// The axum router (for embedding in another server).
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(dispatch)
            .with_state(self.shared.clone())
    }

    /// Binds and starts serving on the runtime; returns once it listens.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("server-start");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{ServeOptions, Server};
    ///
    /// let options = ServeOptions::new("127.0.0.1:0".parse().unwrap());
    /// let server = Server::new(store.clone(), options).start().await?;
    /// let addr = server.local_addr();
    /// assert_ne!(addr.port(), 0);
    /// // Serving: the JSON API lists the store's images.
    /// # let client = acikit::net::HttpClient::new(acikit::testing::example_net(&server))?;
    /// # let url = format!("http://{addr}/api/images").parse().unwrap();
    /// # let response = client.get(url, Default::default(), &Default::default()).await?;
    /// # let (body, _) = response.error_for_status()?.bytes_limited(1 << 20).await?;
    /// # assert!(String::from_utf8_lossy(&body).contains("example.com/hello"));
    /// server.stop(std::time::Duration::from_secs(1)).await?;
    /// assert!(std::net::TcpStream::connect(addr).is_err());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self) -> Result<RunningServer> {
        let options = &self.shared.options;
        let listener = std::net::TcpListener::bind(options.listen)
            .map_err(|e| Error::io(format!("listening on {}", options.listen), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("setting the listener non-blocking", e))?;
        let handle: Handle<SocketAddr> = Handle::new();
        let service = self.router().into_make_service();
        let task = match &options.tls {
            Some(tls) => {
                let config =
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                        .await
                        .map_err(|e| {
                            Error::new(
                                ErrorKind::InvalidArgument,
                                format!(
                                    "loading the TLS certificate {} and key {}: {e}",
                                    tls.cert.display(),
                                    tls.key.display()
                                ),
                            )
                        })?;
                let server = axum_server::from_tcp_rustls(listener, config)
                    .map_err(|e| Error::io("starting the server", e))?
                    .handle(handle.clone());
                tokio::spawn(async move { server.serve(service).await })
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(|e| Error::io("starting the server", e))?
                    .handle(handle.clone());
                tokio::spawn(async move { server.serve(service).await })
            }
        };
        let addr = handle
            .listening()
            .await
            .ok_or_else(|| Error::new(ErrorKind::Io, "the server stopped before listening"))?;
        Ok(RunningServer {
            addr,
            handle,
            task: Some(task),
        })
    }
}

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts a graceful shutdown and returns at once: the listener closes (new
    /// connections are refused), idle connections close, and requests in flight finish,
    /// their responses included, for at most `grace`; then the connections left are
    /// closed. [`wait`](Self::wait) for the end.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("server-shutdown");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// use std::time::Duration;
    /// use acikit::{ServeOptions, Server};
    ///
    /// let mut server = Server::new(store.clone(), ServeOptions::new("127.0.0.1:0".parse().unwrap()))
    ///     .start()
    ///     .await?;
    /// let addr = server.local_addr();
    /// server.shutdown(Duration::from_secs(5));
    /// server.wait().await?;
    /// assert!(std::net::TcpStream::connect(addr).is_err());
    /// // Waiting again: it has ended.
    /// server.wait().await?;
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(&self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
    }

    /// Closes the listener and every connection now, requests in flight included.
    pub fn shutdown_now(&self) {
        self.handle.shutdown();
    }

    /// Waits until the server has stopped (after a shutdown, or when serving fails). It
    /// can be cancelled and called again (e.g. in a `select!` with a signal).
    pub async fn wait(&mut self) -> Result<()> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let ended = task.await;
        self.task = None;
        ended
            .map_err(|e| crate::error::join_error_of("a background task", e))?
            .map_err(|e| Error::io("serving", e))
    }

    /// [`shutdown`](Self::shutdown) with `grace`, then [`wait`](Self::wait).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("server-stop");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use std::time::Duration;
    /// use acikit::{ServeOptions, Server};
    ///
    /// let server = Server::new(store.clone(), ServeOptions::new("127.0.0.1:0".parse().unwrap()))
    ///     .start()
    ///     .await?;
    /// let addr = server.local_addr();
    /// server.stop(Duration::from_secs(5)).await?;
    /// assert!(std::net::TcpStream::connect(addr).is_err());
    /// // The store stays open for its other users.
    /// assert_eq!(store.list().await?.len(), 1);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stop(mut self, grace: Duration) -> Result<()> {
        self.shutdown(grace);
        self.wait().await
    }
}

/// An error as JSON: `{"error": {"kind", "message"}}`, with a status from its kind.
pub(crate) fn error_response(err: &Error) -> Response {
    let body = serde_json::json!({
        "error": {"kind": err.kind().as_str(), "message": err.message()}
    });
    (push::status_of(err), axum::Json(body)).into_response()
}

fn not_found(what: &str) -> Response {
    error_response(&Error::new(ErrorKind::NotFound, what.to_string()))
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("");
    if method == Method::POST && path == "/push" {
        return push::push(shared, headers, body).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "").into_response();
    }
    if query
        .split('&')
        .any(|p| p == "ac-discovery=1" || p == "ac-discovery")
    {
        return discovery(&shared, &uri, &headers, &path).await;
    }
    let result = if path == "/pubkeys.asc" {
        pubkeys(&shared).await
    } else if path == "/api/images" {
        api_images(&shared, query).await
    } else if path == "/api/stats" {
        api_stats(&shared).await
    } else if let Some(rest) = path.strip_prefix("/images/") {
        image(&shared, &method, &headers, rest).await
    } else if let Some(id) = path.strip_prefix("/blobs/") {
        blob(&shared, &method, &headers, id).await
    } else if let Some(name) = path.strip_prefix("/files/") {
        file(&shared, &method, &headers, name).await
    } else {
        Ok(not_found(&format!("nothing at {path}")))
    };
    result.unwrap_or_else(|err| error_response(&err))
}

/// The host the client asked for, without the port.
fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let authority = uri.authority().map(|a| a.to_string()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })?;
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h).to_string()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h)
            .to_string()
    };
    Some(host.to_ascii_lowercase())
}

/// The base URL of links to this server as the client reached it.
fn base_url(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> String {
    if let Some(url) = &shared.options.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let scheme = if shared.options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| shared.options.listen.to_string());
    format!("{scheme}://{authority}")
}

async fn discovery(shared: &Shared, uri: &Uri, headers: &HeaderMap, path: &str) -> Response {
    let Some(host) = request_host(uri, headers) else {
        return not_found("no host asked for");
    };
    if !shared.options.hosts.is_empty() && !shared.options.hosts.iter().any(|h| h == &host) {
        return not_found(&format!("{host} is not served here"));
    }
    let name = format!("{host}{}", path.trim_end_matches('/'));
    let images = match shared.store.list().await {
        Ok(images) => images,
        Err(err) => return error_response(&err),
    };
    let under = format!("{name}/");
    if !images
        .iter()
        .any(|i| i.name == name || i.name.starts_with(&under))
    {
        return not_found(&format!("no image named {name} or below it"));
    }
    let base = base_url(shared, uri, headers);
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>{name}</title>\n\
         <meta name=\"ac-discovery\" content=\"{name} {base}/images/{{os}}/{{arch}}/{{name}}/{{version}}.{{ext}}\">\n\
         <meta name=\"ac-discovery-pubkeys\" content=\"{name} {base}/pubkeys.asc\">\n\
         </head><body>{name}</body></html>\n",
        name = html_escape(&name),
        base = html_escape(&base),
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn pubkeys(shared: &Shared) -> Result<Response> {
    let trust = shared.store.trust()?;
    let armored = blocking(move || -> Result<Vec<u8>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for key in trust.list()? {
            if seen.insert(key.fingerprint.clone()) {
                let bytes = std::fs::read(&key.path)
                    .map_err(|e| Error::io(format!("reading {}", key.path.display()), e))?;
                out.extend_from_slice(&bytes);
                if !bytes.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
        }
        Ok(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/pgp-keys")], armored).into_response())
}

/// `{os}/{arch}/{name}/{version}.{ext}` of an image URL.
struct ImagePath {
    os: String,
    arch: String,
    name: String,
    version: String,
    signature: bool,
}

fn parse_image_path(rest: &str) -> Option<ImagePath> {
    let (rest, signature) = match rest.strip_suffix(".aci.asc") {
        Some(r) => (r, true),
        None => (rest.strip_suffix(".aci")?, false),
    };
    let (os, rest) = rest.split_once('/')?;
    let (arch, rest) = rest.split_once('/')?;
    let (name, version) = rest.rsplit_once('/')?;
    if os.is_empty() || arch.is_empty() || name.is_empty() || version.is_empty() {
        return None;
    }
    Some(ImagePath {
        os: os.to_string(),
        arch: arch.to_string(),
        name: name.to_string(),
        version: version.to_string(),
        signature,
    })
}

/// The image `name` with `version` (`latest`: the newest import) for `os`/`arch` (an image
/// without those labels matches any).
async fn find_image(shared: &Shared, wanted: &ImagePath) -> Result<Option<ImageRecord>> {
    let found = shared.store.index().find_by_name(&wanted.name, &[]).await?;
    let label_ok = |r: &ImageRecord, k: &str, v: &str| r.label(k).is_none_or(|x| x == v);
    let matches =
        |r: &&ImageRecord| label_ok(r, "os", &wanted.os) && label_ok(r, "arch", &wanted.arch);
    let exact = found
        .iter()
        .filter(matches)
        .find(|r| r.label("version") == Some(wanted.version.as_str()))
        .cloned();
    if exact.is_some() || wanted.version != "latest" {
        return Ok(exact);
    }
    Ok(found.iter().find(matches).cloned())
}

async fn image(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    rest: &str,
) -> Result<Response> {
    let Some(wanted) = parse_image_path(rest) else {
        return Ok(not_found(
            "image URLs are /images/{os}/{arch}/{name}/{version}.aci[.asc]",
        ));
    };
    let Some(record) = find_image(shared, &wanted).await? else {
        return Ok(not_found(&format!(
            "no image {} version {} for {}/{}",
            wanted.name, wanted.version, wanted.os, wanted.arch
        )));
    };
    let records = RecordPaths::new(&shared.store);
    let id = record.image_id.clone();
    let served = records.load(&id)?;
    if wanted.signature {
        let path = records.signature(&id);
        return match (served, std::fs::read(&path)) {
            (Some(_), Ok(bytes)) => Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        "application/pgp-signature".to_string(),
                    ),
                    (header::ETAG, format!("\"{id}.asc\"")),
                ],
                bytes,
            )
                .into_response()),
            _ => Ok(not_found(&format!("{id} has no signature"))),
        };
    }
    let (form, total) = match &served {
        Some(r) => (r.form, r.size),
        None => (ServedForm::Tar, record.tar_size),
    };
    let etag = etag(&id, form);
    let original = (form == ServedForm::Original).then(|| records.original(&id));
    Ok(http::respond(
        method,
        headers,
        &etag,
        total,
        "application/octet-stream",
        Source::Image {
            store: shared.store.clone(),
            id,
            form,
            original,
        },
    )
    .await)
}

/// The ETag of an image in a form: the image ID for the canonical tar, with a suffix for
/// the other forms (different bytes need different strong ETags).
fn etag(id: &ImageId, form: ServedForm) -> String {
    match form {
        ServedForm::Tar => format!("\"{id}\""),
        other => format!("\"{id}+{}\"", other.as_str()),
    }
}

async fn blob(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    id: &str,
) -> Result<Response> {
    let Ok(id) = ImageId::parse(id) else {
        return Ok(not_found("blob URLs are /blobs/sha512-<128 hex digits>"));
    };
    let Some(record) = shared.store.index().get(&id).await? else {
        return Ok(not_found(&format!("no image {id}")));
    };
    Ok(http::respond(
        method,
        headers,
        &etag(&id, ServedForm::Tar),
        record.tar_size,
        "application/x-tar",
        Source::Image {
            store: shared.store.clone(),
            id,
            form: ServedForm::Tar,
            original: None,
        },
    )
    .await)
}

async fn file(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    name: &str,
) -> Result<Response> {
    let Some(path) = shared
        .options
        .files
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
        .cloned()
    else {
        return Ok(not_found(&format!("no file {name}")));
    };
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{mtime:x}\"", meta.len());
    Ok(http::respond(
        method,
        headers,
        &etag,
        meta.len(),
        "application/octet-stream",
        Source::File(path),
    )
    .await)
}

/// One image in the JSON API.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ApiImage {
    /// The image ID.
    pub image_id: ImageId,
    /// The image name.
    pub name: String,
    /// Labels, in manifest order.
    pub labels: Vec<crate::Label>,
    /// Size of the canonical tar.
    pub tar_size: u64,
    /// Size of the archive as imported or pushed.
    pub archive_size: u64,
    /// Import time, milliseconds since the Unix epoch.
    pub imported_at_ms: i64,
    /// The form served at its `.aci` URL.
    pub served_form: ServedForm,
    /// Bytes served at its `.aci` URL.
    pub served_size: u64,
    /// Whether a signature is served with it.
    pub signed: bool,
    /// Whether the server verified that signature over the pushed bytes with a key it
    /// trusts, at push time; `false` for a signature by a key it did not know, stored
    /// unchecked (clients verify it themselves), and for an unsigned image.
    pub signature_checked: bool,
    /// The fingerprint of the trusted key that verified the signature.
    pub verified_by: Option<String>,
    /// How the store gives back the bytes the image came as (`none`, `gzip`, `recompress`,
    /// `kept`); `None` when no original form was recorded. With `served_form` `original`,
    /// these are the bytes served and the signature covers.
    pub original_form: Option<crate::store::OriginalForm>,
}

async fn api_images(shared: &Shared, query: &str) -> Result<Response> {
    let mut name = None;
    let mut prefix = None;
    let mut labels = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "name" => name = Some(v.into_owned()),
            "prefix" => prefix = Some(v.into_owned()),
            "label" => match v.split_once('=') {
                Some((k, v)) => labels.push((k.to_string(), v.to_string())),
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!("label={v}: expected label=NAME=VALUE"),
                    ));
                }
            },
            _ => {}
        }
    }
    let index = shared.store.index();
    let found = match &name {
        Some(name) => index.find_by_name(name, &labels).await?,
        None => index
            .list()
            .await?
            .into_iter()
            .filter(|r| labels.iter().all(|(k, v)| r.label(k) == Some(v.as_str())))
            .collect(),
    };
    let records = RecordPaths::new(&shared.store);
    let mut images = Vec::new();
    for r in found {
        if let Some(prefix) = &prefix
            && !(r.name == *prefix || r.name.starts_with(&format!("{prefix}/")))
        {
            continue;
        }
        let served = records.load(&r.image_id)?;
        let original_form =
            crate::store::originals::load(shared.store.paths(), &r.image_id)?.map(|o| o.form);
        images.push(ApiImage {
            original_form,
            labels: r
                .labels
                .iter()
                .map(|(k, v)| crate::Label::new(k.clone(), v.clone()))
                .collect(),
            served_form: served.as_ref().map_or(ServedForm::Tar, |s| s.form),
            served_size: served.as_ref().map_or(r.tar_size, |s| s.size),
            signed: served.is_some(),
            signature_checked: served.as_ref().is_some_and(|s| s.verified_by.is_some()),
            verified_by: served.and_then(|s| s.verified_by),
            image_id: r.image_id,
            name: r.name,
            tar_size: r.tar_size,
            archive_size: r.archive_size,
            imported_at_ms: r.imported_at_ms,
        });
    }
    Ok(axum::Json(serde_json::json!({ "images": images })).into_response())
}

/// Counts from the index and from the files pushes keep (the numbers `acikit stats` shows),
/// without sizing every object as [`Store::stats`] does.
async fn api_stats(shared: &Shared) -> Result<Response> {
    let images = shared.store.index().stats().await?.images;
    let ids: Vec<ImageId> = shared
        .store
        .index()
        .list()
        .await?
        .into_iter()
        .map(|r| r.image_id)
        .collect();
    let paths = shared.store.paths().clone();
    let (kept, records, kept_bytes) = blocking(move || {
        let kept = housekeeping::push_file_stats(&paths)?;
        let (mut records, mut kept_bytes) = (0u64, 0u64);
        for id in &ids {
            if let Ok(Some(record)) = crate::store::originals::load(&paths, id) {
                records += 1;
                kept_bytes += record.kept_bytes;
            }
        }
        Ok::<_, Error>((kept, records, kept_bytes))
    })
    .await?;
    Ok(axum::Json(serde_json::json!({
        "images": images,
        "signed_images": kept.signed_images,
        "originals": kept.originals,
        "original_bytes": kept.original_bytes,
        "original_records": records,
        "original_kept_bytes": kept_bytes,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths() {
        let p = parse_image_path("linux/amd64/example.test/acme/app/1.0.0-rc1.aci.asc").unwrap();
        assert_eq!(
            (
                p.os.as_str(),
                p.arch.as_str(),
                p.name.as_str(),
                p.version.as_str()
            ),
            ("linux", "amd64", "example.test/acme/app", "1.0.0-rc1")
        );
        assert!(p.signature);
        let p = parse_image_path("linux/amd64/example.test/app/latest.aci").unwrap();
        assert!(!p.signature);
        assert_eq!(p.version, "latest");
        assert!(parse_image_path("linux/amd64/app.aci").is_none());
        assert!(parse_image_path("linux/amd64/x/1.tar").is_none());
    }
}

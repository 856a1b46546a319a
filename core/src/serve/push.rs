//! `POST /push`: an ACI streamed into the server's store.
//!
//! `Authorization: Bearer TOKEN` is required; the signature, if any, comes in the
//! `Acikit-Signature` header as the hex of the armored detached signature. It is known before
//! the body, so every check that needs no data runs before a byte is imported: it must be an
//! OpenPGP signature (`bad_openpgp`), and one by a key the store trusts is then verified
//! over the body as it streams in, before the import commits (`bad_signature`, ...). With
//! `require_signature` the key must be trusted for the image's name; without it, a signature
//! by a key the store does not know is stored unchecked, and its record says so.
//!
//! The body goes straight into [`Store::import`] through a channel-backed reader that also
//! feeds the signature verifier and, when a signature was pushed, a copy in the store's
//! `tmp/` (kept only when neither of our exports reproduces the upload).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::records::{self, HashWriter, RecordPaths, ServeRecord, ServedForm};
use super::{Shared, error_response};
use crate::archive::compression::{self, Compression};
use crate::blocking::{blocking, blocking_value};
use crate::schema::ImageId;
use crate::store::housekeeping::shared_commit_lock;
use crate::store::objects::PUSH_COPY_PREFIX;
use crate::store::{ImportGate, ImportOptions};
use crate::trust::{StreamingVerifier, VerifiedSignature, VerifySink};
use crate::{Error, ErrorKind, Result};

/// The request header carrying the signature (hex of the armored signature).
pub const SIGNATURE_HEADER: &str = "acikit-signature";

/// Largest signature accepted.
const MAX_SIGNATURE: usize = 1 << 20;
/// Chunks in flight between the request body and the importer.
const DEPTH: usize = 16;
/// A refused upload is read (and dropped) up to this many bytes, so the client sees the
/// answer instead of a reset connection.
const DRAIN_LIMIT: u64 = 256 << 20;
/// ... and for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// The answer to a successful push.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Pushed {
    /// The image ID.
    pub image_id: ImageId,
    /// The image name.
    pub name: String,
    /// Whether the store already had the image.
    pub already_present: bool,
    /// Bytes received.
    pub received: u64,
    /// The form served at the image's `.aci` URL.
    pub form: ServedForm,
    /// Whether a signature is stored with it (pushed now or before).
    pub signed: bool,
    /// Whether the server verified that signature over the pushed bytes with a key it
    /// trusts; `false` for a signature by a key it does not know, stored unchecked (only
    /// without `require_signature`), and for an unsigned image.
    #[serde(default)]
    pub signature_checked: bool,
    /// The fingerprint of the trusted key that verified the signature.
    pub verified_by: Option<String>,
}

/// What the reader saw of the upload, once it ended.
#[derive(Default)]
struct Seen {
    head: Vec<u8>,
    size: u64,
    sha256: Option<[u8; 32]>,
    /// The copy in `tmp/`, complete and flushed.
    copy: Option<PathBuf>,
}

/// A file in the store's `tmp/`, removed when dropped: the copy of an upload, which is kept
/// only by renaming it away first.
struct TmpFile(PathBuf);

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) async fn push(shared: Arc<Shared>, headers: HeaderMap, body: Body) -> Response {
    let Some(token) = &shared.options.push_token else {
        return refuse(
            body,
            StatusCode::NOT_FOUND,
            &Error::new(ErrorKind::NotFound, "this server does not accept pushes"),
        )
        .await;
    };
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()));
    if !authorized {
        let mut response = refuse(
            body,
            StatusCode::UNAUTHORIZED,
            &Error::new(
                ErrorKind::InvalidArgument,
                "a valid bearer token is required",
            ),
        )
        .await;
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        set_kind(&mut response, "unauthorized");
        return response;
    }
    if let Err(err) = shared.store.require_writable("accept a push") {
        return refuse(body, status_of(&err), &err).await;
    }
    let signature = match signature(&headers) {
        Ok(sig) => sig,
        Err(err) => return refuse(body, status_of(&err), &err).await,
    };
    match run(&shared, signature, body).await {
        Ok(pushed) => (StatusCode::OK, axum::Json(pushed)).into_response(),
        Err(err) => error_response(&err),
    }
}

fn signature(headers: &HeaderMap) -> Result<Option<Vec<u8>>> {
    let Some(value) = headers.get(SIGNATURE_HEADER) else {
        return Ok(None);
    };
    let bytes = hex::decode(value.as_bytes()).map_err(|e| {
        Error::new(
            ErrorKind::BadOpenpgp,
            format!("the {SIGNATURE_HEADER} header is not hex: {e}"),
        )
    })?;
    if bytes.len() > MAX_SIGNATURE {
        return Err(Error::new(
            ErrorKind::LimitExceeded,
            "the signature is larger than 1 MiB",
        ));
    }
    Ok(Some(bytes))
}

async fn run(shared: &Arc<Shared>, signature: Option<Vec<u8>>, body: Body) -> Result<Pushed> {
    let store = shared.store.clone();
    let records = RecordPaths::new(&store);
    let require = shared.options.require_signature;
    if require && signature.is_none() {
        drain(body).await;
        return Err(Error::new(
            ErrorKind::UntrustedKey,
            "this server only accepts images signed by a key it trusts: push a signature",
        ));
    }

    // Every check that needs no data runs now. A signature must be an OpenPGP signature;
    // one by a key the store trusts is verified over the upload as it streams in. Without
    // `require_signature`, one by a key the store does not know is stored unchecked.
    let verifier = match &signature {
        Some(sig) => {
            let trust = store.trust()?;
            let sig = sig.clone();
            let started =
                blocking_value(move || StreamingVerifier::start_unnamed(&trust, &sig)).await?;
            match started {
                Ok(pair) => Some(pair),
                Err(err) if err.kind() == ErrorKind::UntrustedKey && !require => None,
                Err(err) => {
                    drain(body).await;
                    return Err(err);
                }
            }
        }
        None => None,
    };
    let (sink, verdict) = match verifier {
        Some((sink, handle)) => (Some(sink), Some(handle)),
        None => (None, None),
    };

    // A copy of the upload, kept only if a signature covers it and our exports differ.
    let copy = match &signature {
        Some(_) => {
            let path = records.tmp().join(format!(
                "{PUSH_COPY_PREFIX}{}-{}.aci",
                std::process::id(),
                unique()
            ));
            let file = File::create(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            // Held while the copy lives, so that `gc` and store opens in other processes
            // tell it from one a killed server left (`objects::remove_stale_staging`).
            file.lock()
                .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
            Some((path, BufWriter::with_capacity(1 << 20, file)))
        }
        None => None,
    };
    // Removes the copy when this push ends, however it ends: also when it is cut short (the
    // server stopping drops this future), and before the decoding thread lets go of it.
    let _copy = copy.as_ref().map(|(path, _)| TmpFile(path.clone()));

    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let (tx, rx) = mpsc::channel(DEPTH);
    let pump = tokio::spawn(pump(body, tx));
    let reader = PushReader {
        rx,
        current: Bytes::new(),
        verify: sink,
        copy,
        hasher: signature.as_ref().map(|_| Sha256::new()),
        head: Vec::new(),
        size: 0,
        seen: seen.clone(),
        finished: false,
    };

    let verdict = Arc::new(Mutex::new(verdict));
    let verified: Arc<Mutex<Option<VerifiedSignature>>> = Arc::default();
    let gate = {
        let verdict = verdict.clone();
        let verified = verified.clone();
        ImportGate::new(move |staged| {
            let handle = verdict.lock().map_err(|_| poisoned())?.take();
            if let Some(handle) = handle {
                let signature = if require {
                    handle.finish_for(staged.manifest.name.as_str())?
                } else {
                    handle.finish()?
                };
                *verified.lock().map_err(|_| poisoned())? = Some(signature);
            }
            Ok(())
        })
    };
    let imported = store
        .import(
            reader,
            ImportOptions {
                gate: Some(gate),
                origin: Some("push".to_string()),
                record_original: true,
                ..ImportOptions::default()
            },
            crate::progress::Observer::default(),
        )
        .await;
    // Let the rest of a refused upload in (dropped), so the client reads the answer.
    let _ = tokio::time::timeout(DRAIN_TIME, pump).await;
    let imported = imported?;
    let seen = seen
        .lock()
        .map_err(|_| poisoned())?
        .take()
        .unwrap_or_default();
    let verified_by = verified
        .lock()
        .map_err(|_| poisoned())?
        .take()
        .map(|v| v.fingerprint);

    let record = match signature {
        Some(signature) => Some(
            settle(
                &store,
                &records,
                &imported.image_id,
                imported.tar_size,
                seen,
                signature,
                verified_by,
            )
            .await?,
        ),
        None => records.load(&imported.image_id)?,
    };
    Ok(Pushed {
        image_id: imported.image_id,
        name: imported.name,
        already_present: imported.already_present,
        received: imported.archive_size,
        form: record.as_ref().map_or(ServedForm::Tar, |r| r.form),
        signed: record.is_some(),
        signature_checked: record.as_ref().is_some_and(|r| r.verified_by.is_some()),
        verified_by: record.and_then(|r| r.verified_by),
    })
}

/// Keeps the pushed signature: decides which form it covers, then, holding the commit lock
/// shared (`rm` and `gc` wait for it) and only if the image is still in the index, keeps
/// the original upload if that form needs it (by renaming the copy in `tmp/`) and saves the
/// signature with its record.
async fn settle(
    store: &crate::Store,
    records: &RecordPaths,
    id: &ImageId,
    tar_size: u64,
    seen: Seen,
    signature: Vec<u8>,
    verified_by: Option<String>,
) -> Result<ServeRecord> {
    let (record, seen) = {
        let (store, id) = (store.clone(), id.clone());
        blocking_value(move || {
            let record = served_record(&store, &id, tar_size, &seen, verified_by);
            (record, seen)
        })
        .await?
    };
    let record = record?;
    let lock = {
        let paths = store.paths().clone();
        blocking(move || shared_commit_lock(&paths)).await?
    };
    if store.index().get(id).await?.is_none() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{id} was removed from the store while it was pushed; push it again"),
        ));
    }
    let (records, id, kept) = (records.clone(), id.clone(), record.clone());
    blocking(move || {
        if kept.form == ServedForm::Original {
            // The import recorded the upload's original form; only when it did not (recording
            // off, or the image had a record of other bytes) is the upload kept whole.
            let paths = records.store_paths();
            let recorded = crate::store::originals::load(paths, &id)?
                .is_some_and(|r| r.size == kept.size && r.sha256 == kept.sha256);
            if !recorded {
                let copy = seen
                    .copy
                    .as_ref()
                    .ok_or_else(|| Error::new(ErrorKind::Io, "the upload was not kept"))?;
                records.keep_original(&id, copy)?;
                let compression = compression::detect(&seen.head).unwrap_or(Compression::None);
                crate::store::originals::record_kept(
                    paths,
                    &id,
                    kept.size,
                    &kept.sha256,
                    compression.as_str(),
                )?;
            }
        }
        records.save(&id, &signature, &kept)?;
        // (A kept original stays with its record: it is what `export --compression
        // original` gives back, whichever form a later signature covers.)
        Ok::<_, Error>(())
    })
    .await?;
    drop(lock);
    Ok(record)
}

/// Which form the pushed signature covers, and its record (blocking: comparing with our
/// gzip export regenerates the image).
fn served_record(
    store: &crate::Store,
    id: &ImageId,
    tar_size: u64,
    seen: &Seen,
    verified_by: Option<String>,
) -> Result<ServeRecord> {
    let sha256 = seen
        .sha256
        .map(hex::encode)
        .ok_or_else(|| Error::new(ErrorKind::Io, "the upload was not hashed"))?;
    let compression = compression::detect(&seen.head).unwrap_or(Compression::None);
    let form = if compression == Compression::None && seen.size == tar_size {
        // Not compressed: the upload is the canonical tar (its SHA-512 is the image ID).
        ServedForm::Tar
    } else {
        let same_as_gzip_export = compression == Compression::Gzip && {
            let recipe = store.paths().recipe(id);
            let objects = records::object_paths(store);
            let hashed = records::gzip_export(&recipe, &objects, id, HashWriter::default())?;
            hashed.written == seen.size && hex::encode(hashed.hasher.finalize()) == sha256
        };
        if same_as_gzip_export {
            ServedForm::Gzip
        } else {
            ServedForm::Original
        }
    };
    Ok(ServeRecord {
        form,
        size: seen.size,
        sha256,
        verified_by,
    })
}

/// Moves the request body into the channel; once the importer is gone (it failed), the
/// rest is read and dropped, up to [`DRAIN_LIMIT`].
async fn pump(body: Body, tx: mpsc::Sender<std::io::Result<Bytes>>) {
    let mut stream = body.into_data_stream();
    let mut dropped = 0u64;
    let mut open = true;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) if open => {
                let len = chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    open = false;
                    dropped += len;
                }
            }
            Ok(chunk) => {
                dropped += chunk.len() as u64;
                if dropped > DRAIN_LIMIT {
                    return;
                }
            }
            Err(err) => {
                let _ = tx
                    .send(Err(std::io::Error::other(format!(
                        "reading the upload: {err}"
                    ))))
                    .await;
                return;
            }
        }
    }
}

/// Reads and drops a refused upload (bounded in size and time).
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut dropped = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            dropped += chunk.len() as u64;
            if dropped > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

async fn refuse(body: Body, status: StatusCode, err: &Error) -> Response {
    drain(body).await;
    let mut response = error_response(err);
    *response.status_mut() = status;
    response
}

fn set_kind(response: &mut Response, kind: &str) {
    let message = "a valid bearer token is required";
    *response.body_mut() =
        Body::from(serde_json::json!({"error": {"kind": kind, "message": message}}).to_string());
}

pub(crate) fn status_of(err: &Error) -> StatusCode {
    match err.kind() {
        ErrorKind::BadOpenpgp
        | ErrorKind::BadSignature
        | ErrorKind::UntrustedKey
        | ErrorKind::KeyWrongPrefix
        | ErrorKind::WeakSignatureHash
        | ErrorKind::KeyExpired
        | ErrorKind::KeyRevoked
        | ErrorKind::KeyNotSigning
        | ErrorKind::ReadOnlyStore => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Io
        | ErrorKind::Database
        | ErrorKind::CorruptStore
        | ErrorKind::Cancelled
        | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    diff == 0
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn poisoned() -> Error {
    Error::new(ErrorKind::Internal, "a push thread panicked")
}

/// The blocking end of an upload: what the import reads. Every byte also goes to the
/// signature verifier (whose input ends with the upload), and, when a signature was pushed,
/// to a SHA-256 and a copy in `tmp/`.
struct PushReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
    verify: Option<VerifySink>,
    copy: Option<(PathBuf, BufWriter<File>)>,
    hasher: Option<Sha256>,
    head: Vec<u8>,
    size: u64,
    seen: Arc<Mutex<Option<Seen>>>,
    finished: bool,
}

impl PushReader {
    fn take_chunk(&mut self, chunk: &Bytes) -> std::io::Result<()> {
        if let Some(sink) = &mut self.verify {
            sink.write_all(chunk)?;
        }
        if let Some((_, file)) = &mut self.copy {
            file.write_all(chunk)?;
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(chunk);
        }
        if self.head.len() < compression::DETECT_LEN {
            let n = (compression::DETECT_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
        }
        self.size += chunk.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.verify = None; // the end of the signed data
        if std::mem::replace(&mut self.finished, true) {
            return Ok(());
        }
        let copy = match self.copy.take() {
            Some((path, file)) => {
                file.into_inner().map_err(|e| e.into_error())?;
                Some(path)
            }
            None => None,
        };
        let seen = Seen {
            head: std::mem::take(&mut self.head),
            size: self.size,
            sha256: self.hasher.take().map(|h| h.finalize().into()),
            copy,
        };
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen);
        }
        Ok(())
    }
}

impl Read for PushReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.take_chunk(&chunk)?;
                    self.current = chunk;
                }
                Some(Err(err)) => {
                    self.verify = None;
                    return Err(err);
                }
                None => {
                    self.finish()?;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Pushes the ACI at `file` (and its armored detached signature, if given) to the server
/// at `to` (its base URL, e.g. `https://images.example.com:8443`) with the bearer `token`.
///
/// The file is streamed; the answer is the server's [`Pushed`], or its error with the kind
/// it reported. Plain `http://` is refused unless `client`'s options allow it (the token
/// would travel in clear).
///
/// Progress is [`Phase::Push`](crate::progress::Phase::Push) (bytes of the file sent);
/// cancelling `observer` stops the upload with [`ErrorKind::Cancelled`] (the server then
/// sees a broken upload and imports nothing).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> acikit::Result<()> {
/// # let dir = acikit::testing::example_dir("push-file");
/// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
/// use acikit::net::HttpClient;
/// use acikit::serve::push_file;
/// use acikit::trust::sign_detached;
/// use acikit::Observer;
///
/// # let server = acikit::testing::example_server(&dir).await?;
/// # let net = acikit::testing::example_net(&server);
/// # let secret_key = acikit::testing::EXAMPLE_SECRET_KEY.as_bytes();
/// # let token = acikit::testing::EXAMPLE_PUSH_TOKEN;
/// // `server`: a local `acikit::Server` with a push token and the signer's key trusted;
/// // `net` allows its plain HTTP.
/// let signature = sign_detached(secret_key, None, std::fs::File::open(&aci).unwrap())?;
/// let base = format!("http://{}", server.local_addr());
/// let client = HttpClient::new(net)?;
/// let pushed = push_file(&client, &base, &aci, Some(&signature), token, Observer::default()).await?;
/// assert_eq!(pushed.name, "example.com/hello");
/// assert!(pushed.signature_checked);
///
/// let err = push_file(&client, &base, &aci, None, "wrong", Observer::default()).await.unwrap_err();
/// assert_eq!(err.kind(), acikit::ErrorKind::InvalidArgument);
/// # server.stop(std::time::Duration::ZERO).await?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub fn push_file(
    client: &crate::net::HttpClient,
    to: &str,
    file: &std::path::Path,
    signature: Option<&[u8]>,
    token: &str,
    observer: crate::progress::Observer,
) -> impl Future<Output = Result<Pushed>> + Send + 'static {
    let client = client.clone();
    let (to, file) = (to.to_string(), file.to_path_buf());
    let (signature, token) = (signature.map(<[u8]>::to_vec), token.to_string());
    async move { send_push(&client, &to, &file, signature.as_deref(), &token, observer).await }
}

/// [`push_file`] once its inputs are owned by its future.
async fn send_push(
    client: &crate::net::HttpClient,
    to: &str,
    file: &std::path::Path,
    signature: Option<&[u8]>,
    token: &str,
    observer: crate::progress::Observer,
) -> Result<Pushed> {
    observer.check()?;
    let base = url::Url::parse(to)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("{to}: {e}")))?;
    match base.scheme() {
        "https" => {}
        "http" if client.options().insecure.http => {}
        "http" => {
            return Err(Error::new(
                ErrorKind::InsecureRefused,
                format!(
                    "{to}: plain HTTP would send the token in clear (--insecure-options http allows it)"
                ),
            ));
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{to}: push needs an https:// URL, not {other}://"),
            ));
        }
    }
    let url = base
        .join("push")
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("{to}: {e}")))?;
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
    let size = opened
        .metadata()
        .await
        .map_err(|e| Error::io(format!("reading {}", file.display()), e))?
        .len();
    let body = reqwest::Body::wrap_stream(upload_stream(opened, size, observer.clone()));
    let mut request = client
        .reqwest()
        .post(url.clone())
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
    if let Some(sig) = signature {
        request = request.header(SIGNATURE_HEADER, hex::encode(sig));
    }
    let exchange = async {
        let response = request.send().await.map_err(|e| {
            Error::new(ErrorKind::Network, format!("POST {url}: {e}")).with_source(e)
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            Error::new(ErrorKind::Network, format!("POST {url}: {e}")).with_source(e)
        })?;
        Ok::<_, Error>((status, bytes))
    };
    let (status, bytes) = tokio::select! {
        biased;
        () = observer.cancel.cancelled() => {
            return Err(Error::new(ErrorKind::Cancelled, "the push was cancelled"));
        }
        exchange = exchange => exchange?,
    };
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Network,
                format!("POST {url}: unexpected answer: {e}"),
            )
        });
    }
    let (kind, message) = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("kind")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        })
        .unwrap_or_else(|| {
            (
                "network".to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        });
    let kind = ErrorKind::ALL
        .iter()
        .copied()
        .find(|k| k.as_str() == kind)
        .unwrap_or(if status == 401 {
            ErrorKind::InvalidArgument
        } else {
            ErrorKind::Network
        });
    Err(Error::new(
        kind,
        format!("POST {url}: HTTP {}: {message}", status.as_u16()),
    ))
}

/// The file's bytes as the request body, reporting [`Phase::Push`] progress as they go and
/// ending with an error once `observer` is cancelled (so the server sees a broken upload).
fn upload_stream(
    file: tokio::fs::File,
    size: u64,
    observer: crate::progress::Observer,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use futures_util::StreamExt;
    let mut sent = 0u64;
    let mut reported = 0u64;
    observer.report(crate::progress::Phase::Push, 0, Some(size));
    tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
        if observer.cancel.is_cancelled() {
            return Err(std::io::Error::other("the push was cancelled"));
        }
        let chunk = chunk?;
        sent += chunk.len() as u64;
        if sent - reported >= 1 << 20 || sent == size {
            observer.report(crate::progress::Phase::Push, sent, Some(size));
            reported = sent;
        }
        Ok(chunk)
    })
}

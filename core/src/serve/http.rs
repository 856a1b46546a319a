//! HTTP details of serving one resource: `ETag` and `If-None-Match`, a single `Range`
//! (with `If-Range`), `Content-Length`, and the streamed bodies of each served form.
//!
//! The canonical tar comes from [`crate::store::range`]: a range starts regenerating where it
//! starts, and objects are checked by presence and size, not by a whole-stream SHA-512 (see
//! there for what is checked and why). A failure once the headers are sent is an error item of
//! the body stream, so hyper aborts the response and the client sees a truncated body.

use std::io::Write;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::records::{self, ServedForm};
use crate::schema::ImageId;
use crate::store::Store;

/// Chunks in flight between a regenerating thread and the response.
const DEPTH: usize = 16;

/// What the client asked for of a resource of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The client's copy is current: 304.
    NotModified,
    /// The whole resource: 200.
    Full,
    /// Bytes `start..end` (end exclusive): 206.
    Part { start: u64, end: u64 },
    /// A range outside the resource: 416.
    Unsatisfiable,
}

/// Reads the conditional and range headers against a resource with `etag` (quoted) and
/// `total` bytes. Only single ranges are honoured; anything else is answered in full, as
/// RFC 9110 allows.
pub(crate) fn wanted(headers: &HeaderMap, etag: &str, total: u64) -> Wanted {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(inm) = get(header::IF_NONE_MATCH)
        && inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
    {
        return Wanted::NotModified;
    }
    let Some(range) = get(header::RANGE) else {
        return Wanted::Full;
    };
    if let Some(if_range) = get(header::IF_RANGE)
        && if_range.trim() != etag
    {
        return Wanted::Full;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Wanted::Full;
    };
    if spec.contains(',') {
        return Wanted::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = if first.is_empty() {
        // The last `last` bytes.
        let Ok(n) = last.parse::<u64>() else {
            return Wanted::Full;
        };
        if n == 0 {
            return Wanted::Unsatisfiable;
        }
        (total.saturating_sub(n), total)
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Wanted::Full;
        };
        let end = if last.is_empty() {
            total
        } else {
            match last.parse::<u64>() {
                Ok(l) if l >= start => l.saturating_add(1).min(total),
                _ => return Wanted::Full,
            }
        };
        (start, end)
    };
    if start >= total {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part { start, end }
}

/// Where a body's bytes come from.
pub(crate) enum Source {
    /// An image in one of its served forms.
    Image {
        store: Store,
        id: ImageId,
        form: ServedForm,
        /// For [`ServedForm::Original`]: the kept file.
        original: Option<PathBuf>,
    },
    /// A plain file.
    File(PathBuf),
}

/// Answers a GET or HEAD of a resource of `total` bytes with `etag`.
pub(crate) async fn respond(
    method: &Method,
    headers: &HeaderMap,
    etag: &str,
    total: u64,
    content_type: &'static str,
    source: Source,
) -> Response {
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, value(etag));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let (status, start, end) = match wanted(headers, etag, total) {
        Wanted::NotModified => return (StatusCode::NOT_MODIFIED, out).into_response(),
        Wanted::Unsatisfiable => {
            out.insert(header::CONTENT_RANGE, value(&format!("bytes */{total}")));
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
        Wanted::Full => (StatusCode::OK, 0, total),
        Wanted::Part { start, end } => {
            out.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{}/{total}", end - 1)),
            );
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
    };
    out.insert(header::CONTENT_LENGTH, value(&(end - start).to_string()));
    if method == Method::HEAD {
        return (status, out).into_response();
    }
    match body(source, total, start, end).await {
        Ok(body) => (status, out, body).into_response(),
        Err(err) => super::error_response(&err),
    }
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The bytes `start..end` of `source` (of `total` bytes), streamed.
async fn body(source: Source, total: u64, start: u64, end: u64) -> crate::Result<Body> {
    let len = end - start;
    match source {
        Source::File(path) => file_body(path, start, len).await,
        Source::Image {
            store,
            id,
            original,
            form: ServedForm::Original,
        } => {
            // A checked file (`store::originals::open_served`): the kept bytes, or a copy
            // re-created once and kept beside the record; not one byte is served before its
            // SHA-256 is the recorded one. A kept upload of a store made before original
            // records existed is served as it is.
            let paths = store.paths().clone();
            let objects = records::object_paths(&store);
            let checked = crate::blocking::blocking(move || {
                let cancel = crate::CancelToken::new();
                crate::store::originals::open_served(&paths, &objects, &id, &cancel)
            })
            .await?;
            match (checked, original) {
                (Some(file), _) => {
                    open_file_body(tokio::fs::File::from_std(file), start, len).await
                }
                (None, Some(path)) => file_body(path, start, len).await,
                (None, None) => Err(crate::Error::new(
                    crate::ErrorKind::CorruptStore,
                    "the original form is missing",
                )),
            }
        }
        Source::Image {
            store,
            id,
            form: ServedForm::Tar,
            ..
        } => {
            // Seeks to `start` by the recipe and checks objects by size, not by hash: see
            // `store::range` for why and what is checked.
            let range = crate::store::range::tar_range(
                store.paths().recipe(&id),
                crate::store::range::Objects::Folder(store.paths().objects()),
                id.sha512(),
                total,
                start,
                end,
            )
            .await?;
            // A download that starts at byte 0 is a use of the image. Recording it is a
            // synchronous index write: the response does not wait for it, and the ranges that
            // continue or split a download (resume, parallel parts) do not repeat it.
            if start == 0 {
                tokio::spawn(async move {
                    let _ = store.record_use(&id).await;
                });
            }
            Ok(Body::from_stream(range))
        }
        Source::Image {
            store,
            id,
            form: ServedForm::Gzip,
            ..
        } => {
            store
                .resolve(&crate::store::ImageQuery::Id(id.clone().into()))
                .await?;
            let recipe = store.paths().recipe(&id);
            let objects = records::object_paths(&store);
            let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(DEPTH);
            std::thread::Builder::new()
                .name("acikit-serve-gzip".into())
                .spawn(move || {
                    let sender = ChannelWriter { tx: tx.clone() };
                    let out = std::io::BufWriter::with_capacity(256 * 1024, sender);
                    match records::gzip_export(&recipe, &objects, &id, out) {
                        Ok(mut out) => {
                            let _ = out.flush();
                        }
                        Err(err) => {
                            let _ = tx.blocking_send(Err(err.into()));
                        }
                    }
                })
                .map_err(|e| crate::Error::io("starting the gzip export thread", e))?;
            let stream = tokio_stream(rx);
            Ok(Body::from_stream(window(stream, start, len)))
        }
    }
}

async fn file_body(path: PathBuf, start: u64, len: u64) -> crate::Result<Body> {
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| crate::Error::io(format!("opening {}", path.display()), e))?;
    open_file_body(file, start, len).await
}

/// The bytes `start..start + len` of an open file, streamed.
async fn open_file_body(mut file: tokio::fs::File, start: u64, len: u64) -> crate::Result<Body> {
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| crate::Error::io("seeking in a served file", e))?;
    let reader = file.take(len);
    Ok(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024),
    ))
}

fn tokio_stream(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// The bytes `start..start + len` of `stream`: the first `start` are skipped (regenerated
/// and dropped: a gzip stream cannot be entered in the middle), and the stream stops
/// (dropping its source) after `len`.
fn window(
    stream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    start: u64,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let stream = Box::pin(stream);
    futures_util::stream::unfold(
        (stream, start, len),
        |(mut stream, mut skip, mut left)| async move {
            while left > 0 {
                match stream.next().await? {
                    Err(e) => return Some((Err(e), (stream, skip, 0))),
                    Ok(mut chunk) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            chunk = chunk.slice(n as usize..);
                            skip -= n;
                        }
                        if chunk.is_empty() {
                            continue;
                        }
                        let n = left.min(chunk.len() as u64);
                        left -= n;
                        return Some((Ok(chunk.slice(..n as usize)), (stream, skip, left)));
                    }
                }
            }
            None
        },
    )
}

/// A blocking `Write` that sends each write as a chunk over a channel.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn ranges_and_conditions() {
        let e = "\"sha512-ab\"";
        assert_eq!(wanted(&headers(&[]), e, 100), Wanted::Full);
        assert_eq!(
            wanted(
                &headers(&[("if-none-match", "\"x\", \"sha512-ab\"")]),
                e,
                100
            ),
            Wanted::NotModified
        );
        assert_eq!(
            wanted(&headers(&[("range", "bytes=10-19")]), e, 100),
            Wanted::Part { start: 10, end: 20 }
        );
        assert_eq!(
            wanted(&headers(&[("range", "bytes=90-")]), e, 100),
            Wanted::Part {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            wanted(&headers(&[("range", "bytes=-5")]), e, 100),
            Wanted::Part {
                start: 95,
                end: 100
            }
        );
        assert_eq!(
            wanted(&headers(&[("range", "bytes=90-500")]), e, 100),
            Wanted::Part {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            wanted(&headers(&[("range", "bytes=100-")]), e, 100),
            Wanted::Unsatisfiable
        );
        assert_eq!(
            wanted(&headers(&[("range", "bytes=0-1,5-6")]), e, 100),
            Wanted::Full
        );
        assert_eq!(
            wanted(
                &headers(&[("range", "bytes=5-"), ("if-range", "\"old\"")]),
                e,
                100
            ),
            Wanted::Full
        );
        assert_eq!(
            wanted(&headers(&[("range", "bytes=5-"), ("if-range", e)]), e, 100),
            Wanted::Part { start: 5, end: 100 }
        );
    }
}

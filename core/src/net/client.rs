//! [`HttpClient`]: one `reqwest` client with our own redirect loop, so that every hop is
//! checked: plain HTTP only when allowed, credentials only for their host, a bounded
//! chain without loops.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use tokio_util::sync::WaitForCancellationFutureOwned;
use url::Url;

use super::options::{CaCert, NetOptions};
use crate::progress::{CancelToken, Observer};
use crate::{Error, ErrorKind, Result};

/// A response body: its bytes as they arrive. Errors are [`ErrorKind::Network`] (or
/// [`ErrorKind::Cancelled`] once the observer's token is cancelled).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// The HTTP(S) client of discovery and fetch. Cheap to clone (one shared connection pool).
///
/// Built from [`NetOptions`]; `reqwest`'s own redirect handling is off: [`HttpClient::get`]
/// follows redirects itself and applies these rules on every hop:
/// - `http://` URLs (first or redirected to) need [`InsecureOptions::http`](super::InsecureOptions::http),
///   else [`ErrorKind::InsecureRefused`];
/// - the configured credentials are added for the host of each hop (and only that host);
///   an `Authorization` header given by the caller is dropped when a redirect leaves the
///   origin (scheme, host and port) it was sent to;
/// - more than [`NetOptions::max_redirects`] hops, or a URL seen twice, is
///   [`ErrorKind::TooManyRedirects`], the message listing the chain.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    options: NetOptions,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A response after redirects: status, headers, final URL and the body as a stream.
pub struct Response {
    /// The HTTP status of the last hop.
    pub status: StatusCode,
    /// The headers of the last hop.
    pub headers: HeaderMap,
    /// The URL that answered (after redirects).
    pub url: Url,
    /// The URLs that redirected, in order (empty without redirects).
    pub redirects: Vec<Url>,
    body: ByteStream,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("url", &self.url.as_str())
            .field("redirects", &self.redirects.len())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The body, as a stream of byte chunks.
    pub fn into_body(self) -> ByteStream {
        self.body
    }

    /// [`ErrorKind::Network`] (naming the URL and the status) unless the status is 2xx.
    pub fn error_for_status(self) -> Result<Response> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(Error::new(
                ErrorKind::Network,
                format!("GET {}: HTTP {}", self.url, self.status),
            ))
        }
    }

    /// Reads the body into memory, at most `limit` bytes; returns the bytes and whether
    /// the body was longer (the rest is not read).
    pub async fn bytes_limited(self, limit: usize) -> Result<(Bytes, bool)> {
        let mut body = self.body;
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let room = limit - buf.len();
            if chunk.len() > room {
                buf.extend_from_slice(&chunk[..room]);
                return Ok((buf.freeze(), true));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((buf.freeze(), false))
    }
}

impl HttpClient {
    /// Builds the client: reads the extra CA files, sets timeouts, user agent, host
    /// overrides and, with `insecure.tls`, turns certificate checks off.
    ///
    /// A CA file that cannot be read is [`ErrorKind::Io`] or [`ErrorKind::NotFound`]; one
    /// holding no PEM certificate is [`ErrorKind::InvalidArgument`].
    ///
    /// ```
    /// use acikit::net::{CaCert, HttpClient, NetOptions};
    ///
    /// let mut options = NetOptions::default();
    /// options.insecure.http = true;
    /// let client = HttpClient::new(options)?;
    /// assert!(client.options().insecure.http);
    ///
    /// // A CA "certificate" that is not PEM is refused when the client is built.
    /// let mut options = NetOptions::default();
    /// options.ca_certs = vec![CaCert::Pem(b"not a certificate".to_vec())];
    /// let err = HttpClient::new(options).unwrap_err();
    /// assert_eq!(err.kind(), acikit::ErrorKind::InvalidArgument);
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn new(options: NetOptions) -> Result<HttpClient> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout);
        let mut roots = Vec::new();
        for ca in &options.ca_certs {
            let (pem, origin) = match ca {
                CaCert::Pem(pem) => (pem.clone(), "CA certificate".to_string()),
                CaCert::Path(path) => (
                    std::fs::read(path).map_err(|e| {
                        Error::io(format!("reading CA certificate {}", path.display()), e)
                    })?,
                    format!("CA certificate {}", path.display()),
                ),
            };
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::new(ErrorKind::InvalidArgument, format!("{origin}: {e}")).with_source(e)
            })?;
            if certs.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{origin}: no PEM certificate found"),
                ));
            }
            roots.extend(certs);
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        if options.insecure.tls {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        for (host, addr) in &options.resolve {
            builder = builder.resolve(host, *addr);
        }
        let client = builder.build().map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("cannot build the HTTP client: {}", describe(&e)),
            )
            .with_source(e)
        })?;
        Ok(HttpClient {
            inner: Arc::new(Inner { client, options }),
        })
    }

    /// The options the client was built from.
    pub fn options(&self) -> &NetOptions {
        &self.inner.options
    }

    /// The underlying reqwest client (for requests other than `GET`, e.g. a push).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn reqwest(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// `GET url` with `headers`, following redirects (see [`HttpClient`] for the rules).
    ///
    /// Any final status is returned as is (use [`Response::error_for_status`]); connection,
    /// TLS and timeout failures are [`ErrorKind::Network`] naming the URL and the cause.
    /// Cancelling the observer's token stops the wait for headers and the body stream with
    /// [`ErrorKind::Cancelled`].
    pub async fn get(&self, url: Url, headers: HeaderMap, observer: &Observer) -> Result<Response> {
        let options = &self.inner.options;
        let mut headers = headers;
        let mut chain: Vec<Url> = Vec::new();
        let mut current = url;
        loop {
            observer.check()?;
            self.check_scheme(&current, chain.last())?;
            let mut request_headers = headers.clone();
            if !request_headers.contains_key(header::AUTHORIZATION)
                && let Some(credential) = options.auth.credential_for(&current)
            {
                request_headers.insert(header::AUTHORIZATION, credential.header_value()?);
            }
            let send = self
                .inner
                .client
                .get(current.clone())
                .headers(request_headers)
                .send();
            let response = tokio::select! {
                response = send => response.map_err(|e| network(&current, &e))?,
                () = observer.cancel.cancelled() => return Err(cancelled()),
            };
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let follow = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let Some(location) = location.filter(|_| follow) else {
                return Ok(Response {
                    status,
                    headers: response.headers().clone(),
                    url: current.clone(),
                    redirects: chain,
                    body: body_stream(response, current, observer.cancel.clone()),
                });
            };
            let next = current.join(&location).map_err(|e| {
                Error::new(
                    ErrorKind::Network,
                    format!("GET {current}: HTTP {status} with a bad Location {location:?}: {e}"),
                )
            })?;
            chain.push(current);
            if chain.contains(&next) {
                return Err(Error::new(
                    ErrorKind::TooManyRedirects,
                    format!("redirect loop: {}", show_chain(&chain, &next)),
                ));
            }
            if chain.len() > options.max_redirects {
                return Err(Error::new(
                    ErrorKind::TooManyRedirects,
                    format!(
                        "more than {} redirects: {}",
                        options.max_redirects,
                        show_chain(&chain, &next)
                    ),
                ));
            }
            let previous = chain.last().expect("just pushed");
            if previous.origin() != next.origin() {
                headers.remove(header::AUTHORIZATION);
                headers.remove(header::PROXY_AUTHORIZATION);
                headers.remove(header::COOKIE);
            }
            current = next;
        }
    }

    /// Refuses what the insecure options do not allow: plain HTTP (first URL or a
    /// redirect from HTTPS), and schemes other than `http`/`https`.
    fn check_scheme(&self, url: &Url, from: Option<&Url>) -> Result<()> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.inner.options.insecure.http => Ok(()),
            "http" => Err(Error::new(
                ErrorKind::InsecureRefused,
                match from {
                    Some(from) if from.scheme() == "https" => format!(
                        "redirect from {from} to plain HTTP {url} refused \
                         (allow with insecure option http)"
                    ),
                    _ => format!("plain HTTP {url} refused (allow with insecure option http)"),
                },
            )),
            other => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("unsupported URL scheme {other:?} in {url}"),
            )),
        }
    }
}

/// `a -> b -> c` for a redirect chain and the next hop.
fn show_chain(chain: &[Url], next: &Url) -> String {
    chain
        .iter()
        .chain(std::iter::once(next))
        .map(Url::as_str)
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "the operation was cancelled")
}

/// A `reqwest` error as [`ErrorKind::Network`], naming the URL and every cause.
fn network(url: &Url, err: &reqwest::Error) -> Error {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    // The top level of a reqwest error repeats the URL; its sources say what happened.
    let cause = match std::error::Error::source(err) {
        Some(source) => describe(source),
        None => err.to_string(),
    };
    Error::new(ErrorKind::Network, format!("GET {url}: {what}: {cause}"))
}

/// An error and its sources, joined by `: ` (repeats skipped).
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The body of `response` as a [`ByteStream`] that ends with [`ErrorKind::Cancelled`]
/// when `cancel` fires.
fn body_stream(response: reqwest::Response, url: Url, cancel: CancelToken) -> ByteStream {
    let inner = response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| network(&url, &e)));
    Box::pin(Cancellable {
        inner: Box::pin(inner),
        cancelled: Box::pin(cancel.cancelled_owned()),
        done: false,
    })
}

struct Cancellable {
    inner: ByteStream,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl Stream for Cancellable {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cancelled.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(cancelled())));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(insecure_http: bool) -> HttpClient {
        let mut options = NetOptions::default();
        options.insecure.http = insecure_http;
        HttpClient::new(options).unwrap()
    }

    #[test]
    fn plain_http_needs_the_insecure_option() {
        let url = Url::parse("http://example.com/").unwrap();
        let err = client(false).check_scheme(&url, None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InsecureRefused);
        let from = Url::parse("https://example.com/a").unwrap();
        let err = client(false).check_scheme(&url, Some(&from)).unwrap_err();
        assert!(
            err.message()
                .contains("redirect from https://example.com/a")
        );
        client(true).check_scheme(&url, Some(&from)).unwrap();
        let ftp = Url::parse("ftp://example.com/").unwrap();
        assert_eq!(
            client(true).check_scheme(&ftp, None).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn bad_ca_is_refused() {
        let options = NetOptions {
            ca_certs: vec![CaCert::Pem(b"not a certificate".to_vec())],
            ..NetOptions::default()
        };
        let err = HttpClient::new(options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let dir = tempfile::tempdir().unwrap();
        let options = NetOptions {
            ca_certs: vec![CaCert::Path(dir.path().join("missing.pem"))],
            ..NetOptions::default()
        };
        assert_eq!(
            HttpClient::new(options).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn futures_are_send_and_static() {
        fn assert_send_static<T: Send + 'static>(_: T) {}
        let client = client(false);
        let observer = Observer::default();
        assert_send_static(async move {
            let url = Url::parse("https://example.invalid/").unwrap();
            client.get(url, HeaderMap::new(), &observer).await
        });
    }
}

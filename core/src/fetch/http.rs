//! The `https` / `http` transport, over the shared [`HttpClient`] (TLS roots, insecure
//! options, per-host credentials, bounded redirects).

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::transport::{Body, CacheInfo, Transport, TransportRequest, TransportResponse};
use crate::net::HttpClient;
use crate::progress::Observer;
use crate::{Error, ErrorKind, Result};

/// Fetches `https` URLs (and `http` ones when the client allows plain HTTP).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: HttpClient,
}

impl HttpTransport {
    /// A transport over `client`.
    pub fn new(client: HttpClient) -> Self {
        HttpTransport { client }
    }
}

impl Transport for HttpTransport {
    fn handles(&self, scheme: &str) -> bool {
        scheme == "https" || scheme == "http"
    }

    fn open<'a>(
        &'a self,
        request: TransportRequest,
        observer: &'a Observer,
    ) -> BoxFuture<'a, Result<TransportResponse>> {
        async move {
            let headers = request_headers(&request)?;
            let response = self
                .client
                .get(request.url.clone(), headers, observer)
                .await?;
            let url = response.url.clone();
            let status = response.status;
            let cache = cache_info(&response.headers);
            let retry_after = retry_after(&response.headers);
            Ok(match status {
                StatusCode::OK => TransportResponse::Body(Body {
                    total: content_length(&response.headers),
                    stream: response.into_body(),
                    offset: 0,
                    cache,
                }),
                StatusCode::PARTIAL_CONTENT => {
                    let Some((start, total)) = content_range(&response.headers) else {
                        return Ok(TransportResponse::Refused {
                            message: format!("GET {url}: HTTP 206 without a usable Content-Range"),
                        });
                    };
                    if start != request.offset {
                        return Ok(TransportResponse::Refused {
                            message: format!(
                                "GET {url}: asked for bytes from {}, got a range from {start}",
                                request.offset
                            ),
                        });
                    }
                    TransportResponse::Body(Body {
                        stream: response.into_body(),
                        offset: start,
                        total,
                        cache,
                    })
                }
                StatusCode::NOT_MODIFIED => TransportResponse::NotModified(cache),
                StatusCode::ACCEPTED => TransportResponse::NotReady { retry_after },
                StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                    TransportResponse::Unavailable {
                        message: format!("GET {url}: HTTP {status}"),
                        retry_after,
                    }
                }
                s if s.is_server_error() => TransportResponse::Unavailable {
                    message: format!("GET {url}: HTTP {status}"),
                    retry_after,
                },
                _ => TransportResponse::Refused {
                    message: format!("GET {url}: HTTP {status}"),
                },
            })
        }
        .boxed()
    }
}

fn request_headers(request: &TransportRequest) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{text:?} cannot be sent in an HTTP header"),
            )
        })
    };
    if request.offset > 0 {
        headers.insert(header::RANGE, value(&format!("bytes={}-", request.offset))?);
        if let Some(etag) = &request.if_range {
            headers.insert(header::IF_RANGE, value(etag)?);
        }
    }
    if let Some(etag) = &request.if_none_match {
        headers.insert(header::IF_NONE_MATCH, value(etag)?);
    }
    Ok(headers)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH)?.parse().ok()
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`): the start and the total.
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let spec = header_str(headers, header::CONTENT_RANGE)?.strip_prefix("bytes ")?;
    let (range, total) = spec.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by image servers).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_str(headers, header::RETRY_AFTER)?
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// `ETag`, `Last-Modified` and `Cache-Control: max-age` (none with `no-store` or
/// `no-cache`).
pub(crate) fn cache_info(headers: &HeaderMap) -> CacheInfo {
    let mut max_age = None;
    if let Some(control) = header_str(headers, header::CACHE_CONTROL) {
        for directive in control.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                max_age = None;
                break;
            }
            if let Some(secs) = lower.strip_prefix("max-age=") {
                max_age = secs.trim_matches('"').parse().ok().map(Duration::from_secs);
            }
        }
    }
    CacheInfo {
        etag: header_str(headers, header::ETAG).map(str::to_string),
        last_modified: header_str(headers, header::LAST_MODIFIED).map(str::to_string),
        max_age,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn reads_cache_control() {
        let info = cache_info(&headers(&[
            ("cache-control", "public, max-age=60"),
            ("etag", "\"abc\""),
        ]));
        assert_eq!(info.max_age, Some(Duration::from_secs(60)));
        assert_eq!(info.etag.as_deref(), Some("\"abc\""));
        let info = cache_info(&headers(&[("cache-control", "max-age=60, no-cache")]));
        assert_eq!(info.max_age, None);
        assert_eq!(cache_info(&HeaderMap::new()), CacheInfo::default());
    }

    #[test]
    fn reads_content_range() {
        let h = headers(&[("content-range", "bytes 100-199/200")]);
        assert_eq!(content_range(&h), Some((100, Some(200))));
        let h = headers(&[("content-range", "bytes 5-9/*")]);
        assert_eq!(content_range(&h), Some((5, None)));
        let h = headers(&[("content-range", "items 5-9/10")]);
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn range_headers_only_when_resuming() {
        let mut request = TransportRequest::new("https://example.com/a.aci".parse().unwrap());
        request.if_range = Some("\"e\"".into());
        assert!(request_headers(&request).unwrap().is_empty());
        request.offset = 10;
        let h = request_headers(&request).unwrap();
        assert_eq!(h.get("range").unwrap(), "bytes=10-");
        assert_eq!(h.get("if-range").unwrap(), "\"e\"");
    }
}

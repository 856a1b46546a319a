//! The transport trait: how image and signature bytes are fetched from a URL.
//!
//! Small and stream-based on purpose: one call opens a URL (optionally from a byte
//! offset, optionally conditional on a cached `ETag`) and gives back either a body
//! stream or what the server said instead. Retries, resume, caching and verification
//! live above it (`fetch::download`), so a new transport (S3, HDFS, peer to peer) only
//! has to move bytes. Built in: [`HttpTransport`](super::http::HttpTransport) for
//! `https` and `http`, [`FileTransport`](super::file::FileTransport) for `file`.

use std::time::Duration;

use futures_util::future::BoxFuture;
use url::Url;

use crate::Result;
use crate::net::ByteStream;
use crate::progress::Observer;

/// What to fetch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportRequest {
    /// The URL.
    pub url: Url,
    /// Start at this byte (a resume); 0 for the whole resource.
    pub offset: u64,
    /// Answer [`TransportResponse::NotModified`] if the resource still has this `ETag`.
    pub if_none_match: Option<String>,
    /// With `offset > 0`: send the rest only if the resource still has this `ETag`, else
    /// the whole resource (HTTP `If-Range`).
    pub if_range: Option<String>,
}

impl TransportRequest {
    /// A plain request for the whole resource at `url`.
    pub fn new(url: Url) -> Self {
        TransportRequest {
            url,
            offset: 0,
            if_none_match: None,
            if_range: None,
        }
    }
}

/// Cache information a response carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// The resource's `ETag`.
    pub etag: Option<String>,
    /// The resource's `Last-Modified`.
    pub last_modified: Option<String>,
    /// How long the response may be used without asking again (`Cache-Control: max-age`;
    /// `None` with `no-cache`/`no-store` or without the header).
    pub max_age: Option<Duration>,
}

/// A body being received.
pub struct Body {
    /// The bytes, from [`Body::offset`] on.
    pub stream: ByteStream,
    /// The byte the stream starts at: the request's offset when the transport honoured
    /// it, else 0 (the whole resource again).
    pub offset: u64,
    /// Size of the whole resource, when known.
    pub total: Option<u64>,
    /// Cache information.
    pub cache: CacheInfo,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("offset", &self.offset)
            .field("total", &self.total)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// What a transport answered.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportResponse {
    /// The resource follows.
    Body(Body),
    /// The resource still has the `ETag` of the request (HTTP 304).
    NotModified(CacheInfo),
    /// The resource is being prepared; ask again later (HTTP 202).
    NotReady {
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A failure that may pass: HTTP 408, 429, 5xx (the message names URL and status).
    Unavailable {
        /// What happened.
        message: String,
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A failure that will not pass by asking again: HTTP 4xx but 408 and 429, or a
    /// status the fetch cannot use (the message names URL and status).
    Refused {
        /// What happened.
        message: String,
    },
}

/// Moves bytes from URLs of some schemes.
pub trait Transport: Send + Sync {
    /// Whether this transport handles URLs of `scheme` (lowercase, e.g. `https`).
    fn handles(&self, scheme: &str) -> bool;

    /// Opens `request`. An error of kind [`ErrorKind::Network`](crate::ErrorKind) (a
    /// connection that failed or dropped) is taken as transient and retried; any other
    /// kind stops the fetch. Errors inside the body stream are handled the same way.
    fn open<'a>(
        &'a self,
        request: TransportRequest,
        observer: &'a Observer,
    ) -> BoxFuture<'a, Result<TransportResponse>>;
}

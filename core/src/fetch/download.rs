//! One download: open a URL with retries (backoff on transient failures, waits on
//! "202 not ready"), then pump its body into a channel that a blocking reader drains,
//! resuming with a `Range` request when the connection drops half way.
//!
//! The reader side ([`ChannelReader`]) is what the store's import reads; it also hands
//! every byte to the signature verifier, so the image is verified and imported in the
//! same pass, with no temporary copy.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::transport::{Body, CacheInfo, Transport, TransportRequest, TransportResponse};
use crate::progress::{Observer, Phase};
use crate::trust::VerifySink;
use crate::{Error, ErrorKind, Result};

/// Chunks in flight between the download task and the importer.
const DEPTH: usize = 16;

/// How hard to try.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Transient failures (connection errors, HTTP 408/429/5xx, a body that stops early)
    /// allowed in a row before giving up.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub first_delay: Duration,
    /// Longest wait between retries (also caps a server's `Retry-After`).
    pub max_delay: Duration,
    /// How many "202 not ready" answers to wait through.
    pub not_ready_attempts: u32,
    /// Wait after a 202 without `Retry-After`.
    pub not_ready_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            not_ready_attempts: 30,
            not_ready_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Sets [`attempts`](Self::attempts): transient failures allowed in a row.
    pub fn attempts(mut self, attempts: u32) -> RetryPolicy {
        self.attempts = attempts;
        self
    }

    /// Sets [`first_delay`](Self::first_delay) and [`max_delay`](Self::max_delay).
    pub fn delays(mut self, first: Duration, max: Duration) -> RetryPolicy {
        self.first_delay = first;
        self.max_delay = max;
        self
    }

    /// Sets [`not_ready_attempts`](Self::not_ready_attempts) and
    /// [`not_ready_delay`](Self::not_ready_delay): how long to wait through "202 not ready".
    pub fn not_ready(mut self, attempts: u32, delay: Duration) -> RetryPolicy {
        self.not_ready_attempts = attempts;
        self.not_ready_delay = delay;
        self
    }
}

impl RetryPolicy {
    fn backoff(&self, failures: u32, asked: Option<Duration>) -> Duration {
        let exp = self
            .first_delay
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        asked.unwrap_or(exp).min(self.max_delay)
    }
}

/// What opening a URL gave.
#[derive(Debug)]
pub enum Opened {
    /// The cached copy is still current (HTTP 304).
    NotModified(CacheInfo),
    /// The body follows.
    Body(Body),
}

/// Opens `request` through `transport`, retrying transient failures and waiting
/// through "not ready" answers as `policy` says.
pub async fn open(
    transport: &dyn Transport,
    request: &TransportRequest,
    policy: &RetryPolicy,
    observer: &Observer,
) -> Result<Opened> {
    let mut failures = 0u32;
    let mut not_ready = 0u32;
    loop {
        observer.check()?;
        let (message, asked) = match transport.open(request.clone(), observer).await {
            Ok(TransportResponse::Body(body)) => return Ok(Opened::Body(body)),
            Ok(TransportResponse::NotModified(cache)) => return Ok(Opened::NotModified(cache)),
            Ok(TransportResponse::NotReady { retry_after }) => {
                not_ready += 1;
                if not_ready > policy.not_ready_attempts {
                    return Err(Error::new(
                        ErrorKind::NotReady,
                        format!(
                            "{} was still not ready (HTTP 202) after {} tries",
                            request.url, not_ready
                        ),
                    ));
                }
                let wait = retry_after
                    .unwrap_or(policy.not_ready_delay)
                    .min(policy.max_delay);
                sleep(wait, observer).await?;
                continue;
            }
            Ok(TransportResponse::Unavailable {
                message,
                retry_after,
            }) => (message, retry_after),
            Ok(TransportResponse::Refused { message }) => {
                return Err(Error::new(ErrorKind::Network, message));
            }
            Err(err) if err.kind() == ErrorKind::Network => (err.to_string(), None),
            Err(err) => return Err(err),
        };
        failures += 1;
        if failures > policy.attempts {
            return Err(Error::new(
                ErrorKind::Network,
                format!("{message} (gave up after {failures} attempts)"),
            ));
        }
        sleep(policy.backoff(failures, asked), observer).await?;
    }
}

/// Reads a small resource (a signature, a key) whole, at most `limit` bytes.
pub async fn read_small(
    transport: &dyn Transport,
    url: &url::Url,
    limit: usize,
    policy: &RetryPolicy,
    observer: &Observer,
) -> Result<Vec<u8>> {
    let request = TransportRequest::new(url.clone());
    let Opened::Body(mut body) = open(transport, &request, policy, observer).await? else {
        return Err(Error::new(
            ErrorKind::Network,
            format!("GET {url}: HTTP 304 to an unconditional request"),
        ));
    };
    let mut out = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!("{url} is larger than {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Where a download's bytes go and what bounds it.
pub struct Pump {
    /// The transport that opened the body (used again to resume).
    pub transport: Arc<dyn Transport>,
    /// The request that opened it.
    pub request: TransportRequest,
    /// Retries.
    pub policy: RetryPolicy,
    /// Progress ([`Phase::Download`]) and cancellation.
    pub observer: Observer,
    /// Most bytes accepted ([`ErrorKind::LimitExceeded`] beyond).
    pub max_size: u64,
}

impl Pump {
    /// Starts pumping `body` on the runtime; returns the blocking reader of its bytes.
    pub fn start(self, body: Body, verify: Option<VerifySink>) -> ChannelReader {
        let (tx, rx) = mpsc::channel(DEPTH);
        tokio::spawn(async move {
            if let Err(err) = self.run(body, &tx).await {
                let _ = tx.send(Err(err)).await;
            }
        });
        ChannelReader {
            rx,
            current: Bytes::new(),
            verify,
        }
    }

    async fn run(&self, mut body: Body, tx: &mpsc::Sender<Result<Bytes>>) -> Result<()> {
        let url = &self.request.url;
        let etag = body.cache.etag.clone();
        let total = body.total;
        if let Some(total) = total
            && total > self.max_size
        {
            return Err(too_large(url, self.max_size));
        }
        let mut position = 0u64;
        let mut failures = 0u32;
        loop {
            // A resume the server answered with the whole resource: skip what we have.
            let mut skip = position - body.offset.min(position);
            let mut cut_short = None;
            while let Some(chunk) = body.stream.next().await {
                let mut chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(err) if err.kind() == ErrorKind::Network => {
                        cut_short = Some(err.to_string());
                        break;
                    }
                    Err(err) => return Err(err),
                };
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    chunk = chunk.slice(n as usize..);
                    skip -= n;
                    if chunk.is_empty() {
                        continue;
                    }
                }
                position += chunk.len() as u64;
                failures = 0;
                if position > self.max_size {
                    return Err(too_large(url, self.max_size));
                }
                self.observer.report(Phase::Download, position, total);
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the importer stopped; its error is the one reported
                }
            }
            if cut_short.is_none() && total.is_none_or(|t| position >= t) {
                return Ok(());
            }
            let why = cut_short.unwrap_or_else(|| {
                format!("the connection closed after {position} of {total:?} bytes")
            });
            failures += 1;
            if failures > self.policy.attempts {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("GET {url}: {why} (gave up after {failures} attempts)"),
                ));
            }
            sleep(self.policy.backoff(failures, None), &self.observer).await?;
            let resume = TransportRequest {
                url: url.clone(),
                offset: position,
                if_none_match: None,
                if_range: etag.clone(),
            };
            body = match open(&*self.transport, &resume, &self.policy, &self.observer).await? {
                Opened::Body(next) => next,
                Opened::NotModified(_) => {
                    return Err(Error::new(
                        ErrorKind::Network,
                        format!("GET {url}: HTTP 304 to a resume"),
                    ));
                }
            };
            if body.offset == 0 && etag.is_some() && body.cache.etag != etag {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("{url} changed on the server during the download"),
                ));
            }
        }
    }
}

fn too_large(url: &url::Url, max: u64) -> Error {
    Error::new(
        ErrorKind::LimitExceeded,
        format!("{url} is larger than the {max}-byte limit"),
    )
}

/// Sleeps `wait`, or stops with [`ErrorKind::Cancelled`] when the call is cancelled.
async fn sleep(wait: Duration, observer: &Observer) -> Result<()> {
    tokio::select! {
        () = tokio::time::sleep(wait) => Ok(()),
        () = observer.cancel.cancelled() => observer.check(),
    }
}

/// The blocking end of a download: what the import reads. Every byte also goes to the
/// signature verifier, whose input ends when the download does (or when this reader is
/// dropped).
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
    verify: Option<VerifySink>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    if let Some(sink) = &mut self.verify {
                        sink.write_all(&chunk)?;
                    }
                    self.current = chunk;
                }
                Some(Err(err)) => {
                    self.verify = None;
                    return Err(std::io::Error::other(err));
                }
                None => {
                    self.verify = None; // the end of the signed data
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

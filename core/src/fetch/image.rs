//! One image from one endpoint: the HTTP cache rules (max-age, ETag), the signature
//! first, then the image streamed through verification into the store's import, and the
//! fetch state recorded in the index.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

use super::download::{self, Opened, Pump};
use super::expect::Expected;
use super::transport::{CacheInfo, TransportRequest};
use super::{FetchOutcome, Fetched, Session};
use crate::blocking::blocking;
use crate::schema::ImageName;
use crate::store::index::FetchState;
use crate::store::{ImageInfo, ImageQuery, ImportGate, ImportOptions};
use crate::trust::{StreamingVerifier, VerifiedSignature};
use crate::{Error, ErrorKind, Result};

/// Largest signature accepted.
const MAX_SIGNATURE: usize = 1 << 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether `state` may still be used without asking the server.
fn is_fresh(state: &FetchState, now: i64) -> bool {
    state.max_age_secs.is_some_and(|age| {
        let age_ms = i64::try_from(age.saturating_mul(1000)).unwrap_or(i64::MAX);
        now < state.downloaded_at_ms.saturating_add(age_ms)
    })
}

/// The stored image asked by `name` and `labels`, if one of the URLs it was fetched
/// from is still within its max-age: no request at all.
pub(crate) async fn fresh_in_store(
    session: &Session,
    image: &ImageName,
    expected: &Expected,
) -> Result<Option<Fetched>> {
    let query = ImageQuery::Name(ImageName::new(
        image.name.clone(),
        image
            .labels
            .iter()
            .filter(|l| !(l.name == "version" && l.value == "latest"))
            .cloned()
            .collect(),
    ));
    let info = match session.store.resolve(&query).await {
        Ok(info) => info,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if expected.check_stored(&info).is_err() {
        return Ok(None);
    }
    let now = now_ms();
    let states = session
        .store
        .index()
        .fetch_states_of(&info.image_id)
        .await?;
    Ok(states
        .into_iter()
        .find(|s| is_fresh(s, now))
        .map(|s| cached(&info, Some(s.url), FetchOutcome::Cached)))
}

fn cached(info: &ImageInfo, url: Option<String>, outcome: FetchOutcome) -> Fetched {
    Fetched {
        image_id: info.image_id.clone(),
        name: info.name.clone(),
        url,
        outcome,
        signature: None,
        keys_added: Vec::new(),
        dependencies: Vec::new(),
    }
}

/// Fetches the image at `aci` (signature at `asc`) into the store.
pub(crate) async fn fetch_endpoint(
    session: &Session,
    aci: &Url,
    asc: &Url,
    expected: &Expected,
) -> Result<Fetched> {
    let store = &session.store;
    let options = &session.options;
    let observer = &session.observer;
    let now = now_ms();

    // What the store has from this URL.
    let state = store.index().fetch_state(aci.as_str()).await?;
    let stored = match state.as_ref().and_then(|s| s.image_id.clone()) {
        Some(id) => match store.resolve(&ImageQuery::Id(id.into())).await {
            Ok(info) if expected.check_stored(&info).is_ok() => Some(info),
            Ok(_) => None,
            Err(err) if err.kind() == ErrorKind::NotFound => None,
            Err(err) => return Err(err),
        },
        None => None,
    };
    if let (Some(state), Some(info)) = (&state, &stored)
        && is_fresh(state, now)
    {
        return Ok(cached(info, Some(aci.to_string()), FetchOutcome::Cached));
    }

    // The signature first: small, and without it nothing is downloaded.
    let verify = !options.net.insecure.image;
    let signature = if verify {
        let transport = session.transport(asc)?;
        let bytes = download::read_small(&*transport, asc, MAX_SIGNATURE, &options.retry, observer)
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("fetching the signature {asc}: {}", e.message()),
                )
            })?;
        Some(bytes)
    } else {
        None
    };

    // Every check that needs no data (the key is trusted for this name, not revoked or
    // expired, may sign; the hash is strong) runs now, before the image is requested.
    // Verification then runs beside the import, and the gate waits for its verdict.
    let (sink, verdict) = match &signature {
        Some(sig) => {
            let trust = store.trust()?;
            let name = expected.name.clone();
            let sig = sig.clone();
            // Reading the keyring and parsing the signature block: off the runtime.
            let (sink, handle) = blocking(move || match &name {
                Some(name) => StreamingVerifier::start(&trust, name, &sig),
                None => StreamingVerifier::start_unnamed(&trust, &sig),
            })
            .await?;
            (Some(sink), Some(handle))
        }
        None => (None, None),
    };

    let transport = session.transport(aci)?;
    let request = TransportRequest {
        if_none_match: stored
            .as_ref()
            .and(state.as_ref())
            .and_then(|s| s.etag.clone()),
        ..TransportRequest::new(aci.clone())
    };
    let body = match download::open(&*transport, &request, &options.retry, observer).await? {
        Opened::NotModified(cache) => {
            let Some(info) = stored else {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("GET {aci}: HTTP 304 without a stored copy"),
                ));
            };
            let previous = state.as_ref();
            record(
                session,
                aci,
                &CacheInfo {
                    etag: cache.etag.or_else(|| previous.and_then(|s| s.etag.clone())),
                    last_modified: cache
                        .last_modified
                        .or_else(|| previous.and_then(|s| s.last_modified.clone())),
                    max_age: cache.max_age,
                },
                &info.image_id,
            )
            .await?;
            return Ok(cached(
                &info,
                Some(aci.to_string()),
                FetchOutcome::NotModified,
            ));
        }
        Opened::Body(body) => body,
    };
    let cache = body.cache.clone();
    let total = body.total;

    let verdict = Arc::new(Mutex::new(verdict));
    let verified: Arc<Mutex<Option<VerifiedSignature>>> = Arc::default();
    let gate = {
        let verdict = verdict.clone();
        let verified = verified.clone();
        let expected = expected.clone();
        ImportGate::new(move |staged| {
            let handle = verdict.lock().map_err(|_| poisoned())?.take();
            if let Some(handle) = handle {
                let signature = handle.finish_for(staged.manifest.name.as_str())?;
                *verified.lock().map_err(|_| poisoned())? = Some(signature);
            }
            expected.check_staged(staged)
        })
    };
    let max_size = expected
        .size
        .map_or(options.max_size, |s| s.min(options.max_size));
    let reader = Pump {
        transport: transport.clone(),
        request,
        policy: options.retry.clone(),
        observer: observer.clone(),
        max_size,
    }
    .start(body, sink);
    let imported = store
        .import(
            reader,
            ImportOptions {
                gate: Some(gate),
                origin: Some(aci.to_string()),
                archive_size: total,
                record_original: true,
                ..ImportOptions::default()
            },
            observer.clone(),
        )
        .await
        .map_err(|err| match expected.size {
            // The dependency's own size was the limit: the image is not the one named.
            Some(size) if err.kind() == ErrorKind::LimitExceeded && size < options.max_size => {
                Error::new(
                    ErrorKind::DependencyMismatch,
                    format!("the dependency's size is {size} bytes: {}", err.message()),
                )
            }
            _ => err,
        })?;
    record(session, aci, &cache, &imported.image_id).await?;
    let asc = signature;
    let signature = verified.lock().map_err(|_| poisoned())?.take();
    if let (Some(asc), Some(verified), Some(original)) = (asc, &signature, &imported.original) {
        // The publisher's signature, kept with the original form it covers: a server on
        // this store serves the image as downloaded, and `gpg --verify` passes.
        let paths = store.paths().clone();
        let (id, original, fingerprint) = (
            imported.image_id.clone(),
            original.clone(),
            verified.fingerprint.clone(),
        );
        blocking(move || {
            crate::store::originals::keep_signature(&paths, &id, &asc, &original, &fingerprint)
        })
        .await?;
    }
    Ok(Fetched {
        image_id: imported.image_id,
        name: imported.name,
        url: Some(aci.to_string()),
        outcome: if imported.already_present {
            FetchOutcome::AlreadyPresent
        } else {
            FetchOutcome::Downloaded
        },
        signature,
        keys_added: Vec::new(),
        dependencies: Vec::new(),
    })
}

/// Records the cache state of `url`, which gave `image`.
async fn record(
    session: &Session,
    url: &Url,
    cache: &CacheInfo,
    image: &crate::schema::ImageId,
) -> Result<()> {
    session
        .store
        .index()
        .set_fetch_state(&FetchState {
            url: url.to_string(),
            etag: cache.etag.clone(),
            last_modified: cache.last_modified.clone(),
            max_age_secs: cache.max_age.map(|d: Duration| d.as_secs()),
            downloaded_at_ms: now_ms(),
            image_id: Some(image.clone()),
        })
        .await
}

fn poisoned() -> Error {
    Error::new(ErrorKind::Internal, "a fetch thread panicked")
}

//! Fetch: an image by name (through meta discovery), by URL or from a `file://` path,
//! signature verified, streamed straight into the store, then its dependencies.
//!
//! - `transport`: the small stream-based trait every URL scheme implements;
//!   `http` and `file` are built in;
//! - `download`: retries with backoff, "202 not ready" waits, `Range` resume, size
//!   limits, and the reader the import consumes (teeing bytes to signature verification);
//! - `expect`: what the fetched image must match (name, labels, ID, size);
//! - `image`: one image from one endpoint: HTTP cache (ETag, max-age), signature,
//!   verified import, fetch state in the index;
//! - this module: [`Store::fetch`], which ties discovery, endpoints and dependencies
//!   together.
//!
//! The image becomes visible only after its signature verified (checked in an
//! [`ImportGate`](crate::store::ImportGate) before the import commits), unless the caller
//! turned verification off with `insecure.image`. A failed or cancelled fetch leaves
//! nothing of the image it was fetching; the images it completed before (the image whose
//! dependency failed, verified and whole) stay.

pub(crate) mod download;
pub(crate) mod expect;
pub(crate) mod file;
pub(crate) mod http;
pub(crate) mod image;
pub(crate) mod transport;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

pub use download::RetryPolicy;
pub(crate) use expect::Expected;
pub use transport::{Body, CacheInfo, Transport, TransportRequest, TransportResponse};

use crate::blocking::blocking;
use crate::discovery::{self, DiscoveryOptions};
use crate::net::{HttpClient, NetOptions};
use crate::progress::Observer;
use crate::schema::{ImageId, ImageName, Label};
use crate::store::{ImageQuery, Store};
use crate::trust::{TrustScope, VerifiedSignature};
use crate::{Error, ErrorKind, Result};

/// Deepest chain of dependencies fetched (a guard against servers that make one up).
const MAX_DEPTH: usize = 64;

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchSource {
    /// An image name with the labels asked for (e.g. `version`), found through meta
    /// discovery; `os`, `arch` and `version` have defaults.
    Name(ImageName),
    /// An image URL (`https://`, `http://` when allowed, `file://`); its signature is at
    /// `signature`, else at the same URL plus `.asc`.
    Url {
        /// The image URL.
        url: String,
        /// The signature URL, if not `url` + `.asc`.
        signature: Option<String>,
    },
}

impl FetchSource {
    /// Reads the command-line form: a URL (anything with `://`), or `NAME[:VERSION]` with
    /// `labels` (see [`ImageName::parse`]).
    ///
    /// ```
    /// use acikit::{FetchSource, ImageName, Label};
    ///
    /// let by_name = FetchSource::parse("example.com/app:1.0", &[Label::new("os", "linux")])?;
    /// assert_eq!(
    ///     by_name,
    ///     FetchSource::Name(ImageName::parse("example.com/app:1.0", &[Label::new("os", "linux")])?)
    /// );
    ///
    /// let by_url = FetchSource::parse("https://example.com/app-1.0.aci", &[])?;
    /// assert_eq!(
    ///     by_url,
    ///     FetchSource::Url { url: "https://example.com/app-1.0.aci".to_string(), signature: None }
    /// );
    /// assert!(FetchSource::parse("https://[bad", &[]).is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(text: &str, labels: &[Label]) -> Result<FetchSource> {
        if text.contains("://") {
            url::Url::parse(text).map_err(|e| {
                Error::new(ErrorKind::InvalidValue, format!("bad URL {text:?}: {e}"))
            })?;
            return Ok(FetchSource::Url {
                url: text.to_string(),
                signature: None,
            });
        }
        Ok(FetchSource::Name(ImageName::parse(text, labels)?))
    }
}

/// Options of a fetch.
#[derive(Clone)]
#[non_exhaustive]
pub struct FetchOptions {
    /// The HTTP client's settings: CA certificates, insecure options (`image` turns off
    /// signature verification), credentials, discovery port.
    pub net: NetOptions,
    /// Fetch the keys that discovery lists (`ac-discovery-pubkeys`) and trust them for the
    /// image's name before verifying. Never done unless asked.
    pub trust_discovered_keys: bool,
    /// Most bytes downloaded for one image.
    pub max_size: u64,
    /// Also fetch the image's dependencies that the store does not have.
    pub dependencies: bool,
    /// Retries and waits.
    pub retry: RetryPolicy,
    /// Extra transports (tried before the built-in ones), for other URL schemes.
    pub transports: Vec<Arc<dyn Transport>>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            net: NetOptions::default(),
            trust_discovered_keys: false,
            max_size: 64 << 30,
            dependencies: true,
            retry: RetryPolicy::default(),
            transports: Vec::new(),
        }
    }
}

impl FetchOptions {
    /// Sets [`net`](Self::net): the HTTP client's settings.
    pub fn net(mut self, net: NetOptions) -> FetchOptions {
        self.net = net;
        self
    }

    /// Sets [`trust_discovered_keys`](Self::trust_discovered_keys).
    pub fn trust_discovered_keys(mut self, trust: bool) -> FetchOptions {
        self.trust_discovered_keys = trust;
        self
    }

    /// Sets [`max_size`](Self::max_size).
    pub fn max_size(mut self, bytes: u64) -> FetchOptions {
        self.max_size = bytes;
        self
    }

    /// Sets [`dependencies`](Self::dependencies).
    pub fn dependencies(mut self, fetch: bool) -> FetchOptions {
        self.dependencies = fetch;
        self
    }

    /// Sets [`retry`](Self::retry).
    pub fn retry(mut self, retry: RetryPolicy) -> FetchOptions {
        self.retry = retry;
        self
    }

    /// Adds a transport to [`transports`](Self::transports).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> FetchOptions {
        self.transports.push(transport);
        self
    }
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("net", &self.net)
            .field("trust_discovered_keys", &self.trust_discovered_keys)
            .field("max_size", &self.max_size)
            .field("dependencies", &self.dependencies)
            .field("retry", &self.retry)
            .field("transports", &self.transports.len())
            .finish_non_exhaustive()
    }
}

/// How a fetched image was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FetchOutcome {
    /// Downloaded and imported.
    Downloaded,
    /// Downloaded, but the store already had the image.
    AlreadyPresent,
    /// The server said the stored copy is current (HTTP 304).
    NotModified,
    /// The stored copy is within its `max-age`: nothing was requested.
    Cached,
}

/// A key trusted during the fetch (with [`FetchOptions::trust_discovered_keys`]).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KeyAdded {
    /// Where the key came from.
    pub url: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// The prefix it is now trusted for.
    pub prefix: String,
}

/// The result of a fetch.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Fetched {
    /// The image ID.
    pub image_id: ImageId,
    /// The image name.
    pub name: String,
    /// The image URL it came from (the one recorded for caching).
    pub url: Option<String>,
    /// How it was obtained.
    pub outcome: FetchOutcome,
    /// The signature that verified it (`None` when cached, not modified, or unverified).
    pub signature: Option<VerifiedSignature>,
    /// Keys trusted on the way.
    pub keys_added: Vec<KeyAdded>,
    /// Its dependencies, fetched or found in the store, in manifest order.
    pub dependencies: Vec<Fetched>,
}

/// Shared by every image of one fetch call.
pub(crate) struct Session {
    pub store: Store,
    pub client: HttpClient,
    pub transports: Vec<Arc<dyn Transport>>,
    pub options: FetchOptions,
    pub observer: Observer,
}

impl Session {
    /// The transport for `url`'s scheme.
    pub fn transport(&self, url: &url::Url) -> Result<Arc<dyn Transport>> {
        self.transports
            .iter()
            .find(|t| t.handles(url.scheme()))
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("no transport for {}:// URLs ({url})", url.scheme()),
                )
            })
    }
}

impl Store {
    /// Fetches an image (and, unless turned off, its missing dependencies) into the store.
    /// See the [`fetch`](crate::fetch) module for the rules.
    ///
    /// Progress is [`Phase::Download`](crate::progress::Phase) (bytes of each archive) and
    /// the import's phases; a cancelled fetch returns [`ErrorKind::Cancelled`] and leaves
    /// nothing of the image it was fetching (an image already committed while its
    /// dependencies were fetched stays).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-fetch");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// use acikit::trust::{TrustScope, sign_detached};
    /// use acikit::{FetchOptions, FetchOutcome, FetchSource, Observer};
    ///
    /// # let public_key = acikit::testing::EXAMPLE_PUBLIC_KEY.as_bytes();
    /// # let secret_key = acikit::testing::EXAMPLE_SECRET_KEY.as_bytes();
    /// // A signed image: `aci` and `aci.asc` signed by a key the store trusts for `example.com`.
    /// let signature = sign_detached(secret_key, None, std::fs::File::open(&aci).unwrap())?;
    /// std::fs::write(aci.with_extension("aci.asc"), signature).unwrap();
    /// store.trust_to_change()?.add(public_key, TrustScope::prefix("example.com")?)?;
    ///
    /// // An `https://` URL, or a name found by discovery, fetch the same way.
    /// let source = FetchSource::parse(&format!("file://{}", aci.display()), &[])?;
    /// let fetched = store.fetch(source, FetchOptions::default(), Observer::default()).await?;
    /// assert_eq!(fetched.name, "example.com/hello");
    /// assert_eq!(fetched.outcome, FetchOutcome::Downloaded);
    /// assert!(fetched.signature.is_some());
    /// assert_eq!(store.list().await?.len(), 1);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// By name, through meta discovery, from an image repository (here a local
    /// `acikit::Server`: this example runs only with the `server` feature):
    ///
    #[cfg_attr(feature = "server", doc = "```")]
    #[cfg_attr(not(feature = "server"), doc = "```ignore")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-fetch-by-name");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// use acikit::trust::TrustScope;
    /// use acikit::{FetchOptions, FetchSource, Observer};
    ///
    /// # let server = acikit::testing::example_repository(&dir, "example.com/hello").await?;
    /// # let public_key = acikit::testing::EXAMPLE_PUBLIC_KEY.as_bytes();
    /// store.trust_to_change()?.add(public_key, TrustScope::prefix("example.com")?)?;
    /// let mut options = FetchOptions::default();
    /// # options.net = acikit::testing::example_net(&server);
    /// // `options.net` reaches `example.com`, here a local `acikit::Server` over plain HTTP.
    /// let source = FetchSource::parse("example.com/hello:1.0.0", &[])?;
    /// let fetched = store.fetch(source, options, Observer::default()).await?;
    /// assert_eq!(fetched.name, "example.com/hello");
    /// assert!(fetched.url.unwrap().ends_with("/example.com/hello/1.0.0.aci"));
    /// assert!(fetched.signature.is_some());
    /// # server.stop(std::time::Duration::ZERO).await?;
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn fetch(
        &self,
        source: FetchSource,
        options: FetchOptions,
        observer: Observer,
    ) -> impl Future<Output = Result<Fetched>> + Send + 'static {
        let store = self.clone();
        async move { fetch_source(store, source, options, observer).await }
    }
}

/// [`Store::fetch`], owning its inputs.
async fn fetch_source(
    store: Store,
    source: FetchSource,
    options: FetchOptions,
    observer: Observer,
) -> Result<Fetched> {
    store.require_writable("fetch")?;
    observer.check()?;
    let client = HttpClient::new(options.net.clone())?;
    let mut transports = options.transports.clone();
    transports.push(Arc::new(http::HttpTransport::new(client.clone())));
    transports.push(Arc::new(file::FileTransport));
    let session = Session {
        store,
        client,
        transports,
        options,
        observer,
    };
    let mut chain = Vec::new();
    match source {
        FetchSource::Name(image) => {
            let expected = Expected::name(image.name.as_str(), &image.labels)?;
            fetch_named(&session, &image, expected, &mut chain).await
        }
        FetchSource::Url { url, signature } => {
            let url = parse_url(&url)?;
            let signature = match signature {
                Some(s) => parse_url(&s)?,
                None => parse_url(&format!("{url}.asc"))?,
            };
            let fetched =
                image::fetch_endpoint(&session, &url, &signature, &Expected::default()).await?;
            with_dependencies(&session, fetched, &mut chain).await
        }
    }
}

fn parse_url(text: &str) -> Result<url::Url> {
    url::Url::parse(text)
        .map_err(|e| Error::new(ErrorKind::InvalidValue, format!("bad URL {text:?}: {e}")))
}

/// Fetches `image` through discovery: the store's copy when its fetch is within max-age,
/// else each discovered endpoint in order until one works.
async fn fetch_named(
    session: &Session,
    image: &ImageName,
    expected: Expected,
    chain: &mut Vec<String>,
) -> Result<Fetched> {
    let name = image.name.as_str();
    if let Some(fetched) = image::fresh_in_store(session, image, &expected).await? {
        return with_dependencies(session, fetched, chain).await;
    }
    let found = discovery::discover(
        &session.client,
        image,
        &DiscoveryOptions {
            pubkeys: session.options.trust_discovered_keys,
        },
        session.observer.clone(),
    )
    .await?;
    let keys_added = if session.options.trust_discovered_keys {
        trust_keys(session, name, &found.pubkeys).await?
    } else {
        Vec::new()
    };
    let mut failures = Vec::new();
    for endpoint in &found.aci_endpoints {
        let aci = parse_url(&endpoint.aci)?;
        let asc = parse_url(&endpoint.asc)?;
        match image::fetch_endpoint(session, &aci, &asc, &expected).await {
            Ok(mut fetched) => {
                fetched.keys_added = keys_added;
                return with_dependencies(session, fetched, chain).await;
            }
            // Another endpoint may have it; a verification or validation failure stops.
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::Network | ErrorKind::NotFound | ErrorKind::NotReady
                ) =>
            {
                failures.push(format!("{}: {err}", endpoint.aci));
            }
            Err(err) => return Err(err),
        }
    }
    Err(Error::new(
        ErrorKind::Network,
        format!(
            "no endpoint of {name} gave the image: {}",
            failures.join("; ")
        ),
    ))
}

/// Downloads the discovered public keys and trusts them for `name`.
async fn trust_keys(session: &Session, name: &str, urls: &[String]) -> Result<Vec<KeyAdded>> {
    let trust = session.store.trust()?;
    let mut added = Vec::new();
    for url in urls {
        let parsed = parse_url(url)?;
        let transport = session.transport(&parsed)?;
        let bytes = download::read_small(
            &*transport,
            &parsed,
            1 << 20,
            &session.options.retry,
            &session.observer,
        )
        .await?;
        let scope = TrustScope::prefix(name)?;
        let keyring = trust.clone();
        // Parsing the key and writing the keyring: off the runtime.
        let key = blocking(move || keyring.add(&bytes, scope)).await?;
        added.push(KeyAdded {
            url: url.clone(),
            fingerprint: key.fingerprint.clone(),
            prefix: name.to_string(),
        });
    }
    Ok(added)
}

/// Adds `fetched`'s dependencies (fetching those the store does not have).
async fn with_dependencies(
    session: &Session,
    mut fetched: Fetched,
    chain: &mut Vec<String>,
) -> Result<Fetched> {
    if !session.options.dependencies {
        return Ok(fetched);
    }
    let manifest = session.store.manifest(&fetched.image_id).await?;
    let manifest = crate::schema::ImageManifest::parse(&manifest)?;
    if manifest.dependencies.is_empty() {
        return Ok(fetched);
    }
    let here = format!("{} ({})", fetched.name, fetched.image_id);
    if chain.len() >= MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::DependencyCycle,
            format!(
                "dependencies nest deeper than {MAX_DEPTH}: {}",
                chain.join(" -> ")
            ),
        ));
    }
    if chain.contains(&here) {
        chain.push(here);
        return Err(Error::new(
            ErrorKind::DependencyCycle,
            format!("dependency cycle: {}", chain.join(" -> ")),
        ));
    }
    chain.push(here);
    let mut seen = HashSet::new();
    for dep in &manifest.dependencies {
        let labels: Vec<Label> = dep.labels.iter().map(Label::from).collect();
        let expected = Expected::dependency(dep)?;
        let key = format!("{}{labels:?}{:?}", dep.image_name, dep.image_id);
        if !seen.insert(key) {
            continue;
        }
        let found = match &dep.image_id {
            Some(id) => {
                session
                    .store
                    .resolve(&ImageQuery::Id(id.clone().into()))
                    .await
            }
            None => {
                session
                    .store
                    .resolve(&ImageQuery::Name(ImageName::new(
                        dep.image_name.clone(),
                        labels.clone(),
                    )))
                    .await
            }
        };
        let child = match found {
            Ok(info) => {
                expected.check_stored(&info)?;
                let stored = Fetched {
                    image_id: info.image_id.clone(),
                    name: info.name.clone(),
                    url: None,
                    outcome: FetchOutcome::Cached,
                    signature: None,
                    keys_added: Vec::new(),
                    dependencies: Vec::new(),
                };
                Box::pin(with_dependencies(session, stored, chain)).await?
            }
            Err(err) if err.kind() == ErrorKind::NotFound => Box::pin(fetch_named(
                session,
                &ImageName::new(dep.image_name.clone(), labels),
                expected,
                chain,
            ))
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "dependency {} of {}: {}",
                        dep.image_name,
                        fetched.name,
                        e.message()
                    ),
                )
            })?,
            Err(err) => return Err(err),
        };
        fetched.dependencies.push(child);
    }
    chain.pop();
    Ok(fetched)
}

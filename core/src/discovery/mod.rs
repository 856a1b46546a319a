//! appc meta discovery: from an image name and labels to image, signature and key URLs.
//!
//! [`discover`] fetches `https://{name}?ac-discovery=1` and its parent paths
//! (`walk`), reads the `ac-discovery` / `ac-discovery-pubkeys` meta tags (`meta`) and
//! renders the URL templates (`template`) with the name and labels. Labels default to
//! `version=latest` and the host's `os` and `arch` in appc spelling ([`host_os_arch`]).

pub(crate) mod meta;
pub(crate) mod template;
pub(crate) mod walk;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::net::HttpClient;
use crate::progress::Observer;
use crate::schema::{AcIdentifier, ImageName, Label};
use crate::{Error, ErrorKind, Result};

/// One place an image can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AciEndpoint {
    /// The image URL (template rendered with `{ext}` = `aci`).
    pub aci: String,
    /// The signature URL (`{ext}` = `aci.asc`).
    pub asc: String,
}

impl AciEndpoint {
    /// The endpoint of image URL `aci` and signature URL `asc`.
    pub fn new(aci: impl Into<String>, asc: impl Into<String>) -> AciEndpoint {
        AciEndpoint {
            aci: aci.into(),
            asc: asc.into(),
        }
    }
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Discovered {
    /// The image name discovered.
    pub name: String,
    /// The labels the templates were rendered with (defaults included).
    pub labels: BTreeMap<String, String>,
    /// Image endpoints in document order, without repeats (never empty).
    pub aci_endpoints: Vec<AciEndpoint>,
    /// Public key URLs in document order, without repeats (may be empty).
    pub pubkeys: Vec<String>,
    /// Every discovery URL requested, in order.
    pub tried: Vec<String>,
}

/// Options of one discovery.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    /// Keep walking up for `ac-discovery-pubkeys` after the image endpoints are found
    /// (default `true`; fetch turns it off when the keys are already trusted).
    pub pubkeys: bool,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions { pubkeys: true }
    }
}

impl DiscoveryOptions {
    /// Sets [`pubkeys`](Self::pubkeys).
    pub fn pubkeys(mut self, pubkeys: bool) -> DiscoveryOptions {
        self.pubkeys = pubkeys;
        self
    }
}

/// Discovers the endpoints of `image`: its name (an AC identifier such as
/// `example.com/app`) with its labels (later labels win over earlier ones).
/// `observer` cancels the walk (no progress is reported: it is a few small requests).
///
/// Errors: a bad label name is [`ErrorKind::InvalidValue`]; a label named `name`
/// or `ext` is [`ErrorKind::InvalidArgument`]; no endpoint at any level is
/// [`ErrorKind::DiscoveryFailed`] (the message lists every URL tried and why it gave
/// nothing); [`ErrorKind::InsecureRefused`] and [`ErrorKind::Cancelled`] stop the walk.
///
/// The example asks a local image repository (`acikit::Server`), so it runs only
/// with the `server` feature (without it, it is shown but not run):
///
#[cfg_attr(feature = "server", doc = "```")]
#[cfg_attr(not(feature = "server"), doc = "```ignore")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> acikit::Result<()> {
/// # let dir = acikit::testing::example_dir("discover");
/// use acikit::discovery::{DiscoveryOptions, discover};
/// use acikit::net::HttpClient;
/// use acikit::{ImageName, Observer};
///
/// # let server = acikit::testing::example_repository(&dir, "example.com/hello").await?;
/// # let net = acikit::testing::example_net(&server);
/// // `net`: the client's options; here `example.com` is a local `acikit::Server` (plain HTTP).
/// let client = HttpClient::new(net)?;
/// let image = ImageName::parse("example.com/hello:1.0.0", &[])?;
/// let found = discover(&client, &image, &DiscoveryOptions::default(), Observer::default()).await?;
/// assert_eq!(found.aci_endpoints.len(), 1);
/// assert!(found.aci_endpoints[0].aci.ends_with("/example.com/hello/1.0.0.aci"));
/// assert!(found.pubkeys[0].ends_with("/pubkeys.asc"));
/// assert_eq!(found.labels["version"], "1.0.0");
/// # server.stop(std::time::Duration::ZERO).await?;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub fn discover(
    client: &HttpClient,
    image: &ImageName,
    options: &DiscoveryOptions,
    observer: Observer,
) -> impl Future<Output = Result<Discovered>> + Send + 'static {
    let (client, image, pubkeys) = (client.clone(), image.clone(), options.pubkeys);
    async move {
        let name = image.name.as_str();
        let mut vars = effective_labels(&image.labels)?;
        vars.insert("name".to_string(), name.to_string());
        walk::walk(&client, name, &vars, pubkeys, &observer).await
    }
}

/// The labels templates are rendered with: `labels` (later ones win), plus
/// `version=latest`, and the host's `os` and `arch` when absent. An empty `version`
/// counts as absent, as in the reference.
///
/// ```
/// use acikit::Label;
/// use acikit::discovery::{effective_labels, host_os_arch};
///
/// let labels = effective_labels(&[Label::new("version", ""), Label::new("channel", "beta")])?;
/// assert_eq!(labels["version"], "latest");
/// assert_eq!(labels["channel"], "beta");
/// assert_eq!(labels["os"], host_os_arch().0);
/// // `name` and `ext` are discovery's own.
/// assert!(effective_labels(&[Label::new("ext", "tgz")]).is_err());
/// # Ok::<(), acikit::Error>(())
/// ```
pub fn effective_labels(labels: &[Label]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for Label { name: key, value } in labels {
        if key == "name" || key == "ext" {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{key:?} is not a label: it is set by discovery itself"),
            ));
        }
        AcIdentifier::parse(key)?;
        out.insert(key.clone(), value.clone());
    }
    let (os, arch) = host_os_arch();
    if out.get("version").is_none_or(|v| v.is_empty()) {
        out.insert("version".to_string(), "latest".to_string());
    }
    out.entry("os".to_string())
        .or_insert_with(|| os.to_string());
    out.entry("arch".to_string())
        .or_insert_with(|| arch.to_string());
    Ok(out)
}

/// The host's `os` and `arch` in appc spelling (as the reference's `ToAppcOSArch`):
/// `linux`/`freebsd`/`darwin`; `amd64` (`x86_64` on darwin), `i386`, `aarch64`,
/// `armv6l`/`armv7l` (`arm` on freebsd), `ppc64`/`ppc64le`, `s390x`. Other platforms
/// give Rust's own names.
///
/// ```
/// let (os, arch) = acikit::discovery::host_os_arch();
/// # #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
/// assert_eq!((os, arch), ("linux", "amd64"));
/// # let _ = (os, arch);
/// ```
pub fn host_os_arch() -> (&'static str, &'static str) {
    use std::env::consts::{ARCH, OS};
    let os = match OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match (os, ARCH) {
        ("darwin", "x86_64") => "x86_64",
        (_, "x86_64") => "amd64",
        (_, "x86") => "i386",
        (_, "aarch64") => "aarch64",
        ("freebsd", "arm") => "arm",
        (_, "arm") if cfg!(target_feature = "v7") => "armv7l",
        (_, "arm") => "armv6l",
        (_, "powerpc64") if cfg!(target_endian = "little") => "ppc64le",
        (_, "powerpc64") => "ppc64",
        (_, other) => other,
    };
    (os, arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<Label> {
        p.iter().map(|(k, v)| Label::new(*k, *v)).collect()
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let labels = effective_labels(&[]).unwrap();
        assert_eq!(labels["version"], "latest");
        assert_eq!(labels["os"], host_os_arch().0);
        assert_eq!(labels["arch"], host_os_arch().1);
        let labels = effective_labels(&pairs(&[
            ("version", "1.0"),
            ("os", "freebsd"),
            ("arch", "arm"),
            ("version", "2.0"),
            ("channel", "beta"),
        ]))
        .unwrap();
        assert_eq!(labels["version"], "2.0", "later pairs win");
        assert_eq!(labels["os"], "freebsd");
        assert_eq!(labels["arch"], "arm");
        assert_eq!(labels["channel"], "beta");
        let labels = effective_labels(&pairs(&[("version", "")])).unwrap();
        assert_eq!(labels["version"], "latest");
    }

    #[test]
    fn rejects_reserved_and_bad_label_names() {
        for (key, kind) in [
            ("name", ErrorKind::InvalidArgument),
            ("ext", ErrorKind::InvalidArgument),
            ("Bad Key", ErrorKind::InvalidValue),
        ] {
            let err = effective_labels(&pairs(&[(key, "x")])).unwrap_err();
            assert_eq!(err.kind(), kind, "{key}");
        }
    }

    #[test]
    fn host_values_are_appc_spelling() {
        let (os, arch) = host_os_arch();
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!((os, arch), ("linux", "amd64"));
        }
        if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
            assert_eq!((os, arch), ("linux", "aarch64"));
        }
        assert!(!os.is_empty() && !arch.is_empty());
    }
}

//! [`NetOptions`]: everything an [`HttpClient`](super::HttpClient) is built from, and the
//! [`InsecureOptions`] parser for the `http,tls,image` spelling.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::auth::AuthConfig;
use crate::{Error, ErrorKind, Result};

/// The user agent sent by default: `acikit/<version>`.
pub const USER_AGENT: &str = concat!("acikit/", env!("CARGO_PKG_VERSION"));

/// What the caller allows that is not safe. Nothing is allowed by default.
///
/// Spelled as a comma-separated list of `http`, `tls` and `image` (or `none`), as
/// `--insecure-options http,tls` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct InsecureOptions {
    /// Plain HTTP may be used: for discovery (after HTTPS fails), for URLs given as
    /// `http://`, and for redirects from HTTPS to HTTP. Credentials are then also sent
    /// over plain HTTP.
    pub http: bool,
    /// TLS certificates are not verified at all (any certificate, any host name).
    pub tls: bool,
    /// Images may be used without a verified signature (checked by fetch, not here).
    pub image: bool,
}

impl InsecureOptions {
    /// Nothing insecure (the default).
    pub const NONE: InsecureOptions = InsecureOptions {
        http: false,
        tls: false,
        image: false,
    };

    /// Parses `http,tls,image` (any subset, any order, repeats allowed) or `none`.
    /// An empty list and unknown words are [`ErrorKind::InvalidArgument`].
    ///
    /// ```
    /// use acikit::net::InsecureOptions;
    ///
    /// let options = InsecureOptions::parse("image, http")?;
    /// assert!(options.http && options.image && !options.tls);
    /// assert_eq!(options.to_string(), "http,image");
    /// assert!(InsecureOptions::parse("none")?.is_none());
    /// assert!(InsecureOptions::parse("none,http").is_err());
    /// assert!(InsecureOptions::parse("everything").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<InsecureOptions> {
        let mut options = InsecureOptions::NONE;
        let mut saw_none = false;
        let mut saw_other = false;
        for word in text.split(',').map(str::trim) {
            match word {
                "none" => saw_none = true,
                "http" => options.http = true,
                "tls" => options.tls = true,
                "image" => options.image = true,
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "unknown insecure option {other:?} in {text:?}: expected a \
                             comma-separated list of http, tls, image, or none"
                        ),
                    ));
                }
            }
            saw_other |= word != "none";
        }
        if saw_none && saw_other {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("insecure options {text:?}: `none` cannot be combined with other options"),
            ));
        }
        Ok(options)
    }

    /// Whether nothing insecure is allowed.
    pub fn is_none(&self) -> bool {
        *self == InsecureOptions::NONE
    }
}

impl FromStr for InsecureOptions {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        InsecureOptions::parse(s)
    }
}

impl fmt::Display for InsecureOptions {
    /// The canonical spelling: `none`, or the allowed options in the order `http,tls,image`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = [
            (self.http, "http"),
            (self.tls, "tls"),
            (self.image, "image"),
        ]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect();
        if words.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&words.join(","))
        }
    }
}

/// An extra trusted CA certificate (or bundle), PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaCert {
    /// The PEM text itself.
    Pem(Vec<u8>),
    /// A PEM file, read when the client is built.
    Path(PathBuf),
}

/// How an [`HttpClient`](super::HttpClient) talks to servers.
///
/// The default trusts the platform's roots, allows nothing insecure, sends no
/// credentials, follows at most [`NetOptions::DEFAULT_MAX_REDIRECTS`] redirects and
/// uses port 443 (or 80) for discovery.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetOptions {
    /// Extra trusted CA certificates, added to the platform's roots.
    pub ca_certs: Vec<CaCert>,
    /// What is allowed that is not safe.
    pub insecure: InsecureOptions,
    /// The port discovery connects to (`https://{name}?ac-discovery=1` on this port),
    /// as `actool discover --port` does; `None` for the scheme's default.
    pub port: Option<u16>,
    /// Per-host credentials.
    pub auth: AuthConfig,
    /// Most redirects followed for one request.
    pub max_redirects: usize,
    /// Longest wait to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (headers or body) once connected.
    pub read_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Host names resolved to fixed addresses instead of DNS (the port of the address is
    /// ignored: the URL's port is used). For tests and private setups.
    pub resolve: Vec<(String, SocketAddr)>,
}

impl NetOptions {
    /// The default for [`NetOptions::max_redirects`].
    pub const DEFAULT_MAX_REDIRECTS: usize = 10;
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            ca_certs: Vec::new(),
            insecure: InsecureOptions::NONE,
            port: None,
            auth: AuthConfig::default(),
            max_redirects: NetOptions::DEFAULT_MAX_REDIRECTS,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            user_agent: USER_AGENT.to_string(),
            resolve: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spelled_out_list() {
        let all = InsecureOptions::parse("http,tls,image").unwrap();
        assert!(all.http && all.tls && all.image);
        let some = InsecureOptions::parse(" tls , http,tls").unwrap();
        assert_eq!(
            some,
            InsecureOptions {
                http: true,
                tls: true,
                image: false
            }
        );
        assert_eq!(some.to_string(), "http,tls");
        assert!(InsecureOptions::parse("none").unwrap().is_none());
        assert_eq!(InsecureOptions::NONE.to_string(), "none");
        assert_eq!(InsecureOptions::default(), InsecureOptions::NONE);
    }

    #[test]
    fn rejects_unknown_words_and_mixtures() {
        for bad in [
            "",
            "all",
            "http,",
            "HTTP",
            "http,ssl",
            "none,http",
            "image;tls",
        ] {
            let err = InsecureOptions::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_safe() {
        let options = NetOptions::default();
        assert!(options.insecure.is_none());
        assert_eq!(options.max_redirects, 10);
        assert!(options.user_agent.starts_with("acikit/"));
        assert!(options.port.is_none());
    }
}

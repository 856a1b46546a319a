//! Per-host credentials ([`AuthConfig`]), read from a JSON file such as
//! `STORE/config/auth.json`:
//!
//! ```json
//! {
//!   "registry.example.com": {"type": "basic", "user": "alice", "password": "s3cret"},
//!   "private.example.com:8443": {"type": "bearer", "token": "eyJhbGciOi..."}
//! }
//! ```
//!
//! A key is a host name (any port) or `host:port` (that port only; the default port of
//! the scheme counts when the URL names none). `host:port` wins over `host`. Host names
//! are compared without case. Secrets never appear in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use reqwest::header::HeaderValue;
use serde::Deserialize;
use url::Url;

use crate::{Error, ErrorKind, Result};

/// The credentials for one host.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Credential {
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A bearer token (`Authorization: Bearer TOKEN`).
    Bearer {
        /// The token.
        token: String,
    },
}

impl Credential {
    /// The `Authorization` header value (marked sensitive).
    pub fn header_value(&self) -> Result<HeaderValue> {
        let text = match self {
            Credential::Basic { user, password } => {
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
            }
            Credential::Bearer { token } => format!("Bearer {token}"),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                "a credential holds characters an HTTP header cannot carry",
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Credential::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Credentials by host (`host` or `host:port`, lowercase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthConfig {
    hosts: BTreeMap<String, Credential>,
}

impl AuthConfig {
    /// No credentials at all.
    pub fn new() -> Self {
        AuthConfig::default()
    }

    /// Reads the JSON file at `path`. A missing file is [`ErrorKind::NotFound`]; bad JSON,
    /// an unknown `type` or a bad host key is [`ErrorKind::InvalidArgument`].
    pub fn load(path: &Path) -> Result<AuthConfig> {
        AuthConfig::from_file_bytes(path, std::fs::read(path))
    }

    /// Reads the JSON file at `path` if there is one; no file means no credentials. This is
    /// how a store's own `config/auth.json` ([`crate::Store::auth_config_path`]) is read
    /// when the caller names no file: bad JSON there is still an error.
    ///
    /// ```
    /// let dir = acikit::testing::example_dir("auth-if-present");
    /// let none = acikit::net::AuthConfig::load_if_present(&dir.join("auth.json"))?;
    /// assert_eq!(none, acikit::net::AuthConfig::new());
    /// std::fs::write(dir.join("auth.json"), r#"{"example.com": {"type": "bearer", "token": "t"}}"#)?;
    /// let some = acikit::net::AuthConfig::load_if_present(&dir.join("auth.json"))?;
    /// assert_ne!(some, none);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_if_present(path: &Path) -> Result<AuthConfig> {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthConfig::new()),
            read => AuthConfig::from_file_bytes(path, read),
        }
    }

    /// The outcome of reading `path`, parsed, errors naming the file.
    fn from_file_bytes(path: &Path, read: std::io::Result<Vec<u8>>) -> Result<AuthConfig> {
        let bytes =
            read.map_err(|e| Error::io(format!("reading auth config {}", path.display()), e))?;
        AuthConfig::from_json(&bytes).map_err(|e| {
            Error::new(
                e.kind(),
                format!("auth config {}: {}", path.display(), e.message()),
            )
        })
    }

    /// Parses the JSON form (an object mapping hosts to credentials).
    pub fn from_json(bytes: &[u8]) -> Result<AuthConfig> {
        let raw: BTreeMap<String, Credential> = serde_json::from_slice(bytes)
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, e.to_string()))?;
        let mut config = AuthConfig::new();
        for (host, credential) in raw {
            config.insert(&host, credential)?;
        }
        Ok(config)
    }

    /// Adds (or replaces) the credentials of `host` (`name` or `name:port`).
    pub fn insert(&mut self, host: &str, credential: Credential) -> Result<()> {
        let key = host.trim().to_ascii_lowercase();
        let valid = !key.is_empty()
            && !key.contains(['/', '@', '?', '#', ' '])
            && Url::parse(&format!("https://{key}/")).is_ok_and(|u| {
                let Some(h) = u.host_str() else { return false };
                match u.port() {
                    Some(p) => key == format!("{h}:{p}"),
                    None => key == h || key.strip_suffix(":443") == Some(h),
                }
            });
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{host:?} is not a host name or host:port"),
            ));
        }
        self.hosts.insert(key, credential);
        Ok(())
    }

    /// Whether no host has credentials.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The hosts that have credentials (keys as stored).
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(String::as_str)
    }

    /// The credentials for `url`'s host: the `host:port` entry, else the `host` entry.
    pub fn credential_for(&self, url: &Url) -> Option<&Credential> {
        let host = url.host_str()?.to_ascii_lowercase();
        if let Some(port) = url.port_or_known_default()
            && let Some(c) = self.hosts.get(&format!("{host}:{port}"))
        {
            return Some(c);
        }
        self.hosts.get(&host)
    }
}

/// Standard base64 with padding (for basic authentication).
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn parses_basic_and_bearer() {
        let config = AuthConfig::from_json(
            br#"{"Example.com": {"type": "basic", "user": "alice", "password": "pw"},
                 "example.com:8443": {"type": "bearer", "token": "tok"}}"#,
        )
        .unwrap();
        let basic = config
            .credential_for(&Url::parse("https://example.com/x").unwrap())
            .unwrap();
        assert_eq!(
            basic.header_value().unwrap(),
            "Basic YWxpY2U6cHc=",
            "alice:pw in base64"
        );
        let bearer = config
            .credential_for(&Url::parse("https://EXAMPLE.com:8443/x").unwrap())
            .unwrap();
        assert_eq!(bearer.header_value().unwrap(), "Bearer tok");
        assert!(
            config
                .credential_for(&Url::parse("https://other.com/").unwrap())
                .is_none()
        );
        assert!(!format!("{config:?}").contains("pw"));
        assert!(!format!("{config:?}").contains("tok\""));
    }

    #[test]
    fn host_port_key_matches_only_that_port() {
        let config =
            AuthConfig::from_json(br#"{"example.com:8443": {"type": "bearer", "token": "t"}}"#)
                .unwrap();
        assert!(
            config
                .credential_for(&Url::parse("https://example.com/").unwrap())
                .is_none()
        );
        assert!(
            config
                .credential_for(&Url::parse("https://example.com:8443/").unwrap())
                .is_some()
        );
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            &br#"{"example.com": {"type": "digest", "user": "a"}}"#[..],
            br#"{"example.com": {"type": "basic", "user": "a"}}"#,
            br#"{"https://example.com/": {"type": "bearer", "token": "t"}}"#,
            br#"{"a@b": {"type": "bearer", "token": "t"}}"#,
            br#"{"": {"type": "bearer", "token": "t"}}"#,
            br#"["example.com"]"#,
            b"not json",
        ] {
            let err = AuthConfig::from_json(bad).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidArgument,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn load_if_present_reads_no_file_as_none_and_a_bad_one_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        assert_eq!(
            AuthConfig::load_if_present(&path).unwrap(),
            AuthConfig::new()
        );
        std::fs::write(&path, "{not json").unwrap();
        let err = AuthConfig::load_if_present(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("auth.json"), "{err}");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = AuthConfig::load_if_present(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert_eq!(
            AuthConfig::load(&dir.path().join("missing"))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }
}

//! Network options from JS: `{ insecure?, port?, resolve? }` to the core's `NetOptions`.

use std::path::Path;

use acikit::net::{AuthConfig, InsecureOptions, NetOptions};
use acikit::{Error, ErrorKind};
use napi_derive::napi;

/// A host name answered with a fixed address, as curl's `--resolve` does.
#[napi(object)]
pub struct ResolveEntry {
    /// The host name.
    pub host: String,
    /// `IP:PORT` to connect to.
    pub address: String,
}

/// The network options a fetch or a discovery may take.
#[napi(object)]
#[derive(Default)]
pub struct NetArgs {
    /// What may be insecure, as `--insecure-options` reads it (`http`, `tls`, `image`,
    /// `all`, comma-separated).
    pub insecure: Option<String>,
    /// The port of discovery and image URLs without one.
    pub port: Option<u32>,
    /// Host names answered with fixed addresses.
    pub resolve: Option<Vec<ResolveEntry>>,
    /// A JSON file of per-host credentials (basic or bearer by host); without one, a
    /// store's fetch reads the store's `config/auth.json` if it exists.
    pub auth_config: Option<String>,
}

impl NetArgs {
    /// The core's options, or an `invalid_argument` error; credentials only from
    /// `auth_config` (discover, push).
    pub fn to_options(self) -> acikit::Result<NetOptions> {
        self.into_options_with(None)
    }

    /// The core's options for a call on `store`: without `auth_config`, the credentials
    /// are the store's own `config/auth.json` when it exists (as the CLI reads them).
    pub fn to_store_options(self, store: &acikit::Store) -> acikit::Result<NetOptions> {
        self.into_options_with(Some(&store.auth_config_path()))
    }

    /// The core's options; credentials from `auth_config` (a missing file is an error),
    /// else from `fallback` if that file exists, else none.
    fn into_options_with(self, fallback: Option<&Path>) -> acikit::Result<NetOptions> {
        let mut options = NetOptions::default();
        options.auth = match (&self.auth_config, fallback) {
            (Some(path), _) => AuthConfig::load(Path::new(path))?,
            (None, Some(path)) => AuthConfig::load_if_present(path)?,
            (None, None) => AuthConfig::new(),
        };
        if let Some(text) = &self.insecure {
            options.insecure = InsecureOptions::parse(text)?;
        }
        if let Some(port) = self.port {
            let port = u16::try_from(port)
                .map_err(|_| Error::new(ErrorKind::InvalidArgument, format!("bad port {port}")))?;
            options.port = Some(port);
        }
        for entry in self.resolve.unwrap_or_default() {
            let address = entry.address.parse().map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("bad address {:?} for {}: {e}", entry.address, entry.host),
                )
            })?;
            options.resolve.push((entry.host, address));
        }
        Ok(options)
    }
}

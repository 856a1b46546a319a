//! Network options from JS: `{ insecure?, port?, resolve? }` to the core's `NetOptions`.

use acikit::net::{InsecureOptions, NetOptions};
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
}

impl NetArgs {
    /// The core's options, or an `invalid_argument` error.
    pub fn to_options(self) -> acikit::Result<NetOptions> {
        let mut options = NetOptions::default();
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

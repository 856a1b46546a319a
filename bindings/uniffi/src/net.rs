//! Network options of discovery and fetch.

use std::collections::HashMap;

/// How to reach image servers (discovery and fetch).
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct NetOptions {
    /// Plain HTTP may be used (discovery after HTTPS fails, `http://` URLs).
    #[uniffi(default = false)]
    pub insecure_http: bool,
    /// TLS certificates are not verified at all.
    #[uniffi(default = false)]
    pub insecure_tls: bool,
    /// Images may be used without a verified signature.
    #[uniffi(default = false)]
    pub insecure_image: bool,
    /// The port discovery connects to; none for the scheme's default.
    #[uniffi(default = None)]
    pub port: Option<u16>,
    /// Host names resolved to fixed addresses (`host` to `ip:port`; the URL's port is
    /// used), for tests and private setups.
    #[uniffi(default)]
    pub resolve: HashMap<String, String>,
}

/// The core's options for these.
pub(crate) fn net_options(o: NetOptions) -> acikit::Result<acikit::net::NetOptions> {
    let mut options = acikit::net::NetOptions::default();
    options.insecure.http = o.insecure_http;
    options.insecure.tls = o.insecure_tls;
    options.insecure.image = o.insecure_image;
    options.port = o.port;
    for (host, addr) in o.resolve {
        let addr = addr.parse().map_err(|_| {
            acikit::Error::new(
                acikit::ErrorKind::InvalidArgument,
                format!("{addr} is not an address (ip:port) for {host}"),
            )
        })?;
        options.resolve.push((host, addr));
    }
    Ok(options)
}

/// An HTTP client with these options.
pub(crate) fn client(o: NetOptions) -> acikit::Result<acikit::net::HttpClient> {
    acikit::net::HttpClient::new(net_options(o)?)
}

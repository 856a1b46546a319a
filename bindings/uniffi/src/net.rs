//! Network options of discovery and fetch.

use std::collections::HashMap;

use acikit::net::AuthConfig;

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
    /// A JSON file of per-host credentials (`acikit::net::AuthConfig`'s format: basic or
    /// bearer by host). None: a store's fetch reads the store's `config/auth.json` if it
    /// exists; `discover` and `push` send none. (A push's upload always carries its push
    /// token instead.)
    #[uniffi(default = None)]
    pub auth_config: Option<String>,
}

/// The core's options for these, the credentials read from `auth_config` if given.
pub(crate) fn net_options(o: NetOptions) -> acikit::Result<acikit::net::NetOptions> {
    net_options_or(o, None)
}

/// The core's options for a call on `store`: without `auth_config`, the credentials are
/// the store's own file (`config/auth.json`) when there is one, as the CLI reads them.
pub(crate) fn store_net_options(
    o: NetOptions,
    store: &acikit::Store,
) -> acikit::Result<acikit::net::NetOptions> {
    net_options_or(o, Some(&store.auth_config_path()))
}

/// The core's options; credentials from `o.auth_config` (a missing file is an error),
/// else from `fallback` if that file exists, else none.
fn net_options_or(
    o: NetOptions,
    fallback: Option<&std::path::Path>,
) -> acikit::Result<acikit::net::NetOptions> {
    let mut options = acikit::net::NetOptions::default();
    options.auth = match (&o.auth_config, fallback) {
        (Some(path), _) => AuthConfig::load(std::path::Path::new(path))?,
        (None, Some(path)) => AuthConfig::load_if_present(path)?,
        (None, None) => AuthConfig::new(),
    };
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

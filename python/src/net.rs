//! Network options of `fetch`, `discover` and `push`, from the Python arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use acikit::net::{AuthConfig, CaCert, InsecureOptions, NetOptions};
use pyo3::prelude::*;

use crate::errors::IntoPyResult;

/// The per-host credentials: the JSON file `given` (it must exist), else the file at
/// `default` if there is one (a store's `config/auth.json`), else none. A bad file is an
/// error naming it.
pub fn auth_config(given: Option<PathBuf>, default: Option<PathBuf>) -> PyResult<AuthConfig> {
    match (given, default) {
        (Some(path), _) => AuthConfig::load(&path).py(),
        (None, Some(path)) => AuthConfig::load_if_present(&path).py(),
        (None, None) => Ok(AuthConfig::new()),
    }
}

/// `insecure` (the core's comma-separated list: `http`, `tls`, `image` or `none`), the
/// discovery `port`, host names resolved to addresses (`host -> "ip:port"`), extra CA
/// certificate files and the credentials (see [`auth_config`]).
pub fn net_options(
    insecure: &str,
    port: Option<u16>,
    resolve: Vec<(String, String)>,
    ca_certs: Vec<PathBuf>,
    auth: AuthConfig,
) -> PyResult<NetOptions> {
    let mut options = NetOptions::default();
    options.auth = auth;
    options.insecure = InsecureOptions::parse(insecure).py()?;
    options.port = port;
    options.ca_certs = ca_certs.into_iter().map(CaCert::Path).collect();
    for (host, addr) in resolve {
        let addr: SocketAddr = addr.parse().map_err(|_| {
            crate::errors::to_py_err(acikit::Error::new(
                acikit::ErrorKind::InvalidArgument,
                format!("resolve: {addr:?} for {host} is not an ip:port address"),
            ))
        })?;
        options.resolve.push((host, addr));
    }
    Ok(options)
}

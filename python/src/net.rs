//! Network options of `fetch`, `discover` and `push`, from the Python arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use acikit::net::{CaCert, InsecureOptions, NetOptions};
use pyo3::prelude::*;

use crate::errors::IntoPyResult;

/// `insecure` (the core's comma-separated list: `http`, `tls`, `image` or `none`), the
/// discovery `port`, host names resolved to addresses (`host -> "ip:port"`) and extra CA
/// certificate files.
pub fn net_options(
    insecure: &str,
    port: Option<u16>,
    resolve: Vec<(String, String)>,
    ca_certs: Vec<PathBuf>,
) -> PyResult<NetOptions> {
    let mut options = NetOptions::default();
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

//! The module's free functions: inspect (validate, image ID, manifest), build, sign,
//! discover and push, each returning a [`Call`].

use std::path::PathBuf;

use acikit::discovery::{DiscoveryOptions, discover as core_discover};
use acikit::net::HttpClient;
use acikit::{BuildCompression, Builder, ImageName, Limits, inspect_file};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::call::observed;
use crate::convert::{output, to_py};
use crate::errors::IntoPyResult;
use crate::net::{auth_config, net_options};
use crate::runtime::Call;
use crate::store::labels;

/// Validates the archive at `path`: the inspection (image ID, sizes) with its manifest's
/// bytes as `manifest`.
#[pyfunction]
#[pyo3(signature = (path, progress=None))]
pub fn inspect(path: PathBuf, progress: Option<Py<PyAny>>) -> Call {
    observed(
        progress,
        |obs| inspect_file(path, Limits::default(), obs),
        |inspection| {
            Box::new(move |py| {
                let value = to_py(py, &inspection)?;
                let dict = value.bind(py).cast::<PyDict>()?;
                dict.set_item(
                    "manifest",
                    pyo3::types::PyBytes::new(py, inspection.manifest.raw()),
                )?;
                Ok(value)
            })
        },
    )
}

/// Builds the image layout `layout` into the archive `out`.
#[pyfunction]
#[pyo3(signature = (layout, out, compression, mtime=None, progress=None))]
pub fn build(
    layout: PathBuf,
    out: PathBuf,
    compression: &str,
    mtime: Option<i64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Call> {
    let compression: BuildCompression = compression.parse().py()?;
    let builder = Builder::new().compression(compression).mtime_clamp(mtime);
    Ok(observed(
        progress,
        |obs| builder.build(layout, out, obs),
        output,
    ))
}

/// A detached, armored signature of the file at `path` by the armored secret key `key`.
#[pyfunction]
#[pyo3(signature = (path, key, passphrase=None, progress=None))]
pub fn sign(
    path: PathBuf,
    key: Vec<u8>,
    passphrase: Option<String>,
    progress: Option<Py<PyAny>>,
) -> Call {
    observed(
        progress,
        |obs| acikit::trust::sign_file(path, key, passphrase, obs),
        |signed| crate::convert::bytes(signed.armored),
    )
}

/// Meta discovery of `name` with `labels`, with the credentials of the file
/// `auth_config` (default: none); `progress` gets `discover` events (levels walked).
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (name, labels, insecure, port, resolve, ca_certs, pubkeys=true, auth_config=None, progress=None))]
pub fn discover(
    name: String,
    labels: Vec<(String, String)>,
    insecure: String,
    port: Option<u16>,
    resolve: Vec<(String, String)>,
    ca_certs: Vec<PathBuf>,
    pubkeys: bool,
    auth_config: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Call> {
    let image = ImageName::parse(&name, &self::labels(labels)).py()?;
    let auth = self::auth_config(auth_config, None)?;
    let client = HttpClient::new(net_options(&insecure, port, resolve, ca_certs, auth)?).py()?;
    let options = DiscoveryOptions::default().pubkeys(pubkeys);
    Ok(observed(
        progress,
        |obs| core_discover(&client, &image, &options, obs),
        output,
    ))
}

/// Pushes the archive at `path` (with its armored `signature`) to the repository at `url`,
/// with the credentials of the file `auth_config` (default: none) besides the push token.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (url, path, token, signature=None, insecure=String::from("none"), ca_certs=Vec::new(), auth_config=None, progress=None))]
pub fn push(
    url: String,
    path: PathBuf,
    token: String,
    signature: Option<Vec<u8>>,
    insecure: String,
    ca_certs: Vec<PathBuf>,
    auth_config: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Call> {
    let auth = self::auth_config(auth_config, None)?;
    let client = HttpClient::new(net_options(&insecure, None, Vec::new(), ca_certs, auth)?).py()?;
    Ok(observed(
        progress,
        |obs| acikit::serve::push_file(&client, &url, &path, signature.as_deref(), &token, obs),
        output,
    ))
}

//! `acikit._native.Server`: an image repository over a store, running on the runtime.

use std::sync::Mutex;
use std::time::Duration;

use acikit::{RunningServer, ServeOptions, Server};
use pyo3::prelude::*;

use crate::call::plain;
use crate::convert::none;
use crate::errors::to_py_err;
use crate::runtime::Call;
use crate::store::NativeStore;

/// A running server (until `stop()`).
#[pyclass(module = "acikit._native", name = "Server", frozen)]
pub struct NativeServer {
    running: Mutex<Option<RunningServer>>,
    address: String,
}

/// Starts serving `store` on `listen` (`host:port`, port 0 for any free one).
#[pyfunction]
#[pyo3(signature = (store, listen, push_token=None, require_signature=false, hosts=Vec::new()))]
pub fn serve(
    store: &NativeStore,
    listen: &str,
    push_token: Option<String>,
    require_signature: bool,
    hosts: Vec<String>,
) -> PyResult<Call> {
    let store = store.store()?;
    let addr = listen.parse().map_err(|_| {
        to_py_err(acikit::Error::new(
            acikit::ErrorKind::InvalidArgument,
            format!("listen: {listen:?} is not a host:port address"),
        ))
    })?;
    let mut options = ServeOptions::new(addr);
    options.push_token = push_token;
    options.require_signature = require_signature;
    options.hosts = hosts;
    Ok(plain(Server::new(store, options).start(), |running| {
        Box::new(move |py| {
            let address = running.local_addr().to_string();
            let server = NativeServer {
                running: Mutex::new(Some(running)),
                address,
            };
            Ok(Py::new(py, server)?.into_any())
        })
    }))
}

#[pymethods]
impl NativeServer {
    /// The address it listens on (`ip:port`).
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// Stops the server, letting requests in flight finish for at most `grace` seconds;
    /// stopping again does nothing.
    #[pyo3(signature = (grace=5.0))]
    fn stop(&self, grace: f64) -> Call {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let grace = Duration::from_secs_f64(grace.max(0.0));
        plain(
            async move {
                match running {
                    Some(server) => server.stop(grace).await,
                    None => Ok(()),
                }
            },
            |()| none(),
        )
    }

    /// Whether it is still running (not stopped).
    #[getter]
    fn running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

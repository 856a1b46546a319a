//! `acikit._native`: the PyO3 module under the Python package `acikit`. Every call of the
//! core is a [`runtime::Call`] that the Python layer runs blocking (`Store`, with Ctrl-C)
//! or awaits (`AsyncStore`); the exceptions, records and progress events are the Python
//! layer's (see `python/acikit/`).

use pyo3::prelude::*;

mod call;
mod convert;
mod errors;
mod functions;
mod net;
mod observe;
mod reader;
mod runtime;
mod server;
mod store;
mod writer;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PHASES", acikit::Phase::ALL.map(|p| p.as_str()).to_vec())?;
    m.add(
        "EXPORT_COMPRESSIONS",
        acikit::ExportCompression::ALL.map(|c| c.as_str()).to_vec(),
    )?;
    m.add(
        "BUILD_COMPRESSIONS",
        acikit::BuildCompression::ALL.map(|c| c.as_str()).to_vec(),
    )?;
    m.add(
        "STRATEGIES",
        acikit::Strategy::ALL.map(|s| s.as_str()).to_vec(),
    )?;
    m.add(
        "ERROR_CODES",
        acikit::ErrorKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.category().as_str(), k.is_retryable()))
            .collect::<Vec<_>>(),
    )?;
    m.add_class::<runtime::Call>()?;
    m.add_class::<store::NativeStore>()?;
    m.add_class::<reader::ImageReader>()?;
    m.add_class::<server::NativeServer>()?;
    m.add_function(wrap_pyfunction!(functions::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(functions::build, m)?)?;
    m.add_function(wrap_pyfunction!(functions::sign, m)?)?;
    m.add_function(wrap_pyfunction!(functions::discover, m)?)?;
    m.add_function(wrap_pyfunction!(functions::push, m)?)?;
    m.add_function(wrap_pyfunction!(server::serve, m)?)?;
    Ok(())
}

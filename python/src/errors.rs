//! The core's [`acikit::Error`] as a Python exception: the classes live in `acikit._errors`
//! (one per [`acikit::ErrorCategory`]), this module only hands them the error's parts.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The Python exception of `err`: built by `acikit._errors.from_native(code, category,
/// retryable, message, entry, problems)`.
pub fn to_py_err(err: acikit::Error) -> PyErr {
    Python::attach(|py| match build(py, &err) {
        Ok(exc) => exc,
        Err(failed) => failed,
    })
}

fn build(py: Python<'_>, err: &acikit::Error) -> PyResult<PyErr> {
    let kind = err.kind();
    let problems = err
        .problems()
        .iter()
        .map(|p| {
            let dict = PyDict::new(py);
            dict.set_item("path", &p.path)?;
            dict.set_item("code", p.code)?;
            dict.set_item("message", &p.message)?;
            Ok(dict)
        })
        .collect::<PyResult<Vec<_>>>()?;
    let exc = py
        .import("acikit._errors")?
        .getattr("from_native")?
        .call1((
            kind.as_str(),
            kind.category().as_str(),
            kind.is_retryable(),
            err.message(),
            err.entry(),
            problems,
        ))?;
    Ok(PyErr::from_value(exc))
}

/// `Result` of the core to `PyResult`.
pub trait IntoPyResult<T> {
    /// The error as its Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for acikit::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

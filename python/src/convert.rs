//! Results of the core to Python values: serializable reports through their JSON form
//! (so the Python names are the core's field names), bytes as `bytes`.

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde::Serialize;

use crate::errors::to_py_err;
use crate::runtime::Output;

/// A JSON value as the equal Python value (dict, list, str, int, float, bool, None).
pub fn json_to_py(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => b.into_py_any(py)?,
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_py_any(py)?,
            (None, Some(i)) => i.into_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_py_any(py)?,
        },
        Value::String(s) => s.into_py_any(py)?,
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, json_to_py(py, item)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// A serializable value as its Python form.
pub fn to_py<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let json = serde_json::to_value(value).map_err(|e| {
        to_py_err(acikit::Error::new(
            acikit::ErrorKind::Internal,
            format!("serializing a result: {e}"),
        ))
    })?;
    json_to_py(py, &json)
}

/// An [`Output`] giving `value`'s Python form.
pub fn output<T: Serialize + Send + 'static>(value: T) -> Output {
    Box::new(move |py| to_py(py, &value))
}

/// An [`Output`] giving `None`.
pub fn none() -> Output {
    Box::new(|py| Ok(py.None()))
}

/// An [`Output`] giving `bytes`.
pub fn bytes(data: Vec<u8>) -> Output {
    Box::new(move |py| Ok(pyo3::types::PyBytes::new(py, &data).into_any().unbind()))
}

//! Making a [`Call`] out of a core future: the observer, its cancel token and the
//! conversion of the result.

use std::future::Future;

use acikit::Observer;
use pyo3::prelude::*;

use crate::errors::to_py_err;
use crate::observe::observer;
use crate::runtime::{Call, Output};

/// A call of a long operation: `start(observer)` gives the core's future (it owns what it
/// needs); its result goes through `output`.
pub fn observed<T, F>(
    progress: Option<Py<PyAny>>,
    start: impl FnOnce(Observer) -> F,
    output: impl FnOnce(T) -> Output + Send + 'static,
) -> Call
where
    F: Future<Output = acikit::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (observer, cancel, failed) = observer(progress);
    let fut = start(observer);
    Call::new(
        Box::pin(async move { fut.await.map(output).map_err(to_py_err) }),
        cancel,
        failed,
    )
}

/// A call of a short operation (no progress, no cancellation).
pub fn plain<T, F>(fut: F, output: impl FnOnce(T) -> Output + Send + 'static) -> Call
where
    F: Future<Output = acikit::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    Call::simple(Box::pin(
        async move { fut.await.map(output).map_err(to_py_err) },
    ))
}

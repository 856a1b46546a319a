//! A writable Python binary file object as a [`std::io::Write`] (the core's export calls
//! it from a worker thread, taking the GIL for each write).

use std::io;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Writes to a Python object's `write(bytes)`, handling short writes.
pub struct PyWriter {
    file: Py<PyAny>,
}

impl PyWriter {
    /// A writer to `file`.
    pub fn new(file: Py<PyAny>) -> PyWriter {
        PyWriter { file }
    }
}

fn io_error(err: PyErr) -> io::Error {
    io::Error::other(format!("writing to the file object: {err}"))
}

impl io::Write for PyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Python::attach(|py| {
            let written = self
                .file
                .call_method1(py, "write", (PyBytes::new(py, buf),))
                .map_err(io_error)?;
            // Raw files may write less (and say so); `None` means all of it was taken.
            if written.is_none(py) {
                return Ok(buf.len());
            }
            written.extract::<usize>(py).map_err(io_error)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Python::attach(|py| {
            if self.file.bind(py).hasattr("flush").map_err(io_error)? {
                self.file.call_method0(py, "flush").map_err(io_error)?;
            }
            Ok(())
        })
    }
}

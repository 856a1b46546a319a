//! The per-process tokio runtime and [`Call`]: one pending core call, run either blocking
//! (the sync API, interruptible by Ctrl-C) or handing its result to an asyncio future.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use acikit::CancelToken;
use pyo3::prelude::*;

use crate::errors::to_py_err;

/// What a finished job turns into, with the GIL held.
pub type Output = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;
/// The work of one call, owning everything it needs.
pub type Job = Pin<Box<dyn Future<Output = PyResult<Output>> + Send>>;

/// How long a blocking wait sleeps between two checks for signals (Ctrl-C).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The runtime of this process, with the pid it was made in: a child of `fork()` gets a
/// new one (the parent's threads do not exist in the child).
static RUNTIME: OnceLock<Mutex<(u32, Arc<tokio::runtime::Runtime>)>> = OnceLock::new();

fn new_runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("acikit-worker")
            .build()
            .expect("starting the tokio runtime"),
    )
}

/// The tokio runtime of the current process (made on first use, again after a fork).
pub fn runtime() -> Arc<tokio::runtime::Runtime> {
    let pid = std::process::id();
    let cell = RUNTIME.get_or_init(|| Mutex::new((pid, new_runtime())));
    let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
    if guard.0 != pid {
        // The parent's runtime cannot be dropped here (its worker threads are gone and
        // dropping would wait for them): leak it, once per fork.
        let old = std::mem::replace(&mut *guard, (pid, new_runtime()));
        std::mem::forget(old);
    }
    guard.1.clone()
}

/// Runs `fut` on the runtime, blocking this thread with the GIL released, checking for
/// signals every [`SIGNAL_SLICE`]: on one (Ctrl-C), cancels `cancel`, waits for the work to
/// end (so it leaves nothing behind) and raises the signal's exception.
pub fn block_on<T: Send + 'static>(
    py: Python<'_>,
    cancel: &CancelToken,
    fut: impl Future<Output = T> + Send + 'static,
) -> PyResult<T> {
    block_on_or_undo(py, cancel, fut, drop)
}

/// [`block_on`], but when a signal interrupts the wait and the work ends with a result all
/// the same (it finished before it saw the cancellation, or while the signal waited to be
/// seen), `undo` gets that result before the signal's exception is raised: a read puts its
/// bytes back.
pub fn block_on_or_undo<T: Send + 'static>(
    py: Python<'_>,
    cancel: &CancelToken,
    fut: impl Future<Output = T> + Send + 'static,
    undo: impl FnOnce(T),
) -> PyResult<T> {
    let rt = runtime();
    let mut handle = rt.spawn(fut);
    loop {
        let slice = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(SIGNAL_SLICE, &mut handle).await })
        });
        match slice {
            Ok(joined) => {
                let value = joined.map_err(join_error)?;
                // A signal that came during the last slice would otherwise be raised by
                // Python right after this returns, and the caller would lose the result.
                if let Err(signal) = py.check_signals() {
                    undo(value);
                    return Err(signal);
                }
                return Ok(value);
            }
            Err(_elapsed) => {
                if let Err(signal) = py.check_signals() {
                    cancel.cancel();
                    if let Ok(value) = py.detach(|| rt.block_on(&mut handle)) {
                        undo(value);
                    }
                    return Err(signal);
                }
            }
        }
    }
}

fn join_error(err: tokio::task::JoinError) -> PyErr {
    to_py_err(acikit::Error::new(
        acikit::ErrorKind::Internal,
        format!("a binding task failed: {err}"),
    ))
}

/// The first exception a progress callback raised, which ends the call in its place.
pub type CallbackError = Arc<Mutex<Option<PyErr>>>;

/// One pending call of the core: `wait()` runs it blocking, `start(done)` runs it in the
/// background and calls `done(ok, value)` from a worker thread at the end; `cancel()`
/// cancels the Rust work.
#[pyclass(module = "acikit._native", frozen)]
pub struct Call {
    job: Mutex<Option<Job>>,
    cancel: CancelToken,
    callback_error: CallbackError,
}

impl Call {
    /// A call running `job`, cancelled by `cancel`; a progress callback's exception in
    /// `callback_error` replaces its result.
    pub fn new(job: Job, cancel: CancelToken, callback_error: CallbackError) -> Call {
        Call {
            job: Mutex::new(Some(job)),
            cancel,
            callback_error,
        }
    }

    /// A call of a job that needs no cancellation and reports no progress.
    pub fn simple(job: Job) -> Call {
        Call::new(job, CancelToken::new(), Arc::default())
    }

    fn take(&self) -> PyResult<Job> {
        self.job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("this call already ran"))
    }
}

/// The result of a finished job: the callback's exception first, else the job's own.
fn settle(
    py: Python<'_>,
    result: PyResult<Output>,
    callback_error: &CallbackError,
) -> PyResult<Py<PyAny>> {
    if let Some(err) = callback_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        return Err(err);
    }
    result.and_then(|output| output(py))
}

#[pymethods]
impl Call {
    /// Runs the call to its end, blocking (GIL released); Ctrl-C cancels it.
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let job = self.take()?;
        let result = block_on(py, &self.cancel, job)?;
        settle(py, result, &self.callback_error)
    }

    /// Runs the call in the background; at its end calls `done(True, value)` or
    /// `done(False, exception)` from a worker thread.
    fn start(&self, done: Py<PyAny>) -> PyResult<()> {
        let job = self.take()?;
        let callback_error = self.callback_error.clone();
        runtime().spawn(async move {
            let result = job.await;
            Python::attach(|py| {
                let (ok, value) = match settle(py, result, &callback_error) {
                    Ok(value) => (true, value),
                    Err(err) => (false, err.into_value(py).into_any()),
                };
                if let Err(err) = done.call1(py, (ok, value)) {
                    err.write_unraisable(py, None);
                }
            });
        });
        Ok(())
    }

    /// Cancels the Rust work: the call ends with `Cancelled`, leaving nothing behind.
    fn cancel(&self) {
        self.cancel.cancel();
    }
}

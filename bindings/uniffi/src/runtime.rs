//! The crate's multi-thread Tokio runtime: every core future runs on it, never on the
//! caller's thread nor on uniffi's single-thread fallback.

use std::future::Future;
use std::sync::LazyLock;

use crate::error::AcikitError;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("acikit-uniffi")
        .enable_all()
        .build()
        .expect("starting the acikit Tokio runtime")
});

/// The runtime the bindings run the core on (started on first use).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    &RUNTIME
}

/// Runs `future` to its end on the runtime and gives its result: what uniffi polls is
/// only the wait for it. A panic in the core becomes an `internal` error.
pub(crate) async fn spawn<T, F>(future: F) -> Result<T, AcikitError>
where
    T: Send + 'static,
    F: Future<Output = acikit::Result<T>> + Send + 'static,
{
    match runtime().spawn(future).await {
        Ok(result) => result.map_err(AcikitError::from),
        Err(join) => Err(AcikitError::from(acikit::Error::new(
            acikit::ErrorKind::Internal,
            format!("the acikit task failed: {join}"),
        ))),
    }
}

/// Runs the blocking `work` on the runtime's blocking pool and gives its result.
pub(crate) async fn spawn_blocking<T, F>(work: F) -> Result<T, AcikitError>
where
    T: Send + 'static,
    F: FnOnce() -> acikit::Result<T> + Send + 'static,
{
    match runtime().spawn_blocking(work).await {
        Ok(result) => result.map_err(AcikitError::from),
        Err(join) => Err(AcikitError::from(acikit::Error::new(
            acikit::ErrorKind::Internal,
            format!("the acikit task failed: {join}"),
        ))),
    }
}

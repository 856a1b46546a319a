//! Running blocking work (file system, OpenPGP) off the async runtime.

use crate::error::Result;

/// Runs `f` on tokio's blocking pool and returns its result.
///
/// Every file-system or OpenPGP call that can block goes through here (or
/// [`blocking_value`]) instead of running on a runtime worker. A panic in `f`, or
/// the task being cancelled, comes back as an
/// [`ErrorKind::Internal`](crate::error::ErrorKind::Internal) error naming "a
/// background task" (see `crate::error::join_error_of`).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    blocking_value(f).await?
}

/// Like [`blocking`], for a closure that returns a plain value rather than a
/// [`Result`]: only a panic or a cancelled task is an error.
pub(crate) async fn blocking_value<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    blocking_value_named("a background task", f).await
}

/// [`blocking`], naming the task in the error a panic gives (e.g. "the build task").
pub(crate) async fn blocking_named<T, F>(task: &'static str, f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    blocking_value_named(task, f).await?
}

/// [`blocking_value`], naming the task in the error a panic gives.
pub(crate) async fn blocking_value_named<T, F>(task: &'static str, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::join_error_of(task, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};

    #[tokio::test]
    async fn returns_the_closures_result() {
        assert_eq!(blocking(|| Ok(7)).await.unwrap(), 7);
        let err = blocking(|| -> Result<()> { Err(Error::new(ErrorKind::NotFound, "gone")) })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(blocking_value(|| 3).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_panic_is_internal() {
        let err = blocking(|| -> Result<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(
            err.to_string().contains("a background task panicked"),
            "{err}"
        );
    }
}

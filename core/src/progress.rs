//! Progress events and cancellation, shared by every long operation.
//!
//! Long calls take an [`Observer`]: a callback that receives [`Progress`] events (the CLI
//! draws them as a bar, the bindings forward them) and a [`CancelToken`] that stops the
//! call with [`ErrorKind::Cancelled`], leaving nothing behind.

use std::sync::Arc;

use serde::Serialize;

pub use tokio_util::sync::CancellationToken as CancelToken;

use crate::{Error, ErrorKind, Result};

/// What a long operation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Reading, validating and storing an archive.
    Import,
    /// Making objects durable and committing the index.
    Commit,
    /// Regenerating an image's tar.
    Export,
    /// Checking the store.
    Fsck,
    /// Downloading an image (bytes received of the archive's size).
    Download,
    /// Removing unreferenced objects.
    Gc,
    /// Building an image archive from a layout (content bytes written of the total).
    Build,
    /// Building the cached rendered tree of an image and the flattened stack of its
    /// dependencies (entries checked out of the total; only on a render that builds them).
    Checkout,
    /// Making a render's run from the cached tree or stack (entries copied, linked or
    /// cloned of the total; one event for an overlay mount).
    Render,
    /// Validating an image archive (uncompressed bytes read).
    Inspect,
    /// Signing a file (bytes read of its size).
    Sign,
    /// Uploading an image to a repository (bytes sent of the file's size).
    Push,
    /// Meta discovery of an image name (levels of the name walked of those it has: the
    /// last event says every level was done with, also when the walk stops early).
    Discover,
    /// Finishing the record of an import's original compressed form (after the archive
    /// was read), or re-creating the original for an export.
    Original,
}

impl Phase {
    /// Every phase, in declaration order.
    pub const ALL: [Phase; 14] = [
        Phase::Import,
        Phase::Commit,
        Phase::Export,
        Phase::Fsck,
        Phase::Download,
        Phase::Gc,
        Phase::Build,
        Phase::Checkout,
        Phase::Render,
        Phase::Inspect,
        Phase::Sign,
        Phase::Push,
        Phase::Discover,
        Phase::Original,
    ];

    /// The stable name of the phase (`"import"`, `"download"`, ...), as the bindings pass it
    /// on in their progress events and as it is serialized.
    ///
    /// ```
    /// assert_eq!(acikit::Phase::Download.as_str(), "download");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Import => "import",
            Phase::Commit => "commit",
            Phase::Export => "export",
            Phase::Fsck => "fsck",
            Phase::Download => "download",
            Phase::Gc => "gc",
            Phase::Build => "build",
            Phase::Checkout => "checkout",
            Phase::Render => "render",
            Phase::Inspect => "inspect",
            Phase::Sign => "sign",
            Phase::Push => "push",
            Phase::Discover => "discover",
            Phase::Original => "original",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One progress event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Units done so far (bytes, images for fsck, entries for checkout and render).
    pub done: u64,
    /// Total units, when known.
    pub total: Option<u64>,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Progress callback and cancellation token of one call.
#[derive(Clone, Default)]
pub struct Observer {
    /// Receives progress events (at most a few per second per megabyte moved).
    pub progress: Option<ProgressFn>,
    /// Cancels the call.
    pub cancel: CancelToken,
}

impl Observer {
    /// An observer with this progress callback and a fresh cancel token.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use acikit::{Observer, Phase};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let observer = Observer::with_progress(move |p| sink.lock().unwrap().push(p.phase));
    /// observer.report(Phase::Import, 10, Some(100));
    /// assert_eq!(*seen.lock().unwrap(), vec![Phase::Import]);
    ///
    /// // Cancelling: the call ends with ErrorKind::Cancelled at its next check.
    /// let cancel = observer.cancel.clone();
    /// cancel.cancel();
    /// assert_eq!(observer.check().unwrap_err().kind(), acikit::ErrorKind::Cancelled);
    /// ```
    pub fn with_progress(progress: impl Fn(Progress) + Send + Sync + 'static) -> Observer {
        Observer {
            progress: Some(Arc::new(progress)),
            cancel: CancelToken::new(),
        }
    }

    /// The same observer, cancelled by `cancel` (e.g. a child token of the caller's).
    ///
    /// ```
    /// use acikit::{CancelToken, ErrorKind, Observer};
    ///
    /// // One token for several calls: cancelling it cancels each of them.
    /// let all = CancelToken::new();
    /// let first = Observer::default().cancelled_by(all.child_token());
    /// let second = Observer::default().cancelled_by(all.child_token());
    /// assert!(first.check().is_ok());
    /// all.cancel();
    /// assert_eq!(first.check().unwrap_err().kind(), ErrorKind::Cancelled);
    /// assert_eq!(second.check().unwrap_err().kind(), ErrorKind::Cancelled);
    /// ```
    pub fn cancelled_by(mut self, cancel: CancelToken) -> Observer {
        self.cancel = cancel;
        self
    }

    /// Reports progress.
    pub fn report(&self, phase: Phase, done: u64, total: Option<u64>) {
        if let Some(progress) = &self.progress {
            progress(Progress { phase, done, total });
        }
    }

    /// [`ErrorKind::Cancelled`] once the token is cancelled.
    pub fn check(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the operation was cancelled",
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("progress", &self.progress.is_some())
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Phase;

    /// `Phase::ALL` holds every phase once, and `as_str` is the serialized name the CLI's
    /// JSON and the bindings' progress events both use.
    #[test]
    fn phase_names_are_the_serialized_names() {
        let names: std::collections::BTreeSet<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names.len(), Phase::ALL.len());
        for phase in Phase::ALL {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        }
    }
}

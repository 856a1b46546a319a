//! Progress events through a callback interface, and cancellation through a handle.

use std::sync::Arc;

use acikit::{CancelToken, Observer};

/// One progress event of a long call.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProgressEvent {
    /// The phase (`Phase::as_str()`: `inspect`, `import`, `commit`, `export`, ...).
    pub phase: String,
    /// Units done so far (bytes; images for fsck; entries for checkout and render).
    pub done: i64,
    /// Total units, when known.
    pub total: Option<i64>,
}

/// Receives the progress events of a long call, on one of the library's threads (keep
/// it short: the call waits for it).
#[uniffi::export(with_foreign)]
pub trait ProgressListener: Send + Sync {
    /// Called for each event.
    fn on_progress(&self, event: ProgressEvent);
}

/// Cancels the long calls it is given to: they end with a `cancelled` error and leave
/// nothing half-written. One handle may serve several calls; a cancelled handle stays
/// cancelled.
#[derive(Debug, Default, uniffi::Object)]
pub struct CancelHandle {
    token: CancelToken,
}

#[uniffi::export]
impl CancelHandle {
    /// A handle not cancelled yet.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(CancelHandle::default())
    }

    /// Cancels every call given this handle (those running and those to come).
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// The observer of one call, and the guard that cancels it when dropped: if the caller
/// drops the call's future (a Kotlin coroutine cancelled, a Swift task cancelled), the
/// core's task, which runs on, sees it cancelled and cleans up.
pub(crate) struct CallObserver {
    /// The observer handed to the core.
    pub(crate) observer: Observer,
    /// Cancels the call when dropped; the call's future holds it.
    _guard: CancelOnDrop,
}

/// The observer of one call: events to `progress`, cancelled by `cancel` (through a
/// child token) or by dropping the guard.
pub(crate) fn observer(
    progress: Option<Arc<dyn ProgressListener>>,
    cancel: Option<Arc<CancelHandle>>,
) -> CallObserver {
    let token = match &cancel {
        Some(handle) => handle.token.child_token(),
        None => CancelToken::new(),
    };
    let mut observer = Observer::default().cancelled_by(token.clone());
    if let Some(listener) = progress {
        observer.progress = Some(Arc::new(move |p: acikit::Progress| {
            listener.on_progress(ProgressEvent {
                phase: p.phase.as_str().to_string(),
                done: to_i64(p.done),
                total: p.total.map(to_i64),
            })
        }));
    }
    CallObserver {
        observer,
        _guard: CancelOnDrop(token),
    }
}

/// A count as the signed 64-bit integer Kotlin and Java use (`Long`), saturating.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Cancels its token when dropped.
pub(crate) struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Sink(Mutex<Vec<ProgressEvent>>);
    impl ProgressListener for Sink {
        fn on_progress(&self, event: ProgressEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[test]
    fn events_carry_the_phase_name_and_counts() {
        let sink = Arc::new(Sink(Mutex::new(Vec::new())));
        let call = observer(Some(sink.clone()), None);
        call.observer.report(acikit::Phase::Import, 5, Some(10));
        let events = sink.0.lock().unwrap();
        assert_eq!(events[0].phase, "import");
        assert_eq!((events[0].done, events[0].total), (5, Some(10)));
    }

    #[test]
    fn a_handle_or_dropping_the_guard_cancels_the_call() {
        let handle = CancelHandle::new();
        let call = observer(None, Some(handle.clone()));
        assert!(call.observer.check().is_ok());
        handle.cancel();
        assert!(call.observer.check().is_err());

        let call = observer(None, None);
        let observer = call.observer.clone();
        drop(call);
        assert!(observer.check().is_err());
        // A handle is not cancelled by its calls ending.
        let handle = CancelHandle::new();
        drop(super::observer(None, Some(handle.clone())));
        assert!(!handle.is_cancelled());
    }
}

//! Progress events through a callback interface, and cancellation through a handle.
//!
//! The core never waits for a listener: its events go into a small hand-off
//! ([`Relay`]) that a thread of the runtime's blocking pool drains into the listener.
//! While the listener is busy, newer events of the same phase replace the one waiting,
//! so a slow listener sees fewer events, never older ones after newer ones, and always
//! the last event of each phase: the call returns once those are delivered.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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

/// Receives the progress events of a long call, one at a time, in order, on one of the
/// library's threads. The call never waits for it: while it is busy, newer events of a
/// phase replace the one waiting, so a slow listener sees fewer events (the last one of
/// each phase always, before the call returns).
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
    /// The hand-off to the listener and the thread draining it, when there is a listener.
    delivery: Option<Delivery>,
    /// Cancels the call when dropped; the call's future holds it.
    _guard: CancelOnDrop,
}

impl CallObserver {
    /// Ends the call's progress: waits until the listener has been given the events still
    /// waiting (the last of each phase), then cancels the call's token (it has ended).
    pub(crate) async fn finish(mut self) {
        if let Some(delivery) = self.delivery.take() {
            delivery.relay.close();
            // A listener that failed (a panic on its thread) only stops the events.
            let _ = delivery.thread.await;
        }
    }
}

impl Drop for CallObserver {
    fn drop(&mut self) {
        // Dropped without `finish` (the caller gave up the call): deliver no more.
        if let Some(delivery) = &self.delivery {
            delivery.relay.discard();
        }
    }
}

/// A call's relay and the blocking thread delivering its events.
struct Delivery {
    relay: Arc<Relay>,
    thread: tokio::task::JoinHandle<()>,
}

/// Events waiting for the listener: at most [`Relay::MAX_WAITING`], the newest of a
/// phase replacing the one before it.
#[derive(Default)]
struct Relay {
    state: Mutex<Waiting>,
    ready: Condvar,
}

#[derive(Default)]
struct Waiting {
    events: VecDeque<ProgressEvent>,
    /// No events will come any more: deliver what waits, then stop.
    closed: bool,
}

impl Relay {
    /// Most events waiting at once (phases change rarely; past this, the newest replaces
    /// the last waiting whatever its phase).
    const MAX_WAITING: usize = 8;

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `event` over without waiting for the listener.
    fn push(&self, event: ProgressEvent) {
        let mut waiting = self.lock();
        if waiting.closed {
            return;
        }
        let full = waiting.events.len() >= Self::MAX_WAITING;
        match waiting.events.back_mut() {
            Some(last) if full || last.phase == event.phase => *last = event,
            _ => waiting.events.push_back(event),
        }
        self.ready.notify_one();
    }

    /// No more events: the ones waiting are still delivered.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// No more events, and the waiting ones are dropped.
    fn discard(&self) {
        let mut waiting = self.lock();
        waiting.closed = true;
        waiting.events.clear();
        self.ready.notify_one();
    }

    /// The next event to deliver, waiting for one; `None` once closed and drained.
    fn next(&self) -> Option<ProgressEvent> {
        let mut waiting = self.lock();
        loop {
            if let Some(event) = waiting.events.pop_front() {
                return Some(event);
            }
            if waiting.closed {
                return None;
            }
            waiting = self
                .ready
                .wait(waiting)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Gives `listener` every event, one at a time, until closed and drained (blocking).
    fn deliver(&self, listener: &dyn ProgressListener) {
        while let Some(event) = self.next() {
            listener.on_progress(event);
        }
    }
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
    let delivery = progress.map(|listener| {
        let relay = Arc::new(Relay::default());
        let sink = relay.clone();
        observer.progress = Some(Arc::new(move |p: acikit::Progress| {
            sink.push(ProgressEvent {
                phase: p.phase.as_str().to_string(),
                done: to_i64(p.done),
                total: p.total.map(to_i64),
            })
        }));
        let source = relay.clone();
        let thread = crate::runtime::runtime().spawn_blocking(move || source.deliver(&*listener));
        Delivery { relay, thread }
    });
    CallObserver {
        observer,
        delivery,
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
        crate::runtime::runtime().block_on(call.finish());
        let events = sink.0.lock().unwrap();
        assert_eq!(events[0].phase, "import");
        assert_eq!((events[0].done, events[0].total), (5, Some(10)));
    }

    /// A listener that sleeps in every call.
    struct Slow(Mutex<Vec<ProgressEvent>>);
    impl ProgressListener for Slow {
        fn on_progress(&self, event: ProgressEvent) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.0.lock().unwrap().push(event);
        }
    }

    #[test]
    fn a_slow_listener_does_not_hold_the_core_and_still_gets_the_last_events() {
        use acikit::Phase;
        let slow = Arc::new(Slow(Mutex::new(Vec::new())));
        let call = observer(Some(slow.clone()), None);
        for done in 1..=500 {
            call.observer.report(Phase::Import, done, Some(500));
        }
        for done in 1..=3 {
            call.observer.report(Phase::Commit, done, Some(3));
        }
        // 503 events were reported while a listener taking 20 ms a call saw a few at most.
        assert!(slow.0.lock().unwrap().len() < 10);
        crate::runtime::runtime().block_on(call.finish());
        let seen = slow.0.lock().unwrap().clone();
        assert!(seen.len() < 10, "{seen:?}");
        let imports: Vec<i64> = seen
            .iter()
            .filter(|e| e.phase == "import")
            .map(|e| e.done)
            .collect();
        assert!(imports.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(imports.last(), Some(&500));
        let last = seen.last().unwrap();
        assert_eq!(
            (last.phase.as_str(), last.done, last.total),
            ("commit", 3, Some(3))
        );
        // Nothing after the end.
        let index = seen.iter().position(|e| e.phase == "commit").unwrap();
        assert!(seen[index..].iter().all(|e| e.phase == "commit"));
    }

    #[test]
    fn a_dropped_call_delivers_no_more() {
        let sink = Arc::new(Sink(Mutex::new(Vec::new())));
        let call = observer(Some(sink.clone()), None);
        let core = call.observer.clone();
        drop(call);
        core.report(acikit::Phase::Import, 1, None);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(sink.0.lock().unwrap().is_empty());
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

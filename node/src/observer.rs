//! Progress callbacks and cancellation handles: the JS side of a core [`Observer`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use acikit::{CancelToken, Observer, Progress};
use napi::Status;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

/// A progress event as JS sees it: `{ phase, done, total }` (`total` null when unknown).
#[napi(object)]
#[derive(Clone)]
pub struct ProgressEvent {
    /// The phase, as the core names it (`Phase::as_str`).
    pub phase: String,
    /// Units done (bytes or entries, as the phase counts).
    pub done: f64,
    /// Units in all, if known.
    pub total: Option<f64>,
}

impl From<Progress> for ProgressEvent {
    fn from(p: Progress) -> Self {
        ProgressEvent {
            phase: p.phase.as_str().to_string(),
            done: p.done as f64,
            total: p.total.map(|t| t as f64),
        }
    }
}

/// The JS progress callback `(event) => void`, called on the JS thread. (The calls spell the
/// type out: napi's generated declarations would name an alias they do not declare.)
pub type ProgressCallback = ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>;

/// Shortest time between two events of one phase handed to JS (the first and the last of a
/// phase always go): a busy import reports per chunk, JS needs far fewer.
const MIN_INTERVAL: Duration = Duration::from_millis(25);

/// A cancellation handle the JS wrapper ties to an `AbortSignal`.
#[napi]
pub struct CancelHandle {
    token: CancelToken,
}

#[napi]
impl CancelHandle {
    /// A handle not cancelled yet.
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        CancelHandle {
            token: CancelToken::new(),
        }
    }

    /// Cancels every call given this handle: they reject with code `cancelled`.
    #[napi]
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether [`CancelHandle::cancel`] was called.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// The last event handed to JS, to thin them out.
struct Sent {
    at: Instant,
    phase: Option<acikit::Phase>,
}

/// The core observer for one call: `cancel`'s token (a fresh one without it) and the JS
/// callback, if any, thinned to one event per [`MIN_INTERVAL`] per phase.
pub fn observer(cancel: Option<&CancelHandle>, on_progress: Option<ProgressCallback>) -> Observer {
    let token = cancel.map(|c| c.token.clone()).unwrap_or_default();
    let Some(callback) = on_progress else {
        return Observer::default().cancelled_by(token);
    };
    let sent = Mutex::new(Sent {
        at: Instant::now(),
        phase: None,
    });
    Observer::with_progress(move |p: Progress| {
        let last = p.total.is_some_and(|t| p.done >= t);
        {
            let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
            let new_phase = sent.phase != Some(p.phase);
            if !new_phase && !last && sent.at.elapsed() < MIN_INTERVAL {
                return;
            }
            sent.at = Instant::now();
            sent.phase = Some(p.phase);
        }
        callback.call(p.into(), ThreadsafeFunctionCallMode::NonBlocking);
    })
    .cancelled_by(token)
}

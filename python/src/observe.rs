//! A Python progress callback as the core's [`Observer`].

use std::sync::Arc;

use acikit::{CancelToken, Observer};
use pyo3::prelude::*;

use crate::runtime::CallbackError;

/// The observer of one call: `progress(phase, done, total)` for each event (called from a
/// worker thread with the GIL), cancelled by the returned token. An exception in the
/// callback cancels the call and is kept in the returned [`CallbackError`] to be raised
/// in place of its result.
pub fn observer(progress: Option<Py<PyAny>>) -> (Observer, CancelToken, CallbackError) {
    let cancel = CancelToken::new();
    let failed: CallbackError = Arc::default();
    let mut observer = Observer::default().cancelled_by(cancel.clone());
    if let Some(callback) = progress {
        let (token, sink) = (cancel.clone(), failed.clone());
        observer.progress = Some(Arc::new(move |p: acikit::Progress| {
            Python::attach(|py| {
                let mut slot = sink.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_some() {
                    return;
                }
                if let Err(err) = callback.call1(py, (p.phase.as_str(), p.done, p.total)) {
                    *slot = Some(err);
                    token.cancel();
                }
            })
        }));
    }
    (observer, cancel, failed)
}

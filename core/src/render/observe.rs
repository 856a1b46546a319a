//! Render progress and cancellation: a [`Meter`] counts entries done of a known total,
//! reports them to the caller's [`Observer`] at a modest rate (about fifty events per phase,
//! never decreasing, the last at the total) and is the checkpoint where a cancelled render
//! stops with [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Result;
use crate::progress::{Observer, Phase};

/// Entries done of a total, for one phase of one render; shared by the threads of a copy.
pub(crate) struct Meter {
    observer: Observer,
    phase: Phase,
    total: u64,
    /// Entries between two events.
    step: u64,
    done: AtomicU64,
    /// The last `done` reported (`None`: nothing reported yet).
    reported: Mutex<Option<u64>>,
}

impl Meter {
    /// A meter of `total` entries in `phase`, reporting to `observer`.
    pub(crate) fn new(observer: &Observer, phase: Phase, total: u64) -> Meter {
        Meter {
            observer: observer.clone(),
            phase,
            total,
            step: (total / 50).max(16),
            done: AtomicU64::new(0),
            reported: Mutex::new(None),
        }
    }

    /// A meter that reports nothing and is never cancelled (for the calls without an
    /// observer).
    pub(crate) fn silent() -> Meter {
        Meter::new(&Observer::default(), Phase::Render, 0)
    }

    /// Reports `0` of the total, then checks for cancellation.
    pub(crate) fn start(&self) -> Result<()> {
        self.report(0, false);
        self.observer.check()
    }

    /// Checks for cancellation, then counts `n` more entries done (reported every `step`).
    pub(crate) fn tick(&self, n: u64) -> Result<()> {
        self.observer.check()?;
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        if (before + n) / self.step != before / self.step {
            self.report(before + n, false);
        }
        Ok(())
    }

    /// Reports the total (once). No check: what was done is complete (the caller's next
    /// checkpoint stops a cancelled render).
    pub(crate) fn finish(&self) {
        self.report(self.total, true);
    }

    /// Reports `done` (at most the total) if it is more than the last event, or, with
    /// `last`, if it is the first or final event.
    fn report(&self, done: u64, last: bool) {
        let done = done.min(self.total);
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        let newer = match *reported {
            None => true,
            Some(before) => done > before,
        };
        if newer || (last && reported.is_none()) {
            *reported = Some(done);
            self.observer.report(self.phase, done, Some(self.total));
        }
    }
}

//! What the cancellation tests share: observers that record progress events (and cancel
//! at the first one), a snapshot of a store (its files and the images it lists) to compare
//! before and after a cancelled call, and the check that progress never goes back.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use acikit::Store;
use acikit::progress::{Observer, Phase, Progress};

use super::files_under;

/// An observer that records every event and cancels at the first one.
pub fn cancel_at_first_event() -> (Observer, Arc<Mutex<Vec<Progress>>>) {
    cancel_when(|_| true)
}

/// An observer that records every event and cancels at the first one `when` accepts.
pub fn cancel_when(
    when: impl Fn(&Progress) -> bool + Send + Sync + 'static,
) -> (Observer, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let observer = Observer::default();
    let cancel = observer.cancel.clone();
    let observer = Observer {
        progress: Some(Arc::new(move |p: Progress| {
            // Logged before cancelling: the call may return (and the test read the log)
            // as soon as the token is cancelled.
            let stop = when(&p);
            log.lock().unwrap().push(p);
            if stop {
                cancel.cancel();
            }
        })),
        ..observer
    };
    (observer, seen)
}

/// An observer that only records events.
pub fn recording() -> (Observer, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let observer = Observer {
        progress: Some(Arc::new(move |p: Progress| log.lock().unwrap().push(p))),
        ..Observer::default()
    };
    (observer, seen)
}

/// An observer whose token is already cancelled.
pub fn cancelled_before() -> Observer {
    let observer = Observer::default();
    observer.cancel.cancel();
    observer
}

/// Every file in the store folder (SQLite's journal files aside), and the images indexed.
pub async fn snapshot(store: &Store) -> (Vec<PathBuf>, Vec<String>) {
    let files = files_under(store.dir())
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.ends_with("-wal") && !name.ends_with("-shm") && !name.ends_with("-journal")
        })
        .collect();
    let images = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.image_id.to_string())
        .collect();
    (files, images)
}

/// The store has the files and images of `before`, and `fsck` finds it clean.
pub async fn assert_unchanged(store: &Store, before: &(Vec<PathBuf>, Vec<String>), what: &str) {
    let after = snapshot(store).await;
    assert_eq!(&after, before, "{what}: the store changed");
    let report = store.fsck(false, Observer::default()).await.unwrap();
    assert!(report.is_clean(), "{what}: fsck: {report:?}");
}

/// Events of `phase` never go back and the last one is `total`.
pub fn assert_monotonic_to(seen: &[Progress], phase: Phase, total: u64, what: &str) {
    let events: Vec<&Progress> = seen.iter().filter(|p| p.phase == phase).collect();
    assert!(events.len() >= 2, "{what}: {seen:?}");
    assert!(
        events.windows(2).all(|w| w[0].done <= w[1].done),
        "{what}: progress went back: {seen:?}"
    );
    assert_eq!(events.last().unwrap().done, total, "{what}: {seen:?}");
}

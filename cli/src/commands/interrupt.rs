//! Ctrl-C for the long commands: while an [`Interrupt`] lives, SIGINT cancels the
//! observer's token, so the call stops at its next check with the `cancelled` error and
//! leaves nothing behind (no half-imported image, no partial output file or upload).

use acikit::progress::CancelToken;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

/// SIGINT cancels a token until this is dropped.
pub struct Interrupt(Option<JoinHandle<()>>);

impl Interrupt {
    /// Installs the handler (before the call starts): SIGINT then cancels `cancel`.
    /// `what` names the command in the warning printed when the handler cannot be set.
    pub fn cancels(cancel: &CancelToken, what: &str) -> Interrupt {
        let mut sigint = match signal(SignalKind::interrupt()) {
            Ok(sigint) => sigint,
            Err(err) => {
                errln!("warning: Ctrl-C will not cancel the {what} cleanly: {err}");
                return Interrupt(None);
            }
        };
        let cancel = cancel.clone();
        Interrupt(Some(tokio::spawn(async move {
            if sigint.recv().await.is_some() {
                cancel.cancel();
            }
        })))
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

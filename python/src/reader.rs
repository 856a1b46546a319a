//! `acikit._native.ImageReader`: an image's canonical tar as a stream of `bytes`, read
//! from the core's [`ExportReader`] chunk by chunk (never the whole image in memory).

use std::sync::Arc;

use acikit::CancelToken;
use acikit::store::ExportReader;
use bytes::{Bytes, BytesMut};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::Mutex;

use crate::errors::to_py_err;
use crate::runtime::{Call, block_on, block_on_or_undo};

/// The reader and the part of a chunk not read yet.
struct State {
    reader: Option<ExportReader>,
    pending: Bytes,
}

/// A streaming reader of one image's canonical tar; the bytes hash to the image ID or the
/// last read raises `IntegrityError`.
#[pyclass(module = "acikit._native", frozen)]
pub struct ImageReader {
    state: Arc<Mutex<State>>,
    size: u64,
}

impl ImageReader {
    /// Reads `reader`, a tar of `size` bytes.
    pub fn new(reader: ExportReader, size: u64) -> ImageReader {
        ImageReader {
            state: Arc::new(Mutex::new(State {
                reader: Some(reader),
                pending: Bytes::new(),
            })),
            size,
        }
    }
}

/// Puts `pieces` back in front of what is pending, so the next read starts with them.
fn unread(state: &mut State, pieces: Vec<Bytes>) {
    let total: usize = pieces.iter().map(Bytes::len).sum();
    if total == 0 {
        return;
    }
    if pieces.len() == 1 && state.pending.is_empty() {
        state.pending = pieces.into_iter().next().unwrap_or_default();
        return;
    }
    let mut all = BytesMut::with_capacity(total + state.pending.len());
    for piece in &pieces {
        all.extend_from_slice(piece);
    }
    all.extend_from_slice(&state.pending);
    state.pending = all.freeze();
}

/// Up to `limit` bytes (all that is left for `None`), as the chunks they came in: fewer only
/// at the end. Empty at the end or once closed. Cancelled by `cancel` while it waits for a
/// chunk, it puts what it took back (the next read starts there) and ends `Cancelled`.
async fn read_pieces(
    state: Arc<Mutex<State>>,
    limit: Option<usize>,
    cancel: CancelToken,
) -> acikit::Result<Vec<Bytes>> {
    let mut state = state.lock().await;
    let mut pieces = Vec::new();
    let mut want = limit.unwrap_or(usize::MAX);
    while want > 0 {
        if state.pending.is_empty() {
            let Some(reader) = state.reader.as_mut() else {
                break;
            };
            // `next_chunk` only polls a channel: dropping it loses no chunk.
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                next = reader.next_chunk() => Some(next),
            };
            let Some(next) = next else {
                unread(&mut state, pieces);
                return Err(acikit::Error::new(
                    acikit::ErrorKind::Cancelled,
                    "reading the image was interrupted",
                ));
            };
            match next.map_err(acikit::Error::from)? {
                Some(chunk) => state.pending = chunk,
                None => {
                    state.reader = None;
                    break;
                }
            }
        }
        let take = want.min(state.pending.len());
        pieces.push(state.pending.split_to(take));
        want -= take;
    }
    Ok(pieces)
}

/// The pieces as one `bytes` object (one copy).
fn joined(py: Python<'_>, pieces: &[Bytes]) -> PyResult<Py<PyAny>> {
    if let [one] = pieces {
        return Ok(PyBytes::new(py, one).into_any().unbind());
    }
    let total = pieces.iter().map(Bytes::len).sum();
    let bytes = PyBytes::new_with(py, total, |buf| {
        let mut at = 0;
        for piece in pieces {
            buf[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        Ok(())
    })?;
    Ok(bytes.into_any().unbind())
}

fn limit_of(size: isize) -> Option<usize> {
    usize::try_from(size).ok()
}

#[pymethods]
impl ImageReader {
    /// Size of the whole tar, in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// Up to `size` bytes (all that is left for a negative size); `b""` at the end. Ctrl-C
    /// raises `KeyboardInterrupt` and loses no byte: the next read goes on where the
    /// caller's data stopped.
    #[pyo3(signature = (size=-1))]
    fn read(&self, py: Python<'_>, size: isize) -> PyResult<Py<PyAny>> {
        let cancel = CancelToken::new();
        let state = self.state.clone();
        let pieces = block_on_or_undo(
            py,
            &cancel,
            read_pieces(self.state.clone(), limit_of(size), cancel.clone()),
            |finished| {
                // It ended before it saw the cancellation: its bytes go back.
                if let (Ok(pieces), Ok(mut state)) = (finished, state.try_lock()) {
                    unread(&mut state, pieces);
                }
            },
        )?
        .map_err(to_py_err)?;
        joined(py, &pieces)
    }

    /// [`read`](Self::read) as a [`Call`], for the async API: cancelling it puts back what
    /// it took (a result that came too late goes back through [`unread`](Self::unread)).
    #[pyo3(signature = (size=-1))]
    fn read_call(&self, size: isize) -> Call {
        let state = self.state.clone();
        let cancel = CancelToken::new();
        let token = cancel.clone();
        Call::new(
            Box::pin(async move {
                let pieces = read_pieces(state, limit_of(size), token)
                    .await
                    .map_err(to_py_err)?;
                let output: crate::runtime::Output = Box::new(move |py| joined(py, &pieces));
                Ok(output)
            }),
            cancel,
            Default::default(),
        )
    }

    /// Puts `data` back in front of the stream: the next read starts with it (for a read
    /// whose caller was cancelled after it finished).
    fn unread(&self, py: Python<'_>, data: Vec<u8>) -> PyResult<()> {
        let state = self.state.clone();
        block_on(py, &CancelToken::new(), async move {
            unread(&mut *state.lock().await, vec![Bytes::from(data)]);
        })
    }

    /// Stops reading (the core's export thread ends).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let state = self.state.clone();
        block_on(py, &CancelToken::new(), async move {
            let mut state = state.lock().await;
            state.reader = None;
            state.pending = Bytes::new();
        })
    }
}

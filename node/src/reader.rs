//! A pull reader of bytes for JS streams: the canonical tar of `openRead`, or an export's
//! output fed from a blocking thread.

use std::sync::Arc;

use acikit::CancelToken;
use acikit::store::ExportReader;
use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::records::ExportRecord;
use acikit::Exported;

use crate::error::{napi_result, to_napi};

/// Where a reader's chunks come from.
pub enum Source {
    /// The core's regenerating reader.
    Export(ExportReader),
    /// Chunks sent by a writer on another thread, then its result.
    Channel(mpsc::Receiver<acikit::Result<Bytes>>),
}

/// Chunks of bytes, pulled by the JS `Readable`; `null` at the (verified) end.
#[napi]
pub struct NativeReader {
    source: Arc<Mutex<Option<Source>>>,
    task: Arc<Mutex<Option<JoinHandle<acikit::Result<Exported>>>>>,
    /// Cancelled by `close()`: a pending `next()` ends at once and drops the source.
    closed: CancelToken,
}

impl NativeReader {
    /// A reader over `source`.
    pub fn new(source: Source) -> Self {
        NativeReader {
            source: Arc::new(Mutex::new(Some(source))),
            task: Arc::new(Mutex::new(None)),
            closed: CancelToken::new(),
        }
    }

    /// A reader of what the export `task` writes into `writer`'s channel (see
    /// [`ChannelWriter::pair`]).
    pub fn of_export(
        reader: NativeReader,
        task: JoinHandle<acikit::Result<Exported>>,
    ) -> NativeReader {
        NativeReader {
            task: Arc::new(Mutex::new(Some(task))),
            ..reader
        }
    }
}

#[napi]
impl NativeReader {
    /// The next chunk, or null at the end. An error (e.g. `corrupt_store`) ends the stream.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<Buffer>> {
        let closed = self.closed.clone();
        tokio::select! {
            _ = closed.cancelled() => {}
            chunk = self.next_chunk() => return chunk,
        }
        // Closed (the pending read, which held the lock, is dropped): dropping the source
        // stops its producer.
        self.source.lock().await.take();
        Ok(None)
    }

    /// The outcome of the export feeding this reader, once it ended (null for `openRead`).
    #[napi]
    pub async fn outcome(&self) -> napi::Result<Option<ExportRecord>> {
        let Some(task) = self.task.lock().await.take() else {
            return Ok(None);
        };
        let exported = task.await.map_err(|e| {
            to_napi(acikit::Error::new(
                acikit::ErrorKind::Internal,
                e.to_string(),
            ))
        })?;
        Ok(Some(napi_result(exported)?.into()))
    }

    /// Stops reading: the producer ends (an unfinished export is abandoned).
    #[napi]
    pub fn close(&self) {
        self.closed.cancel();
        if let Ok(mut guard) = self.source.try_lock() {
            guard.take();
        }
    }
}

impl NativeReader {
    /// The next chunk of the source, or `None` at its end.
    async fn next_chunk(&self) -> napi::Result<Option<Buffer>> {
        let mut guard = self.source.lock().await;
        let chunk = match guard.as_mut() {
            None => None,
            Some(Source::Export(reader)) => {
                napi_result(reader.next_chunk().await.map_err(acikit::Error::from))?
            }
            Some(Source::Channel(rx)) => match rx.recv().await {
                None => None,
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(err)) => {
                    *guard = None;
                    return Err(to_napi(err));
                }
            },
        };
        match chunk {
            Some(chunk) => Ok(Some(Buffer::from(Vec::from(chunk)))),
            None => {
                *guard = None;
                Ok(None)
            }
        }
    }
}

/// Bytes of chunks sent to a [`NativeReader`] at once.
const CHUNK: usize = 256 * 1024;

/// A blocking `Write` whose bytes go to a [`NativeReader`] in chunks.
pub struct ChannelWriter {
    tx: mpsc::Sender<acikit::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    /// A writer and the reader of what it writes.
    pub fn pair() -> (ChannelWriter, NativeReader) {
        let (tx, rx) = mpsc::channel(8);
        let writer = ChannelWriter {
            tx,
            buffer: Vec::with_capacity(CHUNK),
        };
        (writer, NativeReader::new(Source::Channel(rx)))
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the stream was closed")
        })
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

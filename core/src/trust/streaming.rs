//! [`StreamingVerifier`]: signature verification fed by writes, for a fetch that tees the
//! downloaded bytes to the importer and to verification at the same time.
//!
//! [`StreamingVerifier::start`] runs every check that needs no data at once (so an untrusted
//! or weak signature is refused before the download), then hashes on its own thread, fed through
//! a bounded channel by a [`VerifySink`]. Dropping the sink ends the data; [`VerifyHandle::finish`]
//! then gives the verdict, the same [`verify_detached`](super::verify_detached) gives for the
//! same bytes.

use std::io::{Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::keyring::TrustStore;
use super::verify::{Prepared, VerifiedSignature};
use crate::{Error, ErrorKind, Result};

/// Bytes gathered by the sink before a chunk is sent.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the sink and the verifying thread (so at most ~1 MiB buffered).
const DEPTH: usize = 16;

/// Signature verification over data given by writes; see the module documentation.
pub struct StreamingVerifier;

impl StreamingVerifier {
    /// Checks the ascii-armored detached signature `signature_armored` for the image `name`
    /// against the keys of `trust` as far as it can without data (every check of
    /// [`verify_detached`](super::verify_detached) but the last), then starts the verifying
    /// thread. Write the data to the returned sink, drop it, then call
    /// [`VerifyHandle::finish`].
    pub fn start(
        trust: &TrustStore,
        name: &str,
        signature_armored: &[u8],
    ) -> Result<(VerifySink, VerifyHandle)> {
        Self::spawn(Prepared::new(trust, Some(name), signature_armored)?)
    }

    /// Like [`start`](Self::start) for data whose image name is not known yet (a fetch by
    /// URL): any trusted scope is accepted (root keys first), and the caller must check
    /// that [`VerifiedSignature::scope`](super::VerifiedSignature) covers the name it finds
    /// in the manifest.
    pub fn start_unnamed(
        trust: &TrustStore,
        signature_armored: &[u8],
    ) -> Result<(VerifySink, VerifyHandle)> {
        Self::spawn(Prepared::new(trust, None, signature_armored)?)
    }

    fn spawn(prepared: Prepared) -> Result<(VerifySink, VerifyHandle)> {
        let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
        let thread = std::thread::Builder::new()
            .name("acikit-verify".into())
            .spawn(move || {
                prepared.verify(ChannelReader {
                    rx,
                    chunk: Vec::new(),
                    pos: 0,
                })
            })
            .map_err(|e| Error::io("starting the signature verification thread", e))?;
        Ok((
            VerifySink {
                tx: Some(tx),
                buf: Vec::with_capacity(CHUNK),
            },
            VerifyHandle { thread },
        ))
    }
}

/// Where the signed data is written. Dropping it marks the end of the data.
pub struct VerifySink {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl VerifySink {
    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        match &self.tx {
            Some(tx) => tx.send(chunk).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the signature verification thread stopped",
                )
            }),
            None => Ok(()),
        }
    }
}

impl Write for VerifySink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buffered()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buffered()
    }
}

impl Drop for VerifySink {
    fn drop(&mut self) {
        let _ = self.send_buffered();
        self.tx = None;
    }
}

/// The verifying thread; [`VerifyHandle::finish`] gives its verdict.
pub struct VerifyHandle {
    thread: JoinHandle<Result<VerifiedSignature>>,
}

impl VerifyHandle {
    /// Waits for the verdict. Call it after the [`VerifySink`] is dropped: while the sink lives
    /// the data has not ended, and this call waits for it.
    pub fn finish(self) -> Result<VerifiedSignature> {
        self.thread.join().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Internal,
                "the signature verification thread panicked",
            ))
        })
    }

    /// [`finish`](Self::finish), then checks that the signing key's scope covers the image
    /// `name` (for a verifier started with [`StreamingVerifier::start_unnamed`], once the
    /// name is known from the manifest): [`ErrorKind::KeyWrongPrefix`] otherwise.
    pub fn finish_for(self, name: &str) -> Result<VerifiedSignature> {
        let signature = self.finish()?;
        if !signature.scope.covers(name) {
            return Err(Error::new(
                ErrorKind::KeyWrongPrefix,
                format!(
                    "key {} is trusted for {}, which does not cover {name}",
                    signature.fingerprint, signature.scope
                ),
            ));
        }
        Ok(signature)
    }
}

/// The verifying thread's side of the channel, as a reader; it ends when the sink is dropped.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

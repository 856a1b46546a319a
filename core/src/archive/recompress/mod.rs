//! Re-creating zstd, xz and bzip2 streams exactly: the parameters under which the encoders we
//! link reproduce an original compressed stream from its content.
//!
//! This is a stub with the interface the codecs module provides: [`detect`] finds nothing
//! (so such images keep their original bytes) and [`recreate`] refuses.

use crate::archive::compression::Compression;
use crate::{CancelToken, Error, ErrorKind, Result};

/// The parameters that re-create a zstd, xz or bzip2 stream (none in this stub).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "codec", rename_all = "snake_case")]
pub enum RecompressParams {}

/// A fresh reader from the start of some bytes (called once per pass).
pub type OpenReader<'a> = &'a mut dyn FnMut() -> std::io::Result<Box<dyn std::io::Read + Send>>;

/// Finds parameters under which our linked encoder re-creates `original` from `decompressed`,
/// verified over the whole stream, or `Ok(None)`. This stub always answers `Ok(None)`.
pub(crate) fn detect(
    compression: Compression,
    original: OpenReader<'_>,
    decompressed: OpenReader<'_>,
    cancel: &CancelToken,
) -> Result<Option<RecompressParams>> {
    let _ = (compression, original, decompressed, cancel);
    Ok(None)
}

/// Writes the stream re-created from `decompressed` under `params` to `out`. This stub has
/// no parameters to re-create with, and refuses.
pub(crate) fn recreate(
    params: &RecompressParams,
    decompressed: &mut dyn std::io::Read,
    out: &mut dyn std::io::Write,
    cancel: &CancelToken,
) -> Result<()> {
    let _ = (decompressed, out, cancel);
    match *params {}
    #[allow(unreachable_code)]
    Err(Error::new(
        ErrorKind::Unsupported,
        "re-creating zstd, xz or bzip2 streams is not built in",
    ))
}

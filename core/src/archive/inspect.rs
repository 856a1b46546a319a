//! One streaming pass over an image archive: decompress, compute the image ID, read
//! every tar member, apply the layout rules and parse the manifest.

use std::path::Path;

use serde::Serialize;

use super::compression::Compression;
use super::decode::{self, DecodedStream};
use super::layout::{EntryRole, LayoutValidator, Limits};
use super::tar::TarReader;
use crate::Result;
use crate::schema::{ImageId, ImageManifest};

/// What one pass over a valid image archive found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// `sha512-` of the uncompressed tar stream.
    pub image_id: ImageId,
    /// The image manifest, parsed and valid; [`ImageManifest::raw`] gives its bytes as stored.
    #[serde(skip)]
    pub manifest: ImageManifest,
    /// How the archive was compressed.
    pub compression: Compression,
    /// Size of the archive as given (compressed).
    pub compressed_size: u64,
    /// Size of the uncompressed tar stream.
    pub uncompressed_size: u64,
    /// Number of tar members.
    pub entries: u64,
    /// Number of regular files.
    pub regular_files: u64,
    /// Logical bytes of all regular files (holes of sparse files included).
    pub content_bytes: u64,
}

/// Inspects the image archive at `path`; see [`inspect`].
pub async fn inspect_file(path: impl AsRef<Path>, limits: &Limits) -> Result<Inspection> {
    let stream = decode::decode_file(path).await?;
    inspect_stream(stream, limits).await
}

/// Inspects an image archive read from `source` (any compression), in one pass:
/// the image ID is computed on the same bytes the validation reads. The first
/// problem found is returned as a typed error; an invalid manifest lists all of its
/// problems.
pub async fn inspect<R: std::io::Read + Send + 'static>(
    source: R,
    limits: &Limits,
) -> Result<Inspection> {
    inspect_stream(decode::decode(source), limits).await
}

async fn inspect_stream(mut stream: DecodedStream, limits: &Limits) -> Result<Inspection> {
    let mut tar = TarReader::new(stream.take_reader());
    tar.set_size_limit(limits.max_total_size);
    let mut layout = LayoutValidator::new(*limits);
    while let Some(entry) = tar.next_entry().await? {
        if layout.check_entry(&entry)? == EntryRole::Manifest {
            while let Some(chunk) = tar.read_content().await? {
                layout.manifest_chunk(&chunk)?;
            }
        }
    }
    let summary = layout.finish()?;
    let decoded = stream.finish().await?;
    let manifest = ImageManifest::parse(&summary.manifest)?;
    Ok(Inspection {
        image_id: ImageId::from_sha512(&decoded.sha512),
        manifest,
        compression: decoded.compression,
        compressed_size: decoded.compressed_size,
        uncompressed_size: decoded.uncompressed_size,
        entries: summary.entries,
        regular_files: summary.regular_files,
        content_bytes: summary.content_bytes,
    })
}

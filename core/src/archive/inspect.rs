//! One streaming pass over an image archive: decompress, compute the image ID, read
//! every tar member, apply the layout rules and parse the manifest.

use std::path::Path;

use serde::Serialize;

use super::compression::Compression;
use super::decode::{self, DecodedStream};
use super::layout::{EntryRole, LayoutValidator, Limits};
use super::tar::TarReader;
use crate::Result;
use crate::progress::{Observer, Phase};
use crate::schema::{ImageId, ImageManifest};

/// What one pass over a valid image archive found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
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

/// Uncompressed bytes read between two [`Phase::Inspect`] progress events.
const REPORT_EVERY: u64 = 1 << 20;

/// Validates the image archive at `path` (any compression) and returns its manifest and
/// image ID, in one pass; see [`inspect`]. This is what `acikit validate`, `acikit id` and
/// `acikit inspect` run: a valid archive gives an [`Inspection`], an invalid one a typed
/// error.
///
/// Progress is [`Phase::Inspect`] in uncompressed bytes read (the total is not known
/// beforehand); cancelling `observer` stops the pass with
/// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled). Nothing is written.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> acikit::Result<()> {
/// use acikit::{ErrorKind, Limits, Observer, inspect_file};
///
/// # let dir = acikit::testing::example_dir("inspect");
/// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
/// // `aci` is an image archive, e.g. built with `acikit::Builder`.
/// let inspection = inspect_file(&aci, Limits::default(), Observer::default()).await?;
/// assert_eq!(inspection.manifest.name.as_str(), "example.com/hello");
/// assert!(inspection.image_id.as_str().starts_with("sha512-"));
///
/// // Not an image: a typed error.
/// std::fs::write(dir.join("bad.aci"), b"not a tar").unwrap();
/// let err = inspect_file(dir.join("bad.aci"), Limits::default(), Observer::default())
///     .await
///     .unwrap_err();
/// assert_ne!(err.kind(), ErrorKind::Internal);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub fn inspect_file(
    path: impl AsRef<Path>,
    limits: Limits,
    observer: Observer,
) -> impl Future<Output = Result<Inspection>> + Send + 'static {
    let path = path.as_ref().to_path_buf();
    async move {
        let stream = decode::decode_file(path).await?;
        inspect_stream(stream, limits, observer).await
    }
}

/// Inspects an image archive read from `source` (any compression), in one pass:
/// the image ID is computed on the same bytes the validation reads. The first
/// problem found is returned as a typed error; an invalid manifest lists all of its
/// problems. Progress and cancellation as [`inspect_file`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> acikit::Result<()> {
/// use acikit::{Limits, Observer};
///
/// # let dir = acikit::testing::example_dir("inspect-reader");
/// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
/// let bytes = std::fs::read(&aci).unwrap(); // or a socket, a pipe, any `Read`
/// let inspection =
///     acikit::archive::inspect(std::io::Cursor::new(bytes), Limits::default(), Observer::default())
///         .await?;
/// assert_eq!(inspection.manifest.name.as_str(), "example.com/hello");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub async fn inspect<R: std::io::Read + Send + 'static>(
    source: R,
    limits: Limits,
    observer: Observer,
) -> Result<Inspection> {
    inspect_stream(decode::decode(source), limits, observer).await
}

async fn inspect_stream(
    mut stream: DecodedStream,
    limits: Limits,
    observer: Observer,
) -> Result<Inspection> {
    let mut tar = TarReader::new(stream.take_reader());
    tar.set_size_limit(limits.max_total_size);
    let mut layout = LayoutValidator::new(limits);
    let mut reported = 0;
    while let Some(entry) = tar.next_entry().await? {
        observer.check()?;
        if tar.position() - reported >= REPORT_EVERY {
            reported = tar.position();
            observer.report(Phase::Inspect, reported, None);
        }
        if layout.check_entry(&entry)? == EntryRole::Manifest {
            while let Some(chunk) = tar.read_content().await? {
                layout.manifest_chunk(&chunk)?;
            }
        }
    }
    let summary = layout.finish()?;
    let decoded = stream.finish().await?;
    observer.report(
        Phase::Inspect,
        decoded.uncompressed_size,
        Some(decoded.uncompressed_size),
    );
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

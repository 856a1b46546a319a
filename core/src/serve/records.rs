//! What the server keeps beside the store for each pushed image: the signature pushed with
//! it, which bytes that signature covers (the *served form*), and, when our exports cannot
//! reproduce those bytes, the original upload.
//!
//! ```text
//! STORE/signatures/<image hex>.asc    the armored detached signature pushed with the image
//! STORE/signatures/<image hex>.json   {"form": "tar" | "gzip" | "original", "size", "sha256"}
//! STORE/originals/<image hex>.aci     the uploaded bytes, for the "original" form only
//! ```
//!
//! Every file is written to a temporary name, synced and renamed, the `.json` last: a record
//! is only read once it is complete. A push writes them holding the store's commit lock
//! shared, while its image is indexed; `rm` removes them with the image, and `gc` those of
//! images no longer indexed (see `store::housekeeping`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic_file::write_atomic;
use crate::schema::ImageId;
use crate::store::Store;
use crate::store::paths::StorePaths;
use crate::store::regenerate::{self, ObjectPaths};
use crate::{Error, Result};

/// Which bytes an image is served as at its `.aci` URL: the bytes its signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServedForm {
    /// The canonical tar, regenerated from the store (also the form of unsigned images).
    Tar,
    /// Our deterministic gzip export (no name, mtime 0, level 6), regenerated on the fly.
    Gzip,
    /// The bytes as they were pushed or fetched, re-created from the image's original
    /// record (`store::originals`: a gzip correction record, encoder parameters or the bytes
    /// kept whole) and checked against their SHA-256 before they are served.
    Original,
}

impl ServedForm {
    /// `tar`, `gzip` or `original`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedForm::Tar => "tar",
            ServedForm::Gzip => "gzip",
            ServedForm::Original => "original",
        }
    }
}

/// The record of a signed image: the form its signature covers, that form's size and
/// SHA-256, and whether the server checked the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServeRecord {
    /// The served form.
    pub form: ServedForm,
    /// Bytes of the served form.
    pub size: u64,
    /// SHA-256 of the served form, lowercase hex.
    pub sha256: String,
    /// The fingerprint of the trusted key the signature was verified with over the pushed
    /// bytes, at push time; `None`: not checked (the server did not know the signing key).
    #[serde(default)]
    pub verified_by: Option<String>,
}

/// The serve records of one store (their paths are the store's, see [`StorePaths`]).
#[derive(Debug, Clone)]
pub(crate) struct RecordPaths {
    paths: StorePaths,
}

impl RecordPaths {
    pub(crate) fn new(store: &Store) -> RecordPaths {
        RecordPaths {
            paths: store.paths().clone(),
        }
    }

    /// The paths of the store.
    pub(crate) fn store_paths(&self) -> &StorePaths {
        &self.paths
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.paths.tmp()
    }

    pub(crate) fn signature(&self, id: &ImageId) -> PathBuf {
        self.paths.signature(id)
    }

    pub(crate) fn record(&self, id: &ImageId) -> PathBuf {
        self.paths.signature_record(id)
    }

    pub(crate) fn original(&self, id: &ImageId) -> PathBuf {
        self.paths.original(id)
    }

    /// The record of `id`, if it was pushed with a signature.
    pub(crate) fn load(&self, id: &ImageId) -> Result<Option<ServeRecord>> {
        let path = self.record(id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::new(
                    crate::ErrorKind::CorruptStore,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Saves the signature, then the record (which makes both visible).
    pub(crate) fn save(&self, id: &ImageId, signature: &[u8], record: &ServeRecord) -> Result<()> {
        let dir = self.paths.signatures();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        write_atomic(&self.signature(id), signature)?;
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::new(crate::ErrorKind::Io, e.to_string()))?;
        write_atomic(&self.record(id), &json)
    }

    /// Moves the uploaded file `from` (in the store's `tmp/`) to the originals of `id`.
    pub(crate) fn keep_original(&self, id: &ImageId, from: &Path) -> Result<()> {
        let dir = self.paths.originals();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let to = self.original(id);
        std::fs::rename(from, &to)
            .map_err(|e| Error::io(format!("renaming to {}", to.display()), e))?;
        sync_dir(&dir)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// The object paths of a store, for regeneration.
pub(crate) fn object_paths(store: &Store) -> ObjectPaths {
    let paths = store.paths().clone();
    std::sync::Arc::new(move |digest| paths.object(digest))
}

/// Regenerates the image's deterministic gzip export into `out`, exactly as
/// `Store::export_to(.., ExportCompression::Gzip, ..)` writes it (blocking).
pub(crate) fn gzip_export<W: Write>(
    recipe: &Path,
    objects: &ObjectPaths,
    id: &ImageId,
    out: W,
) -> Result<W> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::new(6));
    regenerate::regenerate_to(recipe, objects, &id.sha512(), &mut gz)?;
    gz.finish()
        .map_err(|e| Error::io("compressing the exported image", e))
}

/// A `Write` that only hashes (SHA-256) and counts.
#[derive(Default)]
pub(crate) struct HashWriter {
    pub(crate) hasher: Sha256,
    pub(crate) written: u64,
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

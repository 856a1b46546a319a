//! Archive files already imported, by the SHA-256 of their bytes: `archives/<hex>` holds
//! the image ID the archive gave. Importing a file first hashes it (one read, far cheaper
//! than decompressing and hashing the tar); when the same bytes were imported before and
//! their image is still indexed, the import is over: the image is present. Otherwise the
//! file is imported as usual and its entry written after the commit.
//!
//! The shortcut is taken only without an import gate and with the default limits (the
//! image was checked against at least those when it was first imported, unless that
//! import raised them). Entries are hints: one naming an image no longer indexed is
//! ignored, and `gc` removes it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use super::ContentDigest;
use super::ContentHasher;
use super::import::{self, ImportOptions, Imported};
use super::index::Index;
use super::paths::StorePaths;
use crate::archive::layout::Limits;
use crate::blocking::blocking;
use crate::progress::{Observer, Phase};
use crate::schema::ImageId;
use crate::{Error, Result};

/// Imports the archive file `file` (opened from `path`), unless the same bytes were
/// imported before and their image is still in the store.
pub(crate) async fn import_file(
    paths: &StorePaths,
    index: &Index,
    path: &Path,
    file: File,
    options: ImportOptions,
    observer: Observer,
) -> Result<Imported> {
    let shortcut = options.gate.is_none() && options.limits == Limits::default();
    if !shortcut {
        return import::import(paths, index, file, &options, observer).await;
    }
    let shown = path.display().to_string();
    let (file, digest) = blocking(move || -> Result<(File, ContentDigest)> {
        let mut file = file;
        let digest =
            digest_reader(&mut file).map_err(|e| Error::io(format!("reading {shown}"), e))?;
        file.rewind()
            .map_err(|e| Error::io(format!("reading {shown}"), e))?;
        Ok((file, digest))
    })
    .await?;
    if let Some(id) = lookup(paths, &digest)
        && let Some(record) = index.get(&id).await?
        // An image imported without its original form is imported again to record it.
        && (!options.record_original
            || super::originals::record_path(paths, &id).exists())
    {
        observer.report(
            Phase::Import,
            record.archive_size,
            Some(record.archive_size),
        );
        return Ok(Imported {
            image_id: record.image_id,
            name: record.name,
            already_present: true,
            new_bytes: 0,
            new_objects: 0,
            staged_bytes: 0,
            archive_size: record.archive_size,
            tar_size: record.tar_size,
            recipe_size: record.recipe_size,
            entries: record.entries,
            original: super::originals::load(paths, &id)
                .ok()
                .flatten()
                .filter(|o| o.sha256 == digest.to_hex())
                .map(|o| o.info()),
        });
    }
    let imported = import::import(paths, index, file, &options, observer).await?;
    let paths = paths.clone();
    let id = imported.image_id.clone();
    // Only a hint: the import stands whether or not it could be written.
    let _ = blocking(move || record(&paths, &digest, &id)).await;
    Ok(imported)
}

/// SHA-256 of everything `reader` holds.
fn digest_reader(reader: &mut impl Read) -> std::io::Result<ContentDigest> {
    let mut hasher = ContentHasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

/// The image ID recorded for archive bytes with this digest, if any.
fn lookup(paths: &StorePaths, digest: &ContentDigest) -> Option<ImageId> {
    let text = std::fs::read_to_string(paths.archives().join(digest.to_hex())).ok()?;
    ImageId::parse(text.trim()).ok()
}

/// Records that archive bytes with this digest are the image `id` (atomically: a
/// temporary file renamed into place).
fn record(paths: &StorePaths, digest: &ContentDigest, id: &ImageId) -> Result<()> {
    let dir = paths.archives();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let target = dir.join(digest.to_hex());
    let temporary = dir.join(format!(".{}-{}", digest.to_hex(), std::process::id()));
    std::fs::write(&temporary, id.as_str())
        .and_then(|()| std::fs::rename(&temporary, &target))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            Error::io(format!("writing {}", target.display()), e)
        })
}

/// Removes the entries naming images not in `indexed` (hex IDs), and temporary files of
/// killed writes (`gc`, under the exclusive commit lock). Returns how many were removed.
pub(crate) fn prune(paths: &StorePaths, indexed: &HashSet<String>) -> Result<u64> {
    let dir = paths.archives();
    let mut removed = 0;
    for entry in super::heads::dir_entries(&dir)? {
        let entry = entry?;
        let path = entry.path();
        let keep = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| ImageId::parse(text.trim()).ok())
            .is_some_and(|id| indexed.contains(id.hex()))
            && !entry.file_name().to_string_lossy().starts_with('.');
        if !keep && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

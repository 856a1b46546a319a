//! The top layer of the core, above `store`, `render`, `fetch` and `serve`: the [`Store`]
//! operations that span several layers. `gc` is the store's gc then the render caches' gc,
//! `fsck` the store's fsck then the check of dead runs and render caches, and `rm` refuses an
//! image a live run uses, removes it from the store, then removes its render caches. Each
//! layer cleans only its own things (`store::housekeeping`, `render::housekeeping`); their
//! reports are put together here ([`GcReport`], [`FsckReport`]).
//!
//! Without the `render` feature there is no render layer: `gc`, `fsck` and `rm` do the store's
//! part only and leave whatever render caches a build with `render` left in a shared store
//! (see the crate documentation, "Cargo features").

#[cfg(feature = "render")]
use std::collections::HashSet;

use serde::Serialize;

#[cfg(feature = "render")]
use crate::ErrorKind;
use crate::progress::Observer;
use crate::schema::ImageId;
use crate::store::housekeeping::{self, StoreFsck, StoreGc};
use crate::store::{FsckProblem, OriginalCompaction};
use crate::{Error, Result, Store};

/// What `gc` removed.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Objects removed.
    pub objects_removed: u64,
    /// Bytes of the objects removed.
    pub bytes_removed: u64,
    /// Recipes of images no longer in the index, removed.
    pub recipes_removed: u64,
    /// Staging folders of killed imports and renders, removed.
    pub staging_removed: u64,
    /// Exploded trees and stacks of images no longer in the store, and damaged ones `fsck`
    /// set aside that no live run uses, removed.
    pub renders_removed: u64,
    /// Checkout objects no tree uses any more, removed.
    pub checkouts_removed: u64,
    /// Files in `signatures/` and `originals/` of images no longer in the index (left by a
    /// crash), removed.
    pub push_files_removed: u64,
    /// Dead runs (creator killed, or rootfs removed without release) cleaned: their copies
    /// beside the target, targets, overlay folders and records (see `render::reap`).
    pub dead_runs_removed: u64,
    /// Pending originals compacted (see [`Store::compact_originals`]).
    pub originals_compacted: u64,
    /// Pending originals that must stay kept whole (nothing re-creates them).
    pub originals_kept: u64,
    /// Bytes freed in `originals/`: kept originals the compaction removed (less the
    /// correction records written instead), and servers' copies of re-created originals
    /// (`originals/<hex>.served`, made again on the next request).
    pub original_bytes_freed: u64,
}

/// What `fsck` found (and repaired).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct FsckReport {
    /// Objects re-hashed.
    pub objects_checked: u64,
    /// Images regenerated and checked against their ID.
    pub images_checked: u64,
    /// Problems found.
    pub problems: Vec<FsckProblem>,
    /// Images dropped from the index (with `repair`).
    pub images_dropped: Vec<ImageId>,
    /// Objects no image references (not an error; `gc` removes them).
    pub unreferenced_objects: u64,
    /// Staging folders of killed imports (not an error; `gc` or the next open removes them).
    pub stale_staging: u64,
    /// Files in `signatures/` and `originals/` of images not in the index (not an error;
    /// `gc` and `fsck --repair` remove them).
    pub orphan_push_files: u64,
    /// Of those, removed (with `repair`).
    pub push_files_removed: u64,
    /// Dead runs (creator killed, or rootfs removed without release) and run folders left
    /// by a killed release (not an error; `gc`, `rm` and the next render clean them).
    pub dead_runs: u64,
    /// Entries of the side index of large objects (`heads/`) added or removed to match
    /// the objects (not an error: the index is only a hint, rebuilt by every `fsck` of a
    /// store that can be written).
    pub head_entries_fixed: u64,
    /// The exploded trees and stacks checked, set aside and rebuilt (see `render::verify`).
    #[cfg(feature = "render")]
    pub render_caches: crate::render::verify::RenderCacheReport,
}

impl FsckReport {
    /// Whether the store is consistent.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl GcReport {
    /// The report of the store's part of `gc`, with nothing removed from render caches.
    fn of_store(store: StoreGc) -> GcReport {
        GcReport {
            objects_removed: store.objects_removed,
            bytes_removed: store.bytes_removed,
            recipes_removed: store.recipes_removed,
            staging_removed: store.staging_removed,
            push_files_removed: store.push_files_removed,
            original_bytes_freed: store.served_bytes_removed,
            ..GcReport::default()
        }
    }
}

impl FsckReport {
    /// The report of the store's part of `fsck`, with no dead run and no render cache.
    fn of_store(store: StoreFsck) -> FsckReport {
        FsckReport {
            objects_checked: store.objects_checked,
            images_checked: store.images_checked,
            problems: store.problems,
            images_dropped: store.images_dropped,
            unreferenced_objects: store.unreferenced_objects,
            stale_staging: store.stale_staging,
            orphan_push_files: store.orphan_push_files,
            push_files_removed: store.push_files_removed,
            head_entries_fixed: store.head_entries_fixed,
            ..FsckReport::default()
        }
    }
}

impl Store {
    /// Removes an image from the index, then its recipe and the objects no other image
    /// references, then its exploded tree and the stacks built from it. An image a live
    /// rendered run uses is refused ([`ErrorKind::InUse`](crate::ErrorKind::InUse)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-remove");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::ErrorKind;
    ///
    /// store.remove(&id).await?;
    /// assert!(store.list().await?.is_empty());
    /// // Gone: a second removal does not find it.
    /// assert_eq!(store.remove(&id).await.unwrap_err().kind(), ErrorKind::NotFound);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove(&self, id: &ImageId) -> impl Future<Output = Result<()>> + Send + 'static {
        let store = self.clone();
        let id = id.clone();
        async move { store.remove_one(&id).await }
    }

    /// [`Store::remove`], borrowing.
    async fn remove_one(&self, id: &ImageId) -> Result<()> {
        self.require_writable("remove images")?;
        let mut results = self.remove_many(vec![id.clone()]).await;
        results.pop().unwrap_or(Ok(()))
    }

    /// [`Store::remove`] for several images, one result per image in order; the
    /// objects the remaining images use are read once, not once per image.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-remove-many");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{ErrorKind, ImageId};
    ///
    /// let missing = ImageId::from_sha512(&[0; 64]);
    /// let results = store.remove_many(vec![id.clone(), missing]).await;
    /// assert!(results[0].is_ok());
    /// assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
    /// assert!(store.list().await?.is_empty());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove_many(
        &self,
        ids: Vec<ImageId>,
    ) -> impl Future<Output = Vec<Result<()>>> + Send + 'static {
        let store = self.clone();
        async move { store.remove_all(ids).await }
    }

    /// [`Store::remove_many`], borrowing.
    async fn remove_all(&self, ids: Vec<ImageId>) -> Vec<Result<()>> {
        if let Err(err) = self.require_writable("remove images") {
            return ids
                .iter()
                .map(|_| Err(Error::new(err.kind(), err.message())))
                .collect();
        }
        #[cfg(feature = "render")]
        {
            remove_unless_rendered(self, ids).await
        }
        #[cfg(not(feature = "render"))]
        {
            housekeeping::remove_many(self.paths(), self.index(), &ids).await
        }
    }

    /// Removes objects and recipes no image references, and staging folders of killed
    /// imports; then cleans dead runs and removes the render caches of images no longer in
    /// the store and the checkout objects no tree uses. Safe while other processes import:
    /// their objects are pinned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-gc");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::Observer;
    ///
    /// let report = store.gc(Observer::default()).await?;
    /// // Every object is used by the image: nothing to remove, and the image stays whole.
    /// assert_eq!(report.objects_removed, 0);
    /// assert_eq!(store.list().await?.len(), 1);
    /// assert!(store.fsck(false, Observer::default()).await?.is_clean());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn gc(
        &self,
        observer: Observer,
    ) -> impl Future<Output = Result<GcReport>> + Send + 'static {
        let store = self.clone();
        async move { store.gc_now(observer).await }
    }

    /// [`Store::gc`], borrowing.
    async fn gc_now(&self, observer: Observer) -> Result<GcReport> {
        self.require_writable("collect garbage")?;
        let store = housekeeping::gc(self.paths(), self.index(), &observer).await?;
        #[allow(unused_mut)]
        let mut report = GcReport::of_store(store);
        #[cfg(feature = "render")]
        self.gc_render_caches(&mut report).await?;
        let compaction = self.compact_originals_now(observer).await?;
        report.originals_compacted = compaction.compacted;
        report.originals_kept = compaction.kept;
        report.original_bytes_freed += compaction.bytes_freed;
        Ok(report)
    }

    /// Turns the originals kept `pending` (by imports with
    /// [`ImportOptions::record_original`](crate::ImportOptions::record_original), fetches and
    /// pushes) into their compact forms: a gzip correction record, encoder parameters, or
    /// our own gzip export, each proved by re-creating the whole stream and comparing its
    /// SHA-256 before the kept bytes are removed. An original nothing re-creates stays kept,
    /// no longer pending, with the reason in its record. This is the slow part of recording
    /// an original (a gzip correction record costs several times the import: see
    /// `docs/PERFORMANCE.md`), so imports leave it to this call; [`Store::gc`] runs it.
    /// Progress: [`Phase::Original`](crate::Phase::Original) over the bytes of the pending
    /// originals; cancelling leaves every original as it was.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-compact");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let tar = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&tar, Default::default(), Default::default()).await?.image_id;
    /// # let aci = dir.join("hello.aci");
    /// # store.export_to(&id, &aci, acikit::ExportCompression::Gzip, Default::default()).await?;
    /// # store.remove(&id).await?;
    /// use acikit::{ImportOptions, Observer, OriginalForm};
    ///
    /// let options = ImportOptions::default().record_original(true);
    /// let id = store.import_file(&aci, options, Observer::default()).await?.image_id;
    /// // The gzip archive is kept as it came until the compaction.
    /// assert!(store.original(&id).await?.unwrap().pending);
    /// let done = store.compact_originals(Observer::default()).await?;
    /// assert_eq!(done.compacted, 1);
    /// let original = store.original(&id).await?.unwrap();
    /// assert!(!original.pending);
    /// assert_ne!(original.form, OriginalForm::Kept);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn compact_originals(
        &self,
        observer: Observer,
    ) -> impl Future<Output = Result<OriginalCompaction>> + Send + 'static {
        let store = self.clone();
        async move { store.compact_originals_now(observer).await }
    }

    /// [`Store::compact_originals`], borrowing.
    async fn compact_originals_now(&self, observer: Observer) -> Result<OriginalCompaction> {
        self.require_writable("compact originals")?;
        let ids: Vec<ImageId> = self.list().await?.into_iter().map(|i| i.image_id).collect();
        let paths = self.paths().clone();
        crate::blocking::blocking(move || {
            crate::store::originals::compact_all(&paths, &ids, &observer)
        })
        .await
    }

    /// The render caches' part of [`Store::gc`], added to `report`.
    #[cfg(feature = "render")]
    async fn gc_render_caches(&self, report: &mut GcReport) -> Result<()> {
        let indexed: HashSet<String> = self
            .list()
            .await?
            .into_iter()
            .map(|i| i.image_id.hex().to_string())
            .collect();
        let renders = crate::render::housekeeping::gc(self.paths(), indexed).await?;
        report.renders_removed = renders.renders_removed;
        report.checkouts_removed = renders.checkouts_removed;
        report.staging_removed += renders.staging_removed;
        report.dead_runs_removed = renders.dead_runs_removed;
        if !renders.failures.is_empty() {
            // Everything else is done; the runs are kept for a later try.
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "gc is done, but {} dead run(s) cannot be cleaned: {}",
                    renders.failures.len(),
                    renders.failures.join("; ")
                ),
            ));
        }
        Ok(())
    }

    /// Re-hashes every object and regenerates every image to check its ID, then looks for
    /// dead runs and checks the render caches (`render::verify`); with `repair`, drops broken
    /// images and corrupt objects and rebuilds damaged trees and stacks. A read-only store is
    /// checked (nothing is written, damaged caches are reported but not set aside), but not
    /// repaired ([`ErrorKind::ReadOnlyStore`](crate::ErrorKind::ReadOnlyStore) at once with `repair`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-fsck");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::Observer;
    ///
    /// let report = store.fsck(false, Observer::default()).await?;
    /// assert!(report.is_clean());
    /// assert_eq!(report.images_checked, 1);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn fsck(
        &self,
        repair: bool,
        observer: Observer,
    ) -> impl Future<Output = Result<FsckReport>> + Send + 'static {
        let store = self.clone();
        async move { store.fsck_now(repair, observer).await }
    }

    /// [`Store::fsck`], borrowing.
    async fn fsck_now(&self, repair: bool, observer: Observer) -> Result<FsckReport> {
        if repair {
            self.require_writable("repair")?;
        }
        let store = housekeeping::fsck(
            self.paths(),
            self.index(),
            repair,
            !self.is_read_only(),
            &observer,
        )
        .await?;
        #[allow(unused_mut)]
        let mut report = FsckReport::of_store(store);
        #[cfg(feature = "render")]
        {
            let dead = crate::render::housekeeping::dead_runs(self.paths()).await?;
            report.dead_runs = dead.dead_count();
            report.stale_staging += dead.stale_staging.len() as u64;
            let (problems, caches) =
                crate::render::verify::check_render_caches(self, repair, &observer).await?;
            report.problems.extend(problems);
            report.render_caches = caches;
        }
        Ok(report)
    }
}

/// [`Store::remove_many`] with the render layer: images a live run uses are refused, the
/// others removed from the store, then their trees and the stacks built from them.
#[cfg(feature = "render")]
async fn remove_unless_rendered(store: &Store, ids: Vec<ImageId>) -> Vec<Result<()>> {
    let paths = store.paths();
    // Dead runs use nothing: they are cleaned, so that only live runs keep an image.
    let in_use = match crate::render::housekeeping::in_use_by_live_runs(paths).await {
        Ok(in_use) => in_use,
        Err(err) => return ids.iter().map(|_| Err(same_error(&err))).collect(),
    };
    let free: Vec<ImageId> = ids
        .iter()
        .filter(|id| !in_use.uses_image(id.hex()))
        .cloned()
        .collect();
    let mut removed = housekeeping::remove_many(paths, store.index(), &free)
        .await
        .into_iter();
    let mut results: Vec<Result<()>> = ids
        .iter()
        .map(|id| {
            if in_use.uses_image(id.hex()) {
                Err(Error::new(
                    ErrorKind::InUse,
                    format!(
                        "{id} is used by a rendered run; release it first (acikit release DIR)"
                    ),
                ))
            } else {
                removed.next().unwrap_or(Ok(()))
            }
        })
        .collect();
    let gone: HashSet<String> = ids
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_ok())
        .map(|(id, _)| id.hex().to_string())
        .collect();
    let paths = paths.clone();
    let renders = crate::blocking::blocking(move || {
        crate::render::housekeeping::remove_renders_of(&paths, &gone)
    })
    .await;
    if let Err(err) = renders {
        for (result, id) in results.iter_mut().zip(&ids) {
            if result.is_ok() {
                *result = Err(Error::new(
                    err.kind(),
                    format!(
                        "{id} was removed, but not all its files: {}; `acikit gc` removes them",
                        err.message()
                    ),
                ));
            }
        }
    }
    results
}

/// A copy of `err` (same kind and message) for another image's result.
#[cfg(feature = "render")]
fn same_error(err: &Error) -> Error {
    Error::new(err.kind(), err.message().to_string())
}

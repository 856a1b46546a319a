//! The records the bindings return (and `StoreOptions`, which they take), converted from
//! the core's types. Counts and sizes are `i64` (Kotlin's and Java's `Long`), times are
//! `SystemTime` (`java.time.Instant`, Swift's `Date`), labels are maps.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::progress::to_i64;

/// How to open a store.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct StoreOptions {
    /// The PostgreSQL index (`postgres://user[:password]@host[:port]/db`); none opens the
    /// index the store was created with (SQLite by default).
    #[uniffi(default = None)]
    pub database_url: Option<String>,
    /// Open read-only: reads work, every write fails with `read_only_store`.
    #[uniffi(default = false)]
    pub read_only: bool,
    /// Where runs rendered from a read-only store are recorded.
    #[uniffi(default = None)]
    pub runs_dir: Option<String>,
}

impl From<StoreOptions> for acikit::StoreOptions {
    fn from(o: StoreOptions) -> Self {
        let mut options = acikit::StoreOptions::default().read_only(o.read_only);
        if let Some(url) = o.database_url {
            options = options.database_url(url);
        }
        if let Some(dir) = o.runs_dir {
            options = options.runs_dir(dir);
        }
        options
    }
}

/// One stored image.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ImageInfo {
    /// The image ID (`sha512-...`).
    pub id: String,
    /// The image name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Size of the canonical (uncompressed) tar.
    pub size: i64,
    /// Size of the archive as imported.
    pub archive_size: i64,
    /// Number of tar members.
    pub entries: i64,
    /// When it was imported.
    pub imported_at: SystemTime,
    /// When it was last used.
    pub last_used_at: SystemTime,
    /// Where it was imported from, if known.
    pub origin: Option<String>,
}

impl From<acikit::ImageInfo> for ImageInfo {
    fn from(i: acikit::ImageInfo) -> Self {
        ImageInfo {
            id: i.image_id.to_string(),
            name: i.name,
            labels: labels(i.labels),
            size: to_i64(i.tar_size),
            archive_size: to_i64(i.archive_size),
            entries: to_i64(i.entries),
            imported_at: time_ms(i.imported_at_ms),
            last_used_at: time_ms(i.last_used_at_ms),
            origin: i.origin,
        }
    }
}

/// The outcome of an import.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Imported {
    /// The image ID.
    pub id: String,
    /// The image name.
    pub name: String,
    /// The store already had the image (nothing was added).
    pub already_present: bool,
    /// Bytes of content objects the store did not have.
    pub new_bytes: i64,
    /// Content objects the store did not have.
    pub new_objects: i64,
    /// Size of the archive read.
    pub archive_size: i64,
    /// Size of the canonical tar.
    pub size: i64,
    /// Number of tar members.
    pub entries: i64,
}

impl From<acikit::Imported> for Imported {
    fn from(i: acikit::Imported) -> Self {
        Imported {
            id: i.image_id.to_string(),
            name: i.name,
            already_present: i.already_present,
            new_bytes: to_i64(i.new_bytes),
            new_objects: to_i64(i.new_objects),
            archive_size: to_i64(i.archive_size),
            size: to_i64(i.tar_size),
            entries: to_i64(i.entries),
        }
    }
}

/// The outcome of an export.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Exported {
    /// The image exported.
    pub id: String,
    /// Bytes of the canonical tar (regenerated and verified).
    pub size: i64,
    /// Bytes written to the output.
    pub written: i64,
}

impl From<acikit::Exported> for Exported {
    fn from(e: acikit::Exported) -> Self {
        Exported {
            id: e.image_id.to_string(),
            size: to_i64(e.tar_size),
            written: to_i64(e.written),
        }
    }
}

/// A rendered rootfs.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Rendered {
    /// The image rendered.
    pub id: String,
    /// The folder holding the rootfs (release it with `Store.release`).
    pub target: String,
    /// The strategy used (`Strategy::as_str()`).
    pub strategy: String,
    /// The rootfs is read-only.
    pub read_only: bool,
    /// Shared files are protected from writes through the rootfs.
    pub protected: bool,
    /// The images laid down, dependencies first.
    pub layers: Vec<String>,
    /// The tree came from the render cache.
    pub cached: bool,
    /// What the render could not do as asked.
    pub warnings: Vec<String>,
}

impl From<acikit::Rendered> for Rendered {
    fn from(r: acikit::Rendered) -> Self {
        Rendered {
            id: r.image_id.to_string(),
            target: r.target.display().to_string(),
            strategy: r.strategy.as_str().to_string(),
            read_only: r.read_only,
            protected: r.protected,
            layers: r.layers.iter().map(ToString::to_string).collect(),
            cached: r.cached,
            warnings: r.warnings,
        }
    }
}

/// What `gc` removed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GcReport {
    /// Content objects removed.
    pub objects_removed: i64,
    /// Their bytes.
    pub bytes_removed: i64,
    /// Recipes removed.
    pub recipes_removed: i64,
    /// Leftover staging folders removed.
    pub staging_removed: i64,
    /// Render caches removed.
    pub renders_removed: i64,
    /// Checkouts removed.
    pub checkouts_removed: i64,
    /// Push leftovers removed.
    pub push_files_removed: i64,
    /// Records of dead runs removed.
    pub dead_runs_removed: i64,
    /// Pending originals compacted (as `compactOriginals` does).
    pub originals_compacted: i64,
    /// Pending originals that must stay kept whole (nothing re-creates them).
    pub originals_kept: i64,
    /// Bytes freed in the store's originals.
    pub original_bytes_freed: i64,
}

impl From<acikit::GcReport> for GcReport {
    fn from(r: acikit::GcReport) -> Self {
        GcReport {
            objects_removed: to_i64(r.objects_removed),
            bytes_removed: to_i64(r.bytes_removed),
            recipes_removed: to_i64(r.recipes_removed),
            staging_removed: to_i64(r.staging_removed),
            renders_removed: to_i64(r.renders_removed),
            checkouts_removed: to_i64(r.checkouts_removed),
            push_files_removed: to_i64(r.push_files_removed),
            dead_runs_removed: to_i64(r.dead_runs_removed),
            originals_compacted: to_i64(r.originals_compacted),
            originals_kept: to_i64(r.originals_kept),
            original_bytes_freed: to_i64(r.original_bytes_freed),
        }
    }
}

/// What `compactOriginals` did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OriginalCompaction {
    /// Pending originals turned into a compact form (`gzip`, `gzip_export`, `recompress`).
    pub compacted: i64,
    /// Pending originals found to need their bytes kept whole (no longer pending).
    pub kept: i64,
    /// Bytes of kept originals removed, less the correction records written instead.
    pub bytes_freed: i64,
}

impl From<acikit::OriginalCompaction> for OriginalCompaction {
    fn from(c: acikit::OriginalCompaction) -> Self {
        OriginalCompaction {
            compacted: to_i64(c.compacted),
            kept: to_i64(c.kept),
            bytes_freed: to_i64(c.bytes_freed),
        }
    }
}

/// What the store keeps to give back an image's original archive (`export` with
/// compression `original`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OriginalInfo {
    /// How it is re-created (`OriginalForm::as_str()`): `none` (a plain tar), `gzip` (a
    /// correction record), `recompress`, `gzip_export` or `kept` (the bytes as they came).
    pub form: String,
    /// Its compression: `none`, `gzip`, `bzip2`, `xz` or `zstd`.
    pub compression: String,
    /// Bytes of the original.
    pub size: i64,
    /// SHA-256 of the original, lowercase hex.
    pub sha256: String,
    /// Bytes the store keeps to re-create it.
    pub kept_bytes: i64,
    /// For `kept`: why nothing else re-creates it.
    pub reason: Option<String>,
    /// Kept whole only until `compactOriginals` (or `gc`) makes its compact form.
    pub pending: bool,
}

impl From<acikit::store::OriginalInfo> for OriginalInfo {
    fn from(o: acikit::store::OriginalInfo) -> Self {
        OriginalInfo {
            form: o.form.as_str().to_string(),
            compression: o.compression,
            size: to_i64(o.size),
            sha256: o.sha256,
            kept_bytes: to_i64(o.kept_bytes),
            reason: o.reason,
            pending: o.pending,
        }
    }
}

/// One problem `fsck` found.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FsckProblem {
    /// Its stable kind.
    pub kind: String,
    /// What it concerns (an object, an image ID, a file).
    pub subject: String,
    /// What is wrong.
    pub message: String,
}

/// What `fsck` checked and found.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FsckReport {
    /// Nothing was found wrong.
    pub clean: bool,
    /// Content objects checked.
    pub objects_checked: i64,
    /// Images checked.
    pub images_checked: i64,
    /// The problems found.
    pub problems: Vec<FsckProblem>,
    /// Images dropped from the index by a repair.
    pub images_dropped: Vec<String>,
    /// Objects no image uses.
    pub unreferenced_objects: i64,
    /// Leftover staging folders.
    pub stale_staging: i64,
    /// Push leftovers.
    pub orphan_push_files: i64,
    /// Push leftovers removed by a repair.
    pub push_files_removed: i64,
    /// Records of dead runs.
    pub dead_runs: i64,
    /// Head entries fixed by a repair.
    pub head_entries_fixed: i64,
}

impl From<acikit::FsckReport> for FsckReport {
    fn from(r: acikit::FsckReport) -> Self {
        FsckReport {
            clean: r.is_clean(),
            objects_checked: to_i64(r.objects_checked),
            images_checked: to_i64(r.images_checked),
            problems: r
                .problems
                .into_iter()
                .map(|p| FsckProblem {
                    kind: p.kind.to_string(),
                    subject: p.subject,
                    message: p.message,
                })
                .collect(),
            images_dropped: r.images_dropped.iter().map(ToString::to_string).collect(),
            unreferenced_objects: to_i64(r.unreferenced_objects),
            stale_staging: to_i64(r.stale_staging),
            orphan_push_files: to_i64(r.orphan_push_files),
            push_files_removed: to_i64(r.push_files_removed),
            dead_runs: to_i64(r.dead_runs),
            head_entries_fixed: to_i64(r.head_entries_fixed),
        }
    }
}

/// Sizes and counts of a store.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct StoreStats {
    /// The index's database (`sqlite`, `postgres`).
    pub index: String,
    /// Images stored.
    pub images: i64,
    /// The images' canonical tars added up.
    pub logical_bytes: i64,
    /// Content bytes the images use, each object once.
    pub referenced_content_bytes: i64,
    /// Content objects.
    pub objects: i64,
    /// Their bytes.
    pub object_bytes: i64,
    /// Disk use of the whole store folder.
    pub disk_bytes: i64,
    /// Images with an original record (their exact archive is given back).
    pub original_records: i64,
    /// Those archives' sizes added up.
    pub original_compressed_bytes: i64,
    /// Bytes kept to re-create them (correction records and kept archives).
    pub original_kept_bytes: i64,
    /// Per image with an original record: its form, size and the bytes kept for it.
    pub original_images: Vec<ImageOriginal>,
    /// Logical bytes per content byte stored.
    pub dedup_ratio: f64,
}

/// One image's original record, as `stats` reports it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ImageOriginal {
    /// The image's ID.
    pub id: String,
    /// What the store keeps to re-create its original.
    pub original: OriginalInfo,
}

impl From<acikit::store::StoreStats> for StoreStats {
    fn from(s: acikit::store::StoreStats) -> Self {
        StoreStats {
            index: serde_name(&s.index),
            images: to_i64(s.images),
            logical_bytes: to_i64(s.logical_bytes),
            referenced_content_bytes: to_i64(s.referenced_content_bytes),
            objects: to_i64(s.objects),
            object_bytes: to_i64(s.object_bytes),
            disk_bytes: to_i64(s.disk_bytes),
            original_records: to_i64(s.original_records),
            original_compressed_bytes: to_i64(s.original_compressed_bytes),
            original_kept_bytes: to_i64(s.original_kept_bytes),
            original_images: s
                .original_images
                .into_iter()
                .map(|i| ImageOriginal {
                    id: i.image_id.to_string(),
                    original: i.original.into(),
                })
                .collect(),
            dedup_ratio: s.dedup_ratio,
        }
    }
}

/// A trusted signing key.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TrustedKey {
    /// Its fingerprint, lowercase hex.
    pub fingerprint: String,
    /// Its key ID.
    pub key_id: String,
    /// Its user IDs.
    pub user_ids: Vec<String>,
    /// Its algorithm.
    pub algorithm: String,
    /// When it was made.
    pub created_at: SystemTime,
    /// When it expires, if it does.
    pub expires_at: Option<SystemTime>,
    /// The name prefix it may sign; none for every name (a root key).
    pub prefix: Option<String>,
}

impl From<acikit::trust::TrustedKey> for TrustedKey {
    fn from(k: acikit::trust::TrustedKey) -> Self {
        TrustedKey {
            fingerprint: k.fingerprint,
            key_id: k.key_id,
            user_ids: k.user_ids,
            algorithm: k.algorithm,
            created_at: time_s(k.created_at),
            expires_at: k.expires_at.map(time_s),
            prefix: match k.scope {
                acikit::trust::TrustScope::Root => None,
                acikit::trust::TrustScope::Prefix(prefix) => Some(prefix),
            },
        }
    }
}

/// A dependency of an image, as its manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ManifestDependency {
    /// The image name.
    pub name: String,
    /// The exact image, if pinned.
    pub id: Option<String>,
    /// Labels the image must have.
    pub labels: HashMap<String, String>,
}

/// An image manifest: its main fields, and the whole document as JSON.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Manifest {
    /// The image name.
    pub name: String,
    /// The appc spec version it follows.
    pub ac_version: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its annotations.
    pub annotations: HashMap<String, String>,
    /// Its dependencies, in order.
    pub dependencies: Vec<ManifestDependency>,
    /// The manifest as JSON (every field, the app included).
    pub json: String,
}

impl From<acikit::ImageManifest> for Manifest {
    fn from(m: acikit::ImageManifest) -> Self {
        Manifest {
            name: m.name.to_string(),
            ac_version: m.ac_version.to_string(),
            labels: manifest_labels(&m.labels),
            annotations: m
                .annotations
                .iter()
                .map(|a| (a.name.to_string(), a.value.clone()))
                .collect(),
            dependencies: m
                .dependencies
                .iter()
                .map(|d| ManifestDependency {
                    name: d.image_name.to_string(),
                    id: d.image_id.as_ref().map(ToString::to_string),
                    labels: manifest_labels(&d.labels),
                })
                .collect(),
            json: String::from_utf8_lossy(&m.to_json_bytes()).into_owned(),
        }
    }
}

/// What `validate` found in a valid archive.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Inspection {
    /// The image ID.
    pub id: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The archive's compression (`none`, `gzip`, `bzip2`, `xz`, `zstd`).
    pub compression: String,
    /// Size of the archive.
    pub compressed_size: i64,
    /// Size of the tar.
    pub uncompressed_size: i64,
    /// Number of tar members.
    pub entries: i64,
}

impl From<acikit::Inspection> for Inspection {
    fn from(i: acikit::Inspection) -> Self {
        Inspection {
            id: i.image_id.to_string(),
            manifest: i.manifest.into(),
            compression: i.compression.as_str().to_string(),
            compressed_size: to_i64(i.compressed_size),
            uncompressed_size: to_i64(i.uncompressed_size),
            entries: to_i64(i.entries),
        }
    }
}

/// A built image archive.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Built {
    /// Where it was written.
    pub path: String,
    /// Its image ID.
    pub id: String,
    /// Size of the archive.
    pub size: i64,
    /// Size of the tar.
    pub tar_size: i64,
    /// Number of tar members.
    pub entries: i64,
    /// The compression (`BuildCompression::as_str()`).
    pub compression: String,
}

impl From<acikit::Built> for Built {
    fn from(b: acikit::Built) -> Self {
        Built {
            path: b.path.display().to_string(),
            id: b.image_id.to_string(),
            size: to_i64(b.size),
            tar_size: to_i64(b.tar_size),
            entries: to_i64(b.entries),
            compression: b.compression.as_str().to_string(),
        }
    }
}

/// A detached signature.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Signed {
    /// The ascii-armored signature (write it beside the image as `IMAGE.asc`).
    pub armored: String,
    /// The fingerprint of the signing key.
    pub fingerprint: String,
    /// The (sub)key that signed.
    pub signing_key: String,
    /// The hash algorithm.
    pub hash_algorithm: String,
    /// Bytes signed.
    pub data_len: i64,
}

impl From<acikit::trust::Signed> for Signed {
    fn from(s: acikit::trust::Signed) -> Self {
        Signed {
            armored: String::from_utf8_lossy(&s.armored).into_owned(),
            fingerprint: s.fingerprint,
            signing_key: s.signing_key,
            hash_algorithm: s.hash_algorithm,
            data_len: to_i64(s.data_len),
        }
    }
}

/// What meta discovery found for a name.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Discovered {
    /// The name.
    pub name: String,
    /// The labels used (with the host's `os` and `arch` filled in).
    pub labels: HashMap<String, String>,
    /// Image URLs, each with its signature URL: `(aci, asc)` pairs, best first.
    pub aci_urls: Vec<String>,
    /// The signature URLs, one per image URL.
    pub asc_urls: Vec<String>,
    /// Public key URLs.
    pub pubkeys: Vec<String>,
    /// Every URL tried.
    pub tried: Vec<String>,
}

impl From<acikit::discovery::Discovered> for Discovered {
    fn from(d: acikit::discovery::Discovered) -> Self {
        Discovered {
            name: d.name,
            labels: d.labels.into_iter().collect(),
            aci_urls: d.aci_endpoints.iter().map(|e| e.aci.clone()).collect(),
            asc_urls: d.aci_endpoints.iter().map(|e| e.asc.clone()).collect(),
            pubkeys: d.pubkeys,
            tried: d.tried,
        }
    }
}

/// How to fetch.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FetchOptions {
    /// How to reach the servers.
    #[uniffi(default = None)]
    pub net: Option<crate::net::NetOptions>,
    /// Trust the keys discovery finds for a name no key is trusted for yet (trust on
    /// first use).
    #[uniffi(default = false)]
    pub trust_discovered_keys: bool,
    /// Fetch the image's dependencies too.
    #[uniffi(default = true)]
    pub dependencies: bool,
}

/// A fetched image.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Fetched {
    /// The image ID.
    pub id: String,
    /// The image name.
    pub name: String,
    /// The URL it came from (none if it was not requested).
    pub url: Option<String>,
    /// How it was obtained (`downloaded`, `already_present`, `not_modified`, `cached`).
    pub outcome: String,
    /// The fingerprint of the key whose signature was verified, if one was.
    pub signed_by: Option<String>,
    /// Fingerprints of the keys trusted on first use during the fetch.
    pub keys_added: Vec<String>,
    /// The IDs of the dependencies fetched with it.
    pub dependencies: Vec<String>,
}

impl From<acikit::Fetched> for Fetched {
    fn from(f: acikit::Fetched) -> Self {
        Fetched {
            id: f.image_id.to_string(),
            name: f.name,
            url: f.url,
            outcome: serde_name(&f.outcome),
            signed_by: f.signature.map(|s| s.fingerprint),
            keys_added: f.keys_added.into_iter().map(|k| k.fingerprint).collect(),
            dependencies: f
                .dependencies
                .iter()
                .map(|d| d.image_id.to_string())
                .collect(),
        }
    }
}

/// Labels as a map.
pub(crate) fn labels(labels: Vec<acikit::Label>) -> HashMap<String, String> {
    labels.into_iter().map(|l| (l.name, l.value)).collect()
}

/// A map of labels as the core's list (sorted by name, so calls are repeatable).
pub(crate) fn label_list(labels: HashMap<String, String>) -> Vec<acikit::Label> {
    let mut list: Vec<acikit::Label> = labels
        .into_iter()
        .map(|(name, value)| acikit::Label::new(name, value))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// A manifest's labels as a map.
fn manifest_labels(labels: &acikit::schema::Labels) -> HashMap<String, String> {
    labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.clone()))
        .collect()
}

/// Milliseconds since the epoch as a time.
fn time_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Seconds since the epoch as a time.
fn time_s(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// The name the core gives a value in JSON (its serde name), e.g. `sqlite`.
pub(crate) fn serde_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

//! The records the addon returns: plain JS objects with typed fields (sizes and times as
//! numbers; the JS wrapper turns times into `Date`s and label lists into maps).

use acikit::fetch::KeyAdded;
use acikit::store::OriginalInfo;
use acikit::trust::{TrustedKey, VerifiedSignature};
use acikit::{Exported, FsckReport, GcReport, ImageInfo, Imported, Label, OriginalCompaction};
use napi_derive::napi;

/// A label `{ name, value }`, in manifest order.
#[napi(object)]
pub struct LabelRecord {
    /// The label name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl From<&Label> for LabelRecord {
    fn from(l: &Label) -> Self {
        LabelRecord {
            name: l.name.clone(),
            value: l.value.clone(),
        }
    }
}

impl From<LabelRecord> for Label {
    fn from(l: LabelRecord) -> Self {
        Label::new(l.name, l.value)
    }
}

/// One stored image.
#[napi(object)]
pub struct ImageRecord {
    /// The image ID (`sha512-…`).
    pub id: String,
    /// The image name.
    pub name: String,
    /// Its labels, in manifest order.
    pub labels: Vec<LabelRecord>,
    /// Size of the canonical tar.
    pub size: f64,
    /// Size of the archive as imported.
    pub archive_size: f64,
    /// Number of tar members.
    pub entries: f64,
    /// Import time, milliseconds since the Unix epoch.
    pub imported_at: f64,
    /// Last use, milliseconds since the Unix epoch.
    pub last_used_at: f64,
    /// Where it was imported from.
    pub origin: Option<String>,
}

impl From<ImageInfo> for ImageRecord {
    fn from(i: ImageInfo) -> Self {
        ImageRecord {
            id: i.image_id.to_string(),
            labels: i.labels.iter().map(LabelRecord::from).collect(),
            name: i.name,
            size: i.tar_size as f64,
            archive_size: i.archive_size as f64,
            entries: i.entries as f64,
            imported_at: i.imported_at_ms as f64,
            last_used_at: i.last_used_at_ms as f64,
            origin: i.origin,
        }
    }
}

/// The outcome of an import.
#[napi(object)]
pub struct ImportRecord {
    /// The image ID.
    pub id: String,
    /// The image name.
    pub name: String,
    /// Whether the store had the image already (nothing new written).
    pub already_present: bool,
    /// Bytes of new objects written.
    pub new_bytes: f64,
    /// Objects written.
    pub new_objects: f64,
    /// Size of the archive as given.
    pub archive_size: f64,
    /// Size of the canonical tar.
    pub size: f64,
    /// Number of tar members.
    pub entries: f64,
}

impl From<Imported> for ImportRecord {
    fn from(i: Imported) -> Self {
        ImportRecord {
            id: i.image_id.to_string(),
            name: i.name,
            already_present: i.already_present,
            new_bytes: i.new_bytes as f64,
            new_objects: i.new_objects as f64,
            archive_size: i.archive_size as f64,
            size: i.tar_size as f64,
            entries: i.entries as f64,
        }
    }
}

/// The outcome of an export.
#[napi(object)]
pub struct ExportRecord {
    /// The image exported.
    pub id: String,
    /// Bytes of the canonical tar (verified against the ID).
    pub size: f64,
    /// Bytes written (after compression).
    pub written: f64,
}

impl From<Exported> for ExportRecord {
    fn from(e: Exported) -> Self {
        ExportRecord {
            id: e.image_id.to_string(),
            size: e.tar_size as f64,
            written: e.written as f64,
        }
    }
}

/// A verified signature.
#[napi(object)]
pub struct SignatureRecord {
    /// Fingerprint of the trusted primary key.
    pub fingerprint: String,
    /// Fingerprint of the key (or subkey) that made the signature.
    pub signing_key: String,
    /// The key's user IDs.
    pub user_ids: Vec<String>,
    /// What names the key is trusted for (`TrustScope`'s display).
    pub scope: String,
    /// The hash algorithm of the signature.
    pub hash_algorithm: String,
    /// When it was made, seconds since the Unix epoch.
    pub created_at: f64,
}

impl From<VerifiedSignature> for SignatureRecord {
    fn from(s: VerifiedSignature) -> Self {
        SignatureRecord {
            fingerprint: s.fingerprint,
            signing_key: s.signing_key,
            user_ids: s.user_ids,
            scope: s.scope.to_string(),
            hash_algorithm: s.hash_algorithm,
            created_at: s.created_at as f64,
        }
    }
}

/// A key trusted during a fetch.
#[napi(object)]
pub struct KeyAddedRecord {
    /// Where it was found.
    pub url: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// The name prefix it is trusted for.
    pub prefix: String,
}

impl From<KeyAdded> for KeyAddedRecord {
    fn from(k: KeyAdded) -> Self {
        KeyAddedRecord {
            url: k.url,
            fingerprint: k.fingerprint,
            prefix: k.prefix,
        }
    }
}

/// One fetched image and its dependencies.
#[napi(object)]
pub struct FetchRecord {
    /// The image ID.
    pub id: String,
    /// The image name.
    pub name: String,
    /// Where it came from, if downloaded.
    pub url: Option<String>,
    /// `downloaded`, `already_present`, `not_modified` or `cached` (the core's names).
    pub outcome: String,
    /// The verified signature, if one was checked.
    pub signature: Option<SignatureRecord>,
    /// Keys trusted on the way.
    pub keys_added: Vec<KeyAddedRecord>,
    /// The dependencies fetched.
    pub dependencies: Vec<FetchRecord>,
}

impl From<acikit::Fetched> for FetchRecord {
    fn from(f: acikit::Fetched) -> Self {
        let outcome = serde_json::to_value(f.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        FetchRecord {
            id: f.image_id.to_string(),
            name: f.name,
            url: f.url,
            outcome,
            signature: f.signature.map(Into::into),
            keys_added: f.keys_added.into_iter().map(Into::into).collect(),
            dependencies: f.dependencies.into_iter().map(Into::into).collect(),
        }
    }
}

/// A trusted key.
#[napi(object)]
pub struct TrustedKeyRecord {
    /// Fingerprint of the primary key, lowercase hex.
    pub fingerprint: String,
    /// Its key ID.
    pub key_id: String,
    /// Its user IDs.
    pub user_ids: Vec<String>,
    /// The public-key algorithm.
    pub algorithm: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: f64,
    /// Expiry time, if any.
    pub expires_at: Option<f64>,
    /// The name prefix it is trusted for; null for every name (root).
    pub prefix: Option<String>,
}

impl From<TrustedKey> for TrustedKeyRecord {
    fn from(k: TrustedKey) -> Self {
        let prefix = match k.scope {
            acikit::trust::TrustScope::Prefix(prefix) => Some(prefix),
            _ => None,
        };
        TrustedKeyRecord {
            fingerprint: k.fingerprint,
            key_id: k.key_id,
            user_ids: k.user_ids,
            algorithm: k.algorithm,
            created_at: k.created_at as f64,
            expires_at: k.expires_at.map(|t| t as f64),
            prefix,
        }
    }
}

/// What `gc` removed.
#[napi(object)]
pub struct GcRecord {
    /// Objects removed.
    pub objects_removed: f64,
    /// Their bytes.
    pub bytes_removed: f64,
    /// Recipes removed.
    pub recipes_removed: f64,
    /// Staging folders removed.
    pub staging_removed: f64,
    /// Render caches removed.
    pub renders_removed: f64,
    /// Checkout objects no tree uses any more, removed.
    pub checkouts_removed: f64,
    /// Signature and original files of images no longer in the index (left by a crash), removed.
    pub push_files_removed: f64,
    /// Dead runs removed.
    pub dead_runs_removed: f64,
    /// Pending originals compacted (as `compactOriginals` does).
    pub originals_compacted: f64,
    /// Pending originals that must stay kept whole.
    pub originals_kept: f64,
    /// Bytes freed in the store's originals.
    pub original_bytes_freed: f64,
}

impl From<GcReport> for GcRecord {
    fn from(r: GcReport) -> Self {
        GcRecord {
            objects_removed: r.objects_removed as f64,
            bytes_removed: r.bytes_removed as f64,
            recipes_removed: r.recipes_removed as f64,
            staging_removed: r.staging_removed as f64,
            renders_removed: r.renders_removed as f64,
            checkouts_removed: r.checkouts_removed as f64,
            push_files_removed: r.push_files_removed as f64,
            dead_runs_removed: r.dead_runs_removed as f64,
            originals_compacted: r.originals_compacted as f64,
            originals_kept: r.originals_kept as f64,
            original_bytes_freed: r.original_bytes_freed as f64,
        }
    }
}

/// What `compactOriginals` did.
#[napi(object)]
pub struct CompactionRecord {
    /// Pending originals turned into a compact form.
    pub compacted: f64,
    /// Pending originals found to need their bytes kept whole.
    pub kept: f64,
    /// Bytes of kept originals removed, less the records written instead.
    pub bytes_freed: f64,
}

impl From<OriginalCompaction> for CompactionRecord {
    fn from(c: OriginalCompaction) -> Self {
        CompactionRecord {
            compacted: c.compacted as f64,
            kept: c.kept as f64,
            bytes_freed: c.bytes_freed as f64,
        }
    }
}

/// What the store keeps to give back an image's original archive.
#[napi(object)]
pub struct OriginalRecord {
    /// How it is re-created: `none`, `gzip`, `recompress`, `gzip_export` or `kept`.
    pub form: String,
    /// Its compression (`none`, `gzip`, `bzip2`, `xz`, `zstd`).
    pub compression: String,
    /// Bytes of the original.
    pub size: f64,
    /// SHA-256 of the original, lowercase hex.
    pub sha256: String,
    /// Bytes the store keeps to re-create it.
    pub kept_bytes: f64,
    /// For `kept`: why nothing else re-creates it.
    pub reason: Option<String>,
    /// Kept whole only until `compactOriginals` (or `gc`) makes its compact form.
    pub pending: bool,
}

impl From<OriginalInfo> for OriginalRecord {
    fn from(o: OriginalInfo) -> Self {
        OriginalRecord {
            form: o.form.as_str().to_string(),
            compression: o.compression,
            size: o.size as f64,
            sha256: o.sha256,
            kept_bytes: o.kept_bytes as f64,
            reason: o.reason,
            pending: o.pending,
        }
    }
}

/// One problem `fsck` found.
#[napi(object)]
pub struct FsckProblemRecord {
    /// Its kind (a stable code).
    pub kind: String,
    /// What it concerns (an object, an image).
    pub subject: String,
    /// What is wrong.
    pub message: String,
}

/// What `fsck` found.
#[napi(object)]
pub struct FsckRecord {
    /// Whether nothing is wrong.
    pub clean: bool,
    /// Objects checked.
    pub objects_checked: f64,
    /// Images checked.
    pub images_checked: f64,
    /// The problems.
    pub problems: Vec<FsckProblemRecord>,
    /// Images dropped from the index (with repair).
    pub images_dropped: Vec<String>,
    /// Objects no image uses.
    pub unreferenced_objects: f64,
}

impl From<FsckReport> for FsckRecord {
    fn from(r: FsckReport) -> Self {
        FsckRecord {
            clean: r.is_clean(),
            objects_checked: r.objects_checked as f64,
            images_checked: r.images_checked as f64,
            problems: r
                .problems
                .iter()
                .map(|p| FsckProblemRecord {
                    kind: p.kind.to_string(),
                    subject: p.subject.clone(),
                    message: p.message.clone(),
                })
                .collect(),
            images_dropped: r.images_dropped.iter().map(|i| i.to_string()).collect(),
            unreferenced_objects: r.unreferenced_objects as f64,
        }
    }
}

/// Sizes of a store.
#[napi(object)]
pub struct StatsRecord {
    /// `sqlite` or `postgres`.
    pub index: String,
    /// Images.
    pub images: f64,
    /// The canonical tars' bytes in all.
    pub logical_bytes: f64,
    /// Objects.
    pub objects: f64,
    /// Their bytes.
    pub object_bytes: f64,
    /// Bytes on disk.
    pub disk_bytes: f64,
    /// Images with an original record (their exact archive is given back).
    pub original_records: f64,
    /// Those archives' sizes added up.
    pub original_compressed_bytes: f64,
    /// Bytes kept to re-create them (correction records and kept archives).
    pub original_kept_bytes: f64,
    /// Per image with an original record: its form, size and the bytes kept for it.
    pub original_images: Vec<ImageOriginalRecord>,
    /// Logical bytes over stored bytes.
    pub dedup_ratio: f64,
}

/// One image's original record, as `stats` reports it.
#[napi(object)]
pub struct ImageOriginalRecord {
    /// The image.
    pub id: String,
    /// What the store keeps to re-create its original.
    pub original: OriginalRecord,
}

impl From<acikit::store::StoreStats> for StatsRecord {
    fn from(s: acikit::store::StoreStats) -> Self {
        let index = serde_json::to_value(s.index)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        StatsRecord {
            index,
            images: s.images as f64,
            logical_bytes: s.logical_bytes as f64,
            objects: s.objects as f64,
            object_bytes: s.object_bytes as f64,
            disk_bytes: s.disk_bytes as f64,
            original_records: s.original_records as f64,
            original_compressed_bytes: s.original_compressed_bytes as f64,
            original_kept_bytes: s.original_kept_bytes as f64,
            original_images: s
                .original_images
                .into_iter()
                .map(|i| ImageOriginalRecord {
                    id: i.image_id.to_string(),
                    original: i.original.into(),
                })
                .collect(),
            dedup_ratio: s.dedup_ratio,
        }
    }
}

/// A rendered run.
#[napi(object)]
pub struct RenderRecord {
    /// The image rendered.
    pub id: String,
    /// The run's root filesystem.
    pub target: String,
    /// The strategy used (`Strategy::as_str`).
    pub strategy: String,
    /// Whether the run is read-only.
    pub read_only: bool,
    /// Whether read-only is enforced (mounted read-only).
    pub protected: bool,
    /// The layers, the image first.
    pub layers: Vec<String>,
    /// Whether the flattened tree came from the cache.
    pub cached: bool,
    /// Warnings (e.g. entries skipped without privileges).
    pub warnings: Vec<String>,
}

impl From<acikit::Rendered> for RenderRecord {
    fn from(r: acikit::Rendered) -> Self {
        RenderRecord {
            id: r.image_id.to_string(),
            target: r.target.display().to_string(),
            strategy: r.strategy.as_str().to_string(),
            read_only: r.read_only,
            protected: r.protected,
            layers: r.layers.iter().map(|l| l.to_string()).collect(),
            cached: r.cached,
            warnings: r.warnings,
        }
    }
}

/// What a validation found: the image ID and the manifest.
#[napi(object)]
pub struct InspectRecord {
    /// The image ID.
    pub id: String,
    /// The manifest, as stored in the archive (JSON text).
    pub manifest: String,
    /// The image name.
    pub name: String,
    /// How the archive was compressed.
    pub compression: String,
    /// Size of the archive.
    pub archive_size: f64,
    /// Size of the canonical tar.
    pub size: f64,
    /// Number of tar members.
    pub entries: f64,
}

impl From<acikit::Inspection> for InspectRecord {
    fn from(i: acikit::Inspection) -> Self {
        InspectRecord {
            id: i.image_id.to_string(),
            manifest: String::from_utf8_lossy(i.manifest.raw()).into_owned(),
            name: i.manifest.name.as_str().to_string(),
            compression: i.compression.as_str().to_string(),
            archive_size: i.compressed_size as f64,
            size: i.uncompressed_size as f64,
            entries: i.entries as f64,
        }
    }
}

/// A built image archive.
#[napi(object)]
pub struct BuildRecord {
    /// Where it was written.
    pub path: String,
    /// Its image ID.
    pub id: String,
    /// Bytes written.
    pub archive_size: f64,
    /// Size of the canonical tar.
    pub size: f64,
    /// Number of tar members.
    pub entries: f64,
    /// The compression (`BuildCompression::as_str`).
    pub compression: String,
}

impl From<acikit::Built> for BuildRecord {
    fn from(b: acikit::Built) -> Self {
        BuildRecord {
            path: b.path.display().to_string(),
            id: b.image_id.to_string(),
            archive_size: b.size as f64,
            size: b.tar_size as f64,
            entries: b.entries as f64,
            compression: b.compression.as_str().to_string(),
        }
    }
}

/// A detached signature.
#[napi(object)]
pub struct SignRecord {
    /// The ascii-armored signature.
    pub armored: String,
    /// Fingerprint of the primary key.
    pub fingerprint: String,
    /// Fingerprint of the key (or subkey) that signed.
    pub signing_key: String,
    /// The hash algorithm.
    pub hash_algorithm: String,
    /// Bytes signed.
    pub size: f64,
}

impl From<acikit::trust::Signed> for SignRecord {
    fn from(s: acikit::trust::Signed) -> Self {
        SignRecord {
            armored: String::from_utf8_lossy(&s.armored).into_owned(),
            fingerprint: s.fingerprint,
            signing_key: s.signing_key,
            hash_algorithm: s.hash_algorithm,
            size: s.data_len as f64,
        }
    }
}

/// What meta discovery found.
#[napi(object)]
pub struct DiscoverRecord {
    /// The name discovered.
    pub name: String,
    /// The labels used (with defaults).
    pub labels: Vec<LabelRecord>,
    /// Image and signature URLs, best first.
    pub aci_endpoints: Vec<AciEndpointRecord>,
    /// Public key URLs.
    pub pubkeys: Vec<String>,
}

/// An image URL and its signature's.
#[napi(object)]
pub struct AciEndpointRecord {
    /// The image URL.
    pub aci: String,
    /// The signature URL.
    pub asc: String,
}

impl From<acikit::discovery::Discovered> for DiscoverRecord {
    fn from(d: acikit::discovery::Discovered) -> Self {
        DiscoverRecord {
            name: d.name,
            labels: d
                .labels
                .into_iter()
                .map(|(name, value)| LabelRecord { name, value })
                .collect(),
            aci_endpoints: d
                .aci_endpoints
                .into_iter()
                .map(|e| AciEndpointRecord {
                    aci: e.aci,
                    asc: e.asc,
                })
                .collect(),
            pubkeys: d.pubkeys,
        }
    }
}

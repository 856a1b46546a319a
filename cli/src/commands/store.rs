//! The store commands: `import`, `export`, `list`, `rm`, `gc`, `fsck`, `stats`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use acikit::progress::{CancelToken, Observer};
use acikit::store::{ExportCompression, ImageQuery, ImportOptions, StoreOptions};
use acikit::{Error, Label, Store};
use serde::Serialize;

use super::interrupt::Interrupt;
use super::progress;
use crate::CommonOpts;
use crate::report::{self, FileReport};

/// `--compression` of `export` and `build`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CompressionArg {
    /// The canonical tar.
    None,
    /// Deterministic gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// `--compression` of `export`: those of `build`, and the image's original bytes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportCompressionArg {
    /// The canonical tar.
    None,
    /// Deterministic gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// The exact bytes the image came as (re-created and checked against their SHA-256).
    Original,
}

/// Parses `K=V` for `--label` (see [`Label`]'s `FromStr`).
pub fn parse_label(text: &str) -> Result<Label, String> {
    text.parse::<Label>().map_err(|e| e.message().to_string())
}

/// The `--database` URL, set once by `main` before any command runs.
static DATABASE_URL: OnceLock<Option<String>> = OnceLock::new();

/// Records the `--database` URL (or `$ACIKIT_DATABASE`) for every store opened.
pub fn set_database_url(url: Option<String>) {
    let _ = DATABASE_URL.set(url);
}

/// `--read-only`, set once by `main` before any command runs.
static READ_ONLY: OnceLock<bool> = OnceLock::new();

/// Records `--read-only` (or `$ACIKIT_READ_ONLY`) for every store opened.
pub fn set_read_only(read_only: bool) {
    let _ = READ_ONLY.set(read_only);
}

/// Opens the store at `dir` with the `--database` and `--read-only` given, if any.
pub(super) async fn open_store(dir: &Path) -> acikit::Result<Store> {
    let mut options = StoreOptions::default().read_only(READ_ONLY.get().copied().unwrap_or(false));
    options.database_url = DATABASE_URL.get().cloned().flatten();
    Store::open_with(dir, options).await
}

/// [`open_store`], printing the error.
pub(super) async fn open(dir: &Path) -> Result<Store, ExitCode> {
    open_store(dir).await.map_err(|e| fail(&e))
}

/// Prints an error on stderr as `error: KIND: MESSAGE`; exit code 1.
pub(super) fn fail(err: &Error) -> ExitCode {
    errln!("error: {err}");
    ExitCode::from(1)
}

fn print_json(value: &impl Serialize) {
    report::print_json(value);
}

/// `acikit import FILE...`
pub async fn import(dir: &Path, files: &[PathBuf], opts: &CommonOpts, original: bool) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let mut results = Vec::new();
    let mut ok = true;
    // Ctrl-C cancels the import under way and skips the files after it.
    let cancel = CancelToken::new();
    let _interrupt = Interrupt::cancels(&cancel, "import");
    for file in files {
        if cancel.is_cancelled() {
            break;
        }
        let (observer, bar) = progress::observer("importing");
        let observer = observer.cancelled_by(cancel.clone());
        let options = ImportOptions::default()
            .limits(opts.limits())
            .record_original(original);
        let result = store.import_file(file, options, observer).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(imported) => {
                if !opts.json {
                    let what = if imported.already_present {
                        "already present"
                    } else {
                        "imported"
                    };
                    outln!(
                        "{}: {what} {} {} ({} new bytes in {} new objects)",
                        file.display(),
                        imported.image_id,
                        imported.name,
                        imported.new_bytes,
                        imported.new_objects
                    );
                    if let Some(original) = imported.original.as_ref().filter(|o| o.pending) {
                        outln!(
                            "{}: original kept whole ({} bytes) until `acikit gc` compacts it",
                            file.display(),
                            original.size
                        );
                    }
                }
                results.push(serde_json::json!({ "file": file.display().to_string(), "valid": true, "imported": imported }));
            }
            Err(err) => {
                ok = false;
                let report = FileReport::new(file, Err(err));
                if !opts.json {
                    report.print_text();
                }
                results.push(serde_json::to_value(&report).expect("reports serialize"));
            }
        }
    }
    if opts.json {
        print_json(&results);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Resolves IMAGE (and labels) to one image for `export` and `render`: when a name
/// matches several images, the newest import is used and a note on stderr says which,
/// what else matched, and how to choose.
pub(super) async fn resolve(
    store: &Store,
    image: &str,
    labels: &[Label],
) -> Result<acikit::schema::ImageId, Error> {
    let query = ImageQuery::parse(image, labels)?;
    let resolved = store.resolve_matches(&query).await?;
    if !resolved.others.is_empty() {
        eprintln!(
            "note: {query} matches {} images; using {} (imported {}), the newest import; \
             name an image ID or add labels (--label NAME=VALUE) to choose another:",
            resolved.others.len() + 1,
            resolved.image.image_id,
            format_time(resolved.image.imported_at_ms)
        );
        for other in &resolved.others {
            eprintln!(
                "note:   {} (imported {})",
                other.image_id,
                format_time(other.imported_at_ms)
            );
        }
    }
    Ok(resolved.image.image_id)
}

/// Resolves IMAGE to exactly one image, for `rm`: a name that matches several images is
/// an `ambiguous_image` error listing them.
async fn resolve_unique(store: &Store, image: &str) -> Result<acikit::schema::ImageId, Error> {
    let query = ImageQuery::parse(image, &[])?;
    Ok(store
        .resolve_matches(&query)
        .await?
        .unique(&query)?
        .image_id)
}

/// `acikit export IMAGE OUT`
pub async fn export(
    dir: &Path,
    image: &str,
    labels: &[Label],
    out: &Path,
    compression: ExportCompressionArg,
    json: bool,
) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let id = match resolve(&store, image, labels).await {
        Ok(id) => id,
        Err(err) => return fail(&err),
    };
    let compression = match compression {
        ExportCompressionArg::None => ExportCompression::None,
        ExportCompressionArg::Gzip => ExportCompression::Gzip,
        ExportCompressionArg::Zstd => ExportCompression::Zstd,
        ExportCompressionArg::Original => ExportCompression::Original,
    };
    if out == Path::new("-") {
        return export_to_stdout(&store, &id, compression, json).await;
    }
    let (observer, bar) = progress::observer("exporting");
    let interrupt = Interrupt::cancels(&observer.cancel, "export");
    let result = store.export_to(&id, out, compression, observer).await;
    drop(interrupt);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(exported) => {
            if json {
                print_json(&exported);
            } else {
                outln!(
                    "{}: {} ({} bytes)",
                    out.display(),
                    exported.image_id,
                    exported.written
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// `acikit export IMAGE -`: the archive on stdout, the report (text or JSON) on stderr; a
/// reader that goes away ends the command quietly with status 141.
async fn export_to_stdout(
    store: &Store,
    id: &acikit::schema::ImageId,
    compression: ExportCompression,
    json: bool,
) -> ExitCode {
    let stdout = match crate::stdout::binary_stdout() {
        Ok(stdout) => stdout,
        Err(err) => return fail(&err),
    };
    let observer = Observer::default();
    let _interrupt = Interrupt::cancels(&observer.cancel, "export");
    match store
        .export_to_writer(id, stdout, compression, observer)
        .await
    {
        Ok(exported) if json => {
            let text = serde_json::to_string_pretty(&exported).expect("reports serialize");
            errln!("{text}");
            ExitCode::SUCCESS
        }
        Ok(exported) => {
            errln!("-: {} ({} bytes)", exported.image_id, exported.written);
            ExitCode::SUCCESS
        }
        Err(err) => crate::stdout::stream_failed(&err),
    }
}

/// `acikit list`
pub async fn list(dir: &Path, json: bool) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let images = match store.list().await {
        Ok(images) => images,
        Err(err) => return fail(&err),
    };
    if json {
        print_json(&images);
        return ExitCode::SUCCESS;
    }
    outln!(
        "{:<40} {:<12} {:<8} {:<8} {:<24} {:>12}  IMPORTED",
        "NAME",
        "VERSION",
        "OS",
        "ARCH",
        "ID",
        "SIZE"
    );
    for image in &images {
        outln!(
            "{:<40} {:<12} {:<8} {:<8} {:<24} {:>12}  {}",
            image.name,
            image.label("version").unwrap_or("-"),
            image.label("os").unwrap_or("-"),
            image.label("arch").unwrap_or("-"),
            &image.image_id.as_str()[..24],
            image.tar_size,
            format_time(image.imported_at_ms)
        );
    }
    ExitCode::SUCCESS
}

/// `acikit rm IMAGE...`
pub async fn rm(dir: &Path, images: &[String], json: bool) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let mut removed = Vec::new();
    let mut code = ExitCode::SUCCESS;
    // Every name is resolved first, then the images go in one pass (one scan of the
    // objects the others still use).
    let mut ids = Vec::new();
    for image in images {
        match resolve_unique(&store, image).await {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(err) => code = fail(&err),
        }
    }
    let results = store.remove_many(ids.clone()).await;
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(()) => {
                if !json {
                    outln!("removed {id}");
                }
                removed.push(id);
            }
            Err(err) => code = fail(&err),
        }
    }
    if json {
        print_json(&serde_json::json!({ "removed": removed }));
    }
    code
}

/// `acikit gc`
pub async fn gc(dir: &Path, json: bool) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let (observer, bar) = progress::observer("collecting garbage");
    let _interrupt = Interrupt::cancels(&observer.cancel, "gc");
    let result = store.gc(observer).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(report) if json => {
            print_json(&report);
            ExitCode::SUCCESS
        }
        Ok(report) => {
            outln!(
                "removed {} objects ({} bytes), {} recipes, {} staging folders, {} trees and stacks, {} checkouts, {} orphan push files, {} dead runs",
                report.objects_removed,
                report.bytes_removed,
                report.recipes_removed,
                report.staging_removed,
                report.renders_removed,
                report.checkouts_removed,
                report.push_files_removed,
                report.dead_runs_removed
            );
            if report.originals_compacted + report.originals_kept + report.original_bytes_freed > 0
            {
                outln!(
                    "originals: {} compacted, {} kept whole (nothing re-creates them), {} bytes freed",
                    report.originals_compacted,
                    report.originals_kept,
                    report.original_bytes_freed
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// `acikit fsck [--repair]`: exit 0 only when the store is clean (or was repaired).
pub async fn fsck(dir: &Path, repair: bool, json: bool) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let observer = Observer::default();
    let _interrupt = Interrupt::cancels(&observer.cancel, "fsck");
    let report = match store.fsck(repair, observer).await {
        Ok(report) => report,
        Err(err) => return fail(&err),
    };
    if json {
        print_json(&report);
    } else {
        for p in &report.problems {
            errln!("{}: {}: {}", p.kind, p.subject, p.message);
        }
        for id in &report.images_dropped {
            outln!("dropped {id}");
        }
        outln!(
            "checked {} objects and {} images: {} problems; {} unreferenced objects, {} stale staging folders, {} orphan push files{}, {} dead runs",
            report.objects_checked,
            report.images_checked,
            report.problems.len(),
            report.unreferenced_objects,
            report.stale_staging,
            report.orphan_push_files,
            removed_note(repair, report.push_files_removed),
            report.dead_runs
        );
        let caches = &report.render_caches;
        println!(
            "checked {} trees, {} stacks and {} composefs images, {} trees not checkable: {} damaged ({} set aside, {} used by live runs, {} rebuilt, {} checkout objects unlinked); {} damaged caches left in damaged/{}",
            caches.trees_checked,
            caches.stacks_checked,
            caches.composefs_checked,
            caches.unverified,
            caches.damaged,
            caches.set_aside,
            caches.in_use,
            caches.rebuilt,
            caches.checkouts_unlinked,
            caches.damaged_left,
            removed_note(repair, caches.damaged_removed)
        );
    }
    if report.is_clean() || repair {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `acikit stats`
pub async fn stats(dir: &Path, json: bool) -> ExitCode {
    let store = match open(dir).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match store.stats().await {
        Ok(stats) if json => {
            print_json(&stats);
            ExitCode::SUCCESS
        }
        Ok(s) => {
            let index = match s.index {
                acikit::store::IndexBackend::Sqlite => "sqlite (index.db)",
                acikit::store::IndexBackend::Postgres => "postgresql (config/database)",
                _ => "other",
            };
            outln!("index                  {index}");
            outln!("images                 {}", s.images);
            outln!(
                "logical size           {} bytes (canonical tars)",
                s.logical_bytes
            );
            outln!(
                "content of files       {} bytes",
                s.referenced_content_bytes
            );
            outln!(
                "content stored         {} bytes ({} distinct objects)",
                s.object_bytes,
                s.objects
            );
            outln!(
                "signed images          {} (signatures kept from pushes)",
                s.signed_images
            );
            outln!(
                "original forms         {} images: {} bytes as they came, {} bytes kept to re-create them ({})",
                s.original_records,
                s.original_compressed_bytes,
                s.original_kept_bytes,
                s.original_forms
                    .iter()
                    .map(|(form, n)| format!("{form} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            outln!(
                "kept originals         {} bytes ({} archives kept whole)",
                s.original_bytes,
                s.originals
            );
            outln!(
                "on disk                {} bytes (objects {}, recipes {}, index {}, signatures {}, originals {})",
                s.disk_bytes,
                s.objects_disk_bytes,
                s.recipes_disk_bytes,
                s.index_disk_bytes,
                s.signatures_disk_bytes,
                s.originals_disk_bytes
            );
            outln!("de-duplication ratio   {:.2}", s.dedup_ratio);
            for image in &s.original_images {
                let o = &image.original;
                let share = if o.size == 0 {
                    0.0
                } else {
                    o.kept_bytes as f64 * 100.0 / o.size as f64
                };
                let form = if o.pending {
                    "kept (until gc compacts it)"
                } else {
                    o.form.as_str()
                };
                outln!(
                    "original {}  {:<10} {} of {} bytes kept ({share:.3}%)",
                    &image.image_id.to_string()[..19],
                    form,
                    o.kept_bytes,
                    o.size
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn format_time(ms: i64) -> String {
    acikit::clock::format_utc(ms.div_euclid(1000))
}

/// ` (N removed)` after a count of things `fsck --repair` removes; nothing without `--repair`.
fn removed_note(repair: bool, removed: u64) -> String {
    if repair {
        format!(" ({removed} removed)")
    } else {
        String::new()
    }
}

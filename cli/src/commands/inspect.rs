//! `validate`, `id` and `manifest`: the commands that read one archive in one pass.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use acikit::archive::{Inspection, inspect_file};
use acikit::progress::Observer;

use crate::CommonOpts;
use crate::report::{self, FileReport};

/// `acikit validate FILE...`
pub async fn validate(files: &[PathBuf], opts: &CommonOpts) -> ExitCode {
    let limits = opts.limits();
    let mut reports = Vec::with_capacity(files.len());
    for file in files {
        let result = inspect_file(file, limits, Observer::default()).await;
        reports.push(FileReport::new(file, result));
    }
    let all_valid = reports.iter().all(|r| r.valid);
    if opts.json {
        report::print_json(&reports);
    } else {
        for r in &reports {
            r.print_text();
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `acikit id FILE`
pub async fn id(file: &Path, opts: &CommonOpts) -> ExitCode {
    one(file, opts, |inspection| {
        outln!("{}", inspection.image_id);
    })
    .await
}

/// `acikit manifest FILE`
pub async fn manifest(file: &Path, opts: &CommonOpts) -> ExitCode {
    one(file, opts, |inspection| {
        crate::stdout::write_bytes(inspection.manifest.raw());
    })
    .await
}

/// Inspects one file: on success prints with `text` (or the JSON report), else the
/// problems on stderr (or the JSON report on stdout) and exits 1.
async fn one(file: &Path, opts: &CommonOpts, text: impl FnOnce(&Inspection)) -> ExitCode {
    let result = inspect_file(file, opts.limits(), Observer::default()).await;
    let report = FileReport::new(file, result);
    if opts.json {
        report::print_json(&report);
    } else if let Some(inspection) = &report.inspection {
        text(inspection);
    } else {
        report.print_text();
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

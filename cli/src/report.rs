//! Printing inspection results: one line per problem as text, or JSON.

use std::path::Path;

use acikit::Error;
use acikit::archive::Inspection;
use serde::Serialize;

/// The outcome for one file, as printed.
#[derive(Serialize)]
pub struct FileReport {
    /// The file, as given.
    pub file: String,
    /// Whether the archive is a valid image.
    pub valid: bool,
    /// What a valid archive holds.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub inspection: Option<Inspection>,
    /// The manifest as JSON (valid archives only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
    /// Every problem found (invalid archives only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemReport>,
}

/// One problem.
#[derive(Serialize)]
pub struct ProblemReport {
    /// Stable error kind, e.g. `duplicate_entry`.
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The archive entry concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// JSON path inside the manifest, for manifest problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Stable problem code, for manifest problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

impl FileReport {
    /// The report of one inspection.
    pub fn new(file: &Path, result: acikit::Result<Inspection>) -> Self {
        let file = file.display().to_string();
        match result {
            Ok(inspection) => FileReport {
                file,
                valid: true,
                manifest: serde_json::from_slice(inspection.manifest.raw()).ok(),
                inspection: Some(inspection),
                problems: Vec::new(),
            },
            Err(err) => FileReport {
                file,
                valid: false,
                inspection: None,
                manifest: None,
                problems: problems_of(&err),
            },
        }
    }

    /// Prints `FILE: ok ...` on stdout, or one line per problem on stderr.
    pub fn print_text(&self) {
        match &self.inspection {
            Some(i) => outln!(
                "{}: ok {} ({}, {} entries, {} bytes uncompressed)",
                self.file,
                i.image_id,
                i.compression,
                i.entries,
                i.uncompressed_size
            ),
            None => {
                for p in &self.problems {
                    let mut line = format!("{}: {}: ", self.file, p.kind);
                    if let Some(path) = &p.path {
                        line.push_str(&format!("manifest {path}: "));
                    }
                    line.push_str(&p.message);
                    if let Some(entry) = &p.entry {
                        line.push_str(&format!(" (entry \"{entry}\")"));
                    }
                    errln!("{line}");
                }
            }
        }
    }
}

/// The problems an error stands for: one per manifest problem, else the error itself.
fn problems_of(err: &Error) -> Vec<ProblemReport> {
    if err.problems().is_empty() {
        return vec![ProblemReport {
            kind: err.kind().as_str(),
            message: err.message().to_string(),
            entry: err.entry().map(str::to_string),
            path: None,
            code: None,
        }];
    }
    err.problems()
        .iter()
        .map(|p| ProblemReport {
            kind: err.kind().as_str(),
            message: p.message.clone(),
            entry: err.entry().map(str::to_string),
            path: Some(p.path.clone()),
            code: Some(p.code),
        })
        .collect()
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialize")
    );
}

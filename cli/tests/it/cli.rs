//! The `acikit` binary end to end: `validate` (text and `--json`, exit codes, one stderr line
//! per problem), `id` (the SHA-512 of the uncompressed tar, as `sha512sum` computes it),
//! `manifest` (the bytes exactly as stored), `--max-manifest-size`, and a missing file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::sh;
use serde_json::Value;

/// A valid manifest with odd whitespace, an unknown field and a number `serde_json` would
/// re-serialize differently (`2.50`): only a byte copy prints it back unchanged.
const GOOD_MANIFEST: &str = "{\n  \"acKind\" :\t\"ImageManifest\",\r\n\"acVersion\":\"0.8.11\",   \
    \"name\" : \"example.com/cli-test\",\n  \"x-vendor\": {\"nested\": [1, 2.50, {\"deep\": null}]},\n  \
    \"labels\": [{\"name\":\"os\",\"value\":\"linux\"}, {\"name\": \"arch\", \"value\": \"amd64\"}]\n}\n\n";

/// A manifest with exactly two problems: the kind and the name.
const BAD_MANIFEST: &str = r#"{"acKind":"PodManifest","acVersion":"0.8.11","name":"-Bad Name-"}"#;

/// Writes `name.tar` (GNU tar of a manifest + rootfs) and `name.aci` (its gzip) in `dir`;
/// returns the `.aci` path and the image ID `sha512sum` gives for the tar.
fn make_image(dir: &Path, name: &str, manifest: &str) -> (PathBuf, String) {
    let layout = dir.join(name);
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    std::fs::write(layout.join("rootfs/etc/hostname"), "cli\n").unwrap();
    sh(
        &layout,
        &format!(
            "tar --format=gnu -cf ../{name}.tar manifest rootfs && gzip -c ../{name}.tar > ../{name}.aci"
        ),
    );
    let sum = Command::new("sha512sum")
        .arg(dir.join(format!("{name}.tar")))
        .output()
        .unwrap();
    assert!(sum.status.success());
    let id = format!("sha512-{}", String::from_utf8_lossy(&sum.stdout[..128]));
    (dir.join(format!("{name}.aci")), id)
}

fn acikit<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(args)
        .output()
        .expect("the acikit binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

struct Images {
    _dir: tempfile::TempDir,
    good: PathBuf,
    good_id: String,
    bad: PathBuf,
}

fn images() -> Images {
    let dir = tempfile::tempdir().unwrap();
    let (good, good_id) = make_image(dir.path(), "good", GOOD_MANIFEST);
    let (bad, _) = make_image(dir.path(), "bad", BAD_MANIFEST);
    Images {
        _dir: dir,
        good,
        good_id,
        bad,
    }
}

#[test]
fn validate_good_image() {
    let im = images();
    let out = acikit([Path::new("validate"), &im.good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&im.good_id), "{stdout}");
    assert!(
        stdout.starts_with(&format!("{}: ok {}", im.good.display(), im.good_id)),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn validate_good_and_bad_images() {
    let im = images();
    let out = acikit([Path::new("validate"), &im.good, &im.bad]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&im.good_id),
        "the good image is reported: {stdout}"
    );
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per problem: {stderr}");
    let prefix = format!("{}: ", im.bad.display());
    for line in &lines {
        assert!(line.starts_with(&prefix), "{line}");
        assert!(line.contains("invalid_manifest"), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("$.acKind")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("$.name")), "{stderr}");
}

#[test]
fn validate_json() {
    let im = images();
    let out = acikit([
        Path::new("validate"),
        Path::new("--json"),
        &im.good,
        &im.bad,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    let files = report.as_array().expect("an array, one object per file");
    assert_eq!(files.len(), 2);

    let good = &files[0];
    assert_eq!(good["file"], im.good.display().to_string());
    assert_eq!(good["valid"], true);
    assert_eq!(good["image_id"], im.good_id.as_str());
    assert_eq!(good["compression"], "gzip");
    // `problems` is left out of a valid file's report (or empty).
    assert!(
        good.get("problems")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)),
        "{good}"
    );
    let manifest = &good["manifest"];
    let name = match manifest {
        Value::String(s) => serde_json::from_str::<Value>(s).unwrap()["name"].clone(),
        other => other["name"].clone(),
    };
    assert_eq!(name, "example.com/cli-test", "{good}");

    let bad = &files[1];
    assert_eq!(bad["file"], im.bad.display().to_string());
    assert_eq!(bad["valid"], false);
    let problems = bad["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 2, "{bad}");
    let mut paths: Vec<&str> = problems
        .iter()
        .map(|p| {
            assert_eq!(p["kind"], "invalid_manifest", "{p}");
            assert!(p["message"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
            p["path"].as_str().expect("a JSON path")
        })
        .collect();
    paths.sort();
    assert_eq!(paths, ["$.acKind", "$.name"]);
    let mut codes: Vec<&str> = problems.iter().filter_map(|p| p["code"].as_str()).collect();
    codes.sort();
    assert_eq!(codes, ["bad_name", "wrong_kind"]);
}

#[test]
fn id_prints_the_image_id() {
    let im = images();
    let out = acikit([Path::new("id"), &im.good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", im.good_id));

    let out = acikit([Path::new("id"), Path::new("--json"), &im.good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(value.to_string().contains(&im.good_id), "{value}");
}

#[test]
fn manifest_prints_the_stored_bytes() {
    let im = images();
    let out = acikit([Path::new("manifest"), &im.good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, GOOD_MANIFEST.as_bytes());

    let out = acikit([Path::new("manifest"), &im.bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid_manifest"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn max_manifest_size_option() {
    let im = images();
    let out = acikit([
        Path::new("validate"),
        Path::new("--max-manifest-size"),
        Path::new("10"),
        &im.good,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}: manifest_too_large", im.good.display())),
        "{stderr}"
    );
    let limit = GOOD_MANIFEST.len().to_string();
    let out = acikit([
        Path::new("validate"),
        Path::new("--max-manifest-size"),
        Path::new(&limit),
        &im.good,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.aci");
    let out = acikit([Path::new("id"), &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.lines().any(|l| l.contains("not_found")), "{stderr}");
}

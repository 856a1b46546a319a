//! `acikit build` and `acikit sign` through the binary: the same folder twice gives the same
//! bytes, the signature passes `gpg --verify`, and errors carry their kind code.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{acikit, gpg};
use serde_json::Value;

const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/cli","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "acikit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("manifest"), MANIFEST).unwrap();
    std::fs::write(dir.join("rootfs/etc/hostname"), "cli\n").unwrap();
    std::fs::hard_link(dir.join("rootfs/etc/hostname"), dir.join("rootfs/etc/name")).unwrap();
    std::os::unix::fs::symlink("etc/hostname", dir.join("rootfs/link")).unwrap();
    std::fs::write(dir.join("rootfs/big"), vec![7u8; 300_000]).unwrap();
}

#[test]
fn build_twice_identical_then_sign_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    layout(&dir);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let a = tmp.path().join("a.aci");
    let b = tmp.path().join("b.aci");
    let first: Value = serde_json::from_str(&ok(&acikit(&[
        "build",
        &s(&dir),
        &s(&a),
        "--mtime",
        "1600000000",
        "--json",
    ])))
    .unwrap();
    ok(&acikit(&[
        "build",
        &s(&dir),
        &s(&b),
        "--mtime",
        "1600000000",
    ]));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(first["compression"], "gzip");
    assert_eq!(first["hardlinks"], 1);
    // `acikit id` agrees with the build's image ID.
    let id = ok(&acikit(&["id", &s(&a)]));
    assert_eq!(id.trim(), first["image_id"].as_str().unwrap());
    // zstd and none are deterministic too.
    for c in ["zstd", "none"] {
        let x = tmp.path().join(format!("x.{c}"));
        let y = tmp.path().join(format!("y.{c}"));
        ok(&acikit(&["build", &s(&dir), &s(&x), "--compression", c]));
        ok(&acikit(&["build", &s(&dir), &s(&y), "--compression", c]));
        assert_eq!(
            std::fs::read(&x).unwrap(),
            std::fs::read(&y).unwrap(),
            "{c}"
        );
    }

    // Sign with a gpg-made key; gpg verifies it.
    let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
    let out = gpg(
        home.path(),
        &[
            "--quick-gen-key",
            "Cli <cli@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = gpg(
        home.path(),
        &["--armor", "--export-secret-keys", "cli@example.com"],
    );
    let key = tmp.path().join("secret.asc");
    std::fs::write(&key, &secret.stdout).unwrap();
    let signed: Value =
        serde_json::from_str(&ok(&acikit(&["sign", &s(&a), "--key", &s(&key), "--json"]))).unwrap();
    let asc = tmp.path().join("a.aci.asc");
    assert_eq!(signed["signature"], s(&asc));
    let verify = gpg(home.path(), &["--verify", &s(&asc), &s(&a)]);
    assert!(
        verify.status.success(),
        "gpg --verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // -o writes elsewhere.
    let other = tmp.path().join("other.sig");
    ok(&acikit(&[
        "sign",
        &s(&a),
        "--key",
        &s(&key),
        "-o",
        &s(&other),
    ]));
    let verify = gpg(home.path(), &["--verify", &s(&other), &s(&a)]);
    assert!(verify.status.success());
    // A public key as the secret key: exit 1, the kind code on stderr, no signature file.
    let public = tmp.path().join("public.asc");
    std::fs::write(
        &public,
        gpg(home.path(), &["--armor", "--export", "cli@example.com"]).stdout,
    )
    .unwrap();
    let out = acikit(&["sign", &s(&b), "--key", &s(&public)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: bad_openpgp"));
    assert!(!tmp.path().join("b.aci.asc").exists());
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home.path())
        .args(["--kill", "all"])
        .status();
}

#[test]
fn build_refuses_a_bad_layout_with_its_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let out_file = tmp.path().join("out.aci");
    let out = acikit(&["build", dir.to_str().unwrap(), out_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: missing_manifest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "nothing written"
    );
}

/// `acikit build DIR OUT ARGS...` with `SOURCE_DATE_EPOCH` set to `epoch`, or unset.
fn build_with_epoch(dir: &Path, out: &Path, epoch: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_acikit"));
    command
        .arg("build")
        .arg(dir)
        .arg(out)
        .args(args)
        .env_remove("ACIKIT_DATABASE");
    match epoch {
        Some(value) => command.env("SOURCE_DATE_EPOCH", value),
        None => command.env_remove("SOURCE_DATE_EPOCH"),
    };
    command.output().expect("the acikit binary runs")
}

/// Sets the mtime of every file and folder under `dir` (not symlinks) to `at`, children
/// before their folder so that the folders keep it.
fn touch_tree(dir: &Path, at: std::time::SystemTime) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            touch_tree(&path, at);
        } else if meta.is_file() {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
    }
    std::fs::File::open(dir).unwrap().set_modified(at).unwrap();
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn source_date_epoch_gives_identical_builds_of_a_touched_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    layout(&dir);
    let day = std::time::Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let out = |name: &str| tmp.path().join(name);

    // With the variable, touching every file between the builds changes nothing: all the
    // mtimes are after the epoch and clamped to it.
    ok(&build_with_epoch(
        &dir,
        &out("a.aci"),
        Some("1600000000"),
        &[],
    ));
    touch_tree(&dir, now + day);
    ok(&build_with_epoch(
        &dir,
        &out("b.aci"),
        Some("1600000000"),
        &[],
    ));
    assert_eq!(read(&out("a.aci")), read(&out("b.aci")));
    // It is exactly the --mtime clamp.
    ok(&build_with_epoch(
        &dir,
        &out("m.aci"),
        None,
        &["--mtime", "1600000000"],
    ));
    assert_eq!(read(&out("a.aci")), read(&out("m.aci")));

    // Without it the touched mtimes are stored as they are.
    ok(&build_with_epoch(&dir, &out("c.aci"), None, &[]));
    touch_tree(&dir, now + 2 * day);
    ok(&build_with_epoch(&dir, &out("d.aci"), None, &[]));
    assert_ne!(read(&out("c.aci")), read(&out("d.aci")));

    // Clamping keeps mtimes older than the epoch: a later epoch than every mtime stores
    // them unchanged, as a build without the variable does.
    let later = (now + 3 * day)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    ok(&build_with_epoch(&dir, &out("e.aci"), Some(&later), &[]));
    assert_eq!(read(&out("d.aci")), read(&out("e.aci")));
}

#[test]
fn mtime_wins_over_source_date_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    layout(&dir);
    let out = |name: &str| tmp.path().join(name);
    ok(&build_with_epoch(
        &dir,
        &out("epoch.aci"),
        Some("1500000000"),
        &[],
    ));
    ok(&build_with_epoch(
        &dir,
        &out("flag.aci"),
        None,
        &["--mtime", "1500000000"],
    ));
    assert_eq!(read(&out("epoch.aci")), read(&out("flag.aci")));
    ok(&build_with_epoch(
        &dir,
        &out("both.aci"),
        Some("1600000000"),
        &["--mtime", "1500000000"],
    ));
    assert_eq!(read(&out("both.aci")), read(&out("flag.aci")));
    // With --mtime the variable is not read at all, so even a malformed one is no error.
    ok(&build_with_epoch(
        &dir,
        &out("bad.aci"),
        Some("soon"),
        &["--mtime", "1500000000"],
    ));
    assert_eq!(read(&out("bad.aci")), read(&out("flag.aci")));
}

#[test]
fn an_invalid_source_date_epoch_is_a_clear_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    layout(&dir);
    let target = tmp.path().join("out.aci");
    for bad in [
        "",
        "-5",
        "1.5",
        " 1600000000",
        "1600000000x",
        "99999999999999999999",
    ] {
        let out = build_with_epoch(&dir, &target, Some(bad), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {err}");
        assert!(err.contains("error: invalid_argument"), "{bad:?}: {err}");
        assert!(
            err.contains(&format!("SOURCE_DATE_EPOCH={bad:?}")),
            "{bad:?}: {err}"
        );
        assert!(!target.exists(), "{bad:?}: nothing written");
    }
    // Nothing but the layout was left in the folder.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

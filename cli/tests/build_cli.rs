//! `acikit build` and `acikit sign` through the binary: the same folder twice gives the same
//! bytes, the signature passes `gpg --verify`, and errors carry their kind code.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::acikit;
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

fn gpg(home: &Path, args: &[&str]) -> Output {
    Command::new("gpg")
        .env("GNUPGHOME", home)
        .args([
            "--batch",
            "--yes",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
        ])
        .args(["--passphrase", ""])
        .args(args)
        .output()
        .expect("gpg runs")
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

//! `acikit trust add / list / rm` as real processes, with keys made by `gpg` in a throw-away
//! GNUPGHOME: text and `--json` output, exit codes, and the `error: KIND: ...` line of failures
//! (a secret key, a missing scope flag, an unknown fingerprint).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::acikit_in as acikit;
use crate::common::gpg::Gpg;
use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

struct Keys {
    _gpg: Gpg,
    dir: tempfile::TempDir,
    rsa: (String, PathBuf),
    ed: (String, PathBuf),
    secret: PathBuf,
}

/// Makes an RSA and an Ed25519 key; writes their armored public keys and the Ed25519 secret key.
fn keys() -> Keys {
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    let mut made = Vec::new();
    for (uid, algo, file) in [
        ("CLI RSA <rsa@example.com>", "rsa2048", "rsa.asc"),
        ("CLI Ed <ed@example.com>", "ed25519", "ed.asc"),
    ] {
        let fpr = gpg.gen_key(&[], uid, algo, "sign", "never");
        let path = dir.path().join(file);
        std::fs::write(&path, gpg.export(&fpr)).unwrap();
        made.push((fpr, path));
    }
    let secret = dir.path().join("secret.asc");
    std::fs::write(
        &secret,
        gpg.run(&["--armor", "--export-secret-keys", &made[1].0], None),
    )
    .unwrap();
    let ed = made.pop().unwrap();
    let rsa = made.pop().unwrap();
    Keys {
        _gpg: gpg,
        dir,
        rsa,
        ed,
        secret,
    }
}

#[test]
fn trust_add_list_rm_with_json() {
    let keys = keys();
    let store = tempfile::tempdir().unwrap();
    let store = store.path();
    let rsa = keys.rsa.1.to_str().unwrap();
    let ed = keys.ed.1.to_str().unwrap();

    let added = json(&acikit(
        store,
        &["trust", "add", "--prefix", "example.com/app", rsa, "--json"],
    ));
    assert_eq!(added["fingerprint"], keys.rsa.0.as_str());
    assert_eq!(added["key_id"], &keys.rsa.0[24..]);
    assert_eq!(added["user_ids"][0], "CLI RSA <rsa@example.com>");
    assert_eq!(added["algorithm"], "rsa2048");
    assert_eq!(added["expires_at"], Value::Null);
    assert_eq!(added["scope"]["kind"], "prefix");
    assert_eq!(added["scope"]["prefix"], "example.com/app");
    assert!(
        Path::new(added["path"].as_str().unwrap())
            .starts_with(store.join("config/trust/prefix.d/example.com,app"))
    );

    let added = json(&acikit(store, &["trust", "add", "--root", ed, "--json"]));
    assert_eq!(added["fingerprint"], keys.ed.0.as_str());
    assert_eq!(added["scope"]["kind"], "root");
    assert_eq!(added["algorithm"], "ed25519");

    let listed = json(&acikit(store, &["trust", "list", "--json"]));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["fingerprint"], keys.ed.0.as_str());
    assert_eq!(listed[0]["scope"]["kind"], "root");
    assert_eq!(listed[1]["fingerprint"], keys.rsa.0.as_str());
    assert!(listed[1]["created_at"].as_u64().unwrap() > 1_500_000_000);

    // Text forms.
    let out = acikit(store, &["trust", "list"]);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    assert!(listing.starts_with("FINGERPRINT"), "{listing}");
    assert!(
        listing.lines().any(|l| l.starts_with(&keys.rsa.0)
            && l.contains("example.com/app")
            && l.contains("rsa2048")
            && l.contains("never")
            && l.contains("CLI RSA <rsa@example.com>")),
        "{listing}"
    );
    let out = acikit(store, &["trust", "add", "--root", rsa]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("trusted {} for all names (root)", keys.rsa.0))
            && said.contains("user ID: CLI RSA <rsa@example.com>"),
        "{said}"
    );

    // Removal by upper-case fingerprint drops both scopes of the RSA key.
    let removed = json(&acikit(
        store,
        &["trust", "rm", &keys.rsa.0.to_uppercase(), "--json"],
    ));
    let removed = removed["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 2);
    assert!(
        removed
            .iter()
            .all(|k| k["fingerprint"] == keys.rsa.0.as_str())
    );
    let listed = json(&acikit(store, &["trust", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Text removal by long key ID.
    let out = acikit(store, &["trust", "rm", &keys.ed.0[24..]]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("removed {}", keys.ed.0)));
    let listed = json(&acikit(store, &["trust", "list", "--json"]));
    assert_eq!(listed, Value::Array(Vec::new()));

    // Removing it again: not found, exit 1.
    let out = acikit(store, &["trust", "rm", &keys.ed.0, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: not_found: "), "{err}");
    assert!(err.contains(&keys.ed.0), "{err}");
}

#[test]
fn trust_add_failures() {
    let keys = keys();
    let store = tempfile::tempdir().unwrap();
    let store = store.path();
    let rsa = keys.rsa.1.to_str().unwrap();

    // A secret key is refused.
    let out = acikit(
        store,
        &["trust", "add", "--root", keys.secret.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: bad_openpgp: "), "{err}");
    assert!(err.contains("secret key"), "{err}");

    // Exactly one of --prefix and --root (clap's usage error, exit 2).
    let out = acikit(store, &["trust", "add", rsa]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = acikit(
        store,
        &["trust", "add", "--root", "--prefix", "example.com", rsa],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // An invalid prefix, a missing file.
    let out = acikit(store, &["trust", "add", "--prefix", "Not/A/Prefix", rsa]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: invalid_value: "));
    let missing = keys.dir.path().join("missing.asc");
    let out = acikit(
        store,
        &["trust", "add", "--root", missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: not_found: "));

    // Nothing was trusted.
    let listed = json(&acikit(store, &["trust", "list", "--json"]));
    assert_eq!(listed, Value::Array(Vec::new()));
}

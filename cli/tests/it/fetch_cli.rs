//! `acikit fetch` end to end against an in-process HTTPS server (the core's test harness)
//! with a gpg-made key: refused while the key is untrusted, fetched after `acikit trust add`
//! and listed; `--trust-keys-from-discovery` trusts the key that discovery lists and prints
//! its fingerprint; `--json` output.

use std::path::Path;
use std::process::Command;

use crate::common::gpg::Gpg;
use crate::common::https::{TestServer, meta_page};
use crate::common::{acikit_async as acikit, text};
use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde_json::Value;

/// A gzip ACI of `localhost/acme/app` version 1.0.0, made by GNU tar and gzip.
fn make_aci(dir: &Path) -> Vec<u8> {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"localhost/acme/app","labels":[{"name":"version","value":"1.0.0"}]}"#,
    )
    .unwrap();
    std::fs::write(layout.join("rootfs/etc/hello"), "hello\n").unwrap();
    let status = Command::new("sh")
        .arg("-ec")
        .arg("tar --format=gnu -cf - manifest rootfs | gzip -n > ../app.aci")
        .current_dir(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(dir.join("app.aci")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_verifies_against_trusted_keys() {
    let work = tempfile::tempdir().unwrap();
    let aci = make_aci(work.path());
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(&[], "Acme <acme@localhost>", "ed25519", "sign", "never");
    let sig = gpg.sign(&[], &format!("{fpr}!"), &work.path().join("app.aci"));
    let public = gpg.export(&fpr);
    std::fs::write(work.path().join("acme.asc"), &public).unwrap();

    let server = TestServer::start_with(true, move |port| {
        let page = meta_page(&[
            (
                "ac-discovery",
                &format!("localhost/acme https://localhost:{port}/images/{{version}}.{{ext}}"),
            ),
            (
                "ac-discovery-pubkeys",
                &format!("localhost/acme https://localhost:{port}/keys/acme.asc"),
            ),
        ]);
        Router::new()
            .route("/acme/app", get(move || async move { Html(page) }))
            .route("/images/1.0.0.aci", get(move || async move { aci }))
            .route("/images/1.0.0.aci.asc", get(move || async move { sig }))
            .route("/keys/acme.asc", get(move || async move { public }))
    })
    .await;
    let store = work.path().join("store");
    let net = |json: bool| -> Vec<String> {
        let mut args = vec![
            "--store".to_string(),
            store.display().to_string(),
            "fetch".to_string(),
            "localhost/acme/app:1.0.0".to_string(),
            "--ca-cert".to_string(),
            server.ca_file.display().to_string(),
            "--port".to_string(),
            server.port.to_string(),
        ];
        if json {
            args.push("--json".to_string());
        }
        args
    };

    // Untrusted: refused, nothing stored.
    let out = acikit(net(false)).await;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("untrusted_key"),
        "{}",
        text(&out.stderr)
    );
    let list = acikit(vec![
        "--store".into(),
        store.display().to_string(),
        "list".into(),
        "--json".into(),
    ])
    .await;
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");

    // Trusted for the prefix: fetched and verified.
    let out = acikit(vec![
        "--store".into(),
        store.display().to_string(),
        "trust".into(),
        "add".into(),
        "--prefix".into(),
        "localhost/acme".into(),
        work.path().join("acme.asc").display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = acikit(net(true)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fetched: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fetched["name"], "localhost/acme/app");
    assert_eq!(fetched["outcome"], "downloaded");
    assert_eq!(fetched["signature"]["fingerprint"], fpr.as_str());
    let id = fetched["image_id"].as_str().unwrap().to_string();
    let list = acikit(vec![
        "--store".into(),
        store.display().to_string(),
        "list".into(),
    ])
    .await;
    assert!(
        text(&list.stdout).contains(&id[..24]),
        "{}",
        text(&list.stdout)
    );

    // A fresh store, keys from discovery only with the flag.
    let fresh = work.path().join("fresh");
    let mut args = net(false);
    args[1] = fresh.display().to_string();
    args.push("--trust-keys-from-discovery".into());
    let out = acikit(args).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&fpr), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&id), "{}", text(&out.stdout));
}

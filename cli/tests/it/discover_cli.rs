//! `acikit discover` end to end against an in-process HTTPS server (the core's test
//! harness: rcgen CA, axum-server with rustls): `--ca-cert`, `--port`, `--label`,
//! `NAME:VERSION`, `--json` and text output, the default credentials file in the store,
//! `--insecure-options` spelled out and refused when misspelled.

use crate::common::https::{TestServer, meta_page};
use crate::common::{acikit_async as acikit, text};
use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_prints_endpoints_over_https() {
    let templates = meta_page(&[
        (
            "ac-discovery",
            "localhost/acme https://cdn.test/{os}/{arch}/{name}-{version}-{channel}.{ext}",
        ),
        (
            "ac-discovery",
            "localhost https://mirror.test/{name}-{version}.{ext}",
        ),
    ]);
    let keys = meta_page(&[(
        "ac-discovery-pubkeys",
        "localhost https://localhost/keys.gpg",
    )]);
    let server = TestServer::start(
        Router::new()
            .route("/acme/app", get(move || async move { Html(templates) }))
            .route("/", get(move || async move { Html(keys) })),
    )
    .await;
    let store = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(store.path().join("config")).unwrap();
    std::fs::write(
        store.path().join("config/auth.json"),
        r#"{"localhost": {"type": "bearer", "token": "from-store"}}"#,
    )
    .unwrap();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--store".into(),
            store.path().display().to_string(),
            "discover".into(),
            "localhost/acme/app:1.2.0".into(),
            "--label".into(),
            "channel=beta".into(),
            "--port".into(),
            server.port.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let ca = server.ca_file.display().to_string();

    let out = acikit(base(&["--ca-cert", &ca, "--json"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (os, arch) = acikit::discovery::host_os_arch();
    let name = "localhost/acme/app";
    assert_eq!(json["name"], name);
    assert_eq!(json["labels"]["version"], "1.2.0");
    assert_eq!(json["labels"]["channel"], "beta");
    assert_eq!(
        json["aci_endpoints"],
        serde_json::json!([
            {
                "aci": format!("https://cdn.test/{os}/{arch}/{name}-1.2.0-beta.aci"),
                "asc": format!("https://cdn.test/{os}/{arch}/{name}-1.2.0-beta.aci.asc"),
            },
            {
                "aci": format!("https://mirror.test/{name}-1.2.0.aci"),
                "asc": format!("https://mirror.test/{name}-1.2.0.aci.asc"),
            },
        ])
    );
    assert_eq!(
        json["pubkeys"],
        serde_json::json!(["https://localhost/keys.gpg"])
    );
    let port = server.port;
    assert_eq!(
        json["tried"],
        serde_json::json!([
            format!("https://localhost:{port}/acme/app?ac-discovery=1"),
            format!("https://localhost:{port}/acme?ac-discovery=1"),
            format!("https://localhost:{port}/?ac-discovery=1"),
        ])
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer from-store")),
        "the store's auth.json is used by default: {:?}",
        server.requests()
    );

    // Text output, in order; an explicit empty credentials file replaces the store's.
    server.clear_requests();
    let empty_auth = store.path().join("empty-auth.json");
    std::fs::write(&empty_auth, "{}").unwrap();
    let auth = empty_auth.display().to_string();
    let out = acikit(base(&["--ca-cert", &ca, "--auth-config", &auth])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "ACI: https://cdn.test/{os}/{arch}/{name}-1.2.0-beta.aci, \
             ASC: https://cdn.test/{os}/{arch}/{name}-1.2.0-beta.aci.asc\n\
             ACI: https://mirror.test/{name}-1.2.0.aci, ASC: https://mirror.test/{name}-1.2.0.aci.asc\n\
             Keys: https://localhost/keys.gpg\n"
        )
    );
    assert!(server.requests().iter().all(|r| r.authorization.is_none()));

    // Without the CA the certificate is not trusted: nothing is found.
    let out = acikit(base(&[])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: discovery_failed: "), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // ... unless TLS checks are turned off, spelled out.
    let out = acikit(base(&["--insecure-options", "tls", "--json"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Misspelled insecure options are a usage error.
    let out = acikit(base(&["--insecure-options", "tls,all"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown insecure option \"all\""));
}

//! Two `acikit serve` processes on one store folder and one PostgreSQL index: an image
//! pushed into one is listed and served by the other, and fetched from it through
//! discovery. Then the store, opened without `--database`, finds its index again.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{Background, acikit, https, postgres, text};
use serde_json::Value;

/// Starts `acikit serve` on the store `store` indexed in `database`; returns it with
/// its port.
fn serve(d: &Path, store: &Path, database: &str) -> (Background, u16) {
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(["--store", store.to_str().unwrap(), "serve"])
        .args(["--listen", "127.0.0.1:0", "--json"])
        .args(["--tls-cert", &s("cert.pem"), "--tls-key", &s("key.pem")])
        .args(["--push-token-file", &s("token")])
        .env("ACIKIT_DATABASE", database)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Background(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let addr: std::net::SocketAddr = started["listening"].as_str().unwrap().parse().unwrap();
    (server, addr.port())
}

#[test]
fn two_serve_processes_share_one_postgresql_index() {
    let schema = postgres::TestSchema::new("cli_two_servers");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = https::test_ca();
    std::fs::write(d.join("cert.pem"), &ca.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &ca.key_pem).unwrap();
    std::fs::write(d.join("ca.pem"), &ca.ca_pem).unwrap();
    std::fs::write(d.join("token"), "tok-123\n").unwrap();
    let layout = d.join("layout");
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"localhost/acme/shared","labels":[{"name":"version","value":"2.0.0"}]}"#,
    )
    .unwrap();
    std::fs::write(layout.join("rootfs/etc/hello"), "hello\n").unwrap();
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    let out = acikit(&["build", &s("layout"), &s("app.aci"), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let store = d.join("server");
    let (_first, first_port) = serve(d, &store, &schema.url);
    let (_second, second_port) = serve(d, &store, &schema.url);
    assert!(!store.join("index.db").exists());

    // Push into the first.
    let out = acikit(&[
        "push",
        &s("app.aci"),
        "--to",
        &format!("https://localhost:{first_port}"),
        "--token",
        "tok-123",
        "--ca-cert",
        &s("ca.pem"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = pushed["image_id"].as_str().unwrap().to_string();

    // The second lists it and serves it: a client fetches it through its discovery
    // (unsigned, so with --insecure-options image).
    let out = acikit(&[
        "--store",
        &s("client"),
        "fetch",
        "localhost/acme/shared:2.0.0",
        "--port",
        &second_port.to_string(),
        "--ca-cert",
        &s("ca.pem"),
        "--insecure-options",
        "image",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fetched: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fetched["image_id"], id.as_str());

    // Without --database, the store finds its index again (the password from
    // PGPASSWORD, as libpq would take it).
    let base = postgres::base_url();
    let credentials = base.split_once("://").unwrap().1.split_once('@').unwrap().0;
    let password = credentials
        .split_once(':')
        .map_or("", |(_, p)| p)
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(["--store", store.to_str().unwrap(), "list", "--json"])
        .env_remove("ACIKIT_DATABASE")
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(text(&out.stdout).contains(&id), "{listed}");
    let out = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(["--store", store.to_str().unwrap(), "stats", "--json"])
        .env("ACIKIT_DATABASE", &schema.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["index"], "postgres", "{stats}");
    assert_eq!(stats["images"], 1, "{stats}");
    assert_eq!(stats["index_disk_bytes"], 0, "{stats}");

    // Another database on the same folder is refused, saying why.
    let other = postgres::TestSchema::new("cli_two_servers_other");
    let out = acikit(&[
        "--store",
        store.to_str().unwrap(),
        "--database",
        &other.url,
        "list",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid_argument") && err.contains("one index"),
        "{err}"
    );
    assert!(!err.contains(":acikit@"), "no password in messages: {err}");

    // A database that does not answer: the reason, at once, and no store folder made.
    let nowhere = d.join("nowhere");
    let started = std::time::Instant::now();
    let out = acikit(&[
        "--store",
        nowhere.to_str().unwrap(),
        "--database",
        "postgres://ann:secret@127.0.0.1:1/images",
        "list",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("database") && err.contains("refused"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        !nowhere.exists(),
        "nothing is created for a database that fails"
    );
}

//! `acikit serve` in the background, `acikit push` into it, then `acikit fetch` from it
//! through discovery, all through the binary, over HTTPS with the test CA and a gpg key.

#[path = "../../core/tests/common/https.rs"]
#[allow(dead_code)]
mod https;

#[path = "../../core/tests/common/gpg.rs"]
#[allow(dead_code)]
mod gpg;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use gpg::Gpg;
use serde_json::Value;

fn acikit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(args)
        .output()
        .expect("the acikit binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Kills the background server when the test ends, pass or fail.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn make_aci(dir: &Path) {
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
}

#[test]
fn serve_push_fetch_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = https::test_ca();
    std::fs::write(d.join("cert.pem"), &ca.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &ca.key_pem).unwrap();
    std::fs::write(d.join("ca.pem"), &ca.ca_pem).unwrap();
    std::fs::write(d.join("token"), "tok-123\n").unwrap();
    make_aci(d);
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(&[], "Acme <acme@localhost>", "ed25519", "sign", "never");
    std::fs::write(d.join("acme.asc"), gpg.export(&fpr)).unwrap();
    let sig = gpg.sign(&[], &fpr, &d.join("app.aci"));
    std::fs::write(d.join("app.aci.asc"), sig).unwrap();

    let server_store = d.join("server");
    let s = |p: &str| d.join(p).to_str().unwrap().to_string();
    // The server trusts the key and requires signatures.
    let out = acikit(&[
        "--store",
        &s("server"),
        "trust",
        "add",
        "--prefix",
        "localhost/acme",
        &s("acme.asc"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args([
            "--store",
            server_store.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &s("cert.pem"),
            "--tls-key",
            &s("key.pem"),
            "--push-token-file",
            &s("token"),
            "--require-signature",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Background(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let addr: std::net::SocketAddr = started["listening"].as_str().unwrap().parse().unwrap();
    let port = addr.port().to_string();
    let to = format!("https://localhost:{port}");

    // A wrong token is refused.
    let out = acikit(&[
        "push",
        &s("app.aci"),
        "--signature",
        &s("app.aci.asc"),
        "--to",
        &to,
        "--token",
        "nope",
        "--ca-cert",
        &s("ca.pem"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("HTTP 401"),
        "{}",
        text(&out.stderr)
    );

    // The right one works.
    let out = acikit(&[
        "push",
        &s("app.aci"),
        "--signature",
        &s("app.aci.asc"),
        "--to",
        &to,
        "--token",
        "tok-123",
        "--ca-cert",
        &s("ca.pem"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["name"], "localhost/acme/app");
    assert_eq!(pushed["signed"], true);

    // A client store fetches it through discovery and verifies it.
    let out = acikit(&[
        "--store",
        &s("client"),
        "trust",
        "add",
        "--prefix",
        "localhost/acme",
        &s("acme.asc"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = acikit(&[
        "--store",
        &s("client"),
        "fetch",
        "localhost/acme/app:1.0.0",
        "--port",
        &port,
        "--ca-cert",
        &s("ca.pem"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fetched: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fetched["image_id"], pushed["image_id"]);
    assert!(fetched["signature"].is_object(), "{fetched}");
}

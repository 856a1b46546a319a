//! `acikit serve` in the background, `acikit push` into it, then `acikit fetch` from it
//! through discovery, all through the binary, over HTTPS with the test CA and a gpg key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::gpg::Gpg;
use crate::common::{Background, acikit, https, text};
use rustix::process::Signal;
use serde_json::Value;

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
    let trust_publisher = |store: &str| {
        let out = acikit(&[
            "--store",
            &s(store),
            "trust",
            "add",
            "--prefix",
            "localhost/acme",
            &s("acme.asc"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    // The server trusts the key and requires signatures.
    trust_publisher("server");
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
    let mut server = Background(child);
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
    let fetch_app = |store: &str| {
        trust_publisher(store);
        let out = acikit(&[
            "--store",
            &s(store),
            "fetch",
            "localhost/acme/app:1.0.0",
            "--port",
            &port,
            "--ca-cert",
            &s("ca.pem"),
            "--json",
        ]);
        assert!(out.status.success(), "{store}: {}", text(&out.stderr));
        out
    };
    let out = fetch_app("client");
    let fetched: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fetched["image_id"], pushed["image_id"]);
    assert!(fetched["signature"].is_object(), "{fetched}");

    // GNU gzip is not our gzip: the upload is served as pushed. It is kept whole until `gc`
    // compacts it into a gzip correction record, and stats count it.
    assert_eq!(pushed["form"], "original");
    let size = std::fs::metadata(d.join("app.aci")).unwrap().len();
    let out = acikit(&["--store", &s("server"), "stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["original_forms"]["kept"], 1, "{stats}");
    assert_eq!(
        stats["original_images"][0]["original"]["pending"], true,
        "{stats}"
    );
    let out = acikit(&["--store", &s("server"), "gc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("originals: 1 compacted, 0 kept whole"),
        "{}",
        text(&out.stdout)
    );
    // Served again from the correction record (re-created once, then from its checked copy):
    // the publisher's signature still verifies.
    for again in ["client-2", "client-3"] {
        fetch_app(again);
    }
    assert!(
        server_store
            .join("originals")
            .join(format!(
                "{}.served",
                pushed["image_id"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha512-")
            ))
            .exists()
    );
    let out = acikit(&["--store", &s("server"), "stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["signed_images"], 1, "{stats}");
    assert_eq!(stats["original_records"], 1, "{stats}");
    assert_eq!(stats["original_forms"]["gzip"], 1, "{stats}");
    assert_eq!(stats["original_compressed_bytes"], size, "{stats}");
    assert_eq!(stats["originals"], 0, "{stats}");
    let out = acikit(&["--store", &s("server"), "stats"]);
    assert!(
        text(&out.stdout).contains(&format!(
            "original forms         1 images: {size} bytes as they came"
        )),
        "{}",
        text(&out.stdout)
    );

    // rm takes the kept signature and original with the image.
    let id = pushed["image_id"].as_str().unwrap();
    let out = acikit(&["--store", &s("server"), "rm", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for folder in ["signatures", "originals"] {
        let left: Vec<_> = std::fs::read_dir(server_store.join(folder))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{folder}: {left:?}");
    }

    // SIGTERM stops the server cleanly.
    terminate(&server.0, Signal::TERM);
    let status = wait_exit(&mut server.0, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

fn terminate(child: &Child, signal: Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal).unwrap();
}

/// Waits for `child` to exit, failing the test after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `acikit serve` over plain HTTP on a free port, with `extra` arguments; its address.
fn spawn_serve(store: &Path, extra: &[&str]) -> (Background, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(["--store", store.to_str().unwrap(), "serve"])
        .args(["--listen", "127.0.0.1:0", "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let addr = started["listening"].as_str().unwrap().parse().unwrap();
    (Background(child), addr)
}

/// Sends `GET path` (HTTP/1.1, one request) and reads the answer's head; returns the
/// connection, the head and the body bytes read with it.
fn get(addr: SocketAddr, path: &str) -> (TcpStream, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = got.split_off(end + 4);
            return (stream, text(&got), body);
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap()
}

/// An image with one 48 MiB file (larger than the socket buffers, so that serving it takes
/// as long as the client reading it), imported into `store`; its ID.
fn big_image(d: &Path, store: &Path) -> String {
    let aci = build_big(d);
    let out = acikit(&[
        "--store",
        store.to_str().unwrap(),
        "import",
        aci.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    imported[0]["imported"]["image_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{imported}"))
        .to_string()
}

/// `d/big.aci`: one 48 MiB file, built with `acikit build` (gzip).
fn build_big(d: &Path) -> std::path::PathBuf {
    let layout = d.join("big");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"localhost/big"}"#,
    )
    .unwrap();
    std::fs::write(layout.join("rootfs/big"), vec![0x5a; 48 << 20]).unwrap();
    let aci = d.join("big.aci");
    let out = acikit(&["build", layout.to_str().unwrap(), aci.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    aci
}

#[test]
fn sigterm_lets_a_download_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let id = big_image(d, &store);
    let tar = d.join("big.tar");
    let out = acikit(&[
        "--store",
        store.to_str().unwrap(),
        "export",
        &id,
        tar.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = std::fs::read(&tar).unwrap();

    let (mut server, addr) = spawn_serve(&store, &["--shutdown-grace", "60"]);
    let (_, head, _) = get(addr, "/api/stats");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // A download starts, the client stops reading, the server gets SIGTERM.
    let (mut download, head, mut body) = get(addr, &format!("/blobs/{id}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(content_length(&head), expected.len());
    terminate(&server.0, Signal::TERM);
    // New connections are refused, while the server waits for the download.
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server exited with a response in flight"
    );
    // The download completes, whole; then the server exits, with status 0.
    download.read_to_end(&mut body).unwrap();
    assert_eq!(body.len(), expected.len());
    assert!(
        body == expected,
        "the downloaded tar differs from the export"
    );
    let status = wait_exit(&mut server.0, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[test]
fn sigint_stops_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let id = big_image(d, &store);
    let (mut server, addr) = spawn_serve(&store, &["--shutdown-grace", "0.5"]);
    // A client that never reads does not hold the server beyond the grace period.
    let (mut download, head, mut body) = get(addr, &format!("/blobs/{id}"));
    let length = content_length(&head);
    let start = Instant::now();
    terminate(&server.0, Signal::INT);
    let status = wait_exit(&mut server.0, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // The client then sees a cut-short body, never a clean end.
    let _ = download.read_to_end(&mut body);
    assert!(body.len() < length, "{} of {length}", body.len());
}

#[test]
fn a_push_cut_short_by_the_shutdown_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let aci = std::fs::read(build_big(d)).unwrap();
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(&[], "Acme <acme@localhost>", "ed25519", "sign", "never");
    let sig = gpg.sign(&[], &fpr, &d.join("big.aci"));
    let sig_hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    let (mut server, addr) =
        spawn_serve(&store, &["--push-token", "tok", "--shutdown-grace", "0.5"]);

    // Half of a signed upload, then nothing: the push waits for the rest.
    let mut push = TcpStream::connect(addr).unwrap();
    write!(
        push,
        "POST /push HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tok\r\n\
         Acikit-Signature: {sig_hex}\r\nContent-Length: {}\r\n\r\n",
        aci.len()
    )
    .unwrap();
    push.write_all(&aci[..aci.len() / 2]).unwrap();
    let tmp = store.join("tmp");
    let in_tmp = || std::fs::read_dir(&tmp).map_or(0, |e| e.count());
    let start = Instant::now();
    while in_tmp() < 2 {
        // the copy of the upload and the import's staging folder
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the push did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    terminate(&server.0, Signal::TERM);
    let status = wait_exit(&mut server.0, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in tmp/: {left:?}");
    let out = acikit(&["--store", store.to_str().unwrap(), "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[]");
}

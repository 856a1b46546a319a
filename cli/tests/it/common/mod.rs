//! What the CLI tests share: running the binary and reading its output, plus the core
//! tests' own test servers, gpg keys and PostgreSQL schemas (the same files, not copies).

// The core tests' helpers, compiled in here too: the CLI tests use only part of them.
#[path = "../../../../core/tests/it/common/gpg.rs"]
#[allow(dead_code)]
pub mod gpg;
#[path = "../../../../core/tests/it/common/https.rs"]
#[allow(dead_code)]
pub mod https;
#[path = "../../../../core/tests/it/common/postgres.rs"]
#[allow(dead_code)]
pub mod postgres;

mod images;
pub mod interrupt;
pub use images::{manifest_for, pseudo_random};

use std::path::Path;
use std::process::{Child, Command, Output};

/// `acikit ARGS...`, run to completion. `$ACIKIT_DATABASE` and `$SOURCE_DATE_EPOCH` are not
/// passed on, so that a developer's own setting never points a test at their database or
/// changes what a build writes.
pub fn acikit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(args)
        .env_remove("ACIKIT_DATABASE")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("the acikit binary runs")
}

/// `acikit --store STORE ARGS...`, run to completion.
pub fn acikit_in(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acikit"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("ACIKIT_DATABASE")
        .output()
        .expect("the acikit binary runs")
}

/// `acikit ARGS...` run off the async runtime (a test server on it keeps serving meanwhile).
pub async fn acikit_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_acikit"))
            .args(args)
            .output()
            .expect("the acikit binary runs")
    })
    .await
    .unwrap()
}

/// `what`, the exit status and both outputs of a finished command, for assertion messages.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Output bytes as text, for messages and `contains` checks.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `script` with `sh -ec` in `dir`; panics with its stderr if it fails.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gpg ARGS...` with the keyring in `home`, non-interactive, with an empty passphrase.
pub fn gpg(home: &Path, args: &[&str]) -> Output {
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

/// A process in the background (a server), killed when the test ends, pass or fail.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

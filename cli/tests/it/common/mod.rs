//! What the CLI tests share: running the binary and reading its output.
#![allow(dead_code)]

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

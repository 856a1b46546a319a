//! What the CLI tests share: running the binary and reading its output.
#![allow(dead_code)]

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

/// A process in the background (a server), killed when the test ends, pass or fail.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

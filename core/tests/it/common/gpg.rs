//! GnuPG at test set-up: keys and detached signatures made by the real `gpg`, in a
//! throw-away home (the `gpg` Debian package must be installed).

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A throw-away GnuPG home; `gpg-agent` is stopped when it is dropped.
pub struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    /// A new empty GnuPG home in a temporary folder.
    pub fn new() -> Gpg {
        Gpg::in_dir(tempfile::tempdir().unwrap())
    }

    /// A GnuPG home in `home` (an empty temporary folder).
    pub fn in_dir(home: tempfile::TempDir) -> Gpg {
        Gpg { home }
    }

    /// The GnuPG home folder.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Runs gpg in this home (batch, empty passphrase); panics with its stderr on failure.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--yes",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("gpg runs (install the gpg package)");
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(bytes) = stdin {
                input.write_all(bytes).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Generates a key (`--quick-gen-key`); returns its fingerprint (lowercase).
    pub fn gen_key(
        &self,
        extra: &[&str],
        uid: &str,
        algo: &str,
        usage: &str,
        expire: &str,
    ) -> String {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--quick-gen-key", uid, algo, usage, expire]);
        self.run(&args, None);
        self.fingerprint(uid)
    }

    pub fn fingerprint(&self, uid: &str) -> String {
        let listing =
            String::from_utf8(self.run(&["--with-colons", "--list-keys", uid], None)).unwrap();
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').nth(8))
            .expect("a fingerprint")
            .to_lowercase()
    }

    pub fn export(&self, fpr: &str) -> Vec<u8> {
        self.run(&["--armor", "--export", fpr], None)
    }

    /// The armored secret key (`--export-secret-keys`, unprotected: the home's keys have an
    /// empty passphrase).
    pub fn export_secret(&self, fpr: &str) -> Vec<u8> {
        self.run(&["--armor", "--export-secret-keys", fpr], None)
    }

    /// Runs `gpg --verify SIG DATA` in this home; returns whether it succeeded and its
    /// status output (`--status-fd 1`).
    pub fn verify(&self, sig: &Path, data: &Path) -> (bool, String) {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--no-tty", "--status-fd", "1", "--verify"])
            .arg(sig)
            .arg(data)
            .output()
            .expect("gpg runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// An armored detached signature of `data` by `signer` (a `-u` argument).
    pub fn sign(&self, extra: &[&str], signer: &str, data: &Path) -> Vec<u8> {
        let mut args: Vec<&str> = extra.to_vec();
        let data = data.to_str().unwrap();
        args.extend([
            "--local-user",
            signer,
            "--armor",
            "--detach-sign",
            "--output",
            "-",
            data,
        ]);
        self.run(&args, None)
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
    }
}

//! [`TrustStore`]: the trusted keys, one armored file per key and scope, laid out as rkt does.
//!
//! ```text
//! STORE/config/trust/
//!   root.d/<fingerprint>.asc                     keys trusted for every name
//!   prefix.d/<prefix, "/" as ",">/<fingerprint>.asc  keys trusted for one name prefix
//! ```
//!
//! Fingerprints are lowercase hex. A key trusted for several scopes has one file in each. Files
//! are written to a temporary name in the same folder, synced, then renamed, so a reader never
//! sees half a key. Files whose names start with `.` or do not end in `.asc` are ignored.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{ArmorOptions, SignedPublicKey};
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::types::{KeyDetails, PublicParams};
use serde::Serialize;

use super::TrustScope;
use super::parse::{self, fingerprint_hex, key_id_hex};
use super::policy::KeyView;
use crate::atomic_file::write_atomic;
use crate::{Error, ErrorKind, Result};

/// One trusted key, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrustedKey {
    /// The primary key's fingerprint, lowercase hex (40 digits for a v4 key).
    pub fingerprint: String,
    /// The primary key's long key ID, lowercase hex (16 digits).
    pub key_id: String,
    /// The user IDs with a valid self-certification, in key order.
    pub user_ids: Vec<String>,
    /// The primary key's algorithm, e.g. `rsa2048`, `ed25519`.
    pub algorithm: String,
    /// Creation time of the primary key, seconds since the Unix epoch.
    pub created_at: u64,
    /// When the primary key expires, seconds since the Unix epoch, if it does.
    pub expires_at: Option<u64>,
    /// The fingerprints (lowercase hex) of its validly bound subkeys.
    pub subkeys: Vec<String>,
    /// The names this key may sign.
    pub scope: TrustScope,
    /// The file that holds it.
    pub path: PathBuf,
}

/// A trusted key read from its file: its listing and the parsed key.
#[derive(Clone)]
pub(crate) struct LoadedKey {
    pub info: TrustedKey,
    pub key: SignedPublicKey,
}

/// The trusted keys of a store (`STORE/config/trust/`), one armored file per key and scope.
///
/// Cheap to clone; every call reads the folder afresh, so changes made by another process are
/// seen at once. The calls do blocking file I/O: from async code, run them with
/// `tokio::task::spawn_blocking`.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    /// The trust store in `dir` (created on the first [`TrustStore::add`]).
    ///
    /// ```
    /// # let dir = acikit::testing::example_dir("trust-new");
    /// use acikit::trust::TrustStore;
    ///
    /// let trust = TrustStore::new(dir.join("trust"));
    /// assert_eq!(trust.dir(), dir.join("trust"));
    /// // Nothing is written until a key is added.
    /// assert!(trust.list()?.is_empty());
    /// assert!(!dir.join("trust").exists());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> TrustStore {
        TrustStore { dir: dir.into() }
    }

    /// The folder of the trust store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn scope_dir(&self, scope: &TrustScope) -> PathBuf {
        match scope {
            TrustScope::Root => self.dir.join("root.d"),
            TrustScope::Prefix(prefix) => {
                self.dir.join("prefix.d").join(TrustScope::escaped(prefix))
            }
        }
    }

    /// Trusts the ascii-armored public key `armored` for `scope` and returns it as listed.
    ///
    /// Refused: anything but exactly one armored public key, such as a secret key or garbage
    /// ([`ErrorKind::BadOpenpgp`]), a key without a valid self-signature (the same), a
    /// revoked key ([`ErrorKind::KeyRevoked`]), an expired key ([`ErrorKind::KeyExpired`]),
    /// and a key the store already holds a revoked copy of (so a stale copy cannot undo a
    /// revocation). Adding a key again for the same scope replaces the stored copy (new user
    /// IDs, new expiry). The key is stored as rpgp re-armors it.
    ///
    /// ```
    /// # let dir = acikit::testing::example_dir("trust-add");
    /// use acikit::trust::{TrustScope, TrustStore};
    ///
    /// # let armored = acikit::testing::EXAMPLE_PUBLIC_KEY.as_bytes();
    /// // `armored`: an ascii-armored public key (`gpg --armor --export`).
    /// let trust = TrustStore::new(dir.join("trust"));
    /// let key = trust.add(armored, TrustScope::prefix("example.com")?)?;
    /// assert_eq!(key.algorithm, "ed25519");
    /// assert_eq!(key.user_ids, ["Example <example@example.com>"]);
    /// assert!(key.path.is_file());
    /// // Anything but one public key is refused.
    /// let err = trust.add(b"not a key", TrustScope::Root).unwrap_err();
    /// assert_eq!(err.kind(), acikit::ErrorKind::BadOpenpgp);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn add(&self, armored: &[u8], scope: TrustScope) -> Result<TrustedKey> {
        if let TrustScope::Prefix(prefix) = &scope {
            TrustScope::prefix(prefix)?;
        }
        let key = parse::public_key(armored, "the key")?;
        let view = KeyView::new(&key)?;
        view.check_usable(now())?;
        let fingerprint = fingerprint_hex(&key.fingerprint());
        for stored in self.load_all()? {
            if stored.info.fingerprint != fingerprint {
                continue;
            }
            let stored_view = KeyView::new(&stored.key)?;
            if let Some(revocation) = stored_view.revocation {
                return Err(Error::new(
                    ErrorKind::KeyRevoked,
                    format!(
                        "the store already holds a revoked copy of key {fingerprint} in {} \
                         (revocation of {}); a copy without the revocation cannot replace it",
                        stored.info.path.display(),
                        super::format_time(super::policy::created(revocation))
                    ),
                ));
            }
        }
        let bytes = key.to_armored_bytes(ArmorOptions::default()).map_err(|e| {
            Error::new(
                ErrorKind::BadOpenpgp,
                format!("cannot re-armor key {fingerprint}: {e}"),
            )
        })?;
        let dir = self.scope_dir(&scope);
        let path = dir.join(format!("{fingerprint}.asc"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        write_atomic(&path, &bytes)?;
        Ok(describe(&view, scope, path))
    }

    /// Every trusted key: root keys first, then by prefix, each by fingerprint.
    ///
    /// A file that is not a valid key, or whose key does not match its file name, is an
    /// [`ErrorKind::BadOpenpgp`] error naming the file (a damaged trust store fails closed).
    ///
    /// ```
    /// # let dir = acikit::testing::example_dir("trust-list");
    /// use acikit::trust::{TrustScope, TrustStore};
    ///
    /// # let armored = acikit::testing::EXAMPLE_PUBLIC_KEY.as_bytes();
    /// // `armored`: an ascii-armored public key (`gpg --armor --export`).
    /// let trust = TrustStore::new(dir.join("trust"));
    /// trust.add(armored, TrustScope::Root)?;
    /// let key = trust.add(armored, TrustScope::prefix("example.com")?)?;
    /// let keys = trust.list()?;
    /// assert_eq!(keys.len(), 2);
    /// assert_eq!(keys[0].scope, TrustScope::Root);
    /// assert_eq!(keys[1], key);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn list(&self) -> Result<Vec<TrustedKey>> {
        Ok(self.load_all()?.into_iter().map(|k| k.info).collect())
    }

    /// The trusted keys whose scope covers the image `name` (see [`TrustScope::covers`]).
    ///
    /// ```
    /// # let dir = acikit::testing::example_dir("trust-keys-for");
    /// use acikit::trust::{TrustScope, TrustStore};
    ///
    /// # let armored = acikit::testing::EXAMPLE_PUBLIC_KEY.as_bytes();
    /// // `armored`: an ascii-armored public key (`gpg --armor --export`).
    /// let trust = TrustStore::new(dir.join("trust"));
    /// trust.add(armored, TrustScope::prefix("example.com/tools")?)?;
    /// assert_eq!(trust.keys_for("example.com/tools/hello")?.len(), 1);
    /// assert!(trust.keys_for("example.com/toolshed")?.is_empty());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn keys_for(&self, name: &str) -> Result<Vec<TrustedKey>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|k| k.scope.covers(name))
            .collect())
    }

    /// Stops trusting a key, in every scope it is trusted for, and returns what was removed.
    ///
    /// `fingerprint` is a full fingerprint or a long key ID (16 hex digits), in any case, with
    /// optional spaces and `0x`; a key ID that matches more than one key is an
    /// [`ErrorKind::InvalidArgument`] error listing them. [`ErrorKind::NotFound`] if no
    /// trusted key matches.
    ///
    /// ```
    /// # let dir = acikit::testing::example_dir("trust-remove");
    /// use acikit::trust::{TrustScope, TrustStore};
    ///
    /// # let armored = acikit::testing::EXAMPLE_PUBLIC_KEY.as_bytes();
    /// // `armored`: an ascii-armored public key (`gpg --armor --export`).
    /// let trust = TrustStore::new(dir.join("trust"));
    /// let key = trust.add(armored, TrustScope::prefix("example.com")?)?;
    /// // A full fingerprint or a long key ID, any case.
    /// let removed = trust.remove(&key.key_id.to_uppercase())?;
    /// assert_eq!(removed, [key]);
    /// assert!(trust.list()?.is_empty());
    /// let err = trust.remove(&removed[0].fingerprint).unwrap_err();
    /// assert_eq!(err.kind(), acikit::ErrorKind::NotFound);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn remove(&self, fingerprint: &str) -> Result<Vec<TrustedKey>> {
        let wanted = normalize_fingerprint(fingerprint)?;
        let matches: Vec<TrustedKey> = self
            .list()?
            .into_iter()
            .filter(|k| k.fingerprint == wanted || k.key_id == wanted)
            .collect();
        if matches.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no trusted key with fingerprint or key ID {wanted}"),
            ));
        }
        let mut distinct: Vec<&str> = matches.iter().map(|k| k.fingerprint.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "key ID {wanted} matches {} keys ({}); give the full fingerprint",
                    distinct.len(),
                    distinct.join(", ")
                ),
            ));
        }
        for key in &matches {
            std::fs::remove_file(&key.path)
                .map_err(|e| Error::io(format!("removing {}", key.path.display()), e))?;
            if let TrustScope::Prefix(_) = key.scope
                && let Some(parent) = key.path.parent()
            {
                // Drop the prefix folder once empty; another key may still be there.
                let _ = std::fs::remove_dir(parent);
            }
        }
        Ok(matches)
    }

    /// Every stored key, parsed, in listing order.
    pub(crate) fn load_all(&self) -> Result<Vec<LoadedKey>> {
        let mut keys = Vec::new();
        self.load_dir(&self.dir.join("root.d"), &TrustScope::Root, &mut keys)?;
        let prefix_dir = self.dir.join("prefix.d");
        let mut prefixes = Vec::new();
        for (name, path) in entries(&prefix_dir)? {
            if !path.is_dir() {
                continue;
            }
            let scope = TrustScope::from_escaped(&name).ok_or_else(|| {
                Error::new(
                    ErrorKind::BadOpenpgp,
                    format!(
                        "{}: not a valid escaped name prefix (expected a prefix with \"/\" \
                         written as \",\")",
                        path.display()
                    ),
                )
            })?;
            prefixes.push((scope, path));
        }
        prefixes.sort();
        for (scope, path) in prefixes {
            self.load_dir(&path, &scope, &mut keys)?;
        }
        Ok(keys)
    }

    fn load_dir(&self, dir: &Path, scope: &TrustScope, out: &mut Vec<LoadedKey>) -> Result<()> {
        let mut files: Vec<(String, PathBuf)> = entries(dir)?
            .into_iter()
            .filter(|(name, _)| !name.starts_with('.') && name.ends_with(".asc"))
            .collect();
        files.sort();
        for (name, path) in files {
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let key = parse::public_key(&bytes, &path.display().to_string())?;
            let view = KeyView::new(&key).map_err(|e| {
                Error::new(e.kind(), format!("{}: {}", path.display(), e.message()))
            })?;
            let info = describe(&view, scope.clone(), path.clone());
            if name.strip_suffix(".asc") != Some(info.fingerprint.as_str()) {
                return Err(Error::new(
                    ErrorKind::BadOpenpgp,
                    format!(
                        "{} holds key {}, not the key its name says",
                        path.display(),
                        info.fingerprint
                    ),
                ));
            }
            out.push(LoadedKey { info, key });
        }
        Ok(())
    }
}

/// The entries of `dir` as (file name, path); none if `dir` does not exist.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    Ok(out)
}

/// The listing of an evaluated key.
fn describe(view: &KeyView<'_>, scope: TrustScope, path: PathBuf) -> TrustedKey {
    let primary = &view.key.primary_key;
    TrustedKey {
        fingerprint: fingerprint_hex(&primary.fingerprint()),
        key_id: key_id_hex(&primary.legacy_key_id()),
        user_ids: view.user_ids.clone(),
        algorithm: algorithm_name(primary.algorithm(), primary.public_params()),
        created_at: u64::from(primary.created_at().as_secs()),
        expires_at: view.expires_at(),
        subkeys: view.subkeys.iter().map(|s| s.fingerprint()).collect(),
        scope,
        path,
    }
}

/// A short algorithm name in gpg's style: `rsa2048`, `ed25519`, `dsa`, `ecdsa`...
pub(crate) fn algorithm_name(algorithm: PublicKeyAlgorithm, params: &PublicParams) -> String {
    match (algorithm, params) {
        (
            PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSASign | PublicKeyAlgorithm::RSAEncrypt,
            PublicParams::RSA(rsa),
        ) => {
            // The serialized parameters start with the MPI of the modulus: its bit count first.
            use pgp::ser::Serialize;
            match rsa.to_bytes() {
                Ok(bytes) if bytes.len() >= 2 => {
                    format!("rsa{}", u16::from_be_bytes([bytes[0], bytes[1]]))
                }
                _ => "rsa".into(),
            }
        }
        (PublicKeyAlgorithm::EdDSALegacy | PublicKeyAlgorithm::Ed25519, _) => "ed25519".into(),
        (PublicKeyAlgorithm::Ed448, _) => "ed448".into(),
        (PublicKeyAlgorithm::DSA, _) => "dsa".into(),
        (PublicKeyAlgorithm::ECDSA, _) => "ecdsa".into(),
        (other, _) => format!("{other:?}").to_lowercase(),
    }
}

/// A fingerprint or long key ID as given by a user, as lowercase hex without spaces or `0x`.
fn normalize_fingerprint(text: &str) -> Result<String> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let hex = compact.strip_prefix("0x").unwrap_or(&compact);
    if matches!(hex.len(), 16 | 40 | 64) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_string())
    } else {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{text:?} is not a key fingerprint (40 or 64 hex digits) or long key ID (16 hex \
                 digits)"
            ),
        ))
    }
}

/// Now, in seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalized() {
        assert_eq!(
            normalize_fingerprint("0x996B BE3F 2A2A C1F4 9716  C620 5F12 AC73 B685 CE89").unwrap(),
            "996bbe3f2a2ac1f49716c6205f12ac73b685ce89"
        );
        assert_eq!(
            normalize_fingerprint("5F12AC73B685CE89").unwrap(),
            "5f12ac73b685ce89"
        );
        for bad in ["", "xyz", "5F12AC73B685CE8", "g".repeat(40).as_str()] {
            assert_eq!(
                normalize_fingerprint(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
    }
}

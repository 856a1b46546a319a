//! Making an ascii-armored detached signature (an `.aci.asc`): [`sign_detached`].
//!
//! The same key policy as verification applies before a byte is hashed: the key must have a
//! valid self-signature, must not be revoked or expired ([`ErrorKind::KeyRevoked`],
//! [`ErrorKind::KeyExpired`]), and the key chosen must carry the signing flag (a subkey also a
//! back-signature), else [`ErrorKind::KeyNotSigning`]. The primary key signs when it may;
//! otherwise the newest signing subkey whose secret part is present does. The hash is
//! SHA-512 for keys that prefer SHA-384/512 (e.g. NIST P-384/P-521) and SHA-256 otherwise.
//! The data is streamed, never held in memory. Signatures are OpenPGP v4 for v4 keys (what
//! `gpg` makes) and v6 for v6 keys.

use std::io::Read;
use std::path::PathBuf;

use pgp::composed::{ArmorOptions, Deserializable, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{KeyDetails, KeyVersion, Password, SigningKey, Timestamp};
use serde::Serialize;

use super::keyring::now;
use super::parse::fingerprint_hex;
use super::policy::{KeyView, Signer};
use super::verify::CountingReader;
use crate::blocking::blocking;
use crate::progress::{Observer, Phase};
use crate::{Error, ErrorKind, Result};

/// A detached signature made by [`sign_detached_with_info`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Signed {
    /// The ascii-armored signature (`-----BEGIN PGP SIGNATURE-----`).
    #[serde(skip)]
    pub armored: Vec<u8>,
    /// Fingerprint (lowercase hex) of the primary key.
    pub fingerprint: String,
    /// Fingerprint of the key that signed: the primary key or one of its subkeys.
    pub signing_key: String,
    /// The hash algorithm, e.g. `SHA256`.
    pub hash_algorithm: String,
    /// Bytes of data signed.
    pub data_len: u64,
}

/// Signs `data` (read to its end, streamed) with the ascii-armored secret key
/// `secret_key_armored` (`gpg --armor --export-secret-keys`), unlocked with `passphrase` when
/// it is protected. Returns the ascii-armored detached signature of binary data, which
/// `gpg --verify` and [`verify_detached`](super::verify_detached) accept.
///
/// Errors: [`ErrorKind::BadOpenpgp`] for input that is not exactly one armored secret key (a
/// public key included); [`ErrorKind::KeyNotSigning`], [`ErrorKind::KeyExpired`],
/// [`ErrorKind::KeyRevoked`] by the policy above; [`ErrorKind::InvalidArgument`] for a
/// missing or wrong passphrase; I/O errors reading `data`.
///
/// ```
/// use acikit::trust::sign_detached;
///
/// // Anything but one armored secret key is refused before a byte of data is read.
/// let err = sign_detached(b"not a key", None, &b"data"[..]).unwrap_err();
/// assert_eq!(err.kind(), acikit::ErrorKind::BadOpenpgp);
/// ```
///
/// See `core/tests/it/sign.rs` for signatures made with keys from `gpg` and checked by
/// `gpg --verify`.
pub fn sign_detached(
    secret_key_armored: &[u8],
    passphrase: Option<&str>,
    data: impl Read,
) -> Result<Vec<u8>> {
    Ok(sign_detached_with_info(secret_key_armored, passphrase, data)?.armored)
}

/// Signs the file at `path` with the ascii-armored secret key `secret_key_armored`
/// (unlocked with `passphrase` when it is protected), as [`sign_detached_with_info`] does,
/// reading the file on a blocking thread. The armored signature is in [`Signed::armored`];
/// writing it (e.g. to `PATH.asc`) is the caller's choice. The future owns its inputs
/// (`'static + Send`).
///
/// Progress is [`Phase::Sign`] in bytes read of the file's size; cancelling `observer` stops
/// the read with [`ErrorKind::Cancelled`]. Errors: those of [`sign_detached`], and I/O errors
/// opening or reading `path`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> acikit::Result<()> {
/// use acikit::{ErrorKind, Observer};
///
/// # let dir = acikit::testing::example_dir("sign-file");
/// let file = dir.join("hello.aci");
/// std::fs::write(&file, b"any bytes").unwrap();
/// // A public key (or anything but one armored secret key) cannot sign.
/// let not_a_secret_key = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n";
/// let err = acikit::trust::sign_file(&file, not_a_secret_key.to_vec(), None, Observer::default())
///     .await
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::BadOpenpgp);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub async fn sign_file(
    path: impl Into<PathBuf>,
    secret_key_armored: Vec<u8>,
    passphrase: Option<String>,
    observer: Observer,
) -> Result<Signed> {
    let path = path.into();
    blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let total = file.metadata().ok().map(|m| m.len());
        let reader = ObservedReader {
            inner: std::io::BufReader::with_capacity(1 << 20, file),
            observer: &observer,
            done: 0,
            reported: 0,
            total,
        };
        let signed = sign_detached_with_info(&secret_key_armored, passphrase.as_deref(), reader);
        // A cancelled read surfaces as an I/O error inside the signer: say what it was.
        observer.check()?;
        let signed = signed.map_err(|e| {
            if e.kind() == ErrorKind::Io {
                Error::io(
                    format!("reading {}", path.display()),
                    std::io::Error::other(e.to_string()),
                )
            } else {
                e
            }
        })?;
        observer.report(Phase::Sign, signed.data_len, Some(signed.data_len));
        Ok(signed)
    })
    .await
}

/// Bytes read between two [`Phase::Sign`] progress events.
const REPORT_EVERY: u64 = 1 << 20;

/// A reader that reports [`Phase::Sign`] progress and stops once `observer` is cancelled.
struct ObservedReader<'o, R> {
    inner: R,
    observer: &'o Observer,
    done: u64,
    reported: u64,
    total: Option<u64>,
}

impl<R: Read> Read for ObservedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.observer.cancel.is_cancelled() {
            return Err(std::io::Error::other("the operation was cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= REPORT_EVERY {
            self.reported = self.done;
            self.observer.report(Phase::Sign, self.done, self.total);
        }
        Ok(n)
    }
}

/// [`sign_detached`], also saying which key signed.
///
/// ```
/// let err = acikit::trust::sign_detached_with_info(b"not a key", None, &b"data"[..])
///     .unwrap_err();
/// assert_eq!(err.kind(), acikit::ErrorKind::BadOpenpgp);
/// ```
pub fn sign_detached_with_info(
    secret_key_armored: &[u8],
    passphrase: Option<&str>,
    data: impl Read,
) -> Result<Signed> {
    let key = secret_key(secret_key_armored)?;
    let public = key.to_public_key();
    let view = KeyView::new(&public)?;
    let now = now();
    view.check_usable(now)?;
    let fingerprint = fingerprint_hex(&key.fingerprint());

    // The primary key if it may sign, else the newest usable signing subkey with its secret.
    let primary_check = view.check_signer(&Signer::Primary, now, now);
    let signer: &dyn SigningKey = match primary_check {
        Ok(()) => &key.primary_key,
        Err(primary_err) => {
            let mut best: Option<(u32, &pgp::packet::SecretSubkey)> = None;
            let mut subkey_err: Option<Error> = None;
            for sub in &view.subkeys {
                let Some(secret) = key
                    .secret_subkeys
                    .iter()
                    .find(|s| s.key.fingerprint() == sub.subkey.key.fingerprint())
                else {
                    continue;
                };
                match view.check_signer(&Signer::Subkey(sub), now, now) {
                    Ok(()) => {
                        let created = secret.key.created_at().as_secs();
                        if best.is_none_or(|(c, _)| created >= c) {
                            best = Some((created, &secret.key));
                        }
                    }
                    Err(e) => {
                        // Say why a signing-capable subkey could not be used, rather than
                        // "not signing", when that is the reason.
                        if e.kind() != ErrorKind::KeyNotSigning || subkey_err.is_none() {
                            subkey_err = Some(e);
                        }
                    }
                }
            }
            match best {
                Some((_, secret)) => secret,
                None => {
                    let err = match subkey_err {
                        Some(e) if e.kind() != ErrorKind::KeyNotSigning => e,
                        _ => primary_err,
                    };
                    return Err(Error::new(
                        err.kind(),
                        format!(
                            "key {fingerprint} has no key that can sign now: {}",
                            err.message()
                        ),
                    ));
                }
            }
        }
    };
    let signing_key = fingerprint_hex(&signer.fingerprint());

    let password = match passphrase {
        Some(p) => Password::from(p),
        None => Password::empty(),
    };
    let hash = match signer.hash_alg() {
        HashAlgorithm::Sha384 | HashAlgorithm::Sha512 => HashAlgorithm::Sha512,
        _ => HashAlgorithm::Sha256,
    };
    let typ = SignatureType::Binary;
    let mut config = match signer.version() {
        KeyVersion::V4 => SignatureConfig::v4(typ, signer.algorithm(), hash),
        KeyVersion::V6 => {
            let mut salt = vec![0u8; hash.salt_len().unwrap_or(32)];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut salt))
                .map_err(|e| Error::io("reading random bytes for the signature salt", e))?;
            SignatureConfig::v6_with_salt(typ, signer.algorithm(), hash, salt)
        }
        other => {
            return Err(Error::new(
                ErrorKind::BadOpenpgp,
                format!("key {signing_key} has an unsupported version ({other:?})"),
            ));
        }
    };
    let subpacket = |data| {
        Subpacket::regular(data)
            .map_err(|e| Error::new(ErrorKind::BadOpenpgp, format!("making the signature: {e}")))
    };
    config.hashed_subpackets = vec![
        subpacket(SubpacketData::IssuerFingerprint(signer.fingerprint()))?,
        subpacket(SubpacketData::SignatureCreationTime(Timestamp::now()))?,
    ];
    if signer.version() == KeyVersion::V4 {
        config.unhashed_subpackets = vec![subpacket(SubpacketData::IssuerKeyId(
            signer.legacy_key_id(),
        ))?];
    }

    let mut reader = CountingReader::new(data);
    let result = config.sign(&Box::new(signer), &password, &mut reader);
    if let Some(err) = reader.error.take() {
        return Err(Error::io("reading the data to sign", err));
    }
    let signature = result.map_err(|e| {
        let protected = key.primary_key.secret_params().is_encrypted()
            || key
                .secret_subkeys
                .iter()
                .any(|s| s.key.secret_params().is_encrypted());
        if protected {
            let what = if passphrase.is_none() {
                "is protected by a passphrase; give it (--passphrase-file)"
            } else {
                "could not be unlocked: wrong passphrase?"
            };
            Error::new(
                ErrorKind::InvalidArgument,
                format!("the secret key {fingerprint} {what}"),
            )
            .with_source(e)
        } else {
            Error::new(
                ErrorKind::BadOpenpgp,
                format!("signing with key {signing_key} failed: {e}"),
            )
            .with_source(e)
        }
    })?;
    let armored = DetachedSignature::new(signature)
        .to_armored_bytes(ArmorOptions::default())
        .map_err(|e| {
            Error::new(
                ErrorKind::BadOpenpgp,
                format!("armoring the signature: {e}"),
            )
        })?;
    Ok(Signed {
        armored,
        fingerprint,
        signing_key,
        hash_algorithm: hash.to_string(),
        data_len: reader.count,
    })
}

/// Parses exactly one ascii-armored secret key.
fn secret_key(bytes: &[u8]) -> Result<SignedSecretKey> {
    const WHAT: &str = "the secret key";
    let bad = |m: String| Error::new(ErrorKind::BadOpenpgp, format!("{WHAT} {m}"));
    let text = String::from_utf8_lossy(bytes);
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("-----BEGIN PGP ")
                .and_then(|r| r.strip_suffix("-----"))
        })
        .collect();
    match kinds.as_slice() {
        ["PRIVATE KEY BLOCK"] => {}
        ["PUBLIC KEY BLOCK"] => {
            return Err(bad(
                "is a public key; signing needs the secret key (gpg --armor \
                 --export-secret-keys)"
                    .to_string(),
            ));
        }
        [] => {
            return Err(bad(
                "is not an ascii-armored OpenPGP secret key (no \"-----BEGIN PGP PRIVATE KEY \
                 BLOCK-----\" line)"
                    .to_string(),
            ));
        }
        [other] => {
            return Err(bad(format!(
                "is an armored \"PGP {other}\", not a secret key"
            )));
        }
        many => {
            return Err(bad(format!(
                "holds {} armored blocks; give exactly one secret key",
                many.len()
            )));
        }
    }
    let (keys, _headers) = SignedSecretKey::from_armor_many(bytes)
        .map_err(|e| bad(format!("is not a valid OpenPGP secret key: {e}")))?;
    let keys = keys
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("is not a valid OpenPGP secret key: {e}")))?;
    match keys.len() {
        1 => Ok(keys.into_iter().next().expect("one key")),
        0 => Err(bad("holds no secret key".to_string())),
        n => Err(bad(format!("holds {n} secret keys; give exactly one"))),
    }
}

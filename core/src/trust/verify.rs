//! Verifying an ascii-armored detached signature (an `.aci.asc`) of an image against the
//! trusted keys, for one image name: [`verify_detached`].
//!
//! The checks run in a fixed order, each failure with its own [`ErrorKind`]:
//! 1. the signature parses: one armored signature of binary data ([`ErrorKind::BadOpenpgp`]);
//! 2. its hash is not MD5, SHA-1 or RIPEMD-160 ([`ErrorKind::WeakSignatureHash`]);
//! 3. its issuer (fingerprint or key ID) is a trusted primary key or one of its validly bound
//!    subkeys, in any scope ([`ErrorKind::UntrustedKey`]);
//! 4. one of the scopes that key is trusted for covers the name ([`ErrorKind::KeyWrongPrefix`]);
//! 5. neither the key nor the signing subkey is revoked ([`ErrorKind::KeyRevoked`]);
//! 6. neither had expired when the signature was made, nor has now ([`ErrorKind::KeyExpired`]);
//! 7. the signing key may sign: sign flag, and a back-signature for a subkey
//!    ([`ErrorKind::KeyNotSigning`]);
//! 8. the signature verifies over the data, streamed ([`ErrorKind::BadSignature`]).
//!
//! Steps 1-7 need no data: [`Prepared`] holds their outcome so that the streaming verifier
//! can refuse a signature before a byte of the image is downloaded.

use std::io::Read;
use std::path::PathBuf;

use pgp::composed::SignedPublicKey;
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature;
use pgp::types::{KeyDetails, VerifyingKey};
use serde::Serialize;

use super::keyring::{LoadedKey, TrustStore, now};
use super::parse::{self, fingerprint_hex, key_id_hex};
use super::policy::{KeyView, Signer};
use super::{TrustScope, format_time};
use crate::schema::AcIdentifier;
use crate::{Error, ErrorKind, Result};

/// A signature that verified, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifiedSignature {
    /// Fingerprint (lowercase hex) of the trusted primary key.
    pub fingerprint: String,
    /// Fingerprint of the key that made the signature: the primary key or one of its subkeys.
    pub signing_key: String,
    /// The trusted key's user IDs.
    pub user_ids: Vec<String>,
    /// The scope the key is trusted for that covers the name.
    pub scope: TrustScope,
    /// The file of the trusted key that matched.
    pub key_path: PathBuf,
    /// The signature's hash algorithm, e.g. `SHA256`.
    pub hash_algorithm: String,
    /// When the signature was made, seconds since the Unix epoch.
    pub created_at: u64,
    /// How many bytes of data were verified.
    pub data_len: u64,
}

/// Verifies the ascii-armored detached signature `signature_armored` of `data` for the image
/// `name` against the keys of `trust` (see the module documentation for the checks and their
/// order). `data` is read to its end in a stream, never held in memory.
///
/// `name` must be a valid AC identifier ([`ErrorKind::InvalidValue`]).
///
/// ```
/// use acikit::trust::{TrustStore, verify_detached};
///
/// # let dir = acikit::testing::example_dir("verify");
/// let trust = TrustStore::new(dir.join("trust"));
/// // Not a signature: a typed error, before any key is looked at.
/// let err = verify_detached(&trust, "example.com/hello", b"not armored", &b"data"[..])
///     .unwrap_err();
/// assert_eq!(err.kind(), acikit::ErrorKind::BadOpenpgp);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn verify_detached(
    trust: &TrustStore,
    name: &str,
    signature_armored: &[u8],
    data: impl Read,
) -> Result<VerifiedSignature> {
    Prepared::new(trust, Some(name), signature_armored)?.verify(data)
}

/// A signature whose checks 1-7 passed, ready to be verified over the data.
pub(crate) struct Prepared {
    signature: Signature,
    key: SignedPublicKey,
    /// `None` for the primary key, else the index of the subkey in `key.public_subkeys`.
    subkey: Option<usize>,
    result: VerifiedSignature,
}

impl Prepared {
    /// Runs checks 1-7 for `name` against the keys of `trust`, now. Without a name (a
    /// fetch by URL, whose name is known only from the manifest) every scope is accepted,
    /// root keys first, and the caller checks [`VerifiedSignature::scope`] against the name.
    pub(crate) fn new(
        trust: &TrustStore,
        name: Option<&str>,
        signature_armored: &[u8],
    ) -> Result<Self> {
        if let Some(name) = name {
            AcIdentifier::parse(name)?;
        }
        // 1. Parse.
        let signature = parse::detached_signature(signature_armored)?;
        let hash = signature.hash_alg().ok_or_else(|| {
            Error::new(
                ErrorKind::BadOpenpgp,
                "the signature has no hash algorithm".to_string(),
            )
        })?;
        let sig_created = signature
            .created()
            .map(|t| u64::from(t.as_secs()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadOpenpgp,
                    "the signature has no creation time".to_string(),
                )
            })?;
        // 2. Hash algorithm.
        check_hash(hash)?;
        // 3. Issuer among all trusted keys.
        let issuers = issuers(&signature);
        if issuers.is_empty() {
            return Err(Error::new(
                ErrorKind::UntrustedKey,
                "the signature names no issuer key, so no trusted key can be chosen",
            ));
        }
        let keys = trust.load_all()?;
        let mut found: Vec<(&LoadedKey, Option<usize>)> = Vec::new();
        for loaded in &keys {
            let view = KeyView::new(&loaded.key)?;
            if matches_issuer(&signature, &loaded.key.primary_key) {
                found.push((loaded, None));
            }
            for sub in &view.subkeys {
                if matches_issuer(&signature, &sub.subkey.key) {
                    let index = loaded
                        .key
                        .public_subkeys
                        .iter()
                        .position(|s| std::ptr::eq(s, sub.subkey))
                        .expect("a subkey of this key");
                    found.push((loaded, Some(index)));
                }
            }
        }
        if found.is_empty() {
            return Err(Error::new(
                ErrorKind::UntrustedKey,
                format!(
                    "the signature was made by key {}, which is not trusted",
                    issuers
                ),
            ));
        }
        // 4. Scope.
        let covering = found
            .iter()
            .filter(|(k, _)| name.is_none_or(|n| k.info.scope.covers(n)))
            .min_by_key(|(k, _)| match (&k.info.scope, name) {
                // Without a name, a root key (which covers whatever the name is) first.
                (TrustScope::Root, None) => 0,
                // The most specific scope wins: the longest prefix, root last.
                (TrustScope::Prefix(p), _) => usize::MAX - p.len(),
                (TrustScope::Root, Some(_)) => usize::MAX,
            });
        let Some(&(loaded, subkey)) = covering else {
            let scopes: Vec<String> = found
                .iter()
                .map(|(k, _)| k.info.scope.to_string())
                .collect();
            return Err(Error::new(
                ErrorKind::KeyWrongPrefix,
                format!(
                    "key {} signed the image, but it is trusted only for {}, which does not \
                     cover the name {}",
                    found[0].0.info.fingerprint,
                    scopes.join(", "),
                    name.unwrap_or_default()
                ),
            ));
        };
        // 5-7. Revocation, expiry, signing flag.
        let view = KeyView::new(&loaded.key)?;
        let (signer, signer_key_created, signing_key) = match subkey {
            None => (
                Signer::Primary,
                loaded.key.primary_key.created_at(),
                loaded.info.fingerprint.clone(),
            ),
            Some(index) => {
                let sub = view
                    .subkeys
                    .iter()
                    .find(|s| std::ptr::eq(s.subkey, &loaded.key.public_subkeys[index]))
                    .expect("a bound subkey");
                (
                    Signer::Subkey(sub),
                    sub.subkey.key.created_at(),
                    sub.fingerprint(),
                )
            }
        };
        view.check_signer(&signer, sig_created, now())?;
        // Timing that no honest signature has.
        let key_created = u64::from(signer_key_created.as_secs());
        if sig_created < key_created {
            return Err(Error::new(
                ErrorKind::BadSignature,
                format!(
                    "the signature claims to be made on {}, before key {signing_key} existed \
                     ({})",
                    format_time(sig_created),
                    format_time(key_created)
                ),
            ));
        }
        if let Some(lifetime) = signature
            .signature_expiration_time()
            .map(|d| u64::from(d.as_secs()))
            .filter(|&d| d != 0)
            && now() >= sig_created + lifetime
        {
            return Err(Error::new(
                ErrorKind::BadSignature,
                format!(
                    "the signature expired on {}",
                    format_time(sig_created + lifetime)
                ),
            ));
        }
        let result = VerifiedSignature {
            fingerprint: loaded.info.fingerprint.clone(),
            signing_key,
            user_ids: loaded.info.user_ids.clone(),
            scope: loaded.info.scope.clone(),
            key_path: loaded.info.path.clone(),
            hash_algorithm: hash.to_string(),
            created_at: sig_created,
            data_len: 0,
        };
        Ok(Prepared {
            key: loaded.key.clone(),
            signature,
            subkey,
            result,
        })
    }

    /// Check 8: verifies the signature over `data`, read to its end in a stream. A read error
    /// is reported as itself, not as a bad signature.
    pub(crate) fn verify(self, data: impl Read) -> Result<VerifiedSignature> {
        let mut reader = CountingReader::new(data);
        let outcome = match self.subkey {
            None => verify_with(&self.signature, &self.key.primary_key, &mut reader),
            Some(index) => verify_with(
                &self.signature,
                &self.key.public_subkeys[index].key,
                &mut reader,
            ),
        };
        if let Some(err) = reader.error.take() {
            return Err(Error::io("reading the signed data", err));
        }
        match outcome {
            Ok(()) => Ok(VerifiedSignature {
                data_len: reader.count,
                ..self.result
            }),
            Err(e) => Err(Error::new(
                ErrorKind::BadSignature,
                format!(
                    "the signature by key {} does not match the data ({} bytes): the data was \
                     changed, or the signature is of other data",
                    self.result.signing_key, reader.count
                ),
            )
            .with_source(e)),
        }
    }
}

fn verify_with(
    sig: &Signature,
    key: &impl VerifyingKey,
    data: impl Read,
) -> pgp::errors::Result<()> {
    sig.verify(key, data)
}

/// Refuses hashes that are no longer collision resistant, and hashes rpgp does not know.
fn check_hash(hash: HashAlgorithm) -> Result<()> {
    match hash {
        HashAlgorithm::Sha256
        | HashAlgorithm::Sha384
        | HashAlgorithm::Sha512
        | HashAlgorithm::Sha224
        | HashAlgorithm::Sha3_256
        | HashAlgorithm::Sha3_512 => Ok(()),
        HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160 => Err(Error::new(
            ErrorKind::WeakSignatureHash,
            format!(
                "the signature uses the {hash} hash, which is no longer safe; sign with SHA-256 \
                 or stronger (gpg --digest-algo SHA256)"
            ),
        )),
        other => Err(Error::new(
            ErrorKind::BadOpenpgp,
            format!("the signature uses an unsupported hash algorithm ({other:?})"),
        )),
    }
}

/// The issuer a signature names, for messages: its fingerprint(s) with the key ID, or the key
/// ID alone; empty if it names none.
fn issuers(sig: &Signature) -> String {
    let fingerprints: Vec<String> = sig
        .issuer_fingerprint()
        .into_iter()
        .map(fingerprint_hex)
        .collect();
    let key_ids: Vec<String> = sig.issuer_key_id().into_iter().map(key_id_hex).collect();
    match (fingerprints.is_empty(), key_ids.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("with key ID {}", key_ids.join(", ")),
        (false, true) => fingerprints.join(", "),
        (false, false) => format!(
            "{} (key ID {})",
            fingerprints.join(", "),
            key_ids.join(", ")
        ),
    }
}

/// Whether `key` is the issuer `sig` names: by fingerprint when the signature gives one (the
/// strong identifier), else by long key ID.
fn matches_issuer(sig: &Signature, key: &impl KeyDetails) -> bool {
    let fingerprints = sig.issuer_fingerprint();
    if !fingerprints.is_empty() {
        return fingerprints.iter().any(|&fp| *fp == key.fingerprint());
    }
    sig.issuer_key_id()
        .iter()
        .any(|&id| *id == key.legacy_key_id())
}

/// A reader that counts bytes and keeps the first I/O error for itself (rpgp would turn it
/// into a verification or signing failure).
pub(crate) struct CountingReader<R> {
    inner: R,
    /// Bytes read so far.
    pub(crate) count: u64,
    /// The first I/O error, taken back by the caller.
    pub(crate) error: Option<std::io::Error>,
}

impl<R> CountingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        CountingReader {
            inner,
            count: 0,
            error: None,
        }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
        }
    }
}

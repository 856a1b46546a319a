//! Reading ascii-armored OpenPGP input with rpgp: one public key (a key file, an
//! `ac-discovery-pubkeys` answer, a file of the trust store) or one detached signature
//! (an `.aci.asc`). Anything else is an [`ErrorKind::BadOpenpgp`] error that says what was found.

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{Fingerprint, KeyDetails, KeyId};

use crate::{Error, ErrorKind, Result};

/// How many `-----BEGIN PGP` lines `bytes` holds.
fn armor_blocks(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|line| line.trim_start().starts_with("-----BEGIN PGP "))
        .count()
}

/// Refuses input with more than one armored block (rpgp would read the first and ignore the
/// rest).
fn one_block(bytes: &[u8], what: &str) -> Result<()> {
    match armor_blocks(bytes) {
        0 | 1 => Ok(()),
        n => Err(bad(
            what,
            format!("holds {n} armored blocks; give exactly one"),
        )),
    }
}

/// The block type named by the first `-----BEGIN PGP ...-----` line of `bytes`, if any
/// (e.g. `PUBLIC KEY BLOCK`).
fn armor_type(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().find_map(|line| {
        line.trim()
            .strip_prefix("-----BEGIN PGP ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .map(str::to_string)
    })
}

fn bad(what: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::BadOpenpgp, format!("{what}: {message}"))
}

/// Parses exactly one ascii-armored OpenPGP public key (transferable public key). A secret
/// key, a binary key, several keys, or garbage is refused with [`ErrorKind::BadOpenpgp`];
/// `what` names the input in messages (a file name, "the key").
pub(crate) fn public_key(bytes: &[u8], what: &str) -> Result<SignedPublicKey> {
    match armor_type(bytes).as_deref() {
        Some("PUBLIC KEY BLOCK") => {}
        Some("PRIVATE KEY BLOCK") => {
            return Err(bad(
                what,
                "is a secret key; give the public key only (gpg --armor --export)",
            ));
        }
        Some(other) => {
            return Err(bad(
                what,
                format!("is an armored \"PGP {other}\", not a public key block"),
            ));
        }
        None => {
            return Err(bad(
                what,
                "is not an ascii-armored OpenPGP public key (no \"-----BEGIN PGP PUBLIC KEY \
                 BLOCK-----\" line; export it with gpg --armor --export)",
            ));
        }
    }
    one_block(bytes, what)?;
    let (keys, _headers) = SignedPublicKey::from_armor_many(bytes)
        .map_err(|e| bad(what, format_args!("is not a valid OpenPGP public key: {e}")))?;
    let keys = keys
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(what, format_args!("is not a valid OpenPGP public key: {e}")))?;
    match keys.len() {
        1 => Ok(keys.into_iter().next().expect("one key")),
        0 => Err(bad(what, "holds no OpenPGP public key")),
        n => Err(bad(
            what,
            format!(
                "holds {n} public keys ({}); add them one at a time",
                keys.iter()
                    .map(|k| fingerprint_hex(&k.fingerprint()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Parses exactly one ascii-armored detached signature of binary data (`gpg --armor
/// --detach-sign`). A binary signature, several signatures, a signature of another type, or
/// garbage is refused with [`ErrorKind::BadOpenpgp`].
pub(crate) fn detached_signature(bytes: &[u8]) -> Result<Signature> {
    const WHAT: &str = "the signature";
    match armor_type(bytes).as_deref() {
        Some("SIGNATURE") => {}
        Some(other) => {
            return Err(bad(
                WHAT,
                format!("is an armored \"PGP {other}\", not a detached signature"),
            ));
        }
        None => {
            return Err(bad(
                WHAT,
                "is not an ascii-armored OpenPGP signature (no \"-----BEGIN PGP SIGNATURE-----\" \
                 line)",
            ));
        }
    }
    one_block(bytes, WHAT)?;
    let (sigs, _headers) = DetachedSignature::from_armor_many(bytes)
        .map_err(|e| bad(WHAT, format_args!("is not valid OpenPGP: {e}")))?;
    let sigs = sigs
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(WHAT, format_args!("is not valid OpenPGP: {e}")))?;
    let signature = match sigs.len() {
        1 => sigs.into_iter().next().expect("one signature").signature,
        0 => return Err(bad(WHAT, "holds no signature packet")),
        n => {
            return Err(bad(
                WHAT,
                format!("holds {n} signatures; exactly one is supported"),
            ));
        }
    };
    match signature.typ() {
        Some(SignatureType::Binary) => Ok(signature),
        Some(other) => Err(bad(
            WHAT,
            format!("is a {other:?} signature, not a signature of binary data"),
        )),
        None => Err(bad(
            WHAT,
            format!("has an unsupported version ({:?})", signature.version()),
        )),
    }
}

/// A fingerprint as lowercase hex, the form used everywhere in acikit (file names, output).
pub(crate) fn fingerprint_hex(fp: &Fingerprint) -> String {
    format!("{fp:x}")
}

/// A long key ID as lowercase hex.
pub(crate) fn key_id_hex(id: &KeyId) -> String {
    hex::encode(id)
}

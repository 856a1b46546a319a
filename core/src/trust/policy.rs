//! The key policy rpgp leaves to us: which self-signatures count, revocation, expiry and the
//! signing flag, for a primary key and its subkeys.
//!
//! Every signature used here is first verified cryptographically against the primary key; one
//! that does not verify (a third-party certification, a forged packet) is ignored.
//! - The primary key's *binding* is its newest valid self-signature: a direct-key signature or
//!   a self-certification of one of its user IDs. Its key flags and key expiration apply. A key
//!   without one is not a usable key ([`ErrorKind::BadOpenpgp`]).
//! - A subkey belongs to the key only through a valid subkey binding signature (the newest
//!   counts); a subkey used for signing also needs a valid embedded primary-key binding
//!   (back-signature), which proves the subkey's owner agreed to the binding.
//! - A valid key revocation (or subkey revocation) revokes, whatever its reason or date.
//! - A key (or subkey) expires at its creation time plus the key-expiration time of its binding
//!   (none, or zero, means never); a subkey also ends with its primary key.
//! - Signing is allowed when the binding's key flags carry the sign flag; a binding without a
//!   key-flags subpacket (older keys) allows what the key's algorithm can do.

use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{RevocationCode, Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Tag, Timestamp};

use super::format_time;
use super::parse::fingerprint_hex;
use crate::{Error, ErrorKind, Result};

/// The creation time of a signature, in seconds since the Unix epoch (0 if it has none).
pub(crate) fn created(sig: &Signature) -> u64 {
    sig.created().map_or(0, |t| u64::from(t.as_secs()))
}

fn secs(t: Timestamp) -> u64 {
    u64::from(t.as_secs())
}

/// The newest of `sigs` (by creation time; the later one on a tie).
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| created(s))
}

/// A primary key with the signatures that decide its state.
pub(crate) struct KeyView<'a> {
    /// The key as stored.
    pub key: &'a SignedPublicKey,
    /// Its newest valid self-signature.
    pub binding: &'a Signature,
    /// A valid key revocation, if any.
    pub revocation: Option<&'a Signature>,
    /// Its validly bound subkeys.
    pub subkeys: Vec<SubkeyView<'a>>,
    /// The user IDs with a valid self-certification.
    pub user_ids: Vec<String>,
}

/// A validly bound subkey with the signatures that decide its state.
pub(crate) struct SubkeyView<'a> {
    /// The subkey as stored.
    pub subkey: &'a SignedPublicSubKey,
    /// Its newest valid binding signature.
    pub binding: &'a Signature,
    /// A valid subkey revocation, if any.
    pub revocation: Option<&'a Signature>,
    /// Whether the binding carries a valid embedded back-signature by the subkey.
    pub back_signed: bool,
}

/// Which key of a [`KeyView`] made a signature.
pub(crate) enum Signer<'k, 'a> {
    /// The primary key.
    Primary,
    /// One of its subkeys.
    Subkey(&'k SubkeyView<'a>),
}

impl<'a> KeyView<'a> {
    /// Evaluates `key`; a key with no valid self-signature is refused with
    /// [`ErrorKind::BadOpenpgp`].
    pub(crate) fn new(key: &'a SignedPublicKey) -> Result<KeyView<'a>> {
        let primary = &key.primary_key;
        let direct = key
            .details
            .direct_signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok());
        let mut user_ids = Vec::new();
        let mut certifications = Vec::new();
        for user in &key.details.users {
            let valid: Vec<&Signature> = user
                .signatures
                .iter()
                .filter(|s| {
                    s.is_certification()
                        && s.typ() != Some(SignatureType::CertRevocation)
                        && s.verify_certification(primary, Tag::UserId, &user.id)
                            .is_ok()
                })
                .collect();
            if !valid.is_empty() {
                user_ids.push(String::from_utf8_lossy(user.id.id()).into_owned());
                certifications.extend(valid);
            }
        }
        let binding = newest(direct.chain(certifications)).ok_or_else(|| {
            Error::new(
                ErrorKind::BadOpenpgp,
                format!(
                    "key {} has no valid self-signature",
                    fingerprint_hex(&key.fingerprint())
                ),
            )
        })?;
        let revocation = key.details.revocation_signatures.iter().find(|s| {
            s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(primary).is_ok()
        });
        let subkeys = key
            .public_subkeys
            .iter()
            .filter_map(|subkey| SubkeyView::new(key, subkey))
            .collect();
        Ok(KeyView {
            key,
            binding,
            revocation,
            subkeys,
            user_ids,
        })
    }

    /// When the primary key expires (seconds since the epoch), if it does.
    pub(crate) fn expires_at(&self) -> Option<u64> {
        expiry(self.key.primary_key.created_at(), self.binding)
    }

    /// Why the primary key cannot be trusted at all now: revoked ([`ErrorKind::KeyRevoked`])
    /// or expired ([`ErrorKind::KeyExpired`]).
    pub(crate) fn check_usable(&self, now: u64) -> Result<()> {
        let fpr = fingerprint_hex(&self.key.fingerprint());
        if let Some(revocation) = self.revocation {
            return Err(revoked("key", &fpr, revocation));
        }
        if let Some(expires) = self.expires_at().filter(|&e| now >= e) {
            return Err(Error::new(
                ErrorKind::KeyExpired,
                format!("key {fpr} expired on {}", format_time(expires)),
            ));
        }
        Ok(())
    }

    /// Checks that `signer` could make a signature created at `sig_created` and still counts
    /// at `now`: not revoked ([`ErrorKind::KeyRevoked`]), not expired at either time
    /// ([`ErrorKind::KeyExpired`]), allowed to sign ([`ErrorKind::KeyNotSigning`]), in this
    /// order.
    pub(crate) fn check_signer(
        &self,
        signer: &Signer<'_, '_>,
        sig_created: u64,
        now: u64,
    ) -> Result<()> {
        let fpr = fingerprint_hex(&self.key.fingerprint());
        // Revocation: the primary key revokes every subkey too.
        if let Some(revocation) = self.revocation {
            return Err(revoked("key", &fpr, revocation));
        }
        if let Signer::Subkey(sub) = signer
            && let Some(revocation) = sub.revocation
        {
            let what = format!("{} (subkey of {fpr})", sub.fingerprint());
            return Err(revoked("signing subkey", &what, revocation));
        }
        // Expiry: of the primary key, then of the subkey.
        let mut expiries = vec![(format!("key {fpr}"), self.expires_at())];
        if let Signer::Subkey(sub) = signer {
            expiries.push((
                format!("signing subkey {} of key {fpr}", sub.fingerprint()),
                sub.expires_at(),
            ));
        }
        for (what, expires) in expiries {
            let Some(expires) = expires else { continue };
            if sig_created >= expires {
                return Err(Error::new(
                    ErrorKind::KeyExpired,
                    format!(
                        "{what} had expired on {} when the signature was made ({})",
                        format_time(expires),
                        format_time(sig_created)
                    ),
                ));
            }
            if now >= expires {
                return Err(Error::new(
                    ErrorKind::KeyExpired,
                    format!(
                        "{what} expired on {} (the signature was made on {})",
                        format_time(expires),
                        format_time(sig_created)
                    ),
                ));
            }
        }
        // The signing flag (and, for a subkey, its back-signature).
        match signer {
            Signer::Primary => {
                if !signing_allowed(self.binding, self.key.primary_key.algorithm()) {
                    return Err(Error::new(
                        ErrorKind::KeyNotSigning,
                        format!(
                            "key {fpr} is not allowed to sign: its self-signature of {} does \
                             not carry the signing flag",
                            format_time(created(self.binding))
                        ),
                    ));
                }
            }
            Signer::Subkey(sub) => {
                if !signing_allowed(sub.binding, sub.subkey.key.algorithm()) {
                    return Err(Error::new(
                        ErrorKind::KeyNotSigning,
                        format!(
                            "subkey {} of key {fpr} is not allowed to sign: its binding \
                             signature does not carry the signing flag",
                            sub.fingerprint()
                        ),
                    ));
                }
                if !sub.back_signed {
                    return Err(Error::new(
                        ErrorKind::KeyNotSigning,
                        format!(
                            "subkey {} of key {fpr} is not allowed to sign: its binding has no \
                             valid back-signature (primary key binding) by the subkey",
                            sub.fingerprint()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl<'a> SubkeyView<'a> {
    fn new(key: &'a SignedPublicKey, subkey: &'a SignedPublicSubKey) -> Option<SubkeyView<'a>> {
        let primary = &key.primary_key;
        let binding = newest(subkey.signatures.iter().filter(|s| {
            s.typ() == Some(SignatureType::SubkeyBinding)
                && s.verify_subkey_binding(primary, &subkey.key).is_ok()
        }))?;
        let revocation = subkey.signatures.iter().find(|s| {
            s.typ() == Some(SignatureType::SubkeyRevocation)
                && s.verify_subkey_binding(primary, &subkey.key).is_ok()
        });
        let back_signed = binding.embedded_signature().is_some_and(|back| {
            back.typ() == Some(SignatureType::KeyBinding)
                && back
                    .verify_primary_key_binding(&subkey.key, primary)
                    .is_ok()
        });
        Some(SubkeyView {
            subkey,
            binding,
            revocation,
            back_signed,
        })
    }

    /// The subkey's fingerprint, lowercase hex.
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint_hex(&self.subkey.key.fingerprint())
    }

    /// When the subkey expires (seconds since the epoch), if it does.
    pub(crate) fn expires_at(&self) -> Option<u64> {
        expiry(self.subkey.key.created_at(), self.binding)
    }
}

/// The end of validity given by `binding`'s key-expiration time for a key made at `created`.
fn expiry(created: Timestamp, binding: &Signature) -> Option<u64> {
    binding
        .key_expiration_time()
        .map(|d| u64::from(d.as_secs()))
        .filter(|&d| d != 0)
        .map(|d| secs(created) + d)
}

/// Whether `binding` lets a key of `algorithm` sign.
fn signing_allowed(binding: &Signature, algorithm: PublicKeyAlgorithm) -> bool {
    let has_flags = binding.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    });
    if has_flags {
        binding.key_flags().sign()
    } else {
        algorithm.can_sign()
    }
}

fn revoked(what: &str, name: &str, revocation: &Signature) -> Error {
    let mut message = format!(
        "{what} {name} is revoked (revocation of {}",
        format_time(created(revocation))
    );
    if let Some(code) = revocation.revocation_reason_code() {
        let reason = match code {
            RevocationCode::NoReason => "no reason given".to_string(),
            RevocationCode::KeySuperseded => "key superseded".to_string(),
            RevocationCode::KeyCompromised => "key compromised".to_string(),
            RevocationCode::KeyRetired => "key retired".to_string(),
            other => format!("{other:?}"),
        };
        message.push_str(&format!(", {reason}"));
    }
    if let Some(reason) = revocation.revocation_reason_string()
        && !reason.is_empty()
    {
        message.push_str(&format!(": {:?}", String::from_utf8_lossy(reason)));
    }
    message.push(')');
    Error::new(ErrorKind::KeyRevoked, message)
}

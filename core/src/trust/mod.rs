//! OpenPGP trust: keys trusted per name prefix, and detached-signature verification.
//!
//! rkt's model, on rpgp (the `pgp` crate), with the policy rpgp leaves out done here:
//! - `scope`: [`TrustScope`], a key trusted for all names (root) or a name prefix, with the
//!   path-component prefix rule;
//! - `keyring`: [`TrustStore`], one armored file per trusted key and scope in the store's
//!   `config/trust/` (`root.d/`, `prefix.d/<prefix>/`); add, list, remove;
//! - `verify`: [`verify_detached`], the checks in their fixed order, each failure with its own
//!   error kind;
//! - `streaming`: [`StreamingVerifier`], the same verification fed by writes on its own
//!   thread, for fetch;
//! - `sign`: [`sign_detached`], an ascii-armored detached signature made with a secret key,
//!   under the same key policy;
//! - `policy`: revocation, expiry, key flags and binding signatures; `parse`: armored input.
//!
//! The calls do blocking file I/O and hashing: from async code, run them with
//! `tokio::task::spawn_blocking`.

mod keyring;
mod parse;
mod policy;
mod scope;
mod sign;
mod streaming;
mod verify;

pub use keyring::{TrustStore, TrustedKey};
pub use scope::TrustScope;
pub use sign::{Signed, sign_detached, sign_detached_with_info, sign_file};
pub use streaming::{StreamingVerifier, VerifyHandle, VerifySink};
pub use verify::{VerifiedSignature, verify_detached};

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`, for messages.
pub(crate) fn format_time(secs: u64) -> String {
    format!(
        "{} UTC",
        crate::clock::format_utc(i64::try_from(secs).unwrap_or(i64::MAX))
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_time_is_utc_civil_time() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::format_time(1_577_836_800), "2020-01-01 00:00:00 UTC");
        assert_eq!(super::format_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}

//! [`ContentDigest`]: the SHA-256 name of a content object.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::{Error, ErrorKind, Result};

/// SHA-256 of a file's content as stored in the archive; names a content object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentDigest(pub [u8; 32]);

impl ContentDigest {
    /// Digest of `bytes`.
    ///
    /// ```
    /// use acikit::store::ContentDigest;
    ///
    /// let digest = ContentDigest::of(b"hello\n");
    /// assert_eq!(
    ///     digest.to_hex(),
    ///     "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    /// );
    /// assert_eq!(ContentDigest::from_hex(&digest.to_hex())?, digest);
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn of(bytes: &[u8]) -> ContentDigest {
        ContentDigest(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(hex_text: &str) -> Result<ContentDigest> {
        let mut out = [0u8; 32];
        if hex_text.len() != 64
            || !hex_text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::new(
                ErrorKind::InvalidValue,
                format!("not a SHA-256 digest: {hex_text:?}"),
            ));
        }
        hex::decode_to_slice(hex_text, &mut out).map_err(|e| {
            Error::new(
                ErrorKind::InvalidValue,
                format!("not a SHA-256 digest: {e}"),
            )
        })?;
        Ok(ContentDigest(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// An incremental SHA-256 hasher producing a [`ContentDigest`].
#[derive(Default, Clone)]
pub struct ContentHasher(Sha256);

impl ContentHasher {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub fn finish(self) -> ContentDigest {
        ContentDigest(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = ContentDigest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ContentDigest::from_hex(&d.to_hex()).unwrap(), d);
        assert!(
            ContentDigest::from_hex(
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
            )
            .is_err()
        );
        let mut h = ContentHasher::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), d);
    }
}

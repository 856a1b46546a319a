//! The appc value types of `types.md`, each a string newtype that can only hold a
//! valid value: [`AcIdentifier`], [`AcName`], [`AcKind`], [`AcVersion`],
//! [`ImageId`] (and the lookup key [`ImageIdPrefix`]) and [`Timestamp`].
//!
//! Every type has `parse(&str)` (failing with [`ErrorKind::InvalidValue`]),
//! `as_str()`, `Display`, `FromStr`, and serializes as a JSON string.

use std::fmt;
use std::str::FromStr;

use crate::{Error, ErrorKind, Result};

/// Implements the string-like traits of a newtype that has `parse` and `as_str`.
macro_rules! string_traits {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(|e| serde::de::Error::custom(e.message()))
            }
        }
    };
}

/// `value` quoted for a message, cut after 64 characters.
pub(crate) fn quote(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

fn invalid(what: &str, value: &str, rule: &str) -> Error {
    Error::new(
        ErrorKind::InvalidValue,
        format!("invalid {what} {}: {rule}", quote(value)),
    )
}

/// Whether `s` is runs of `[a-z0-9]` joined by single bytes of `separators`.
fn is_joined_alnum(s: &str, separators: &[u8]) -> bool {
    let mut need_alnum = true;
    for b in s.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            need_alnum = false;
        } else if separators.contains(&b) && !need_alnum {
            need_alnum = true;
        } else {
            return false;
        }
    }
    !need_alnum
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An AC Identifier: `^[a-z0-9]+([-._~/][a-z0-9]+)*$`, e.g. `example.com/app`.
///
/// Used for image names, label and annotation names and isolator names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcIdentifier(String);

impl AcIdentifier {
    /// Checks `s` against the AC Identifier format.
    ///
    /// ```
    /// use acikit::schema::AcIdentifier;
    ///
    /// let name = AcIdentifier::parse("example.com/app_2")?;
    /// assert_eq!(name.as_str(), "example.com/app_2");
    /// assert!(AcIdentifier::parse("Example.com/App").is_err());
    /// assert!(AcIdentifier::parse("").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        if is_joined_alnum(s, b"-._~/") {
            Ok(AcIdentifier(s.to_string()))
        } else {
            Err(invalid(
                "AC identifier",
                s,
                "must match ^[a-z0-9]+([-._~/][a-z0-9]+)*$ (lowercase letters and digits, \
                 joined by single - . _ ~ /)",
            ))
        }
    }

    /// The identifier text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_traits!(AcIdentifier);

/// An AC Name: `^[a-z0-9]+([-][a-z0-9]+)*$`, e.g. `product-database`.
///
/// Used for mount point and port names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcName(String);

impl AcName {
    /// Checks `s` against the AC Name format.
    ///
    /// ```
    /// use acikit::schema::AcName;
    ///
    /// assert_eq!(AcName::parse("work-dir")?.as_str(), "work-dir");
    /// // No slashes, dots or upper case in an AC name.
    /// assert!(AcName::parse("example.com/app").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        if is_joined_alnum(s, b"-") {
            Ok(AcName(s.to_string()))
        } else {
            Err(invalid(
                "AC name",
                s,
                "must match ^[a-z0-9]+([-][a-z0-9]+)*$ (lowercase letters and digits, \
                 joined by single -)",
            ))
        }
    }

    /// The name text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_traits!(AcName);

/// An AC Kind: a non-empty ASCII alphanumeric string such as `ImageManifest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcKind(String);

impl AcKind {
    /// The kind of an image manifest.
    pub const IMAGE_MANIFEST: &'static str = "ImageManifest";
    /// The kind of a pod manifest.
    pub const POD_MANIFEST: &'static str = "PodManifest";

    /// Checks that `s` is non-empty and alphanumeric.
    pub fn parse(s: &str) -> Result<Self> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(AcKind(s.to_string()))
        } else {
            Err(invalid(
                "AC kind",
                s,
                "must be a non-empty string of ASCII letters and digits",
            ))
        }
    }

    /// The kind `ImageManifest`.
    pub fn image_manifest() -> Self {
        AcKind(Self::IMAGE_MANIFEST.to_string())
    }

    /// Whether this is one of the defined kinds (`ImageManifest`, `PodManifest`).
    pub fn is_known(&self) -> bool {
        self.0 == Self::IMAGE_MANIFEST || self.0 == Self::POD_MANIFEST
    }

    /// The kind text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_traits!(AcKind);

/// An AC Version: a SemVer 2.0 version of the appc spec, e.g. `0.8.11`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AcVersion {
    text: String,
    version: semver::Version,
}

impl AcVersion {
    /// The version of the appc spec this crate implements.
    pub const SPEC: &'static str = "0.8.11";

    /// Parses a SemVer 2.0 version (no `v` prefix, no leading zeros).
    ///
    /// ```
    /// use acikit::schema::AcVersion;
    ///
    /// let version = AcVersion::parse("0.8.11")?;
    /// assert_eq!(version.version().minor, 8);
    /// assert_eq!(version, AcVersion::spec());
    /// assert!(AcVersion::parse("v1.0").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        match semver::Version::parse(s) {
            Ok(version) => Ok(AcVersion {
                text: s.to_string(),
                version,
            }),
            Err(e) => Err(invalid(
                "AC version",
                s,
                &format!("not a SemVer 2.0 version ({e})"),
            )),
        }
    }

    /// The version this crate implements, [`AcVersion::SPEC`].
    pub fn spec() -> Self {
        AcVersion {
            text: Self::SPEC.to_string(),
            version: semver::Version::new(0, 8, 11),
        }
    }

    /// The parsed version.
    pub fn version(&self) -> &semver::Version {
        &self.version
    }

    /// The version text, as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}
string_traits!(AcVersion);

const SHA512_PREFIX: &str = "sha512-";
const SHA512_HEX_LEN: usize = 128;

/// An image ID: `sha512-` followed by exactly 128 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

impl ImageId {
    /// Checks that `s` is `sha512-` and 128 lowercase hex digits.
    ///
    /// ```
    /// use acikit::ImageId;
    ///
    /// let text = format!("sha512-{}", "0a".repeat(64));
    /// let id = ImageId::parse(&text)?;
    /// assert_eq!(id.hex(), "0a".repeat(64));
    /// assert_eq!(id.sha512(), [0x0a; 64]);
    /// assert_eq!(id.to_string(), text);
    /// // Upper case, short or another algorithm: refused.
    /// assert!(ImageId::parse(&text.to_uppercase()).is_err());
    /// assert!(ImageId::parse("sha512-0a0a").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        match s.strip_prefix(SHA512_PREFIX) {
            Some(hex) if hex.len() == SHA512_HEX_LEN && is_lower_hex(hex) => {
                Ok(ImageId(s.to_string()))
            }
            _ => Err(invalid(
                "image ID",
                s,
                "must be \"sha512-\" followed by 128 lowercase hex digits",
            )),
        }
    }

    /// The image ID of a SHA-512 digest.
    ///
    /// # Panics
    /// If `digest` is not 64 bytes long.
    pub fn from_sha512(digest: &[u8]) -> Self {
        assert_eq!(digest.len(), 64, "a SHA-512 digest is 64 bytes");
        ImageId(format!("{SHA512_PREFIX}{}", hex::encode(digest)))
    }

    /// The 64-byte SHA-512 digest.
    pub fn sha512(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        hex::decode_to_slice(self.hex(), &mut out).expect("an image ID holds 128 hex digits");
        out
    }

    /// The hex digest, without the `sha512-` prefix.
    pub fn hex(&self) -> &str {
        &self.0[SHA512_PREFIX.len()..]
    }

    /// The full image ID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_traits!(ImageId);

/// A lookup key for image IDs: `sha512-` followed by 1 to 128 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageIdPrefix(String);

impl ImageIdPrefix {
    /// Checks that `s` is `sha512-` and 1 to 128 lowercase hex digits.
    ///
    /// ```
    /// use acikit::schema::{ImageId, ImageIdPrefix};
    ///
    /// let id = ImageId::from_sha512(&[0xab; 64]);
    /// let prefix = ImageIdPrefix::parse("sha512-abab")?;
    /// assert!(prefix.matches(&id));
    /// assert!(!ImageIdPrefix::parse("sha512-00")?.matches(&id));
    /// assert!(ImageIdPrefix::parse("sha512-").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        match s.strip_prefix(SHA512_PREFIX) {
            Some(hex) if (1..=SHA512_HEX_LEN).contains(&hex.len()) && is_lower_hex(hex) => {
                Ok(ImageIdPrefix(s.to_string()))
            }
            _ => Err(invalid(
                "image ID prefix",
                s,
                "must be \"sha512-\" followed by 1 to 128 lowercase hex digits",
            )),
        }
    }

    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: &ImageId) -> bool {
        id.as_str().starts_with(&self.0)
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_traits!(ImageIdPrefix);

impl From<ImageId> for ImageIdPrefix {
    fn from(id: ImageId) -> Self {
        ImageIdPrefix(id.0)
    }
}

/// An RFC 3339 `date-time` with an upper-case `T`, e.g. `2015-05-18T13:49:28.35-04:00`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(String);

impl Timestamp {
    /// Checks that `s` is an RFC 3339 `date-time` (section 5.6), with real dates.
    ///
    /// ```
    /// use acikit::schema::Timestamp;
    ///
    /// assert!(Timestamp::parse("2026-12-03T12:00:00Z").is_ok());
    /// assert!(Timestamp::parse("yesterday").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        if is_rfc3339(s.as_bytes()) {
            Ok(Timestamp(s.to_string()))
        } else {
            Err(invalid(
                "timestamp",
                s,
                "must be an RFC 3339 date-time such as 2015-05-18T13:49:28Z",
            ))
        }
    }

    /// The timestamp text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_traits!(Timestamp);

/// The number of `n` ASCII digits at `b[at..]`, if they are all digits.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_rfc3339(b: &[u8]) -> bool {
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = (
        digits(b, 0, 4),
        digits(b, 5, 2),
        digits(b, 8, 2),
        digits(b, 11, 2),
        digits(b, 14, 2),
        digits(b, 17, 2),
    ) else {
        return false;
    };
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > month_days || hour > 23 || min > 59 || sec > 60 {
        return false;
    }
    let mut at = 19;
    if sep(at, b'.') {
        let frac = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if frac == 0 {
            return false;
        }
        at += 1 + frac;
    }
    match b.get(at) {
        Some(b'Z') => at + 1 == b.len(),
        Some(b'+' | b'-') => {
            matches!((digits(b, at + 1, 2), digits(b, at + 4, 2)), (Some(h), Some(m)) if h <= 23 && m <= 59)
                && sep(at + 3, b':')
                && at + 6 == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX128: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                          0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn ac_identifier() {
        for ok in [
            "database",
            "example.com/database",
            "example.com/user~x/app_v1",
            "sub-domain.example.com/org/product/release",
            "a",
            "0",
        ] {
            assert_eq!(AcIdentifier::parse(ok).unwrap().as_str(), ok);
        }
        // types.md lists "example.com/~user/app_v1" as an example, but its own
        // regular expression (which we follow, as the Go reference does) rejects "/~".
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "a/",
            "/a",
            "Abc",
            "a b",
            "a..b",
            "a_~b",
            "é",
            "example.com/~user/app_v1",
        ] {
            let err = AcIdentifier::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidValue, "{bad}");
            assert!(err.message().contains("AC identifier"), "{}", err.message());
        }
    }

    #[test]
    fn ac_name() {
        for ok in ["database", "product-database-release", "a1-2b"] {
            assert!(AcName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.b", "a_b", "-a", "a-", "a--b", "a/b", "A"] {
            assert_eq!(
                AcName::parse(bad).unwrap_err().kind(),
                ErrorKind::InvalidValue,
                "{bad}"
            );
        }
    }

    #[test]
    fn ac_kind() {
        let k = AcKind::parse("ImageManifest").unwrap();
        assert!(k.is_known());
        assert_eq!(k, AcKind::image_manifest());
        assert!(AcKind::parse("PodManifest").unwrap().is_known());
        assert!(!AcKind::parse("Other1").unwrap().is_known());
        for bad in ["", "Image Manifest", "Image-Manifest"] {
            assert!(AcKind::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ac_version() {
        for ok in ["0.8.11", "1.0.0", "1.2.3-rc.1+build.5"] {
            assert_eq!(AcVersion::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "v1.0.0", "1.0", "01.0.0", "1.0.0.0", "latest"] {
            let err = AcVersion::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidValue);
            assert!(err.message().contains("SemVer"), "{}", err.message());
        }
        assert_eq!(
            AcVersion::spec(),
            AcVersion::parse(AcVersion::SPEC).unwrap()
        );
        assert_eq!(AcVersion::spec().version().minor, 8);
    }

    #[test]
    fn image_id() {
        let text = format!("sha512-{HEX128}");
        let id = ImageId::parse(&text).unwrap();
        assert_eq!(id.as_str(), text);
        assert_eq!(id.hex(), HEX128);
        for bad in [
            "sha512-".to_string(),
            "sha512-abc".to_string(),
            format!("sha512-{}", HEX128.to_uppercase()),
            format!("sha256-{HEX128}"),
            format!("sha512-{HEX128}0"),
            HEX128.to_string(),
            format!("sha512-{}g", &HEX128[1..]),
        ] {
            assert!(ImageId::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_id_from_sha512() {
        use sha2::Digest;
        let digest = sha2::Sha512::digest(b"");
        let id = ImageId::from_sha512(&digest);
        assert!(id.as_str().starts_with("sha512-cf83e1357eefb8bd"));
        assert_eq!(ImageId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    #[should_panic(expected = "64 bytes")]
    fn image_id_from_short_digest_panics() {
        ImageId::from_sha512(&[0u8; 32]);
    }

    #[test]
    fn image_id_prefix() {
        let id = ImageId::parse(&format!("sha512-{HEX128}")).unwrap();
        assert!(ImageIdPrefix::parse("sha512-0").unwrap().matches(&id));
        assert!(ImageIdPrefix::parse("sha512-0123abc").is_ok());
        assert!(!ImageIdPrefix::parse("sha512-1").unwrap().matches(&id));
        assert!(ImageIdPrefix::parse(id.as_str()).unwrap().matches(&id));
        assert!(ImageIdPrefix::from(id.clone()).matches(&id));
        for bad in [
            "sha512-".to_string(),
            "0123".to_string(),
            "sha512-ABC".to_string(),
            format!("sha512-{HEX128}0"),
        ] {
            assert!(ImageIdPrefix::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamp() {
        for ok in [
            "2014-10-27T19:32:27.67021798Z",
            "2015-05-18T13:49:28.351729952-04:00",
            "2016-02-29T00:00:00+00:00",
            "2016-12-31T23:59:60Z",
        ] {
            assert!(Timestamp::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2014-10-27 19:32:27Z",
            "2014-10-27t19:32:27Z",
            "2014-10-27T19:32:27",
            "2014-10-27",
            "2015-02-29T00:00:00Z",
            "2014-13-01T00:00:00Z",
            "2014-10-27T24:00:00Z",
            "2014-10-27T19:32:27.Z",
            "2014-10-27T19:32:27+0400",
            "2014-10-27T19:32:27+04:00x",
            "2014-10-27T19:32:27Zjunk",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_as_strings() {
        let id: AcIdentifier = serde_json::from_str("\"example.com/app\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"example.com/app\"");
        let err = serde_json::from_str::<AcName>("\"Bad\"").unwrap_err();
        assert!(err.to_string().contains("invalid AC name"), "{err}");
        let v: AcVersion = "0.8.11".parse().unwrap();
        assert_eq!(v.to_string(), "0.8.11");
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "A".repeat(1000);
        let msg = AcIdentifier::parse(&long)
            .unwrap_err()
            .message()
            .to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.contains("..."));
    }
}

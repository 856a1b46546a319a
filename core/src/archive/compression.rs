//! Detects how an image archive is compressed (or whether it is PGP-encrypted) from its first bytes.
//!
//! Detection looks only at magic numbers; anything unrecognised is [`Compression::None`] and left to
//! the tar reader, which refuses bytes that are not a tar archive. OpenPGP messages (ASCII-armored
//! or binary) are refused with [`ErrorKind::Encrypted`]: an `.aci` may be published encrypted, and
//! must then be decrypted before use.

use std::fmt;

use crate::{Error, ErrorKind, Result};

/// The compression of an image archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Compression {
    /// Not compressed: a plain tar stream.
    None,
    /// gzip (one or more members).
    Gzip,
    /// bzip2 (one or more streams).
    Bzip2,
    /// xz (one or more streams).
    Xz,
    /// Zstandard (one or more frames, skippable frames allowed).
    Zstd,
}

impl Compression {
    /// The stable name of this compression: `none`, `gzip`, `bzip2`, `xz` or `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many leading bytes [`detect`] needs to decide in every case (one tar header block).
pub const DETECT_LEN: usize = 512;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const PGP_ARMOR: &[u8] = b"-----BEGIN PGP MESSAGE-----";

/// Detects the compression of an archive from its first bytes (ideally [`DETECT_LEN`] of them,
/// or the whole input if it is shorter).
///
/// Errors: [`ErrorKind::EmptyArchive`] for an empty prefix, [`ErrorKind::Encrypted`] for an
/// OpenPGP message (ASCII-armored or binary).
pub fn detect(prefix: &[u8]) -> Result<Compression> {
    if prefix.is_empty() {
        return Err(Error::new(
            ErrorKind::EmptyArchive,
            "the archive is empty (0 bytes)",
        ));
    }
    if prefix.starts_with(GZIP_MAGIC) {
        return Ok(Compression::Gzip);
    }
    if prefix.len() >= 4 && prefix.starts_with(b"BZh") && (b'1'..=b'9').contains(&prefix[3]) {
        return Ok(Compression::Bzip2);
    }
    if prefix.starts_with(XZ_MAGIC) {
        return Ok(Compression::Xz);
    }
    if prefix.starts_with(ZSTD_MAGIC) {
        return Ok(Compression::Zstd);
    }
    if prefix.len() >= 4 {
        let magic = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if magic & 0xffff_fff0 == 0x184d_2a50 {
            return Ok(Compression::Zstd);
        }
    }
    if is_armored_pgp(prefix) || (is_binary_pgp(prefix) && !is_tar_header(prefix)) {
        return Err(Error::new(
            ErrorKind::Encrypted,
            "the image is a PGP-encrypted (OpenPGP) message: decrypt it first, \
             e.g. with `gpg --decrypt`",
        ));
    }
    Ok(Compression::None)
}

/// ASCII armor, possibly after leading whitespace.
fn is_armored_pgp(prefix: &[u8]) -> bool {
    let start = prefix
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(prefix.len());
    prefix[start..].starts_with(PGP_ARMOR)
}

/// Packet tags that can start an encrypted (or compressed) OpenPGP message.
const TAG_PKESK: u8 = 1;
const TAG_SKESK: u8 = 3;
const TAG_COMPRESSED: u8 = 8;
const TAG_SED: u8 = 9;
const TAG_SEIPD: u8 = 18;
const TAG_AEAD: u8 = 20;

/// The body length of a packet, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLen {
    Exact(u32),
    /// Partial body length (new format) or indeterminate (old format type 3): data packets only.
    Streamed,
}

/// A binary OpenPGP packet header for one of the tags above, with a plausible length and body start.
fn is_binary_pgp(prefix: &[u8]) -> bool {
    let Some(&first) = prefix.first() else {
        return false;
    };
    if first & 0x80 == 0 {
        return false;
    }
    let (tag, len, body_start) = if first & 0x40 == 0 {
        // Old format: 10tttt ll.
        let tag = (first >> 2) & 0x0f;
        let (len, n) = match first & 0x03 {
            0 => match prefix.get(1) {
                Some(&b) => (BodyLen::Exact(b.into()), 1),
                None => return false,
            },
            1 => match prefix.get(1..3) {
                Some(b) => (BodyLen::Exact(u16::from_be_bytes([b[0], b[1]]).into()), 2),
                None => return false,
            },
            2 => match prefix.get(1..5) {
                Some(b) => (
                    BodyLen::Exact(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                    4,
                ),
                None => return false,
            },
            _ => (BodyLen::Streamed, 0),
        };
        (tag, len, 1 + n)
    } else {
        // New format: 11tttttt, then a one-, two- or five-octet length or a partial length.
        let tag = first & 0x3f;
        let (len, n) = match prefix.get(1) {
            None => return false,
            Some(&b @ 0..=191) => (BodyLen::Exact(b.into()), 1),
            Some(&b @ 192..=223) => match prefix.get(2) {
                Some(&c) => (
                    BodyLen::Exact(((u32::from(b) - 192) << 8) + u32::from(c) + 192),
                    2,
                ),
                None => return false,
            },
            Some(224..=254) => (BodyLen::Streamed, 1),
            Some(255) => match prefix.get(2..6) {
                Some(b) => (
                    BodyLen::Exact(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                    5,
                ),
                None => return false,
            },
        };
        (tag, len, 1 + n)
    };
    let body = &prefix[body_start.min(prefix.len())..];
    let exact = |range: std::ops::RangeInclusive<u32>| matches!(len, BodyLen::Exact(n) if range.contains(&n));
    match tag {
        // Version 3 (RFC 4880) or 6 (RFC 9580), then a key ID or fingerprint and the algorithm.
        TAG_PKESK => exact(10..=8192) && matches!(body.first(), Some(3 | 6)),
        // Version 4: cipher algorithm 1..=13, then an S2K specifier; versions 5 and 6 (AEAD) are
        // longer but still small.
        TAG_SKESK => match body {
            [4, cipher, ..] => exact(4..=64) && (1..=13).contains(cipher),
            [5 | 6, ..] => exact(4..=128),
            _ => false,
        },
        // Compression algorithm: uncompressed, ZIP, ZLIB or BZip2.
        TAG_COMPRESSED => len != BodyLen::Exact(0) && matches!(body.first(), Some(0..=3)),
        // Plain ciphertext: at least a block-sized prefix plus two check bytes.
        TAG_SED => len == BodyLen::Streamed || exact(10..=u32::MAX),
        // Version 1 (RFC 4880) or 2 (RFC 9580, then cipher and AEAD algorithm 1..=3).
        TAG_SEIPD => match body {
            [1, ..] => len == BodyLen::Streamed || exact(22..=u32::MAX),
            [2, _cipher, aead, ..] => (1..=3).contains(aead),
            _ => false,
        },
        // Version 1, then cipher and AEAD algorithm 1..=3.
        TAG_AEAD => matches!(body, [1, _cipher, 1..=3, ..]),
        _ => false,
    }
}

/// Whether the prefix holds a whole tar header block with a valid checksum (so it is not PGP,
/// whatever its first byte).
fn is_tar_header(prefix: &[u8]) -> bool {
    let Some(block) = prefix.get(..512) else {
        return false;
    };
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let Some(stored) = digits.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(8)?.checked_add(u32::from(d - b'0'))
    }) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn kind(prefix: &[u8]) -> ErrorKind {
        detect(prefix).unwrap_err().kind()
    }

    #[test]
    fn magics() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]).unwrap(), Compression::Gzip);
        assert_eq!(detect(b"BZh91AY&SY").unwrap(), Compression::Bzip2);
        assert_eq!(detect(b"BZh1").unwrap(), Compression::Bzip2);
        assert_eq!(detect(b"BZh0").unwrap(), Compression::None);
        assert_eq!(detect(b"BZhx").unwrap(), Compression::None);
        assert_eq!(detect(b"BZh").unwrap(), Compression::None);
        assert_eq!(
            detect(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4]).unwrap(),
            Compression::Xz
        );
        assert_eq!(
            detect(&[0xfd, 0x37, 0x7a, 0x58, 0x5a]).unwrap(),
            Compression::None
        );
        assert_eq!(
            detect(&[0x28, 0xb5, 0x2f, 0xfd, 0x04]).unwrap(),
            Compression::Zstd
        );
        for low in 0x50..=0x5f_u8 {
            assert_eq!(
                detect(&[low, 0x2a, 0x4d, 0x18, 4, 0, 0, 0]).unwrap(),
                Compression::Zstd
            );
        }
        assert_eq!(
            detect(&[0x60, 0x2a, 0x4d, 0x18]).unwrap(),
            Compression::None
        );
        assert_eq!(detect(b"manifest\0\0\0").unwrap(), Compression::None);
        assert_eq!(detect(b"r").unwrap(), Compression::None);
    }

    #[test]
    fn empty_is_empty_archive() {
        assert_eq!(kind(b""), ErrorKind::EmptyArchive);
    }

    #[test]
    fn names_and_serde() {
        assert_eq!(Compression::Bzip2.to_string(), "bzip2");
        assert_eq!(Compression::None.as_str(), "none");
        assert_eq!(
            serde_json::to_string(&Compression::Zstd).unwrap(),
            "\"zstd\""
        );
        assert_eq!(
            serde_json::to_string(&Compression::None).unwrap(),
            "\"none\""
        );
    }

    #[test]
    fn armored_pgp() {
        let armor = b"-----BEGIN PGP MESSAGE-----\n\njA0ECQMC...\n";
        assert_eq!(kind(armor), ErrorKind::Encrypted);
        let mut padded = b" \r\n\t\n".to_vec();
        padded.extend_from_slice(armor);
        assert_eq!(kind(&padded), ErrorKind::Encrypted);
        let err = detect(armor).unwrap_err();
        assert!(err.message().contains("gpg --decrypt"), "{err}");
        assert!(err.message().contains("PGP-encrypted"), "{err}");
        // A signature or key block is not a message.
        assert_eq!(
            detect(b"-----BEGIN PGP SIGNATURE-----\n").unwrap(),
            Compression::None
        );
    }

    #[test]
    fn synthetic_binary_packets() {
        // SKESK v4, old format (as gpg writes it) and new format.
        assert_eq!(kind(&[0x8c, 0x0d, 4, 9, 3, 2, 0x53]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0xc3, 0x0d, 4, 9, 3, 2, 0x53]), ErrorKind::Encrypted);
        // SKESK v6 (RFC 9580).
        assert_eq!(kind(&[0xc3, 0x40, 6, 0x26, 9, 2]), ErrorKind::Encrypted);
        // PKESK v3, old and new format, and v6.
        assert_eq!(kind(&[0x84, 0x5e, 3, 0x88, 0xfe]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0x85, 0x01, 0x0c, 3, 0x88]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0xc1, 0x5e, 3, 0x88, 0xfe]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0xc1, 0xc1, 0x0c, 6, 0x88]), ErrorKind::Encrypted);
        // Compressed data (old format, indeterminate length, ZIP), new format with partial length.
        assert_eq!(kind(&[0xa3, 0x01, 0x9b, 0xc0]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0xc8, 0xe5, 0x02, 0x78]), ErrorKind::Encrypted);
        // Symmetrically encrypted data.
        assert_eq!(kind(&[0xa4, 0x40, 0x12, 0x34]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0xa7, 0x12, 0x34, 0x56]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0xc9, 0xe8, 0x12, 0x34]), ErrorKind::Encrypted);
        // SEIPD v1 and v2, AEAD.
        assert_eq!(kind(&[0xd2, 0x3c, 0x01, 0xdb]), ErrorKind::Encrypted);
        assert_eq!(kind(&[0xd2, 0xe8, 0x01, 0xdb]), ErrorKind::Encrypted);
        assert_eq!(
            kind(&[0xd2, 0x40, 0x02, 0x09, 0x02, 0x10]),
            ErrorKind::Encrypted
        );
        assert_eq!(
            kind(&[0xd4, 0xe8, 0x01, 0x09, 0x01, 0x10]),
            ErrorKind::Encrypted
        );

        // Implausible versions, algorithms or lengths are not PGP.
        for not_pgp in [
            &[0x8c, 0x0d, 7, 9][..],       // SKESK version 7
            &[0x8c, 0x0d, 4, 0x40][..],    // cipher 64
            &[0x8c, 0xa9, 4, 9][..],       // SKESK of 169 bytes
            &[0xc3, 0xa9, 0x74, 0x74][..], // "\xc3\xa9tt"
            &[0x84, 0x5e, 0x41][..],       // PKESK version 'A'
            &[0xd2, 0x3c, 0x05][..],       // SEIPD version 5
            &[0xd4, 0x3c, 0x01, 9, 7][..], // AEAD algorithm 7
            &[0xa0, 0x00, 0x01][..],       // compressed, zero length
            &[0xa3, 0x07][..],             // compression algorithm 7
            &[0xc9, 0x05, 0x01][..],       // SED of 5 bytes
            &[0x8c][..],                   // too short to tell
            &[0xc3, 0xa9][..],
            &[0x80, 0x00][..],             // tag 0
            &[0xff, 0xfe][..],             // UTF-16 BOM
            &[0xef, 0xbb, 0xbf, b'x'][..], // UTF-8 BOM
        ] {
            assert_eq!(detect(not_pgp).unwrap(), Compression::None, "{not_pgp:x?}");
        }
    }

    /// A ustar header block for `name` with a valid checksum.
    fn tar_header(name: &[u8]) -> Vec<u8> {
        let mut block = vec![0u8; 512];
        block[..name.len()].copy_from_slice(name);
        block[100..108].copy_from_slice(b"0000644\0");
        block[108..116].copy_from_slice(b"0000000\0");
        block[116..124].copy_from_slice(b"0000000\0");
        block[124..136].copy_from_slice(b"00000000000\0");
        block[136..148].copy_from_slice(b"00000000000\0");
        block[156] = b'0';
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    #[test]
    fn tar_with_high_first_byte_is_not_encrypted() {
        // Names that are valid-looking PGP packet headers: only the tar checksum tells them apart.
        for name in [
            &b"\xc3\x0d\x04\x09\x03\x02name"[..],
            &b"\x8c\x0d\x04\x09"[..],
            &b"\xa3\x01x"[..],
            &b"\xc9\xe8abc"[..],
            &b"\xd2\x3c\x01x"[..],
            &b"\xc3\xa9t\xc3\xa9"[..],
            &b"\xc3(bad-utf8"[..],
        ] {
            let block = tar_header(name);
            assert!(is_tar_header(&block));
            assert_eq!(detect(&block).unwrap(), Compression::None, "{name:x?}");
        }
        // Without a whole, valid header block, a PGP-shaped prefix is refused.
        let mut block = tar_header(b"\xc3\x0d\x04\x09\x03\x02name");
        block[148] ^= 1;
        assert_eq!(kind(&block), ErrorKind::Encrypted);
    }

    #[test]
    fn real_tar_with_non_utf8_name_is_not_encrypted() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"\xc3\x28\xff-non-utf8");
        std::fs::write(dir.path().join(name), b"data").unwrap();
        let tar = Command::new("tar")
            .arg("-cf")
            .arg("-")
            .arg("-C")
            .arg(dir.path())
            .arg(name)
            .output();
        let Ok(out) = tar else {
            eprintln!("tar not found: skipped");
            return;
        };
        assert!(out.status.success());
        assert_eq!(out.stdout[0], 0xc3);
        assert_eq!(detect(&out.stdout[..512]).unwrap(), Compression::None);
        assert_eq!(detect(&out.stdout).unwrap(), Compression::None);
        // Shorter prefixes too: 0xc3 0x28 is no plausible SKESK.
        assert_eq!(detect(&out.stdout[..16]).unwrap(), Compression::None);
    }

    /// Runs gpg in its own home directory; `None` when gpg is not installed.
    fn gpg(home: &Path, args: &[&str]) -> Option<Vec<u8>> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--quiet", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(out.stdout)
    }

    struct GpgHome(tempfile::TempDir);

    impl Drop for GpgHome {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .env("GNUPGHOME", self.0.path())
                .args(["--kill", "gpg-agent"])
                .output();
        }
    }

    #[test]
    fn real_pgp_messages_are_encrypted() {
        let home = GpgHome(tempfile::tempdir().unwrap());
        let dir = home.0.path();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let input = dir.join("image.aci");
        std::fs::write(&input, vec![b'x'; 10_000]).unwrap();
        let input = input.to_str().unwrap();
        let sym = [
            "--passphrase",
            "x",
            "--no-symkey-cache",
            "--symmetric",
            "-o",
            "-",
        ];

        let Some(binary) = gpg(dir, &[&sym[..], &[input]].concat()) else {
            eprintln!("gpg not found: skipped");
            return;
        };
        assert_eq!(binary[0], 0x8c, "SKESK, old format");
        assert_eq!(kind(&binary), ErrorKind::Encrypted);
        assert_eq!(
            kind(&binary[..DETECT_LEN.min(binary.len())]),
            ErrorKind::Encrypted
        );

        let armored = gpg(dir, &[&sym[..], &["--armor", input]].concat()).unwrap();
        assert_eq!(kind(&armored), ErrorKind::Encrypted);

        // Public-key encryption (PKESK) and a signed-only message (compressed data packet).
        gpg(
            dir,
            &[
                "--passphrase",
                "",
                "--quick-gen-key",
                "test@example.invalid",
                "future-default",
                "default",
                "never",
            ],
        )
        .unwrap();
        let pk = gpg(
            dir,
            &[
                "--trust-model",
                "always",
                "-r",
                "test@example.invalid",
                "--encrypt",
                "-o",
                "-",
                input,
            ],
        )
        .unwrap();
        assert_eq!(pk[0] & 0xbc, 0x84, "PKESK, old format");
        assert_eq!(kind(&pk), ErrorKind::Encrypted);
        let pk_armored = gpg(
            dir,
            &[
                "--trust-model",
                "always",
                "-r",
                "test@example.invalid",
                "--armor",
                "--encrypt",
                "-o",
                "-",
                input,
            ],
        )
        .unwrap();
        assert_eq!(kind(&pk_armored), ErrorKind::Encrypted);
        let signed = gpg(dir, &["--passphrase", "", "--sign", "-o", "-", input]).unwrap();
        assert_eq!(signed[0], 0xa3, "compressed data, old format");
        assert_eq!(kind(&signed), ErrorKind::Encrypted);
    }
}

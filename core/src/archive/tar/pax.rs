//! PAX (POSIX.1-2001) extended headers: parsing `"<len> <key>=<value>\n"` records and
//! turning them into overrides of the ustar fields.

use super::entry::Timestamp;
use crate::{Error, ErrorKind, Result};

/// The records of one PAX extended header, in order (keys may repeat, as GNU sparse 0.0 does).
#[derive(Debug, Clone, Default)]
pub struct PaxRecords {
    /// `(key, value)` pairs as stored.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl PaxRecords {
    /// Parses the data of a PAX extended header, strictly: every record's length must
    /// be decimal, cover the record exactly and end with a newline.
    pub fn parse(mut data: &[u8]) -> Result<PaxRecords> {
        let mut records = Vec::new();
        // Some writers pad the data with NULs.
        while let Some((&first, _)) = data.split_first() {
            if first == 0 && data.iter().all(|&b| b == 0) {
                break;
            }
            let space = data
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| bad("record without a length"))?;
            let len_text = &data[..space];
            if len_text.is_empty()
                || len_text.len() > 20
                || !len_text.iter().all(u8::is_ascii_digit)
            {
                return Err(bad("record length is not a decimal number"));
            }
            let len: usize = std::str::from_utf8(len_text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("record length is not a decimal number"))?;
            if len <= space + 1 || len > data.len() {
                return Err(bad("record length does not fit the header"));
            }
            let record = &data[space + 1..len];
            let Some((b'\n', body)) = record.split_last() else {
                return Err(bad("record does not end with a newline"));
            };
            let eq = body
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| bad("record without '='"))?;
            if eq == 0 {
                return Err(bad("record with an empty key"));
            }
            records.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
            data = &data[len..];
        }
        Ok(PaxRecords { records })
    }

    /// The last value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.records
            .iter()
            .rev()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Whether any GNU sparse record is present.
    pub fn has_sparse(&self) -> bool {
        self.records
            .iter()
            .any(|(k, _)| k.starts_with(b"GNU.sparse."))
    }
}

/// The ustar fields a PAX header (local or global) overrides. `None` leaves the field as is.
#[derive(Debug, Clone, Default)]
pub struct PaxOverrides {
    /// `path`.
    pub path: Option<Vec<u8>>,
    /// `linkpath`.
    pub linkpath: Option<Vec<u8>>,
    /// `size`.
    pub size: Option<u64>,
    /// `uid`.
    pub uid: Option<u64>,
    /// `gid`.
    pub gid: Option<u64>,
    /// `uname`.
    pub uname: Option<Vec<u8>>,
    /// `gname`.
    pub gname: Option<Vec<u8>>,
    /// `mtime`, with sub-second precision.
    pub mtime: Option<Timestamp>,
    /// `atime`.
    pub atime: Option<Timestamp>,
    /// `ctime`.
    pub ctime: Option<Timestamp>,
    /// `SCHILY.devmajor` (star).
    pub dev_major: Option<u64>,
    /// `SCHILY.devminor` (star).
    pub dev_minor: Option<u64>,
    /// Extended attributes from `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`, in order, deduplicated.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl PaxOverrides {
    /// Applies the records of one header on top of `self` (later records win; an empty
    /// value deletes the keyword, as POSIX says).
    pub fn apply(&mut self, pax: &PaxRecords) -> Result<()> {
        let mut libarchive_xattrs = Vec::new();
        for (key, value) in &pax.records {
            let del = value.is_empty();
            match key.as_slice() {
                b"path" => self.path = (!del).then(|| value.clone()),
                b"linkpath" => self.linkpath = (!del).then(|| value.clone()),
                b"uname" => self.uname = (!del).then(|| value.clone()),
                b"gname" => self.gname = (!del).then(|| value.clone()),
                b"size" => self.size = opt(del, || decimal(value, "size"))?,
                b"uid" => self.uid = opt(del, || decimal(value, "uid"))?,
                b"gid" => self.gid = opt(del, || decimal(value, "gid"))?,
                b"SCHILY.devmajor" => self.dev_major = opt(del, || decimal(value, "devmajor"))?,
                b"SCHILY.devminor" => self.dev_minor = opt(del, || decimal(value, "devminor"))?,
                b"mtime" => self.mtime = opt(del, || timestamp(value, "mtime"))?,
                b"atime" => self.atime = opt(del, || timestamp(value, "atime"))?,
                b"ctime" => self.ctime = opt(del, || timestamp(value, "ctime"))?,
                k if k.starts_with(b"SCHILY.xattr.") => {
                    let name = &k[b"SCHILY.xattr.".len()..];
                    self.xattrs.retain(|(n, _)| n != name);
                    self.xattrs.push((name.to_vec(), value.clone()));
                }
                k if k.starts_with(b"LIBARCHIVE.xattr.") => {
                    let name = percent_decode(&k[b"LIBARCHIVE.xattr.".len()..])?;
                    libarchive_xattrs.push((name, base64_decode(value)?));
                }
                _ => {}
            }
        }
        // bsdtar writes each attribute twice (LIBARCHIVE and SCHILY): keep one of each name.
        for (name, value) in libarchive_xattrs {
            if !self.xattrs.iter().any(|(n, _)| *n == name) {
                self.xattrs.push((name, value));
            }
        }
        Ok(())
    }

    /// Refuses the records a global header must not carry: one path, link or size for
    /// every later member is never what an image means, and readers disagree on it.
    pub fn check_global(&self) -> Result<()> {
        if self.path.is_some() || self.linkpath.is_some() || self.size.is_some() {
            return Err(bad("a global header sets path, linkpath or size"));
        }
        Ok(())
    }
}

fn opt<T>(delete: bool, parse: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    if delete { Ok(None) } else { parse().map(Some) }
}

fn bad(why: &str) -> Error {
    Error::new(
        ErrorKind::BadPaxHeader,
        format!("PAX extended header: {why}"),
    )
}

/// Parses a decimal PAX value (no sign, no spaces).
pub fn decimal(value: &[u8], key: &str) -> Result<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad(&format!("{key} is not a decimal number")));
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| bad(&format!("{key} is out of range")))
}

/// Parses a PAX time: `[-]seconds[.fraction]`.
pub fn timestamp(value: &[u8], key: &str) -> Result<Timestamp> {
    let (negative, rest) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    let (whole, fraction) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => (&rest[..dot], &rest[dot + 1..]),
        None => (rest, &b""[..]),
    };
    if !fraction.iter().all(u8::is_ascii_digit) {
        return Err(bad(&format!("{key} is not a time")));
    }
    let secs = decimal(whole, key)?;
    let secs = i64::try_from(secs).map_err(|_| bad(&format!("{key} is out of range")))?;
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + fraction.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Ok(if !negative {
        Timestamp { secs, nanos }
    } else if nanos == 0 {
        Timestamp {
            secs: -secs,
            nanos: 0,
        }
    } else {
        Timestamp {
            secs: -secs - 1,
            nanos: 1_000_000_000 - nanos,
        }
    })
}

fn percent_decode(text: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("bad %-escape in an xattr name"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn base64_decode(text: &[u8]) -> Result<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text: Vec<u8> = text.iter().copied().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        if chunk.len() == 1 {
            return Err(bad("bad base64 in an xattr value"));
        }
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c).ok_or_else(|| bad("bad base64 in an xattr value"))? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &str) -> Vec<u8> {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}").len() + body.len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    #[test]
    fn parses_records_in_order() {
        let mut data = record("path", "rootfs/a b=c");
        data.extend(record("mtime", "1700000000.123456789"));
        data.extend(record("SCHILY.xattr.user.x", "v\nw"));
        let pax = PaxRecords::parse(&data).unwrap();
        assert_eq!(pax.get("path"), Some(&b"rootfs/a b=c"[..]));
        let mut o = PaxOverrides::default();
        o.apply(&pax).unwrap();
        assert_eq!(
            o.mtime,
            Some(Timestamp {
                secs: 1_700_000_000,
                nanos: 123_456_789
            })
        );
        assert_eq!(o.xattrs, vec![(b"user.x".to_vec(), b"v\nw".to_vec())]);
    }

    #[test]
    fn refuses_bad_lengths() {
        assert!(PaxRecords::parse(b"99 path=x\n").is_err());
        assert!(PaxRecords::parse(b"5 a=b\n").is_err());
        assert!(PaxRecords::parse(b"x path=a\n").is_err());
        assert!(PaxRecords::parse(b"9 path=a ").is_err());
        assert!(PaxRecords::parse(b"6 =ab\n").is_err());
        assert!(PaxRecords::parse(b"11 size=1x\n").is_ok());
        let pax = PaxRecords::parse(b"11 size=1x\n").unwrap();
        assert!(PaxOverrides::default().apply(&pax).is_err());
    }

    #[test]
    fn negative_and_fractional_times() {
        assert_eq!(
            timestamp(b"-1.25", "t").unwrap(),
            Timestamp {
                secs: -2,
                nanos: 750_000_000
            }
        );
        assert_eq!(
            timestamp(b"12", "t").unwrap(),
            Timestamp { secs: 12, nanos: 0 }
        );
        assert!(timestamp(b"1.2x", "t").is_err());
    }

    #[test]
    fn libarchive_xattrs_are_decoded_and_deduplicated() {
        let mut data = record("LIBARCHIVE.xattr.user.a%3Db", "aGk=");
        data.extend(record("LIBARCHIVE.xattr.user.c", "AAEC"));
        data.extend(record("SCHILY.xattr.user.c", "schily"));
        let mut o = PaxOverrides::default();
        o.apply(&PaxRecords::parse(&data).unwrap()).unwrap();
        assert_eq!(
            o.xattrs,
            vec![
                (b"user.c".to_vec(), b"schily".to_vec()),
                (b"user.a=b".to_vec(), b"hi".to_vec())
            ]
        );
    }

    #[test]
    fn empty_value_deletes() {
        let mut o = PaxOverrides::default();
        o.apply(&PaxRecords::parse(&record("uid", "5")).unwrap())
            .unwrap();
        o.apply(&PaxRecords::parse(&record("uid", "")).unwrap())
            .unwrap();
        assert_eq!(o.uid, None);
    }
}

//! Our tar *writer*: POSIX pax (ustar headers plus `x` extended headers), every field a pure
//! function of what it is given, so the same tree always gives the same bytes.
//!
//! - Numbers go in the ustar fields as zero-padded octal; a value that does not fit (a size
//!   of 8 GiB or more, an owner ID of 2^21 or more, a negative or far-future mtime) goes in a
//!   PAX record and the ustar field holds 0.
//! - A path over 100 bytes goes in a PAX `path` record (the ustar `name` keeps its first 100
//!   bytes); a link target over 100 bytes in `linkpath`. The ustar `prefix` is never used.
//! - Sub-second mtimes go in a PAX `mtime` record; atime and ctime are never written.
//! - Extended attributes go in `SCHILY.xattr.NAME` records, sorted by name.
//! - Sparse files use the GNU sparse 1.0 format: `GNU.sparse.major=1`, `minor=0`,
//!   `GNU.sparse.name` (the real path), `GNU.sparse.realsize`, and the map at the start of the
//!   member's data; the ustar name is `GNUSparseFile.0/BASENAME`.
//! - An extended header is named `PaxHeaders/BASENAME` (no pid, no time), mode 0644, owner 0,
//!   mtime 0. Records are written in a fixed order.
//! - Owner names (`uname`/`gname`) are always empty: only numeric IDs are kept, so the output
//!   does not depend on the host's user database.
//! - The archive ends with two zero blocks; it is not padded to a 10 KiB record (tar readers
//!   do not need it).

use std::io::{self, Write};

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;

/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_11: u64 = 0o777_7777_7777;
/// Largest value of a 7-digit octal field (mode, uid, gid, device numbers).
const MAX_OCTAL_7: u64 = 0o777_7777;

/// The type of a member, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file (`0`) whose content follows.
    Regular,
    /// A hardlink (`1`) to an earlier member.
    Hardlink(Vec<u8>),
    /// A symlink (`2`).
    Symlink(Vec<u8>),
    /// A character device (`3`), major and minor.
    Char(u64, u64),
    /// A block device (`4`), major and minor.
    Block(u64, u64),
    /// A directory (`5`).
    Directory,
    /// A FIFO (`6`).
    Fifo,
}

impl Kind {
    fn flag(&self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::Hardlink(_) => b'1',
            Kind::Symlink(_) => b'2',
            Kind::Char(..) => b'3',
            Kind::Block(..) => b'4',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// Everything a member's headers hold.
#[derive(Debug, Clone)]
pub(crate) struct Member<'a> {
    /// The member's path in the archive.
    pub path: &'a [u8],
    /// Its type.
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky (no file-type bits).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u64,
    /// Owner group ID.
    pub gid: u64,
    /// Modification time: seconds since the epoch and nanoseconds (0..1e9).
    pub mtime: (i64, u32),
    /// Bytes of data stored after the header (for a sparse file: map block + data segments).
    pub size: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
    /// For a sparse file (GNU 1.0): its real size.
    pub sparse_real_size: Option<u64>,
}

/// Appends one PAX record `"LEN KEY=VALUE\n"`; LEN counts the whole record, its own digits
/// included.
pub(crate) fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// `secs.nanos` as a PAX time value, trailing zeros dropped (`12`, `12.5`, `-1.25`).
pub(crate) fn pax_time(secs: i64, nanos: u32) -> String {
    if nanos == 0 {
        return secs.to_string();
    }
    // The value is secs + nanos/1e9; for a negative time print the magnitude.
    let (sign, whole, frac) = if secs < 0 {
        ("-", (-(secs + 1)) as u64, 1_000_000_000 - nanos)
    } else {
        ("", secs as u64, nanos)
    };
    let frac = format!("{frac:09}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
}

/// Writes `value` as zero-padded octal filling `field` but its last byte (a NUL).
/// Returns false (and writes zeros) when it does not fit.
fn octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        field[..digits].fill(b'0');
        field[digits] = 0;
        return false;
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    true
}

fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

fn truncated(name: &[u8], max: usize) -> &[u8] {
    &name[..name.len().min(max)]
}

/// One ustar header block.
#[allow(clippy::too_many_arguments)]
fn ustar_block(
    name: &[u8],
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    flag: u8,
    link: &[u8],
    device: (u64, u64),
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let name = truncated(name, 100);
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], mode);
    octal(&mut b[108..116], uid);
    octal(&mut b[116..124], gid);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], mtime);
    b[156] = flag;
    let link = truncated(link, 100);
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname (265..297) and gname (297..329) stay empty.
    octal(&mut b[329..337], device.0);
    octal(&mut b[337..345], device.1);
    // Checksum: the sum of all bytes with the field as spaces; 6 octal digits, NUL, space.
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let text = format!("{sum:06o}");
    b[148..154].copy_from_slice(text.as_bytes());
    b[154] = 0;
    b[155] = b' ';
    b
}

/// Writes tar members to `W`, counting bytes.
pub(crate) struct TarWriter<W> {
    out: W,
    position: u64,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter { out, position: 0 }
    }

    /// Bytes written so far.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Writes raw bytes (content, padding).
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    /// Zero bytes up to the next block boundary.
    pub(crate) fn pad(&mut self) -> io::Result<()> {
        let rem = (self.position % BLOCK as u64) as usize;
        if rem != 0 {
            self.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Writes the header(s) of `m`: an extended header when needed, then the ustar block.
    /// The caller then writes exactly `m.size` bytes of data and calls [`Self::pad`].
    pub(crate) fn header(&mut self, m: &Member<'_>) -> io::Result<()> {
        let mut pax = Vec::new();
        let link: &[u8] = match &m.kind {
            Kind::Hardlink(t) | Kind::Symlink(t) => t,
            _ => b"",
        };
        let device = match m.kind {
            Kind::Char(a, b) | Kind::Block(a, b) => (a, b),
            _ => (0, 0),
        };
        if device.0 > MAX_OCTAL_7 || device.1 > MAX_OCTAL_7 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "device numbers {}:{} are too large for a tar header",
                    device.0, device.1
                ),
            ));
        }
        let sparse_name;
        let name: &[u8] = if let Some(real_size) = m.sparse_real_size {
            pax_record(&mut pax, b"GNU.sparse.major", b"1");
            pax_record(&mut pax, b"GNU.sparse.minor", b"0");
            pax_record(&mut pax, b"GNU.sparse.name", m.path);
            pax_record(
                &mut pax,
                b"GNU.sparse.realsize",
                real_size.to_string().as_bytes(),
            );
            let mut fake = b"GNUSparseFile.0/".to_vec();
            fake.extend_from_slice(basename(m.path));
            sparse_name = fake;
            &sparse_name
        } else {
            if m.path.len() > 100 {
                pax_record(&mut pax, b"path", m.path);
            }
            m.path
        };
        if link.len() > 100 {
            pax_record(&mut pax, b"linkpath", link);
        }
        let size_field = if m.size > MAX_OCTAL_11 {
            pax_record(&mut pax, b"size", m.size.to_string().as_bytes());
            0
        } else {
            m.size
        };
        let uid_field = if m.uid > MAX_OCTAL_7 {
            pax_record(&mut pax, b"uid", m.uid.to_string().as_bytes());
            0
        } else {
            m.uid
        };
        let gid_field = if m.gid > MAX_OCTAL_7 {
            pax_record(&mut pax, b"gid", m.gid.to_string().as_bytes());
            0
        } else {
            m.gid
        };
        let (secs, nanos) = m.mtime;
        let mtime_field = if secs < 0 || secs as u64 > MAX_OCTAL_11 || nanos != 0 {
            pax_record(&mut pax, b"mtime", pax_time(secs, nanos).as_bytes());
            if secs < 0 || secs as u64 > MAX_OCTAL_11 {
                0
            } else {
                secs as u64
            }
        } else {
            secs as u64
        };
        for (key, value) in m.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key);
            pax_record(&mut pax, &k, value);
        }
        if !pax.is_empty() {
            let mut xname = b"PaxHeaders/".to_vec();
            xname.extend_from_slice(basename(m.path));
            let block = ustar_block(&xname, 0o644, 0, 0, pax.len() as u64, 0, b'x', b"", (0, 0));
            self.write_all(&block)?;
            self.write_all(&pax)?;
            self.pad()?;
        }
        let block = ustar_block(
            name,
            u64::from(m.mode & 0o7777),
            uid_field,
            gid_field,
            size_field,
            mtime_field,
            m.kind.flag(),
            link,
            device,
        );
        self.write_all(&block)
    }

    /// Writes the two zero blocks that end the archive and gives the writer back.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.pad()?;
        self.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The GNU sparse 1.0 map block(s) for `segments` (offset, length): the count and each pair
/// as decimal lines, zero-padded to whole blocks.
pub(crate) fn sparse_map(segments: &[(u64, u64)]) -> Vec<u8> {
    let mut map = format!("{}\n", segments.len()).into_bytes();
    for (offset, length) in segments {
        map.extend_from_slice(format!("{offset}\n{length}\n").as_bytes());
    }
    let padded = map.len().div_ceil(BLOCK) * BLOCK;
    map.resize(padded, 0);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", b"abc");
        assert_eq!(out, b"12 path=abc\n");
        // Where the length grows from two to three digits.
        let mut out = Vec::new();
        let value = vec![b'x'; 93]; // ' path=' 6 + 93 + '\n' 1 = 100, + 3 digits = 103
        pax_record(&mut out, b"path", &value);
        assert!(out.starts_with(b"103 path="));
        assert_eq!(out.len(), 103);
        let parsed = crate::archive::tar::pax::PaxRecords::parse(&out).unwrap();
        assert_eq!(parsed.get("path"), Some(&value[..]));
    }

    #[test]
    fn pax_time_formats() {
        assert_eq!(pax_time(12, 0), "12");
        assert_eq!(pax_time(12, 500_000_000), "12.5");
        assert_eq!(pax_time(-2, 750_000_000), "-1.25");
        assert_eq!(pax_time(0, 1), "0.000000001");
    }

    #[test]
    fn header_checksum_is_valid() {
        let block = ustar_block(b"a", 0o755, 1, 2, 3, 4, b'0', b"", (0, 0));
        assert!(crate::archive::tar::header::checksum_ok(&block));
        let raw = crate::archive::tar::header::decode(&block).unwrap();
        assert_eq!(raw.name, b"a");
        assert_eq!((raw.mode, raw.uid, raw.gid, raw.size), (0o755, 1, 2, 3));
    }

    #[test]
    fn sparse_map_is_block_padded() {
        let map = sparse_map(&[(0, 5), (100, 3)]);
        assert_eq!(map.len(), 512);
        assert!(map.starts_with(b"2\n0\n5\n100\n3\n"));
    }
}

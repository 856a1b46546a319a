//! Decoding one 512-byte tar header block: fields, numbers (octal and base-256),
//! checksum and dialect (v7, ustar, GNU).

use super::entry::HeaderFormat;
use crate::{Error, ErrorKind, Result};

/// Largest value an 11-digit octal size field can hold (8 GiB - 1).
pub const MAX_OCTAL_SIZE: u64 = 0o777_7777_7777;

/// One GNU old-style sparse entry as found in a header or an extension block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GnuSparseEntry {
    /// Offset in the logical file.
    pub offset: u64,
    /// Number of data bytes.
    pub numbytes: u64,
}

/// The decoded fields of a header block, before PAX or GNU overrides.
#[derive(Debug, Clone)]
pub struct RawHeader {
    /// Dialect, from the magic field.
    pub format: HeaderFormat,
    /// Type flag byte.
    pub type_flag: u8,
    /// Name (with the ustar prefix joined, when there is one).
    pub name: Vec<u8>,
    /// Link name.
    pub link_name: Vec<u8>,
    /// Mode field, file-type bits included as stored.
    pub mode: u64,
    /// User ID.
    pub uid: u64,
    /// Group ID.
    pub gid: u64,
    /// Size field.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// User name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Device major number.
    pub dev_major: u64,
    /// Device minor number.
    pub dev_minor: u64,
    /// GNU access time (0 when absent).
    pub gnu_atime: i64,
    /// GNU change time (0 when absent).
    pub gnu_ctime: i64,
    /// GNU old-style sparse entries held in the header itself.
    pub gnu_sparse: Vec<GnuSparseEntry>,
    /// GNU: whether sparse extension blocks follow.
    pub gnu_is_extended: bool,
    /// GNU: real size of a sparse file.
    pub gnu_real_size: u64,
}

/// Whether a block is all zeros (an end-of-archive block).
pub fn is_zero_block(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Whether the block's checksum field matches its contents (unsigned or signed sum,
/// the field itself counted as spaces).
pub fn checksum_ok(block: &[u8; 512]) -> bool {
    let Ok(stored) = parse_number(&block[148..156]) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// Decodes a header block. The caller checks the checksum first.
pub fn decode(block: &[u8; 512]) -> Result<RawHeader> {
    let format = match (&block[257..263], &block[263..265]) {
        (b"ustar ", b" \0") => HeaderFormat::Gnu,
        (b"ustar\0", _) => HeaderFormat::Ustar,
        _ => HeaderFormat::V7,
    };
    let field = |name: &'static str, range: std::ops::Range<usize>| {
        parse_number(&block[range]).map_err(|why| bad_field(name, why))
    };
    let signed_field = |name: &'static str, range: std::ops::Range<usize>| {
        parse_signed(&block[range]).map_err(|why| bad_field(name, why))
    };
    let mut name = cstr(&block[0..100]).to_vec();
    if format == HeaderFormat::Ustar {
        let prefix = cstr(&block[345..500]);
        if !prefix.is_empty() {
            let mut joined = prefix.to_vec();
            joined.push(b'/');
            joined.extend_from_slice(&name);
            name = joined;
        }
    }
    let mut header = RawHeader {
        format,
        type_flag: block[156],
        name,
        link_name: cstr(&block[157..257]).to_vec(),
        mode: field("mode", 100..108)?,
        uid: field("uid", 108..116)?,
        gid: field("gid", 116..124)?,
        size: field("size", 124..136)?,
        mtime: signed_field("mtime", 136..148)?,
        uname: Vec::new(),
        gname: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        gnu_atime: 0,
        gnu_ctime: 0,
        gnu_sparse: Vec::new(),
        gnu_is_extended: false,
        gnu_real_size: 0,
    };
    if format != HeaderFormat::V7 {
        header.uname = cstr(&block[265..297]).to_vec();
        header.gname = cstr(&block[297..329]).to_vec();
        if matches!(header.type_flag, b'3' | b'4') {
            header.dev_major = field("devmajor", 329..337)?;
            header.dev_minor = field("devminor", 337..345)?;
        }
    }
    if format == HeaderFormat::Gnu {
        header.gnu_atime = signed_field("atime", 345..357)?;
        header.gnu_ctime = signed_field("ctime", 357..369)?;
        if header.type_flag == b'S' {
            header.gnu_sparse = decode_gnu_sparse(&block[386..482])?;
            header.gnu_is_extended = block[482] != 0;
            header.gnu_real_size = field("realsize", 483..495)?;
        }
    }
    Ok(header)
}

/// Decodes the sparse entries of a GNU sparse area (24 bytes each); an all-zero entry ends it.
pub fn decode_gnu_sparse(area: &[u8]) -> Result<Vec<GnuSparseEntry>> {
    let mut entries = Vec::new();
    for chunk in area.chunks_exact(24) {
        if chunk.iter().all(|&b| b == 0) {
            break;
        }
        let offset = parse_number(&chunk[0..12]).map_err(bad_sparse)?;
        let numbytes = parse_number(&chunk[12..24]).map_err(bad_sparse)?;
        entries.push(GnuSparseEntry { offset, numbytes });
    }
    Ok(entries)
}

fn bad_field(name: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::BadHeader,
        format!("header field {name} is not a valid number: {why}"),
    )
}

fn bad_sparse(why: &str) -> Error {
    Error::new(
        ErrorKind::BadSparseMap,
        format!("GNU sparse entry is not a valid number: {why}"),
    )
}

/// The bytes of a NUL-terminated field, up to the first NUL.
pub fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// Parses an unsigned numeric field: octal (space/NUL padded) or GNU base-256.
pub fn parse_number(field: &[u8]) -> std::result::Result<u64, &'static str> {
    let value = parse_signed_wide(field)?;
    u64::try_from(value).map_err(|_| "negative or too large")
}

/// Parses a signed numeric field (times may be negative in base-256).
pub fn parse_signed(field: &[u8]) -> std::result::Result<i64, &'static str> {
    let value = parse_signed_wide(field)?;
    i64::try_from(value).map_err(|_| "out of range")
}

fn parse_signed_wide(field: &[u8]) -> std::result::Result<i128, &'static str> {
    match field.first() {
        Some(0x80) => base256(&field[1..], false),
        Some(0xff) => base256(&field[1..], true),
        _ => octal(field),
    }
}

fn base256(rest: &[u8], negative: bool) -> std::result::Result<i128, &'static str> {
    // Two's complement over the whole field, first byte 0xff for negative values.
    let significant = rest
        .iter()
        .skip_while(|&&b| b == if negative { 0xff } else { 0 });
    if significant.clone().count() > 8 {
        return Err("base-256 value too large");
    }
    let mut value: i128 = 0;
    for &b in rest.iter().skip(rest.len().saturating_sub(8)) {
        value = (value << 8) | i128::from(b);
    }
    if negative {
        let width = 8 * rest.len().min(8) as u32;
        value -= 1i128 << width;
    }
    Ok(value)
}

fn octal(field: &[u8]) -> std::result::Result<i128, &'static str> {
    let mut digits = field.iter().skip_while(|&&b| b == b' ').peekable();
    let mut value: i128 = 0;
    let mut seen = 0;
    while let Some(&&b) = digits.peek() {
        if !(b'0'..=b'7').contains(&b) {
            break;
        }
        value = value * 8 + i128::from(b - b'0');
        seen += 1;
        if seen > 21 {
            return Err("octal value too long");
        }
        digits.next();
    }
    // After the digits only terminators (NUL or space) may follow.
    if digits.any(|&b| b != 0 && b != b' ') {
        return Err("not an octal number");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields() {
        assert_eq!(parse_number(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_number(b"   644 \0"), Ok(0o644));
        assert_eq!(parse_number(b"\0\0\0\0\0\0\0\0"), Ok(0));
        assert_eq!(parse_number(b"        "), Ok(0));
        assert!(parse_number(b"00006x4\0").is_err());
        assert!(parse_number(b"0000 64\0").is_err());
        assert!(parse_number(b"0000089\0").is_err());
    }

    #[test]
    fn base256_fields() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 0x01;
        field[10] = 0x02;
        assert_eq!(parse_number(&field), Ok(0x0201));
        // 16 GiB, too large for octal.
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[7] = 0x04;
        assert_eq!(parse_number(&big), Ok(1 << 34));
        let neg = [0xffu8; 12];
        assert_eq!(parse_signed(&neg), Ok(-1));
        assert!(parse_number(&neg).is_err());
        let mut huge = [0u8; 12];
        huge[0] = 0x80;
        huge[2] = 0x01;
        assert!(parse_number(&huge).is_err());
    }

    #[test]
    fn checksum_accepts_unsigned_and_rejects_damage() {
        let mut block = [0u8; 512];
        block[..5].copy_from_slice(b"hello");
        block[156] = b'0';
        let sum: u64 = block.iter().map(|&b| u64::from(b)).sum::<u64>() + 8 * u64::from(b' ');
        let text = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(text.as_bytes());
        assert!(checksum_ok(&block));
        block[0] = b'j';
        assert!(!checksum_ok(&block));
    }

    #[test]
    fn ustar_prefix_is_joined() {
        let mut block = [0u8; 512];
        block[..4].copy_from_slice(b"file");
        block[345..351].copy_from_slice(b"a/long");
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        for range in [100..108, 108..116, 116..124, 124..136, 136..148] {
            block[range.start..range.end - 1].fill(b'0');
        }
        block[156] = b'0';
        let header = decode(&block).unwrap();
        assert_eq!(header.name, b"a/long/file");
        assert_eq!(header.format, HeaderFormat::Ustar);
    }
}

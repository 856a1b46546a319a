//! GNU sparse files: building and checking the [`SparseMap`] from each dialect
//! (old GNU `'S'` headers, PAX 0.0, 0.1 and 1.0).

use super::entry::{SparseMap, SparseSegment};
use super::header::GnuSparseEntry;
use super::pax::{PaxRecords, decimal};
use crate::{Error, ErrorKind, Result};

/// Most segments a sparse map may hold (16 bytes each in memory).
pub const MAX_SEGMENTS: usize = 1 << 20;

/// Most bytes the in-data map of a sparse 1.0 member may take.
pub const MAX_MAP_BYTES: u64 = 32 << 20;

/// Which sparse dialect a member uses, from its PAX records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaxSparse {
    /// No sparse records.
    None,
    /// 0.0 or 0.1: the map is in the PAX records.
    InHeader(SparseMap),
    /// 1.0: the map is at the start of the data area; only the real size is known yet.
    InData {
        /// Logical size of the file.
        real_size: u64,
    },
}

fn bad(why: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadSparseMap, why.into())
}

/// Builds the map of an old GNU `'S'` member from its header and extension entries.
pub fn from_gnu(entries: &[GnuSparseEntry], real_size: u64) -> SparseMap {
    SparseMap {
        format: "gnu",
        real_size,
        segments: entries
            .iter()
            .map(|e| SparseSegment {
                offset: e.offset,
                length: e.numbytes,
            })
            .collect(),
    }
}

/// Reads the sparse records of a PAX header (0.0 / 0.1 / 1.0).
pub fn from_pax(pax: &PaxRecords) -> Result<PaxSparse> {
    if !pax.has_sparse() {
        return Ok(PaxSparse::None);
    }
    let number = |key: &str| pax.get(key).map(|v| decimal(v, key)).transpose();
    let major = number("GNU.sparse.major")?;
    let minor = number("GNU.sparse.minor")?;
    if major.is_some() || minor.is_some() {
        if (major, minor) != (Some(1), Some(0)) {
            return Err(bad(format!("unknown sparse format {major:?}.{minor:?}")));
        }
        let real_size = number("GNU.sparse.realsize")?
            .ok_or_else(|| bad("sparse 1.0 member without GNU.sparse.realsize"))?;
        return Ok(PaxSparse::InData { real_size });
    }
    let real_size = number("GNU.sparse.size")?
        .or(number("GNU.sparse.realsize")?)
        .ok_or_else(|| bad("sparse member without GNU.sparse.size"))?;
    let numblocks = number("GNU.sparse.numblocks")?;
    let (format, values): (&'static str, Vec<u64>) = if let Some(map) = pax.get("GNU.sparse.map") {
        let values = if map.is_empty() {
            Vec::new()
        } else {
            map.split(|&b| b == b',')
                .map(|v| decimal(v, "GNU.sparse.map"))
                .collect::<Result<_>>()?
        };
        ("0.1", values)
    } else {
        // 0.0: repeated offset/numbytes records, in pairs.
        let mut values = Vec::new();
        let mut expect_offset = true;
        for (key, value) in &pax.records {
            let is_offset = key == b"GNU.sparse.offset";
            if !is_offset && key != b"GNU.sparse.numbytes" {
                continue;
            }
            if is_offset != expect_offset {
                return Err(bad(
                    "GNU.sparse.offset and numbytes records are not in pairs",
                ));
            }
            expect_offset = !expect_offset;
            values.push(decimal(value, "GNU.sparse.offset/numbytes")?);
        }
        ("0.0", values)
    };
    let map = pairs(format, real_size, &values)?;
    if numblocks.is_some_and(|n| n != map.segments.len() as u64) {
        return Err(bad("GNU.sparse.numblocks disagrees with the map"));
    }
    Ok(PaxSparse::InHeader(map))
}

fn pairs(format: &'static str, real_size: u64, values: &[u64]) -> Result<SparseMap> {
    if !values.len().is_multiple_of(2) {
        return Err(bad("sparse map has an odd number of values"));
    }
    if values.len() / 2 > MAX_SEGMENTS {
        return Err(bad("sparse map has too many segments"));
    }
    Ok(SparseMap {
        format,
        real_size,
        segments: values
            .chunks_exact(2)
            .map(|p| SparseSegment {
                offset: p[0],
                length: p[1],
            })
            .collect(),
    })
}

/// Parses the in-data map of a sparse 1.0 member from the blocks read so far.
/// Returns `None` when more blocks are needed, else the map and the bytes it took
/// (a multiple of 512).
pub fn parse_data_map(data: &[u8], real_size: u64) -> Result<Option<(SparseMap, usize)>> {
    let mut values = Vec::new();
    let mut rest = data;
    let mut count: Option<usize> = None;
    loop {
        if count.is_some_and(|n| values.len() == 2 * n) {
            break;
        }
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > 20 {
                return Err(bad("sparse 1.0 map holds a number that is too long"));
            }
            return Ok(None);
        };
        let value = decimal(&rest[..nl], "sparse 1.0 map").map_err(|e| bad(e.message()))?;
        rest = &rest[nl + 1..];
        match count {
            None => {
                let n = usize::try_from(value).unwrap_or(usize::MAX);
                if n > MAX_SEGMENTS {
                    return Err(bad("sparse map has too many segments"));
                }
                count = Some(n);
            }
            Some(_) => values.push(value),
        }
    }
    let used = data.len() - rest.len();
    let taken = used.div_ceil(512) * 512;
    if taken > data.len() {
        return Ok(None);
    }
    if data[used..taken].iter().any(|&b| b != 0) {
        return Err(bad("sparse 1.0 map padding is not zero"));
    }
    Ok(Some((pairs("1.0", real_size, &values)?, taken)))
}

/// Checks a map: segments in order, not overlapping, inside the real size, and adding up
/// to the number of data bytes stored.
pub fn check(map: &SparseMap, stored: u64) -> Result<()> {
    let mut end = 0u64;
    let mut total = 0u64;
    for seg in &map.segments {
        if seg.offset < end {
            return Err(bad("sparse segments overlap or are out of order"));
        }
        end = seg
            .offset
            .checked_add(seg.length)
            .filter(|&e| e <= map.real_size)
            .ok_or_else(|| bad("sparse segment lies beyond the file's real size"))?;
        total += seg.length;
    }
    if total != stored {
        return Err(bad(format!(
            "sparse map holds {total} data bytes but the member stores {stored}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_map_needs_whole_blocks() {
        let mut data = b"2\n0\n5\n100\n3\n".to_vec();
        assert_eq!(parse_data_map(&data, 103).unwrap(), None);
        data.resize(512, 0);
        let (map, taken) = parse_data_map(&data, 103).unwrap().unwrap();
        assert_eq!(taken, 512);
        assert_eq!(map.segments.len(), 2);
        check(&map, 8).unwrap();
        assert!(check(&map, 9).is_err());
    }

    #[test]
    fn overlapping_and_oversized_maps_are_refused() {
        let map = pairs("0.1", 10, &[0, 5, 4, 2]).unwrap();
        assert!(check(&map, 7).is_err());
        let map = pairs("0.1", 10, &[8, 5]).unwrap();
        assert!(check(&map, 5).is_err());
        assert!(pairs("0.1", 10, &[1]).is_err());
    }

    #[test]
    fn pax_00_pairs() {
        let pax = PaxRecords {
            records: vec![
                (b"GNU.sparse.size".to_vec(), b"20".to_vec()),
                (b"GNU.sparse.numblocks".to_vec(), b"1".to_vec()),
                (b"GNU.sparse.offset".to_vec(), b"10".to_vec()),
                (b"GNU.sparse.numbytes".to_vec(), b"4".to_vec()),
            ],
        };
        let PaxSparse::InHeader(map) = from_pax(&pax).unwrap() else {
            panic!()
        };
        assert_eq!(map.format, "0.0");
        assert_eq!(
            map.segments,
            vec![SparseSegment {
                offset: 10,
                length: 4
            }]
        );
    }
}

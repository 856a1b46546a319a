//! `SOURCE_DATE_EPOCH` (<https://reproducible-builds.org/specs/source-date-epoch/>): the
//! build time a reproducible build uses, read as the mtime clamp of [`Builder`](super::Builder).

use std::ffi::OsStr;

use crate::{Error, ErrorKind, Result};

/// The environment variable's name.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Reads `SOURCE_DATE_EPOCH` from the environment: `None` when it is not set, otherwise its
/// value as parsed by [`parse_source_date_epoch`].
///
/// ```
/// // Honour SOURCE_DATE_EPOCH when set, as reproducible-builds tools do.
/// let clamp: Option<i64> = acikit::build::source_date_epoch()?;
/// let builder = acikit::Builder::new().mtime_clamp(clamp);
/// # let _ = builder;
/// # Ok::<(), acikit::Error>(())
/// ```
pub fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var_os(SOURCE_DATE_EPOCH) {
        None => Ok(None),
        Some(value) => parse_source_date_epoch(&value).map(Some),
    }
}

/// Parses a `SOURCE_DATE_EPOCH` value as the specification defines it: the decimal digits of
/// a non-negative number of seconds since 1970-01-01 00:00:00 UTC, as `date +%s` prints it,
/// with no sign, fraction or spaces. Anything else, including an empty value, is
/// [`ErrorKind::InvalidArgument`] naming the value: a set variable that is silently ignored
/// would give a build that is not reproducible.
///
/// ```
/// use std::ffi::OsStr;
/// use acikit::build::parse_source_date_epoch;
///
/// assert_eq!(parse_source_date_epoch(OsStr::new("1700000000"))?, 1_700_000_000);
/// let err = parse_source_date_epoch(OsStr::new("-5")).unwrap_err();
/// assert_eq!(err.kind(), acikit::ErrorKind::InvalidArgument);
/// # Ok::<(), acikit::Error>(())
/// ```
pub fn parse_source_date_epoch(value: &OsStr) -> Result<i64> {
    let invalid = |why: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{SOURCE_DATE_EPOCH}={:?} is not valid: {why}",
                value.to_string_lossy()
            ),
        )
    };
    let text = value.to_str().ok_or_else(|| invalid("it is not UTF-8"))?;
    if text.is_empty() {
        return Err(invalid("it is empty (unset it instead)"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "it must be a whole number of seconds since the epoch, digits only",
        ));
    }
    text.parse::<i64>()
        .map_err(|_| invalid("the number is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<i64> {
        parse_source_date_epoch(OsStr::new(value))
    }

    #[test]
    fn accepts_what_date_prints() {
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("1600000000").unwrap(), 1_600_000_000);
        assert_eq!(parse("0001700000000").unwrap(), 1_700_000_000);
    }

    #[test]
    fn refuses_anything_else_with_the_value_named() {
        for bad in [
            "",
            "-1",
            "+5",
            " 5",
            "5 ",
            "1.5",
            "1e9",
            "0x10",
            "yesterday",
            "99999999999999999999",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
            assert!(err.message().contains(SOURCE_DATE_EPOCH), "{err}");
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
        use std::os::unix::ffi::OsStrExt;
        let err = parse_source_date_epoch(OsStr::from_bytes(b"16\xff")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}

//! Civil time for messages and listings, without a time-zone database: UTC only.

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
///
/// ```
/// assert_eq!(acikit::clock::format_utc(0), "1970-01-01 00:00:00");
/// assert_eq!(acikit::clock::format_utc(1_700_000_000), "2023-11-14 22:13:20");
/// ```
pub fn format_utc(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        format_utc_date(secs),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The UTC day of `secs` since the Unix epoch, as `YYYY-MM-DD`.
///
/// ```
/// assert_eq!(acikit::clock::format_utc_date(1_700_000_000), "2023-11-14");
/// assert_eq!(acikit::clock::format_utc_date(-1), "1969-12-31");
/// ```
pub fn format_utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_utc_time() {
        assert_eq!(super::format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_utc(1_577_836_800), "2020-01-01 00:00:00");
        assert_eq!(super::format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::format_utc(-1), "1969-12-31 23:59:59");
        assert_eq!(super::format_utc_date(951_868_799), "2000-02-29");
    }
}

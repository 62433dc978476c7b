//! `GeneralizedTime` as RFC 3161 uses it, and Unix time shown as RFC 3339.

use crate::error::TimestampError;

/// A parsed `genTime`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GenTime {
    /// Whole seconds since the Unix epoch.
    pub secs: i64,
    /// True when a non-zero fraction of a second follows `secs`.
    pub has_fraction: bool,
    /// RFC 3339, UTC, with the fraction exactly as the token gives it.
    pub rfc3339: String,
}

/// Parses a `GeneralizedTime` value as RFC 3161 §2.4.2 restricts it:
/// `YYYYMMDDhhmmss[.s...]Z`, always UTC, seconds always present, an optional fraction of a
/// second. (RFC 3161 also forbids trailing zeros in the fraction; they change nothing, so
/// they are accepted.)
pub(crate) fn parse_generalized_time(value: &[u8]) -> Result<GenTime, TimestampError> {
    let bad = |why: &str| {
        TimestampError::Malformed(format!(
            "genTime {:?} is not YYYYMMDDhhmmss[.fraction]Z (RFC 3161 §2.4.2): {why}",
            String::from_utf8_lossy(value)
        ))
    };
    let text = std::str::from_utf8(value).map_err(|_| bad("not ASCII"))?;
    let body = text.strip_suffix('Z').ok_or_else(|| bad("must end in Z"))?;
    let (main, fraction) = match body.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("needs 14 digits before the fraction"));
    }
    if let Some(f) = fraction {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("a '.' must be followed by digits"));
        }
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        main[r]
            .bytes()
            .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'))
    };
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("no such time of day"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    let has_fraction = fraction.is_some_and(|f| f.bytes().any(|b| b != b'0'));
    let mut rfc3339 = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if let Some(f) = fraction {
        rfc3339.push('.');
        rfc3339.push_str(f);
    }
    rfc3339.push('Z');
    Ok(GenTime {
        secs,
        has_fraction,
        rfc3339,
    })
}

/// Unix seconds as RFC 3339 UTC (`2026-11-26T16:20:01Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times_parse_with_and_without_fractions() {
        let t = parse_generalized_time(b"20261126162001Z").unwrap();
        assert_eq!(t.secs, 1_795_710_001);
        assert_eq!(t.rfc3339, "2026-11-26T16:20:01Z");
        assert!(!t.has_fraction);
        let t = parse_generalized_time(b"20261126162001.25Z").unwrap();
        assert_eq!((t.secs, t.has_fraction), (1_795_710_001, true));
        assert_eq!(t.rfc3339, "2026-11-26T16:20:01.25Z");
        assert_eq!(rfc3339(1_795_710_001), "2026-11-26T16:20:01Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_generalized_time(b"20000229000000Z").unwrap().secs,
            951_782_400
        );
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn malformed_generalized_times_are_refused() {
        for bad in [
            &b""[..],
            b"Z",
            b"20261126162001",
            b"202611261620Z",
            b"20261126162001+0100",
            b"20261126162001.Z",
            b"20261126162001.x5Z",
            b"20261326162001Z",
            b"20260230162001Z",
            b"20261126242001Z",
            b"20261126162060Z",
            b"2026112616200\xffZ",
            b"+0261126162001Z",
        ] {
            assert!(parse_generalized_time(bad).is_err(), "{bad:?}");
        }
    }
}

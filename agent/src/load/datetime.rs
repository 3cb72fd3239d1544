//! ISO 8601 dates and timestamps to PostgreSQL's binary forms: days and
//! microseconds since 2000-01-01.
//!
//! Only ISO order is accepted (not the session's DateStyle), so a file means
//! the same thing whatever server it is loaded into. A `timestamptz` without
//! an offset is taken as UTC.

/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// `YYYY-MM-DD` (or ±infinity) as days since 2000-01-01.
pub fn parse_date(v: &[u8]) -> Option<i32> {
    if v.eq_ignore_ascii_case(b"infinity") {
        return Some(i32::MAX);
    }
    if v.eq_ignore_ascii_case(b"-infinity") {
        return Some(i32::MIN);
    }
    let (days, rest) = date_part(v)?;
    rest.is_empty().then(|| i32::try_from(days).ok())?
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.f...]]][Z|±HH[:MM]]` as microseconds since
/// 2000-01-01 (UTC for `with_tz`; an offset is ignored otherwise, like
/// PostgreSQL does for `timestamp`).
pub fn parse_timestamp(v: &[u8], with_tz: bool) -> Option<i64> {
    if v.eq_ignore_ascii_case(b"infinity") {
        return Some(i64::MAX);
    }
    if v.eq_ignore_ascii_case(b"-infinity") {
        return Some(i64::MIN);
    }
    let (days, mut rest) = date_part(v)?;
    let mut usecs = 0i64;
    if let Some((&sep, tail)) = rest.split_first()
        && (sep == b' ' || sep == b'T' || sep == b't')
        && tail.first().is_some_and(u8::is_ascii_digit)
    {
        let (t, r) = time_part(tail)?;
        usecs = t;
        rest = r;
    }
    let rest = rest.trim_ascii_start();
    let offset_secs = if rest.is_empty() { 0 } else { offset(rest)? };
    let local = days.checked_mul(USECS_PER_DAY)?.checked_add(usecs)?;
    if with_tz {
        local.checked_sub(offset_secs * 1_000_000)
    } else {
        Some(local)
    }
}

/// Date at the start of `v`: days since 2000-01-01 and what follows.
fn date_part(v: &[u8]) -> Option<(i64, &[u8])> {
    let (year, v) = digits(v, 4, 6)?;
    let v = v.strip_prefix(b"-")?;
    let (month, v) = digits(v, 2, 2)?;
    let v = v.strip_prefix(b"-")?;
    let (day, v) = digits(v, 2, 2)?;
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((days_from_civil(year, month, day) - PG_EPOCH_DAYS, v))
}

/// `HH:MM[:SS[.fraction]]` as microseconds, and what follows.
fn time_part(v: &[u8]) -> Option<(i64, &[u8])> {
    let (h, v) = digits(v, 1, 2)?;
    let v = v.strip_prefix(b":")?;
    let (m, mut v) = digits(v, 2, 2)?;
    let mut s = 0;
    let mut micros = 0i64;
    if let Some(r) = v.strip_prefix(b":") {
        let (sec, r) = digits(r, 2, 2)?;
        s = sec;
        v = r;
        if let Some(r) = v.strip_prefix(b".") {
            let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            let mut scale = 100_000i64;
            for &d in &r[..n.min(6)] {
                micros += i64::from(d - b'0') * scale;
                scale /= 10;
            }
            // PostgreSQL rounds to microseconds, half up.
            if n > 6 && r[6] >= b'5' {
                micros += 1;
            }
            v = &r[n..];
        }
    }
    let whole = h == 24 && m == 0 && s == 0 && micros == 0;
    if (h > 23 && !whole) || m > 59 || s > 59 {
        return None;
    }
    Some(((h * 3600 + m * 60 + s) * 1_000_000 + micros, v))
}

/// `Z`, `UTC`, `±HH`, `±HHMM` or `±HH:MM` as seconds east of UTC.
fn offset(v: &[u8]) -> Option<i64> {
    if v.eq_ignore_ascii_case(b"z") || v.eq_ignore_ascii_case(b"utc") {
        return Some(0);
    }
    let (sign, v) = match v.split_first()? {
        (b'+', r) => (1, r),
        (b'-', r) => (-1, r),
        _ => return None,
    };
    let (h, v) = digits(v, 2, 2)?;
    let v = v.strip_prefix(b":").unwrap_or(v);
    let m = if v.is_empty() {
        0
    } else {
        let (m, r) = digits(v, 2, 2)?;
        if !r.is_empty() {
            return None;
        }
        m
    };
    (h <= 15 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

/// Between `min` and `max` ASCII digits at the start of `v`.
fn digits(v: &[u8], min: usize, max: usize) -> Option<(i64, &[u8])> {
    let n = v
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n < min {
        return None;
    }
    let val = v[..n]
        .iter()
        .fold(0i64, |a, &d| a * 10 + i64::from(d - b'0'));
    Some((val, &v[n..]))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's method).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date(b"2000-01-01"), Some(0));
        assert_eq!(parse_date(b"1999-12-31"), Some(-1));
        assert_eq!(parse_date(b"2024-02-29"), Some(8825));
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_date(b"2024-13-01"), None);
        assert_eq!(parse_date(b"01/02/2024"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp(b"2000-01-01 00:00:01", false),
            Some(1_000_000)
        );
        assert_eq!(
            parse_timestamp(b"2000-01-01T00:00:00.5", false),
            Some(500_000)
        );
        assert_eq!(parse_timestamp(b"2000-01-01 01:00:00+01", true), Some(0));
        assert_eq!(parse_timestamp(b"2000-01-01 01:00:00+01:00", true), Some(0));
        assert_eq!(parse_timestamp(b"2000-01-01 00:00:00Z", true), Some(0));
        assert_eq!(parse_timestamp(b"2000-01-01", false), Some(0));
        assert_eq!(parse_timestamp(b"2000-01-01 25:00", false), None);
        assert_eq!(parse_timestamp(b"2000-01-01 10:00 nonsense", true), None);
    }
}

//! Dates in condition values: ISO 8601 (`2024-01-31`, `2024-01-31T12:00:00Z`,
//! with fractions and `±hh:mm` offsets) or epoch seconds.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 4).then(|| s.parse().ok()).flatten()
}

/// Seconds since the epoch (fractions dropped), or `None` if `s` is not a
/// date AWS accepts.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    if s.len() > 40 || !s.is_ascii() {
        return None;
    }
    let (date, time) = match s.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let (y, m, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(i64::from(y), m, d) * 86_400;
    if let Some(t) = time {
        let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0i64)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, off) = t.split_at(i);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':').unwrap_or((&off[1..], "0"));
            (c, sign * (i64::from(num(oh)?) * 3600 + i64::from(num(om)?) * 60))
        } else {
            (t, 0)
        };
        let clock = clock.split('.').next()?;
        let mut cp = clock.split(':');
        let h = num(cp.next()?)?;
        let mi = cp.next().map(num).unwrap_or(Some(0))?;
        let se = cp.next().map(num).unwrap_or(Some(0))?;
        if cp.next().is_some() || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs += i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se) - offset;
    }
    Some(secs)
}

/// `secs` as ISO 8601 UTC (`2024-01-31T12:00:00Z`), for `aws:CurrentTime`.
pub fn format_iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_date("2013-06-30T00:00:00Z"), Some(1_372_550_400));
        assert_eq!(parse_date("2013-06-30T02:00:00+02:00"), Some(1_372_550_400));
        assert_eq!(parse_date("2013-06-30T00:00:00.123Z"), Some(1_372_550_400));
        assert_eq!(parse_date("1372550400"), Some(1_372_550_400));
        for bad in ["", "2013-13-01", "2013-06", "yesterday", "2013-06-30T25:00:00Z", "2013-06-30T00:00:00+xx"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(format_iso8601(1_372_550_400), "2013-06-30T00:00:00Z");
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00Z");
        for t in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_date(&format_iso8601(t)), Some(t));
        }
    }
}

//! Timestamps on the S3 wire: SigV4's basic ISO 8601 (`20130524T000000Z`), HTTP dates
//! (`Tue, 15 Nov 1994 08:12:31 GMT`) and the millisecond ISO 8601 of XML listings.
//!
//! All conversions are proleptic Gregorian UTC on `i64` Unix seconds; nothing here
//! panics on any input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month 1..=12, day 1..=31)` of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            if leap {
                29
            } else {
                28
            }
        }
    }
}

/// Broken-down UTC time of Unix seconds.
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: i64,
    pub(crate) minute: i64,
    pub(crate) second: i64,
    weekday: usize,
}

pub(crate) fn civil(unix_secs: i64) -> Civil {
    let days = unix_secs.div_euclid(SECS_PER_DAY);
    let secs_of_day = unix_secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: secs_of_day / 3600,
        minute: secs_of_day % 3600 / 60,
        second: secs_of_day % 60,
        weekday: days.rem_euclid(7) as usize,
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, b| acc.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

/// Unix seconds of a validated civil date and time.
fn unix_from_parts(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60 admits a leap second, as RFC 3339 does; it folds into the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * SECS_PER_DAY + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second))
}

/// Parses SigV4's `YYYYMMDDTHHMMSSZ` into Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    unix_from_parts(
        i64::from(digits(&b[0..4])?),
        digits(&b[4..6])?,
        digits(&b[6..8])?,
        digits(&b[9..11])?,
        digits(&b[11..13])?,
        digits(&b[13..15])?,
    )
}

/// Formats Unix seconds as SigV4's `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(unix_secs: i64) -> String {
    let c = civil(unix_secs);
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

/// Parses an HTTP date in any of RFC 7231's three formats (IMF-fixdate, RFC 850,
/// asctime), and the RFC 1123/2822 form with a numeric or named UTC zone that older S3
/// clients send (`Tue, 27 Mar 2007 19:36:42 +0000`). Dates before 1970 are refused.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = httpdate::parse_http_date(s) {
        let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
        return i64::try_from(secs).ok();
    }
    parse_rfc1123_zoned(s).filter(|t| *t >= 0)
}

/// `[Day, ]D[D] Mon YYYY HH:MM:SS ZONE`, ZONE one of GMT, UT, UTC, Z or +hhmm/-hhmm.
fn parse_rfc1123_zoned(s: &str) -> Option<i64> {
    let s = s.split_once(", ").map_or(s, |(_, rest)| rest);
    let mut parts = s.split_ascii_whitespace();
    let day = digits(parts.next()?.as_bytes())?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month_name))? as u32 + 1;
    let year_text = parts.next()?;
    if year_text.len() != 4 {
        return None;
    }
    let year = i64::from(digits(year_text.as_bytes())?);
    let time = parts.next()?.as_bytes();
    if time.len() != 8 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(&time[0..2])?, digits(&time[3..5])?, digits(&time[6..8])?);
    let offset_secs = match parts.next()? {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        zone => {
            let b = zone.as_bytes();
            if b.len() != 5 || !(b[0] == b'+' || b[0] == b'-') {
                return None;
            }
            let (hh, mm) = (i64::from(digits(&b[1..3])?), i64::from(digits(&b[3..5])?));
            if hh > 23 || mm > 59 {
                return None;
            }
            let offset = hh * 3600 + mm * 60;
            if b[0] == b'+' {
                offset
            } else {
                -offset
            }
        }
    };
    if parts.next().is_some() {
        return None;
    }
    Some(unix_from_parts(year, month, day, hour, minute, second)? - offset_secs)
}

/// Formats Unix seconds as an IMF-fixdate: `Tue, 15 Nov 1994 08:12:31 GMT`.
pub fn format_http_date(unix_secs: i64) -> String {
    let c = civil(unix_secs);
    let month = MONTHS.get(c.month as usize - 1).copied().unwrap_or("Jan");
    if !(0..=9999).contains(&c.year) {
        return format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            WEEKDAYS[c.weekday], c.day, month, c.year, c.hour, c.minute, c.second
        );
    }
    // By hand: this is on every GET's path, and `format!` costs ten times more.
    let mut out = String::with_capacity(29);
    out.push_str(WEEKDAYS[c.weekday]);
    out.push_str(", ");
    push_digits(&mut out, c.day as u64, 2);
    out.push(' ');
    out.push_str(month);
    out.push(' ');
    push_digits(&mut out, c.year as u64, 4);
    out.push(' ');
    push_digits(&mut out, c.hour as u64, 2);
    out.push(':');
    push_digits(&mut out, c.minute as u64, 2);
    out.push(':');
    push_digits(&mut out, c.second as u64, 2);
    out.push_str(" GMT");
    out
}

/// Appends the last `width` decimal digits of `v`, zero-padded.
fn push_digits(out: &mut String, v: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (v / 10u64.pow(i) % 10) as u8));
    }
}

/// Formats Unix milliseconds as `2009-10-12T17:50:30.000Z` (XML listings).
pub fn format_iso8601_ms(unix_ms: i64) -> String {
    let c = civil(unix_ms.div_euclid(1000));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        unix_ms.rem_euclid(1000)
    )
}

/// Parses an ISO 8601 / RFC 3339 timestamp as S3 documents and headers carry
/// them (`2030-01-01T00:00:00Z`, `2030-01-01T00:00:00.123456Z`,
/// `2030-01-01T00:00:00+02:00`) into Unix milliseconds (fractions beyond
/// milliseconds are dropped).
pub fn parse_iso8601_ms(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let secs = unix_from_parts(
        i64::from(digits(&b[0..4])?),
        digits(&b[5..7])?,
        digits(&b[8..10])?,
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    )?;
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let mut ms = 0i64;
        for i in 0..3 {
            ms = ms * 10 + frac.get(i).filter(|_| i < n).map_or(0, |d| i64::from(d - b'0'));
        }
        millis = ms;
        rest = &frac[n..];
    }
    let offset_secs = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hh, mm) = (i64::from(digits(&[*h1, *h2])?), i64::from(digits(&[*m1, *m2])?));
            if hh > 23 || mm > 59 {
                return None;
            }
            let off = hh * 3600 + mm * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    (secs - offset_secs).checked_mul(1000)?.checked_add(millis)
}

fn since_epoch() -> Duration {
    // A clock before 1970 is a broken host; report the epoch rather than panic.
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `YYYY-mm-DD-HH-MM-SS` of Unix seconds (access-log object names).
pub fn format_log_stamp(unix_secs: i64) -> String {
    let c = civil(unix_secs);
    format!("{:04}-{:02}-{:02}-{:02}-{:02}-{:02}", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

/// Current time in Unix seconds.
pub fn now_unix_secs() -> i64 {
    i64::try_from(since_epoch().as_secs()).unwrap_or(i64::MAX)
}

/// Current time in Unix microseconds.
pub fn now_unix_micros() -> u64 {
    u64::try_from(since_epoch().as_micros()).unwrap_or(u64::MAX)
}

/// Current time in Unix milliseconds.
pub fn now_unix_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip() {
        for (text, secs) in [
            ("19700101T000000Z", 0),
            ("20130524T000000Z", 1_369_353_600),
            ("20150830T123600Z", 1_440_938_160),
            ("20000229T235959Z", 951_868_799),
            ("19691231T235959Z", -1),
        ] {
            assert_eq!(parse_amz_date(text), Some(secs), "{text}");
            assert_eq!(format_amz_date(secs), text);
        }
    }

    #[test]
    fn bad_amz_dates_are_refused() {
        for text in [
            "",
            "20130524T000000",
            "20130524 000000Z",
            "2013052AT000000Z",
            "20130230T000000Z",
            "20131301T000000Z",
            "20130524T240000Z",
            "20130524T006000Z",
            "+0130524T000000Z",
            "20130524T000000Zx",
            "２0130524T00000Z",
        ] {
            assert_eq!(parse_amz_date(text), None, "{text:?}");
        }
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let secs = 784_887_151;
        for text in
            ["Tue, 15 Nov 1994 08:12:31 GMT", "Tuesday, 15-Nov-94 08:12:31 GMT", "Tue Nov 15 08:12:31 1994"]
        {
            assert_eq!(parse_http_date(text), Some(secs), "{text}");
        }
        assert_eq!(format_http_date(secs), "Tue, 15 Nov 1994 08:12:31 GMT");
        assert_eq!(format_http_date(1_369_353_600), "Fri, 24 May 2013 00:00:00 GMT");
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Tue, 15 Nov 1994 08:12:31 +0000"), Some(secs));
        assert_eq!(parse_http_date("Tue, 15 Nov 1994 09:12:31 +0100"), Some(secs));
        assert_eq!(parse_http_date("Tue, 15 Nov 1994 08:12:31 UTC"), Some(secs));
        assert_eq!(parse_http_date("15 Nov 1994 08:12:31 GMT"), Some(secs));
        assert_eq!(parse_http_date("Tue, 15 Nov 1994 08:12:31 +2400"), None);
        assert_eq!(parse_http_date("Tue, 15 Nov 1994 08:12:31 +0000 x"), None);
        assert_eq!(parse_http_date("Tue, 15 Nov 94 08:12:31 +0000"), None);
    }

    #[test]
    fn iso8601_with_milliseconds() {
        assert_eq!(format_iso8601_ms(1_255_369_830_000), "2009-10-12T17:50:30.000Z");
        assert_eq!(format_iso8601_ms(1_255_369_830_042), "2009-10-12T17:50:30.042Z");
        assert_eq!(format_iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn iso8601_parsing() {
        let base = 1_893_456_000_000; // 2030-01-01T00:00:00Z
        let cases: &[(&str, Option<i64>)] = &[
            ("2030-01-01T00:00:00Z", Some(base)),
            ("2030-01-01T00:00:00.000Z", Some(base)),
            ("2030-01-01T00:00:00.5Z", Some(base + 500)),
            ("2030-01-01T00:00:00.123456Z", Some(base + 123)),
            ("2030-01-01T02:00:00+02:00", Some(base)),
            ("2029-12-31T23:00:00-01:00", Some(base)),
            ("2030-01-01 00:00:00Z", None),
            ("2030-01-01T00:00:00", None),
            ("2030-01-01T00:00:00.Z", None),
            ("2030-13-01T00:00:00Z", None),
            ("2030-01-01T00:00:00+2:00", None),
            ("", None),
            ("2030-01-01T00:00:00ZZ", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_iso8601_ms(s), *want, "{s}");
        }
        assert_eq!(parse_iso8601_ms(&format_iso8601_ms(base + 7)), Some(base + 7));
    }

    /// The hand-written formatting says what `format!` said, and reads back.
    #[test]
    fn http_date_formatting_matches_format_and_round_trips() {
        let mut secs = -62_135_596_800i64; // year 1
        while secs < 253_402_300_799 {
            let c = civil(secs);
            let month = MONTHS[c.month as usize - 1];
            let want = format!(
                "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
                WEEKDAYS[c.weekday], c.day, month, c.year, c.hour, c.minute, c.second
            );
            assert_eq!(format_http_date(secs), want);
            if secs >= 0 {
                assert_eq!(parse_http_date(&want), Some(secs), "{want}");
            }
            secs += 7_777_777;
        }
        assert_eq!(format_http_date(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        for secs in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            let _ = format_amz_date(secs);
            let _ = format_http_date(secs);
            let _ = format_iso8601_ms(secs);
        }
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now_unix_secs() > 1_577_836_800);
        assert!(now_unix_ms() / 1000 >= now_unix_secs() - 1);
    }
}

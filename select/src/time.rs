//! Timestamps as S3 Select has them: Ion timestamps with a precision and a
//! UTC offset; date arithmetic on the proleptic Gregorian calendar.

use crate::ast::DatePart;
use crate::error::{err, Code, Result};

/// How much of a timestamp was given (and is printed back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prec {
    Year,
    Month,
    Day,
    Minute,
    Second,
    /// Seconds with this many fraction digits (1..=9).
    Frac(u8),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ts {
    /// Seconds since 1970-01-01T00:00Z.
    pub secs: i64,
    pub nanos: u32,
    /// Offset of the local time from UTC, in minutes.
    pub offset_min: i32,
    pub prec: Prec,
}

/// Years accepted (Ion's range).
const MIN_YEAR: i64 = 1;
const MAX_YEAR: i64 = 9999;

pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Local calendar fields of a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let s = self.b.get(self.i..self.i + n)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(s.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32))
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

impl Ts {
    /// Parses an Ion timestamp (`2007T`, `2007-04T`, `2007-04-05[T]`,
    /// `2007-04-05T14:30Z`, `2007-04-05T14:30:15.123+01:00`), and the basic
    /// form `20070405T143015Z`. A time without an offset is UTC.
    pub fn parse(s: &str) -> Option<Ts> {
        let s = s.trim();
        let mut c = Cursor { b: s.as_bytes(), i: 0 };
        let year = c.digits(4)? as i64;
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return None;
        }
        let (month, day, mut prec);
        let basic = c.b.get(4).is_some_and(u8::is_ascii_digit);
        if basic {
            month = c.digits(2)?;
            day = c.digits(2)?;
            prec = Prec::Day;
        } else if c.eat(b'T') {
            return c.done().then(|| Ts::from_local(year, 1, 1, 0, 0, 0, 0, 0, Prec::Year)).flatten();
        } else if c.eat(b'-') {
            month = c.digits(2)?;
            if !c.eat(b'-') {
                return (c.eat(b'T') && c.done()).then(|| Ts::from_local(year, month, 1, 0, 0, 0, 0, 0, Prec::Month)).flatten();
            }
            day = c.digits(2)?;
            prec = Prec::Day;
        } else {
            return None;
        }
        let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0);
        let mut offset = 0i32;
        if c.eat(b'T') && !c.done() {
            hour = c.digits(2)?;
            if !basic && !c.eat(b':') {
                return None;
            }
            minute = c.digits(2)?;
            prec = Prec::Minute;
            if (basic && c.b.get(c.i).is_some_and(u8::is_ascii_digit)) || (!basic && c.eat(b':')) {
                second = c.digits(2)?;
                prec = Prec::Second;
                if c.eat(b'.') {
                    let start = c.i;
                    while c.b.get(c.i).is_some_and(u8::is_ascii_digit) {
                        c.i += 1;
                    }
                    let digits = &c.b[start..c.i];
                    if digits.is_empty() || digits.len() > 9 {
                        return None;
                    }
                    nanos = digits.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32) * 10u32.pow(9 - digits.len() as u32);
                    prec = Prec::Frac(digits.len() as u8);
                }
            }
            if c.eat(b'Z') || c.eat(b'z') {
            } else if c.b.get(c.i) == Some(&b'+') || c.b.get(c.i) == Some(&b'-') {
                let neg = c.b[c.i] == b'-';
                c.i += 1;
                let oh = c.digits(2)? as i32;
                c.eat(b':');
                let om = c.digits(2)? as i32;
                if oh > 23 || om > 59 {
                    return None;
                }
                offset = (oh * 60 + om) * if neg { -1 } else { 1 };
            }
        }
        if !c.done() {
            return None;
        }
        Ts::from_local(year, month, day, hour, minute, second, nanos, offset, prec)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn from_local(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32, offset_min: i32, prec: Prec) -> Option<Ts> {
        if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        let local = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + s) as i64;
        Some(Ts { secs: local - offset_min as i64 * 60, nanos, offset_min, prec })
    }

    pub fn fields(&self) -> Fields {
        let local = self.secs + self.offset_min as i64 * 60;
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400) as u32;
        Fields { year, month, day, hour: sod / 3600, minute: sod / 60 % 60, second: sod % 60 }
    }

    /// The instant, for ordering and equality.
    pub fn instant(&self) -> (i64, u32) {
        (self.secs, self.nanos)
    }

    pub fn format(&self) -> String {
        let f = self.fields();
        let mut out = format!("{:04}", f.year);
        match self.prec {
            Prec::Year => out.push('T'),
            Prec::Month => out.push_str(&format!("-{:02}T", f.month)),
            Prec::Day => out.push_str(&format!("-{:02}-{:02}T", f.month, f.day)),
            p => {
                out.push_str(&format!("-{:02}-{:02}T{:02}:{:02}", f.month, f.day, f.hour, f.minute));
                if p >= Prec::Second {
                    out.push_str(&format!(":{:02}", f.second));
                }
                if let Prec::Frac(n) = p {
                    let frac = format!("{:09}", self.nanos);
                    out.push('.');
                    out.push_str(&frac[..n as usize]);
                }
                out.push_str(&offset_text(self.offset_min, true, true));
            }
        }
        out
    }

    pub fn extract(&self, part: DatePart) -> i64 {
        let f = self.fields();
        match part {
            DatePart::Year => f.year,
            DatePart::Month => f.month as i64,
            DatePart::Day => f.day as i64,
            DatePart::Hour => f.hour as i64,
            DatePart::Minute => f.minute as i64,
            DatePart::Second => f.second as i64,
            DatePart::TimezoneHour => (self.offset_min / 60) as i64,
            DatePart::TimezoneMinute => (self.offset_min % 60) as i64,
        }
    }

    pub fn add(&self, part: DatePart, n: i64) -> Result<Ts> {
        let overflow = || crate::error::SelectError::new(Code::IntegerOverflow, "DATE_ADD overflows the timestamp range.");
        let out = match part {
            DatePart::Year | DatePart::Month => {
                let months = if part == DatePart::Year { n.checked_mul(12).ok_or_else(overflow)? } else { n };
                let f = self.fields();
                let total = (f.year * 12 + f.month as i64 - 1).checked_add(months).ok_or_else(overflow)?;
                let (y, m) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
                if !(MIN_YEAR..=MAX_YEAR).contains(&y) {
                    return Err(overflow());
                }
                let d = f.day.min(days_in_month(y, m));
                let prec = if part == DatePart::Year { self.prec } else { self.prec.max(Prec::Month) };
                Ts::from_local(y, m, d, f.hour, f.minute, f.second, self.nanos, self.offset_min, prec).ok_or_else(overflow)?
            }
            _ => {
                let (unit, prec) = match part {
                    DatePart::Day => (86_400, Prec::Day),
                    DatePart::Hour | DatePart::Minute => (if part == DatePart::Hour { 3600 } else { 60 }, Prec::Minute),
                    DatePart::Second => (1, Prec::Second),
                    _ => return err(Code::IllegalSqlFunctionArgument, "DATE_ADD can't add a time zone part."),
                };
                let secs = n.checked_mul(unit).and_then(|d| self.secs.checked_add(d)).ok_or_else(overflow)?;
                let t = Ts { secs, prec: self.prec.max(prec), ..*self };
                if !(MIN_YEAR..=MAX_YEAR).contains(&t.fields().year) {
                    return Err(overflow());
                }
                t
            }
        };
        Ok(out)
    }

    /// `DATE_DIFF(part, self, other)`: whole `part`s from self to other.
    pub fn diff(&self, part: DatePart, other: &Ts) -> Result<i64> {
        let (a, b) = (self.fields_utc(), other.fields_utc());
        let months = |f: &Fields| f.year * 12 + f.month as i64;
        let rest = |f: &Fields, ns: u32| (f.day, f.hour, f.minute, f.second, ns);
        Ok(match part {
            DatePart::Year | DatePart::Month => {
                let mut m = months(&b) - months(&a);
                if m > 0 && rest(&b, other.nanos) < rest(&a, self.nanos) {
                    m -= 1;
                } else if m < 0 && rest(&b, other.nanos) > rest(&a, self.nanos) {
                    m += 1;
                }
                if part == DatePart::Year { m / 12 } else { m }
            }
            DatePart::Day => (other.secs - self.secs) / 86_400,
            DatePart::Hour => (other.secs - self.secs) / 3600,
            DatePart::Minute => (other.secs - self.secs) / 60,
            DatePart::Second => other.secs - self.secs,
            _ => return err(Code::IllegalSqlFunctionArgument, "DATE_DIFF can't count time zone parts."),
        })
    }

    fn fields_utc(&self) -> Fields {
        Ts { offset_min: 0, ..*self }.fields()
    }

    /// `TO_STRING(ts, pattern)` with the Java-style pattern letters AWS documents.
    pub fn to_string_pattern(&self, pattern: &str) -> Result<String> {
        const MONTHS: [&str; 12] = [
            "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
            "December",
        ];
        let f = self.fields();
        let chars: Vec<char> = pattern.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '\'' {
                    out.push(chars[j]);
                    j += 1;
                }
                if j == i + 1 && chars.get(j) == Some(&'\'') {
                    out.push('\'');
                }
                i = j + 1;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                out.push(c);
                i += 1;
                continue;
            }
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            i += n;
            let num = |v: i64, width: usize| format!("{v:0width$}");
            let h12 = |h: u32| if h % 12 == 0 { 12 } else { h % 12 } as i64;
            let piece = match (c, n) {
                ('y', 2) => num(f.year % 100, 2),
                ('y', _) => num(f.year, n),
                ('M', 1 | 2) => num(f.month as i64, n),
                ('M', 3) => MONTHS[f.month as usize - 1][..3].to_string(),
                ('M', 4) => MONTHS[f.month as usize - 1].to_string(),
                ('M', 5) => MONTHS[f.month as usize - 1][..1].to_string(),
                ('d', 1 | 2) => num(f.day as i64, n),
                ('a', 1) => (if f.hour < 12 { "AM" } else { "PM" }).to_string(),
                ('h', 1 | 2) => num(h12(f.hour), n),
                ('H', 1 | 2) => num(f.hour as i64, n),
                ('m', 1 | 2) => num(f.minute as i64, n),
                ('s', 1 | 2) => num(f.second as i64, n),
                ('S', 1..=9) => format!("{:09}", self.nanos)[..n].to_string(),
                ('n', _) => self.nanos.to_string(),
                ('X', 1..=5) if self.offset_min == 0 => "Z".to_string(),
                ('X' | 'x', 1) => offset_hours(self.offset_min),
                ('X' | 'x', 2 | 4) => offset_text(self.offset_min, false, false),
                ('X' | 'x', 3 | 5) => offset_text(self.offset_min, false, true),
                _ => {
                    return err(
                        Code::EvaluatorInvalidTimestampFormatPattern,
                        format!("Invalid timestamp format pattern letter {c:?}."),
                    )
                }
            };
            out.push_str(&piece);
        }
        Ok(out)
    }
}

fn offset_hours(off: i32) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    let (h, m) = (off.abs() / 60, off.abs() % 60);
    if m == 0 {
        format!("{sign}{h:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

/// `Z` (when `z` and the offset is 0), else `+hh:mm` / `+hhmm`.
fn offset_text(off: i32, z: bool, colon: bool) -> String {
    if z && off == 0 {
        return "Z".to_string();
    }
    let sign = if off < 0 { '-' } else { '+' };
    let (h, m) = (off.abs() / 60, off.abs() % 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        for s in ["2007T", "2007-04T", "2007-04-05T", "2007-04-05T14:30Z", "2007-04-05T14:30:15Z", "2007-04-05T14:30:15.120+01:30", "1969-12-31T23:59:59-08:00"] {
            assert_eq!(Ts::parse(s).unwrap().format(), s);
        }
        assert_eq!(Ts::parse("2007-04-05").unwrap().format(), "2007-04-05T");
        assert_eq!(Ts::parse("19551203T142540Z").unwrap().format(), "1955-12-03T14:25:40Z");
        for bad in ["", "2007", "07T", "2007-13T", "2007-02-30T", "2007-04-05T25:00Z", "2007-04-05T14:30:15.Z", "0000T", "2007-04-05Tx"] {
            assert!(Ts::parse(bad).is_none(), "{bad}");
        }
        let a = Ts::parse("2020-01-01T00:00+01:00").unwrap();
        let b = Ts::parse("2019-12-31T23:00Z").unwrap();
        assert_eq!(a.instant(), b.instant());
        assert_eq!(a.extract(DatePart::Year), 2020);
        assert_eq!(b.extract(DatePart::Year), 2019);
        assert_eq!(a.extract(DatePart::TimezoneHour), 1);
    }

    #[test]
    fn arithmetic() {
        let t = Ts::parse("2020-01-31T10:00Z").unwrap();
        assert_eq!(t.add(DatePart::Month, 1).unwrap().format(), "2020-02-29T10:00Z");
        assert_eq!(t.add(DatePart::Year, -1).unwrap().format(), "2019-01-31T10:00Z");
        assert_eq!(t.add(DatePart::Hour, 15).unwrap().format(), "2020-02-01T01:00Z");
        assert_eq!(t.add(DatePart::Second, 5).unwrap().format(), "2020-01-31T10:00:05Z");
        assert_eq!(t.add(DatePart::Year, 8000).unwrap_err().code, Code::IntegerOverflow);
        let u = Ts::parse("2021-01-30T10:00Z").unwrap();
        assert_eq!(t.diff(DatePart::Year, &u).unwrap(), 0);
        assert_eq!(t.diff(DatePart::Month, &u).unwrap(), 11);
        assert_eq!(t.diff(DatePart::Day, &u).unwrap(), 365);
        assert_eq!(u.diff(DatePart::Month, &t).unwrap(), -11);
        for (d, _) in [(0i64, 0)] {
            assert_eq!(civil_from_days(d), (1970, 1, 1));
        }
        for z in [-1_000_000i64, -1, 0, 59, 60, 365, 10_957, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn patterns() {
        let t = Ts::parse("2007-04-05T14:30:15.123-07:00").unwrap();
        assert_eq!(t.to_string_pattern("yyyy-MM-dd'T'HH:mm:ss.SSSXXX").unwrap(), "2007-04-05T14:30:15.123-07:00");
        assert_eq!(t.to_string_pattern("MMMM d, y h:m a").unwrap(), "April 5, 2007 2:30 PM");
        assert_eq!(t.to_string_pattern("x").unwrap(), "-07");
        assert_eq!(t.to_string_pattern("q").unwrap_err().code, Code::EvaluatorInvalidTimestampFormatPattern);
        assert_eq!(Ts::parse("2007T").unwrap().to_string_pattern("X").unwrap(), "Z");
    }
}

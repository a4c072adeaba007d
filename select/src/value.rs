//! Values during evaluation. Strings borrow from the input batch (or the
//! query) wherever they can: a row is never copied to be filtered.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::ast::Type;
use crate::error::{err, Code, Result, SelectError};
pub use crate::time::Ts;

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// An absent field (PartiQL's MISSING): printed as nothing.
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Ts(Ts),
    /// A JSON array or object of the input.
    Json(&'a serde_json::Value),
}

/// A number, as strings are read in arithmetic and comparisons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// Parses a number the way CSV fields are read: surrounding blanks allowed.
pub fn parse_num(s: &str) -> Option<Num> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Num::Int(i));
    }
    // Rust's float parser takes "inf"/"nan": only plain decimal notation here.
    if t.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E')) {
        return t.parse::<f64>().ok().map(Num::Float);
    }
    None
}

impl<'a> Value<'a> {
    pub fn str(s: &'a str) -> Value<'a> {
        Value::Str(Cow::Borrowed(s))
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Null | Value::Missing)
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Missing => "MISSING",
            Value::Null => "NULL",
            Value::Bool(_) => "BOOL",
            Value::Int(_) => "INT",
            Value::Float(_) => "FLOAT",
            Value::Str(_) => "STRING",
            Value::Ts(_) => "TIMESTAMP",
            Value::Json(v) if v.is_array() => "LIST",
            Value::Json(_) => "STRUCT",
        }
    }

    /// A JSON scalar as a value; arrays and objects stay JSON.
    pub fn from_json(v: &'a serde_json::Value) -> Value<'a> {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::str(s),
            other => Value::Json(other),
        }
    }

    pub fn num(&self) -> Option<Num> {
        match self {
            Value::Int(i) => Some(Num::Int(*i)),
            Value::Float(f) => Some(Num::Float(*f)),
            Value::Str(s) => parse_num(s),
            _ => None,
        }
    }

    /// Three-valued truth: `None` is unknown (NULL, MISSING).
    pub fn truth(&self) -> Result<Option<bool>> {
        match self {
            Value::Bool(b) => Ok(Some(*b)),
            Value::Null | Value::Missing => Ok(None),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            other => err(
                Code::IncorrectSqlFunctionArgumentType,
                format!("A {} value is used where a BOOL is expected.", other.type_name()),
            ),
        }
    }

    /// Compares two values; `None` when either is absent or they can't be
    /// compared (a string that isn't a number against a number).
    pub fn compare(&self, other: &Value<'_>) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Missing | Null, _) | (_, Missing | Null) => None,
            (Str(a), Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Ts(a), Ts(b)) => a.instant().partial_cmp(&b.instant()),
            (Ts(a), Str(s)) => crate::time::Ts::parse(s).and_then(|b| a.instant().partial_cmp(&b.instant())),
            (Str(s), Ts(b)) => crate::time::Ts::parse(s).and_then(|a| a.instant().partial_cmp(&b.instant())),
            (Bool(a), Str(s)) => str_bool(s).map(|b| a.cmp(&b)),
            (Str(s), Bool(b)) => str_bool(s).map(|a| a.cmp(b)),
            (Json(a), Json(b)) => (a == b).then_some(Ordering::Equal),
            (a, b) => {
                let (x, y) = (a.num()?, b.num()?);
                match (x, y) {
                    (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
                    (x, y) => x.f64().partial_cmp(&y.f64()),
                }
            }
        }
    }

    /// Converts to `t` (CAST).
    pub fn cast(self, t: Type) -> Result<Value<'a>> {
        if self.is_absent() {
            return Ok(self);
        }
        let failed = |v: &Value<'_>| {
            SelectError::new(
                Code::CastFailed,
                format!("Can't cast {} {} to {t:?}.", v.type_name(), SelectError::quote(&v.to_text())).to_uppercase_type(),
            )
        };
        Ok(match t {
            Type::String => match self {
                Value::Str(_) => self,
                other => Value::Str(Cow::Owned(other.to_text())),
            },
            Type::Int => match &self {
                Value::Int(_) => self,
                Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Value::Int(f.trunc() as i64),
                Value::Bool(b) => Value::Int(*b as i64),
                Value::Str(s) => match parse_num(s) {
                    Some(Num::Int(i)) => Value::Int(i),
                    Some(Num::Float(f)) if f.is_finite() && f.abs() < 9.2e18 => Value::Int(f.trunc() as i64),
                    _ => return Err(failed(&self)),
                },
                _ => return Err(failed(&self)),
            },
            Type::Float | Type::Decimal => match &self {
                Value::Float(_) => self,
                Value::Int(i) => Value::Float(*i as f64),
                Value::Bool(b) => Value::Float(*b as i64 as f64),
                Value::Str(s) => match parse_num(s) {
                    Some(n) => Value::Float(n.f64()),
                    None => return Err(failed(&self)),
                },
                _ => return Err(failed(&self)),
            },
            Type::Bool => match &self {
                Value::Bool(_) => self,
                Value::Int(i) => Value::Bool(*i != 0),
                Value::Float(f) => Value::Bool(*f != 0.0),
                Value::Str(s) => match str_bool(s) {
                    Some(b) => Value::Bool(b),
                    None => match parse_num(s) {
                        Some(n) => Value::Bool(n.f64() != 0.0),
                        None => return Err(failed(&self)),
                    },
                },
                _ => return Err(failed(&self)),
            },
            Type::Timestamp => match &self {
                Value::Ts(_) => self,
                Value::Str(s) => match crate::time::Ts::parse(s) {
                    Some(t) => Value::Ts(t),
                    None => return Err(failed(&self)),
                },
                _ => return Err(failed(&self)),
            },
        })
    }

    /// The value as CSV output prints it (absent values print nothing).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }

    pub fn write_text(&self, out: &mut String) {
        match self {
            Value::Missing | Value::Null => {}
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            Value::Float(f) => write_float(out, *f),
            Value::Str(s) => out.push_str(s),
            Value::Ts(t) => out.push_str(&t.format()),
            Value::Json(v) => out.push_str(&v.to_string()),
        }
    }

    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Missing => Value::Missing,
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Ts(t) => Value::Ts(t),
            // Aggregates never hold containers: MIN/MAX over JSON
            // containers keep their text.
            Value::Json(v) => Value::Str(Cow::Owned(v.to_string())),
        }
    }
}

trait UpperType {
    fn to_uppercase_type(self) -> String;
}

impl UpperType for String {
    /// `Int` → `INT` in messages built with `{:?}` of a type.
    fn to_uppercase_type(self) -> String {
        match self.rfind(" to ") {
            Some(i) => format!("{}{}", &self[..i + 4], self[i + 4..].to_ascii_uppercase()),
            None => self,
        }
    }
}

fn str_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Floats print as the shortest text that reads back the same; integral
/// values keep a `.0` so they read as floats.
pub fn write_float(out: &mut String, f: f64) {
    let _ = write_float_to(out, f);
}

/// Text of at most `N` bytes, written by `core::fmt` without allocating.
pub struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    pub fn new() -> Self {
        StackText { buf: [0; N], len: 0 }
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `write_float` into any `fmt::Write` (a `StackText` fails on the
/// longest texts: callers then write into a `String`).
pub fn write_float_to(out: &mut impl std::fmt::Write, f: f64) -> std::fmt::Result {
    if f == f.trunc() && f.abs() < 1e16 {
        // An integer below 2^63: its digits, as `{:.1}` prints them.
        if f == 0.0 && f.is_sign_negative() {
            return out.write_str("-0.0");
        }
        out.write_str(itoa::Buffer::new().format(f as i64))?;
        return out.write_str(".0");
    }
    if f.is_finite() && ryu_agrees(f) {
        let mut b = ryu::Buffer::new();
        let t = b.format_finite(f);
        if !t.as_bytes().contains(&b'e') {
            return out.write_str(t);
        }
    }
    write_float_fmt(out, f)
}

/// Whether ryu's shortest digits are certainly those of `{}`. Both give the
/// shortest text that reads back as `f`, the one closest to `f`; they differ
/// only when two such texts of n <= 17 significant digits are equally close
/// (ryu takes the even one), and then `f`'s exact decimal expansion has n + 1
/// significant digits. `f` = m * 2^-k (m odd) has at least k - 5 of them
/// when `f` >= 1e-5 (smaller values are written by `core::fmt`): with
/// k >= 24 no tie is possible (nor a text on the rounding interval's edge,
/// which needs k + 1 fractional bits).
#[inline]
fn ryu_agrees(f: f64) -> bool {
    let bits = f.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1 << 52) - 1);
    let (m, e) = if exp == 0 { (mantissa, 1 - 1075) } else { (mantissa | (1 << 52), exp - 1075) };
    m != 0 && -(e + m.trailing_zeros() as i32) >= 24
}

/// `write_float_to` by `core::fmt` only: the reference.
fn write_float_fmt(out: &mut impl std::fmt::Write, f: f64) -> std::fmt::Result {
    if f.is_nan() {
        out.write_str("NaN")
    } else if f.is_infinite() {
        out.write_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else if f == f.trunc() && f.abs() < 1e16 {
        write!(out, "{f:.1}")
    } else {
        write!(out, "{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_text_is_core_fmt() {
        // ryu and itoa where they print what `core::fmt` prints, for every
        // kind of double: random bits, short decimals, exact ties
        // (m * 2^-k with few k), integers, halves.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut by_ryu = 0;
        let mut check = |f: f64| {
            by_ryu += (f.is_finite() && f != f.trunc() && ryu_agrees(f)) as usize;
            let (mut a, mut b) = (String::new(), String::new());
            let _ = write_float_to(&mut a, f);
            let _ = write_float_fmt(&mut b, f);
            assert_eq!(a, b, "{:e} ({:#x})", f, f.to_bits());
        };
        for f in [0.0, -0.0, 1.0, -1.0, 0.1, 1e15, 1e16, 9.999999999999998e15, 1e-5, 1e-4, 1.5e-5, 123456.789, f64::MAX, f64::MIN_POSITIVE, 5e-324, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2.0f64.powi(53), 1.0 / 3.0, f64::from_bits(0x42e9_e3df_a9fe_0284)] {
            check(f);
        }
        for i in 0..2_000_000u64 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let f = match i % 6 {
                0 => f64::from_bits(r),
                1 => (r % 2_000_000) as f64 / [7.0, 8.0, 10.0, 1000.0, 3.0][(r % 5) as usize] - 1000.0,
                2 => (r >> 11) as f64 * 10f64.powi((r % 60) as i32 - 40),
                3 => (r >> (r % 40)) as f64 / 2f64.powi((r % 40) as i32),
                4 => (r >> 11) as f64 / 2f64.powi((r % 70) as i32),
                _ => (r % 100_000) as f64 * 10f64.powi((r % 24) as i32 - 8),
            };
            check(f);
            check(-f);
        }
        assert!(by_ryu > 1_000_000, "{by_ryu}");
    }

    #[test]
    fn float_text_on_the_stack() {
        for f in [0.0, -0.0, 1.5, 1e15, 1e16, 1.0 / 3.0, -2.5e-7, f64::NAN, f64::INFINITY, f64::MAX, 5e-324] {
            let mut a = String::new();
            write_float(&mut a, f);
            let mut b = StackText::<40>::new();
            match write_float_to(&mut b, f) {
                Ok(()) => assert_eq!(b.as_str(), a),
                Err(_) => assert!(a.len() > 40, "{a}"),
            }
        }
    }

    #[test]
    fn compare_and_cast() {
        let s = |x: &'static str| Value::str(x);
        assert_eq!(s("10").compare(&Value::Int(9)), Some(Ordering::Greater));
        assert_eq!(s("abc").compare(&Value::Int(9)), None);
        assert_eq!(s("abc").compare(&s("abd")), Some(Ordering::Less));
        assert_eq!(Value::Float(1.5).compare(&Value::Int(1)), Some(Ordering::Greater));
        assert_eq!(Value::Null.compare(&Value::Null), None);
        assert_eq!(s(" 42 ").cast(Type::Int).unwrap(), Value::Int(42));
        assert_eq!(s("4.7").cast(Type::Int).unwrap(), Value::Int(4));
        assert_eq!(s("x").cast(Type::Int).unwrap_err().code, Code::CastFailed);
        assert_eq!(s("inf").cast(Type::Float).unwrap_err().code, Code::CastFailed);
        assert_eq!(s("1").cast(Type::Bool).unwrap(), Value::Bool(true));
        assert_eq!(Value::Int(0).cast(Type::Bool).unwrap(), Value::Bool(false));
        assert_eq!(Value::Null.cast(Type::Int).unwrap(), Value::Null);
        assert!(matches!(s("2020-01-01T").cast(Type::Timestamp).unwrap(), Value::Ts(_)));
        let e = s("x").cast(Type::Int).unwrap_err();
        assert!(e.message.ends_with("to INT."), "{}", e.message);
    }

    #[test]
    fn text() {
        assert_eq!(Value::Float(2.0).to_text(), "2.0");
        assert_eq!(Value::Float(0.1).to_text(), "0.1");
        assert_eq!(Value::Float(1e300).to_text(), format!("{}", 1e300));
        assert_eq!(Value::Bool(true).to_text(), "true");
        assert_eq!(Value::Null.to_text(), "");
    }
}

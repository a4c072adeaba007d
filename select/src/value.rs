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
        use std::fmt::Write;
        match self {
            Value::Missing | Value::Null => {}
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
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
    use std::fmt::Write;
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else if f == f.trunc() && f.abs() < 1e16 {
        let _ = write!(out, "{f:.1}");
    } else {
        let _ = write!(out, "{f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

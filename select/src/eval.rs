//! Evaluation of bound expressions over one row.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::ast::*;
use crate::error::{err, Code, Result, SelectError};
use crate::like::LikePattern;
use crate::value::{Num, Ts, Value};

/// One input record as the evaluator sees it.
#[derive(Clone, Copy)]
pub enum Row<'a> {
    /// CSV fields (strings) in order.
    Csv(&'a [&'a str]),
    Json(&'a serde_json::Value),
    /// Typed columns (Parquet), in the order of the file's schema projection.
    Values(&'a [Value<'a>]),
}

/// What evaluation needs besides the row.
pub struct Env<'q> {
    pub now: Ts,
    /// Final aggregate values, once the scan is over.
    pub aggs: &'q [Value<'static>],
}

fn name_matches(key: &str, name: &str, quoted: bool) -> bool {
    if quoted {
        key == name
    } else {
        key.eq_ignore_ascii_case(name)
    }
}

/// Navigates `steps` from a JSON value.
pub fn json_path<'a>(mut v: &'a serde_json::Value, steps: &[PathStep], top: bool) -> Value<'a> {
    for (i, step) in steps.iter().enumerate() {
        match (step, v) {
            (PathStep::Name { name, quoted }, serde_json::Value::Object(m)) => {
                let found = m.get(name.as_str()).or_else(|| {
                    if *quoted {
                        None
                    } else {
                        m.iter().find(|(k, _)| name_matches(k, name, false)).map(|(_, v)| v)
                    }
                });
                match found {
                    Some(x) => v = x,
                    // Ceph's clients name the record `_1`: when the record
                    // has no such member, `_1` is the record itself.
                    None if top && i == 0 && !quoted && name == "_1" => {}
                    None => return Value::Missing,
                }
            }
            (PathStep::Index(n), serde_json::Value::Array(a)) => match usize::try_from(*n).ok().and_then(|n| a.get(n)) {
                Some(x) => v = x,
                None => return Value::Missing,
            },
            _ => return Value::Missing,
        }
    }
    Value::from_json(v)
}

fn field<'a>(f: &'a Field, row: &Row<'a>) -> Value<'a> {
    match (f, row) {
        (Field::Missing, _) => Value::Missing,
        (Field::Column(i, rest), Row::Csv(fields)) => match fields.get(*i) {
            Some(s) if rest.is_empty() => Value::str(s),
            _ => Value::Missing,
        },
        (Field::Column(i, rest), Row::Values(vals)) => match vals.get(*i) {
            Some(v) if rest.is_empty() => v.clone(),
            Some(Value::Json(j)) => json_path(j, rest, false),
            _ => Value::Missing,
        },
        (Field::Path(steps), Row::Json(rec)) => json_path(rec, steps, true),
        _ => Value::Missing,
    }
}

fn num_err(op: &str, v: &Value<'_>) -> SelectError {
    SelectError::new(
        Code::IncorrectSqlFunctionArgumentType,
        format!("{op} needs numbers, not {} {}.", v.type_name(), SelectError::quote(&v.to_text())),
    )
}

fn arith<'a>(op: BinOp, a: Value<'a>, b: Value<'a>) -> Result<Value<'a>> {
    if a.is_absent() || b.is_absent() {
        return Ok(if matches!(a, Value::Missing) || matches!(b, Value::Missing) { Value::Missing } else { Value::Null });
    }
    let sym = match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        _ => "%",
    };
    let x = a.num().ok_or_else(|| num_err(sym, &a))?;
    let y = b.num().ok_or_else(|| num_err(sym, &b))?;
    let overflow = || SelectError::new(Code::IntegerOverflow, format!("Integer overflow in {sym}."));
    Ok(match (x, y) {
        (Num::Int(x), Num::Int(y)) => Value::Int(match op {
            BinOp::Add => x.checked_add(y).ok_or_else(overflow)?,
            BinOp::Sub => x.checked_sub(y).ok_or_else(overflow)?,
            BinOp::Mul => x.checked_mul(y).ok_or_else(overflow)?,
            BinOp::Div if y == 0 => return err(Code::DivisionByZero, "Division by zero."),
            BinOp::Div => x.checked_div(y).ok_or_else(overflow)?,
            _ if y == 0 => return err(Code::DivisionByZero, "Division by zero."),
            _ => x.checked_rem(y).ok_or_else(overflow)?,
        }),
        (x, y) => {
            let (x, y) = (x.f64(), y.f64());
            Value::Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div if y == 0.0 => return err(Code::DivisionByZero, "Division by zero."),
                BinOp::Div => x / y,
                _ if y == 0.0 => return err(Code::DivisionByZero, "Division by zero."),
                _ => x % y,
            })
        }
    })
}

fn cmp_op(op: BinOp, o: Option<Ordering>) -> Value<'static> {
    match o {
        None => Value::Null,
        Some(o) => Value::Bool(match op {
            BinOp::Eq => o == Ordering::Equal,
            BinOp::Ne => o != Ordering::Equal,
            BinOp::Lt => o == Ordering::Less,
            BinOp::Le => o != Ordering::Greater,
            BinOp::Gt => o == Ordering::Greater,
            _ => o != Ordering::Less,
        }),
    }
}

fn string_arg<'a>(what: &str, v: &Value<'a>) -> Result<Option<Cow<'a, str>>> {
    match v {
        Value::Null | Value::Missing => Ok(None),
        Value::Str(s) => Ok(Some(s.clone())),
        other => err(
            Code::IncorrectSqlFunctionArgumentType,
            format!("{what} takes a string, not {}.", other.type_name()),
        ),
    }
}

fn int_arg(what: &str, v: &Value<'_>) -> Result<Option<i64>> {
    match v {
        Value::Null | Value::Missing => Ok(None),
        Value::Int(i) => Ok(Some(*i)),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(*f as i64)),
        Value::Str(s) => match crate::value::parse_num(s) {
            Some(Num::Int(i)) => Ok(Some(i)),
            _ => err(Code::IncorrectSqlFunctionArgumentType, format!("{what} takes an integer.")),
        },
        _ => err(Code::IncorrectSqlFunctionArgumentType, format!("{what} takes an integer.")),
    }
}

fn ts_arg(what: &str, v: &Value<'_>) -> Result<Option<Ts>> {
    match v {
        Value::Null | Value::Missing => Ok(None),
        Value::Ts(t) => Ok(Some(*t)),
        Value::Str(s) => Ts::parse(s)
            .map(Some)
            .ok_or_else(|| SelectError::new(Code::CastFailed, format!("{what}: {} is not a timestamp.", SelectError::quote(s)))),
        other => err(Code::IncorrectSqlFunctionArgumentType, format!("{what} takes a timestamp, not {}.", other.type_name())),
    }
}

fn date_part(v: &Expr) -> Result<DatePart> {
    let Expr::Str(s) = v else { return err(Code::InternalError, "date part") };
    Ok(match s.as_str() {
        "Year" => DatePart::Year,
        "Month" => DatePart::Month,
        "Day" => DatePart::Day,
        "Hour" => DatePart::Hour,
        "Minute" => DatePart::Minute,
        "Second" => DatePart::Second,
        "TimezoneHour" => DatePart::TimezoneHour,
        _ => DatePart::TimezoneMinute,
    })
}

/// SQL SUBSTRING: 1-based; a start before 1 eats into the length.
fn substring<'a>(s: Cow<'a, str>, start: i64, len: Option<i64>) -> Result<Value<'a>> {
    let end = match len {
        Some(l) if l < 0 => return err(Code::IllegalSqlFunctionArgument, "SUBSTRING length can't be negative."),
        Some(l) => Some(start.saturating_add(l)),
        None => None,
    };
    let from = start.max(1) as usize - 1;
    let to = end.map(|e| e.max(1) as usize - 1);
    let mut it = s.char_indices().map(|(i, _)| i).chain(std::iter::once(s.len()));
    let total = s.chars().count();
    let (from, to) = (from.min(total), to.map_or(total, |t| t.min(total)).max(from.min(total)));
    let byte_from = it.nth(from).unwrap_or(s.len());
    let byte_to = if to == from { byte_from } else { it.nth(to - from - 1).unwrap_or(s.len()) };
    Ok(match s {
        Cow::Borrowed(b) => Value::Str(Cow::Borrowed(&b[byte_from..byte_to])),
        Cow::Owned(o) => Value::Str(Cow::Owned(o[byte_from..byte_to].to_string())),
    })
}

fn trim<'a>(s: Cow<'a, str>, spec: TrimSpec, chars: Option<&str>) -> Value<'a> {
    let set: Vec<char> = chars.map_or_else(|| vec![' '], |c| c.chars().collect());
    let pred = |c: char| set.contains(&c);
    let cut = |t: &'a str| -> &'a str {
        match spec {
            TrimSpec::Both => t.trim_matches(pred),
            TrimSpec::Leading => t.trim_start_matches(pred),
            TrimSpec::Trailing => t.trim_end_matches(pred),
        }
    };
    match s {
        Cow::Borrowed(b) => Value::str(cut(b)),
        Cow::Owned(o) => {
            let t = match spec {
                TrimSpec::Both => o.trim_matches(pred),
                TrimSpec::Leading => o.trim_start_matches(pred),
                TrimSpec::Trailing => o.trim_end_matches(pred),
            };
            Value::Str(Cow::Owned(t.to_string()))
        }
    }
}

pub fn eval<'a>(e: &'a Expr, row: &Row<'a>, env: &Env<'_>) -> Result<Value<'a>> {
    Ok(match e {
        Expr::Null => Value::Null,
        Expr::Missing => Value::Missing,
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Int(i) => Value::Int(*i),
        Expr::Float(f) => Value::Float(*f),
        Expr::Str(s) => Value::str(s),
        Expr::Timestamp(t) => Value::Ts(*t),
        Expr::Path(_) => return err(Code::InternalError, "unbound path"),
        Expr::Field(f) => field(f, row),
        Expr::Unary(UnOp::Not, a) => match eval(a, row, env)?.truth()? {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        },
        Expr::Unary(UnOp::Neg, a) => arith(BinOp::Sub, Value::Int(0), eval(a, row, env)?)?,
        Expr::Binary(BinOp::And, a, b) => {
            let x = eval(a, row, env)?.truth()?;
            if x == Some(false) {
                return Ok(Value::Bool(false));
            }
            match (x, eval(b, row, env)?.truth()?) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        Expr::Binary(BinOp::Or, a, b) => {
            let x = eval(a, row, env)?.truth()?;
            if x == Some(true) {
                return Ok(Value::Bool(true));
            }
            match (x, eval(b, row, env)?.truth()?) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        Expr::Binary(op @ (BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge), a, b) => {
            let (x, y) = (eval(a, row, env)?, eval(b, row, env)?);
            cmp_op(*op, x.compare(&y))
        }
        Expr::Binary(BinOp::Concat, a, b) => {
            let (x, y) = (eval(a, row, env)?, eval(b, row, env)?);
            if x.is_absent() || y.is_absent() {
                return Ok(Value::Null);
            }
            let mut s = x.to_text();
            y.write_text(&mut s);
            Value::Str(Cow::Owned(s))
        }
        Expr::Binary(op, a, b) => arith(*op, eval(a, row, env)?, eval(b, row, env)?)?,
        Expr::Like { expr, pattern, escape, negated } => {
            let s = eval(expr, row, env)?;
            let p = eval(pattern, row, env)?;
            let esc = match escape {
                Some(x) => Some(eval(x, row, env)?),
                None => None,
            };
            let (Some(s), Some(p)) = (string_arg("LIKE", &s)?, string_arg("LIKE", &p)?) else { return Ok(Value::Null) };
            let esc = match &esc {
                Some(v) => match string_arg("ESCAPE", v)? {
                    Some(e) => Some(e),
                    None => return Ok(Value::Null),
                },
                None => None,
            };
            let m = LikePattern::compile(&p, esc.as_deref())?.matches(&s);
            Value::Bool(m != *negated)
        }
        Expr::LikeCompiled { expr, pattern, negated } => match string_arg("LIKE", &eval(expr, row, env)?)? {
            Some(s) => Value::Bool(pattern.matches(&s) != *negated),
            None => Value::Null,
        },
        Expr::Between { expr, lo, hi, negated } => {
            let x = eval(expr, row, env)?;
            let (l, h) = (eval(lo, row, env)?, eval(hi, row, env)?);
            let ge = cmp_op(BinOp::Ge, x.compare(&l)).truth()?;
            let le = cmp_op(BinOp::Le, x.compare(&h)).truth()?;
            match (ge, le) {
                (Some(false), _) | (_, Some(false)) => Value::Bool(*negated),
                (Some(true), Some(true)) => Value::Bool(!*negated),
                _ => Value::Null,
            }
        }
        Expr::In { expr, list, negated } => {
            let x = eval(expr, row, env)?;
            if x.is_absent() {
                return Ok(Value::Null);
            }
            let mut unknown = false;
            for item in list {
                match x.compare(&eval(item, row, env)?) {
                    Some(Ordering::Equal) => return Ok(Value::Bool(!*negated)),
                    None => unknown = true,
                    _ => {}
                }
            }
            if unknown {
                Value::Null
            } else {
                Value::Bool(*negated)
            }
        }
        Expr::Is { expr, what, negated } => {
            let v = eval(expr, row, env)?;
            let r = match what {
                IsWhat::Null => v.is_absent(),
                IsWhat::Missing => matches!(v, Value::Missing),
                IsWhat::True => v.truth().ok().flatten() == Some(true),
                IsWhat::False => v.truth().ok().flatten() == Some(false),
            };
            Value::Bool(r != *negated)
        }
        Expr::Cast(a, t) => eval(a, row, env)?.cast(*t)?,
        Expr::Case { operand, whens, otherwise } => {
            let subject = match operand {
                Some(o) => Some(eval(o, row, env)?),
                None => None,
            };
            for (w, then) in whens {
                let c = eval(w, row, env)?;
                let hit = match &subject {
                    Some(s) => s.compare(&c) == Some(Ordering::Equal),
                    None => c.truth()? == Some(true),
                };
                if hit {
                    return eval(then, row, env);
                }
            }
            match otherwise {
                Some(o) => eval(o, row, env)?,
                None => Value::Null,
            }
        }
        Expr::Call(f, args) => call(*f, args, row, env)?,
        Expr::Extract(part, a) => match ts_arg("EXTRACT", &eval(a, row, env)?)? {
            Some(t) => Value::Int(t.extract(*part)),
            None => Value::Null,
        },
        Expr::Trim { spec, chars, expr } => {
            let s = eval(expr, row, env)?;
            let c = match chars {
                Some(c) => match string_arg("TRIM", &eval(c, row, env)?)? {
                    Some(c) => Some(c),
                    None => return Ok(Value::Null),
                },
                None => None,
            };
            match string_arg("TRIM", &s)? {
                Some(s) => trim(s, *spec, c.as_deref()),
                None => Value::Null,
            }
        }
        Expr::Agg { slot, .. } => match env.aggs.get(*slot) {
            Some(v) => v.clone(),
            None => return err(Code::InternalError, "aggregate used per row"),
        },
    })
}

fn call<'a>(f: Func, args: &'a [Expr], row: &Row<'a>, env: &Env<'_>) -> Result<Value<'a>> {
    let arg = |i: usize| -> Result<Value<'a>> {
        match args.get(i) {
            Some(a) => eval(a, row, env),
            None => Ok(Value::Missing),
        }
    };
    Ok(match f {
        Func::Lower | Func::Upper => match string_arg("LOWER/UPPER", &arg(0)?)? {
            Some(s) => Value::Str(Cow::Owned(if f == Func::Lower { s.to_lowercase() } else { s.to_uppercase() })),
            None => Value::Null,
        },
        Func::CharLength => match string_arg("CHAR_LENGTH", &arg(0)?)? {
            Some(s) => Value::Int(s.chars().count() as i64),
            None => Value::Null,
        },
        Func::Substring => {
            let s = string_arg("SUBSTRING", &arg(0)?)?;
            let start = int_arg("SUBSTRING", &arg(1)?)?;
            let len = if args.len() > 2 {
                match int_arg("SUBSTRING", &arg(2)?)? {
                    Some(l) => Some(l),
                    None => return Ok(Value::Null),
                }
            } else {
                None
            };
            match (s, start) {
                (Some(s), Some(start)) => substring(s, start, len)?,
                _ => Value::Null,
            }
        }
        Func::Coalesce => {
            for a in args {
                let v = eval(a, row, env)?;
                if !v.is_absent() {
                    return Ok(v);
                }
            }
            Value::Null
        }
        Func::NullIf => {
            let (a, b) = (arg(0)?, arg(1)?);
            if a.compare(&b) == Some(Ordering::Equal) {
                Value::Null
            } else {
                a
            }
        }
        Func::ToTimestamp => match ts_arg("TO_TIMESTAMP", &arg(0)?)? {
            Some(t) => Value::Ts(t),
            None => Value::Null,
        },
        Func::ToString => {
            let t = ts_arg("TO_STRING", &arg(0)?)?;
            let p = string_arg("TO_STRING", &arg(1)?)?;
            match (t, p) {
                (Some(t), Some(p)) => Value::Str(Cow::Owned(t.to_string_pattern(&p)?)),
                _ => Value::Null,
            }
        }
        Func::UtcNow => Value::Ts(env.now),
        Func::DateAdd => {
            let part = date_part(&args[0])?;
            let n = int_arg("DATE_ADD", &arg(1)?)?;
            match (n, ts_arg("DATE_ADD", &arg(2)?)?) {
                (Some(n), Some(t)) => Value::Ts(t.add(part, n)?),
                _ => Value::Null,
            }
        }
        Func::DateDiff => {
            let part = date_part(&args[0])?;
            match (ts_arg("DATE_DIFF", &arg(1)?)?, ts_arg("DATE_DIFF", &arg(2)?)?) {
                (Some(a), Some(b)) => Value::Int(a.diff(part, &b)?),
                _ => Value::Null,
            }
        }
    })
}

/// Whether a WHERE clause keeps the row: only TRUE does.
pub fn keeps(filter: Option<&Expr>, row: &Row<'_>, env: &Env<'_>) -> Result<bool> {
    match filter {
        None => Ok(true),
        Some(f) => Ok(eval(f, row, env)?.truth()? == Some(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substrings() {
        let s = |x: &'static str, a, l| substring(Cow::Borrowed(x), a, l).unwrap().to_text();
        assert_eq!(s("hello", 2, Some(3)), "ell");
        assert_eq!(s("hello", 0, Some(3)), "he");
        assert_eq!(s("hello", -5, Some(3)), "");
        assert_eq!(s("hello", 4, None), "lo");
        assert_eq!(s("hello", 9, None), "");
        assert_eq!(s("héllo", 2, Some(2)), "él");
        assert_eq!(s("hello", 1, Some(0)), "");
        assert!(substring(Cow::Borrowed("x"), 1, Some(-1)).is_err());
    }
}

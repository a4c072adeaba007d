//! Vectorised WHERE: the filter is compiled once into a tree of kernels
//! that each run over a whole batch of rows (a selection vector of row
//! numbers), instead of walking the expression tree per row.
//!
//! The row evaluator (`eval.rs`) stays the reference. Only the shapes
//! whose semantics are plain are compiled (a field, optionally CAST,
//! compared with constants; AND/OR/NOT; IS [NOT] NULL/MISSING; BETWEEN;
//! IN; LIKE with a literal pattern). Each kernel computes exactly what
//! `eval` computes, through the same `Value::compare`/`cast`, with fast
//! paths that give the same answers on the common inputs (ASCII integers).
//! Anything a kernel can't answer the same way — a CAST that fails, LIKE
//! over a non-string, a field the batch can't produce — makes the whole
//! batch fall back to the row evaluator, which then raises the error at
//! the same row, after the same output, as it always did.

use std::cmp::Ordering;

use crate::ast::{BinOp, Expr, Field, IsWhat, Type, UnOp};
use crate::like::LikePattern;
use crate::value::Value;

/// Per-row truth of a predicate (three-valued).
pub const FALSE: u8 = 0;
pub const TRUE: u8 = 1;
pub const UNKNOWN: u8 = 2;

/// A batch can't be answered by the kernels: run it through the row path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback;

/// A field of the record, optionally CAST.
#[derive(Debug, Clone)]
pub struct Operand {
    pub field: Field,
    pub cast: Option<Type>,
}

#[derive(Debug, Clone)]
pub enum Pred {
    /// `x op k`, or `k op x` when `flip`.
    Cmp { x: Operand, op: BinOp, k: Value<'static>, flip: bool },
    Between { x: Operand, lo: Value<'static>, hi: Value<'static>, negated: bool },
    In { x: Operand, list: Vec<Value<'static>>, negated: bool },
    /// IS [NOT] NULL / MISSING.
    Is { x: Operand, missing: bool, negated: bool },
    Like { x: Operand, pattern: LikePattern, negated: bool },
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
}

/// What a batch offers the kernels.
pub trait Batch {
    /// The value of `field` in row `r`, as the row evaluator would see it;
    /// None when this batch can't tell (the batch falls back).
    fn value(&self, field: &Field, r: usize) -> Option<Value<'_>>;

    /// A typed column of 64-bit integers, for the tightest kernels.
    fn ints(&self, _field: &Field) -> Option<&arrow_array::Int64Array> {
        None
    }
}

fn constant(e: &Expr) -> Option<Value<'static>> {
    Some(match e {
        Expr::Null => Value::Null,
        Expr::Missing => Value::Missing,
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Int(i) => Value::Int(*i),
        Expr::Float(f) => Value::Float(*f),
        Expr::Str(s) => Value::Str(s.clone().into()),
        Expr::Timestamp(t) => Value::Ts(*t),
        // `-1` parses as a negation; eval computes it as 0 - x.
        Expr::Unary(UnOp::Neg, a) => match constant(a)? {
            Value::Int(i) => Value::Int(0i64.checked_sub(i)?),
            Value::Float(f) => Value::Float(0.0 - f),
            _ => return None,
        },
        _ => return None,
    })
}

fn operand(e: &Expr) -> Option<Operand> {
    match e {
        Expr::Field(f @ (Field::Column(..) | Field::Path(_) | Field::Missing)) => Some(Operand { field: f.clone(), cast: None }),
        Expr::Cast(a, t) => match &**a {
            Expr::Field(f) => Some(Operand { field: f.clone(), cast: Some(*t) }),
            _ => None,
        },
        _ => None,
    }
}

/// Compiles a bound WHERE clause; None when some part has no kernel (the
/// whole filter then runs row by row).
pub fn compile(e: &Expr) -> Option<Pred> {
    Some(match e {
        Expr::Binary(BinOp::And, a, b) => Pred::And(Box::new(compile(a)?), Box::new(compile(b)?)),
        Expr::Binary(BinOp::Or, a, b) => Pred::Or(Box::new(compile(a)?), Box::new(compile(b)?)),
        Expr::Unary(UnOp::Not, a) => Pred::Not(Box::new(compile(a)?)),
        Expr::Binary(op @ (BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge), a, b) => {
            match (operand(a), constant(b)) {
                (Some(x), Some(k)) => Pred::Cmp { x, op: *op, k, flip: false },
                _ => Pred::Cmp { x: operand(b)?, op: *op, k: constant(a)?, flip: true },
            }
        }
        Expr::Between { expr, lo, hi, negated } => {
            Pred::Between { x: operand(expr)?, lo: constant(lo)?, hi: constant(hi)?, negated: *negated }
        }
        Expr::In { expr, list, negated } => {
            Pred::In { x: operand(expr)?, list: list.iter().map(constant).collect::<Option<_>>()?, negated: *negated }
        }
        Expr::Is { expr, what: what @ (IsWhat::Null | IsWhat::Missing), negated } => {
            Pred::Is { x: operand(expr)?, missing: *what == IsWhat::Missing, negated: *negated }
        }
        Expr::LikeCompiled { expr, pattern, negated } => {
            Pred::Like { x: operand(expr)?, pattern: pattern.clone(), negated: *negated }
        }
        _ => return None,
    })
}

/// An ASCII decimal integer as `str::parse::<i64>` reads it, for the
/// common case only (optional '-', 1..=18 digits: no overflow possible).
#[inline]
fn fast_int(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as i64;
    }
    Some(if neg { -v } else { v })
}

/// The operand's value in row `r`: `Err` when the batch must fall back.
#[inline]
fn operand_value<'b, B: Batch + ?Sized>(b: &'b B, x: &Operand, r: usize) -> Result<Value<'b>, Fallback> {
    let v = b.value(&x.field, r).ok_or(Fallback)?;
    match x.cast {
        None => Ok(v),
        // The common CAST of a text integer, without `parse_num`'s trim.
        Some(Type::Int) => match &v {
            Value::Str(s) => match fast_int(s) {
                Some(i) => Ok(Value::Int(i)),
                None => v.cast(Type::Int).map_err(|_| Fallback),
            },
            _ => v.cast(Type::Int).map_err(|_| Fallback),
        },
        Some(t) => v.cast(t).map_err(|_| Fallback),
    }
}

/// `Value::compare`, with the text-vs-integer case read without allocating.
#[inline]
fn compare(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Str(s), Value::Int(k)) => match fast_int(s) {
            Some(i) => Some(i.cmp(k)),
            None => a.compare(b),
        },
        (Value::Int(i), Value::Int(k)) => Some(i.cmp(k)),
        _ => a.compare(b),
    }
}

#[inline]
fn cmp_truth(op: BinOp, o: Option<Ordering>) -> u8 {
    let Some(o) = o else { return UNKNOWN };
    let t = match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::Ne => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::Le => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    };
    t as u8
}

/// Evaluates `p` for the rows in `rows`, writing `out[r]` for each.
pub fn eval<B: Batch + ?Sized>(p: &Pred, b: &B, rows: &[u32], out: &mut [u8]) -> Result<(), Fallback> {
    match p {
        Pred::Cmp { x, op, k, flip } => {
            if let (None, false, Value::Int(k), Some(col)) = (x.cast, flip, k, b.ints(&x.field)) {
                use arrow_array::Array;
                let vals = col.values();
                for &r in rows {
                    let r = r as usize;
                    out[r] = if col.is_null(r) { UNKNOWN } else { cmp_truth(*op, Some(vals[r].cmp(k))) };
                }
                return Ok(());
            }
            for &r in rows {
                let v = operand_value(b, x, r as usize)?;
                let o = if *flip { compare(k, &v) } else { compare(&v, k) };
                out[r as usize] = cmp_truth(*op, o);
            }
        }
        Pred::Between { x, lo, hi, negated } => {
            for &r in rows {
                let v = operand_value(b, x, r as usize)?;
                let ge = cmp_truth(BinOp::Ge, compare(&v, lo));
                let le = cmp_truth(BinOp::Le, compare(&v, hi));
                out[r as usize] = match (ge, le) {
                    (FALSE, _) | (_, FALSE) => *negated as u8,
                    (TRUE, TRUE) => !*negated as u8,
                    _ => UNKNOWN,
                };
            }
        }
        Pred::In { x, list, negated } => {
            for &r in rows {
                let v = operand_value(b, x, r as usize)?;
                out[r as usize] = if v.is_absent() {
                    UNKNOWN
                } else {
                    let mut t = None;
                    let mut unknown = false;
                    for k in list {
                        match compare(&v, k) {
                            Some(Ordering::Equal) => {
                                t = Some(!*negated as u8);
                                break;
                            }
                            None => unknown = true,
                            _ => {}
                        }
                    }
                    t.unwrap_or(if unknown { UNKNOWN } else { *negated as u8 })
                };
            }
        }
        Pred::Is { x, missing, negated } => {
            for &r in rows {
                let v = operand_value(b, x, r as usize)?;
                let hit = if *missing { matches!(v, Value::Missing) } else { v.is_absent() };
                out[r as usize] = (hit != *negated) as u8;
            }
        }
        Pred::Like { x, pattern, negated } => {
            for &r in rows {
                out[r as usize] = match operand_value(b, x, r as usize)? {
                    Value::Null | Value::Missing => UNKNOWN,
                    Value::Str(s) => (pattern.matches(&s) != *negated) as u8,
                    // eval raises IncorrectSqlFunctionArgumentType here.
                    _ => return Err(Fallback),
                };
            }
        }
        Pred::Not(a) => {
            eval(a, b, rows, out)?;
            for &r in rows {
                let t = &mut out[r as usize];
                *t = match *t {
                    TRUE => FALSE,
                    FALSE => TRUE,
                    _ => UNKNOWN,
                };
            }
        }
        Pred::And(x, y) | Pred::Or(x, y) => {
            let and = matches!(p, Pred::And(..));
            eval(x, b, rows, out)?;
            // eval's short circuit: the right side only where the left
            // doesn't decide (so its errors arise on the same rows).
            let decided = if and { FALSE } else { TRUE };
            let rest: Vec<u32> = rows.iter().copied().filter(|&r| out[r as usize] != decided).collect();
            if rest.is_empty() {
                return Ok(());
            }
            let mut right = vec![UNKNOWN; out.len()];
            eval(y, b, &rest, &mut right)?;
            for &r in &rest {
                let (l, rt) = (out[r as usize], right[r as usize]);
                out[r as usize] = if and {
                    match (l, rt) {
                        (_, FALSE) => FALSE,
                        (TRUE, TRUE) => TRUE,
                        _ => UNKNOWN,
                    }
                } else {
                    match (l, rt) {
                        (_, TRUE) => TRUE,
                        (FALSE, FALSE) => FALSE,
                        _ => UNKNOWN,
                    }
                };
            }
        }
    }
    Ok(())
}

/// The rows of a batch of `n` that the filter keeps (TRUE only), in order.
pub fn select<B: Batch + ?Sized>(p: &Pred, b: &B, n: usize, kept: &mut Vec<u32>) -> Result<(), Fallback> {
    let rows: Vec<u32> = (0..n as u32).collect();
    let mut out = vec![UNKNOWN; n];
    eval(p, b, &rows, &mut out)?;
    #[cfg(test)]
    KERNEL_BATCHES.with(|c| c.set(c.get() + 1));
    kept.clear();
    kept.extend(rows.iter().copied().filter(|&r| out[r as usize] == TRUE));
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Tests run the same scan with and without the kernels.
    static DISABLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Batches the kernels answered (tests check they aren't bypassed).
    pub static KERNEL_BATCHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Turns the kernels off on this thread (tests: the row path as reference).
#[cfg(test)]
pub fn set_disabled(off: bool) {
    DISABLED.with(|d| d.set(off));
}

/// Whether queries bound now get kernels.
pub fn enabled() -> bool {
    #[cfg(test)]
    if DISABLED.with(|d| d.get()) {
        return false;
    }
    true
}

/// Whether a parsed number is read the same by `fast_int` (for tests).
#[cfg(test)]
fn parse_agrees(s: &str) -> bool {
    match fast_int(s) {
        Some(i) => crate::value::parse_num(s) == Some(crate::value::Num::Int(i)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_int_agrees_with_parse_num() {
        for s in ["0", "-0", "12", "-12", "007", "123456789012345678", "1234567890123456789", "", "-", "+1", " 1", "1 ", "1.0", "٣"] {
            assert!(parse_agrees(s), "{s:?}");
        }
        assert_eq!(fast_int("-42"), Some(-42));
        assert_eq!(fast_int("1234567890123456789"), None);
    }
}

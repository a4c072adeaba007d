//! Aggregate accumulators (COUNT, SUM, AVG, MIN, MAX).

use std::cmp::Ordering;

use crate::ast::AggKind;
use crate::error::{Code, Result, SelectError};
use crate::value::{Num, Value};

#[derive(Debug, Clone)]
pub enum Acc {
    Count(u64),
    Sum { int: i128, float: f64, is_float: bool, any: bool },
    Avg { sum: f64, n: u64 },
    Min(Option<Value<'static>>),
    Max(Option<Value<'static>>),
}

fn number(what: &str, v: &Value<'_>) -> Result<Num> {
    v.num().ok_or_else(|| {
        SelectError::new(
            Code::IncorrectSqlFunctionArgumentType,
            format!("{what} needs numbers, not {} {}.", v.type_name(), SelectError::quote(&v.to_text())),
        )
    })
}

fn keep_if(cur: &mut Option<Value<'static>>, v: Value<'_>, want: Ordering) {
    let replace = match cur {
        None => true,
        Some(c) => v.compare(c) == Some(want),
    };
    if replace {
        *cur = Some(v.into_owned());
    }
}

impl Acc {
    pub fn new(kind: AggKind) -> Acc {
        match kind {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum { int: 0, float: 0.0, is_float: false, any: false },
            AggKind::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
        }
    }

    /// Adds one row's value; `None` is COUNT(*)'s row without a value.
    pub fn update(&mut self, v: Option<Value<'_>>) -> Result<()> {
        let v = match v {
            None => {
                if let Acc::Count(n) = self {
                    *n += 1;
                }
                return Ok(());
            }
            Some(v) if v.is_absent() => return Ok(()),
            Some(v) => v,
        };
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum { int, float, is_float, any } => {
                *any = true;
                match number("SUM", &v)? {
                    Num::Int(i) if !*is_float => {
                        *int += i as i128;
                    }
                    n => {
                        if !*is_float {
                            *is_float = true;
                            *float = *int as f64;
                        }
                        *float += n.f64();
                    }
                }
            }
            Acc::Avg { sum, n } => {
                *sum += number("AVG", &v)?.f64();
                *n += 1;
            }
            Acc::Min(cur) => keep_if(cur, v, Ordering::Less),
            Acc::Max(cur) => keep_if(cur, v, Ordering::Greater),
        }
        Ok(())
    }

    pub fn finish(&self) -> Value<'static> {
        match self {
            Acc::Count(n) => Value::Int(*n as i64),
            Acc::Sum { any: false, .. } => Value::Null,
            Acc::Sum { float, is_float: true, .. } => Value::Float(*float),
            Acc::Sum { int, .. } => match i64::try_from(*int) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Float(*int as f64),
            },
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg { sum, n } => Value::Float(sum / *n as f64),
            Acc::Min(v) | Acc::Max(v) => v.clone().unwrap_or(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulate() {
        let run = |k: AggKind, vals: Vec<Option<Value<'static>>>| {
            let mut a = Acc::new(k);
            for v in vals {
                a.update(v).unwrap();
            }
            a.finish()
        };
        let s = |x: &'static str| Some(Value::str(x));
        assert_eq!(run(AggKind::Count, vec![None, None, Some(Value::Null)]), Value::Int(2));
        assert_eq!(run(AggKind::Sum, vec![s("1"), s("2"), Some(Value::Null)]), Value::Int(3));
        assert_eq!(run(AggKind::Sum, vec![s("1"), s("2.5")]), Value::Float(3.5));
        assert_eq!(run(AggKind::Sum, vec![Some(Value::Int(i64::MAX)), Some(Value::Int(1))]), Value::Float(i64::MAX as f64 + 1.0));
        assert_eq!(run(AggKind::Sum, vec![]), Value::Null);
        assert_eq!(run(AggKind::Avg, vec![s("1"), s("2")]), Value::Float(1.5));
        assert_eq!(run(AggKind::Min, vec![Some(Value::Int(3)), Some(Value::Int(-1)), Some(Value::Null)]), Value::Int(-1));
        assert_eq!(run(AggKind::Max, vec![s("b"), s("a")]), Value::str("b"));
        let mut a = Acc::new(AggKind::Sum);
        assert_eq!(a.update(s("x")).unwrap_err().code, Code::IncorrectSqlFunctionArgumentType);
    }
}

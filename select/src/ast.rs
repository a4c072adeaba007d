//! The parsed query. Paths stay unresolved until the input's columns are
//! known (a CSV header arrives with the data); `plan` binds them.

use crate::time::Ts;

#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    /// `.name`; `quoted` names match case-sensitively.
    Name { name: String, quoted: bool },
    Index(i64),
    Wildcard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int,
    Float,
    Decimal,
    String,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    TimezoneHour,
    TimezoneMinute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimSpec {
    Both,
    Leading,
    Trailing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsWhat {
    Null,
    Missing,
    True,
    False,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    CharLength,
    Substring,
    Coalesce,
    NullIf,
    ToTimestamp,
    ToString,
    UtcNow,
    DateAdd,
    DateDiff,
}

/// A field of the current record, once bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The i-th column (CSV, Parquet), then `rest` into nested values.
    Column(usize, Vec<PathStep>),
    /// A path into the record (JSON); empty = the record itself.
    Path(Vec<PathStep>),
    /// Never present (an unknown CSV column).
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Null,
    Missing,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Timestamp(Ts),
    /// An unresolved reference: the steps as written.
    Path(Vec<PathStep>),
    Field(Field),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Like { expr: Box<Expr>, pattern: Box<Expr>, escape: Option<Box<Expr>>, negated: bool },
    /// LIKE with a literal pattern, compiled once when the query is bound.
    LikeCompiled { expr: Box<Expr>, pattern: crate::like::LikePattern, negated: bool },
    Between { expr: Box<Expr>, lo: Box<Expr>, hi: Box<Expr>, negated: bool },
    In { expr: Box<Expr>, list: Vec<Expr>, negated: bool },
    Is { expr: Box<Expr>, what: IsWhat, negated: bool },
    Cast(Box<Expr>, Type),
    Case { operand: Option<Box<Expr>>, whens: Vec<(Expr, Expr)>, otherwise: Option<Box<Expr>> },
    Call(Func, Vec<Expr>),
    Extract(DatePart, Box<Expr>),
    Trim { spec: TrimSpec, chars: Option<Box<Expr>>, expr: Box<Expr> },
    /// An aggregate; `arg` None is `COUNT(*)`. `slot` numbers the
    /// aggregates of the query in order.
    Agg { kind: AggKind, arg: Option<Box<Expr>>, slot: usize },
}

impl Expr {
    /// The direct sub-expressions.
    pub fn children(&self) -> Vec<&Expr> {
        let mut out: Vec<&Expr> = Vec::new();
        match self {
            Expr::Unary(_, a)
            | Expr::Cast(a, _)
            | Expr::Extract(_, a)
            | Expr::Is { expr: a, .. }
            | Expr::LikeCompiled { expr: a, .. } => out.push(a),
            Expr::Binary(_, a, b) => out.extend([&**a, &**b]),
            Expr::Like { expr, pattern, escape, .. } => {
                out.extend([&**expr, &**pattern]);
                out.extend(escape.as_deref());
            }
            Expr::Between { expr, lo, hi, .. } => out.extend([&**expr, &**lo, &**hi]),
            Expr::In { expr, list, .. } => {
                out.push(expr);
                out.extend(list.iter());
            }
            Expr::Case { operand, whens, otherwise } => {
                out.extend(operand.as_deref());
                for (a, b) in whens {
                    out.extend([a, b]);
                }
                out.extend(otherwise.as_deref());
            }
            Expr::Call(_, args) => out.extend(args.iter()),
            Expr::Trim { chars, expr, .. } => {
                out.extend(chars.as_deref());
                out.push(expr);
            }
            Expr::Agg { arg: Some(a), .. } => out.push(a),
            _ => {}
        }
        out
    }

    /// Visits every sub-expression, depth first, `self` included.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        f(self);
        for c in self.children() {
            c.walk(f);
        }
    }

    /// Rewrites every sub-expression bottom-up with `f`.
    pub fn map(self, f: &mut dyn FnMut(Expr) -> crate::error::Result<Expr>) -> crate::error::Result<Expr> {
        let b = |e: Box<Expr>, f: &mut dyn FnMut(Expr) -> crate::error::Result<Expr>| e.map(f).map(Box::new);
        let e = match self {
            Expr::Unary(op, a) => Expr::Unary(op, b(a, f)?),
            Expr::Cast(a, t) => Expr::Cast(b(a, f)?, t),
            Expr::Extract(p, a) => Expr::Extract(p, b(a, f)?),
            Expr::Binary(op, x, y) => Expr::Binary(op, b(x, f)?, b(y, f)?),
            Expr::Like { expr, pattern, escape, negated } => Expr::Like {
                expr: b(expr, f)?,
                pattern: b(pattern, f)?,
                escape: escape.map(|e| b(e, f)).transpose()?,
                negated,
            },
            Expr::LikeCompiled { expr, pattern, negated } => Expr::LikeCompiled { expr: b(expr, f)?, pattern, negated },
            Expr::Between { expr, lo, hi, negated } => {
                Expr::Between { expr: b(expr, f)?, lo: b(lo, f)?, hi: b(hi, f)?, negated }
            }
            Expr::In { expr, list, negated } => Expr::In {
                expr: b(expr, f)?,
                list: list.into_iter().map(|e| e.map(f)).collect::<crate::error::Result<_>>()?,
                negated,
            },
            Expr::Is { expr, what, negated } => Expr::Is { expr: b(expr, f)?, what, negated },
            Expr::Case { operand, whens, otherwise } => Expr::Case {
                operand: operand.map(|e| b(e, f)).transpose()?,
                whens: whens
                    .into_iter()
                    .map(|(x, y)| Ok((x.map(f)?, y.map(f)?)))
                    .collect::<crate::error::Result<_>>()?,
                otherwise: otherwise.map(|e| b(e, f)).transpose()?,
            },
            Expr::Call(func, args) => {
                Expr::Call(func, args.into_iter().map(|e| e.map(f)).collect::<crate::error::Result<_>>()?)
            }
            Expr::Trim { spec, chars, expr } => {
                Expr::Trim { spec, chars: chars.map(|e| b(e, f)).transpose()?, expr: b(expr, f)? }
            }
            Expr::Agg { kind, arg, slot } => Expr::Agg { kind, arg: arg.map(|e| b(e, f)).transpose()?, slot },
            other => other,
        };
        f(e)
    }

    pub fn has_agg(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Agg { .. }));
        found
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub expr: Expr,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    Star,
    Items(Vec<SelectItem>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub projection: Projection,
    /// Steps after `S3Object` in FROM (JSON paths).
    pub from_path: Vec<PathStep>,
    pub alias: Option<String>,
    pub filter: Option<Expr>,
    pub limit: Option<u64>,
    /// Number of aggregate slots (0: not an aggregate query).
    pub aggregates: usize,
}

//! Recursive-descent parser for S3 Select's SQL: one SELECT over
//! `S3Object`, with AWS's error codes.
//!
//! Besides AWS's dialect it accepts what Ceph's s3select clients send when
//! it cannot mean anything else: `stdin` for `S3Object` and the functions
//! `int(x)` / `float(x)` (CAST AS INT / FLOAT).

use crate::ast::*;
use crate::error::{err, Code, Result, SelectError};
use crate::lexer::{lex, Tok, Token};
use crate::time::Ts;

/// Deepest nesting of expressions (parentheses, operators, calls): the
/// parser and the evaluator recurse, and the stack must not overflow.
pub const MAX_EXPRESSION_DEPTH: usize = 128;
/// Most items in a SELECT list and values in an IN list.
pub const MAX_LIST_ITEMS: usize = 10_000;

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "LIMIT", "AS", "IS", "NULL", "MISSING", "TRUE", "FALSE", "LIKE",
    "ESCAPE", "BETWEEN", "IN", "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "GROUP", "ORDER", "BY", "HAVING",
    "JOIN", "UNION", "DISTINCT",
];

fn reserved(s: &str) -> bool {
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(s))
}

pub fn parse(sql: &str) -> Result<Query> {
    let toks = lex(sql)?;
    let mut p = Parser { toks, i: 0, depth: 0, aggs: 0, in_agg: false, end_pos: sql.len() };
    p.query()
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    aggs: usize,
    in_agg: bool,
    end_pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.i + n).map(|t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end_pos, |t| t.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).map(|t| t.tok.clone());
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    fn unexpected<T>(&self) -> Result<T> {
        match self.peek() {
            Some(Tok::Ident(s)) if reserved(s) => err(
                Code::ParseUnexpectedKeyword,
                format!("Unexpected keyword {} at position {}.", s.to_ascii_uppercase(), self.pos()),
            ),
            Some(t) => err(
                Code::ParseUnexpectedToken,
                format!("Unexpected token {} at position {}.", SelectError::quote(&t.describe()), self.pos()),
            ),
            None => err(Code::ParseUnexpectedToken, "Unexpected end of the expression.".to_string()),
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            return Ok(());
        }
        if self.peek().is_none() {
            return err(Code::ParseExpectedKeyword, format!("Expected keyword {kw} at the end of the expression."));
        }
        err(Code::ParseExpectedKeyword, format!("Expected keyword {kw} at position {}.", self.pos()))
    }

    fn expect_op(&mut self, op: &str) -> Result<()> {
        if self.eat_op(op) {
            return Ok(());
        }
        let code = match op {
            "," => Code::ParseExpectedArgumentDelimiter,
            ")" => Code::ParseExpectedRightParenBuiltinFunctionCall,
            "(" => Code::ParseExpectedLeftParenBuiltinFunctionCall,
            _ => Code::ParseExpectedTokenType,
        };
        err(code, format!("Expected '{op}' at position {}.", self.pos()))
    }

    fn query(&mut self) -> Result<Query> {
        if !self.eat_kw("SELECT") {
            if self.peek().is_none() {
                return err(Code::ParseEmptySelect, "The SQL expression is empty.");
            }
            return err(Code::ParseUnsupportedSelect, "Only SELECT queries are supported.");
        }
        if self.peek().is_some_and(|t| t.is_kw("FROM")) || self.peek().is_none() {
            return err(Code::ParseEmptySelect, "The SELECT list is empty.");
        }
        let projection = if self.eat_op("*") {
            Projection::Star
        } else {
            let mut items = Vec::new();
            loop {
                if matches!(self.peek(), Some(Tok::Op("*"))) {
                    return err(Code::ParseAsteriskIsNotAloneInSelectList, "Other expressions can't be selected with *.");
                }
                let expr = self.expr()?;
                let alias = self.alias()?;
                items.push(SelectItem { expr, alias });
                if items.len() > MAX_LIST_ITEMS {
                    return err(Code::ParseUnsupportedSyntax, "Too many items in the SELECT list.");
                }
                if !self.eat_op(",") {
                    break;
                }
            }
            Projection::Items(items)
        };
        if !self.eat_kw("FROM") {
            if self.peek().is_none() {
                return err(Code::ParseSelectMissingFrom, "The FROM clause is missing.");
            }
            return self.unexpected();
        }
        match self.next() {
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("S3Object") || s.eq_ignore_ascii_case("stdin") => {}
            Some(Tok::Quoted(s)) if s == "S3Object" => {}
            _ => {
                self.i = self.i.saturating_sub(1);
                return err(
                    Code::ParseUnsupportedSyntax,
                    format!("FROM must name S3Object (position {}).", self.pos()),
                );
            }
        }
        let from_path = self.path_steps()?;
        let alias = self.alias()?;
        let filter = if self.eat_kw("WHERE") {
            let in_where = self.aggs;
            let e = self.expr()?;
            if self.aggs != in_where {
                return err(Code::ParseUnsupportedSyntax, "Aggregate functions are not allowed in WHERE.");
            }
            Some(e)
        } else {
            None
        };
        let limit = if self.eat_kw("LIMIT") {
            match self.next() {
                Some(Tok::Int(n)) if n >= 0 => Some(n as u64),
                _ => return err(Code::ParseExpectedNumber, "LIMIT takes a non-negative integer."),
            }
        } else {
            None
        };
        self.eat_op(";");
        if self.peek().is_some() {
            return self.unexpected();
        }
        if let Projection::Items(items) = &projection {
            if self.aggs > 0 {
                for it in items {
                    check_aggregate_item(&it.expr)?;
                }
            }
        }
        Ok(Query { projection, from_path, alias, filter, limit, aggregates: self.aggs })
    }

    fn alias(&mut self) -> Result<Option<String>> {
        let had_as = self.eat_kw("AS");
        match self.peek() {
            Some(Tok::Ident(s)) if !reserved(s) => {
                let s = s.clone();
                self.i += 1;
                Ok(Some(s))
            }
            Some(Tok::Quoted(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(Some(s))
            }
            _ if had_as => err(Code::ParseExpectedIdentForAlias, format!("Expected an alias at position {}.", self.pos())),
            _ => Ok(None),
        }
    }

    /// `.name`, `[n]`, `['name']`, `[*]` steps after a name.
    fn path_steps(&mut self) -> Result<Vec<PathStep>> {
        let mut steps = Vec::new();
        loop {
            if self.eat_op(".") {
                match self.next() {
                    Some(Tok::Ident(s)) => steps.push(PathStep::Name { name: s, quoted: false }),
                    Some(Tok::Quoted(s)) => steps.push(PathStep::Name { name: s, quoted: true }),
                    Some(Tok::Op("*")) => steps.push(PathStep::Wildcard),
                    _ => {
                        self.i -= 1;
                        return err(Code::ParseExpectedTokenType, format!("Expected a name after '.' at position {}.", self.pos()));
                    }
                }
            } else if self.eat_op("[") {
                match self.next() {
                    Some(Tok::Int(n)) => steps.push(PathStep::Index(n)),
                    Some(Tok::Op("*")) => steps.push(PathStep::Wildcard),
                    Some(Tok::Str(s)) => steps.push(PathStep::Name { name: s, quoted: true }),
                    _ => {
                        self.i -= 1;
                        return self.unexpected();
                    }
                }
                self.expect_op("]")?;
            } else {
                return Ok(steps);
            }
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return err(Code::ParseUnsupportedSyntax, "The expression nests too deeply.");
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr> {
        self.enter()?;
        let r = self.or();
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> Result<Expr> {
        let mut l = self.and()?;
        while self.eat_kw("OR") {
            let r = self.and()?;
            l = Expr::Binary(BinOp::Or, Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr> {
        let mut l = self.not()?;
        while self.eat_kw("AND") {
            let r = self.not()?;
            l = Expr::Binary(BinOp::And, Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr> {
        if self.eat_kw("NOT") {
            self.enter()?;
            let e = self.not();
            self.depth -= 1;
            return Ok(Expr::Unary(UnOp::Not, Box::new(e?)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr> {
        let mut l = self.additive()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("=")) => Some(BinOp::Eq),
                Some(Tok::Op("!=")) | Some(Tok::Op("<>")) => Some(BinOp::Ne),
                Some(Tok::Op("<")) => Some(BinOp::Lt),
                Some(Tok::Op("<=")) => Some(BinOp::Le),
                Some(Tok::Op(">")) => Some(BinOp::Gt),
                Some(Tok::Op(">=")) => Some(BinOp::Ge),
                _ => None,
            };
            if let Some(op) = op {
                self.i += 1;
                let r = self.additive()?;
                l = Expr::Binary(op, Box::new(l), Box::new(r));
                continue;
            }
            if self.eat_kw("IS") {
                let negated = self.eat_kw("NOT");
                let what = match self.next() {
                    Some(t) if t.is_kw("NULL") => IsWhat::Null,
                    Some(t) if t.is_kw("MISSING") => IsWhat::Missing,
                    Some(t) if t.is_kw("TRUE") => IsWhat::True,
                    Some(t) if t.is_kw("FALSE") => IsWhat::False,
                    _ => {
                        self.i -= 1;
                        return self.unexpected();
                    }
                };
                l = Expr::Is { expr: Box::new(l), what, negated };
                continue;
            }
            let negated = self.peek().is_some_and(|t| t.is_kw("NOT"))
                && self.peek_at(1).is_some_and(|t| t.is_kw("LIKE") || t.is_kw("BETWEEN") || t.is_kw("IN"));
            if negated {
                self.i += 1;
            }
            if self.eat_kw("LIKE") {
                let pattern = self.additive()?;
                let escape = if self.eat_kw("ESCAPE") { Some(Box::new(self.additive()?)) } else { None };
                l = Expr::Like { expr: Box::new(l), pattern: Box::new(pattern), escape, negated };
            } else if self.eat_kw("BETWEEN") {
                let lo = self.additive()?;
                self.expect_kw("AND")?;
                let hi = self.additive()?;
                l = Expr::Between { expr: Box::new(l), lo: Box::new(lo), hi: Box::new(hi), negated };
            } else if self.eat_kw("IN") {
                self.expect_op("(")?;
                let list = self.list(")")?;
                l = Expr::In { expr: Box::new(l), list, negated };
            } else {
                return Ok(l);
            }
        }
    }

    /// Comma-separated expressions up to `close` (consumed).
    fn list(&mut self, close: &str) -> Result<Vec<Expr>> {
        let mut out = Vec::new();
        if self.eat_op(close) {
            return Ok(out);
        }
        loop {
            out.push(self.expr()?);
            if out.len() > MAX_LIST_ITEMS {
                return err(Code::ParseUnsupportedSyntax, "Too many items in a list.");
            }
            if self.eat_op(close) {
                return Ok(out);
            }
            self.expect_op(",")?;
        }
    }

    fn additive(&mut self) -> Result<Expr> {
        let mut l = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("+")) => BinOp::Add,
                Some(Tok::Op("-")) => BinOp::Sub,
                Some(Tok::Op("||")) => BinOp::Concat,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.multiplicative()?;
            l = Expr::Binary(op, Box::new(l), Box::new(r));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => BinOp::Mul,
                Some(Tok::Op("/")) => BinOp::Div,
                Some(Tok::Op("%")) => BinOp::Mod,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.unary()?;
            l = Expr::Binary(op, Box::new(l), Box::new(r));
        }
    }

    fn unary(&mut self) -> Result<Expr> {
        if self.eat_op("-") {
            self.enter()?;
            let e = self.unary();
            self.depth -= 1;
            return Ok(match e? {
                Expr::Int(n) => Expr::Int(n.wrapping_neg()),
                Expr::Float(f) => Expr::Float(-f),
                e => Expr::Unary(UnOp::Neg, Box::new(e)),
            });
        }
        if self.eat_op("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        let Some(tok) = self.peek().cloned() else {
            return err(Code::ParseExpectedExpression, "Expected an expression at the end of the query.");
        };
        match tok {
            Tok::Int(n) => {
                self.i += 1;
                Ok(Expr::Int(n))
            }
            Tok::Num(f) => {
                self.i += 1;
                Ok(Expr::Float(f))
            }
            Tok::Str(s) => {
                self.i += 1;
                Ok(Expr::Str(s))
            }
            Tok::Backtick(s) => {
                self.i += 1;
                let ts = Ts::parse(&s)
                    .ok_or_else(|| SelectError::new(Code::LexerInvalidLiteral, format!("Invalid timestamp {}.", SelectError::quote(&s))))?;
                Ok(Expr::Timestamp(ts))
            }
            Tok::Op("(") => {
                self.i += 1;
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Quoted(_) => self.path(),
            Tok::Ident(name) => {
                if matches!(self.peek_at(1), Some(Tok::Op("("))) && !reserved(&name) {
                    self.i += 2;
                    self.enter()?;
                    let r = self.call(&name);
                    self.depth -= 1;
                    return r;
                }
                let up = name.to_ascii_uppercase();
                match up.as_str() {
                    "NULL" => {
                        self.i += 1;
                        Ok(Expr::Null)
                    }
                    "MISSING" => {
                        self.i += 1;
                        Ok(Expr::Missing)
                    }
                    "TRUE" | "FALSE" => {
                        self.i += 1;
                        Ok(Expr::Bool(up == "TRUE"))
                    }
                    "CAST" => {
                        self.i += 1;
                        if !self.eat_op("(") {
                            return err(Code::ParseExpectedLeftParenAfterCast, "Expected '(' after CAST.");
                        }
                        self.enter()?;
                        let r = self.cast();
                        self.depth -= 1;
                        r
                    }
                    "CASE" => {
                        self.i += 1;
                        self.enter()?;
                        let r = self.case();
                        self.depth -= 1;
                        r
                    }
                    _ if reserved(&name) => {
                        if self.peek().is_some() {
                            err(Code::ParseExpectedExpression, format!("Expected an expression at position {}, found keyword {up}.", self.pos()))
                        } else {
                            self.unexpected()
                        }
                    }
                    _ => self.path(),
                }
            }
            Tok::Op(_) => err(
                Code::ParseExpectedExpression,
                format!("Expected an expression at position {}, found {}.", self.pos(), SelectError::quote(&tok.describe())),
            ),
        }
    }

    fn path(&mut self) -> Result<Expr> {
        let first = match self.next() {
            Some(Tok::Ident(s)) => PathStep::Name { name: s, quoted: false },
            Some(Tok::Quoted(s)) => PathStep::Name { name: s, quoted: true },
            _ => return self.unexpected(),
        };
        let mut steps = vec![first];
        steps.extend(self.path_steps()?);
        Ok(Expr::Path(steps))
    }

    fn type_name(&mut self) -> Result<Type> {
        let t = match self.next() {
            Some(Tok::Ident(s)) => match s.to_ascii_uppercase().as_str() {
                "BOOL" | "BOOLEAN" => Type::Bool,
                "INT" | "INTEGER" | "BIGINT" | "SMALLINT" => Type::Int,
                "FLOAT" | "REAL" | "DOUBLE" => Type::Float,
                "DECIMAL" | "NUMERIC" => Type::Decimal,
                "STRING" | "VARCHAR" | "CHAR" | "TEXT" => Type::String,
                "TIMESTAMP" => Type::Timestamp,
                _ => return err(Code::ParseExpectedTypeName, format!("Unknown type {}.", SelectError::quote(&s))),
            },
            _ => return err(Code::ParseExpectedTypeName, format!("Expected a type name at position {}.", self.pos())),
        };
        // DECIMAL(p, s) and VARCHAR(n): parameters accepted and ignored.
        if self.eat_op("(") {
            loop {
                match self.next() {
                    Some(Tok::Int(n)) if n >= 0 => {}
                    _ => return err(Code::ParseInvalidTypeParam, "Type parameters must be non-negative integers."),
                }
                if self.eat_op(")") {
                    break;
                }
                self.expect_op(",")?;
            }
        }
        Ok(t)
    }

    fn cast(&mut self) -> Result<Expr> {
        let e = self.expr()?;
        if !self.eat_kw("AS") {
            return err(Code::ParseCastArity, "CAST takes an expression AS a type.");
        }
        let t = self.type_name()?;
        self.expect_op(")")?;
        Ok(Expr::Cast(Box::new(e), t))
    }

    fn case(&mut self) -> Result<Expr> {
        let operand = if self.peek().is_some_and(|t| t.is_kw("WHEN")) { None } else { Some(Box::new(self.expr()?)) };
        let mut whens = Vec::new();
        while self.eat_kw("WHEN") {
            let c = self.expr()?;
            self.expect_kw("THEN")?;
            let v = self.expr()?;
            whens.push((c, v));
        }
        if whens.is_empty() {
            return err(Code::ParseExpectedKeyword, format!("Expected WHEN at position {}.", self.pos()));
        }
        let otherwise = if self.eat_kw("ELSE") { Some(Box::new(self.expr()?)) } else { None };
        self.expect_kw("END")?;
        Ok(Expr::Case { operand, whens, otherwise })
    }

    fn date_part(&mut self) -> Result<DatePart> {
        let p = match self.next() {
            Some(Tok::Ident(s)) => match s.to_ascii_uppercase().as_str() {
                "YEAR" => DatePart::Year,
                "MONTH" => DatePart::Month,
                "DAY" => DatePart::Day,
                "HOUR" => DatePart::Hour,
                "MINUTE" => DatePart::Minute,
                "SECOND" => DatePart::Second,
                "TIMEZONE_HOUR" => DatePart::TimezoneHour,
                "TIMEZONE_MINUTE" => DatePart::TimezoneMinute,
                _ => return err(Code::IllegalSqlFunctionArgument, format!("Unknown date part {}.", SelectError::quote(&s))),
            },
            _ => return err(Code::IllegalSqlFunctionArgument, format!("Expected a date part at position {}.", self.pos())),
        };
        Ok(p)
    }

    /// A call of `name`; the `(` is consumed.
    fn call(&mut self, name: &str) -> Result<Expr> {
        let up = name.to_ascii_uppercase();
        let agg = match up.as_str() {
            "COUNT" => Some(AggKind::Count),
            "SUM" => Some(AggKind::Sum),
            "AVG" => Some(AggKind::Avg),
            "MIN" => Some(AggKind::Min),
            "MAX" => Some(AggKind::Max),
            _ => None,
        };
        if let Some(kind) = agg {
            if self.in_agg {
                return err(Code::ParseUnsupportedSyntax, "Aggregate functions can't be nested.");
            }
            let arg = if kind == AggKind::Count && self.eat_op("*") {
                None
            } else {
                self.in_agg = true;
                let a = self.expr();
                self.in_agg = false;
                Some(Box::new(a?))
            };
            if !self.eat_op(")") {
                return err(Code::ParseNonUnaryAgregateFunctionCall, format!("{up} takes one argument."));
            }
            let slot = self.aggs;
            self.aggs += 1;
            return Ok(Expr::Agg { kind, arg, slot });
        }
        let (func, arity) = match up.as_str() {
            "EXTRACT" => {
                let part = self.date_part()?;
                self.expect_kw("FROM")?;
                let e = self.expr()?;
                self.expect_op(")")?;
                return Ok(Expr::Extract(part, Box::new(e)));
            }
            "TRIM" => return self.trim(),
            "SUBSTRING" => return self.substring(),
            "DATE_ADD" | "DATE_DIFF" => {
                let part = self.date_part()?;
                self.expect_op(",")?;
                let a = self.expr()?;
                self.expect_op(",")?;
                let b = self.expr()?;
                self.expect_op(")")?;
                let f = if up == "DATE_ADD" { Func::DateAdd } else { Func::DateDiff };
                return Ok(Expr::Call(f, vec![Expr::Str(format!("{part:?}")), a, b]));
            }
            "INT" | "INTEGER" | "FLOAT" => {
                let e = self.expr()?;
                self.expect_op(")")?;
                let t = if up == "FLOAT" { Type::Float } else { Type::Int };
                return Ok(Expr::Cast(Box::new(e), t));
            }
            "LOWER" => (Func::Lower, 1..=1),
            "UPPER" => (Func::Upper, 1..=1),
            "CHAR_LENGTH" | "CHARACTER_LENGTH" => (Func::CharLength, 1..=1),
            "COALESCE" => (Func::Coalesce, 1..=MAX_LIST_ITEMS),
            "NULLIF" => (Func::NullIf, 2..=2),
            "TO_TIMESTAMP" => (Func::ToTimestamp, 1..=1),
            "TO_STRING" => (Func::ToString, 2..=2),
            "UTCNOW" => (Func::UtcNow, 0..=0),
            _ => return err(Code::UnsupportedFunction, format!("Function {} is not supported.", SelectError::quote(name))),
        };
        let args = self.list(")")?;
        if !arity.contains(&args.len()) {
            return err(Code::EvaluatorInvalidArguments, format!("Wrong number of arguments to {up}."));
        }
        Ok(Expr::Call(func, args))
    }

    fn trim(&mut self) -> Result<Expr> {
        let spec = if self.eat_kw("LEADING") {
            Some(TrimSpec::Leading)
        } else if self.eat_kw("TRAILING") {
            Some(TrimSpec::Trailing)
        } else if self.eat_kw("BOTH") {
            Some(TrimSpec::Both)
        } else {
            None
        };
        let (chars, expr) = if spec.is_some() && self.eat_kw("FROM") {
            (None, self.expr()?)
        } else {
            let first = self.expr()?;
            if self.eat_kw("FROM") {
                (Some(Box::new(first)), self.expr()?)
            } else if spec.is_some() {
                return err(Code::ParseExpectedKeyword, format!("Expected FROM at position {}.", self.pos()));
            } else {
                (None, first)
            }
        };
        self.expect_op(")")?;
        Ok(Expr::Trim { spec: spec.unwrap_or(TrimSpec::Both), chars, expr: Box::new(expr) })
    }

    fn substring(&mut self) -> Result<Expr> {
        let s = self.expr()?;
        let mut args = vec![s];
        if self.eat_kw("FROM") {
            args.push(self.expr()?);
            if self.eat_kw("FOR") {
                args.push(self.expr()?);
            }
        } else {
            self.expect_op(",")?;
            args.push(self.expr()?);
            if self.eat_op(",") {
                args.push(self.expr()?);
            }
        }
        self.expect_op(")")?;
        Ok(Expr::Call(Func::Substring, args))
    }
}

/// In an aggregate query, every column reference must sit inside an aggregate.
fn check_aggregate_item(e: &Expr) -> Result<()> {
    match e {
        Expr::Agg { .. } => Ok(()),
        Expr::Path(_) => err(
            Code::ParseUnsupportedSyntax,
            "Columns outside aggregate functions can't be selected with aggregates (there is no GROUP BY).",
        ),
        other => other.children().into_iter().try_for_each(check_aggregate_item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let ok = [
            "SELECT * FROM S3Object",
            "select * from s3object s where s._1 = 'a' limit 5",
            "SELECT s.name, CAST(s.age AS INT) AS age FROM S3Object AS s WHERE s.age > 30;",
            "SELECT COUNT(*), SUM(CAST(_2 AS FLOAT)), MIN(_1) + 1 FROM S3Object",
            "SELECT * FROM S3Object[*].a.b[*] x WHERE x.c[0] IS NOT MISSING",
            "SELECT _1 FROM S3Object WHERE _1 NOT LIKE 'a\\%%' ESCAPE '\\' AND _2 NOT BETWEEN 1 AND 2",
            "SELECT _1 FROM S3Object WHERE _1 IN ('a', 'b') OR NOT _2 IS NULL",
            "SELECT CASE WHEN _1 = 'a' THEN 1 ELSE 2 END, CASE _1 WHEN 'x' THEN 'y' END FROM S3Object",
            "SELECT EXTRACT(YEAR FROM TO_TIMESTAMP(_1)), DATE_ADD(day, 1, UTCNOW()), DATE_DIFF(hour, `2020T`, UTCNOW()) FROM S3Object",
            "SELECT TRIM(LEADING FROM _1), TRIM(BOTH 'x' FROM _1), TRIM(_1), SUBSTRING(_1 FROM 2 FOR 3), SUBSTRING(_1, 2) FROM S3Object",
            "select count(0) from stdin where int(_1) > 5",
            "SELECT COALESCE(_1, _2, 'z'), NULLIF(_1, ''), CHAR_LENGTH(_1), LOWER(_1) || UPPER(_2) FROM S3Object",
        ];
        for q in ok {
            parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        let q = parse("SELECT a AS x, b y FROM S3Object").unwrap();
        let Projection::Items(items) = q.projection else { panic!() };
        assert_eq!(items[0].alias.as_deref(), Some("x"));
        assert_eq!(items[1].alias.as_deref(), Some("y"));
        assert_eq!(parse("SELECT COUNT(*), MAX(_1) FROM S3Object").unwrap().aggregates, 2);
    }

    #[test]
    fn errors() {
        let cases = [
            ("", Code::ParseEmptySelect),
            ("SELECT FROM S3Object", Code::ParseEmptySelect),
            ("SELECT *", Code::ParseSelectMissingFrom),
            ("SELECT * FROM table1", Code::ParseUnsupportedSyntax),
            ("DELETE FROM S3Object", Code::ParseUnsupportedSelect),
            ("SELECT _1 FROM S3Object WHERE", Code::ParseExpectedExpression),
            ("SELECT _1 FROM S3Object WHERE _1 = ", Code::ParseExpectedExpression),
            ("SELECT _1 FROM S3Object garbage more", Code::ParseUnexpectedToken),
            ("SELECT _1,* FROM S3Object", Code::ParseAsteriskIsNotAloneInSelectList),
            ("SELECT CAST(_1 AS BLOB) FROM S3Object", Code::ParseExpectedTypeName),
            ("SELECT CAST(_1) FROM S3Object", Code::ParseCastArity),
            ("SELECT CAST _1 FROM S3Object", Code::ParseExpectedLeftParenAfterCast),
            ("SELECT FOO(_1) FROM S3Object", Code::UnsupportedFunction),
            ("SELECT COUNT(_1, _2) FROM S3Object", Code::ParseNonUnaryAgregateFunctionCall),
            ("SELECT SUM(MAX(_1)) FROM S3Object", Code::ParseUnsupportedSyntax),
            ("SELECT _1 FROM S3Object WHERE COUNT(*) > 1", Code::ParseUnsupportedSyntax),
            ("SELECT _1, COUNT(*) FROM S3Object", Code::ParseUnsupportedSyntax),
            ("SELECT _1 FROM S3Object LIMIT x", Code::ParseExpectedNumber),
            ("SELECT _1 AS FROM S3Object", Code::ParseExpectedIdentForAlias),
            ("SELECT LOWER(_1, _2) FROM S3Object", Code::EvaluatorInvalidArguments),
            ("SELECT _1 FROM S3Object WHERE _1 IS 5", Code::ParseUnexpectedToken),
            ("SELECT 'x FROM S3Object", Code::LexerInvalidLiteral),
            ("SELECT _1 FROM S3Object WHERE _1 BETWEEN 1 2", Code::ParseExpectedKeyword),
            ("SELECT `nope` FROM S3Object", Code::LexerInvalidLiteral),
            ("SELECT EXTRACT(CENTURY FROM _1) FROM S3Object", Code::IllegalSqlFunctionArgument),
            ("SELECT _1 FROM S3Object WHERE _1 = 1 WHERE", Code::ParseUnexpectedKeyword),
        ];
        for (q, code) in cases {
            let e = parse(q).expect_err(q);
            assert_eq!(e.code, code, "{q}: {e}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("SELECT {}1{} FROM S3Object", "(".repeat(MAX_EXPRESSION_DEPTH + 5), ")".repeat(MAX_EXPRESSION_DEPTH + 5));
        assert_eq!(parse(&deep).unwrap_err().code, Code::ParseUnsupportedSyntax);
        let nots = format!("SELECT _1 FROM S3Object WHERE {} TRUE", "NOT ".repeat(10_000));
        assert_eq!(parse(&nots).unwrap_err().code, Code::ParseUnsupportedSyntax);
        let negs = format!("SELECT {}1 FROM S3Object", "- ".repeat(10_000));
        assert_eq!(parse(&negs).unwrap_err().code, Code::ParseUnsupportedSyntax);
        let ok = format!("SELECT {}1{} FROM S3Object", "(".repeat(20), ")".repeat(20));
        assert!(parse(&ok).is_ok());
    }
}

//! Tokens of the S3 Select SQL dialect.
//!
//! Strings are single-quoted (`''` is a quote inside); double quotes make a
//! case-sensitive identifier; backticks hold an Ion timestamp literal.

use crate::error::{err, Code, Result, SelectError};

/// Longest SQL expression accepted (AWS's limit is 256 KB).
pub const MAX_EXPRESSION_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An unquoted identifier or keyword, as written.
    Ident(String),
    /// A double-quoted identifier.
    Quoted(String),
    Str(String),
    Int(i64),
    /// A number with a fraction or exponent (or an integer past i64).
    Num(f64),
    /// A backtick literal (Ion timestamp).
    Backtick(String),
    Op(&'static str),
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Quoted(s) => format!("\"{s}\""),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Int(i) => i.to_string(),
            Tok::Num(f) => f.to_string(),
            Tok::Backtick(s) => format!("`{s}`"),
            Tok::Op(o) => (*o).to_string(),
        }
    }

    /// Whether this is the keyword `kw` (given in upper case).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
}

/// A token and the byte offset where it starts (for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const OPS: &[&str] = &["<>", "!=", "<=", ">=", "||", "(", ")", "[", "]", ",", ".", "*", "+", "-", "/", "%", "=", "<", ">", ";"];

pub fn lex(src: &str) -> Result<Vec<Token>> {
    if src.len() > MAX_EXPRESSION_BYTES {
        return err(Code::ExpressionTooLong, "The SQL expression is too long.");
    }
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // `--` comments to the end of the line.
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let pos = i;
        let tok = if c == b'\'' || c == b'"' || c == b'`' {
            let (text, next) = quoted(src, i, c)?;
            i = next;
            match c {
                b'\'' => Tok::Str(text),
                b'"' => Tok::Quoted(text),
                _ => Tok::Backtick(text),
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let (t, next) = number(src, i)?;
            i = next;
            t
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                i += 1;
            }
            Tok::Ident(src[start..i].to_string())
        } else if let Some(op) = OPS.iter().find(|o| b[i..].starts_with(o.as_bytes())) {
            i += op.len();
            Tok::Op(op)
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return err(Code::LexerInvalidChar, format!("Invalid character {ch:?} at position {pos}."));
        };
        out.push(Token { tok, pos });
    }
    Ok(out)
}

/// A quoted literal starting at `start` (the quote), doubled quotes inside
/// standing for one. Returns the text and the offset after the closing quote.
fn quoted(src: &str, start: usize, q: u8) -> Result<(String, usize)> {
    let b = src.as_bytes();
    let mut text = String::new();
    let mut i = start + 1;
    let mut run = i;
    loop {
        let Some(off) = memchr::memchr(q, &b[i..]) else {
            return err(Code::LexerInvalidLiteral, format!("Unterminated literal at position {start}."));
        };
        let at = i + off;
        if b.get(at + 1) == Some(&q) {
            text.push_str(&src[run..=at]);
            i = at + 2;
            run = i;
            continue;
        }
        text.push_str(&src[run..at]);
        return Ok((text, at + 1));
    }
}

fn number(src: &str, start: usize) -> Result<(Tok, usize)> {
    let b = src.as_bytes();
    let mut i = start;
    let mut float = false;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' && b.get(i + 1).is_none_or(|c| !c.is_ascii_alphabetic() || c.eq_ignore_ascii_case(&b'e')) {
        float = true;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            float = true;
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
        return err(Code::LexerInvalidLiteral, format!("Invalid literal at position {start}."));
    }
    let text = &src[start..i];
    let bad = || SelectError::new(Code::LexerInvalidLiteral, format!("Invalid number {}.", SelectError::quote(text)));
    let tok = if float {
        Tok::Num(text.parse().map_err(|_| bad())?)
    } else {
        match text.parse::<i64>() {
            Ok(n) => Tok::Int(n),
            Err(_) => Tok::Num(text.parse().map_err(|_| bad())?),
        }
    };
    Ok((tok, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens() {
        assert_eq!(
            toks("SELECT s._1, 'it''s', \"Na me\" FROM S3Object s WHERE x >= 1.5e2 -- c\n<> 3"),
            vec![
                Tok::Ident("SELECT".into()),
                Tok::Ident("s".into()),
                Tok::Op("."),
                Tok::Ident("_1".into()),
                Tok::Op(","),
                Tok::Str("it's".into()),
                Tok::Op(","),
                Tok::Quoted("Na me".into()),
                Tok::Ident("FROM".into()),
                Tok::Ident("S3Object".into()),
                Tok::Ident("s".into()),
                Tok::Ident("WHERE".into()),
                Tok::Ident("x".into()),
                Tok::Op(">="),
                Tok::Num(150.0),
                Tok::Op("<>"),
                Tok::Int(3),
            ]
        );
        assert_eq!(toks("`2020-01-01T` 99999999999999999999"), vec![Tok::Backtick("2020-01-01T".into()), Tok::Num(1e20)]);
        assert_eq!(toks("a[0]"), vec![Tok::Ident("a".into()), Tok::Op("["), Tok::Int(0), Tok::Op("]")]);
    }

    #[test]
    fn errors() {
        for (src, code) in [
            ("'open", Code::LexerInvalidLiteral),
            ("\"open", Code::LexerInvalidLiteral),
            ("a # b", Code::LexerInvalidChar),
            ("12abc", Code::LexerInvalidLiteral),
        ] {
            assert_eq!(lex(src).unwrap_err().code, code, "{src}");
        }
        assert_eq!(lex(&"a".repeat(MAX_EXPRESSION_BYTES + 1)).unwrap_err().code, Code::ExpressionTooLong);
        assert!(lex(&"a".repeat(MAX_EXPRESSION_BYTES)).is_ok());
    }
}

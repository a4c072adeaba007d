//! LIKE patterns: `%` any run, `_` any one character, an optional escape.

use crate::error::{err, Code, Result};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    One,
    Any,
}

/// A compiled pattern. Patterns without `_` match by substring search.
#[derive(Debug, Clone, PartialEq)]
pub struct LikePattern {
    toks: Vec<Tok>,
    /// For patterns of literals and `%` only: the literal runs, and whether
    /// the pattern starts / ends with `%`.
    segments: Option<(Vec<String>, bool, bool)>,
}

impl LikePattern {
    pub fn compile(pattern: &str, escape: Option<&str>) -> Result<LikePattern> {
        let esc = match escape {
            None => None,
            Some(e) => {
                let mut it = e.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => Some(c),
                    _ => return err(Code::IllegalSqlFunctionArgument, "The ESCAPE of LIKE must be one character."),
                }
            }
        };
        let mut toks = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if Some(c) == esc {
                match chars.next() {
                    Some(n) => toks.push(Tok::Lit(n)),
                    None => return err(Code::IllegalSqlFunctionArgument, "LIKE pattern ends with its escape character."),
                }
            } else if c == '%' {
                if toks.last() != Some(&Tok::Any) {
                    toks.push(Tok::Any);
                }
            } else if c == '_' {
                toks.push(Tok::One);
            } else {
                toks.push(Tok::Lit(c));
            }
        }
        let segments = (!toks.contains(&Tok::One)).then(|| {
            let mut segs = vec![String::new()];
            for t in &toks {
                match t {
                    Tok::Lit(c) => {
                        if let Some(s) = segs.last_mut() {
                            s.push(*c);
                        }
                    }
                    _ => segs.push(String::new()),
                }
            }
            let starts = toks.first() == Some(&Tok::Any);
            let ends = toks.last() == Some(&Tok::Any);
            (segs.into_iter().filter(|s| !s.is_empty()).collect(), starts, ends)
        });
        Ok(LikePattern { toks, segments })
    }

    pub fn matches(&self, s: &str) -> bool {
        if let Some((segs, starts, ends)) = &self.segments {
            return match_segments(s, segs, *starts, *ends);
        }
        let text: Vec<char> = s.chars().collect();
        let (mut ti, mut pi) = (0usize, 0usize);
        let mut back: Option<(usize, usize)> = None;
        while ti < text.len() {
            match self.toks.get(pi) {
                Some(Tok::Any) => {
                    back = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                Some(Tok::One) => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                Some(Tok::Lit(c)) if *c == text[ti] => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                _ => {}
            }
            match back {
                Some((bp, bt)) => {
                    pi = bp + 1;
                    ti = bt + 1;
                    back = Some((bp, bt + 1));
                }
                None => return false,
            }
        }
        self.toks[pi..].iter().all(|t| *t == Tok::Any)
    }
}

fn match_segments(s: &str, segs: &[String], starts: bool, ends: bool) -> bool {
    if segs.is_empty() {
        return starts || s.is_empty();
    }
    let mut rest = s;
    let last = segs.len() - 1;
    for (i, seg) in segs.iter().enumerate() {
        if i == 0 && !starts {
            let Some(r) = rest.strip_prefix(seg.as_str()) else { return false };
            rest = r;
            if i == last && !ends {
                return rest.is_empty();
            }
            continue;
        }
        if i == last && !ends {
            return rest.len() >= seg.len() && rest.ends_with(seg.as_str());
        }
        match rest.find(seg.as_str()) {
            Some(at) => rest = &rest[at + seg.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Option<&str>, &str, bool)] = &[
            ("abc", None, "abc", true),
            ("abc", None, "abcd", false),
            ("a%", None, "abc", true),
            ("%c", None, "abc", true),
            ("%b%", None, "abc", true),
            ("%x%", None, "abc", false),
            ("a%c", None, "ac", true),
            ("a%c%c", None, "acc", true),
            ("a%c%c", None, "ac", false),
            ("%", None, "", true),
            ("", None, "", true),
            ("", None, "a", false),
            ("_", None, "é", true),
            ("_b_", None, "abc", true),
            ("a_%", None, "a", false),
            ("%_3", None, "123", true),
            ("%aeio$_", Some("$"), "aeio_", true),
            ("%aeio$_", Some("$"), "aeiox", false),
            ("%_ar", Some("%"), "x_ar", false),
            ("10\\%", Some("\\"), "10%", true),
            ("10\\%", Some("\\"), "100", false),
            ("%a_b%", None, "xxa-bxx", true),
            ("%a_b", None, "aab", true),
            ("ü%", None, "über", true),
        ];
        for (p, e, s, want) in cases {
            assert_eq!(LikePattern::compile(p, *e).unwrap().matches(s), *want, "{s} LIKE {p} ESCAPE {e:?}");
        }
        assert!(LikePattern::compile("a\\", Some("\\")).is_err());
        assert!(LikePattern::compile("a", Some("xy")).is_err());
    }
}

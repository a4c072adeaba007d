//! Wildcards (`*` any run of characters, `?` one character) and policy
//! variables (`${aws:username}`, `${s3:prefix}`, `${key, 'default'}`, and
//! the escapes `${*}`, `${?}`, `${$}`). A substituted value is literal
//! text: a user named `a*` matches only `a*`.

use crate::context::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Star,
    One,
}

/// Longest pattern or subject compared character by character; longer
/// ones never match (no policy element or condition value is this long).
pub const MAX_GLOB_CHARS: usize = 16 * 1024;

/// Compiles `pattern` into tokens, substituting variables from `ctx` when
/// `vars` is true. `None`: a variable has no value (and no default), so
/// the element matches nothing, as AWS evaluates it.
fn compile(pattern: &str, vars: Option<&Context>) -> Option<Vec<Tok>> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let (Some(ctx), true) = (vars, rest.starts_with("${")) {
            if let Some(end) = rest.find('}') {
                let inner = &rest[2..end];
                let value = variable(inner, ctx)?;
                out.extend(value.chars().map(Tok::Lit));
                rest = &rest[end + 1..];
                continue;
            }
        }
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            c => Tok::Lit(c),
        });
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// The value of `${inner}`: an escape, a context key, or its default.
fn variable(inner: &str, ctx: &Context) -> Option<String> {
    match inner {
        "*" => return Some("*".into()),
        "?" => return Some("?".into()),
        "$" => return Some("$".into()),
        _ => {}
    }
    let (key, default) = match inner.split_once(',') {
        Some((k, d)) => {
            let d = d.trim();
            let d = d.strip_prefix('\'').and_then(|d| d.strip_suffix('\'')).unwrap_or(d);
            (k.trim(), Some(d))
        }
        None => (inner.trim(), None),
    };
    match ctx.single(key) {
        Some(v) => Some(v.to_string()),
        None => default.map(str::to_string),
    }
}

fn eq(a: char, b: char, fold: bool) -> bool {
    a == b || (fold && a.to_lowercase().eq(b.to_lowercase()))
}

/// Iterative wildcard match with one backtrack point (linear in practice,
/// O(n·m) at worst; never recursive).
fn run(pat: &[Tok], subject: &str, fold: bool) -> bool {
    let s: Vec<char> = subject.chars().collect();
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                i += 1;
            }
            Some(Tok::Lit(c)) if eq(*c, s[i], fold) => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|t| *t == Tok::Star)
}

/// Whether `subject` matches `pattern` (wildcards, optional case folding,
/// variables from `vars`).
pub fn matches(pattern: &str, subject: &str, fold: bool, vars: Option<&Context>) -> bool {
    if pattern.len() > MAX_GLOB_CHARS || subject.len() > MAX_GLOB_CHARS {
        return false;
    }
    if vars.is_none() || !pattern.contains("${") {
        if !pattern.contains(['*', '?']) {
            return if fold { pattern.eq_ignore_ascii_case(subject) || eq_fold(pattern, subject) } else { pattern == subject };
        }
        if pattern == "*" {
            return true;
        }
    }
    match compile(pattern, vars) {
        Some(toks) => run(&toks, subject, fold),
        None => false,
    }
}

fn eq_fold(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// `pattern` with its variables substituted, as literal text (for the
/// exact-match operators). `None` when a variable has no value.
pub fn substitute(pattern: &str, vars: &Context) -> Option<String> {
    if !pattern.contains("${") {
        return Some(pattern.to_string());
    }
    let toks = compile(pattern, Some(vars))?;
    Some(
        toks.into_iter()
            .map(|t| match t {
                Tok::Lit(c) => c,
                Tok::Star => '*',
                Tok::One => '?',
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("a*", "a", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*b*", "xxbyy", true),
            ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/k/x", true),
            ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket", false),
            ("arn:aws:s3:::bucket*", "arn:aws:s3:::bucket", true),
            ("a**b", "ab", true),
            ("日*", "日本", true),
            ("?", "日", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(matches(p, s, false, None), want, "{p} vs {s}");
        }
        assert!(matches("S3:GetObject", "s3:getobject", true, None));
        assert!(matches("s3:Get*", "s3:GETOBJECT", true, None));
        assert!(!matches("s3:Get*", "s3:GETOBJECT", false, None));
    }

    #[test]
    fn pathological_patterns_finish() {
        let p = "a*".repeat(500) + "b";
        let s = "a".repeat(5000);
        assert!(!matches(&p, &s, false, None));
    }

    #[test]
    fn variables() {
        let mut ctx = Context::new();
        ctx.insert("aws:username", "jo*e");
        let p = "arn:aws:s3:::b/home/${aws:username}/*";
        assert!(matches(p, "arn:aws:s3:::b/home/jo*e/x", false, Some(&ctx)));
        assert!(!matches(p, "arn:aws:s3:::b/home/joXe/x", false, Some(&ctx)), "substituted values are literal");
        assert!(!matches("${aws:userid}", "x", false, Some(&ctx)), "no value: no match");
        assert!(matches("${aws:userid, 'anon'}/x", "anon/x", false, Some(&ctx)));
        assert!(matches("a${*}b", "a*b", false, Some(&ctx)));
        assert!(!matches("a${*}b", "axb", false, Some(&ctx)));
        assert!(!matches("${aws:username}", "jo*e", false, None), "2008 policies: plain text");
        assert_eq!(substitute("x/${aws:username}", &ctx).as_deref(), Some("x/jo*e"));
    }
}

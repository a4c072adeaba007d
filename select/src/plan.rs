//! Binding a parsed query to the input's columns: paths become fields,
//! literal LIKE patterns are compiled, output names are chosen.

use crate::ast::*;
use crate::error::{err, Code, Result};
use crate::like::LikePattern;

/// What is known of the input's columns when the query is bound.
pub enum Schema<'a> {
    /// CSV; `names` from the header line when FileHeaderInfo is USE.
    Csv { names: Option<&'a [String]> },
    Json,
    /// Parquet: the file's top-level column names.
    Columns(&'a [String]),
}

/// What each output record is made of.
#[derive(Debug)]
pub enum Output {
    /// `SELECT *`.
    Star,
    /// Named expressions.
    Items(Vec<(String, Expr)>),
}

#[derive(Debug)]
pub struct Plan {
    pub filter: Option<Expr>,
    pub output: Output,
    /// Per aggregate slot: its kind and argument (None: COUNT(*)).
    pub aggs: Vec<(AggKind, Option<Expr>)>,
    pub limit: Option<u64>,
    /// Columns the query reads (Parquet projection); None = all.
    pub columns: Option<Vec<usize>>,
}

fn lookup(names: &[String], name: &str, quoted: bool) -> Result<Option<usize>> {
    if let Some(i) = names.iter().position(|n| n == name) {
        return Ok(Some(i));
    }
    if quoted {
        return Ok(None);
    }
    let mut hits = names.iter().enumerate().filter(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(i, _)| i);
    match (hits.next(), hits.next()) {
        (Some(i), None) => Ok(Some(i)),
        (Some(_), Some(_)) => err(Code::AmbiguousFieldName, format!("The column name {name:?} is ambiguous.")),
        _ => Ok(None),
    }
}

/// `_N` as a 0-based column index.
fn positional(name: &str) -> Result<Option<usize>> {
    let Some(digits) = name.strip_prefix('_') else { return Ok(None) };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match digits.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Some(n - 1)),
        _ => err(Code::InvalidColumnIndex, format!("The column index {name} is invalid: columns are numbered from _1.")),
    }
}

fn bind_path(mut steps: Vec<PathStep>, alias: Option<&str>, schema: &Schema<'_>) -> Result<Expr> {
    // `s.x` with `s` the table alias (or S3Object itself): relative to the record.
    if let Some(PathStep::Name { name, quoted: false }) = steps.first() {
        let is_alias = alias.is_some_and(|a| a.eq_ignore_ascii_case(name)) || name.eq_ignore_ascii_case("S3Object");
        if is_alias {
            steps.remove(0);
            if steps.is_empty() {
                return Ok(match schema {
                    Schema::Json => Expr::Field(Field::Path(Vec::new())),
                    _ => Expr::Field(Field::Missing),
                });
            }
        }
    }
    if steps.iter().any(|s| *s == PathStep::Wildcard) {
        return err(Code::ParseUnsupportedSyntax, "Wildcards are supported in the FROM clause only.");
    }
    let (name, quoted) = match steps.first() {
        Some(PathStep::Name { name, quoted }) => (name.clone(), *quoted),
        _ => return Ok(Expr::Field(Field::Missing)),
    };
    let rest = steps[1..].to_vec();
    Ok(match schema {
        Schema::Json => Expr::Field(Field::Path(steps)),
        Schema::Csv { names } => {
            if !quoted {
                if let Some(i) = positional(&name)? {
                    return Ok(Expr::Field(Field::Column(i, rest)));
                }
            }
            match names.map(|n| lookup(n, &name, quoted)).transpose()?.flatten() {
                Some(i) => Expr::Field(Field::Column(i, rest)),
                // Ceph's s3select reads a double-quoted word it can't
                // resolve as a string; AWS would see an absent column.
                None if quoted && rest.is_empty() => Expr::Str(name),
                None => Expr::Field(Field::Missing),
            }
        }
        Schema::Columns(names) => {
            if !quoted {
                if let Some(i) = positional(&name)? {
                    return Ok(Expr::Field(if i < names.len() { Field::Column(i, rest) } else { Field::Missing }));
                }
            }
            match lookup(names, &name, quoted)? {
                Some(i) => Expr::Field(Field::Column(i, rest)),
                None => Expr::Field(Field::Missing),
            }
        }
    })
}

fn bind(e: Expr, alias: Option<&str>, schema: &Schema<'_>) -> Result<Expr> {
    e.map(&mut |x| match x {
        Expr::Path(steps) => bind_path(steps, alias, schema),
        Expr::Like { expr, pattern, escape, negated } => {
            let esc = match escape.as_deref() {
                None => Some(None),
                Some(Expr::Str(s)) => Some(Some(s.as_str())),
                Some(_) => None,
            };
            match (&*pattern, esc) {
                (Expr::Str(p), Some(esc)) => {
                    Ok(Expr::LikeCompiled { expr, pattern: LikePattern::compile(p, esc)?, negated })
                }
                _ => Ok(Expr::Like { expr, pattern, escape, negated }),
            }
        }
        other => Ok(other),
    })
}

/// The output name of an unaliased item: a path's last name, else `_N`.
fn default_name(e: &Expr, n: usize) -> String {
    if let Expr::Path(steps) = e {
        if let Some(PathStep::Name { name, .. }) = steps.last() {
            if steps.len() > 1 || positional(name).ok().flatten().is_none() {
                return name.clone();
            }
            return name.clone();
        }
    }
    format!("_{}", n + 1)
}

pub fn plan(q: &Query, schema: &Schema<'_>) -> Result<Plan> {
    let alias = q.alias.as_deref();
    let filter = q.filter.clone().map(|f| bind(f, alias, schema)).transpose()?;
    let output = match &q.projection {
        Projection::Star => Output::Star,
        Projection::Items(items) => Output::Items(
            items
                .iter()
                .enumerate()
                .map(|(n, it)| {
                    let name = it.alias.clone().unwrap_or_else(|| default_name(&it.expr, n));
                    Ok((name, bind(it.expr.clone(), alias, schema)?))
                })
                .collect::<Result<_>>()?,
        ),
    };
    let mut aggs: Vec<(AggKind, Option<Expr>)> = Vec::with_capacity(q.aggregates);
    if let Output::Items(items) = &output {
        for (_, e) in items {
            e.walk(&mut |x| {
                if let Expr::Agg { kind, arg, slot } = x {
                    if *slot == aggs.len() {
                        aggs.push((*kind, arg.as_deref().cloned()));
                    }
                }
            });
        }
    }
    if q.aggregates > 0 && q.projection == Projection::Star {
        return err(Code::ParseUnsupportedSyntax, "SELECT * can't be aggregated.");
    }
    let columns = match (&output, schema) {
        (Output::Star, _) => None,
        (Output::Items(items), Schema::Columns(_)) => {
            let mut cols = Vec::new();
            let mut note = |e: &Expr| {
                e.walk(&mut |x| {
                    if let Expr::Field(Field::Column(i, _)) = x {
                        if !cols.contains(i) {
                            cols.push(*i);
                        }
                    }
                })
            };
            items.iter().for_each(|(_, e)| note(e));
            if let Some(f) = &filter {
                note(f);
            }
            cols.sort_unstable();
            Some(cols)
        }
        _ => None,
    };
    Ok(Plan { filter, output, aggs, limit: q.limit, columns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    #[test]
    fn csv_binding() {
        let names = vec!["Name".to_string(), "age".to_string(), "AGE".to_string()];
        let q = parse("SELECT s.name, _2, \"Name\", \"nope\", x FROM S3Object s").unwrap();
        let p = plan(&q, &Schema::Csv { names: Some(&names) }).unwrap();
        let Output::Items(items) = p.output else { panic!() };
        assert_eq!(items[0], ("name".into(), Expr::Field(Field::Column(0, vec![]))));
        assert_eq!(items[1], ("_2".into(), Expr::Field(Field::Column(1, vec![]))));
        assert_eq!(items[2].1, Expr::Field(Field::Column(0, vec![])));
        assert_eq!(items[3].1, Expr::Str("nope".into()));
        assert_eq!(items[4].1, Expr::Field(Field::Missing));
        let q = parse("SELECT Age FROM S3Object").unwrap();
        assert_eq!(plan(&q, &Schema::Csv { names: Some(&names) }).unwrap_err().code, Code::AmbiguousFieldName);
        let q = parse("SELECT _0 FROM S3Object").unwrap();
        assert_eq!(plan(&q, &Schema::Csv { names: None }).unwrap_err().code, Code::InvalidColumnIndex);
        let q = parse("SELECT a[*] FROM S3Object").unwrap();
        assert_eq!(plan(&q, &Schema::Json).unwrap_err().code, Code::ParseUnsupportedSyntax);
    }

    #[test]
    fn parquet_projection() {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let q = parse("SELECT c, SUM(a) FROM S3Object WHERE c > 1").unwrap_err();
        assert_eq!(q.code, Code::ParseUnsupportedSyntax);
        let q = parse("SELECT c FROM S3Object WHERE a > 1").unwrap();
        assert_eq!(plan(&q, &Schema::Columns(&names)).unwrap().columns, Some(vec![0, 2]));
    }
}

//! Columnar output: the kept rows of a Parquet batch written straight from
//! the arrow columns when every output value is a plain column (`SELECT *`
//! or a list of columns). Each column's values at the kept rows are
//! rendered in one typed loop (no per-row `Value`s, no per-cell dispatch),
//! then the records are laid out from those texts and the constant parts
//! between them (`Writer::shape`). The texts are those of `Writer::value`,
//! so the bytes are the row path's (`vector_tests` checks it). Kept CSV
//! records are written from their field ranges (`csv_cells`).

use arrow_array::Array;

use crate::csv::CsvBatch;
use crate::engine::{Cells, Sink};
use crate::error::Result;
use crate::output::Writer;
use crate::parquet::Col;
use crate::value::Value;

/// The texts of one output column at the kept rows: value `i` is
/// `bytes[ends[i - 1]..ends[i]]`.
#[derive(Default)]
struct Texts {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// Renders `col` at rows `kept`. Fails where `Col::value` fails (the
/// caller then writes row by row, to fail at the same row).
fn render(w: &Writer, col: &Col<'_>, kept: &[u32], t: &mut Texts) -> Result<()> {
    macro_rules! typed {
        ($a:expr, |$x:ident| $write:expr) => {{
            let a = $a;
            for &k in kept {
                let k = k as usize;
                if a.is_null(k) {
                    w.value(&mut t.bytes, &Value::Null);
                } else {
                    let $x = a.value(k);
                    $write;
                }
                t.ends.push(t.bytes.len());
            }
        }};
    }
    match col {
        Col::I64(a) => typed!(a, |x| w.int(&mut t.bytes, x)),
        Col::I32(a) => typed!(a, |x| w.int(&mut t.bytes, x as i64)),
        Col::F64(a) => typed!(a, |x| w.float(&mut t.bytes, x)),
        Col::Str(a) => typed!(a, |x| w.text(&mut t.bytes, x)),
        Col::LargeStr(a) => typed!(a, |x| w.text(&mut t.bytes, x)),
        Col::View(a) => typed!(a, |x| w.text(&mut t.bytes, x)),
        other => {
            for &k in kept {
                w.value(&mut t.bytes, &other.value(k as usize)?);
                t.ends.push(t.bytes.len());
            }
        }
    }
    Ok(())
}

/// Writes the records of rows `kept` (already cut to LIMIT) whose values
/// are `out` (name, index into `cols` or None for MISSING). Some(whether
/// more records may follow), or None when a value can't be read (then
/// nothing is written).
pub(crate) fn write(sink: &mut Sink, out: &[(String, Option<usize>)], cols: &[(usize, Col<'_>)], kept: &[u32]) -> Option<bool> {
    if kept.is_empty() {
        return Some(true);
    }
    // The values of a record, in order: a column's texts, or MISSING's
    // (an empty CSV field; JSON leaves the member out).
    let mut parts: Vec<(&str, Option<Texts>)> = Vec::with_capacity(out.len());
    let mut missing = Vec::new();
    {
        let w = sink.writer();
        for (name, c) in out {
            match c {
                Some(c) => {
                    let mut t = Texts { bytes: Vec::with_capacity(kept.len() * 8), ends: Vec::with_capacity(kept.len()) };
                    render(w, &cols[*c].1, kept, &mut t).ok()?;
                    parts.push((name, Some(t)));
                }
                None if w.is_json() => {}
                None => {
                    if missing.is_empty() {
                        w.value(&mut missing, &Value::Missing);
                    }
                    parts.push((name, None));
                }
            }
        }
    }
    #[cfg(test)]
    WRITTEN.with(|c| c.set(c.get() + 1));
    let names: Vec<&str> = parts.iter().map(|(n, _)| *n).collect();
    Some(sink.emit_many(kept.len(), |w, buf| {
        let (head, seps, tail) = w.shape(&names);
        let total: usize = parts.iter().map(|(_, t)| t.as_ref().map_or(missing.len() * kept.len(), |t| t.bytes.len())).sum::<usize>()
            + kept.len() * (head.len() + tail.len() + seps.iter().map(Vec::len).sum::<usize>());
        buf.reserve(total);
        for i in 0..kept.len() {
            buf.extend_from_slice(&head);
            for ((_, t), sep) in parts.iter().zip(&seps) {
                buf.extend_from_slice(sep);
                match t {
                    Some(t) => {
                        let start = if i == 0 { 0 } else { t.ends[i - 1] };
                        buf.extend_from_slice(&t.bytes[start..t.ends[i]]);
                    }
                    None => buf.extend_from_slice(&missing),
                }
            }
            buf.extend_from_slice(&tail);
        }
    }))
}

/// Writes the kept records `first + kept[..]` of a batch whose output
/// values are plain fields (`Sink::cells`) from the field ranges, without
/// building the record: the bytes `visit` + `emit` write. The batch's
/// fields are known to be valid (`fields_valid`). `SELECT *` to CSV with
/// the input's field delimiter copies a record's text whole where no field
/// needs quotes (`Writer::verbatim`): the same bytes, one copy.
pub(crate) fn csv_cells(
    sink: &mut Sink,
    cells: &Cells,
    batch: &CsvBatch,
    texts: (&str, &str),
    first: usize,
    kept: &[u32],
    delim: u8,
) -> Result<bool> {
    #[cfg(test)]
    WRITTEN.with(|c| c.set(c.get() + 1));
    let verbatim = if matches!(cells, Cells::Star) { sink.writer().verbatim(delim) } else { None };
    let data = texts.0.as_bytes();
    for &k in kept {
        let r = first + k as usize;
        let span = verbatim.as_ref().and_then(|v| batch.verbatim(r).filter(|s| v.plain(&data[s.clone()])));
        let more = match cells {
            Cells::Star if span.is_some() => {
                let span = span.unwrap_or_default();
                sink.emit_many(1, |w, out| {
                    out.extend_from_slice(&data[span]);
                    w.end(out);
                })
            }
            Cells::Star => {
                let n = batch.field_count(r);
                if sink.star_names.len() < n {
                    let have = sink.star_names.len();
                    sink.star_names.extend((have..n).map(|i| format!("_{}", i + 1)));
                }
                sink.emit_cells(|w, out, names| {
                    let mut first = true;
                    w.begin(out);
                    for (i, f) in batch.record_fields(texts, r).enumerate() {
                        w.item(out, &mut first, &names[i], &Value::str(f));
                    }
                    w.end(out);
                    Ok(())
                })?
            }
            Cells::Columns(cols) => sink.emit_cells(|w, out, _| {
                let mut first = true;
                w.begin(out);
                for (name, i) in cols {
                    let v = match i.and_then(|i| batch.field(texts, r, i)) {
                        Some(Some(f)) => Value::str(f),
                        _ => Value::Missing,
                    };
                    w.item(out, &mut first, name, &v);
                }
                w.end(out);
                Ok(())
            })?,
        };
        if !more {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
thread_local! {
    /// Batches written by columns, or CSV ones from their field ranges
    /// (tests check the paths are taken).
    pub(crate) static WRITTEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

//! Parquet input through the `parquet` crate's push decoder (sans-io: it
//! names the byte ranges it needs, the caller reads and pushes them).
//!
//! Only the columns the query reads are fetched and decoded (projection),
//! and row groups whose statistics prove that the WHERE clause can't hold
//! are skipped without being read (pruning by min/max and null counts).

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{cast::AsArray, types::*, Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::push_decoder::{ParquetPushDecoder, ParquetPushDecoderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataPushDecoder, RowGroupMetaData};
use parquet::file::statistics::Statistics;
use parquet::DecodeResult;

use crate::ast::{BinOp, Expr, Field, Query};
use crate::engine::{Cells, Sink};
use crate::error::{err, Code, Result, SelectError};
use crate::eval::Row;
use crate::eventstream::Counters;
use crate::params::SelectParams;
use crate::plan::{Output, Schema};
use crate::time::{Prec, Ts};
use crate::value::Value;
use crate::vector::Batch;

/// Rows per decoded batch.
pub const BATCH_ROWS: usize = 4096;
/// Most bytes the decoder may ask for at once (a row group's projected
/// column chunks): the bound on a Parquet scan's memory.
pub const MAX_FETCH_BYTES: u64 = 512 * 1024 * 1024;

fn parquet_err(e: impl std::fmt::Display) -> SelectError {
    SelectError::new(Code::ParquetParsingError, format!("Invalid Parquet data: {e}"))
}

pub enum PStep {
    /// Read these byte ranges of the object and `push` them.
    NeedData(Vec<Range<u64>>),
    Continue,
    Done,
}

enum State {
    Meta(Box<ParquetMetaDataPushDecoder>),
    Data(Box<ParquetPushDecoder>),
    Done,
}

pub struct ParquetScan {
    query: Query,
    sink: Sink,
    state: State,
    counters: Counters,
    /// Row groups read and skipped (statistics), for tests and logs.
    pub row_groups_read: usize,
    pub row_groups_skipped: usize,
    width: usize,
    /// Per row group still to decode, in order: the byte ranges of its
    /// projected column chunks (`next_group_ranges`).
    planned: std::collections::VecDeque<Vec<Range<u64>>>,
}

impl ParquetScan {
    pub fn new(params: &SelectParams, size: u64, now: Ts) -> Result<ParquetScan> {
        params.validate()?;
        let query = crate::parser::parse(&params.expression)?;
        if size < 12 {
            return err(Code::ParquetParsingError, "The object is too small to be Parquet.");
        }
        let meta = ParquetMetaDataPushDecoder::try_new(size).map_err(parquet_err)?;
        Ok(ParquetScan {
            query,
            sink: Sink::new(params.output.clone(), now),
            state: State::Meta(Box::new(meta)),
            counters: Counters::default(),
            row_groups_read: 0,
            row_groups_skipped: 0,
            width: 0,
            planned: Default::default(),
        })
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn pending_output(&self) -> usize {
        self.sink.out_len()
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        let out = self.sink.take_out();
        self.counters.returned += out.len() as u64;
        out
    }

    /// `Engine::drain_output`.
    pub fn drain_output(&mut self, f: impl FnOnce(&[u8])) {
        let out = self.sink.out_mut();
        self.counters.returned += out.len() as u64;
        f(out);
        out.clear();
    }

    /// Takes the byte ranges of the next row group the decoder will read
    /// (its projected column chunks), so a caller can read them ahead of
    /// the `NeedData` that asks for them and `push` them then.
    pub fn next_group_ranges(&mut self) -> Option<Vec<Range<u64>>> {
        self.planned.pop_front()
    }

    /// Drops the next planned row group when `ranges` (just read on a
    /// `NeedData`) are its column chunks.
    pub fn read_planned(&mut self, ranges: &[Range<u64>]) {
        let same = |p: &Vec<Range<u64>>| {
            let (mut a, mut b) = (p.clone(), ranges.to_vec());
            a.sort_by_key(|r| r.start);
            b.sort_by_key(|r| r.start);
            a == b
        };
        if self.planned.front().is_some_and(same) {
            self.planned.pop_front();
        }
    }

    /// The bytes of `ranges`, as asked for by the last `NeedData`.
    pub fn push(&mut self, ranges: Vec<Range<u64>>, data: Vec<Vec<u8>>) -> Result<()> {
        let n: u64 = data.iter().map(|d| d.len() as u64).sum();
        self.counters.scanned += n;
        self.counters.processed += n;
        let data: Vec<Bytes> = data.into_iter().map(Bytes::from).collect();
        match &mut self.state {
            State::Meta(m) => m.push_ranges(ranges, data).map_err(parquet_err),
            State::Data(d) => d.push_ranges(ranges, data).map_err(parquet_err),
            State::Done => Ok(()),
        }
    }

    pub fn step(&mut self) -> Result<PStep> {
        match &mut self.state {
            State::Done => Ok(PStep::Done),
            State::Meta(m) => match m.try_decode().map_err(parquet_err)? {
                DecodeResult::NeedsData(r) => need(r),
                DecodeResult::Data(meta) => {
                    self.start(meta)?;
                    Ok(PStep::Continue)
                }
                DecodeResult::Finished => err(Code::ParquetParsingError, "The Parquet footer could not be read."),
            },
            State::Data(d) => match d.try_decode().map_err(parquet_err)? {
                DecodeResult::NeedsData(r) => need(r),
                DecodeResult::Data(batch) => {
                    if !self.batch(&batch)? {
                        self.finish()?;
                        return Ok(PStep::Done);
                    }
                    Ok(PStep::Continue)
                }
                DecodeResult::Finished => {
                    self.finish()?;
                    Ok(PStep::Done)
                }
            },
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.state = State::Done;
        self.sink.finish()
    }

    /// Binds the query to the file's columns, picks the row groups and
    /// columns to read, and starts the data decoder.
    fn start(&mut self, meta: ParquetMetaData) -> Result<()> {
        let meta = Arc::new(meta);
        let arrow = ArrowReaderMetadata::try_new(meta.clone(), ArrowReaderOptions::new()).map_err(parquet_err)?;
        let names: Vec<String> = arrow.schema().fields().iter().map(|f| f.name().clone()).collect();
        self.sink.bind(&self.query, &Schema::Columns(&names))?;
        self.width = names.len();
        let Some(plan) = self.sink.plan() else { return err(Code::InternalError, "unbound query") };
        let columns: Vec<usize> = match (&plan.output, &plan.columns) {
            (Output::Star, _) | (_, None) => (0..names.len()).collect(),
            (_, Some(c)) => c.clone(),
        };
        let types: Vec<DataType> = arrow.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        let conjuncts = plan.filter.as_ref().map(conjuncts).unwrap_or_default();
        let mut groups = Vec::new();
        for (i, rg) in meta.row_groups().iter().enumerate() {
            if prunable(rg, &conjuncts, &names, &types) {
                self.row_groups_skipped += 1;
            } else {
                groups.push(i);
            }
        }
        self.row_groups_read = groups.len();
        let schema = meta.file_metadata().schema_descr();
        for &g in &groups {
            let rg = meta.row_group(g);
            let chunks = (0..schema.num_columns()).filter(|&l| columns.contains(&schema.get_column_root_idx(l)));
            self.planned.push_back(chunks.map(|l| rg.column(l).byte_range()).map(|(s, n)| s..s + n).collect());
        }
        self.sink.star_names = names;
        let mask = ProjectionMask::roots(meta.file_metadata().schema_descr(), columns);
        let dec = ParquetPushDecoderBuilder::new_with_metadata(arrow)
            .with_projection(mask)
            .with_row_groups(groups)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(parquet_err)?;
        self.state = State::Data(Box::new(dec));
        Ok(())
    }

    /// Runs the rows of one decoded batch; `Ok(false)` once LIMIT is reached.
    /// The WHERE clause runs over the arrow columns by the kernels when it
    /// can; only the rows it keeps are turned into values.
    fn batch(&mut self, batch: &RecordBatch) -> Result<bool> {
        let names = &self.sink.star_names;
        let mut cols: Vec<(usize, Col<'_>)> = Vec::with_capacity(batch.num_columns());
        for (field, array) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            let Some(i) = names.iter().position(|n| n == field.name()) else { continue };
            cols.push((i, Col::new(array.as_ref())?));
        }
        let n = batch.num_rows();
        if n == 0 {
            return Ok(true);
        }
        if self.sink.limit_reached() {
            return Ok(false);
        }
        let mut row: Vec<Value<'_>> = vec![Value::Missing; self.width];
        let mut kept = Vec::new();
        // A binary column that isn't UTF-8 fails on any row read row by
        // row, kept or not: such batches keep the row path.
        let fallible = cols.iter().any(|(_, c)| matches!(c, Col::Bin(_)));
        if !fallible && self.sink.select(&ColView { cols: &cols }, n, &mut kept) {
            if let Some(cells) = self.sink.cells() {
                return write_cells(&mut self.sink, &cells, &cols, self.width, &kept);
            }
            for &r in &kept {
                for (i, c) in &cols {
                    row[*i] = c.value(r as usize)?;
                }
                if !self.sink.emit(&Row::Values(&row))? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        for r in 0..n {
            for (i, c) in &cols {
                row[*i] = c.value(r)?;
            }
            if !self.sink.row(&Row::Values(&row))? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Writes the kept rows of a batch whose output values are plain columns
/// (`Sink::cells`) straight from the arrow columns: the bytes the row path
/// (`Row::Values` of the row's columns, then `emit`) writes, without
/// building the row.
fn write_cells(sink: &mut Sink, cells: &Cells, cols: &[(usize, Col<'_>)], width: usize, kept: &[u32]) -> Result<bool> {
    // The row path's `row[i]` is the last column bound to `i` (MISSING if none).
    let source = |i: usize| cols.iter().rposition(|(c, _)| *c == i);
    let out: Vec<(String, Option<usize>)> = match cells {
        Cells::Star => (0..width).map(|i| (sink.star_names.get(i).cloned().unwrap_or_default(), source(i))).collect(),
        Cells::Columns(items) => items.iter().map(|(n, i)| (n.clone(), i.filter(|&i| i < width).and_then(source))).collect(),
    };
    // Rows past LIMIT are not written.
    let kept = &kept[..kept.len().min(sink.room())];
    if let Some(more) = crate::columnar::write(sink, &out, cols, kept) {
        return Ok(more);
    }
    for &r in kept {
        let more = sink.emit_cells(|w, buf, _| {
            let mut first = true;
            w.begin(buf);
            for (name, c) in &out {
                let v = match c {
                    Some(c) => cols[*c].1.value(r as usize)?,
                    None => Value::Missing,
                };
                w.item(buf, &mut first, name, &v);
            }
            w.end(buf);
            Ok(())
        })?;
        if !more {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Decoded arrow columns as the kernels see them.
struct ColView<'c, 'a> {
    cols: &'c [(usize, Col<'a>)],
}

impl ColView<'_, '_> {
    fn col(&self, field: &Field) -> Option<&Col<'_>> {
        match field {
            Field::Column(i, rest) if rest.is_empty() => self.cols.iter().find(|(c, _)| c == i).map(|(_, c)| c),
            _ => None,
        }
    }
}

impl Batch for ColView<'_, '_> {
    #[inline]
    fn value(&self, field: &Field, r: usize) -> Option<Value<'_>> {
        match self.col(field) {
            Some(c) => c.value(r).ok(),
            // Not projected, nested, or a JSON path: the row path's MISSING.
            None => Some(Value::Missing),
        }
    }

    fn ints(&self, field: &Field) -> Option<&arrow_array::Int64Array> {
        match self.col(field)? {
            Col::I64(a) => Some(a),
            _ => None,
        }
    }
}

fn need(ranges: Vec<Range<u64>>) -> Result<PStep> {
    let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
    if total > MAX_FETCH_BYTES {
        return err(Code::OverMaxRecordSize, "A Parquet row group's columns are larger than 512 MB.");
    }
    Ok(PStep::NeedData(ranges))
}

/// An arrow column, typed once per batch.
pub(crate) enum Col<'a> {
    Bool(&'a arrow_array::BooleanArray),
    I8(&'a arrow_array::Int8Array),
    I16(&'a arrow_array::Int16Array),
    I32(&'a arrow_array::Int32Array),
    I64(&'a arrow_array::Int64Array),
    U8(&'a arrow_array::UInt8Array),
    U16(&'a arrow_array::UInt16Array),
    U32(&'a arrow_array::UInt32Array),
    U64(&'a arrow_array::UInt64Array),
    F32(&'a arrow_array::Float32Array),
    F64(&'a arrow_array::Float64Array),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Bin(&'a arrow_array::BinaryArray),
    Date32(&'a arrow_array::Date32Array),
    Ts(&'a dyn Array, i64),
    Dec(&'a arrow_array::Decimal128Array, i32),
    /// Anything else, printed as arrow displays it.
    Other(&'a dyn Array, arrow_cast::display::ArrayFormatter<'a>),
}

impl<'a> Col<'a> {
    fn new(a: &'a dyn Array) -> Result<Col<'a>> {
        Ok(match a.data_type() {
            DataType::Boolean => Col::Bool(a.as_boolean()),
            DataType::Int8 => Col::I8(a.as_primitive::<Int8Type>()),
            DataType::Int16 => Col::I16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => Col::I32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => Col::I64(a.as_primitive::<Int64Type>()),
            DataType::UInt8 => Col::U8(a.as_primitive::<UInt8Type>()),
            DataType::UInt16 => Col::U16(a.as_primitive::<UInt16Type>()),
            DataType::UInt32 => Col::U32(a.as_primitive::<UInt32Type>()),
            DataType::UInt64 => Col::U64(a.as_primitive::<UInt64Type>()),
            DataType::Float32 => Col::F32(a.as_primitive::<Float32Type>()),
            DataType::Float64 => Col::F64(a.as_primitive::<Float64Type>()),
            DataType::Utf8 => Col::Str(a.as_string::<i32>()),
            DataType::LargeUtf8 => Col::LargeStr(a.as_string::<i64>()),
            DataType::Utf8View => Col::View(a.as_string_view()),
            DataType::Binary => Col::Bin(a.as_binary::<i32>()),
            DataType::Date32 => Col::Date32(a.as_primitive::<Date32Type>()),
            DataType::Timestamp(unit, _) => {
                let per_sec = match unit {
                    TimeUnit::Second => 1,
                    TimeUnit::Millisecond => 1_000,
                    TimeUnit::Microsecond => 1_000_000,
                    TimeUnit::Nanosecond => 1_000_000_000,
                };
                Col::Ts(a, per_sec)
            }
            DataType::Decimal128(_, scale) => Col::Dec(a.as_primitive::<Decimal128Type>(), *scale as i32),
            _ => {
                let f = arrow_cast::display::ArrayFormatter::try_new(a, &arrow_cast::display::FormatOptions::default())
                    .map_err(|e| SelectError::new(Code::UnsupportedParquetType, format!("Unsupported Parquet column type: {e}")))?;
                Col::Other(a, f)
            }
        })
    }

    pub(crate) fn value(&self, r: usize) -> Result<Value<'a>> {
        let arr: &dyn Array = match self {
            Col::Bool(a) => *a,
            Col::I8(a) => *a,
            Col::I16(a) => *a,
            Col::I32(a) => *a,
            Col::I64(a) => *a,
            Col::U8(a) => *a,
            Col::U16(a) => *a,
            Col::U32(a) => *a,
            Col::U64(a) => *a,
            Col::F32(a) => *a,
            Col::F64(a) => *a,
            Col::Str(a) => *a,
            Col::LargeStr(a) => *a,
            Col::View(a) => *a,
            Col::Bin(a) => *a,
            Col::Date32(a) => *a,
            Col::Ts(a, _) => *a,
            Col::Dec(a, _) => *a,
            Col::Other(a, _) => *a,
        };
        if arr.is_null(r) {
            return Ok(Value::Null);
        }
        Ok(match self {
            Col::Bool(a) => Value::Bool(a.value(r)),
            Col::I8(a) => Value::Int(a.value(r) as i64),
            Col::I16(a) => Value::Int(a.value(r) as i64),
            Col::I32(a) => Value::Int(a.value(r) as i64),
            Col::I64(a) => Value::Int(a.value(r)),
            Col::U8(a) => Value::Int(a.value(r) as i64),
            Col::U16(a) => Value::Int(a.value(r) as i64),
            Col::U32(a) => Value::Int(a.value(r) as i64),
            Col::U64(a) => match i64::try_from(a.value(r)) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Float(a.value(r) as f64),
            },
            Col::F32(a) => Value::Float(a.value(r) as f64),
            Col::F64(a) => Value::Float(a.value(r)),
            Col::Str(a) => Value::str(a.value(r)),
            Col::LargeStr(a) => Value::str(a.value(r)),
            Col::View(a) => Value::str(a.value(r)),
            Col::Bin(a) => match std::str::from_utf8(a.value(r)) {
                Ok(s) => Value::str(s),
                Err(_) => return err(Code::InvalidTextEncoding, "A Parquet binary value is not UTF-8."),
            },
            Col::Date32(a) => Value::Ts(Ts { secs: a.value(r) as i64 * 86_400, nanos: 0, offset_min: 0, prec: Prec::Day }),
            Col::Ts(a, per_sec) => {
                let v = a.as_primitive_opt::<TimestampNanosecondType>().map(|x| x.value(r))
                    .or_else(|| a.as_primitive_opt::<TimestampMicrosecondType>().map(|x| x.value(r)))
                    .or_else(|| a.as_primitive_opt::<TimestampMillisecondType>().map(|x| x.value(r)))
                    .or_else(|| a.as_primitive_opt::<TimestampSecondType>().map(|x| x.value(r)))
                    .unwrap_or(0);
                let secs = v.div_euclid(*per_sec);
                let nanos = (v.rem_euclid(*per_sec) * (1_000_000_000 / per_sec)) as u32;
                let prec = if *per_sec == 1 { Prec::Second } else { Prec::Frac(match per_sec { 1_000 => 3, 1_000_000 => 6, _ => 9 }) };
                Value::Ts(Ts { secs, nanos, offset_min: 0, prec })
            }
            Col::Dec(a, scale) => Value::Float(a.value(r) as f64 / 10f64.powi(*scale)),
            Col::Other(_, f) => Value::Str(std::borrow::Cow::Owned(f.value(r).to_string())),
        })
    }
}

/// A WHERE clause's top-level AND terms (BETWEEN as its two comparisons).
fn conjuncts(e: &Expr) -> Vec<Expr> {
    match e {
        Expr::Binary(BinOp::And, a, b) => {
            let mut v = conjuncts(a);
            v.extend(conjuncts(b));
            v
        }
        Expr::Between { expr, lo, hi, negated: false } => vec![
            Expr::Binary(BinOp::Ge, expr.clone(), lo.clone()),
            Expr::Binary(BinOp::Le, expr.clone(), hi.clone()),
        ],
        other => vec![other.clone()],
    }
}

/// The min and max of a column chunk, when its statistics have them and the
/// column's values compare as those statistics do.
fn bounds(rg: &RowGroupMetaData, leaf: usize, ty: &DataType) -> Option<(Value<'static>, Value<'static>, bool)> {
    let c = rg.column(leaf);
    let s = c.statistics()?;
    let all_null = s.null_count_opt().is_some_and(|n| n as i64 == rg.num_rows());
    let plain = matches!(
        ty,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64 | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    if !plain {
        return None;
    }
    let (lo, hi) = match s {
        Statistics::Int32(v) => (Value::Int(*v.min_opt()? as i64), Value::Int(*v.max_opt()? as i64)),
        Statistics::Int64(v) => (Value::Int(*v.min_opt()?), Value::Int(*v.max_opt()?)),
        Statistics::Float(v) => (Value::Float(*v.min_opt()? as f64), Value::Float(*v.max_opt()? as f64)),
        Statistics::Double(v) => (Value::Float(*v.min_opt()?), Value::Float(*v.max_opt()?)),
        Statistics::ByteArray(v) => {
            let lo = std::str::from_utf8(v.min_opt()?.data()).ok()?.to_string();
            let hi = std::str::from_utf8(v.max_opt()?.data()).ok()?.to_string();
            (Value::Str(lo.into()), Value::Str(hi.into()))
        }
        _ => return None,
    };
    if matches!(lo, Value::Float(f) if f.is_nan()) || matches!(hi, Value::Float(f) if f.is_nan()) {
        return None;
    }
    Some((lo, hi, all_null))
}

/// Whether the statistics of row group `rg` prove no row satisfies every
/// term in `terms`.
fn prunable(rg: &RowGroupMetaData, terms: &[Expr], names: &[String], types: &[DataType]) -> bool {
    let leaf_of = |i: usize| -> Option<usize> {
        let name = names.get(i)?;
        let schema = rg.schema_descr();
        (0..schema.num_columns()).find(|&l| {
            let p = schema.column(l);
            let parts = p.path().parts();
            parts.len() == 1 && parts[0] == *name
        })
    };
    let lit = |e: &Expr| -> Option<Value<'static>> {
        match e {
            Expr::Int(i) => Some(Value::Int(*i)),
            Expr::Float(f) => Some(Value::Float(*f)),
            Expr::Str(s) => Some(Value::Str(s.clone().into())),
            _ => None,
        }
    };
    let col = |e: &Expr| -> Option<usize> {
        match e {
            Expr::Field(Field::Column(i, rest)) if rest.is_empty() => Some(*i),
            _ => None,
        }
    };
    for t in terms {
        let (i, op, v) = match t {
            Expr::Binary(op, a, b) if matches!(op, BinOp::Eq | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) => {
                match (col(a), lit(b), col(b), lit(a)) {
                    (Some(i), Some(v), _, _) => (i, *op, v),
                    (_, _, Some(i), Some(v)) => (i, flip(*op), v),
                    _ => continue,
                }
            }
            _ => continue,
        };
        let Some(leaf) = leaf_of(i) else { continue };
        let Some(ty) = types.get(i) else { continue };
        let Some((lo, hi, all_null)) = bounds(rg, leaf, ty) else { continue };
        // Strings compare with strings, numbers with numbers, or no pruning.
        let same_kind = matches!((&v, &lo), (Value::Str(_), Value::Str(_)))
            || (v.num().is_some() && lo.num().is_some() && !matches!(v, Value::Str(_)) && !matches!(lo, Value::Str(_)));
        if !same_kind {
            continue;
        }
        if all_null {
            return true;
        }
        use std::cmp::Ordering::*;
        let (vs_lo, vs_hi) = (v.compare(&lo), v.compare(&hi));
        let none = match op {
            BinOp::Eq => vs_lo == Some(Less) || vs_hi == Some(Greater),
            BinOp::Lt => matches!(vs_lo, Some(Less | Equal)),
            BinOp::Le => vs_lo == Some(Less),
            BinOp::Gt => matches!(vs_hi, Some(Greater | Equal)),
            BinOp::Ge => vs_hi == Some(Greater),
            _ => false,
        };
        if none {
            return true;
        }
    }
    false
}

/// `lit OP col` as `col OP' lit`.
fn flip(op: BinOp) -> BinOp {
    match op {
        BinOp::Lt => BinOp::Gt,
        BinOp::Le => BinOp::Ge,
        BinOp::Gt => BinOp::Lt,
        BinOp::Ge => BinOp::Le,
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Compression, InputFormat, OutputFormat};
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    fn file(rows: i64, per_group: usize) -> Vec<u8> {
        let ids = Int64Array::from_iter_values(0..rows);
        let names = StringArray::from_iter((0..rows).map(|i| if i % 10 == 3 { None } else { Some(format!("n{i}")) }));
        let scores = Float64Array::from_iter_values((0..rows).map(|i| i as f64 / 2.0));
        let batch = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(ids) as _),
            ("name", Arc::new(names) as _),
            ("score", Arc::new(scores) as _),
        ])
        .unwrap();
        let props = WriterProperties::builder().set_max_row_group_size(per_group).build();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        out
    }

    fn run(data: &[u8], sql: &str) -> Result<(String, usize, usize)> {
        let params = SelectParams {
            expression: sql.into(),
            input: InputFormat::Parquet,
            compression: Compression::None,
            output: OutputFormat::Json { record_delimiter: "\n".into() },
            scan_range: None,
            progress: false,
        };
        let now = Ts::parse("2020-01-01T00:00Z").unwrap();
        let mut s = ParquetScan::new(&params, data.len() as u64, now)?;
        let mut out = Vec::new();
        loop {
            match s.step()? {
                PStep::NeedData(r) => {
                    let d = r.iter().map(|r| data[r.start as usize..r.end as usize].to_vec()).collect();
                    s.push(r, d)?;
                }
                PStep::Continue => out.extend(s.take_output()),
                PStep::Done => break,
            }
        }
        out.extend(s.take_output());
        Ok((String::from_utf8(out).unwrap(), s.row_groups_read, s.row_groups_skipped))
    }

    #[test]
    fn planned_ranges_are_those_asked_for() {
        // What `next_group_ranges` names is what the decoder then asks
        // for, group by group, so the node's read-ahead is never wasted.
        let data = file(10_000, 1000);
        let params = SelectParams {
            expression: "SELECT s.id, s.name FROM S3Object s WHERE s.id >= 2500".into(),
            input: InputFormat::Parquet,
            compression: Compression::None,
            output: OutputFormat::Json { record_delimiter: "\n".into() },
            scan_range: None,
            progress: false,
        };
        let mut s = ParquetScan::new(&params, data.len() as u64, Ts::parse("2020-01-01T00:00Z").unwrap()).unwrap();
        let mut matched = 0;
        loop {
            match s.step().unwrap() {
                PStep::NeedData(r) => {
                    if let State::Data(_) = s.state {
                        let mut want = s.next_group_ranges().unwrap();
                        let mut got = r.clone();
                        want.sort_by_key(|r| r.start);
                        got.sort_by_key(|r| r.start);
                        assert_eq!(got, want);
                        matched += 1;
                    }
                    let d = r.iter().map(|r| data[r.start as usize..r.end as usize].to_vec()).collect();
                    s.push(r, d).unwrap();
                }
                PStep::Continue => {}
                PStep::Done => break,
            }
        }
        assert_eq!((matched, s.row_groups_read, s.planned.len()), (8, 8, 0));
    }

    #[test]
    fn scans_with_projection_and_pruning() {
        let data = file(10_000, 1000);
        let (out, read, skipped) = run(&data, "SELECT s.id, s.name FROM S3Object s WHERE s.id BETWEEN 2500 AND 2502").unwrap();
        assert_eq!(out, "{\"id\":2500,\"name\":\"n2500\"}\n{\"id\":2501,\"name\":\"n2501\"}\n{\"id\":2502,\"name\":\"n2502\"}\n");
        assert_eq!((read, skipped), (1, 9));
        let (out, _, skipped) = run(&data, "SELECT COUNT(*), SUM(score) FROM S3Object WHERE name IS NULL").unwrap();
        assert_eq!(out, "{\"_1\":1000,\"_2\":2499000.0}\n");
        assert_eq!(skipped, 0);
        let (out, _, skipped) = run(&data, "SELECT COUNT(*) FROM S3Object WHERE 20000 < id").unwrap();
        assert_eq!((out.as_str(), skipped), ("{\"_1\":0}\n", 10));
        let (out, _, _) = run(&data, "SELECT * FROM S3Object LIMIT 1").unwrap();
        assert_eq!(out, "{\"id\":0,\"name\":\"n0\",\"score\":0.0}\n");
        assert_eq!(run(b"definitely not parquet", "SELECT * FROM S3Object").unwrap_err().code, Code::ParquetParsingError);
        assert_eq!(run(&data[..data.len() - 3], "SELECT * FROM S3Object").unwrap_err().code, Code::ParquetParsingError);
    }
}

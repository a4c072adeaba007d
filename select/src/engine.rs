//! The scan of a CSV or JSON object: a sans-io state machine. The caller
//! feeds pieces of the object and calls `step` until `Done`; each step does
//! a bounded amount of work (at most `STEP_BYTES` of input decoded and
//! evaluated), so a reactor can interleave a long scan with other work and
//! memory stays bounded for any object size.

use std::ops::Range;

use crate::agg::Acc;
use crate::ast::Query;
use crate::csv::{CsvBatch, CsvTokenizer};
use crate::decompress::Decoder;
use crate::error::{err, Code, Result};
use crate::ast::{Expr, Field, PathStep};
use crate::eval::{eval, json_path, keeps, Env, Row};
use crate::eventstream::Counters;
use crate::json::{from_path, JsonBatch, JsonSplitter};
use crate::jsonscan::{self, Plain};
use crate::output::Writer;
use crate::params::{HeaderInfo, InputFormat, SelectParams};
use crate::plan::{plan, Output, Plan, Schema};
use crate::value::{Ts, Value};
use crate::vector::{Batch, Pred};

/// Input bytes (after decompression) handled per step.
pub const STEP_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Feed the next piece of the object, or call `end_input`.
    NeedInput,
    /// More work is left: call `step` again (after flushing, yielding).
    Continue,
    /// The scan is over; the output is complete.
    Done,
}

/// Where the values of an output record come from (`Sink::cells`).
pub(crate) enum Cells {
    /// Every column of the record, named as `Sink::star_names`.
    Star,
    /// Named columns of the record (None: MISSING).
    Columns(Vec<(String, Option<usize>)>),
}

/// Evaluation and output, apart from the reader so both can be borrowed.
pub(crate) struct Sink {
    plan: Option<Plan>,
    /// The WHERE clause compiled to batch kernels, when it can be.
    vector: Option<Pred>,
    writer: Writer,
    out: Vec<u8>,
    accs: Vec<Acc>,
    emitted: u64,
    now: Ts,
    /// CSV column names for `SELECT *` in JSON output.
    pub(crate) star_names: Vec<String>,
}

impl Sink {
    pub(crate) fn new(output: crate::params::OutputFormat, now: Ts) -> Sink {
        Sink { plan: None, vector: None, writer: Writer::new(output), out: Vec::new(), accs: Vec::new(), emitted: 0, now, star_names: Vec::new() }
    }

    pub(crate) fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    pub(crate) fn take_out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub(crate) fn out_mut(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    pub(crate) fn out_len(&self) -> usize {
        self.out.len()
    }

    /// Handles one record; `Ok(false)` once LIMIT is reached.
    pub(crate) fn row(&mut self, row: &Row<'_>) -> Result<bool> {
        let Some(plan) = &self.plan else { return err(Code::InternalError, "unbound query") };
        if plan.limit.is_some_and(|l| self.emitted >= l) {
            return Ok(false);
        }
        let env = Env { now: self.now, aggs: &[] };
        if !keeps(plan.filter.as_ref(), row, &env)? {
            return Ok(true);
        }
        self.emit(row)
    }

    /// Whether LIMIT is reached: the next record visited ends the scan.
    pub(crate) fn limit_reached(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.limit.is_some_and(|l| self.emitted >= l))
    }

    /// The rows of a batch of `n` the WHERE clause keeps, by the vectorised
    /// kernels (all of them without a WHERE clause); false when the batch
    /// must run row by row (`row`): no kernel for this filter, or a row the
    /// kernels can't answer alike.
    pub(crate) fn select<B: Batch + ?Sized>(&self, b: &B, n: usize, kept: &mut Vec<u32>) -> bool {
        match &self.vector {
            Some(p) => crate::vector::select(p, b, n, kept).is_ok(),
            None if self.plan.as_ref().is_some_and(|p| p.filter.is_none()) && crate::vector::enabled() => {
                kept.clear();
                kept.extend(0..n as u32);
                true
            }
            None => false,
        }
    }

    /// The output's values when each is a plain input column, so kept rows
    /// can be written straight from the input (`emit_cells`): `SELECT *`,
    /// or a list of columns, without aggregates. Only where the kernels
    /// are on: the row path stays the reference.
    pub(crate) fn cells(&self) -> Option<Cells> {
        let plan = self.plan.as_ref()?;
        if !plan.aggs.is_empty() || !crate::vector::enabled() {
            return None;
        }
        match &plan.output {
            Output::Star => Some(Cells::Star),
            Output::Items(items) => items
                .iter()
                .map(|(n, e)| match e {
                    Expr::Field(Field::Column(i, rest)) if rest.is_empty() => Some((n.clone(), Some(*i))),
                    Expr::Field(Field::Missing) => Some((n.clone(), None)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Cells::Columns),
        }
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// How many more records LIMIT lets through.
    pub(crate) fn room(&self) -> usize {
        match self.plan.as_ref().and_then(|p| p.limit) {
            Some(l) => usize::try_from(l.saturating_sub(self.emitted)).unwrap_or(usize::MAX),
            None => usize::MAX,
        }
    }

    /// Writes `n` kept records at once with `write` (at most `room`):
    /// what `emit_cells` does for each. `false` once LIMIT is reached.
    pub(crate) fn emit_many(&mut self, n: usize, write: impl FnOnce(&Writer, &mut Vec<u8>)) -> bool {
        write(&self.writer, &mut self.out);
        self.emitted += n as u64;
        self.plan.as_ref().is_none_or(|p| p.limit.is_none_or(|l| self.emitted < l))
    }

    /// Writes one kept record with `write` (`Writer::begin`/`item`/`end`);
    /// what `emit` does for a record of `cells`. `Ok(false)` once LIMIT is
    /// reached.
    #[inline]
    pub(crate) fn emit_cells(&mut self, write: impl FnOnce(&Writer, &mut Vec<u8>, &[String]) -> Result<()>) -> Result<bool> {
        write(&self.writer, &mut self.out, &self.star_names)?;
        self.emitted += 1;
        Ok(self.plan.as_ref().is_none_or(|p| p.limit.is_none_or(|l| self.emitted < l)))
    }

    /// Handles a record the WHERE clause keeps; `Ok(false)` once LIMIT is
    /// reached.
    pub(crate) fn emit(&mut self, row: &Row<'_>) -> Result<bool> {
        let Some(plan) = &self.plan else { return err(Code::InternalError, "unbound query") };
        let env = Env { now: self.now, aggs: &[] };
        if !plan.aggs.is_empty() {
            for ((_, arg), acc) in plan.aggs.iter().zip(self.accs.iter_mut()) {
                let v = match arg {
                    Some(a) => Some(eval(a, row, &env)?),
                    None => None,
                };
                acc.update(v)?;
            }
            return Ok(true);
        }
        match (&plan.output, row) {
            (Output::Star, Row::Json(v)) => self.writer.json_record(&mut self.out, v),
            (Output::Star, Row::Csv(fields)) => {
                let names = &self.star_names;
                let items = fields.iter().enumerate().map(|(i, f)| (names.get(i).map_or("", String::as_str), Value::str(f)));
                if self.writer.is_json() && fields.len() > names.len() {
                    let extra: Vec<String> = (names.len()..fields.len()).map(|i| format!("_{}", i + 1)).collect();
                    let items = fields.iter().enumerate().map(|(i, f)| {
                        let n = if i < names.len() { names[i].as_str() } else { extra[i - names.len()].as_str() };
                        (n, Value::str(f))
                    });
                    self.writer.record(&mut self.out, items);
                } else {
                    self.writer.record(&mut self.out, items);
                }
            }
            (Output::Star, Row::Values(vals)) => {
                let names = &self.star_names;
                self.writer.record(&mut self.out, vals.iter().enumerate().map(|(i, v)| (names.get(i).map_or("", String::as_str), v.clone())));
            }
            (Output::Items(items), _) => {
                let vals = items.iter().map(|(n, e)| Ok((n.as_str(), eval(e, row, &env)?))).collect::<Result<Vec<_>>>()?;
                self.writer.record(&mut self.out, vals.into_iter());
            }
        }
        self.emitted += 1;
        Ok(!plan.limit.is_some_and(|l| self.emitted >= l))
    }

    /// Whether kept records are written as they are (`SELECT *`, no
    /// aggregates): `emit_members` may stand for `emit`.
    fn star(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.aggs.is_empty() && matches!(p.output, Output::Star))
    }

    /// `emit` of a JSON object record given as its members (`star` only).
    fn emit_members(&mut self, members: &[jsonscan::Member<'_>]) -> bool {
        self.writer.json_members(&mut self.out, members);
        self.emitted += 1;
        self.plan.as_ref().is_none_or(|p| p.limit.is_none_or(|l| self.emitted < l))
    }

    /// The aggregate record, at the end of the scan.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let Some(plan) = &self.plan else { return Ok(()) };
        if plan.aggs.is_empty() || plan.limit == Some(0) {
            return Ok(());
        }
        let finals: Vec<Value<'static>> = self.accs.iter().map(Acc::finish).collect();
        let env = Env { now: self.now, aggs: &finals };
        if let Output::Items(items) = &plan.output {
            let empty: [&str; 0] = [];
            let row = Row::Csv(&empty);
            let vals = items.iter().map(|(n, e)| Ok((n.as_str(), eval(e, &row, &env)?))).collect::<Result<Vec<_>>>()?;
            self.writer.record(&mut self.out, vals.into_iter());
        }
        Ok(())
    }

    pub(crate) fn bind(&mut self, q: &Query, schema: &Schema<'_>) -> Result<()> {
        let p = plan(q, schema)?;
        self.vector = p.filter.as_ref().filter(|_| crate::vector::enabled()).and_then(crate::vector::compile);
        self.accs = p.aggs.iter().map(|(k, _)| Acc::new(*k)).collect();
        self.plan = Some(p);
        Ok(())
    }
}

enum Reader {
    Csv { tok: CsvTokenizer, batch: CsvBatch, header: HeaderInfo, header_seen: bool },
    Json { split: JsonSplitter, batch: JsonBatch, values: Vec<serde_json::Value> },
}

pub struct Engine {
    query: Query,
    reader: Reader,
    sink: Sink,
    decoder: Decoder,
    piece: Vec<u8>,
    piece_off: usize,
    input_ended: bool,
    decoded: Vec<u8>,
    /// The object bytes to read, and the offset past which no record starts.
    read: Range<u64>,
    records_end: u64,
    /// Drop input up to the first record delimiter (a scan range that
    /// starts inside a record).
    skip_to: Option<Vec<u8>>,
    counters: Counters,
    done: bool,
    concluded: bool,
}

impl Engine {
    /// Parses the query and prepares a scan of an object of `size` bytes.
    pub fn new(params: &SelectParams, size: u64, now: Ts) -> Result<Engine> {
        params.validate()?;
        let query = crate::parser::parse(&params.expression)?;
        let range = match &params.scan_range {
            Some(r) => r.resolve(size)?,
            None => 0..size,
        };
        let delim: Vec<u8> = match &params.input {
            InputFormat::Csv(c) => c.record_delimiter.clone(),
            _ => b"\n".to_vec(),
        };
        // Read from just before the range: whether a record starts at its
        // first byte depends on the delimiter before it.
        let (read_start, skip_to) = if range.start > 0 {
            (range.start.saturating_sub(delim.len() as u64), Some(delim.clone()))
        } else {
            (0, None)
        };
        let read = read_start..if params.scan_range.is_some() { size } else { range.end };
        // Record offsets are in the decompressed stream: no bound applies.
        let records_end = if params.scan_range.is_some() { range.end } else { u64::MAX };
        let reader = match &params.input {
            InputFormat::Csv(c) => Reader::Csv {
                tok: CsvTokenizer::new(c.clone(), read_start),
                batch: CsvBatch::default(),
                header: c.header,
                header_seen: c.header == HeaderInfo::None,
            },
            InputFormat::Json(_) => Reader::Json { split: JsonSplitter::new(read_start), batch: JsonBatch::default(), values: Vec::new() },
            InputFormat::Parquet => return err(Code::InternalError, "Parquet is scanned by ParquetScan"),
        };
        let mut sink = Sink::new(params.output.clone(), now);
        match &reader {
            Reader::Json { .. } => sink.bind(&query, &Schema::Json)?,
            Reader::Csv { header, .. } if *header != HeaderInfo::Use => sink.bind(&query, &Schema::Csv { names: None })?,
            Reader::Csv { .. } => {
                // Bound once the header is read; check what doesn't need it now.
                plan(&query, &Schema::Csv { names: Some(&[][..]) })?;
            }
        }
        Ok(Engine {
            query,
            reader,
            sink,
            decoder: Decoder::new(params.compression),
            piece: Vec::new(),
            piece_off: 0,
            input_ended: false,
            decoded: Vec::new(),
            read,
            records_end,
            skip_to,
            counters: Counters::default(),
            done: false,
            concluded: false,
        })
    }

    /// The byte range of the object to feed, in order.
    pub fn read_range(&self) -> Range<u64> {
        self.read.clone()
    }

    pub fn feed(&mut self, piece: Vec<u8>) {
        self.piece = piece;
        self.piece_off = 0;
    }

    pub fn end_input(&mut self) {
        self.input_ended = true;
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Bytes of output records waiting to be sent.
    pub fn pending_output(&self) -> usize {
        self.sink.out.len()
    }

    /// Takes the output records produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        let out = std::mem::take(&mut self.sink.out);
        self.counters.returned += out.len() as u64;
        out
    }

    /// Hands the output records produced so far to `f` and drops them,
    /// keeping the buffer for the next ones (`take_output` without a new
    /// allocation per flush).
    pub fn drain_output(&mut self, f: impl FnOnce(&[u8])) {
        self.counters.returned += self.sink.out.len() as u64;
        f(&self.sink.out);
        self.sink.out.clear();
    }

    pub fn step(&mut self) -> Result<Step> {
        if self.done {
            return Ok(Step::Done);
        }
        let identity = self.decoder.is_identity();
        let rest = self.piece.len() - self.piece_off;
        if identity {
            if rest == 0 {
                return self.at_end_of_piece();
            }
            let n = rest.min(STEP_BYTES);
            let input = std::mem::take(&mut self.piece);
            let r = self.process(&input[self.piece_off..self.piece_off + n], false);
            self.piece = input;
            self.piece_off += n;
            self.counters.scanned += n as u64;
            self.counters.processed += n as u64;
            r?;
            return self.after_process();
        }
        let mut decoded = std::mem::take(&mut self.decoded);
        decoded.clear();
        let used = self.decoder.decode(&self.piece[self.piece_off..], &mut decoded, STEP_BYTES)?;
        self.piece_off += used;
        self.counters.scanned += used as u64;
        self.counters.processed += decoded.len() as u64;
        if used == 0 && decoded.is_empty() {
            self.decoded = decoded;
            return self.at_end_of_piece();
        }
        let r = self.process(&decoded, false);
        self.decoded = decoded;
        r?;
        self.after_process()
    }

    /// A scan stopped early (LIMIT, the end of a ScanRange) still answers
    /// its aggregates.
    fn after_process(&mut self) -> Result<Step> {
        if !self.done {
            return Ok(Step::Continue);
        }
        self.conclude()?;
        Ok(Step::Done)
    }

    fn conclude(&mut self) -> Result<()> {
        if !self.concluded {
            self.concluded = true;
            self.sink.finish()?;
        }
        Ok(())
    }

    fn at_end_of_piece(&mut self) -> Result<Step> {
        if !self.input_ended {
            return Ok(Step::NeedInput);
        }
        self.decoder.finish()?;
        self.process(&[], true)?;
        self.done = true;
        self.conclude()?;
        Ok(Step::Done)
    }

    /// Cuts records from `input` and runs them through the query.
    fn process(&mut self, mut input: &[u8], eof: bool) -> Result<()> {
        if let Some(delim) = &self.skip_to {
            match memchr::memmem::find(input, delim) {
                Some(at) => {
                    let skip = at + delim.len();
                    match &mut self.reader {
                        Reader::Csv { tok, .. } => tok.skip(skip as u64),
                        Reader::Json { split, .. } => split.skip(skip as u64),
                    }
                    input = &input[skip..];
                    self.skip_to = None;
                }
                None => {
                    // A two-byte delimiter may straddle pieces: keep its first byte.
                    let keep = if delim.len() == 2 && input.last() == Some(&delim[0]) { 1 } else { 0 };
                    let skip = input.len() - keep;
                    match &mut self.reader {
                        Reader::Csv { tok, .. } => tok.skip(skip as u64),
                        Reader::Json { split, .. } => split.skip(skip as u64),
                    }
                    input = &input[skip..];
                    if eof || keep == 0 {
                        return Ok(());
                    }
                }
            }
        }
        let end = self.records_end;
        match &mut self.reader {
            Reader::Csv { tok, batch, header, header_seen } => {
                tok.push(input, eof, batch)?;
                let texts = batch.texts()?;
                let mut fields = Vec::new();
                let n = batch.len();
                let mut first = 0;
                if !*header_seen && n > 0 {
                    let offset = batch.record(texts, 0, &mut fields)?;
                    if offset >= end {
                        self.done = true;
                        return Ok(());
                    }
                    *header_seen = true;
                    if *header == HeaderInfo::Use {
                        let names: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
                        self.sink.bind(&self.query, &Schema::Csv { names: Some(&names) })?;
                        self.sink.star_names = names;
                    }
                    first = 1;
                }
                // Records from the end of a scan range on are not ours.
                let cut = (first..n).find(|&r| batch.offset(r) >= end);
                let rows = first..cut.unwrap_or(n);
                if !csv_rows(&mut self.sink, batch, texts, rows, &mut fields, tok.field_delimiter())? || cut.is_some() {
                    self.done = true;
                    return Ok(());
                }
                if eof && !*header_seen && *header == HeaderInfo::Use {
                    // An empty object: bind without names so aggregates still answer.
                    self.sink.bind(&self.query, &Schema::Csv { names: Some(&[][..]) })?;
                }
            }
            Reader::Json { split, batch, values } => {
                split.push(input, eof, batch)?;
                // Values from the end of a scan range on are not ours.
                let n = batch.offsets.iter().take_while(|&&o| o < end).count();
                let lazy = self.sink.vector.is_some() && matches!(self.query.from_path[..], [] | [PathStep::Wildcard]);
                let more = match if lazy { json_in_place(&mut self.sink, split, batch, n)? } else { None } {
                    Some(more) => more,
                    None => {
                        split.parse_all(batch, values)?;
                        let mut recs = Vec::new();
                        for v in &values[..n] {
                            from_path(v, &self.query.from_path, &mut recs);
                        }
                        json_rows(&mut self.sink, &recs)?
                    }
                };
                if !more || n < batch.spans.len() {
                    self.done = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// CSV records as the kernels see them.
struct CsvView<'a> {
    batch: &'a CsvBatch,
    texts: (&'a str, &'a str),
    first: usize,
}

impl Batch for CsvView<'_> {
    #[inline]
    fn value(&self, field: &Field, r: usize) -> Option<Value<'_>> {
        match field {
            Field::Column(i, rest) if rest.is_empty() => {
                Some(self.batch.field(self.texts, self.first + r, *i)?.map_or(Value::Missing, Value::str))
            }
            Field::Column(..) | Field::Missing | Field::Path(_) => Some(Value::Missing),
        }
    }
}

/// Runs CSV records `rows` of `batch` through the query: the WHERE clause
/// over the whole batch by the kernels when it can, row by row otherwise.
/// `Ok(false)` once LIMIT is reached.
fn csv_rows<'a>(
    sink: &mut Sink,
    batch: &'a CsvBatch,
    texts: (&'a str, &'a str),
    rows: Range<usize>,
    fields: &mut Vec<&'a str>,
    delim: u8,
) -> Result<bool> {
    if rows.is_empty() {
        return Ok(true);
    }
    if sink.limit_reached() {
        return Ok(false);
    }
    let star = sink.plan.as_ref().is_some_and(|p| matches!(p.output, Output::Star));
    let mut kept = Vec::new();
    let view = CsvView { batch, texts, first: rows.start };
    // `record` must fail on the same row as it would row by row.
    let vector = batch.fields_valid(texts, rows.clone()) && sink.select(&view, rows.len(), &mut kept);
    let mut visit = |sink: &mut Sink, r: usize, filtered: bool| -> Result<bool> {
        batch.record(texts, r, fields)?;
        if star && sink.star_names.len() < fields.len() {
            let n = sink.star_names.len();
            sink.star_names.extend((n..fields.len()).map(|i| format!("_{}", i + 1)));
        }
        if filtered {
            sink.emit(&Row::Csv(fields))
        } else {
            sink.row(&Row::Csv(fields))
        }
    };
    if vector {
        if let Some(cells) = sink.cells() {
            return crate::columnar::csv_cells(sink, &cells, batch, texts, rows.start, &kept, delim);
        }
        for &k in &kept {
            if !visit(sink, rows.start + k as usize, true)? {
                return Ok(false);
            }
        }
    } else {
        for r in rows {
            if !visit(sink, r, false)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// JSON records as the kernels see them.
struct JsonView<'a, 'v> {
    recs: &'a [&'v serde_json::Value],
}

impl Batch for JsonView<'_, '_> {
    #[inline]
    fn value(&self, field: &Field, r: usize) -> Option<Value<'_>> {
        match field {
            Field::Path(steps) => Some(json_path(self.recs[r], steps, true)),
            Field::Column(..) | Field::Missing => Some(Value::Missing),
        }
    }
}

/// Runs JSON records through the query, as `csv_rows` does.
fn json_rows(sink: &mut Sink, recs: &[&serde_json::Value]) -> Result<bool> {
    if recs.is_empty() {
        return Ok(true);
    }
    if sink.limit_reached() {
        return Ok(false);
    }
    let mut kept = Vec::new();
    if sink.select(&JsonView { recs }, recs.len(), &mut kept) {
        for &k in &kept {
            if !sink.emit(&Row::Json(recs[k as usize]))? {
                return Ok(false);
            }
        }
    } else {
        for rec in recs {
            if !sink.row(&Row::Json(rec))? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// JSON records read in place by the kernels (`jsonscan`).
struct InPlaceView<'a> {
    text: &'a [u8],
    spans: &'a [Range<usize>],
    plain: &'a [Plain],
}

impl Batch for InPlaceView<'_> {
    #[inline]
    fn value(&self, field: &Field, r: usize) -> Option<Value<'_>> {
        match field {
            Field::Path(steps) => jsonscan::lookup(&self.text[self.spans[r].clone()], self.plain[r], steps),
            Field::Column(..) | Field::Missing => Some(Value::Missing),
        }
    }
}

/// Runs the first `n` values of a batch (each a record: the FROM path is
/// the top level) through the WHERE kernels in place, parsing only the
/// records kept. None when the batch must be parsed whole and run as
/// `json_rows` does (a value isn't plain, or the kernels fall back): that
/// path then raises the same errors at the same rows.
fn json_in_place(sink: &mut Sink, split: &JsonSplitter, batch: &JsonBatch, n: usize) -> Result<Option<bool>> {
    let text = split.text();
    // Every value of the batch, also past a scan range's end: the serde
    // path parses (and may refuse) them all.
    if batch.plain.contains(&Plain::No) {
        return Ok(None);
    }
    if n == 0 {
        return Ok(Some(true));
    }
    if sink.limit_reached() {
        return Ok(Some(false));
    }
    let mut kept = Vec::new();
    if !sink.select(&InPlaceView { text, spans: &batch.spans[..n], plain: &batch.plain[..n] }, n, &mut kept) {
        return Ok(None);
    }
    #[cfg(test)]
    IN_PLACE_BATCHES.with(|c| c.set(c.get() + 1));
    // `SELECT *` of flat objects is written from the bytes; the rest is
    // parsed and emitted as the row path does.
    let star = sink.star();
    let mut members = Vec::new();
    for &k in &kept {
        if star && jsonscan::members(&text[batch.spans[k as usize].clone()], &mut members) {
            #[cfg(test)]
            WRITTEN_FROM_BYTES.with(|c| c.set(c.get() + 1));
            if !sink.emit_members(&members) {
                return Ok(Some(false));
            }
            continue;
        }
        let v = split.parse(batch, k as usize)?;
        if !sink.emit(&Row::Json(&v))? {
            return Ok(Some(false));
        }
    }
    Ok(Some(true))
}

#[cfg(test)]
thread_local! {
    /// JSON batches the kernels answered in place (tests check the path is taken).
    pub(crate) static IN_PLACE_BATCHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// JSON records `SELECT *` wrote from their bytes.
    pub(crate) static WRITTEN_FROM_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

//! SelectObjectContent: the request XML, the object read in bounded pieces
//! through the same path as GetObject, the scan (`tessera-select`) run in
//! bounded steps that yield to the reactor, and the answer streamed as an
//! event stream in a chunked body.

use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tessera_io::{Body, IoError};
use tessera_proto::xml::{self, Element};
use tessera_proto::S3Result;
use tessera_select::eventstream::{self, Counters};
use tessera_select::params::{
    parse_compression, parse_json_type, CsvInput, CsvInputOptions, CsvOutput, CsvOutputOptions, InputFormat,
    OutputFormat, ScanRange,
};
use tessera_select::{Code, Engine, SelectError, SelectParams, Step, Ts};

use super::get::{read_version, LoadedObject};
use super::versions;
use crate::buckets::BucketInfo;
use crate::conn::{Conn, ConnError};
use crate::request::Request;
use crate::response::{pieces, RespBody, Response, STREAM_PIECE_BYTES};
use crate::server::Ctx;

/// Largest request document (the SQL expression is at most 256 KiB).
pub const MAX_SELECT_REQUEST_BYTES: usize = 512 * 1024;
/// Output records are sent once this many bytes are waiting.
pub const RECORDS_FLUSH_BYTES: usize = 256 * 1024;
/// A scan that has sent nothing for this long sends a Cont event, so
/// clients and proxies don't take the connection for dead.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// The error answer for a Select error found before the stream started:
/// AWS's code (`ParseUnexpectedToken`, ...) as the body's Code.
fn error_response(req: &Request<'_>, e: &SelectError) -> Response {
    let body = xml::error_body(e.code.as_str(), &e.message, &req.head.path, &req.request_id, &[]);
    Response::xml(e.code.status(), body)
}

fn missing(what: &str) -> SelectError {
    SelectError::new(Code::MissingRequiredParameter, format!("{what} is required."))
}

fn text<'a>(el: &'a Element, name: &str) -> Option<&'a str> {
    el.child_text(name)
}

/// Maps the request document to the scan's parameters.
pub fn parse_request(root: &Element) -> Result<SelectParams, SelectError> {
    if root.name != "SelectObjectContentRequest" {
        return Err(SelectError::new(Code::InvalidRequestParameter, "The root element must be SelectObjectContentRequest."));
    }
    let expression = text(root, "Expression").ok_or_else(|| missing("Expression"))?.to_string();
    match text(root, "ExpressionType") {
        Some(t) if t.eq_ignore_ascii_case("SQL") => {}
        Some(_) => return Err(SelectError::new(Code::InvalidExpressionType, "ExpressionType must be SQL.")),
        None => return Err(missing("ExpressionType")),
    }
    let input_el = root.child("InputSerialization").ok_or_else(|| missing("InputSerialization"))?;
    let output_el = root.child("OutputSerialization").ok_or_else(|| missing("OutputSerialization"))?;
    let compression = parse_compression(text(input_el, "CompressionType"))?;
    let formats: Vec<&Element> = input_el.children.iter().filter(|c| matches!(c.name.as_str(), "CSV" | "JSON" | "Parquet")).collect();
    let input = match formats.as_slice() {
        [] => return Err(missing("InputSerialization's format (CSV, JSON or Parquet)")),
        [one] => match one.name.as_str() {
            "CSV" => InputFormat::Csv(CsvInput::from_options(&CsvInputOptions {
                file_header_info: text(one, "FileHeaderInfo"),
                comments: text(one, "Comments"),
                quote_escape_character: text(one, "QuoteEscapeCharacter"),
                record_delimiter: text(one, "RecordDelimiter"),
                field_delimiter: text(one, "FieldDelimiter"),
                quote_character: text(one, "QuoteCharacter"),
                allow_quoted_record_delimiter: text(one, "AllowQuotedRecordDelimiter"),
            })?),
            "JSON" => InputFormat::Json(parse_json_type(text(one, "Type"))?),
            _ => InputFormat::Parquet,
        },
        _ => return Err(SelectError::new(Code::ObjectSerializationConflict, "InputSerialization names more than one format.")),
    };
    let outs: Vec<&Element> = output_el.children.iter().filter(|c| matches!(c.name.as_str(), "CSV" | "JSON")).collect();
    let output = match outs.as_slice() {
        [] => return Err(missing("OutputSerialization's format (CSV or JSON)")),
        [one] if one.name == "CSV" => OutputFormat::Csv(CsvOutput::from_options(&CsvOutputOptions {
            quote_fields: text(one, "QuoteFields"),
            quote_escape_character: text(one, "QuoteEscapeCharacter"),
            record_delimiter: text(one, "RecordDelimiter"),
            field_delimiter: text(one, "FieldDelimiter"),
            quote_character: text(one, "QuoteCharacter"),
        })?),
        [one] => {
            let rd = text(one, "RecordDelimiter").unwrap_or("\n");
            if rd.is_empty() || rd.chars().count() > 2 {
                return Err(SelectError::new(Code::InvalidRequestParameter, "RecordDelimiter must be one or two characters."));
            }
            OutputFormat::Json { record_delimiter: rd.to_string() }
        }
        _ => return Err(SelectError::new(Code::ObjectSerializationConflict, "OutputSerialization names more than one format.")),
    };
    let progress = root
        .child("RequestProgress")
        .and_then(|p| text(p, "Enabled"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let scan_range = match root.child("ScanRange") {
        None => None,
        Some(r) => {
            let num = |n: &str| -> Result<Option<u64>, SelectError> {
                text(r, n)
                    .map(|v| {
                        v.trim().parse::<u64>().map_err(|_| {
                            SelectError::new(Code::InvalidScanRange, format!("ScanRange {n} must be a non-negative integer."))
                        })
                    })
                    .transpose()
            };
            Some(ScanRange { start: num("Start")?, end: num("End")? })
        }
    };
    let params = SelectParams { expression, input, compression, output, scan_range, progress };
    params.validate()?;
    Ok(params)
}

pub async fn select_object(ctx: &Rc<Ctx>, req: &mut Request<'_>, b: &BucketInfo) -> S3Result<Response> {
    let sel = versions::requested(&req.routed.query)?;
    let doc = req.read_body_to_vec(MAX_SELECT_REQUEST_BYTES).await?;
    let root = xml::parse(&doc)?;
    // The object first: who may not read it learns nothing, not even
    // whether their request would have been valid.
    let obj = read_version(ctx, b, req.key(), sel).await?;
    if obj.summary.delete_marker {
        crate::authz::check_missing(req, b)?;
    } else {
        crate::authz::check_object(req, b, crate::authz::ObjectFacts { acl: obj.meta.acl.as_ref(), tags: &obj.meta.tags })?;
    }
    if obj.meta.sse.is_some() {
        // The scan reads stored bytes directly; it does not open sealed
        // packages yet, and must never scan ciphertext.
        return Err(tessera_proto::S3Error::with_message(
            tessera_proto::S3ErrorCode::NotImplemented,
            "SelectObjectContent on an encrypted object is not supported yet",
        ));
    }
    let params = match parse_request(&root) {
        Ok(p) => p,
        Err(e) => return Ok(error_response(req, &e)),
    };
    obj.refuse_delete_marker(sel)?;
    crate::tier::refuse_stub(&obj.meta)?;
    let LoadedObject { shard, body, summary, .. } = obj;
    let now_ms = tessera_proto::time::now_unix_ms();
    let now = Ts { secs: now_ms.div_euclid(1000), nanos: (now_ms.rem_euclid(1000) * 1_000_000) as u32, offset_min: 0, prec: tessera_select::time::Prec::Frac(3) };
    let source = Source { ctx: ctx.clone(), shard, body };
    let scan = if params.input == InputFormat::Parquet {
        match super::select_parquet::ParquetScan::open(&params, &source, summary.size, now).await {
            Ok(s) => Scan::Parquet(Box::new(s)),
            Err(e) => return scan_open_error(req, e),
        }
    } else {
        match Engine::new(&params, summary.size, now) {
            Ok(e) => Scan::Text(Box::new(e)),
            Err(e) => return Ok(error_response(req, &e)),
        }
    };
    let mut stream = SelectStream::new(source, scan, params.progress);
    // Run until there is something to send: errors found before that are
    // ordinary error responses.
    if let Err(e) = stream.advance().await {
        return match e {
            StreamError::Select(e) => Ok(error_response(req, &e)),
            StreamError::Io(e) => Err(super::io_error(e)),
        };
    }
    let mut resp = Response::new(200);
    resp.push_header("Content-Type", "application/octet-stream");
    resp.body = RespBody::Select(Box::new(stream));
    Ok(resp)
}

fn scan_open_error(req: &Request<'_>, e: StreamError) -> S3Result<Response> {
    match e {
        StreamError::Select(e) => Ok(error_response(req, &e)),
        StreamError::Io(e) => Err(super::io_error(e)),
    }
}

pub enum StreamError {
    Select(SelectError),
    Io(IoError),
}

impl From<SelectError> for StreamError {
    fn from(e: SelectError) -> Self {
        StreamError::Select(e)
    }
}

impl From<IoError> for StreamError {
    fn from(e: IoError) -> Self {
        StreamError::Io(e)
    }
}

/// The object's bytes, read through the shard as GetObject reads them.
pub struct Source {
    pub ctx: Rc<Ctx>,
    pub shard: u32,
    pub body: Body,
}

impl Source {
    /// Reads `range` of the object (at most a few pieces: callers bound it).
    pub async fn read(&self, range: Range<u64>) -> Result<Vec<u8>, IoError> {
        match &self.body {
            Body::Inline(data) => {
                let (s, e) = (range.start.min(data.len() as u64) as usize, range.end.min(data.len() as u64) as usize);
                Ok(data[s..e.max(s)].to_vec())
            }
            Body::Extents(extents) => {
                let mut out = Vec::with_capacity((range.end - range.start) as usize);
                for (e, r) in pieces(extents, range) {
                    out.extend_from_slice(&self.ctx.shards.read_extent(self.shard, e, r).await?);
                }
                Ok(out)
            }
        }
    }

    /// Reads `ranges` of the object in a task of its own (read-ahead).
    pub fn spawn_read_ranges(&self, ranges: Vec<Range<u64>>) -> monoio::task::JoinHandle<Result<Vec<Vec<u8>>, IoError>> {
        let src = Source { ctx: self.ctx.clone(), shard: self.shard, body: self.body.clone() };
        monoio::spawn(async move {
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                out.push(src.read(r).await?);
            }
            Ok(out)
        })
    }

    fn pieces(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut s = range.start;
        while s < range.end {
            let e = (s + STREAM_PIECE_BYTES).min(range.end);
            out.push(s..e);
            s = e;
        }
        out
    }
}

/// What is being scanned.
pub enum Scan {
    Text(Box<Engine>),
    Parquet(Box<super::select_parquet::ParquetScan>),
}

/// The scan and the event stream it produces.
pub struct SelectStream {
    source: Source,
    scan: Scan,
    progress: bool,
    /// Pieces of the object still to read (text scans).
    todo: std::collections::VecDeque<Range<u64>>,
    next: Option<monoio::task::JoinHandle<Result<Vec<u8>, IoError>>>,
    /// Framed messages waiting to be written.
    frames: Vec<u8>,
    finished: bool,
    last_sent: Instant,
}

impl SelectStream {
    fn new(source: Source, scan: Scan, progress: bool) -> SelectStream {
        let todo = match &scan {
            Scan::Text(e) => source.pieces(e.read_range()).into(),
            Scan::Parquet(_) => Default::default(),
        };
        SelectStream { source, scan, progress, todo, next: None, frames: Vec::new(), finished: false, last_sent: Instant::now() }
    }

    fn spawn_read(&mut self) {
        if self.next.is_none() {
            if let Some(r) = self.todo.pop_front() {
                let ctx = self.source.ctx.clone();
                let shard = self.source.shard;
                let src = match &self.source.body {
                    Body::Inline(d) => Err(d.clone()),
                    Body::Extents(x) => Ok(x.clone()),
                };
                self.next = Some(monoio::spawn(async move {
                    match src {
                        Err(data) => {
                            let (s, e) = (r.start as usize, (r.end as usize).min(data.len()));
                            Ok(data.get(s..e).map(<[u8]>::to_vec).unwrap_or_default())
                        }
                        Ok(extents) => {
                            let mut out = Vec::new();
                            for (e, rr) in pieces(&extents, r) {
                                out.extend_from_slice(&ctx.shards.read_extent(shard, e, rr).await?);
                            }
                            Ok(out)
                        }
                    }
                }));
            }
        }
    }

    fn counters(&self) -> Counters {
        match &self.scan {
            Scan::Text(e) => e.counters(),
            Scan::Parquet(p) => p.counters(),
        }
    }

    fn flush_records(&mut self) {
        let frames = &mut self.frames;
        let frame = |out: &[u8]| {
            if !out.is_empty() {
                eventstream::records(frames, out);
            }
        };
        // The scan keeps its output buffer: no new one per flush.
        match &mut self.scan {
            Scan::Text(e) => e.drain_output(frame),
            Scan::Parquet(p) => p.drain_output(frame),
        }
    }

    fn pending_output(&self) -> usize {
        match &self.scan {
            Scan::Text(e) => e.pending_output(),
            Scan::Parquet(p) => p.pending_output(),
        }
    }

    /// Runs the scan until frames are ready to send or it is over. Each
    /// step is bounded and followed by a yield to the reactor's other tasks.
    async fn advance(&mut self) -> Result<(), StreamError> {
        while !self.finished && self.frames.is_empty() {
            let step = match &mut self.scan {
                Scan::Text(e) => e.step()?,
                Scan::Parquet(p) => p.step(&self.source).await?,
            };
            match step {
                Step::NeedInput => {
                    self.spawn_read();
                    let piece = match self.next.take() {
                        Some(h) => Some(h.await?),
                        None => None,
                    };
                    if piece.is_some() {
                        self.spawn_read();
                    }
                    let Scan::Text(engine) = &mut self.scan else { continue };
                    match piece {
                        Some(piece) => {
                            engine.feed(piece);
                            if self.progress {
                                let c = engine.counters();
                                eventstream::progress(&mut self.frames, c);
                            }
                        }
                        None => engine.end_input(),
                    }
                }
                Step::Continue => {
                    if self.pending_output() >= RECORDS_FLUSH_BYTES {
                        self.flush_records();
                    } else if self.last_sent.elapsed() >= KEEPALIVE_INTERVAL {
                        eventstream::cont(&mut self.frames);
                    }
                }
                Step::Done => {
                    self.flush_records();
                    let c = self.counters();
                    if self.progress {
                        eventstream::progress(&mut self.frames, c);
                    }
                    eventstream::stats(&mut self.frames, c);
                    eventstream::end(&mut self.frames);
                    self.finished = true;
                }
            }
            tessera_io::sim::yield_now().await;
        }
        Ok(())
    }

    /// Writes the event stream as a chunked body. An error during the scan
    /// becomes an error event that ends the stream; a read error of the
    /// object too (the client sees InternalError, the log the detail).
    pub async fn write_to(mut self, conn: &mut Conn) -> Result<(), ConnError> {
        loop {
            if !self.frames.is_empty() {
                let frames = std::mem::take(&mut self.frames);
                write_chunk(conn, &frames).await?;
                self.last_sent = Instant::now();
            }
            if self.finished {
                break;
            }
            if let Err(e) = self.advance().await {
                let (code, msg) = match e {
                    StreamError::Select(e) => (e.code.as_str(), e.message),
                    StreamError::Io(e) => {
                        tracing::error!("select: object read failed: {e}");
                        ("InternalError", "We encountered an internal error. Please try again.".to_string())
                    }
                };
                // Records produced before the error are still delivered.
                self.flush_records();
                eventstream::error(&mut self.frames, code, &msg);
                self.finished = true;
            }
        }
        conn.write_all(b"0\r\n\r\n".to_vec()).await?;
        Ok(())
    }
}

async fn write_chunk(conn: &mut Conn, data: &[u8]) -> Result<(), ConnError> {
    let mut buf = Vec::with_capacity(data.len() + 16);
    buf.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
    conn.write_all(buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(inner: &str) -> Element {
        xml::parse(format!("<SelectObjectContentRequest>{inner}</SelectObjectContentRequest>").as_bytes()).unwrap()
    }

    #[test]
    fn request_documents() {
        let ok = doc("<Expression>SELECT * FROM S3Object</Expression><ExpressionType>SQL</ExpressionType>\
            <InputSerialization><CSV><FileHeaderInfo>USE</FileHeaderInfo><RecordDelimiter>&#10;</RecordDelimiter></CSV><CompressionType>GZIP</CompressionType></InputSerialization>\
            <OutputSerialization><JSON/></OutputSerialization><RequestProgress><Enabled>TRUE</Enabled></RequestProgress>");
        let p = parse_request(&ok).unwrap();
        assert!(p.progress);
        assert_eq!(p.output, OutputFormat::Json { record_delimiter: "\n".into() });
        let cases = [
            ("<ExpressionType>SQL</ExpressionType>", Code::MissingRequiredParameter),
            ("<Expression>x</Expression><ExpressionType>XQUERY</ExpressionType>", Code::InvalidExpressionType),
            ("<Expression>x</Expression><ExpressionType>SQL</ExpressionType><InputSerialization><CSV/><JSON><Type>LINES</Type></JSON></InputSerialization><OutputSerialization><CSV/></OutputSerialization>", Code::ObjectSerializationConflict),
            ("<Expression>x</Expression><ExpressionType>SQL</ExpressionType><InputSerialization><Parquet/><CompressionType>GZIP</CompressionType></InputSerialization><OutputSerialization><CSV/></OutputSerialization>", Code::ObjectSerializationConflict),
            ("<Expression>x</Expression><ExpressionType>SQL</ExpressionType><InputSerialization><JSON><Type>LINES</Type></JSON></InputSerialization><OutputSerialization><CSV/></OutputSerialization><ScanRange><Start>x</Start></ScanRange>", Code::InvalidScanRange),
            ("<Expression>x</Expression><ExpressionType>SQL</ExpressionType><InputSerialization><JSON><Type>DOCUMENT</Type></JSON></InputSerialization><OutputSerialization><CSV/></OutputSerialization><ScanRange><Start>1</Start></ScanRange>", Code::UnsupportedScanRangeInput),
            ("<Expression>x</Expression><ExpressionType>SQL</ExpressionType><InputSerialization><CSV/></InputSerialization>", Code::MissingRequiredParameter),
            ("<Expression>x</Expression><ExpressionType>SQL</ExpressionType><InputSerialization><CSV/></InputSerialization><OutputSerialization><CSV><QuoteFields>NEVER</QuoteFields></CSV></OutputSerialization>", Code::InvalidQuoteFields),
        ];
        for (inner, code) in cases {
            assert_eq!(parse_request(&doc(inner)).unwrap_err().code, code, "{inner}");
        }
    }
}

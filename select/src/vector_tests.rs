//! Differential tests of the vectorised WHERE: random filters over random
//! tables (CSV, JSON lines, Parquet), each scan run twice — with the
//! kernels and with the row evaluator only — must produce the same bytes
//! and the same error (code and message).

use std::sync::Arc;

use crate::error::SelectError;
use crate::params::{
    Compression, CsvInput, CsvInputOptions, CsvOutput, CsvOutputOptions, InputFormat, JsonType, OutputFormat, SelectParams,
};
use crate::parquet::{PStep, ParquetScan};
use crate::time::{Prec, Ts};
use crate::{Engine, Step};

const NOW: Ts = Ts { secs: 1_600_000_000, nanos: 0, offset_min: 0, prec: Prec::Second };

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const CSV_CELLS: &[&str] = &[
    "0", "1", "7", "-3", "42", "007", " 7 ", "2.5", "-0.5", "1e3", "", "abc", "ABC", "héllo", "ü", "true", "FALSE", "null",
    "2020-01-01T", "\"a,b\"", "\"say \"\"hi\"\"\"", "99999999999999999999", "x%y", "a_c", "it's", "5.5", "\"l\nm\"",
];
const CONSTS: &[&str] = &[
    "1", "0", "-3", "7", "2.5", "'abc'", "'7'", "'héllo'", "true", "false", "NULL", "MISSING", "'2020-01-01T'", "''", "1e3",
];
const OPS: &[&str] = &["=", "<>", "!=", "<", "<=", ">", ">="];
const TYPES: &[&str] = &["INT", "FLOAT", "STRING", "BOOL", "TIMESTAMP", "DECIMAL"];
const LIKES: &[&str] = &["'a%'", "'%c'", "'%l%'", "'_'", "'h_llo'", "'x\\%y' ESCAPE '\\'", "''", "'%'"];

fn atom(rng: &mut Rng, cols: &[&str]) -> String {
    let c = *rng.pick(cols);
    let k = *rng.pick(CONSTS);
    let x = if rng.below(4) == 0 { format!("CAST({c} AS {})", rng.pick(TYPES)) } else { c.to_string() };
    match rng.below(9) {
        0 | 1 => format!("{x} {} {k}", rng.pick(OPS)),
        2 => format!("{k} {} {x}", rng.pick(OPS)),
        3 => format!("{x} {}BETWEEN {k} AND {}", if rng.below(3) == 0 { "NOT " } else { "" }, rng.pick(CONSTS)),
        4 => format!("{x} {}IN ({k}, {}, {})", if rng.below(3) == 0 { "NOT " } else { "" }, rng.pick(CONSTS), rng.pick(CONSTS)),
        5 => format!("{x} IS {}{}", if rng.below(2) == 0 { "NOT " } else { "" }, if rng.below(2) == 0 { "NULL" } else { "MISSING" }),
        6 => format!("{x} {}LIKE {}", if rng.below(3) == 0 { "NOT " } else { "" }, rng.pick(LIKES)),
        // Shapes without a kernel: the whole filter runs row by row.
        7 => format!("CHAR_LENGTH({c}) > 2"),
        _ => format!("{x} + 1 > {k}"),
    }
}

fn filter(rng: &mut Rng, cols: &[&str], depth: usize) -> String {
    if depth == 0 || rng.below(3) == 0 {
        return atom(rng, cols);
    }
    match rng.below(4) {
        0 => format!("NOT ({})", filter(rng, cols, depth - 1)),
        1 => format!("({}) OR ({})", filter(rng, cols, depth - 1), filter(rng, cols, depth - 1)),
        _ => format!("({}) AND ({})", filter(rng, cols, depth - 1), filter(rng, cols, depth - 1)),
    }
}

fn query(rng: &mut Rng, cols: &[&str]) -> String {
    let proj = match rng.below(5) {
        0 => "COUNT(*)".to_string(),
        1 => format!("{}, {}", rng.pick(cols), rng.pick(cols)),
        2 => format!("CAST({} AS INT)", rng.pick(cols)),
        _ => "*".to_string(),
    };
    let limit = if rng.below(4) == 0 { format!(" LIMIT {}", rng.below(5)) } else { String::new() };
    format!("SELECT {proj} FROM S3Object s WHERE {}{limit}", filter(rng, cols, 3))
}

/// CSV output options: the defaults, quotes always, and delimiters and
/// quotes that numbers and text contain (so they need quoting).
const CSV_OUTPUTS: &[CsvOutputOptions<'static>] = &[
    CsvOutputOptions { quote_fields: None, quote_escape_character: None, record_delimiter: None, field_delimiter: None, quote_character: None },
    CsvOutputOptions { quote_fields: Some("ALWAYS"), quote_escape_character: None, record_delimiter: None, field_delimiter: None, quote_character: None },
    CsvOutputOptions { quote_fields: None, quote_escape_character: Some("\\"), record_delimiter: Some("5"), field_delimiter: Some("."), quote_character: Some("'") },
    CsvOutputOptions { quote_fields: None, quote_escape_character: None, record_delimiter: Some("\r\n"), field_delimiter: Some("é"), quote_character: Some("a") },
];

fn params(sql: &str, input: InputFormat, json_out: bool) -> SelectParams {
    let output = if json_out {
        OutputFormat::Json { record_delimiter: "\n".into() }
    } else {
        let pick = (sql.len() * 7 + sql.bytes().map(|b| b as usize).sum::<usize>()) % CSV_OUTPUTS.len();
        OutputFormat::Csv(CsvOutput::from_options(&CSV_OUTPUTS[pick]).unwrap())
    };
    SelectParams { expression: sql.into(), input, compression: Compression::None, output, scan_range: None, progress: false }
}

thread_local! {
    /// Scans in which the kernels answered at least one batch.
    static VECTORISED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn vectorised() -> usize {
    VECTORISED.with(|c| c.get())
}

type Outcome = (Vec<u8>, Option<(String, String)>);

fn outcome(out: Vec<u8>, e: Option<SelectError>) -> Outcome {
    (out, e.map(|e| (format!("{:?}", e.code), e.message)))
}

fn text_scan(p: &SelectParams, data: &[u8], piece: usize) -> Outcome {
    let mut e = match Engine::new(p, data.len() as u64, NOW) {
        Ok(e) => e,
        Err(err) => return outcome(Vec::new(), Some(err)),
    };
    let mut pieces = data.chunks(piece);
    let mut out = Vec::new();
    loop {
        match e.step() {
            Ok(Step::NeedInput) => match pieces.next() {
                Some(c) => e.feed(c.to_vec()),
                None => e.end_input(),
            },
            Ok(Step::Continue) => out.extend(e.take_output()),
            Ok(Step::Done) => {
                out.extend(e.take_output());
                return outcome(out, None);
            }
            Err(err) => {
                out.extend(e.take_output());
                return outcome(out, Some(err));
            }
        }
    }
}

fn parquet_scan(p: &SelectParams, data: &[u8]) -> Outcome {
    let mut s = match ParquetScan::new(p, data.len() as u64, NOW) {
        Ok(s) => s,
        Err(err) => return outcome(Vec::new(), Some(err)),
    };
    let mut out = Vec::new();
    loop {
        match s.step() {
            Ok(PStep::NeedData(ranges)) => {
                let bufs = ranges.iter().map(|r| data[r.start as usize..r.end as usize].to_vec()).collect();
                if let Err(err) = s.push(ranges, bufs) {
                    return outcome(out, Some(err));
                }
            }
            Ok(PStep::Continue) => out.extend(s.take_output()),
            Ok(PStep::Done) => {
                out.extend(s.take_output());
                return outcome(out, None);
            }
            Err(err) => {
                out.extend(s.take_output());
                return outcome(out, Some(err));
            }
        }
    }
}

/// Runs `scan` with and without the kernels; they must agree.
fn both(sql: &str, scan: impl Fn() -> Outcome) -> bool {
    let before = crate::vector::KERNEL_BATCHES.with(|c| c.get());
    crate::vector::set_disabled(true);
    let reference = scan();
    crate::vector::set_disabled(false);
    let got = scan();
    if crate::vector::KERNEL_BATCHES.with(|c| c.get()) > before {
        VECTORISED.with(|c| c.set(c.get() + 1));
    }
    assert_eq!(
        got,
        reference,
        "{sql}\nvectorised: {:?}\nrow path:   {:?}",
        (String::from_utf8_lossy(&got.0), &got.1),
        (String::from_utf8_lossy(&reference.0), &reference.1)
    );
    reference.1.is_some()
}

fn csv_table(rng: &mut Rng) -> String {
    let mut s = String::from("a,b,c,d\n");
    for _ in 0..rng.below(300) {
        // Short and long records: missing and extra fields.
        let n = match rng.below(10) {
            0 => 2,
            1 => 5,
            _ => 4,
        };
        let cells: Vec<&str> = (0..n).map(|_| *rng.pick(CSV_CELLS)).collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

#[test]
fn csv_matches_row_path() {
    let mut rng = Rng(0x5eed_0001);
    let cols = ["s.a", "s.b", "s._3", "d", "s.zz", "_5"];
    let input = InputFormat::Csv(CsvInput::from_options(&CsvInputOptions { file_header_info: Some("USE"), ..Default::default() }).unwrap());
    let mut errors = 0;
    let cells = crate::columnar::WRITTEN.with(|c| c.get());
    for i in 0..400 {
        let table = csv_table(&mut rng);
        let mut sql = query(&mut rng, &cols);
        if i % 5 == 0 {
            // No WHERE: every record kept.
            sql = format!("SELECT {} FROM S3Object s{}", ["*", "s.a, s.zz, _5", "d, d"][rng.below(3)], [" LIMIT 3", ""][rng.below(2)]);
        }
        let piece = [7, 64, 1000, 1 << 20][rng.below(4)];
        let p = params(&sql, input.clone(), rng.below(2) == 0);
        errors += both(&sql, || text_scan(&p, table.as_bytes(), piece)) as usize;
    }
    // The generator reaches errors (CAST failures, type mismatches) too,
    // and the kernels answer a good share of the scans.
    assert!(errors > 10, "{errors}");
    assert!(vectorised() > 100, "{}", vectorised());
    // Kept records were written from their field ranges.
    let cells = crate::columnar::WRITTEN.with(|c| c.get()) - cells;
    assert!(cells > 100, "{cells}");
}

const JSON_VALUES: &[&str] = &[
    "0", "1", "7", "-3", "2.5", "1e3", "null", "true", "false", "\"abc\"", "\"7\"", "\"héllo\"", "\"\"", "\"2020-01-01T\"", "[1,2]",
    "{\"x\":1}", "\"x%y\"", "-0", "18446744073709551615", "-9223372036854775809", "123456789012345678901234567890", "1.5E+2",
    "0.1e-2", "\"a\\\"b\"", "\"\\u00e9\"", "\"h\\u00e9llo\"", "\"x\\ny\"", "[\"7\",{\"y\":2}]", "[]", "{}",
    // serde_json reads these; the in-place reader leaves them to it.
    "\"\\ud83d\\ude00\"", "1e100", "1234567890123456789012345678901234567890123",
];
/// Records serde_json refuses: the scan fails at them either way.
const JSON_BAD: &[&str] = &["{\"a\":01}", "{\"a\":1,}", "{\"a\":\"\\ud800\"}", "{\"a\":1e400}", "{\"a\":\"\u{1}\"}", "{\"a\" 1}", "[1 2]"];
const JSON_KEYS: &[&str] = &["a", "b", "c", "A", "n", "l", "a", "B", "\\u0061", "_1"];

fn json_table(rng: &mut Rng) -> String {
    let mut s = String::new();
    // Flat tables: records `SELECT *` writes from their bytes.
    let flat = rng.below(2) == 0;
    for _ in 0..rng.below(300) {
        match rng.below(60) {
            0 => s.push_str(&format!("{}\n", rng.pick(JSON_BAD))),
            1 => s.push_str(&format!("{}\n", rng.pick(JSON_VALUES))),
            _ => {
                let mut members = Vec::new();
                let keys = if flat { &JSON_KEYS[..4] } else { JSON_KEYS };
                for key in keys {
                    if rng.below(4) == 0 || (rng.below(3) != 0 && ["a", "b", "c", "n"].contains(key) && !members.is_empty()) {
                        continue;
                    }
                    let v = match *key {
                        _ if flat && rng.below(6) != 0 => rng.pick(&JSON_VALUES[..13]).to_string(),
                        "n" => format!("{{\"x\":{}}}", rng.pick(JSON_VALUES)),
                        "l" => format!("[{},{}]", rng.pick(JSON_VALUES), rng.pick(JSON_VALUES)),
                        _ => rng.pick(JSON_VALUES).to_string(),
                    };
                    let sep = [":", " : ", ":\t"][rng.below(3)];
                    members.push(format!("\"{key}\"{sep}{v}"));
                }
                s.push_str(&format!("{{{}}}\n", members.join(if rng.below(2) == 0 { "," } else { ", " })));
            }
        }
    }
    s
}

#[test]
fn json_matches_row_path() {
    let mut rng = Rng(0x5eed_0002);
    let cols = ["s.a", "s.b", "s.c", "s.A", "s.n.x", "s.zz", "a", "s.l[1]", "s.l[0].y", "s.\"a\"", "s.\"B\"", "s._1.b", "s._1"];
    let mut errors = 0;
    let in_place = crate::engine::IN_PLACE_BATCHES.with(|c| c.get());
    for _ in 0..600 {
        let table = json_table(&mut rng);
        let sql = query(&mut rng, &cols);
        let piece = [7, 64, 1000, 1 << 20][rng.below(4)];
        let p = params(&sql, InputFormat::Json(JsonType::Lines), rng.below(2) == 0);
        errors += both(&sql, || text_scan(&p, table.as_bytes(), piece)) as usize;
    }
    assert!(errors > 10, "{errors}");
    assert!(vectorised() > 100, "{}", vectorised());
    // The kernels read most batches in place.
    let in_place = crate::engine::IN_PLACE_BATCHES.with(|c| c.get()) - in_place;
    assert!(in_place > 300, "{in_place}");
    let written = crate::engine::WRITTEN_FROM_BYTES.with(|c| c.get());
    assert!(written > 100, "{written}");
}

/// Floats whose text takes every path of `write_float`: integral, shortest
/// digits by ryu or by `core::fmt` (exact ties, long texts), NaN, infinities.
const FLOATS: &[f64] = &[
    0.0, -0.0, 1.0, -2.5, 0.1, 1.0 / 3.0, 1000.0 / 7.0, f64::from_bits(0x42e9_e3df_a9fe_0284), 1e15, 1e16, 1e21, 1.5e-5, 1e-7, 5e-324,
    f64::MAX, f64::NAN, f64::INFINITY, f64::NEG_INFINITY,
];
/// Text cells with quotes, delimiters (also those of `CSV_OUTPUTS`),
/// escapes and unicode.
const TEXTS: &[&str] = &["", "plain", "a,b", "say \"hi\"", "l\nm", "r\rn", "it's", "x.y", "5", "é", "ü\u{1F600}", "back\\slash", "\u{1}ctl", "a\tb"];

fn parquet_table(rng: &mut Rng) -> Vec<u8> {
    use arrow_array::{BooleanArray, Float64Array, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray, TimestampMicrosecondArray};
    let n = if rng.below(10) == 0 { 0 } else { rng.below(3000) };
    let ints: Vec<Option<i64>> = (0..n).map(|_| (rng.below(5) != 0).then(|| rng.below(20) as i64 - 5)).collect();
    let floats: Vec<Option<f64>> = (0..n)
        .map(|_| (rng.below(5) != 0).then(|| if rng.below(4) == 0 { *rng.pick(FLOATS) } else { rng.below(100) as f64 / 8.0 - 3.0 }))
        .collect();
    let strs: Vec<Option<&str>> = (0..n).map(|_| (rng.below(5) != 0).then(|| *rng.pick(CSV_CELLS))).collect();
    let bools: Vec<Option<bool>> = (0..n).map(|_| (rng.below(5) != 0).then(|| rng.below(2) == 0)).collect();
    let times: Vec<Option<i64>> = (0..n).map(|_| (rng.below(5) != 0).then(|| rng.next() as i64 % 4_000_000_000_000_000)).collect();
    let small: Vec<Option<i32>> = (0..n).map(|_| (rng.below(5) != 0).then(|| rng.next() as i32)).collect();
    let texts: Vec<Option<&str>> = (0..n).map(|_| (rng.below(5) != 0).then(|| *rng.pick(TEXTS))).collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("a", Arc::new(Int64Array::from(ints)) as _),
        ("b", Arc::new(Float64Array::from(floats)) as _),
        ("c", Arc::new(StringArray::from(strs)) as _),
        ("d", Arc::new(BooleanArray::from(bools)) as _),
        ("e", Arc::new(TimestampMicrosecondArray::from(times)) as _),
        ("f", Arc::new(Int32Array::from(small)) as _),
        ("g", Arc::new(LargeStringArray::from(texts)) as _),
    ])
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_size(1000).build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

#[test]
fn parquet_matches_row_path() {
    let mut rng = Rng(0x5eed_0003);
    let cols = ["s.a", "s.b", "s.c", "s.d", "s.zz", "_1", "s.e", "s.f", "s.g"];
    let mut errors = 0;
    let columnar = crate::columnar::WRITTEN.with(|c| c.get());
    for i in 0..200 {
        let table = parquet_table(&mut rng);
        let mut sql = query(&mut rng, &cols);
        if i % 4 == 0 {
            // Lists of columns (MISSING ones, repeated ones) and no WHERE.
            let list = ["*", "s.b, s.e, s.g", "s.zz, s.a, s.a", "s.g, s.d, s.f, s.c", "s.b"][rng.below(5)];
            sql = match rng.below(3) {
                0 => format!("SELECT {list} FROM S3Object s"),
                1 => format!("SELECT {list} FROM S3Object s LIMIT {}", rng.below(2000)),
                _ => format!("SELECT {list} FROM S3Object s WHERE {}", filter(&mut rng, &cols, 2)),
            };
        }
        let p = params(&sql, InputFormat::Parquet, rng.below(2) == 0);
        errors += both(&sql, || parquet_scan(&p, &table)) as usize;
    }
    assert!(errors > 5, "{errors}");
    assert!(vectorised() > 40, "{}", vectorised());
    // Most kept rows were written by columns.
    let columnar = crate::columnar::WRITTEN.with(|c| c.get()) - columnar;
    assert!(columnar > 40, "{columnar}");
}

//! SelectObjectContent over CSV and JSON, driven by aws-sdk-s3. Every
//! query's answer is compared with the same query computed here by plain
//! Rust over the same rows (the reference), table-driven: one line per
//! query. Covers NULLs and empty fields, quoting, unicode, empty results,
//! compression, ScanRange, progress and stats, versions, and the errors
//! (before the stream: HTTP 400 with AWS's code; during it: an error event).
//! Parquet files are written by the `parquet` crate's ArrowWriter.

use std::io::Write;

use aws_sdk_s3::types::{
    CompressionType, CsvInput, CsvOutput, ExpressionType, FileHeaderInfo, InputSerialization, JsonInput, JsonOutput,
    JsonType, OutputSerialization, RequestProgress, ScanRange, SelectObjectContentEventStream,
};
use tessera_tests::*;

/// One row of the test data, written as CSV and as JSON.
#[derive(Clone, Debug)]
struct Person {
    id: i64,
    name: String,
    city: Option<String>,
    score: Option<f64>,
}

const NAMES: &[&str] = &["Ann", "Bob, Jr.", "Zoë", "O\"Neil", "李雷", "Émile", "x", "Ünal Öz", "\"quoted\"", "Ann"];
const CITIES: &[Option<&str>] = &[Some("Paris"), None, Some("Zürich"), Some("Oslo, NO"), Some("Paris")];

fn people(n: i64) -> Vec<Person> {
    (0..n)
        .map(|i| Person {
            id: i,
            name: NAMES[(i as usize * 7) % NAMES.len()].to_string(),
            city: CITIES[(i as usize) % CITIES.len()].map(str::to_string),
            score: if i % 6 == 5 { None } else { Some(((i * 37) % 1000) as f64 / 10.0) },
        })
        .collect()
}

/// A CSV field as RFC 4180 writers (and tessera's ASNEEDED output) quote it.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn line(fields: &[String]) -> String {
    let mut s = fields.iter().map(|f| field(f)).collect::<Vec<_>>().join(",");
    s.push('\n');
    s
}

fn score_text(p: &Person) -> String {
    p.score.map(|s| format!("{s}")).unwrap_or_default()
}

fn csv_fields(p: &Person) -> Vec<String> {
    vec![p.id.to_string(), p.name.clone(), p.city.clone().unwrap_or_default(), score_text(p)]
}

fn to_csv(rows: &[Person], header: bool) -> String {
    let mut out = String::new();
    if header {
        out.push_str("id,name,city,score\n");
    }
    for p in rows {
        out.push_str(&line(&csv_fields(p)));
    }
    out
}

fn json_of(p: &Person) -> String {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), p.id.into());
    m.insert("name".into(), p.name.clone().into());
    m.insert("city".into(), p.city.clone().map_or(serde_json::Value::Null, Into::into));
    match p.score {
        Some(s) => m.insert("score".into(), s.into()),
        None => None,
    };
    serde_json::Value::Object(m).to_string()
}

fn to_json_lines(rows: &[Person]) -> String {
    rows.iter().map(|p| json_of(p) + "\n").collect()
}

fn csv_in(header: FileHeaderInfo) -> InputSerialization {
    InputSerialization::builder().csv(CsvInput::builder().file_header_info(header).build()).build()
}

fn csv_out() -> OutputSerialization {
    OutputSerialization::builder().csv(CsvOutput::builder().build()).build()
}

fn json_in(t: JsonType) -> InputSerialization {
    InputSerialization::builder().json(JsonInput::builder().r#type(t).build()).build()
}

fn json_out() -> OutputSerialization {
    OutputSerialization::builder().json(JsonOutput::builder().build()).build()
}

/// What a select returned: the records' bytes, the Stats counters
/// (scanned, processed, returned), whether End came, and the error event.
#[derive(Debug, Default)]
struct Answer {
    records: String,
    stats: Option<(i64, i64, i64)>,
    progress_events: usize,
    ended: bool,
    error: Option<String>,
}

struct Select<'a> {
    s3: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: &'a str,
}

impl Select<'_> {
    async fn run(&self, sql: &str, input: InputSerialization, output: OutputSerialization) -> Result<Answer, SdkFailure> {
        self.run_with(sql, input, output, |b| b).await
    }

    async fn run_with(
        &self,
        sql: &str,
        input: InputSerialization,
        output: OutputSerialization,
        f: impl FnOnce(
            aws_sdk_s3::operation::select_object_content::builders::SelectObjectContentFluentBuilder,
        ) -> aws_sdk_s3::operation::select_object_content::builders::SelectObjectContentFluentBuilder,
    ) -> Result<Answer, SdkFailure> {
        let req = self
            .s3
            .select_object_content()
            .bucket(self.bucket)
            .key(self.key)
            .expression(sql)
            .expression_type(ExpressionType::Sql)
            .input_serialization(input)
            .output_serialization(output);
        let out = f(req).send().await.map_err(|e| failure_of(&e))?;
        Ok(collect(out).await)
    }
}

/// Drains the event stream of a select.
async fn collect(mut out: aws_sdk_s3::operation::select_object_content::SelectObjectContentOutput) -> Answer {
    {
        let mut a = Answer::default();
        loop {
            match out.payload.recv().await {
                Ok(Some(SelectObjectContentEventStream::Records(r))) => {
                    let p = r.payload().map(|b| b.as_ref().to_vec()).unwrap_or_default();
                    a.records.push_str(std::str::from_utf8(&p).expect("records are UTF-8"));
                }
                Ok(Some(SelectObjectContentEventStream::Stats(s))) => {
                    let d = s.details().expect("stats details");
                    a.stats = Some((d.bytes_scanned().unwrap_or(-1), d.bytes_processed().unwrap_or(-1), d.bytes_returned().unwrap_or(-1)));
                }
                Ok(Some(SelectObjectContentEventStream::Progress(_))) => a.progress_events += 1,
                Ok(Some(SelectObjectContentEventStream::End(_))) => a.ended = true,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    a.error = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        a
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    ok(s3.put_object().bucket(bucket).key(key).body(bytestream(body)).send().await, "put");
}

fn expect_lines(rows: &[Person], f: impl Fn(&Person) -> Option<Vec<String>>) -> String {
    rows.iter().filter_map(f).map(|v| line(&v)).collect()
}

type CsvCase = (&'static str, FileHeaderInfo, Box<dyn Fn(&[Person]) -> String>);

#[tokio::test(flavor = "multi_thread")]
async fn csv_queries_match_the_reference() {
    let (_server, s3) = with_bucket("sel").await;
    let rows = people(2000);
    put(&s3, "sel", "people.csv", to_csv(&rows, true).as_bytes()).await;
    put(&s3, "sel", "plain.csv", to_csv(&rows, false).as_bytes()).await;
    let sel = Select { s3: &s3, bucket: "sel", key: "people.csv" };
    let cases: Vec<CsvCase> = vec![
        ("SELECT * FROM S3Object", FileHeaderInfo::Use, Box::new(|r| expect_lines(r, |p| Some(csv_fields(p))))),
        (
            "SELECT s.name, s.id FROM S3Object s WHERE CAST(s.id AS INT) BETWEEN 10 AND 20",
            FileHeaderInfo::Use,
            Box::new(|r| expect_lines(r, |p| (10..=20).contains(&p.id).then(|| vec![p.name.clone(), p.id.to_string()]))),
        ),
        (
            "SELECT name FROM S3Object WHERE city = 'Paris' AND score <> '' AND CAST(score AS FLOAT) > 50",
            FileHeaderInfo::Use,
            Box::new(|r| {
                expect_lines(r, |p| {
                    (p.city.as_deref() == Some("Paris") && p.score.is_some_and(|s| s > 50.0)).then(|| vec![p.name.clone()])
                })
            }),
        ),
        (
            "SELECT COUNT(*) FROM S3Object WHERE name LIKE '%ë%' OR name LIKE '李%'",
            FileHeaderInfo::Use,
            Box::new(|r| format!("{}\n", r.iter().filter(|p| p.name.contains('ë') || p.name.starts_with('李')).count())),
        ),
        (
            "SELECT UPPER(name), CHAR_LENGTH(name), SUBSTRING(name, 2, 3), LOWER(city) FROM S3Object WHERE id IN ('1', '2', '3', '4')",
            FileHeaderInfo::Use,
            Box::new(|r| {
                expect_lines(r, |p| {
                    (1..=4).contains(&p.id).then(|| {
                        let sub: String = p.name.chars().skip(1).take(3).collect();
                        vec![
                            p.name.to_uppercase(),
                            p.name.chars().count().to_string(),
                            sub,
                            p.city.clone().unwrap_or_default().to_lowercase(),
                        ]
                    })
                })
            }),
        ),
        (
            "SELECT id FROM S3Object WHERE city = '' AND score IS NOT NULL",
            FileHeaderInfo::Use,
            Box::new(|r| expect_lines(r, |p| p.city.is_none().then(|| vec![p.id.to_string()]))),
        ),
        ("SELECT id FROM S3Object WHERE 1 = 0", FileHeaderInfo::Use, Box::new(|_| String::new())),
        ("SELECT id FROM S3Object WHERE name = 'nobody'", FileHeaderInfo::Use, Box::new(|_| String::new())),
        (
            "SELECT id, name FROM S3Object LIMIT 5",
            FileHeaderInfo::Use,
            Box::new(|r| expect_lines(&r[..5], |p| Some(vec![p.id.to_string(), p.name.clone()]))),
        ),
        (
            "SELECT COUNT(*), MIN(CAST(id AS INT)), MAX(CAST(id AS INT)), SUM(CAST(id AS INT)) FROM S3Object WHERE city <> 'Paris'",
            FileHeaderInfo::Use,
            Box::new(|r| {
                let ids: Vec<i64> = r.iter().filter(|p| p.city.as_deref() != Some("Paris")).map(|p| p.id).collect();
                format!("{},{},{},{}\n", ids.len(), ids.iter().min().unwrap(), ids.iter().max().unwrap(), ids.iter().sum::<i64>())
            }),
        ),
        (
            "SELECT _1, _3 FROM S3Object WHERE _2 = 'Zoë'",
            FileHeaderInfo::Ignore,
            Box::new(|r| expect_lines(r, |p| (p.name == "Zoë").then(|| vec![p.id.to_string(), p.city.clone().unwrap_or_default()]))),
        ),
        (
            "SELECT COALESCE(NULLIF(city, ''), 'nowhere') AS c, name || '!' FROM S3Object s WHERE CAST(s.id AS INT) < 6",
            FileHeaderInfo::Use,
            Box::new(|r| {
                expect_lines(r, |p| {
                    (p.id < 6).then(|| vec![p.city.clone().unwrap_or_else(|| "nowhere".into()), format!("{}!", p.name)])
                })
            }),
        ),
        (
            "SELECT CASE WHEN score = '' THEN 'none' WHEN CAST(score AS FLOAT) >= 50 THEN 'high' ELSE 'low' END FROM S3Object WHERE CAST(id AS INT) < 30",
            FileHeaderInfo::Use,
            Box::new(|r| {
                expect_lines(r, |p| {
                    (p.id < 30).then(|| {
                        vec![match p.score {
                            Some(s) if s >= 50.0 => "high".to_string(),
                            None => "none".into(),
                            _ => "low".into(),
                        }]
                    })
                })
            }),
        ),
    ];
    for (sql, header, want) in cases {
        let a = sel.run(sql, csv_in(header), csv_out()).await.unwrap_or_else(|f| panic!("{sql}: {f:#?}"));
        assert_eq!(a.error, None, "{sql}");
        assert!(a.ended, "{sql}: End event");
        assert_eq!(a.records, want(&rows), "{sql}");
    }
    // Positional columns without a header, and floats through AVG.
    let plain = Select { s3: &s3, bucket: "sel", key: "plain.csv" };
    let a = plain.run("SELECT AVG(CAST(_1 AS INT)), SUM(CAST(NULLIF(_4, '') AS FLOAT)) FROM S3Object", csv_in(FileHeaderInfo::None), csv_out()).await.unwrap();
    let got: Vec<f64> = a.records.trim().split(',').map(|v| v.parse().unwrap()).collect();
    let avg = rows.iter().map(|p| p.id as f64).sum::<f64>() / rows.len() as f64;
    let sum: f64 = rows.iter().filter_map(|p| p.score).sum();
    assert!((got[0] - avg).abs() < 1e-9 && (got[1] - sum).abs() < 1e-6, "{got:?} vs {avg} {sum}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_queries_match_the_reference() {
    let (_server, s3) = with_bucket("selj").await;
    let rows = people(1500);
    put(&s3, "selj", "people.json", to_json_lines(&rows).as_bytes()).await;
    let doc = format!("{{\"people\":[{}]}}", rows.iter().map(json_of).collect::<Vec<_>>().join(","));
    put(&s3, "selj", "doc.json", doc.as_bytes()).await;
    let sel = Select { s3: &s3, bucket: "selj", key: "people.json" };
    let a = sel.run("SELECT * FROM S3Object", json_in(JsonType::Lines), json_out()).await.unwrap();
    assert_eq!(a.records, to_json_lines(&rows), "SELECT * gives the records back as they were");
    let a = sel.run("SELECT s.name FROM S3Object s WHERE s.city IS NULL", json_in(JsonType::Lines), json_out()).await.unwrap();
    let want: String = rows.iter().filter(|p| p.city.is_none()).map(|p| format!("{}\n", serde_json::json!({"name": p.name}))).collect();
    assert_eq!(a.records, want);
    let a = sel.run("SELECT s.id FROM S3Object s WHERE s.score IS MISSING", json_in(JsonType::Lines), csv_out()).await.unwrap();
    assert_eq!(a.records, expect_lines(&rows, |p| p.score.is_none().then(|| vec![p.id.to_string()])));
    let a = sel
        .run("SELECT COUNT(*), MAX(s.score) FROM S3Object s WHERE s.score > 50 AND s.city <> 'Paris'", json_in(JsonType::Lines), csv_out())
        .await
        .unwrap();
    let hits: Vec<f64> = rows.iter().filter(|p| p.score.is_some_and(|s| s > 50.0) && p.city.as_deref() != Some("Paris") && p.city.is_some()).filter_map(|p| p.score).collect();
    let max = hits.iter().cloned().fold(f64::MIN, f64::max);
    let (n, m) = a.records.trim().split_once(',').unwrap();
    assert_eq!(n.parse::<usize>().unwrap(), hits.len());
    assert_eq!(m.parse::<f64>().unwrap(), max);
    // A DOCUMENT whose records sit in an array.
    let docsel = Select { s3: &s3, bucket: "selj", key: "doc.json" };
    let a = docsel
        .run("SELECT p.id, p.name FROM S3Object[*].people[*] p WHERE p.id < 5", json_in(JsonType::Document), csv_out())
        .await
        .unwrap();
    assert_eq!(a.records, expect_lines(&rows[..5], |p| Some(vec![p.id.to_string(), p.name.clone()])));
    let a = docsel.run("SELECT COUNT(*) FROM S3Object[*].people[*]", json_in(JsonType::Document), csv_out()).await.unwrap();
    assert_eq!(a.records, format!("{}\n", rows.len()));
    let a = docsel.run("SELECT s.people[1].name FROM S3Object s", json_in(JsonType::Document), json_out()).await.unwrap();
    assert_eq!(a.records, format!("{}\n", serde_json::json!({"name": rows[1].name})));
}

#[tokio::test(flavor = "multi_thread")]
async fn quoting_and_delimiters() {
    let (_server, s3) = with_bucket("selq").await;
    put(&s3, "selq", "q.csv", "a|\"multi\nline\"|c;d|'x'|e\\\"f;".as_bytes()).await;
    let sel = Select { s3: &s3, bucket: "selq", key: "q.csv" };
    let input = InputSerialization::builder()
        .csv(
            CsvInput::builder()
                .file_header_info(FileHeaderInfo::None)
                .field_delimiter("|")
                .record_delimiter(";")
                .allow_quoted_record_delimiter(true)
                .build(),
        )
        .build();
    let output = OutputSerialization::builder()
        .csv(CsvOutput::builder().field_delimiter("\t").record_delimiter("\r\n").quote_fields(aws_sdk_s3::types::QuoteFields::Always).build())
        .build();
    let a = sel.run("SELECT _2, _3 FROM S3Object", input.clone(), output).await.unwrap();
    assert_eq!(a.records, "\"multi\nline\"\t\"c\"\r\n\"'x'\"\t\"e\\\"\"f\"\r\n");
    let a = sel.run("SELECT COUNT(*) FROM S3Object WHERE _2 LIKE 'multi_line'", input, csv_out()).await.unwrap();
    assert_eq!(a.records, "1\n");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).expect("bzip2");
    e.finish().expect("bzip2")
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_input_progress_and_stats() {
    let (_server, s3) = with_bucket("selz").await;
    let rows = people(30_000);
    let csv = to_csv(&rows, true);
    let json = to_json_lines(&rows);
    let want_sum: i64 = rows.iter().filter(|p| p.city.as_deref() == Some("Zürich")).map(|p| p.id).sum();
    for (key, data, comp, input) in [
        ("p.csv.gz", gzip(csv.as_bytes()), CompressionType::Gzip, csv_in(FileHeaderInfo::Use)),
        ("p.csv.bz2", bzip2(csv.as_bytes()), CompressionType::Bzip2, csv_in(FileHeaderInfo::Use)),
        ("p.json.gz", gzip(json.as_bytes()), CompressionType::Gzip, json_in(JsonType::Lines)),
    ] {
        put(&s3, "selz", key, &data).await;
        let sel = Select { s3: &s3, bucket: "selz", key };
        let mut input = input;
        input.compression_type = Some(comp);
        let a = sel
            .run_with("SELECT SUM(CAST(s.id AS INT)) FROM S3Object s WHERE s.city = 'Zürich'", input, csv_out(), |b| {
                b.request_progress(RequestProgress::builder().enabled(true).build())
            })
            .await
            .unwrap();
        assert_eq!(a.records, format!("{want_sum}\n"), "{key}");
        let (scanned, processed, returned) = a.stats.expect("stats");
        assert_eq!(scanned, data.len() as i64, "{key}: BytesScanned is the stored size");
        let plain = if key.contains("json") { json.len() } else { csv.len() };
        assert_eq!(processed, plain as i64, "{key}: BytesProcessed is the decompressed size");
        assert_eq!(returned, a.records.len() as i64, "{key}");
        assert!(a.progress_events >= 1, "{key}: progress events");
    }
    // Plain data declared as GZIP.
    put(&s3, "selz", "plain.csv", csv.as_bytes()).await;
    let sel = Select { s3: &s3, bucket: "selz", key: "plain.csv" };
    let mut input = csv_in(FileHeaderInfo::Use);
    input.compression_type = Some(CompressionType::Gzip);
    let f = sel.run("SELECT * FROM S3Object", input, csv_out()).await.unwrap_err();
    assert_eq!((f.status, f.code.as_deref()), (Some(400), Some("InvalidCompressionFormat")), "{f:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_ranges_split_the_records_exactly() {
    let (_server, s3) = with_bucket("selr").await;
    let rows = people(5000);
    let csv = to_csv(&rows, false);
    put(&s3, "selr", "r.csv", csv.as_bytes()).await;
    let sel = Select { s3: &s3, bucket: "selr", key: "r.csv" };
    // Records start at offset 0 and after every newline.
    let starts: Vec<usize> = std::iter::once(0).chain(csv.match_indices('\n').map(|(i, _)| i + 1).filter(|&i| i < csv.len())).collect();
    let size = csv.len() as i64;
    let cuts = [0i64, 1, 4999, size / 3, size / 2 + 7, size - 1, size];
    let mut total = 0usize;
    for w in cuts.windows(2) {
        let (start, end) = (w[0], w[1] - 1);
        let a = sel
            .run_with("SELECT COUNT(*) FROM S3Object", csv_in(FileHeaderInfo::None), csv_out(), |b| {
                b.scan_range(ScanRange::builder().start(start).end(end).build())
            })
            .await
            .unwrap();
        let want = starts.iter().filter(|&&s| s as i64 >= start && s as i64 <= end).count();
        assert_eq!(a.records, format!("{want}\n"), "range {start}..={end}");
        total += want;
    }
    assert_eq!(total, rows.len(), "the ranges together select every record once");
    // Only End: the last N bytes.
    let a = sel
        .run_with("SELECT _1 FROM S3Object", csv_in(FileHeaderInfo::None), csv_out(), |b| {
            b.scan_range(ScanRange::builder().end(20).build())
        })
        .await
        .unwrap();
    let want: String = starts.iter().filter(|&&s| s as i64 >= size - 20).map(|&s| format!("{}\n", csv[s..].split(',').next().unwrap())).collect();
    assert_eq!(a.records, want);
    // JSON DOCUMENT can't be split.
    let f = sel
        .run_with("SELECT * FROM S3Object", json_in(JsonType::Document), csv_out(), |b| b.scan_range(ScanRange::builder().start(1).build()))
        .await
        .unwrap_err();
    assert_eq!(f.code.as_deref(), Some("UnsupportedScanRangeInput"));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_before_and_during_the_stream() {
    let (_server, s3) = with_bucket("sele").await;
    let mut csv = to_csv(&people(60_000), true);
    csv.push_str("notanumber,late,row,1\n");
    put(&s3, "sele", "e.csv", csv.as_bytes()).await;
    let sel = Select { s3: &s3, bucket: "sele", key: "e.csv" };
    let cases = [
        ("SELECT * FROM S3Object WHERE", "ParseExpectedExpression"),
        ("SELECT FROM S3Object", "ParseEmptySelect"),
        ("SELECT * FROM S3Object garbage garbage", "ParseUnexpectedToken"),
        ("SELECT _0 FROM S3Object", "InvalidColumnIndex"),
        ("SELECT * FROM S3Object WHERE 'x", "LexerInvalidLiteral"),
        ("SELECT CAST(id AS BLOB) FROM S3Object", "ParseExpectedTypeName"),
        ("SELECT NOSUCHFN(id) FROM S3Object", "UnsupportedFunction"),
        ("SELECT * FROM S3Object WHERE CAST(name AS INT) = 1", "CastFailed"),
        ("SELECT SUM(name) FROM S3Object", "IncorrectSqlFunctionArgumentType"),
        ("SELECT * FROM S3Object WHERE CAST(id AS INT) / 0 = 1", "DivisionByZero"),
    ];
    for (sql, code) in cases {
        let f = sel.run(sql, csv_in(FileHeaderInfo::Use), csv_out()).await.expect_err(sql);
        assert_eq!((f.status, f.code.as_deref()), (Some(400), Some(code)), "{sql}: {f:#?}");
    }
    // A bad value after records were sent: they arrive, then an error event.
    let a = sel.run("SELECT id, CAST(id AS INT) + 1 FROM S3Object", csv_in(FileHeaderInfo::Use), csv_out()).await.unwrap();
    assert!(a.records.lines().count() >= 1000, "records before the error");
    let err = a.error.expect("error event");
    assert!(err.contains("CastFailed"), "{err}");
    assert!(!a.ended);
    // Not found.
    let missing = Select { s3: &s3, bucket: "sele", key: "nope" };
    let f = missing.run("SELECT * FROM S3Object", csv_in(FileHeaderInfo::Use), csv_out()).await.unwrap_err();
    assert_eq!((f.status, f.code.as_deref()), (Some(404), Some("NoSuchKey")));
    // A JSON type the service doesn't know.
    let f = sel
        .run("SELECT * FROM S3Object", json_in(JsonType::from("PARAGRAPHS")), csv_out())
        .await
        .unwrap_err();
    assert_eq!(f.code.as_deref(), Some("InvalidJsonType"));
    // Invalid UTF-8.
    put(&s3, "sele", "bin.csv", b"a,\xff\xfe\n").await;
    let bin = Select { s3: &s3, bucket: "sele", key: "bin.csv" };
    let f = bin.run("SELECT * FROM S3Object", csv_in(FileHeaderInfo::None), csv_out()).await.unwrap_err();
    assert_eq!(f.code.as_deref(), Some("InvalidTextEncoding"));
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_and_large_objects() {
    let (_server, s3) = with_bucket("selv").await;
    ok(
        s3.put_bucket_versioning()
            .bucket("selv")
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await,
        "versioning",
    );
    let v1 = ok(s3.put_object().bucket("selv").key("v.csv").body(bytestream(b"old\n")).send().await, "v1");
    put(&s3, "selv", "v.csv", b"new\n").await;
    let sel = Select { s3: &s3, bucket: "selv", key: "v.csv" };
    let a = sel.run("SELECT * FROM S3Object", csv_in(FileHeaderInfo::None), csv_out()).await.unwrap();
    assert_eq!(a.records, "new\n");
    let vid = v1.version_id().expect("version id").to_string();
    // The SDK has no versionId for Select; S3 takes it as a query parameter.
    let out = s3
        .select_object_content()
        .bucket("selv")
        .key("v.csv")
        .expression("SELECT * FROM S3Object")
        .expression_type(ExpressionType::Sql)
        .input_serialization(csv_in(FileHeaderInfo::None))
        .output_serialization(csv_out())
        .customize()
        .mutate_request(move |r| {
            let uri = format!("{}&versionId={vid}", r.uri());
            r.set_uri(uri).expect("uri");
        })
        .send()
        .await;
    let a = collect(ok(out, "select a version")).await;
    assert_eq!(a.records, "old\n");
    // A large object streams through in bounded pieces; all of it is output.
    let rows = people(400_000);
    let csv = to_csv(&rows, false);
    assert!(csv.len() > 8 * MIB);
    put(&s3, "selv", "big.csv", csv.as_bytes()).await;
    let big = Select { s3: &s3, bucket: "selv", key: "big.csv" };
    let a = big.run("SELECT _1 FROM S3Object", csv_in(FileHeaderInfo::None), csv_out()).await.unwrap();
    assert_eq!(a.records.len(), rows.iter().map(|p| p.id.to_string().len() + 1).sum::<usize>());
    let a = big.run("SELECT COUNT(*) FROM S3Object WHERE _2 = 'Zoë'", csv_in(FileHeaderInfo::None), csv_out()).await.unwrap();
    assert_eq!(a.records, format!("{}\n", rows.iter().filter(|p| p.name == "Zoë").count()));
    assert_eq!(a.stats.unwrap().0, csv.len() as i64);
}

fn to_parquet(rows: &[Person], per_group: usize) -> Vec<u8> {
    use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|p| p.id))) as _),
        ("name", Arc::new(StringArray::from_iter_values(rows.iter().map(|p| p.name.as_str()))) as _),
        ("city", Arc::new(StringArray::from_iter(rows.iter().map(|p| p.city.as_deref()))) as _),
        ("score", Arc::new(Float64Array::from_iter(rows.iter().map(|p| p.score))) as _),
    ])
    .expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_size(per_group)
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    out
}

fn parquet_in() -> InputSerialization {
    InputSerialization::builder().parquet(aws_sdk_s3::types::ParquetInput::builder().build()).build()
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_queries_match_the_reference() {
    let (_server, s3) = with_bucket("selp").await;
    let rows = people(20_000);
    let file = to_parquet(&rows, 2000);
    put(&s3, "selp", "p.parquet", &file).await;
    let sel = Select { s3: &s3, bucket: "selp", key: "p.parquet" };
    let a = sel.run("SELECT * FROM S3Object LIMIT 3", parquet_in(), json_out()).await.unwrap();
    let want: String = rows[..3]
        .iter()
        .map(|p| {
            let j = |v: serde_json::Value| v.to_string();
            format!("{{\"id\":{},\"name\":{},\"city\":{},\"score\":{}}}\n", p.id, j(p.name.clone().into()), j(p.city.clone().into()), j(p.score.into()))
        })
        .collect();
    assert_eq!(a.records, want);
    let a = sel.run("SELECT s.name, s.city FROM S3Object s WHERE s.id >= 1000 AND s.id < 1010", parquet_in(), csv_out()).await.unwrap();
    assert_eq!(a.records, expect_lines(&rows, |p| (1000..1010).contains(&p.id).then(|| vec![p.name.clone(), p.city.clone().unwrap_or_default()])));
    let a = sel
        .run("SELECT COUNT(*), SUM(score), MIN(name), MAX(id) FROM S3Object WHERE city IS NULL", parquet_in(), csv_out())
        .await
        .unwrap();
    let nulls: Vec<&Person> = rows.iter().filter(|p| p.city.is_none()).collect();
    let sum: f64 = nulls.iter().filter_map(|p| p.score).sum();
    let f: Vec<&str> = a.records.trim().split(',').collect();
    assert_eq!(f[0].parse::<usize>().unwrap(), nulls.len());
    assert!((f[1].parse::<f64>().unwrap() - sum).abs() < 1e-6);
    assert_eq!(f[2], nulls.iter().map(|p| p.name.as_str()).min().unwrap());
    assert_eq!(f[3].parse::<i64>().unwrap(), nulls.iter().map(|p| p.id).max().unwrap());
    let a = sel.run("SELECT id FROM S3Object WHERE name LIKE 'Z%' AND score > 50", parquet_in(), csv_out()).await.unwrap();
    assert_eq!(a.records, expect_lines(&rows, |p| (p.name.starts_with('Z') && p.score.is_some_and(|s| s > 50.0)).then(|| vec![p.id.to_string()])));
    // Statistics rule out every row group but one, and only two columns
    // are read: far less than the file is scanned.
    let a = sel.run("SELECT name FROM S3Object WHERE id BETWEEN 4100 AND 4102", parquet_in(), csv_out()).await.unwrap();
    assert_eq!(a.records, expect_lines(&rows[4100..4103], |p| Some(vec![p.name.clone()])));
    let (scanned, _, _) = a.stats.unwrap();
    assert!(scanned > 0 && (scanned as usize) < file.len() / 5, "scanned {scanned} of {}", file.len());
    let a = sel.run("SELECT id FROM S3Object WHERE id > 1000000", parquet_in(), csv_out()).await.unwrap();
    assert_eq!((a.records.as_str(), a.ended), ("", true));
    // Not Parquet at all.
    put(&s3, "selp", "fake.parquet", b"id,name\n1,x\n").await;
    let fake = Select { s3: &s3, bucket: "selp", key: "fake.parquet" };
    let f = fake.run("SELECT * FROM S3Object", parquet_in(), csv_out()).await.unwrap_err();
    assert_eq!((f.status, f.code.as_deref()), (Some(400), Some("ParquetParsingError")), "{f:#?}");
}

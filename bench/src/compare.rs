//! `tessera-bench compare A.json B.json ...`: the results side by side, one row
//! per operation and figure, with each file's ratio to the first.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

/// Most files compared at once (columns stay readable).
pub const MAX_COMPARED: usize = 8;

/// The figures compared: (row label, path under `ops.<op>`).
const FIGURES: [(&str, &[&str]); 8] = [
    ("req/s", &["req_per_s"]),
    ("MB/s", &["mb_per_s"]),
    ("p50 µs", &["latency_us", "p50"]),
    ("p90 µs", &["latency_us", "p90"]),
    ("p99 µs", &["latency_us", "p99"]),
    ("p99.9 µs", &["latency_us", "p99_9"]),
    ("max µs", &["latency_us", "max"]),
    ("errors", &["errors_total"]),
];

fn figure(result: &Value, op: &str, path: &[&str]) -> Option<f64> {
    let mut v = result.get("ops")?.get(op)?;
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The comparison table of parsed results named `names`.
pub fn compare(names: &[String], results: &[Value]) -> String {
    assert_eq!(names.len(), results.len());
    let mut ops: Vec<String> = Vec::new();
    for r in results {
        if let Some(o) = r.get("ops").and_then(Value::as_object) {
            for k in o.keys() {
                if !ops.contains(k) {
                    ops.push(k.clone());
                }
            }
        }
    }
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).clamp(10, 28);
    let mut t = String::new();
    for (i, (n, r)) in names.iter().zip(results).enumerate() {
        let workload = r.get("workload").and_then(Value::as_str).unwrap_or("?");
        let params = r.get("params").map(|p| p.to_string()).unwrap_or_default();
        let _ = writeln!(t, "[{}] {n}: {workload} {params}", i + 1);
    }
    let _ = write!(t, "{:<18}", "");
    for i in 0..results.len() {
        let _ = write!(t, " {:>width$}", format!("[{}]", i + 1));
    }
    for i in 1..results.len() {
        let _ = write!(t, " {:>9}", format!("[{}]/[1]", i + 1));
    }
    t.push('\n');
    for op in &ops {
        for (label, path) in FIGURES {
            let values: Vec<Option<f64>> = results.iter().map(|r| figure(r, op, path)).collect();
            let _ = write!(t, "{:<18}", format!("{op} {label}"));
            for v in &values {
                let _ = write!(t, " {:>width$}", v.map_or("-".to_string(), number));
            }
            for v in &values[1..] {
                let ratio = match (values[0], v) {
                    (Some(a), Some(b)) if a != 0.0 => format!("{:.2}", b / a),
                    _ => "-".to_string(),
                };
                let _ = write!(t, " {ratio:>9}");
            }
            t.push('\n');
        }
    }
    t
}

pub fn compare_files(paths: &[PathBuf]) -> Result<String, String> {
    if paths.len() < 2 || paths.len() > MAX_COMPARED {
        return Err(format!("compare takes 2 to {MAX_COMPARED} result files"));
    }
    let mut results = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        if v.get("tool").and_then(Value::as_str) != Some("tessera-bench") {
            return Err(format!("{}: not a tessera-bench result", p.display()));
        }
        results.push(v);
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Ok(compare(&names, &results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(req_per_s: f64, p99: u64) -> Value {
        json!({"tool": "tessera-bench", "workload": "get", "params": {"size": "4 KiB"},
               "ops": {"get": {"req_per_s": req_per_s, "mb_per_s": req_per_s * 0.004096, "errors_total": 0,
                               "latency_us": {"p50": 100, "p90": 200, "p99": p99, "p99_9": 900, "max": 1500}}}})
    }

    #[test]
    fn ratios_to_the_first() {
        let mut b = result(15000.0, 300);
        b["ops"]["put"] = json!({"req_per_s": 10.0});
        let t = compare(&["a.json".into(), "b.json".into(), "c.json".into()], &[result(10000.0, 600), b, result(0.0, 0)]);
        let row = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in\n{t}")).to_string();
        let req: Vec<String> = row("get req/s").split_whitespace().map(str::to_string).collect();
        assert_eq!(req[2..], ["10000", "15000", "0", "1.50", "0.00"]);
        let p99: Vec<String> = row("get p99 µs").split_whitespace().map(str::to_string).collect();
        assert_eq!(p99[3..], ["600", "300", "0", "0.50", "0.00"]);
        // An op only one file has: the others show '-', and so do ratios without a base.
        let put: Vec<String> = row("put req/s").split_whitespace().map(str::to_string).collect();
        assert_eq!(put[2..], ["-", "10", "-", "-", "-"]);
        assert!(t.starts_with("[1] a.json: get {\"size\":\"4 KiB\"}\n"), "{t}");
    }

    #[test]
    fn refuses_what_is_not_a_result() {
        let dir = std::env::temp_dir().join(format!("tessera-bench-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.json"), dir.join("b.json"));
        std::fs::write(&a, result(1.0, 1).to_string()).unwrap();
        std::fs::write(&b, "{\"tool\": \"other\"}").unwrap();
        assert!(compare_files(&[a.clone(), b.clone()]).is_err());
        assert!(compare_files(std::slice::from_ref(&a)).is_err());
        assert!(compare_files(&[a.clone(), dir.join("missing.json")]).is_err());
        std::fs::write(&b, result(2.0, 1).to_string()).unwrap();
        assert!(compare_files(&[a, b]).unwrap().contains("2.00"));
        let _ = std::fs::remove_dir_all(dir);
    }
}

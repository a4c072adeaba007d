//! Throughput and latency over time as a self-contained SVG: two panels sharing
//! the time axis (requests/s with MB/s on a second axis; p50 and p99 latency).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::monitor::Point;

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 240.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 50.0;
const GAP: f64 = 60.0;
/// Horizontal grid lines (and labels) per panel.
const Y_TICKS: usize = 5;
/// Vertical grid lines at most.
const MAX_X_TICKS: usize = 10;

/// One line of a panel.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    dashed: bool,
    values: Vec<(f64, f64)>,
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v * (1.0 - 1e-9) {
            return m * p;
        }
    }
    10.0 * p
}

fn label(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// `5`, `7.5`, `0.25` for the time axis.
fn seconds(t: f64) -> String {
    let text = format!("{t:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG for `timeline` under `title`.
pub fn svg(title: &str, timeline: &[Point]) -> String {
    let height = TOP + 2.0 * PANEL_HEIGHT + GAP + 50.0;
    // The axis ends at the last sample: a run of 20.03 s is not drawn as 25 s.
    let t_max = timeline.iter().map(|p| p.t_s).fold(0.0, f64::max);
    let t_max = if t_max > 0.0 && t_max.is_finite() { t_max } else { 1.0 };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{}</text>", escape(title));
    let series = |name, color, dashed, f: &dyn Fn(&Point) -> f64| Series {
        name,
        color,
        dashed,
        values: timeline.iter().map(|p| (p.t_s, f(p))).collect(),
    };
    let ops = series("requests/s", "#1f77b4", false, &|p| p.ops_per_s);
    let mb = series("MB/s (right axis)", "#ff7f0e", true, &|p| p.mb_per_s);
    panel(&mut s, TOP, t_max, "requests/s", &[ops], Some(("MB/s", &mb)));
    let p50 = series("p50", "#2ca02c", false, &|p| p.p50_us as f64 / 1e3);
    let p99 = series("p99", "#d62728", false, &|p| p.p99_us as f64 / 1e3);
    panel(&mut s, TOP + PANEL_HEIGHT + GAP, t_max, "latency, ms", &[p50, p99], None);
    let axis_y = TOP + 2.0 * PANEL_HEIGHT + GAP + 36.0;
    let _ = writeln!(s, "<text x=\"{}\" y=\"{axis_y}\" text-anchor=\"middle\">seconds</text>", LEFT + (WIDTH - LEFT - RIGHT) / 2.0);
    if timeline.is_empty() {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no samples</text>", WIDTH / 2.0, TOP + PANEL_HEIGHT / 2.0);
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, top: f64, t_max: f64, y_name: &str, lines: &[Series], right: Option<(&str, &Series)>) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL_HEIGHT;
    let y_max = nice_ceiling(lines.iter().flat_map(|l| l.values.iter().map(|v| v.1)).fold(0.0, f64::max));
    let x = |t: f64| LEFT + plot_w * t / t_max;
    let _ = writeln!(s, "<g stroke=\"#ddd\">");
    for i in 0..=Y_TICKS {
        let y = bottom - PANEL_HEIGHT * i as f64 / Y_TICKS as f64;
        let _ = writeln!(s, "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>", LEFT + plot_w);
    }
    let x_step = nice_ceiling(t_max / MAX_X_TICKS as f64);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let _ = writeln!(s, "<line x1=\"{:.1}\" y1=\"{top}\" x2=\"{:.1}\" y2=\"{bottom}\"/>", x(t), x(t));
        t += x_step;
    }
    let _ = writeln!(s, "</g>");
    for i in 0..=Y_TICKS {
        let y = bottom - PANEL_HEIGHT * i as f64 / Y_TICKS as f64;
        let v = y_max * i as f64 / Y_TICKS as f64;
        let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", LEFT - 6.0, y + 4.0, label(v));
    }
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", x(t), bottom + 16.0, seconds(t));
        t += x_step;
    }
    let _ = writeln!(
        s,
        "<text transform=\"translate({},{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        18.0,
        top + PANEL_HEIGHT / 2.0,
        escape(y_name)
    );
    let mut legend: Vec<(&str, &str, bool)> = Vec::new();
    for l in lines {
        polyline(s, l, &x, |v| bottom - PANEL_HEIGHT * v / y_max);
        legend.push((l.name, l.color, l.dashed));
    }
    if let Some((name, l)) = right {
        let r_max = nice_ceiling(l.values.iter().map(|v| v.1).fold(0.0, f64::max));
        polyline(s, l, &x, |v| bottom - PANEL_HEIGHT * v / r_max);
        for i in 0..=Y_TICKS {
            let y = bottom - PANEL_HEIGHT * i as f64 / Y_TICKS as f64;
            let v = r_max * i as f64 / Y_TICKS as f64;
            let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" fill=\"{}\">{}</text>", LEFT + plot_w + 6.0, y + 4.0, l.color, label(v));
        }
        let _ = writeln!(
            s,
            "<text transform=\"translate({},{:.1}) rotate(90)\" text-anchor=\"middle\">{}</text>",
            WIDTH - 18.0,
            top + PANEL_HEIGHT / 2.0,
            escape(name)
        );
        legend.push((l.name, l.color, l.dashed));
    }
    let mut lx = LEFT;
    for (name, color, dashed) in legend {
        let dash = if dashed { " stroke-dasharray=\"6 3\"" } else { "" };
        let _ = writeln!(s, "<line x1=\"{lx}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>", top - 8.0, lx + 20.0, top - 8.0);
        let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\">{}</text>", lx + 24.0, top - 4.0, escape(name));
        lx += 40.0 + 7.0 * name.len() as f64;
    }
    let _ = writeln!(s, "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{plot_w}\" height=\"{PANEL_HEIGHT}\" fill=\"none\" stroke=\"#888\"/>");
}

fn polyline(s: &mut String, l: &Series, x: &dyn Fn(f64) -> f64, y: impl Fn(f64) -> f64) {
    if l.values.is_empty() {
        return;
    }
    let points: Vec<String> = l.values.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
    let dash = if l.dashed { " stroke-dasharray=\"6 3\"" } else { "" };
    let _ = writeln!(
        s,
        "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{dash} points=\"{}\"/>",
        l.color,
        points.join(" ")
    );
}

/// The title and timeline of a result file written with `--json`.
pub fn read_result(v: &Value) -> Result<(String, Vec<Point>), String> {
    let workload = v.get("workload").and_then(Value::as_str).ok_or("not a tessera-bench result: no workload")?;
    let mut title = format!("tessera-bench {workload}");
    if let Some(params) = v.get("params").and_then(Value::as_object) {
        for name in ["size", "concurrency", "mix", "key_dist"] {
            if let Some(p) = params.get(name) {
                let text = p.as_str().map_or_else(|| p.to_string(), str::to_string);
                title.push_str(&format!(" {name}={text}"));
            }
        }
    }
    let timeline = v
        .get("timeline")
        .and_then(Value::as_array)
        .ok_or("no timeline in this result (written by an older tessera-bench?)")?
        .iter()
        .map(|p| Point::from_json(p).ok_or("a malformed timeline point"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((title, timeline))
}

/// `tessera-bench plot RESULT -o OUT.svg`.
pub fn plot_file(result: &Path, output: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(result).map_err(|e| format!("read {}: {e}", result.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", result.display()))?;
    let (title, timeline) = read_result(&v).map_err(|e| format!("{}: {e}", result.display()))?;
    std::fs::write(output, svg(&title, &timeline)).map_err(|e| format!("write {}: {e}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nice_ceilings() {
        for (v, want) in [(0.0, 1.0), (-3.0, 1.0), (f64::NAN, 1.0), (0.7, 1.0), (1.0, 1.0), (1.1, 2.0), (2.2, 2.5), (3.0, 5.0), (7.0, 10.0), (12345.0, 20000.0)] {
            assert_eq!(nice_ceiling(v), want, "{v}");
        }
    }

    #[test]
    fn time_labels() {
        for (t, want) in [(0.0, "0"), (5.0, "5"), (7.5, "7.5"), (0.25, "0.25"), (20.0, "20")] {
            assert_eq!(seconds(t), want);
        }
    }

    #[test]
    fn plots_are_well_formed() {
        let points: Vec<Point> = (1..=5)
            .map(|i| Point { t_s: i as f64, ops_per_s: 1000.0 * i as f64, mb_per_s: 4.0, errors: 0, p50_us: 500, p99_us: 2000, max_us: 9000 })
            .collect();
        let s = svg("put <4 KiB> & more", &points);
        assert!(s.starts_with("<svg ") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("put &lt;4 KiB&gt; &amp; more"));
        // Every element opened is closed: the file parses as XML.
        assert!(tessera_proto::xml::parse(s.as_bytes()).is_ok());
        let empty = svg("nothing", &[]);
        assert!(empty.contains("no samples") && !empty.contains("NaN") && !empty.contains("inf"));
        let v = json!({"workload": "get", "params": {"size": "4 KiB", "concurrency": 16},
                       "timeline": points.iter().map(Point::json).collect::<Vec<_>>()});
        let (title, timeline) = read_result(&v).unwrap();
        assert_eq!(title, "tessera-bench get size=4 KiB concurrency=16");
        assert_eq!(timeline, points);
        assert!(read_result(&json!({"workload": "get"})).is_err());
        assert!(read_result(&json!({"timeline": []})).is_err());
    }
}

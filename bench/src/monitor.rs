//! What a run looks like while it runs: every client thread counts its
//! requests of the current second in its own slot (a mutex only its thread and
//! the sampler touch); the sampler folds the slots into one point per second
//! (the timeline that reports and plots show) and prints a progress line.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::Shared;

/// Width of one timeline point.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Most points kept (a day of seconds); later ones are dropped, the totals stay exact.
pub const MAX_TIMELINE_POINTS: usize = 86_400;
/// Highest latency the per-second histograms track (10 min); longer saturate.
const MAX_LIVE_LATENCY_US: u64 = 600_000_000;

/// One slot's counts since the sampler last took them.
pub struct LiveStats {
    pub ok: u64,
    pub errors: u64,
    pub bytes: u64,
    pub latency_us: Histogram<u64>,
}

impl LiveStats {
    pub fn new() -> LiveStats {
        // Two significant digits are plenty for a plot; the bounds are constants, valid.
        let latency_us = Histogram::new_with_bounds(1, MAX_LIVE_LATENCY_US, 2).expect("constant histogram bounds");
        LiveStats { ok: 0, errors: 0, bytes: 0, latency_us }
    }

    fn absorb(&mut self, other: &LiveStats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.bytes += other.bytes;
        // Same bounds on both sides: adding cannot fail.
        self.latency_us.add(&other.latency_us).expect("histograms share bounds");
    }
}

impl Default for LiveStats {
    fn default() -> Self {
        Self::new()
    }
}

/// One slot per client thread.
pub struct Live {
    slots: Vec<Mutex<LiveStats>>,
}

impl Live {
    pub fn new(slots: usize) -> Live {
        Live { slots: (0..slots.max(1)).map(|_| Mutex::new(LiveStats::new())).collect() }
    }

    pub fn record_ok(&self, slot: usize, latency_us: u64, bytes: u64) {
        if let Some(Ok(mut s)) = self.slots.get(slot).map(Mutex::lock) {
            s.ok += 1;
            s.bytes += bytes;
            s.latency_us.saturating_record(latency_us.max(1));
        }
    }

    pub fn record_error(&self, slot: usize) {
        if let Some(Ok(mut s)) = self.slots.get(slot).map(Mutex::lock) {
            s.errors += 1;
        }
    }

    /// Takes every slot's counts, leaving them empty.
    fn take(&self) -> LiveStats {
        let mut total = LiveStats::new();
        for slot in &self.slots {
            if let Ok(mut s) = slot.lock() {
                total.absorb(&s);
                s.ok = 0;
                s.errors = 0;
                s.bytes = 0;
                s.latency_us.reset();
            }
        }
        total
    }
}

/// One second of a run (or less, for the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Seconds since the phase started, at the end of this interval.
    pub t_s: f64,
    pub ops_per_s: f64,
    pub mb_per_s: f64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Point {
    fn from_interval(t_s: f64, secs: f64, s: &LiveStats) -> Point {
        let secs = secs.max(1e-9);
        let (p50_us, p99_us, max_us) = if s.ok == 0 {
            (0, 0, 0)
        } else {
            (s.latency_us.value_at_quantile(0.5), s.latency_us.value_at_quantile(0.99), s.latency_us.max())
        };
        Point {
            t_s,
            ops_per_s: s.ok as f64 / secs,
            mb_per_s: s.bytes as f64 / secs / 1e6,
            errors: s.errors,
            p50_us,
            p99_us,
            max_us,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "t_s": self.t_s, "ops_per_s": self.ops_per_s, "mb_per_s": self.mb_per_s, "errors": self.errors,
            "p50_us": self.p50_us, "p99_us": self.p99_us, "max_us": self.max_us,
        })
    }

    /// Reads a point back from a result file.
    pub fn from_json(v: &Value) -> Option<Point> {
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        let u = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Point {
            t_s: f("t_s")?,
            ops_per_s: f("ops_per_s")?,
            mb_per_s: f("mb_per_s")?,
            errors: u("errors")?,
            p50_us: u("p50_us")?,
            p99_us: u("p99_us")?,
            max_us: u("max_us")?,
        })
    }
}

/// The sampler of one phase (prefill, the timed run, ...).
pub struct Monitor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Point>>,
}

impl Monitor {
    /// Starts sampling on the calling runtime; a progress line every
    /// `shared.progress_every` (never when zero). `total` (successes expected in
    /// the phase) adds the share done.
    pub fn start(shared: Arc<Shared>, label: &'static str, total: Option<u64>) -> Monitor {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Counts from before the phase (connects, an earlier phase) are not its own.
            let _ = shared.live.take();
            let started = Instant::now();
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_INTERVAL, SAMPLE_INTERVAL);
            let mut points = Vec::new();
            let mut last_t = 0.0;
            let mut window = LiveStats::new();
            let mut window_started = 0.0;
            let mut done = 0u64;
            loop {
                let last = tokio::select! {
                    _ = ticker.tick() => false,
                    _ = &mut stopped => true,
                };
                let t = started.elapsed().as_secs_f64();
                let s = shared.live.take();
                // A last sliver shorter than a tenth of an interval would only add noise.
                let sliver = last && t - last_t <= SAMPLE_INTERVAL.as_secs_f64() / 10.0;
                if !sliver && points.len() < MAX_TIMELINE_POINTS {
                    points.push(Point::from_interval(t, t - last_t, &s));
                }
                last_t = t;
                window.absorb(&s);
                done += s.ok;
                let every = shared.progress_every.as_secs_f64();
                if every > 0.0 && !last && t - window_started >= every - 1e-3 {
                    let p = Point::from_interval(t, t - window_started, &window);
                    eprintln!("{}", progress_line(label, &p, done, total));
                    window = LiveStats::new();
                    window_started = t;
                }
                if last {
                    return points;
                }
            }
        });
        Monitor { stop, task }
    }

    /// Stops sampling; the timeline of the phase.
    pub async fn finish(self) -> Vec<Point> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// `[put    12.0s] 10234 op/s 41.9 MB/s p50 1.2 ms p99 2.1 ms, 0 errors`
pub fn progress_line(label: &str, p: &Point, done: u64, total: Option<u64>) -> String {
    let share = total.map(|t| format!(" ({done} of {t}, {:.1}%)", 100.0 * done as f64 / t.max(1) as f64)).unwrap_or_default();
    format!(
        "[{label:<9} {:>7.1}s] {:>9.0} op/s {:>9.2} MB/s  p50 {:>8} p99 {:>8}  {} errors{share}",
        p.t_s,
        p.ops_per_s,
        p.mb_per_s,
        format_us(p.p50_us),
        format_us(p.p99_us),
        p.errors
    )
}

/// `850 µs`, `2.10 ms`, `1.50 s`.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fold_into_points() {
        let live = Live::new(2);
        live.record_ok(0, 100, 4096);
        live.record_ok(1, 200, 4096);
        live.record_error(1);
        live.record_ok(7, 1, 1); // no such slot: ignored, never a panic
        let s = live.take();
        assert_eq!((s.ok, s.errors, s.bytes), (2, 1, 8192));
        let p = Point::from_interval(2.0, 0.5, &s);
        assert_eq!((p.ops_per_s, p.errors, p.max_us), (4.0, 1, 200));
        assert_eq!(Point::from_json(&p.json()), Some(p));
        assert_eq!(live.take().ok, 0);
        let line = progress_line("put", &Point::from_interval(5.0, 1.0, &LiveStats::new()), 5, Some(10));
        assert!(line.contains("(5 of 10, 50.0%)"), "{line}");
        assert_eq!((format_us(850), format_us(2_100), format_us(1_500_000)), ("850 µs".into(), "2.10 ms".into(), "1.50 s".into()));
    }
}

//! Which key a request goes to and how large each object is.
//!
//! Keys: `sequential` (0, 1, 2, ... shared by all workers, wrapping), `uniform`,
//! or `zipf[:S]` (key k+1 drawn with probability proportional to 1/(k+1)^S, by
//! rejection-inversion: Hörmann & Derflinger, "Rejection-inversion to generate
//! variates from monotone discrete distributions", 1996; constant time per draw
//! for any key space). Sizes: fixed (`4KiB`), uniform over a range
//! (`4KiB-1MiB`) or weighted choices (`4KiB:90,1MiB:10`); an object's size is a
//! function of its index, so GETs can check lengths and overwrites keep them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::stats::OpKind;
use crate::units::{format_size, parse_size};

/// Zipf exponent when `zipf` is given without one (YCSB's default).
pub const DEFAULT_ZIPF_EXPONENT: f64 = 0.99;
/// Exponents accepted for zipf: above this nearly every draw is key 0.
pub const MAX_ZIPF_EXPONENT: f64 = 10.0;
/// Most weighted choices in a size distribution.
pub const MAX_SIZE_CHOICES: usize = 64;

/// How keys are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyDist {
    Sequential,
    Uniform,
    Zipf(f64),
}

impl KeyDist {
    pub fn parse(s: &str) -> Result<KeyDist, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "sequential" | "seq" => return Ok(KeyDist::Sequential),
            "uniform" | "random" => return Ok(KeyDist::Uniform),
            "zipf" => return Ok(KeyDist::Zipf(DEFAULT_ZIPF_EXPONENT)),
            _ => {}
        }
        let exponent = t.strip_prefix("zipf:").ok_or_else(|| format!("key distribution {s:?}: expected sequential, uniform, zipf or zipf:S"))?;
        let e: f64 = exponent.parse().map_err(|_| format!("key distribution {s:?}: bad zipf exponent"))?;
        if !(e > 0.0 && e <= MAX_ZIPF_EXPONENT) {
            return Err(format!("key distribution {s:?}: the zipf exponent must be in (0, {MAX_ZIPF_EXPONENT}]"));
        }
        Ok(KeyDist::Zipf(e))
    }

    pub fn name(&self) -> String {
        match self {
            KeyDist::Sequential => "sequential".into(),
            KeyDist::Uniform => "uniform".into(),
            KeyDist::Zipf(e) => format!("zipf:{e}"),
        }
    }
}

/// One worker's key chooser over `0..objects`.
pub struct KeyChooser {
    objects: u64,
    kind: Chooser,
}

enum Chooser {
    /// Shared by every worker so the sequence covers the key space once per lap.
    Sequential(Arc<AtomicU64>),
    Uniform,
    Zipf(Zipf),
}

impl KeyChooser {
    /// `next` is the sequence all workers of a run share (used by `sequential`).
    pub fn new(dist: &KeyDist, objects: u64, next: Arc<AtomicU64>) -> KeyChooser {
        assert!(objects > 0);
        let kind = match dist {
            KeyDist::Sequential => Chooser::Sequential(next),
            KeyDist::Uniform => Chooser::Uniform,
            KeyDist::Zipf(e) => Chooser::Zipf(Zipf::new(objects, *e)),
        };
        KeyChooser { objects, kind }
    }

    pub fn next(&self, rng: &mut fastrand::Rng) -> u64 {
        match &self.kind {
            Chooser::Sequential(n) => n.fetch_add(1, Ordering::Relaxed) % self.objects,
            Chooser::Uniform => rng.u64(0..self.objects),
            Chooser::Zipf(z) => z.sample(rng) - 1,
        }
    }
}

/// Zipf over `1..=n` with exponent `s` > 0, by rejection-inversion (the
/// formulation of Apache Commons RNG's `RejectionInversionZipfSampler`).
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        assert!(n >= 1 && s > 0.0);
        let mut z = Zipf { n: n as f64, s, h_integral_x1: 0.0, h_integral_n: 0.0, threshold: 0.0 };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.threshold = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A value in `1..=n`.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// The integral of `h` from 1 to x, up to a constant, stable at s = 1.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// ln(1 + x) / x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1) / x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// Object sizes.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeDist {
    Fixed(u64),
    /// Every size in `min..=max` equally likely.
    Uniform { min: u64, max: u64 },
    /// (size, weight) pairs.
    Choice(Vec<(u64, u32)>),
}

impl SizeDist {
    /// `4KiB`, `4KiB-1MiB`, `4KiB:90,1MiB:10`.
    pub fn parse(s: &str) -> Result<SizeDist, String> {
        let t = s.trim();
        if t.contains(':') || t.contains(',') {
            let mut choices = Vec::new();
            for part in t.split(',') {
                let (size, weight) = part.split_once(':').unwrap_or((part, "1"));
                let w: u32 = weight.trim().parse().map_err(|_| format!("sizes {s:?}: bad weight {weight:?}"))?;
                if w == 0 {
                    return Err(format!("sizes {s:?}: weights must be positive"));
                }
                choices.push((parse_size(size)?, w));
            }
            if choices.len() > MAX_SIZE_CHOICES {
                return Err(format!("sizes {s:?}: at most {MAX_SIZE_CHOICES} choices"));
            }
            return Ok(SizeDist::Choice(choices));
        }
        if let Some((lo, hi)) = t.split_once('-') {
            let (min, max) = (parse_size(lo)?, parse_size(hi)?);
            if min > max {
                return Err(format!("sizes {s:?}: the range is empty"));
            }
            return Ok(SizeDist::Uniform { min, max });
        }
        Ok(SizeDist::Fixed(parse_size(t)?))
    }

    pub fn max(&self) -> u64 {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { max, .. } => *max,
            SizeDist::Choice(c) => c.iter().map(|(s, _)| *s).max().unwrap_or(0),
        }
    }

    /// The size of object `index`: the same for every call, every worker and every run.
    pub fn size_of(&self, index: u64) -> u64 {
        let r = splitmix64(index ^ 0x0005_12e5_d157);
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { min, max } => min + r % (max - min + 1),
            SizeDist::Choice(c) => {
                let total: u64 = c.iter().map(|(_, w)| u64::from(*w)).sum();
                let mut pick = r % total.max(1);
                for (size, w) in c {
                    if pick < u64::from(*w) {
                        return *size;
                    }
                    pick -= u64::from(*w);
                }
                c.last().map_or(0, |(s, _)| *s)
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SizeDist::Fixed(n) => format_size(*n),
            SizeDist::Uniform { min, max } => format!("{}-{}", format_size(*min), format_size(*max)),
            SizeDist::Choice(c) => {
                let parts: Vec<String> = c.iter().map(|(s, w)| format!("{}:{w}", format_size(*s))).collect();
                parts.join(",")
            }
        }
    }
}

/// Which operation each request of a timed run is: weights per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(OpKind, u32)>,
    total: u32,
}

/// Operations a mix may hold (list has its own workload).
const MIXABLE: [OpKind; 5] = [OpKind::Get, OpKind::Put, OpKind::Delete, OpKind::Stat, OpKind::Multipart];
/// Largest weight of one operation in a mix.
pub const MAX_MIX_WEIGHT: u32 = 1_000_000;

impl Mix {
    pub fn only(kind: OpKind) -> Mix {
        Mix { weights: vec![(kind, 1)], total: 1 }
    }

    /// `get_percent` GETs, the rest PUTs.
    pub fn get_put(get_percent: u32) -> Mix {
        let mut weights = Vec::new();
        if get_percent > 0 {
            weights.push((OpKind::Get, get_percent.min(100)));
        }
        if get_percent < 100 {
            weights.push((OpKind::Put, 100 - get_percent));
        }
        Mix { weights, total: 100 }
    }

    /// `get=70,put=20,delete=5,stat=5` (weights, not necessarily summing to 100).
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut weights: Vec<(OpKind, u32)> = Vec::new();
        for part in s.split(',') {
            let (name, w) = part.split_once('=').ok_or_else(|| format!("mix {s:?}: expected op=weight, e.g. get=70,put=30"))?;
            let kind = OpKind::parse(name.trim())
                .filter(|k| MIXABLE.contains(k))
                .ok_or_else(|| format!("mix {s:?}: unknown operation {name:?} (get, put, delete, stat, multipart)"))?;
            let w: u32 = w.trim().parse().map_err(|_| format!("mix {s:?}: bad weight {w:?}"))?;
            if w > MAX_MIX_WEIGHT {
                return Err(format!("mix {s:?}: weights are at most {MAX_MIX_WEIGHT}"));
            }
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("mix {s:?}: {name} given twice"));
            }
            if w > 0 {
                weights.push((kind, w));
            }
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err(format!("mix {s:?}: no operation has a weight"));
        }
        Ok(Mix { weights, total })
    }

    pub fn pick(&self, rng: &mut fastrand::Rng) -> OpKind {
        if self.weights.len() == 1 {
            return self.weights[0].0;
        }
        let mut r = rng.u32(0..self.total);
        for (kind, w) in &self.weights {
            if r < *w {
                return *kind;
            }
            r -= w;
        }
        self.weights[self.weights.len() - 1].0
    }

    pub fn kinds(&self) -> Vec<OpKind> {
        self.weights.iter().map(|(k, _)| *k).collect()
    }

    pub fn has(&self, kind: OpKind) -> bool {
        self.weights.iter().any(|(k, _)| *k == kind)
    }

    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.weights.iter().map(|(k, w)| format!("{}={w}", k.name())).collect();
        parts.join(",")
    }
}

/// A well-mixed function of its input (Steele, Lea, Flood: SplitMix64).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draw counts match the Zipf probabilities within a few standard deviations.
    #[test]
    fn zipf_matches_its_distribution() {
        for (n, s) in [(10u64, 0.99), (10, 1.0), (50, 1.5), (20, 0.5)] {
            let z = Zipf::new(n, s);
            let mut rng = fastrand::Rng::with_seed(7);
            let draws = 400_000u64;
            let mut counts = vec![0u64; n as usize + 1];
            for _ in 0..draws {
                let k = z.sample(&mut rng);
                assert!((1..=n).contains(&k));
                counts[k as usize] += 1;
            }
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
            let mut chi2 = 0.0;
            for k in 1..=n {
                let expected = draws as f64 * (k as f64).powf(-s) / norm;
                let d = counts[k as usize] as f64 - expected;
                chi2 += d * d / expected;
                // Each count within 5 sigma of its binomial expectation.
                let sigma = (expected * (1.0 - expected / draws as f64)).sqrt();
                assert!(d.abs() < 5.0 * sigma, "n={n} s={s} k={k}: {} vs {expected:.0}", counts[k as usize]);
            }
            // Chi-square with n-1 degrees of freedom: far below 2(n-1) + 30 unless biased.
            assert!(chi2 < 2.0 * (n - 1) as f64 + 30.0, "n={n} s={s}: chi2 {chi2}");
        }
    }

    #[test]
    fn zipf_edges() {
        let mut rng = fastrand::Rng::with_seed(1);
        let one = Zipf::new(1, 0.99);
        assert!((0..1000).all(|_| one.sample(&mut rng) == 1));
        let huge = Zipf::new(1_000_000_000, 0.99);
        let mut low = 0;
        for _ in 0..10_000 {
            let k = huge.sample(&mut rng);
            assert!((1..=1_000_000_000).contains(&k));
            low += u32::from(k <= 10);
        }
        // With s = 0.99 over 10^9 keys, the 10 hottest take about 13% of draws.
        assert!((900..1800).contains(&low), "{low}");
        let steep = Zipf::new(100, MAX_ZIPF_EXPONENT);
        assert!((0..1000).filter(|_| steep.sample(&mut rng) == 1).count() > 990);
    }

    #[test]
    fn key_choosers() {
        let next = Arc::new(AtomicU64::new(0));
        let mut rng = fastrand::Rng::with_seed(3);
        let seq = KeyChooser::new(&KeyDist::Sequential, 3, next.clone());
        let other = KeyChooser::new(&KeyDist::Sequential, 3, next);
        let got: Vec<u64> = (0..4).map(|i| if i % 2 == 0 { seq.next(&mut rng) } else { other.next(&mut rng) }).collect();
        assert_eq!(got, [0, 1, 2, 0]);
        let uni = KeyChooser::new(&KeyDist::Uniform, 5, Arc::default());
        assert!((0..1000).all(|_| uni.next(&mut rng) < 5));
        let z = KeyChooser::new(&KeyDist::Zipf(1.0), 5, Arc::default());
        let zeros = (0..1000).filter(|_| z.next(&mut rng) == 0).count();
        assert!(zeros > 350 && zeros < 520, "{zeros}"); // p(key 0) = 1/H(5) = 0.438
    }

    #[test]
    fn key_dist_parsing() {
        for (s, want) in [
            ("sequential", KeyDist::Sequential),
            ("uniform", KeyDist::Uniform),
            ("zipf", KeyDist::Zipf(DEFAULT_ZIPF_EXPONENT)),
            ("ZIPF:1.2", KeyDist::Zipf(1.2)),
        ] {
            assert_eq!(KeyDist::parse(s), Ok(want), "{s}");
        }
        for bad in ["", "zipf:", "zipf:0", "zipf:-1", "zipf:11", "zipf:nan", "normal"] {
            assert!(KeyDist::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mixes() {
        let m = Mix::parse("get=70, put=20,delete=5,stat=5,multipart=0").unwrap();
        assert_eq!(m.describe(), "get=70,put=20,delete=5,stat=5");
        let mut rng = fastrand::Rng::with_seed(9);
        let gets = (0..10_000).filter(|_| m.pick(&mut rng) == OpKind::Get).count();
        assert!((6700..7300).contains(&gets), "{gets}");
        assert_eq!(Mix::get_put(100).kinds(), [OpKind::Get]);
        assert_eq!(Mix::get_put(0).kinds(), [OpKind::Put]);
        assert_eq!(Mix::get_put(70).describe(), "get=70,put=30");
        assert!(Mix::only(OpKind::Stat).has(OpKind::Stat));
        for bad in ["", "get", "get=x", "list=1", "get=0", "get=1,get=2", "put=1000001", "fly=1"] {
            assert!(Mix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn size_dists() {
        assert_eq!(SizeDist::parse("4KiB"), Ok(SizeDist::Fixed(4096)));
        assert_eq!(SizeDist::parse("1KiB-2KiB"), Ok(SizeDist::Uniform { min: 1024, max: 2048 }));
        assert_eq!(SizeDist::parse("4KiB:90,1MiB:10"), Ok(SizeDist::Choice(vec![(4096, 90), (1 << 20, 10)])));
        assert_eq!(SizeDist::parse("0,1"), Ok(SizeDist::Choice(vec![(0, 1), (1, 1)])));
        for bad in ["", "2KiB-1KiB", "4KiB:0", "4KiB:x", "6GiB", "1-", "a:1"] {
            assert!(SizeDist::parse(bad).is_err(), "{bad}");
        }
        let u = SizeDist::parse("100-200").unwrap();
        let sizes: Vec<u64> = (0..2000).map(|i| u.size_of(i)).collect();
        assert!(sizes.iter().all(|s| (100..=200).contains(s)));
        assert!(sizes.contains(&100) && sizes.contains(&200));
        assert_eq!(u.size_of(17), u.size_of(17));
        let c = SizeDist::parse("1:9,2:1").unwrap();
        let twos = (0..10_000).filter(|&i| c.size_of(i) == 2).count();
        assert!((800..1200).contains(&twos), "{twos}");
        assert_eq!((u.max(), c.max()), (200, 2));
        assert_eq!(SizeDist::parse("4KiB:90,1MiB:10").unwrap().describe(), "4 KiB:90,1 MiB:10");
    }
}

//! Parsing of the sizes and durations a user types on the command line.

use std::time::Duration;

/// Largest object a single PUT may carry in S3 (5 GiB).
pub const MAX_SIZE_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Longest duration accepted anywhere (a day): every run is bounded.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Binary (`KiB`, `MiB`, `GiB`, `TiB`) and decimal (`KB`, `MB`, `GB`) suffixes, `B` or
/// none for bytes; case-insensitive, optional space: `4KiB`, `1 MiB`, `0`, `512b`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("size {s:?}: expected a number, e.g. 4KiB"));
    }
    let n: u64 = num.parse().map_err(|_| format!("size {s:?}: number too large"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("size {s:?}: unknown unit {other:?} (B, KiB, MiB, GiB, KB, MB, GB)")),
    };
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("size {s:?}: too large"))?;
    if bytes > MAX_SIZE_BYTES {
        return Err(format!("size {s:?}: larger than the 5 GiB a single PUT may carry"));
    }
    Ok(bytes)
}

/// `500ms`, `10s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {s:?}: expected a number, e.g. 10s"));
    }
    let n: u64 = num.parse().map_err(|_| format!("duration {s:?}: number too large"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(format!("duration {s:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    if d > MAX_DURATION {
        return Err(format!("duration {s:?}: longer than a day"));
    }
    Ok(d)
}

/// Human form of a byte count for reports: `4 KiB`, `1 MiB`, `1000 B`.
pub fn format_size(bytes: u64) -> String {
    for (mult, unit) in [(1u64 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        // `mult` is a power of two.
        if bytes >= mult && bytes & (mult - 1) == 0 {
            return format!("{} {unit}", bytes / mult);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (input, want) in [
            ("0", 0),
            ("4096", 4096),
            ("17B", 17),
            ("4KiB", 4096),
            ("4kib", 4096),
            ("4 KiB", 4096),
            ("4k", 4096),
            ("1MiB", 1 << 20),
            ("64MiB", 64 << 20),
            ("1GiB", 1 << 30),
            ("5GiB", 5 << 30),
            ("4KB", 4000),
            ("1MB", 1_000_000),
            ("2GB", 2_000_000_000),
        ] {
            assert_eq!(parse_size(input), Ok(want), "{input:?}");
        }
        for bad in ["", "KiB", "-1", "4XiB", "1.5MiB", "6GiB", "99999999999999999999", "18446744073709551615GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        for (input, want) in [
            ("10s", Duration::from_secs(10)),
            ("10", Duration::from_secs(10)),
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("24h", Duration::from_secs(86_400)),
        ] {
            assert_eq!(parse_duration(input), Ok(want), "{input:?}");
        }
        for bad in ["", "s", "10x", "1.5s", "-1s", "25h", "10 min"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn size_display() {
        for (bytes, want) in [(0, "0 B"), (4096, "4 KiB"), (1 << 20, "1 MiB"), (1000, "1000 B"), (1536, "1536 B")] {
            assert_eq!(format_size(bytes), want);
        }
    }
}

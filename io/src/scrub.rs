//! The scrubber: a background pass that re-reads every sealed segment at a
//! bounded rate and verifies every record (headers, entries, each 64 KiB
//! data chunk), so bit rot in cold data is found before a client reads it.
//! Failures are counted and logged with their place; with a cluster (or
//! erasure coding across disks) they will be repaired from the other copies.

use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::data;
use crate::error::IoError;
use crate::format::{align_down, align_entry, align_up, EntryHeader, Kind, Pos, RecordHeader, BLOCK, HEADER_BYTES};
use crate::codec::Extent;
use crate::shard::Inner;

#[derive(Clone, Debug)]
pub struct ScrubOptions {
    pub enabled: bool,
    /// Most bytes read per second.
    pub rate_bytes_per_sec: u64,
    /// Pause between two whole passes.
    pub pass_interval: Duration,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        ScrubOptions {
            enabled: true,
            rate_bytes_per_sec: 16 << 20,
            pass_interval: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ScrubStats {
    pub passes: u64,
    pub bytes_read: u64,
    pub records_checked: u64,
    /// Records that failed verification.
    pub errors: u64,
    pub last_error: Option<String>,
    /// The segment being scrubbed now (0: between passes).
    pub segment: u32,
}

const READ_PIECE: u64 = 1 << 20;

pub(crate) async fn run(weak: Weak<Inner>) {
    loop {
        // A pass, then the pause.
        let mut next = 0u32;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let n = {
                let log = inner.log.borrow();
                let active = log.active_segment().unwrap_or(u32::MAX);
                log.segments.range(next..).map(|(n, _)| *n).find(|n| *n < active)
            };
            let Some(n) = n else { break };
            inner.scrub.borrow_mut().segment = n;
            if let Err(e) = scrub_segment(&inner, n, true).await {
                tracing::debug!(shard = inner.id, segment = n, error = %e, "scrub of a segment stopped");
            }
            next = n + 1;
        }
        let Some(inner) = weak.upgrade() else { return };
        {
            let mut st = inner.scrub.borrow_mut();
            st.passes += 1;
            st.segment = 0;
        }
        let (backend, pause) = (inner.backend.clone(), inner.opts.scrub.pass_interval);
        drop(inner);
        backend.sleep(pause).await;
    }
}

/// Scrubs every sealed segment once, unthrottled (tests, operators).
pub(crate) async fn scrub_all(inner: &Rc<Inner>) -> Result<ScrubStats, IoError> {
    let numbers: Vec<u32> = {
        let log = inner.log.borrow();
        let active = log.active_segment().unwrap_or(u32::MAX);
        log.segments.keys().copied().filter(|n| *n < active).collect()
    };
    for n in numbers {
        match scrub_segment(inner, n, false).await {
            Ok(()) | Err(IoError::Moved) => {}
            Err(e) => return Err(e),
        }
    }
    inner.scrub.borrow_mut().passes += 1;
    Ok(inner.scrub.borrow().clone())
}

async fn pace(inner: &Inner, bytes: u64, throttled: bool) {
    inner.scrub.borrow_mut().bytes_read += bytes;
    if throttled {
        let rate = inner.opts.scrub.rate_bytes_per_sec.max(1);
        let micros = bytes.saturating_mul(1_000_000) / rate;
        inner.backend.sleep(Duration::from_micros(micros)).await;
    }
}

fn found(inner: &Inner, segment: u32, offset: u64, what: &str) {
    let msg = format!("segment {segment} offset {offset}: {what}");
    tracing::error!(shard = inner.id, segment, offset, what, "scrub: record fails verification");
    let mut st = inner.scrub.borrow_mut();
    st.errors += 1;
    st.last_error = Some(msg);
}

async fn scrub_segment(inner: &Rc<Inner>, n: u32, throttled: bool) -> Result<(), IoError> {
    let (file, end) = {
        let log = inner.log.borrow();
        match log.segments.get(&n) {
            Some(s) => (s.file.clone(), s.end),
            None => return Err(IoError::Moved),
        }
    };
    for (offset, what) in verify_segment(&file, &inner.key, inner.id, n, end, Some((&**inner, throttled))).await {
        found(inner, n, offset, &what);
    }
    Ok(())
}

/// Verifies every record of segment `n` (its first `end` bytes): headers,
/// entries, each data chunk. The failures, by offset. With `pace_with`,
/// reads are counted in that shard's scrub stats (and throttled to its
/// scrub rate when asked).
pub(crate) async fn verify_segment(
    file: &crate::storage::DiskFile,
    key: &crate::format::ShardKey,
    shard: u32,
    n: u32,
    end: u64,
    pace_with: Option<(&Inner, bool)>,
) -> Vec<(u64, String)> {
    let mut errors = Vec::new();
    let mut bad = |offset: u64, what: String| errors.push((offset, what));
    let key = *key;
    let mut pos = 0u64;
    // A format-3 batch's copy: (where it starts, where it ends).
    let mut copy_at: Option<(u64, u64)> = None;
    while pos + HEADER_BYTES as u64 <= end {
        let (head_buf, hs) = match data::read_span(file, pos, HEADER_BYTES, n).await {
            Ok(h) => h,
            Err(e) => {
                bad(pos, format!("unreadable: {e}"));
                pos = align_down(pos) + BLOCK as u64;
                continue;
            }
        };
        // From a block boundary this is the whole block (segment and data
        // headers are verified over it).
        let head = &head_buf.as_slice()[hs..];
        if let Some((inner, throttled)) = pace_with {
            pace(inner, BLOCK as u64, throttled).await;
            inner.scrub.borrow_mut().records_checked += 1;
        }
        let h = match RecordHeader::decode(head) {
            Ok(h) if h.segment == n && h.offset == pos && h.shard == shard => h,
            _ if copy_at.is_some_and(|(at, _)| at == pos) => {
                bad(pos, "batch copy header".into());
                pos = copy_at.take().map_or(pos, |(_, e)| e);
                continue;
            }
            _ if pos % BLOCK as u64 != 0 => {
                // After a copy that ends inside a block: zero padding to the
                // block boundary (else a packed batch was damaged here).
                let to = (align_up(pos) - pos).min(head.len() as u64) as usize;
                if head[..to].iter().any(|&x| x != 0) {
                    bad(pos, "record header".into());
                }
                pos = align_up(pos);
                continue;
            }
            _ => {
                bad(pos, "record header".into());
                pos += BLOCK as u64;
                continue;
            }
        };
        let len = h.record_len();
        copy_at = (h.kind == Kind::Batch && h.version >= 3).then(|| (pos + len, pos + len + h.copy_len as u64));
        match h.kind {
            Kind::Segment => {
                if !h.verify(&key, head) {
                    bad(pos, "segment record checksum".into());
                }
            }
            Kind::Data => {
                let e = Extent {
                    segment: n,
                    offset: pos,
                    len: h.payload_len,
                };
                if e.len == 0 {
                    if let Err(err) = data::verify_record(file, &key, shard, &e).await {
                        bad(pos, err.to_string());
                    }
                }
                let mut at = 0;
                while at < e.len {
                    let m = (e.len - at).min(READ_PIECE);
                    if let Err(err) = data::read_range(file, &key, shard, &e, at..at + m).await {
                        bad(pos, err.to_string());
                        break;
                    }
                    if let Some((inner, throttled)) = pace_with {
                        pace(inner, m, throttled).await;
                    }
                    at += m;
                }
            }
            Kind::Batch | Kind::BatchCopy => {
                let vlen = h.verify_len().max(HEADER_BYTES + h.payload_len as usize);
                let (whole, ws) = match data::read_span(file, pos, vlen, n).await {
                    Ok(w) => w,
                    Err(err) => {
                        bad(pos, err.to_string());
                        pos += len;
                        continue;
                    }
                };
                if let Some((inner, throttled)) = pace_with {
                    pace(inner, len, throttled).await;
                }
                let b = &whole.as_slice()[ws..ws + vlen];
                if !h.verify(&key, b) {
                    bad(pos, "batch header checksum".into());
                }
                let skip = if h.kind == Kind::BatchCopy { 16 } else { 0 };
                let payload = &b[HEADER_BYTES..HEADER_BYTES + h.payload_len as usize];
                let mut off = skip;
                for _ in 0..h.count {
                    let Ok(eh) = EntryHeader::decode(&payload[off..], payload.len() - off) else {
                        bad(pos, "commit entry header".into());
                        break;
                    };
                    let at = Pos {
                        segment: n,
                        offset: pos + (HEADER_BYTES + off) as u64,
                    };
                    if !eh.verify(&key, &payload[off..], shard, at) {
                        bad(at.offset, "commit entry checksum".into());
                    }
                    off += align_entry(eh.total_len());
                }
            }
        }
        pos += len;
    }
    errors
}

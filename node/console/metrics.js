// Live charts of the node's /metrics (Prometheus text, unauthenticated on
// the admin listener): parsed here, drawn on a <canvas>, no library.

/** Seconds between scrapes, and how many points a chart keeps. */
export const POLL_MS = 2000;
export const POINTS = 90;

/** Sums of every sample per metric name (labels summed over). Lines that
 *  do not parse are skipped: the chart must not break on a new metric. */
export function parseProm(text) {
  const sums = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    sums.set(m[1], (sums.get(m[1]) || 0) + v);
  }
  return sums;
}

/** Per-second rate of a counter between two scrapes (0 across a restart). */
function rate(prev, cur, name, seconds) {
  const a = prev.get(name) || 0, b = cur.get(name) || 0;
  return b >= a && seconds > 0 ? (b - a) / seconds : 0;
}

function human(v, unit) {
  const steps = unit === 'B/s' ? ['', 'Ki', 'Mi', 'Gi'] : ['', 'k', 'M', 'G'];
  const base = unit === 'B/s' ? 1024 : 1000;
  let i = 0;
  while (v >= base && i < steps.length - 1) { v /= base; i++; }
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${steps[i]}${unit}`;
}

/** Draws series (arrays of numbers, oldest first) on a canvas. */
function draw(canvas, series, colors, unit) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 4, top = 18;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series.flat());
  ctx.strokeStyle = '#ddd';
  ctx.beginPath();
  ctx.moveTo(0, h - pad); ctx.lineTo(w, h - pad);
  ctx.moveTo(0, top); ctx.lineTo(w, top);
  ctx.stroke();
  ctx.fillStyle = '#555';
  ctx.font = '12px sans-serif';
  ctx.fillText(`max ${human(max, unit)}`, 4, 12);
  series.forEach((s, i) => {
    ctx.strokeStyle = colors[i];
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.forEach((v, j) => {
      const x = (j / (POINTS - 1)) * w;
      const y = h - pad - (v / max) * (h - pad - top);
      if (j === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
}

/** Starts polling; returns a function that stops it. `els` holds the two
 *  canvases and the text elements for the latest figures. */
export function startCharts(els) {
  const reqs = [], bytesIn = [], bytesOut = [];
  let prev = null, prevAt = 0, stopped = false, timer = 0;
  async function tick() {
    try {
      const r = await fetch('/metrics', { cache: 'no-store', credentials: 'omit' });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const cur = parseProm(await r.text());
      const now = performance.now();
      if (prev) {
        const s = (now - prevAt) / 1000;
        reqs.push(rate(prev, cur, 'tessera_requests_total', s));
        bytesIn.push(rate(prev, cur, 'tessera_received_bytes_total', s));
        bytesOut.push(rate(prev, cur, 'tessera_sent_bytes_total', s));
        for (const a of [reqs, bytesIn, bytesOut]) while (a.length > POINTS) a.shift();
        draw(els.requests, [reqs], ['#2266cc'], '/s');
        draw(els.bytes, [bytesIn, bytesOut], ['#22aa55', '#cc6622'], 'B/s');
        els.requestsNow.textContent = human(reqs[reqs.length - 1], 'req/s');
        els.bytesNow.textContent = `in ${human(bytesIn[bytesIn.length - 1], 'B/s')}, out ${human(bytesOut[bytesOut.length - 1], 'B/s')}`;
      }
      els.status.textContent = `requests served: ${cur.get('tessera_requests_total') || 0}; open connections: ${cur.get('tessera_open_connections') || 0}`;
      prev = cur; prevAt = now;
    } catch (e) {
      els.status.textContent = `metrics unavailable: ${e.message}`;
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

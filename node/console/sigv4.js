// AWS Signature Version 4 in the page, with WebCrypto. The secret never
// leaves this module's callers' memory: only signatures go on the wire.

const enc = new TextEncoder();

/** Hex of bytes. */
function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** SHA-256 of a string or bytes, as hex. */
export async function sha256Hex(data) {
  const bytes = typeof data === 'string' ? enc.encode(data) : data;
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

async function hmac(key, msg) {
  const k = await crypto.subtle.importKey('raw', typeof key === 'string' ? enc.encode(key) : key,
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return crypto.subtle.sign('HMAC', k, enc.encode(msg));
}

/** S3's URI encoding: RFC 3986 unreserved characters stay, everything else
 *  is %XX of its UTF-8 bytes (upper-case hex); '/' stays when asked. */
export function uriEncode(s, keepSlash) {
  let out = '';
  for (const b of enc.encode(s)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** A canonical (and wire) query string from [name, value] pairs: encoded,
 *  sorted by name then value. */
export function canonicalQuery(pairs) {
  return pairs
    .map(([k, v]) => [uriEncode(k, false), uriEncode(v ?? '', false)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

/** 20240102T030405Z and 20240102 for a Date. */
function stamps(date) {
  const iso = date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  return { amzDate: iso, day: iso.slice(0, 8) };
}

async function signingKey(secret, day, region, service) {
  const kDate = await hmac('AWS4' + secret, day);
  const kRegion = await hmac(kDate, region);
  const kService = await hmac(kRegion, service);
  return hmac(kService, 'aws4_request');
}

async function signature(creds, canonical, amzDate, scope, day, service) {
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, await sha256Hex(canonical)].join('\n');
  const key = await signingKey(creds.secretKey, day, creds.region, service);
  return hex(await hmac(key, toSign));
}

/**
 * Signs a request in the Authorization header. `path` is the encoded S3
 * path (what the server sees after the console's prefix), `query` the
 * encoded query string from canonicalQuery, `headers` lower-case names to
 * values (host included; the browser sends the same Host). Returns the
 * headers to send (everything but host).
 */
export async function signHeaders(creds, { method, path, query, headers, payloadHash, service = 's3', date = new Date() }) {
  const { amzDate, day } = stamps(date);
  const all = { ...headers, 'x-amz-date': amzDate, 'x-amz-content-sha256': payloadHash };
  const names = Object.keys(all).map((n) => n.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(all).map(([k, v]) => [k.toLowerCase(), String(v).trim()]));
  const canonicalHeaders = names.map((n) => `${n}:${lower[n]}\n`).join('');
  const signed = names.join(';');
  const canonical = [method, path, query, canonicalHeaders, signed, payloadHash].join('\n');
  const scope = `${day}/${creds.region}/${service}/aws4_request`;
  const sig = await signature(creds, canonical, amzDate, scope, day, service);
  const out = { ...all };
  delete out.host;
  out.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKey}/${scope}, SignedHeaders=${signed}, Signature=${sig}`;
  return out;
}

/** A presigned URL's query string (signed for `host` only). `extra` are
 *  more [name, value] pairs covered by the signature. */
export async function presignQuery(creds, { method, path, host, expires, extra = [], date = new Date() }) {
  const { amzDate, day } = stamps(date);
  const scope = `${day}/${creds.region}/s3/aws4_request`;
  const pairs = [
    ...extra,
    ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
    ['X-Amz-Credential', `${creds.accessKey}/${scope}`],
    ['X-Amz-Date', amzDate],
    ['X-Amz-Expires', String(expires)],
    ['X-Amz-SignedHeaders', 'host'],
  ];
  const query = canonicalQuery(pairs);
  const canonical = [method, path, query, `host:${host}\n`, 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const sig = await signature(creds, canonical, amzDate, scope, day, 's3');
  return `${query}&X-Amz-Signature=${sig}`;
}

// S3 and IAM calls through the console's forwarding prefix: the page signs
// each request for the S3 path; the admin listener strips the prefix and
// answers exactly as the S3 port would.

import { signHeaders, presignQuery, canonicalQuery, uriEncode, sha256Hex } from './sigv4.js';

/** Where the admin listener forwards to the S3 dispatcher. */
export const PREFIX = '/console/s3';
/** Files above this are uploaded in parts of PART_BYTES. */
export const MULTIPART_THRESHOLD = 8 * 1024 * 1024;
export const PART_BYTES = 8 * 1024 * 1024;
/** Lifetime of a presigned download URL. */
export const PRESIGN_SECONDS = 15 * 60;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** An S3 or IAM error answer. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(code ? `${code}: ${message || ''} (HTTP ${status})` : `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

function parseXml(text) {
  return new DOMParser().parseFromString(text, 'application/xml');
}

/** Text of the first descendant element named `name` (namespace ignored). */
export function textOf(node, name) {
  const e = node.getElementsByTagNameNS('*', name)[0];
  return e ? e.textContent : '';
}

function children(node, name) {
  return Array.from(node.getElementsByTagNameNS('*', name));
}

function errorOf(status, text) {
  if (!text) return new ApiError(status, '', '');
  const doc = parseXml(text);
  return new ApiError(status, textOf(doc, 'Code'), textOf(doc, 'Message'));
}

/** `/bucket/key` with every segment encoded as S3 signs it. */
export function s3Path(bucket, key) {
  if (!bucket) return '/';
  return '/' + uriEncode(bucket, false) + (key === undefined ? '' : '/' + uriEncode(key, true));
}

export class Client {
  /** creds: { accessKey, secretKey, region }, held in memory only. */
  constructor(creds) {
    this.creds = creds;
    this.host = location.host;
  }

  async signed(method, path, pairs, headers, payloadHash, service) {
    const query = canonicalQuery(pairs || []);
    const signedHeaders = await signHeaders(this.creds, {
      method, path, query, payloadHash, service, headers: { host: this.host, ...headers },
    });
    const url = PREFIX + path + (query ? '?' + query : '');
    return { url, headers: signedHeaders };
  }

  /** One request with a small (string) body or none; returns the Response. */
  async call(method, path, { query = [], headers = {}, body = '', service = 's3' } = {}) {
    const hash = body ? await sha256Hex(body) : EMPTY_SHA256;
    const r = await this.signed(method, path, query, headers, hash, service);
    const resp = await fetch(r.url, { method, headers: r.headers, body: body || undefined, cache: 'no-store', credentials: 'omit' });
    if (!resp.ok) throw errorOf(resp.status, method === 'HEAD' ? '' : await resp.text());
    return resp;
  }

  async xml(method, path, opts) {
    return parseXml(await (await this.call(method, path, opts)).text());
  }

  /** PUT of a Blob with upload progress (XHR: fetch reports none). */
  async putBlob(path, query, blob, headers, onProgress) {
    const r = await this.signed('PUT', path, query, headers, 'UNSIGNED-PAYLOAD', 's3');
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', r.url);
      for (const [k, v] of Object.entries(r.headers)) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.getResponseHeader('ETag'));
        else reject(errorOf(xhr.status, xhr.responseText));
      };
      xhr.onerror = () => reject(new ApiError(0, 'NetworkError', 'the upload failed'));
      xhr.send(blob);
    });
  }

  async listBuckets() {
    const doc = await this.xml('GET', '/');
    return children(doc, 'Bucket').map((b) => ({ name: textOf(b, 'Name'), created: textOf(b, 'CreationDate') }));
  }

  createBucket(name) { return this.call('PUT', s3Path(name)); }
  deleteBucket(name) { return this.call('DELETE', s3Path(name)); }

  /** One page of ListObjectsV2 with delimiter '/'. */
  async listObjects(bucket, prefix, token, maxKeys) {
    const query = [['list-type', '2'], ['delimiter', '/'], ['prefix', prefix], ['max-keys', String(maxKeys)]];
    if (token) query.push(['continuation-token', token]);
    const doc = await this.xml('GET', s3Path(bucket), { query });
    return {
      prefixes: children(doc, 'CommonPrefixes').map((p) => textOf(p, 'Prefix')),
      objects: children(doc, 'Contents').map((c) => ({
        key: textOf(c, 'Key'), size: Number(textOf(c, 'Size')), modified: textOf(c, 'LastModified'), etag: textOf(c, 'ETag'),
      })),
      next: textOf(doc, 'IsTruncated') === 'true' ? textOf(doc, 'NextContinuationToken') : null,
    };
  }

  async head(bucket, key) {
    const r = await this.call('HEAD', s3Path(bucket, key));
    const meta = [];
    r.headers.forEach((v, k) => { if (k.startsWith('x-amz-meta-')) meta.push([k.slice(11), v]); });
    return {
      size: r.headers.get('content-length'),
      etag: r.headers.get('etag'),
      contentType: r.headers.get('content-type'),
      modified: r.headers.get('last-modified'),
      versionId: r.headers.get('x-amz-version-id'),
      meta,
    };
  }

  deleteObject(bucket, key) { return this.call('DELETE', s3Path(bucket, key)); }

  /** Uploads a File: one PUT up to MULTIPART_THRESHOLD, else multipart
   *  (aborted when a part fails). onProgress(bytesDone, total). */
  async upload(bucket, key, file, onProgress) {
    const path = s3Path(bucket, key);
    const type = { 'content-type': file.type || 'application/octet-stream' };
    if (file.size <= MULTIPART_THRESHOLD) {
      await this.putBlob(path, [], file, type, (n) => onProgress(n, file.size));
      onProgress(file.size, file.size);
      return;
    }
    const init = await this.xml('POST', path, { query: [['uploads', '']], headers: type });
    const uploadId = textOf(init, 'UploadId');
    try {
      const parts = [];
      for (let n = 1, off = 0; off < file.size; n++, off += PART_BYTES) {
        const blob = file.slice(off, Math.min(off + PART_BYTES, file.size));
        const etag = await this.putBlob(path, [['partNumber', String(n)], ['uploadId', uploadId]], blob, {},
          (done) => onProgress(off + done, file.size));
        parts.push(`<Part><PartNumber>${n}</PartNumber><ETag>${etag}</ETag></Part>`);
      }
      const body = `<CompleteMultipartUpload>${parts.join('')}</CompleteMultipartUpload>`;
      const done = await this.call('POST', path, { query: [['uploadId', uploadId]], body, headers: { 'content-type': 'application/xml' } });
      // A 200 can still carry an error document (S3 reports late failures so).
      const text = await done.text();
      if (text.includes('<Error>')) throw errorOf(500, text);
      onProgress(file.size, file.size);
    } catch (e) {
      await this.call('DELETE', path, { query: [['uploadId', uploadId]] }).catch(() => {});
      throw e;
    }
  }

  /** A presigned GET through the forwarding prefix (same origin as the
   *  console), answered as an attachment named after the key. */
  async presignGet(bucket, key) {
    const path = s3Path(bucket, key);
    const name = key.split('/').pop() || 'download';
    const disposition = `attachment; filename*=UTF-8''${uriEncode(name, false)}`;
    const query = await presignQuery(this.creds, {
      method: 'GET', path, host: this.host, expires: PRESIGN_SECONDS, extra: [['response-content-disposition', disposition]],
    });
    return `${location.origin}${PREFIX}${path}?${query}`;
  }

  /** An IAM query API call (POST / signed for service "iam"). */
  async iam(action, params = {}) {
    const form = new URLSearchParams({ Action: action, Version: '2010-05-08', ...params });
    const body = form.toString();
    return this.xml('POST', '/', {
      body, service: 'iam', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    });
  }

  async listUsers() {
    const doc = await this.iam('ListUsers');
    return children(doc, 'member').map((m) => ({ name: textOf(m, 'UserName'), id: textOf(m, 'UserId'), created: textOf(m, 'CreateDate') }));
  }

  async createUserWithKey(name) {
    await this.iam('CreateUser', { UserName: name });
    const doc = await this.iam('CreateAccessKey', { UserName: name });
    return { accessKey: textOf(doc, 'AccessKeyId'), secretKey: textOf(doc, 'SecretAccessKey') };
  }

  putUserPolicy(user, name, document) {
    return this.iam('PutUserPolicy', { UserName: user, PolicyName: name, PolicyDocument: document });
  }

  async listUserPolicies(user) {
    const doc = await this.iam('ListUserPolicies', { UserName: user });
    return children(doc, 'member').map((m) => m.textContent);
  }
}

// The console's views. Every bucket name, key, metadata value and user
// name is rendered as text (textContent / text nodes), never as HTML.

import { MULTIPART_THRESHOLD } from './s3.js';

export const $ = (id) => document.getElementById(id);

/** An element with attributes (set as properties or data-*), event
 *  handlers (on*) and children (strings become text nodes). */
export function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(typeof k === 'string' ? document.createTextNode(k) : k);
  return e;
}

export function size(n) {
  if (n === null || n === undefined || n === '') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Shows an error (or clears it with null). */
export function showError(e) {
  $('error').textContent = e ? (e.message || String(e)) : '';
}

export function status(text) {
  $('status').textContent = text;
}

/** Runs an action, reporting its failure instead of throwing. */
export async function guarded(fn) {
  showError(null);
  try { return await fn(); } catch (e) { showError(e); return undefined; }
}

// ---- buckets ----

export async function renderBuckets(app) {
  const buckets = await app.client.listBuckets();
  const rows = buckets.map((b) => el('tr', { 'data-bucket': b.name },
    el('td', {}, el('button', { type: 'button', className: 'folder', onclick: () => app.openBucket(b.name) }, b.name)),
    el('td', {}, b.created),
    el('td', {}, el('button', {
      type: 'button', className: 'delete-bucket',
      onclick: () => guarded(async () => {
        await app.client.deleteBucket(b.name);
        status(`deleted bucket ${b.name}`);
        await renderBuckets(app);
      }),
    }, 'Delete'))));
  $('bucket-list').replaceChildren(...rows);
}

// ---- objects ----

function breadcrumb(app) {
  const parts = [el('button', { type: 'button', onclick: () => app.show('buckets') }, 'Buckets'), el('span', { className: 'sep' }, '/'),
    el('button', { type: 'button', onclick: () => app.openPrefix('') }, app.bucket)];
  let acc = '';
  for (const seg of app.prefix.split('/').filter((s, i, a) => i < a.length - 1)) {
    acc += seg + '/';
    const target = acc;
    parts.push(el('span', { className: 'sep' }, '/'), el('button', { type: 'button', onclick: () => app.openPrefix(target) }, seg));
  }
  $('breadcrumb').replaceChildren(...parts);
}

export async function renderObjects(app) {
  breadcrumb(app);
  const token = app.tokens[app.page];
  const page = await app.client.listObjects(app.bucket, app.prefix, token, Number($('page-size').value));
  const rows = [];
  for (const p of page.prefixes) {
    rows.push(el('tr', { 'data-prefix': p },
      el('td', {}, el('button', { type: 'button', className: 'folder', onclick: () => app.openPrefix(p) }, p.slice(app.prefix.length))),
      el('td', {}, ''), el('td', {}, ''), el('td', {}, '')));
  }
  for (const o of page.objects) {
    rows.push(el('tr', { 'data-key': o.key },
      el('td', {}, o.key.slice(app.prefix.length)),
      el('td', {}, size(o.size)),
      el('td', {}, o.modified),
      el('td', {},
        el('button', { type: 'button', className: 'info', onclick: () => guarded(() => showInfo(app, o.key)) }, 'Info'),
        el('button', {
          type: 'button', className: 'delete-object',
          onclick: () => guarded(async () => {
            await app.client.deleteObject(app.bucket, o.key);
            status(`deleted ${o.key}`);
            $('object-info').hidden = true;
            await renderObjects(app);
          }),
        }, 'Delete'))));
  }
  $('object-list').replaceChildren(...rows);
  app.tokens.length = app.page + 1;
  if (page.next) app.tokens.push(page.next);
  $('page-prev').disabled = app.page === 0;
  $('page-next').disabled = !page.next;
  $('page-info').textContent = `page ${app.page + 1}`;
}

async function showInfo(app, key) {
  const h = await app.client.head(app.bucket, key);
  const items = [['Key', key], ['Size', `${size(h.size)} (${h.size} bytes)`], ['ETag', h.etag], ['Content type', h.contentType],
    ['Last modified', h.modified], ['Version ID', h.versionId || '(none)']];
  for (const [k, v] of h.meta) items.push([`x-amz-meta-${k}`, v]);
  $('info-key').textContent = key;
  $('info-list').replaceChildren(...items.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '')]));
  $('info-download').href = await app.client.presignGet(app.bucket, key);
  $('object-info').hidden = false;
  $('object-info').dataset.key = key;
}

export async function upload(app) {
  const file = $('upload-file').files[0];
  if (!file) return;
  const key = app.prefix + file.name;
  const bar = $('upload-progress');
  bar.value = 0;
  const how = file.size > MULTIPART_THRESHOLD ? 'multipart' : 'single PUT';
  $('upload-status').textContent = `uploading ${file.name} (${size(file.size)}, ${how})`;
  try {
    await app.client.upload(app.bucket, key, file, (done, total) => { bar.value = total ? done / total : 1; });
    $('upload-status').textContent = `uploaded ${key}`;
  } catch (e) {
    $('upload-status').textContent = `upload of ${key} failed`;
    throw e;
  }
  $('upload-file').value = '';
  await renderObjects(app);
}

// ---- users ----

export async function renderUsers(app) {
  const users = await app.client.listUsers();
  const rows = [];
  for (const u of users) {
    const policies = await app.client.listUserPolicies(u.name).catch(() => []);
    rows.push(el('tr', { 'data-user': u.name }, el('td', {}, u.name), el('td', {}, u.created), el('td', {}, policies.join(', '))));
  }
  $('user-list').replaceChildren(...rows);
}

export async function createUser(app) {
  const name = $('user-name').value.trim();
  const key = await app.client.createUserWithKey(name);
  $('new-key-user').textContent = name;
  $('new-key-access').textContent = key.accessKey;
  $('new-key-secret').textContent = key.secretKey;
  $('new-key').hidden = false;
  $('policy-user').value = name;
  $('user-name').value = '';
  await renderUsers(app);
}

export async function putPolicy(app) {
  const user = $('policy-user').value.trim();
  const name = $('policy-name').value.trim();
  await app.client.putUserPolicy(user, name, $('policy-doc').value);
  status(`policy ${name} attached to ${user}`);
  await renderUsers(app);
}

// The console's entry point: sign-in, navigation, wiring of the forms.
//
// Credentials live in `app.client` (memory of this page) only: not in
// localStorage or sessionStorage, whose contents any script of this origin
// can read and which a tab opened from this one inherits. A reload signs out.

import { Client } from './s3.js';
import { startCharts } from './metrics.js';
import { $, guarded, showError, status, renderBuckets, renderObjects, upload, renderUsers, createUser, putPolicy } from './views.js';

const VIEWS = ['signin', 'buckets', 'objects', 'users', 'metrics'];
const EXAMPLE_POLICY = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: ['s3:GetObject', 's3:ListBucket'], Resource: ['arn:aws:s3:::example', 'arn:aws:s3:::example/*'] }],
}, null, 2);

const app = {
  client: null,
  bucket: '',
  prefix: '',
  /** Continuation tokens of the pages seen: tokens[i] starts page i. */
  tokens: [null],
  page: 0,
  stopCharts: null,

  show(view) {
    for (const v of VIEWS) $(`${v}-view`).hidden = v !== view;
    const tab = view === 'objects' ? 'buckets' : view;
    for (const b of document.querySelectorAll('#nav button')) b.classList.toggle('active', b.dataset.view === tab);
    status('');
    if (this.stopCharts && view !== 'metrics') { this.stopCharts(); this.stopCharts = null; }
    if (view === 'buckets') guarded(() => renderBuckets(this));
    if (view === 'users') guarded(() => renderUsers(this));
    if (view === 'metrics' && !this.stopCharts) {
      this.stopCharts = startCharts({
        requests: $('chart-requests'), bytes: $('chart-bytes'), requestsNow: $('requests-now'), bytesNow: $('bytes-now'), status: $('metrics-status'),
      });
    }
  },

  openBucket(name) {
    this.bucket = name;
    this.openPrefix('');
  },

  openPrefix(prefix) {
    this.prefix = prefix;
    this.tokens = [null];
    this.page = 0;
    $('object-info').hidden = true;
    this.show('objects');
    guarded(() => renderObjects(this));
  },
};

async function signIn(ev) {
  ev.preventDefault();
  $('signin-error').textContent = '';
  const creds = { accessKey: $('signin-access').value.trim(), secretKey: $('signin-secret').value, region: $('signin-region').value.trim() };
  const client = new Client(creds);
  try {
    // A signed ListBuckets proves the pair before anything is shown.
    await client.listBuckets();
  } catch (e) {
    $('signin-error').textContent = `Sign-in failed: ${e.message}`;
    return;
  }
  $('signin-secret').value = '';
  app.client = client;
  $('who').textContent = `signed in as ${creds.accessKey}`;
  $('nav').hidden = false;
  $('signout').hidden = false;
  app.show('buckets');
}

function signOut() {
  app.client = null;
  $('who').textContent = '';
  $('nav').hidden = true;
  $('signout').hidden = true;
  showError(null);
  status('');
  app.show('signin');
}

async function init() {
  $('policy-doc').value = EXAMPLE_POLICY;
  // The node's region, for the signature's scope (public: any S3 error says it too).
  try {
    const cfg = await (await fetch('config.json', { cache: 'no-store' })).json();
    $('signin-region').value = cfg.region || 'us-east-1';
  } catch {
    $('signin-region').value = 'us-east-1';
  }
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  for (const b of document.querySelectorAll('#nav button')) b.addEventListener('click', () => app.show(b.dataset.view));
  $('bucket-create-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    guarded(async () => {
      const name = $('bucket-name').value.trim();
      await app.client.createBucket(name);
      $('bucket-name').value = '';
      status(`created bucket ${name}`);
      await renderBuckets(app);
    });
  });
  $('upload-form').addEventListener('submit', (ev) => { ev.preventDefault(); guarded(() => upload(app)); });
  $('page-next').addEventListener('click', () => { app.page++; guarded(() => renderObjects(app)); });
  $('page-prev').addEventListener('click', () => { app.page = Math.max(0, app.page - 1); guarded(() => renderObjects(app)); });
  $('page-size').addEventListener('change', () => app.openPrefix(app.prefix));
  $('info-close').addEventListener('click', () => { $('object-info').hidden = true; });
  $('user-create-form').addEventListener('submit', (ev) => { ev.preventDefault(); guarded(() => createUser(app)); });
  $('policy-form').addEventListener('submit', (ev) => { ev.preventDefault(); guarded(() => putPolicy(app)); });
  document.body.dataset.ready = '1';
}

init();

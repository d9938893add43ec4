// The operators' dashboard (/admin): reads the documented admin routes with a pasted admin key
// (kept in memory only), draws the queue's history as SVG (plot.js), and retries or cancels
// dead letters. Refreshes every 10 seconds.

import { formatValue, plot } from './plot.js';

const REFRESH_MS = 10_000;
const state = { key: null, window: 'hour', timer: null };
const $ = (id) => document.getElementById(id);

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path) {
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${state.key}` }, cache: 'no-store' });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiFailure(response.status, body?.error?.code ?? 'unknown', body?.error?.message ?? response.statusText);
  }
  return body;
}

function node(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return e;
}

function table(headers, rows, empty) {
  if (rows.length === 0) return node('p', { class: 'help' }, empty);
  const head = node('tr', {}, ...headers.map((h) => node('th', { scope: 'col' }, h)));
  return node('div', { class: 'table-wrap' }, node('table', {}, node('thead', {}, head), node('tbody', {}, ...rows)));
}

const num = (v) => node('td', { class: 'num' }, v);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–');

function duration(seconds) {
  if (seconds === null || seconds === undefined) return 'nothing waits';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function drawSeries(series) {
  const points = (field) => series.buckets.map((b) => [Date.parse(b.t), b[field]]);
  plot($('plot-depth'), [{ name: 'waiting', points: points('queue_depth') }]);
  plot($('plot-rate'), [
    { name: 'started', points: points('started_per_min') },
    { name: 'succeeded', points: points('succeeded_per_min') },
    { name: 'failed', points: points('failed_per_min') },
  ]);
  plot($('plot-wait'), [{ name: 'p50', points: points('wait_p50_s') }, { name: 'p95', points: points('wait_p95_s') }],
    { unit: 's' });
  plot($('plot-speed'), [{ name: 'media s / CPU s', points: points('media_s_per_cpu_s') }], { unit: 'x' });
}

function drawFailures(failures) {
  const rows = failures.groups.map((g) => node('tr', { 'data-code': g.code },
    node('td', {}, node('code', {}, g.code)),
    num(g.count),
    node('td', {}, node('ul', { class: 'examples' }, ...g.latest.map((e) =>
      node('li', {}, `${e.filename} (${e.owner}, ${when(e.finished_at)}): ${e.message ?? ''}`)))),
  ));
  const label = failures.window === 'day' ? 'in the last day' : 'in the last hour';
  $('failures').replaceChildren(table(['code', 'jobs', 'latest'], rows, `No job failed ${label}.`));
}

async function act(button, method, path, done) {
  button.disabled = true;
  try {
    await api(method, path);
    $('dead-status').textContent = done;
  } catch (e) {
    $('dead-status').textContent = `${e.code ?? 'error'}: ${e.message}`;
  }
  await refresh();
}

function drawDead(dead) {
  const rows = dead.dead_letters.map((d) => {
    const retry = node('button', { type: 'button', class: 'retry', disabled: !d.input_stored,
      title: d.input_stored ? 'Send it through again' : 'Its input is gone' }, 'Retry');
    retry.addEventListener('click', () => act(retry, 'POST', `/v1/jobs/${d.id}/retry`, `${d.filename} is queued again.`));
    const cancel = node('button', { type: 'button', class: 'cancel', disabled: !d.input_stored }, 'Cancel');
    cancel.addEventListener('click', () => act(cancel, 'DELETE', `/v1/jobs/${d.id}`, `${d.filename}: its files are deleted.`));
    return node('tr', { 'data-job': d.id },
      node('td', {}, d.filename, node('br'), node('code', {}, d.id)),
      node('td', {}, d.owner),
      node('td', {}, node('code', {}, d.error_code ?? '–'), ' ', d.error_message ?? ''),
      num(d.attempts),
      node('td', {}, when(d.finished_at)),
      node('td', {}, retry, cancel));
  });
  $('dead').replaceChildren(table(['job', 'owner', 'error', 'attempts', 'failed at', ''], rows, 'No dead letters.'));
}

function layers(w) {
  const missing = new Set(w.sandbox_missing);
  const list = node('span');
  for (const [k, v] of Object.entries(w.sandbox)) {
    if (v === null) continue; // not applicable (e.g. an unprivileged uid when the worker is not root)
    const on = v === true || (typeof v === 'number' && v > 0) || (typeof v === 'string' && v !== 'none');
    const ok = on && !missing.has(k);
    const detail = typeof v === 'boolean' ? '' : ` ${v}`;
    list.append(node('span', { class: ok ? 'layer-ok' : 'layer-missing' }, `${ok ? '✓' : '✗'} ${k}${detail}`), ' ');
  }
  return list;
}

function drawWorkers(workers) {
  const rows = workers.workers.map((w) => node('tr', { 'data-worker': w.name },
    node('td', {}, w.name),
    node('td', {}, w.host),
    node('td', {}, w.version),
    node('td', {}, layers(w)),
    node('td', {}, ...(w.attempts.length === 0 ? ['idle'] : w.attempts.map((a) => node('div', {},
      node('code', {}, a.job_id.slice(0, 8)), ` #${a.attempt} `,
      node('progress', { max: 1, value: a.progress }), ` ${Math.round(a.progress * 100)} %`)))),
    node('td', {}, when(w.last_seen)),
  ));
  $('workers').replaceChildren(table(['name', 'host', 'version', 'sandbox layers', 'running', 'last beat'], rows,
    'No worker is alive.'));
}

function drawTenants(t) {
  const rows = t.tenants.map((k) => node('tr', {},
    node('td', {}, k.name, ' ', node('code', {}, k.key_id)),
    node('td', {}, k.owner),
    num(`${k.active_jobs} / ${t.quota_active_jobs}`),
    num(`${bytes(k.bytes_24h)} / ${bytes(t.quota_daily_bytes)}`),
    num(k.live_uploads)));
  $('tenants').replaceChildren(table(['key', 'owner', 'unfinished jobs', 'bytes, 24 h', 'live uploads'], rows, 'No keys.'));
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    const w = state.window;
    const [stats, series, failures, dead, workers, tenants] = await Promise.all([
      api('GET', '/v1/admin/stats'),
      api('GET', `/v1/admin/series?window=${w}`),
      api('GET', `/v1/admin/failures?window=${w}`),
      api('GET', '/v1/admin/dead-letters'),
      api('GET', '/v1/admin/workers'),
      api('GET', '/v1/admin/tenants'),
    ]);
    $('fig-queued').textContent = stats.queue_depth;
    $('fig-oldest').textContent = duration(stats.oldest_due_age_s);
    $('fig-dead').textContent = stats.dead_letters;
    $('fig-dead').classList.toggle('bad', stats.dead_letters > 0);
    $('fig-workers').textContent = workers.workers.length;
    $('fig-workers').classList.toggle('bad', workers.workers.length === 0);
    drawSeries(series);
    drawFailures(failures);
    drawDead(dead);
    drawWorkers(workers);
    drawTenants(tenants);
    $('dashboard').hidden = false;
    $('access-status').textContent = '';
    $('updated').textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded ?? 0) + 1);
    state.timer = setTimeout(refresh, REFRESH_MS);
  } catch (e) {
    $('dashboard').hidden = true;
    const why = e.code === 'insufficient_scope' ? 'This key is not an admin key (it lacks the admin scope).'
      : e.code === 'unauthorized' ? 'This key is not valid (mistyped, revoked or unknown).'
        : `The dashboard could not be loaded: ${e.message}`;
    $('access-status').textContent = why;
    $('access-status').dataset.code = e.code ?? 'network';
  }
}

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  state.key = $('admin-key').value.trim();
  $('admin-key').value = '';
  if (state.key) refresh();
});

for (const button of document.querySelectorAll('button.window')) {
  button.addEventListener('click', () => {
    state.window = button.dataset.window;
    for (const b of document.querySelectorAll('button.window')) b.setAttribute('aria-pressed', String(b === button));
    if (state.key) refresh();
  });
}

export { formatValue };

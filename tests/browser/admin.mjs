// Drives the operators' dashboard (/admin) in Debian's Chromium (playwright-core) against a
// running mediaq API and worker that tests/tests/admin_page.rs seeded with jobs:
//
//   node tests/browser/admin.mjs
//
// A non-admin key is refused; the admin key shows the four plots drawn from the seeded jobs,
// failures by code, the dead letter, the live worker with its sandbox layers, and the keys; the
// dead letter's Retry sends MEDIAQ_RETRY_JOB back to the queue. Environment: MEDIAQ_PAGE_URL
// (…/admin), MEDIAQ_ADMIN_KEY, MEDIAQ_USER_KEY, MEDIAQ_RETRY_JOB, MEDIAQ_OUT (screenshots,
// observations.json), MEDIAQ_CHROMIUM. Exit status 0: every check passed.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const pageUrl = env('MEDIAQ_PAGE_URL');
const out = env('MEDIAQ_OUT');
const retryJob = env('MEDIAQ_RETRY_JOB');
mkdirSync(out, { recursive: true });

const observations = { console: [], requests: [], checks: [], plots: {} };
function check(ok, what) {
  observations.checks.push({ ok: Boolean(ok), what });
  if (!ok) throw new Error(`check failed: ${what}`);
}

function instrument() {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
  });
}

async function useKey(page, key) {
  await page.fill('#admin-key', key);
  await page.click('#key-form button[type="submit"]');
}

const browser = await chromium.launch({
  executablePath: env('MEDIAQ_CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let status = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript(instrument);
  const page = await context.newPage();
  page.on('console', (m) => observations.console.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => observations.console.push({ type: 'error', text: `uncaught: ${e.message}` }));
  page.on('request', (r) => observations.requests.push(`${r.method()} ${r.url()}`));
  await page.goto(pageUrl, { waitUntil: 'load' });

  // A key without the admin scope is refused, and the dashboard stays hidden.
  await useKey(page, env('MEDIAQ_USER_KEY'));
  await page.waitForFunction(() => document.getElementById('access-status').dataset.code === 'insufficient_scope');
  check(await page.isHidden('#dashboard'), 'a non-admin key sees no dashboard');
  const refusal = await page.textContent('#access-status');
  check(/not an admin key/.test(refusal), `the refusal says why: ${refusal}`);
  await page.screenshot({ path: join(out, '01-refused.png'), fullPage: true });

  // The admin key: every panel, drawn from the seeded jobs.
  await useKey(page, env('MEDIAQ_ADMIN_KEY'));
  await page.waitForFunction(() => Number(document.body.dataset.loaded ?? 0) >= 1, null, { timeout: 20_000 });
  check(await page.isVisible('#dashboard'), 'the admin key shows the dashboard');
  for (const id of ['plot-depth', 'plot-rate', 'plot-wait', 'plot-speed']) {
    const plot = await page.evaluate((i) => {
      const svg = document.getElementById(i);
      return {
        points: Number(svg.dataset.points),
        lines: svg.querySelectorAll('polyline, circle').length,
        keys: [...svg.querySelectorAll('text.key')].map((t) => t.textContent),
        width: svg.getBoundingClientRect().width,
      };
    }, id);
    observations.plots[id] = plot;
    check(plot.points > 0 && plot.lines > 0 && plot.width > 100, `${id} is drawn: ${JSON.stringify(plot)}`);
  }
  const speedKey = observations.plots['plot-speed'].keys[0];
  check(/\d/.test(speedKey), `the speed plot shows a value: ${speedKey}`);
  const started = await page.evaluate(() => document.querySelector('#plot-rate text.key')?.textContent);
  check(/started/.test(started), `the rate plot names its series: ${started}`);
  const codes = await page.$$eval('#failures tr[data-code]', (rows) => rows.map((r) => r.dataset.code));
  check(codes.includes('transcoder_crashed'), `failures by code: ${codes}`);
  const workers = await page.$$eval('#workers tr[data-worker]', (rows) => rows.length);
  check(workers === 1, `one live worker (${workers})`);
  const layers = await page.$$eval('#workers .layer-ok', (l) => l.map((e) => e.textContent));
  check(layers.some((l) => /seccomp/.test(l)) && layers.some((l) => /landlock/.test(l)), `sandbox layers: ${layers}`);
  const tenants = await page.textContent('#tenants');
  check(/tester/.test(tenants), 'the keys table lists the uploading key');
  check(await page.isVisible(`#dead tr[data-job="${retryJob}"]`), 'the job to retry is in the dead letter');
  observations.figures = await page.$$eval('.figures dd', (d) => d.map((e) => e.textContent));
  await page.screenshot({ path: join(out, '02-dashboard.png'), fullPage: true });
  await page.click('button.window[data-window="day"]');
  await page.waitForFunction(() => Number(document.body.dataset.loaded) >= 2);
  check(await page.getAttribute('button.window[data-window="day"]', 'aria-pressed') === 'true', 'the day window is chosen');

  // Retry from the dead letter: the job leaves it.
  await page.click(`#dead tr[data-job="${retryJob}"] button.retry`);
  await page.waitForFunction(() => /queued again/.test(document.getElementById('dead-status').textContent));
  await page.waitForFunction((id) => !document.querySelector(`#dead tr[data-job="${id}"]`), retryJob);
  check(true, 'the retried job left the dead letter');
  await page.screenshot({ path: join(out, '03-retried.png'), fullPage: true });

  const origin = new URL(pageUrl).origin;
  const foreign = observations.requests.filter((r) => !r.split(' ')[1].startsWith(origin) && !/ data:/.test(r));
  check(foreign.length === 0, `no external requests (${foreign.join(', ')})`);
  // The only console errors are the refused key's 403s.
  const errors = observations.console.filter((m) => m.type === 'error' && !/status of 403/.test(m.text));
  check(errors.length === 0, `no console errors (${errors.map((e) => e.text).join(' | ')})`);
  const csp = await page.evaluate(() => window.__csp);
  check(csp.length === 0, `no CSP violations (${csp.join(', ')})`);
} catch (err) {
  status = 1;
  observations.error = String(err?.stack ?? err);
  console.error(`admin scenario failed: ${err?.message ?? err}`);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages[0]) await pages[0].screenshot({ path: join(out, 'failure.png'), fullPage: true });
  } catch {
    // best effort
  }
} finally {
  writeFileSync(join(out, 'observations.json'), JSON.stringify(observations, null, 2));
  await browser.close();
}
console.log(JSON.stringify({ scenario: 'admin', checks: observations.checks.length, status }));
process.exit(status);

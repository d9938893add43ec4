// Drives the upload page in Debian's Chromium (playwright-core, no browser download) against a
// running mediaq API and worker. Run by tests/tests/browser.rs:
//
//   node tests/browser/page.mjs <scenario>
//
// scenarios: upload (a WebM through the file input), record (3 s from the fake camera), png (a
// PNG refused while a WebM converts), cancel (polling with 304s and backoff, then Cancel). Environment: MEDIAQ_PAGE_URL (the page, with `#token=...` for a link),
// MEDIAQ_API_KEY (pasted into the page when set), MEDIAQ_FIXTURE (the file to choose),
// MEDIAQ_EXPECT_DURATION (seconds), MEDIAQ_OUT (screenshots, downloads, observations.json),
// MEDIAQ_CHROMIUM (default /usr/bin/chromium). Exit status 0: every check passed.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const scenario = process.argv[2];
const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const pageUrl = env('MEDIAQ_PAGE_URL');
const out = env('MEDIAQ_OUT');
const executablePath = env('MEDIAQ_CHROMIUM', '/usr/bin/chromium');
mkdirSync(out, { recursive: true });

const observations = { scenario, console: [], cspViolations: [], requests: [], playRequests: [], checks: [] };
let shot = 0;

function check(ok, what) {
  observations.checks.push({ ok: Boolean(ok), what });
  if (!ok) throw new Error(`check failed: ${what}`);
}

// Records progress values and CSP violations from the first moment of every document.
function instrument() {
  window.__mediaq = { upload: [], job: [], csp: [] };
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__mediaq.csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
  });
  new MutationObserver((records) => {
    for (const r of records) {
      const t = r.target;
      if (t.classList?.contains('upload-progress')) window.__mediaq.upload.push(Number(t.value));
      if (t.classList?.contains('job-progress')) window.__mediaq.job.push(Number(t.value));
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['value'] });
}

async function screenshot(page, name) {
  shot += 1;
  await page.screenshot({ path: join(out, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
}

async function pasteKey(page) {
  const key = process.env.MEDIAQ_API_KEY;
  if (!key) return;
  await page.fill('#api-key', key);
  await page.click('#key-form button[type="submit"]');
  await page.waitForFunction(() => document.getElementById('access-status').textContent.includes('Using the API key'));
  check(await page.inputValue('#api-key') === '', 'the key field is emptied once the key is taken');
}

/** Waits for row `index` to settle, then checks its player and saves its download. */
async function expectPlayableMp4(page, saveAs, index = 0, expected = Number(env('MEDIAQ_EXPECT_DURATION'))) {
  const row = page.locator('#queue .row').nth(index);
  await page.waitForFunction(
    (i) => ['succeeded', 'failed', 'canceled'].includes(document.querySelectorAll('#queue .row')[i]?.dataset.state),
    index,
    { timeout: 90_000 },
  );
  const status = await row.locator('.row-status').textContent();
  check(await row.getAttribute('data-state') === 'succeeded', `the row succeeded (status: ${status})`);
  await page.waitForFunction((i) => document.querySelectorAll('#queue .row .player')[i].readyState >= 2, index, {
    timeout: 20_000,
  });
  const player = await row.locator('.player').evaluate((v) => ({
    readyState: v.readyState,
    duration: v.duration,
    width: v.videoWidth,
    height: v.videoHeight,
    src: v.currentSrc,
  }));
  observations.player = player;
  // The player streams the job's signed playback link (never a blob of a download made with the
  // credential): /v1/play/{job}.{expires}.{key id}.{signature}/output.mp4 on this origin, fetched
  // by the media element itself with Range requests.
  const origin = new URL(pageUrl).origin;
  const signed = /^\/v1\/play\/[0-9a-f-]{36}\.[1-9][0-9]*\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}\/output\.mp4$/;
  check(player.src.startsWith(origin) && signed.test(player.src.slice(origin.length)),
    `the player's src is the signed link (${player.src})`);
  check(!/mqt?_/.test(player.src), 'no credential in the link');
  check(!observations.requests.some((r) => /\/v1\/jobs\/[^/]+\/output/.test(r)), 'the MP4 is never downloaded with the credential');
  const ranged = observations.playRequests.filter((r) => r.url === player.src && r.range);
  check(ranged.length > 0, `the player asked for ranges of the link (${JSON.stringify(observations.playRequests)})`);
  // It plays: time advances (muted, so no user gesture is needed).
  await row.locator('.player').evaluate((v) => { v.muted = true; return v.play(); });
  await page.waitForFunction((i) => document.querySelectorAll('#queue .row .player')[i].currentTime > 0.5, index, {
    timeout: 20_000,
  });
  observations.played = await row.locator('.player').evaluate((v) => v.currentTime);
  const tolerance = Number(process.env.MEDIAQ_DURATION_TOLERANCE ?? '0.3');
  check(Math.abs(player.duration - expected) <= tolerance, `duration ${player.duration} is ${expected} ± ${tolerance}`);
  await screenshot(page, 'converted');
  const [download] = await Promise.all([page.waitForEvent('download'), row.locator('.download').click()]);
  observations.download = download.suggestedFilename();
  check(observations.download.endsWith('.mp4'), `the download is named ${observations.download}`);
  await download.saveAs(join(out, saveAs));
  const progress = await page.evaluate(() => window.__mediaq);
  observations.uploadProgress = progress.upload;
  observations.jobProgress = progress.job;
  return progress;
}

async function uploadScenario(page) {
  check(await page.evaluate(() => location.hash) === '', 'the token left the address bar');
  check(!page.url().includes('mqt_'), 'the token is in no URL');
  await pasteKey(page);
  // Slow uploads down so that the upload bar is seen moving (loopback is instant otherwise).
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: Number(process.env.MEDIAQ_UPLOAD_BYTES_PER_SECOND ?? 64 * 1024),
  });
  await page.setInputFiles('#file-input', env('MEDIAQ_FIXTURE'));
  await page.waitForFunction(() => {
    const v = document.querySelector('#queue .upload-progress')?.value ?? 0;
    return v > 0 && v < 100;
  });
  await screenshot(page, 'uploading');
  await page.waitForFunction(() => document.querySelector('#queue .row')?.dataset.state !== 'uploading');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: -1,
  });
  await screenshot(page, 'converting');
  const progress = await expectPlayableMp4(page, 'upload.mp4');
  const ups = progress.upload.filter((v) => v > 0 && v < 100);
  check(ups.length >= 1 && progress.upload.at(-1) === 100, `the upload bar moved (${progress.upload.join(', ')})`);
  check(progress.job.includes(0) && progress.job.at(-1) === 100, `the conversion bar moved (${progress.job.join(', ')})`);
  const detail = await page.locator('#queue .upload-detail').textContent();
  check(/Uploaded/.test(detail), `upload detail: ${detail}`);
}

async function recordScenario(page) {
  await pasteKey(page);
  await page.click('#record-start');
  await page.waitForFunction(() => !document.getElementById('record-stop').disabled);
  const started = Date.now();
  await page.waitForFunction(() => document.getElementById('camera-preview').readyState >= 2);
  await page.waitForFunction(() => document.getElementById('record-time').textContent === '0:02');
  await screenshot(page, 'recording');
  // Sent while it is recorded (tus): the row follows the job, converting, before Stop.
  await page.waitForFunction(
    () => /converted as it arrives|while you record/.test(document.querySelector('#queue .row-status')?.textContent ?? ''),
    null,
    { timeout: 20_000 },
  );
  observations.statusWhileRecording = await page.textContent('#queue .row-status');
  await page.waitForTimeout(Math.max(0, 5000 - (Date.now() - started)));
  await page.click('#record-stop');
  // On a loaded machine the click can land late: the MP4 must match what was really recorded.
  const recorded = (Date.now() - started) / 1000;
  observations.recordedSeconds = recorded;
  const shown = await page.textContent('#record-time');
  const [m, sec] = shown.split(':').map(Number);
  check(Math.abs(m * 60 + sec - recorded) <= 1.5, `the recording's length is shown (${shown} for ${recorded} s)`);
  await page.waitForSelector('#queue .row');
  await screenshot(page, 'recorded');
  await expectPlayableMp4(page, 'record.mp4', 0, recorded);
  const creates = observations.requests.filter((r) => r.startsWith('POST ') && r.endsWith('/v1/uploads'));
  const patches = observations.requests.filter((r) => r.startsWith('PATCH ') && r.includes('/v1/uploads/'));
  check(creates.length === 1, `one tus upload created (${creates.length})`);
  check(patches.length >= 3, `the recording went out in chunks while it was made (${patches.length} PATCHes)`);
  check(!observations.requests.some((r) => r.startsWith('POST ') && /\/v1\/jobs($|\?)/.test(r)), 'no classic upload');
}

/**
 * A picked file whose connection drops mid-upload (the first PATCH is cut off): the row says it
 * resumes, asks the server where the upload stands, and finishes; the MP4 plays.
 */
async function resumeScenario(page) {
  await pasteKey(page);
  let cut = 0;
  await page.route('**/v1/uploads/*', async (route) => {
    if (route.request().method() === 'PATCH' && cut === 0) {
      cut += 1;
      await route.abort('connectionreset');
    } else {
      await route.continue();
    }
  });
  await page.setInputFiles('#file-input', env('MEDIAQ_FIXTURE'));
  await page.waitForFunction(() => document.querySelector('#queue .row')?.dataset.resumed === 'true', null, {
    timeout: 20_000,
  });
  await screenshot(page, 'resuming');
  await expectPlayableMp4(page, 'resumed.mp4');
  check(cut === 1, `one PATCH was cut (${cut})`);
  const heads = observations.requests.filter((r) => r.startsWith('HEAD ') && r.includes('/v1/uploads/'));
  check(heads.length >= 1, `the page asked where the upload stood (${heads.length} HEAD)`);
  const detail = await page.locator('#queue .upload-detail').textContent();
  check(/Uploaded/.test(detail), `upload detail: ${detail}`);
}

/** A PNG and a WebM chosen together: two rows; the PNG is refused with a sentence, the WebM converts. */
async function pngScenario(page) {
  await pasteKey(page);
  await page.setInputFiles('#file-input', [env('MEDIAQ_FIXTURE'), env('MEDIAQ_SECOND_FIXTURE')]);
  check(await page.locator('#queue .row').count() === 2, 'two files, two rows');
  await page.waitForFunction(() => document.querySelector('#queue .row')?.dataset.state === 'failed', null, {
    timeout: 20_000,
  });
  const status = await page.locator('#queue .row-status').first().textContent();
  observations.status = status;
  check(/is not a WebM or MP4 video/.test(status), `the "not a WebM" sentence is shown: ${status}`);
  check(await page.locator('#queue .retry').first().isHidden(), 'no retry for a file that can never be converted');
  check(await page.locator('#queue .row-status').first().getAttribute('aria-live') === 'polite', 'row status is announced');
  await expectPlayableMp4(page, 'second.mp4', 1);
  await screenshot(page, 'not-webm-and-converted-phone');
}

/** With no worker, the job stays queued: polling revalidates (304) and backs off; Cancel cancels it. */
async function cancelScenario(page) {
  await pasteKey(page);
  await page.setInputFiles('#file-input', env('MEDIAQ_FIXTURE'));
  await page.waitForFunction(() => document.querySelector('#queue .row')?.dataset.state === 'converting');
  const polls = () => observations.responses.filter((r) => /\/v1\/jobs\/[^/]+$/.test(r.url) && r.method === 'GET');
  const deadline = Date.now() + 15_000;
  while (polls().filter((r) => r.status === 304).length < 3 && Date.now() < deadline) await page.waitForTimeout(200);
  const seen = polls();
  observations.polls = seen.map((r) => `${r.status} +${r.at - seen[0].at}ms`);
  check(seen.filter((r) => r.status === 304).length >= 3, `polling revalidates with 304 (${observations.polls})`);
  const gaps = seen.slice(1).map((r, i) => r.at - seen[i].at);
  check(gaps.every((g) => g >= 900), `polls honour Retry-After: 1 (gaps ${gaps.join(', ')} ms)`);
  check(gaps.at(-1) > gaps[0] + 200, `polling backs off (gaps ${gaps.join(', ')} ms)`);
  await screenshot(page, 'waiting');
  await page.locator('#queue .cancel').click();
  await page.waitForFunction(() => document.querySelector('#queue .row')?.dataset.state === 'canceled');
  const status = await page.locator('#queue .row-status').textContent();
  check(/canceled/.test(status), `the row says it was canceled: ${status}`);
  check(await page.locator('#queue .retry').isVisible(), 'a canceled video can be tried again');
  await screenshot(page, 'canceled');
}

/** Tab order reaches the main controls, and the focused one is visibly outlined. */
async function keyboardCheck(page) {
  const reached = [];
  for (let i = 0; i < 8; i += 1) {
    await page.keyboard.press('Tab');
    reached.push(await page.evaluate(() => {
      const el = document.activeElement;
      const outline = getComputedStyle(el).outlineStyle;
      return `${el.id || el.className}:${outline}`;
    }));
  }
  observations.tabOrder = reached;
  await page.evaluate(() => document.activeElement?.blur());
  for (const id of ['api-key', 'drop-zone', 'record-start']) {
    check(reached.some((r) => r.startsWith(`${id}:`) && !r.endsWith(':none')), `Tab reaches #${id} with a focus outline`);
  }
}

// launch() runs Chromium on a fresh temporary profile (its --user-data-dir) and deletes it after.
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
  ],
});
let status = 0;
try {
  const phone = scenario === 'png';
  const context = await browser.newContext({
    viewport: phone ? { width: 390, height: 844 } : { width: 1100, height: 900 },
    acceptDownloads: true,
  });
  await context.grantPermissions(['camera', 'microphone']);
  await context.addInitScript(instrument);
  const page = await context.newPage();
  page.on('console', (m) => observations.console.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => observations.console.push({ type: 'error', text: `uncaught: ${e.message}` }));
  observations.responses = [];
  page.on('response', (r) => {
    observations.responses.push({ method: r.request().method(), url: r.url(), status: r.status(), at: Date.now() });
  });
  page.on('request', (r) => observations.requests.push(`${r.method()} ${r.url().replace(/#.*/, '')}`));
  page.on('request', async (r) => {
    if (!r.url().includes('/v1/play/')) return;
    const headers = await r.allHeaders();
    observations.playRequests.push({ url: r.url(), range: headers.range ?? null });
  });
  await page.goto(pageUrl, { waitUntil: 'load' });
  await page.waitForFunction(() => document.documentElement.dataset.ready === 'true');
  await screenshot(page, 'loaded');
  if (scenario === 'upload') await keyboardCheck(page);

  if (scenario === 'upload') await uploadScenario(page);
  else if (scenario === 'record') await recordScenario(page);
  else if (scenario === 'png') await pngScenario(page);
  else if (scenario === 'cancel') await cancelScenario(page);
  else if (scenario === 'resume') await resumeScenario(page);
  else throw new Error(`unknown scenario ${scenario}`);

  // No request left this origin (assets are embedded; media plays from this origin's signed links).
  const origin = new URL(pageUrl).origin;
  const foreign = observations.requests.filter((r) => !r.split(' ')[1].startsWith(origin) && !/ (blob|data):/.test(r));
  check(foreign.length === 0, `no external requests (${foreign.join(', ')})`);
  // Zero console errors and zero CSP violations; a refused upload's own status line is expected.
  const expected = (t) => (scenario === 'png' && /status of 415/.test(t))
    || (scenario === 'resume' && /ERR_CONNECTION_RESET/.test(t));
  const errors = observations.console.filter((m) => m.type === 'error' && !expected(m.text));
  check(errors.length === 0, `no console errors (${errors.map((e) => e.text).join(' | ')})`);
  const csp = await page.evaluate(() => window.__mediaq.csp);
  observations.cspViolations = csp.concat(observations.console.filter((m) => /Content Security Policy/i.test(m.text)));
  check(observations.cspViolations.length === 0, `no CSP violations (${JSON.stringify(observations.cspViolations)})`);
  if (scenario === 'upload') {
    // The detector works: an inline style is refused and reported.
    await page.evaluate(() => {
      const s = document.createElement('style');
      s.textContent = 'body { color: red }';
      document.head.append(s);
    });
    await page.waitForFunction(() => window.__mediaq.csp.length > 0, null, { timeout: 5000 });
    check(true, 'an injected inline style is blocked and reported (the CSP detector works)');
  }
} catch (err) {
  status = 1;
  observations.error = String(err?.stack ?? err);
  console.error(`browser scenario ${scenario} failed: ${err?.message ?? err}`);
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
console.log(JSON.stringify({ scenario, checks: observations.checks.length, status }));
process.exit(status);

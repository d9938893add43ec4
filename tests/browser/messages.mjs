// Every error code in the README's table and every job failure code it lists has a sentence in
// web/messages.js (not the generic fallback). Run by tests/tests/browser.rs:
//
//   node tests/browser/messages.mjs README.md web/messages.js

import { readFileSync } from 'node:fs';

const [readmePath, modulePath] = process.argv.slice(2);
const readme = readFileSync(readmePath, 'utf8');
// Loaded from source (web/ has no package.json saying "module").
const source = readFileSync(modulePath, 'utf8');
const m = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);

const between = (from, to) => {
  const start = readme.indexOf(from);
  const end = readme.indexOf(to, start);
  if (start < 0 || end < 0) throw new Error(`README has no section from "${from}" to "${to}"`);
  return readme.slice(start, end);
};
const ticks = (text) => [...text.matchAll(/`([a-z_]+)`/g)].map((x) => x[1]);

const apiCodes = between('Stable codes:', 'A job that fails carries')
  .split('\n')
  .filter((l) => l.startsWith('| `'))
  .flatMap((l) => ticks(l.split('|')[1]));
const failureCodes = ticks(between('A job that fails carries one of these codes', 'While a retry waits'));

const problems = [];
const ctx = { name: 'clip.webm', size: 2_000_000, limit: 1_048_576, retryAfter: 30, credential: 'key', status: 400 };
for (const code of apiCodes) {
  const { text } = m.describeApiError(code, 'the server message', ctx);
  if (text.startsWith('The server refused the request (')) problems.push(`API code ${code} has no sentence`);
}
for (const code of failureCodes) {
  const { text } = m.describeFailure({ code, message: 'the reason' }, 'clip.webm');
  if (text.includes('unexpected problem') || !text.includes('the reason')) problems.push(`failure ${code}: ${text}`);
}
// A job's place in line, as the row shows it.
const at = Date.parse('2026-12-08T10:00:00Z');
const queued = (position, finish, workers) => ({
  status: 'queued',
  queue: { lane: 'cpu', position, waiting_for_bytes: false, workers, estimated_start_at: null, estimated_finish_at: finish },
});
for (const [job, want] of [
  [queued(2, '2026-12-08T10:00:40Z', 1), '3rd in line, ready in about 40 seconds'],
  [queued(0, '2026-12-08T10:05:00Z', 2), 'next in line, ready in about 5 minutes'],
  [queued(10, null, 0), '11th in line (no converter is running)'],
  [{ status: 'processing', queue: { position: 0, workers: 1, estimated_finish_at: '2026-12-08T10:00:12Z' } }, 'converting, ready in about 12 seconds'],
  [{ status: 'receiving', queue: { waiting_for_bytes: true } }, 'waiting for more of the upload'],
  [{ status: 'succeeded', queue: null }, null],
]) {
  const got = m.describeQueue(job, at);
  if (got !== want) problems.push(`queue line: ${JSON.stringify(job)} -> ${got}, want ${want}`);
}
const tooLarge = m.describeApiError('payload_too_large', 'the upload is larger than the limit of 1048576 bytes', ctx);
if (!tooLarge.text.includes('1 MiB') || tooLarge.retry) problems.push(`too large: ${tooLarge.text}`);
const limited = m.describeApiError('rate_limited', 'too many requests', ctx);
if (!limited.text.includes('30 seconds') || !limited.retry) problems.push(`rate limited: ${limited.text}`);
if (!m.describeApiError('not_webm', 'x', ctx).text.includes('is not a WebM or MP4 video')) problems.push('not_webm');

console.log(JSON.stringify({ apiCodes: apiCodes.length, failureCodes: failureCodes.length, problems }));
if (apiCodes.length < 20 || failureCodes.length < 15) problems.push('the README sections were not found whole');
process.exit(problems.length === 0 ? 0 : 1);

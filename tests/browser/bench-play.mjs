// Benchmark (never in CI; run by scripts/bench-playback.sh): how soon a signed playback link
// plays in Chromium. Each round opens a fresh browser context (empty cache) on the API's page,
// puts a <video preload="none"> with the link as its src, and measures, in the page's own clock:
// from play() to the first frame presented (requestVideoFrameCallback), and from setting
// currentTime to the middle to the seeked frame presented; plus the bytes the browser received.
//
//   MEDIAQ_PAGE_URL=http://127.0.0.1:PORT/ MEDIAQ_PLAY_URL=http://.../v1/play/.../output.mp4 \
//   MEDIAQ_ROUNDS=5 node tests/browser/bench-play.mjs     # prints one JSON line per round

import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const pageUrl = env('MEDIAQ_PAGE_URL');
const playUrl = env('MEDIAQ_PLAY_URL');
const rounds = Number(env('MEDIAQ_ROUNDS', '5'));
const browser = await chromium.launch({ executablePath: env('MEDIAQ_CHROMIUM', '/usr/bin/chromium') });
try {
  for (let round = 1; round <= rounds; round += 1) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    let bytes = 0;
    let requests = 0;
    cdp.on('Network.requestWillBeSent', (e) => { if (e.request.url.includes('/v1/play/')) requests += 1; });
    cdp.on('Network.dataReceived', (e) => { bytes += e.encodedDataLength || e.dataLength; });
    await page.goto(pageUrl);
    const measured = await page.evaluate(async (src) => {
      const v = document.createElement('video');
      v.muted = true;
      v.preload = 'none';
      v.src = src;
      document.body.append(v);
      const presented = () => new Promise((resolve) => v.requestVideoFrameCallback(() => resolve(performance.now())));
      const t0 = performance.now();
      const first = presented();
      await v.play();
      const firstFrame = (await first) - t0;
      v.pause();
      const t1 = performance.now();
      const seeked = presented();
      v.currentTime = v.duration / 2;
      const seekFrame = (await seeked) - t1;
      return { first_frame_ms: firstFrame, seek_frame_ms: seekFrame, duration_s: v.duration, position_s: v.currentTime };
    }, playUrl);
    console.log(JSON.stringify({ round, ...measured, requests, bytes_received: bytes }));
    await context.close();
  }
} finally {
  await browser.close();
}

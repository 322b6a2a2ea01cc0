// End-to-end check of the player page in headless Chromium.
//
// Usage: node play.mjs http://127.0.0.1:PORT
// Env:   FV_SCREENSHOT=path.png  save a screenshot (also on failure)
//        FV_CHROMIUM=path        browser binary (default /usr/bin/chromium)
//        FV_PLAY_TIMEOUT_MS=n    overall wait bound (default 60000)
//
// Opens `<url>/?autoconnect=1&prompts=...`, waits until at least two segments have completed
// and the <video> is playing past 1 s, then checks: no MSE errors, no server `error` frames,
// no page exceptions, decoded size == ltx2_stream_start size. Prints a JSON summary on stdout;
// exits 1 with a reason on stderr on failure, 2 on bad usage.
import { chromium } from 'playwright-core';

const PROMPTS = ['a red fox running through fresh snow', 'a lighthouse at dusk', 'a paper boat on a river'];
const TIMEOUT_MS = Number(process.env.FV_PLAY_TIMEOUT_MS || 60000);
const POLL_MS = 250;
const CHROMIUM = process.env.FV_CHROMIUM || '/usr/bin/chromium';

const base = process.argv[2];
if (!base || !/^https?:\/\//.test(base)) {
  console.error('usage: node play.mjs http://HOST:PORT');
  process.exit(2);
}
const url = `${base.replace(/\/+$/, '')}/?autoconnect=1&prompts=${encodeURIComponent(PROMPTS.join(','))}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Everything the checks need, read in one round trip.
const snapshot = () => {
  const p = window.fvPlayer;
  const v = document.querySelector('video');
  if (!p || !v) return null;
  const buffered = [];
  for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
  return {
    state: p.state,
    stream: p.session.stream || null,
    segmentsComplete: p.segmentsComplete,
    binaryFrames: p.binaryFrames,
    errors: p.errors,
    mseErrors: p.mseErrors,
    lastClose: p.lastClose,
    segments: p.segments,
    currentTime: v.currentTime,
    paused: v.paused,
    videoWidth: v.videoWidth,
    videoHeight: v.videoHeight,
    buffered,
    mediaError: v.error ? `${v.error.code}: ${v.error.message}` : null,
  };
};

async function run(page, pageErrors) {
  await page.goto(url, { waitUntil: 'load' });
  const deadline = Date.now() + TIMEOUT_MS;
  let s = null;
  for (;;) {
    s = await page.evaluate(snapshot);
    if (!s) throw new Error('page has no window.fvPlayer or <video>');
    if (pageErrors.length) throw new Error(`page exception: ${pageErrors[0]}`);
    if (s.mseErrors.length) throw new Error(`MSE error: ${s.mseErrors.join('; ')}`);
    if (s.mediaError) throw new Error(`video element error: ${s.mediaError}`);
    if (s.errors.length) throw new Error(`server error frame: ${JSON.stringify(s.errors[0])}`);
    if (s.state === 'closed') throw new Error(`socket closed early: ${JSON.stringify(s.lastClose)}`);
    if (s.segmentsComplete >= 2 && s.currentTime > 1.0) break;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${TIMEOUT_MS} ms: segmentsComplete=${s.segmentsComplete} `
        + `currentTime=${s.currentTime} paused=${s.paused} binaryFrames=${s.binaryFrames} buffered=${JSON.stringify(s.buffered)}`);
    }
    await sleep(POLL_MS);
  }
  // Playback must be moving, not just parked past 1 s: sample again and require progress.
  const t1 = s.currentTime;
  let t2 = t1;
  while (t2 <= t1 && Date.now() < deadline + 5000) {
    await sleep(POLL_MS);
    s = await page.evaluate(snapshot);
    t2 = s.currentTime;
  }
  if (!(t2 > t1)) throw new Error(`currentTime did not advance (${t1} -> ${t2}, paused=${s.paused})`);
  if (!s.stream) throw new Error('no ltx2_stream_start seen');
  if (s.videoWidth !== s.stream.width || s.videoHeight !== s.stream.height) {
    throw new Error(`decoded size ${s.videoWidth}x${s.videoHeight} != stream size ${s.stream.width}x${s.stream.height}`);
  }
  if (s.mseErrors.length || s.errors.length || pageErrors.length) {
    throw new Error(`errors after playback: ${JSON.stringify({ mse: s.mseErrors, server: s.errors, page: pageErrors })}`);
  }
  return { ok: true, url, ...s, currentTimeSamples: [t1, t2] };
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  try {
    const summary = await run(page, pageErrors);
    console.log(JSON.stringify(summary, null, 2));
  } catch (e) {
    code = 1;
    console.error(`FAIL: ${e.message}`);
    const s = await page.evaluate(snapshot).catch(() => null);
    if (s) console.error(JSON.stringify(s, null, 2));
  }
  if (process.env.FV_SCREENSHOT) await page.screenshot({ path: process.env.FV_SCREENSHOT, fullPage: true });
} catch (e) {
  code = 1;
  console.error(`FAIL: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(code);

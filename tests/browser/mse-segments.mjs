// Plays fMP4 segments through Media Source Extensions in headless Chromium, the way the
// Dreamverse client does: one SourceBuffer in `sequence` mode, every chunk appended in order.
//
// Usage: node mse-segments.mjs MIME SEGMENT_DIR [SEGMENT_DIR ...]
//   Each SEGMENT_DIR holds one segment's chunks as 000.mp4, 001.mp4, ... (init first).
// Env:   FV_CHROMIUM=path     browser binary (default /usr/bin/chromium)
//        FV_PLAY_TIMEOUT_MS=n overall wait bound (default 60000)
//        FV_MSE_MODE=segments use `segments` mode instead (for experiments)
//
// Appends every segment, calls endOfStream(), plays unmuted and waits for `ended`. Prints a
// JSON summary on stdout (buffered ranges, duration, decoded audio/video byte counts, frame
// counts, errors); exits 1 with a reason on stderr when MSE or the media element reports an
// error, playback does not reach the end, or nothing was decoded; 2 on bad usage.
import { chromium } from 'playwright-core';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const TIMEOUT_MS = Number(process.env.FV_PLAY_TIMEOUT_MS || 60000);
const CHROMIUM = process.env.FV_CHROMIUM || '/usr/bin/chromium';
const MODE = process.env.FV_MSE_MODE || 'sequence';

const [mime, ...dirs] = process.argv.slice(2);
if (!mime || dirs.length === 0) {
  console.error('usage: node mse-segments.mjs MIME SEGMENT_DIR [SEGMENT_DIR ...]');
  process.exit(2);
}
const segments = dirs.map((d) => readdirSync(d).filter((f) => f.endsWith('.mp4')).sort()
  .map((f) => readFileSync(join(d, f)).toString('base64')));

// Runs in the page: appends everything, plays to the end, reports.
async function play({ mime, segments, mode, timeoutMs }) {
  const out = { supported: MediaSource.isTypeSupported(mime), errors: [], appended: 0 };
  if (!out.supported) { out.errors.push(`isTypeSupported(${mime}) is false`); return out; }
  const video = document.createElement('video');
  video.muted = false;
  document.body.appendChild(video);
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  await new Promise((r) => ms.addEventListener('sourceopen', r, { once: true }));
  const sb = ms.addSourceBuffer(mime);
  sb.mode = mode;
  sb.addEventListener('error', () => out.errors.push('sourcebuffer error'));
  video.addEventListener('error', () => out.errors.push(`video error ${video.error && video.error.code}: ${video.error && video.error.message}`));
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const append = (data) => new Promise((resolve) => {
    sb.addEventListener('updateend', resolve, { once: true });
    try { sb.appendBuffer(data); } catch (e) { out.errors.push(`appendBuffer: ${e}`); resolve(); }
  });
  out.bufferedAfter = [];
  for (const chunks of segments) {
    for (const c of chunks) {
      await append(bytes(c));
      out.appended += 1;
      if (out.errors.length) return out;
    }
    const b = [];
    for (let i = 0; i < sb.buffered.length; i++) b.push([sb.buffered.start(i), sb.buffered.end(i)]);
    out.bufferedAfter.push(b);
  }
  ms.endOfStream();
  out.duration = ms.duration;
  const ended = new Promise((r) => video.addEventListener('ended', r, { once: true }));
  try { await video.play(); } catch (e) { out.errors.push(`play(): ${e}`); return out; }
  const timer = new Promise((r) => setTimeout(r, timeoutMs));
  out.ended = await Promise.race([ended.then(() => true), timer.then(() => false)]);
  const q = video.getVideoPlaybackQuality();
  Object.assign(out, {
    currentTime: video.currentTime,
    audioDecodedBytes: video.webkitAudioDecodedByteCount,
    videoDecodedBytes: video.webkitVideoDecodedByteCount,
    totalVideoFrames: q.totalVideoFrames,
    droppedVideoFrames: q.droppedVideoFrames,
    videoWidth: video.videoWidth,
    videoHeight: video.videoHeight,
    audioTracks: video.audioTracks ? video.audioTracks.length : null,
  });
  return out;
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--autoplay-policy=no-user-gesture-required', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let code = 0;
try {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.setContent('<!doctype html><body></body>');
  const s = await page.evaluate(play, { mime, segments, mode: MODE, timeoutMs: TIMEOUT_MS });
  s.pageErrors = pageErrors;
  console.log(JSON.stringify(s, null, 2));
  const problems = [];
  if (s.errors.length || pageErrors.length) problems.push(`errors: ${JSON.stringify([...s.errors, ...pageErrors])}`);
  if (!s.ended) problems.push(`playback did not reach the end (currentTime ${s.currentTime}, duration ${s.duration})`);
  if (!(s.videoDecodedBytes > 0)) problems.push('no video decoded');
  if (problems.length) {
    code = 1;
    console.error(`FAIL: ${problems.join('; ')}`);
  }
} catch (e) {
  code = 1;
  console.error(`FAIL: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(code);

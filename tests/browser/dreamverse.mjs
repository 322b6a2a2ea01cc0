// The `/ws` product protocol in headless Chromium, with media handled the way the Dreamverse
// web app does it (dreamverse-facts §7; DV/web/src/lib/media/avPipeline.ts):
//   * one MediaSource per rollout: `ltx2_stream_start` tears the pipeline down, the first
//     `media_init` creates a MediaSource with one SourceBuffer in `sequence` mode; a later
//     `media_init` reuses it while the resolved mime is unchanged, and one after
//     `ltx2_stream_complete` recreates it;
//   * the mime is the first `MediaSource.isTypeSupported` of [server mime, the web app's
//     fallback list];
//   * binary frames are appended in arrival order without parsing (queued before
//     `sourceopen`), and archived per (segment_idx, stream_id);
//   * frames are handled strictly in order through one promise chain;
//   * playback starts at >= 1 s buffered or 500 ms after the first chunk.
// The run: a preset session until its rollout completes (the server's cap), playback past
// 1 s, then `end_project_keep_session` -> `project_idle` -> `project_init_v1` on the same
// socket, and the second rollout played past 1 s in its own MediaSource.
//
// Usage: node dreamverse.mjs http://HOST:PORT
// Env:   FV_CHROMIUM=path, FV_PLAY_TIMEOUT_MS=n (default 60000)
// Prints a JSON summary (with every archived segment, base64) on stdout; exits 1 with a
// reason on stderr on failure, 2 on bad usage.
import { chromium } from 'playwright-core';

const TIMEOUT_MS = Number(process.env.FV_PLAY_TIMEOUT_MS || 60000);
const CHROMIUM = process.env.FV_CHROMIUM || '/usr/bin/chromium';
const base = process.argv[2];
if (!base || !/^https?:\/\//.test(base)) {
  console.error('usage: node dreamverse.mjs http://HOST:PORT');
  process.exit(2);
}
const origin = base.replace(/\/+$/, '');

// Runs in the page (origin = the server, as behind the product's proxy).
async function session({ wsUrl, timeoutMs }) {
  const FALLBACK_MIMES = [
    'video/mp4; codecs="avc1.42E01E,mp4a.40.2"',
    'video/mp4; codecs="avc1.4d401e,mp4a.40.2"',
    'video/mp4; codecs="avc1.42e01e,mp4a.40.2"',
    'video/mp4; codecs="avc1.640028,mp4a.40.2"',
    'video/mp4',
  ];
  const out = {
    messages: [], errors: [], mseErrors: [], rollouts: [], mediaSources: 0, resolvedMimes: [],
    archive: [], playback: [], closed: null,
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const deadline = Date.now() + timeoutMs;
  const video = document.createElement('video');
  video.muted = false;
  document.body.appendChild(video);
  video.addEventListener('error', () => out.mseErrors.push(`video error ${video.error && video.error.code}: ${video.error && video.error.message}`));

  let ms = null; let sb = null; let mime = null; let completed = false; let queue = [];
  let firstChunkAt = null; let playRequested = false;
  const buffered = () => (sb && sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) - video.currentTime : 0);
  const pump = () => {
    if (!sb || sb.updating || !queue.length || ms.readyState !== 'open') return;
    try { sb.appendBuffer(queue.shift()); } catch (e) { out.mseErrors.push(`appendBuffer: ${e}`); }
  };
  const teardown = () => {
    queue = []; sb = null; ms = null; mime = null; completed = false; firstChunkAt = null; playRequested = false;
    video.removeAttribute('src');
    video.load();
  };
  const ensure = async (serverMime) => {
    const resolved = [serverMime, ...FALLBACK_MIMES].find((m) => m && MediaSource.isTypeSupported(m));
    if (!resolved) throw new Error(`no supported mime for ${serverMime}`);
    if (ms && resolved === mime && !completed) return;
    teardown();
    ms = new MediaSource();
    out.mediaSources += 1;
    out.resolvedMimes.push(resolved);
    video.src = URL.createObjectURL(ms);
    await new Promise((r) => ms.addEventListener('sourceopen', r, { once: true }));
    sb = ms.addSourceBuffer(resolved);
    sb.mode = 'sequence';
    sb.addEventListener('updateend', pump);
    sb.addEventListener('error', () => out.mseErrors.push('sourcebuffer error'));
    mime = resolved;
    pump();
  };
  const maybePlay = () => {
    if (playRequested || !firstChunkAt) return;
    if (buffered() >= 1.0 || Date.now() - firstChunkAt >= 500 || completed) {
      playRequested = true;
      video.play().catch((e) => out.mseErrors.push(`play(): ${e}`));
    }
  };
  setInterval(maybePlay, 50);

  let current = null;
  const handle = async (data) => {
    if (typeof data !== 'string') {
      const bytes = new Uint8Array(data);
      queue.push(bytes);
      if (!firstChunkAt) firstChunkAt = Date.now();
      if (current) current.chunks.push(bytes);
      pump();
      return;
    }
    let m;
    try { m = JSON.parse(data); } catch (e) { out.errors.push(`bad JSON: ${data}`); return; }
    out.messages.push(m);
    switch (m.type) {
      case 'ltx2_stream_start':
        teardown();
        out.rollouts.push({ start: m, segments: 0, complete: false });
        break;
      case 'media_init':
        await ensure(m.mime);
        current = { segment_idx: m.segment_idx, stream_id: m.stream_id, chunks: [], complete: false };
        out.archive.push(current);
        break;
      case 'media_segment_complete':
        if (current && current.stream_id === m.stream_id) current.complete = true;
        if (out.rollouts.length) out.rollouts[out.rollouts.length - 1].segments += 1;
        break;
      case 'ltx2_stream_complete':
        completed = true;
        if (out.rollouts.length) out.rollouts[out.rollouts.length - 1].complete = true;
        // endOfStream once every queued chunk is in.
        while (sb && (sb.updating || queue.length)) await sleep(20);
        if (ms && ms.readyState === 'open') ms.endOfStream();
        break;
      case 'error':
        out.errors.push(m);
        break;
      default:
    }
  };

  const ws = new WebSocket(wsUrl);
  ws.binaryType = 'arraybuffer';
  let chain = Promise.resolve();
  ws.onmessage = (ev) => { chain = chain.then(() => handle(ev.data)).catch((e) => out.errors.push(String(e))); };
  ws.onclose = (ev) => { out.closed = { code: ev.code, reason: ev.reason }; };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('socket error')); });
  const send = (m) => ws.send(JSON.stringify(m));
  const until = async (what, ok) => {
    while (!ok()) {
      if (out.errors.length || out.mseErrors.length) throw new Error(`${what}: ${JSON.stringify([...out.errors, ...out.mseErrors])}`);
      if (out.closed) throw new Error(`${what}: socket closed ${JSON.stringify(out.closed)}`);
      if (Date.now() > deadline) throw new Error(`${what}: timed out (currentTime ${video.currentTime}, rollouts ${JSON.stringify(out.rollouts.map((r) => [r.segments, r.complete]))})`);
      await sleep(50);
    }
  };
  const seen = (type) => out.messages.some((m) => m.type === type);
  const playedPast = async (what, rollout) => {
    await until(`${what} complete`, () => out.rollouts.length > rollout && out.rollouts[rollout].complete);
    await until(`${what} plays past 1 s`, () => video.currentTime > 1.0);
    const t1 = video.currentTime;
    await until(`${what} keeps playing`, () => video.currentTime > t1 || video.ended);
    out.playback.push({
      currentTime: video.currentTime,
      audioDecodedBytes: video.webkitAudioDecodedByteCount,
      videoDecodedBytes: video.webkitVideoDecodedByteCount,
      mediaSources: out.mediaSources,
    });
  };

  const init = (type, prompts) => ({
    type, preset_id: 'glass_whale', preset_label: 'Glass whale', curated_prompts: prompts,
    initial_rollout_prompt: '', initial_image: null, single_clip_mode: false,
    enhancement_enabled: true, auto_extension_enabled: false, loop_generation_enabled: false,
  });
  send(init('session_init_v2', ['A glass whale drifts above a neon forest', 'The whale dives between glowing trees']));
  await playedPast('first rollout', 0);
  send({ type: 'end_project_keep_session' });
  await until('project_idle', () => seen('project_idle'));
  send(init('project_init_v1', ['A lighthouse in a storm', 'Morning over a calm sea']));
  await playedPast('second rollout', 1);
  out.currentTime = video.currentTime;
  out.archive = out.archive.map((a) => {
    let s = '';
    for (const c of a.chunks) for (let i = 0; i < c.length; i += 1) s += String.fromCharCode(c[i]);
    return { segment_idx: a.segment_idx, stream_id: a.stream_id, complete: a.complete, chunks: a.chunks.length, base64: btoa(s) };
  });
  out.messages = out.messages.map((m) => m.type);
  ws.close(1000, 'done');
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
  // A page of the server's origin, as the web app is served next to `/ws`.
  await page.goto(`${origin}/healthz`);
  await page.setContent('<!doctype html><body></body>');
  const wsUrl = `${origin.replace(/^http/, 'ws')}/ws`;
  const s = await page.evaluate(session, { wsUrl, timeoutMs: TIMEOUT_MS });
  s.pageErrors = pageErrors;
  const problems = [];
  if (pageErrors.length) problems.push(`page errors: ${pageErrors.join('; ')}`);
  if (s.mseErrors.length || s.errors.length) problems.push(`errors: ${JSON.stringify([...s.errors, ...s.mseErrors])}`);
  for (const p of s.playback) {
    if (!(p.currentTime > 1.0)) problems.push(`currentTime ${p.currentTime} <= 1`);
    if (!(p.audioDecodedBytes > 0)) problems.push('no audio decoded');
  }
  console.log(JSON.stringify(s));
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

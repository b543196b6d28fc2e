#!/usr/bin/env node
// Recording benchmark (issue 3): bytes per hour and CPU of the session recorder for a scripted admin
// workload at 1280×800 and 1920×1080 through the real pipeline (x11vnc → gateway → Chromium), the
// same for a synthetic one-hour 1080p recording written offline, how the recorded text compares to
// the screen, and the time from a click on the player's scrub bar to the frame shown, in that
// one-hour recording.
//
//   node benches/recording.mjs        (from anywhere; `cargo xtask bench` runs it after run.mjs)
//
// Environment:
//   PORTCULLIS_BIN        gateway binary (default target/release/portcullis)
//   HOUR_BIN              the example that writes the one-hour recording
//                         (default target/release/examples/hour)
//   BENCH_REC_GEOMETRIES  desktops to record, comma-separated (default 1280x800,1920x1080)
//   BENCH_REC_ACTIVE_S    seconds of scripted work per desktop (default 60)
//   BENCH_REC_IDLE_S      seconds of idle afterwards (default 30)
//   BENCH_REC_MIX         share of active time in the "realistic hour" (default 0.2: 20% active,
//                         80% reading/idle)
//   BENCH_REC_OCR         0: skip the OCR step (tesseract, part C2)
//   BENCH_REC_SEEKS       seeks in the one-hour recording, per way of clicking (default 40)
//   BENCH_REC_DWELL_MS    how long the pointer rests on the place before the "point, then click"
//                         seeks (default 300: the hover thumbnail shows, the reviewer clicks)
//   BENCH_REC_PARTS       what to run, comma-separated: real (A and C), hour (B) (default real,hour)
//   BENCH_REC_REGENERATE  1: write the one-hour recording again even if a matching one is cached
//   BENCH_REC_OUT         JSON results (default benches/results/recording.json)
//   BENCH_REC_HOUR_DRAFT_CRF  the one-hour recording's draft CRF (0: no drafts); unset: the default
//   BENCH_REC_HOUR_DIR    where the one-hour recording is cached (default benches/results/hour-1080p;
//                         one per set of options, to compare two side by side)
//   BENCH_REC_HOUR_KEYFRAME_S  the one-hour recording's longest time between keyframes (s; default
//                         the recorder's, 60)
//   BENCH_REC_HOUR_X264   extra libx264 options for the one-hour recording (e.g. 'deblock=0,0' to
//                         compare with the deblocking filter on)
//   BENCH_REC_CONFIG      extra gateway configuration for A and C (`\n` for new lines), e.g.
//                         '[recording]\ndraft_crf = 0' (drafts off) to compare with the defaults
//   BENCH_REC_WARMUP      0: no first session (see "gateway RSS added": with it, a small session
//                         on its own desktop stays open, idle, while the measured one runs, so
//                         one-time costs are not counted as the session's)
//   CHROMIUM              browser binary (default /usr/bin/chromium)
//
// See benches/README.md ("Recording") for what is measured and the caveats.
import { spawn, spawnSync, execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync, rmSync, cpSync, mkdtempSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { compare as ocrCompare, frameAt } from './ocr.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
// The harness reads PORTCULLIS_BIN when it is loaded, so set it before importing it.
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(root, 'target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');
const { sleep } = H;

const HOUR_BIN = resolve(process.env.HOUR_BIN || join(root, 'target/release/examples/hour'));
const GEOMETRIES = (process.env.BENCH_REC_GEOMETRIES || '1280x800,1920x1080').split(',').map((g) => g.trim()).filter(Boolean);
const ACTIVE_S = numEnv('BENCH_REC_ACTIVE_S', 60);
const IDLE_S = numEnv('BENCH_REC_IDLE_S', 30);
const MIX = numEnv('BENCH_REC_MIX', 0.2);
// Extra gateway configuration for the real sessions (A, C), e.g. '[recording]\ndraft_crf = 0' to
// measure a setting beside the defaults; empty: the defaults.
const GW_CONFIG = (process.env.BENCH_REC_CONFIG || '').replace(/\\n/g, '\n');
const SEEKS = numEnv('BENCH_REC_SEEKS', 40);
const DWELL_MS = numEnv('BENCH_REC_DWELL_MS', 300);
const REGENERATE = process.env.BENCH_REC_REGENERATE === '1';
const OCR = process.env.BENCH_REC_OCR !== '0';
const WARMUP = process.env.BENCH_REC_WARMUP !== '0';
const PARTS = new Set((process.env.BENCH_REC_PARTS || 'real,hour').split(',').map((x) => x.trim()));
const RESULTS = join(here, 'results');
const OUT = resolve(process.env.BENCH_REC_OUT || join(RESULTS, 'recording.json'));
const HOUR_CACHE = resolve(process.env.BENCH_REC_HOUR_DIR || join(RESULTS, 'hour-1080p'));
const HOUR_ARGS = ['--width', '1920', '--height', '1080', '--seconds', '3600', '--seed', '1', '--active', '0.5',
  ...(process.env.BENCH_REC_HOUR_DRAFT_CRF ? ['--draft-crf', process.env.BENCH_REC_HOUR_DRAFT_CRF] : []),
  ...(process.env.BENCH_REC_HOUR_X264 ? ['--x264', process.env.BENCH_REC_HOUR_X264] : []),
  ...(process.env.BENCH_REC_HOUR_KEYFRAME_S ? ['--keyframe-secs', process.env.BENCH_REC_HOUR_KEYFRAME_S] : [])];
// 8 minutes for the run; writing the one-hour recording (only when none is cached) gets its own 8.
const DEADLINE_MS = 8 * 60_000;
const HOUR_BUDGET_MS = 8 * 60_000;
// Issue 15 at 1920x1080: bytes while active, in the 20%-active mix and idle; CPU; OCR legibility.
const GOALS = { bytesPerHour1080p: 5e6, activeBytesPerHour1080p: 25e6, idleBytesPerHour1080p: 0.1e6, activeCpuPct: 8, idleCpuPct: 0.5, legibility: 0.95, seekP95Ms: 150 };

const ADMIN_PW = 'admin-password-bench';
const USER = 'bench';
const USER_PW = 'bench-password-1234';
const VNC_PW = 'vncbench';
const TARGET = 'desk';

function numEnv(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, not ${v}`);
  return n;
}
const log = (...a) => console.error('[bench:rec]', ...a);

// ---- cleanup: everything started is stopped, also on failure and on signals --------------------
const cleanups = [];
/** Synchronous last resorts, for when node exits without running the async cleanup. */
const lastResorts = new Set();
let cleaning = null;
function cleanup() {
  if (!cleaning) {
    cleaning = (async () => {
      for (const f of cleanups.reverse()) {
        try { await f(); } catch (e) { log('cleanup:', e.message); }
      }
    })();
  }
  return cleaning;
}
/** Registers `stop` (async) and a synchronous fallback; returns a function that runs it now. */
function onCleanup(stop, sync) {
  let done = false;
  const once = async () => {
    if (done) return;
    done = true;
    lastResorts.delete(sync);
    await stop();
  };
  cleanups.push(once);
  if (sync) lastResorts.add(sync);
  return once;
}
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    interrupted = true;
    log(`${sig}: stopping everything`);
    await cleanup();
    process.exit(130);
  });
}
process.on('exit', () => {
  for (const f of lastResorts) { try { f(); } catch { /* gone */ } }
});
let deadline = Date.now() + DEADLINE_MS;
const watchdog = setInterval(async () => {
  if (Date.now() < deadline) return;
  clearInterval(watchdog);
  log(`the recording benchmark ran out of time (${Math.round(DEADLINE_MS / 60000)} minutes, plus the one-hour recording's budget when it was written); stopping`);
  interrupted = true;
  await cleanup();
  process.exit(2);
}, 1000);
watchdog.unref();

function killTree(p, sig) {
  if (p.exitCode !== null || p.signalCode !== null) return;
  try { process.kill(-p.pid, sig); } catch { try { p.kill(sig); } catch { /* gone */ } }
}

// ---- statistics -------------------------------------------------------------------------------
const round = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);
function pct(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
function stats(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  return { n: v.length, min: round(v[0]), p50: round(pct(v, 50)), p90: round(pct(v, 90)), p95: round(pct(v, 95)), max: round(v.at(-1)), mean: round(mean) };
}

// ---- /proc counters ---------------------------------------------------------------------------
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100; } catch { return 100; } })();
/** utime + stime of a process (all its threads, also those gone), seconds. */
function processCpu(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}
/** CPU time of one thread, seconds: schedstat (ns) when the kernel has it, else stat (ticks). */
function threadCpu(pid, tid) {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  } catch {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) / CLK_TCK;
    } catch {
      return null;
    }
  }
}
function threadsNamed(pid, prefix) {
  try {
    return readdirSync(`/proc/${pid}/task`).filter((tid) => {
      try { return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim().startsWith(prefix); } catch { return false; }
    });
  } catch {
    return [];
  }
}
/** Resident memory of a process, KiB. */
function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
function tcpListenPid(port) {
  try {
    const out = execFileSync('ss', ['-ltnpH', `( sport = :${port} )`], { encoding: 'utf8' });
    const m = out.match(/pid=(\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
function dirBytes(dir) {
  const files = {};
  let total = 0;
  try {
    for (const f of readdirSync(dir)) {
      const n = statSync(join(dir, f)).size;
      files[f] = n;
      total += n;
    }
  } catch { /* not there yet */ }
  return { total, files };
}
function pidOf(desktop, name) {
  try { return Number(readFileSync(join(desktop.dir, `${name}.pid`), 'utf8').trim()); } catch { return null; }
}
function pkgVersion(name) {
  try { return execFileSync('dpkg-query', ['-W', '-f', '${Version}', name], { encoding: 'utf8' }); } catch { return null; }
}

/**
 * A recording's manifest, per segment: its time, key, frames, and the bytes it added to each file
 * (video, its manifest line, events and thumbnail written with it).
 */
function readManifest(dir) {
  const segments = [];
  let otherLines = 0;
  let otherBytes = 0;
  for (const line of readFileSync(join(dir, 'manifest.jsonl'), 'utf8').split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line).body.entry;
    if (e.type !== 'segment') {
      otherLines += 1;
      otherBytes += Buffer.byteLength(line) + 1 + (e.type === 'init' ? e.video.len : 0) + (e.events?.len ?? 0);
      continue;
    }
    segments.push({
      start: e.start_ms,
      end: e.end_ms,
      key: e.key,
      frames: e.frames,
      video: e.video.len,
      manifest: Buffer.byteLength(line) + 1,
      events: e.events?.len ?? 0,
      thumb: e.thumb?.len ?? 0,
    });
  }
  return { segments, otherLines, otherBytes };
}
/** Sums of the segments that start in [from, to) ms. */
function segmentSums(segments, from, to) {
  const s = segments.filter((x) => x.start >= from && x.start < to);
  const sum = (k) => s.reduce((a, x) => a + x[k], 0);
  const keys = s.filter((x) => x.key);
  const o = {
    segments: s.length,
    frames: sum('frames'),
    keySegments: keys.length,
    keySegmentBytes: keys.reduce((a, x) => a + x.video, 0),
    videoBytes: sum('video'),
    manifestBytes: sum('manifest'),
    eventBytes: sum('events'),
    thumbnails: s.filter((x) => x.thumb > 0).length,
    thumbnailBytes: sum('thumb'),
  };
  o.allBytes = o.videoBytes + o.manifestBytes + o.eventBytes + o.thumbnailBytes;
  return o;
}

/**
 * Where a recording's bytes go: key segments; segments with new pictures; segments holding only
 * the idle tick's re-encode of an unchanged picture (frames = 1), split into those where x264 still
 * refines the picture after a change (> 300 bytes) and plain repeats; the manifest; thumbnails;
 * events.
 */
function whereBytesGo(segments) {
  const sum = (xs, k = 'video') => xs.reduce((a, x) => a + x[k], 0);
  const key = segments.filter((s) => s.key);
  const single = segments.filter((s) => !s.key && s.frames <= 1);
  const refine = single.filter((s) => s.video > 300);
  const plain = single.filter((s) => s.video <= 300);
  const changing = segments.filter((s) => !s.key && s.frames > 1);
  const o = {
    keySegments: { n: key.length, bytes: sum(key), meanBytes: key.length ? Math.round(sum(key) / key.length) : null },
    changingSegments: { n: changing.length, bytes: sum(changing) },
    repeatRefining: { n: refine.length, bytes: sum(refine) },
    repeatPlain: { n: plain.length, bytes: sum(plain), meanBytes: plain.length ? Math.round(sum(plain) / plain.length) : null },
    manifest: { lines: segments.length, bytes: sum(segments, 'manifest'), meanBytes: segments.length ? Math.round(sum(segments, 'manifest') / segments.length) : null },
    thumbnails: { n: segments.filter((s) => s.thumb).length, bytes: sum(segments, 'thumb') },
    events: { bytes: sum(segments, 'events') },
  };
  const total = Object.values(o).reduce((a, x) => a + x.bytes, 0);
  for (const x of Object.values(o)) x.share = total ? round(x.bytes / total, 3) : null;
  o.totalBytes = total;
  return o;
}

// ---- A. the real pipeline ----------------------------------------------------------------------
async function realSession(geometry, browser) {
  const [W, Ht] = geometry.split('x').map(Number);
  log(`${geometry}: desktop, gateway, session…`);
  const desktop = await H.startDesktop(VNC_PW, geometry, 'x11vnc');
  const stopDesktop = onCleanup(() => desktop.stop(), () => desktop.stop());
  const gw = await H.startGateway({ adminPassword: ADMIN_PW, extraConfig: GW_CONFIG ? `${GW_CONFIG}\n` : '' });
  const gwPid = tcpListenPid(gw.port);
  const stopGateway = onCleanup(() => gw.stop(), () => { if (gwPid) try { process.kill(gwPid, 'SIGKILL'); } catch { /* gone */ } });
  if (!gwPid) throw new Error('cannot find the gateway process (ss -ltnp)');
  const admin = gw.api();
  if ((await admin.login('admin', ADMIN_PW)).status !== 200) throw new Error('admin login failed');
  const rssBase = rssKiB(gwPid);
  for (const [p, body] of [
    ['/users', { name: USER, password: USER_PW, role: 'user' }],
    ['/targets', { name: TARGET, address: desktop.address, password: VNC_PW }],
    ['/grants', { user: USER, target: TARGET }],
  ]) {
    const r = await admin.post(p, body);
    if (r.status !== 201) throw new Error(`POST ${p}: ${r.status} ${r.text}`);
  }
  // What the first session pays once for the gateway (FFmpeg's and x264's code, thread pools, the
  // UI's assets) is not what each session adds: a first, small session on its own desktop stays
  // open and idle while the measured one runs.
  let stopWarm = async () => {};
  if (WARMUP) {
    const warmDesk = await H.startDesktop(VNC_PW, '640x480', 'x11vnc');
    const stopWarmDesk = onCleanup(() => warmDesk.stop(), () => warmDesk.stop());
    for (const [p, body] of [
      ['/targets', { name: 'warm', address: warmDesk.address, password: VNC_PW }],
      ['/grants', { user: USER, target: 'warm' }],
    ]) {
      const r = await admin.post(p, body);
      if (r.status !== 201) throw new Error(`POST ${p}: ${r.status} ${r.text}`);
    }
    const warmCtx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 800, height: 600 } });
    const closeWarm = onCleanup(() => warmCtx.close());
    stopWarm = async () => { await closeWarm(); await stopWarmDesk(); };
    const warm = await warmCtx.newPage();
    await H.uiLogin(warm, gw.base, USER, USER_PW);
    await warm.waitForSelector('[data-target="warm"]', { timeout: 15000 });
    await warm.click('[data-target="warm"]');
    await warm.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
    await sleep(3000); // its first picture encoded, refined and in a fragment
  }
  const rssBefore = rssKiB(gwPid);

  const env = { ...process.env, DISPLAY: desktop.display };
  const xdo = (...args) => promisify(execFile)('xdotool', args, { env });
  // The terminal covers most of the screen, as an admin's would; keyboard focus follows the
  // pointer (no window manager), which stays in its top-left corner, away from the other window.
  let xterm = null;
  for (let i = 0; i < 50 && !xterm; i++) {
    try { xterm = desktop.xdotool('search', '--name', 'portcullis-xterm').trim().split('\n')[0]; } catch { await sleep(100); }
  }
  if (!xterm) throw new Error('no xterm on the desktop');
  await xdo('windowmove', xterm, '20', '20');
  await xdo('windowsize', xterm, String(W - 160), String(Ht - 120));
  await xdo('mousemove', '60', '60');
  await sleep(500);

  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  const closeCtx = onCleanup(() => ctx.close());
  const page = await ctx.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await H.uiLogin(page, gw.base, USER, USER_PW);
  await page.waitForSelector(`[data-target="${TARGET}"]`, { timeout: 15000 });
  await page.click(`[data-target="${TARGET}"]`);
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  const sessionId = await page.evaluate(() => window.__portcullis.sessionId);
  const live = await admin.get(`/recordings/${sessionId}`);
  if (live.status !== 200) throw new Error(`recording of ${sessionId}: ${live.status} ${live.text}`);
  const startedAt = live.json.recording.started_at_ms;
  const recDir = join(gw.dir, 'data/recordings', sessionId);
  let tid = null;
  for (let i = 0; i < 50 && !tid; i++) {
    tid = threadsNamed(gwPid, `record-${sessionId.slice(0, 8)}`)[0] ?? null;
    if (!tid) await sleep(100);
  }
  if (!tid) throw new Error(`no recorder thread record-${sessionId.slice(0, 8)} in the gateway`);
  await page.focus('#session-canvas');
  const type = async (text, delay = 70) => {
    await page.keyboard.type(text, { delay });
  };
  const enter = () => page.keyboard.press('Enter');
  await type('clear');
  await enter();
  await sleep(3000); // the first keyframe and the clear are not part of the measured work

  const x11vncPid = pidOf(desktop, 'x11vnc');
  const snap = () => ({
    t: Date.now(),
    rec: threadCpu(gwPid, tid),
    gw: processCpu(gwPid),
    x11vnc: x11vncPid ? processCpu(x11vncPid) : null,
    bytes: dirBytes(recDir),
  });
  // Per second: the recorder thread's share of one core.
  const perSecond = [];
  const rssPerSecond = [];
  let phase = 'active';
  let prev = { t: Date.now(), rec: threadCpu(gwPid, tid) };
  const sampler = setInterval(() => {
    const now = { t: Date.now(), rec: threadCpu(gwPid, tid) };
    if (now.rec !== null && prev.rec !== null) perSecond.push({ phase, pct: ((now.rec - prev.rec) / ((now.t - prev.t) / 1000)) * 100 });
    // The gateway's resident memory each second: one reading at the end of a phase moves by
    // a few MiB with whatever was freed last (transients of the live view, the allocators).
    const rss = rssKiB(gwPid);
    if (rss !== null) rssPerSecond.push({ phase, kib: rss });
    prev = now;
  }, 1000);
  const stopSampler = onCleanup(() => clearInterval(sampler));

  // ---- the scripted work --------------------------------------------------------------------
  const a0 = snap();
  prev = { t: a0.t, rec: a0.rec };
  const until = a0.t + ACTIVE_S * 1000;
  const steps = [];
  let screenshot = null;
  let typedShot = null;
  let second = null;
  const script = [
    ['type: ls', async () => { await type('ls -la /usr/bin | head -45'); await enter(); await sleep(1500); }],
    ['type: ps', async () => { await type('ps aux | head -30'); await enter(); await sleep(1500); }],
    ['type: a line, no output', async () => {
      await type('# rotate the backups before the maintenance window tonight, then check the mounts', 80);
      await sleep(500);
      if (!typedShot) {
        // After typing (first round): the line stays on screen 2.5 s (x11vnc's polling and the
        // gateway deliver it well within that), then the screen is taken for the OCR step.
        await sleep(2000);
        const t = Date.now();
        typedShot = { t, recT: t - startedAt, png: desktop.screenshot() };
        await sleep(500);
      }
      await page.keyboard.press('Control+u');
      await sleep(500);
    }],
    ['window: open, move, close', async () => {
      const geom = `80x24+${Math.round(W * 0.45)}+${Math.round(Ht * 0.3)}`;
      second = spawn('xterm', ['-geometry', geom, '-bg', '#ffffe0', '-fa', 'Monospace', '-fs', '11', '-T', 'bench-second', '-hold', '-e', 'sh', '-c', 'ls -la /etc | head -40; uptime'], { env, stdio: 'ignore', detached: true });
      const proc = second;
      const stop = onCleanup(async () => killTree(proc, 'SIGKILL'), () => killTree(proc, 'SIGKILL'));
      let id = null;
      for (let i = 0; i < 30 && !id; i++) {
        await sleep(100);
        try { id = (await xdo('search', '--name', 'bench-second')).stdout.trim().split('\n')[0]; } catch { /* not yet */ }
      }
      await sleep(800);
      if (id) {
        let x = Math.round(W * 0.45);
        let y = Math.round(Ht * 0.3);
        for (let i = 0; i < 30; i++) {
          const dir = i < 15 ? 1 : -1;
          x += 14 * dir;
          y += 6 * dir;
          await xdo('windowmove', id, String(x), String(y));
          await sleep(100);
        }
      }
      await sleep(1000);
      await stop();
      await sleep(500);
    }],
    ['scroll: seq', async () => { await type('seq 1 20000'); await enter(); await sleep(2000); }],
    ['scroll: pager', async () => {
      await type('ls -la /usr/lib/x86_64-linux-gnu /usr/share/doc | less');
      await enter();
      await sleep(800);
      for (let i = 0; i < 6; i++) { await page.keyboard.press('PageDown'); await sleep(600); }
      for (let i = 0; i < 15; i++) { await page.keyboard.press('j'); await sleep(120); }
      await page.keyboard.press('q');
      await sleep(500);
    }],
    ['type: cpuinfo (screenshot)', async () => {
      await type('clear; head -45 /proc/cpuinfo');
      await enter();
      // Static from here: x11vnc (polling the screen) and the gateway can take a second or more
      // to deliver a whole-screen change on this machine, so the screenshot waits 4 s.
      await sleep(screenshot ? 1500 : 4000);
      if (!screenshot) {
        const t = Date.now();
        const png = desktop.screenshot();
        screenshot = { t, recT: t - startedAt, png };
        await sleep(500);
      }
    }],
    ['scroll: xterm scrollback', async () => {
      for (let i = 0; i < 4; i++) { await page.keyboard.press('Shift+PageUp'); await sleep(300); }
      for (let i = 0; i < 4; i++) { await page.keyboard.press('Shift+PageDown'); await sleep(300); }
    }],
    ['type: df', async () => { await type('df -h; free -m; uname -a'); await enter(); await sleep(1500); }],
  ];
  log(`${geometry}: ${ACTIVE_S} s of scripted work (session ${sessionId})…`);
  for (let i = 0; Date.now() < until; i++) {
    const [name, run] = script[i % script.length];
    const t = Date.now();
    const c = threadCpu(gwPid, tid);
    await run();
    steps.push({ name, from: t - startedAt, to: Date.now() - startedAt, seconds: round((Date.now() - t) / 1000, 1), recorderCpuS: threadCpu(gwPid, tid) - c });
  }
  await type('clear');
  await enter();
  const a1 = snap();
  const rssActive = rssKiB(gwPid);
  phase = 'idle';
  log(`${geometry}: ${IDLE_S} s idle…`);
  // The first seconds of idle still carry the last change (its refinement, the fragment that
  // settles it): "steady idle" starts after them.
  const settleS = Math.min(10, IDLE_S / 2);
  await sleep(settleS * 1000);
  const s1 = snap();
  await sleep((IDLE_S - settleS) * 1000);
  const i1 = snap();
  const rssIdle = rssKiB(gwPid);
  await stopSampler();

  // ---- the end of the session: the recording closes ------------------------------------------
  await closeCtx();
  let detail = null;
  for (let i = 0; i < 100; i++) {
    const r = await admin.get(`/recordings/${sessionId}`);
    if (r.status === 200 && r.json.recording.state !== 'recording') { detail = r.json; break; }
    await sleep(200);
  }
  if (!detail) throw new Error(`the recording ${sessionId} did not close`);
  const { segments, otherLines, otherBytes } = readManifest(recDir);
  const files = dirBytes(recDir);
  const rel = (s) => s.t - startedAt;
  const phaseOf = (from, to, secs, cpu) => {
    const sums = segmentSums(segments, rel(from), rel(to));
    const perHour = (b) => round((b * 3600) / secs, 0);
    return {
      seconds: round(secs, 1),
      ...sums,
      bytesPerHour: perHour(sums.allBytes),
      videoBytesPerHour: perHour(sums.videoBytes),
      manifestBytesPerHour: perHour(sums.manifestBytes),
      fileGrowthBytes: to.bytes.total - from.bytes.total,
      recorderCpuSeconds: round(cpu.rec, 3),
      recorderCpuPct: round((cpu.rec / secs) * 100, 2),
      recorderCpuPctPerSecond: stats(perSecond.filter((p) => p.phase === cpu.phase).map((p) => p.pct)),
      gatewayCpuPct: round((cpu.gw / secs) * 100, 2),
      x11vncCpuPct: cpu.x11vnc === null ? null : round((cpu.x11vnc / secs) * 100, 2),
    };
  };
  const cpuOf = (from, to, ph) => ({ phase: ph, rec: to.rec - from.rec, gw: to.gw - from.gw, x11vnc: from.x11vnc === null ? null : to.x11vnc - from.x11vnc });
  const active = phaseOf(a0, a1, (a1.t - a0.t) / 1000, cpuOf(a0, a1, 'active'));
  const idle = phaseOf(a1, i1, (i1.t - a1.t) / 1000, cpuOf(a1, i1, 'idle'));
  const steadyIdle = phaseOf(s1, i1, (i1.t - s1.t) / 1000, cpuOf(s1, i1, 'idle'));
  const durationS = detail.recording.duration_ms / 1000;
  const setup = segmentSums(segments, 0, rel(a0));
  // Per kind of work: recording bytes (segments starting during its steps) and recorder CPU.
  const byStep = {};
  for (const st of steps) {
    const k = (byStep[st.name] ??= { runs: 0, seconds: 0, bytes: 0, videoBytes: 0, recorderCpuS: 0 });
    const sums = segmentSums(segments, st.from, st.to);
    k.runs += 1;
    k.seconds += st.seconds;
    k.bytes += sums.allBytes;
    k.videoBytes += sums.videoBytes;
    k.recorderCpuS += st.recorderCpuS;
  }
  for (const k of Object.values(byStep)) {
    k.seconds = round(k.seconds, 1);
    k.bytesPerHour = round((k.bytes * 3600) / k.seconds, 0);
    k.recorderCpuPct = round((k.recorderCpuS / k.seconds) * 100, 2);
    k.recorderCpuS = round(k.recorderCpuS, 3);
  }
  const result = {
    geometry,
    sessionId,
    steps,
    byStep,
    whereBytesGo: whereBytesGo(segments),
    active,
    idle,
    steadyIdle,
    mix: {
      activeShare: MIX,
      bytesPerHour: round(MIX * active.bytesPerHour + (1 - MIX) * idle.bytesPerHour, 0),
      videoBytesPerHour: round(MIX * active.videoBytesPerHour + (1 - MIX) * idle.videoBytesPerHour, 0),
      recorderCpuPct: round(MIX * active.recorderCpuPct + (1 - MIX) * idle.recorderCpuPct, 2),
    },
    measured: {
      seconds: durationS,
      bytes: files.total,
      files: files.files,
      bytesPerHour: round((files.total * 3600) / durationS, 0),
      videoBytes: Object.entries(files.files).filter(([k]) => k.startsWith('video-')).reduce((a, [, v]) => a + v, 0),
      sessionStart: setup,
      manifestOtherLines: otherLines,
      manifestOtherBytes: otherBytes,
    },
    keySegmentBytes: segments.filter((s) => s.key).map((s) => s.video),
    // The whole session's (recorder, live viewer, adapter), at the end of the active phase.
    gatewayRssAddedMiB: rssBefore && rssActive ? round((rssActive - rssBefore) / 1024, 1) : null,
    // Each second of the active phase (p50 and max), the same baseline.
    gatewayRssAddedActiveMiB: rssBefore ? stats(rssPerSecond.filter((r) => r.phase === 'active').map((r) => (r.kib - rssBefore) / 1024)) : null,
    // The same, after the idle phase (a still screen lets go of its encoder after 60 s).
    gatewayRssIdleAddedMiB: rssBefore && rssIdle ? round((rssIdle - rssBefore) / 1024, 1) : null,
    // With the first session's one-time costs (the figure before December 6's second session).
    gatewayRssFirstSessionMiB: rssBase && rssActive ? round((rssActive - rssBase) / 1024, 1) : null,
    readability: null,
  };
  result.measured.videoBytesPerHour = round((result.measured.videoBytes * 3600) / durationS, 0);

  // The recording stays in benches/results/ (gitignored) for a look with ffplay or the player.
  const kept = join(RESULTS, `recording-${geometry}`);
  rmSync(kept, { recursive: true, force: true });
  cpSync(recDir, kept, { recursive: true });
  result.keptIn = kept;

  // ---- C. the recorded picture next to the screen ---------------------------------------------
  if (screenshot) result.readability = readability(geometry, screenshot, join(kept, 'video-1.mp4'), W, Ht);
  if (screenshot && typedShot && OCR) result.legibility = legibility(geometry, { page: screenshot, typing: typedShot }, join(kept, 'video-1.mp4'), W, Ht);

  await stopWarm();
  await stopGateway();
  await stopDesktop();
  log(`${geometry}: active ${mb(active.bytesPerHour)} MB/h, recorder ${active.recorderCpuPct}% of a core; idle ${mb(idle.bytesPerHour)} MB/h, ${idle.recorderCpuPct}%`);
  return result;
}

const mb = (b) => (b === null || b === undefined ? '–' : (b / 1e6).toFixed(2));

/**
 * The first row of pixels at or below `from` (within 40) that is blank in the `width` columns
 * from x = 24 of the screenshot `png` (the xterm's white between two text rows); `from` if none.
 */
function rowGap(png, width, from) {
  const rows = 40;
  const gray = execFileSync('ffmpeg', ['-v', 'error', '-i', png, '-vf', `crop=${width}:${rows}:24:${from},format=gray`, '-f', 'rawvideo', '-'], { maxBuffer: 16 << 20 });
  for (let y = 0; y < rows; y++) {
    const row = gray.subarray(y * width, (y + 1) * width);
    if (row.length === width && row.every((v) => v > 200)) return from + y;
  }
  return from;
}

/**
 * C2. OCR: the terminal's text in the screenshot and in the recorded frame of the same moment,
 * after a full-page change (`clear; head -45 /proc/cpuinfo`, its top lines) and after typing (the
 * typed line and the lines above it, at the terminal's bottom), read by tesseract (benches/ocr.mjs).
 */
function legibility(geometry, shots, video, W, Ht) {
  const cw = Math.min(1200, W - 200);
  const crops = {
    // Below the pointer (parked at 60,60; x11vnc draws it into the recorded picture only).
    page: () => `${cw}:480:24:84`,
    // The xterm spans 20..Ht-100; its last lines, from the first gap between two text rows at or
    // below that height (a crop through a row of text makes tesseract read noise on both sides).
    typing: (png) => `${cw}:200:24:${rowGap(png, cw, Ht - 100 - 204)}`,
  };
  const out = {};
  for (const [name, shot] of Object.entries(shots)) {
    const screenPng = join(RESULTS, `ocr-screen-${name}-${geometry}.png`);
    const framePng = join(RESULTS, `ocr-recorded-${name}-${geometry}.png`);
    writeFileSync(screenPng, shot.png);
    crops[name] = crops[name](screenPng);
    frameAt(video, (shot.recT / 1000).toFixed(3), framePng);
    out[name] = { atRecordingSeconds: round(shot.recT / 1000, 3), screenPng, framePng, ...ocrCompare(screenPng, framePng, crops[name]) };
    log(`${geometry}: OCR ${name}: ${out[name].matched} of the screen's ${out[name].words} words read in the recording (${round(out[name].accuracy, 3)})`);
  }
  const words = Object.values(out).reduce((a, x) => a + x.words, 0);
  const matched = Object.values(out).reduce((a, x) => a + x.matched, 0);
  out.accuracy = words ? round(matched / words, 3) : null;
  out.minAccuracy = round(Math.min(...Object.values(out).filter((x) => typeof x === 'object').map((x) => x.accuracy)), 3);
  return out;
}

/** Saves the screenshot and the recorded frame of the same moment, and compares them. */
function readability(geometry, shot, video, W, Ht) {
  mkdirSync(RESULTS, { recursive: true });
  const screenPng = join(RESULTS, `screen-${geometry}.png`);
  const framePng = join(RESULTS, `recorded-${geometry}.png`);
  const pairPng = join(RESULTS, `text-${geometry}.png`);
  writeFileSync(screenPng, shot.png);
  const t = (shot.recT / 1000).toFixed(3);
  // The frame on screen at t: resample the variable frame rate (tpad holds the last frame), then
  // trim. A plain -ss picks the first frame at or after t, which on an idle screen can be the next
  // change, seconds later.
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', video, '-vf', `tpad=stop_mode=clone:stop_duration=10,fps=50,trim=start=${t}`, '-frames:v', '1', framePng]);
  const parse = (text) => {
    const m = /PSNR y:([\d.inf]+) u:([\d.inf]+) v:([\d.inf]+) average:([\d.inf]+)/.exec(text);
    return m ? { y: Number(m[1]), u: Number(m[2]), v: Number(m[3]), average: Number(m[4]) } : null;
  };
  const toYuv = 'format=yuv444p';
  // ffmpeg's psnr filter, recorded frame against the screenshot (both RGB, compared in YUV).
  const run = (crop) => {
    const lavfi = `[0:v]${crop ? `${crop},` : ''}${toYuv}[a];[1:v]${crop ? `${crop},` : ''}${toYuv}[b];[a][b]psnr`;
    const r = spawnSync('ffmpeg', ['-v', 'info', '-nostats', '-i', framePng, '-i', screenPng, '-lavfi', lavfi, '-f', 'null', '-'], { encoding: 'utf8' });
    return parse(r.stderr || '') ?? { error: (r.stderr || '').slice(-300) };
  };
  // The terminal's text: its top-left 640×320 pixels, shown 2× enlarged, recorded above screen.
  const crop = 'crop=640:320:24:24';
  const whole = run(null);
  const text = run(crop);
  try {
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', framePng, '-i', screenPng, '-lavfi',
      `[0:v]${crop},scale=iw*2:ih*2:flags=neighbor[a];[1:v]${crop},scale=iw*2:ih*2:flags=neighbor[b];[a][b]vstack`, pairPng]);
  } catch (e) {
    log(`cannot write ${pairPng}: ${e.message}`);
  }
  // Mean absolute difference per channel (0–255) over the whole picture, in node.
  let mad = null;
  try {
    const a = execFileSync('ffmpeg', ['-v', 'error', '-i', framePng, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 64 << 20 });
    const b = execFileSync('ffmpeg', ['-v', 'error', '-i', screenPng, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 64 << 20 });
    if (a.length === b.length && a.length === W * Ht * 3) {
      let s = 0;
      let off = 0;
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i] - b[i]);
        s += d;
        if (d > 48) off++;
      }
      mad = { meanAbsDiff: round(s / a.length, 3), shareOver48: round((off / a.length) * 100, 3) };
    }
  } catch (e) {
    mad = { error: e.message };
  }
  return { atRecordingSeconds: Number(t), screenPng, framePng, pairPng, psnr: whole, psnrText: text, textCrop: crop, ...mad };
}

// ---- B. the one-hour recording ------------------------------------------------------------------
/** Writes the one-hour recording with the example (or reuses the cached one of the same binary). */
async function hourRecording() {
  if (!existsSync(HOUR_BIN)) throw new Error(`${HOUR_BIN} is missing: cargo build --release -p portcullis-recorder --example hour`);
  const binHash = createHash('sha256').update(readFileSync(HOUR_BIN)).digest('hex');
  const stampFile = join(HOUR_CACHE, 'stamp.json');
  const stamp = { binHash, args: HOUR_ARGS };
  if (!REGENERATE && existsSync(stampFile)) {
    try {
      const old = JSON.parse(readFileSync(stampFile, 'utf8'));
      if (old.binHash === binHash && JSON.stringify(old.args) === JSON.stringify(HOUR_ARGS) && existsSync(join(HOUR_CACHE, 'recordings', old.summary.id, 'manifest.jsonl'))) {
        log(`one-hour recording: reusing ${old.summary.id} (written ${new Date(old.writtenAt).toISOString()} by this same example binary; BENCH_REC_REGENERATE=1 writes it again)`);
        return { ...old.summary, cached: true, writtenAt: old.writtenAt };
      }
    } catch { /* write it again */ }
  }
  rmSync(HOUR_CACHE, { recursive: true, force: true });
  mkdirSync(join(HOUR_CACHE, 'recordings'), { recursive: true });
  deadline += HOUR_BUDGET_MS;
  log('one-hour recording: writing it (a few minutes on 2 cores; cached for the next runs)…');
  const t0 = Date.now();
  const p = spawn(HOUR_BIN, [join(HOUR_CACHE, 'recordings'), ...HOUR_ARGS], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const stop = onCleanup(async () => killTree(p, 'SIGKILL'), () => killTree(p, 'SIGKILL'));
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => { out += d; });
  let partial = '';
  p.stderr.on('data', (d) => {
    err += d;
    const lines = (partial + d).split('\n');
    partial = lines.pop();
    for (const l of lines) if (l.trim()) log(l.trim());
  });
  const code = await new Promise((res) => p.on('exit', (c) => res(c)));
  await stop();
  if (code !== 0) throw new Error(`the hour example failed (${code}): ${err.slice(-2000)}`);
  const summary = JSON.parse(out);
  summary.whereBytesGo = whereBytesGo(readManifest(join(HOUR_CACHE, 'recordings', summary.id)).segments);
  const writtenAt = Date.now();
  writeFileSync(stampFile, JSON.stringify({ ...stamp, writtenAt, wallSeconds: (writtenAt - t0) / 1000, summary }, null, 1));
  return { ...summary, cached: false, writtenAt };
}

/** Opens the one-hour recording in the player and seeks by clicking the scrub bar. */
async function seekBench(hour, browser) {
  const dir = mkdtempSync(join(os.tmpdir(), 'pc-bench-rec-'));
  const rmDir = onCleanup(async () => rmSync(dir, { recursive: true, force: true }), () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'data/recordings'), { recursive: true });
  cpSync(join(HOUR_CACHE, 'recordings', hour.id), join(dir, 'data/recordings', hour.id), { recursive: true });
  const gw = await H.startGateway({ adminPassword: ADMIN_PW, dir });
  const gwPid = tcpListenPid(gw.port);
  const stopGateway = onCleanup(() => gw.stop({ keep: true }), () => { if (gwPid) try { process.kill(gwPid, 'SIGKILL'); } catch { /* gone */ } });
  const admin = gw.api();
  if ((await admin.login('admin', ADMIN_PW)).status !== 200) throw new Error('admin login failed');
  const d = await admin.get(`/recordings/${hour.id}`);
  if (d.status !== 200) throw new Error(`the gateway does not serve the one-hour recording: ${d.status} ${d.text}\n${gw.log()}`);
  const detail = d.json;
  const segs = detail.segments;
  const durationMs = segs.at(-1).end_ms;

  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  const closeCtx = onCleanup(() => ctx.close());
  const page = await ctx.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await H.uiLogin(page, gw.base, 'admin', ADMIN_PW);
  await page.waitForSelector('#nav-recordings', { timeout: 15000 });
  const tOpen = Date.now();
  await page.goto(`${gw.base}/#/recordings/${hour.id}`);
  await page.waitForFunction(() => window.__portcullis?.player?.ready, null, { timeout: 30000 });
  const readyMs = Date.now() - tOpen;
  await page.evaluate(() => {
    const video = document.querySelector('#player-video');
    video.pause();
    const b = {
      armed: false, t0: null, seeking: null, seeked: null, frame: null, mediaTime: null, bufferedAtClick: null, appendedAtClick: 0,
    };
    window.__seekBench = b;
    // Capturing on the document: runs before the scrub bar's own pointerup handler (the seek).
    document.addEventListener('pointerup', () => {
      if (!b.armed || b.t0 !== null) return;
      b.t0 = performance.now();
      const r = video.buffered;
      b.bufferedAtClick = Array.from({ length: r.length }, (_, i) => [r.start(i), r.end(i)]);
      b.appendedAtClick = window.__portcullis.player.segmentsAppended;
    }, true);
    video.addEventListener('seeking', () => {
      if (!b.armed || b.t0 === null || b.seeking !== null) return;
      b.seeking = performance.now();
      // The first frame presented after the seek started is the one at the new position.
      video.requestVideoFrameCallback((now, meta) => {
        if (!b.armed) return;
        b.frame = performance.now();
        b.mediaTime = meta.mediaTime;
      });
    });
    video.addEventListener('seeked', () => {
      if (b.armed && b.t0 !== null && b.seeked === null) b.seeked = performance.now();
    });
  });
  const bar = await page.locator('#player-scrub').boundingBox();
  if (!bar) throw new Error('no scrub bar');
  const keyBefore = (ms) => {
    let k = null;
    for (const s of segs) {
      if (s.start_ms > ms) break;
      if (s.key) k = s;
    }
    return k;
  };
  // A fixed pseudo-random sequence of positions, the same in every run.
  let seed = 12345;
  const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const samples = [];
  // Two ways of clicking, alternating: "click" moves the pointer and clicks at once (the second
  // video gets no head start); "point" rests the pointer there for DWELL_MS first, as a reviewer
  // does while reading the hover thumbnail.
  log(`seeks: ${SEEKS}× click at once and ${SEEKS}× point ${DWELL_MS} ms then click on the scrub bar of the ${Math.round(durationMs / 60000)}-minute recording…`);
  // Away from the bar between seeks: each seek starts with the pointer elsewhere.
  const away = { x: bar.x + bar.width / 2, y: bar.y - 200 };
  for (let i = 0; i < 2 * SEEKS; i++) {
    const mode = i % 2 === 0 ? 'click' : 'point';
    const f = 0.01 + rand() * 0.98;
    const x = bar.x + f * bar.width;
    const y = bar.y + bar.height / 2;
    await page.mouse.move(away.x, away.y);
    await page.evaluate(() => Object.assign(window.__seekBench, { armed: true, t0: null, seeking: null, seeked: null, frame: null, mediaTime: null }));
    if (mode === 'point') {
      // A pointer's way there (many moves; the second video seeks once it rests), then the rest.
      await page.mouse.move(x, y, { steps: 15 });
      await sleep(DWELL_MS);
    }
    await page.mouse.click(x, y);
    let r = null;
    try {
      await page.waitForFunction(() => {
        const b = window.__seekBench;
        const shown = window.__portcullis.player.shown.at(-1);
        return b.seeked !== null && (b.frame !== null || performance.now() - b.seeked > 2000) && shown?.shownAt != null;
      }, null, { timeout: 30000, polling: 20 });
      r = await page.evaluate(() => {
        const b = window.__seekBench;
        b.armed = false;
        const v = document.querySelector('#player-video');
        const shown = window.__portcullis.player.shown.at(-1);
        return { ...b, currentTime: v.currentTime, target: window.__portcullis.player.lastSeekTarget, appended: window.__portcullis.player.segmentsAppended - b.appendedAtClick, shownAt: shown.shownAt, via: shown.via };
      });
    } catch (e) {
      await page.evaluate(() => { window.__seekBench.armed = false; });
      samples.push({ i, mode, fraction: round(f, 4), error: e.message.split('\n')[0] });
      continue;
    }
    const targetMs = r.target * 1000;
    const key = keyBefore(targetMs);
    const buffered = (r.bufferedAtClick || []).some(([s, e]) => r.target >= s && r.target <= e);
    samples.push({
      i,
      mode,
      fraction: round(f, 4),
      // Click → the frame at the target on screen, through either video (what the reviewer sees).
      clickToShownMs: round(r.shownAt - r.t0, 1),
      shownVia: r.via,
      targetS: round(r.target, 3),
      shownS: round(r.mediaTime ?? r.currentTime, 3),
      bufferedBefore: buffered,
      clickToSeekedMs: round(r.seeked - r.t0, 1),
      // Click → the main video presents the frame (what it costs without the second video).
      clickToFrameMs: r.frame === null ? null : round(r.frame - r.t0, 1),
      segmentsAppended: r.appended,
      keySegmentStartS: key ? key.start_ms / 1000 : null,
      secondsFromKey: key ? round(r.target - key.start_ms / 1000, 1) : null,
    });
    await sleep(1000); // a reviewer looks at the picture before the next click
  }
  await closeCtx();
  await stopGateway();
  await rmDir();
  const ok = samples.filter((s) => !s.error);
  // Unbuffered seeks: time ≈ a + b × segments appended (least squares): b is what one more
  // segment between the key segment and the target costs.
  const fit = (() => {
    const pts = ok.filter((s) => !s.bufferedBefore && s.segmentsAppended > 0).map((s) => [s.segmentsAppended, s.clickToFrameMs ?? s.clickToSeekedMs]);
    if (pts.length < 3) return null;
    const n = pts.length;
    const mx = pts.reduce((a, [x]) => a + x, 0) / n;
    const my = pts.reduce((a, [, y]) => a + y, 0) / n;
    const sxx = pts.reduce((a, [x]) => a + (x - mx) ** 2, 0);
    const sxy = pts.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
    const b = sxx ? sxy / sxx : 0;
    return { msPerSegment: round(b, 1), msFixed: round(my - b * mx, 0) };
  })();
  const frameMs = ok.map((s) => s.clickToFrameMs ?? s.clickToSeekedMs);
  const cold = ok.filter((s) => !s.bufferedBefore);
  return {
    recording: hour.id,
    durationS: durationMs / 1000,
    segments: segs.length,
    keySegments: segs.filter((s) => s.key).length,
    playerReadyMs: readyMs,
    seeks: samples.length,
    failed: samples.length - ok.length,
    framesSeenByCallback: ok.filter((s) => s.clickToFrameMs !== null).length,
    dwellMs: DWELL_MS,
    // What the reviewer sees: click → the frame at the target on screen (either video), by way of
    // clicking; and how often the second video was first.
    shown: Object.fromEntries(['click', 'point'].map((m) => {
      const xs = ok.filter((s) => s.mode === m);
      return [m, { n: xs.length, clickToShownMs: stats(xs.map((s) => s.clickToShownMs)), viaAhead: xs.filter((s) => s.shownVia === 'ahead').length }];
    })),
    // The main video alone (as before the second video existed).
    clickToFrameMs: stats(frameMs),
    clickToSeekedMs: stats(ok.map((s) => s.clickToSeekedMs)),
    unbufferedFit: fit,
    unbuffered: { n: cold.length, clickToFrameMs: stats(cold.map((s) => s.clickToFrameMs ?? s.clickToSeekedMs)), segmentsAppended: stats(cold.map((s) => s.segmentsAppended)), secondsFromKey: stats(cold.map((s) => s.secondsFromKey)) },
    buffered: { n: ok.length - cold.length, clickToFrameMs: stats(ok.filter((s) => s.bufferedBefore).map((s) => s.clickToFrameMs ?? s.clickToSeekedMs)) },
    samples,
  };
}

// ---- main ---------------------------------------------------------------------------------------
async function main() {
  const started = Date.now();
  for (const [what, path] of [['gateway', process.env.PORTCULLIS_BIN], ...(PARTS.has('hour') ? [['hour example', HOUR_BIN]] : [])]) {
    if (!existsSync(path)) throw new Error(`${what} binary ${path} is missing (cargo xtask bench builds it)`);
  }
  for (const tool of ['ffmpeg', 'xdotool', 'xterm', 'import', 'ss', ...(OCR ? ['tesseract'] : [])]) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`]); } catch { throw new Error(`${tool} is missing`); }
  }
  mkdirSync(RESULTS, { recursive: true });
  const browser = await H.launchBrowser();
  const closeBrowser = onCleanup(() => browser.close());
  const chromium = browser.version();

  const real = [];
  if (PARTS.has('real')) for (const g of GEOMETRIES) real.push(await realSession(g, browser));

  const hour = PARTS.has('hour') ? await hourRecording() : null;
  const seek = hour && SEEKS > 0 ? await seekBench(hour, browser) : null;
  await closeBrowser();

  const r = {
    when: new Date().toISOString(),
    durationSeconds: round((Date.now() - started) / 1000, 1),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg().map((x) => round(x, 2)) },
    versions: { chromium, x11vnc: pkgVersion('x11vnc'), ffmpeg: pkgVersion('ffmpeg'), libx264: pkgVersion('libx264-164') },
    config: { geometries: GEOMETRIES, activeSeconds: ACTIVE_S, idleSeconds: IDLE_S, mix: MIX, seeks: SEEKS, recorder: hour?.recorder_config ?? null },
    goals: GOALS,
    real,
    hour,
    seek,
  };
  writeFileSync(OUT, JSON.stringify(r, null, 1));
  printReport(r);
  log(`results in ${OUT}`);
}

// ---- printing ----------------------------------------------------------------------------------
function printReport(r) {
  const f = (x, d = 1) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
  const row = (cells, widths) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  const out = [];
  out.push('');
  out.push(`Recording benchmark: ${r.machine.cpus} CPUs (${r.machine.model}), load ${r.machine.loadavg.join(' ')}; run took ${r.durationSeconds} s`);
  out.push(GW_CONFIG
    ? `real sessions' gateway configured with: ${JSON.stringify(GW_CONFIG)}; the example with RecorderConfig::default()`
    : 'recorder at its defaults: the gateway without a [recording] section; the example with RecorderConfig::default()');
  if (r.config.recorder) out.push(`   ${r.config.recorder}`);
  out.push('');
  if (r.real.length) out.push(`A. real sessions (x11vnc desktop → gateway → Chromium): ${r.config.activeSeconds} s of scripted admin work, then ${r.config.idleSeconds} s idle`);
  const w = [22, ...r.real.map(() => 13)];
  if (r.real.length) out.push(row(['', ...r.real.map((x) => x.geometry), r.real.length === 2 ? 'ratio' : ''], [...w, 7]));
  const line = (label, get, d = 2, ratio = true) => {
    if (!r.real.length) return;
    const v = r.real.map(get);
    const rt = r.real.length === 2 && ratio && v[0] ? f(v[1] / v[0], 2) : '';
    out.push(row([label, ...v.map((x) => f(x, d)), rt], [...w, 7]));
  };
  line('active MB/h (all)', (x) => x.active.bytesPerHour / 1e6);
  line('  video MB/h', (x) => x.active.videoBytesPerHour / 1e6);
  line('  manifest MB/h', (x) => x.active.manifestBytesPerHour / 1e6);
  line('  key segments', (x) => x.active.keySegments, 0, false);
  line('idle MB/h (all)', (x) => x.idle.bytesPerHour / 1e6);
  line('  steady (from 10 s in)', (x) => (x.steadyIdle ? x.steadyIdle.bytesPerHour / 1e6 : null));
  line('  video MB/h', (x) => x.idle.videoBytesPerHour / 1e6);
  line('  manifest MB/h', (x) => x.idle.manifestBytesPerHour / 1e6);
  line(`hour ${Math.round(r.config.mix * 100)}% active MB/h`, (x) => x.mix.bytesPerHour / 1e6);
  line('measured MB/h (raw)', (x) => x.measured.bytesPerHour / 1e6);
  line('recorder CPU active %', (x) => x.active.recorderCpuPct);
  line('  per-second p50 %', (x) => x.active.recorderCpuPctPerSecond.p50);
  line('  per-second p90 %', (x) => x.active.recorderCpuPctPerSecond.p90);
  line('recorder CPU idle %', (x) => x.idle.recorderCpuPct);
  line('  per-second p50 %', (x) => x.idle.recorderCpuPctPerSecond.p50);
  line('gateway CPU active %', (x) => x.active.gatewayCpuPct);
  line('gateway CPU idle %', (x) => x.idle.gatewayCpuPct);
  line('x11vnc CPU active %', (x) => x.active.x11vncCpuPct);
  line('frames active', (x) => x.active.frames, 0);
  line('gateway RSS added MiB', (x) => x.gatewayRssAddedMiB, 1);
  line('  each second active, p50', (x) => x.gatewayRssAddedActiveMiB?.p50, 1);
  line('  each second active, max', (x) => x.gatewayRssAddedActiveMiB?.max, 1);
  line('  after the idle phase', (x) => x.gatewayRssIdleAddedMiB, 1);
  line('  with one-time costs', (x) => x.gatewayRssFirstSessionMiB, 1);
  line('key segment KB (mean)', (x) => x.keySegmentBytes.reduce((a, b) => a + b, 0) / Math.max(1, x.keySegmentBytes.length) / 1000, 1);
  line('text PSNR dB', (x) => x.readability?.psnrText?.average, 1, false);
  line('screen PSNR dB', (x) => x.readability?.psnr?.average, 1, false);
  line('OCR words, page', (x) => x.legibility?.page?.words, 0, false);
  line('  read in recording', (x) => x.legibility?.page?.accuracy, 3, false);
  line('OCR words, typing', (x) => x.legibility?.typing?.words, 0, false);
  line('  read in recording', (x) => x.legibility?.typing?.accuracy, 3, false);
  for (const x of r.real) if (x.readability) out.push(`   ${x.geometry}: recorded text above the screen's in ${x.readability.pairPng}`);
  if (r.real.length) {
    out.push('');
    out.push('   by kind of work (segments starting during it): MB/h, recorder % of a core');
    const names = Object.keys(r.real[0].byStep);
    out.push(row(['', ...r.real.flatMap((x) => [`${x.geometry} MB/h`, 'CPU %'])], [28, ...r.real.flatMap(() => [16, 7])]));
    for (const n of names) {
      out.push(row([n, ...r.real.flatMap((x) => [f((x.byStep[n]?.bytesPerHour ?? null) / 1e6, 1), f(x.byStep[n]?.recorderCpuPct, 1)])], [28, ...r.real.flatMap(() => [16, 7])]));
    }
  }
  const wbg = (label, o) => {
    const kb = (x) => `${(x / 1e3).toFixed(0)} kB`;
    out.push(`   ${label}: key segments ${o.keySegments.n} × ${kb(o.keySegments.meanBytes ?? 0)} = ${f(o.keySegments.share * 100, 0)}%, changing ${f(o.changingSegments.share * 100, 0)}%, `
      + `idle-tick repeats still refining ${o.repeatRefining.n} = ${kb(o.repeatRefining.bytes)} (${f(o.repeatRefining.share * 100, 1)}%), plain repeats ${o.repeatPlain.n} × ${o.repeatPlain.meanBytes ?? 0} B, `
      + `manifest ${o.manifest.lines} × ${o.manifest.meanBytes} B = ${f(o.manifest.share * 100, 1)}%, thumbnails ${o.thumbnails.n} = ${f(o.thumbnails.share * 100, 1)}%`);
  };
  for (const x of r.real) wbg(`where the bytes go, ${x.geometry}`, x.whereBytesGo);
  out.push('');
  const h = r.hour;
  if (h) out.push(`B1. one-hour synthetic recording, ${h.width}x${h.height} (${h.cached ? 'cached' : 'written now'}, ${f(h.active_fraction * 100, 0)}% active; example hour.rs)`);
  if (h) out.push(`   total ${mb(h.total_bytes)} MB = ${mb(h.bytes_per_hour)} MB/h (video ${mb(h.video_bytes_per_hour)} MB/h); active stretches ${mb(h.active.bytes_per_hour)} MB/h, idle ${mb(h.idle.bytes_per_hour)} MB/h`);
  if (h?.whereBytesGo) wbg('where the bytes go', h.whereBytesGo);
  if (h?.encoder_parts) {
    const e = h.encoder_parts;
    out.push(`   libx264 at 1080p on one picture: IDR ${f(e.idr.ms)} ms ${f(e.idr.bytes / 1e3, 0)} kB; unchanged picture through encode ${f(e.same_picture_via_encode.ms)} ms `
      + `(colour conversion + x264), through repeat ${f(e.same_picture_via_repeat.ms)} ms ${f(e.same_picture_via_repeat.bytes, 0)} B (x264 only); thumbnail ${f(h.thumbnail_ms)} ms`);
  }
  if (h) out.push(`   recorder CPU ${f(h.recorder_cpu_pct_of_core, 2)}% of a core over the hour: active ${f(h.active.recorder_cpu_pct_of_core, 2)}%, idle ${f(h.idle.recorder_cpu_pct_of_core, 2)}%; ${h.frames} frames; key segments ${h.active.key_segments} in active time, ${h.idle.key_segments} in idle time (${mb(h.idle.key_segment_bytes)} MB)`);
  if (r.seek) {
    const s = r.seek;
    out.push('');
    out.push(`B2. seek in the one-hour recording: click on #player-scrub → first frame shown at the new position (${s.seeks} seeks, ${s.failed} failed)`);
    const goal = (ms) => `(goal p95 ≤ ${r.goals.seekP95Ms}: ${ms <= r.goals.seekP95Ms ? 'met' : 'MISSED'})`;
    if (s.shown) {
      const p = s.shown.point;
      const c = s.shown.click;
      out.push(`   point ${s.dwellMs} ms, then click (n=${p.n}): p50 ${f(p.clickToShownMs.p50, 0)} ms  p95 ${f(p.clickToShownMs.p95, 0)} ms  max ${f(p.clickToShownMs.max, 0)} ms, second video first in ${p.viaAhead}/${p.n}   ${goal(p.clickToShownMs.p95)}`);
      out.push(`   click at once (n=${c.n}):         p50 ${f(c.clickToShownMs.p50, 0)} ms  p95 ${f(c.clickToShownMs.p95, 0)} ms  max ${f(c.clickToShownMs.max, 0)} ms, second video first in ${c.viaAhead}/${c.n}   ${goal(c.clickToShownMs.p95)}`);
      out.push('   the main video alone (both ways of clicking):');
    }
    out.push(`   all        p50 ${f(s.clickToFrameMs.p50, 0)} ms  p95 ${f(s.clickToFrameMs.p95, 0)} ms  max ${f(s.clickToFrameMs.max, 0)} ms   ${s.shown ? '' : goal(s.clickToFrameMs.p95)}`);
    out.push(`   unbuffered n=${s.unbuffered.n}  p50 ${f(s.unbuffered.clickToFrameMs.p50, 0)} ms  p95 ${f(s.unbuffered.clickToFrameMs.p95, 0)} ms; segments fetched p50 ${f(s.unbuffered.segmentsAppended.p50, 0)}, target − key frame p50 ${f(s.unbuffered.secondsFromKey.p50, 0)} s`
      + (s.unbufferedFit ? `; ≈ ${s.unbufferedFit.msFixed} ms + ${s.unbufferedFit.msPerSegment} ms per segment` : ''));
    out.push(`   buffered   n=${s.buffered.n}  p50 ${f(s.buffered.clickToFrameMs.p50, 0)} ms  p95 ${f(s.buffered.clickToFrameMs.p95, 0)} ms; player ready after ${s.playerReadyMs} ms`);
  }
  out.push('');
  const big = r.real.find((x) => x.geometry === '1920x1080');
  if (big) {
    out.push('goals (1920x1080):');
    out.push(`   ≤ 5 MB/h: real ${r.config.mix * 100}% mix ${mb(big.mix.bytesPerHour)} MB/h ${big.mix.bytesPerHour <= r.goals.bytesPerHour1080p ? 'met' : 'MISSED'}; synthetic hour ${h ? `${mb(h.bytes_per_hour)} MB/h ${h.bytes_per_hour <= r.goals.bytesPerHour1080p ? 'met' : 'MISSED'}` : '–'}`);
    out.push(`   ≤ 25 MB/h active: ${mb(big.active.bytesPerHour)} MB/h ${big.active.bytesPerHour <= r.goals.activeBytesPerHour1080p ? 'met' : 'MISSED'}; ≤ 0.1 MB/h idle: ${mb(big.idle.bytesPerHour)} MB/h ${big.idle.bytesPerHour <= r.goals.idleBytesPerHour1080p ? 'met' : 'MISSED'}`
      + (big.steadyIdle ? ` (steady, from 10 s after the last change: ${mb(big.steadyIdle.bytesPerHour)} MB/h ${big.steadyIdle.bytesPerHour <= r.goals.idleBytesPerHour1080p ? 'met' : 'MISSED'})` : ''));
    out.push(`   ≤ 8% active: ${f(big.active.recorderCpuPct)}% ${big.active.recorderCpuPct <= r.goals.activeCpuPct ? 'met' : 'MISSED'}; ≤ 0.5% idle: ${f(big.idle.recorderCpuPct, 2)}% ${big.idle.recorderCpuPct <= r.goals.idleCpuPct ? 'met' : 'MISSED'}`);
    if (big.legibility) out.push(`   OCR legibility ≥ ${r.goals.legibility} of the screen's: page ${f(big.legibility.page?.accuracy, 3)}, typing ${f(big.legibility.typing?.accuracy, 3)} ${big.legibility.minAccuracy >= r.goals.legibility ? 'met' : 'MISSED'}`);
  }
  console.log(out.join('\n'));
}

try {
  await main();
} catch (e) {
  if (!interrupted) console.error(`\nrecording benchmark failed: ${e.stack || e.message}`);
  process.exitCode = 1;
} finally {
  await cleanup();
  clearInterval(watchdog);
}

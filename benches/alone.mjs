#!/usr/bin/env node
// Change → paint latency with each client ALONE on a fresh VNC desktop, on x11vnc and on TigerVNC
// (Xvnc): blocks of Portcullis-alone and noVNC-alone alternate on the same workload (a small
// square, a typed character, the whole background). A VNC server serving two clients at once
// paces them together, which hides what each client's request pattern costs on its own.
//
//   node benches/alone.mjs          (`cargo xtask bench latency` runs it after run.mjs)
//
// Environment:
//   PORTCULLIS_BIN      gateway binary (default target/release/portcullis)
//   BENCH_BEFORE_BIN    a second gateway binary (e.g. main's) measured in the same run as "before"
//   BENCH_NOREC         1: also the same gateway recording nothing, as "norec" (the recorder's cost)
//   BENCH_SERVERS       comma-separated: x11vnc,xvnc (default both)
//   BENCH_BLOCKS        blocks per client and server (default 4)
//   BENCH_BLOCK_SAMPLES changes per case in each block (default 12)
//   BENCH_SPACING_MS    minimum time between two changes (default 350; a random 0–150 ms is added)
//   BENCH_ALONE_OUT     JSON results (default benches/results/alone.json)
//
// See benches/README.md ("Each client alone").
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { installProbe } from './probe.mjs';
import {
  children, diffBox, hexRgb, inside, intEnv, killGroup, monoOffset, pkgVersion, rawShot, shuffle, startChild, startPoke,
} from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(root, 'target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');
const { sleep } = H;

const BLOCKS = intEnv('BENCH_BLOCKS', 4);
const PER_CASE = intEnv('BENCH_BLOCK_SAMPLES', 12);
const SPACING_MS = intEnv('BENCH_SPACING_MS', 350);
const JITTER_MS = 150;
const SAMPLE_TIMEOUT_MS = 3000;
const SERVERS = (process.env.BENCH_SERVERS || 'x11vnc,xvnc').split(',').map((s) => s.trim()).filter(Boolean);
const OUT = resolve(process.env.BENCH_ALONE_OUT || join(here, 'results/alone.json'));
const NOVNC_DIR = '/usr/share/novnc';
const GOALS = { largeAddedP50Ms: 5, largeAddedP99Ms: 30, smallAndTypingRatio: 1.0 };
const ADMIN_PW = 'admin-password-bench';
const USER = 'bench';
const USER_PW = 'bench-password-1234';
const VNC_PW = 'vncbench';
const W = 1280;
const H_ = 800;
const CASES = ['small', 'typing', 'large'];
const log = (...a) => console.error('[alone]', ...a);

// ---- cleanup ----------------------------------------------------------------------------------
const cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch (e) { log('cleanup:', e.message); }
  }
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => { log(`${sig}: stopping everything`); await cleanup(); process.exit(130); });
}
process.on('exit', () => { for (const p of children) killGroup(p, 'SIGKILL'); });

// ---- statistics -------------------------------------------------------------------------------
function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const r2 = (x) => (x === null || x === undefined ? null : Math.round(x * 100) / 100);
function stats(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { n: 0 };
  return { n: v.length, min: r2(v[0]), p50: r2(pct(v, 50)), p90: r2(pct(v, 90)), p99: r2(pct(v, 99)), max: r2(v.at(-1)) };
}

// ---- X helpers --------------------------------------------------------------------------------
function xtermGeometry(desktop) {
  let id = null;
  // Up to 15 s: a loaded machine starts the xterm late.
  for (let i = 0; i < 150 && !id; i++) {
    try { id = desktop.xdotool('search', '--name', 'portcullis-xterm').trim().split('\n')[0]; } catch { execFileSync('sleep', ['0.1']); }
  }
  if (!id) throw new Error('no xterm window on the desktop');
  // Until the xterm has its final size (it maps small first on a loaded machine).
  for (let i = 0; ; i++) {
    const g = Object.fromEntries(desktop.xdotool('getwindowgeometry', '--shell', id).trim().split('\n').map((l) => l.split('=')));
    const geo = { id, x: Number(g.X), y: Number(g.Y), w: Number(g.WIDTH), h: Number(g.HEIGHT) };
    if (geo.w > 200 || i >= 100) return geo;
    execFileSync('sleep', ['0.1']);
  }
}

// ---- one block: a fresh desktop, one client, the three cases ----------------------------------
/**
 * Runs PER_CASE changes of each case (shuffled) on a fresh desktop of `server` with one client
 * connected (`connectClient(desktop)` returns { page, close }). Returns the samples.
 */
async function block(server, browser, connectClient) {
  const desktop = await H.startDesktop(VNC_PW, `${W}x${H_}`, server);
  const poke = startPoke(desktop.display, startChild);
  let client = null;
  try {
    const xdo = (...args) => promisify(execFile)('xdotool', args, { env: { ...process.env, DISPLAY: desktop.display } });
    const geo = xtermGeometry(desktop);
    const POINTER = [geo.x + Math.min(400, geo.w - 20), geo.y + Math.min(300, geo.h - 20)];
    await poke(`move ${POINTER[0]} ${POINTER[1]}`);
    const xtermRect = { x: geo.x, y: geo.y, w: geo.w, h: geo.h };
    const below = H_ - (geo.y + geo.h);
    const SQ = below >= 40
      ? { x: W - 120, y: geo.y + geo.h + Math.floor((below - 24) / 2), w: 24, h: 24 }
      : { x: geo.x + geo.w + Math.floor((W - geo.x - geo.w - 24) / 2), y: H_ - 120, w: 24, h: 24 };
    const sqPts = [[SQ.x + 3, SQ.y + 3], [SQ.x + SQ.w - 4, SQ.y + SQ.h - 4], [SQ.x + 12, SQ.y + 12]];
    const bgPts = [[W - 3, 3], [W - 3, H_ - 3], [3, H_ - 3], [3, 3], [W / 2, H_ - 3], [W - 3, H_ / 2]];
    for (const p of [...sqPts, ...bgPts]) {
      if (inside(p, xtermRect)) throw new Error(`watched pixel ${p} is covered by the xterm ${JSON.stringify(xtermRect)}`);
    }
    // The typing row (diff of two screenshots), before any client is connected.
    const clip = { x: geo.x, y: geo.y, w: Math.min(geo.w, W - geo.x), h: Math.min(geo.h, H_ - geo.y) };
    let box = null;
    // A loaded machine may start the xterm's shell late: try a few times.
    for (let attempt = 1; attempt <= 4 && !box; attempt++) {
      await xdo('key', 'ctrl+u');
      await xdo('key', 'ctrl+l');
      await sleep(400 * attempt);
      const shotA = rawShot(desktop.display);
      await poke('key 0x78');
      await sleep(400 * attempt);
      box = diffBox(shotA, rawShot(desktop.display), W, clip);
    }
    if (!box) throw new Error('typing into the xterm changed nothing on the display (keyboard focus?)');
    const band = { x: clip.x, y: Math.max(clip.y, box.y0 - 1), w: clip.w, h: Math.min(box.y1 - box.y0 + 3, clip.y + clip.h - box.y0 + 1) };

    client = await connectClient(desktop, browser);
    const { page } = client;
    // The page's clock and xpoke's both monotonic (the wall clock is slewed here).
    const offset = await monoOffset(page);
    await sleep(800);

    const plan = [];
    for (let i = 0; i < PER_CASE; i++) plan.push(...shuffle([...CASES]));
    const samples = [];
    let small = 0; let large = 0; let typed = 1;
    for (let id = 1; id <= plan.length; id++) {
      const kind = plan[id - 1];
      let spec; let cmd;
      if (kind === 'small') {
        const c = small++ % 2 ? '00c0ff' : 'ff8000';
        spec = { id, mode: 'color', pts: sqPts, rgb: hexRgb(c), tol: 24 };
        cmd = `fill ${SQ.x} ${SQ.y} ${SQ.w} ${SQ.h} ${c}`;
      } else if (kind === 'large') {
        const c = large++ % 2 ? '206040' : '602040';
        spec = { id, mode: 'color', pts: bgPts, rgb: hexRgb(c), tol: 24 };
        cmd = `bg ${c}`;
      } else {
        if (typed >= 60) {
          await xdo('key', 'ctrl+u');
          typed = 0;
          await sleep(SPACING_MS);
        }
        spec = { id, mode: 'diff', band, thr: 48 };
        cmd = `key ${0x61 + (typed++ % 26)}`;
      }
      await page.evaluate((s) => window.__bench.arm(s), spec);
      const waiting = page.evaluate(([i, ms]) => window.__bench.wait(i, ms), [id, SAMPLE_TIMEOUT_MS]);
      const tNode = Date.now();
      const { m0 } = await poke(cmd);
      const r = await waiting;
      samples.push({ kind, paint: r ? r.paint + offset - m0 : null });
      const wait = tNode + SPACING_MS + Math.random() * JITTER_MS - Date.now();
      if (wait > 0) await sleep(wait);
    }
    return samples;
  } finally {
    if (client) await client.close().catch(() => {});
    await poke.stop();
    desktop.stop();
  }
}

async function newPage(browser) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  await page.addInitScript(installProbe);
  page.on('pageerror', (e) => log('page error:', e.message));
  return page;
}

/** A client of the gateway `gw`: adds the desktop as a target, opens it in the UI. */
function viaGateway(gw, admin) {
  let n = 0;
  return async (desktop, browser) => {
    const target = `desk${++n}`;
    const must = async (p, want) => {
      const r = await p;
      if (r.status !== want) throw new Error(`gateway API answered ${r.status}: ${r.text}\n${gw.log()}`);
    };
    await must(admin.post('/targets', { name: target, address: desktop.address, password: VNC_PW, description: 'alone benchmark' }), 201);
    await must(admin.post('/grants', { user: USER, target }), 201);
    const page = await newPage(browser);
    await H.uiLogin(page, gw.base, USER, USER_PW);
    await page.waitForSelector(`[data-target="${target}"]`, { timeout: 15000 });
    await page.click(`[data-target="${target}"]`);
    await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
    await page.evaluate(() => { window.__bench.selector = '#session-canvas'; });
    return { page, close: () => page.context().close() };
  };
}

/** noVNC + websockify straight to the desktop. */
async function viaNovnc(desktop, browser) {
  const wsPort = await H.freePort();
  const wsp = startChild('websockify', ['--web', NOVNC_DIR, `127.0.0.1:${wsPort}`, desktop.address]);
  try {
    await H.waitForPort(wsPort, 20000);
    const page = await newPage(browser);
    const q = new URLSearchParams({ host: '127.0.0.1', port: String(wsPort), password: VNC_PW, view_only: '1' });
    await page.goto(`http://127.0.0.1:${wsPort}/vnc_lite.html?${q}`);
    await page.waitForFunction(([w, h]) => [...document.querySelectorAll('#screen canvas')].some((c) => c.width === w && c.height === h), [W, H_], { timeout: 20000 });
    await page.evaluate(([w, h]) => {
      const c = [...document.querySelectorAll('#screen canvas')].find((x) => x.width === w && x.height === h);
      c.dataset.benchScreen = '1';
      window.__bench.selector = 'canvas[data-bench-screen]';
    }, [W, H_]);
    return { page, close: async () => { await page.context().close(); await wsp.stop(); } };
  } catch (e) {
    await wsp.stop();
    throw new Error(`${e.message}\nwebsockify: ${wsp.output.join('')}`);
  }
}

async function startGateway(bin, { norec = false } = {}) {
  // The harness reads PORTCULLIS_BIN when loaded; a second binary gets its own harness instance.
  const harness = bin === process.env.PORTCULLIS_BIN
    ? H
    : await (async () => {
      const saved = process.env.PORTCULLIS_BIN;
      process.env.PORTCULLIS_BIN = bin;
      const m = await import(`../web/e2e/harness.mjs?bin=${encodeURIComponent(bin)}`);
      process.env.PORTCULLIS_BIN = saved;
      return m;
    })();
  const gw = await harness.startGateway({ adminPassword: ADMIN_PW, extraConfig: norec ? '[recording]\nenabled = false\n' : '' });
  cleanups.push(() => gw.stop());
  const admin = gw.api();
  const r = await admin.login('admin', ADMIN_PW);
  if (r.status !== 200) throw new Error(`admin login: ${r.status}`);
  if (norec) {
    // The shipped policy requires recording: the rule must make it optional.
    const doc = (await admin.get('/policy')).json.policy;
    doc.rules[0].recording = 'optional';
    const p = await H.request(gw.base, 'PUT', '/api/v1/policy', { body: doc, headers: { cookie: admin.cookie, 'x-portcullis-csrf': '1' } });
    if (p.status !== 200) throw new Error(`policy: ${p.status} ${p.text}`);
  }
  const u = await admin.post('/users', { name: USER, password: USER_PW, role: 'user' });
  if (u.status !== 201) throw new Error(`user: ${u.status} ${u.text}`);
  return viaGateway(gw, admin);
}

async function main() {
  const started = Date.now();
  for (const b of [process.env.PORTCULLIS_BIN, process.env.BENCH_BEFORE_BIN].filter(Boolean)) {
    if (!existsSync(b)) throw new Error(`no gateway binary at ${b}`);
  }
  if (!existsSync(join(NOVNC_DIR, 'vnc_lite.html'))) throw new Error(`noVNC not found in ${NOVNC_DIR} (Debian package novnc)`);
  const clients = { portcullis: await startGateway(process.env.PORTCULLIS_BIN) };
  if (process.env.BENCH_BEFORE_BIN) clients.before = await startGateway(resolve(process.env.BENCH_BEFORE_BIN));
  // The same gateway recording nothing: what the recorder costs the live path.
  if (process.env.BENCH_NOREC === '1') clients.norec = await startGateway(process.env.PORTCULLIS_BIN, { norec: true });
  clients.novnc = viaNovnc;
  const names = Object.keys(clients);
  const browser = await H.launchBrowser();
  cleanups.push(() => browser.close());
  log(`clients ${names.join(', ')}; servers ${SERVERS.join(', ')}; ${BLOCKS} blocks × ${PER_CASE} changes per case`);

  const servers = {};
  for (const server of SERVERS) {
    const samples = Object.fromEntries(names.map((n) => [n, []]));
    for (let b = 0; b < BLOCKS; b++) {
      // Alternate the order so that neither client always goes first.
      const order = b % 2 ? [...names].reverse() : names;
      for (const name of order) {
        let s;
        try {
          s = await block(server, browser, clients[name]);
        } catch (e) {
          // A desktop that came up badly (loaded machine): one more try on a fresh one.
          log(`${server} block ${b + 1} ${name} failed (${e.message.split('\n')[0]}); retrying once`);
          s = await block(server, browser, clients[name]).catch((again) => {
            log(`${server} block ${b + 1} ${name} failed again (${again.message.split('\n')[0]}); skipped`);
            return [];
          });
        }
        samples[name].push(...s);
        const missed = s.filter((x) => x.paint === null).length;
        log(`${server} block ${b + 1}/${BLOCKS} ${name}: p50 ${CASES.map((k) => `${k} ${stats(s.filter((x) => x.kind === k).map((x) => x.paint)).p50}`).join(', ')}${missed ? ` (${missed} missed)` : ''}`);
      }
    }
    const byCase = {};
    for (const kind of CASES) {
      const st = {};
      for (const n of names) st[n] = stats(samples[n].filter((x) => x.kind === kind).map((x) => x.paint));
      for (const n of names) st[`${n}Missed`] = samples[n].filter((x) => x.kind === kind && x.paint === null).length;
      for (const n of names.filter((x) => x !== 'novnc')) {
        st[`${n}RatioP50`] = st[n].p50 && st.novnc.p50 ? r2(st[n].p50 / st.novnc.p50) : null;
        st[`${n}RatioP99`] = st[n].p99 && st.novnc.p99 ? r2(st[n].p99 / st.novnc.p99) : null;
        // Alone, no change is seen by both: the gateway's share is the difference of the
        // distributions, percentile by percentile.
        st[`${n}AddedP50`] = st[n].p50 != null && st.novnc.p50 != null ? r2(st[n].p50 - st.novnc.p50) : null;
        st[`${n}AddedP99`] = st[n].p99 != null && st.novnc.p99 != null ? r2(st[n].p99 - st.novnc.p99) : null;
      }
      byCase[kind] = st;
    }
    servers[server] = byCase;
  }

  const result = {
    date: new Date().toISOString(),
    durationSeconds: r2((Date.now() - started) / 1000),
    machine: { cpus: os.cpus().length, loadavg: os.loadavg().map(r2) },
    config: { blocks: BLOCKS, perCasePerBlock: PER_CASE, spacingMs: SPACING_MS, gatewayBin: process.env.PORTCULLIS_BIN, beforeBin: process.env.BENCH_BEFORE_BIN || null },
    versions: { novnc: pkgVersion('novnc'), x11vnc: pkgVersion('x11vnc'), tigervnc: pkgVersion('tigervnc-standalone-server'), chromium: browser.version() },
    goals: GOALS,
    servers,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  const out = ['', `Each client alone on a fresh desktop (change → paint, ms; ${BLOCKS} blocks × ${PER_CASE} per case per client)`];
  for (const [server, byCase] of Object.entries(servers)) {
    out.push(`  ${server}:`);
    for (const [kind, st] of Object.entries(byCase)) {
      const parts = names.map((n) => `${n} ${st[n].p50}/${st[n].p99}`);
      const rel = names.filter((n) => n !== 'novnc').map((n) => `${n}/noVNC ${st[`${n}RatioP50`]}× (p99 ${st[`${n}RatioP99`]}×), added ${st[`${n}AddedP50`]}/${st[`${n}AddedP99`]}`);
      out.push(`    ${kind.padEnd(7)} p50/p99: ${parts.join(', ')}; ${rel.join('; ')}`);
    }
  }
  out.push(`  goals: large added p50 ≤ ${GOALS.largeAddedP50Ms}, p99 ≤ ${GOALS.largeAddedP99Ms}; small and typing ≤ ${GOALS.smallAndTypingRatio}× noVNC`);
  console.log(out.join('\n'));
  console.log(`\nresults written to ${OUT}`);
}

try {
  await main();
} finally {
  await cleanup();
}

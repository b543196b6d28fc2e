#!/usr/bin/env node
// Bytes benchmark: what the page receives over its WebSocket for one scripted workload, through
// the gateway alone and through noVNC + websockify alone, each on a fresh VNC desktop, for
// x11vnc (fixtures/vnc-desktop.sh) and TigerVNC (fixtures/xvnc-desktop.sh). The workload is
// driven on the X display with xdotool (the clients only watch), in phases:
//
//   connect     the first full picture
//   typing      2000 characters typed into the xterm (29 comment lines of 68 characters + Enter)
//   seq         `seq 1 3000` scrolling through the xterm
//   move        the xterm moved 80 steps of (+4, +3) pixels with `xdotool windowmove --sync`
//   background  a second xterm running `top -d 0.5` for 10 s, then closed
//
// Each phase ends once the page has received nothing for QUIET_MS. At the end the canvas is
// compared with a screenshot of the X display (`import -window root`): a client that skipped
// updates would look cheap, so the share of differing pixels is printed beside the bytes.
//
// usage: PORTCULLIS_BIN=target/release/portcullis node benches/bytes.mjs
//   (or `cargo xtask bench bytes`); BENCH_SERVERS=x11vnc,xvnc  BENCH_CLIENTS=portcullis,novnc
//   BENCH_OUT=benches/results/bytes.json. BENCH_BEFORE_BIN=another gateway build adds a "before"
//   client (that build, alone, same workload) for before/after figures from one run.
//   Needs Debian's novnc and websockify.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installProbe } from './probe.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
process.env.PORTCULLIS_BIN ||= join(root, 'target/release/portcullis');
const H = await import('../web/e2e/harness.mjs');
const { sleep } = H;

const NOVNC_DIR = '/usr/share/novnc';
const OUT = resolve(process.env.BENCH_OUT || join(here, 'results/bytes.json'));
const SERVERS = (process.env.BENCH_SERVERS || 'x11vnc,xvnc').split(',');
const BEFORE_BIN = process.env.BENCH_BEFORE_BIN || null;
const CLIENTS = (process.env.BENCH_CLIENTS || `portcullis,novnc${BEFORE_BIN ? ',before' : ''}`).split(',');
const QUIET_MS = 1500;
const W = 1280;
const H_ = 800;
const ADMIN_PW = 'admin-password-bench';
const USER = 'bench';
const USER_PW = 'bench-password-1234';
const VNC_PW = 'vncbench';
const PHASES = ['connect', 'typing', 'seq', 'move', 'background'];

const log = (...a) => console.error('[bytes]', ...a);

const cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch (e) { log('cleanup:', e.message); }
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => { await cleanup(); process.exit(130); });
}

function startChild(cmd, args, env = {}) {
  const p = spawn(cmd, args, { detached: true, stdio: 'ignore', env: { ...process.env, ...env } });
  const stop = () => { try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ } };
  return { p, stop };
}

/** The 2000 characters typed: shell comments, so bash does nothing with them. */
function typingText() {
  const words = 'the quick brown fox jumps over the lazy dog while portcullis watches 0123456789'.split(' ');
  const lines = [];
  let n = 0;
  let i = 0;
  while (n < 2000) {
    let line = '# ';
    while (line.length < 67) line += `${words[i++ % words.length]} `;
    line = `${line.slice(0, 67)}\n`;
    if (n + line.length > 2000) line = `${line.slice(0, 2000 - n - 1)}\n`;
    lines.push(line);
    n += line.length;
  }
  return lines.join('');
}

/** Waits until the page has received nothing for QUIET_MS (at most maxMs). */
async function quiet(page, maxMs = 60000) {
  const end = Date.now() + maxMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < end) {
    await sleep(100);
    const msgs = await page.evaluate(() => window.__bench.msgs);
    if (msgs !== last) {
      last = msgs;
      since = Date.now();
    } else if (Date.now() - since >= QUIET_MS) {
      return;
    }
  }
  log('warning: the page never went quiet');
}

const received = (page) => page.evaluate(() => ({ bytes: window.__bench.rxBytes, msgs: window.__bench.msgs }));

/** Share of the canvas's pixels that differ (sum of |Δrgb| > 24) from a PNG of the display. */
async function fidelity(page, png) {
  return page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const ref = new OffscreenCanvas(bmp.width, bmp.height).getContext('2d');
    ref.drawImage(bmp, 0, 0);
    const canvas = document.querySelector(window.__bench.selector);
    const w = Math.min(canvas.width, bmp.width);
    const h = Math.min(canvas.height, bmp.height);
    const a = ref.getImageData(0, 0, w, h).data;
    const b = canvas.getContext('2d').getImageData(0, 0, w, h).data;
    let differing = 0;
    for (let i = 0; i < a.length; i += 4) {
      if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 24) differing++;
    }
    return differing / (w * h);
  }, Buffer.from(png).toString('base64'));
}

async function openClient(browser, client, desktop, gateways) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  cleanups.push(() => ctx.close());
  const page = await ctx.newPage();
  await page.addInitScript(installProbe);
  page.on('pageerror', (e) => log('page error:', e.message));
  if (client !== 'novnc') {
    const gw = gateways[client];
    const admin = gw.api();
    await admin.login('admin', ADMIN_PW);
    const name = `desk-${desktop.port}`;
    const r = await admin.post('/targets', { name, address: desktop.address, password: VNC_PW });
    if (r.status !== 201) throw new Error(`target: ${r.status} ${r.text}`);
    await admin.post('/grants', { user: USER, target: name });
    await H.uiLogin(page, gw.base, USER, USER_PW);
    await page.waitForSelector(`[data-target="${name}"]`, { timeout: 15000 });
    await page.click(`[data-target="${name}"]`);
    await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
    await page.evaluate(() => { window.__bench.selector = '#session-canvas'; });
    return { page, copies: () => page.evaluate(() => window.__portcullis.copiesPainted ?? null) };
  }
  const wsPort = await H.freePort();
  const ws = startChild('websockify', ['--web', NOVNC_DIR, `127.0.0.1:${wsPort}`, desktop.address]);
  cleanups.push(ws.stop);
  await H.waitForPort(wsPort, 20000);
  const q = new URLSearchParams({ host: '127.0.0.1', port: String(wsPort), password: VNC_PW, view_only: '1' });
  await page.goto(`http://127.0.0.1:${wsPort}/vnc_lite.html?${q}`);
  await page.waitForFunction(([w, h]) => [...document.querySelectorAll('#screen canvas')].some((c) => c.width === w && c.height === h), [W, H_], { timeout: 20000 });
  await page.evaluate(([w, h]) => {
    const c = [...document.querySelectorAll('#screen canvas')].find((x) => x.width === w && x.height === h);
    c.dataset.benchScreen = '1';
    window.__bench.selector = 'canvas[data-bench-screen]';
  }, [W, H_]);
  return { page, copies: async () => null };
}

/** One client alone on a fresh desktop of `server`: bytes per phase and the final fidelity. */
async function runOne(browser, gateways, server, client) {
  const desktop = await H.startDesktop(VNC_PW, `${W}x${H_}`, server);
  cleanups.push(() => desktop.stop());
  const xdo = (...args) => desktop.xdotool(...args);
  const id = xdo('search', '--sync', '--name', 'portcullis-xterm').trim().split('\n')[0];
  // No window manager: keyboard focus follows the pointer, so keep the pointer on the xterm.
  xdo('mousemove', '300', '200');
  const { page, copies } = await openClient(browser, client, desktop, gateways);
  const phases = {};
  let mark = { bytes: 0, msgs: 0 };
  let markAt = Date.now();
  const endPhase = async (name) => {
    await quiet(page);
    const now = await received(page);
    phases[name] = { bytes: now.bytes - mark.bytes, msgs: now.msgs - mark.msgs, ms: Date.now() - markAt - QUIET_MS };
    mark = now;
    markAt = Date.now();
  };
  await endPhase('connect');

  xdo('type', '--delay', '4', typingText());
  await endPhase('typing');

  xdo('type', '--delay', '4', 'clear; seq 1 3000\n');
  await endPhase('seq');

  for (let i = 1; i <= 80; i++) xdo('windowmove', '--sync', id, String(40 + 4 * i), String(40 + 3 * i));
  await endPhase('move');

  const top = startChild('xterm', ['-geometry', '70x14+700+480', '-T', 'bench-top', '-e', 'top', '-d', '0.5'], { DISPLAY: desktop.display });
  await sleep(10000);
  top.stop();
  await endPhase('background');

  const diff = await fidelity(page, desktop.screenshot());
  const result = { server, client, phases, differing: diff, copies: await copies() };
  await page.context().close();
  desktop.stop();
  return result;
}

const kb = (b) => (b / 1024).toFixed(1);

function table(results) {
  const lines = [];
  const cols = CLIENTS.filter((c) => c !== 'novnc');
  for (const server of SERVERS) {
    const get = (client) => results.find((r) => r.server === server && r.client === client);
    const nv = get('novnc');
    lines.push(`\n${server}: KiB received by the page (each client alone); ratio = client / noVNC`);
    lines.push(['phase'.padEnd(12), ...cols.flatMap((c) => [c.padStart(12), 'ratio'.padStart(7)]), 'noVNC'.padStart(12)].join(''));
    const total = (r, skip) => (r ? PHASES.filter((p) => p !== skip).reduce((s, p) => s + r.phases[p].bytes, 0) : null);
    const row = (name, of) => {
      const b = of(nv);
      const cells = cols.flatMap((c) => {
        const a = of(get(c));
        return [(a != null ? kb(a) : '-').padStart(12), (a != null && b ? (a / b).toFixed(2) : '-').padStart(7)];
      });
      lines.push([name.padEnd(12), ...cells, (b != null ? kb(b) : '-').padStart(12)].join(''));
    };
    for (const phase of PHASES) row(phase, (r) => r?.phases[phase]?.bytes);
    row('workload', (r) => total(r, 'connect'));
    row('all', (r) => total(r));
    const pct = (r) => (r ? `${(r.differing * 100).toFixed(3)}%` : '-');
    lines.push(['differing'.padEnd(12), ...cols.flatMap((c) => [pct(get(c)).padStart(12), ''.padStart(7)]), pct(nv).padStart(12), '  (canvas vs X display at the end)'].join(''));
    const pc = get('portcullis');
    if (pc?.copies != null) lines.push(`portcullis copies painted: ${pc.copies}`);
  }
  return lines.join('\n');
}

async function main() {
  if (!existsSync(process.env.PORTCULLIS_BIN)) throw new Error(`no gateway binary at ${process.env.PORTCULLIS_BIN}`);
  if (!existsSync(join(NOVNC_DIR, 'vnc_lite.html'))) throw new Error(`noVNC not found in ${NOVNC_DIR} (Debian package novnc)`);
  log(`gateway ${process.env.PORTCULLIS_BIN}; servers ${SERVERS.join(', ')}; clients ${CLIENTS.join(', ')}`);
  const gateways = {};
  for (const client of CLIENTS.filter((c) => c !== 'novnc')) {
    const binary = client === 'before' ? BEFORE_BIN : process.env.PORTCULLIS_BIN;
    const gw = await H.startGateway({ adminPassword: ADMIN_PW, binary });
    cleanups.push(() => gw.stop());
    const admin = gw.api();
    await admin.login('admin', ADMIN_PW);
    const r = await admin.post('/users', { name: USER, password: USER_PW, role: 'user' });
    if (r.status !== 201) throw new Error(`user: ${r.status} ${r.text}`);
    gateways[client] = gw;
  }
  const browser = await H.launchBrowser();
  cleanups.push(() => browser.close());
  const results = [];
  for (const server of SERVERS) {
    for (const client of CLIENTS) {
      log(`${server} / ${client} ...`);
      const res = await runOne(browser, gateways, server, client);
      log(`${server} / ${client}: ${Object.entries(res.phases).map(([k, v]) => `${k} ${kb(v.bytes)} KiB`).join(', ')}; differing ${(res.differing * 100).toFixed(3)}%`);
      results.push(res);
    }
  }
  console.log(table(results));
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify({ when: new Date().toISOString(), gateway: process.env.PORTCULLIS_BIN, results }, null, 2));
  log(`results in ${OUT}`);
}

try {
  await main();
} catch (e) {
  log('failed:', e.stack || e.message);
  process.exitCode = 1;
} finally {
  await cleanup();
}

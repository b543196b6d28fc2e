#!/usr/bin/env node
// Portcullis benchmark: the gateway side by side with noVNC + websockify connected directly to the
// same VNC desktop, both viewed at the same time in one headless Chromium.
//
//   node benches/run.mjs            (from anywhere; `cargo xtask bench` runs it)
//
// Environment:
//   PORTCULLIS_BIN      gateway binary (default target/release/portcullis)
//   BENCH_SAMPLES       latency samples per case (default 50)
//   BENCH_SPACING_MS    minimum time between two changes (default 350; a random 0–150 ms is added)
//   BENCH_OUT           where to write the JSON results (default benches/results/latest.json)
//   BENCH_TRACE         0 turns off the loopback packet trace (lo-trace.py, needs root)
//   BENCH_NOREC         1: the gateway records nothing (to see what the recorder costs the live path)
//   CHROMIUM            browser binary (default /usr/bin/chromium, see web/e2e/harness.mjs)
//
// See benches/README.md for what is measured and the caveats.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { installProbe } from './probe.mjs';
import {
  children, diffBox, hexRgb, inside, intEnv, killGroup, pkgVersion, rawShot, shuffle, startChild as startGrouped, startPoke,
} from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
// The harness reads PORTCULLIS_BIN when it is loaded, so set it before importing it.
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(root, 'target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');
const { sleep } = H;

const SAMPLES = intEnv('BENCH_SAMPLES', 50);
const SPACING_MS = intEnv('BENCH_SPACING_MS', 350);
const JITTER_MS = 150;
const SAMPLE_TIMEOUT_MS = 3000;
const OUT = resolve(process.env.BENCH_OUT || join(here, 'results/latest.json'));
const NOVNC_DIR = '/usr/share/novnc';
const DEADLINE_MS = 8 * 60_000;
const GOALS = { addedP50Ms: 5, addedP99Ms: 30 };

const ADMIN_PW = 'admin-password-bench';
const USER = 'bench';
const USER_PW = 'bench-password-1234';
const VNC_PW = 'vncbench';
const TARGET = 'desk';
const W = 1280;
const H_ = 800;

const log = (...a) => console.error('[bench]', ...a);

// ---- cleanup: everything started is stopped, also on failure and on signals --------------------
const cleanups = [];
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
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    interrupted = true;
    log(`${sig}: stopping everything`);
    await cleanup();
    process.exit(130);
  });
}
// Last resort if node dies without running the async cleanup.
process.on('exit', () => { for (const p of children) killGroup(p, 'SIGKILL'); });
const watchdog = setTimeout(async () => {
  log(`the benchmark took more than ${DEADLINE_MS / 60000} minutes; stopping`);
  await cleanup();
  process.exit(2);
}, DEADLINE_MS);
watchdog.unref();

/** A child in its own process group (benches/common.mjs), stopped by the cleanup. */
function startChild(cmd, args, opts = {}) {
  const p = startGrouped(cmd, args, opts);
  cleanups.push(p.stop);
  return p;
}

// ---- statistics -------------------------------------------------------------------------------
function pct(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
function stats(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const r = (x) => (x === null ? null : Math.round(x * 100) / 100);
  return { n: v.length, min: r(v[0]), p50: r(pct(v, 50)), p90: r(pct(v, 90)), p99: r(pct(v, 99)), max: r(v.at(-1)), mean: r(mean) };
}

// ---- X helpers --------------------------------------------------------------------------------

/** Raw RGB screenshot of the X display. */


// ---- TCP and CPU counters ----------------------------------------------------------------------
/** Established TCP sockets matching an ss filter, with byte counters and owning process. */
function tcp(filter) {
  let out;
  try {
    out = execFileSync('ss', ['-tinpH', 'state', 'established', filter], { encoding: 'utf8' });
  } catch {
    return [];
  }
  const socks = [];
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    if (/^\s/.test(line) && socks.length) {
      const s = socks.at(-1);
      for (const k of ['bytes_sent', 'bytes_received', 'bytes_acked']) {
        const m = line.match(new RegExp(`${k}:(\\d+)`));
        if (m) s[k] = Number(m[1]);
      }
    } else {
      const f = line.trim().split(/\s+/);
      const pid = line.match(/pid=(\d+)/);
      const name = line.match(/users:\(\("([^"]+)"/);
      socks.push({ local: f[2], peer: f[3], pid: pid ? Number(pid[1]) : null, proc: name ? name[1] : null, bytes_sent: 0, bytes_received: 0 });
    }
  }
  return socks;
}
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100; } catch { return 100; } })();
function cpuSeconds(pid) {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime + stime
  } catch {
    return null;
  }
}

// ---- main ------------------------------------------------------------------------------------
async function main() {
  const started = Date.now();
  if (!existsSync(process.env.PORTCULLIS_BIN)) {
    throw new Error(`no gateway binary at ${process.env.PORTCULLIS_BIN}: run \`cargo build --release -p portcullis\` or set PORTCULLIS_BIN`);
  }
  if (!existsSync(join(root, 'web/dist/index.html'))) log('warning: web/dist is missing; the gateway may serve no UI');
  if (!existsSync(join(NOVNC_DIR, 'vnc_lite.html'))) throw new Error(`noVNC not found in ${NOVNC_DIR} (Debian package novnc)`);

  log(`gateway ${process.env.PORTCULLIS_BIN}; ${SAMPLES} samples per case, spacing ≥ ${SPACING_MS} ms`);
  const desktop = await H.startDesktop(VNC_PW, `${W}x${H_}`);
  cleanups.push(() => desktop.stop());
  const vncPort = desktop.port;
  log(`desktop ${desktop.display} x11vnc on ${desktop.address}`);

  const norec = process.env.BENCH_NOREC === '1';
  const gw = await H.startGateway({ adminPassword: ADMIN_PW, extraConfig: norec ? '[recording]\nenabled = false\n' : '' });
  cleanups.push(() => gw.stop());
  const admin = gw.api();
  const must = async (p, want) => {
    const r = await p;
    if (r.status !== want) throw new Error(`gateway API answered ${r.status}: ${r.text}\n${gw.log()}`);
    return r;
  };
  await must(admin.login('admin', ADMIN_PW), 200);
  if (norec) {
    // The shipped policy requires recording: the rule must make it optional.
    log('recording off (BENCH_NOREC=1)');
    const doc = (await must(admin.get('/policy'), 200)).json.policy;
    doc.rules[0].recording = 'optional';
    await must(H.request(gw.base, 'PUT', '/api/v1/policy', { body: doc, headers: { cookie: admin.cookie, 'x-portcullis-csrf': '1' } }), 200);
  }
  await must(admin.post('/users', { name: USER, password: USER_PW, role: 'user' }), 201);
  await must(admin.post('/targets', { name: TARGET, address: desktop.address, password: VNC_PW, description: 'benchmark desktop' }), 201);
  await must(admin.post('/grants', { user: USER, target: TARGET }), 201);
  const gwPid = tcpListenPid(gw.port);
  log(`gateway on ${gw.base} (pid ${gwPid})`);

  const wsPort = await H.freePort();
  const wsp = startChild('websockify', ['--web', NOVNC_DIR, `127.0.0.1:${wsPort}`, desktop.address]);
  await H.waitForPort(wsPort, 20000).catch((e) => { throw new Error(`${e.message}\nwebsockify: ${wsp.output.join('')}`); });
  log(`websockify + noVNC on 127.0.0.1:${wsPort}`);

  const poke = startPoke(desktop.display, startChild);
  // xdotool without blocking node (the pages' events keep flowing meanwhile).
  const xdo = (...args) => promisify(execFile)('xdotool', args, { env: { ...process.env, DISPLAY: desktop.display } });
  const geo = xtermGeometry(desktop);
  log(`xterm ${geo.id} at ${geo.x},${geo.y} ${geo.w}x${geo.h}`);
  // Keyboard focus follows the pointer (no window manager): keep it on the xterm, away from
  // every region watched below.
  const POINTER = [geo.x + Math.min(400, geo.w - 20), geo.y + Math.min(300, geo.h - 20)];
  await poke(`move ${POINTER[0]} ${POINTER[1]}`);

  const browser = await H.launchBrowser();
  cleanups.push(() => browser.close());
  const newPage = async () => {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
    const page = await ctx.newPage();
    await page.addInitScript(installProbe);
    page.on('pageerror', (e) => log('page error:', e.message));
    return page;
  };

  const pc = await newPage();
  const pcTraffic = countTraffic(pc, true);
  await H.uiLogin(pc, gw.base, USER, USER_PW);
  await pc.waitForSelector(`[data-target="${TARGET}"]`, { timeout: 15000 });
  await pc.click(`[data-target="${TARGET}"]`);
  await pc.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
  await pc.evaluate(() => { window.__bench.selector = '#session-canvas'; });

  const nv = await newPage();
  const nvTraffic = countTraffic(nv);
  const q = new URLSearchParams({ host: '127.0.0.1', port: String(wsPort), password: VNC_PW, view_only: '1' });
  await nv.goto(`http://127.0.0.1:${wsPort}/vnc_lite.html?${q}`);
  await nv.waitForFunction(([w, h]) => [...document.querySelectorAll('#screen canvas')].some((c) => c.width === w && c.height === h), [W, H_], { timeout: 20000 });
  await nv.evaluate(([w, h]) => {
    const c = [...document.querySelectorAll('#screen canvas')].find((x) => x.width === w && x.height === h);
    c.dataset.benchScreen = '1';
    window.__bench.selector = 'canvas[data-bench-screen]';
  }, [W, H_]);
  const pages = { portcullis: pc, novnc: nv };
  const traffic = { portcullis: pcTraffic, novnc: nvTraffic };
  /** Waits until neither page has received a WebSocket message for quietMs (at least quietMs). */
  const settle = async (quietMs = 1000, maxMs = 20000) => {
    const end = Date.now() + maxMs;
    let last = null;
    let since = Date.now();
    while (Date.now() < end) {
      await sleep(100);
      const now = (await Promise.all(Object.values(pages).map((p) => p.evaluate(() => window.__bench.msgs)))).join(',');
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) {
        return true;
      }
    }
    return false;
  };
  await settle(1500);
  const vncPeers = () => Object.fromEntries(tcp(`( dport = :${vncPort} )`).map((s) => [s.proc, s]));
  const upstream0 = vncPeers();
  const wsHandlerPid = upstream0.websockify?.pid ?? null;
  log(`both clients connected and settled (${((Date.now() - started) / 1000).toFixed(1)} s)`);

  const fidelityStart = {
    portcullis: await fidelity(pc, desktop.screenshot()),
    novnc: await fidelity(nv, desktop.screenshot()),
  };

  const skew = {
    portcullis: await pc.evaluate(() => window.__bench.clockSkew()),
    novnc: await nv.evaluate(() => window.__bench.clockSkew()),
  };

  const cdp = {};
  for (const [k, p] of Object.entries(pages)) {
    cdp[k] = await p.context().newCDPSession(p);
    await cdp[k].send('Performance.enable');
  }
  const snapshot = async () => {
    const m = {};
    for (const [k, s] of Object.entries(cdp)) {
      const { metrics } = await s.send('Performance.getMetrics');
      const get = (n) => metrics.find((x) => x.name === n)?.value ?? null;
      const own = await pages[k].evaluate(() => ({ bytes: window.__bench.rxBytes, msgs: window.__bench.msgs }));
      m[k] = { task: get('TaskDuration'), script: get('ScriptDuration'), bytes: own.bytes, msgs: own.msgs };
    }
    const up = vncPeers();
    return {
      t: Date.now(),
      rx: { portcullis: { ...pcTraffic }, novnc: { ...nvTraffic } },
      wire: {
        portcullis: sum(tcp(`( sport = :${gw.port} )`), 'bytes_sent'),
        novnc: sum(tcp(`( sport = :${wsPort} )`), 'bytes_sent'),
      },
      upstream: {
        portcullis: up.portcullis?.bytes_received ?? null,
        novnc: up.websockify?.bytes_received ?? null,
      },
      cpu: { portcullis: cpuSeconds(gwPid), novnc: cpuSeconds(wsHandlerPid), x11vnc: cpuSeconds(pidOf(desktop, 'x11vnc')) },
      page: m,
    };
  };

  // ---- 1. change → paint latency ---------------------------------------------------------------
  // Regions: a small square and the root background, both outside the xterm and the pointer.
  const xtermRect = { x: geo.x, y: geo.y, w: geo.w, h: geo.h };
  // The xterm covers most of the screen: put the square in the strip below it (or right of it).
  const below = H_ - (geo.y + geo.h);
  const SQ = below >= 40
    ? { x: W - 120, y: geo.y + geo.h + Math.floor((below - 24) / 2), w: 24, h: 24 }
    : { x: geo.x + geo.w + Math.floor((W - geo.x - geo.w - 24) / 2), y: H_ - 120, w: 24, h: 24 };
  const sqPts = [[SQ.x + 3, SQ.y + 3], [SQ.x + SQ.w - 4, SQ.y + SQ.h - 4], [SQ.x + 12, SQ.y + 12]];
  const bgPts = [[W - 3, 3], [W - 3, H_ - 3], [3, H_ - 3], [3, 3], [W / 2, H_ - 3], [W - 3, H_ / 2]];
  for (const p of [...sqPts, ...bgPts]) {
    if (inside(p, xtermRect)) throw new Error(`watched pixel ${p} is covered by the xterm ${JSON.stringify(xtermRect)}`);
  }
  if (SQ.x < 0 || SQ.y < 0 || SQ.x + SQ.w > W || SQ.y + SQ.h > H_ || inside([SQ.x + SQ.w - 1, SQ.y + SQ.h - 1], xtermRect)) {
    throw new Error(`no room for the square outside the xterm ${JSON.stringify(xtermRect)}`);
  }
  for (const p of bgPts) if (inside(p, SQ)) throw new Error(`watched pixel ${p} is inside the square`);

  // Typing: find the row of the xterm where typed characters appear (diff of two screenshots).
  await xdo('key', 'ctrl+u');
  await xdo('key', 'ctrl+l');
  await sleep(600);
  const shotA = rawShot(desktop.display);
  await poke('key 0x78');
  await sleep(600);
  const shotB = rawShot(desktop.display);
  const clip = { x: geo.x, y: geo.y, w: Math.min(geo.w, W - geo.x), h: Math.min(geo.h, H_ - geo.y) };
  const box = diffBox(shotA, shotB, W, clip);
  if (!box) throw new Error('typing into the xterm changed nothing on the display (keyboard focus?)');
  const band = { x: clip.x, y: Math.max(clip.y, box.y0 - 1), w: clip.w, h: Math.min(box.y1 - box.y0 + 3, clip.y + clip.h - box.y0 + 1) };
  if (inside(POINTER, band)) throw new Error('the pointer is on the typing row');
  log(`typing row: y ${band.y}..${band.y + band.h - 1} (typed character at x ${box.x0}..${box.x1})`);
  await settle(800);

  const cases = ['small', 'typing', 'large'];
  const plan = [];
  for (let i = 0; i < SAMPLES; i++) plan.push(...shuffle([...cases]));
  const samples = [];
  let small = 0; let large = 0; let typed = 1;
  // Loopback packet timestamps, to split the latency into x11vnc, proxy and browser time.
  const up = vncPeers();
  const flowPorts = {
    vnc: vncPort,
    gw: gw.port,
    ws: wsPort,
    gwUp: portOf(up.portcullis?.local),
    wsUp: portOf(up.websockify?.local),
  };
  const tracer = await startTracer([vncPort, gw.port, wsPort]);
  const cpu0 = await snapshot();
  log(`latency: ${plan.length} changes…`);
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
        // Keep the typed line short: clear it (outside any measurement).
        await xdo('key', 'ctrl+u');
        typed = 0;
        await sleep(SPACING_MS);
      }
      spec = { id, mode: 'diff', band, thr: 48 };
      cmd = `key ${0x61 + (typed++ % 26)}`;
    }
    const stale = {};
    for (const [k, p] of Object.entries(pages)) stale[k] = await p.evaluate((s) => window.__bench.arm(s), spec);
    const waits = Object.values(pages).map((p) => p.evaluate(([i, ms]) => window.__bench.wait(i, ms), [id, SAMPLE_TIMEOUT_MS]));
    const tNode = Date.now();
    const { t0, t1 } = await poke(cmd);
    const [rp, rn] = await Promise.all(waits);
    const conv = (r, k) => (r ? {
      paint: r.paint + skew[k] - t0,
      frame: r.frame === null ? null : r.frame + skew[k] - t0,
      lastMsg: r.lastMsg ? r.lastMsg + skew[k] - t0 : null,
      firstMsg: r.firstMsg ? r.firstMsg + skew[k] - t0 : null,
      via: r.via,
      msgs: r.msgs,
      bytes: r.bytes,
      frames: r.frames,
    } : null);
    samples.push({ id, kind, tNode, t0, t1, stale, portcullis: conv(rp, 'portcullis'), novnc: conv(rn, 'novnc') });
    const wait = tNode + SPACING_MS + Math.random() * JITTER_MS - Date.now();
    if (wait > 0) await sleep(wait);
    if (id % 30 === 0) log(`  ${id}/${plan.length}`);
  }
  await xdo('key', 'ctrl+u');
  const cpu1 = await snapshot();
  const packets = tracer ? await tracer.stop() : null;
  await settle(800);

  const latency = {};
  for (const kind of [...cases, 'all']) {
    const ss = samples.filter((s) => kind === 'all' || s.kind === kind);
    const pairs = ss.filter((s) => s.portcullis && s.novnc);
    const field = (k, f) => ss.map((s) => (s[k] ? s[k][f] : null));
    const st = {
      samples: ss.length,
      missed: { portcullis: ss.filter((s) => !s.portcullis).length, novnc: ss.filter((s) => !s.novnc).length },
      stale: { portcullis: ss.filter((s) => s.stale.portcullis).length, novnc: ss.filter((s) => s.stale.novnc).length },
      portcullis: stats(field('portcullis', 'paint')),
      novnc: stats(field('novnc', 'paint')),
      added: stats(pairs.map((s) => s.portcullis.paint - s.novnc.paint)),
      addedFrame: stats(pairs.filter((s) => s.portcullis.frame !== null && s.novnc.frame !== null).map((s) => s.portcullis.frame - s.novnc.frame)),
      // Where the time goes: trigger → last WebSocket message dispatched before the paint
      // (X, x11vnc, the proxy, the network), then that message → paint (decode and draw).
      arrival: { portcullis: stats(field('portcullis', 'lastMsg')), novnc: stats(field('novnc', 'lastMsg')) },
      firstMessage: { portcullis: stats(field('portcullis', 'firstMsg')), novnc: stats(field('novnc', 'firstMsg')) },
      decodeDraw: {
        portcullis: stats(ss.map((s) => (s.portcullis?.lastMsg != null ? s.portcullis.paint - s.portcullis.lastMsg : null))),
        novnc: stats(ss.map((s) => (s.novnc?.lastMsg != null ? s.novnc.paint - s.novnc.lastMsg : null))),
      },
      firstRaf: { portcullis: stats(field('portcullis', 'frame')), novnc: stats(field('novnc', 'frame')) },
      // WebSocket messages and payload bytes the page received from arming until it saw the change.
      messagesToPaint: { portcullis: stats(field('portcullis', 'msgs')), novnc: stats(field('novnc', 'msgs')) },
      bytesToPaint: { portcullis: stats(field('portcullis', 'bytes')), novnc: stats(field('novnc', 'bytes')) },
      portcullisFramesToPaint: stats(field('portcullis', 'frames')),
    };
    st.ratioP50 = st.portcullis.p50 && st.novnc.p50 ? round(st.portcullis.p50 / st.novnc.p50, 2) : null;
    st.ratioP99 = st.portcullis.p99 && st.novnc.p99 ? round(st.portcullis.p99 / st.novnc.p99, 2) : null;
    if (packets) st.breakdown = breakdown(ss, packets, flowPorts);
    latency[kind] = st;
  }

  // ---- 2. bytes sent to the browser for a scripted workload -----------------------------------
  log('bytes: scripted workload…');
  const phases = [
    ['idle (3 s)', async () => { await sleep(3000); }],
    ['typing', async () => {
      await xdo('type', '--delay', '40', 'echo the quick brown fox jumps over the lazy dog 0123456789');
      await xdo('key', 'Return');
    }],
    ['scrolling (seq 1 2000)', async () => {
      await xdo('type', '--delay', '30', 'seq 1 2000');
      await xdo('key', 'Return');
    }],
    ['window move', async () => {
      let { x, y } = geo;
      for (let i = 0; i < 40; i++) {
        const dir = i < 20 ? 1 : -1;
        x += 12 * dir;
        y += 8 * dir;
        await xdo('windowmove', geo.id, String(x), String(y));
        await sleep(40);
      }
    }],
  ];
  const bytes = [];
  for (const [name, run] of phases) {
    const a = await snapshot();
    await run();
    const quiet = await settle(1000);
    const b = await snapshot();
    bytes.push(phaseDelta(name, a, b, quiet));
  }
  const total = totalOf(bytes);
  await sleep(500);
  const shot = desktop.screenshot();
  const fidelityEnd = { portcullis: await fidelity(pc, shot), novnc: await fidelity(nv, shot) };
  const latencyCpu = phaseDelta('latency phase', cpu0, cpu1, true);

  // ---- report -------------------------------------------------------------------------------
  const result = {
    date: new Date().toISOString(),
    durationSeconds: round((Date.now() - started) / 1000, 1),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg().map((x) => round(x, 2)) },
    config: { samplesPerCase: SAMPLES, spacingMs: SPACING_MS, jitterMs: JITTER_MS, desktop: `${W}x${H_}`, gatewayBin: process.env.PORTCULLIS_BIN },
    versions: { novnc: pkgVersion('novnc'), websockify: pkgVersion('websockify'), chromium: browser.version(), x11vnc: pkgVersion('x11vnc') },
    goals: GOALS,
    clockSkewMs: skew,
    latency,
    latencyPhaseCpu: latencyCpu.cpu,
    bytes: [...bytes, total],
    fidelity: { start: fidelityStart, end: fidelityEnd },
    typingBand: band,
    samples,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  printReport(result);
  console.log(`\nresults written to ${OUT}`);
}

function totalOf(parts) {
  const add = (f) => {
    const o = {};
    for (const k of ['portcullis', 'novnc']) {
      const vals = parts.map((p) => f(p)[k]);
      o[k] = vals.some((v) => v === null) ? null : vals.reduce((x, y) => x + y, 0);
    }
    return o;
  };
  const payloadBytes = add((p) => p.payloadBytes);
  return {
    phase: 'total',
    seconds: round(parts.reduce((a, p) => a + p.seconds, 0), 2),
    settled: parts.every((p) => p.settled),
    payloadBytes,
    messages: add((p) => p.messages),
    cdpPayloadBytes: add((p) => p.cdpPayloadBytes),
    cdpMessages: add((p) => p.cdpMessages),
    sentBytes: add((p) => p.sentBytes),
    wireBytes: add((p) => p.wireBytes),
    upstreamBytes: add((p) => p.upstreamBytes),
    cpuSeconds: add((p) => p.cpuSeconds),
    pageTaskSeconds: add((p) => p.pageTaskSeconds),
    pageScriptSeconds: add((p) => p.pageScriptSeconds),
    ratio: ratioOf(payloadBytes),
    portcullisRects: ['count', 'megapixels', 'pngBytes', 'jpegBytes', 'streamBytes'].reduce((o, k) => ({ ...o, [k]: round(parts.reduce((x, p) => x + p.portcullisRects[k], 0), 3) }), {}),
  };
}

/** What happened between two snapshots. */
function phaseDelta(name, a, b, quiet) {
  const d = (x, y) => (x === null || y === null || x === undefined || y === undefined ? null : y - x);
  const o = { phase: name, seconds: round((b.t - a.t) / 1000, 2), settled: quiet, payloadBytes: {}, messages: {}, cdpPayloadBytes: {}, cdpMessages: {}, sentBytes: {}, wireBytes: {}, upstreamBytes: {}, cpuSeconds: {}, pageTaskSeconds: {}, pageScriptSeconds: {} };
  for (const k of ['portcullis', 'novnc']) {
    o.payloadBytes[k] = b.page[k].bytes - a.page[k].bytes;
    o.messages[k] = b.page[k].msgs - a.page[k].msgs;
    o.cdpPayloadBytes[k] = b.rx[k].rxBytes - a.rx[k].rxBytes;
    o.cdpMessages[k] = b.rx[k].rxMsgs - a.rx[k].rxMsgs;
    o.sentBytes[k] = b.rx[k].txBytes - a.rx[k].txBytes;
    o.wireBytes[k] = d(a.wire[k], b.wire[k]);
    o.upstreamBytes[k] = d(a.upstream[k], b.upstream[k]);
    o.cpuSeconds[k] = round(d(a.cpu[k], b.cpu[k]), 2);
    o.pageTaskSeconds[k] = round(d(a.page[k].task, b.page[k].task), 3);
    o.pageScriptSeconds[k] = round(d(a.page[k].script, b.page[k].script), 3);
  }
  o.cpuSeconds.x11vnc = round(d(a.cpu.x11vnc, b.cpu.x11vnc), 2);
  const pa = a.rx.portcullis;
  const pb = b.rx.portcullis;
  o.portcullisRects = { count: pb.rects - pa.rects, megapixels: round((pb.area - pa.area) / 1e6, 3), pngBytes: pb.png - pa.png, jpegBytes: pb.jpeg - pa.jpeg, streamBytes: pb.stream - pa.stream };
  o.cpu = o.cpuSeconds;
  o.ratio = ratioOf(o.payloadBytes);
  return o;
}
const ratioOf = (o) => (o.portcullis !== null && o.novnc ? round(o.portcullis / o.novnc, 2) : null);
const round = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);
const sum = (socks, k) => socks.reduce((a, s) => a + (s[k] || 0), 0);

const portOf = (addr) => (addr ? Number(addr.split(':').at(-1)) : null);

/** Starts lo-trace.py (root only; BENCH_TRACE=0 turns it off). */
async function startTracer(ports) {
  if (process.env.BENCH_TRACE === '0' || process.getuid?.() !== 0) return null;
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const file = join(os.tmpdir(), `pc-bench-trace-${process.pid}.txt`);
  const p = startChild(python, [join(here, 'lo-trace.py'), file, ...ports.map(String)]);
  const ready = await Promise.race([
    new Promise((res) => p.stdout.once('data', () => res(true))),
    new Promise((res) => p.once('exit', () => res(false))),
    sleep(5000).then(() => false),
  ]);
  if (!ready) {
    log(`no packet trace: ${p.output.join('').trim() || 'lo-trace.py did not start'}`);
    killGroup(p);
    return null;
  }
  return {
    async stop() {
      killGroup(p);
      await Promise.race([new Promise((res) => p.once('exit', res)), sleep(5000)]);
      try {
        const pk = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
          const [t, sport, dport, len] = l.split(' ').map(Number);
          return { t, sport, dport, len };
        });
        rmSync(file, { force: true });
        return pk;
      } catch (e) {
        log(`no packet trace: ${e.message}`);
        return null;
      }
    },
  };
}

/**
 * Per change: when the data of each TCP flow went out (ms after the change), up to the moment
 * the corresponding page painted the change. For the gateway, "inside" is the time from the last
 * segment x11vnc sent it to the last segment it sent the browser before the paint.
 */
function breakdown(ss, packets, P) {
  const flows = {
    'x11vnc→gateway': { client: 'portcullis', match: (p) => p.sport === P.vnc && p.dport === P.gwUp },
    'gateway→browser': { client: 'portcullis', match: (p) => p.sport === P.gw },
    'browser→gateway': { client: 'portcullis', match: (p) => p.dport === P.gw },
    'x11vnc→websockify': { client: 'novnc', match: (p) => p.sport === P.vnc && p.dport === P.wsUp },
    'websockify→browser': { client: 'novnc', match: (p) => p.sport === P.ws },
  };
  const per = Object.fromEntries(Object.keys(flows).map((k) => [k, { first: [], last: [], segments: [], bytes: [] }]));
  const inside = { portcullis: [], novnc: [] };
  const offset = [];
  const code = { 'x11vnc→gateway': 'vnc>gw', 'gateway→browser': 'gw>br', 'browser→gateway': 'br>gw', 'x11vnc→websockify': 'vnc>ws', 'websockify→browser': 'ws>br' };
  for (const s of ss) {
    // The raw timeline of this change (ms after it, flow, payload bytes), kept in the JSON.
    const end = s.t0 + Math.max(s.portcullis?.paint ?? 0, s.novnc?.paint ?? 0) + 2;
    s.timeline = packets.filter((p) => p.t >= s.t0 && p.t <= end).flatMap((p) => {
      const n = Object.keys(flows).find((k) => flows[k].match(p));
      return n ? [[Math.round((p.t - s.t0) * 10) / 10, code[n], p.len]] : [];
    });
    for (const [name, fl] of Object.entries(flows)) {
      const r = s[fl.client];
      if (!r) continue;
      const end = s.t0 + r.paint;
      const pk = packets.filter((p) => p.t >= s.t0 && p.t <= end && fl.match(p));
      const o = per[name];
      o.segments.push(pk.length);
      o.bytes.push(pk.reduce((a, p) => a + p.len, 0));
      if (pk.length) {
        o.first.push(pk[0].t - s.t0);
        o.last.push(pk.at(-1).t - s.t0);
      }
    }
    for (const [client, inF, outF] of [['portcullis', 'x11vnc→gateway', 'gateway→browser'], ['novnc', 'x11vnc→websockify', 'websockify→browser']]) {
      const r = s[client];
      if (!r) continue;
      const end = s.t0 + r.paint;
      const inP = packets.filter((p) => p.t >= s.t0 && p.t <= end && flows[inF].match(p));
      const outP = packets.filter((p) => p.t >= s.t0 && p.t <= end && flows[outF].match(p));
      if (inP.length && outP.length) inside[client].push(outP.at(-1).t - inP.at(-1).t);
    }
    // x11vnc serves its clients one after the other, and encodes differently for each.
    if (s.portcullis && s.novnc) {
      const last = (flow, client) => packets.filter((p) => p.t >= s.t0 && p.t <= s.t0 + s[client].paint && flows[flow].match(p)).at(-1);
      const g = last('x11vnc→gateway', 'portcullis');
      const w = last('x11vnc→websockify', 'novnc');
      if (g && w) offset.push(g.t - w.t);
    }
  }
  const out = {};
  for (const [k, o] of Object.entries(per)) {
    out[k] = { first: stats(o.first), last: stats(o.last), segments: stats(o.segments), bytes: stats(o.bytes) };
  }
  out.insideGateway = stats(inside.portcullis);
  out.insideWebsockify = stats(inside.novnc);
  out.x11vncGatewayMinusWebsockify = stats(offset);
  return out;
}

function countTraffic(page, portcullis = false) {
  const c = { rxBytes: 0, rxMsgs: 0, txBytes: 0, txMsgs: 0, lastRx: 0, sockets: 0, rects: 0, area: 0, png: 0, jpeg: 0, stream: 0 };
  const size = (p) => (typeof p === 'string' ? Buffer.byteLength(p) : p.length);
  page.on('websocket', (ws) => {
    c.sockets += 1;
    ws.on('framereceived', (f) => {
      c.rxBytes += size(f.payload);
      c.rxMsgs += 1;
      c.lastRx = Date.now();
      // Portcullis rectangles (docs/browser-protocol.md): [1, encoding, x, y, w, h, image],
      // alone or in a batch ([4], then each message as a u32 length and its bytes).
      const rect = (p) => {
        if (p.length <= 10 || p[0] !== 1) return;
        c.rects += 1;
        c.area += p.readUInt16BE(6) * p.readUInt16BE(8);
        if (p[1] === 1) c.png += p.length - 10;
        else if (p[1] === 2) c.jpeg += p.length - 10;
        else if (p[1] === 4) c.stream += p.length - 10;
      };
      const p = f.payload;
      if (portcullis && typeof p !== 'string') {
        if (p[0] !== 4) rect(p);
        for (let at = 1; p[0] === 4 && at + 4 <= p.length; at += 4 + p.readUInt32BE(at)) {
          rect(p.subarray(at + 4, at + 4 + p.readUInt32BE(at)));
        }
      }
    });
    ws.on('framesent', (f) => { c.txBytes += size(f.payload); c.txMsgs += 1; });
  });
  return c;
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

function pidOf(desktop, name) {
  try { return Number(readFileSync(join(desktop.dir, `${name}.pid`), 'utf8').trim()); } catch { return null; }
}

function xtermGeometry(desktop) {
  let id = null;
  for (let i = 0; i < 50 && !id; i++) {
    try { id = desktop.xdotool('search', '--name', 'portcullis-xterm').trim().split('\n')[0]; } catch { execFileSync('sleep', ['0.1']); }
  }
  if (!id) throw new Error('no xterm window on the desktop');
  const g = Object.fromEntries(desktop.xdotool('getwindowgeometry', '--shell', id).trim().split('\n').map((l) => l.split('=')));
  return { id, x: Number(g.X), y: Number(g.Y), w: Number(g.WIDTH), h: Number(g.HEIGHT) };
}

/** Share of pixels of the page's desktop canvas that differ from a PNG of the X display. */
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
    return Math.round((differing / (w * h)) * 1e6) / 1e4; // percent
  }, Buffer.from(png).toString('base64'));
}

// ---- printing ----------------------------------------------------------------------------------
function printReport(r) {
  const f = (x, d = 1) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
  const kb = (x) => (x === null || x === undefined ? '–' : (x / 1024).toFixed(1));
  const row = (cells, widths) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  const out = [];
  out.push('');
  out.push(`Portcullis vs noVNC ${r.versions.novnc ?? ''} + websockify ${r.versions.websockify ?? ''}, same x11vnc desktop ${r.config.desktop}, Chromium ${r.versions.chromium}`);
  out.push(`${r.machine.cpus} CPUs, load ${r.machine.loadavg.join(' ')}; run took ${r.durationSeconds} s`);
  out.push('');
  out.push('1. change → paint latency (ms, from the X change to the desktop canvas holding it)');
  out.push(row(['case', 'n', 'Portcullis p50', 'Portcullis p99', 'noVNC p50', 'noVNC p99', 'p50 ratio'], [16, 5, 15, 15, 10, 10, 9]));
  const w2 = [16, 5, 15, 15, 10, 10, 9];
  for (const [k, s] of Object.entries(r.latency)) {
    out.push(row([k, s.samples, f(s.portcullis.p50), f(s.portcullis.p99), f(s.novnc.p50), f(s.novnc.p99), f(s.ratioP50, 2)], w2));
  }
  out.push('');
  out.push('   gateway-added latency = Portcullis − noVNC, per change (both saw it)');
  out.push(row(['case', 'pairs', 'added p50', 'added p90', 'added p99', 'goal p50≤5 p99≤30', 'missed'], [16, 5, 10, 10, 10, 18, 14]));
  for (const [k, s] of Object.entries(r.latency)) {
    const ok = s.added.n ? `${s.added.p50 <= r.goals.addedP50Ms ? 'met' : 'MISSED'} / ${s.added.p99 <= r.goals.addedP99Ms ? 'met' : 'MISSED'}` : '–';
    out.push(row([k, s.added.n ?? 0, f(s.added.p50), f(s.added.p90), f(s.added.p99), ok, `${s.missed.portcullis}/${s.missed.novnc}`], [16, 5, 10, 10, 10, 18, 14]));
  }
  out.push('');
  out.push('   where the time goes (p50): change → first | last WebSocket message before the paint, that message → paint (ms); messages, KiB until the paint');
  for (const [k, s] of Object.entries(r.latency)) {
    const part = (c) => `${f(s.firstMessage[c].p50)} | ${f(s.arrival[c].p50)}, ${f(s.decodeDraw[c].p50)}; ${f(s.messagesToPaint[c].p50, 0)} msgs ${kb(s.bytesToPaint[c].p50)} KiB`;
    out.push(`   ${k.padEnd(7)} Portcullis ${part('portcullis').padEnd(40)} noVNC ${part('novnc')}`);
  }
  out.push(`   Portcullis frames (end-of-frame messages) until the change was painted, p50/max: ${Object.entries(r.latency).map(([k, s]) => `${k} ${f(s.portcullisFramesToPaint.p50, 0)}/${f(s.portcullisFramesToPaint.max, 0)}`).join(', ')}`);
  if (r.latency.all.breakdown) {
    out.push('');
    out.push('   packet timeline on loopback (p50 ms after the change: first–last segment before the paint; segments)');
    for (const [k, s] of Object.entries(r.latency)) {
      const b = s.breakdown;
      const seg = (n) => `${f(b[n].first.p50)}–${f(b[n].last.p50)} (${f(b[n].segments.p50, 0)})`;
      out.push(`   ${k.padEnd(7)} x11vnc→gw ${seg('x11vnc→gateway')}, gw→browser ${seg('gateway→browser')}, acks ${f(b['browser→gateway'].segments.p50, 0)}; inside gw p50 ${f(b.insideGateway.p50)} p99 ${f(b.insideGateway.p99)}`);
      out.push(`   ${''.padEnd(7)} x11vnc→ws ${seg('x11vnc→websockify')}, ws→browser ${seg('websockify→browser')}; inside websockify p50 ${f(b.insideWebsockify.p50)} p99 ${f(b.insideWebsockify.p99)}`);
      out.push(`   ${''.padEnd(7)} x11vnc's last segment to the gateway minus to websockify: p50 ${f(b.x11vncGatewayMinusWebsockify.p50)} p99 ${f(b.x11vncGatewayMinusWebsockify.p99)}`);
    }
  }
  out.push('');
  out.push('2. bytes received by the browser (WebSocket payload) for a scripted workload');
  const wb = [24, 12, 12, 7, 10, 10, 12, 12, 9, 9];
  out.push(row(['phase', 'Portcullis', 'noVNC', 'ratio', 'msgs PC', 'msgs nV', 'wire PC', 'wire nV', 'CPU gw s', 'CPU ws s'], wb));
  for (const p of r.bytes) {
    out.push(row([p.phase + (p.settled ? '' : ' (not settled)'), kb(p.payloadBytes.portcullis) + ' KiB', kb(p.payloadBytes.novnc) + ' KiB', f(p.ratio, 2),
      p.messages.portcullis, p.messages.novnc, kb(p.wireBytes.portcullis) + ' KiB', kb(p.wireBytes.novnc) + ' KiB', f(p.cpuSeconds.portcullis, 2), f(p.cpuSeconds.novnc, 2)], wb));
  }
  const t = r.bytes.at(-1);
  out.push(`   from x11vnc (total): to the gateway ${kb(t.upstreamBytes.portcullis)} KiB (ZRLE/TRLE, lossless), to websockify ${kb(t.upstreamBytes.novnc)} KiB (Tight)`);
  const pr = t.portcullisRects;
  out.push(`   Portcullis sent ${pr.count} rectangles covering ${f(pr.megapixels, 2)} Mpx (desktop = ${f((1280 * 800) / 1e6, 2)} Mpx): deflate stream ${kb(pr.streamBytes)} KiB, PNG ${kb(pr.pngBytes)} KiB, JPEG ${kb(pr.jpegBytes)} KiB`);
  out.push(`   goal Portcullis ≤ noVNC: ${t.payloadBytes.portcullis <= t.payloadBytes.novnc ? 'met' : 'MISSED'} (ratio ${f(t.ratio, 2)})`);
  out.push(`   page main-thread task time (total s): Portcullis ${f(t.pageTaskSeconds.portcullis, 2)}, noVNC ${f(t.pageTaskSeconds.novnc, 2)}`);
  out.push(`   CPU during the latency phase (s): gateway ${f(r.latencyPhaseCpu.portcullis, 2)}, websockify ${f(r.latencyPhaseCpu.novnc, 2)}, x11vnc ${f(r.latencyPhaseCpu.x11vnc, 2)}`);
  out.push('');
  out.push(`canvas vs X display, % pixels differing: start Portcullis ${r.fidelity.start.portcullis} noVNC ${r.fidelity.start.novnc}; end Portcullis ${r.fidelity.end.portcullis} noVNC ${r.fidelity.end.novnc}`);
  console.log(out.join('\n'));
}

try {
  await main();
} catch (e) {
  // Once interrupted, the main flow fails on the closed browser: that is not news.
  if (!interrupted) console.error(`\nbenchmark failed: ${e.stack || e.message}`);
  process.exitCode = 1;
} finally {
  await cleanup();
  clearTimeout(watchdog);
}

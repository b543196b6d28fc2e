#!/usr/bin/env node
// Scale (issue 15): N concurrent recorded sessions through ONE gateway, each to its own TigerVNC
// desktop. One session in five is actively changing (a terminal repainted five times a second),
// one in five types at a human pace, the rest are idle; every viewer acknowledges frames like the
// browser does. All viewers but one are a bare WebSocket client (benches/common.mjs); the one left
// is headless Chromium on the real UI, measuring change → paint of small changes on its own
// desktop (benches/probe.mjs, benches/xpoke.py) while the others load the gateway. Per N: the
// gateway's CPU and memory, frames the recorders dropped, how late the recorders' fragments are,
// and the Chromium viewer's latency.
//
//   node benches/scale.mjs          (`cargo xtask bench scale` runs it; take the e2e lock)
//
// Environment:
//   PORTCULLIS_BIN          gateway binary (default target/release/portcullis)
//   BENCH_SCALE_NS          session counts, one after the other (default 10,25,50,100)
//   BENCH_SCALE_GEOMETRY    every desktop's size (default 1920x1080)
//   BENCH_SCALE_WINDOW_S    measuring window per N, after all are connected and settled (default 60)
//   BENCH_SCALE_SETTLE_S    wait between the last session connected and the window (default 10)
//   BENCH_SCALE_SPACING_MS  least time between two probed changes (default 350, plus 0–150)
//   BENCH_SCALE_TIMEOUT_S   the whole run gives up after this long (default 2400)
//   BENCH_SCALE_OUT         JSON results (default benches/results/scale.json)
//
// See benches/README.md ("Benchmark: scale").
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { installProbe } from './probe.mjs';
import {
  children, connectSession, cpuSeconds, hexRgb, intEnv, killGroup, listenPid, monoOffset, pkgVersion, startChild, startPoke,
  statusKiB, threadsNamed,
} from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// Set before the harness is loaded: it reads the variable then.
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(here, '../target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');
const sleep = (ms) => H.sleep(ms);

const NS = (process.env.BENCH_SCALE_NS || '10,25,50,100').split(',').map((s) => Number.parseInt(s.trim(), 10));
if (NS.some((n) => !Number.isFinite(n) || n < 1)) throw new Error(`BENCH_SCALE_NS must list positive integers, not ${process.env.BENCH_SCALE_NS}`);
const GEOMETRY = process.env.BENCH_SCALE_GEOMETRY || '1920x1080';
const [W, H_] = GEOMETRY.split('x').map(Number);
const WINDOW_S = intEnv('BENCH_SCALE_WINDOW_S', 60);
const SETTLE_S = intEnv('BENCH_SCALE_SETTLE_S', 10);
const SPACING_MS = intEnv('BENCH_SCALE_SPACING_MS', 350);
const TIMEOUT_S = intEnv('BENCH_SCALE_TIMEOUT_S', 2400);
const OUT = resolve(process.env.BENCH_SCALE_OUT || join(here, 'results/scale.json'));
/** Extra gateway configuration (`\n` between lines), e.g. `[recording]\nnice = 0`. */
const GW_CONFIG = (process.env.BENCH_SCALE_CONFIG || '').replace(/\\n/g, '\n');
const JITTER_MS = 150;
const SAMPLE_TIMEOUT_MS = 3000;
const GOALS = { sessions: 100, chromiumP99Ms: 100, recorderBehindMs: 2000, guacamolePerCore: 25 };
const ADMIN_PW = 'admin-password-bench';
const USER = 'bench';
const USER_PW = 'bench-password-1234';
const PER_USER = 10;
const VNC_PW = 'vncbench';
const log = (...a) => console.error(`[scale ${new Date().toISOString().slice(11, 19)}]`, ...a);

// ---- cleanup: everything started is stopped, also on failure, signals and the deadline ---------
const cleanups = [];
const gatewayPids = new Set();
async function cleanup() {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch (e) { log('cleanup:', e.message); }
  }
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => { log(`${sig}: stopping everything`); await cleanup(); process.exit(130); });
}
process.on('exit', () => {
  for (const p of children) killGroup(p, 'SIGKILL');
  for (const pid of gatewayPids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
});
const deadline = setTimeout(async () => {
  log(`the benchmark took more than ${TIMEOUT_S} s; stopping`);
  await cleanup();
  process.exit(2);
}, TIMEOUT_S * 1000);
deadline.unref();

// ---- statistics -------------------------------------------------------------------------------
const r1 = (x) => (x === null || x === undefined ? null : Math.round(x * 10) / 10);
function stats(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { n: 0 };
  const at = (p) => v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
  return { n: v.length, min: r1(v[0]), p50: r1(at(50)), p90: r1(at(90)), p99: r1(at(99)), max: r1(v.at(-1)) };
}
/** Busy and total jiffies of the whole machine (/proc/stat). */
function machineTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

// ---- desktops and what runs on them ----------------------------------------------------------
// Desktop 0 is Chromium's (probed with small changes); then, by index, one in five active,
// one in five typing, the rest idle.
const roleOf = (i) => (i === 0 ? 'probe' : i % 5 === 1 ? 'active' : i % 5 === 3 ? 'typing' : 'idle');
const ROLES = ['probe', 'active', 'typing', 'idle'];
// The active terminal: the fixture's xterm size (100x30 cells, ~900x540 px at the fixture's font),
// beside it (over it on a narrow desktop), every cell rewritten five times a second (cursor home,
// no scrolling).
const ACTIVE_PY = `import os, random, sys, time
c, r = os.get_terminal_size()
rng = random.Random()
while True:
    t = time.strftime('%H:%M:%S')
    rows = [(t + ' ' + ' '.join('%05d' % rng.randrange(100000) for _ in range(c // 6 + 1)))[:c] for _ in range(r - 1)]
    sys.stdout.write('\\x1b[H' + '\\n'.join(rows))
    sys.stdout.flush()
    time.sleep(0.2)
`;
// Typing: a 48-character comment at ~5 keys a second into the fixture's xterm, Enter, 2 s pause.
const TYPING_SH = `xdotool mousemove 300 300
while :; do
  xdotool type --delay 200 '# reading the logs of the night shift, nothing yet'
  xdotool key Return
  sleep 2
done`;

const desktops = [];
async function growDesktops(n) {
  while (desktops.length < n) {
    const i = desktops.length;
    const role = roleOf(i);
    const d = await H.startDesktop(VNC_PW, GEOMETRY, 'xvnc');
    const entry = { i, role, desktop: d, name: `desk${i}`, work: null };
    desktops.push(entry);
    cleanups.push(async () => { await entry.work?.stop(); d.stop(); });
    const env = { ...process.env, DISPLAY: d.display };
    if (role === 'active') {
      // Without a window manager the window mapped last is on top: wait for the fixture's xterm
      // first (it maps late on a loaded machine), else it may cover the active one.
      execFileSync('xdotool', ['search', '--sync', '--onlyvisible', '--name', 'portcullis-xterm'], { env, timeout: 20000, stdio: 'ignore' });
      entry.work = startChild('xterm', ['-geometry', `100x30+${W >= 1900 ? 960 : 40}+40`, '-fa', 'Monospace', '-fs', '12', '-bg', 'white',
        '-fg', 'black', '-T', 'scale-active', '-e', 'python3', '-c', ACTIVE_PY], { env });
    } else if (role === 'typing') {
      entry.work = startChild('bash', ['-c', TYPING_SH], { env });
    }
    if ((i + 1) % 10 === 0) log(`${i + 1} desktops`);
  }
}
/** CPU seconds of everything the desktops run (Xvnc, xterms, the workloads' process groups). */
function desktopsCpu(n) {
  let s = 0;
  for (const e of desktops.slice(0, n)) {
    for (const f of ['xvnc', 'xterm']) {
      try { s += cpuSeconds(Number(readFileSync(join(e.desktop.dir, `${f}.pid`), 'utf8'))) ?? 0; } catch { /* gone */ }
    }
    if (e.work) s += cpuSeconds(e.work.pid) ?? 0;
  }
  return s;
}

// ---- one N ------------------------------------------------------------------------------------
async function runN(n, browser) {
  await growDesktops(n);
  const active = desktops.slice(0, n);
  const gw = await H.startGateway({ adminPassword: ADMIN_PW, extraConfig: GW_CONFIG });
  const pid = listenPid(gw.port);
  if (!pid) throw new Error('cannot find the gateway process');
  gatewayPids.add(pid);
  const sockets = [];
  let page = null;
  let poke = null;
  try {
    const admin = gw.api();
    if ((await admin.login('admin', ADMIN_PW)).status !== 200) throw new Error('admin login failed');
    const must = async (p, want) => {
      const r = await p;
      if (r.status !== want) throw new Error(`gateway API answered ${r.status}: ${r.text}`);
      return r;
    };
    // The gateway allows an account 16 live sessions: ten sessions per user.
    const users = [];
    for (let u = 0; u * PER_USER < n; u++) {
      await must(admin.post('/users', { name: `${USER}${u}`, password: USER_PW, role: 'user' }), 201);
      const api = gw.api();
      users.push(api);
    }
    for (const e of active) {
      await must(admin.post('/targets', { name: e.name, address: e.desktop.address, password: VNC_PW, description: `scale ${e.role}` }), 201);
      await must(admin.post('/grants', { user: `${USER}${Math.floor(e.i / PER_USER)}`, target: e.name }), 201);
    }
    for (const [u, api] of users.entries()) {
      if ((await api.login(`${USER}${u}`, USER_PW)).status !== 200) throw new Error(`login of ${USER}${u} failed`);
    }

    // The bare viewers, ten at a time: each acknowledges every end of frame at once.
    const viewers = [];
    const connectStart = Date.now();
    const open = (e) => new Promise((res, rej) => {
      const v = { e, session: null, error: null, ws: null };
      const timer = setTimeout(() => rej(new Error(`${e.name}: no frame after 30 s`)), 30000);
      v.ws = connectSession(gw.base, users[Math.floor(e.i / PER_USER)].cookie, e.name, {
        onText: (t) => {
          const m = JSON.parse(t);
          if (m.type === 'init') v.session = m.session;
          if (m.type === 'error' || m.type === 'closed') { v.error = t; rej(new Error(`${e.name}: ${t}`)); }
        },
        onFrameEnd: (seq) => {
          v.ws.send(`{"t":"ack","seq":${seq}}`);
          clearTimeout(timer);
          res(v);
        },
        onError: (err) => { clearTimeout(timer); rej(err); },
      });
      sockets.push(v.ws);
    });
    const rest = active.slice(1);
    for (let k = 0; k < rest.length; k += 10) viewers.push(...await Promise.all(rest.slice(k, k + 10).map(open)));

    // Chromium on the real UI, on desktop 0.
    const probeDesk = active[0];
    poke = startPoke(probeDesk.desktop.display);
    const SQ = { x: W - 200, y: H_ - 150, w: 24, h: 24 };
    await poke(`move ${W - 400} ${H_ - 60}`);
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
    page = await ctx.newPage();
    await page.addInitScript(installProbe);
    page.on('pageerror', (e) => log('page error:', e.message));
    await H.openTarget(page, gw.base, `${USER}0`, USER_PW, probeDesk.name);
    await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 30000 });
    await page.evaluate(() => { window.__bench.selector = '#session-canvas'; });
    // The page's clock to the monotonic clock xpoke also reports (the wall clock is slewed at times).
    const offset = await monoOffset(page);

    // Recordings (id = session id): the bare viewers' from init, Chromium's from the session list.
    const connectMs = Date.now() - connectStart;
    const sessionsList = (await admin.get('/sessions')).json;
    const probeSession = sessionsList.find((s) => s.target === probeDesk.name && s.state === 'active')?.id;
    const recs = [{ role: 'probe', name: probeDesk.name, id: probeSession }, ...viewers.map((v) => ({ role: v.e.role, name: v.e.name, id: v.session }))];
    log(`N=${n}: ${viewers.length + 1} sessions connected (${sessionsList.length} listed); settling ${SETTLE_S} s`);
    await sleep(SETTLE_S * 1000);

    // ---- the measuring window ----
    const t0 = Date.now();
    const tEnd = t0 + WINDOW_S * 1000;
    const cpu0 = cpuSeconds(pid);
    const recThreads = threadsNamed(pid, 'record-');
    const rec0 = recThreads.map((tid) => cpuSeconds(pid, tid));
    // A recorder thread is named after its session (record-<first 8 characters of the id>).
    const roleOfThread = recThreads.map((tid) => {
      let comm = '';
      try { comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(); } catch { /* gone */ }
      return recs.find((r) => r.id && comm === `record-${r.id.slice(0, 8)}`)?.role ?? 'unknown';
    });
    const bench0 = process.cpuUsage();
    const m0 = machineTicks();
    const d0 = desktopsCpu(n);
    const frames0 = viewers.map((v) => v.ws.stats.frames);
    const bytes0 = viewers.reduce((a, v) => a + v.ws.stats.bytes, 0);
    const rss = [];
    const latencies = [];
    let missed = 0;
    // The probe's screen is still until the window's first change: before that its recording's
    // last fragment is as old as the settling (idle fragments come once a minute), which is not
    // the recorder being behind. Its lag is read from 2 s after that first change on (a change
    // not durable by then still shows: the last fragment's end is older still).
    let firstPokeAt = null;
    // ...and not after its last change (the window's last seconds): a still screen again.
    let pokesEnded = false;
    const pokeLoop = (async () => {
      let id = 0;
      while (Date.now() < tEnd - SAMPLE_TIMEOUT_MS) {
        const c = ++id % 2 ? 'ff8000' : '00c0ff';
        const pts = [[SQ.x + 3, SQ.y + 3], [SQ.x + SQ.w - 4, SQ.y + SQ.h - 4], [SQ.x + 12, SQ.y + 12]];
        await page.evaluate((s) => window.__bench.arm(s), { id, mode: 'color', pts, rgb: hexRgb(c), tol: 24 });
        const seen = page.evaluate(([i, ms]) => window.__bench.wait(i, ms), [id, SAMPLE_TIMEOUT_MS]);
        const tNode = Date.now();
        const { m0 } = await poke(`fill ${SQ.x} ${SQ.y} ${SQ.w} ${SQ.h} ${c}`);
        firstPokeAt ??= Date.now();
        const r = await seen;
        if (r) latencies.push(r.paint + offset - m0); else missed++;
        const wait = tNode + SPACING_MS + Math.random() * JITTER_MS - Date.now();
        if (wait > 0) await sleep(wait);
      }
      pokesEnded = true;
    })();
    const rssLoop = (async () => {
      while (Date.now() < tEnd) {
        rss.push(statusKiB(pid));
        await sleep(1000);
      }
    })();
    // How late each continuously changing recording's durable end is: now − (start + the last
    // segment's end), read round-robin from the recording detail.
    const lagIds = recs.filter((r) => r.id && (r.role === 'active' || r.role === 'probe'));
    const lag = Object.fromEntries(lagIds.map((r) => [r.id, []]));
    const lagLoop = (async () => {
      while (Date.now() < tEnd) {
        for (const r of lagIds) {
          if (Date.now() >= tEnd) break;
          if (r.role === 'probe' && (firstPokeAt === null || Date.now() < firstPokeAt + 2000 || pokesEnded)) continue;
          const d = (await admin.get(`/recordings/${r.id}`)).json;
          const ends = (d?.segments ?? []).map((s) => s.end_ms);
          if (d?.recording && ends.length) lag[r.id].push(Date.now() - (d.recording.started_at_ms + Math.max(...ends)));
        }
        await sleep(200);
      }
    })();
    await Promise.all([pokeLoop, rssLoop, lagLoop]);
    const t1 = Date.now();
    const secs = (t1 - t0) / 1000;
    const cpu1 = cpuSeconds(pid);
    const rec1 = recThreads.map((tid) => cpuSeconds(pid, tid));
    const bench1 = process.cpuUsage(bench0);
    const recByRole = Object.fromEntries(ROLES.map((role) => [role, 0]));
    rec1.forEach((x, k) => { if (roleOfThread[k] in recByRole) recByRole[roleOfThread[k]] += (x ?? 0) - (rec0[k] ?? 0); });
    const m1 = machineTicks();
    const d1 = desktopsCpu(n);
    // A workload that died would make a quiet session of an active or typing one.
    const dead = active.filter((e) => e.work && (e.work.exitCode !== null || e.work.signalCode !== null));
    for (const e of dead) log(`${e.name}: the ${e.role} workload ended (${e.work.exitCode ?? e.work.signalCode}): ${e.work.output.join('').slice(-300)}`);
    const fps = Object.fromEntries(ROLES.filter((r) => r !== 'probe').map((role) => [role, stats(viewers
      .map((v, k) => [v, k]).filter(([v]) => v.e.role === role).map(([v, k]) => (v.ws.stats.frames - frames0[k]) / secs))]));
    const rxMB = (viewers.reduce((a, v) => a + v.ws.stats.bytes, 0) - bytes0) / 1e6;

    // Frames the recorders dropped (the event track so far), in the window and since the start.
    const dropped = { window: 0, total: 0, byRole: Object.fromEntries(ROLES.map((r) => [r, 0])), recordings: 0 };
    for (const r of recs) {
      if (!r.id) continue;
      const det = (await admin.get(`/recordings/${r.id}`)).json;
      const events = (await admin.get(`/recordings/${r.id}/events`)).json ?? [];
      dropped.recordings++;
      for (const ev of events.filter((x) => x.type === 'frames_dropped')) {
        dropped.total += ev.count;
        const at = (det?.recording?.started_at_ms ?? 0) + ev.t_ms;
        if (at >= t0 && at <= t1) { dropped.window += ev.count; dropped.byRole[r.role] += ev.count; }
      }
    }
    const worstLag = Object.values(lag).map((xs) => (xs.length ? Math.max(...xs) : null));
    const result = {
      n,
      roles: Object.fromEntries(ROLES.map((r) => [r, active.filter((e) => e.role === r).length])),
      windowSeconds: r1(secs),
      gateway: {
        cpuPctOfCore: r1(((cpu1 - cpu0) / secs) * 100),
        recorderThreads: recThreads.length,
        recordersCpuPctOfCore: r1((rec1.reduce((a, x, k) => a + ((x ?? 0) - (rec0[k] ?? 0)), 0) / secs) * 100),
        // Per session of each role, % of one core.
        recorderCpuPctPerSession: Object.fromEntries(ROLES.map((role) => [role,
          active.some((e) => e.role === role) ? r1((recByRole[role] / secs / active.filter((e) => e.role === role).length) * 100) : null])),
        rssPeakMiB: r1((statusKiB(pid, 'VmHWM') ?? 0) / 1024),
        rssWindowPeakMiB: r1(Math.max(...rss.filter(Boolean)) / 1024),
        rssEndMiB: r1((statusKiB(pid) ?? 0) / 1024),
      },
      machine: {
        busyPctOf200: r1(((m1.busy - m0.busy) / (m1.total - m0.total)) * 200),
        desktopsCpuPctOfCore: r1(((d1 - d0) / secs) * 100),
        // This process: the bare viewers (TLS, acknowledgements) and the polling.
        benchCpuPctOfCore: r1(((bench1.user + bench1.system) / 1e6 / secs) * 100),
        loadavg: os.loadavg().map(r1),
        memAvailableMiB: r1((Number(/MemAvailable:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))[1])) / 1024),
      },
      framesDropped: dropped,
      recorderLagMs: {
        note: 'now − (recording start + last segment end_ms), polled; includes the 1-s fragment interval; the probe from 2 s after its first change to its last',
        recorders: lagIds.length,
        worstPerRecorder: stats(worstLag),
        allSamples: stats(Object.values(lag).flat()),
        over2s: worstLag.filter((x) => x !== null && x > GOALS.recorderBehindMs).length,
        byRole: Object.fromEntries(['probe', 'active'].map((role) => [role, stats(lagIds.filter((r) => r.role === role).map((r) => lag[r.id]).flat())])),
      },
      chromium: { ...stats(latencies), missed },
      workloadsEnded: dead.map((e) => e.name),
      viewers: { count: viewers.length, ended: viewers.filter((v) => v.error).length, framesPerSecond: fps, receivedMB: r1(rxMB) },
      connectSeconds: r1(connectMs / 1000),
    };
    log(`N=${n}: gateway ${result.gateway.cpuPctOfCore}% of a core, RSS peak ${result.gateway.rssPeakMiB} MiB; ` +
      `p50/p99 ${result.chromium.p50}/${result.chromium.p99} ms (${missed} missed); dropped ${dropped.window}; ` +
      `worst fragment age ${result.recorderLagMs.worstPerRecorder.max} ms`);
    return result;
  } finally {
    for (const ws of sockets) ws.close();
    if (page) await page.context().close().catch(() => {});
    if (poke) await poke.stop();
    await gw.stop();
    gatewayPids.delete(pid);
  }
}

function table(runs) {
  const rows = [['N', 'gw CPU %core', 'rec thr %', 'RSS peak MiB', 'RSS end MiB', 'dropped (win)', 'frag age max ms', 'p50 ms', 'p99 ms', 'missed', 'machine %/200', 'targets %']];
  for (const r of runs) {
    if (r.error) continue;
    rows.push([r.n, r.gateway.cpuPctOfCore, r.gateway.recordersCpuPctOfCore, r.gateway.rssPeakMiB, r.gateway.rssEndMiB,
      r.framesDropped.window, r.recorderLagMs.worstPerRecorder.max, r.chromium.p50, r.chromium.p99, r.chromium.missed,
      r.machine.busyPctOf200, r.machine.desktopsCpuPctOfCore].map(String));
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length)));
  const failed = runs.filter((r) => r.error).map((r) => `N=${r.n} failed: ${r.error.split('\n')[0]}`);
  return [...rows.map((row) => row.map((x, c) => x.padStart(widths[c])).join('  ')), ...failed].join('\n');
}

async function main() {
  const started = Date.now();
  if (!existsSync(process.env.PORTCULLIS_BIN)) throw new Error(`no gateway binary at ${process.env.PORTCULLIS_BIN}: run \`cargo build --release -p portcullis\` or set PORTCULLIS_BIN`);
  log(`N = ${NS.join(', ')}; ${GEOMETRY} TigerVNC desktops; window ${WINDOW_S} s after ${SETTLE_S} s settling; memory ${r1(os.totalmem() / 2 ** 30)} GiB, ${os.cpus().length} cores`);
  const browser = await H.launchBrowser();
  cleanups.push(() => browser.close());
  const runs = [];
  for (const n of NS) {
    try {
      runs.push(await runN(n, browser));
    } catch (e) {
      log(`N=${n} failed: ${e.stack || e.message}`);
      runs.push({ n, error: e.message });
    }
  }
  const result = {
    date: new Date().toISOString(),
    durationSeconds: r1((Date.now() - started) / 1000),
    machine: { cpus: os.cpus().length, memGiB: r1(os.totalmem() / 2 ** 30), fdLimit: Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' })) },
    config: { ns: NS, geometry: GEOMETRY, windowSeconds: WINDOW_S, settleSeconds: SETTLE_S, spacingMs: SPACING_MS, gatewayBin: process.env.PORTCULLIS_BIN, gatewayConfig: GW_CONFIG },
    versions: { tigervnc: pkgVersion('tigervnc-standalone-server'), chromium: browser.version() },
    goals: GOALS,
    runs,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nScale: N recorded sessions through one gateway, ${GEOMETRY} TigerVNC desktops, ${WINDOW_S}-s window`);
  console.log(table(runs));
  console.log(`goal: ${GOALS.sessions} sessions with Chromium p99 ≤ ${GOALS.chromiumP99Ms} ms and no recorder more than ${GOALS.recorderBehindMs / 1000} s behind; Guacamole's guidance ≈${GOALS.guacamolePerCore} sessions per core`);
  for (const r of runs.filter((x) => !x.error)) {
    const ok = r.n >= GOALS.sessions && r.chromium.p99 <= GOALS.chromiumP99Ms && r.recorderLagMs.over2s === 0;
    console.log(`N=${r.n}: ${ok ? 'goal met' : 'goal not met'} (p99 ${r.chromium.p99} ms, ${r.recorderLagMs.over2s} of ${r.recorderLagMs.recorders} ` +
      `changing recordings' fragments more than ${GOALS.recorderBehindMs / 1000} s old, ${r.framesDropped.window} frames dropped; ` +
      `recorder % of a core per session: ${ROLES.map((role) => `${role} ${r.gateway.recorderCpuPctPerSession[role]}`).join(', ')})`);
  }
  console.log(`results written to ${OUT}`);
  if (runs.some((r) => r.error)) process.exitCode = 1;
}

try {
  await main();
} finally {
  await cleanup();
}

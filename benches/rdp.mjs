#!/usr/bin/env node
// RDP benchmark (issue 4): xfreerdp connected straight to xrdp against xfreerdp connected through
// the gateway's native RDP listener to the same xrdp session, alternating, with the same
// animation running on the target: frames per second the client shows, time to the first frame,
// and the gateway's CPU and memory per native session.
//
//   node benches/rdp.mjs          (from anywhere; `cargo xtask bench rdp` runs it)
//
// Environment:
//   PORTCULLIS_BIN        gateway binary (default target/release/portcullis)
//   BENCH_RDP_CASES       SIZE/TEXTURE/ROUNDS, comma-separated (default
//                         1920x1080/solid/4,1920x1080/blocks/3,1280x800/solid/3); TEXTURE is
//                         solid (one colour per frame) or blocks (random 16x16 blocks per frame)
//   BENCH_RDP_NOREC       0: no third path (the gateway with recording off) in the first case
//   BENCH_RDP_WINDOW_S    seconds counted per connection (default 8), after BENCH_RDP_WARMUP_S (2)
//   BENCH_RDP_IDLE_S      seconds of the idle-session CPU measurement (default 8)
//   BENCH_RDP_FPS         frames per second the target's animation draws (default 60; 0 = unpaced)
//   BENCH_RDP_ANIM        animated area WxH+X+Y on the target (default 800x600+400+150)
//   BENCH_RDP_FIRST       direct/gateway pairs for the time to the first frame (default 5)
//   BENCH_RDP_TWO         0 skips the two-session memory measurement (default 1)
//   BENCH_RDP_OUT         JSON results (default benches/results/rdp-<timestamp>.json)
//
// See benches/README.md ("RDP") for what is measured and the caveats.
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync, rmSync, mkdtempSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
// The harness reads PORTCULLIS_BIN when it is loaded, so set it before importing it.
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(root, 'target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');
const { sleep } = H;

const CASES = (process.env.BENCH_RDP_CASES || '1920x1080/solid/4,1920x1080/blocks/3,1280x800/solid/3')
  .split(',').map((c) => c.trim()).filter(Boolean).map((c) => {
    const m = c.match(/^(\d+x\d+)\/(solid|blocks)\/(\d+)$/);
    if (!m) throw new Error(`BENCH_RDP_CASES: ${c} is not SIZE/solid|blocks/ROUNDS`);
    return { size: m[1], texture: m[2], rounds: Number(m[3]), key: `${m[1]} ${m[2]}` };
  });
const NOREC = process.env.BENCH_RDP_NOREC !== '0';
const WINDOW_S = numEnv('BENCH_RDP_WINDOW_S', 8);
const WARMUP_S = numEnv('BENCH_RDP_WARMUP_S', 2);
const IDLE_S = numEnv('BENCH_RDP_IDLE_S', 8);
const FPS = numEnv('BENCH_RDP_FPS', 60, true);
const FIRST = numEnv('BENCH_RDP_FIRST', 5, true);
const TWO = process.env.BENCH_RDP_TWO !== '0';
const ANIM = (() => {
  const m = (process.env.BENCH_RDP_ANIM || '800x600+400+150').match(/^(\d+)x(\d+)\+(\d+)\+(\d+)$/);
  if (!m) throw new Error('BENCH_RDP_ANIM must look like 800x600+400+150');
  return { w: Number(m[1]), h: Number(m[2]), x: Number(m[3]), y: Number(m[4]) };
})();
const STAMP = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const OUT = resolve(process.env.BENCH_RDP_OUT || join(here, `results/rdp-${STAMP}.json`));
const DEADLINE_MS = 10 * 60_000;
const GOALS = { fpsRatio: 0.9, mbPerSession: 30 };
// The first-frame comparison: the region rdp.test.mjs compares, sampled on a 48 x 30 grid.
const FF = { x: 0, y: 0, w: 1000, h: 600, nx: 48, ny: 30 };

const ADMIN_PW = 'admin-password-bench';
const USER = 'alice';
const USER_PW = 'alice-password-bench';
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const XFRAMES = join(here, 'rdp/xframes.py');

function numEnv(name, def, zeroOk = false) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (!zeroOk && n === 0)) throw new Error(`${name} must be a ${zeroOk ? 'non-negative' : 'positive'} number, not ${v}`);
  return n;
}
const log = (...a) => console.error('[bench rdp]', ...a);

// ---- cleanup: everything started is stopped, also on failure and on signals --------------------
const cleanups = [];
const children = new Set();
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
function killGroup(p, sig = 'SIGTERM') {
  if (p.exitCode !== null || p.signalCode !== null) return;
  try { process.kill(-p.pid, sig); } catch { try { p.kill(sig); } catch { /* gone */ } }
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
process.on('exit', () => { for (const p of children) killGroup(p, 'SIGKILL'); });
const watchdog = setTimeout(async () => {
  log(`the benchmark took more than ${DEADLINE_MS / 60000} minutes; stopping`);
  await cleanup();
  process.exit(2);
}, DEADLINE_MS);
watchdog.unref();

/** An xframes.py helper in its own process group; lines come back with the time they arrived. */
function helper(args, env = {}) {
  const p = spawn(PYTHON, [XFRAMES, ...args.map(String)], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.add(p);
  const err = [];
  p.stderr.on('data', (d) => err.push(d.toString()));
  p.stdin.on('error', () => {});
  const lines = [];
  const waiters = [];
  createInterface({ input: p.stdout }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) if (w.re.test(l)) { waiters.splice(waiters.indexOf(w), 1); w.res(l); }
  });
  let exited = false;
  p.on('exit', () => { exited = true; children.delete(p); for (const w of waiters.splice(0)) w.rej(new Error(`xframes ${args[0]} exited: ${err.join('')}`)); });
  const h = {
    lines,
    pid: p.pid,
    get stderr() { return err.join(''); },
    /** The next line matching `re` (also one already received after `from`). */
    wait(re, ms = 30000, from = 0) {
      const seen = lines.slice(from).find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      if (exited) return Promise.reject(new Error(`xframes ${args[0]} exited: ${err.join('')}`));
      return new Promise((res, rej) => {
        const w = { re, res: (l) => { clearTimeout(t); res(l); }, rej };
        const t = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); rej(new Error(`xframes ${args[0]}: no ${re} within ${ms} ms; ${err.join('')}`)); }, ms);
        waiters.push(w);
      });
    },
    send(line) { p.stdin.write(line.endsWith('\n') ? line : `${line}\n`); },
    async ask(cmd) {
      const from = lines.length;
      p.stdin.write(cmd + '\n');
      const l = await h.wait(/^ok /, 5000, from);
      const [, t, n] = l.split(' ');
      return { t: Number(t), n: Number(n) };
    },
    async stop() {
      if (exited) return;
      try { p.stdin.end('quit\n'); } catch { /* closed */ }
      await Promise.race([new Promise((r) => p.once('exit', r)), sleep(2000)]);
      killGroup(p, 'SIGKILL');
    },
  };
  cleanups.push(() => h.stop());
  return h;
}

// ---- /proc and ss counters ---------------------------------------------------------------------
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100; } catch { return 100; } })();
function statFields(path) {
  const s = readFileSync(path, 'utf8');
  return { comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')), f: s.slice(s.lastIndexOf(')') + 2).split(' ') };
}
function cpuSeconds(pid) {
  if (!pid) return null;
  try {
    const { f } = statFields(`/proc/${pid}/stat`);
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch { return null; }
}
/** CPU seconds per thread name (digits and hex suffixes folded: "record-1a2b3c4d" -> "record"). */
function threadCpu(pid) {
  const out = {};
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        const { comm, f } = statFields(`/proc/${pid}/task/${t}/stat`);
        const name = comm.replace(/[-_:]?[0-9a-f]{4,}$/i, '').replace(/[-_:]?\d+$/, '') || comm;
        out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / CLK_TCK;
      } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return out;
}
function rssMiB(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : null;
  } catch { return null; }
}
/** Busy and total jiffies of the whole machine. */
function machine() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}
function listenPid(port) {
  try {
    const m = execFileSync('ss', ['-ltnpH', `( sport = :${port} )`], { encoding: 'utf8' }).match(/pid=(\d+)/);
    return m ? Number(m[1]) : null;
  } catch { return null; }
}
/** Established sockets whose local port is `port`: bytes sent, and the owning pid. */
function sent(port) {
  let out = '';
  try { out = execFileSync('ss', ['-tinpH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' }); } catch { return { bytes: 0, pids: [] }; }
  let bytes = 0;
  const pids = new Set();
  for (const m of out.matchAll(/bytes_sent:(\d+)/g)) bytes += Number(m[1]);
  for (const m of out.matchAll(/pid=(\d+)/g)) pids.add(Number(m[1]));
  return { bytes, pids: [...pids] };
}

// ---- statistics ------------------------------------------------------------------------------
function median(values) {
  const v = values.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
const r1 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10) / 10);
const r2 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 100) / 100);

// ---- peers -----------------------------------------------------------------------------------
let nextDisplay = 500 + (process.pid % 200);
function freeDisplay() {
  while (existsSync(`/tmp/.X${nextDisplay}-lock`) || existsSync(`/tmp/.X11-unix/X${nextDisplay}`)) nextDisplay++;
  return nextDisplay++;
}

async function main() {
  if (!existsSync(process.env.PORTCULLIS_BIN)) {
    throw new Error(`no gateway binary at ${process.env.PORTCULLIS_BIN}: run \`cargo build --release -p portcullis\` or set PORTCULLIS_BIN`);
  }
  // xrdp-sesman owns port 3350: a second xrdp fixture (e.g. the e2e tests running) would take it.
  if (spawnSync('pgrep', ['-x', 'xrdp-sesman']).status === 0) {
    throw new Error('an xrdp-sesman already runs (e2e tests?): this benchmark needs port 3350 for its own');
  }
  const started = Date.now();
  const size0 = CASES[0].size;
  log(`gateway ${process.env.PORTCULLIS_BIN}; cases ${CASES.map((c) => `${c.key} x${c.rounds}`).join(', ')}; ${WINDOW_S} s counted; animation ${ANIM.w}x${ANIM.h}+${ANIM.x}+${ANIM.y} at ${FPS || 'unpaced'} fps`);

  const xrdp = await H.startXrdpDesktop();
  cleanups.push(() => xrdp.stop());
  const home = readFileSync(join(xrdp.dir, 'home'), 'utf8').trim();
  const targetEnv = () => ({ DISPLAY: xrdp.display(), XAUTHORITY: join(home, '.Xauthority') });

  // The gateway as configured by default (recording on), and one with recording off.
  const gws = {};
  for (const mode of NOREC ? ['gateway', 'gateway-norec'] : ['gateway']) {
    const gw = await H.startGateway({ adminPassword: ADMIN_PW, extraConfig: mode === 'gateway' ? '' : '[recording]\nenabled = false\n' });
    cleanups.push(() => gw.stop());
    gw.pid = listenPid(gw.port);
    gw.admin = gw.api();
    const must = async (p, want) => {
      const r = await p;
      if (r.status !== want) throw new Error(`gateway API answered ${r.status}: ${r.text}\n${gw.log()}`);
      return r;
    };
    gw.must = must;
    await must(gw.admin.login('admin', ADMIN_PW), 200);
    await must(gw.admin.post('/users', { name: USER, password: USER_PW, role: 'user' }), 201);
    await must(gw.admin.post('/targets', { name: 'xrdp', kind: 'rdp', address: xrdp.address, account: xrdp.user, password: xrdp.password }), 201);
    await must(gw.admin.post('/grants', { user: USER, target: 'xrdp' }), 201);
    if (mode === 'gateway-norec') {
      // The shipped policy requires recording: this gateway's rule must make it optional.
      const doc = (await must(gw.admin.get('/policy'), 200)).json.policy;
      doc.rules[0].recording = 'optional';
      await must(H.request(gw.base, 'PUT', '/api/v1/policy', { body: doc, headers: { cookie: gw.admin.cookie, 'x-portcullis-csrf': '1' } }), 200);
    }
    await H.waitForPort(gw.rdpPort, 20000);
    gws[mode] = gw;
    log(`${mode}: pid ${gw.pid}, RDP on ${gw.rdpPort}`);
  }
  const gw = gws.gateway;
  log(`xrdp on ${xrdp.address}`);

  const clientArgs = (mode, size, target = 'xrdp') => [
    ...(mode === 'direct'
      ? [`/v:${xrdp.address}`, `/u:${xrdp.user}`, `/p:${xrdp.password}`]
      : [`/v:127.0.0.1:${gws[mode].rdpPort}`, `/u:${USER}#${target}`, `/p:${USER_PW}`]),
    '/cert:ignore', `/size:${size}`,
  ];
  /** xfreerdp on its own Xvfb of the same size; `t0` is when xfreerdp was started (its pid file). */
  async function client(mode, size, display, target) {
    process.env.XFREERDP_SCREEN = size;
    const c = await H.startXfreerdp({ display, args: clientArgs(mode, size, target) });
    let stopped = false;
    const stop = () => { if (!stopped) { stopped = true; c.stop(); } };
    cleanups.push(stop);
    let t0;
    try { t0 = statSync(join(c.dir, 'xfreerdp.pid')).mtimeMs; } catch { t0 = Date.now(); }
    return { c, t0, stop, pid: () => { try { return Number(readFileSync(join(c.dir, 'xfreerdp.pid'), 'utf8')); } catch { return null; } } };
  }
  const idleGateway = async (g, seconds) => {
    const c0 = cpuSeconds(g.pid);
    const t0 = Date.now();
    await sleep(seconds * 1000);
    return { cpuPct: r2((100 * (cpuSeconds(g.pid) - c0)) / ((Date.now() - t0) / 1000)), rssMiB: r1(rssMiB(g.pid)) };
  };
  const result = {
    date: new Date().toISOString(),
    bin: process.env.PORTCULLIS_BIN,
    config: { cases: CASES, norec: NOREC, windowS: WINDOW_S, warmupS: WARMUP_S, idleS: IDLE_S, animFps: FPS, anim: ANIM, firstFrameRounds: FIRST },
    goals: GOALS,
  };

  // ---- 0. gateways with no session; the xrdp session is created by a first direct login ---------
  const m0 = machine();
  result.gatewayNoSession = await idleGateway(gw, 5);
  const m1 = machine();
  // What the rest of the machine used before anything of ours ran (of 200 on 2 cores).
  result.backgroundOf200 = r1((200 * (m1.busy - m0.busy)) / (m1.total - m0.total));
  if (result.backgroundOf200 > 20) log(`warning: the machine is busy before the benchmark starts (${result.backgroundOf200}% of 200): figures will suffer`);
  if (gws['gateway-norec']) result.gatewayNoRecNoSession = { rssMiB: r1(rssMiB(gws['gateway-norec'].pid)) };
  log(`gateway, no session: ${JSON.stringify(result.gatewayNoSession)}`);
  {
    const t = Date.now();
    const cold = await client('direct', size0, freeDisplay());
    for (let i = 0; i < 300 && !xrdp.display(); i++) await sleep(100);
    if (!xrdp.display()) throw new Error(`no xrdp session after 30 s\n${cold.c.log()}`);
    // Let the session's X server, background and xterm come up.
    await sleep(3000);
    cold.stop();
    log(`xrdp session on ${xrdp.display()} (first login ${Date.now() - t} ms incl. 3 s settle)`);
    await sleep(1500);
  }

  // ---- 1. time to the first frame, static desktop -----------------------------------------------
  result.firstFrame = [];
  for (let i = 0; i < FIRST; i++) {
    for (const mode of ['direct', 'gateway']) {
      const ref = spawnSync(PYTHON, [XFRAMES, 'sample', FF.x, FF.y, FF.w, FF.h, FF.nx, FF.ny].map(String), { env: { ...process.env, ...targetEnv() }, encoding: 'utf8', timeout: 15000 });
      if (ref.status !== 0) throw new Error(`sampling the target: ${ref.stderr}`);
      const display = freeDisplay();
      // The matcher gets the reference first and then waits for the client's display.
      const m = helper(['match', FF.x, FF.y, FF.w, FF.h, FF.nx, FF.ny], { DISPLAY: `:${display}` });
      m.send(ref.stdout);
      const cl = await client(mode, size0, display);
      let row;
      try {
        const l = await m.wait(/^(match|timeout)/, 40000);
        if (l === 'timeout') throw new Error('no matching frame within 60 s');
        const [, t, differing] = l.split(' ');
        // The same check as rdp.test.mjs, once, with ImageMagick on the whole region.
        const ae = imageMagickDiff(`:${display}`, targetEnv());
        row = { mode, ms: Math.round(Number(t) - cl.t0), gridDiffering: Number(differing), imagemagickAE: ae };
      } catch (e) {
        row = { mode, ms: null, error: `${e.message}\n${cl.c.log().slice(-800)}` };
        log(`first frame ${mode}: ${row.error}`);
      }
      await m.stop();
      cl.stop();
      result.firstFrame.push(row);
      log(`first frame ${mode} #${i + 1}: ${row.ms} ms (ImageMagick AE ${row.imagemagickAE} of ${FF.w * FF.h})`);
      await sleep(1200);
    }
  }

  // ---- 2. frames per second, the animation on ---------------------------------------------------
  result.fps = [];
  let idleDone = false;
  for (const [ci, kase] of CASES.entries()) {
    const anim = helper(['animate', ANIM.x, ANIM.y, ANIM.w, ANIM.h, FPS, kase.texture], targetEnv());
    await anim.ask('count');
    const modes = ci === 0 && NOREC ? ['direct', 'gateway', 'gateway-norec'] : ['direct', 'gateway'];
    for (let i = 0; i < kase.rounds; i++) {
      for (const mode of modes) {
        const row = await fpsRound(anim, kase, mode, i, !idleDone && mode === 'gateway');
        if (row.idle) idleDone = true;
        result.fps.push(row);
        log(`${kase.key} ${mode} #${i + 1}: client ${row.clientFps} fps of ${row.targetFps} drawn` +
          (mode !== 'direct' ? `; gateway ${row.gateway?.cpuPct}% CPU, ${row.gateway?.rssMiB} MiB` : '') +
          (row.error ? ` ERROR ${row.error}` : ''));
        await sleep(1200);
      }
    }
    await anim.stop();
  }

  async function fpsRound(anim, kase, mode, round, measureIdle) {
    const { size } = kase;
    const display = freeDisplay();
    const counter = helper(['count', ANIM.x, ANIM.y, ANIM.w, ANIM.h], { DISPLAY: `:${display}` });
    const cl = await client(mode, size, display);
    const g = gws[mode];
    const row = { case: kase.key, size, texture: kase.texture, mode, round: round + 1 };
    try {
      const first = await counter.wait(/^f /, 40000);
      row.firstAnimatedFrameMs = Math.round(Number(first.split(' ')[1]) - cl.t0);
      await sleep(WARMUP_S * 1000);
      const port = mode === 'direct' ? xrdp.port : g.rdpPort;
      const xrdpSock0 = sent(xrdp.port);
      const xrdpPid = xrdpSock0.pids[0];
      const xorgPid = xorgOf(xrdp.display());
      const b0 = { client: sent(port).bytes, xrdp: xrdpSock0.bytes };
      const snap = () => ({
        gw: g ? cpuSeconds(g.pid) : null, threads: g ? threadCpu(g.pid) : {}, xfreerdp: cpuSeconds(cl.pid()), xrdp: cpuSeconds(xrdpPid),
        xorg: cpuSeconds(xorgPid), anim: cpuSeconds(anim.pid), counter: cpuSeconds(counter.pid), m: machine(),
      });
      const a0 = await anim.ask('count');
      const cpu0 = snap();
      const t0 = Date.now();
      await sleep(WINDOW_S * 1000);
      const t1 = Date.now();
      const a1 = await anim.ask('count');
      const cpu1 = snap();
      const b1 = { client: sent(port).bytes, xrdp: sent(xrdp.port).bytes };
      const secs = (t1 - t0) / 1000;
      if (!cl.c.alive()) throw new Error(`xfreerdp ended (${cl.c.exitCode})`);
      // Frames the client showed inside the window, and how many target frames they stand for.
      const frames = counter.lines.filter((l) => l.startsWith('f ')).map((l) => l.split(' ').map(Number)).map(([, t, c]) => ({ t, c }));
      const inWin = [];
      for (let k = 1; k < frames.length; k++) {
        if (frames[k].t >= t0 && frames[k].t < t1) inWin.push({ ...frames[k], step: ((frames[k].c - frames[k - 1].c) % 62 + 62) % 62 || 62, gap: frames[k].t - frames[k - 1].t });
      }
      const pct = (a, b) => (a === null || b === null ? null : r1((100 * (a - b)) / secs));
      row.clientFps = r1(inWin.length / secs);
      row.targetFps = r1((a1.n - a0.n) / ((a1.t - a0.t) / 1000));
      row.meanStep = r2(inWin.reduce((a, f) => a + f.step, 0) / Math.max(1, inWin.length));
      row.maxGapMs = Math.round(Math.max(0, ...inWin.map((f) => f.gap)));
      row.medianGapMs = r1(median(inWin.map((f) => f.gap)));
      row.mbps = { toClient: r2((b1.client - b0.client) / secs / 1e6), fromXrdp: r2((b1.xrdp - b0.xrdp) / secs / 1e6) };
      row.cpuPct = Object.fromEntries(['xfreerdp', 'xrdp', 'xorg', 'anim', 'counter'].map((k) => [k, pct(cpu1[k], cpu0[k])]));
      row.cpuPct.machineOf200 = r1((200 * (cpu1.m.busy - cpu0.m.busy)) / (cpu1.m.total - cpu0.m.total));
      if (g) {
        row.gateway = { cpuPct: pct(cpu1.gw, cpu0.gw), rssMiB: r1(rssMiB(g.pid)) };
        row.gateway.threadsPct = Object.fromEntries(Object.entries(cpu1.threads)
          .map(([k, v]) => [k, pct(v, cpu0.threads[k] ?? 0)]).filter(([, v]) => v >= 0.5).sort((a, b) => b[1] - a[1]));
        row.gateway.sessions = ((await g.admin.get('/sessions')).json ?? []).length;
        if (measureIdle) {
          await anim.ask('pause');
          await sleep(2000);
          row.idle = { ...(await idleGateway(g, IDLE_S)), size };
          await anim.ask('run');
          log(`gateway, one idle native session at ${size}: ${JSON.stringify(row.idle)}`);
        }
      }
    } catch (e) {
      row.error = `${e.message}\n${cl.c.log().slice(-800)}`;
    }
    await counter.stop();
    const stats = counter.lines.find((l) => l.startsWith('stats '));
    if (stats) {
      const [, events, reads, torn] = stats.split(' ').map(Number);
      row.counter = { damageBatches: events, reads, torn };
    }
    cl.stop();
    return row;
  }

  // ---- 3. two native sessions: memory -----------------------------------------------------------
  if (TWO) {
    try {
      result.twoSessions = await twoSessions();
      log(`two sessions: ${JSON.stringify(result.twoSessions)}`);
    } catch (e) {
      result.twoSessions = { error: e.message };
      log(`two sessions: ${e.message}`);
    }
  }
  async function twoSessions() {
    const size = size0;
    const texture = CASES[0].texture;
    const shadow = await H.startShadowDesktop({ geometry: size });
    cleanups.push(() => shadow.stop());
    await gw.must(gw.admin.post('/targets', { name: 'shadow', kind: 'rdp', address: shadow.address, account: shadow.user, password: shadow.password }), 201);
    await gw.must(gw.admin.post('/grants', { user: USER, target: 'shadow' }), 201);
    const anims = [
      helper(['animate', ANIM.x, ANIM.y, ANIM.w, ANIM.h, FPS, texture], targetEnv()),
      helper(['animate', ANIM.x, ANIM.y, ANIM.w, ANIM.h, FPS, texture], { DISPLAY: shadow.display }),
    ];
    for (const a of anims) await a.ask('count');
    const counters = [];
    const clients = [];
    const rss = [];
    for (const target of ['xrdp', 'shadow']) {
      const display = freeDisplay();
      const counter = helper(['count', ANIM.x, ANIM.y, ANIM.w, ANIM.h], { DISPLAY: `:${display}` });
      clients.push(await client('gateway', size, display, target));
      await counter.wait(/^f /, 40000);
      counters.push(counter);
      await sleep(3000);
      rss.push(r1(rssMiB(gw.pid)));
    }
    const c0 = cpuSeconds(gw.pid);
    const t0 = Date.now();
    await sleep(WINDOW_S * 1000);
    const t1 = Date.now();
    const out = {
      size,
      texture,
      sessions: ((await gw.admin.get('/sessions')).json ?? []).length,
      gatewayCpuPct: r1((100 * (cpuSeconds(gw.pid) - c0)) / ((t1 - t0) / 1000)),
      rssAfterFirstMiB: rss[0],
      rssMiB: r1(rssMiB(gw.pid)),
      clientFps: counters.map((c) => r1(c.lines.filter((l) => l.startsWith('f ') && Number(l.split(' ')[1]) >= t0 && Number(l.split(' ')[1]) < t1).length / ((t1 - t0) / 1000))),
      secondTarget: 'freerdp-shadow-cli (NLA) on Xvfb, the same animation',
    };
    for (const c of counters) await c.stop();
    for (const c of clients) c.stop();
    for (const a of anims) await a.stop();
    shadow.stop();
    return out;
  }

  await sleep(3000);
  result.gatewayNoSessionAfter = await idleGateway(gw, 3);
  result.durationS = Math.round((Date.now() - started) / 1000);
  summarise(result);
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  report(result);
  console.log(`\nresults written to ${OUT}`);
}

/** The Xorg server of a display like ":10.0", from its lock file. */
function xorgOf(display) {
  const n = display?.match(/:(\d+)/)?.[1];
  try { return Number(readFileSync(`/tmp/.X${n}-lock`, 'utf8').trim()); } catch { return null; }
}

/** Pixels differing by more than 10% between the client's and the target's region (ImageMagick). */
function imageMagickDiff(clientDisplay, targetEnv) {
  const dir = mkdtempSync(join(tmpdir(), 'pc-rdpbench-'));
  try {
    const crop = `${FF.w}x${FF.h}+${FF.x}+${FF.y}`;
    const shot = (display, env, name) => {
      const p = join(dir, name);
      execFileSync('import', ['-display', display, '-window', 'root', '-crop', crop, '+repage', p], { env: { ...process.env, ...env }, timeout: 15000 });
      return p;
    };
    const a = shot(clientDisplay, {}, 'client.png');
    const b = shot(targetEnv.DISPLAY, targetEnv, 'target.png');
    const r = spawnSync('compare', ['-metric', 'AE', '-fuzz', '10%', a, b, 'null:']);
    return Number(String(r.stderr).trim().split(/\s/)[0]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function summarise(r) {
  const s = {};
  const modes = ['direct', 'gateway', 'gateway-norec'];
  for (const kase of r.config.cases) {
    const rows = (mode) => r.fps.filter((x) => x.case === kase.key && x.mode === mode && !x.error);
    const m = (list, f) => r1(median(list.map(f)));
    const sc = {};
    for (const mode of modes) {
      const l = rows(mode);
      if (!l.length) continue;
      sc[mode] = {
        n: l.length,
        clientFps: m(l, (x) => x.clientFps),
        targetFps: m(l, (x) => x.targetFps),
        meanStep: m(l, (x) => x.meanStep),
        maxGapMs: m(l, (x) => x.maxGapMs),
        mbpsToClient: m(l, (x) => x.mbps.toClient),
        mbpsFromXrdp: m(l, (x) => x.mbps.fromXrdp),
        xfreerdpCpuPct: m(l, (x) => x.cpuPct.xfreerdp),
        xrdpCpuPct: m(l, (x) => x.cpuPct.xrdp),
        xorgCpuPct: m(l, (x) => x.cpuPct.xorg),
        machineOf200: m(l, (x) => x.cpuPct.machineOf200),
        gatewayCpuPct: mode === 'direct' ? null : m(l, (x) => x.gateway.cpuPct),
        gatewayRssMiB: mode === 'direct' ? null : m(l, (x) => x.gateway.rssMiB),
      };
      if (mode !== 'direct' && sc.direct?.clientFps) {
        sc[mode].ratio = r2(sc[mode].clientFps / sc.direct.clientFps);
        const pairs = [];
        for (const row of l) {
          const mate = rows('direct').find((x) => x.round === row.round);
          if (mate?.clientFps) pairs.push(row.clientFps / mate.clientFps);
        }
        sc[mode].pairedRatioMedian = r2(median(pairs));
      }
    }
    s[kase.key] = sc;
  }
  const ff = (mode) => r.firstFrame.filter((x) => x.mode === mode && x.ms !== null).map((x) => x.ms);
  const idle = r.fps.find((x) => x.idle)?.idle ?? null;
  const first = s[r.config.cases[0].key];
  const one = first.gateway?.gatewayRssMiB ?? null;
  const sub = (a, b) => (a === null || a === undefined || b === null || b === undefined ? null : r1(a - b));
  r.summary = {
    fps: s,
    firstFrameMs: { direct: median(ff('direct')), gateway: median(ff('gateway')), directAll: ff('direct'), gatewayAll: ff('gateway') },
    gateway: {
      rssNoSessionMiB: r.gatewayNoSession.rssMiB,
      rssOneSessionMiB: one,
      perSessionMiB: sub(one, r.gatewayNoSession.rssMiB),
      rssTwoSessionsMiB: r.twoSessions?.rssMiB ?? null,
      secondSessionMiB: sub(r.twoSessions?.rssMiB, r.twoSessions?.rssAfterFirstMiB),
      rssNoSessionAfterMiB: r.gatewayNoSessionAfter.rssMiB,
      noRecording: first['gateway-norec'] ? {
        rssNoSessionMiB: r.gatewayNoRecNoSession.rssMiB,
        rssOneSessionMiB: first['gateway-norec'].gatewayRssMiB,
        perSessionMiB: sub(first['gateway-norec'].gatewayRssMiB, r.gatewayNoRecNoSession.rssMiB),
        cpuActivePct: first['gateway-norec'].gatewayCpuPct,
      } : null,
      cpuNoSessionPct: r.gatewayNoSession.cpuPct,
      cpuActivePct: first.gateway?.gatewayCpuPct ?? null,
      cpuIdleSessionPct: idle?.cpuPct ?? null,
    },
  };
}

function report(r) {
  const f = (x, d = 1) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
  const out = [];
  out.push('');
  out.push(`RDP: xfreerdp straight to xrdp vs through the gateway, same xrdp session, alternating; animation ${r.config.anim.w}x${r.config.anim.h} at ${r.config.animFps || 'unpaced'} fps; medians; CPU in % of one core`);
  out.push('case              path           client fps  drawn fps  ratio  max gap ms  MB/s out  xfreerdp  xrdp  Xorg  gateway  machine/200');
  for (const [key, sc] of Object.entries(r.summary.fps)) {
    for (const [mode, x] of Object.entries(sc)) {
      out.push(`${key.padEnd(17)} ${mode.padEnd(14)} ${f(x.clientFps).padStart(10)}  ${f(x.targetFps).padStart(9)}  ${(x.ratio !== undefined ? f(x.ratio, 2) : '').padStart(5)}  ${f(x.maxGapMs, 0).padStart(10)}  ${f(x.mbpsToClient).padStart(8)}  ${f(x.xfreerdpCpuPct).padStart(8)}  ${f(x.xrdpCpuPct).padStart(4)}  ${f(x.xorgCpuPct).padStart(4)}  ${(mode === 'direct' ? '' : f(x.gatewayCpuPct)).padStart(7)}  ${f(x.machineOf200).padStart(11)}`);
    }
    const g = sc.gateway;
    out.push(`${''.padEnd(17)} gateway/direct paired per round: ${f(g?.pairedRatioMedian, 2)}; goal ≥ ${r.goals.fpsRatio}: ${g?.ratio !== undefined && g.ratio >= r.goals.fpsRatio ? 'met' : 'MISSED'}`);
  }
  const ff = r.summary.firstFrameMs;
  out.push(`time to first frame (${r.config.cases[0].size}, static desktop): direct ${f(ff.direct, 0)} ms [${ff.directAll.join(' ')}], gateway ${f(ff.gateway, 0)} ms [${ff.gatewayAll.join(' ')}]`);
  const g = r.summary.gateway;
  const mbOk = g.perSessionMiB !== null && g.perSessionMiB * 1.048576 <= r.goals.mbPerSession;
  out.push(`gateway RSS MiB: 0 sessions ${f(g.rssNoSessionMiB)}, 1 native session (${r.config.cases[0].key}) ${f(g.rssOneSessionMiB)} (+${f(g.perSessionMiB)}; goal ≤ ${r.goals.mbPerSession} MB: ${mbOk ? 'met' : 'MISSED'}), 2 sessions ${f(g.rssTwoSessionsMiB)} (second +${f(g.secondSessionMiB)}), 0 again ${f(g.rssNoSessionAfterMiB)}`);
  if (g.noRecording) out.push(`  recording off: 0 sessions ${f(g.noRecording.rssNoSessionMiB)}, 1 session ${f(g.noRecording.rssOneSessionMiB)} (+${f(g.noRecording.perSessionMiB)}), CPU ${f(g.noRecording.cpuActivePct)}%`);
  out.push(`gateway CPU %: no session ${f(g.cpuNoSessionPct, 2)}, one session animating ${f(g.cpuActivePct)}, the same session idle ${f(g.cpuIdleSessionPct, 2)}${r.twoSessions?.gatewayCpuPct !== undefined ? `, two animating ${f(r.twoSessions.gatewayCpuPct)}` : ''}`);
  const th = r.fps.find((x) => x.mode === 'gateway' && x.gateway?.threadsPct)?.gateway.threadsPct;
  if (th) out.push(`gateway threads (first gateway round, %): ${Object.entries(th).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const errors = [...r.fps, ...r.firstFrame].filter((x) => x.error);
  if (errors.length) out.push(`${errors.length} connection(s) failed; see the JSON`);
  out.push(`took ${r.durationS} s; machine busy before the start ${f(r.backgroundOf200)}% of 200`);
  console.log(out.join('\n'));
}

try {
  await main();
} catch (e) {
  if (!interrupted) console.error(`\nbenchmark failed: ${e.stack || e.message}`);
  process.exitCode = 1;
} finally {
  await cleanup();
  clearTimeout(watchdog);
}

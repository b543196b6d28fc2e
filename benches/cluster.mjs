#!/usr/bin/env node
// Cluster (issue 16): N recorded sessions spread over 1, then 2 gateway nodes on one PostgreSQL
// store and one S3 server (SeaweedFS), each session to its own TigerVNC desktop (one in five
// actively changing, one in five typing, the rest idle; bare WebSocket viewers that acknowledge
// frames like the browser). Per node count: each node's CPU and memory, the sessions it holds,
// its recordings' upload to the object store (bytes/s, lag p50/p99 from its /metrics), and the
// object store's totals. On this 2-core machine the nodes share the same cores: the figures say
// what a node costs per session and what the object store must take, not how two machines scale.
//
//   node benches/cluster.mjs      (`cargo xtask bench cluster` runs it; take the e2e lock)
//
// Environment:
//   PORTCULLIS_BIN            gateway binary (default target/release/portcullis)
//   BENCH_CLUSTER_N           sessions in all (default 20)
//   BENCH_CLUSTER_NODES       node counts, one after the other (default 1,2)
//   BENCH_CLUSTER_GEOMETRY    desktops' size (default 1280x800)
//   BENCH_CLUSTER_WINDOW_S    measuring window (default 60)
//   BENCH_CLUSTER_OUT         JSON results (default benches/results/cluster.json)
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { children, connectSession, cpuSeconds, intEnv, killGroup, listenPid, startChild, statusKiB } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(here, '../target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');

const N = intEnv('BENCH_CLUSTER_N', 20);
const NODES = (process.env.BENCH_CLUSTER_NODES || '1,2').split(',').map((s) => Number.parseInt(s, 10));
const GEOMETRY = process.env.BENCH_CLUSTER_GEOMETRY || '1280x800';
const WINDOW_S = intEnv('BENCH_CLUSTER_WINDOW_S', 60);
const OUT = resolve(process.env.BENCH_CLUSTER_OUT || join(here, 'results/cluster.json'));
const ADMIN_PW = 'admin-password-bench';
const USER_PW = 'bench-password-1234';
const VNC_PW = 'vncbench';
const PER_USER = 10;
const log = (...a) => console.error(`[cluster ${new Date().toISOString().slice(11, 19)}]`, ...a);

// What one run started (its gateways, PostgreSQL, S3), then the desktops (all runs).
const runCleanups = [];
const cleanups = [];
async function drain(list) {
  while (list.length) {
    try { await list.pop()(); } catch (e) { log('cleanup:', e.message); }
  }
}
async function cleanup() {
  await drain(runCleanups);
  await drain(cleanups);
}
process.on('exit', () => { for (const p of children) killGroup(p, 'SIGKILL'); });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, async () => { await cleanup(); process.exit(130); });

const ACTIVE_PY = `import os, random, sys, time
c, r = os.get_terminal_size()
rng = random.Random()
while True:
    rows = [(time.strftime('%H:%M:%S') + ' ' + ' '.join('%05d' % rng.randrange(100000) for _ in range(c // 6 + 1)))[:c] for _ in range(r - 1)]
    sys.stdout.write('\\x1b[H' + '\\n'.join(rows)); sys.stdout.flush(); time.sleep(0.2)
`;
const TYPING_SH = `xdotool mousemove 300 300
while :; do xdotool type --delay 200 '# reading the logs of the night shift, nothing yet'; xdotool key Return; sleep 2; done`;
const roleOf = (i) => (i % 5 === 1 ? 'active' : i % 5 === 3 ? 'typing' : 'idle');

/** The value of a metrics line (`name` with labels as written). */
function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? null : Number(line.slice(name.length + 1));
}

async function run(nodes, desktops) {
  const pg = await H.startPostgres();
  runCleanups.push(() => pg.stop());
  const s3 = await H.startS3();
  runCleanups.push(() => s3.stop());
  const key = randomBytes(32).toString('hex');
  const shared = `[store]\nurl = "${pg.database(`bench_${nodes}`)}"\n${s3.config(`bench${nodes}`, { every: 2 })}`;
  const gws = [];
  for (let k = 0; k < nodes; k++) {
    const ops = await H.freePort();
    const gw = await H.startGateway({
      adminPassword: ADMIN_PW,
      extraConfig: `${shared}[ops]\nlisten = "127.0.0.1:${ops}"\n`,
      env: { PORTCULLIS_SECRET_KEY: key },
    });
    runCleanups.push(() => gw.stop());
    gws.push({ gw, ops, pid: listenPid(gw.port) });
  }
  const admin = gws[0].gw.api();
  if ((await admin.login('admin', ADMIN_PW)).status !== 200) throw new Error('admin login failed');
  const users = [];
  for (let u = 0; u * PER_USER < N; u++) {
    if ((await admin.post('/users', { name: `bench${u}`, password: USER_PW, role: 'user' })).status !== 201) throw new Error('user');
  }
  for (const [i, d] of desktops.entries()) {
    await admin.post('/targets', { name: `desk${i}`, address: d.address, password: VNC_PW });
    await admin.post('/grants', { user: `bench${Math.floor(i / PER_USER)}`, target: `desk${i}` });
  }
  // Session i goes to node i mod nodes (as a load balancer would spread them).
  const sockets = [];
  const open = (i) => new Promise((res, rej) => {
    const g = gws[i % nodes].gw;
    const api = users[`${Math.floor(i / PER_USER)}-${i % nodes}`];
    const timer = setTimeout(() => rej(new Error(`desk${i}: no frame after 30 s`)), 30000);
    const ws = connectSession(g.base, api.cookie, `desk${i}`, {
      onText: (t) => { const m = JSON.parse(t); if (m.type === 'error' || m.type === 'closed') rej(new Error(t)); },
      onFrameEnd: (seq) => { ws.send(`{"t":"ack","seq":${seq}}`); clearTimeout(timer); res(ws); },
      onError: (e) => { clearTimeout(timer); rej(e); },
    });
    sockets.push(ws);
  });
  for (let i = 0; i < N; i++) {
    const k = `${Math.floor(i / PER_USER)}-${i % nodes}`;
    if (!users[k]) {
      users[k] = gws[i % nodes].gw.api();
      if ((await users[k].login(`bench${Math.floor(i / PER_USER)}`, USER_PW)).status !== 200) throw new Error('login');
    }
  }
  for (let i = 0; i < N; i += 10) await Promise.all([...Array(Math.min(10, N - i)).keys()].map((j) => open(i + j)));
  log(`${nodes} node(s): ${N} sessions open; settling`);
  await H.sleep(10000);
  const before = await Promise.all(gws.map(async (g) => ({
    cpu: cpuSeconds(g.pid),
    up: metric(await (await fetch(`http://127.0.0.1:${g.ops}/metrics`)).text(), 'portcullis_recording_uploaded_bytes_total') ?? 0,
  })));
  const t0 = Date.now();
  let maxPending = 0;
  const rssPeak = gws.map(() => 0);
  while (Date.now() - t0 < WINDOW_S * 1000) {
    await H.sleep(2000);
    for (const [k, g] of gws.entries()) {
      const m = await (await fetch(`http://127.0.0.1:${g.ops}/metrics`)).text();
      maxPending = Math.max(maxPending, metric(m, 'portcullis_recording_upload_pending_bytes') ?? 0);
      rssPeak[k] = Math.max(rssPeak[k], statusKiB(g.pid) ?? 0);
    }
  }
  const secs = (Date.now() - t0) / 1000;
  const perNode = [];
  for (const [k, g] of gws.entries()) {
    const m = await (await fetch(`http://127.0.0.1:${g.ops}/metrics`)).text();
    const sessions = (await (await fetch(`http://127.0.0.1:${g.ops}/metrics`)).text()).split('\n')
      .filter((l) => l.startsWith('portcullis_sessions{')).reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
    perNode.push({
      sessions,
      cpuPercent: Math.round(((cpuSeconds(g.pid) - before[k].cpu) / secs) * 1000) / 10,
      rssPeakMiB: Math.round(rssPeak[k] / 102.4) / 10,
      uploadKBps: Math.round((((metric(m, 'portcullis_recording_uploaded_bytes_total') ?? 0) - before[k].up) / secs / 1024) * 10) / 10,
      uploadLagP50s: metric(m, 'portcullis_recording_upload_lag_seconds{quantile="0.5"}'),
      uploadLagP99s: metric(m, 'portcullis_recording_upload_lag_seconds{quantile="0.99"}'),
      uploadFailures: metric(m, 'portcullis_recording_upload_failures_total'),
    });
  }
  for (const ws of sockets) ws.close();
  await drain(runCleanups);
  const total = {
    sessions: perNode.reduce((a, n) => a + n.sessions, 0),
    cpuPercent: Math.round(perNode.reduce((a, n) => a + n.cpuPercent, 0) * 10) / 10,
    uploadKBps: Math.round(perNode.reduce((a, n) => a + n.uploadKBps, 0) * 10) / 10,
    uploadLagP99s: Math.max(...perNode.map((n) => n.uploadLagP99s ?? 0)),
    maxPendingKiB: Math.round(maxPending / 1024),
  };
  return { nodes, perNode, total };
}

const desktops = [];
try {
  for (let i = 0; i < N; i++) {
    const d = await H.startDesktop(VNC_PW, GEOMETRY, 'xvnc');
    cleanups.push(async () => d.stop());
    desktops.push(d);
    const env = { ...process.env, DISPLAY: d.display };
    if (roleOf(i) === 'active') {
      execFileSync('xdotool', ['search', '--sync', '--onlyvisible', '--name', 'portcullis-xterm'], { env, timeout: 20000, stdio: 'ignore' });
      startChild('xterm', ['-geometry', '100x30+40+40', '-fa', 'Monospace', '-fs', '12', '-e', 'python3', '-c', ACTIVE_PY], { env });
    } else if (roleOf(i) === 'typing') {
      startChild('bash', ['-c', TYPING_SH], { env });
    }
  }
  const results = [];
  for (const nodes of NODES) {
    const r = await run(nodes, desktops);
    results.push(r);
    console.log(`${nodes} node(s), ${r.total.sessions} sessions: ` +
      r.perNode.map((n, k) => `node ${k}: ${n.sessions} sessions, ${n.cpuPercent}% CPU (${Math.round((n.cpuPercent / Math.max(1, n.sessions)) * 10) / 10}% per session), RSS peak ${n.rssPeakMiB} MiB, upload ${n.uploadKBps} KiB/s, lag p50/p99 ${n.uploadLagP50s}/${n.uploadLagP99s} s`).join('; ') +
      `; object store takes ${r.total.uploadKBps} KiB/s (${Math.round((r.total.uploadKBps * 3600) / 1024 / Math.max(1, r.total.sessions))} MB/h per session), worst spool backlog ${r.total.maxPendingKiB} KiB`);
  }
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify({ when: new Date().toISOString(), cores: os.cpus().length, n: N, geometry: GEOMETRY, windowS: WINDOW_S, results }, null, 2));
  log(`results in ${OUT}`);
} finally {
  await cleanup();
}
process.exit(0);

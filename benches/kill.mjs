#!/usr/bin/env node
// Kill latency (issue 5): from the SOC's API call (POST /sessions/{id}/kill) until both of the
// session's connections are closed, the user's (browser WebSocket, or a native RDP client) and the
// target's (VNC). Both connections pass through TCP relays in this process, so their ends are
// timed on one clock with the API call; the gateway's side closing is what counts.
//
//   node benches/kill.mjs          (`cargo xtask bench kill` runs it)
//
// Environment:
//   PORTCULLIS_BIN       gateway binary (default target/release/portcullis)
//   BENCH_KILL_ROUNDS    browser-socket sessions killed (default 60)
//   BENCH_KILL_NATIVE    native xfreerdp sessions killed (default 15; 0 skips them)
//   BENCH_KILL_CLUSTER   browser sessions held by one gateway and killed through another, both on
//                        one PostgreSQL store this benchmark starts (default 60; 0 skips them)
//   BENCH_KILL_OUT       JSON results (default benches/results/kill-<timestamp>.json)
import net from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectSession } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
process.env.PORTCULLIS_BIN = resolve(process.env.PORTCULLIS_BIN || join(root, 'target/release/portcullis'));
const H = await import('../web/e2e/harness.mjs');

const ROUNDS = Number(process.env.BENCH_KILL_ROUNDS || 60);
const NATIVE = Number(process.env.BENCH_KILL_NATIVE ?? 15);
const CLUSTER = Number(process.env.BENCH_KILL_CLUSTER ?? 60);
const GOAL_CLUSTER_P99_MS = 500;
const STAMP = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
const OUT = resolve(process.env.BENCH_KILL_OUT || join(here, `results/kill-${STAMP}.json`));
const GOAL_P99_MS = 200;
const ADMIN_PW = 'admin-password-bench';
const USER_PW = 'alice-password-bench';
const SOC_PW = 'soc-password-bench1';
const VNC_PW = 'vncbench';
const log = (...a) => console.error('[bench kill]', ...a);
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** A TCP relay to `to`; `closed(fn)` hears when the far side (the gateway) closes a connection. */
async function relay(to) {
  const [host, port] = [to.split(':')[0], Number(to.split(':')[1])];
  const listeners = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    client.pipe(upstream);
    upstream.pipe(client);
    // The gateway is the client here (gateway → target) or the upstream (user → gateway).
    const id = { client, upstream };
    const heard = new Set();
    const onEnd = (side) => () => {
      // 'end' and 'close' both come: the first is the moment.
      if (heard.has(side)) return;
      heard.add(side);
      for (const l of [...listeners]) l(side, id, now());
    };
    client.on('end', onEnd('client'));
    client.on('close', onEnd('client'));
    upstream.on('end', onEnd('upstream'));
    upstream.on('close', onEnd('upstream'));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${server.address().port}`,
    port: server.address().port,
    /** The next time `side` of any connection closes. */
    next(side) {
      return new Promise((res) => {
        const l = (s, _id, t) => {
          if (s !== side) return;
          listeners.splice(listeners.indexOf(l), 1);
          res(t);
        };
        listeners.push(l);
      });
    },
    close: () => server.close(),
  };
}

/** The session WebSocket as a browser opens it (benches/common.mjs): resolves once `init`
 * arrives; `closed()` is when the gateway closed the TCP connection. It answers the gateway's
 * Close at once, as a browser does (the gateway waits up to 2 s for that answer). */
function sessionSocket(base, cookie, target) {
  return new Promise((resolveOpen, rejectOpen) => {
    const ws = connectSession(base, cookie, target, {
      onText: (t) => { if (t.includes('"type":"init"')) resolveOpen(ws); },
      onError: rejectOpen,
    });
  });
}

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const r1 = (x) => Math.round(x * 10) / 10;
function stats(xs) {
  return { n: xs.length, p50: r1(percentile(xs, 50)), p90: r1(percentile(xs, 90)), p99: r1(percentile(xs, 99)), max: r1(Math.max(...xs)) };
}

const cleanups = [];
try {
  const desk = await H.startDesktop(VNC_PW, '1280x800', 'xvnc');
  cleanups.push(() => desk.stop());
  const toTarget = await relay(desk.address);
  cleanups.push(() => toTarget.close());
  const gw = await H.startGateway({ adminPassword: ADMIN_PW });
  cleanups.push(() => gw.stop());
  const admin = gw.api();
  await admin.login('admin', ADMIN_PW);
  await admin.post('/users', { name: 'alice', password: USER_PW, role: 'user' });
  await admin.post('/users', { name: 'sam', password: SOC_PW, role: 'soc' });
  await admin.post('/targets', { name: 'desk', address: toTarget.address, password: VNC_PW });
  await admin.post('/grants', { user: 'alice', target: 'desk' });
  const alice = gw.api();
  await alice.login('alice', USER_PW);
  const soc = gw.api();
  await soc.login('sam', SOC_PW);
  const kill = (id) => H.request(gw.base, 'POST', `/api/v1/sessions/${id}/kill`, {
    body: { reason: 'benchmark' }, headers: { cookie: soc.cookie, 'x-portcullis-csrf': '1' },
  });

  async function liveSession(entry) {
    for (let i = 0; i < 200; i++) {
      const s = (await soc.get('/sessions')).json.find((x) => x.state === 'active' && x.entry === entry);
      if (s) return s;
      await H.sleep(25);
    }
    throw new Error(`no active ${entry} session`);
  }

  // Browser sessions (the session WebSocket as a browser opens it).
  const browser = { client: [], target: [], both: [] };
  for (let i = 0; i < ROUNDS; i++) {
    const targetClosed = toTarget.next('client');
    const ws = await sessionSocket(gw.base, alice.cookie, 'desk');
    const s = await liveSession('browser');
    const t0 = now();
    const r = await kill(s.id);
    if (r.status !== 204) throw new Error(`kill answered ${r.status}: ${r.text}`);
    const [tc, tt] = await Promise.all([ws.closed(), targetClosed]);
    browser.client.push(tc - t0);
    browser.target.push(tt - t0);
    browser.both.push(Math.max(tc, tt) - t0);
    await H.sleep(100);
  }
  log('browser', JSON.stringify(stats(browser.both)));

  // Native RDP clients (xfreerdp through a relay in front of the gateway's RDP listener).
  const native = { client: [], target: [], both: [] };
  if (NATIVE > 0) {
    const toGateway = await relay(`127.0.0.1:${gw.rdpPort}`);
    cleanups.push(() => toGateway.close());
    for (let i = 0; i < NATIVE; i++) {
      const targetClosed = toTarget.next('client');
      const clientClosed = toGateway.next('upstream');
      const c = await H.startXfreerdp({ args: [`/v:${toGateway.address}`, '/u:alice#desk', `/p:${USER_PW}`, '/cert:ignore', '/size:1280x800'] });
      try {
        const s = await liveSession('rdp');
        await H.sleep(300);
        const t0 = now();
        const r = await kill(s.id);
        if (r.status !== 204) throw new Error(`kill answered ${r.status}: ${r.text}`);
        const [tc, tt] = await Promise.all([clientClosed, targetClosed]);
        native.client.push(tc - t0);
        native.target.push(tt - t0);
        native.both.push(Math.max(tc, tt) - t0);
      } finally {
        c.stop();
      }
      await H.sleep(300);
    }
    log('native', JSON.stringify(stats(native.both)));
  }

  // Across gateways: the session held by A, the kill asked on B (two gateways, one PostgreSQL).
  const cluster = { client: [], target: [], both: [] };
  if (CLUSTER > 0) {
    const pg = await H.startPostgres();
    cleanups.push(() => pg.stop());
    const store = `[store]\nurl = "${pg.database('bench_kill')}"\n`;
    const env = { PORTCULLIS_SECRET_KEY: 'ab'.repeat(32) };
    const a = await H.startGateway({ adminPassword: ADMIN_PW, extraConfig: store, env });
    cleanups.push(() => a.stop());
    const b = await H.startGateway({ adminPassword: ADMIN_PW, extraConfig: store, env });
    cleanups.push(() => b.stop());
    const adminA = a.api();
    await adminA.login('admin', ADMIN_PW);
    await adminA.post('/users', { name: 'alice', password: USER_PW, role: 'user' });
    await adminA.post('/users', { name: 'sam', password: SOC_PW, role: 'soc' });
    await adminA.post('/targets', { name: 'desk', address: toTarget.address, password: VNC_PW });
    await adminA.post('/grants', { user: 'alice', target: 'desk' });
    const aliceA = a.api();
    await aliceA.login('alice', USER_PW);
    const socB = b.api();
    await socB.login('sam', SOC_PW);
    for (let i = 0; i < CLUSTER; i++) {
      const targetClosed = toTarget.next('client');
      const ws = await sessionSocket(a.base, aliceA.cookie, 'desk');
      // Listed on B once A published it (every 2 s): not part of what is timed.
      let s;
      for (let j = 0; j < 400 && !s; j++) {
        s = (await socB.get('/sessions')).json.find((x) => x.state === 'active' && x.node && x.user === 'alice');
        if (!s) await H.sleep(25);
      }
      if (!s) throw new Error('B never listed the session held by A');
      const t0 = now();
      const r = await H.request(b.base, 'POST', `/api/v1/sessions/${s.id}/kill`, {
        body: { reason: 'benchmark' }, headers: { cookie: socB.cookie, 'x-portcullis-csrf': '1' },
      });
      if (r.status !== 204) throw new Error(`kill on B answered ${r.status}: ${r.text}`);
      const [tc, tt] = await Promise.all([ws.closed(), targetClosed]);
      cluster.client.push(tc - t0);
      cluster.target.push(tt - t0);
      cluster.both.push(Math.max(tc, tt) - t0);
      // Gone from B's list before the next round (A publishes its list every 2 s).
      for (let j = 0; j < 400; j++) {
        if (!(await socB.get('/sessions')).json.some((x) => x.id === s.id)) break;
        await H.sleep(25);
      }
    }
    log('cluster', JSON.stringify(stats(cluster.both)));
  }

  const result = {
    goalP99Ms: GOAL_P99_MS,
    goalClusterP99Ms: GOAL_CLUSTER_P99_MS,
    browser: { both: stats(browser.both), client: stats(browser.client), target: stats(browser.target), samples: browser.both.map(r1) },
    native: native.both.length ? { both: stats(native.both), client: stats(native.client), target: stats(native.target), samples: native.both.map(r1) } : null,
    cluster: cluster.both.length ? { both: stats(cluster.both), client: stats(cluster.client), target: stats(cluster.target), samples: cluster.both.map(r1) } : null,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2));
  const line = (name, x) => x && console.log(`${name.padEnd(8)} n=${x.both.n}  both closed p50 ${x.both.p50} ms, p90 ${x.both.p90}, p99 ${x.both.p99}, max ${x.both.max}  (client p50/p99 ${x.client.p50}/${x.client.p99}, target p50/p99 ${x.target.p50}/${x.target.p99})`);
  console.log('kill latency: API call → the user\'s and the target\'s connections both closed by the gateway');
  line('browser', result.browser);
  line('native', result.native);
  line('cluster', result.cluster);
  const worst = Math.max(result.browser.both.p99, result.native?.both.p99 ?? 0);
  console.log(`goal p99 ≤ ${GOAL_P99_MS} ms: ${worst <= GOAL_P99_MS ? 'met' : 'MISSED'}`);
  if (result.cluster) {
    const p99 = result.cluster.both.p99;
    console.log(`across gateways (session on A, kill asked on B): goal p99 ≤ ${GOAL_CLUSTER_P99_MS} ms: ${p99 <= GOAL_CLUSTER_P99_MS ? 'met' : 'MISSED'}`);
  }
  console.log(`results written to ${OUT}`);
} finally {
  for (const f of cleanups.reverse()) {
    try { await f(); } catch (e) { log('cleanup:', e.message); }
  }
}

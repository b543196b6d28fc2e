// Reassembly bounds through real peers: a man in the middle turns a real native client
// (xfreerdp) or a real RDP target (xrdp) hostile once its session is up, and floods the gateway
// with channel chunks or fast-path fragments that IronRDP alone would gather without end. Each
// time the session ends within 2 s with its reason audited, the gateway's memory stays put,
// and another user's live session keeps painting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  startDesktop, startGateway, startXrdpDesktop, startXfreerdp, launchBrowser, newPage,
  openTarget, sleep, freePort,
} from './harness.mjs';
import {
  startRdpMitm, mcsFrame, channelChunk, fastPathFrame,
  CHANNEL_FLAG_FIRST, CHANNEL_PACKET_COMPRESSED,
} from './hostile-rdp.mjs';
import { startHostileVnc } from './hostile-vnc.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const BOB = 'bob-password-1234';
const VNC_PASSWORD = 'vncsecret';
const MIB = 1024 * 1024;

let good, desk2, xrdp, gw, browser, admin;
const cleanups = [];

before(async () => {
  [good, desk2, xrdp] = await Promise.all([
    startDesktop(VNC_PASSWORD),
    startDesktop(VNC_PASSWORD),
    startXrdpDesktop(),
  ]);
  const rdpPort = await freePort();
  gw = await startGateway({
    adminPassword: ADMIN,
    extraConfig: `[rdp]\nlisten = "127.0.0.1:${rdpPort}"\n`,
  });
  gw.rdpPort = rdpPort;
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, password] of [['alice', ALICE], ['bob', BOB]]) {
    const r = await admin.post('/users', { name, password, role: 'user' });
    assert.equal(r.status, 201, r.text);
  }
  for (const t of [
    { name: 'good', kind: 'vnc', address: good.address, password: VNC_PASSWORD, user: 'bob' },
    { name: 'desk2', kind: 'vnc', address: desk2.address, password: VNC_PASSWORD, user: 'alice' },
  ]) {
    const { user, ...target } = t;
    let r = await admin.post('/targets', target);
    assert.equal(r.status, 201, r.text);
    r = await admin.post('/grants', { user, target: t.name });
    assert.equal(r.status, 201, r.text);
  }
});

after(async () => {
  for (const c of cleanups.splice(0)) {
    try { await c(); } catch { /* already gone */ }
  }
  await browser?.close();
  await gw?.stop();
  good?.stop();
  desk2?.stop();
  xrdp?.stop();
});

/** The gateway's process id (the one serving this test's data directory). */
function gatewayPid() {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes(`${gw.dir}/portcullis.toml`) && cmd.includes('serve')) return Number(entry);
    } catch { /* gone */ }
  }
  throw new Error('gateway process not found');
}

/** Resident memory of a process, in bytes (VmRSS of /proc/PID/status). */
function rss(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) * 1024;
}

/** Bob's live browser session on the `good` desktop, painting. */
async function goodSession() {
  const page = await newPage(browser);
  await openTarget(page, gw.base, 'bob', BOB, 'good');
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  return page;
}

/** The good session still paints what happens on its desktop (a new background colour). */
async function assertStillPainting(page) {
  const painted = await page.evaluate(() => window.__portcullis.framesPainted);
  execFileSync('xsetroot', ['-solid', `#${randomBytes(3).toString('hex')}`], { env: { ...process.env, DISPLAY: good.display } });
  await page.waitForFunction((n) => window.__portcullis.framesPainted > n, painted, { timeout: 10000 });
}

/**
 * Runs `flood` (which resolves when the hostile connection closed) while sampling the gateway's
 * memory; returns how long the connection lived after the flood began and the RSS growth.
 */
async function underFlood(conn, flood) {
  const pid = gatewayPid();
  const base = rss(pid);
  let peak = base;
  const started = Date.now();
  // The flood stops when the gateway hangs up, or (then the test fails) after 6 s or once the
  // gateway grew by 256 MiB, so that a gateway without bounds does not take the machine down.
  const stop = () => { conn.closedAt ??= -1; };
  const sampler = setInterval(() => {
    try { peak = Math.max(peak, rss(pid)); } catch { /* gone */ }
    if (peak - base > 256 * MIB) stop();
  }, 50);
  const cap = sleep(6000).then(stop);
  // The flood loop sees the socket destroyed a tick before its close event is out.
  await Promise.race([flood().then(() => (conn.closedAt === -1 ? null : conn.whenClosed)), cap]);
  clearInterval(sampler);
  peak = Math.max(peak, rss(pid));
  const lived = conn.closedAt > 0 ? conn.closedAt - started : Infinity;
  return { lived, growth: peak - base };
}

/** The session end records of `target` in the audit trail. */
async function sessionEnds(target) {
  const r = await admin.get(`/audit?kind=session_end&target=${encodeURIComponent(target)}&limit=50`);
  assert.equal(r.status, 200, r.text);
  return r.json.entries;
}

async function waitSessionEnd(target, pattern) {
  let ends = [];
  for (let i = 0; i < 50; i++) {
    ends = await sessionEnds(target);
    if (ends.some((e) => pattern.test(e.detail?.reason ?? ''))) return;
    await sleep(100);
  }
  assert.fail(`no session end record of ${target} matching ${pattern}: ${JSON.stringify(ends)}`);
}

function report(what, { lived, growth }) {
  console.log(`# ${what}: connection lived ${lived} ms after the flood began, gateway RSS grew ${(growth / MIB).toFixed(1)} MiB`);
}

test('a native client sending one FIRST|COMPRESSED clipboard chunk then endless compressed chunks is cut off', async () => {
  const page = await goodSession();
  const mitm = await startRdpMitm(gw.rdpPort);
  cleanups.push(() => mitm.close());
  const client = await startXfreerdp({ args: [`/v:127.0.0.1:${mitm.port}`, '/u:alice#desk2', `/p:${ALICE}`, '/cert:ignore', '/size:1280x800', '+clipboard'] });
  cleanups.push(() => client.stop());
  const conn = await mitm.nextConn();
  // Up: the session is open and the gateway has opened the clipboard channel.
  for (let i = 0; i < 200 && (conn.clipChannel === null || !gw.log().includes('native RDP session started')); i++) await sleep(100);
  assert.notEqual(conn.clipChannel, null, `no clipboard channel seen\n${client.log().slice(-1500)}`);
  // The first full picture is on its way to the client: let it arrive (the gateway's loop reads
  // no client PDU while it writes).
  await conn.quiet('toClient', 500);
  const data = randomBytes(16000);
  const frame = (flags, bytes) => mcsFrame(0x64, conn.initiator[0x64], conn.clipChannel, channelChunk(100, flags, bytes));
  const result = await underFlood(conn, () => conn.flood(
    'toServer',
    frame(CHANNEL_FLAG_FIRST | CHANNEL_PACKET_COMPRESSED, data.subarray(0, 50)),
    () => frame(CHANNEL_PACKET_COMPRESSED, data),
  ));
  report('native compressed chunks', result);
  assert.ok(result.lived < 2000, `the connection lived ${result.lived} ms`);
  assert.ok(result.growth < 64 * MIB, `the gateway grew by ${result.growth} bytes`);
  for (let i = 0; i < 50 && !/native RDP session cut off.*sent too much/.test(gw.log()); i++) await sleep(100);
  assert.match(gw.log(), /native RDP session cut off.*sent too much/, `clipboard channel ${conn.clipChannel}`);
  await waitSessionEnd('desk2', /native client sent too much.*clipboard channel sent more than the 100 bytes/);
  await assertStillPainting(page);
  assert.equal(gw.exited, null, 'gateway died');
  client.stop();
  await page.context().close();
});

/** An RDP target behind a man in the middle, opened by alice in the browser, painting. */
async function hostileTarget(name) {
  const mitm = await startRdpMitm(Number(xrdp.address.split(':').pop()));
  cleanups.push(() => mitm.close());
  let r = await admin.post('/targets', { name, kind: 'rdp', address: `127.0.0.1:${mitm.port}`, account: xrdp.user, password: xrdp.password });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: name });
  assert.equal(r.status, 201, r.text);
  const page = await newPage(browser);
  await openTarget(page, gw.base, 'alice', ALICE, name);
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 30000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 30000 });
  const conn = await mitm.nextConn();
  return { page, conn };
}

test('an RDP target declaring a 4 GiB clipboard message is cut off', async () => {
  const good = await goodSession();
  const { page, conn } = await hostileTarget('evil-4gib');
  for (let i = 0; i < 100 && conn.clipChannel === null; i++) await sleep(100);
  assert.notEqual(conn.clipChannel, null, 'no clipboard channel seen');
  const data = randomBytes(16000);
  const frame = (flags) => mcsFrame(0x68, conn.initiator[0x68], conn.clipChannel, channelChunk(0xffffffff, flags, data));
  const result = await underFlood(conn, () => conn.flood('toClient', frame(CHANNEL_FLAG_FIRST), () => frame(0)));
  report('target 4 GiB channel message', result);
  assert.ok(result.lived < 2000, `the connection lived ${result.lived} ms`);
  assert.ok(result.growth < 64 * MIB, `the gateway grew by ${result.growth} bytes`);
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 5000 });
  assert.match(await page.textContent('#session-error'), /sent too much.*4294967295-byte message/);
  await waitSessionEnd('evil-4gib', /RDP target sent too much: the clipboard channel announced a 4294967295-byte message/);
  await assertStillPainting(good);
  assert.equal(gw.exited, null, 'gateway died');
  await page.context().close();
  await good.context().close();
});

test('an RDP target sending endless fast-path fragments is cut off', async () => {
  const good = await goodSession();
  const { page, conn } = await hostileTarget('evil-fragments');
  const data = randomBytes(16000);
  // Surface commands (update code 4): a first fragment (2 << 4), then next ones (3 << 4).
  const result = await underFlood(conn, () => conn.flood('toClient', fastPathFrame(0x24, data), () => fastPathFrame(0x34, data)));
  report('target fast-path fragments', result);
  assert.ok(result.lived < 2000, `the connection lived ${result.lived} ms`);
  assert.ok(result.growth < 64 * MIB, `the gateway grew by ${result.growth} bytes`);
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 5000 });
  assert.match(await page.textContent('#session-error'), /sent too much.*fast-path update/);
  await waitSessionEnd('evil-fragments', /fragmented fast-path update grew beyond the 8388608-byte limit/);
  await assertStillPainting(good);
  assert.equal(gw.exited, null, 'gateway died');
  await page.context().close();
  await good.context().close();
});

test('a VNC target flooding full-screen Raw updates cannot make the gateway hold them', async () => {
  // Raw is plain RFB, so the session is not cut off: the gateway must read the target only as
  // fast as it applies what it read. Before updates were queued in bands of at most 1 MiB, its
  // queue of 16 updates alone could pin 16 screens (530 MB at 3840x2160). Whether that queue
  // fills depends on which side is slower (on the debug build, reading: this test passed with
  // the bands taken out, +233 MiB); the bands themselves are checked by portcullis-vnc's
  // `a_full_screen_raw_update_reaches_the_session_in_bands_of_at_most_a_mib`, which fails
  // without them. Here: the whole gateway stays bounded and the other session keeps painting.
  const good = await goodSession();
  const [W, H] = [3840, 2160];
  const screen = W * H * 4;
  const evil = await startHostileVnc('raw_flood', { width: W, height: H });
  cleanups.push(() => evil.close());
  let r = await admin.post('/targets', { name: 'evil-raw', kind: 'vnc', address: `127.0.0.1:${evil.port}`, password: 'x' });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: 'evil-raw' });
  assert.equal(r.status, 201, r.text);
  const pid = gatewayPid();
  const base = rss(pid);
  let peak = base;
  const sampler = setInterval(() => { try { peak = Math.max(peak, rss(pid)); } catch { /* gone */ } }, 50);
  let page = null;
  try {
    page = await newPage(browser);
    await openTarget(page, gw.base, 'alice', ALICE, 'evil-raw');
    await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 30000 });
    // Gigabytes offered: the gateway takes what it can, the rest waits in the socket. At least
    // 8 screens (what may be in flight between the socket and the framebuffer, below, is about
    // 4.5, and Node holds one more), within a minute on a slow machine.
    const until = Date.now() + 60000;
    while (Date.now() < until && evil.sent() < 10 && peak - base < 1024 * MIB) await sleep(100);
    // The other session paints while the flood goes on.
    await assertStillPainting(good);
    evil.stop();
    const sent = evil.sent();
    clearInterval(sampler);
    peak = Math.max(peak, rss(pid));
    const growth = peak - base;
    console.log(`# Raw flood at ${W}x${H}: ${sent} screens given to the socket (${((sent * screen) / MIB).toFixed(0)} MiB), gateway RSS grew ${(growth / MIB).toFixed(1)} MiB`);
    assert.ok(sent >= 8, `only ${sent} screens went into the socket in a minute: the flood did not reach the gateway's bounds`);
    // What a 4K session holds anyway (framebuffer 32 MiB, the recorder's x264 about 140, the
    // viewer's copy and encoding of a full screen about 100), plus what may be in flight:
    // vnc-rs's 32 MiB read channel, the rectangle it decodes and the 2 it has handed over
    // (32 MiB each), 16 bands of 1 MiB.
    assert.ok(growth < 600 * MIB, `the gateway grew by ${(growth / MIB).toFixed(0)} MiB under the flood`);
    assert.equal(gw.exited, null, 'gateway died');
  } finally {
    clearInterval(sampler);
    evil.close();
    await page?.context().close();
    await good.context().close();
  }
});

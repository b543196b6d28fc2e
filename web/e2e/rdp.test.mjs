// RDP targets through real peers: xrdp (TLS logon) and freerdp-shadow-cli (NLA), opened from
// headless Chromium through the gateway; hostile RDP servers cut off without harm to others.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import {
  startDesktop, startGateway, startXrdpDesktop, startShadowDesktop, startXfreerdp, launchBrowser,
  uiLogin, compareCanvasWith, sleep, freePort, request, recordedEvents,
} from './harness.mjs';
import { startHostileRdp } from './hostile-rdp.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const BOB = 'bob-password-1234';
const VNC_PASSWORD = 'vncsecret';

let vnc, xrdp, shadow, gw, browser, admin;

before(async () => {
  [vnc, xrdp, shadow] = await Promise.all([
    startDesktop(VNC_PASSWORD),
    startXrdpDesktop(),
    startShadowDesktop(),
  ]);
  const rdpPort = await freePort();
  gw = await startGateway({
    adminPassword: ADMIN,
    extraConfig: `[rdp]\nlisten = "127.0.0.1:${rdpPort}"\nticket_ttl_secs = 4\nhandshake_timeout_secs = 4\n`,
  });
  gw.rdpPort = rdpPort;
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  let r = await admin.post('/users', { name: 'alice', password: ALICE, role: 'user' });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/users', { name: 'bob', password: BOB, role: 'user' });
  assert.equal(r.status, 201, r.text);
  const targets = [
    { name: 'desk', kind: 'vnc', address: vnc.address, password: VNC_PASSWORD },
    { name: 'xrdp', kind: 'rdp', address: xrdp.address, account: xrdp.user, password: xrdp.password },
    { name: 'nla', kind: 'rdp', address: shadow.address, account: shadow.user, password: shadow.password },
    { name: 'nla-wrongpw', kind: 'rdp', address: shadow.address, account: shadow.user, password: 'not-the-password' },
  ];
  for (const t of targets) {
    r = await admin.post('/targets', t);
    assert.equal(r.status, 201, r.text);
    r = await admin.post('/grants', { user: 'alice', target: t.name });
    assert.equal(r.status, 201, r.text);
  }
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  vnc?.stop();
  xrdp?.stop();
  shadow?.stop();
});

async function newPage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  return ctx.newPage();
}

async function openSession(page, target) {
  await uiLogin(page, gw.base, 'alice', ALICE);
  await page.waitForSelector(`[data-target="${target}"]`, { timeout: 10000 });
  await page.click(`[data-target="${target}"]`);
}

async function waitConnectedAndPainted(page) {
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
}

/** Types a command that writes a marker file on the target, and waits for the file. */
/** Waits (up to 5 s) until the gateway lists no session. */
async function waitNoSessions() {
  for (let i = 0; i < 50 && (await admin.get('/sessions')).json.length; i++) await sleep(100);
}

async function typeMarker(page, marker, text) {
  rmSync(marker, { force: true });
  await page.click('#session-canvas', { position: { x: 300, y: 200 } });
  await page.keyboard.type(`echo ${text} > ${marker}`);
  await page.keyboard.press('Enter');
  // The shell creates the file before echo writes into it: wait for the whole line.
  const line = () => (existsSync(marker) ? readFileSync(marker, 'utf8') : '');
  for (let i = 0; i < 80 && !line().endsWith('\n'); i++) await sleep(100);
  assert.ok(existsSync(marker), 'typed command did not run on the target');
  const got = line().trim();
  rmSync(marker, { force: true });
  return got;
}

/**
 * Compares the canvas with the target's own screenshot until they agree (or 15 s pass: a fresh
 * xrdp session starts its X server after the connection is up).
 */
async function assertShowsTarget(page, screenshot, region = { x: 0, y: 0, w: 1000, h: 600 }) {
  let cmp;
  for (let i = 0; i < 30; i++) {
    try {
      cmp = await compareCanvasWith(page, readFileSync(screenshot()), region);
      if (cmp.differing / cmp.total < 0.01) return cmp;
    } catch (e) {
      cmp = String(e);
    }
    await sleep(500);
  }
  assert.fail(`canvas differs from the target's display: ${JSON.stringify(cmp)}`);
}

test('RDP targets are listed beside VNC targets', async () => {
  const page = await newPage();
  await uiLogin(page, gw.base, 'alice', ALICE);
  for (const name of ['desk', 'xrdp', 'nla']) {
    await page.waitForSelector(`[data-target="${name}"]`, { timeout: 10000 });
  }
  const text = await page.textContent('body');
  assert.match(text, /RDP/);
  assert.match(text, /VNC/);
  // The RDP file button downloads a one-time .rdp file and shows its one-time password.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('[data-rdp-file="xrdp"]'),
  ]);
  assert.equal(download.suggestedFilename(), 'xrdp.rdp');
  assert.match(readFileSync(await download.path(), 'utf8'), /username:s:alice#xrdp/);
  await page.waitForSelector('#targets-note[data-state="ok"]');
  assert.match(await page.textContent('#targets-note'), /one-time password when it asks: \S{20,}/);
  // Users never see addresses or accounts.
  const list = (await (await userApi()).get('/targets')).json;
  for (const t of list) {
    assert.equal(t.address, undefined);
    assert.equal(t.account, undefined);
  }
  await page.context().close();
});

async function userApi() {
  const api = gw.api();
  assert.equal((await api.login('alice', ALICE)).status, 200);
  return api;
}

test('xrdp target (TLS logon) in the browser: live view, typing, listed and recorded', async () => {
  const page = await newPage();
  await openSession(page, 'xrdp');
  await waitConnectedAndPainted(page);
  const painted = Date.now();
  assert.match(await page.textContent('#session-status'), /connected/i);
  const size = await page.evaluate(() => {
    const c = document.querySelector('#session-canvas');
    return [c.width, c.height];
  });
  assert.ok(size[0] >= 1000 && size[1] >= 600, `desktop ${size}`);

  // The browser shows what the xrdp session's X server shows (xterm on #204060).
  await assertShowsTarget(page, () => xrdp.screenshot());

  // Mixed case, digits and symbols arrive as typed (scancodes with Shift added where needed).
  const marker = `/tmp/portcullis-rdp-e2e-${process.pid}`;
  assert.equal(await typeMarker(page, marker, 'Typed-Via_RDP:42!'), 'Typed-Via_RDP:42!');
  await assertShowsTarget(page, () => xrdp.screenshot());

  const sessions = (await admin.get('/sessions')).json;
  const mine = sessions.find((s) => s.target === 'xrdp');
  assert.ok(mine, JSON.stringify(sessions));
  assert.equal(mine.state, 'active');
  const closed = Date.now();
  assert.equal((await admin.del(`/sessions/${mine.id}`)).status, 204);
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#session-error'), /closed by an administrator/i);
  await page.context().close();

  // Recorded like any session: complete, with the typed text in its event track.
  let rec;
  for (let i = 0; i < 50; i++) {
    rec = (await admin.get(`/recordings/${mine.id}`)).json;
    if (rec?.recording?.state === "complete") break;
    await sleep(200);
  }
  assert.equal(rec.recording.state, "complete", JSON.stringify(rec));
  // It covers at least the time the test saw the session live (the machine's speed decides how
  // long that is).
  assert.ok(rec.recording.duration_ms >= closed - painted, `${closed - painted} ms: ${JSON.stringify(rec)}`);
  const events = (await admin.get(`/recordings/${mine.id}/events`)).json;
  const keys = events.filter((e) => e.type === 'keys').map((e) => e.text).join('');
  assert.match(keys, /Typed-Via_RDP:42!/);
  const r = gw.cli(['recording', 'verify', `${gw.dir}/data/recordings/${mine.id}`]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('NLA target (freerdp-shadow) in the browser: live view and typing', async () => {
  const page = await newPage();
  try {
    await openSession(page, 'nla');
    await waitConnectedAndPainted(page);
    await assertShowsTarget(page, () => shadow.screenshot());
    const marker = `/tmp/portcullis-nla-e2e-${process.pid}`;
    assert.equal(await typeMarker(page, marker, 'through-NLA'), 'through-NLA');
  } finally {
    // Its session ends with the page (else the next tests, which expect none, fail too).
    await page.context().close();
    await waitNoSessions();
  }
});

test('an NLA target refusing the stored credentials gives a clear error at once', async () => {
  const page = await newPage();
  const started = Date.now();
  await openSession(page, 'nla-wrongpw');
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  assert.match(await page.textContent('#session-error'), /refused the stored credentials/i);
  assert.ok(Date.now() - started < 10000);
  await page.context().close();
  await waitNoSessions();
  assert.deepEqual((await admin.get('/sessions')).json, []);
});

for (const behaviour of ['garbage', 'trickle', 'silent', 'truncated', 'tls_garbage', 'tls_huge_lengths']) {
  test(`a hostile RDP server (${behaviour}) ends only its own session`, async () => {
    const evil = await startHostileRdp(behaviour);
    const name = `evil-rdp-${behaviour.replaceAll('_', '-')}`;
    let r = await admin.post('/targets', { name, kind: 'rdp', address: `127.0.0.1:${evil.port}`, account: 'x', password: 'x' });
    assert.equal(r.status, 201, r.text);
    await admin.post('/grants', { user: 'alice', target: name });
    const good = await newPage();
    await openSession(good, 'nla');
    await waitConnectedAndPainted(good);

    const page = await newPage();
    const started = Date.now();
    await openSession(page, name);
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
    const text = await page.textContent('#session-error');
    assert.match(text, /RDP|target/i);
    // The handshake limit (5 s in these tests) bounds the slow ones.
    assert.ok(Date.now() - started < 12000, `took ${Date.now() - started} ms`);
    evil.close();

    const painted = await good.evaluate(() => window.__portcullis.framesPainted);
    await good.click('#session-canvas', { position: { x: 300, y: 200 } });
    await good.keyboard.type('echo ok');
    await good.waitForFunction((n) => window.__portcullis.framesPainted > n, painted, { timeout: 10000 });
    assert.equal(gw.exited, null, 'gateway died');
    assert.match(gw.log(), new RegExp(`session failed to open.*target=${name}`));
    await page.context().close();
    await good.context().close();
  });
}

// --- Native RDP clients (xfreerdp on its own Xvfb) through the gateway's RDP listener. ---

const clients = [];
after(() => { for (const c of clients) c.stop(); });

async function xfreerdp(...args) {
  const c = await startXfreerdp({ args: [...args, '/cert:ignore', '/size:1280x800'] });
  clients.push(c);
  return c;
}

/** Pixels that differ by more than 10% between two PNGs, in `region` (ImageMagick). */
function diffPixels(a, b, { x, y, w, h }) {
  const dir = mkdtempSync(join(tmpdir(), 'pc-diff-'));
  const crop = (src, name) => {
    const out = join(dir, name);
    execFileSync('convert', [src, '-crop', `${w}x${h}+${x}+${y}`, '+repage', out]);
    return out;
  };
  const r = spawnSync('compare', ['-metric', 'AE', '-fuzz', '10%', crop(a, 'a.png'), crop(b, 'b.png'), 'null:']);
  rmSync(dir, { recursive: true, force: true });
  return Number(String(r.stderr).trim().split(/\s/)[0]);
}

/** Waits until the client's screen shows the target's (1000x600 at the top left). */
async function assertClientShows(client, targetShot, what) {
  const region = { x: 0, y: 0, w: 1000, h: 600 };
  let diff;
  for (let i = 0; i < 40; i++) {
    try {
      diff = diffPixels(client.screenshot(), targetShot(), region);
      if (diff / (region.w * region.h) < 0.01) return;
    } catch (e) {
      diff = String(e);
    }
    await sleep(250);
  }
  assert.fail(`${what}: the client's screen differs from the target's (${diff} pixels)\n${client.log().slice(-1500)}`);
}

async function waitExit(client, ms = 10000) {
  for (let i = 0; i < ms / 100 && client.alive(); i++) await sleep(100);
  assert.equal(client.alive(), false, `xfreerdp still runs\n${client.log().slice(-1500)}`);
}

const targetContacts = () => (gw.log().match(/RDP target connected|session opened/g) ?? []).length;

test('native xfreerdp through the gateway: the xrdp desktop, typing, listed, recorded, closed by an admin', async () => {
  const started = Date.now();
  const client = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#xrdp', `/p:${ALICE}`);
  await assertClientShows(client, () => xrdp.screenshot(), 'xrdp through the gateway');
  const firstFrameMs = Date.now() - started;

  const marker = `/tmp/portcullis-native-e2e-${process.pid}`;
  rmSync(marker, { force: true });
  client.xdotool('mousemove', '400', '300', 'click', '1');
  client.xdotool('type', '--delay', '40', `echo Native-Typed_42 > ${marker}`);
  client.xdotool('key', 'Return');
  for (let i = 0; i < 80 && !existsSync(marker); i++) await sleep(100);
  assert.ok(existsSync(marker), `typed command did not run on the target\n${gw.log().slice(-2000)}`);
  assert.equal(readFileSync(marker, 'utf8').trim(), 'Native-Typed_42');
  rmSync(marker, { force: true });
  await assertClientShows(client, () => xrdp.screenshot(), 'after typing');

  const mine = (await admin.get('/sessions')).json.find((s) => s.entry === 'rdp');
  assert.ok(mine, JSON.stringify((await admin.get('/sessions')).json));
  assert.equal(mine.user, 'alice');
  assert.equal(mine.target, 'xrdp');
  // Several watchers: the admin's browser can watch the native session live too (same path).
  assert.equal((await admin.del(`/sessions/${mine.id}`)).status, 204);
  await waitExit(client, 5000);
  assert.match(client.log(), /ERRINFO_RPC_INITIATED_DISCONNECT/);

  let rec;
  for (let i = 0; i < 50; i++) {
    rec = (await admin.get(`/recordings/${mine.id}`)).json;
    if (rec?.recording?.state === 'complete') break;
    await sleep(200);
  }
  assert.equal(rec.recording.state, 'complete', JSON.stringify(rec));
  const events = (await admin.get(`/recordings/${mine.id}/events`)).json;
  const keys = events.filter((e) => e.type === 'keys').map((e) => e.text).join('');
  assert.match(keys, /Native-Typed_42/);
  console.log(`# native connect to first matching frame: ${firstFrameMs} ms`);
});

test('a native client can open a VNC target too', async () => {
  const client = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#desk', `/p:${ALICE}`);
  await assertClientShows(client, () => {
    const p = join(tmpdir(), `pc-vnc-shot-${process.pid}.png`);
    writeFileSync(p, vnc.screenshot());
    return p;
  }, 'VNC through the gateway');
  client.stop();
});

for (const [name, user, password] of [
  ['wrong password', 'alice#xrdp', 'not-alices-password'],
  ['unknown user', 'mallory#xrdp', 'whatever-password'],
  ['no grant', 'bob#xrdp', BOB],
  ['no such target', 'alice#nosuch', ALICE],
  ['several grants and no target named', 'alice', ALICE],
]) {
  test(`native login refused at protocol level before any target is contacted: ${name}`, async () => {
    const contacts = targetContacts();
    const refusals = () => (gw.log().match(/native RDP login refused/g) ?? []).length;
    const before = refusals();
    const client = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, `/u:${user}`, `/p:${password}`);
    await waitExit(client);
    assert.match(client.log(), /ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES/);
    assert.equal(refusals(), before + 1);
    assert.equal(targetContacts(), contacts, 'a target was contacted');
    assert.equal((await admin.get('/sessions')).json.length, 0);
  });
}

async function rdpFile(target) {
  const alice = gw.api();
  assert.equal((await alice.login('alice', ALICE)).status, 200);
  const r = await alice.post(`/targets/${target}/rdp-file`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['content-type'], 'application/x-rdp');
  assert.match(r.headers['content-disposition'], new RegExp(`${target}\\.rdp`));
  const password = r.headers['x-portcullis-rdp-password'];
  assert.ok(password?.length >= 20, 'no one-time password');
  const id = r.text.match(/loadbalanceinfo:s:Cookie: msts=(pct_\S+)\r\n/)?.[1];
  assert.ok(id, r.text);
  // The file holds the ticket's id, never its password nor the user's.
  assert.ok(!r.text.includes(ALICE) && !r.text.includes(password), r.text);
  const path = join(mkdtempSync(join(tmpdir(), 'pc-rdpfile-')), `${target}.rdp`);
  writeFileSync(path, r.text);
  return { path, password, id };
}

const refusedTicket = () => (gw.log().match(/native RDP login refused/g) ?? []).length;

test('an .rdp file and its one-time password let a native client in once, with NLA', async () => {
  const { path, password } = await rdpFile('nla');
  const client = await xfreerdp(path, `/p:${password}`, '/sec:nla');
  await assertClientShows(client, () => shadow.screenshot(), 'ticket session over NLA');
  client.stop();
  await waitExit(client);
  const before = refusedTicket();
  const again = await xfreerdp(path, `/p:${password}`);
  await waitExit(again);
  assert.equal(refusedTicket(), before + 1, gw.log().slice(-1500));
  // Nobody without a grant gets a file.
  const bob = gw.api();
  await bob.login('bob', BOB);
  assert.equal((await bob.post('/targets/nla/rdp-file')).status, 404);
});

test('a ticket also works without NLA (password inside TLS), and a wrong one-time password uses it up', async () => {
  const { path, password } = await rdpFile('nla');
  const client = await xfreerdp(path, `/p:${password}`, '/sec:tls');
  await assertClientShows(client, () => shadow.screenshot(), 'ticket session over TLS');
  client.stop();
  await waitExit(client);

  for (const sec of ['/sec:nla', '/sec:tls']) {
    const t = await rdpFile('nla');
    const contacts = targetContacts();
    const before = refusedTicket();
    const wrong = await xfreerdp(t.path, '/p:not-the-ticket-password', sec);
    await waitExit(wrong);
    assert.equal(refusedTicket(), before + 1, `${sec}: ${gw.log().slice(-1500)}`);
    // Used up: the right password no longer works either.
    const late = await xfreerdp(t.path, `/p:${t.password}`, sec);
    await waitExit(late);
    // (With /sec:nla it cannot even negotiate: a used ticket offers no NLA.)
    assert.equal(targetContacts(), contacts, 'a target was contacted');
  }
});

test('an .rdp file expires', async () => {
  const { path, password } = await rdpFile('nla');
  await sleep(4500);
  const contacts = targetContacts();
  const client = await xfreerdp(path, `/p:${password}`);
  await waitExit(client);
  assert.equal(targetContacts(), contacts);
});

/** Sends `chunks` (Buffers, or numbers = pauses in ms) to the RDP listener; resolves when the gateway closes. */
function rawRdp(chunks) {
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect(gw.rdpPort, '127.0.0.1');
    sock.on('error', () => {});
    sock.on('data', () => {});
    sock.on('close', () => resolve(Date.now() - started));
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (typeof c === 'number') await sleep(c);
        else if (!sock.destroyed) sock.write(c);
      }
    });
  });
}

/** An X.224 Connection Request asking for TLS or NLA, as mstsc sends it. */
const CR = (() => {
  const cookie = Buffer.from('Cookie: mstshash=alice\r\n');
  const neg = Buffer.from([0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00]);
  const x224 = Buffer.from([6 + cookie.length + neg.length, 0xe0, 0, 0, 0, 0, 0]);
  const len = 4 + x224.length + cookie.length + neg.length;
  return Buffer.concat([Buffer.from([3, 0, len >> 8, len & 0xff]), x224, cookie, neg]);
})();
const hostileClients = {
  garbage: [Buffer.alloc(5000, 0x5a)],
  huge_length: [Buffer.from([0x03, 0x00, 0xff, 0xff, 0x02, 0xf0, 0x80])],
  truncated_request: [CR.subarray(0, 20)],
  slow_loris: [CR.subarray(0, 1), 1000, CR.subarray(1, 2), 1000, CR.subarray(2, 3), 1000, CR.subarray(3, 4)],
  data_before_tls: [CR, Buffer.alloc(64, 0x16)],
};

for (const [behaviour, chunks] of Object.entries(hostileClients)) {
  test(`a hostile native client (${behaviour}) is cut off with a logged error; other sessions go on`, async () => {
    const good = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#nla', `/p:${ALICE}`);
    await assertClientShows(good, () => shadow.screenshot(), 'the good session');
    const failures = () => (gw.log().match(/native RDP connection failed/g) ?? []).length;
    const before = failures();
    const took = await rawRdp(chunks);
    assert.ok(took < 7000, `connection held for ${took} ms`);
    for (let i = 0; i < 20 && failures() === before; i++) await sleep(100);
    assert.equal(failures(), before + 1, gw.log().slice(-1500));
    assert.ok(good.alive(), 'the good client was disconnected');
    await assertClientShows(good, () => shadow.screenshot(), 'the good session after the attack');
    assert.equal(gw.exited, null, 'gateway died');
    good.stop();
    await waitExit(good);
  });
}

/** Sets (text given) or reads the CLIPBOARD selection of an X display with xclip. */
function xclip(display, env, text) {
  const e = { ...process.env, ...env, DISPLAY: display };
  if (text === undefined) {
    try { return execFileSync('xclip', ['-selection', 'clipboard', '-o'], { env: e, timeout: 5000 }).toString(); } catch { return ''; }
  }
  // xclip serves the selection from a background process until another owner takes it.
  const child = spawn('xclip', ['-selection', 'clipboard', '-i'], { env: e, stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  child.stdin.end(text);
  child.unref();
  return undefined;
}

async function waitClip(read, want, ms = 15000) {
  let got = '';
  for (let i = 0; i < ms / 200 && !got.includes(want); i++) {
    got = read();
    if (!got.includes(want)) await sleep(200);
  }
  return got;
}

async function putPolicy(doc) {
  const r = await request(gw.base, 'PUT', '/api/v1/policy', { body: doc, headers: { cookie: admin.cookie, 'x-portcullis-csrf': '1' } });
  assert.equal(r.status, 200, r.text);
}

test('RDP clipboard: xfreerdp ↔ gateway ↔ xrdp both ways, and only the way the policy allows', async () => {
  const original = (await admin.get('/policy')).json.policy;
  const client = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#xrdp', `/p:${ALICE}`);
  try {
    await assertClientShows(client, () => xrdp.screenshot(), 'xrdp through the gateway');
    const xenv = { XAUTHORITY: join(readFileSync(join(xrdp.dir, 'home'), 'utf8').trim(), '.Xauthority') };
    const onTarget = (text) => xclip(xrdp.display(), xenv, text);
    const onClient = (text) => xclip(client.display, {}, text);

    // Default policy: text both ways.
    onClient('client-to-target-one');
    assert.match(await waitClip(() => onTarget(), 'client-to-target-one'), /client-to-target-one/);
    onTarget('target-to-client-one');
    assert.match(await waitClip(() => onClient(), 'target-to-client-one'), /target-to-client-one/);

    // Client → target only.
    const doc = structuredClone(original);
    doc.rules[0].clipboard = { ...(doc.rules[0].clipboard ?? {}), direction: 'client_to_target' };
    await putPolicy(doc);
    // The session keeps the rule it opened with: reconnect to get the new one.
    client.stop();
    await waitExit(client);
    const again = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#xrdp', `/p:${ALICE}`);
    await assertClientShows(again, () => xrdp.screenshot(), 'xrdp again');
    const onClient2 = (text) => xclip(again.display, {}, text);
    onClient2('client-to-target-two');
    assert.match(await waitClip(() => onTarget(), 'client-to-target-two'), /client-to-target-two/);
    onTarget('target-to-client-two');
    const leaked = await waitClip(() => onClient2(), 'target-to-client-two', 4000);
    assert.doesNotMatch(leaked, /target-to-client-two/);
    assert.match(gw.log(), /policy denied a crossing/);
    again.stop();
    await waitExit(again);
  } finally {
    client.stop();
    await putPolicy(original);
  }
});

test('RDP drives: xfreerdp /drive: gives the target no drive when denied, read-only with upload, both ways with both; each file recorded with its hash', async () => {
  const original = (await admin.get('/policy')).json.policy;
  const local = mkdtempSync(join(tmpdir(), 'pc-drive-'));
  const content = randomBytes(300 * 1024);
  writeFileSync(join(local, 'hello.bin'), content);
  // What the target writes: a file its user can read.
  const outgoing = join(mkdtempSync(join(tmpdir(), 'pc-drive-out-')), 'report.txt');
  const report = `report ${randomBytes(8).toString('hex')}\n`.repeat(2000);
  writeFileSync(outgoing, report);
  execFileSync('chmod', ['-R', 'a+rX', join(outgoing, '..')]);
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  const home = readFileSync(join(xrdp.dir, 'home'), 'utf8').trim();
  const mount = join(home, 'thinclient_drives');
  // The FUSE mount of xrdp-chansrv is the session user's only (root is refused, as FUSE does).
  const onTarget = (...args) => spawnSync('runuser', ['-u', xrdp.user, '--', ...args], { timeout: 30000 });
  const driveSeen = () => {
    const r = onTarget('ls', '-a', mount);
    return r.status === 0 && r.stdout.toString().split('\n').includes('share');
  };
  const waitDrive = async () => {
    for (let i = 0; i < 100 && !driveSeen(); i++) await sleep(200);
    assert.ok(driveSeen(), `no drive on the target\n${onTarget('ls', '-la', mount).stderr}\n${gw.log().slice(-2000)}`);
  };
  const withRule = async (fileTransfer) => {
    const doc = structuredClone(original);
    doc.rules[0].file_transfer = fileTransfer;
    await putPolicy(doc);
  };
  const connect = async () => {
    const c = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#xrdp', `/p:${ALICE}`, `/drive:share,${local}`);
    await assertClientShows(c, () => xrdp.screenshot(), 'xrdp with a drive');
    const mine = (await admin.get('/sessions')).json.find((s) => s.entry === 'rdp' && s.state === 'active');
    assert.ok(mine);
    return [c, mine.id];
  };
  const done = async (c, id) => {
    c.stop();
    await waitExit(c);
    return recordedEvents(admin, id);
  };
  try {
    // Off (the default): the target is not offered the channel, so it has no drive.
    let [client, id] = await connect();
    await sleep(4000);
    assert.equal(driveSeen(), false, 'the target sees a drive the policy denies');
    let events = await done(client, id);
    assert.ok(!events.some((e) => e.type === 'file_transfer'));

    // Upload only: the target reads the user's file, but cannot write one.
    await withRule('upload');
    [client, id] = await connect();
    await waitDrive();
    const read = onTarget('sha256sum', join(mount, 'share', 'hello.bin'));
    assert.equal(read.status, 0, read.stderr.toString());
    assert.equal(read.stdout.toString().split(' ')[0], sha(content));
    const refused = onTarget('cp', outgoing, join(mount, 'share', 'report.txt'));
    assert.notEqual(refused.status, 0, 'the target wrote to a drive it may only read');
    assert.equal(existsSync(join(local, 'report.txt')), false);
    events = await done(client, id);
    const upload = events.find((e) => e.type === 'file_transfer' && e.direction === 'upload');
    assert.ok(upload, JSON.stringify(events));
    assert.match(upload.path, /hello\.bin$/);
    assert.equal(upload.bytes, content.length);
    assert.equal(upload.sha256, sha(content));
    assert.ok(events.some((e) => e.type === 'policy' && e.action === 'file_download' && e.decision === 'deny'
      && /report\.txt/.test(e.reason)), JSON.stringify(events.filter((e) => e.type === 'policy')));
    assert.ok(events.some((e) => e.type === 'policy' && e.action === 'file_upload' && e.decision === 'allow'));

    // Both: the target's file arrives on the user's machine, byte for byte, and is recorded.
    await withRule('both');
    [client, id] = await connect();
    await waitDrive();
    const wrote = onTarget('cp', outgoing, join(mount, 'share', 'report.txt'));
    assert.equal(wrote.status, 0, wrote.stderr.toString());
    for (let i = 0; i < 50 && !existsSync(join(local, 'report.txt')); i++) await sleep(100);
    assert.equal(readFileSync(join(local, 'report.txt'), 'utf8'), report);
    events = await done(client, id);
    const download = events.find((e) => e.type === 'file_transfer' && e.direction === 'download');
    assert.ok(download, JSON.stringify(events));
    assert.match(download.path, /report\.txt$/);
    assert.equal(download.bytes, Buffer.byteLength(report));
    assert.equal(download.sha256, sha(report));
  } finally {
    await putPolicy(original);
    rmSync(local, { recursive: true, force: true });
    rmSync(join(outgoing, '..'), { recursive: true, force: true });
  }
});

test('RDP clipboard files: a file copied on xfreerdp arrives byte for byte on xrdp, and from xrdp reaches the gateway; none when files are denied; each one recorded with its hash', async () => {
  const original = (await admin.get('/policy')).json.policy;
  const home = readFileSync(join(xrdp.dir, 'home'), 'utf8').trim();
  const xenv = { XAUTHORITY: join(home, '.Xauthority') };
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  // Files both sides can read (xrdp-chansrv runs as the session user).
  const dir = mkdtempSync(join(tmpdir(), 'pc-clipfiles-'));
  execFileSync('chmod', ['a+rx', dir]);
  const put = (name, content) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    execFileSync('chmod', ['a+r', path]);
    return path;
  };
  /** Puts a file list on a display's clipboard (what a file manager's "copy" does). */
  const copyFile = (display, env, path) => {
    const child = spawn('xclip', ['-selection', 'clipboard', '-t', 'text/uri-list', '-i'], {
      env: { ...process.env, ...env, DISPLAY: display }, stdio: ['pipe', 'ignore', 'ignore'], detached: true,
    });
    child.stdin.end(`file://${path}\r\n`);
    child.unref();
  };
  const uriList = (display, env) => {
    try {
      return execFileSync('xclip', ['-selection', 'clipboard', '-o', '-t', 'text/uri-list'],
        { env: { ...process.env, ...env, DISPLAY: display }, timeout: 5000 }).toString();
    } catch { return ''; }
  };
  // Where the target's session finds a file pasted from its clipboard: a FUSE file of its user's.
  const pastedOnTarget = async (name, ms) => {
    let list = '';
    for (let i = 0; i < ms / 250 && !list.includes(name); i++) {
      list = uriList(xrdp.display(), xenv);
      if (!list.includes(name)) await sleep(250);
    }
    const line = list.split(/\r?\n/).find((l) => l.endsWith(`/${name}`));
    if (!line) return null;
    const path = decodeURIComponent(line.replace(/^file:\/\//, ''));
    const r = spawnSync('runuser', ['-u', xrdp.user, '--', 'cat', path], { timeout: 30000, maxBuffer: 1 << 26 });
    assert.equal(r.status, 0, r.stderr.toString());
    return r.stdout;
  };
  const withFiles = async (files) => {
    const doc = structuredClone(original);
    doc.rules[0].clipboard = { ...(doc.rules[0].clipboard ?? {}), direction: 'both', files };
    doc.rules[0].file_transfer = 'both';
    await putPolicy(doc);
  };
  const connect = async () => {
    const c = await xfreerdp(`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#xrdp', `/p:${ALICE}`);
    await assertClientShows(c, () => xrdp.screenshot(), 'xrdp for clipboard files');
    const mine = (await admin.get('/sessions')).json.find((s) => s.entry === 'rdp' && s.state === 'active');
    assert.ok(mine);
    return [c, mine.id];
  };
  const done = async (c, id) => {
    c.stop();
    await waitExit(c);
    return recordedEvents(admin, id);
  };
  try {
    // Allowed both ways: the client's file is fetched by the gateway, offered to xrdp, and
    // pasted there byte for byte (several fetch chunks, within the default 128 KiB limit).
    await withFiles(true);
    let [client, id] = await connect();
    const up = randomBytes(100 * 1024 + 17);
    copyFile(client.display, {}, put('to-target.bin', up));
    const got = await pastedOnTarget('to-target.bin', 20000);
    assert.ok(got, `no file pasted on the target\n${gw.log().slice(-3000)}`);
    assert.equal(got.length, up.length);
    assert.equal(sha(got), sha(up));
    // The target copies a file: the gateway fetches it whole and offers it to the client.
    // (Debian's xfreerdp 2 pastes clipboard files only when built with FUSE, which it is not:
    // it lists the file format, and the gateway's record shows what crossed.)
    const down = Buffer.from(`from the target ${randomBytes(8).toString('hex')}\n`.repeat(900));
    copyFile(xrdp.display(), xenv, put('to-client.txt', down));
    let offered = '';
    for (let i = 0; i < 60 && !offered.includes('text/uri-list'); i++) {
      await sleep(250);
      try {
        offered = execFileSync('xclip', ['-selection', 'clipboard', '-o', '-t', 'TARGETS'],
          { env: { ...process.env, DISPLAY: client.display }, timeout: 5000 }).toString();
      } catch { offered = ''; }
    }
    assert.match(offered, /text\/uri-list/, 'the client was not offered the target\'s file');
    let events = await done(client, id);
    const upload = events.find((e) => e.type === 'file_transfer' && e.direction === 'upload');
    assert.ok(upload, JSON.stringify(events));
    assert.match(upload.path, /to-target\.bin$/);
    assert.equal(upload.bytes, up.length);
    assert.equal(upload.sha256, sha(up));
    const download = events.find((e) => e.type === 'file_transfer' && e.direction === 'download');
    assert.ok(download, JSON.stringify(events));
    assert.match(download.path, /to-client\.txt$/);
    assert.equal(download.bytes, down.length);
    assert.equal(download.sha256, sha(down));
    assert.ok(events.some((e) => e.type === 'policy' && e.action === 'clipboard_to_target' && e.decision === 'allow'
      && /to-target\.bin/.test(e.reason)), JSON.stringify(events.filter((e) => e.type === 'policy')));

    // Files not allowed (text still is): nothing is fetched or offered, and the deny is recorded.
    await withFiles(false);
    [client, id] = await connect();
    copyFile(client.display, {}, put('denied.bin', randomBytes(5000)));
    assert.equal(await pastedOnTarget('denied.bin', 5000), null, 'a denied file reached the target');
    events = await done(client, id);
    assert.ok(!events.some((e) => e.type === 'file_transfer'), JSON.stringify(events));
    assert.ok(events.some((e) => e.type === 'policy' && e.action === 'clipboard_to_target' && e.decision === 'deny'
      && /denied\.bin/.test(e.reason)), JSON.stringify(events.filter((e) => e.type === 'policy')));
    assert.match(gw.log(), /policy denied a crossing/);
  } finally {
    await putPolicy(original);
    rmSync(dir, { recursive: true, force: true });
  }
});

// RDP targets through real peers: xrdp (TLS logon) and freerdp-shadow-cli (NLA), opened from
// headless Chromium through the gateway; hostile RDP servers cut off without harm to others.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, rmSync } from 'node:fs';
import {
  startDesktop, startGateway, startXrdpDesktop, startShadowDesktop, launchBrowser, uiLogin,
  compareCanvasWith, sleep,
} from './harness.mjs';
import { startHostileRdp } from './hostile-rdp.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const VNC_PASSWORD = 'vncsecret';

let vnc, xrdp, shadow, gw, browser, admin;

before(async () => {
  [vnc, xrdp, shadow] = await Promise.all([
    startDesktop(VNC_PASSWORD),
    startXrdpDesktop(),
    startShadowDesktop(),
  ]);
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  let r = await admin.post('/users', { name: 'alice', password: ALICE, role: 'user' });
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
async function typeMarker(page, marker, text) {
  rmSync(marker, { force: true });
  await page.click('#session-canvas', { position: { x: 300, y: 200 } });
  await page.keyboard.type(`echo ${text} > ${marker}`);
  await page.keyboard.press('Enter');
  for (let i = 0; i < 80 && !existsSync(marker); i++) await sleep(100);
  assert.ok(existsSync(marker), 'typed command did not run on the target');
  const got = readFileSync(marker, 'utf8').trim();
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
  assert.ok(rec.recording.duration_ms > 1000, JSON.stringify(rec));
  const events = (await admin.get(`/recordings/${mine.id}/events`)).json;
  const keys = events.filter((e) => e.type === 'keys').map((e) => e.text).join('');
  assert.match(keys, /Typed-Via_RDP:42!/);
  const r = gw.cli(['recording', 'verify', `${gw.dir}/data/recordings/${mine.id}`]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('NLA target (freerdp-shadow) in the browser: live view and typing', async () => {
  const page = await newPage();
  await openSession(page, 'nla');
  await waitConnectedAndPainted(page);
  await assertShowsTarget(page, () => shadow.screenshot());
  const marker = `/tmp/portcullis-nla-e2e-${process.pid}`;
  assert.equal(await typeMarker(page, marker, 'through-NLA'), 'through-NLA');
  await page.context().close();
});

test('an NLA target refusing the stored credentials gives a clear error at once', async () => {
  const page = await newPage();
  const started = Date.now();
  await openSession(page, 'nla-wrongpw');
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  assert.match(await page.textContent('#session-error'), /refused the stored credentials/i);
  assert.ok(Date.now() - started < 10000);
  await page.context().close();
  for (let i = 0; i < 20 && (await admin.get('/sessions')).json.length; i++) await sleep(100);
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

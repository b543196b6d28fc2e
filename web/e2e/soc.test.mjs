// The security team's controls through real peers: TigerVNC (Xvnc + xterm) as the target, headless
// Chromium and xfreerdp as the user, the API as the SOC: kill with a reason, freeze and unfreeze,
// view-only watching, live thumbnails, locking a user, and who may do it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import {
  startDesktop, startGateway, startXfreerdp, launchBrowser, uiLogin, compareCanvasWith, request, sleep, until, watchFromPage,
} from './harness.mjs';
import * as H from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const SOC = 'soc-password-12345';
const REVIEWER = 'reviewer-password-1';
const VNC_PASSWORD = 'vncsecret';

let desk, gw, browser, admin, soc;

before(async () => {
  desk = await startDesktop(VNC_PASSWORD, '1024x768', 'xvnc');
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, password, role] of [['alice', ALICE, 'user'], ['sam', SOC, 'soc'], ['rita', REVIEWER, 'reviewer']]) {
    const r = await admin.post('/users', { name, password, role });
    assert.equal(r.status, 201, r.text);
  }
  let r = await admin.post('/targets', { name: 'desk', address: desk.address, password: VNC_PASSWORD });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: 'desk' });
  assert.equal(r.status, 201, r.text);
  soc = gw.api();
  assert.equal((await soc.login('sam', SOC)).status, 200);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

const newPage = () => H.newPage(browser);

/** Alice's browser session on `desk`; returns the page and the session id. */
async function aliceSession() {
  const page = await newPage();
  await uiLogin(page, gw.base, 'alice', ALICE);
  await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
  await page.click('[data-target="desk"]');
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  return { page, id: await page.evaluate(() => window.__portcullis.sessionId) };
}

const post = (client, path, body) => request(gw.base, 'POST', `/api/v1${path}`, {
  body, headers: { cookie: client.cookie, 'x-portcullis-csrf': '1' },
});

const events = (id) => H.recordedEvents(admin, id);

/** Types `echo WORD > FILE` + Enter in the xterm through the page. */
async function typeMarker(page, word, file) {
  await page.click('#session-canvas', { position: { x: 300, y: 200 } });
  await page.keyboard.type(`echo ${word} > ${file}`);
  await page.keyboard.press('Enter');
}

test('freeze holds the user\'s typing while the view keeps updating; unfreeze lets it through', async () => {
  const { page, id } = await aliceSession();
  assert.equal((await post(soc, `/sessions/${id}/freeze`)).status, 204);
  assert.equal((await soc.get('/sessions')).json.find((s) => s.id === id)?.frozen, true);

  const marker = `/tmp/portcullis-soc-${process.pid}`;
  rmSync(marker, { force: true });
  await typeMarker(page, 'while-frozen', marker);
  await sleep(2000);
  assert.equal(existsSync(marker), false, 'typing reached the target while frozen');

  // The screen still changes on the target and the browser still shows it.
  desk.xdotool('type', '--delay', '20', 'shown-while-frozen');
  await sleep(1500);
  const cmp = await compareCanvasWith(page, desk.screenshot(), { x: 0, y: 0, w: 1024, h: 768 });
  assert.ok(cmp.differing / cmp.total < 0.01, JSON.stringify(cmp));
  desk.xdotool('key', 'ctrl+u');

  assert.equal((await post(soc, `/sessions/${id}/unfreeze`)).status, 204);
  await typeMarker(page, 'after-unfreeze', marker);
  for (let i = 0; i < 50 && !existsSync(marker); i++) await sleep(100);
  assert.ok(existsSync(marker), 'typing did not reach the target after unfreeze');
  rmSync(marker, { force: true });

  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  await page.context().close();
  const ev = await events(id);
  assert.ok(ev.some((e) => e.type === 'frozen' && e.by === 'sam'), JSON.stringify(ev));
  assert.ok(ev.some((e) => e.type === 'unfrozen' && e.by === 'sam'), JSON.stringify(ev));
});

test('a kill through the API ends the browser and the native client at once and shows the reason', async () => {
  const { page, id } = await aliceSession();
  const client = await startXfreerdp({ args: [`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#desk', `/p:${ALICE}`, '/cert:ignore', '/size:1024x768'] });
  try {
    let native;
    for (let i = 0; i < 100 && !native; i++) {
      native = (await soc.get('/sessions')).json.find((s) => s.entry === 'rdp' && s.state === 'active');
      if (!native) await sleep(200);
    }
    assert.ok(native, `no native session\n${client.log().slice(-1500)}`);

    assert.equal((await post(soc, `/sessions/${id}/kill`, { reason: 'suspicious commands' })).status, 204);
    assert.equal((await post(soc, `/sessions/${native.id}/kill`, { reason: 'suspicious commands' })).status, 204);
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
    assert.match(await page.textContent('#session-error'), /security team ended this session: suspicious commands/);
    for (let i = 0; i < 100 && client.alive(); i++) await sleep(100);
    assert.equal(client.alive(), false, 'xfreerdp still runs after the kill');
    assert.match(client.log(), /ERRINFO_RPC_INITIATED_DISCONNECT/);
    // Both ended; the list lets them go once their ends are wrapped up (waited for, not assumed).
    await until('the killed sessions to leave the live list', async () => (await soc.get('/sessions')).json.length === 0, 10000);
    const end = (await events(id)).find((e) => e.type === 'session_end');
    assert.match(end?.reason ?? '', /suspicious commands/);
    // A kill needs a reason.
    assert.equal((await post(soc, `/sessions/${id}/kill`, {})).status, 400);
  } finally {
    client.stop();
    await page.context().close();
  }
});

test('the SOC watches view-only: its input goes nowhere, it is noted, and thumbnails are live', async () => {
  const { page, id } = await aliceSession();
  const thumb = await request(gw.base, 'GET', `/api/v1/sessions/${id}/thumbnail`, { headers: { cookie: soc.cookie } });
  assert.equal(thumb.status, 200);
  assert.equal(thumb.headers['content-type'], 'image/jpeg');
  assert.deepEqual([...thumb.body.subarray(0, 2)], [0xff, 0xd8]);

  // The watcher, in its own browser, opens the watch socket and tries to type.
  const watcher = await newPage();
  await uiLogin(watcher, gw.base, 'sam', SOC);
  await watcher.waitForSelector('#current-role', { timeout: 10000 });
  const marker = `/tmp/portcullis-watch-${process.pid}`;
  rmSync(marker, { force: true });
  const seen = await watchFromPage(watcher, id, `echo watcher > ${marker}\r`);
  assert.equal(seen.init?.session, id, JSON.stringify(seen));
  assert.ok(seen.binary > 0, 'the watcher got no frames');
  await sleep(1000);
  assert.equal(existsSync(marker), false, 'the watcher\'s typing reached the target');
  // The session goes on after the watcher left.
  assert.equal((await soc.get('/sessions')).json.find((s) => s.id === id)?.state, 'active');

  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  await page.context().close();
  await watcher.context().close();
  const ev = await events(id);
  assert.ok(ev.some((e) => e.type === 'watcher_joined' && e.user === 'sam'), JSON.stringify(ev));
});

test('locking a user ends their session and refuses new logins until unlocked', async () => {
  const { page, id } = await aliceSession();
  assert.equal((await post(soc, '/users/alice/lock', { reason: 'credential leak' })).status, 204);
  try {
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
    assert.match(await page.textContent('#session-error'), /locked by the security team: credential leak/);
    await page.context().close();
    // The browser is told at once; the session leaves the list once it has ended (its
    // recording closed and its end on the audit trail).
    await until("alice's session to leave the live list",
      async () => (await soc.get('/sessions')).json.filter((s) => s.user === 'alice').length === 0, 10000);

    const alice = gw.api();
    const r = await alice.login('alice', ALICE);
    assert.equal(r.status, 403, r.text);
    assert.match(r.text, /locked/);
    const client = await startXfreerdp({ args: [`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#desk', `/p:${ALICE}`, '/cert:ignore', '/size:1024x768'] });
    for (let i = 0; i < 100 && client.alive(); i++) await sleep(100);
    assert.equal(client.alive(), false);
    assert.match(client.log(), /ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES/);
  } finally {
    // Whatever failed above, alice is unlocked for the tests after this one.
    assert.equal((await post(soc, '/users/alice/unlock')).status, 204);
  }
  assert.equal((await gw.api().login('alice', ALICE)).status, 200);
  void id;
});

test('only the SOC and administrators may use these controls', async () => {
  const { page, id } = await aliceSession();
  const alice = gw.api();
  assert.equal((await alice.login('alice', ALICE)).status, 200);
  const rita = gw.api();
  assert.equal((await rita.login('rita', REVIEWER)).status, 200);
  for (const client of [alice, rita]) {
    assert.equal((await post(client, `/sessions/${id}/kill`, { reason: 'x' })).status, 403);
    assert.equal((await post(client, `/sessions/${id}/freeze`)).status, 403);
    assert.equal((await post(client, '/users/alice/lock', { reason: 'x' })).status, 403);
    assert.equal((await client.get(`/sessions/${id}/thumbnail`)).status, 403);
    assert.equal((await client.get('/sessions')).status, 403);
  }
  // An administrator may.
  assert.equal((await post(admin, `/sessions/${id}/freeze`)).status, 204);
  assert.equal((await post(admin, `/sessions/${id}/kill`, { reason: 'end of test' })).status, 204);
  assert.equal((await post(soc, `/sessions/${id}/kill`, { reason: 'again' })).status, 404);
  await page.context().close();
});

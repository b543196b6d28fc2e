// The policy enforced at every crossing, through real peers: TigerVNC (Xvnc) as the target,
// headless Chromium and xfreerdp as the users. The policy is changed through the API between
// tests (PUT /api/v1/policy); each decision must show in the session's event track.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDesktop, startGateway, startXfreerdp, launchBrowser, uiLogin, request, sleep,
} from './harness.mjs';
import * as H from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const VNC_PASSWORD = 'vncsecret';

let desk, gw, browser, admin;

before(async () => {
  desk = await startDesktop(VNC_PASSWORD, '1024x768', 'xvnc');
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  let r = await admin.post('/users', { name: 'alice', password: ALICE, role: 'user' });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/targets', { name: 'desk', address: desk.address, password: VNC_PASSWORD, labels: ['prod'] });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: 'desk' });
  assert.equal(r.status, 201, r.text);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  desk?.stop();
});

/** One rule for everyone on label `prod`, with `fields` on top of the defaults. */
async function setPolicy(fields) {
  const doc = { rules: [{ name: 'prod-rule', subjects: ['*'], targets: ['label:prod'], ...fields }] };
  const r = await request(gw.base, 'PUT', '/api/v1/policy', {
    body: doc,
    headers: { cookie: admin.cookie, 'x-portcullis-csrf': '1' },
  });
  assert.equal(r.status, 200, r.text);
}

const newPage = () => H.newPage(browser);

const openSession = (page) => H.openTarget(page, gw.base, 'alice', ALICE, 'desk');

async function waitConnected(page) {
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction(() => window.__portcullis.framesPainted >= 1, null, { timeout: 20000 });
  return page.evaluate(() => window.__portcullis.sessionId);
}

async function sessionError(page) {
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  return page.textContent('#session-error');
}

/** The reason a session ended normally (shown in the status line). */
async function disconnected(page, ms = 20000) {
  await page.waitForFunction(() => /Disconnected/.test(document.querySelector('#session-status')?.textContent ?? ''), null, { timeout: ms });
  return page.textContent('#session-status');
}

const events = (id) => H.recordedEvents(admin, id);

test('clipboard crosses only in the direction the policy allows, and each decision is recorded', async () => {
  await setPolicy({ clipboard: { direction: 'client_to_target' } });
  const page = await newPage();
  await openSession(page);
  const id = await waitConnected(page);

  // Browser → target: allowed.
  await page.fill('#local-clipboard', 'browser-to-target-31');
  await page.click('#send-clipboard');
  let got = '';
  for (let i = 0; i < 50 && !got.includes('browser-to-target-31'); i++) {
    try { got = desk.clipboard(); } catch { got = ''; }
    await sleep(100);
  }
  assert.match(got, /browser-to-target-31/);

  // Target → browser: refused; the page never sees it.
  desk.clipboard('target-to-browser-77');
  await sleep(3000);
  const remote = await page.evaluate(() => document.querySelector('#remote-clipboard')?.value ?? '');
  assert.ok(!remote.includes('target-to-browser-77'), remote);
  // The user is told, with the rule.
  assert.match(await page.textContent('#clipboard-message'), /not passed on to you: .*prod-rule/);

  assert.equal((await admin.del(`/sessions/${id}`)).status, 204);
  await page.context().close();
  const policy = (await events(id)).filter((e) => e.type === 'policy');
  const allowed = policy.find((e) => e.action === 'clipboard_to_target' && e.decision === 'allow');
  const denied = policy.find((e) => e.action === 'clipboard_to_client' && e.decision === 'deny');
  assert.ok(allowed, JSON.stringify(policy));
  assert.ok(denied, JSON.stringify(policy));
  assert.match(denied.reason, /prod-rule/);
  // The refused text is in no clipboard event of the recording.
  assert.ok(!(await events(id)).some((e) => e.type === 'clipboard' && e.direction === 'from_target'));
});

test('a time window that excludes now refuses the browser and the native client, with the reason', async () => {
  // A window of one minute, twelve hours from now (UTC): never now. Its end is a minute after
  // its start on the clock (at hh:59 that is the next hour: "hh:59"-"hh:00" would be a window
  // of 23 hours that wraps around midnight, and holds now).
  const hhmm = (d) => `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
  const later = new Date(Date.now() + 12 * 3600_000);
  await setPolicy({ windows: [{ from: hhmm(later), to: hhmm(new Date(later.getTime() + 60_000)) }] });

  const page = await newPage();
  await openSession(page);
  assert.match(await sessionError(page), /outside|window/i);
  await page.context().close();

  const refusals = () => (gw.log().match(/session refused by the policy/g) ?? []).length;
  const before = refusals();
  const client = await startXfreerdp({ args: [`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#desk', `/p:${ALICE}`, '/cert:ignore', '/size:1024x768'] });
  for (let i = 0; i < 100 && client.alive(); i++) await sleep(100);
  assert.equal(client.alive(), false, client.log().slice(-1500));
  assert.match(client.log(), /ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES/);
  assert.ok(refusals() > before, 'no policy refusal in the log');
  assert.equal((await admin.get('/sessions')).json.length, 0);
});

test('the maximum duration ends a session with a message that says so', async () => {
  await setPolicy({ max_duration_secs: 3 });
  const page = await newPage();
  const opened = Date.now();
  await openSession(page);
  const id = await waitConnected(page);
  assert.match(await disconnected(page), /time the policy allows/i);
  const lasted = Date.now() - opened;
  assert.ok(lasted >= 2500 && lasted < 15000, `${lasted} ms`);
  await page.context().close();
  const ev = await events(id);
  const end = ev.find((e) => e.type === 'session_end');
  assert.match(end?.reason ?? '', /time the policy allows.*prod-rule/);
  // The decision to let it open is in the track too, with its terms.
  const open = ev.find((e) => e.type === 'policy' && e.action === 'open');
  assert.match(open?.reason ?? '', /browser session allowed by rule "prod-rule" \(at most 3 s\)/);
});

test('the idle timeout ends a session nobody uses, not one in use', async () => {
  await setPolicy({ idle_timeout_secs: 3 });
  const page = await newPage();
  await openSession(page);
  await waitConnected(page);
  // Moving the mouse over the desktop keeps it alive past the timeout.
  const box = await page.locator('#session-canvas').boundingBox();
  for (let i = 0; i < 10; i++) {
    await page.mouse.move(box.x + 50 + i * 10, box.y + 50);
    await sleep(500);
  }
  assert.doesNotMatch(await page.textContent('#session-status'), /Disconnected/);
  // Then nothing: it ends.
  assert.match(await disconnected(page), /idle/i);
  await page.context().close();
});

test('with recording turned off, a rule that requires recording refuses the session; an optional one lets it run', async () => {
  const norec = await startGateway({ adminPassword: ADMIN, extraConfig: '[recording]\nenabled = false\n' });
  try {
    const api = norec.api();
    assert.equal((await api.login('admin', ADMIN)).status, 200);
    assert.equal((await api.post('/users', { name: 'alice', password: ALICE, role: 'user' })).status, 201);
    assert.equal((await api.post('/targets', { name: 'desk', address: desk.address, password: VNC_PASSWORD })).status, 201);
    assert.equal((await api.post('/grants', { user: 'alice', target: 'desk' })).status, 201);
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
    let page = await ctx.newPage();
    await uiLogin(page, norec.base, 'alice', ALICE);
    await page.click('[data-target="desk"]');
    // The shipped default policy requires recording.
    assert.match(await sessionError(page), /recording is required by rule "default"/);
    await page.close();

    const doc = (await api.get('/policy')).json.policy;
    doc.rules[0].recording = 'optional';
    const r = await request(norec.base, 'PUT', '/api/v1/policy', { body: doc, headers: { cookie: api.cookie, 'x-portcullis-csrf': '1' } });
    assert.equal(r.status, 200, r.text);
    page = await ctx.newPage();
    await uiLogin(page, norec.base, 'alice', ALICE);
    await page.click('[data-target="desk"]');
    await waitConnected(page);
    await ctx.close();
  } finally {
    await norec.stop();
  }
});

// Just-in-time access through the real gateway, a real VNC desktop and Chromium: a user without
// standing access asks for a target; the approvers the policy names (never the requester)
// approve, one or two of them; the access lets a session open and ends it when it runs out; a
// request nobody decides in time expires and a late approval is refused; everything is in the
// audit trail, on the session's recording, and announced by a signed webhook. Its own gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import {
  startGateway, startDesktop, startXfreerdp, launchBrowser, newPage, uiLogin, recordedEvents, until, freePort, dataFileHolding,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const VNC = 'vncpass1';
const PASSWORD = (name) => `${name}-password-1234`;
const HOOK_SECRET = 'webhook-secret-0123456789';
let gw, admin, browser, desktop, hook;
const clients = {};
/** Webhook deliveries: { event, body, valid } in arrival order. */
const delivered = [];

before(async () => {
  gw = await startGateway({ adminPassword: ADMIN });
  desktop = await startDesktop(VNC);
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, role] of [['alice', 'user'], ['bob', 'user'], ['lead', 'user'], ['dave', 'soc'], ['carl', 'soc']]) {
    assert.equal((await admin.post('/users', { name, password: PASSWORD(name), role })).status, 201);
    clients[name] = gw.api();
    assert.equal((await clients[name].login(name, PASSWORD(name))).status, 200);
  }
  for (const name of ['desk', 'vault']) {
    assert.equal((await admin.post('/targets', { name, address: desktop.address, password: VNC })).status, 201);
  }
  const r = await admin.put('/policy', {
    rules: [
      {
        name: 'desk-jit', subjects: ['role:user'], targets: ['name:desk'],
        request: { approvers: ['user:lead', 'user:bob', 'role:soc'], approvals: 1, max_duration_secs: 3600 },
      },
      {
        name: 'vault-jit', subjects: ['role:user'], targets: ['name:vault'],
        request: { approvers: ['user:lead', 'role:soc'], approvals: 2, max_duration_secs: 600 },
      },
    ],
  });
  assert.equal(r.status, 200, r.text);
  // A receiver checking each delivery's signature as a chat relay would.
  const port = await freePort();
  hook = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const ts = req.headers['x-portcullis-timestamp'];
      const expected = 'sha256=' + createHmac('sha256', HOOK_SECRET).update(`${ts}.${body}`).digest('hex');
      delivered.push({ event: req.headers['x-portcullis-event'], body: JSON.parse(body), valid: expected === req.headers['x-portcullis-signature'] });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => hook.listen(port, '127.0.0.1', resolve));
  const s = await admin.put('/requests/settings', { webhook_url: `http://127.0.0.1:${port}/hook`, webhook_secret: HOOK_SECRET, decide_within_secs: 3600 });
  assert.equal(s.status, 200, s.text);
  assert.equal(s.json.webhook_secret_set, true);
  assert.ok(!s.text.includes(HOOK_SECRET));
});

after(async () => {
  await browser?.close();
  hook?.close();
  desktop?.stop();
  await gw?.stop();
});

const trail = async (action, request) => (await admin.get('/audit?kind=access_request&limit=500')).json.entries
  .filter((e) => (!action || e.detail.action === action) && (!request || e.detail.request === request));
const announced = (event, id) => delivered.find((d) => d.event === event && d.body.request.id === id);

test('a request approved by another person opens the target until its time runs out; then the session ends; on record, recorded, announced', async () => {
  const alice = clients.alice;
  const offered = (await alice.get('/requests/targets')).json.targets;
  assert.deepEqual(offered.map((t) => t.target).sort(), ['desk', 'vault']);
  // No standing access: the target is not hers yet.
  assert.deepEqual((await alice.get('/targets')).json.map((t) => t.name), []);
  let r = await alice.post('/requests', { target: 'desk', duration_secs: 7200, reason: 'too long' });
  assert.equal(r.status, 400, r.text);
  r = await alice.post('/requests', { target: 'desk', duration_secs: 15, reason: 'INC-1: restart the agent', ticket: 'INC-1' });
  assert.equal(r.status, 201, r.text);
  const id = r.json.id;
  assert.equal(r.json.state, 'pending');
  assert.equal((await alice.post('/requests', { target: 'desk', duration_secs: 15, reason: 'again' })).status, 409, 'one open request per target');
  // Alice is no approver; Bob is.
  assert.equal((await alice.post(`/requests/${id}/approve`, {})).status, 403);
  assert.ok((await clients.bob.get('/requests')).json.requests.find((x) => x.id === id)?.can_decide);
  r = await clients.bob.post(`/requests/${id}/approve`, { comment: 'go ahead' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'approved');
  const listed = (await alice.get('/targets')).json.find((t) => t.name === 'desk');
  assert.ok(listed?.access_until, JSON.stringify(listed));
  // The policy's explanation says what she holds: this request, not a standing grant.
  const explain = async (target) => (await admin.post('/policy/explain', { user: 'alice', target, action: { action: 'open', entry: 'browser' } })).json;
  let ex = await explain('desk');
  assert.equal(ex.access?.by, 'request', JSON.stringify(ex));
  assert.equal(ex.access.standing_grant_counts, false);
  assert.equal(ex.access.request?.id, id);
  assert.deepEqual(ex.access.request.approved_by, ['bob']);
  assert.equal(ex.access.request.until, listed.access_until);
  assert.equal(ex.access.opens, true);
  ex = await explain('vault');
  assert.equal(ex.access?.request, null, 'no request for vault');
  assert.equal(ex.access.opens, false);

  const page = await newPage(browser);
  try {
    await uiLogin(page, gw.base, 'alice', PASSWORD('alice'));
    await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
    await page.click('[data-target="desk"]');
    await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
    const sessionId = await page.evaluate(() => window.__portcullis.sessionId);
    // The access runs out: the session ends and says why.
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 30000 });
    assert.match(await page.textContent('#session-error'), /access granted by your request ended/);
    const track = await recordedEvents(admin, sessionId);
    const events = JSON.stringify(track);
    assert.match(events, new RegExp(`under access request ${id}`), 'the recording names the request');
    assert.match(events, /approved by bob/);
    // And why it ended: the request's access ran out.
    const end = track.find((e) => e.type === 'session_end');
    assert.match(end?.reason ?? '', /access granted by your request ended/, JSON.stringify(end));
  } finally {
    await page.context().close();
  }
  const after = (await alice.get('/requests')).json.requests.find((x) => x.id === id);
  assert.equal(after.state, 'expired');
  assert.equal((await alice.get('/targets')).json.length, 0);
  assert.equal((await trail('approval', id)).length, 0, 'one approval needed: it is the approval');
  for (const action of ['requested', 'approved', 'expired']) {
    assert.equal((await trail(action, id)).length, 1, `${action} on record once`);
  }
  await until('the webhook deliveries', () => ['request.created', 'request.approved', 'request.expired'].every((e) => announced(e, id)));
  for (const e of ['request.created', 'request.approved', 'request.expired']) assert.ok(announced(e, id).valid, `${e}: bad signature`);
  assert.equal((await explain('desk')).access.opens, false, 'the expired request opens nothing');
  // The webhook secret is nowhere in the data directory or the log in the clear.
  assert.equal(dataFileHolding(gw, [HOOK_SECRET]), null, 'a data file holds the webhook secret');
  assert.ok(!gw.log().includes(HOOK_SECRET), 'the webhook secret is in the log');
});

test('nobody approves their own request, and a rule may need two approvers', async () => {
  let r = await clients.lead.post('/requests', { target: 'vault', duration_secs: 300, reason: 'key rotation' });
  assert.equal(r.status, 201, r.text);
  const id = r.json.id;
  r = await clients.lead.post(`/requests/${id}/approve`, { comment: 'me' });
  assert.equal(r.status, 403);
  assert.match(r.json.error, /your own request/);
  assert.equal((await clients.lead.get('/requests')).json.requests.find((x) => x.id === id).can_decide, false);
  assert.equal((await clients.bob.post(`/requests/${id}/approve`, {})).status, 403, 'bob approves desk, not vault');
  r = await clients.dave.post(`/requests/${id}/approve`, { comment: 'one' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'pending');
  assert.equal(r.json.approvals.length, 1);
  assert.equal((await clients.dave.post(`/requests/${id}/approve`, {})).status, 409, 'one approval per approver');
  r = await clients.carl.post(`/requests/${id}/approve`, { comment: 'two' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'approved');
  assert.ok((await clients.lead.get('/targets')).json.some((t) => t.name === 'vault'));
  assert.equal((await trail('approval', id)).length, 1);
  assert.equal((await trail('approved', id)).length, 1);
  // Taken back by the security team: the access ends at once (the user cannot revoke others').
  assert.equal((await clients.alice.post(`/requests/${id}/cancel`, {})).status, 404);
  r = await clients.dave.post(`/requests/${id}/cancel`, {});
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.state, 'cancelled');
  assert.equal((await trail('revoked', id)).length, 1);
  assert.ok(!(await clients.lead.get('/targets')).json.some((t) => t.name === 'vault'));
  // A denial is final.
  r = await clients.bob.post('/requests', { target: 'vault', duration_secs: 60, reason: 'look around' });
  assert.equal(r.status, 201, r.text);
  const denied = await clients.carl.post(`/requests/${r.json.id}/deny`, { comment: 'no ticket' });
  assert.equal(denied.json.state, 'denied');
  assert.equal((await clients.dave.post(`/requests/${r.json.id}/approve`, {})).status, 409);
  await until('the denial announced', () => announced('request.denied', r.json.id));
});

test('a request nobody decides in time expires, and an approval arriving after is refused', async () => {
  assert.equal((await admin.put('/requests/settings', { webhook_url: `http://127.0.0.1:${hook.address().port}/hook`, decide_within_secs: 2 })).status, 200);
  try {
    const r = await clients.alice.post('/requests', { target: 'vault', duration_secs: 60, reason: 'nobody looks' });
    assert.equal(r.status, 201, r.text);
    const id = r.json.id;
    await until('the request to expire', async () => (await clients.alice.get('/requests')).json.requests.find((x) => x.id === id)?.state === 'expired', 15000);
    const late = await clients.dave.post(`/requests/${id}/approve`, { comment: 'sorry, late' });
    assert.equal(late.status, 409, late.text);
    assert.match(late.json.error, /expired|already/);
    assert.equal((await trail('expired', id)).length, 1);
    assert.ok(!(await clients.alice.get('/targets')).json.some((t) => t.name === 'vault'));
  } finally {
    await admin.put('/requests/settings', { webhook_url: `http://127.0.0.1:${hook.address().port}/hook`, decide_within_secs: 3600 });
  }
});

test('the Requests page: a user asks, an approver approves with a comment', async () => {
  const asker = await newPage(browser);
  const approver = await newPage(browser);
  try {
    await uiLogin(asker, gw.base, 'bob', PASSWORD('bob'));
    await asker.waitForSelector('#nav-requests');
    await asker.click('#nav-requests');
    await asker.waitForSelector('#request-target option[value="desk"]', { state: 'attached' });
    await asker.selectOption('#request-target', 'desk');
    assert.match(await asker.textContent('#request-hint'), /desk-jit/);
    await asker.fill('#request-minutes', '5');
    await asker.fill('#request-reason', 'CHG-7: patch');
    await asker.fill('#request-ticket', 'CHG-7');
    await asker.click('#request-submit');
    await asker.waitForSelector('tr[data-state="pending"]');
    const id = await asker.getAttribute('tr[data-state="pending"]', 'data-request');

    await uiLogin(approver, gw.base, 'dave', PASSWORD('dave'));
    await approver.waitForSelector('#nav-requests');
    await approver.click('#nav-requests');
    await approver.waitForSelector(`[data-approve="${id}"]`);
    await approver.fill(`[data-comment="${id}"]`, 'fine');
    await approver.click(`[data-approve="${id}"]`);
    await approver.waitForSelector(`tr[data-request="${id}"][data-state="approved"]`);
    assert.match(await approver.textContent(`[data-status="${id}"]`), /approved: access for .* more/);
    assert.match(await approver.textContent(`[data-status="${id}"]`), /dave: fine/);
    await asker.reload();
    await asker.waitForSelector(`tr[data-request="${id}"][data-state="approved"]`);
    await asker.click(`[data-cancel="${id}"]`);
    // Over: it moves from the open list to the history.
    await asker.waitForSelector(`#requests-history tr[data-request="${id}"][data-state="cancelled"]`);
    assert.equal(await asker.$(`#requests-table tr[data-request="${id}"]`), null);

    // Asked again, approved, and taken back by the approver.
    await asker.fill('#request-minutes', '5');
    await asker.fill('#request-reason', 'CHG-8: again');
    await asker.click('#request-submit');
    await asker.waitForSelector('#requests-table tr[data-state="pending"]');
    const second = await asker.getAttribute('#requests-table tr[data-state="pending"]', 'data-request');
    assert.equal(await asker.$(`[data-revoke="${second}"]`), null, 'the requester withdraws, never revokes');
    await approver.reload();
    await approver.waitForSelector(`[data-approve="${second}"]`);
    await approver.click(`[data-approve="${second}"]`);
    await approver.waitForSelector(`#requests-table tr[data-request="${second}"][data-state="approved"]`);
    await approver.click(`[data-revoke="${second}"]`);
    await approver.waitForSelector(`#requests-history tr[data-request="${second}"]`);
    assert.equal((await trail('revoked', second)).length, 1);
    assert.ok(!(await clients.bob.get('/targets')).json.some((t) => t.name === 'desk'), 'revoked: no access');
  } finally {
    await asker.context().close();
    await approver.context().close();
  }
});

test('an administrator sets the webhook on the Requests page; its secret is write-only', async () => {
  const page = await newPage(browser);
  try {
    await uiLogin(page, gw.base, 'admin', ADMIN);
    await page.waitForSelector('#nav-requests');
    await page.click('#nav-requests');
    await page.waitForSelector('#webhook-state');
    await page.waitForFunction(() => /Announcing to/.test(document.querySelector('#webhook-state')?.textContent ?? ''));
    const port = hook.address().port;
    await page.fill('#webhook-url', `http://127.0.0.1:${port}/hook2`);
    await page.fill('#webhook-secret', HOOK_SECRET);
    await page.fill('#decide-within', '30');
    await page.click('#webhook-save');
    await page.waitForFunction((p) => (document.querySelector('#webhook-state')?.textContent ?? '').includes(`127.0.0.1:${p}/hook2, signed`), port);
    assert.equal(await page.inputValue('#webhook-secret'), '', 'the secret is not shown back');
    const s = (await admin.get('/requests/settings')).json;
    assert.equal(s.webhook_url, `http://127.0.0.1:${port}/hook2`);
    assert.equal(s.decide_within_secs, 1800);
    assert.ok(!JSON.stringify(s).includes(HOOK_SECRET));
    const change = (await admin.get('/audit?kind=admin_change&limit=100')).json.entries.find((e) => JSON.stringify(e).includes('hook2'));
    assert.ok(change, 'the change is on record');
    assert.ok(!JSON.stringify(change).includes(HOOK_SECRET), 'the secret is not on record');
  } finally {
    await admin.put('/requests/settings', { webhook_url: `http://127.0.0.1:${hook.address().port}/hook`, decide_within_secs: 3600 });
    await page.context().close();
  }
});

test('a native RDP client opens the target under an approved request too; revoking the request ends its session; both on its recording', async () => {
  const lead = clients.lead;
  let r = await clients.alice.post('/requests', { target: 'desk', duration_secs: 600, reason: 'INC-9: native client' });
  assert.equal(r.status, 201, r.text);
  const id = r.json.id;
  assert.equal((await lead.post(`/requests/${id}/approve`, { comment: 'ok' })).status, 200);
  const client = await startXfreerdp({ args: [`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#desk', `/p:${PASSWORD('alice')}`, '/sec:tls', '/cert:ignore', '/size:1024x768'] });
  try {
    const live = await until('the native session', async () => (await admin.get('/sessions')).json.find((s) => s.user === 'alice' && s.entry === 'rdp' && s.state === 'active'));
    await until('its recording', async () => (await admin.get(`/recordings/${live.id}`)).status === 200);
    // The approver takes it back: the native session ends at once.
    r = await lead.post(`/requests/${id}/cancel`);
    assert.equal(r.status, 200, r.text);
    await until('the native session to end', async () => !(await admin.get('/sessions')).json.some((s) => s.id === live.id && s.state !== 'closed'));
    const track = await recordedEvents(admin, live.id);
    assert.ok(JSON.stringify(track).includes(`under access request ${id}`), JSON.stringify(track).slice(0, 3000));
    const end = track.find((e) => e.type === 'session_end');
    assert.match(end?.reason ?? '', /revoked by lead/, JSON.stringify(end));
    assert.equal((await trail('revoked', id)).length, 1);
  } finally {
    client.stop();
  }
});

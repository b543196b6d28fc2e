// The native RDP entry's front door, end to end through the real gateway: the .rdp file names the
// host the user reached (HTTP/1.1's Host, HTTP/2's :authority, or rdp.public_address), tickets are
// capped per user, a flood of idle connections from one address keeps nobody else out (xfreerdp
// logs in from another address, a browser login still works), and the security team cannot lock
// administrators. Each test sets up what it needs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import {
  startDesktop, startGateway, startXfreerdp, freePort, waitForPort, sleep,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const VNC_PASSWORD = 'vncsecret';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A gateway with alice granted a target `desk` at `address` (nothing needs to listen there). */
async function gatewayWithDesk({ extraConfig = '', address = '127.0.0.1:5999' } = {}) {
  const gw = await startGateway({ adminPassword: ADMIN, extraConfig });
  cleanups.push(() => gw.stop());
  const admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  assert.equal((await admin.post('/users', { name: 'alice', password: ALICE, role: 'user' })).status, 201);
  assert.equal((await admin.post('/targets', { name: 'desk', address, password: VNC_PASSWORD })).status, 201);
  assert.equal((await admin.post('/grants', { user: 'alice', target: 'desk' })).status, 201);
  const alice = gw.api();
  assert.equal((await alice.login('alice', ALICE)).status, 200);
  return { gw, admin, alice };
}

/** POST over HTTP/2 (no Host header: the authority travels as :authority). */
function postHttp2(base, path, headers) {
  return new Promise((res, rej) => {
    const client = http2.connect(base, { rejectUnauthorized: false });
    client.on('error', rej);
    const req = client.request({ ':method': 'POST', ':path': path, ...headers });
    const chunks = [];
    let status;
    let version;
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      version = client.alpnProtocol;
      client.close();
      res({ status, version, text: Buffer.concat(chunks).toString() });
    });
    req.on('error', rej);
    req.end();
  });
}

test('the .rdp file names the host the user reached, over HTTP/1.1 and HTTP/2, or rdp.public_address', async () => {
  const { gw, alice } = await gatewayWithDesk();
  const expected = `full address:s:127.0.0.1:${gw.rdpPort}\r\n`;
  const h1 = await alice.post('/targets/desk/rdp-file');
  assert.equal(h1.status, 200, h1.text);
  assert.ok(h1.text.includes(expected), h1.text);
  const h2 = await postHttp2(gw.base, '/api/v1/targets/desk/rdp-file', { cookie: alice.cookie, 'x-portcullis-csrf': '1' });
  assert.equal(h2.version, 'h2');
  assert.equal(h2.status, 200, h2.text);
  assert.ok(h2.text.includes(expected), h2.text);

  // Behind a proxy: the configured public address, whatever the browser used.
  const rdpPort = await freePort();
  const proxied = await gatewayWithDesk({
    extraConfig: `[rdp]\nlisten = "127.0.0.1:${rdpPort}"\npublic_address = "rdp.example.com:13389"\n`,
  });
  const viaH1 = await proxied.alice.post('/targets/desk/rdp-file');
  assert.equal(viaH1.status, 200, viaH1.text);
  assert.ok(viaH1.text.includes('full address:s:rdp.example.com:13389\r\n'), viaH1.text);
  const viaH2 = await postHttp2(proxied.gw.base, '/api/v1/targets/desk/rdp-file', { cookie: proxied.alice.cookie, 'x-portcullis-csrf': '1' });
  assert.equal(viaH2.status, 200, viaH2.text);
  assert.ok(viaH2.text.includes('full address:s:rdp.example.com:13389\r\n'), viaH2.text);
});

test('one user cannot take every RDP ticket: at most 8 outstanding, then 429 saying why', async () => {
  const { admin, alice } = await gatewayWithDesk();
  for (let i = 0; i < 8; i++) assert.equal((await alice.post('/targets/desk/rdp-file')).status, 200);
  const refused = await alice.post('/targets/desk/rdp-file');
  assert.equal(refused.status, 429, refused.text);
  assert.match(refused.json.error, /per user/);
  // Someone else still gets one.
  assert.equal((await admin.post('/grants', { user: 'admin', target: 'desk' })).status, 201);
  assert.equal((await admin.post('/targets/desk/rdp-file')).status, 200);
});

test('300 idle connections from one address keep nobody else out: xfreerdp from another address and a browser login get in', async () => {
  const desktop = await startDesktop(VNC_PASSWORD);
  cleanups.push(() => desktop.stop());
  const { gw, admin } = await gatewayWithDesk({ address: desktop.address });
  await waitForPort(gw.rdpPort);
  // The flood: 127.0.0.2 opens 300 connections and says nothing.
  const sockets = [];
  let closedByGateway = 0;
  await Promise.all(Array.from({ length: 300 }, () => new Promise((res) => {
    const s = net.connect({ host: '127.0.0.1', port: gw.rdpPort, localAddress: '127.0.0.2' });
    sockets.push(s);
    s.on('connect', res);
    s.on('error', res);
    s.on('close', () => { closedByGateway++; res(); });
  })));
  cleanups.push(() => { for (const s of sockets) s.destroy(); });
  // The gateway keeps a few of them waiting for a login and closes the rest.
  for (let i = 0; i < 100 && closedByGateway < 280; i++) await sleep(50);
  assert.ok(closedByGateway >= 280, `only ${closedByGateway} of 300 idle connections were closed`);
  assert.equal(sockets.filter((s) => !s.destroyed).length <= 8, true, 'more than 8 left waiting from one address');

  // Meanwhile a native client from 127.0.0.1 logs in and opens its session...
  const client = await startXfreerdp({ args: [`/v:127.0.0.1:${gw.rdpPort}`, `/u:alice#desk`, `/p:${ALICE}`, '/sec:tls', '/cert:ignore', '/size:1024x768'] });
  cleanups.push(() => client.stop());
  let sessions = [];
  for (let i = 0; i < 200 && !sessions.some((s) => s.user === 'alice' && s.entry === 'rdp'); i++) {
    await sleep(100);
    sessions = (await admin.get('/sessions')).json;
  }
  assert.ok(sessions.some((s) => s.user === 'alice' && s.entry === 'rdp'), `no native session: ${JSON.stringify(sessions)}\n${client.log().slice(-1500)}\n${gw.log().slice(-2000)}`);
  // ... and a browser login still works.
  const again = gw.api();
  assert.equal((await again.login('alice', ALICE)).status, 200);
  assert.match(gw.log(), /RDP connection refused: too many connections from this network waiting to log in/);
});

test('the security team locks users but not administrators; an administrator may', async () => {
  const { gw, admin } = await gatewayWithDesk();
  for (const [name, role] of [['sam', 'soc'], ['root2', 'admin']]) {
    assert.equal((await admin.post('/users', { name, password: `${name}-password-1234`, role })).status, 201);
  }
  const sam = gw.api();
  assert.equal((await sam.login('sam', 'sam-password-1234')).status, 200);
  const locked = async (name) => (await admin.get('/users')).json.find((u) => u.name === name).locked;
  // The SOC locks a user...
  assert.equal((await sam.post('/users/alice/lock', { reason: 'suspicious' })).status, 204);
  assert.equal(await locked('alice'), true);
  assert.equal((await sam.post('/users/alice/unlock')).status, 204);
  // ... but not an administrator, either way.
  const refused = await sam.post('/users/root2/lock', { reason: 'coup' });
  assert.equal(refused.status, 403, refused.text);
  assert.match(refused.json.error, /only an administrator/);
  assert.equal(await locked('root2'), false);
  // The attempt is on record: who tried, on whom.
  const tried = (await admin.get('/audit?limit=20&kind=user_lock')).json.entries
    .find((e) => e.actor === 'sam' && e.detail.outcome === 'refused');
  assert.equal(tried?.detail.user, 'root2', JSON.stringify(tried));
  assert.equal((await admin.post('/users/root2/lock', { reason: 'leaving' })).status, 204);
  assert.equal(await locked('root2'), true);
  assert.equal((await sam.post('/users/root2/unlock')).status, 403);
  assert.equal(await locked('root2'), true);
  assert.equal((await admin.post('/users/root2/unlock')).status, 204);
  assert.equal(await locked('root2'), false);
});

test('a new account under a deleted user\'s name inherits nothing: not the recordings, not the API tokens, not the grants', async () => {
  const { launchBrowser, newPage, openTarget, recordedEvents } = await import('./harness.mjs');
  const desktop = await startDesktop(VNC_PASSWORD);
  cleanups.push(() => desktop.stop());
  const { gw, admin } = await gatewayWithDesk({ address: desktop.address });
  const browser = await launchBrowser();
  cleanups.push(() => browser.close());
  // alice records a session and gets an API token.
  const page = await newPage(browser);
  await openTarget(page, gw.base, 'alice', ALICE, 'desk');
  await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
  const id = await page.evaluate(() => window.__portcullis.sessionId);
  await page.context().close();
  await recordedEvents(admin, id);
  const made = await admin.post('/tokens', { user: 'alice', name: 'alice-ci', scopes: ['recordings:read'] });
  assert.equal(made.status, 201, made.text);
  const bearer = { authorization: `Bearer ${made.json.token}` };
  const { request } = await import('./harness.mjs');
  assert.equal((await request(gw.base, 'GET', '/api/v1/recordings', { headers: bearer })).json.length, 1);
  const old = gw.api();
  assert.equal((await old.login('alice', ALICE)).status, 200);
  assert.equal((await old.get(`/recordings/${id}`)).status, 200);

  // alice leaves; a new alice arrives.
  assert.equal((await admin.del('/users/alice')).status, 204);
  assert.equal((await admin.post('/users', { name: 'alice', password: 'new-alice-password-1', role: 'user' })).status, 201);
  const fresh = gw.api();
  assert.equal((await fresh.login('alice', 'new-alice-password-1')).status, 200);
  assert.deepEqual((await fresh.get('/recordings')).json, []);
  assert.equal((await fresh.get(`/recordings/${id}`)).status, 404);
  assert.equal((await fresh.get(`/recordings/${id}/events`)).status, 404);
  assert.equal((await request(gw.base, 'GET', '/api/v1/recordings', { headers: bearer })).status, 401);
  assert.equal((await old.get('/recordings')).status, 401, 'the old login ended with the account');
  assert.deepEqual((await fresh.get('/targets')).json, []);
  // The recording itself is kept, under the name it was made by, for the reviewers.
  const listed = (await admin.get('/recordings')).json;
  assert.ok(listed.some((r) => r.id === id && r.user === 'alice'), JSON.stringify(listed));
});

// End-to-end tests through real peers: Xvfb + x11vnc as the target, the gateway binary, and
// headless Chromium as the user.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, rmSync } from 'node:fs';
import {
  startDesktop, startGateway, launchBrowser, uiLogin, tryUpgrade, compareCanvasWith, sleep,
} from './harness.mjs';
import { startHostileVnc } from './hostile-vnc.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const BOB = 'bob-password-1234';
const VNC_PASSWORD = 'vncsecret';

let desktop, gw, browser, admin;

before(async () => {
  desktop = await startDesktop(VNC_PASSWORD);
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, password] of [['alice', ALICE], ['bob', BOB]]) {
    const r = await admin.post('/users', { name, password, role: 'user' });
    assert.equal(r.status, 201, r.text);
  }
  let r = await admin.post('/targets', { name: 'desk', address: desktop.address, password: VNC_PASSWORD, description: 'Xvfb desktop' });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/targets', { name: 'wrongpw', address: desktop.address, password: 'not-the-password' });
  assert.equal(r.status, 201, r.text);
  for (const target of ['desk', 'wrongpw']) {
    r = await admin.post('/grants', { user: 'alice', target });
    assert.equal(r.status, 201, r.text);
  }
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  desktop?.stop();
});

async function newPage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  return ctx.newPage();
}

async function openSession(page, user, password, target) {
  await uiLogin(page, gw.base, user, password);
  await page.waitForSelector(`[data-target="${target}"]`, { timeout: 10000 });
  await page.click(`[data-target="${target}"]`);
}

async function waitConnectedAndPainted(page, minFrames = 1) {
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  await page.waitForFunction((n) => window.__portcullis.framesPainted >= n, minFrames, { timeout: 20000 });
}

test('login page refuses a wrong password with a clear message', async () => {
  const page = await newPage();
  await uiLogin(page, gw.base, 'alice', 'wrong-password-xx');
  await page.waitForSelector('#login-error:not([hidden])');
  assert.match(await page.textContent('#login-error'), /wrong user name or password/i);
  await page.context().close();
});

test('the target secret never reaches the API or the browser', async () => {
  const r = await admin.get('/targets');
  assert.equal(r.status, 200);
  assert.ok(!r.text.includes(VNC_PASSWORD));
  assert.ok(!r.text.includes('not-the-password'));
  assert.ok(r.json.find((t) => t.name === 'desk'));
  assert.ok(!gw.log().includes(VNC_PASSWORD), 'the secret appears in the gateway log');
});

test('a user sees the desktop live and typing reaches the xterm', async () => {
  const page = await newPage();
  const seen = [];
  // Binary messages by kind (docs/browser-protocol.md): the page asks for frames as batches.
  const kinds = {};
  page.on('websocket', (ws) => ws.on('framereceived', (f) => {
    if (typeof f.payload === 'string') seen.push(f.payload);
    else kinds[f.payload[0]] = (kinds[f.payload[0]] ?? 0) + 1;
  }));
  await openSession(page, 'alice', ALICE, 'desk');
  await waitConnectedAndPainted(page);
  assert.match(await page.textContent('#session-status'), /connected/i);
  assert.ok(kinds[4] >= 1, `frames not sent as batches: ${JSON.stringify(kinds)}`);

  // Let the picture settle, then compare it with the X server's own screenshot.
  await sleep(1500);
  const png = desktop.screenshot();
  await sleep(700);
  const cmp = await compareCanvasWith(page, png, { x: 0, y: 0, w: 1280, h: 800 });
  assert.deepEqual(cmp.canvas, [1280, 800]);
  assert.ok(cmp.differing / cmp.total < 0.01, `canvas differs from the display: ${JSON.stringify(cmp)}`);

  // Type a command into the xterm through the browser.
  const marker = `/tmp/portcullis-e2e-${process.pid}`;
  rmSync(marker, { force: true });
  await page.click('#session-canvas', { position: { x: 300, y: 200 } });
  // Special keys and modifiers: Ctrl+C interrupts a command, BackSpace deletes the extra X.
  await page.keyboard.type('sleep 30');
  await page.keyboard.press('Enter');
  await sleep(300);
  await page.keyboard.press('Control+C');
  await page.keyboard.type(`echo Typed-Through_GatewayX`);
  await page.keyboard.press('Backspace');
  await page.keyboard.type(` > ${marker}`);
  await page.keyboard.press('Enter');
  for (let i = 0; i < 50 && !existsSync(marker); i++) await sleep(100);
  assert.ok(existsSync(marker), 'typed command did not run in the xterm');
  assert.equal(readFileSync(marker, 'utf8').trim(), 'Typed-Through_Gateway');
  rmSync(marker, { force: true });

  // The change shows up in the browser too.
  await sleep(1500);
  const after = await compareCanvasWith(page, desktop.screenshot(), { x: 0, y: 0, w: 1280, h: 800 });
  assert.ok(after.differing / after.total < 0.01, JSON.stringify(after));

  // The live session is listed for the admin, then closed by the admin.
  const sessions = (await admin.get('/sessions')).json;
  const mine = sessions.find((s) => s.user === 'alice' && s.target === 'desk');
  assert.ok(mine, JSON.stringify(sessions));
  assert.equal(mine.state, 'active');
  assert.equal((await admin.del(`/sessions/${mine.id}`)).status, 204);
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#session-error'), /closed by an administrator/i);
  await page.context().close();
  for (let i = 0; i < 50 && (await admin.get('/sessions')).json.length; i++) await sleep(100);
  assert.deepEqual((await admin.get('/sessions')).json, []);
});

test('mouse clicks and drags reach the target', async () => {
  const page = await newPage();
  await openSession(page, 'alice', ALICE, 'desk');
  await waitConnectedAndPainted(page);
  const box = await page.locator('#session-canvas').boundingBox();
  const scale = box.width / 1280;
  // Move the pointer to a known desktop position; xdotool reads it back from the X server.
  await page.mouse.move(box.x + 600 * scale, box.y + 500 * scale);
  await sleep(500);
  const loc = desktop.xdotool('getmouselocation');
  const [, x, y] = loc.match(/x:(\d+) y:(\d+)/).map(Number);
  assert.ok(Math.abs(x - 600) <= 2 && Math.abs(y - 500) <= 2, loc);

  // A left-button drag across the xterm selects its text: xterm then owns PRIMARY.
  await page.click('#session-canvas', { position: { x: 300 * scale, y: 200 * scale } });
  await page.keyboard.type('echo DRAG-ME-42');
  await page.keyboard.press('Enter');
  await sleep(500);
  const at = (dx, dy) => [box.x + dx * scale, box.y + dy * scale];
  await page.mouse.move(...at(44, 44));
  await page.mouse.down();
  for (let i = 1; i <= 10; i++) await page.mouse.move(...at(44 + 80 * i, 44 + 40 * i));
  await page.mouse.up();
  let primary = '';
  for (let i = 0; i < 30 && !primary.includes('DRAG-ME-42'); i++) {
    await sleep(100);
    try { primary = desktop.clipboard(undefined, 'primary'); } catch { primary = ''; }
  }
  assert.match(primary, /DRAG-ME-42/);
  await page.context().close();
});

test('TigerVNC target: live view, typing and clipboard in both directions', async () => {
  const tiger = await startDesktop(VNC_PASSWORD, '1024x768', 'xvnc');
  try {
    assert.equal((await admin.post('/targets', { name: 'tiger', address: tiger.address, password: VNC_PASSWORD })).status, 201);
    await admin.post('/grants', { user: 'alice', target: 'tiger' });
    const page = await newPage();
    await openSession(page, 'alice', ALICE, 'tiger');
    await waitConnectedAndPainted(page);
    await sleep(1000);
    const cmp = await compareCanvasWith(page, tiger.screenshot(), { x: 0, y: 0, w: 1024, h: 768 });
    assert.deepEqual(cmp.canvas, [1024, 768]);
    assert.ok(cmp.differing / cmp.total < 0.01, JSON.stringify(cmp));

    // Browser → target.
    await page.fill('#local-clipboard', 'from-the-browser-17');
    await page.click('#send-clipboard');
    let got = '';
    for (let i = 0; i < 50 && !got.includes('from-the-browser-17'); i++) {
      try { got = tiger.clipboard(); } catch { got = ''; }
      await sleep(100);
    }
    assert.match(got, /from-the-browser-17/);
    // Target → browser.
    tiger.clipboard('from-the-target-42');
    await page.waitForFunction(() => document.querySelector('#remote-clipboard')?.value.includes('from-the-target-42'), null, { timeout: 15000 });
    await page.context().close();
  } finally {
    tiger.stop();
  }
});

test('a user without a grant is refused', async () => {
  const page = await newPage();
  await uiLogin(page, gw.base, 'bob', BOB);
  await page.waitForSelector('#targets-empty', { timeout: 10000 });
  assert.equal(await page.locator('[data-target]').count(), 0);
  await page.goto(gw.base + '/#/session/desk');
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  await page.context().close();

  const bob = gw.api();
  await bob.login('bob', BOB);
  assert.equal((await bob.get('/targets')).json.length, 0);
  assert.equal(await tryUpgrade(gw.base, '/api/v1/targets/desk/connect', { cookie: bob.cookie }), 403);
  assert.equal((await bob.get('/users')).status, 403);
  assert.equal((await bob.del('/sessions/x')).status, 403);
});

test('an unauthenticated or cross-site WebSocket is refused', async () => {
  assert.equal(await tryUpgrade(gw.base, '/api/v1/targets/desk/connect'), 401);
  const alice = gw.api();
  await alice.login('alice', ALICE);
  assert.equal(await tryUpgrade(gw.base, '/api/v1/targets/desk/connect', { cookie: alice.cookie, origin: 'https://evil.example' }), 403);
  assert.equal(await tryUpgrade(gw.base, '/api/v1/targets/desk/connect', { cookie: 'pc_session=forged' }), 401);
});

test('every API route needs a login, and writes need the CSRF header', async () => {
  const anon = gw.api();
  // Every route the OpenAPI document lists, every method: 401 without a login.
  const openapi = (await anon.get('/openapi.json')).json;
  let checked = 0;
  for (const [path, ops] of Object.entries(openapi.paths)) {
    if (['/auth/login', '/openapi.json', '/targets/{name}/connect'].includes(path)) continue;
    // Single sign-on's public steps (a browser arrives there without a login): sso.test.mjs.
    if (path.startsWith('/auth/sso/')) continue;
    // (/auth/mfa is checked too: without a pending login from the password step it is 401.)
    const p = path.replace(/\{(part|seq)\}/g, '1').replace(/\{[a-z]+\}/g, 'x');
    for (const m of Object.keys(ops).filter((k) => ['get', 'post', 'delete'].includes(k))) {
      const r = m === 'post' ? await anon.post(p, {}) : m === 'delete' ? await anon.del(p) : await anon.get(p);
      assert.equal(r.status, 401, `${m} ${p} gave ${r.status}`);
      checked++;
    }
  }
  assert.ok(checked >= 20, `only ${checked} routes checked`);
  const { request } = await import('./harness.mjs');
  const r = await request(gw.base, 'POST', '/api/v1/users', { body: { name: 'x', password: 'y', role: 'user' }, headers: { cookie: admin.cookie } });
  assert.equal(r.status, 403);
  const doc = await request(gw.base, 'GET', '/api/v1/openapi.json');
  assert.equal(doc.status, 200);
  assert.ok(doc.json.paths['/targets/{name}/connect']);
  const page = await request(gw.base, 'GET', '/');
  assert.match(page.headers['content-security-policy'], /script-src 'self'/);
});

// Who may call what: written here, by hand, from what each route is for, and never read from the
// OpenAPI document the handlers' authors write (a route documented wrong would otherwise be tested
// wrong). `scoped`: the role gets in, but the route then checks a grant or ownership, so 403/404
// for the object at hand is fine. `null`: not called here (logging in or out changes the client;
// the gateways' own route takes no person at all).
const USERS = ['admin', 'soc', 'reviewer', 'user'];
const ADMIN_ONLY = ['admin'];
const SOC = ['admin', 'soc'];
const REVIEWERS = ['admin', 'reviewer', 'soc'];
const ACCESS = {
  'post /auth/login': null,
  'post /auth/mfa': null,
  'post /auth/logout': null,
  'get /openapi.json': { roles: USERS },
  // Single sign-on: the list and a start at an unknown provider (503, a page) reach anyone; the
  // provider's return is not called here (each refused one counts against the address:
  // sso.test.mjs tries it).
  'get /auth/sso/providers': { roles: USERS },
  'get /auth/sso/{id}/start': { roles: USERS },
  'get /auth/sso/callback': null,
  'get /requests': { roles: USERS },
  'post /requests': { roles: USERS, scoped: true },
  'get /requests/targets': { roles: USERS },
  'post /requests/{id}/approve': { roles: USERS, scoped: true },
  'post /requests/{id}/deny': { roles: USERS, scoped: true },
  'post /requests/{id}/cancel': { roles: USERS, scoped: true },
  'get /requests/settings': { roles: ADMIN_ONLY },
  'put /requests/settings': { roles: ADMIN_ONLY },
  'get /sso/settings': { roles: ADMIN_ONLY },
  'put /sso/settings': { roles: ADMIN_ONLY },
  'put /sso/providers/{id}': { roles: ADMIN_ONLY },
  'delete /sso/providers/{id}': { roles: ADMIN_ONLY },
  'get /sso/providers/{id}/test': { roles: ADMIN_ONLY },
  'get /me': { roles: USERS },
  'post /me/mfa/enrol': { roles: USERS },
  'post /me/mfa/confirm': { roles: USERS },
  'post /me/mfa/recovery-codes': { roles: USERS },
  'get /me/passkeys': { roles: USERS },
  'post /me/passkeys': { roles: USERS, scoped: true },
  'post /me/passkeys/options': { roles: USERS, scoped: true },
  'delete /me/passkeys/{id}': { roles: USERS, scoped: true },
  'post /me/passkeys/proof': { roles: USERS, scoped: true },
  // The second login step with a passkey: a pending login's cookie, no login (passkeys.test.mjs).
  'post /auth/mfa/passkey/options': null,
  'post /auth/mfa/passkey': null,
  'get /users/{name}/passkeys': { roles: ADMIN_ONLY, scoped: true },
  'get /targets': { roles: USERS },
  'post /targets': { roles: ADMIN_ONLY },
  'get /targets/{name}': { roles: ADMIN_ONLY },
  'delete /targets/{name}': { roles: ADMIN_ONLY },
  'put /targets/{name}/identity': { roles: ADMIN_ONLY },
  'post /targets/{name}/identity/accept': { roles: ADMIN_ONLY },
  'get /targets/{name}/connect': { roles: USERS, scoped: true },
  'post /targets/{name}/rdp-file': { roles: USERS, scoped: true },
  'get /users': { roles: ADMIN_ONLY },
  'post /users': { roles: ADMIN_ONLY },
  'delete /users/{name}': { roles: ADMIN_ONLY },
  'delete /users/{name}/mfa': { roles: ADMIN_ONLY },
  'post /users/{name}/lock': { roles: SOC },
  'post /users/{name}/unlock': { roles: SOC },
  'get /grants': { roles: ADMIN_ONLY },
  'post /grants': { roles: ADMIN_ONLY },
  'delete /grants/{user}/{target}': { roles: ADMIN_ONLY },
  'get /policy': { roles: ADMIN_ONLY },
  'put /policy': { roles: ADMIN_ONLY },
  'post /policy/explain': { roles: ADMIN_ONLY },
  'get /tokens': { roles: ADMIN_ONLY },
  'post /tokens': { roles: ADMIN_ONLY },
  'get /tokens/scopes': { roles: ADMIN_ONLY },
  'delete /tokens/{id}': { roles: ADMIN_ONLY },
  'get /sessions': { roles: SOC },
  'get /sessions/events': { roles: SOC },
  'delete /sessions/{id}': { roles: ADMIN_ONLY },
  'post /sessions/{id}/kill': { roles: SOC },
  'post /sessions/{id}/freeze': { roles: SOC },
  'post /sessions/{id}/unfreeze': { roles: SOC },
  'get /sessions/{id}/thumbnail': { roles: SOC },
  'get /sessions/{id}/watch': { roles: SOC },
  // No person's route: another gateway of the cluster with a one-time ticket (objects.test.mjs).
  'get /cluster/watch/{id}': null,
  'get /audit': { roles: SOC },
  'get /audit/verify': { roles: SOC },
  'get /audit/exports': { roles: SOC },
  'get /recordings': { roles: USERS, scoped: true },
  'get /search': { roles: USERS, scoped: true },
  'get /recordings/{id}': { roles: USERS, scoped: true },
  'get /recordings/{id}/init/{part}': { roles: USERS, scoped: true },
  'get /recordings/{id}/segments/{seq}': { roles: USERS, scoped: true },
  'get /recordings/{id}/run/{from}/{to}': { roles: USERS, scoped: true },
  'get /recordings/{id}/thumbnails/{seq}': { roles: USERS, scoped: true },
  'get /recordings/{id}/events': { roles: USERS, scoped: true },
  'get /recordings/{id}/export': { roles: USERS, scoped: true },
  'get /recordings/{id}/review': { roles: REVIEWERS, scoped: true },
  'post /recordings/{id}/review': { roles: REVIEWERS, scoped: true },
  'post /recordings/{id}/flags': { roles: REVIEWERS, scoped: true },
  'delete /recordings/{id}/flags/{flag}': { roles: REVIEWERS, scoped: true },
  'get /recordings/{id}/report': { roles: REVIEWERS, scoped: true },
};

test('every API route × every role: the roles this test\'s own table names get in, the others get 403', async () => {
  const clients = { admin };
  for (const role of ['soc', 'reviewer', 'user']) {
    const name = `authz-${role}`;
    const password = `${role}-password-12345`;
    const r = await admin.post('/users', { name, password, role });
    assert.equal(r.status, 201, r.text);
    clients[role] = gw.api();
    assert.equal((await clients[role].login(name, password)).status, 200);
  }
  const openapi = (await admin.get('/openapi.json')).json;
  // Every route the gateway serves is in the table, and every route in the table is served: a new
  // route must be given its roles here before this test passes.
  const served = [];
  for (const [path, ops] of Object.entries(openapi.paths)) {
    for (const m of Object.keys(ops).filter((k) => ['get', 'post', 'put', 'delete'].includes(k))) served.push(`${m} ${path}`);
  }
  for (const route of served) assert.ok(route in ACCESS, `${route} is served but not in this test's table`);
  for (const route of Object.keys(ACCESS)) assert.ok(served.includes(route), `${route} is in the table but not served`);
  // PUT /policy with {} would put an empty policy (deny all) in force for the tests after this
  // one: the admin puts back the policy in force instead.
  const policy = (await admin.get('/policy')).json.policy;
  let checked = 0;
  for (const [route, access] of Object.entries(ACCESS)) {
    if (access === null) continue;
    const [m, path] = route.split(' ');
    // The document must say the same (what users and integrators read), but it is not the oracle.
    assert.deepEqual([...openapi.paths[path][m]['x-portcullis-roles']].filter((r) => r !== 'anonymous').sort(), [...access.roles].sort(), `${route}: the OpenAPI document names other roles`);
    const p = path.replace(/\{(part|seq|from|to)\}/g, '1').replace(/\{[a-z]+\}/g, 'x');
    for (const [role, client] of Object.entries(clients)) {
      const body = m === 'put' && path === '/policy' ? policy : {};
      const r = m === 'post' ? await client.post(p, {}) : m === 'put' ? await client.put(p, body) : m === 'delete' ? await client.del(p) : await client.get(p);
      if (access.roles.includes(role)) {
        assert.notEqual(r.status, 401, `${role}: ${m} ${p}`);
        if (!access.scoped) assert.notEqual(r.status, 403, `${role} refused on ${m} ${p}: ${r.text}`);
      } else {
        assert.equal(r.status, 403, `${role} let in on ${m} ${p}: ${r.status} ${r.text}`);
      }
      checked++;
    }
  }
  assert.ok(checked >= 4 * 40, `only ${checked} route × role checks`);
  console.log(`# ${checked} route × role checks`);
});

test('revoking a grant ends the live session at once', async () => {
  const page = await newPage();
  const texts = [];
  page.on('websocket', (ws) => { ws.on('framereceived', (f) => { if (typeof f.payload === 'string') texts.push(f.payload); }); ws.on('close', () => texts.push('CLOSE')); });
  page.on('console', (m) => texts.push('console: ' + m.text()));
  await openSession(page, 'alice', ALICE, 'desk');
  await waitConnectedAndPainted(page);
  assert.equal((await admin.del('/grants/alice/desk')).status, 204);
  try {
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
    assert.match(await page.textContent('#session-error'), /revoked/i, texts.join('\n'));
  } finally {
    assert.equal((await admin.post('/grants', { user: 'alice', target: 'desk' })).status, 201);
    await page.context().close();
  }
});

test('admins manage users, targets, grants and live sessions in the web UI', async () => {
  const page = await newPage();
  await uiLogin(page, gw.base, 'admin', ADMIN);
  await page.waitForSelector('#nav-admin-users');

  await page.click('#nav-admin-users');
  await page.fill('#user-name', 'carol');
  await page.fill('#user-password', 'short');
  await page.selectOption('#user-role', 'user');
  await page.click('#user-create');
  await page.waitForSelector('.form-error:not([hidden])');
  assert.match(await page.textContent('.form-error'), /at least 12/);
  await page.fill('#user-password', 'carol-password-99');
  await page.click('#user-create');
  await page.waitForSelector('#users-table >> text=carol');

  await page.click('#nav-admin-targets');
  // VNC cannot authenticate its server: the form says so while the kind is VNC, not for RDP.
  await page.waitForSelector('#target-kind-note:not([hidden])');
  assert.match(await page.textContent('#target-kind-note'), /no server authentication.*DES challenge-response/s);
  await page.selectOption('#target-kind', 'rdp');
  await page.waitForSelector('#target-kind-note', { state: 'hidden' });
  await page.selectOption('#target-kind', 'vnc');
  await page.waitForSelector('#target-kind-note:not([hidden])');
  await page.fill('#target-name', 'desk2');
  await page.fill('#target-address', desktop.address);
  await page.fill('#target-password', VNC_PASSWORD);
  await page.fill('#target-description', 'same desktop, via the UI');
  await page.click('#target-create');
  await page.waitForSelector('#targets-table >> text=desk2');
  assert.ok(!(await page.content()).includes(VNC_PASSWORD));

  await page.click('#nav-admin-grants');
  await page.waitForSelector('#grant-user option[value="carol"]', { state: 'attached' });
  await page.selectOption('#grant-user', 'carol');
  await page.selectOption('#grant-target', 'desk2');
  await page.click('#grant-create');
  await page.waitForSelector('#grants-table >> text=desk2');

  // Carol opens it; the admin sees her session on the sessions page and closes it there.
  const carol = await newPage();
  await openSession(carol, 'carol', 'carol-password-99', 'desk2');
  await waitConnectedAndPainted(carol);
  await page.click('#nav-admin-sessions');
  const close = page.locator('#sessions-table tr', { hasText: 'carol' }).locator('[data-close-session]');
  await close.waitFor({ timeout: 10000 });
  await close.click();
  await carol.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await carol.textContent('#session-error'), /closed by an administrator/i);
  await carol.context().close();
  await page.context().close();
});

test('a wrong target password gives a clear error, not a hang', async () => {
  const page = await newPage();
  await openSession(page, 'alice', ALICE, 'wrongpw');
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  assert.match(await page.textContent('#session-error'), /refused the stored credentials/i);
  await page.context().close();
});

test('an unreachable target gives a clear error', async () => {
  const r = await admin.post('/targets', { name: 'nowhere', address: '127.0.0.1:1', password: 'x' });
  assert.equal(r.status, 201);
  await admin.post('/grants', { user: 'alice', target: 'nowhere' });
  const page = await newPage();
  await openSession(page, 'alice', ALICE, 'nowhere');
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  assert.match(await page.textContent('#session-error'), /cannot reach/i);
  await page.context().close();
});

test('malformed and oversized browser messages close only that session', async () => {
  const page = await newPage();
  await openSession(page, 'alice', ALICE, 'desk');
  await waitConnectedAndPainted(page);
  // A second session of the same user keeps working while the first is attacked.
  const other = await newPage();
  await openSession(other, 'alice', ALICE, 'desk');
  await waitConnectedAndPainted(other);

  const results = await page.evaluate(async () => {
    const attempt = (payload) => new Promise((resolve) => {
      const ws = new WebSocket(`wss://${location.host}/api/v1/targets/desk/connect`);
      const got = [];
      ws.onmessage = (e) => { if (typeof e.data === 'string') { got.push(JSON.parse(e.data)); if (got.at(-1).type === 'init') ws.send(payload); } };
      ws.onclose = () => resolve(got.filter((m) => m.type === 'error').map((m) => m.code));
    });
    return [
      await attempt('{"t":"launch"}'),
      await attempt('not json at all'),
      await attempt(new Uint8Array([1, 2, 3])),
      await attempt(JSON.stringify({ t: 'clipboard', text: 'x'.repeat(200 * 1024) })),
      await attempt(JSON.stringify({ t: 'ack', seq: 99999 })),
    ];
  });
  assert.deepEqual(results.slice(0, 5).map((r) => r[0] ?? 'closed'),
    ['bad_message', 'bad_message', 'bad_message', 'bad_message', 'bad_message']);
  // 300 KiB is above the frame limit: the socket is closed by the protocol layer.
  const big = await page.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`wss://${location.host}/api/v1/targets/desk/connect`);
    ws.onmessage = (e) => { if (typeof e.data === 'string' && JSON.parse(e.data).type === 'init') ws.send('x'.repeat(300 * 1024)); };
    ws.onclose = (e) => resolve(e.code);
  }));
  assert.ok(big !== 1000, `oversized frame closed with ${big}`);
  // A page that does not ask for batches (one loaded before an upgrade) gets its frames message
  // by message, each ending with an end of frame.
  const kinds = await page.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`wss://${location.host}/api/v1/targets/desk/connect`);
    ws.binaryType = 'arraybuffer';
    const seen = [];
    const done = () => { ws.close(); resolve(seen); };
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') return;
      seen.push(new Uint8Array(e.data)[0]);
      if (seen.includes(2)) done();
    };
    setTimeout(done, 15000);
  }));
  assert.ok(kinds.includes(2) && !kinds.includes(4), `message kinds to a page that did not ask for batches: ${kinds}`);

  const before = await other.evaluate(() => window.__portcullis.framesPainted);
  await other.click('#session-canvas', { position: { x: 300, y: 200 } });
  await other.keyboard.type('echo still-alive');
  await other.waitForFunction((n) => window.__portcullis.framesPainted > n, before, { timeout: 10000 });
  assert.equal(gw.exited, null, 'gateway died');
  await page.context().close();
  await other.context().close();
});

for (const behaviour of ['rect_out_of_bounds', 'huge_cut_text', 'garbage', 'huge_desktop']) {
  test(`a hostile VNC server (${behaviour}) ends only its own session`, async () => {
    const evil = await startHostileVnc(behaviour);
    const name = `evil-${behaviour.replaceAll('_', '-')}`;
    assert.equal((await admin.post('/targets', { name, address: `127.0.0.1:${evil.port}`, password: 'x' })).status, 201);
    await admin.post('/grants', { user: 'alice', target: name });
    const good = await newPage();
    await openSession(good, 'alice', ALICE, 'desk');
    await waitConnectedAndPainted(good);

    const page = await newPage();
    await openSession(page, 'alice', ALICE, name);
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
    const text = await page.textContent('#session-error');
    assert.ok(text.length > 10, text);
    evil.close();

    const before = await good.evaluate(() => window.__portcullis.framesPainted);
    await good.click('#session-canvas', { position: { x: 300, y: 200 } });
    await good.keyboard.type('echo ok');
    await good.waitForFunction((n) => window.__portcullis.framesPainted > n, before, { timeout: 10000 });
    assert.equal(gw.exited, null, 'gateway died');
    await page.context().close();
    await good.context().close();
  });
}

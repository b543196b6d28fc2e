// Authentication end to end, through the real gateway and Chromium: TOTP two-factor enrolment
// and login (codes computed here with node:crypto), replay and lock-out, a role that requires
// MFA, native RDP refused for MFA users' passwords (xfreerdp) but open through a browser ticket,
// the admin's reset, and API tokens with scopes against the real routes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startDesktop, startGateway, launchBrowser, uiLogin, request, apiClient, startXfreerdp, newPage, sleep, totpAt,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const BOB = 'bob-password-1234';
const SAM = 'sam-soc-password-1';
const DAVE = 'dave-password-1234';
const VNC_PASSWORD = 'vncsecret';

let desktop, gw, browser, admin;
const secrets = new Map(); // user → base32 secret
const lastStep = new Map(); // user → last time step spent

before(async () => {
  desktop = await startDesktop(VNC_PASSWORD);
  gw = await startGateway({ adminPassword: ADMIN, extraConfig: '[auth]\nmfa_required_roles = ["soc"]\n' });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, password, role] of [['alice', ALICE, 'user'], ['bob', BOB, 'user'], ['sam', SAM, 'soc'], ['dave', DAVE, 'user']]) {
    const r = await admin.post('/users', { name, password, role });
    assert.equal(r.status, 201, r.text);
  }
  assert.equal((await admin.post('/targets', { name: 'desk', address: desktop.address, password: VNC_PASSWORD })).status, 201);
  for (const user of ['alice', 'bob']) assert.equal((await admin.post('/grants', { user, target: 'desk' })).status, 201);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  desktop?.stop();
});

// --- TOTP codes: `totpAt` in the harness, independently of the gateway's code. ---

const codeAt = totpAt;

const stepNow = () => Math.floor(Date.now() / 1000 / 30);

/** A code the gateway has not seen for `user` yet (waits for the next step when needed). */
async function freshCode(user) {
  const secret = secrets.get(user);
  for (;;) {
    const now = stepNow();
    const last = lastStep.get(user) ?? -1;
    const step = [now, now + 1].find((s) => s > last);
    if (step !== undefined) {
      lastStep.set(user, step);
      return codeAt(secret, step);
    }
    await sleep(1000);
  }
}

/** A code wrong at every step the gateway accepts now. */
function wrongCode(user) {
  const secret = secrets.get(user);
  const now = stepNow();
  const valid = [now - 2, now - 1, now, now + 1, now + 2].map((s) => codeAt(secret, s));
  let n = 0;
  while (valid.includes(String(n).padStart(6, '0'))) n++;
  return String(n).padStart(6, '0');
}

const cookieOf = (r, name) => (r.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith(`${name}=`) && c.length > name.length + 1);

/** The password step of an API login; returns the answer and the pending cookie. */
async function passwordStep(name, password) {
  const r = await request(gw.base, 'POST', '/api/v1/auth/login', { body: { username: name, password }, headers: { 'x-portcullis-csrf': '1' } });
  return { r, pending: cookieOf(r, 'pc_mfa') };
}

async function codeStep(pending, code) {
  return request(gw.base, 'POST', '/api/v1/auth/mfa', { body: { code }, headers: { 'x-portcullis-csrf': '1', ...(pending ? { cookie: pending } : {}) } });
}

/** A full API login with the second factor: an API client with the session cookie. */
async function mfaLogin(name, password) {
  const { r, pending } = await passwordStep(name, password);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.mfa_required, true, r.text);
  const done = await codeStep(pending, await freshCode(name));
  assert.equal(done.status, 200, done.text);
  return apiClient(gw.base, cookieOf(done, 'pc_session'));
}

async function audit(query) {
  const r = await admin.get(`/audit?${query}`);
  assert.equal(r.status, 200, r.text);
  return r.json.entries;
}

test('a user enrols in TOTP in the browser, with the QR code, and only a right code turns it on', async () => {
  const page = await newPage(browser);
  await uiLogin(page, gw.base, 'alice', ALICE);
  await page.waitForSelector('#current-user');
  await page.click('#current-user');
  await page.waitForSelector('#mfa-status[data-mfa="off"]');
  const [enrolment] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/v1/me/mfa/enrol')),
    page.click('#mfa-enrol'),
  ]);
  const body = await enrolment.json();
  await page.waitForSelector('#mfa-secret');
  const secret = (await page.textContent('#mfa-secret')).trim();
  assert.equal(secret, body.secret);
  assert.match(secret, /^[A-Z2-7]{32}$/);
  assert.equal(body.otpauth_uri, `otpauth://totp/Portcullis:alice?secret=${secret}&issuer=Portcullis&algorithm=SHA1&digits=6&period=30`);
  // The QR code is an image from a blob: URL of the SVG, and it rendered.
  const qr = await page.evaluate(() => {
    const img = document.querySelector('#mfa-qr');
    return { src: img.src, w: img.naturalWidth, complete: img.complete };
  });
  assert.match(qr.src, /^blob:/);
  await page.waitForFunction(() => document.querySelector('#mfa-qr').naturalWidth > 0);
  assert.ok(!(await page.content()).includes('<svg'), 'the SVG was inserted as markup');
  secrets.set('alice', secret);

  // A wrong code does not turn it on.
  await page.fill('#mfa-code', wrongCode('alice'));
  await page.click('#mfa-confirm');
  await page.waitForSelector('#mfa-error:not([hidden])');
  assert.equal((await admin.get('/users')).json.find((u) => u.name === 'alice').mfa, false);

  await page.fill('#mfa-code', await freshCode('alice'));
  await page.click('#mfa-confirm');
  await page.waitForSelector('#mfa-status[data-mfa="on"]');
  assert.equal((await admin.get('/users')).json.find((u) => u.name === 'alice').mfa, true);
  // With its recovery codes, shown this once.
  await page.waitForSelector('#mfa-recovery-codes li');
  assert.equal(await page.locator('#mfa-recovery-codes li').count(), 10);
  // Shown once: never again, nor in the log, the user list or /me.
  const me = await page.evaluate(() => fetch('/api/v1/me').then((r) => r.text()));
  assert.ok(!me.includes(secret));
  assert.ok(!(await admin.get('/users')).text.includes(secret));
  assert.ok(!gw.log().includes(secret), 'the TOTP secret is in the gateway log');
  const again = await page.evaluate(() => fetch('/api/v1/me/mfa/enrol', { method: 'POST', headers: { 'x-portcullis-csrf': '1' } }).then((r) => r.status));
  assert.equal(again, 409, 'a second enrolment while MFA is on');
  const records = await audit('kind=mfa&actor=alice');
  assert.ok(records.some((e) => e.detail.step === 'confirm' && e.detail.outcome === 'ok'), JSON.stringify(records));
  assert.ok(records.some((e) => e.detail.step === 'confirm' && e.detail.outcome === 'failed'));
  // Each attempt on record before the app is turned on: a request precedes the ok.
  const bySeq = [...records].sort((a, b) => a.seq - b.seq);
  const ok = bySeq.findIndex((e) => e.detail.step === 'confirm' && e.detail.outcome === 'ok');
  assert.equal(bySeq[ok - 1]?.detail.outcome, 'requested', JSON.stringify(bySeq.map((e) => `${e.detail.step}:${e.detail.outcome}`)));
  await page.context().close();
});

test('login with MFA: the password alone gives no session; the code does, once', async () => {
  // Browser: the second step appears and a right code signs in.
  const page = await newPage(browser);
  await uiLogin(page, gw.base, 'alice', ALICE);
  await page.waitForSelector('#login-mfa-code');
  const cookies = await page.context().cookies();
  assert.ok(!cookies.some((c) => c.name === 'pc_session'), 'a session cookie before the code');
  const code = await freshCode('alice');
  await page.fill('#login-mfa-code', code);
  await page.click('#login-mfa-submit');
  await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
  await page.context().close();

  // The same code again (a replay) is refused.
  let { r, pending } = await passwordStep('alice', ALICE);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { mfa_required: true });
  assert.ok(pending, 'no pending cookie');
  assert.equal(cookieOf(r, 'pc_session'), undefined);
  const replay = await codeStep(pending, code);
  assert.equal(replay.status, 401, replay.text);
  assert.match(replay.json.error, /wrong or already used/);
  const wrong = await codeStep(pending, wrongCode('alice'));
  assert.equal(wrong.status, 401);
  // Without a pending login, or with a forged one: 401.
  assert.equal((await codeStep(undefined, await freshCode('alice'))).status, 401);
  assert.equal((await codeStep('pc_mfa=forged', codeAt(secrets.get('alice'), stepNow()))).status, 401);
  // The pending login still works with a fresh code, once.
  const ok = await codeStep(pending, await freshCode('alice'));
  assert.equal(ok.status, 200, ok.text);
  const session = cookieOf(ok, 'pc_session');
  assert.equal((await apiClient(gw.base, session).get('/targets')).status, 200);
  assert.equal((await codeStep(pending, await freshCode('alice'))).status, 401, 'a pending login used twice');
  const records = await audit('kind=mfa&actor=alice');
  assert.ok(records.filter((e) => e.detail.step === 'login' && e.detail.outcome === 'failed').length >= 2);
  assert.ok(records.some((e) => e.detail.step === 'login' && e.detail.outcome === 'ok'));
});

test('wrong codes count toward the lock-out', async () => {
  // Dave enrols through the API.
  const dave = gw.api();
  assert.equal((await dave.login('dave', DAVE)).status, 200);
  const e = await dave.post('/me/mfa/enrol');
  assert.equal(e.status, 200, e.text);
  assert.match(e.json.qr_svg, /^<\?xml|<svg/);
  secrets.set('dave', e.json.secret);
  assert.equal((await dave.post('/me/mfa/confirm', { code: await freshCode('dave') })).status, 200);
  const { pending } = await passwordStep('dave', DAVE);
  const { pending: second } = await passwordStep('dave', DAVE);
  for (let i = 0; i < 5; i++) assert.equal((await codeStep(pending, wrongCode('dave'))).status, 401);
  // Even the right code is refused now, on another pending login too.
  const locked = await codeStep(second, await freshCode('dave'));
  assert.equal(locked.status, 429, locked.text);
  assert.match(locked.json.error, /too many failed logins/);
  // The password step itself is throttled too now.
  assert.equal((await passwordStep('dave', DAVE)).r.status, 429);
});

test('a role that requires MFA: the password gives an enrol-only login, the UI leads to enrolment', async () => {
  // API: enrol-only until confirmed.
  const { r } = await passwordStep('sam', SAM);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.mfa_enrol_required, true);
  const sam = apiClient(gw.base, cookieOf(r, 'pc_session'));
  assert.equal((await sam.get('/me')).status, 200);
  const refused = await sam.get('/sessions');
  assert.equal(refused.status, 403);
  assert.match(refused.json.error, /two-factor/);
  assert.equal((await sam.get('/audit')).status, 403);

  // Browser: straight to the account page, no other navigation; enrol; then the console.
  const page = await newPage(browser);
  await uiLogin(page, gw.base, 'sam', SAM);
  await page.waitForSelector('#mfa-status[data-mfa="off"]');
  assert.match(page.url(), /#\/me$/);
  assert.equal(await page.locator('#nav-soc').count(), 0);
  await page.goto(gw.base + '/#/soc');
  await page.waitForSelector('#mfa-enrol');
  assert.match(page.url(), /#\/me$/);
  const [enrolment] = await Promise.all([
    page.waitForResponse((x) => x.url().endsWith('/api/v1/me/mfa/enrol')),
    page.click('#mfa-enrol'),
  ]);
  secrets.set('sam', (await enrolment.json()).secret);
  await page.fill('#mfa-code', await freshCode('sam'));
  await page.click('#mfa-confirm');
  await page.waitForSelector('#mfa-status[data-mfa="on"]');
  await page.click('#mfa-continue');
  await page.waitForSelector('#nav-soc');
  const status = await page.evaluate(() => fetch('/api/v1/sessions').then((x) => x.status));
  assert.equal(status, 200, 'the enrol-only login became a full one');
  await page.context().close();
  // The next login asks for the code.
  const next = await passwordStep('sam', SAM);
  assert.equal(next.r.json.mfa_required, true);
});

test('native RDP: the password of an MFA user is refused and recorded; a browser ticket after the MFA login works', async () => {
  const failures = async () => (await audit('kind=login_failed&actor=alice')).filter((e) => e.detail.entry === 'rdp' && /two-factor/.test(e.detail.reason));
  const before = (await failures()).length;
  const client = await startXfreerdp({ args: [`/v:127.0.0.1:${gw.rdpPort}`, '/u:alice#desk', `/p:${ALICE}`, '/sec:tls', '/cert:ignore', '/size:1024x768'] });
  try {
    for (let i = 0; i < 150 && client.alive(); i++) await sleep(100);
    assert.equal(client.alive(), false, client.log().slice(-1500));
    assert.match(client.log(), /ERRINFO_SERVER_INSUFFICIENT_PRIVILEGES|LOGON_FAILURE|insufficient/i);
  } finally {
    client.stop();
  }
  assert.equal((await failures()).length, before + 1);
  assert.equal((await admin.get('/sessions')).json.length, 0);

  // After the MFA login the browser gets a one-time .rdp file, and that gets in.
  const alice = await mfaLogin('alice', ALICE);
  const r = await alice.post('/targets/desk/rdp-file');
  assert.equal(r.status, 200, r.text);
  const password = r.headers['x-portcullis-rdp-password'];
  const path = join(mkdtempSync(join(tmpdir(), 'pc-rdpfile-')), 'desk.rdp');
  writeFileSync(path, r.text);
  const native = await startXfreerdp({ args: [path, `/p:${password}`, '/cert:ignore', '/size:1024x768'] });
  try {
    let sessions = [];
    for (let i = 0; i < 200 && !sessions.some((s) => s.user === 'alice' && s.entry === 'rdp'); i++) {
      await sleep(100);
      sessions = (await admin.get('/sessions')).json;
    }
    assert.ok(sessions.some((s) => s.user === 'alice' && s.entry === 'rdp'), `${JSON.stringify(sessions)}\n${native.log().slice(-1500)}`);
  } finally {
    native.stop();
  }
  for (let i = 0; i < 100 && (await admin.get('/sessions')).json.length; i++) await sleep(100);
});

test('an admin resets a user\'s MFA in Admin › Users; recorded with before and after', async () => {
  const page = await newPage(browser);
  await uiLogin(page, gw.base, 'admin', ADMIN);
  await page.waitForSelector('#nav-admin-users');
  await page.click('#nav-admin-users');
  await page.waitForSelector('[data-mfa="alice"]');
  assert.equal((await page.textContent('[data-mfa="alice"]')).trim(), 'On');
  assert.equal((await page.textContent('[data-mfa="bob"]')).trim(), 'Off');
  await page.click('[data-reset-mfa="alice"]');
  await page.waitForFunction(() => document.querySelector('[data-mfa="alice"]')?.textContent.trim() === 'Off');
  await page.context().close();
  const change = (await audit('kind=admin_change&actor=admin')).find((e) => e.detail.action === 'mfa_reset');
  assert.deepEqual(change.detail.before, { user: 'alice', mfa: true });
  assert.deepEqual(change.detail.after, { user: 'alice', mfa: false });
  // Alice (role user: MFA not required) signs in with her password again.
  const { r } = await passwordStep('alice', ALICE);
  assert.equal(r.status, 200);
  assert.equal(r.json.name, 'alice');
  assert.ok(cookieOf(r, 'pc_session'));
  // Only admins may reset.
  const bob = gw.api();
  await bob.login('bob', BOB);
  assert.equal((await bob.del('/users/sam/mfa')).status, 403);
  assert.equal((await admin.del('/users/nobody/mfa')).status, 404);
});

// --- API tokens ---

async function token(user, scopes, name = `t-${scopes.join('-')}`) {
  const r = await admin.post('/tokens', { user, name, scopes, expires_in_days: 1 });
  assert.equal(r.status, 201, r.text);
  assert.match(r.json.token, /^pcat_[0-9a-f]{16}_/);
  return r.json;
}

function bearer(t) {
  const headers = { authorization: `Bearer ${t.token}` };
  return {
    get: (p) => request(gw.base, 'GET', '/api/v1' + p, { headers }),
    post: (p, body) => request(gw.base, 'POST', '/api/v1' + p, { body: body ?? {}, headers }),
    put: (p, body) => request(gw.base, 'PUT', '/api/v1' + p, { body: body ?? {}, headers }),
    del: (p) => request(gw.base, 'DELETE', '/api/v1' + p, { headers }),
  };
}

test('a token with sessions:kill kills a live browser session, without a CSRF header; recorded', async () => {
  const killer = await token('sam', ['sessions:read', 'sessions:kill'], 'soc-bot');
  const reader = await token('sam', ['sessions:read'], 'soc-reader');
  const page = await newPage(browser);
  await uiLogin(page, gw.base, 'bob', BOB);
  await page.waitForSelector('[data-target="desk"]', { timeout: 10000 });
  await page.click('[data-target="desk"]');
  await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
  const list = await bearer(reader).get('/sessions');
  assert.equal(list.status, 200, list.text);
  const session = list.json.find((s) => s.user === 'bob');
  assert.ok(session, list.text);
  const denied = await bearer(reader).post(`/sessions/${session.id}/kill`, { reason: 'no' });
  assert.equal(denied.status, 403, denied.text);
  assert.match(denied.json.error, /sessions:kill/);
  const killed = await bearer(killer).post(`/sessions/${session.id}/kill`, { reason: 'automation test' });
  assert.equal(killed.status, 204, killed.text);
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#session-error'), /automation test/);
  await page.context().close();
  const use = (await audit('kind=token_use&actor=sam')).find((e) => e.detail.token === 'soc-bot');
  assert.ok(use, 'token use not recorded');
  assert.equal(use.detail.route, '/sessions/{id}/kill');
  assert.ok((await audit('kind=session_kill&actor=sam')).some((e) => e.session === session.id));
  // A cookie beside a bearer header does not count: a bad token is 401 whatever the cookie.
  const mixed = await request(gw.base, 'GET', '/api/v1/sessions', { headers: { authorization: 'Bearer pcat_0000_bad', cookie: admin.cookie } });
  assert.equal(mixed.status, 401);
});

test('every route × every scope: a token reaches exactly the routes its scope (and role) allow', async () => {
  const openapi = (await admin.get('/openapi.json')).json;
  const scopes = openapi.components.schemas.NewToken.properties.scopes.items.enum;
  assert.deepEqual([...scopes].sort(), ['admin', 'audit:read', 'recordings:read', 'recordings:review', 'sessions:kill', 'sessions:read', 'users:lock']);
  const tokens = {};
  for (const s of scopes) tokens[s] = bearer(await token('admin', [s]));
  let checked = 0;
  for (const [path, ops] of Object.entries(openapi.paths)) {
    const p = path.replace(/\{(part|seq|from|to)\}/g, '1').replace(/\{[a-z]+\}/g, 'x');
    for (const [m, op] of Object.entries(ops).filter(([k]) => ['get', 'post', 'put', 'delete'].includes(k))) {
      const need = op['x-portcullis-scope'];
      assert.ok(need, `${m} ${path} names no scope`);
      // Public routes take no login; PUT /policy {} would replace the policy.
      if (need === 'public' || (m === 'put' && path === '/policy')) continue;
      for (const [scope, client] of Object.entries(tokens)) {
        const r = m === 'post' ? await client.post(p) : m === 'put' ? await client.put(p) : m === 'delete' ? await client.del(p) : await client.get(p);
        const allowed = need === 'any' || need === scope || (scope === 'admin' && need !== 'browser' && need !== 'gateway');
        if (allowed) {
          assert.ok(![401, 403].includes(r.status), `${scope}: ${m} ${p} gave ${r.status} ${r.text}`);
        } else {
          assert.equal(r.status, 403, `${scope} let in on ${m} ${p}: ${r.status} ${r.text}`);
        }
        checked++;
      }
    }
  }
  assert.ok(checked >= 6 * 40, `only ${checked} route × scope checks`);
  console.log(`# ${checked} route × scope checks`);
});

test('the role still limits a token; revoked, unknown and locked users\' tokens do not work', async () => {
  const t = await token('bob', ['admin'], 'bob-all');
  const bob = bearer(t);
  assert.equal((await bob.get('/me')).json.name, 'bob');
  assert.equal((await bob.get('/users')).status, 403, 'role user: no user list whatever the scope');
  assert.equal((await bob.get('/sessions')).status, 403);
  assert.equal((await bob.get('/targets')).status, 200);
  // Listed without secrets.
  const list = await admin.get('/tokens');
  assert.equal(list.status, 200);
  assert.ok(list.json.some((x) => x.id === t.id && x.user === 'bob'));
  // The secret is base64url, so it may itself hold '_': everything after `pcat_<id>_` is secret.
  const prefix = `pcat_${t.id}_`;
  assert.ok(t.token.startsWith(prefix), t.token.slice(0, 24));
  const secret = t.token.slice(prefix.length);
  assert.ok(secret.length >= 40, 'a 32-byte secret');
  assert.ok(!list.text.includes(secret), 'a token secret in the list');
  assert.ok(!gw.log().includes(secret), 'a token secret in the log');
  // Locked user: refused.
  assert.equal((await admin.post('/users/bob/lock', { reason: 'token test' })).status, 204);
  assert.equal((await bob.get('/me')).status, 403);
  assert.equal((await admin.post('/users/bob/unlock')).status, 204);
  assert.equal((await bob.get('/me')).status, 200);
  // A wrong secret for a real id, an unknown id, then the revoked token: 401.
  assert.equal((await request(gw.base, 'GET', '/api/v1/me', { headers: { authorization: `Bearer pcat_${t.id}_wrong` } })).status, 401);
  assert.equal((await request(gw.base, 'GET', '/api/v1/me', { headers: { authorization: 'Bearer pcat_ffffffffffffffff_x' } })).status, 401);
  assert.equal((await admin.del(`/tokens/${t.id}`)).status, 204);
  assert.equal((await bob.get('/me')).status, 401);
  assert.equal((await admin.del(`/tokens/${t.id}`)).status, 404);
  const revoked = (await audit('kind=admin_change&actor=admin')).find((e) => e.detail.action === 'token_revoke');
  assert.equal(revoked.detail.before.name, 'bob-all');
  // Bad requests name the field.
  const bad = await admin.post('/tokens', { user: 'bob', name: 'x', scopes: ['root'] });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /scopes/);
});

test('Admin › API tokens: create one with a scope in the UI, see its secret once, use it, revoke it', async () => {
  const page = await newPage(browser);
  try {
    await uiLogin(page, gw.base, 'admin', ADMIN);
    await page.waitForSelector('#current-role');
    await page.click('#nav-admin-tokens');
    await page.waitForSelector('#tokens-table');
    await page.waitForSelector('#token-user option[value="bob"]', { state: 'attached' });
    await page.selectOption('#token-user', 'bob');
    await page.fill('#token-name', 'ui-reader');
    await page.check('[data-scope="audit:read"]');
    await page.check('[data-scope="sessions:read"]');
    // bob (a user) may not read sessions whatever the token says: the role still limits it.
    await page.click('#token-create');
    await page.waitForSelector('#token-secret:not([hidden])');
    const secret = (await page.textContent('#token-secret-value')).trim();
    assert.match(secret, /^pcat_/);
    await page.waitForSelector('tr[data-token] >> text=ui-reader');
    const use = (p) => request(gw.base, 'GET', '/api/v1' + p, { headers: { authorization: `Bearer ${secret}` } });
    assert.equal((await use('/me')).status, 200);
    assert.equal((await use('/sessions')).status, 403, 'a user role reads no sessions');
    // Leaving the page and coming back: the secret is gone, the token listed without it.
    await page.click('#nav-admin-users');
    await page.click('#nav-admin-tokens');
    await page.waitForSelector('tr[data-token] >> text=ui-reader');
    assert.ok(!(await page.content()).includes(secret), 'the secret is shown again');
    const id = await page.getAttribute('tr[data-token]:has-text("ui-reader")', 'data-token');
    await page.click(`[data-revoke-token="${id}"]`);
    await page.waitForSelector(`tr[data-token="${id}"]`, { state: 'detached' });
    assert.equal((await use('/me')).status, 401);
  } finally {
    await page.close();
  }
});

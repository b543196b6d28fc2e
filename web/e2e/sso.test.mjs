// Single sign-on through a real OpenID provider (fixtures/oidc-provider.mjs: panva's
// oidc-provider from npm) and Chromium: accounts made and kept up to date from the ID token's
// claims, groups as policy subjects, the provider's sign-out, hostile returns refused and on
// record (wrong audience, expired, another key, unsigned, wrong nonce, a replayed code, a return
// to another browser), a revoked group, no local account taken over, password sign-in refused
// for a role that must use SSO, and the provider's key rotated. Its own gateway and provider:
// the refusals here count toward no other test's lock-out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import {
  startGateway, startDesktop, startXfreerdp, launchBrowser, newPage, apiClient, request, until, dataFileHolding,
} from './harness.mjs';
import { startIdp, idpLogin, idpReturnUrl } from './oidc-idp.mjs';

const ADMIN = 'admin-password-e2e';
const VNC = 'vncpass1';
const SECRET = `idp-secret-${randomBytes(8).toString('hex')}`;
let gw, idp, admin, browser, desktop;

const USERS = {
  alice: { groups: ['psm-users', 'ops'], email: 'alice@example.test', name: 'Alice' },
  anna: { groups: ['psm-admins'], email: 'anna@example.test', name: 'Anna' },
  eve: { groups: ['finance'], email: 'eve@example.test', name: 'Eve' },
  bob: { groups: ['psm-users'], email: 'bob@example.test', name: 'Bob' },
};

before(async () => {
  gw = await startGateway({ adminPassword: ADMIN });
  idp = await startIdp({
    clientId: 'portcullis',
    clientSecret: SECRET,
    redirectUris: [`${gw.base}/api/v1/auth/sso/callback`],
    postLogoutRedirectUris: [`${gw.base}/`],
    users: USERS,
  });
  browser = await launchBrowser();
  desktop = await startDesktop(VNC);
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  let r = await admin.put('/sso/settings', { public_url: gw.base, required_for_roles: [] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.redirect_uri, `${gw.base}/api/v1/auth/sso/callback`);
  r = await admin.put('/sso/providers/corp', {
    display_name: 'Corp SSO',
    issuer: idp.issuer,
    client_id: 'portcullis',
    client_secret: SECRET,
    role_mapping: [{ group: 'psm-admins', role: 'admin' }, { group: 'psm-users', role: 'user' }],
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.providers[0].client_secret_set, true);
  assert.ok(!r.text.includes(SECRET), 'the client secret is never shown');
  assert.equal((await admin.post('/targets', { name: 'desk', address: desktop.address, password: VNC })).status, 201);
  // Who may open what: the provider's `ops` group, and nobody else.
  const policy = { rules: [{ name: 'ops-team', subjects: ['sso_group:ops'], targets: ['*'] }] };
  r = await admin.put('/policy', policy);
  assert.equal(r.status, 200, r.text);
});

after(async () => {
  await browser?.close();
  await idp?.stop();
  desktop?.stop();
  await gw?.stop();
});

/** The browser's gateway login cookie, as an API client. */
async function clientOf(page) {
  const cookie = (await page.context().cookies()).find((c) => c.name === 'pc_session');
  assert.ok(cookie, 'no login cookie in the browser');
  return apiClient(gw.base, `pc_session=${cookie.value}`);
}

/**
 * From the sign-in page, through the provider as `user` (when it asks: its own session may
 * still be up), back to the gateway; resolves at the page the gateway shows.
 */
async function ssoSignIn(page, user) {
  await page.goto(`${gw.base}/#/login`);
  const back = page.waitForURL((url) => url.href.startsWith(`${gw.base}/api/v1/auth/sso/callback`), { waitUntil: 'commit', timeout: 20000 });
  await page.click('#login-sso-corp');
  const asked = await Promise.race([
    page.locator('input[name="login"]').waitFor({ timeout: 20000 }).then(() => true, () => false),
    back.then(() => false, () => false),
  ]);
  if (asked) await idpLogin(page, user);
  await back;
}

/** The audit trail's records of `kind` (newest last). */
async function records(kind) {
  const r = await admin.get(`/audit?kind=${kind}&limit=500`);
  assert.equal(r.status, 200, r.text);
  return r.json.entries;
}

test('a browser signs in through the provider: the account comes from the claims, its group opens a session, sign-out goes through the provider', async () => {
  const page = await newPage(browser);
  try {
    await ssoSignIn(page, 'alice');
    await page.waitForSelector('#current-user', { timeout: 15000 });
    assert.equal(await page.textContent('#current-user'), 'alice');
    const users = (await admin.get('/users')).json;
    const alice = users.find((u) => u.name === 'alice');
    assert.deepEqual({ role: alice.role, sso: alice.sso, groups: alice.groups }, { role: 'user', sso: 'corp', groups: ['psm-users', 'ops'] });
    const logins = await records('login');
    assert.ok(logins.some((rec) => rec.actor === 'alice' && rec.detail?.sso === 'corp'), JSON.stringify(logins));
    const made = await records('admin_change');
    assert.ok(made.some((rec) => rec.actor === 'alice' && rec.detail?.action === 'user_create_sso'), JSON.stringify(made.slice(-3)));
    // The provider's group is a policy subject: the session opens under rule `ops-team`.
    const why = await admin.post('/policy/explain', { user: 'alice', target: 'desk', action: { action: 'open', entry: 'browser' } });
    assert.equal(why.status, 200, why.text);
    assert.equal(why.json.rule, 'ops-team', why.text);
    assert.deepEqual(why.json.sso_groups, ['psm-users', 'ops']);
    assert.equal((await admin.post('/grants', { user: 'alice', target: 'desk' })).status, 201);
    // The list as it is now (the grant is newer than the page).
    await page.goto(`${gw.base}/#/targets`);
    await page.reload();
    await page.click('[data-target="desk"]');
    await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
    // Native RDP clients of SSO users: a one-time .rdp ticket (the account has no password).
    const alicesApi = await clientOf(page);
    const rdp = await alicesApi.post('/targets/desk/rdp-file', {});
    assert.equal(rdp.status, 200, rdp.text);
    const path = join(mkdtempSync(join(tmpdir(), 'pc-rdpfile-')), 'desk.rdp');
    writeFileSync(path, rdp.text);
    const native = await startXfreerdp({ args: [path, `/p:${rdp.headers['x-portcullis-rdp-password']}`, '/cert:ignore', '/size:1024x768'] });
    try {
      await until('alice\'s native RDP session', async () => (await admin.get('/sessions')).json.some((x) => x.user === 'alice' && x.entry === 'rdp'));
    } finally {
      native.stop();
    }
    assert.equal((await apiClient(gw.base).login('alice', 'any-password-1234')).status, 401, 'an SSO account has no password');
    // Sign-out: the gateway's login ends, the provider's session too (its sign-out page sends
    // the browser back to the gateway), so the next sign-in asks the provider again.
    await page.goto(`${gw.base}/#/targets`);
    await page.click('#logout');
    await page.waitForURL((url) => url.href.startsWith(idp.issuer), { waitUntil: 'commit', timeout: 10000 });
    await page.waitForURL(`${gw.base}/`, { timeout: 15000 });
    assert.equal((await alicesApi.get('/me')).status, 401);
    await page.goto(`${gw.base}/#/login`);
    await page.click('#login-sso-corp');
    await page.locator('input[name="login"]').waitFor({ timeout: 10000 });
  } finally {
    await page.context().close();
  }
});

test('hostile returns are refused and on record: wrong audience, expired, another key, unsigned, wrong nonce, replayed, another browser', async () => {
  const page = await newPage(browser);
  try {
    const cases = [
      [{ aud: 'someone-else' }, /audience/i],
      [{ exp_offset: -3600 }, /expired/i],
      [{ sign: 'other-key' }, /signature|key/i],
      [{ sign: 'none' }, /signature|alg|unsigned|verif/i],
      [{ nonce: 'not-yours' }, /nonce/i],
      [{ iss: 'https://evil.example' }, /issuer/i],
    ];
    for (const [tamper, why] of cases) {
      await idp.tamper(tamper);
      await ssoSignIn(page, 'alice');
      await page.waitForSelector('#message', { timeout: 10000 });
      const text = await page.textContent('#message');
      assert.match(text, why, `${JSON.stringify(tamper)}: ${text}`);
      assert.equal((await page.context().cookies()).some((c) => c.name === 'pc_session'), false, `${JSON.stringify(tamper)} gave a login`);
    }
    const failed = await records('login_failed');
    assert.ok(failed.filter((rec) => rec.detail?.entry === 'sso').length >= cases.length, JSON.stringify(failed.slice(-3)));

    // A replayed return: the code and state of a sign-in that succeeded, sent again by the
    // same browser (its binding cookie put back: the return cleared it).
    let callback = null;
    let binding = null;
    page.on('request', (req) => { if (req.url().startsWith(`${gw.base}/api/v1/auth/sso/callback`)) callback = req.url(); });
    page.on('response', async (res) => {
      const set = res.url().includes('/api/v1/auth/sso/corp/start') ? await res.headerValue('set-cookie') : null;
      const m = /__Host-pc_sso=([^;]+)/.exec(set ?? '');
      if (m) binding = m[1];
    });
    await ssoSignIn(page, 'alice');
    await page.waitForSelector('#current-user', { timeout: 15000 });
    assert.ok(callback && binding, 'no callback or binding cookie seen');
    assert.equal((await page.context().cookies()).some((c) => c.name === '__Host-pc_sso'), false, 'the binding cookie is cleared once used');
    await page.context().addCookies([{ name: '__Host-pc_sso', value: binding, url: `${gw.base}/` }]);
    await page.goto(callback);
    assert.match(await page.textContent('#message'), /unknown, expired or already used/);

    // A return carried to another browser: an attacker's own sign-in, planted in a victim's
    // browser (login CSRF). The attacker's user agent started it, so the victim's lacks its
    // binding cookie.
    const started = await request(gw.base, 'GET', '/api/v1/auth/sso/corp/start');
    assert.equal(started.status, 303, started.text);
    const planted = await idpReturnUrl(started.headers.location, 'alice');
    const victim = await newPage(browser);
    try {
      await victim.goto(planted);
      assert.match(await victim.textContent('#message'), /started in another browser/);
      assert.equal((await victim.context().cookies()).some((c) => c.name === 'pc_session'), false);
    } finally {
      await victim.context().close();
    }
  } finally {
    await idp.tamper({});
    await page.context().close();
  }
});

test('a group revoked at the provider: the next sign-in changes the role; with no mapped group it is refused and the account\'s logins end', async () => {
  const page = await newPage(browser);
  try {
    await ssoSignIn(page, 'anna');
    await page.waitForSelector('#current-user', { timeout: 15000 });
    const first = await clientOf(page);
    assert.equal((await first.get('/me')).json.role, 'admin');
    idp.setUsers({ ...USERS, anna: { ...USERS.anna, groups: ['psm-users'] } });
    await page.context().clearCookies({ name: 'pc_session' }).catch(() => page.context().clearCookies());
    await ssoSignIn(page, 'anna');
    await page.waitForSelector('#current-user', { timeout: 15000 });
    const second = await clientOf(page);
    assert.equal((await second.get('/me')).json.role, 'user');
    // The first login re-reads the account: an admin no more.
    assert.equal((await first.get('/users')).status, 403);
    // An API token of hers, made meanwhile: it must stop with her access.
    const made = await admin.post('/tokens', { user: 'anna', name: 'anna-script', scopes: ['sessions:read'] });
    assert.equal(made.status, 201, made.text);
    const bearer = { authorization: `Bearer ${made.json.token}` };
    assert.equal((await request(gw.base, 'GET', '/api/v1/me', { headers: bearer })).status, 200);
    idp.setUsers({ ...USERS, anna: { ...USERS.anna, groups: ['finance'] } });
    await ssoSignIn(page, 'anna');
    await page.waitForSelector('#message', { timeout: 10000 });
    assert.match(await page.textContent('#message'), /none of your groups/);
    assert.equal((await second.get('/me')).status, 401, 'the logins of a revoked account end');
    const anna = (await admin.get('/users')).json.find((u) => u.name === 'anna');
    assert.deepEqual({ groups: anna.groups, locked: anna.locked }, { groups: [], locked: true });
    assert.equal((await request(gw.base, 'GET', '/api/v1/me', { headers: bearer })).status, 403, 'her API token stopped');
    const changes = await records('admin_change');
    assert.ok(changes.some((rec) => rec.actor === 'anna' && rec.detail?.action === 'user_revoke_sso'));
    // Someone in no mapped group never gets an account.
    await page.context().clearCookies();
    await ssoSignIn(page, 'eve');
    await page.waitForSelector('#message', { timeout: 10000 });
    assert.match(await page.textContent('#message'), /none of your groups/);
    assert.equal((await admin.get('/users')).json.some((u) => u.name === 'eve'), false);
  } finally {
    idp.setUsers(USERS);
    await page.context().close();
  }
});

test('no local account is taken over, a role may be made SSO-only, secrets are sealed at rest, and a rotated provider key is fetched', async () => {
  assert.equal((await admin.post('/users', { name: 'bob', password: 'bob-password-1234', role: 'user' })).status, 201);
  assert.equal((await admin.post('/users', { name: 'carl', password: 'carl-password-1234', role: 'user' })).status, 201);
  const page = await newPage(browser);
  try {
    await ssoSignIn(page, 'bob');
    await page.waitForSelector('#message', { timeout: 10000 });
    assert.match(await page.textContent('#message'), /already exists here and is not this provider's/);
    assert.equal((await apiClient(gw.base).login('bob', 'bob-password-1234')).status, 200, 'bob keeps his password');

    // Users of the `user` role sign in through the provider only; the admin cannot lock
    // themselves out.
    let r = await admin.put('/sso/settings', { public_url: gw.base, required_for_roles: ['admin'] });
    assert.equal(r.status, 409, r.text);
    r = await admin.put('/sso/settings', { public_url: gw.base, required_for_roles: ['user'] });
    assert.equal(r.status, 200, r.text);
    // Answered like a wrong password (the answer does not confirm it); the reason on record.
    r = await apiClient(gw.base).login('carl', 'carl-password-1234');
    assert.equal(r.status, 401, r.text);
    const refusedCarl = (await records('login_failed')).filter((rec) => rec.actor === 'carl');
    assert.match(refusedCarl.at(-1)?.detail?.reason ?? '', /single sign-on/, JSON.stringify(refusedCarl));
    assert.equal((await apiClient(gw.base).login('admin', ADMIN)).status, 200, 'the break-glass admin keeps their password');
    assert.equal((await admin.put('/sso/settings', { public_url: gw.base, required_for_roles: [] })).status, 200);

    // The client secret is nowhere in the data directory in the clear.
    assert.equal(dataFileHolding(gw, [SECRET]), null, 'a data file holds the client secret');
    assert.ok(!gw.log().includes(SECRET), 'the client secret is in the log');

    // The provider starts again with a new signing key: the gateway fetches the new keys.
    await idp.restart();
    await page.context().clearCookies();
    await ssoSignIn(page, 'alice');
    await page.waitForSelector('#current-user', { timeout: 15000 });
    assert.equal(await page.textContent('#current-user'), 'alice');
  } finally {
    await page.context().close();
  }
});

test('admins set single sign-on up in the web UI; the client secret is write-only', async () => {
  const page = await newPage(browser);
  try {
    await page.goto(`${gw.base}/#/login`);
    await page.fill('#login-username', 'admin');
    await page.fill('#login-password', ADMIN);
    await page.click('#login-submit');
    await page.waitForSelector('#nav-admin-sso');
    await page.click('#nav-admin-sso');
    await page.waitForSelector('[data-sso-provider="corp"]');
    assert.equal(await page.textContent('#sso-redirect-uri'), `${gw.base}/api/v1/auth/sso/callback`);
    assert.equal(await page.inputValue('#sso-public-url'), gw.base);
    // Edit: the form shows the settings, never the secret; saving without one keeps it.
    await page.click('[data-edit-sso="corp"]');
    assert.equal(await page.inputValue('#sso-issuer'), idp.issuer);
    assert.equal(await page.inputValue('#sso-client-secret'), '');
    assert.match(await page.inputValue('#sso-mappings'), /^psm-admins = admin\npsm-users = user$/);
    assert.ok(!(await page.content()).includes(SECRET));
    await page.fill('#sso-display', 'Corp Login');
    await page.fill('#sso-mappings', 'psm-admins = admin\npsm-users = user\nops = user');
    await page.click('#sso-provider-save');
    await page.waitForFunction(() => document.querySelector('[data-sso-provider="corp"]')?.textContent.includes('Corp Login'));
    await page.click('[data-test-sso="corp"]');
    await page.waitForSelector('#sso-test-result:not([hidden])');
    assert.match(await page.textContent('#sso-test-result'), /answers/);
    // A bad mapping line is named before anything is sent.
    await page.fill('#sso-mappings', 'psm-admins = root');
    await page.click('#sso-provider-save');
    await page.waitForSelector('.form-error:not([hidden])');
    assert.match(await page.textContent('.form-error'), /line 1/);
    const settings = (await admin.get('/sso/settings')).json;
    assert.equal(settings.providers[0].display_name, 'Corp Login');
    assert.equal(settings.providers[0].client_secret_set, true);
    // The sign-in page offers it under its new name, and the secret still works.
    const other = await newPage(browser);
    try {
      await other.goto(`${gw.base}/#/login`);
      assert.equal((await other.textContent('#login-sso-corp')).trim(), 'Sign in with Corp Login');
    } finally {
      await other.context().close();
    }
    // Roles that must use a passkey: ticked and saved on the page, then off again.
    await page.check('#passkey-required-reviewer');
    await page.click('#sso-settings-save');
    await until('the passkey role saved', async () => (await admin.get('/sso/settings')).json.passkey_required_for_roles?.includes('reviewer'));
    await page.reload();
    await page.waitForSelector('[data-sso-provider="corp"]');
    assert.equal(await page.isChecked('#passkey-required-reviewer'), true);
    assert.equal(await page.isChecked('#passkey-required-user'), false);
    await page.uncheck('#passkey-required-reviewer');
    await page.click('#sso-settings-save');
    await until('the passkey role taken off', async () => (await admin.get('/sso/settings')).json.passkey_required_for_roles?.length === 0);
    // Alice, an account of the provider (signed in here unless an earlier test did: this test
    // does not lean on another's).
    if (!(await admin.get('/users')).json.some((u) => u.name === 'alice')) {
      const first = await newPage(browser);
      try {
        await ssoSignIn(first, 'alice');
        await first.waitForSelector('#current-user', { timeout: 20000 });
      } finally {
        await first.context().close();
      }
    }
    const users = await page.context().newPage();
    await users.goto(`${gw.base}/#/admin/users`);
    await users.waitForSelector('[data-sso-user="alice"]');
    // Removing the provider: nobody vouches for its accounts any more; they are locked.
    await page.click('[data-remove-sso="corp"]');
    await page.waitForSelector('#sso-table .empty-row');
    const alice = (await admin.get('/users')).json.find((u) => u.name === 'alice');
    assert.equal(alice.locked, true);
    assert.equal((await apiClient(gw.base).get('/auth/sso/providers')).json.providers.length, 0);
  } finally {
    await page.context().close();
  }
});

test('several providers: the sign-in page offers each, and an account is its own provider\'s', async () => {
  const partner = await startIdp({
    clientId: 'portcullis-partner',
    clientSecret: `${SECRET}-2`,
    redirectUris: [`${gw.base}/api/v1/auth/sso/callback`],
    users: { vendor1: { groups: ['vendors'], email: 'v1@partner.test', name: 'Vendor One' }, alice: { groups: ['vendors'] } },
  });
  try {
    let r = await admin.put('/sso/providers/partner', {
      display_name: 'Partner IdP',
      issuer: partner.issuer,
      client_id: 'portcullis-partner',
      client_secret: `${SECRET}-2`,
      role_mapping: [{ group: 'vendors', role: 'user' }],
    });
    assert.equal(r.status, 200, r.text);
    // The first test's provider may have been removed by the UI test: put it back.
    r = await admin.put('/sso/providers/corp', {
      display_name: 'Corp SSO', issuer: idp.issuer, client_id: 'portcullis', client_secret: SECRET,
      role_mapping: [{ group: 'psm-admins', role: 'admin' }, { group: 'psm-users', role: 'user' }],
    });
    assert.equal(r.status, 200, r.text);
    const page = await newPage(browser);
    try {
      await page.goto(`${gw.base}/#/login`);
      await page.waitForSelector('#login-sso-partner');
      assert.equal((await page.textContent('#login-sso-partner')).trim(), 'Sign in with Partner IdP');
      assert.ok(await page.isVisible('#login-sso-corp'));
      const back = page.waitForURL((url) => url.href.startsWith(`${gw.base}/api/v1/auth/sso/callback`), { waitUntil: 'commit', timeout: 20000 });
      await page.click('#login-sso-partner');
      await idpLogin(page, 'vendor1');
      await back;
      await page.waitForSelector('#current-user', { timeout: 15000 });
      assert.equal(await page.textContent('#current-user'), 'vendor1');
      const v = (await admin.get('/users')).json.find((u) => u.name === 'vendor1');
      assert.deepEqual({ sso: v.sso, role: v.role }, { sso: 'partner', role: 'user' });
      // The partner's "alice" is not Corp's alice: refused, nothing of hers given.
      await page.context().clearCookies();
      await page.goto(`${gw.base}/#/login`);
      const back2 = page.waitForURL((url) => url.href.startsWith(`${gw.base}/api/v1/auth/sso/callback`), { waitUntil: 'commit', timeout: 20000 });
      await page.click('#login-sso-partner');
      await idpLogin(page, 'alice');
      await back2;
      await page.waitForSelector('#message', { timeout: 10000 });
      assert.match(await page.textContent('#message'), /already exists here and is not this provider's/);
    } finally {
      await page.context().close();
    }
  } finally {
    await partner.stop();
  }
});

test('an address that keeps failing sign-ins is locked out of single sign-on too, and only that address', async () => {
  // From another loopback address, so the rest of this file's sign-ins (127.0.0.1) go on.
  const from = '127.0.0.2';
  const get = (path, cookie, localAddress = from) => new Promise((resolve, reject) => {
    https.get(gw.base + path, { localAddress, rejectUnauthorized: false, headers: cookie ? { cookie } : {} }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, text: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });
  let refusedAt = null;
  for (let i = 0; i < 30 && refusedAt === null; i++) {
    const started = await get('/api/v1/auth/sso/corp/start');
    if (started.status === 429) {
      refusedAt = i;
      assert.match(started.text, /too many failed sign-ins from your address/);
      break;
    }
    assert.equal(started.status, 303, `${started.status} ${started.text.slice(0, 200)}`);
    const state = new URL(started.headers.location).searchParams.get('state');
    const binding = (started.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ');
    // A forged return (no code from the provider): refused and counted. (A provider's own "no",
    // a user cancelling, is refused but not counted.)
    const back = await get(`/api/v1/auth/sso/callback?state=${encodeURIComponent(state)}`, binding);
    assert.ok(back.status >= 400, `${back.status}`);
  }
  assert.equal(refusedAt, 20, 'locked out after the free failures of an address');
  // The return of a sign-in is refused from there too.
  const back = await get('/api/v1/auth/sso/callback?state=x&code=y', '__Host-pc_sso=z');
  assert.match(back.text, /too many failed sign-ins from your address/);
  const failed = (await records('login_failed')).filter((r) => String(r.detail?.address ?? '').startsWith(from));
  assert.ok(failed.length >= 20, `${failed.length} refusals on record from ${from}`);
  // Another address starts sign-ins as ever.
  const elsewhere = await get('/api/v1/auth/sso/corp/start', undefined, '127.0.0.1');
  assert.equal(elsewhere.status, 303, elsewhere.text.slice(0, 200));
});

// Passkeys (WebAuthn) as a second factor through the real gateway and Chromium with its virtual
// authenticator (DevTools WebAuthn domain): register one on the account page, sign in with it
// after the password, a cancelled passkey refused, a used assertion not accepted again, a role
// that requires a phishing-resistant factor (no code from an app; without a passkey an
// enrol-only login that registers one), the last passkey of such a role kept, an admin's reset
// removing them. WebAuthn needs a domain: the browser goes to https://localhost. Its own gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, launchBrowser, newPage, request, apiClient, freshTotp } from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const PASSWORD = (name) => `${name}-password-1234`;
let gw, admin, browser, site;

before(async () => {
  gw = await startGateway({ adminPassword: ADMIN });
  site = `https://localhost:${gw.port}`;
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, role] of [['pat', 'user'], ['rita', 'reviewer'], ['tom', 'reviewer']]) {
    assert.equal((await admin.post('/users', { name, password: PASSWORD(name), role })).status, 201);
  }
  // The relying party is the gateway's public URL.
  const r = await admin.put('/sso/settings', { public_url: site, required_for_roles: [] });
  assert.equal(r.status, 200, r.text);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

/** A page with a virtual platform authenticator (user verification on); returns { page, cdp }. */
async function withAuthenticator() {
  const page = await newPage(browser);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return { page, cdp, authenticatorId };
}

async function passwordStep(page, name) {
  await page.goto(`${site}/#/login`);
  await page.fill('#login-username', name);
  await page.fill('#login-password', PASSWORD(name));
  await page.click('#login-submit');
}

/** Registers a passkey named `label` for `name` on the account page (a virtual authenticator). */
async function registerPasskey(name, label) {
  const { page } = await withAuthenticator();
  try {
    await passwordStep(page, name);
    await page.waitForSelector('#current-user');
    await page.goto(`${site}/#/me`);
    await page.waitForSelector('#passkey-add:not([disabled])');
    await page.fill('#passkey-name', label);
    await page.click('#passkey-add');
    await page.waitForSelector(`[data-passkey="${label}"]`);
  } finally {
    await page.context().close();
  }
}

const trail = async (actor) => (await admin.get(`/audit?kind=mfa&actor=${actor}&limit=200`)).json.entries;

test('a passkey registered on the account page signs in after the password; a cancelled one and a replayed assertion are refused', async () => {
  const { page, cdp, authenticatorId } = await withAuthenticator();
  try {
    await passwordStep(page, 'pat');
    await page.waitForSelector('#current-user');
    await page.goto(`${site}/#/me`);
    await page.waitForSelector('#passkey-add:not([disabled])');
    await page.fill('#passkey-name', 'laptop');
    await page.click('#passkey-add');
    await page.waitForSelector('[data-passkey="laptop"]');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].rpId, 'localhost');
    assert.deepEqual((await admin.get('/users/pat/passkeys')).json.passkeys.map((p) => p.name), ['laptop']);
    assert.equal((await admin.get('/users')).json.find((u) => u.name === 'pat').mfa, true);

    // Sign out; the password alone no longer logs in.
    await page.click('#logout');
    await passwordStep(page, 'pat');
    await page.waitForSelector('#login-mfa-form:not([hidden])');
    // A user who cancels: refused, still at the second step.
    await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: false });
    await page.click('#login-passkey');
    await page.waitForSelector('#login-mfa-error:not([hidden])');
    assert.match(await page.textContent('#login-mfa-error'), /not used|refused|failed/i);
    await cdp.send('WebAuthn.setUserVerified', { authenticatorId, isUserVerified: true });
    // The passkey: in, and the assertion it sent is good once only.
    let sent = null;
    page.on('request', (req) => { if (req.url().endsWith('/api/v1/auth/mfa/passkey')) sent = { body: req.postData(), cookie: req.headers().cookie }; });
    await page.click('#login-passkey');
    await page.waitForSelector('#current-user', { timeout: 15000 });
    assert.equal(await page.textContent('#current-user'), 'pat');
    assert.ok(sent?.body, 'no assertion seen');
    const again = await request(gw.base, 'POST', '/api/v1/auth/mfa/passkey', { body: JSON.parse(sent.body), headers: { 'x-portcullis-csrf': '1', cookie: sent.cookie ?? '' } });
    assert.equal(again.status, 401, again.text);
    // Replayed into a new sign-in (the password known): the new challenge does not match.
    const step = await request(gw.base, 'POST', '/api/v1/auth/login', { body: { username: 'pat', password: PASSWORD('pat') }, headers: { 'x-portcullis-csrf': '1' } });
    const pending = (step.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith('pc_mfa='));
    const headers = { 'x-portcullis-csrf': '1', cookie: pending };
    assert.equal((await request(gw.base, 'POST', '/api/v1/auth/mfa/passkey/options', { headers })).status, 200);
    const replayed = await request(gw.base, 'POST', '/api/v1/auth/mfa/passkey', { body: JSON.parse(sent.body), headers });
    assert.equal(replayed.status, 401, replayed.text);
    assert.ok(!(replayed.headers['set-cookie'] ?? []).some((c) => c.startsWith('pc_session=') && !c.startsWith('pc_session=;')));
    const records = await trail('pat');
    assert.ok(records.some((e) => e.detail.step === 'passkey' && e.detail.outcome === 'registered'));
    assert.ok(records.some((e) => e.detail.step === 'login' && e.detail.outcome === 'ok' && e.detail.factor === 'passkey'));
    assert.ok(records.some((e) => e.detail.step === 'login' && e.detail.outcome === 'failed' && e.detail.factor === 'passkey'));
    // The sign-in is noted on the passkey (its last use).
    assert.equal((await admin.get('/users/pat/passkeys')).json.passkeys[0].last_used_at > 0, true);
  } finally {
    await page.context().close();
  }
});

const nextCode = freshTotp();

test('a role that requires a phishing-resistant factor: no code from an app; without a passkey an enrol-only login registers one; the last one stays; a reset removes them', async () => {
  // Pia registered a passkey (this test's own: it does not lean on another test's).
  assert.equal((await admin.post('/users', { name: 'pia', password: PASSWORD('pia'), role: 'user' })).status, 201);
  await registerPasskey('pia', 'phone');
  // Tom turned TOTP on before his role required a passkey.
  const tom = gw.api();
  assert.equal((await tom.login('tom', PASSWORD('tom'))).status, 200);
  const { secret } = (await tom.post('/me/mfa/enrol')).json;
  assert.equal((await tom.post('/me/mfa/confirm', { code: await nextCode(secret) })).status, 200);
  let r = await admin.put('/sso/settings', { public_url: site, required_for_roles: [], passkey_required_for_roles: ['admin'] });
  assert.equal(r.status, 409, 'the admin has no passkey: not for their own role');
  r = await admin.put('/sso/settings', { public_url: site, required_for_roles: [], passkey_required_for_roles: ['reviewer', 'user'] });
  assert.equal(r.status, 200, r.text);
  try {
    // Pia has a passkey: a code from an app is refused at the second step.
    const step = await request(gw.base, 'POST', '/api/v1/auth/login', { body: { username: 'pia', password: PASSWORD('pia') }, headers: { 'x-portcullis-csrf': '1' } });
    assert.equal(step.json.mfa_required, true, step.text);
    const pending = (step.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith('pc_mfa='));
    const code = await request(gw.base, 'POST', '/api/v1/auth/mfa', { body: { code: '123456' }, headers: { 'x-portcullis-csrf': '1', cookie: pending } });
    assert.equal(code.status, 403, code.text);
    assert.match(code.json.error, /requires a passkey/);

    // Tom has TOTP and no passkey: his password alone gives nothing; his code, a login that may
    // only register a passkey.
    const tomStep = await request(gw.base, 'POST', '/api/v1/auth/login', { body: { username: 'tom', password: PASSWORD('tom') }, headers: { 'x-portcullis-csrf': '1' } });
    assert.equal(tomStep.json.mfa_required, true, tomStep.text);
    const tomPending = (tomStep.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith('pc_mfa='));
    const tomIn = await request(gw.base, 'POST', '/api/v1/auth/mfa', { body: { code: await nextCode(secret) }, headers: { 'x-portcullis-csrf': '1', cookie: tomPending } });
    assert.equal(tomIn.status, 200, tomIn.text);
    assert.equal(tomIn.json.mfa_enrol_required, true);
    const tomLogin = apiClient(gw.base, (tomIn.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith('pc_session=')));
    assert.equal((await tomLogin.get('/recordings')).status, 403, 'enrol-only until a passkey');
    // Rita has none: her password gives an enrol-only login, which registers one.
    const { page } = await withAuthenticator();
    try {
      await passwordStep(page, 'rita');
      await page.waitForSelector('#passkey-add:not([disabled])', { timeout: 15000 });
      assert.match(await page.textContent('#passkey-status'), /requires a passkey/);
      const rita = apiClient(gw.base, `pc_session=${(await page.context().cookies()).find((c) => c.name === 'pc_session').value}`);
      assert.equal((await rita.get('/recordings')).status, 403, 'enrol-only before the passkey');
      await page.click('#passkey-add');
      await page.waitForSelector('#passkey-continue');
      assert.equal((await rita.get('/recordings')).status, 200, 'a full login once the passkey is there');
      // Her only passkey stays while her role requires one.
      const mine = (await rita.get('/me/passkeys')).json.passkeys;
      assert.equal(mine.length, 1);
      r = await rita.del(`/me/passkeys/${encodeURIComponent(mine[0].id)}`);
      assert.equal(r.status, 409, r.text);
    } finally {
      await page.context().close();
    }
    // An administrator's reset removes every second factor.
    assert.equal((await admin.del('/users/rita/mfa')).status, 204);
    // Not one's own (a stolen administrator's login would drop every factor of the account).
    const own = await admin.del('/users/admin/mfa');
    assert.equal(own.status, 403, own.text);
    assert.match(own.json.error, /your own second factor/);
    assert.deepEqual((await admin.get('/users/rita/passkeys')).json.passkeys, []);
  } finally {
    await admin.put('/sso/settings', { public_url: site, required_for_roles: [], passkey_required_for_roles: [] });
  }
});

test('changing passkeys needs a second factor the user has: a login alone (a stolen cookie) can neither add nor remove one', async () => {
  for (const name of ['quinn', 'uma']) {
    assert.equal((await admin.post('/users', { name, password: PASSWORD(name), role: 'user' })).status, 201);
  }
  const { page, cdp, authenticatorId } = await withAuthenticator();
  try {
    // Quinn has no second factor: the first passkey needs no proof.
    await passwordStep(page, 'quinn');
    await page.waitForSelector('#current-user');
    await page.goto(`${site}/#/me`);
    await page.waitForSelector('#passkey-add:not([disabled])');
    await page.fill('#passkey-name', 'first');
    await page.click('#passkey-add');
    await page.waitForSelector('[data-passkey="first"]');
    // The second one, on another authenticator (one holding the first refuses to make a second
    // for the same account): the page proves the first one (an assertion), then the security
    // key is swapped before the new one is made.
    let added = null;
    let keyB = null;
    page.on('request', (req) => { if (req.method() === 'POST' && req.url().endsWith('/api/v1/me/passkeys')) added = req.postData(); });
    await page.route('**/api/v1/me/passkeys/options', async (route) => {
      await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
      ({ authenticatorId: keyB } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
        options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
      }));
      await route.continue();
    });
    await page.fill('#passkey-name', 'second');
    await page.click('#passkey-add');
    await page.waitForSelector('[data-passkey="second"]');
    await page.unroute('**/api/v1/me/passkeys/options');
    assert.ok(JSON.parse(added).proof?.credential, 'the page sent no proof');
    assert.equal((await cdp.send('WebAuthn.getCredentials', { authenticatorId: keyB })).credentials.length, 1);

    // Whoever holds only the login cookie: refused both ways, nothing changed.
    const cookie = `pc_session=${(await page.context().cookies()).find((c) => c.name === 'pc_session').value}`;
    const thief = apiClient(gw.base, cookie);
    const mine = (await thief.get('/me/passkeys')).json.passkeys;
    assert.equal(mine.length, 2);
    let r = await thief.del(`/me/passkeys/${encodeURIComponent(mine[0].id)}`);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /prove a second factor/);
    r = await thief.del(`/me/passkeys/${encodeURIComponent(mine[0].id)}`, { proof: { code: '123456' } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /no authenticator app/);
    // An assertion for another ceremony (the one the page sent to add "second") is refused,
    // also against a proof ceremony of the thief's own (its challenge is another).
    r = await thief.del(`/me/passkeys/${encodeURIComponent(mine[0].id)}`, { proof: JSON.parse(added).proof });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /proof was refused/);
    assert.equal((await thief.post('/me/passkeys/proof')).status, 200);
    r = await thief.del(`/me/passkeys/${encodeURIComponent(mine[0].id)}`, { proof: JSON.parse(added).proof });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /proof was refused/);
    // Nor can the thief give the account an app of their own to prove with.
    const { secret: thiefSecret } = (await thief.post('/me/mfa/enrol')).json;
    r = await thief.post('/me/mfa/confirm', { code: await freshTotp()(thiefSecret) });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /prove a second factor/);
    assert.equal((await thief.get('/me')).json.totp, false, 'the thief\'s app is not on');
    // The thief's own passkey (a registration replayed without proof): refused before anything.
    assert.equal((await thief.post('/me/passkeys/options')).status, 200);
    const replay = JSON.parse(added);
    delete replay.proof;
    r = await thief.post('/me/passkeys', replay);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /prove a second factor/);
    assert.equal((await thief.get('/me/passkeys')).json.passkeys.length, 2);
    const failed = (await trail('quinn')).filter((e) => e.detail.outcome === 'failed' && e.detail.factor === 'passkey');
    assert.ok(failed.filter((e) => e.detail.step === 'passkey_remove').length >= 2, JSON.stringify(failed));

    // The page removes the first one (proving the second, the key at hand).
    await page.click('[data-remove-passkey="first"]');
    await page.waitForSelector('[data-passkey="first"]', { state: 'detached' });
    assert.deepEqual((await admin.get('/users/quinn/passkeys')).json.passkeys.map((p) => p.name), ['second']);
    assert.ok((await trail('quinn')).some((e) => e.detail.step === 'passkey' && e.detail.outcome === 'removed'));
  } finally {
    await page.context().close();
  }

  // Uma has an authenticator app and no passkey: a code from it is the proof.
  const umaCode = freshTotp();
  const uma = gw.api();
  assert.equal((await uma.login('uma', PASSWORD('uma'))).status, 200);
  const { secret } = (await uma.post('/me/mfa/enrol')).json;
  assert.equal((await uma.post('/me/mfa/confirm', { code: await umaCode(secret) })).status, 200);
  const second = await withAuthenticator();
  try {
    await passwordStep(second.page, 'uma');
    await second.page.waitForSelector('#login-mfa-code');
    await second.page.fill('#login-mfa-code', await umaCode(secret));
    await second.page.click('#login-mfa-submit');
    await second.page.waitForSelector('#current-user');
    await second.page.goto(`${site}/#/me`);
    await second.page.waitForSelector('#passkey-add:not([disabled])');
    // Without the code: the page says so and adds nothing.
    await second.page.click('#passkey-add');
    await second.page.waitForSelector('#passkey-error:not([hidden])');
    assert.match(await second.page.textContent('#passkey-error'), /code from your app/);
    await second.page.fill('#passkey-proof-code', await umaCode(secret));
    await second.page.fill('#passkey-name', 'key');
    await second.page.click('#passkey-add');
    await second.page.waitForSelector('[data-passkey="key"]');
    // A wrong code is counted like a login's and on record.
    const id = (await admin.get('/users/uma/passkeys')).json.passkeys[0].id;
    const cookie = `pc_session=${(await second.page.context().cookies()).find((c) => c.name === 'pc_session').value}`;
    const r = await apiClient(gw.base, cookie).del(`/me/passkeys/${encodeURIComponent(id)}`, { proof: { code: '000000' } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /wrong code/);
    assert.ok((await trail('uma')).some((e) => e.detail.step === 'passkey_remove' && e.detail.outcome === 'failed'));
    assert.equal((await admin.get('/users/uma/passkeys')).json.passkeys.length, 1);
  } finally {
    await second.page.context().close();
  }
});

test('failed passkey sign-ins count toward the lock-out like wrong passwords and codes', async () => {
  assert.equal((await admin.post('/users', { name: 'vera', password: PASSWORD('vera'), role: 'user' })).status, 201);
  const { page } = await withAuthenticator();
  let sent = null;
  try {
    await passwordStep(page, 'vera');
    await page.waitForSelector('#current-user');
    await page.goto(`${site}/#/me`);
    await page.waitForSelector('#passkey-add:not([disabled])');
    await page.click('#passkey-add');
    await page.waitForSelector('[data-passkey="passkey"]');
    await page.click('#logout');
    page.on('request', (req) => { if (req.url().endsWith('/api/v1/auth/mfa/passkey')) sent = req.postData(); });
    await passwordStep(page, 'vera');
    await page.waitForSelector('#login-mfa-form:not([hidden])');
    await page.click('#login-passkey');
    await page.waitForSelector('#current-user', { timeout: 15000 });
  } finally {
    await page.context().close();
  }
  assert.ok(sent, 'no assertion seen');
  // Someone who knows the password replays that (used) assertion, again and again.
  let locked = null;
  for (let i = 0; i < 10 && locked === null; i++) {
    const step = await request(gw.base, 'POST', '/api/v1/auth/login', { body: { username: 'vera', password: PASSWORD('vera') }, headers: { 'x-portcullis-csrf': '1' } });
    if (step.status === 429) { locked = i; break; }
    assert.equal(step.json.mfa_required, true, step.text);
    const pending = (step.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith('pc_mfa='));
    const headers = { 'x-portcullis-csrf': '1', cookie: pending };
    assert.equal((await request(gw.base, 'POST', '/api/v1/auth/mfa/passkey/options', { headers })).status, 200);
    const r = await request(gw.base, 'POST', '/api/v1/auth/mfa/passkey', { body: JSON.parse(sent), headers });
    if (r.status === 429) { locked = i; break; }
    assert.equal(r.status, 401, r.text);
  }
  assert.ok(locked !== null && locked <= 6, `not locked out after ${locked ?? 10} replays`);
  const failed = (await trail('vera')).filter((e) => e.detail.step === 'login' && e.detail.outcome === 'failed' && e.detail.factor === 'passkey');
  assert.ok(failed.length >= 5, `${failed.length} failures on record`);
});

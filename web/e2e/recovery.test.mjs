// Two-factor recovery codes through the real gateway and Chromium: shown once when TOTP is
// turned on, each replaces a code from the app once at sign-in (typed loosely too), a new set
// (for a code from the app now) replaces the old one, and it is all on record. Its own gateway:
// the failures here count toward no other test's lock-out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startGateway, launchBrowser, uiLogin, request, apiClient, newPage, freshTotp, dataFileHolding,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ROSA = 'rosa-password-1234';
let gw, admin, browser;
let secret;

before(async () => {
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  assert.equal((await admin.post('/users', { name: 'rosa', password: ROSA, role: 'user' })).status, 201);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

const nextCode = freshTotp();

const cookieOf = (r, name) => (r.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).find((c) => c.startsWith(`${name}=`) && c.length > name.length + 1);
const headers = { 'x-portcullis-csrf': '1' };

/** A sign-in's password step, then `code` as its second step: the answer. */
async function signIn(code) {
  const r = await request(gw.base, 'POST', '/api/v1/auth/login', { body: { username: 'rosa', password: ROSA }, headers });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.mfa_required, true, r.text);
  return request(gw.base, 'POST', '/api/v1/auth/mfa', { body: { code }, headers: { ...headers, cookie: cookieOf(r, 'pc_mfa') } });
}

const CODE_SHAPE = /^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$/;

test('recovery codes: shown once at set-up, each replaces a code from the app once, a new set replaces the old', async () => {
  const rosa = gw.api();
  assert.equal((await rosa.login('rosa', ROSA)).status, 200);
  const e = await rosa.post('/me/mfa/enrol');
  assert.equal(e.status, 200, e.text);
  secret = e.json.secret;
  const confirmed = await rosa.post('/me/mfa/confirm', { code: await nextCode(secret) });
  assert.equal(confirmed.status, 200, confirmed.text);
  const codes = confirmed.json.recovery_codes;
  assert.equal(codes.length, 10);
  assert.ok(codes.every((c) => CODE_SHAPE.test(c)), codes.join(' '));
  assert.equal(new Set(codes).size, 10);
  const nowhere = async (list) => {
    for (const text of [(await admin.get('/users')).text, gw.log(), (await admin.get('/audit?limit=500')).text]) {
      assert.ok(!list.some((c) => text.includes(c) || text.includes(c.replaceAll('-', ''))), 'a recovery code shown again');
    }
    // Kept only hashed: in no form in any data file.
    const forms = list.flatMap((c) => [c, c.replaceAll('-', ''), c.toLowerCase(), c.toLowerCase().replaceAll('-', '')]);
    assert.equal(dataFileHolding(gw, forms), null, 'a data file holds a recovery code');
  };
  await nowhere(codes);

  // One of them instead of a code from the app: once.
  let done = await signIn(codes[0]);
  assert.equal(done.status, 200, done.text);
  assert.equal(done.json.recovery_codes_left, 9);
  assert.equal((await signIn(codes[0])).status, 401, 'a recovery code works once');
  // Typed loosely (capitals, spaces for dashes): the same code.
  done = await signIn(codes[1].toUpperCase().replaceAll('-', ' '));
  assert.equal(done.status, 200, done.text);
  assert.equal(done.json.recovery_codes_left, 8);

  // A new set, for a code from the app now (not for the login alone): the old ones go.
  const signedIn = apiClient(gw.base, cookieOf(done, 'pc_session'));
  assert.equal((await signedIn.post('/me/mfa/recovery-codes', { code: '000000' })).status, 400);
  const renewed = await signedIn.post('/me/mfa/recovery-codes', { code: await nextCode(secret) });
  assert.equal(renewed.status, 200, renewed.text);
  const fresh = renewed.json.recovery_codes;
  assert.equal(fresh.length, 10);
  assert.ok(!fresh.some((c) => codes.includes(c)));
  assert.equal((await signIn(codes[2])).status, 401, 'the old set no longer works');

  // On record: the set issued twice, the sign-ins with a code and how many were left.
  const r = await admin.get('/audit?kind=mfa&actor=rosa&limit=100');
  const records = r.json.entries;
  assert.equal(records.filter((x) => x.detail.step === 'recovery_codes' && x.detail.outcome === 'issued').length, 2);
  assert.ok(records.some((x) => x.detail.recovery_code === true && x.detail.recovery_codes_left === 8), JSON.stringify(records));
  assert.ok(!JSON.stringify(records).includes(codes[0]));

  // In the browser: the sign-in page takes a recovery code; the account page gives a new set.
  const page = await newPage(browser);
  await uiLogin(page, gw.base, 'rosa', ROSA);
  await page.waitForSelector('#login-mfa-form:not([hidden])');
  await page.fill('#login-mfa-code', fresh[0]);
  await page.click('#login-mfa-submit');
  await page.waitForSelector('#current-user');
  await page.click('#current-user');
  await page.waitForSelector('#mfa-status[data-mfa="on"]');
  await page.fill('#mfa-renew-code', await nextCode(secret));
  await page.click('#mfa-renew');
  await page.waitForSelector('#mfa-recovery-codes li');
  const shown = await page.locator('#mfa-recovery-codes li').allTextContents();
  assert.equal(shown.length, 10);
  assert.ok(shown.every((c) => CODE_SHAPE.test(c.trim())), shown.join(' '));
  await page.context().close();
  assert.equal((await signIn(fresh[1])).status, 401, 'the set the browser replaced no longer works');

  // Guesses sent all at once cannot outrun the lock-out: at most its free failures are checked.
  const burst = await Promise.all(Array.from({ length: 12 }, () => signedIn.post('/me/mfa/recovery-codes', { code: '000000' })));
  const checked = burst.filter((x) => x.status === 400).length;
  assert.ok(checked <= 5, `${checked} guesses checked: ${burst.map((x) => x.status)}`);
  assert.ok(burst.every((x) => [400, 429].includes(x.status)), burst.map((x) => x.status).join(' '));

  // Shown once, each set: not in the user list, the trail or the log, after all of it.
  await nowhere([...codes, ...fresh, ...shown.map((c) => c.trim())]);
  // An administrator's reset of the second factor takes the codes with it (the record that
  // held them is gone: a new set-up starts with none).
  assert.equal((await admin.del('/users/rosa/mfa')).status, 204);
  assert.equal((await admin.get('/users')).json.find((u) => u.name === 'rosa').mfa, false);
});

// End-to-end tests of policy management: the policy API (save, explain), its persistence across a
// restart, the admin page, and a gateway whose policy is managed by a TOML file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, launchBrowser, uiLogin, freePort, bin } from './harness.mjs';

const ADMIN = 'admin-password-e2e';

const POLICY = {
  groups: { vendors: ['vic'] },
  rules: [
    { name: 'no-vendors-on-prod', subjects: ['group:vendors'], targets: ['label:prod'], deny: true },
    {
      name: 'users-on-db',
      subjects: ['role:user'],
      targets: ['label:db'],
      entry: ['browser'],
      clipboard: { direction: 'client_to_target', max_bytes: 1000 },
      windows: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '08:00', to: '18:00' }],
    },
  ],
};
// Monday 2024-01-01 10:00 UTC (inside the window) and Saturday 2024-01-06 10:00 UTC (outside).
const MONDAY_10 = 1704103200;
const SATURDAY_10 = 1704535200;

let gw, admin, browser;

before(async () => {
  gw = await startGateway({ adminPassword: ADMIN });
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const name of ['alice', 'vic']) {
    const r = await admin.post('/users', { name, password: `${name}-password-123`, role: 'user' });
    assert.equal(r.status, 201, r.text);
  }
  let r = await admin.post('/targets', { name: 'db1', address: '127.0.0.1:5999', password: 'x', labels: ['prod', 'db'] });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json.labels, ['prod', 'db']);
  r = await admin.post('/targets', { name: 'web1', address: '127.0.0.1:5998', password: 'x' });
  assert.equal(r.status, 201, r.text);
  assert.equal((await admin.post('/grants', { user: 'alice', target: 'db1' })).status, 201);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gw?.stop();
});

const explain = (user, target, action, at = MONDAY_10) => admin.post('/policy/explain', { user, target, action, at });
const OPEN_BROWSER = { action: 'open', entry: 'browser' };

test('targets carry labels; a bad label is refused', async () => {
  const list = (await admin.get('/targets')).json;
  assert.deepEqual(list.find((t) => t.name === 'db1').labels, ['prod', 'db']);
  assert.deepEqual(list.find((t) => t.name === 'web1').labels, []);
  const r = await admin.post('/targets', { name: 'bad', address: '127.0.0.1:5997', password: 'x', labels: ['a b'] });
  assert.equal(r.status, 400);
  assert.match(r.json.error, /invalid label name "a b"/);
  const alice = gw.api();
  await alice.login('alice', 'alice-password-123');
  const mine = (await alice.get('/targets')).json;
  assert.deepEqual(mine.map((t) => t.name), ['db1']);
  assert.equal(mine[0].labels, undefined);
  assert.equal(mine[0].account, undefined);
});

test('the shipped default policy is in force until one is saved', async () => {
  const r = await admin.get('/policy');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.managed_by_file, null);
  assert.deepEqual(r.json.policy.rules.map((x) => x.name), ['default']);
  const e = await explain('alice', 'web1', OPEN_BROWSER);
  assert.equal(e.json.allowed, true, e.text);
  assert.equal(e.json.rule, 'default');
});

test('a saved policy decides: explain names the rule, allowed or denied', async () => {
  const put = await admin.put('/policy', POLICY);
  assert.equal(put.status, 200, put.text);
  assert.deepEqual(put.json.policy.rules.map((x) => x.name), ['no-vendors-on-prod', 'users-on-db']);

  let e = await explain('alice', 'db1', OPEN_BROWSER);
  assert.equal(e.status, 200, e.text);
  assert.equal(e.json.allowed, true, e.text);
  assert.equal(e.json.rule, 'users-on-db');
  assert.deepEqual(e.json.labels, ['prod', 'db']);
  assert.equal(e.json.has_grant, true);
  assert.deepEqual(e.json.considered.map((c) => [c.rule, c.matched]), [['no-vendors-on-prod', false], ['users-on-db', true]]);

  e = await explain('vic', 'db1', OPEN_BROWSER);
  assert.equal(e.json.allowed, false);
  assert.equal(e.json.rule, 'no-vendors-on-prod');
  assert.deepEqual(e.json.groups, ['vendors']);

  e = await explain('alice', 'db1', OPEN_BROWSER, SATURDAY_10);
  assert.equal(e.json.allowed, false);
  assert.equal(e.json.rule, 'users-on-db');
  assert.match(e.json.message, /08:00/);

  e = await explain('alice', 'db1', { action: 'open', entry: 'native' });
  assert.equal(e.json.allowed, false);

  e = await explain('alice', 'db1', { action: 'clipboard', direction: 'client_to_target', kind: 'text', bytes: 10 });
  assert.equal(e.json.allowed, true, e.text);
  e = await explain('alice', 'db1', { action: 'clipboard', direction: 'target_to_client', kind: 'text', bytes: 10 });
  assert.equal(e.json.allowed, false);
  assert.equal(e.json.rule, 'users-on-db');

  e = await explain('alice', 'web1', OPEN_BROWSER);
  assert.equal(e.json.allowed, false);
  assert.equal(e.json.rule, null);

  assert.equal((await explain('nobody', 'db1', OPEN_BROWSER)).status, 404);
  assert.equal((await explain('alice', 'nowhere', OPEN_BROWSER)).status, 404);
});

test('an invalid policy is refused with 400 naming the rule and field, and changes nothing', async () => {
  const saved = (await admin.get('/policy')).json.policy;
  const bad = structuredClone(POLICY);
  bad.rules[1].subjects = ['usr:alice'];
  const r = await admin.put('/policy', bad);
  assert.equal(r.status, 400);
  assert.match(r.json.error, /rule "users-on-db": subjects\[0\]/);
  const unknown = await admin.put('/policy', { rules: [{ name: 'x', subjects: ['*'], targets: ['*'], colour: 'red' }] });
  assert.equal(unknown.status, 400);
  assert.match(unknown.json.error, /colour/);
  assert.deepEqual((await admin.get('/policy')).json.policy, saved);
  assert.equal((await explain('vic', 'db1', OPEN_BROWSER)).json.rule, 'no-vendors-on-prod');
});

test('policy routes need an admin, a login and the CSRF header', async () => {
  const anon = gw.api();
  assert.equal((await anon.get('/policy')).status, 401);
  assert.equal((await anon.put('/policy', POLICY)).status, 401);
  assert.equal((await anon.post('/policy/explain', {})).status, 401);
  const alice = gw.api();
  await alice.login('alice', 'alice-password-123');
  assert.equal((await alice.get('/policy')).status, 403);
  assert.equal((await alice.put('/policy', POLICY)).status, 403);
  assert.equal((await alice.post('/policy/explain', { user: 'alice', target: 'db1', action: OPEN_BROWSER })).status, 403);
  const { request } = await import('./harness.mjs');
  const r = await request(gw.base, 'PUT', '/api/v1/policy', { body: POLICY, headers: { cookie: admin.cookie } });
  assert.equal(r.status, 403);
  const doc = (await anon.get('/openapi.json')).json;
  assert.ok(doc.paths['/policy'].get && doc.paths['/policy'].put && doc.paths['/policy/explain'].post);
});

test('the admin page edits the policy and explains a decision', async () => {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  await uiLogin(page, gw.base, 'admin', ADMIN);
  await page.waitForSelector('#nav-admin-policy');
  await page.click('#nav-admin-policy');
  await page.waitForFunction(() => document.querySelector('#policy-text')?.value.includes('no-vendors-on-prod'));
  assert.equal(await page.isVisible('#policy-managed'), false);

  // Explain: vic on db1 is denied by the deny rule, and the considered rules are listed.
  await page.waitForSelector('#explain-user option[value="vic"]', { state: 'attached' });
  await page.selectOption('#explain-user', 'vic');
  await page.selectOption('#explain-target', 'db1');
  await page.selectOption('#explain-action', 'open_browser');
  await page.click('#explain-run');
  await page.waitForSelector('#explain-result:not([hidden])');
  assert.match(await page.textContent('#explain-verdict'), /Denied by rule "no-vendors-on-prod"/);
  assert.equal(await page.locator('#explain-considered tbody tr').count(), 1);
  assert.match(await page.textContent('#explain-facts'), /groups vendors/);

  // The clipboard asks for a size.
  await page.selectOption('#explain-user', 'alice');
  await page.selectOption('#explain-action', 'clipboard_to_target');
  await page.fill('#explain-bytes', '5000');
  await page.click('#explain-run');
  await page.waitForFunction(() => /users-on-db/.test(document.querySelector('#explain-verdict')?.textContent ?? ''));
  assert.match(await page.textContent('#explain-verdict'), /^Denied/); // over the 1000-byte limit

  // Saving an invalid document shows the gateway's message; a valid one is saved.
  const text = await page.inputValue('#policy-text');
  await page.fill('#policy-text', text.replace('"group:vendors"', '"grp:vendors"'));
  await page.click('#policy-save');
  await page.waitForSelector('#policy-error:not([hidden])');
  assert.match(await page.textContent('#policy-error'), /rule "no-vendors-on-prod": subjects\[0\]/);
  await page.fill('#policy-text', text.replace('"max_bytes": 1000', '"max_bytes": 8000'));
  await page.click('#policy-save');
  await page.waitForSelector('#policy-saved:not([hidden])');
  assert.match(await page.textContent('#policy-saved'), /2 rules in force/);
  assert.equal((await admin.get('/policy')).json.policy.rules[1].clipboard.max_bytes, 8000);
  await ctx.close();
});

test('the saved policy survives a restart', async () => {
  const before = (await admin.get('/policy')).json.policy;
  await gw.stop({ keep: true });
  gw = await startGateway({ adminPassword: ADMIN, dir: gw.dir });
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  assert.deepEqual((await admin.get('/policy')).json.policy, before);
  const e = await explain('vic', 'db1', OPEN_BROWSER);
  assert.equal(e.json.rule, 'no-vendors-on-prod');
});

test('a gateway with [policy] file uses it and refuses changes with 409', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pc-policy-'));
  const file = join(dir, 'policy.toml');
  writeFileSync(file, [
    '[groups]', 'ops = ["alice"]', '',
    '[[rules]]', 'name = "ops-everywhere"', 'subjects = ["group:ops"]', 'targets = ["*"]', '',
    '[rules.clipboard]', 'direction = "target_to_client"', '',
  ].join('\n'));
  const managed = await startGateway({ adminPassword: ADMIN, extraConfig: `[policy]\nfile = "${file}"\n` });
  try {
    const api = managed.api();
    assert.equal((await api.login('admin', ADMIN)).status, 200);
    assert.equal((await api.post('/users', { name: 'alice', password: 'alice-password-123', role: 'user' })).status, 201);
    assert.equal((await api.post('/targets', { name: 'web1', address: '127.0.0.1:5998', password: 'x' })).status, 201);
    const got = await api.get('/policy');
    assert.equal(got.json.managed_by_file, file);
    assert.deepEqual(got.json.policy.rules.map((r) => r.name), ['ops-everywhere']);
    const r = await api.put('/policy', POLICY);
    assert.equal(r.status, 409);
    assert.ok(r.json.error.includes(file), r.json.error);
    const e = await api.post('/policy/explain', { user: 'alice', target: 'web1', action: { action: 'clipboard', direction: 'target_to_client', kind: 'text', bytes: 1 } });
    assert.equal(e.json.allowed, true, e.text);
    assert.equal(e.json.rule, 'ops-everywhere');

    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await ctx.newPage();
    await uiLogin(page, managed.base, 'admin', ADMIN);
    await page.waitForSelector('#nav-admin-policy');
    await page.click('#nav-admin-policy');
    await page.waitForSelector('#policy-managed:not([hidden])');
    assert.ok((await page.textContent('#policy-managed')).includes(file));
    assert.equal(await page.getAttribute('#policy-text', 'readonly'), '');
    assert.equal(await page.isVisible('#policy-save'), false);
    await ctx.close();
  } finally {
    await managed.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a policy file that does not compile stops start-up, naming the file, rule and field', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pc-policy-bad-'));
  try {
    const file = join(dir, 'policy.toml');
    writeFileSync(file, '[[rules]]\nname = "ops"\nsubjects = ["*"]\ntargets = ["host:web1"]\n');
    const config = join(dir, 'portcullis.toml');
    writeFileSync(config, `data_dir = "${dir}/data"\n[http]\nlisten = "127.0.0.1:${await freePort()}"\n[rdp]\nenabled = false\n[policy]\nfile = "${file}"\n`);
    const r = spawnSync(bin, ['--config', config, 'serve'], {
      env: { ...process.env, PORTCULLIS_ADMIN_PASSWORD: ADMIN, RUST_LOG: 'warn' },
      encoding: 'utf8',
      timeout: 30000,
    });
    assert.notEqual(r.status, 0);
    assert.ok(r.stderr.includes(file), r.stderr);
    assert.match(r.stderr, /rule "ops": targets\[0\]/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The audit trail through the real gateway: what lands in it, who may read it, offline
// verification naming a tampered record, and no acknowledged record lost across kill -9.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  readdirSync, readFileSync, writeFileSync, mkdtempSync, openSync, writeSync, closeSync, rmSync, unlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startDesktop, startGateway, launchBrowser, uiLogin, openTarget, sleep, recordedEvents, newPage,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
const SOC = 'soc-password-1234';
const VNC_PASSWORD = 'vncsecret';

let vnc, gw, browser, admin, soc;

before(async () => {
  vnc = await startDesktop(VNC_PASSWORD);
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  for (const [name, password, role] of [['alice', ALICE, 'user'], ['sam', SOC, 'soc']]) {
    const r = await admin.post('/users', { name, password, role });
    assert.equal(r.status, 201, r.text);
  }
  let r = await admin.post('/targets', { name: 'desk', kind: 'vnc', address: vnc.address, password: VNC_PASSWORD });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: 'desk' });
  assert.equal(r.status, 201, r.text);
  soc = gw.api();
  assert.equal((await soc.login('sam', SOC)).status, 200);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  vnc?.stop();
});

const openSession = (page) => openTarget(page, gw.base, 'alice', ALICE, 'desk');

/** Every record matching `query`, newest first (follows the pages). */
async function trail(client, query = '') {
  const out = [];
  let before = '';
  for (let i = 0; i < 20; i++) {
    const r = await client.get(`/audit?limit=500${query}${before}`);
    assert.equal(r.status, 200, r.text);
    out.push(...r.json.entries);
    if (!r.json.next_before_seq) break;
    before = `&before_seq=${r.json.next_before_seq}`;
  }
  return out;
}

test('logins, admin changes, a session and its kill are in the trail, with who, what and before/after', async () => {
  const anon = gw.api();
  assert.equal((await anon.login('alice', 'wrong-password')).status, 401);
  const page = await newPage(browser);
  try {
    await openSession(page);
    await page.waitForFunction(() => window.__portcullis?.sessionId, null, { timeout: 20000 });
    let live;
    for (let i = 0; i < 50 && !live; i++) {
      live = (await soc.get('/sessions')).json.find((s) => s.user === 'alice' && s.state === 'active');
      if (!live) await sleep(100);
    }
    assert.ok(live, 'no live session');
    const r = await soc.post(`/sessions/${live.id}/kill`, { reason: 'audit e2e kill' });
    assert.equal(r.status, 204, r.text);
    await recordedEvents(admin, live.id);

    const all = await trail(soc);
    const find = (pred, what) => {
      const e = all.find(pred);
      assert.ok(e, `${what} not in the trail:\n${JSON.stringify(all.slice(0, 40), null, 1)}`);
      return e;
    };
    find((e) => e.kind === 'login_failed' && e.actor === 'alice' && /wrong/.test(e.detail.reason), 'the failed login');
    const ok = find((e) => e.kind === 'login' && e.actor === 'alice' && e.detail.entry === 'browser', 'the login');
    assert.match(ok.detail.address, /^127\.0\.0\.1:/);
    const created = find((e) => e.kind === 'admin_change' && e.detail.action === 'user_create' && e.detail.after?.name === 'alice', 'the user creation');
    assert.equal(created.actor, 'admin');
    assert.equal(created.detail.before, null);
    const target = find((e) => e.kind === 'admin_change' && e.detail.action === 'target_create', 'the target creation');
    // Never a secret in the trail.
    assert.doesNotMatch(JSON.stringify(target), new RegExp(VNC_PASSWORD));
    const start = find((e) => e.kind === 'session_start' && e.session === live.id, 'the session start');
    assert.equal(start.target, 'desk');
    find((e) => e.kind === 'policy' && e.session === live.id && e.detail.action === 'open' && e.detail.decision === 'allow', 'the policy decision to open');
    find((e) => e.kind === 'viewer_joined' && e.session === live.id, 'the viewer');
    const kill = find((e) => e.kind === 'session_kill' && e.session === live.id, 'the kill');
    assert.equal(kill.actor, 'sam');
    assert.equal(kill.detail.reason, 'audit e2e kill');
    find((e) => e.kind === 'session_end' && e.session === live.id && /audit e2e kill/.test(e.detail.reason), 'the session end');
    // Newest first, each record chained to the one before.
    for (let i = 1; i < all.length; i++) {
      assert.ok(all[i - 1].seq > all[i].seq);
      if (all[i - 1].seq === all[i].seq + 1) assert.equal(all[i - 1].prev, all[i].hash);
    }
    // Filters.
    const mine = await trail(soc, '&actor=alice&kind=login,login_failed');
    assert.ok(mine.length >= 2 && mine.every((e) => e.actor === 'alice' && /^login/.test(e.kind)));
    const since = all[0].ts_ms;
    const later = await trail(soc, `&since_ms=${since}`);
    assert.ok(later.every((e) => e.ts_ms >= since));
  } finally {
    await page.close();
  }
});

test('a policy change is recorded before and after; a refused session open is recorded', async () => {
  const original = (await admin.get('/policy')).json.policy;
  const doc = structuredClone(original);
  doc.rules[0].entry = ['native'];
  let r = await admin.put('/policy', doc);
  assert.equal(r.status, 200, r.text);
  const page = await newPage(browser);
  try {
    await openSession(page);
    await page.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
    assert.match(await page.textContent('#session-error'), /polic/i);
  } finally {
    await page.close();
    r = await admin.put('/policy', original);
    assert.equal(r.status, 200, r.text);
  }
  const all = await trail(soc);
  const change = all.find((e) => e.kind === 'admin_change' && e.detail.action === 'policy_change' && e.detail.after?.rules?.[0]?.entry?.[0] === 'native');
  assert.ok(change, 'the policy change');
  const refused = all.find((e) => e.kind === 'policy' && e.actor === 'alice' && e.detail.decision === 'deny' && e.detail.action === 'open');
  assert.ok(refused, 'the refused open');
  assert.match(refused.detail.reason, /refused by the policy/);
});

test('only the security team and administrators read the trail', async () => {
  const alice = gw.api();
  assert.equal((await alice.login('alice', ALICE)).status, 200);
  assert.equal((await alice.get('/audit')).status, 403);
  assert.equal((await alice.get('/audit/verify')).status, 403);
  assert.equal((await gw.api().get('/audit')).status, 401);
  const v = await soc.get('/audit/verify');
  assert.equal(v.status, 200);
  assert.equal(v.json.ok, true, JSON.stringify(v.json));
  assert.ok(v.json.records > 10);
  // Checked with the gateway's key: the trail is sealed.
  assert.equal(v.json.seals_checked, true, JSON.stringify(v.json));
  assert.ok(v.json.sealed > 0 && v.json.last_sealed_seq > 0, JSON.stringify(v.json));
});

test('five wrong passwords lock an account out with back-off, even for the right password; recorded', async () => {
  let r = await admin.post('/users', { name: 'lou', password: 'lou-password-1234', role: 'user' });
  assert.equal(r.status, 201, r.text);
  const anon = gw.api();
  for (let i = 0; i < 5; i++) assert.equal((await anon.login('lou', `wrong-${i}`)).status, 401);
  r = await anon.login('lou', 'lou-password-1234');
  assert.equal(r.status, 429, r.text);
  assert.match(r.text, /too many failed logins: try again in \d+ s/);
  const all = await trail(soc, '&actor=lou&kind=login_failed');
  assert.equal(all.length, 6);
  assert.match(all[0].detail.reason, /too many failed logins/);
});

test('the audit page: the security team reads, filters, verifies and exports the trail; a user cannot', async () => {
  const page = await newPage(browser);
  try {
    await uiLogin(page, gw.base, 'sam', SOC);
    await page.waitForSelector('#current-role');
    await page.click('#nav-audit');
    await page.waitForSelector('#nav-audit.active');
    await page.waitForSelector('#audit-table tr[data-seq]', { timeout: 10000 });
    // Alice's login and Sam's kill are there (older pages on request, should the trail be long).
    const wanted = async () => page.evaluate(() => ({
      login: !!document.querySelector('#audit-table tr[data-kind="login"][data-actor="alice"]'),
      kill: [...document.querySelectorAll('#audit-table tr[data-kind="session_kill"]')].some((tr) => /audit e2e kill/.test(tr.textContent)),
    }));
    for (let i = 0; i < 20; i++) {
      const w = await wanted();
      if (w.login && w.kill) break;
      if (await page.isHidden('#audit-more')) break;
      const before = await page.$$eval('#audit-table tr[data-seq]', (rows) => rows.length);
      await page.click('#audit-more');
      await page.waitForFunction((n) => document.querySelectorAll('#audit-table tr[data-seq]').length > n, before);
    }
    assert.deepEqual(await wanted(), { login: true, kill: true });
    const kill = page.locator('#audit-table tr[data-kind="session_kill"]', { hasText: 'audit e2e kill' }).first();
    assert.match(await kill.textContent(), /Session of alice killed: audit e2e kill/);
    assert.equal(await kill.getAttribute('data-actor'), 'sam');
    assert.ok(await kill.locator('.audit-kind.warn').count(), 'the kill badge is in the warning colour');
    assert.match(await kill.locator('a.audit-session').getAttribute('href'), /^#\/recordings\/[0-9a-f-]{8,}$/);
    const login = page.locator('#audit-table tr[data-kind="login"][data-actor="alice"]').first();
    assert.match(await login.locator('summary').textContent(), /^Login from 127\.0\.0\.1:\d+ \(browser\)$/);
    // Expanded: the full record, with its seq and hash.
    await login.locator('summary').click();
    const json = JSON.parse(await login.locator('pre.audit-json').textContent());
    assert.equal(json.seq, Number(await login.getAttribute('data-seq')));
    assert.match(json.hash, /^[0-9a-f]{64}$/);
    assert.equal(json.actor, 'alice');

    // Filtered by actor: only Alice's records.
    await page.fill('#audit-filter-actor', 'alice');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#audit-table tr[data-seq]')];
      return rows.length > 0 && rows.every((tr) => tr.dataset.actor === 'alice');
    }, null, { timeout: 10000 });
    const kinds = await page.$$eval('#audit-table tr[data-seq]', (rows) => rows.map((tr) => tr.dataset.kind));
    assert.ok(kinds.includes('login') && kinds.includes('login_failed'), kinds.join());
    // And by kind too.
    await page.fill('#audit-filter-kind', 'login_failed');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#audit-table tr[data-seq]')];
      return rows.length > 0 && rows.every((tr) => tr.dataset.actor === 'alice' && tr.dataset.kind === 'login_failed');
    }, null, { timeout: 10000 });
    assert.match(await page.textContent('#audit-table tbody'), /Login failed from 127\.0\.0\.1:\d+ \(browser\): .*wrong/);
    assert.ok(await page.$('#audit-table tr[data-kind="login_failed"] .audit-kind.warn'));

    // The rows shown, as JSON lines.
    const shown = await page.$$eval('#audit-table tr[data-seq]', (rows) => rows.map((tr) => Number(tr.dataset.seq)));
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#audit-export')]);
    assert.match(download.suggestedFilename(), /^portcullis-audit-\d{8}-\d{6}\.jsonl$/);
    const lines = readFileSync(await download.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((e) => e.seq), shown);
    assert.ok(lines.every((e) => e.kind === 'login_failed' && e.actor === 'alice' && /^[0-9a-f]{64}$/.test(e.hash)));

    // The whole chain checks out.
    await page.click('#audit-verify');
    await page.waitForFunction(() => /Intact/.test(document.querySelector('#audit-verify-result')?.textContent ?? ''), null, { timeout: 20000 });
    assert.match(await page.textContent('#audit-verify-result'), /^Intact: \d+ records, last seq \d+$/);
    assert.equal(await page.isHidden('#audit-error'), true);
  } finally {
    await page.close();
  }

  const user = await newPage(browser);
  try {
    await uiLogin(user, gw.base, 'alice', ALICE);
    await user.waitForSelector('#current-role');
    assert.equal(await user.textContent('#current-role'), 'user');
    assert.equal(await user.$('#nav-audit'), null);
    await user.evaluate(() => { location.hash = '#/audit'; });
    await user.waitForFunction(() => location.hash !== '#/audit' || document.querySelector('#not-allowed'), null, { timeout: 10000 });
    assert.equal(await user.$('#audit-table'), null);
    assert.equal(await user.$('#audit-verify'), null);
  } finally {
    await user.close();
  }
});

test('no acknowledged record is lost across kill -9; the chain verifies; a tampered record is named', async () => {
  const dir = join(gw.dir, 'data', 'audit');
  const acknowledged = [];
  for (let round = 0; round < 5; round++) {
    const api = gw.api();
    assert.equal((await api.login('sam', SOC)).status, 200);
    // Eight streams of actions the trail must keep, each with its own reason, until the crash.
    let crashed = false;
    const stream = async (k) => {
      for (let i = 0; !crashed; i++) {
        const reason = `crash-${round}-${k}-${i}`;
        try {
          const r = await api.post('/users/alice/lock', { reason });
          if (r.status === 204) acknowledged.push(reason);
        } catch {
          return; // the gateway is gone
        }
      }
    };
    const streams = [...Array(8).keys()].map(stream);
    await sleep(300 + round * 100);
    crashed = true;
    await gw.kill();
    await Promise.all(streams);
    gw = await startGateway({ adminPassword: ADMIN, dir: gw.dir });
  }
  assert.ok(acknowledged.length > 40, `only ${acknowledged.length} acknowledged`);
  console.log(`# ${acknowledged.length} acknowledged records across 5 kill -9 rounds`);
  await gw.kill();
  const verified = gw.cli(['audit', 'verify']);
  assert.equal(verified.status, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, /intact/);
  // The seals, checked with the gateway's key: the last record of each write carries one.
  assert.match(verified.stdout, /sealed: \d+ records carry a seal, the last at seq \d+; every seal checks out/);
  const shown = gw.cli(['audit', 'show', '--kind', 'user_lock', '--limit', '1000000']);
  assert.equal(shown.status, 0, shown.stderr);
  const kept = new Set(shown.stdout.trim().split('\n').map((l) => JSON.parse(l).detail.reason));
  const lost = acknowledged.filter((r) => !kept.has(r));
  assert.deepEqual(lost, [], `${lost.length} acknowledged records lost`);

  // One byte changed in the middle of a record: verify names it, and the gateway will not start.
  const segment = readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort()[0];
  const path = join(dir, segment);
  const lines = readFileSync(path, 'utf8').split('\n');
  const victim = 5;
  lines[victim - 1] = lines[victim - 1].replace('"actor":"admin"', '"actor":"admim"');
  writeFileSync(path, lines.join('\n'));
  const bad = gw.cli(['audit', 'verify']);
  assert.equal(bad.status, 1, bad.stdout);
  assert.match(bad.stderr, new RegExp(`line ${victim} \\(seq ${victim}\\).*hash mismatch`));
  const refused = gw.cli(['serve']);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /audit/);
  // Put it back so the suite's teardown finds a normal gateway.
  lines[victim - 1] = lines[victim - 1].replace('"actor":"admim"', '"actor":"admin"');
  writeFileSync(path, lines.join('\n'));
  gw = await startGateway({ adminPassword: ADMIN, dir: gw.dir });
});

/** Fills the file system of `dir` until it has no byte left; returns the filler's path. */
function fillDisk(dir) {
  const path = join(dir, 'filler.bin');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  try {
    for (const size of [chunk.length, 65536, 4096, 512, 1]) {
      try { for (;;) writeSync(fd, chunk.subarray(0, size)); } catch (e) { if (e.code !== 'ENOSPC') throw e; }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

test('an unwritable trail (its disk full): admin changes get 503 and change nothing; nothing unrecorded', async () => {
  // The trail on its own small tmpfs, so that it alone fills up.
  const mnt = mkdtempSync(join(tmpdir(), 'pc-auditfull-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', mnt]);
  let g;
  try {
    const extraConfig = `[audit]\ndir = "${mnt}/audit"\n`;
    g = await startGateway({ adminPassword: ADMIN, extraConfig });
    const a = g.api();
    assert.equal((await a.login('admin', ADMIN)).status, 200);
    let r = await a.post('/users', { name: 'ursula', password: 'ursula-password-1', role: 'user' });
    assert.equal(r.status, 201, r.text);
    const policyBefore = (await a.get('/policy')).json.policy;
    const usersBefore = (await a.get('/users')).json;

    const filler = fillDisk(mnt);
    // The segment's last page may still hold a few records: harmless, recorded changes (unlocking
    // an unlocked user) until the trail refuses one. Then the log stops for good (until a restart).
    let refused = null;
    for (let i = 0; i < 500 && !refused; i++) {
      r = await a.post('/users/ursula/unlock');
      if (r.status === 503) refused = r;
      else assert.equal(r.status, 204, r.text);
    }
    assert.ok(refused, 'the trail never refused a record on a full disk');
    assert.match(refused.json.error, /audit trail cannot be written/);

    r = await a.del('/users/ursula');
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.error, /audit trail cannot be written.*nothing was done/);
    const doc = structuredClone(policyBefore);
    doc.rules[0].entry = ['native'];
    r = await a.put('/policy', doc);
    assert.equal(r.status, 503, r.text);
    r = await a.post('/users/ursula/lock', { reason: 'disk full test' });
    assert.equal(r.status, 503, r.text);

    // Nothing changed: the user is there and unlocked, the policy in force is the old one.
    assert.deepEqual((await a.get('/users')).json, usersBefore);
    assert.deepEqual((await a.get('/policy')).json.policy, policyBefore);

    // Space again and a restart: the trail verifies and holds none of the refused changes, and
    // the same deletion now works (recorded first).
    unlinkSync(filler);
    await g.stop({ keep: true });
    g = await startGateway({ adminPassword: ADMIN, dir: g.dir, extraConfig });
    const b = g.api();
    assert.equal((await b.login('admin', ADMIN)).status, 200);
    assert.deepEqual((await b.get('/policy')).json.policy, policyBefore);
    assert.ok((await b.get('/users')).json.some((u) => u.name === 'ursula' && !u.locked));
    const v = await b.get('/audit/verify');
    assert.equal(v.json.ok, true, JSON.stringify(v.json));
    const all = (await b.get('/audit?limit=500')).json.entries;
    assert.ok(!all.some((e) => e.detail.action === 'user_delete' || e.detail.action === 'policy_change'
      || e.kind === 'user_lock'), 'a refused change is in the trail');
    r = await b.del('/users/ursula');
    assert.equal(r.status, 204, r.text);
    const deleted = (await b.get('/audit?limit=5&kind=admin_change')).json.entries[0];
    assert.equal(deleted.detail.action, 'user_delete');
    assert.equal(deleted.detail.before.name, 'ursula');
  } finally {
    await g?.stop();
    try { execFileSync('umount', [mnt]); } catch { execFileSync('umount', ['-l', mnt]); }
    rmSync(mnt, { recursive: true, force: true });
  }
});

// Target credentials through the real gateway: a canary password used for a real session is found
// nowhere it must not be (logs, audit trail, API answers, the browser's traffic, the data
// directory's files, a recording export), and rotating the secret key keeps every target usable,
// also after a rotation that was interrupted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDesktop, startGateway, launchBrowser, openTarget, sleep, recordedEvents, newPage } from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';
// The VNC password is the canary: it must only ever exist sealed.
const CANARY = `Cn${randomBytes(3).toString('hex')}`;

let vnc, gw, browser, admin, firstId;

before(async () => {
  vnc = await startDesktop(CANARY);
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  let r = await admin.post('/users', { name: 'alice', password: ALICE, role: 'user' });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/targets', { name: 'desk', kind: 'vnc', address: vnc.address, password: CANARY });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: 'desk' });
  assert.equal(r.status, 201, r.text);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  vnc?.stop();
});

/** Opens a browser session to desk as alice and returns [page, session id, traffic]. */
async function session() {
  const page = await newPage(browser);
  const traffic = [];
  page.on('websocket', (ws) => {
    ws.on('framereceived', (f) => traffic.push(Buffer.from(f.payload)));
    ws.on('framesent', (f) => traffic.push(Buffer.from(f.payload)));
  });
  page.on('response', async (res) => {
    try { traffic.push(await res.body()); } catch { /* redirects and aborted loads have none */ }
  });
  await openTarget(page, gw.base, 'alice', ALICE, 'desk');
  await page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 20000 });
  const id = await page.evaluate(() => window.__portcullis.sessionId);
  return [page, id, traffic];
}

function filesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

const has = (buf) => buf.includes(Buffer.from(CANARY)) || buf.includes(Buffer.from(CANARY, 'utf16le'));

test('the canary target password is found nowhere: logs, audit, API, browser traffic, data files, export', async () => {
  const [page, id, traffic] = await session();
  firstId = id;
  await page.keyboard.type('echo canary-test');
  await sleep(500);
  await page.close();
  await recordedEvents(admin, id);
  const answers = [];
  for (const p of ['/targets', '/sessions', '/users', '/grants', '/policy', '/audit?limit=500', `/recordings/${id}`, `/recordings/${id}/events`]) {
    const r = await admin.get(p);
    assert.equal(r.status, 200, `${p}: ${r.text}`);
    answers.push([p, r.body]);
  }
  const exported = await admin.get(`/recordings/${id}/export`);
  assert.equal(exported.status, 200);
  answers.push(['export', exported.body]);
  for (const [p, body] of answers) assert.ok(!has(body), `the canary is in the answer to ${p}`);
  assert.ok(traffic.length > 10, 'no browser traffic seen');
  assert.ok(!traffic.some(has), "the canary is in the browser's traffic");
  assert.ok(!has(Buffer.from(gw.log())), 'the canary is in the gateway log');
  const files = filesUnder(join(gw.dir, 'data'));
  assert.ok(files.some((f) => f.includes('audit')) && files.some((f) => f.includes('store')));
  for (const f of files) assert.ok(!has(readFileSync(f)), `the canary is in ${f}`);
});

test('rotating the secret key keeps targets usable; an interrupted rotation stops the start until it is finished', async () => {
  const keyFile = join(gw.dir, 'data', 'secret.key');
  const before = readFileSync(keyFile, 'utf8');
  await gw.stop({ keep: true });
  let r = gw.cli(['secrets', 'rotate-key']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /1 target secrets and the recording signing key sealed under the new key/);
  const rotated = readFileSync(keyFile, 'utf8');
  assert.notEqual(rotated, before);
  // As if the machine died right after writing the next key.
  writeFileSync(`${keyFile}.next`, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const refused = gw.cli(['serve']);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /rotation was interrupted.*rotate-key/);
  r = gw.cli(['secrets', 'rotate-key']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  gw = await startGateway({ adminPassword: ADMIN, dir: gw.dir });
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  // The target's password opens with the new key: the session works.
  const [page, id] = await session();
  await page.close();
  await recordedEvents(admin, id);
  // A recording made before the rotation still verifies: the signing key is the same one.
  const manifest = filesUnder(join(gw.dir, 'data')).find((f) => f.includes(firstId) && f.endsWith('manifest.jsonl'));
  assert.ok(manifest, 'no recording folder for the first session');
  const check = gw.cli(['recording', 'verify', join(manifest, '..')]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
});

// Recordings in an S3-compatible object store, two gateways on one PostgreSQL store and one S3
// server (issue 16). Each test starts its own PostgreSQL (fixtures/postgres.sh), S3 server
// (fixtures/s3.sh: SeaweedFS) and VNC desktop. What must hold: a recording made on A is listed,
// played and exported on B; the store down for a while holds uploads back without losing
// anything or stopping the session; a gateway killed with -9 mid-session leaves its recording
// authentic in the store, and its next start closes it as incomplete and finishes the upload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readdirSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  startGateway, startPostgres, startS3, startDesktop, userWithTarget, launchBrowser, newPage, openTarget,
  until, untar, freePort, sleep, uiLogin, startXfreerdp, tryUpgrade, watchFromPage,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';

async function ops(port, path) {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, text: await r.text() };
}

/** A value of the metrics text (`name` with its labels as written), or undefined. */
function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

/** Two gateways on one new database and one S3 prefix, with operations listeners. */
async function cluster(t, name) {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const s3 = await startS3();
  t.after(() => s3.stop());
  const dbUrl = pg.database(name);
  const shared = `[store]\nurl = "${dbUrl}"\n${s3.config(name)}`;
  const env = { PORTCULLIS_SECRET_KEY: randomBytes(32).toString('hex') };
  const opsA = await freePort();
  const a = await startGateway({ extraConfig: `${shared}[ops]\nlisten = "127.0.0.1:${opsA}"\n`, env });
  t.after(() => a.stop());
  const b = await startGateway({ extraConfig: shared, env });
  t.after(() => b.stop());
  return { pg, s3, a, b, opsA, shared, env, dbUrl };
}

/** Types `text` + Enter into the session's desktop. */
async function type(page, text) {
  await page.click('canvas');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

/** The recording's export from `api`, unpacked into a new folder. */
async function exported(api, id) {
  const r = await api.get(`/recordings/${id}/export`);
  assert.equal(r.status, 200, r.text);
  // `recording verify` takes a folder named as a recording is.
  const dir = join(mkdtempSync(join(tmpdir(), 'pc-export-')), id);
  mkdirSync(dir);
  for (const [name, data] of Object.entries(untar(r.body))) writeFileSync(join(dir, name), data);
  return dir;
}

const spooled = (gw) => {
  const dir = join(gw.dir, 'data/recordings');
  return existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith('.')) : []; // not the folder's lock
};

test('a recording made on one gateway is played and exported on another; the object store down for a while loses nothing', async (t) => {
  const desktop = await startDesktop('vnc-objects-1');
  t.after(() => desktop.stop());
  const { s3, a, b, opsA, dbUrl } = await cluster(t, 'objects_play');
  const admin = await userWithTarget(a, {
    adminPassword: ADMIN, user: 'olga', password: 'olga-password-123', target: 'desk', desktop, vncPassword: 'vnc-objects-1',
  });
  assert.match(a.log(), /recordings go to the object store/);
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await newPage(browser);
  await openTarget(page, a.base, 'olga', 'olga-password-123', 'desk');
  const session = await until('the session on A', async () => (await admin.get('/sessions')).json?.[0]);
  await type(page, 'echo before the outage');
  await until('a first upload', async () => metric((await ops(opsA, '/metrics')).text, 'portcullis_recording_uploaded_bytes_total') > 0);
  // While it is written, B lists it as being recorded (A holds the session).
  const reviewer = b.api();
  assert.equal((await reviewer.login('admin', ADMIN)).status, 200);
  await until('B to list the recording as being recorded', async () => (await reviewer.get('/recordings')).json
    ?.find((r) => r.id === session.id && r.state === 'recording'));

  // The object store goes away: the session goes on, bytes wait in the spool, the metrics say
  // so at once (readiness only once recordings have waited minutes: every gateway shares it).
  s3.down();
  await type(page, 'echo during the outage');
  await until('A to report the object store', async () => {
    const m = (await ops(opsA, '/metrics')).text;
    return metric(m, 'portcullis_object_store_reachable') === 0
      && metric(m, 'portcullis_recording_upload_pending_bytes') > 0;
  }, 60000);
  await type(page, 'echo still during the outage');
  assert.equal((await admin.get('/sessions')).json.length, 1, 'the session goes on');
  assert.equal(await page.isHidden('#session-error'), true);
  assert.equal((await ops(opsA, '/readyz')).status, 200, 'a short outage sends no user away');

  // Back: the uploads catch up.
  s3.up();
  await until('the uploads to catch up', async () => metric((await ops(opsA, '/metrics')).text, 'portcullis_object_store_reachable') === 1, 60000);
  await type(page, 'echo after the outage');
  await sleep(1500);
  await page.context().close();
  await until('the recording to be finished in the store and gone from A\'s spool', async () => spooled(a).length === 0, 60000);
  const m = (await ops(opsA, '/metrics')).text;
  assert.ok(metric(m, 'portcullis_recording_upload_failures_total') > 0, m);
  assert.equal(metric(m, 'portcullis_recording_upload_pending_bytes'), 0, m);
  assert.ok(metric(m, 'portcullis_recording_upload_lag_seconds{quantile="0.99"}') >= 0, m);

  // B serves it whole: listed complete, its pieces, its events (typed during the outage too).
  const listed = await until('B to list it complete', async () => (await reviewer.get('/recordings')).json
    ?.find((r) => r.id === session.id && r.state === 'complete'));
  assert.equal(listed.user, 'olga');
  const detail = (await reviewer.get(`/recordings/${session.id}`)).json;
  assert.ok(detail.segments.length >= 3, `segments: ${detail.segments.length}`);
  assert.equal((await reviewer.get(`/recordings/${session.id}/init/1`)).status, 200);
  const seg = await reviewer.get(`/recordings/${session.id}/segments/${detail.segments.at(-1).seq}`);
  assert.equal(seg.status, 200);
  assert.ok(seg.body.length > 0);
  const events = JSON.stringify((await reviewer.get(`/recordings/${session.id}/events`)).json);
  for (const typed of ['before the outage', 'still during the outage', 'after the outage']) {
    assert.ok(events.includes(typed), `events lack ${typed}: ${events.slice(0, 400)}`);
  }
  // B's command line lists it too (from the store: it was never in B's folder).
  const onCli = b.cli(['recording', 'list']);
  assert.equal(onCli.status, 0, onCli.stderr);
  assert.match(onCli.stdout, new RegExp(`${session.id}\\s+\\S+\\s+\\S+.*complete`));
  // Its export from B verifies offline against the cluster's key, taken from B.
  const dir = await exported(reviewer, session.id);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, '..', `${session.id}.pub`);
  writeFileSync(keyFile, b.cli(['recording', 'public-key']).stdout);
  t.after(() => rmSync(keyFile, { force: true }));
  const [keyA, keyB] = [a, b].map((g) => g.cli(['recording', 'public-key']));
  assert.equal(keyB.status, 0, keyB.stderr);
  assert.equal(keyA.stdout, keyB.stdout, 'the gateways of a cluster share one signing key');
  const r = b.cli(['recording', 'verify', dir, '--public-key', keyFile]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /verdict:\s+INTACT/);

  // The audit trail of the cluster: each gateway keeps its own chain, every record naming it;
  // B's merged view shows A's session records next to its own, newest first.
  const nodeA = session.node;
  // The session's records from both gateways: its start and end where it ran (A), its export
  // where the reviewer asked for it (B).
  const merged = await until('the session\'s records of both gateways in B\'s merged view', async () => {
    const page = (await reviewer.get(`/audit?cluster=true&session=${session.id}`)).json;
    const entries = page?.entries ?? [];
    return entries.some((e) => e.kind === 'session_end') && entries.some((e) => e.kind === 'export') && page;
  });
  assert.ok(merged.entries.every((e) => e.node === e.detail.node), JSON.stringify(merged.entries));
  assert.ok(merged.entries.filter((e) => e.kind.startsWith('session_')).every((e) => e.node === nodeA), JSON.stringify(merged.entries));
  assert.ok(merged.entries.filter((e) => e.kind === 'export').every((e) => e.node !== nodeA), JSON.stringify(merged.entries));
  const all = (await reviewer.get('/audit?cluster=true&limit=500')).json.entries;
  const nodes = new Set(all.map((e) => e.node));
  assert.equal(nodes.size, 2, `both gateways: ${[...nodes]}`);
  for (let i = 1; i < all.length; i++) assert.ok(all[i - 1].ts_ms >= all[i].ts_ms, 'newest first');
  assert.equal((await a.api().get('/audit?cluster=true')).status, 401, 'the merged view needs a login');
  const v = b.cli(['audit', 'verify', '--cluster']);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.equal((v.stdout.match(/: intact: \d+ records/g) ?? []).length, 2, v.stdout);
  // Someone with the database's keys hides a record from the merged view's filters by changing
  // its columns: the line no longer agrees, and verify says where.
  const psql = spawnSync('psql', [dbUrl, '-v', 'ON_ERROR_STOP=1', '-c',
    `UPDATE portcullis.audit SET actor = 'nobody' WHERE node = '${nodeA}' AND seq = 2`], { encoding: 'utf8' });
  assert.equal(psql.status, 0, psql.stderr);
  const tampered = b.cli(['audit', 'verify', '--cluster']);
  assert.equal(tampered.status, 1, tampered.stdout + tampered.stderr);
  assert.match(tampered.stdout, new RegExp(`${nodeA}: NOT intact: record 2 `));
});

test('one deployment: browser on A, native RDP on B, the SOC on B lists both and watches A\'s; A killed with -9 mid-session: its recording stays authentic in the store, and A\'s next start closes it as incomplete and finishes the upload; the SOC on B kills the native session', async (t) => {
  const desktop = await startDesktop('vnc-objects-2');
  t.after(() => desktop.stop());
  const { a, b, shared, env } = await cluster(t, 'objects_crash');
  const admin = await userWithTarget(a, {
    adminPassword: ADMIN, user: 'kai', password: 'kai-password-123', target: 'desk', desktop, vncPassword: 'vnc-objects-2',
  });
  const browser = await launchBrowser();
  t.after(() => browser.close());

  // One deployment, end to end: the user's browser session on A, a native RDP session on B.
  const page = await newPage(browser);
  await openTarget(page, a.base, 'kai', 'kai-password-123', 'desk');
  const session = await until('the session on A', async () => (await admin.get('/sessions')).json?.[0]);
  const native = await startXfreerdp({ args: [`/v:127.0.0.1:${b.rdpPort}`, '/u:kai#desk', '/p:kai-password-123', '/sec:tls', '/cert:ignore', '/size:1024x768'] });
  t.after(() => native.stop());
  // The SOC on B lists both, each naming its gateway.
  const soc = b.api();
  assert.equal((await soc.login('admin', ADMIN)).status, 200);
  const reviewer = soc;
  const both = await until('B to list both sessions', async () => {
    const list = (await soc.get('/sessions')).json ?? [];
    return list.length === 2 && list;
  }, 30000);
  const rdpOnB = both.find((s) => s.entry === 'rdp');
  assert.ok(rdpOnB && rdpOnB.node !== session.node, JSON.stringify(both));
  assert.ok(both.some((s) => s.id === session.id && s.node === session.node));
  // The SOC on B watches A's session: B relays it from A, on record on both gateways.
  const watcher = await newPage(browser);
  await uiLogin(watcher, b.base, 'admin', ADMIN);
  await watcher.waitForSelector('#current-role', { timeout: 10000 });
  const seen = await watchFromPage(watcher, session.id);
  assert.equal(seen.init?.session, session.id, JSON.stringify(seen));
  assert.ok(seen.binary > 0, 'the watcher on B got no frames from A');
  await watcher.context().close();
  const watchedOnA = await until('the watch on A\'s record', async () => (await admin.get(`/audit?kind=watcher&session=${session.id}`)).json
    ?.entries?.find((e) => e.actor.startsWith('admin via ')));
  assert.ok(watchedOnA);
  assert.match(b.cli(['audit', 'show', '--kind', 'watcher']).stdout, new RegExp(`"held_by":"${session.node}"`));
  // The gateways' own route takes only a live ticket for that session: none, a made-up one.
  assert.equal(await tryUpgrade(a.base, `/api/v1/cluster/watch/${session.id}`), 401);
  assert.equal(await tryUpgrade(a.base, `/api/v1/cluster/watch/${session.id}`, { 'x-portcullis-watch-ticket': 'made-up' }), 401);

  // A second browser session on A, killed by the SOC on B: the user sees why at once.
  const second = await newPage(browser);
  await openTarget(second, a.base, 'kai', 'kai-password-123', 'desk');
  const other = await until('the second session on B\'s list', async () => (await soc.get('/sessions')).json
    ?.find((s) => s.user === 'kai' && s.entry !== 'rdp' && s.id !== session.id));
  assert.equal((await soc.post(`/sessions/${other.id}/kill`, { reason: 'one session at a time' })).status, 204);
  await second.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await second.textContent('#session-error'), /security team ended this session: one session at a time/);

  // The user keeps working on A; then A dies (kill -9) mid-session.
  for (let i = 0; i < 4; i++) {
    await type(page, `echo line ${i}`);
    await sleep(500);
  }
  await until('B to see the first segments', async () => (await reviewer.get(`/recordings/${session.id}`)).json
    ?.segments?.length >= 2, 30000);
  await a.kill();
  await page.context().close();

  // A is gone: once the cluster stops hearing from it, B shows what was uploaded, not live,
  // every line of it signed: authentic so far, and said to be cut (no end yet).
  const cut = await until('B to stop calling it live', async () => (await reviewer.get('/recordings')).json
    ?.find((r) => r.id === session.id && r.state !== 'recording'), 30000);
  assert.notEqual(cut.state, 'complete');
  let dir = await exported(reviewer, session.id);
  const keyFile = join(dir, '..', `${session.id}.pub`);
  writeFileSync(keyFile, b.cli(['recording', 'public-key']).stdout);
  t.after(() => rmSync(keyFile, { force: true }));
  let r = b.cli(['recording', 'verify', dir, '--public-key', keyFile]);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /CUT: missing the signed end line/);
  rmSync(dir, { recursive: true, force: true });

  // A starts again on its data directory: recovery closes the recording in its spool as
  // incomplete, and the upload finishes; B then serves it closed, and it verifies as such.
  const again = await startGateway({ dir: a.dir, extraConfig: shared, env });
  t.after(() => again.stop());
  await until('the upload to finish', async () => spooled(again).length === 0, 60000);
  const closed = await until('B to list it incomplete', async () => (await reviewer.get('/recordings')).json
    ?.find((x) => x.id === session.id && x.state === 'incomplete'), 30000);
  assert.ok(closed);
  dir = await exported(reviewer, session.id);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  r = b.cli(['recording', 'verify', dir, '--public-key', keyFile]);
  assert.equal(r.status, 2, r.stdout + r.stderr);
  assert.match(r.stdout, /verdict:\s+INCOMPLETE:/);
  const events = JSON.stringify((await reviewer.get(`/recordings/${session.id}/events`)).json);
  assert.ok(events.includes('echo line 1'), events.slice(0, 400));

  // The native session on B went on throughout; the SOC on B ends it.
  const r2 = await soc.post(`/sessions/${rdpOnB.id}/kill`, { reason: 'end of the drill' });
  assert.equal(r2.status, 204, r2.text);
  await until('the native session to end', async () => !(await soc.get('/sessions')).json.some((s) => s.id === rdpOnB.id));
});

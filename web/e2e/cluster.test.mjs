// Several gateways on one PostgreSQL store (issue 16): each test starts its own PostgreSQL
// (fixtures/postgres.sh) and two gateways with their own ports and data directories on it.
// What is shared: users, targets and grants; browser logins (a cookie from one gateway works on
// the other, a logout on one ends it on both); lock-outs after failed logins. A gateway whose
// secret key is not the store's refuses to start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import tls from 'node:tls';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  startGateway, startPostgres, bin, startDesktop, userWithTarget, launchBrowser, newPage, openTarget, until,
  startXfreerdp, startRsyslog, freePort, uiLogin, tryUpgrade,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';

/** Two gateways on a new database of `pg`, sharing `key`; both stopped when `t` ends. */
async function twoGateways(t, pg, name, key, extra = '') {
  const url = pg.database(name);
  const store = `[store]\nurl = "${url}"\n`;
  const env = { PORTCULLIS_SECRET_KEY: key };
  const a = await startGateway({ extraConfig: store + extra, env });
  t.after(() => a.stop());
  const b = await startGateway({ extraConfig: store + extra, env });
  t.after(() => b.stop());
  return { a, b, store, url };
}

test('two gateways on one PostgreSQL store share the directory, logins and lock-outs', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const key = randomBytes(32).toString('hex');
  const { a, b, url } = await twoGateways(t, pg, 'cluster_share', key);
  // Only the first gateway created the first administrator; the second found it.
  assert.match(a.log() + b.log(), /first administrator created/);
  assert.doesNotMatch(a.log() + b.log(), / (ERROR|WARN) /);

  // An administrator on A creates a user; the user logs in on B.
  const adminA = a.api();
  assert.equal((await adminA.login('admin', ADMIN)).status, 200);
  let r = await adminA.post('/users', { name: 'vera', password: 'vera-password-123', role: 'user' });
  assert.equal(r.status, 201, r.text);
  const veraB = b.api();
  r = await veraB.login('vera', 'vera-password-123');
  assert.equal(r.status, 200, r.text);
  assert.equal((await veraB.get('/me')).json.name, 'vera');

  // A login made on A works on B; a logout on B ends it on A too.
  const adminOnB = b.api(adminA.cookie);
  r = await adminOnB.get('/me');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.name, 'admin');
  r = await adminOnB.get('/users');
  assert.ok(r.json.some((u) => u.name === 'vera'), r.text);
  r = await adminOnB.post('/auth/logout');
  assert.ok(r.status < 300, `logout: ${r.status} ${r.text}`);
  assert.equal((await adminA.get('/me')).status, 401, 'the login ended on A as well');

  // Failed logins on A lock the account out on B, before its password is even checked.
  for (let i = 0; i < 5; i++) {
    r = await a.api().login('vera', `wrong-password-${i}`);
    assert.equal(r.status, 401, r.text);
  }
  r = await b.api().login('vera', 'vera-password-123');
  assert.equal(r.status, 429, `locked out on B too: ${r.status} ${r.text}`);
  assert.match(r.text, /too many failed logins/);

  // Deleting the user on B ends her login made on B, seen from A, and takes it out of the
  // shared store (not merely refused because the account is gone).
  const logins = () => spawnSync('psql', [url, '-tAc',
    "SELECT count(*) FROM portcullis.ephemeral WHERE space = 'login' AND owner = 'vera'"], { encoding: 'utf8' }).stdout.trim();
  assert.equal(logins(), '1');
  const admin2 = a.api();
  assert.equal((await admin2.login('admin', ADMIN)).status, 200);
  assert.equal((await b.api(admin2.cookie).del('/users/vera')).status, 204);
  assert.equal((await a.api(veraB.cookie).get('/me')).status, 401);
  assert.equal(logins(), '0');
});

test('a gateway whose secret key is not the store\'s refuses to start', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const key = randomBytes(32).toString('hex');
  const { store } = await twoGateways(t, pg, 'cluster_key', key);
  const dir = mkdtempSync(join(tmpdir(), 'pc-gw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'portcullis.toml');
  writeFileSync(config, `data_dir = "${dir}/data"\n[http]\nlisten = "127.0.0.1:0"\n[rdp]\nenabled = false\n${store}`);
  const other = randomBytes(32).toString('hex');
  const run = spawnSync(bin, ['--config', config, 'serve'], {
    env: { ...process.env, PORTCULLIS_SECRET_KEY: other, RUST_LOG: 'warn', NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 60000,
  });
  assert.notEqual(run.status, 0, `it started: ${run.stdout}${run.stderr}`);
  assert.match(run.stderr, /secret key is not the one the store's secrets are sealed under/);
  assert.doesNotMatch(run.stderr + run.stdout, new RegExp(other));
});

test('the SOC on one gateway lists and kills a session another gateway holds', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const desktop = await startDesktop('vnc-cluster-1');
  t.after(() => desktop.stop());
  const { a, b, url } = await twoGateways(t, pg, 'cluster_soc', randomBytes(32).toString('hex'));
  const admin = await userWithTarget(a, {
    adminPassword: ADMIN, user: 'uma', password: 'uma-password-123', target: 'desk', desktop, vncPassword: 'vnc-cluster-1',
  });
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await newPage(browser);
  await openTarget(page, a.base, 'uma', 'uma-password-123', 'desk');
  const onA = await until('the session on A', async () => (await admin.get('/sessions')).json?.[0]);
  assert.ok(onA.node, 'a gateway of a cluster names itself');

  // The SOC (here the administrator) reaches B: the session is listed there, naming A.
  const soc = b.api();
  assert.equal((await soc.login('admin', ADMIN)).status, 200);
  const onB = await until('B to list the session held by A', async () => (await soc.get('/sessions')).json
    ?.find((s) => s.id === onA.id));
  assert.equal(onB.node, onA.node);
  assert.equal(onB.user, 'uma');

  // Frozen and unfrozen through B: A holds the user's input meanwhile.
  assert.equal((await soc.post(`/sessions/${onA.id}/freeze`)).status, 204);
  await until('A to hold the session frozen', async () => (await admin.get('/sessions')).json[0]?.frozen === true);
  assert.equal((await soc.post(`/sessions/${onA.id}/unfreeze`)).status, 204);
  await until('A to let the session go on', async () => (await admin.get('/sessions')).json[0]?.frozen === false);

  // Killed through B: the user on A is told why at once, and the session is gone everywhere.
  const asked = Date.now();
  let r = await soc.post(`/sessions/${onA.id}/kill`, { reason: 'cross-gateway check' });
  assert.equal(r.status, 204, r.text);
  await page.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  const tookMs = Date.now() - asked;
  assert.match(await page.textContent('#session-error'), /security team ended this session: cross-gateway check/);
  console.log(`# kill across gateways: ${tookMs} ms from the request on B to the message in the browser on A`);
  await until('the session to leave both lists', async () =>
    (await admin.get('/sessions')).json.length === 0 && !(await soc.get('/sessions')).json.some((s) => s.id === onA.id));
  // The kill is on record on B, where it was asked, naming A.
  const trail = b.cli(['audit', 'show', '--kind', 'session_kill']);
  assert.match(trail.stdout, new RegExp(onA.node));
  assert.match(trail.stdout, /cross-gateway check/);
  // A session nobody holds is not found.
  r = await soc.post('/sessions/00000000-0000-0000-0000-000000000000/kill', { reason: 'x' });
  assert.equal(r.status, 404);
  assert.equal((await soc.post('/sessions/00000000-0000-0000-0000-000000000000/freeze')).status, 404);

  // A revocation on B ends the user's session on A at once.
  const again = await newPage(browser);
  await openTarget(again, a.base, 'uma', 'uma-password-123', 'desk');
  await until('the second session on B\'s list', async () => (await soc.get('/sessions')).json.some((s) => s.user === 'uma'));
  assert.equal((await soc.del('/grants/uma/desk')).status, 204);
  await again.waitForSelector('#session-error:not([hidden])', { timeout: 10000 });
  assert.match(await again.textContent('#session-error'), /access to this target was revoked/);

  // A revocation whose command never arrives (here: made in the database itself) still ends the
  // session: each gateway checks its sessions against the store every round it publishes.
  assert.equal((await soc.post('/grants', { user: 'uma', target: 'desk' })).status, 201);
  const third = await newPage(browser);
  await openTarget(third, a.base, 'uma', 'uma-password-123', 'desk');
  await until('the third session', async () => (await admin.get('/sessions')).json.length === 1);
  const psql = spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-c',
    "DELETE FROM portcullis.grants WHERE user_name = 'uma'"], { encoding: 'utf8' });
  assert.equal(psql.status, 0, psql.stderr);
  await third.waitForSelector('#session-error:not([hidden])', { timeout: 15000 });
  assert.match(await third.textContent('#session-error'), /access to this target was revoked/);
});

test('an .rdp ticket issued on one gateway lets a native client in once through another', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const desktop = await startDesktop('vnc-cluster-2');
  t.after(() => desktop.stop());
  const { a, b } = await twoGateways(t, pg, 'cluster_ticket', randomBytes(32).toString('hex'));
  const admin = await userWithTarget(a, {
    adminPassword: ADMIN, user: 'nia', password: 'nia-password-123', target: 'desk', desktop, vncPassword: 'vnc-cluster-2',
  });
  const nia = a.api();
  assert.equal((await nia.login('nia', 'nia-password-123')).status, 200);
  const r = await nia.post('/targets/desk/rdp-file');
  assert.equal(r.status, 200, r.text);
  const password = r.headers['x-portcullis-rdp-password'];
  const dir = mkdtempSync(join(tmpdir(), 'pc-rdpfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'desk.rdp');
  writeFileSync(path, r.text);

  // The file names A; the client goes to B's RDP listener instead: B redeems A's ticket.
  const native = await startXfreerdp({ args: [path, `/v:127.0.0.1:${b.rdpPort}`, `/p:${password}`, '/cert:ignore', '/size:1024x768'] });
  t.after(() => native.stop());
  const onB = await until('the native session on B, listed on A', async () => (await admin.get('/sessions')).json
    .find((s) => s.user === 'nia' && s.entry === 'rdp' && s.node && s.node !== undefined));
  const socB = b.api();
  assert.equal((await socB.login('admin', ADMIN)).status, 200);
  assert.ok((await socB.get('/sessions')).json.some((s) => s.id === onB.id && s.node === onB.node));
  native.stop();
  await until('the native session to end', async () => !(await admin.get('/sessions')).json.some((s) => s.id === onB.id));

  // Used up: the same ticket does not get in again, on either gateway.
  const refusals = () => (a.log() + b.log()).match(/native RDP login refused/g)?.length ?? 0;
  const before = refusals();
  const again = await startXfreerdp({ args: [path, `/v:127.0.0.1:${a.rdpPort}`, `/p:${password}`, '/cert:ignore', '/size:1024x768'] });
  t.after(() => again.stop());
  await until('the second use to be refused', async () => refusals() > before);
  assert.ok(!(await admin.get('/sessions')).json.some((s) => s.user === 'nia'), 'the ticket got in twice');
});

/** What the receiver holds: each message's gateway, seq and time (Unix ms), in its order. */
function syslogReceived(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
    const seq = Number(l.match(/\[portcullis@32473 seq="(\d+)"/)?.[1]);
    const node = l.match(/ node="([^"]+)"\]/)?.[1];
    const ts = Date.parse(l.split(' ')[1]);
    return { node, seq, ts };
  });
}

test('one SIEM export carries the whole cluster\'s trail merged by time, and another gateway carries it on when the exporting one dies', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const dir = mkdtempSync(join(tmpdir(), 'pc-csiem-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const rsyslog = await startRsyslog(dir, port);
  t.after(() => rsyslog.stop());
  // The same section on both gateways: one of them exports at a time.
  const siem = `[[siem]]\nsource = "cluster"\nkind = "syslog"\naddress = "127.0.0.1:${port}"\n`
    + 'settle_ms = 300\nlease_ms = 6000\nmerge_delay_ms = 8000\nbackoff_max_ms = 1000\npoll_ms = 200\n';
  const key = randomBytes(32).toString('hex');
  const { a, b } = await twoGateways(t, pg, 'cluster_siem', key, siem);

  // Acts on both gateways, interleaved in time.
  for (let i = 0; i < 4; i++) {
    assert.equal((await a.api().login('admin', ADMIN)).status, 200);
    assert.equal((await b.api().login('admin', ADMIN)).status, 200);
  }
  const admin = a.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  /** Every record of the merged view now, as gateway/seq. */
  const merged = async (client) => {
    const r = await client.get('/audit?cluster=true&limit=1000');
    assert.equal(r.status, 200, r.text);
    return r.json.entries.map((e) => `${e.node}/${e.seq}`);
  };
  const arrived = (want) => {
    const got = new Set(syslogReceived(rsyslog.file).map((m) => `${m.node}/${m.seq}`));
    return want.every((k) => got.has(k));
  };
  // What the merged view holds once it has the failed logins of both.
  const want = await until('both gateways\' records in the merged view', async () => {
    const keys = await merged(admin);
    const nodes = new Set(keys.map((k) => k.split('/')[0]));
    return nodes.size === 2 && keys.length >= 10 ? keys : null;
  }, 30000);
  await until('every record of the merged view at the receiver', () => arrived(want), 40000);
  // In the order of time (first deliveries: at least once, a record may come again), unless
  // the export itself says a gateway's copy came later than the merge waits (`late`).
  const firsts = [];
  const seen = new Set();
  for (const m of syslogReceived(rsyslog.file)) {
    const k = `${m.node}/${m.seq}`;
    if (!seen.has(k)) { seen.add(k); firsts.push(m); }
  }
  const late = (await a.api(admin.cookie).get('/audit/exports')).json.exports[0].late;
  if (late === 0) {
    assert.ok(firsts.every((m, i) => i === 0 || firsts[i - 1].ts <= m.ts), `merged by time: ${JSON.stringify(firsts)}`);
  } else {
    console.log(`# ${late} record(s) came late to the merge: order not checked`);
  }
  const changes = firsts.filter((m, i) => i > 0 && firsts[i - 1].node !== m.node).length;
  assert.ok(changes >= 4, `both gateways' records interleaved: ${[...seen]}`);

  // Which gateway exports: both say the same one.
  const exporter = async (gw) => {
    const c = gw.api(admin.cookie);
    const r = await c.get('/audit/exports');
    assert.equal(r.status, 200, r.text);
    return r.json.exports[0];
  };
  const [ea, eb] = [await exporter(a), await exporter(b)];
  assert.ok(ea.exporter && ea.exporter === eb.exporter, `${JSON.stringify(ea)} / ${JSON.stringify(eb)}`);
  const nodeOf = async (gw) => (await gw.api(admin.cookie).get('/audit?limit=1')).json.entries[0].detail.node;
  const [na, nb] = [await nodeOf(a), await nodeOf(b)];
  const [dying, survivor, survivorNode] = ea.exporter === na ? [a, b, nb] : [b, a, na];
  assert.ok([na, nb].includes(ea.exporter), `${ea.exporter} is one of ${na}, ${nb}`);

  // The exporting gateway dies; acts go on on the other, whose export carries them (once the
  // lease ran out), with nothing of before lost.
  await dying.kill();
  for (let i = 0; i < 3; i++) {
    assert.equal((await survivor.api().login('admin', ADMIN)).status, 200);
  }
  const survivorAdmin = survivor.api();
  assert.equal((await survivorAdmin.login('admin', ADMIN)).status, 200);
  const after = await until('the survivor\'s new records in the merged view', async () => {
    const keys = await merged(survivorAdmin);
    return keys.filter((k) => k.startsWith(`${survivorNode}/`)).length
      > want.filter((k) => k.startsWith(`${survivorNode}/`)).length + 3 ? keys : null;
  }, 30000);
  await until('the records after the death at the receiver', () => arrived(after), 40000);
  const status = await until('the survivor exporting', async () => {
    const s = (await survivorAdmin.get('/audit/exports')).json.exports[0];
    return s.exporter === survivorNode && s.connected ? s : null;
  }, 20000);
  assert.equal(status.gaps, 0, JSON.stringify(status));
  assert.match(survivor.log(), /this gateway exports the cluster's audit trail/);
});

/** Opens a watch of session `id` from `page` (logged in on its gateway) and keeps it open,
 * asking for frames in batches when `batch`; `state()` tells whether it got its first frame,
 * how many binary messages were batches, and whether (and how) it closed. */
async function openWatch(page, id, batch = false) {
  await page.evaluate(({ id, batch }) => {
    const ws = new WebSocket(`wss://${location.host}/api/v1/sessions/${id}/watch${batch ? '?batch=1' : ''}`);
    ws.binaryType = 'arraybuffer';
    const w = { init: false, frames: 0, batches: 0, closed: null };
    window.__watch = w;
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') {
        w.frames += 1;
        if (new Uint8Array(m.data)[0] === 4) w.batches += 1;
      } else if (JSON.parse(m.data).type === 'init') w.init = true;
    };
    ws.onclose = (e) => { w.closed = `${e.code} ${e.reason}`.trim(); };
  }, { id, batch });
  return { state: () => page.evaluate(() => ({ ...window.__watch })) };
}

test('locking a security team member ends their watches at once: on the gateway holding the session and relayed from another', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const desktop = await startDesktop('vnc-cluster-3');
  t.after(() => desktop.stop());
  const { a, b } = await twoGateways(t, pg, 'cluster_watch_lock', randomBytes(32).toString('hex'));
  const admin = await userWithTarget(a, {
    adminPassword: ADMIN, user: 'uma', password: 'uma-password-123', target: 'desk', desktop, vncPassword: 'vnc-cluster-3',
  });
  assert.equal((await admin.post('/users', { name: 'sam', password: 'sam-password-1234', role: 'soc' })).status, 201);
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const user = await newPage(browser);
  await openTarget(user, a.base, 'uma', 'uma-password-123', 'desk');
  const session = await until('the session on A', async () => (await admin.get('/sessions')).json?.[0]);
  // B learns of it from A's next publication (every 2 s): until then a watch asked on B is a 404.
  const onB = b.api();
  assert.equal((await onB.login('admin', ADMIN)).status, 200);
  await until('B to list the session', async () => (await onB.get('/sessions')).json?.some((s) => s.id === session.id));

  // Sam watches it from B (relayed to A) asking for batches (the relay asks A for them) and
  // not asking (a page of an older gateway: messages one by one), and from A itself, not asking.
  const watches = [];
  for (const [gw, batch] of [[b, true], [b, false], [a, false]]) {
    const page = await newPage(browser);
    await uiLogin(page, gw.base, 'sam', 'sam-password-1234');
    await until(`sam's login on ${gw.base}`, async () => page.evaluate(async () =>
      (await fetch('/api/v1/me')).status === 200));
    const w = await openWatch(page, session.id, batch);
    await until(`the watch from ${gw.base} to show the session`, async () => {
      const s = await w.state();
      if (s.closed !== null) throw new Error(`the watch from ${gw.base} closed (${s.closed}) before showing the session`);
      return s.init && s.frames > 0;
    }, 30000);
    const s = await w.state();
    if (batch) assert.ok(s.batches > 0, `the watch that asked got no batch: ${JSON.stringify(s)}`);
    else assert.equal(s.batches, 0, `batches to a watch from ${gw.base} that did not ask for them`);
    watches.push(w);
  }

  // Locked on A: both watches end within seconds; the watched session goes on.
  const asked = Date.now();
  assert.equal((await admin.post('/users/sam/lock', { reason: 'left the team' })).status, 204);
  for (const w of watches) {
    await until('the watch to end', async () => (await w.state()).closed !== null, 15000);
  }
  console.log(`# watches ended ${Date.now() - asked} ms after the lock`);
  const still = (await admin.get('/sessions')).json;
  assert.ok(still.some((s) => s.id === session.id), 'the watched session goes on');
  assert.match(a.log() + b.log(), /watch(es)? ended: the watcher's account was revoked/);
});

test('a watch relayed to an address that answers with another certificate than the holder published sends no ticket there', async (t) => {
  const pg = await startPostgres();
  t.after(() => pg.stop());
  const desktop = await startDesktop('vnc-cluster-4');
  t.after(() => desktop.stop());
  // The impostor: TLS with a certificate of its own, counting what arrives inside.
  const dir = mkdtempSync(join(tmpdir(), 'pc-relay-impostor-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const seen = { handshakes: 0, bytes: 0 };
  const impostor = tls.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (s) => {
    seen.handshakes += 1;
    s.on('data', (d) => { seen.bytes += d.length; });
    s.on('error', () => {});
  });
  await new Promise((r) => impostor.listen(0, '127.0.0.1', r));
  t.after(() => impostor.close());
  const url = pg.database('cluster_relay_pin');
  const store = `[store]\nurl = "${url}"\n`;
  const key = randomBytes(32).toString('hex');
  // A publishes the impostor's address (a hijacked name, say) with its own certificate's hash.
  const a = await startGateway({
    extraConfig: store,
    env: { PORTCULLIS_SECRET_KEY: key, PORTCULLIS_ADVERTISE_URL: `https://127.0.0.1:${impostor.address().port}` },
  });
  t.after(() => a.stop());
  const b = await startGateway({ extraConfig: store, env: { PORTCULLIS_SECRET_KEY: key } });
  t.after(() => b.stop());
  const admin = await userWithTarget(a, {
    adminPassword: ADMIN, user: 'uma', password: 'uma-password-123', target: 'desk', desktop, vncPassword: 'vnc-cluster-4',
  });
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await newPage(browser);
  await openTarget(page, a.base, 'uma', 'uma-password-123', 'desk');
  const session = await until('the session on A', async () => (await admin.get('/sessions')).json?.[0]);
  const soc = b.api();
  assert.equal((await soc.login('admin', ADMIN)).status, 200);
  await until('B to list the session', async () => (await soc.get('/sessions')).json?.some((s) => s.id === session.id));
  const status = await tryUpgrade(b.base, `/api/v1/sessions/${session.id}/watch`, { cookie: soc.cookie, 'x-portcullis-csrf': '1' });
  assert.equal(status, 502, 'the watch is refused, not relayed');
  assert.ok(seen.handshakes >= 1, 'B did reach the published address');
  assert.equal(seen.bytes, 0, 'nothing (no ticket) went inside the impostor\'s TLS');
  assert.match(b.log(), /is not the one it published/);
});

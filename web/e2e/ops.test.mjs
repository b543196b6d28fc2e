// The operations listener (issue 16): /healthz, /readyz and /metrics on a plain-HTTP address of
// their own (never the public listener; /metrics behind a bearer token), and draining: SIGUSR1
// makes the gateway refuse new sessions and answer not ready while the running session goes
// on, and exit by itself (status 0, on record) once that session ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startGateway, startDesktop, freePort, request, launchBrowser, newPage, openTarget, userWithTarget, until,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const VNC_PASSWORD = 'vnc-ops-1';

/** GET over plain HTTP: { status, text }. */
async function get(port, path, token) {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: r.status, text: await r.text() };
}

/** The value of a metric line (`name{labels} value`), or undefined. */
function metric(text, line) {
  const found = text.split('\n').find((l) => l.startsWith(line + ' '));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

test('health, readiness and metrics on the ops listener; SIGUSR1 drains, then the gateway exits', async (t) => {
  const desktop = await startDesktop(VNC_PASSWORD);
  t.after(() => desktop.stop());
  const secrets = mkdtempSync(join(tmpdir(), 'pc-ops-'));
  t.after(() => rmSync(secrets, { recursive: true, force: true }));
  const token = 'metrics-token-0123456789abcdef';
  writeFileSync(join(secrets, 'token'), `${token}\n`);
  const opsPort = await freePort();
  const gw = await startGateway({
    extraConfig: `[ops]\nlisten = "127.0.0.1:${opsPort}"\nmetrics_token_file = "${join(secrets, 'token')}"\n`,
  });
  t.after(() => gw.stop());

  assert.deepEqual(await get(opsPort, '/healthz'), { status: 200, text: 'ok\n' });
  assert.deepEqual(await get(opsPort, '/readyz'), { status: 200, text: 'ready\n' });
  // Metrics need the token; nothing else is served there; the public listener has none of it.
  assert.equal((await get(opsPort, '/metrics')).status, 401);
  assert.equal((await get(opsPort, '/metrics', 'wrong-token-0123456789')).status, 401);
  assert.equal((await get(opsPort, '/api/v1/users', token)).status, 404);
  const publicMetrics = await request(gw.base, 'GET', '/metrics');
  assert.ok(!publicMetrics.text.includes('portcullis_ready'), 'the public listener serves no metrics');
  let m = await get(opsPort, '/metrics', token);
  assert.equal(m.status, 200);
  assert.equal(metric(m.text, 'portcullis_ready'), 1);
  assert.equal(metric(m.text, 'portcullis_draining'), 0);
  const failuresBefore = metric(m.text, 'portcullis_login_failures_total');

  // A failed login counts.
  assert.equal((await gw.api().login('admin', 'not-the-password')).status, 401);
  m = await get(opsPort, '/metrics', token);
  assert.equal(metric(m.text, 'portcullis_login_failures_total'), failuresBefore + 1);

  // A live browser session shows by entry and protocol.
  const admin = await userWithTarget(gw, {
    adminPassword: ADMIN, user: 'olga', password: 'olga-password-123', target: 'desk', desktop, vncPassword: VNC_PASSWORD,
  });
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await newPage(browser);
  await openTarget(page, gw.base, 'olga', 'olga-password-123', 'desk');
  const live = await until('the session to be live', async () => (await admin.get('/sessions')).json?.[0]);
  m = await get(opsPort, '/metrics', token);
  assert.equal(metric(m.text, 'portcullis_sessions{entry="browser",protocol="vnc"}'), 1, m.text);

  // Drain: not ready, no new session, the running one goes on.
  const exited = gw.signal('SIGUSR1');
  await until('/readyz to answer draining', async () => {
    const r = await get(opsPort, '/readyz');
    return r.status === 503 && /draining/.test(r.text);
  });
  m = await get(opsPort, '/metrics', token);
  assert.equal(metric(m.text, 'portcullis_draining'), 1);
  const second = await newPage(browser);
  await openTarget(second, gw.base, 'olga', 'olga-password-123', 'desk');
  await second.waitForSelector('#session-error:not([hidden])', { timeout: 20000 });
  assert.match(await second.textContent('#session-error'), /draining/);
  const sessions = (await admin.get('/sessions')).json;
  assert.deepEqual(sessions.map((s) => s.id), [live.id], 'the running session goes on, alone');

  // The last session ends: the gateway stops by itself, cleanly, and says why in the trail.
  assert.equal((await admin.post(`/sessions/${live.id}/kill`, { reason: 'maintenance window' })).status, 204);
  const { code } = await exited;
  assert.equal(code, 0, gw.log());
  assert.match(gw.log(), /drained: no session left/);
  const trail = gw.cli(['audit', 'show', '--limit', '20']);
  assert.match(trail.stdout, /gateway_drain/);
  assert.match(trail.stdout, /gateway_stop.*SIGUSR1 \(drained\)/);
});

test('PORTCULLIS_LOG_FORMAT=json gives one JSON object per log line', async (t) => {
  const gw = await startGateway({ env: { PORTCULLIS_LOG_FORMAT: 'json' } });
  t.after(() => gw.stop());
  const started = await until('the start to be logged', async () => gw.log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .find((e) => e.message === 'gateway started'));
  assert.equal(started.level, 'INFO');
  assert.ok(started.timestamp && started.listen, JSON.stringify(started));
  // No log line in the format for people (what is printed for people on standard output, the
  // banner and the first admin's password, is not a log line).
  for (const l of gw.log().split('\n')) {
    assert.doesNotMatch(l, /^\S+Z\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s/, l);
    if (l.startsWith('{')) {
      assert.doesNotThrow(() => JSON.parse(l), l);
      // No key twice (a parser would keep one of them only).
      const keys = [...l.matchAll(/"([a-z_]+)":/g)].map((m) => m[1]);
      assert.equal(new Set(keys).size, keys.length, l);
    }
  }
});

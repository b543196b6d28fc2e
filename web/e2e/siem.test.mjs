// The audit trail exported by the real gateway to a real syslog receiver (Debian's rsyslogd,
// RFC 5424 over TCP) and to a JSON-lines file: every record arrives at least once, also when the
// receiver is killed and restarted while the gateway keeps acknowledging actions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, freePort, sleep, startRsyslog } from './harness.mjs';

const ADMIN = 'admin-password-e2e';

let gw, admin, port, dir, rsyslog;

/** Starts rsyslogd on `port` (see `startRsyslog` in the harness). */
const startReceiver = () => startRsyslog(dir, port);
const stopReceiver = (r) => r?.stop();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pc-siem-'));
  port = await freePort();
  rsyslog = await startReceiver();
  gw = await startGateway({
    adminPassword: ADMIN,
    extraConfig: `[[siem]]\nkind = "syslog"\naddress = "127.0.0.1:${port}"\nsettle_ms = 500\nbackoff_max_ms = 1000\n\n[[siem]]\nkind = "jsonl"\nfile = "${join(dir, 'audit.jsonl')}"\n`,
  });
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  const r = await admin.post('/users', { name: 'bob', password: 'bob-password-1234', role: 'user' });
  assert.equal(r.status, 201, r.text);
});

after(async () => {
  await stopReceiver(rsyslog);
  await gw?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The seqs found in the receiver's file (syslog: in the structured data), and the line count. */
function received(file, pattern) {
  if (!existsSync(file)) return { seqs: new Set(), lines: 0 };
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  return { seqs: new Set(lines.map((l) => Number(l.match(pattern)?.[1])).filter(Number.isFinite)), lines: lines.length };
}
const syslogSeqs = () => received(join(dir, 'received.log'), /\[portcullis@32473 seq="(\d+)"/);
const fileSeqs = () => received(join(dir, 'audit.jsonl'), /^\{"seq":(\d+)/);

async function lastSeq() {
  const r = await admin.get('/audit?limit=1');
  assert.equal(r.status, 200, r.text);
  return r.json.entries[0].seq;
}

async function waitAll(get, upTo, what, ms = 20000) {
  let got;
  for (let i = 0; i < ms / 200; i++) {
    got = get();
    if ([...Array(upTo).keys()].every((k) => got.seqs.has(k + 1))) return got;
    await sleep(200);
  }
  const missing = [...Array(upTo).keys()].map((k) => k + 1).filter((s) => !got.seqs.has(s));
  assert.fail(`${what}: ${missing.length} of ${upTo} records missing (first ${missing.slice(0, 10)})`);
}

test('every audit record reaches rsyslog and the JSON-lines file, also across a receiver outage', async () => {
  let n = await lastSeq();
  await waitAll(syslogSeqs, n, 'syslog before the outage');
  await waitAll(fileSeqs, n, 'file before the outage');
  // The receiver dies; the gateway keeps acknowledging actions (each one on record).
  await stopReceiver(rsyslog);
  for (let i = 0; i < 40; i++) {
    const r = await admin.post('/users/bob/lock', { reason: `while the SIEM is down ${i}` });
    assert.equal(r.status, 204, r.text);
  }
  await sleep(1500);
  rsyslog = await startReceiver();
  for (let i = 0; i < 10; i++) {
    assert.equal((await admin.post('/users/bob/unlock', {})).status, 204);
  }
  n = await lastSeq();
  const syslog = await waitAll(syslogSeqs, n, 'syslog after the outage', 30000);
  const file = await waitAll(fileSeqs, n, 'file after the outage');
  // The file sink is exact (fsync'd cursor): each record once; syslog may repeat some.
  assert.equal(file.lines, n);
  console.log(`# ${n} records delivered; syslog received ${syslog.lines} lines (${syslog.lines - n} repeats after the outage)`);
  // The security team sees each export caught up.
  let exports;
  for (let i = 0; i < 50; i++) {
    exports = (await admin.get('/audit/exports')).json.exports;
    if (exports.length === 2 && exports.every((e) => e.delivered_seq >= n)) break;
    await sleep(200);
  }
  assert.equal(exports.length, 2, JSON.stringify(exports));
  for (const e of exports) assert.ok(e.delivered_seq >= n && e.gaps === 0, JSON.stringify(e));
  assert.ok(exports.some((e) => e.connected && /127\.0\.0\.1/.test(e.sink)), JSON.stringify(exports));
  // RFC 5424 with the record as the message, and warning severity for a lock.
  const lines = readFileSync(join(dir, 'received.log'), 'utf8').split('\n');
  const lock = lines.find((l) => l.includes('"kind":"user_lock"'));
  assert.match(lock, /^<\d+>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ portcullis - user_lock \[portcullis@32473 seq="\d+" hash="[0-9a-f]{64}"/);
  const pri = Number(lock.match(/^<(\d+)>/)[1]);
  assert.equal(pri % 8, 4, 'a lock is a warning');
});

// RDP targets are authenticated: the gateway pins a target's certificate on first use (and that
// it did NLA), checks both on every later connection before any credential is sent, refuses an
// impostor or a downgrade naming both fingerprints, audits it, and lets an admin accept the
// change. Real peers: freerdp-shadow (NLA, then TLS only), a second freerdp-shadow with a fresh
// certificate, and an impostor of our own that logs every byte it receives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { spawn, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startGateway, startShadowDesktop, launchBrowser, openTarget, uiLogin, freePort, waitForPort, sleep,
} from './harness.mjs';

const ADMIN = 'admin-password-e2e';
const ALICE = 'alice-password-123';

let gw, browser, admin;
const cleanups = [];

before(async () => {
  gw = await startGateway({ adminPassword: ADMIN });
  browser = await launchBrowser();
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
  const r = await admin.post('/users', { name: 'alice', password: ALICE, role: 'user' });
  assert.equal(r.status, 201, r.text);
});

after(async () => {
  for (const c of cleanups.reverse()) {
    try { await c(); } catch { /* already gone */ }
  }
  await browser?.close();
  await gw?.stop();
});

/** Lowercase hex SHA-256 of a PEM certificate's DER, as the gateway prints it. */
function sha256Of(pem) {
  return new X509Certificate(pem).fingerprint256.replaceAll(':', '').toLowerCase();
}

/** The certificate freerdp-shadow wrote under its HOME. */
function shadowCertificate(dir) {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith('.crt')) found.push(p);
    }
  };
  walk(join(dir, '.config'));
  assert.equal(found.length, 1, `certificates under ${dir}: ${found}`);
  return readFileSync(found[0], 'utf8');
}

async function addTarget(name, address, user, password) {
  let r = await admin.post('/targets', { name, kind: 'rdp', address, account: user, password });
  assert.equal(r.status, 201, r.text);
  r = await admin.post('/grants', { user: 'alice', target: name });
  assert.equal(r.status, 201, r.text);
}

async function newPage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  return ctx.newPage();
}

/** Opens `target` as alice; resolves to { ok: true } once a frame is painted, or { error }. */
async function openAsAlice(target) {
  const page = await newPage();
  try {
    await openTarget(page, gw.base, 'alice', ALICE, target);
    const outcome = await Promise.race([
      page.waitForFunction(() => window.__portcullis?.framesPainted >= 1, null, { timeout: 30000 }).then(() => ({ ok: true })),
      page.waitForSelector('#session-error:not([hidden])', { timeout: 30000 })
        .then(async () => ({ error: await page.textContent('#session-error') })),
    ]);
    return outcome;
  } finally {
    await page.context().close();
  }
}

async function identity(name) {
  const r = await admin.get(`/targets/${name}`);
  assert.equal(r.status, 200, r.text);
  return r.json.identity;
}

async function auditOf(name, kind) {
  const r = await admin.get(`/audit?target=${name}&kind=${kind}`);
  assert.equal(r.status, 200, r.text);
  return r.json.entries;
}

/** Waits until no live session is left (a refused or closed one is gone). */
async function noSessions() {
  for (let i = 0; i < 50; i++) {
    if ((await admin.get('/sessions')).json.length === 0) return;
    await sleep(100);
  }
  assert.fail('a session stayed open');
}

/**
 * An RDP impostor on `port`: it answers the X.224 Connection Request choosing NLA (CredSSP),
 * completes TLS with a fresh self-signed certificate and then logs every byte the client sends
 * (a CredSSP/NTLM message or a Client Info PDU would show up here). It never answers.
 */
async function startImpostor(port) {
  const dir = mkdtempSync(join(tmpdir(), 'pc-impostor-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=impostor',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const key = readFileSync(join(dir, 'key.pem'));
  const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  rmSync(dir, { recursive: true, force: true });
  // TPKT + X.224 Connection Confirm + RDP_NEG_RSP selecting PROTOCOL_HYBRID (NLA).
  const confirmNla = Buffer.from([0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00,
    0x02, 0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00]);
  const log = { connections: 0, handshakes: 0, closed: 0, bytesAfterTls: 0 };
  const sockets = new Set();
  const server = net.createServer((sock) => {
    log.connections++;
    sockets.add(sock);
    sock.on('error', () => {});
    sock.once('data', () => {
      sock.write(confirmNla);
      const secure = new tls.TLSSocket(sock, { isServer: true, key, cert });
      secure.on('secure', () => { log.handshakes++; });
      secure.on('data', (d) => { log.bytesAfterTls += d.length; });
      secure.on('error', () => {});
      secure.on('close', () => { log.closed++; sockets.delete(sock); });
    });
  });
  await new Promise((res, rej) => { server.once('error', rej); server.listen(port, '127.0.0.1', res); });
  return {
    sha256: sha256Of(cert),
    log,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

test('a target presenting another certificate is refused before any credential, audited, and accepted by an admin', async () => {
  const port = await freePort();
  const first = await startShadowDesktop({ port });
  let running = first;
  cleanups.push(() => running?.stop());
  const firstSha = sha256Of(shadowCertificate(first.dir));
  await addTarget('pinned', first.address, first.user, first.password);
  // Not known yet: pinned on first use.
  assert.equal((await identity('pinned')).tls_sha256, null);

  let outcome = await openAsAlice('pinned');
  assert.deepEqual(outcome, { ok: true });
  await noSessions();
  let id = await identity('pinned');
  assert.equal(id.tls_sha256, firstSha, 'the certificate is pinned on first use');
  assert.equal(id.nla_seen, true, 'and that the target did NLA');
  const learned = await auditOf('pinned', 'target_identity');
  assert.ok(learned.some((e) => e.detail.decision === 'allow' && e.detail.pinned === true && e.detail.sha256 === firstSha),
    JSON.stringify(learned));

  // An impostor on the target's address.
  first.stop();
  running = null;
  const impostor = await startImpostor(port);
  cleanups.push(() => impostor.stop());
  outcome = await openAsAlice('pinned');
  assert.ok(outcome.error, 'the impostor is refused');
  assert.ok(outcome.error.includes(firstSha) && outcome.error.includes(impostor.sha256), outcome.error);
  // The impostor's own log: TLS was completed (so it could read anything we sent), and not one
  // byte came after it: no CredSSP/NTLM message, no Client Info PDU.
  for (let i = 0; i < 50 && impostor.log.closed < impostor.log.handshakes; i++) await sleep(100);
  assert.ok(impostor.log.handshakes >= 1, JSON.stringify(impostor.log));
  assert.equal(impostor.log.closed, impostor.log.handshakes, 'the gateway hung up');
  assert.equal(impostor.log.bytesAfterTls, 0, `the impostor received ${impostor.log.bytesAfterTls} bytes after TLS`);
  const refused = (await auditOf('pinned', 'target_identity')).find((e) => e.detail.decision === 'deny');
  assert.ok(refused, 'the refusal is audited');
  assert.equal(refused.actor, 'alice');
  assert.equal(refused.detail.reason, 'certificate_changed');
  assert.equal(refused.detail.expected_sha256, firstSha);
  assert.equal(refused.detail.presented_sha256, impostor.sha256);
  id = await identity('pinned');
  assert.equal(id.tls_sha256, firstSha, 'the pin is unchanged');
  assert.equal(id.refused_sha256, impostor.sha256, 'the admin sees what was refused');
  await noSessions();
  await impostor.stop();

  // The machine was really re-installed: a new RDP server with a new certificate.
  const second = await startShadowDesktop({ port });
  running = second;
  const secondSha = sha256Of(shadowCertificate(second.dir));
  assert.notEqual(secondSha, firstSha);
  outcome = await openAsAlice('pinned');
  assert.ok(outcome.error?.includes(firstSha) && outcome.error.includes(secondSha), JSON.stringify(outcome));
  assert.equal((await identity('pinned')).refused_sha256, secondSha);

  // Only an admin may accept it.
  const alice = gw.api();
  assert.equal((await alice.login('alice', ALICE)).status, 200);
  assert.equal((await alice.post('/targets/pinned/identity/accept', { sha256: secondSha })).status, 403);
  assert.equal((await alice.get('/targets/pinned')).status, 403);

  // The admin accepts it in the UI.
  const page = await newPage();
  try {
    await uiLogin(page, gw.base, 'admin', ADMIN);
    await page.waitForSelector('#nav-admin-targets');
    await page.click('#nav-admin-targets');
    await page.waitForSelector(`[data-refused-sha256="${secondSha}"]`);
    await page.click('[data-accept-certificate="pinned"]');
    await page.waitForSelector(`[data-identity="pinned"] [data-tls-sha256="${secondSha}"]`);
  } finally {
    await page.context().close();
  }
  id = await identity('pinned');
  assert.equal(id.tls_sha256, secondSha);
  assert.equal(id.refused_sha256, null);
  const accepted = (await auditOf('pinned', 'admin_change')).find((e) => e.detail.action === 'target_identity_accept');
  assert.ok(accepted, 'the acceptance is audited');
  assert.equal(accepted.actor, 'admin');
  assert.equal(accepted.detail.before.tls_sha256, firstSha);
  assert.equal(accepted.detail.after.tls_sha256, secondSha);

  outcome = await openAsAlice('pinned');
  assert.deepEqual(outcome, { ok: true }, 'the accepted target works');
  await noSessions();
});

/** Replaces the shadow server of `desk` (same HOME, so the same certificate) by one without NLA. */
async function restartWithoutNla(desk) {
  const pid = Number(readFileSync(join(desk.dir, 'shadow.pid'), 'utf8'));
  process.kill(pid);
  for (let i = 0; i < 50; i++) {
    try { process.kill(pid, 0); } catch { break; }
    await sleep(100);
  }
  const proc = spawn('freerdp-shadow-cli', ['/bind-address:127.0.0.1', `/port:${desk.port}`, '/sec:tls'], {
    env: { ...process.env, DISPLAY: desk.display, HOME: desk.dir },
    stdio: 'ignore',
    detached: false,
  });
  // The fixture's stop() ends it with the rest.
  writeFileSync(join(desk.dir, 'shadow.pid'), String(proc.pid));
  await waitForPort(desk.port, 30000);
}

test('a target that did NLA and then answers TLS only is refused as a downgrade until an admin allows it', async () => {
  const desk = await startShadowDesktop();
  cleanups.push(() => desk.stop());
  const sha = sha256Of(shadowCertificate(desk.dir));
  await addTarget('nla-once', desk.address, desk.user, desk.password);
  let outcome = await openAsAlice('nla-once');
  assert.deepEqual(outcome, { ok: true });
  await noSessions();
  let id = await identity('nla-once');
  assert.equal(id.nla_seen, true);
  assert.equal(id.tls_sha256, sha);

  // Same machine, same certificate, but NLA switched off.
  await restartWithoutNla(desk);
  outcome = await openAsAlice('nla-once');
  assert.match(outcome.error ?? '', /did NLA before/, JSON.stringify(outcome));
  assert.match(outcome.error, /downgrade/);
  id = await identity('nla-once');
  assert.equal(id.refused_downgrade, true);
  assert.equal(id.nla_seen, true);
  const refused = (await auditOf('nla-once', 'target_identity')).find((e) => e.detail.decision === 'deny');
  assert.equal(refused?.detail.reason, 'nla_downgrade', JSON.stringify(refused));
  await noSessions();

  // require_nla refuses the override; the admin turns it off and allows the target without NLA.
  let r = await admin.put('/targets/nla-once/identity', { require_nla: true });
  assert.equal(r.status, 200, r.text);
  r = await admin.post('/targets/nla-once/identity/accept', { allow_without_nla: true });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error ?? r.text, /requires NLA/);
  r = await admin.put('/targets/nla-once/identity', { require_nla: false });
  assert.equal(r.status, 200, r.text);
  r = await admin.post('/targets/nla-once/identity/accept', { allow_without_nla: true });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.identity.nla_seen, false);
  const allowed = (await auditOf('nla-once', 'admin_change')).find((e) => e.detail.action === 'target_identity_accept');
  assert.equal(allowed?.detail.after.nla_seen, false, JSON.stringify(allowed));

  outcome = await openAsAlice('nla-once');
  assert.deepEqual(outcome, { ok: true }, 'allowed without NLA, the target works');
  await noSessions();

  // A certificate pinned ahead of time that the target does not present: refused.
  r = await admin.put('/targets/nla-once/identity', { tls_sha256: 'ab'.repeat(32) });
  assert.equal(r.status, 200, r.text);
  outcome = await openAsAlice('nla-once');
  assert.ok(outcome.error?.includes('ab'.repeat(32)) && outcome.error.includes(sha), JSON.stringify(outcome));
  await noSessions();
});

test('identity routes are for admins, and VNC targets have none', async () => {
  let r = await admin.post('/targets', { name: 'vnc-box', kind: 'vnc', address: '127.0.0.1:5999', password: 'x' });
  assert.equal(r.status, 201, r.text);
  r = await admin.get('/targets/vnc-box');
  assert.equal(r.status, 200);
  assert.equal(r.json.identity, undefined);
  r = await admin.put('/targets/vnc-box/identity', { require_nla: true });
  assert.equal(r.status, 400);
  assert.match(r.text, /RFB has no server authentication/);
  r = await admin.put('/targets/nope/identity', { require_nla: true });
  assert.equal(r.status, 404);
  r = await admin.post('/targets', { name: 'rdp-box', kind: 'rdp', address: '127.0.0.1:3999', account: 'u', password: 'x' });
  assert.equal(r.status, 201, r.text);
  r = await admin.put('/targets/rdp-box/identity', { tls_sha256: 'not-hex' });
  assert.equal(r.status, 400);
  r = await admin.put('/targets/rdp-box/identity', { tls_sha256: 'AB:'.repeat(31) + 'AB' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.identity.tls_sha256, 'ab'.repeat(32));
  r = await admin.put('/targets/rdp-box/identity', { tls_sha256: null });
  assert.equal(r.json.identity.tls_sha256, null);
  const anonymous = gw.api();
  assert.equal((await anonymous.get('/targets/rdp-box')).status, 401);
  assert.equal((await anonymous.put('/targets/rdp-box/identity', { require_nla: true })).status, 401);
});

test('the command line shows, pins and accepts an RDP target identity, audited', async () => {
  const own = await startGateway({ adminPassword: ADMIN });
  try {
    const api = own.api();
    assert.equal((await api.login('admin', ADMIN)).status, 200);
    let r = await api.post('/targets', { name: 'win', kind: 'rdp', address: '127.0.0.1:3999', account: 'u', password: 'x' });
    assert.equal(r.status, 201, r.text);
    r = await api.post('/targets', { name: 'vnc', kind: 'vnc', address: '127.0.0.1:5999', password: 'x' });
    assert.equal(r.status, 201, r.text);
    await own.stop({ keep: true });

    const pin = 'CD:'.repeat(31) + 'CD';
    let out = own.cli(['target', 'identity', 'win', '--tls-sha256', pin, '--require-nla', 'true']);
    assert.equal(out.status, 0, out.stderr);
    out = own.cli(['target', 'show', 'win']);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, new RegExp(`tls_sha256\\t${'cd'.repeat(32)}`));
    assert.match(out.stdout, /require_nla\ttrue/);
    out = own.cli(['target', 'accept', 'win', '--allow-without-nla']);
    assert.notEqual(out.status, 0, 'require_nla blocks the override');
    assert.match(out.stderr, /requires NLA/);
    out = own.cli(['target', 'accept', 'win', '--sha256', 'ef'.repeat(32)]);
    assert.equal(out.status, 0, out.stderr);
    out = own.cli(['target', 'show', 'win']);
    assert.match(out.stdout, new RegExp(`tls_sha256\\t${'ef'.repeat(32)}`));
    out = own.cli(['target', 'identity', 'vnc', '--require-nla', 'true']);
    assert.notEqual(out.status, 0);
    assert.match(out.stderr, /RFB has no server authentication/);
    out = own.cli(['audit', 'show', '--kind', 'admin_change']);
    assert.equal(out.status, 0, out.stderr);
    const actions = out.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.detail.via === 'cli').map((e) => e.detail.action);
    assert.deepEqual(actions.sort(), ['target_identity_accept', 'target_identity_set']);
  } finally {
    await own.stop();
  }
});

/** A CA and a certificate it signs for 127.0.0.1 (PEM files in `dir`). */
function makeCa(dir) {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=portcullis test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', 'ca.key', '-out', 'ca.pem');
  run('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'srv.key', '-out', 'srv.csr');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  run('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-extfile', 'ext.cnf', '-out', 'srv.crt');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'srv.crt'), key: join(dir, 'srv.key') };
}

/** Restarts `desk`'s shadow server (NLA, same SAM) with the certificate and key given. */
async function restartWithCertificate(desk, certFile, keyFile) {
  const pid = Number(readFileSync(join(desk.dir, 'shadow.pid'), 'utf8'));
  process.kill(pid);
  for (let i = 0; i < 50; i++) {
    try { process.kill(pid, 0); } catch { break; }
    await sleep(100);
  }
  let crt;
  const walk = (d) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith('.crt')) crt = p;
    }
  };
  walk(join(desk.dir, '.config'));
  writeFileSync(crt, readFileSync(certFile));
  writeFileSync(crt.replace(/\.crt$/, '.key'), readFileSync(keyFile));
  const proc = spawn('freerdp-shadow-cli', ['/bind-address:127.0.0.1', `/port:${desk.port}`, '/sec:nla', `/sam-file:${join(desk.dir, 'sam')}`], {
    env: { ...process.env, DISPLAY: desk.display, HOME: desk.dir },
    stdio: 'ignore',
  });
  writeFileSync(join(desk.dir, 'shadow.pid'), String(proc.pid));
  await waitForPort(desk.port, 30000);
}

test('a target verified against a CA bundle and its host name instead of a pin', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pc-ca-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const files = makeCa(dir);
  const desk = await startShadowDesktop();
  let running = desk;
  cleanups.push(() => running?.stop());
  await restartWithCertificate(desk, files.cert, files.key);
  assert.equal(sha256Of(shadowCertificate(desk.dir)), sha256Of(readFileSync(files.cert, 'utf8')));
  await addTarget('ca-box', desk.address, desk.user, desk.password);
  let r = await admin.put('/targets/ca-box/identity', { tls_ca_file: files.ca });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.identity.tls_ca_file, files.ca);

  let outcome = await openAsAlice('ca-box');
  assert.deepEqual(outcome, { ok: true }, 'the CA vouches for the target');
  await noSessions();
  const id = await identity('ca-box');
  assert.equal(id.tls_sha256, null, 'nothing is pinned under a CA');
  assert.equal(id.nla_seen, true);

  // An impostor with a self-signed certificate on the same address.
  desk.stop();
  running = null;
  const impostor = await startImpostor(desk.port);
  cleanups.push(() => impostor.stop());
  outcome = await openAsAlice('ca-box');
  assert.match(outcome.error ?? '', /does not verify against the CA bundle/, JSON.stringify(outcome));
  assert.ok(outcome.error.includes(impostor.sha256), outcome.error);
  for (let i = 0; i < 50 && impostor.log.closed < impostor.log.handshakes; i++) await sleep(100);
  assert.ok(impostor.log.handshakes >= 1, JSON.stringify(impostor.log));
  assert.equal(impostor.log.bytesAfterTls, 0, 'no credential reached the impostor');
  const refused = (await auditOf('ca-box', 'target_identity')).find((e) => e.detail.decision === 'deny');
  assert.equal(refused?.detail.reason, 'ca_rejected', JSON.stringify(refused));
  await noSessions();
  await impostor.stop();
});

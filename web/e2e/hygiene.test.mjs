// TLS and HTTP hygiene of the real gateway: only TLS 1.2+ with AEAD suites, security headers on
// every answer, request size limits, and slow or silent clients cut off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import net from 'node:net';
import { startGateway, request, sleep } from './harness.mjs';

const ADMIN = 'admin-password-e2e';
let gw, admin;

before(async () => {
  gw = await startGateway({ adminPassword: ADMIN });
  admin = gw.api();
  assert.equal((await admin.login('admin', ADMIN)).status, 200);
});

after(async () => {
  await gw?.stop();
});

/** Tries a TLS handshake with `options`; resolves to the negotiated protocol or the error. */
function handshake(options) {
  return new Promise((resolve) => {
    let s;
    try {
      s = tls.connect({ host: '127.0.0.1', port: gw.port, rejectUnauthorized: false, ...options });
    } catch (e) {
      // This client's OpenSSL cannot even offer it.
      resolve({ unsupported: e.message });
      return;
    }
    s.once('secureConnect', () => {
      const r = { protocol: s.getProtocol(), cipher: s.getCipher().name, alpn: s.alpnProtocol };
      s.destroy();
      resolve(r);
    });
    s.once('error', (e) => resolve({ error: e.code ?? e.message }));
  });
}

test('TLS 1.0 and 1.1 are refused; 1.2 and 1.3 use AEAD suites; weak suites are refused', async () => {
  for (const v of ['TLSv1', 'TLSv1.1']) {
    const r = await handshake({ minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' });
    assert.ok(r.error, `${v} was accepted: ${JSON.stringify(r)}`);
  }
  const t13 = await handshake({ minVersion: 'TLSv1.3' });
  assert.equal(t13.protocol, 'TLSv1.3');
  const t12 = await handshake({ maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] });
  assert.equal(t12.protocol, 'TLSv1.2');
  assert.match(t12.cipher, /GCM|CHACHA20/);
  assert.match(t12.cipher, /ECDHE/);
  assert.equal(t12.alpn, 'http/1.1');
  // CBC, no forward secrecy, RC4 or 3DES: none of them gets a handshake.
  let offered = 0;
  for (const c of ['AES128-SHA', 'AES256-SHA256', 'ECDHE-RSA-AES128-SHA', 'ECDHE-RSA-AES256-SHA384', 'DES-CBC3-SHA']) {
    const r = await handshake({ maxVersion: 'TLSv1.2', ciphers: `${c}@SECLEVEL=0` });
    if (r.unsupported) continue;
    offered++;
    assert.ok(r.error, `${c} was accepted: ${JSON.stringify(r)}`);
  }
  assert.ok(offered >= 3, `only ${offered} weak suites could be offered`);
});

test('security headers on the UI and the API: CSP without unsafe-inline, HSTS, no framing, no sniffing', async () => {
  for (const path of ['/', '/api/v1/me', '/api/v1/no-such-route', '/assets/none.js']) {
    const r = await request(gw.base, 'GET', path, { headers: { cookie: admin.cookie } });
    const h = r.headers;
    const csp = h['content-security-policy'];
    assert.ok(csp, `${path}: no CSP`);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${path}: ${csp}`);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /default-src 'self'/);
    assert.match(h['strict-transport-security'] ?? '', /max-age=\d{7,}/, path);
    assert.equal(h['x-content-type-options'], 'nosniff', path);
    assert.equal(h['x-frame-options'], 'DENY', path);
    assert.equal(h['referrer-policy'], 'no-referrer', path);
  }
  const api = await request(gw.base, 'GET', '/api/v1/me', { headers: { cookie: admin.cookie } });
  assert.equal(api.headers['cache-control'], 'no-store');
  const login = await request(gw.base, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN }, headers: { 'x-portcullis-csrf': '1' } });
  const cookie = login.headers['set-cookie'][0];
  assert.match(cookie, /HttpOnly/i);
  assert.match(cookie, /Secure/i);
  assert.match(cookie, /SameSite=Strict/i);
});

test('an oversized request body is refused with 413 before it is read whole', async () => {
  const big = { name: 'x', password: 'y'.repeat(200 * 1024), role: 'user' };
  const r = await request(gw.base, 'POST', '/api/v1/users', { body: big, headers: { cookie: admin.cookie, 'x-portcullis-csrf': '1' } });
  assert.equal(r.status, 413, r.text);
});

test('a client that never finishes TLS, or never sends its request headers, is cut off', async () => {
  // Plain TCP, no ClientHello: axum-server's handshake timeout.
  const started = Date.now();
  const closedAfter = (socket) => new Promise((resolve) => {
    socket.once('close', () => resolve(Date.now() - started));
    socket.once('error', () => {});
  });
  const raw = net.connect(gw.port, '127.0.0.1');
  const rawClosed = closedAfter(raw);
  // TLS done, then half a request line and nothing more: the header read timeout.
  const slow = tls.connect({ host: '127.0.0.1', port: gw.port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  await new Promise((r) => slow.once('secureConnect', r));
  slow.write('GET /api/v1/me HTTP/1.1\r\nHost: x\r\n');
  const slowClosed = closedAfter(slow);
  const [rawMs, slowMs] = await Promise.all([
    Promise.race([rawClosed, sleep(30000).then(() => Infinity)]),
    Promise.race([slowClosed, sleep(30000).then(() => Infinity)]),
  ]);
  raw.destroy();
  slow.destroy();
  assert.ok(rawMs < 15000, `a silent TCP client stayed ${rawMs} ms`);
  assert.ok(slowMs < 15000, `a client sending half its headers stayed ${slowMs} ms`);
  console.log(`# silent TCP client closed after ${rawMs} ms, half-sent headers after ${slowMs} ms`);
  // The gateway still serves everyone else.
  assert.equal((await admin.get('/me')).status, 200);
});

// A deliberately hostile RDP server for robustness tests. It answers the client's X.224
// Connection Request in the chosen bad way, or accepts TLS and then misbehaves.
import net from 'node:net';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// TPKT + X.224 Connection Confirm + RDP_NEG_RSP selecting TLS (PROTOCOL_SSL).
const CONFIRM_TLS = Buffer.from([
  0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00,
  0x02, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00,
]);

function garbage(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7919 + 13) & 0xff;
  return b;
}

let certPair;
function selfSigned() {
  if (certPair) return certPair;
  const dir = mkdtempSync(join(tmpdir(), 'pc-evil-rdp-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=evil',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  certPair = { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  rmSync(dir, { recursive: true, force: true });
  return certPair;
}

/** What each behaviour does once the client's first PDU arrived. */
const behaviours = {
  // Random bytes instead of a Connection Confirm.
  garbage(sock) { sock.write(garbage(4096)); },
  // A TPKT header announcing 65535 bytes, then a trickle and silence (slow loris).
  trickle(sock) {
    sock.write(Buffer.from([0x03, 0x00, 0xff, 0xff, 0x02]));
    const t = setInterval(() => sock.write(Buffer.from([0x00])), 500);
    sock.on('close', () => clearInterval(t));
  },
  // Never answers at all.
  silent() {},
  // A truncated confirm, then the connection closes.
  truncated(sock) { sock.end(CONFIRM_TLS.subarray(0, 9)); },
  // Accepts TLS, then answers the MCS Connect Initial with garbage.
  tls_garbage(sock) { upgrade(sock, (s) => s.write(garbage(8192))); },
  // Accepts TLS, then announces an MCS Connect Response of absurd BER lengths.
  tls_huge_lengths(sock) {
    upgrade(sock, (s) => s.write(Buffer.concat([
      Buffer.from([0x03, 0x00, 0xff, 0xff, 0x02, 0xf0, 0x80, 0x7f, 0x66, 0x84, 0x7f, 0xff, 0xff, 0xff]),
      garbage(200),
    ])));
  },
};

function upgrade(sock, then) {
  sock.write(CONFIRM_TLS);
  const secure = new tls.TLSSocket(sock, { isServer: true, ...selfSigned() });
  secure.on('error', () => {});
  let answered = false;
  secure.on('data', () => {
    if (!answered) { answered = true; then(secure); }
  });
}

/** Starts a hostile RDP server; returns { port, close }. */
export function startHostileRdp(behaviour) {
  const act = behaviours[behaviour];
  if (!act) throw new Error(`unknown behaviour ${behaviour}`);
  if (behaviour.startsWith('tls')) selfSigned();
  const conns = new Set();
  const server = net.createServer((sock) => {
    conns.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => conns.delete(sock));
    sock.once('data', () => act(sock));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      close() {
        for (const c of conns) c.destroy();
        server.close();
      },
    }));
  });
}

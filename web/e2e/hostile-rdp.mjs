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

// --- A man in the middle that turns a real RDP peer hostile once the session is up. ---

/** Splits an RDP byte stream (after TLS) into whole frames: TPKT (slow-path) or fast-path. */
function framer(onFrame) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (buf.length < 3) return;
      let len;
      if (buf[0] === 3) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
      } else {
        len = buf[1] & 0x80 ? ((buf[1] & 0x7f) << 8) | buf[2] : buf[1];
      }
      if (len < 3) {
        // Not RDP framing: passed on as it is.
        onFrame(buf);
        buf = Buffer.alloc(0);
        return;
      }
      if (buf.length < len) return;
      onFrame(buf.subarray(0, len));
      buf = buf.subarray(len);
    }
  };
}

/** The MCS Send Data Request (0x64) or Indication (0x68) in a TPKT frame, if it is one. */
function mcsSendData(frame) {
  if (frame[0] !== 3 || frame.length < 15 || frame[5] !== 0xf0) return null;
  const type = frame[7];
  if (type !== 0x64 && type !== 0x68) return null;
  let p = 13;
  let len = frame[p++];
  if (len & 0x80) len = ((len & 0x3f) << 8) | frame[p++];
  return { type, initiator: frame.readUInt16BE(8), channel: frame.readUInt16BE(10), data: frame.subarray(p, p + len) };
}

/** An MCS Send Data frame of `type` (0x64 request, 0x68 indication) carrying `userData` (< 16 KiB). */
export function mcsFrame(type, initiator, channel, userData) {
  const len = userData.length;
  const head = Buffer.from([3, 0, 0, 0, 2, 0xf0, 0x80, type, initiator >> 8, initiator & 0xff,
    channel >> 8, channel & 0xff, 0x70, 0x80 | (len >> 8), len & 0xff]);
  const frame = Buffer.concat([head, userData]);
  frame.writeUInt16BE(frame.length, 2);
  return frame;
}

/** One static channel chunk: CHANNEL_PDU_HEADER (declared total, flags) and `data`. */
export function channelChunk(declared, flags, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(declared >>> 0, 0);
  head.writeUInt32LE(flags >>> 0, 4);
  return Buffer.concat([head, data]);
}

export const CHANNEL_FLAG_FIRST = 0x1;
export const CHANNEL_FLAG_LAST = 0x2;
export const CHANNEL_PACKET_COMPRESSED = 0x00200000;

/** A fast-path output frame with one update (`header`: code | fragmentation << 4) of `data`. */
export function fastPathFrame(header, data) {
  const update = Buffer.concat([Buffer.from([header, data.length & 0xff, data.length >> 8]), data]);
  const total = update.length + 3;
  return Buffer.concat([Buffer.from([0x00, 0x80 | (total >> 8), total & 0xff]), update]);
}

/**
 * A man in the middle between an RDP client and a real RDP server at `upstreamPort` (TLS
 * security: no NLA, whose CredSSP binds the login to the real server's key). It relays the X.224
 * negotiation, terminates TLS on both sides and relays whole frames, noting the clipboard
 * channel's id, until a test turns one side hostile with `conn.flood(...)`.
 * Returns { port, conns, nextConn(), close() }.
 */
export function startRdpMitm(upstreamPort) {
  const { key, cert } = selfSigned();
  const conns = [];
  const waiters = [];
  const sockets = new Set();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('error', () => {});
    const closeBoth = () => { client.destroy(); upstream.destroy(); };
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    const conn = {
      clipChannel: null,
      initiator: { 0x64: 1007, 0x68: 1002 },
      relaying: { toClient: true, toServer: true },
      closedAt: null,
      sockets: {},
      /**
       * Stops relaying towards `side` ('toClient' or 'toServer') and writes `first`, then
       * `next()` without end (as fast as the peer reads), until the connection closes.
       * Resolves with the time the connection closed.
       */
      async flood(side, first, next) {
        const sock = conn.sockets[side];
        conn.relaying[side] = false;
        sock.write(first);
        while (!sock.destroyed && conn.closedAt === null) {
          if (!sock.write(next())) {
            await new Promise((r) => {
              const done = () => { sock.off('drain', done); sock.off('close', done); r(); };
              sock.on('drain', done);
              sock.on('close', done);
            });
          }
        }
      },
      whenClosed: null,
      /** When a frame last went each way. */
      lastFrameAt: { toClient: Date.now(), toServer: Date.now() },
      /** Resolves once no frame went towards `side` for `ms` (or after 15 s). */
      async quiet(side, ms) {
        const until = Date.now() + 15000;
        while (Date.now() - conn.lastFrameAt[side] < ms && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 50));
        }
      },
    };
    conn.whenClosed = new Promise((resolve) => {
      const mark = () => { if (conn.closedAt === null) conn.closedAt = Date.now(); resolve(conn.closedAt); };
      client.on('close', mark);
      upstream.on('close', mark);
    });
    const note = (frame) => {
      const m = mcsSendData(frame);
      if (!m) return;
      conn.initiator[m.type] = m.initiator;
      // CLIPRDR opens with Clipboard Capabilities (7) or Monitor Ready (1), in one whole chunk.
      const d = m.data;
      if (d.length >= 12 && (d.readUInt32LE(4) & 3) === 3 && d.readUInt32LE(0) === d.length - 8
          && [1, 7].includes(d.readUInt16LE(8)) && conn.clipChannel === null) {
        conn.clipChannel = m.channel;
      }
    };
    client.once('data', (request) => {
      upstream.write(request);
      upstream.once('data', (confirm) => {
        client.write(confirm);
        const down = new tls.TLSSocket(client, { isServer: true, key, cert });
        const up = tls.connect({ socket: upstream, rejectUnauthorized: false });
        for (const s of [down, up]) {
          s.on('error', () => {});
          s.on('close', closeBoth);
        }
        conn.sockets = { toClient: down, toServer: up };
        down.on('data', framer((f) => {
          note(f);
          conn.lastFrameAt.toServer = Date.now();
          if (conn.relaying.toServer) up.write(f);
        }));
        up.on('data', framer((f) => {
          note(f);
          conn.lastFrameAt.toClient = Date.now();
          if (conn.relaying.toClient) down.write(f);
        }));
        conns.push(conn);
        for (const w of waiters.splice(0)) w(conn);
      });
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      conns,
      /** The next connection that gets through the negotiation (or the first, if one already did). */
      nextConn: () => (conns.length ? Promise.resolve(conns[conns.length - 1]) : new Promise((r) => waiters.push(r))),
      close() {
        for (const s of sockets) s.destroy();
        server.close();
      },
    }));
  });
}

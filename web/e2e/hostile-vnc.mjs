// A deliberately hostile VNC server for robustness tests: it completes a normal RFB 3.8
// handshake without authentication, then misbehaves in the chosen way.
import net from 'node:net';

function serverInit(width, height) {
  const b = Buffer.alloc(24 + 4);
  b.writeUInt16BE(width, 0);
  b.writeUInt16BE(height, 2);
  // pixel format: 32 bpp, depth 24, little endian, true colour, max 255, shifts 16/8/0
  Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]).copy(b, 4);
  b.writeUInt32BE(4, 20);
  b.write('evil', 24);
  return b;
}

const behaviours = {
  // A rectangle far outside the announced 64x64 desktop.
  rect_out_of_bounds(sock) {
    const m = Buffer.alloc(4 + 12);
    m.writeUInt8(0, 0); m.writeUInt16BE(1, 2);
    m.writeUInt16BE(60000, 4); m.writeUInt16BE(60000, 6); m.writeUInt16BE(5000, 8); m.writeUInt16BE(5000, 10);
    m.writeInt32BE(0, 12);
    sock.write(m);
  },
  // Server cut text announcing 4 GiB.
  huge_cut_text(sock) {
    const m = Buffer.alloc(8);
    m.writeUInt8(3, 0); m.writeUInt32BE(0xffffffff, 4);
    sock.write(m);
  },
  // Random bytes.
  garbage(sock) {
    const b = Buffer.alloc(4096);
    for (let i = 0; i < b.length; i++) b[i] = (i * 7919 + 13) & 0xff;
    b[0] = 0xee; // not a valid message type
    sock.write(b);
  },
  // A desktop size of 65535x65535 in the server init.
  huge_desktop(sock) { /* handled in the init */ },
  // Full-screen Raw updates, unasked and without end, as fast as the gateway reads them (each
  // one differs from the last): what the gateway holds of them must stay bounded.
  raw_flood(sock, { width, height }, state) {
    const header = Buffer.alloc(4 + 12);
    header.writeUInt8(0, 0); header.writeUInt16BE(1, 2);
    header.writeUInt16BE(width, 8); header.writeUInt16BE(height, 10);
    header.writeInt32BE(0, 12); // Raw
    const screens = [Buffer.alloc(width * height * 4, 0x40), Buffer.alloc(width * height * 4, 0xc0)];
    const more = () => {
      while (!sock.destroyed && !state.stopped) {
        sock.write(header);
        const room = sock.write(screens[state.sent++ & 1]);
        if (!room) { sock.once('drain', more); return; }
      }
    };
    more();
  },
};

/**
 * Starts a hostile server; returns { port, close, stop, sent }: `stop` ends a flood (the
 * connection stays open), `sent` counts the updates it wrote. `width` × `height`: the desktop
 * it announces (64 × 64 unless said).
 */
export function startHostileVnc(behaviour, { width = 64, height = 64 } = {}) {
  const state = { sent: 0, stopped: false };
  const conns = new Set();
  const server = net.createServer((sock) => {
    conns.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => conns.delete(sock));
    let stage = 0;
    let buf = Buffer.alloc(0);
    sock.write('RFB 003.008\n');
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 12) {
        buf = buf.subarray(12);
        stage = 1;
        sock.write(Buffer.from([1, 1])); // one security type: None
      }
      if (stage === 1 && buf.length >= 1) {
        buf = buf.subarray(1);
        stage = 2;
        sock.write(Buffer.from([0, 0, 0, 0])); // SecurityResult OK
      }
      if (stage === 2 && buf.length >= 1) {
        buf = buf.subarray(1);
        stage = 3;
        if (behaviour === 'huge_desktop') {
          sock.write(serverInit(65535, 65535));
        } else {
          sock.write(serverInit(width, height));
          setTimeout(() => behaviours[behaviour](sock, { width, height }, state), 200);
        }
      }
    });
  });
  return new Promise((res) => {
    server.listen(0, '127.0.0.1', () => {
      res({
        port: server.address().port,
        close: () => { state.stopped = true; for (const c of conns) c.destroy(); server.close(); },
        stop: () => { state.stopped = true; },
        sent: () => state.sent,
      });
    });
  });
}

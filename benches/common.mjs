// Helpers the benchmarks share (run.mjs: both clients at once; alone.mjs: each alone; kill.mjs;
// scale.mjs: many sessions through one gateway).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import tls from 'node:tls';

const here = dirname(fileURLToPath(import.meta.url));

/** A positive integer from the environment, or `def` when unset. */
export function intEnv(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number.parseInt(v, 10);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive integer, not ${v}`);
  return n;
}

export function killGroup(p, sig = 'SIGTERM') {
  if (p.exitCode !== null || p.signalCode !== null) return;
  try { process.kill(-p.pid, sig); } catch { try { p.kill(sig); } catch { /* gone */ } }
}

export function shuffle(a) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

export function rawShot(display) {
  return execFileSync('import', ['-display', display, '-window', 'root', '-depth', '8', 'rgb:-'], { maxBuffer: 64 << 20 });
}

export function diffBox(a, b, width, region) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -1; let y1 = -1;
  for (let y = region.y; y < region.y + region.h; y++) {
    for (let x = region.x; x < region.x + region.w; x++) {
      const i = (y * width + x) * 3;
      if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) {
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x0, y0, x1, y1 };
}

export const inside = (p, r) => p[0] >= r.x && p[0] < r.x + r.w && p[1] >= r.y && p[1] < r.y + r.h;

export const hexRgb = (h) => [0, 2, 4].map((i) => Number.parseInt(h.slice(i, i + 2), 16));

export function pkgVersion(name) {
  try { return execFileSync('dpkg-query', ['-W', '-f', '${Version}', name], { encoding: 'utf8' }); } catch { return null; }
}

// ---- children in their own process groups ------------------------------------------------------
/** Every child started with startChild and still running; a benchmark kills them on exit. */
export const children = new Set();

/**
 * Starts a child in its own process group (so that it and its forks stop together), its output
 * kept in `p.output`; `p.stop()` ends the group (SIGTERM, SIGKILL after 3 s) and waits for it.
 */
export function startChild(cmd, args, opts = {}) {
  const p = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(p);
  p.output = [];
  p.stdout?.on('data', (d) => p.output.push(d.toString()));
  p.stderr?.on('data', (d) => p.output.push(d.toString()));
  p.on('exit', () => children.delete(p));
  p.stop = async () => {
    killGroup(p);
    await Promise.race([new Promise((r) => p.once('exit', r)), new Promise((r) => setTimeout(r, 3000))]);
    killGroup(p, 'SIGKILL');
  };
  return p;
}

/**
 * CLOCK_MONOTONIC in milliseconds: the clock xpoke's `M0`/`M1` and Chromium's `performance.now()`
 * run on. The wall clock is not used for latencies: on these machines it is slewed by several
 * milliseconds per second (seen: 2-5 ms/s), which turned whole blocks of samples negative.
 */
export const monoMs = () => Number(process.hrtime.bigint()) / 1e6;

/**
 * Offset to add to a page's `window.__bench.now()` to get {@link monoMs}: both are monotonic, so
 * it is constant; taken from the fastest of 25 round trips (error at most half of it, ~1 ms).
 */
export async function monoOffset(page) {
  let best = null;
  for (let i = 0; i < 25; i++) {
    const a = monoMs();
    const p = await page.evaluate(() => window.__bench.now());
    const b = monoMs();
    if (!best || b - a < best.rtt) best = { rtt: b - a, offset: (a + b) / 2 - p };
  }
  return best.offset;
}

/**
 * Starts `benches/xpoke.py` on `display` through `start` (a script's own `startChild`, which
 * owns the clean-up; by default the one above) and returns `poke(cmd)`, resolving with
 * `{ t0, t1 }` (wall clock, ms) and `{ m0, m1 }` (monotonic, ms) before the X calls and after
 * XSync; `poke.stop()` ends it.
 */
export function startPoke(display, start = startChild) {
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const p = start(python, [join(here, 'xpoke.py')], { env: { ...process.env, DISPLAY: display }, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = createInterface({ input: p.stdout });
  const waiting = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  const poke = (cmd) => new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`xpoke did not answer ${cmd}: ${p.output.join('')}`)), 5000);
    waiting.push((l) => {
      clearTimeout(timer);
      const m = l.match(/^ok ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)$/);
      if (!m) return rej(new Error(`xpoke: ${l}`));
      res({ t0: Number(m[1]), t1: Number(m[2]), m0: Number(m[3]), m1: Number(m[4]) });
    });
    p.stdin.write(cmd + '\n');
  });
  poke.stop = () => p.stop();
  return poke;
}

// ---- /proc counters -----------------------------------------------------------------------------
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100; } catch { return 100; } })();
const statFields = (path) => { const s = readFileSync(path, 'utf8'); return s.slice(s.lastIndexOf(')') + 2).split(' '); };

/** utime + stime of a process (all its threads, also those gone) or of one thread (`tid`), seconds; null if gone. */
export function cpuSeconds(pid, tid = null) {
  try {
    if (tid !== null) return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
    const f = statFields(`/proc/${pid}/stat`);
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Thread ids of `pid` whose name starts with `prefix`. */
export function threadsNamed(pid, prefix) {
  try {
    return readdirSync(`/proc/${pid}/task`).filter((tid) => {
      try { return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').startsWith(prefix); } catch { return false; }
    });
  } catch {
    return [];
  }
}

/** A field of /proc/PID/status in KiB (VmRSS, VmHWM, ...), null if gone. */
export function statusKiB(pid, field = 'VmRSS') {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The pid of the process listening on a loopback TCP port (ss; needs no root for our own). */
export function listenPid(port) {
  try {
    const m = execFileSync('ss', ['-ltnpH', `( sport = :${port} )`], { encoding: 'utf8' }).match(/pid=(\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// ---- a bare session WebSocket --------------------------------------------------------------------
/**
 * Opens `/api/v1/targets/TARGET/connect` as the browser does (TLS, the user's cookie, same
 * origin) without a browser. Frames are parsed as they stream in; pixel payloads are counted and
 * skipped, not kept. Handlers: `onText(string)`, `onFrameEnd(seq)` for each end of frame,
 * `onError(error)` (socket error, or an upgrade the gateway refused). It answers Close and Ping
 * as a browser does. Returns { send(text), close(), closed() (resolves with the monoMs() the
 * gateway's side ended), stats: { bytes, messages, frames } }.
 */
export function connectSession(base, cookie, target, { onText, onFrameEnd, onError } = {}) {
  const url = new URL(base);
  const stats = { bytes: 0, messages: 0, frames: 0 };
  const sock = tls.connect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false }, () => {
    sock.write(`GET /api/v1/targets/${target}/connect HTTP/1.1\r\nHost: ${url.host}\r\nOrigin: ${base}\r\n` +
      `Cookie: ${cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`);
  });
  // Client frames are masked (RFC 6455 5.3).
  const write = (op, payload) => {
    if (sock.destroyed) return;
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | op, 0x80 | n])
      : n < 65536 ? Buffer.from([0x80 | op, 0x80 | 126, n >> 8, n & 0xff])
        : Buffer.concat([Buffer.from([0x80 | op, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
    const mask = randomBytes(4);
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3];
    sock.write(Buffer.concat([head, mask, body]));
  };
  let closedAt = null;
  const closedWaiters = [];
  const onClose = () => {
    if (closedAt === null) closedAt = monoMs();
    while (closedWaiters.length) closedWaiters.shift()(closedAt);
  };
  // The message being read: opcode, length, bytes still to come, the first `want` bytes kept.
  let cur = null;
  let carry = null;
  const finish = () => {
    const m = cur;
    cur = null;
    stats.messages++;
    const p = m.parts.length === 1 ? m.parts[0] : Buffer.concat(m.parts);
    if (m.op === 1) onText?.(p.toString());
    else if (m.op === 2 && m.len === 5 && p[0] === 2) { stats.frames++; onFrameEnd?.(p.readUInt32BE(1)); }
    else if (m.op === 8) write(8, p.subarray(0, 2));
    else if (m.op === 9) write(10, p);
  };
  const feed = (chunk) => {
    const d = carry ? Buffer.concat([carry, chunk]) : chunk;
    carry = null;
    let i = 0;
    while (i < d.length) {
      if (!cur) {
        if (d.length - i < 2) break;
        let len = d[i + 1] & 0x7f;
        let at = i + 2;
        if (len === 126) { if (d.length - i < 4) break; len = d.readUInt16BE(i + 2); at = i + 4; }
        else if (len === 127) { if (d.length - i < 10) break; len = Number(d.readBigUInt64BE(i + 2)); at = i + 10; }
        const op = d[i] & 0x0f;
        // Of a pixel message only its first bytes matter (an end of frame is 5 bytes long).
        cur = { op, len, left: len, want: op === 2 ? Math.min(len, 16) : len, got: 0, parts: [] };
        i = at;
        if (len === 0) { finish(); continue; }
      }
      const n = Math.min(cur.left, d.length - i);
      if (cur.got < cur.want) {
        const k = Math.min(n, cur.want - cur.got);
        cur.parts.push(d.subarray(i, i + k));
        cur.got += k;
      }
      cur.left -= n;
      i += n;
      if (cur.left === 0) finish();
    }
    if (i < d.length) carry = Buffer.from(d.subarray(i));
  };
  let head = '';
  let upgraded = false;
  sock.on('data', (d) => {
    stats.bytes += d.length;
    if (upgraded) { feed(d); return; }
    head += d.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    if (!head.startsWith('HTTP/1.1 101')) {
      onError?.(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
      sock.destroy();
      return;
    }
    upgraded = true;
    feed(Buffer.from(head.slice(end + 4), 'latin1'));
  });
  sock.on('end', onClose);
  sock.on('close', onClose);
  sock.on('error', (e) => onError?.(e));
  return {
    stats,
    send: (text) => write(1, Buffer.from(text)),
    close: () => { write(8, Buffer.from([0x03, 0xe8])); sock.end(); setTimeout(() => sock.destroy(), 2000).unref(); },
    closed: () => (closedAt !== null ? Promise.resolve(closedAt) : new Promise((r) => closedWaiters.push(r))),
  };
}

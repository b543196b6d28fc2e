// Helpers the latency benchmarks share (run.mjs: both clients at once; alone.mjs: each alone).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

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
 * Starts `benches/xpoke.py` on `display` through the script's own `startChild` (which owns the
 * clean-up) and returns `poke(cmd)`, resolving with `{ t0, t1 }` (wall clock, ms) and `{ m0, m1 }`
 * (monotonic, ms) before the X calls and after XSync; `poke.stop()` ends it.
 */
export function startPoke(display, startChild) {
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const script = join(dirname(fileURLToPath(import.meta.url)), 'xpoke.py');
  const p = startChild(python, [script], { env: { ...process.env, DISPLAY: display }, stdio: ['pipe', 'pipe', 'pipe'] });
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

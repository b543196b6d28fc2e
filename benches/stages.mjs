// Stage timing for breakdown.mjs: a page init script that notes what the page does with each
// message (installed after probe.mjs's, touching neither client's code), the loopback packet
// trace (stage-trace.py), and the per-change stages computed from both, all on CLOCK_MONOTONIC.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Runs in the page. `window.__stages.take()` returns (and clears) the events since the last take,
 * times on probe.mjs's clock (`__bench.hr()`):
 *   msg     a WebSocket message dispatched (n bytes; kind, enc, w, h of a gateway rectangle)
 *   handler the page's own message handler ran from t0 to t1 (synchronous part only)
 *   write   a chunk written into a DecompressionStream (or any stream writer)
 *   read    a stream read resolved (n bytes): the gateway's inflater output
 *   bitmap  createImageBitmap resolved (t0 asked)
 *   draw    drawImage/putImageData/fillRect on the watched canvas, t0 → t1 (t1 includes probe.mjs's
 *           read-back check while a change is awaited); any canvas with `all`
 */
export function installStages() {
  const hr = () => performance.timeOrigin + performance.now();
  const S = { log: [] };
  const push = (e) => { if (S.log.length < 20000) S.log.push(e); };
  S.take = () => { const l = S.log; S.log = []; return l; };
  window.__stages = S;

  const NativeWS = window.WebSocket;
  const proto = NativeWS.prototype;
  const onmessage = Object.getOwnPropertyDescriptor(proto, 'onmessage');
  const timed = (fn) => function timedHandler(ev) {
    const t0 = hr();
    try {
      return typeof fn === 'function' ? fn.call(this, ev) : fn.handleEvent(ev);
    } finally {
      push({ e: 'handler', t0, t1: hr() });
    }
  };
  function StagedWebSocket(...args) {
    const ws = new NativeWS(...args);
    ws.addEventListener('message', (e) => {
      const t = hr();
      const d = e.data;
      if (typeof d === 'string') { push({ e: 'msg', t, n: d.length, text: d.slice(0, 20) }); return; }
      if (!(d instanceof ArrayBuffer)) { push({ e: 'msg', t, n: d.size ?? 0 }); return; }
      const u = new Uint8Array(d, 0, Math.min(10, d.byteLength));
      const ev = { e: 'msg', t, n: d.byteLength, kind: u[0] };
      if (u[0] === 1 && u.length >= 10) {
        ev.enc = u[1]; ev.x = (u[2] << 8) | u[3]; ev.y = (u[4] << 8) | u[5]; ev.w = (u[6] << 8) | u[7]; ev.h = (u[8] << 8) | u[9];
      }
      push(ev);
    });
    Object.defineProperty(ws, 'onmessage', {
      configurable: true,
      get() { return onmessage.get.call(ws); },
      set(fn) { onmessage.set.call(ws, fn ? timed(fn) : fn); },
    });
    const add = ws.addEventListener.bind(ws);
    ws.addEventListener = (type, fn, opts) => add(type, type === 'message' && fn ? timed(fn) : fn, opts);
    return ws;
  }
  StagedWebSocket.prototype = NativeWS.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Object.defineProperty(StagedWebSocket, k, { value: NativeWS[k] });
  window.WebSocket = StagedWebSocket;

  const read = ReadableStreamDefaultReader.prototype.read;
  ReadableStreamDefaultReader.prototype.read = function stagedRead(...a) {
    const t0 = hr();
    const p = read.apply(this, a);
    p.then((r) => push({ e: 'read', t0, t: hr(), n: r && r.value ? r.value.length : 0 }), () => {});
    return p;
  };
  const write = WritableStreamDefaultWriter.prototype.write;
  WritableStreamDefaultWriter.prototype.write = function stagedWrite(chunk) {
    push({ e: 'write', t: hr(), n: chunk?.byteLength ?? 0 });
    return write.call(this, chunk);
  };
  const cib = window.createImageBitmap;
  window.createImageBitmap = function stagedBitmap(...a) {
    const t0 = hr();
    const p = cib.apply(this, a);
    p.then(() => push({ e: 'bitmap', t0, t: hr() }), () => {});
    return p;
  };
  for (const name of ['drawImage', 'putImageData', 'fillRect']) {
    const orig = CanvasRenderingContext2D.prototype[name];
    CanvasRenderingContext2D.prototype[name] = function stagedDraw(...args) {
      const watched = window.__bench && this.canvas === window.__bench.canvas;
      const t0 = hr();
      const out = orig.apply(this, args);
      if (watched || S.all) push({ e: 'draw', name, t0, t1: hr(), watched });
      return out;
    };
  }
}

/**
 * Runs in the page: of each rectangle `{ x, y, w, h }` as the watched canvas shows it now, how
 * many 64×64 tiles (aligned to the rectangle) are one colour, and their pixels.
 */
export function tileStats(rects) {
  const ctx = window.__bench.ctx;
  const out = [];
  for (const { x, y, w, h } of rects) {
    const d = ctx.getImageData(x, y, w, h).data;
    let tiles = 0; let solid = 0; let solidPx = 0;
    for (let ty = 0; ty < h; ty += 64) {
      for (let tx = 0; tx < w; tx += 64) {
        const tw = Math.min(64, w - tx); const th = Math.min(64, h - ty);
        const i0 = ((ty * w) + tx) * 4;
        let one = true;
        for (let yy = 0; yy < th && one; yy++) {
          for (let xx = 0; xx < tw; xx++) {
            const i = (((ty + yy) * w) + tx + xx) * 4;
            if (d[i] !== d[i0] || d[i + 1] !== d[i0 + 1] || d[i + 2] !== d[i0 + 2]) { one = false; break; }
          }
        }
        tiles += 1;
        if (one) { solid += 1; solidPx += tw * th; }
      }
    }
    out.push({ x, y, w, h, tiles, solid, solidPx });
  }
  return out;
}

/** Starts stage-trace.py on `ports` (root only). `stop()` resolves with the packets. */
export async function startTrace(startChild, ports) {
  const dir = mkdtempSync(join(tmpdir(), 'stage-trace-'));
  const file = join(dir, 'packets.txt');
  const p = startChild('/usr/bin/python3', [join(here, 'stage-trace.py'), file, ...ports.map(String)]);
  await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`stage-trace.py did not start: ${p.output.join('')}`)), 5000);
    const check = () => { if (p.output.join('').includes('ready')) { clearTimeout(t); res(); } else setTimeout(check, 20); };
    check();
  });
  return {
    stop: async () => {
      p.kill('SIGTERM');
      for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 100));
      const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
      rmSync(dir, { recursive: true, force: true });
      return text.split('\n').filter(Boolean).map((l) => {
        const [t, sport, dport, n, b] = l.split(' ').map(Number);
        return { t, sport, dport, n, b };
      });
    },
  };
}

const sum = (a) => a.reduce((x, y) => x + y, 0);

/**
 * The stages of one change (ms on CLOCK_MONOTONIC, relative where named so), from the sample
 * (`m0` the X call, `r` the probe's result, `offset` page → monotonic, `ev` the page's events)
 * and the loopback packets. Null when the change was not seen.
 */
export function stagesOf(s, packets, vncPort, relayPort) {
  if (!s.r) return null;
  const off = s.offset;
  const m0 = s.m0;
  const paint = s.r.paint + off;
  const win = (t) => t > m0 && t <= paint + 0.05;
  const fromVnc = packets.filter((p) => p.sport === vncPort && win(p.t));
  const reqs = packets.filter((p) => p.dport === vncPort && p.b === 3 && p.t <= (fromVnc[0]?.t ?? paint));
  const out = packets.filter((p) => p.sport === relayPort && win(p.t) && (!fromVnc.length || p.t >= fromVnc[0].t));
  const ev = s.ev.map((e) => ({ ...e, t: e.t !== undefined ? e.t + off : undefined, t0: e.t0 !== undefined ? e.t0 + off : undefined, t1: e.t1 !== undefined ? e.t1 + off : undefined }));
  const inWin = (e) => win(e.t ?? e.t1);
  const msgs = ev.filter((e) => e.e === 'msg' && inWin(e));
  const handlers = ev.filter((e) => e.e === 'handler' && win(e.t0));
  const reads = ev.filter((e) => e.e === 'read' && inWin(e));
  const draws = ev.filter((e) => e.e === 'draw' && win(e.t0) && e.watched);
  const bitmaps = ev.filter((e) => e.e === 'bitmap' && inWin(e));
  const vncFirst = fromVnc[0]?.t ?? null;
  const vncLast = fromVnc.at(-1)?.t ?? null;
  const outFirst = out[0]?.t ?? null;
  const outLast = out.at(-1)?.t ?? null;
  const msgFirst = msgs[0]?.t ?? null;
  const msgLast = msgs.at(-1)?.t ?? null;
  const d = (a, b) => (a === null || b === null ? null : a - b);
  const lastReq = reqs.at(-1)?.t ?? null;
  return {
    total: paint - m0,
    // X call → the target's first byte of the update.
    server: d(vncFirst, m0),
    // The client's last update request before that byte, relative to the change (negative:
    // a request was outstanding when the change happened).
    req: d(lastReq, m0),
    vncSpan: d(vncLast, vncFirst),
    vncBytes: sum(fromVnc.map((p) => p.n)),
    // The relay (gateway or websockify): target's first byte → its first byte to the browser, and
    // target's last byte → its last byte to the browser.
    relayFirst: d(outFirst, vncFirst),
    relayLast: d(outLast, vncLast),
    outBytes: sum(out.map((p) => p.n)),
    // Loopback → the page's message event (TLS for the gateway, the network service, IPC).
    netFirst: d(msgFirst, outFirst),
    netLast: d(msgLast, outLast),
    msgs: msgs.length,
    // The page: last message → paint, and what it spent on the way.
    page: d(paint, msgLast),
    handlerMs: sum(handlers.map((h) => h.t1 - h.t0)),
    reads: reads.length,
    // Last inflater output → paint (gateway), time spent inside the watched canvas's draw calls.
    lastReadToPaint: reads.length ? paint - reads.at(-1).t : null,
    inflateSpan: reads.length && msgs.length ? reads.at(-1).t - (msgs.find((m) => m.enc === 4)?.t ?? reads[0].t) : null,
    bitmaps: bitmaps.length,
    draws: draws.length,
    drawMs: sum(draws.map((x) => x.t1 - x.t0)),
    firstDrawAfterLastMsg: draws.length && msgLast !== null ? (draws.find((x) => x.t0 >= msgLast)?.t0 ?? draws.at(-1).t0) - msgLast : null,
    encs: [...new Set(msgs.filter((m) => m.kind === 1).map((m) => m.enc))].join('+'),
    // The packets of the change (relative to the X call): [ms, 'v' from the target | 'r' to
    // the target | 'o' relay to browser, bytes, first byte].
    pk: packets.filter((p) => (p.sport === vncPort || p.dport === vncPort || p.sport === relayPort || p.dport === relayPort) && p.t > m0 - 50 && p.t <= paint + 5)
      .map((p) => [Math.round((p.t - m0) * 1000) / 1000, p.sport === vncPort ? 'v' : p.dport === vncPort ? 'r' : p.sport === relayPort ? 'o' : 'i', p.n, p.b]),
  };
}

const med = (v) => {
  const a = v.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((x, y) => x - y);
  if (!a.length) return null;
  return a[Math.floor((a.length - 1) / 2)];
};
const p90 = (v) => {
  const a = v.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((x, y) => x - y);
  if (!a.length) return null;
  return a[Math.min(a.length - 1, Math.ceil(0.9 * a.length) - 1)];
};

/** A table of stage medians (and p90 of the total) per server, case and client. */
export function summarise(all) {
  const keys = ['total', 'server', 'req', 'vncSpan', 'vncBytes', 'relayFirst', 'relayLast', 'outBytes', 'netFirst', 'netLast', 'msgs', 'page', 'handlerMs', 'lastReadToPaint', 'inflateSpan', 'draws', 'drawMs', 'firstDrawAfterLastMsg'];
  const out = ['', 'Stage medians (ms; bytes; counts) per change'];
  for (const [server, byClient] of Object.entries(all)) {
    const cases = [...new Set(Object.values(byClient).flat().map((s) => s.kind))];
    for (const kind of cases) {
      out.push(`  ${server} ${kind}:`);
      for (const [client, samples] of Object.entries(byClient)) {
        const st = samples.filter((s) => s.kind === kind && s.stages).map((s) => s.stages);
        const cells = keys.map((k) => {
          const m = med(st.map((x) => x[k]));
          return `${k}=${m === null ? '-' : Math.round(m * 100) / 100}`;
        });
        const p = p90(st.map((x) => x.total));
        out.push(`    ${client.padEnd(10)} n=${st.length} p90total=${p === null ? '-' : Math.round(p * 10) / 10} ${cells.join(' ')}`);
      }
    }
  }
  return out.join('\n');
}

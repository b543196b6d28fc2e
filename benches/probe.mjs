// Runs inside each benchmarked page (installed with page.addInitScript before any page script),
// identical for both clients. It never touches the clients' code; it only observes:
//
// - every WebSocket the page opens gets an extra 'message' listener registered before the
//   page's own, which records when the main thread dispatches each message;
// - drawImage/putImageData/fillRect of CanvasRenderingContext2D are wrapped: after a call on the
//   visible desktop canvas, while a change is awaited, the awaited pixels are read back;
// - a requestAnimationFrame loop does the same check once per frame, as a safety net and to
//   note the first frame on which the change can be on screen.
//
// All times are wall-clock milliseconds: performance.timeOrigin + performance.now(), corrected
// by the page's own measured offset to Date.now() (see clockSkew), so they compare with the
// times of the X helper (Python time.time()) and of node (Date.now()).

export function installProbe() {
  const hr = () => performance.timeOrigin + performance.now();
  const B = {
    /** CSS selector of the desktop canvas, set by the benchmark once the page is connected. */
    selector: null,
    canvas: null,
    ctx: null,
    /** The awaited change: { id, mode: 'color'|'diff', pts, rgb, tol, band, base, thr, armedAt }. */
    armed: null,
    results: {},
    waiters: {},
    lastMsg: 0,
    firstMsgAfterArm: 0,
    msgs: 0,
    /** Payload bytes of every message the page received, counted by the page itself. */
    rxBytes: 0,
    hr,
  };
  window.__bench = B;

  // A plain function returning a native WebSocket (not a subclass): noVNC checks that the
  // socket's own prototype has every WebSocket method.
  const NativeWS = window.WebSocket;
  function ProbedWebSocket(...args) {
    const ws = new NativeWS(...args);
    ws.addEventListener('message', (e) => {
      const t = hr();
      B.lastMsg = t;
      B.msgs += 1;
      const d = e.data;
      B.rxBytes += typeof d === 'string' ? new TextEncoder().encode(d).length : (d.byteLength ?? d.size ?? 0);
      if (B.armed && !B.firstMsgAfterArm) B.firstMsgAfterArm = t;
    });
    return ws;
  }
  ProbedWebSocket.prototype = NativeWS.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) {
    Object.defineProperty(ProbedWebSocket, k, { value: NativeWS[k] });
  }
  window.WebSocket = ProbedWebSocket;

  const target = () => {
    if (!B.selector) return null;
    if (!B.canvas || !B.canvas.isConnected) {
      B.canvas = document.querySelector(B.selector);
      B.ctx = B.canvas ? B.canvas.getContext('2d') : null;
    }
    return B.canvas;
  };

  const matches = (a) => {
    const ctx = B.ctx;
    if (a.mode === 'color') {
      for (const [x, y] of a.pts) {
        const d = ctx.getImageData(x, y, 1, 1).data;
        if (Math.abs(d[0] - a.rgb[0]) > a.tol || Math.abs(d[1] - a.rgb[1]) > a.tol || Math.abs(d[2] - a.rgb[2]) > a.tol) return false;
      }
      return true;
    }
    const { x, y, w, h } = a.band;
    const d = ctx.getImageData(x, y, w, h).data;
    const b = a.base;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - b[i]) + Math.abs(d[i + 1] - b[i + 1]) + Math.abs(d[i + 2] - b[i + 2]) > a.thr) return true;
    }
    return false;
  };

  const check = (via) => {
    const a = B.armed;
    if (!a || !target() || !B.ctx) return;
    if (!matches(a)) return;
    const t = hr();
    B.armed = null;
    const r = {
      id: a.id, paint: t, via, lastMsg: B.lastMsg, firstMsg: B.firstMsgAfterArm, frame: null, armedAt: a.armedAt,
      msgs: B.msgs - a.msgsAtArm, bytes: B.rxBytes - a.bytesAtArm,
      // Portcullis only: frames (end-of-frame messages) needed, counting the one being painted.
      frames: window.__portcullis ? window.__portcullis.framesPainted - a.framesAtArm + 1 : null,
    };
    B.results[a.id] = r;
    requestAnimationFrame(() => { r.frame = hr(); });
    const w = B.waiters[a.id];
    if (w) w();
  };

  for (const name of ['drawImage', 'putImageData', 'fillRect']) {
    const orig = CanvasRenderingContext2D.prototype[name];
    CanvasRenderingContext2D.prototype[name] = function probed(...args) {
      const out = orig.apply(this, args);
      if (B.armed && this.canvas === B.canvas) check('draw');
      return out;
    };
  }
  const tick = () => {
    if (B.armed) check('raf');
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);

  /** Starts waiting for a change. Returns true if the change is already visible (stale). */
  B.arm = (spec) => {
    if (!target() || !B.ctx) throw new Error(`no canvas ${B.selector}`);
    const a = { ...spec, armedAt: hr(), msgsAtArm: B.msgs, bytesAtArm: B.rxBytes, framesAtArm: window.__portcullis?.framesPainted ?? 0 };
    if (a.mode === 'diff') {
      const { x, y, w, h } = a.band;
      a.base = B.ctx.getImageData(x, y, w, h).data.slice();
    }
    const already = a.mode === 'color' && matches(a);
    B.firstMsgAfterArm = 0;
    B.armed = a;
    return already;
  };
  /** Resolves with the result of change `id`, or null after `ms`. */
  B.wait = (id, ms) => new Promise((resolve) => {
    const done = () => { delete B.waiters[id]; resolve(B.results[id] ?? null); };
    if (B.results[id]) return done();
    B.waiters[id] = done;
    setTimeout(() => {
      if (B.armed && B.armed.id === id) B.armed = null;
      done();
    }, ms);
  });
  /** The probe's clock now (what results are in), to relate it to node's monotonic clock. */
  B.now = () => hr();
  /** Offset to add to hr() to get Date.now()'s clock, measured over ~30 ms. */
  B.clockSkew = () => {
    let sum = 0;
    let n = 0;
    const end = hr() + 30;
    while (hr() < end) {
      sum += Date.now() - hr();
      n += 1;
    }
    // Date.now() is floored to the millisecond: on average half a millisecond early.
    return sum / n + 0.5;
  };
}

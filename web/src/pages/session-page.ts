// `#/session/<name>`: the remote desktop viewer over the session WebSocket. This file is the
// connection's life; the markup is session-dom.ts, keyboard and mouse session-input.ts, the
// clipboard panel session-clipboard.ts, the pure parts ../model/session.ts.

import { getMe } from '../api';
import type { PageContext } from '../context';
import { DesktopCanvas } from '../desktop';
import { showError } from '../dom';
import { shell } from '../layout';
import { ackMsg, parseServerText, refreshMsg, type ServerMessage } from '../model/protocol';
import { connectUrl, desktopSizeWish, SESSION_CHROME_FALLBACK, type DesktopSize } from '../model/session';
import { counters, resetCounters } from '../test-hooks';
import { SessionClipboard } from './session-clipboard';
import { buildSessionDom, setStatus } from './session-dom';
import { SessionInput } from './session-input';

/** How long to wait for `init` before giving up. */
export const INIT_TIMEOUT_MS = 20_000;

/**
 * The desktop size wished for the session page as laid out now: the window minus whatever the
 * viewport element does not get (header, toolbar, clipboard panel).
 */
function measureWish(viewport: HTMLElement): DesktopSize {
  const vw = window.innerWidth;
  const vh = window.innerHeight;
  if (viewport.clientWidth > 0 && viewport.clientHeight > 0) {
    return desktopSizeWish(vw, vh, vh - viewport.clientHeight, vw - viewport.clientWidth);
  }
  return desktopSizeWish(vw, vh, SESSION_CHROME_FALLBACK.height, SESSION_CHROME_FALLBACK.width);
}

type Phase = 'connecting' | 'connected' | 'ended';

/**
 * The error shown when the session WebSocket closes without a `closed` message, an `error`, a
 * time-out or the user closing it.
 */
function dropText(ev: CloseEvent, wasConnected: boolean, target: string): string {
  // 1005 (no status) and 1006 (abnormal: refused upgrade, dropped TCP) carry no information.
  const detail = ev.code && ev.code !== 1005 && ev.code !== 1006 ? ` (close code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})` : '';
  if (wasConnected) return `The connection to the gateway was lost${detail}.`;
  return `The gateway refused or dropped the connection to ${target}${detail}. You may not have access to this target, or the gateway is unreachable.`;
}

/**
 * The page: opens the session WebSocket, follows its life (connecting, connected, ended) and hands
 * the server's messages to the canvas (`DesktopCanvas`), the clipboard panel (`SessionClipboard`)
 * and the status line; input goes out through `SessionInput`.
 */
export function renderSession(ctx: PageContext, target: string): void {
  const { signal } = ctx;
  resetCounters();
  const stats = counters();
  const dom = buildSessionDom(shell(ctx.root, ctx.me, 'session', 'session-page'), target);
  const { canvas, viewport, errorBox, refreshBtn } = dom;

  // ---- state ----------------------------------------------------------------------------------
  let phase: Phase = 'connecting';
  let gotInit = false;
  let gotError = false;
  let closedReason: string | null = null;
  let timedOut = false;
  let userClosed = false;

  setStatus(dom.status, `Connecting to ${target}…`, 'connecting');

  // Ask for a desktop that fills the space the canvas has now (1:1, no scaling).
  const ws = new WebSocket(connectUrl(location, target, measureWish(viewport)));
  ws.binaryType = 'arraybuffer';

  const send = (msg: string) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(msg);
  };
  const live = () => phase === 'connected' && ws.readyState === WebSocket.OPEN;

  const initTimer = window.setTimeout(() => {
    if (gotInit || phase === 'ended') return;
    timedOut = true;
    showError(errorBox, `Timed out: no answer from ${target} through the gateway within ${INIT_TIMEOUT_MS / 1000} seconds.`);
    endSession();
    ws.close();
  }, INIT_TIMEOUT_MS);

  // ---- scaling and drawing (shared with the watch page) ------------------------------------------
  const view = new DesktopCanvas({
    canvas,
    viewport,
    fit: () => dom.scaleBox.checked,
    onFramePainted: (seq) => {
      stats.framesPainted += 1;
      stats.lastSeq = seq;
      send(ackMsg(seq));
    },
    onCopyPainted: () => {
      stats.copiesPainted += 1;
    },
    onBroken: (err) => {
      if (gotError) return;
      gotError = true;
      showError(errorBox, `The picture from the gateway could not be decoded (${err.message}). Reconnect to go on.`);
      endSession();
      ws.close(1000, 'undecodable picture');
    },
  });
  dom.scaleBox.addEventListener('change', () => {
    view.applyScale();
    if (live()) canvas.focus({ preventScroll: true });
  });

  const clipboard = new SessionClipboard({ elements: dom.clipboard, send, live });
  const input = new SessionInput({ canvas, view, send, live, paste: (text) => clipboard.send(text) });

  const onText = (msg: ServerMessage) => {
    switch (msg.type) {
      case 'init':
        if (gotInit) return;
        gotInit = true;
        window.clearTimeout(initTimer);
        phase = 'connected';
        stats.sessionId = msg.session;
        dom.placeholder.hidden = true;
        canvas.hidden = false;
        view.resize(msg.width, msg.height);
        setStatus(dom.status, 'Connected', 'connected');
        refreshBtn.disabled = false;
        clipboard.enable(true);
        // The canvas is visible now; give it the keyboard.
        canvas.focus({ preventScroll: true });
        return;
      case 'resize':
        view.resize(msg.width, msg.height);
        return;
      case 'observer':
        dom.observerBanner.hidden = msg.present;
        return;
      case 'frozen':
        dom.frozenBanner.hidden = !msg.frozen;
        return;
      case 'denied':
        clipboard.denied(msg.action, msg.reason);
        return;
      case 'clipboard':
        clipboard.received(msg.text);
        return;
      case 'bell':
        viewport.classList.remove('bell');
        void viewport.offsetWidth; // restart the animation
        viewport.classList.add('bell');
        return;
      case 'error':
        gotError = true;
        window.clearTimeout(initTimer);
        showError(errorBox, msg.message);
        return;
      case 'closed':
        closedReason = msg.reason;
        window.clearTimeout(initTimer);
        setStatus(dom.status, msg.reason ? `Disconnected: ${msg.reason}` : 'Disconnected: the session ended', 'disconnected');
        return;
    }
  };

  ws.addEventListener('message', (ev: MessageEvent) => {
    if (phase === 'ended') return;
    if (ev.data instanceof ArrayBuffer) {
      view.binary(ev.data);
    } else if (typeof ev.data === 'string') {
      const msg = parseServerText(ev.data);
      if (msg === null) {
        console.warn('portcullis: ignoring unknown message', ev.data.slice(0, 200));
        return;
      }
      onText(msg);
    }
  });

  ws.addEventListener('close', (ev: CloseEvent) => {
    window.clearTimeout(initTimer);
    const wasConnected = gotInit;
    endSession();
    if (closedReason !== null) return; // status already shows the reason
    setStatus(dom.status, 'Disconnected', 'disconnected');
    if (gotError || timedOut || userClosed) return;
    showError(errorBox, dropText(ev, wasConnected, target));
    // A refused upgrade looks the same whatever the cause: if it was an expired login,
    // the API answers 401 and the app goes to the login page.
    if (!wasConnected && !signal.aborted) getMe().catch(() => {});
  });

  // ---- toolbar --------------------------------------------------------------------------------
  refreshBtn.addEventListener('click', () => {
    send(refreshMsg());
    canvas.focus({ preventScroll: true });
  });
  dom.disconnectBtn.addEventListener('click', () => {
    close();
    location.hash = '#/targets';
  });

  // ---- ending ---------------------------------------------------------------------------------
  function endSession(): void {
    if (phase === 'ended') return;
    phase = 'ended';
    input.end();
    refreshBtn.disabled = true;
    clipboard.enable(false);
    viewport.classList.add('ended');
    dom.frozenBanner.hidden = true;
    dom.observerBanner.hidden = true;
    if (!gotInit) {
      dom.spinner.hidden = true;
      dom.placeholderText.textContent = 'Not connected.';
    }
  }
  /** Closes the session on purpose (Disconnect button, navigating away). */
  function close(): void {
    if (phase === 'ended' && ws.readyState === WebSocket.CLOSED) return;
    userClosed = true;
    if (live()) input.releaseBeforeClose();
    endSession();
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000, 'closed by the user');
  }

  signal.addEventListener('abort', () => {
    close();
    window.clearTimeout(initTimer);
    view.dispose();
    input.dispose();
  });
}

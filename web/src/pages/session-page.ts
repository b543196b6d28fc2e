// `#/session/<name>`: the remote desktop viewer over the session WebSocket.

import { getMe } from '../api';
import type { PageContext } from '../context';
import { h, showError } from '../dom';
import { KeyTracker, type KeyAction } from '../model/keysym';
import { shell } from '../layout';
import { DesktopCanvas } from '../desktop';
import { FROZEN_BANNER_TEXT } from '../model/soc';
import {
  domButtonToBit,
  PointerSender,
  toDesktop,
  WheelAccumulator,
  wheelBits,
} from '../model/pointer';
import {
  ackMsg,
  clipboardMsg,
  deniedText,
  keyMsg,
  parseServerText,
  pointerMsg,
  refreshMsg,
  type ServerMessage,
} from '../model/protocol';
import { connectUrl, desktopSizeWish, SESSION_CHROME_FALLBACK, type DesktopSize } from '../model/session';
import { counters, resetCounters } from '../test-hooks';

/** How long to wait for `init` before giving up. */
export const INIT_TIMEOUT_MS = 20_000;
/** How long a Ctrl+V keydown waits for its paste event before it is forwarded anyway. */
const PASTE_WAIT_MS = 150;

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

export function renderSession(ctx: PageContext, target: string): void {
  const { signal } = ctx;
  resetCounters();
  const stats = counters();

  // ---- DOM ------------------------------------------------------------------------------------
  const main = shell(ctx.root, ctx.me, 'session', 'session-page');

  const status = h('span', { id: 'session-status', class: 'session-status', 'data-state': 'connecting', role: 'status' });
  const scaleBox = h('input', { id: 'scale-to-fit', type: 'checkbox', checked: true });
  const refreshBtn = h('button', { id: 'refresh', type: 'button', class: 'btn btn-small', title: 'Ask the target for a full repaint', disabled: true }, 'Refresh');
  const disconnectBtn = h('button', { id: 'disconnect', type: 'button', class: 'btn btn-small btn-danger' }, 'Disconnect');
  const errorBox = h('div', { id: 'session-error', class: 'session-error', role: 'alert', hidden: true });
  const frozenBanner = h('div', { id: 'session-frozen', class: 'frozen-banner', role: 'status', hidden: true }, FROZEN_BANNER_TEXT);
  const canvas = h('canvas', { id: 'session-canvas', tabindex: 0, width: 1, height: 1, hidden: true, 'aria-label': `Remote desktop of ${target}` });
  const spinner = h('span', { class: 'spinner', 'aria-hidden': 'true' });
  const placeholderText = h('span', null, `Connecting to ${target}…`);
  const placeholder = h('div', { class: 'viewport-placeholder' }, spinner, placeholderText);
  const viewport = h('div', { id: 'session-viewport', class: 'session-viewport fit' }, placeholder, canvas, frozenBanner);

  const remoteClip = h('textarea', { id: 'remote-clipboard', readonly: true, rows: 5, spellcheck: 'false', placeholder: 'Text copied on the target appears here.' });
  const copyBtn = h('button', { id: 'copy-remote-clipboard', type: 'button', class: 'btn btn-small' }, 'Copy');
  const localClip = h('textarea', { id: 'local-clipboard', rows: 5, spellcheck: 'false', placeholder: 'Type or paste text, then send it to the target’s clipboard.' });
  const sendClipBtn = h('button', { id: 'send-clipboard', type: 'button', class: 'btn btn-small btn-primary', disabled: true }, 'Send to target');
  const clipMsg = h('div', { id: 'clipboard-message', class: 'clipboard-message', role: 'status' });

  main.append(
    h(
      'div',
      { class: 'session-toolbar' },
      h('span', { class: 'session-target' }, h('span', { class: 'muted' }, 'Target '), h('strong', { id: 'session-target' }, target)),
      status,
      h('span', { class: 'toolbar-spacer' }),
      h('label', { class: 'check', for: 'scale-to-fit' }, scaleBox, ' Scale to fit'),
      refreshBtn,
      disconnectBtn,
    ),
    errorBox,
    h(
      'div',
      { class: 'session-body' },
      viewport,
      h(
        'aside',
        { class: 'clipboard-panel', 'aria-label': 'Clipboard' },
        h('h2', null, 'Clipboard'),
        h('div', { class: 'clip-head' }, h('label', { for: 'remote-clipboard' }, 'From the target'), copyBtn),
        remoteClip,
        h('label', { for: 'local-clipboard' }, 'To the target'),
        localClip,
        h('div', { class: 'clip-actions' }, sendClipBtn),
        clipMsg,
        h('p', { class: 'hint' }, 'Ctrl+V on the desktop also sends your clipboard first. Limit 128 KiB.'),
      ),
    ),
  );

  // ---- state ----------------------------------------------------------------------------------
  let phase: Phase = 'connecting';
  let gotInit = false;
  let gotError = false;
  let closedReason: string | null = null;
  let timedOut = false;
  let userClosed = false;

  const setStatus = (text: string, state: 'connecting' | 'connected' | 'disconnected') => {
    status.textContent = text;
    status.dataset.state = state;
  };
  setStatus(`Connecting to ${target}…`, 'connecting');

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
    fit: () => scaleBox.checked,
    onFramePainted: (seq) => {
      stats.framesPainted += 1;
      stats.lastSeq = seq;
      send(ackMsg(seq));
    },
  });
  scaleBox.addEventListener('change', () => {
    view.applyScale();
    if (live()) canvas.focus({ preventScroll: true });
  });

  const onText = (msg: ServerMessage) => {
    switch (msg.type) {
      case 'init':
        if (gotInit) return;
        gotInit = true;
        window.clearTimeout(initTimer);
        phase = 'connected';
        stats.sessionId = msg.session;
        placeholder.hidden = true;
        canvas.hidden = false;
        view.resize(msg.width, msg.height);
        setStatus('Connected', 'connected');
        refreshBtn.disabled = false;
        sendClipBtn.disabled = false;
        // The canvas is visible now; give it the keyboard.
        canvas.focus({ preventScroll: true });
        return;
      case 'resize':
        view.resize(msg.width, msg.height);
        return;
      case 'frozen':
        frozenBanner.hidden = !msg.frozen;
        return;
      case 'denied':
        clipMsg.textContent = deniedText(msg.action, msg.reason);
        clipMsg.classList.add('is-error');
        return;
      case 'clipboard':
        remoteClip.value = msg.text;
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
        setStatus(msg.reason ? `Disconnected: ${msg.reason}` : 'Disconnected: the session ended', 'disconnected');
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
    setStatus('Disconnected', 'disconnected');
    if (gotError || timedOut || userClosed) return;
    // 1005 (no status) and 1006 (abnormal: refused upgrade, dropped TCP) carry no information.
    const detail = ev.code && ev.code !== 1005 && ev.code !== 1006 ? ` (close code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})` : '';
    if (wasConnected) {
      showError(errorBox, `The connection to the gateway was lost${detail}.`);
    } else {
      showError(
        errorBox,
        `The gateway refused or dropped the connection to ${target}${detail}. You may not have access to this target, or the gateway is unreachable.`,
      );
      // A refused upgrade looks the same whatever the cause: if it was an expired login,
      // the API answers 401 and the app goes to the login page.
      if (!signal.aborted) getMe().catch(() => {});
    }
  });

  // ---- keyboard -------------------------------------------------------------------------------
  const keys = new KeyTracker();
  let pendingPaste: { actions: KeyAction[]; timer: number } | null = null;

  const sendKeys = (actions: KeyAction[]) => {
    for (const a of actions) send(keyMsg(a.keysym, a.down));
  };
  const flushPaste = () => {
    const p = pendingPaste;
    if (!p) return;
    pendingPaste = null;
    window.clearTimeout(p.timer);
    sendKeys(p.actions);
  };
  const isPasteShortcut = (e: KeyboardEvent) =>
    (((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === 'v' || e.key === 'V')) || (e.shiftKey && e.key === 'Insert'));

  const sendClipboard = (text: string): boolean => {
    const r = clipboardMsg(text);
    if (!r.ok) {
      clipMsg.textContent = r.error;
      clipMsg.classList.add('is-error');
      return false;
    }
    if (!live()) {
      clipMsg.textContent = 'Not connected.';
      clipMsg.classList.add('is-error');
      return false;
    }
    send(r.msg);
    clipMsg.textContent = `Sent ${text.length} character${text.length === 1 ? '' : 's'} to the target’s clipboard.`;
    clipMsg.classList.remove('is-error');
    return true;
  };

  canvas.addEventListener('keydown', (e) => {
    if (!live()) return;
    flushPaste();
    const actions = keys.down(e);
    if (isPasteShortcut(e)) {
      // Let the browser fire `paste` (we send the local clipboard first), then forward the key.
      pendingPaste = { actions, timer: window.setTimeout(flushPaste, PASTE_WAIT_MS) };
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    sendKeys(actions);
  });
  canvas.addEventListener('keyup', (e) => {
    if (!live()) return;
    e.preventDefault();
    e.stopPropagation();
    flushPaste();
    sendKeys(keys.up(e));
  });
  canvas.addEventListener('paste', (e) => {
    if (!live()) return;
    e.preventDefault();
    const text = e.clipboardData?.getData('text/plain') ?? '';
    if (text !== '') sendClipboard(text);
    flushPaste();
  });

  // ---- pointer --------------------------------------------------------------------------------
  const pointer = new PointerSender(
    (p) => send(pointerMsg(p.x, p.y, p.buttons)),
    (cb) => window.requestAnimationFrame(cb),
  );
  const wheel = new WheelAccumulator();
  let mask = 0;
  const at = (e: MouseEvent) => toDesktop(e.clientX, e.clientY, canvas.getBoundingClientRect(), view.width, view.height);

  canvas.addEventListener('mousedown', (e) => {
    if (!live()) return;
    e.preventDefault(); // no text selection, no middle-click autoscroll
    canvas.focus({ preventScroll: true });
    const bit = domButtonToBit(e.button);
    if (bit === 0) return;
    mask |= bit;
    const p = at(e);
    pointer.buttonChange(p.x, p.y, mask);
  });
  const onWindowMouseUp = (e: MouseEvent) => {
    if (!live()) return;
    const bit = domButtonToBit(e.button);
    if (bit === 0 || (mask & bit) === 0) return; // not a press that started on the canvas
    mask &= ~bit;
    const p = at(e);
    pointer.buttonChange(p.x, p.y, mask);
  };
  const onWindowMouseMove = (e: MouseEvent) => {
    if (!live()) return;
    // Over the canvas, or anywhere while dragging (coordinates clamp to the desktop edge).
    if (e.target !== canvas && mask === 0) return;
    const p = at(e);
    pointer.move(p.x, p.y, mask);
  };
  window.addEventListener('mouseup', onWindowMouseUp);
  window.addEventListener('mousemove', onWindowMouseMove);
  canvas.addEventListener('contextmenu', (e) => e.preventDefault());
  canvas.addEventListener(
    'wheel',
    (e) => {
      if (!live()) return;
      e.preventDefault();
      const n = wheel.push(e.deltaX, e.deltaY, e.deltaMode);
      const bits = wheelBits(n.x, n.y);
      if (bits.length === 0) return;
      const p = at(e);
      pointer.wheel(p.x, p.y, bits);
    },
    { passive: false },
  );

  // ---- focus loss: release everything held -----------------------------------------------------
  const releaseAll = () => {
    flushPaste();
    if (live()) {
      sendKeys(keys.releaseAll());
      if (mask !== 0) {
        mask = 0;
        pointer.releaseAll();
      }
    } else {
      keys.releaseAll();
      mask = 0;
    }
  };
  const onVisibility = () => {
    if (document.visibilityState === 'hidden') releaseAll();
  };
  canvas.addEventListener('blur', releaseAll);
  window.addEventListener('blur', releaseAll);
  document.addEventListener('visibilitychange', onVisibility);

  // ---- toolbar and clipboard ---------------------------------------------------------------------
  refreshBtn.addEventListener('click', () => {
    send(refreshMsg());
    canvas.focus({ preventScroll: true });
  });
  sendClipBtn.addEventListener('click', () => {
    sendClipboard(localClip.value);
  });
  copyBtn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(remoteClip.value);
      clipMsg.textContent = 'Copied to your clipboard.';
      clipMsg.classList.remove('is-error');
    } catch {
      remoteClip.select();
      clipMsg.textContent = 'Selected: press Ctrl+C to copy.';
      clipMsg.classList.remove('is-error');
    }
  });
  disconnectBtn.addEventListener('click', () => {
    close();
    location.hash = '#/targets';
  });

  // ---- ending ---------------------------------------------------------------------------------
  function endSession(): void {
    if (phase === 'ended') return;
    phase = 'ended';
    keys.releaseAll();
    pointer.cancel();
    mask = 0;
    flushPendingPasteSilently();
    refreshBtn.disabled = true;
    sendClipBtn.disabled = true;
    viewport.classList.add('ended');
    frozenBanner.hidden = true;
    if (!gotInit) {
      spinner.hidden = true;
      placeholderText.textContent = 'Not connected.';
    }
  }
  function flushPendingPasteSilently(): void {
    if (pendingPaste) window.clearTimeout(pendingPaste.timer);
    pendingPaste = null;
  }
  /** Closes the session on purpose (Disconnect button, navigating away). */
  function close(): void {
    if (phase === 'ended' && ws.readyState === WebSocket.CLOSED) return;
    userClosed = true;
    if (live()) {
      // Leave nothing held down on the target.
      sendKeys(keys.releaseAll());
      pointer.flush();
      pointer.releaseAll();
    }
    endSession();
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000, 'closed by the user');
  }

  signal.addEventListener('abort', () => {
    close();
    window.clearTimeout(initTimer);
    view.dispose();
    window.removeEventListener('mouseup', onWindowMouseUp);
    window.removeEventListener('mousemove', onWindowMouseMove);
    window.removeEventListener('blur', releaseAll);
    document.removeEventListener('visibilitychange', onVisibility);
  });
}

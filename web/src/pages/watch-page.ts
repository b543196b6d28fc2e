// `#/watch/<session id>`: the security team watches a live session, view only. Same server
// messages as the user's session page and the same painting (../desktop); this page acknowledges
// frames and sends nothing else: no keyboard, pointer or clipboard is forwarded.

import { killSession, listSessions, type SessionInfo } from '../api';
import type { PageContext } from '../context';
import { h, showError } from '../dom';
import { DesktopCanvas } from '../desktop';
import { shell } from '../layout';
import { ackMsg, parseServerText } from '../model/protocol';
import { isSocRole, watchEndText, watchTitle, watchUrl } from '../model/soc';
import { counters, resetCounters } from '../test-hooks';
import { reasonForm } from './reason-form';
import { notAllowed } from './soc-page';
import { errorMessage } from './util';

export async function renderWatch(ctx: PageContext, id: string): Promise<void> {
  const { signal } = ctx;
  resetCounters();
  const stats = counters();
  const main = shell(ctx.root, ctx.me, 'soc', 'session-page watch-page');
  if (!isSocRole(ctx.me.role)) {
    notAllowed(main);
    return;
  }

  const title = h('span', { id: 'watch-title', class: 'session-target' }, `Watching session ${id} — view only`);
  const status = h('span', { id: 'watch-status', class: 'session-status', 'data-state': 'connecting', role: 'status' }, 'Connecting…');
  const frozenBadge = h('span', { id: 'watch-frozen', class: 'frozen-badge', hidden: true, title: 'The user’s input is held' }, 'Frozen');
  const scaleBox = h('input', { id: 'watch-scale-to-fit', type: 'checkbox', checked: true });
  const back = h('a', { id: 'watch-back', class: 'btn btn-small', href: '#/soc' }, 'Back to the console');
  // The observer of a four-eyes session (or anyone of the team watching) can end it from here.
  const endBtn = h('button', { id: 'watch-end', type: 'button', class: 'btn btn-small btn-danger' }, 'End session');
  const endForm = reasonForm({
    kind: 'end',
    label: 'Why end this session?',
    confirm: 'End session',
    submit: (reason) => killSession(id, reason),
    aborted: () => signal.aborted,
  });
  endBtn.addEventListener('click', () => (endForm.isOpen() ? endForm.close() : endForm.open()));
  const errorBox = h('div', { id: 'watch-error', class: 'session-error', role: 'alert', hidden: true });
  // No tabindex: the canvas never takes the keyboard.
  const canvas = h('canvas', { id: 'watch-canvas', width: 1, height: 1, hidden: true, 'aria-label': 'Watched remote desktop (view only)' });
  const placeholderText = h('span', null, 'Connecting…');
  const spinner = h('span', { class: 'spinner', 'aria-hidden': 'true' });
  const placeholder = h('div', { class: 'viewport-placeholder' }, spinner, placeholderText);
  const viewport = h('div', { id: 'watch-viewport', class: 'session-viewport watch-viewport fit' }, placeholder, canvas);
  main.append(
    h(
      'div',
      { class: 'session-toolbar' },
      h('span', { class: 'view-only-badge' }, 'View only'),
      title,
      frozenBadge,
      status,
      h('span', { class: 'toolbar-spacer' }),
      h('label', { class: 'check', for: 'watch-scale-to-fit' }, scaleBox, ' Scale to fit'),
      endBtn,
      back,
    ),
    endForm.el,
    errorBox,
    h('div', { class: 'session-body' }, viewport),
  );

  const setStatus = (text: string, state: 'connecting' | 'connected' | 'disconnected') => {
    status.textContent = text;
    status.dataset.state = state;
  };
  const stop = (text: string) => {
    spinner.hidden = true;
    placeholderText.textContent = 'Not watching.';
    viewport.classList.add('ended');
    setStatus('Ended', 'disconnected');
    showError(errorBox, text);
  };

  // Who and what, from the live list (the socket's init names the target only).
  let session: SessionInfo | undefined;
  try {
    session = (await listSessions()).find((s) => s.id === id);
  } catch (err) {
    if (!signal.aborted) stop(errorMessage(err));
    return;
  }
  if (signal.aborted) return;
  if (!session || session.state === 'closed') {
    stop('This session is not live any more.');
    return;
  }
  const user = session.user;
  title.textContent = watchTitle(user, session.target);
  document.title = `Watching ${user} · Portcullis`;
  frozenBadge.hidden = session.frozen !== true;
  placeholderText.textContent = `Connecting to ${user}’s session…`;

  const ws = new WebSocket(watchUrl(location, id));
  ws.binaryType = 'arraybuffer';
  let gotInit = false;
  let ended = false;
  let error: string | null = null;
  let closedReason: string | null = null;

  const view = new DesktopCanvas({
    canvas,
    viewport,
    fit: () => scaleBox.checked,
    onFramePainted: (seq) => {
      stats.framesPainted += 1;
      stats.lastSeq = seq;
      if (ws.readyState === WebSocket.OPEN) ws.send(ackMsg(seq));
    },
    onBroken: (err) => {
      error ??= `The picture from the gateway could not be decoded (${err.message}). Watch again to go on.`;
      ws.close(1000, 'undecodable picture');
    },
  });
  scaleBox.addEventListener('change', () => view.applyScale());

  ws.addEventListener('message', (ev: MessageEvent) => {
    if (ended) return;
    if (ev.data instanceof ArrayBuffer) {
      view.binary(ev.data);
      return;
    }
    if (typeof ev.data !== 'string') return;
    const msg = parseServerText(ev.data);
    if (msg === null) return;
    switch (msg.type) {
      case 'init':
        if (gotInit) return;
        gotInit = true;
        stats.sessionId = msg.session;
        placeholder.hidden = true;
        canvas.hidden = false;
        view.resize(msg.width, msg.height);
        setStatus('Watching', 'connected');
        return;
      case 'resize':
        view.resize(msg.width, msg.height);
        return;
      case 'frozen':
        frozenBadge.hidden = !msg.frozen;
        return;
      case 'error':
        error = msg.message;
        return;
      case 'closed':
        closedReason = msg.reason;
        return;
      default:
        return; // clipboard and bell are the user's, not the watcher's
    }
  });

  ws.addEventListener('close', (ev: CloseEvent) => {
    if (ended) return;
    ended = true;
    stop(watchEndText({ error, closedReason, gotInit, code: ev.code }));
  });

  signal.addEventListener('abort', () => {
    ended = true;
    view.dispose();
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000, 'the watcher left');
  });
}

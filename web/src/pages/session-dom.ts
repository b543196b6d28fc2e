// The session page's markup (`#/session/<name>`): toolbar, error line, the desktop viewport with its
// canvas and frozen banner, and the clipboard panel. Built once; the other session parts get the
// elements they need from here.

import { h } from '../dom';
import { FROZEN_BANNER_TEXT } from '../model/soc';

/** The clipboard panel's elements. */
export interface ClipboardElements {
  /** What the target copied (read-only). */
  remoteClip: HTMLTextAreaElement;
  copyBtn: HTMLButtonElement;
  /** What the user sends to the target's clipboard. */
  localClip: HTMLTextAreaElement;
  sendClipBtn: HTMLButtonElement;
  /** The panel's status line (class `is-error` for errors). */
  clipMsg: HTMLElement;
}

/** The session page's elements. */
export interface SessionDom {
  /** `#session-status`, with `data-state` connecting / connected / disconnected. */
  status: HTMLElement;
  scaleBox: HTMLInputElement;
  refreshBtn: HTMLButtonElement;
  disconnectBtn: HTMLButtonElement;
  errorBox: HTMLElement;
  frozenBanner: HTMLElement;
  /** Four eyes: shown while no observer watches (the input is held). */
  observerBanner: HTMLElement;
  canvas: HTMLCanvasElement;
  spinner: HTMLElement;
  placeholderText: HTMLElement;
  /** Shown instead of the canvas until `init`. */
  placeholder: HTMLElement;
  viewport: HTMLElement;
  clipboard: ClipboardElements;
}

/** Builds the page into `main` (the shell's main element). */
export function buildSessionDom(main: HTMLElement, target: string): SessionDom {
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
  const observerBanner = h(
    'div',
    { id: 'session-observer', class: 'frozen-banner', role: 'status', hidden: true },
    'Waiting for an observer: this session needs someone of the security team watching. Your input is held until one joins.',
  );
  const viewport = h('div', { id: 'session-viewport', class: 'session-viewport fit' }, placeholder, canvas, frozenBanner, observerBanner);

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

  return {
    status,
    scaleBox,
    refreshBtn,
    disconnectBtn,
    errorBox,
    frozenBanner,
    observerBanner,
    canvas,
    spinner,
    placeholderText,
    placeholder,
    viewport,
    clipboard: { remoteClip, copyBtn, localClip, sendClipBtn, clipMsg },
  };
}

/** Sets the status line's text and `data-state`. */
export function setStatus(status: HTMLElement, text: string, state: 'connecting' | 'connected' | 'disconnected'): void {
  status.textContent = text;
  status.dataset.state = state;
}

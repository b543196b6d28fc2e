// The session page's clipboard panel: shows what the target copied, sends text to the target's
// clipboard (the Send button and pastes on the canvas), and says what happened in its status line.

import { clipboardMsg, deniedText } from '../model/protocol';
import type { ClipboardElements } from './session-dom';

export interface SessionClipboardOptions {
  elements: ClipboardElements;
  /** Puts a message on the session WebSocket. */
  send: (msg: string) => void;
  /** True while the session is connected. */
  live: () => boolean;
}

export class SessionClipboard {
  private readonly el: ClipboardElements;
  private readonly o: SessionClipboardOptions;

  constructor(options: SessionClipboardOptions) {
    this.o = options;
    const el = options.elements;
    this.el = el;
    el.sendClipBtn.addEventListener('click', () => {
      this.send(el.localClip.value);
    });
    el.copyBtn.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(el.remoteClip.value);
        this.note('Copied to your clipboard.', false);
      } catch {
        el.remoteClip.select();
        this.note('Selected: press Ctrl+C to copy.', false);
      }
    });
  }

  /** Sends `text` to the target's clipboard; false (and says why) when it cannot. */
  send(text: string): boolean {
    const r = clipboardMsg(text);
    if (!r.ok) {
      this.note(r.error, true);
      return false;
    }
    if (!this.o.live()) {
      this.note('Not connected.', true);
      return false;
    }
    this.o.send(r.msg);
    this.note(`Sent ${text.length} character${text.length === 1 ? '' : 's'} to the target’s clipboard.`, false);
    return true;
  }

  /** The target copied `text`. */
  received(text: string): void {
    this.el.remoteClip.value = text;
  }

  /** The policy refused a clipboard transfer (or another action the panel reports). */
  denied(action: string, reason: string): void {
    this.note(deniedText(action, reason), true);
  }

  /** The Send button works only while the session is connected. */
  enable(on: boolean): void {
    this.el.sendClipBtn.disabled = !on;
  }

  private note(text: string, error: boolean): void {
    this.el.clipMsg.textContent = text;
    if (error) this.el.clipMsg.classList.add('is-error');
    else this.el.clipMsg.classList.remove('is-error');
  }
}

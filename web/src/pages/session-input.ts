// The session page's keyboard and mouse: keys (a Ctrl+V waits for its paste event so the pasted
// text reaches the target's clipboard first), pointer buttons, moves and the wheel, and releasing
// everything held when the focus goes or the session ends.

import type { DesktopCanvas } from '../desktop';
import { KeyTracker, type KeyAction } from '../model/keysym';
import { domButtonToBit, PointerSender, toDesktop, WheelAccumulator, wheelBits } from '../model/pointer';
import { keyMsg, pointerMsg } from '../model/protocol';

/** How long a Ctrl+V keydown waits for its paste event before it is forwarded anyway. */
const PASTE_WAIT_MS = 150;

export interface SessionInputOptions {
  canvas: HTMLCanvasElement;
  /** The desktop being shown: pointer coordinates map to its size. */
  view: Pick<DesktopCanvas, 'width' | 'height'>;
  /** Puts a message on the session WebSocket (nothing when it is not open). */
  send: (msg: string) => void;
  /** True while input may go to the target (connected, socket open). */
  live: () => boolean;
  /** Text pasted on the canvas: sent to the target's clipboard before the Ctrl+V key. */
  paste: (text: string) => void;
}

const isPasteShortcut = (e: KeyboardEvent) =>
  ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === 'v' || e.key === 'V')) || (e.shiftKey && e.key === 'Insert');

/** Listens on the canvas (and the window, for drags and focus loss) and sends input messages. */
export class SessionInput {
  private readonly o: SessionInputOptions;
  private readonly keys = new KeyTracker();
  private pendingPaste: { actions: KeyAction[]; timer: number } | null = null;
  private readonly pointer: PointerSender;
  private readonly wheel = new WheelAccumulator();
  /** Mouse buttons held (pressed on the canvas). */
  private mask = 0;

  constructor(options: SessionInputOptions) {
    this.o = options;
    const { canvas, send, live } = options;
    this.pointer = new PointerSender(
      (p) => send(pointerMsg(p.x, p.y, p.buttons)),
      (cb) => window.requestAnimationFrame(cb),
    );

    // ---- keyboard -----------------------------------------------------------------------------
    canvas.addEventListener('keydown', (e) => {
      if (!live()) return;
      this.flushPaste();
      const actions = this.keys.down(e);
      if (isPasteShortcut(e)) {
        // Let the browser fire `paste` (we send the local clipboard first), then forward the key.
        this.pendingPaste = { actions, timer: window.setTimeout(this.flushPaste, PASTE_WAIT_MS) };
        return;
      }
      e.preventDefault();
      e.stopPropagation();
      this.sendKeys(actions);
    });
    canvas.addEventListener('keyup', (e) => {
      if (!live()) return;
      e.preventDefault();
      e.stopPropagation();
      this.flushPaste();
      this.sendKeys(this.keys.up(e));
    });
    canvas.addEventListener('paste', (e) => {
      if (!live()) return;
      e.preventDefault();
      const text = e.clipboardData?.getData('text/plain') ?? '';
      if (text !== '') options.paste(text);
      this.flushPaste();
    });

    // ---- pointer ------------------------------------------------------------------------------
    canvas.addEventListener('mousedown', (e) => {
      if (!live()) return;
      e.preventDefault(); // no text selection, no middle-click autoscroll
      canvas.focus({ preventScroll: true });
      const bit = domButtonToBit(e.button);
      if (bit === 0) return;
      this.mask |= bit;
      const p = this.at(e);
      this.pointer.buttonChange(p.x, p.y, this.mask);
    });
    window.addEventListener('mouseup', this.onWindowMouseUp);
    window.addEventListener('mousemove', this.onWindowMouseMove);
    canvas.addEventListener('contextmenu', (e) => e.preventDefault());
    canvas.addEventListener(
      'wheel',
      (e) => {
        if (!live()) return;
        e.preventDefault();
        const n = this.wheel.push(e.deltaX, e.deltaY, e.deltaMode);
        const bits = wheelBits(n.x, n.y);
        if (bits.length === 0) return;
        const p = this.at(e);
        this.pointer.wheel(p.x, p.y, bits);
      },
      { passive: false },
    );

    // ---- focus loss: release everything held --------------------------------------------------
    canvas.addEventListener('blur', this.releaseAll);
    window.addEventListener('blur', this.releaseAll);
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  /** Focus lost: releases every key and button held (on the target too while connected). */
  readonly releaseAll = (): void => {
    this.flushPaste();
    if (this.o.live()) {
      this.sendKeys(this.keys.releaseAll());
      if (this.mask !== 0) {
        this.mask = 0;
        this.pointer.releaseAll();
      }
    } else {
      this.keys.releaseAll();
      this.mask = 0;
    }
  };

  /** Closing on purpose while connected: leaves nothing held down on the target. */
  releaseBeforeClose(): void {
    this.sendKeys(this.keys.releaseAll());
    this.pointer.flush();
    this.pointer.releaseAll();
  }

  /** The session ended: forgets what is held and drops pending input, sending nothing. */
  end(): void {
    this.keys.releaseAll();
    this.pointer.cancel();
    this.mask = 0;
    if (this.pendingPaste) window.clearTimeout(this.pendingPaste.timer);
    this.pendingPaste = null;
  }

  /** The page goes: removes the listeners outside the canvas. */
  dispose(): void {
    window.removeEventListener('mouseup', this.onWindowMouseUp);
    window.removeEventListener('mousemove', this.onWindowMouseMove);
    window.removeEventListener('blur', this.releaseAll);
    document.removeEventListener('visibilitychange', this.onVisibility);
  }

  private sendKeys(actions: KeyAction[]): void {
    for (const a of actions) this.o.send(keyMsg(a.keysym, a.down));
  }

  private readonly flushPaste = (): void => {
    const p = this.pendingPaste;
    if (!p) return;
    this.pendingPaste = null;
    window.clearTimeout(p.timer);
    this.sendKeys(p.actions);
  };

  private at(e: MouseEvent) {
    const { canvas, view } = this.o;
    return toDesktop(e.clientX, e.clientY, canvas.getBoundingClientRect(), view.width, view.height);
  }

  private readonly onWindowMouseUp = (e: MouseEvent): void => {
    if (!this.o.live()) return;
    const bit = domButtonToBit(e.button);
    if (bit === 0 || (this.mask & bit) === 0) return; // not a press that started on the canvas
    this.mask &= ~bit;
    const p = this.at(e);
    this.pointer.buttonChange(p.x, p.y, this.mask);
  };

  private readonly onWindowMouseMove = (e: MouseEvent): void => {
    if (!this.o.live()) return;
    // Over the canvas, or anywhere while dragging (coordinates clamp to the desktop edge).
    if (e.target !== this.o.canvas && this.mask === 0) return;
    const p = this.at(e);
    this.pointer.move(p.x, p.y, this.mask);
  };

  private readonly onVisibility = (): void => {
    if (document.visibilityState === 'hidden') this.releaseAll();
  };
}

// Pointer mapping: DOM mouse/wheel events → `{"t":"pointer","x","y","buttons"}` messages.
//
// Pure logic (no DOM access) so it can be unit tested: coordinate mapping, button masks,
// wheel notches and the move coalescer.

/** Button mask bits of the protocol. */
export const BTN = {
  LEFT: 1,
  MIDDLE: 2,
  RIGHT: 4,
  WHEEL_UP: 8,
  WHEEL_DOWN: 16,
  WHEEL_LEFT: 32,
  WHEEL_RIGHT: 64,
} as const;

/**
 * Converts DOM `MouseEvent.buttons` (1 primary, 2 secondary/right, 4 auxiliary/middle) to the
 * protocol mask (1 left, 2 middle, 4 right). Back/forward buttons are dropped.
 */
export function domButtonsToMask(domButtons: number): number {
  let m = 0;
  if (domButtons & 1) m |= BTN.LEFT;
  if (domButtons & 2) m |= BTN.RIGHT;
  if (domButtons & 4) m |= BTN.MIDDLE;
  return m;
}

/** The protocol bit of DOM `MouseEvent.button` (0 main, 1 middle, 2 right), 0 for others. */
export function domButtonToBit(button: number): number {
  switch (button) {
    case 0:
      return BTN.LEFT;
    case 1:
      return BTN.MIDDLE;
    case 2:
      return BTN.RIGHT;
    default:
      return 0;
  }
}

/** What getBoundingClientRect gives. */
export interface RectLike {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** A desktop position. */
export interface Point {
  x: number;
  y: number;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * Maps a client (viewport) position to desktop coordinates, given the canvas's on-screen box and
 * the desktop size. Works for any CSS scale; clamps to the desktop.
 */
export function toDesktop(
  clientX: number,
  clientY: number,
  rect: RectLike,
  desktopWidth: number,
  desktopHeight: number,
): Point {
  if (desktopWidth <= 0 || desktopHeight <= 0 || rect.width <= 0 || rect.height <= 0) {
    return { x: 0, y: 0 };
  }
  const x = Math.floor(((clientX - rect.left) * desktopWidth) / rect.width);
  const y = Math.floor(((clientY - rect.top) * desktopHeight) / rect.height);
  return { x: clamp(x, 0, desktopWidth - 1), y: clamp(y, 0, desktopHeight - 1) };
}

/**
 * CSS size of a W×H desktop fitted into an available box, preserving aspect ratio and never
 * upscaling beyond 1:1. Returns whole CSS pixels (at least 1).
 */
export function fitSize(
  desktopWidth: number,
  desktopHeight: number,
  availWidth: number,
  availHeight: number,
): { width: number; height: number; scale: number } {
  if (desktopWidth <= 0 || desktopHeight <= 0) return { width: 0, height: 0, scale: 1 };
  const scale = Math.max(
    0,
    Math.min(1, availWidth / desktopWidth, availHeight / desktopHeight),
  );
  return {
    width: Math.max(1, Math.floor(desktopWidth * scale)),
    height: Math.max(1, Math.floor(desktopHeight * scale)),
    scale,
  };
}

/** WheelEvent.deltaMode values. */
export const DOM_DELTA_PIXEL = 0;
export const DOM_DELTA_LINE = 1;
export const DOM_DELTA_PAGE = 2;

/** Pixels of scrolling that make one wheel notch. */
export const PIXELS_PER_NOTCH = 50;
/** Notches one page of scrolling makes. */
const NOTCHES_PER_PAGE = 3;
/** At most this many notches per direction from one event (guards against runaway deltas). */
const MAX_NOTCHES_PER_EVENT = 10;

/**
 * Turns wheel deltas into whole notches, keeping the remainder (smooth trackpads send many small
 * deltas). Positive y is down, positive x is right. Reversing direction drops the remainder.
 */
export class WheelAccumulator {
  private accX = 0;
  private accY = 0;

  push(deltaX: number, deltaY: number, deltaMode: number): { x: number; y: number } {
    const unit =
      deltaMode === DOM_DELTA_LINE
        ? PIXELS_PER_NOTCH
        : deltaMode === DOM_DELTA_PAGE
          ? PIXELS_PER_NOTCH * NOTCHES_PER_PAGE
          : 1;
    this.accX = WheelAccumulator.add(this.accX, deltaX * unit);
    this.accY = WheelAccumulator.add(this.accY, deltaY * unit);
    const x = WheelAccumulator.take(this.accX);
    const y = WheelAccumulator.take(this.accY);
    this.accX -= x * PIXELS_PER_NOTCH;
    this.accY -= y * PIXELS_PER_NOTCH;
    return {
      x: clamp(x, -MAX_NOTCHES_PER_EVENT, MAX_NOTCHES_PER_EVENT),
      y: clamp(y, -MAX_NOTCHES_PER_EVENT, MAX_NOTCHES_PER_EVENT),
    };
  }

  reset(): void {
    this.accX = 0;
    this.accY = 0;
  }

  private static add(acc: number, delta: number): number {
    if (!Number.isFinite(delta) || delta === 0) return acc;
    if (acc !== 0 && Math.sign(acc) !== Math.sign(delta)) acc = 0;
    return acc + delta;
  }

  private static take(acc: number): number {
    return Math.trunc(acc / PIXELS_PER_NOTCH) || 0; // no -0
  }
}

/**
 * The wheel bits to send for signed notch counts: one entry per notch, each sent as a press
 * (held buttons | bit) followed by a release (held buttons).
 */
export function wheelBits(notchesX: number, notchesY: number): number[] {
  const out: number[] = [];
  const ny = Math.abs(notchesY);
  const nx = Math.abs(notchesX);
  for (let i = 0; i < ny; i++) out.push(notchesY < 0 ? BTN.WHEEL_UP : BTN.WHEEL_DOWN);
  for (let i = 0; i < nx; i++) out.push(notchesX < 0 ? BTN.WHEEL_LEFT : BTN.WHEEL_RIGHT);
  return out;
}

/** A pointer message's content. */
export interface PointerState {
  x: number;
  y: number;
  buttons: number;
}

/**
 * Sends pointer state, coalescing moves to at most one per scheduled tick (an animation frame)
 * while never dropping or reordering button changes: a button change first flushes the pending
 * move, then goes out at once.
 */
export class PointerSender {
  private pending: Point | null = null;
  private scheduled = false;
  private last: PointerState | null = null;
  private mask = 0;

  /**
   * @param send delivers one pointer message
   * @param schedule runs a callback later (requestAnimationFrame in the browser)
   */
  constructor(
    private readonly send: (p: PointerState) => void,
    private readonly schedule: (cb: () => void) => void,
  ) {}

  /** The button mask last sent (or about to be). */
  get buttons(): number {
    return this.mask;
  }

  /** The pointer moved; `buttons` is the held mask (a change is sent at once, not coalesced). */
  move(x: number, y: number, buttons: number): void {
    if (buttons !== this.mask) {
      this.buttonChange(x, y, buttons);
      return;
    }
    this.pending = { x, y };
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** A button went down or up: pending move first, then the new state, immediately. */
  buttonChange(x: number, y: number, buttons: number): void {
    this.flush();
    this.mask = buttons;
    this.emit({ x, y, buttons });
  }

  /** Wheel notches at (x, y): each bit is pressed and released, held buttons kept. */
  wheel(x: number, y: number, bits: number[]): void {
    if (bits.length === 0) return;
    this.flush();
    for (const bit of bits) {
      this.emit({ x, y, buttons: this.mask | bit });
      this.emit({ x, y, buttons: this.mask });
    }
  }

  /** Sends the pending move now, if any. */
  flush(): void {
    const p = this.pending;
    if (p === null) return;
    this.pending = null;
    const last = this.last;
    if (last !== null && last.x === p.x && last.y === p.y && last.buttons === this.mask) return;
    this.emit({ x: p.x, y: p.y, buttons: this.mask });
  }

  /** Releases all held buttons (blur) at the last known position. */
  releaseAll(): void {
    if (this.mask === 0) return;
    const at = this.pending ?? this.last ?? { x: 0, y: 0 };
    this.buttonChange(at.x, at.y, 0);
  }

  /** Drops any pending move (the session ended). */
  cancel(): void {
    this.pending = null;
  }

  private emit(p: PointerState): void {
    this.last = p;
    this.send(p);
  }
}

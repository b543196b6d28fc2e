import { describe, expect, it } from 'vitest';
import {
  BTN,
  DOM_DELTA_LINE,
  DOM_DELTA_PAGE,
  DOM_DELTA_PIXEL,
  domButtonToBit,
  domButtonsToMask,
  fitSize,
  PointerSender,
  type PointerState,
  toDesktop,
  WheelAccumulator,
  wheelBits,
} from './pointer';

describe('buttons', () => {
  it('converts DOM buttons (right=2, middle=4) to the protocol mask (middle=2, right=4)', () => {
    expect(domButtonsToMask(0)).toBe(0);
    expect(domButtonsToMask(1)).toBe(BTN.LEFT);
    expect(domButtonsToMask(2)).toBe(BTN.RIGHT);
    expect(domButtonsToMask(4)).toBe(BTN.MIDDLE);
    expect(domButtonsToMask(7)).toBe(7);
    expect(domButtonsToMask(3)).toBe(BTN.LEFT | BTN.RIGHT);
    expect(domButtonsToMask(8 | 16)).toBe(0);
  });

  it('maps MouseEvent.button to a protocol bit', () => {
    expect(domButtonToBit(0)).toBe(1);
    expect(domButtonToBit(1)).toBe(2);
    expect(domButtonToBit(2)).toBe(4);
    expect(domButtonToBit(3)).toBe(0);
    expect(domButtonToBit(4)).toBe(0);
  });
});

describe('toDesktop', () => {
  const rect = { left: 100, top: 50, width: 400, height: 300 };

  it('maps 1:1', () => {
    expect(toDesktop(100, 50, rect, 400, 300)).toEqual({ x: 0, y: 0 });
    expect(toDesktop(150.5, 60.9, rect, 400, 300)).toEqual({ x: 50, y: 10 });
    expect(toDesktop(499, 349, rect, 400, 300)).toEqual({ x: 399, y: 299 });
  });

  it('maps a scaled canvas', () => {
    // An 800×600 desktop shown at 400×300.
    expect(toDesktop(300, 200, rect, 800, 600)).toEqual({ x: 400, y: 300 });
    expect(toDesktop(101, 51, rect, 800, 600)).toEqual({ x: 2, y: 2 });
  });

  it('clamps to the desktop', () => {
    expect(toDesktop(0, 0, rect, 800, 600)).toEqual({ x: 0, y: 0 });
    expect(toDesktop(5000, 5000, rect, 800, 600)).toEqual({ x: 799, y: 599 });
    expect(toDesktop(500, 350, rect, 800, 600)).toEqual({ x: 799, y: 599 });
  });

  it('survives degenerate sizes', () => {
    expect(toDesktop(10, 10, { left: 0, top: 0, width: 0, height: 0 }, 800, 600)).toEqual({
      x: 0,
      y: 0,
    });
    expect(toDesktop(10, 10, rect, 0, 0)).toEqual({ x: 0, y: 0 });
  });
});

describe('fitSize', () => {
  it('shrinks preserving aspect ratio', () => {
    expect(fitSize(1600, 1200, 800, 800)).toEqual({ width: 800, height: 600, scale: 0.5 });
    expect(fitSize(1600, 1200, 1600, 600)).toEqual({ width: 800, height: 600, scale: 0.5 });
  });

  it('never upscales', () => {
    expect(fitSize(640, 480, 2000, 2000)).toEqual({ width: 640, height: 480, scale: 1 });
  });

  it('handles an empty area', () => {
    expect(fitSize(640, 480, 0, 0).width).toBe(1);
    expect(fitSize(0, 0, 100, 100)).toEqual({ width: 0, height: 0, scale: 1 });
  });
});

describe('WheelAccumulator', () => {
  it('makes one notch per 50 pixels and keeps the remainder', () => {
    const w = new WheelAccumulator();
    expect(w.push(0, 30, DOM_DELTA_PIXEL)).toEqual({ x: 0, y: 0 });
    expect(w.push(0, 30, DOM_DELTA_PIXEL)).toEqual({ x: 0, y: 1 });
    expect(w.push(0, 100, DOM_DELTA_PIXEL)).toEqual({ x: 0, y: 2 });
    expect(w.push(0, -120, DOM_DELTA_PIXEL)).toEqual({ x: 0, y: -2 });
    expect(w.push(75, 0, DOM_DELTA_PIXEL)).toEqual({ x: 1, y: 0 });
  });

  it('makes one notch per line and three per page', () => {
    const w = new WheelAccumulator();
    expect(w.push(0, 1, DOM_DELTA_LINE)).toEqual({ x: 0, y: 1 });
    expect(w.push(0, -3, DOM_DELTA_LINE)).toEqual({ x: 0, y: -3 });
    expect(w.push(-1, 0, DOM_DELTA_PAGE)).toEqual({ x: -3, y: 0 });
  });

  it('drops the remainder when the direction reverses', () => {
    const w = new WheelAccumulator();
    expect(w.push(0, 40, DOM_DELTA_PIXEL)).toEqual({ x: 0, y: 0 });
    expect(w.push(0, -40, DOM_DELTA_PIXEL)).toEqual({ x: 0, y: 0 });
    expect(w.push(0, -10, DOM_DELTA_PIXEL)).toEqual({ x: 0, y: -1 });
  });

  it('caps runaway deltas', () => {
    const w = new WheelAccumulator();
    expect(w.push(0, 1e9, DOM_DELTA_PIXEL).y).toBe(10);
    expect(w.push(0, Number.NaN, DOM_DELTA_PIXEL).y).toBe(0);
  });
});

describe('wheelBits', () => {
  it('gives one bit per notch', () => {
    expect(wheelBits(0, -2)).toEqual([BTN.WHEEL_UP, BTN.WHEEL_UP]);
    expect(wheelBits(0, 1)).toEqual([BTN.WHEEL_DOWN]);
    expect(wheelBits(-1, 0)).toEqual([BTN.WHEEL_LEFT]);
    expect(wheelBits(2, 1)).toEqual([BTN.WHEEL_DOWN, BTN.WHEEL_RIGHT, BTN.WHEEL_RIGHT]);
    expect(wheelBits(0, 0)).toEqual([]);
  });
});

describe('PointerSender', () => {
  function setup() {
    const sent: PointerState[] = [];
    const queue: (() => void)[] = [];
    const s = new PointerSender(
      (p) => sent.push(p),
      (cb) => queue.push(cb),
    );
    const tick = () => {
      const q = queue.splice(0);
      for (const cb of q) cb();
    };
    return { s, sent, tick, queue };
  }

  it('coalesces moves to one per tick, keeping the latest position', () => {
    const { s, sent, tick, queue } = setup();
    s.move(1, 1, 0);
    s.move(2, 2, 0);
    s.move(3, 3, 0);
    expect(sent).toEqual([]);
    expect(queue.length).toBe(1);
    tick();
    expect(sent).toEqual([{ x: 3, y: 3, buttons: 0 }]);
    tick();
    expect(sent.length).toBe(1);
    s.move(4, 4, 0);
    tick();
    expect(sent).toEqual([
      { x: 3, y: 3, buttons: 0 },
      { x: 4, y: 4, buttons: 0 },
    ]);
  });

  it('does not resend an unchanged position', () => {
    const { s, sent, tick } = setup();
    s.move(5, 5, 0);
    tick();
    s.move(5, 5, 0);
    tick();
    expect(sent).toEqual([{ x: 5, y: 5, buttons: 0 }]);
  });

  it('flushes the pending move before a button change and sends the change at once', () => {
    const { s, sent, tick } = setup();
    s.move(10, 10, 0);
    s.buttonChange(12, 12, BTN.LEFT);
    expect(sent).toEqual([
      { x: 10, y: 10, buttons: 0 },
      { x: 12, y: 12, buttons: 1 },
    ]);
    tick(); // the scheduled flush finds nothing pending
    expect(sent.length).toBe(2);
  });

  it('carries held buttons on moves (drag) and sends the release in order', () => {
    const { s, sent, tick } = setup();
    s.buttonChange(0, 0, BTN.LEFT);
    s.move(5, 5, BTN.LEFT);
    s.move(9, 9, BTN.LEFT);
    tick();
    s.move(20, 20, BTN.LEFT);
    s.buttonChange(21, 21, 0);
    expect(sent).toEqual([
      { x: 0, y: 0, buttons: 1 },
      { x: 9, y: 9, buttons: 1 },
      { x: 20, y: 20, buttons: 1 },
      { x: 21, y: 21, buttons: 0 },
    ]);
  });

  it('treats a move with a different mask as a button change', () => {
    const { s, sent } = setup();
    s.move(1, 1, BTN.RIGHT);
    expect(sent).toEqual([{ x: 1, y: 1, buttons: 4 }]);
    expect(s.buttons).toBe(4);
  });

  it('sends each wheel notch as press then release, keeping held buttons', () => {
    const { s, sent } = setup();
    s.move(3, 4, 0);
    s.wheel(7, 8, [BTN.WHEEL_DOWN, BTN.WHEEL_DOWN]);
    expect(sent).toEqual([
      { x: 3, y: 4, buttons: 0 },
      { x: 7, y: 8, buttons: 16 },
      { x: 7, y: 8, buttons: 0 },
      { x: 7, y: 8, buttons: 16 },
      { x: 7, y: 8, buttons: 0 },
    ]);
    sent.length = 0;
    s.buttonChange(7, 8, BTN.LEFT);
    s.wheel(7, 8, [BTN.WHEEL_UP]);
    expect(sent).toEqual([
      { x: 7, y: 8, buttons: 1 },
      { x: 7, y: 8, buttons: 9 },
      { x: 7, y: 8, buttons: 1 },
    ]);
  });

  it('releases held buttons at the last position', () => {
    const { s, sent } = setup();
    s.buttonChange(30, 40, BTN.LEFT | BTN.RIGHT);
    s.releaseAll();
    s.releaseAll();
    expect(sent).toEqual([
      { x: 30, y: 40, buttons: 5 },
      { x: 30, y: 40, buttons: 0 },
    ]);
  });

  it('drops a pending move on cancel', () => {
    const { s, sent, tick } = setup();
    s.move(1, 2, 0);
    s.cancel();
    tick();
    expect(sent).toEqual([]);
  });
});

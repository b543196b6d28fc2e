import { describe, expect, it } from 'vitest';
import { DESKTOP_MAX, DESKTOP_MIN, desktopSizeWish } from './pages/session';

describe('desktopSizeWish', () => {
  it('takes the window minus the chrome', () => {
    expect(desktopSizeWish(1400, 1000, 100, 280)).toEqual({ width: 1120, height: 900 });
    expect(desktopSizeWish(1920, 1080, 99)).toEqual({ width: 1920, height: 981 });
  });

  it('rounds down to whole pixels and an even width', () => {
    expect(desktopSizeWish(1401, 1000, 100, 280)).toEqual({ width: 1120, height: 900 });
    expect(desktopSizeWish(1123.7, 900.9, 0.5)).toEqual({ width: 1122, height: 900 });
    expect(desktopSizeWish(1025, 769, 0)).toEqual({ width: 1024, height: 769 });
  });

  it('clamps to at least 640x480', () => {
    expect(desktopSizeWish(800, 500, 100, 280)).toEqual({ width: 640, height: 480 });
    expect(desktopSizeWish(0, 0, 0)).toEqual(DESKTOP_MIN);
    expect(desktopSizeWish(300, 200, 400, 500)).toEqual(DESKTOP_MIN);
  });

  it('clamps to at most 4096x2160', () => {
    expect(desktopSizeWish(7680, 4320, 100, 280)).toEqual(DESKTOP_MAX);
    expect(desktopSizeWish(5000, 2000, 100)).toEqual({ width: 4096, height: 1900 });
  });

  it('ignores negative or non-finite chrome and survives non-finite sizes', () => {
    expect(desktopSizeWish(1280, 800, -50, Number.NaN)).toEqual({ width: 1280, height: 800 });
    expect(desktopSizeWish(Number.NaN, Number.POSITIVE_INFINITY, 0)).toEqual({ width: 640, height: 480 });
  });
});

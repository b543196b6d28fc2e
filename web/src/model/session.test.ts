import { describe, expect, it } from 'vitest';
import { connectUrl, DESKTOP_MAX, DESKTOP_MIN, desktopSizeWish } from './session';

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

describe('connectUrl', () => {
  it('uses wss on https and ws on http, encoding the name', () => {
    expect(connectUrl({ protocol: 'https:', host: 'gw.example:8443' }, 'web 1')).toBe(
      'wss://gw.example:8443/api/v1/targets/web%201/connect?batch=1',
    );
    expect(connectUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, 'a/b')).toBe(
      'ws://127.0.0.1:8080/api/v1/targets/a%2Fb/connect?batch=1',
    );
  });

  it('appends the wished desktop size as width and height', () => {
    expect(connectUrl({ protocol: 'https:', host: 'gw.example' }, 'rdp box', { width: 1120, height: 900 })).toBe(
      'wss://gw.example/api/v1/targets/rdp%20box/connect?batch=1&width=1120&height=900',
    );
    expect(connectUrl({ protocol: 'http:', host: 'h:1' }, 'a?b', { width: 640, height: 480 })).toBe(
      'ws://h:1/api/v1/targets/a%3Fb/connect?batch=1&width=640&height=480',
    );
    expect(connectUrl({ protocol: 'http:', host: 'h:1' }, 'x', undefined)).toBe('ws://h:1/api/v1/targets/x/connect?batch=1');
  });
});

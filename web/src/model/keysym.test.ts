import { describe, expect, it } from 'vitest';
import { charKeysym, KeyTracker, keysymFor } from './keysym';

const k = (key: string, code = '', location = 0) => ({ key, code, location });

describe('keysymFor', () => {
  it('maps printable ASCII to its code point', () => {
    expect(keysymFor(k('a', 'KeyA'))).toBe(0x61);
    expect(keysymFor(k('A', 'KeyA'))).toBe(0x41);
    expect(keysymFor(k(' ', 'Space'))).toBe(0x20);
    expect(keysymFor(k('~', 'Backquote'))).toBe(0x7e);
    expect(keysymFor(k('1', 'Digit1'))).toBe(0x31);
  });

  it('maps Latin-1 to its code point and other Unicode to 0x01000000 + code point', () => {
    expect(keysymFor(k('é', 'Quote'))).toBe(0xe9);
    expect(keysymFor(k('\u00a0'))).toBe(0xa0);
    expect(keysymFor(k('ÿ'))).toBe(0xff);
    expect(keysymFor(k('€', 'KeyE'))).toBe(0x010020ac);
    expect(keysymFor(k('ж', 'Semicolon'))).toBe(0x01000436);
    expect(keysymFor(k('😀'))).toBe(0x01000000 + 0x1f600);
    expect(charKeysym('\u007f')).toBe(0x0100007f);
  });

  it('maps special keys to X11 keysyms', () => {
    const cases: [string, number][] = [
      ['Backspace', 0xff08],
      ['Tab', 0xff09],
      ['Enter', 0xff0d],
      ['Escape', 0xff1b],
      ['Delete', 0xffff],
      ['Home', 0xff50],
      ['ArrowLeft', 0xff51],
      ['ArrowUp', 0xff52],
      ['ArrowRight', 0xff53],
      ['ArrowDown', 0xff54],
      ['PageUp', 0xff55],
      ['PageDown', 0xff56],
      ['End', 0xff57],
      ['Insert', 0xff63],
      ['F1', 0xffbe],
      ['F5', 0xffc2],
      ['F12', 0xffc9],
      ['CapsLock', 0xffe5],
      ['NumLock', 0xff7f],
      ['ContextMenu', 0xff67],
      ['PrintScreen', 0xff61],
      ['Pause', 0xff13],
      ['ScrollLock', 0xff14],
      ['AltGraph', 0xfe03],
    ];
    for (const [key, sym] of cases) expect(keysymFor(k(key, key)), key).toBe(sym);
  });

  it('tells left from right modifiers by code, or by location without a code', () => {
    expect(keysymFor(k('Shift', 'ShiftLeft', 1))).toBe(0xffe1);
    expect(keysymFor(k('Shift', 'ShiftRight', 2))).toBe(0xffe2);
    expect(keysymFor(k('Control', 'ControlLeft', 1))).toBe(0xffe3);
    expect(keysymFor(k('Control', 'ControlRight', 2))).toBe(0xffe4);
    expect(keysymFor(k('Alt', 'AltLeft', 1))).toBe(0xffe9);
    expect(keysymFor(k('Alt', 'AltRight', 2))).toBe(0xffea);
    expect(keysymFor(k('AltGraph', 'AltRight', 2))).toBe(0xfe03);
    expect(keysymFor(k('Meta', 'MetaLeft', 1))).toBe(0xffeb);
    expect(keysymFor(k('Meta', 'MetaRight', 2))).toBe(0xffec);
    expect(keysymFor(k('OS', 'OSLeft', 1))).toBe(0xffeb);
    expect(keysymFor(k('OS', 'OSRight', 2))).toBe(0xffec);
    expect(keysymFor(k('Shift', '', 2))).toBe(0xffe2);
    expect(keysymFor(k('Shift', '', 1))).toBe(0xffe1);
  });

  it('maps numpad keys by code', () => {
    for (let d = 0; d <= 9; d++) {
      expect(keysymFor(k(String(d), `Numpad${d}`, 3))).toBe(0xffb0 + d);
    }
    expect(keysymFor(k('Enter', 'NumpadEnter', 3))).toBe(0xff8d);
    expect(keysymFor(k('+', 'NumpadAdd', 3))).toBe(0xffab);
    expect(keysymFor(k('-', 'NumpadSubtract', 3))).toBe(0xffad);
    expect(keysymFor(k('*', 'NumpadMultiply', 3))).toBe(0xffaa);
    expect(keysymFor(k('/', 'NumpadDivide', 3))).toBe(0xffaf);
    expect(keysymFor(k('.', 'NumpadDecimal', 3))).toBe(0xffae);
    expect(keysymFor(k(',', 'NumpadDecimal', 3))).toBe(0xffae);
  });

  it('follows NumLock-off semantics on the numpad (navigation keys)', () => {
    expect(keysymFor(k('Home', 'Numpad7', 3))).toBe(0xff50);
    expect(keysymFor(k('ArrowUp', 'Numpad8', 3))).toBe(0xff52);
    expect(keysymFor(k('Insert', 'Numpad0', 3))).toBe(0xff63);
    expect(keysymFor(k('Delete', 'NumpadDecimal', 3))).toBe(0xffff);
    expect(keysymFor(k('Clear', 'Numpad5', 3))).toBe(0xff0b);
  });

  it('returns null for keys without a keysym', () => {
    expect(keysymFor(k('Dead', 'Quote'))).toBeNull();
    expect(keysymFor(k('Unidentified', ''))).toBeNull();
    expect(keysymFor(k('Process', 'KeyA'))).toBeNull();
    expect(keysymFor(k('', ''))).toBeNull();
    expect(keysymFor(k('ab', ''))).toBeNull();
  });
});

describe('KeyTracker', () => {
  it('releases the keysym the key was pressed with, even after modifiers changed', () => {
    const t = new KeyTracker();
    expect(t.down(k('Shift', 'ShiftLeft', 1))).toEqual([{ keysym: 0xffe1, down: true }]);
    expect(t.down(k('A', 'KeyA'))).toEqual([{ keysym: 0x41, down: true }]);
    expect(t.up(k('Shift', 'ShiftLeft', 1))).toEqual([{ keysym: 0xffe1, down: false }]);
    // Shift is up now, so the browser reports "a": the release must still be of "A".
    expect(t.up(k('a', 'KeyA'))).toEqual([{ keysym: 0x41, down: false }]);
    expect(t.size).toBe(0);
  });

  it('forwards auto-repeat as further downs of the held keysym', () => {
    const t = new KeyTracker();
    expect(t.down(k('x', 'KeyX'))).toEqual([{ keysym: 0x78, down: true }]);
    expect(t.down(k('x', 'KeyX'))).toEqual([{ keysym: 0x78, down: true }]);
    expect(t.down(k('x', 'KeyX'))).toEqual([{ keysym: 0x78, down: true }]);
    expect(t.up(k('x', 'KeyX'))).toEqual([{ keysym: 0x78, down: false }]);
  });

  it('releases the old keysym first when a held key comes down as something else', () => {
    const t = new KeyTracker();
    t.down(k('x', 'KeyX'));
    expect(t.down(k('X', 'KeyX'))).toEqual([
      { keysym: 0x78, down: false },
      { keysym: 0x58, down: true },
    ]);
    expect(t.up(k('x', 'KeyX'))).toEqual([{ keysym: 0x58, down: false }]);
  });

  it('ignores releases of keys it never pressed and keys without keysym', () => {
    const t = new KeyTracker();
    expect(t.up(k('a', 'KeyA'))).toEqual([]);
    expect(t.down(k('Dead', 'Quote'))).toEqual([]);
    expect(t.up(k('Dead', 'Quote'))).toEqual([]);
  });

  it('tells keys apart by key value when the browser gives no code', () => {
    const t = new KeyTracker();
    t.down(k('a', ''));
    t.down(k('b', ''));
    expect(t.size).toBe(2);
    expect(t.up(k('a', ''))).toEqual([{ keysym: 0x61, down: false }]);
  });

  it('releases everything held', () => {
    const t = new KeyTracker();
    t.down(k('Control', 'ControlLeft', 1));
    t.down(k('Alt', 'AltLeft', 1));
    t.down(k('Delete', 'Delete'));
    expect(t.releaseAll()).toEqual([
      { keysym: 0xffe3, down: false },
      { keysym: 0xffe9, down: false },
      { keysym: 0xffff, down: false },
    ]);
    expect(t.releaseAll()).toEqual([]);
    expect(t.up(k('Delete', 'Delete'))).toEqual([]);
  });
});

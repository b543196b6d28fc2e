import { describe, expect, it } from 'vitest';
import {
  ackMsg,
  clipboardMsg,
  insideDesktop,
  keyMsg,
  mimeOf,
  parseBinary,
  parseServerText,
  deniedText,
  pointerMsg,
  unbatch,
  utf8Length,
} from './protocol';

function bytes(...b: number[]): ArrayBuffer {
  return new Uint8Array(b).buffer;
}

describe('parseBinary', () => {
  it('decodes a rectangle (big-endian u16 fields, image after 10 bytes)', () => {
    const m = parseBinary(bytes(1, 1, 0x01, 0x02, 0x00, 0x03, 0x01, 0x00, 0x00, 0x20, 0xaa, 0xbb));
    expect(m).toMatchObject({ kind: 'rect', encoding: 1, x: 258, y: 3, width: 256, height: 32 });
    if (m.kind !== 'rect') throw new Error('not a rect');
    expect([...m.data]).toEqual([0xaa, 0xbb]);
  });

  it('decodes an end of frame (big-endian u32)', () => {
    expect(parseBinary(bytes(2, 0x01, 0x02, 0x03, 0x04))).toEqual({
      kind: 'frameEnd',
      seq: 0x01020304,
    });
    expect(parseBinary(bytes(2, 0xff, 0xff, 0xff, 0xff))).toEqual({
      kind: 'frameEnd',
      seq: 4294967295,
    });
  });

  it('decodes a copy (destination, source, size: big-endian u16 each)', () => {
    expect(
      parseBinary(bytes(3, 0x00, 0x05, 0x00, 0x06, 0xff, 0xff, 0x00, 0x02, 0x00, 0x46, 0x01, 0x00)),
    ).toEqual({ kind: 'copy', dx: 5, dy: 6, sx: 65535, sy: 2, width: 70, height: 256 });
  });

  it('rejects a copy cut short or padded', () => {
    const ok = [3, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6];
    expect(parseBinary(bytes(...ok))).toMatchObject({ kind: 'copy' });
    for (let len = 1; len < ok.length; len++) {
      expect(() => parseBinary(bytes(...ok.slice(0, len)))).toThrow();
    }
    expect(() => parseBinary(bytes(...ok, 0))).toThrow();
  });

  it('tells whether an area lies inside the desktop', () => {
    expect(insideDesktop(0, 0, 800, 600, 800, 600)).toBe(true);
    expect(insideDesktop(1, 0, 800, 600, 800, 600)).toBe(false);
    expect(insideDesktop(0, 599, 10, 2, 800, 600)).toBe(false);
    expect(insideDesktop(0, 0, 0, 10, 800, 600)).toBe(false);
    expect(insideDesktop(65535, 65535, 65535, 65535, 800, 600)).toBe(false);
  });

  it('reads the messages of a batch in place, each bounded by its own length', () => {
    const rect = [1, 3, 0, 1, 0, 2, 0, 3, 0, 4, 9, 8, 7];
    const end = [2, 0, 0, 0, 5];
    const buf = bytes(4, 0, 0, 0, rect.length, ...rect, 0, 0, 0, end.length, ...end);
    const parts = unbatch(buf);
    expect(parts).toEqual([[5, rect.length], [5 + rect.length + 4, end.length]]);
    const m = parseBinary(buf, ...parts[0]);
    expect(m).toMatchObject({ kind: 'rect', encoding: 3, x: 1, y: 2, width: 3, height: 4 });
    if (m.kind !== 'rect') throw new Error('not a rect');
    // The data ends with the part, not with the batch.
    expect([...m.data]).toEqual([9, 8, 7]);
    expect(parseBinary(buf, ...parts[1])).toEqual({ kind: 'frameEnd', seq: 5 });
    // A message that is not a batch is itself; a batch cut anywhere is refused or shorter.
    expect(unbatch(bytes(...end))).toEqual([[0, 5]]);
    const whole = new Uint8Array(buf);
    for (let cut = 2; cut < whole.length; cut++) {
      let got: Array<[number, number]> | null = null;
      try {
        got = unbatch(whole.slice(0, cut).buffer);
      } catch {
        continue;
      }
      expect(got.length, `cut at ${cut}`).toBeLessThan(2);
    }
    expect(() => unbatch(bytes(4, 0, 0, 0, 9, 1))).toThrow(/longer/);
    // Empty parts and a batch in a batch are refused whole.
    expect(() => unbatch(bytes(4, 0, 0, 0, 0, ...[0, 0, 0, 5], ...end))).toThrow(/no message/);
    expect(() => unbatch(bytes(4, 0, 0, 0, 10, 4, 0, 0, 0, 5, ...end))).toThrow(/no message/);
    // A part too short for its kind is refused like a message.
    expect(() => parseBinary(bytes(4, 0, 0, 0, 5, 1, 0, 0, 0, 0), 5, 5)).toThrow(/short/);
  });

  it('rejects short and unknown messages', () => {
    expect(() => parseBinary(bytes())).toThrow();
    expect(() => parseBinary(bytes(1, 1, 0))).toThrow();
    expect(() => parseBinary(bytes(2, 0, 0))).toThrow();
    expect(() => parseBinary(bytes(9))).toThrow();
  });

  it('names the encodings', () => {
    expect(mimeOf(1)).toBe('image/png');
    expect(mimeOf(2)).toBe('image/jpeg');
    expect(mimeOf(3)).toBeNull(); // fill is drawn, not decoded
    expect(mimeOf(4)).toBeNull();
  });
});

describe('parseServerText', () => {
  it('parses every message', () => {
    expect(
      parseServerText('{"type":"init","session":"u-1","target":"web","width":800,"height":600}'),
    ).toEqual({ type: 'init', session: 'u-1', target: 'web', width: 800, height: 600 });
    expect(parseServerText('{"type":"resize","width":1024,"height":768}')).toEqual({
      type: 'resize',
      width: 1024,
      height: 768,
    });
    expect(parseServerText('{"type":"clipboard","text":"hi"}')).toEqual({
      type: 'clipboard',
      text: 'hi',
    });
    expect(parseServerText('{"type":"bell"}')).toEqual({ type: 'bell' });
    expect(
      parseServerText('{"type":"error","code":"target_auth_failed","message":"wrong password"}'),
    ).toEqual({ type: 'error', code: 'target_auth_failed', message: 'wrong password' });
    expect(parseServerText('{"type":"closed","reason":"target closed"}')).toEqual({
      type: 'closed',
      reason: 'target closed',
    });
    expect(parseServerText('{"type":"frozen","frozen":true}')).toEqual({ type: 'frozen', frozen: true });
    expect(parseServerText('{"type":"frozen","frozen":false}')).toEqual({ type: 'frozen', frozen: false });
    expect(parseServerText('{"type":"observer","present":false}')).toEqual({ type: 'observer', present: false });
    expect(parseServerText('{"type":"observer"}')).toBeNull();
  });

  it('rejects malformed messages', () => {
    expect(parseServerText('nope')).toBeNull();
    expect(parseServerText('[]')).toBeNull();
    expect(parseServerText('{"type":"launch"}')).toBeNull();
    expect(parseServerText('{"type":"init","session":"x","width":0,"height":5}')).toBeNull();
    expect(parseServerText('{"type":"resize","width":"1","height":5}')).toBeNull();
    expect(parseServerText('{"type":"clipboard"}')).toBeNull();
    expect(parseServerText('{"type":"frozen"}')).toBeNull();
    expect(parseServerText('{"type":"denied","action":"clipboard_to_target","reason":"r"}')).toEqual({
      type: 'denied',
      action: 'clipboard_to_target',
      reason: 'r',
    });
    expect(parseServerText('{"type":"denied","action":1,"reason":"r"}')).toBeNull();
    expect(deniedText('clipboard_to_client', 'clipboard target→client denied by rule "x"')).toBe(
      'The target’s clipboard was not passed on to you: clipboard target→client denied by rule "x".',
    );
    expect(deniedText('typed_text', 'risk rule "account_creation" (a local account created): the session is frozen')).toBe(
      'Your command line was not submitted: risk rule "account_creation" (a local account created): the session is frozen.',
    );
    expect(parseServerText('{"type":"frozen","frozen":"yes"}')).toBeNull();
  });

  it('fills in a missing error message', () => {
    expect(parseServerText('{"type":"error"}')).toEqual({
      type: 'error',
      code: 'internal',
      message: 'The session failed.',
    });
  });
});

describe('client messages', () => {
  it('are the documented JSON', () => {
    expect(JSON.parse(keyMsg(0xff0d, true))).toEqual({ t: 'key', keysym: 65293, down: true });
    expect(JSON.parse(pointerMsg(1, 2, 5))).toEqual({ t: 'pointer', x: 1, y: 2, buttons: 5 });
    expect(JSON.parse(ackMsg(7))).toEqual({ t: 'ack', seq: 7 });
  });

  it('enforces the 128 KiB clipboard limit in UTF-8 bytes', () => {
    const ok = clipboardMsg('a'.repeat(128 * 1024));
    expect(ok.ok).toBe(true);
    if (ok.ok) expect(JSON.parse(ok.msg)).toEqual({ t: 'clipboard', text: 'a'.repeat(131072) });
    expect(clipboardMsg('a'.repeat(128 * 1024 + 1)).ok).toBe(false);
    // 'é' is two bytes in UTF-8.
    expect(clipboardMsg('é'.repeat(64 * 1024)).ok).toBe(true);
    expect(clipboardMsg('é'.repeat(64 * 1024 + 1)).ok).toBe(false);
  });

  it('refuses text whose JSON escaping exceeds the 256 KiB message limit', () => {
    const r = clipboardMsg('\u0001'.repeat(100 * 1024));
    expect(r.ok).toBe(false);
  });

  it('measures UTF-8 length', () => {
    expect(utf8Length('')).toBe(0);
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('€')).toBe(3);
    expect(utf8Length('😀')).toBe(4);
    expect(utf8Length('\ud800')).toBe(3);
    const s = 'aé€😀\ud800x';
    expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
  });
});

// The session WebSocket format (docs/browser-protocol.md, "Session WebSocket").

/** Binary message kinds. */
export const KIND_RECT = 1;
export const KIND_FRAME_END = 2;
export const KIND_COPY = 3;
/** A frame's messages in one: each as a u32 length and its bytes. */
export const KIND_BATCH = 4;
/** Length of a copy message: kind, then u16 destination x, y, source x, y, width, height. */
export const COPY_LEN = 13;
/** Bytes before the image in a rectangle message. */
export const RECT_HEADER_LEN = 10;

/** Rectangle image encodings. */
export const ENC_PNG = 1;
export const ENC_JPEG = 2;
/** One colour: the data is 3 bytes, red, green, blue. */
export const ENC_FILL = 3;
/** A chunk of the connection's deflate stream (`StreamImages`, model/inflate.ts). */
export const ENC_ZLIB = 4;

/** Largest clipboard text we may send, in UTF-8 bytes. */
export const MAX_CLIPBOARD_BYTES = 128 * 1024;
/** Largest text message we may send, in UTF-8 bytes. */
export const MAX_CLIENT_MESSAGE = 256 * 1024;

/** A decoded binary message from the gateway. */
export type ServerBinary =
  | { kind: 'rect'; encoding: number; x: number; y: number; width: number; height: number; data: Uint8Array<ArrayBuffer> }
  /** Copy the canvas's own pixels at (sx, sy) (width×height) to (dx, dy); overlap allowed. */
  | { kind: 'copy'; dx: number; dy: number; sx: number; sy: number; width: number; height: number }
  | { kind: 'frameEnd'; seq: number };

/**
 * The messages of a binary WebSocket message, as (start, length) within it: the parts of a batch,
 * or the message itself. Throws on a batch whose lengths do not add up.
 */
export function unbatch(buf: ArrayBuffer): Array<[number, number]> {
  const view = new DataView(buf);
  if (buf.byteLength < 1 || view.getUint8(0) !== KIND_BATCH) return [[0, buf.byteLength]];
  if (buf.byteLength < 2) throw new Error('batch without a message');
  const parts: Array<[number, number]> = [];
  let at = 1;
  while (at < buf.byteLength) {
    if (at + 4 > buf.byteLength) throw new Error('batch cut in a length');
    const len = view.getUint32(at);
    at += 4;
    if (len > buf.byteLength - at) throw new Error('batch part longer than the batch');
    // Every message is at least its kind and 4 bytes; a batch holds no batch.
    if (len < 5 || view.getUint8(at) === KIND_BATCH) throw new Error('batch part that is no message');
    parts.push([at, len]);
    at += len;
  }
  return parts;
}

/**
 * Decodes a binary message (or the part of a batch `length` bytes long at `start`); throws on a
 * short or unknown one.
 */
export function parseBinary(buf: ArrayBuffer, start = 0, length = buf.byteLength - start): ServerBinary {
  const view = new DataView(buf, start, length);
  if (length < 1) throw new Error('empty binary message');
  const kind = view.getUint8(0);
  if (kind === KIND_RECT) {
    if (length < RECT_HEADER_LEN) throw new Error('short rectangle message');
    return {
      kind: 'rect',
      encoding: view.getUint8(1),
      x: view.getUint16(2),
      y: view.getUint16(4),
      width: view.getUint16(6),
      height: view.getUint16(8),
      data: new Uint8Array(buf, start + RECT_HEADER_LEN, length - RECT_HEADER_LEN),
    };
  }
  if (kind === KIND_COPY) {
    if (length !== COPY_LEN) throw new Error('copy message of the wrong length');
    return {
      kind: 'copy',
      dx: view.getUint16(1),
      dy: view.getUint16(3),
      sx: view.getUint16(5),
      sy: view.getUint16(7),
      width: view.getUint16(9),
      height: view.getUint16(11),
    };
  }
  if (kind === KIND_FRAME_END) {
    if (length < 5) throw new Error('short end-of-frame message');
    return { kind: 'frameEnd', seq: view.getUint32(1) };
  }
  throw new Error(`unknown binary message kind ${kind}`);
}

/** True when a `width`×`height` area at (x, y) lies inside a desktop of `dw`×`dh`. */
export function insideDesktop(
  x: number,
  y: number,
  width: number,
  height: number,
  dw: number,
  dh: number,
): boolean {
  return width > 0 && height > 0 && x + width <= dw && y + height <= dh;
}

/** The MIME type of a rectangle encoding, or null if unknown. */
export function mimeOf(encoding: number): string | null {
  if (encoding === ENC_PNG) return 'image/png';
  if (encoding === ENC_JPEG) return 'image/jpeg';
  return null;
}

/** A JSON message from the gateway. */
export type ServerMessage =
  | { type: 'init'; session: string; target: string; width: number; height: number }
  | { type: 'resize'; width: number; height: number }
  | { type: 'clipboard'; text: string }
  | { type: 'bell' }
  | { type: 'error'; code: string; message: string }
  | { type: 'closed'; reason: string }
  /** The security team froze (true) or unfroze (false) the session: while frozen, input is held. */
  | { type: 'frozen'; frozen: boolean }
  | { type: 'observer'; present: boolean }
  /** The policy refused a crossing (`clipboard_to_target`, `clipboard_to_client`), naming the rule. */
  | { type: 'denied'; action: string; reason: string };

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function dim(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= 65535;
}

/** Parses and validates a text message; returns null for anything malformed or unknown. */
export function parseServerText(text: string): ServerMessage | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(v)) return null;
  switch (v.type) {
    case 'init':
      if (typeof v.session !== 'string' || !dim(v.width) || !dim(v.height)) return null;
      return {
        type: 'init',
        session: v.session,
        target: typeof v.target === 'string' ? v.target : '',
        width: v.width,
        height: v.height,
      };
    case 'resize':
      if (!dim(v.width) || !dim(v.height)) return null;
      return { type: 'resize', width: v.width, height: v.height };
    case 'clipboard':
      if (typeof v.text !== 'string') return null;
      return { type: 'clipboard', text: v.text };
    case 'bell':
      return { type: 'bell' };
    case 'error':
      return {
        type: 'error',
        code: typeof v.code === 'string' ? v.code : 'internal',
        message: typeof v.message === 'string' && v.message !== '' ? v.message : 'The session failed.',
      };
    case 'closed':
      return { type: 'closed', reason: typeof v.reason === 'string' ? v.reason : '' };
    case 'frozen':
      if (typeof v.frozen !== 'boolean') return null;
      return { type: 'frozen', frozen: v.frozen };
    case 'observer':
      if (typeof v.present !== 'boolean') return null;
      return { type: 'observer', present: v.present };
    case 'denied':
      if (typeof v.action !== 'string' || typeof v.reason !== 'string') return null;
      return { type: 'denied', action: v.action, reason: v.reason };
    default:
      return null;
  }
}

/** What the user reads when the policy refused a crossing. */
export function deniedText(action: string, reason: string): string {
  const what =
    action === 'clipboard_to_target'
      ? 'Your clipboard text was not sent to the target'
      : action === 'clipboard_to_client'
        ? 'The target’s clipboard was not passed on to you'
        : action === 'typed_text'
          ? 'Your command line was not submitted'
          : action === 'clipboard_text'
            ? 'Your pasted text was not sent to the target'
            : action === 'screen_text'
              ? 'Something on the screen stopped the session'
              : 'Refused';
  return `${what}: ${reason}.`;
}

/** UTF-8 length of a string without allocating. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

export const keyMsg = (keysym: number, down: boolean): string =>
  JSON.stringify({ t: 'key', keysym, down });

export const pointerMsg = (x: number, y: number, buttons: number): string =>
  JSON.stringify({ t: 'pointer', x, y, buttons });

export const ackMsg = (seq: number): string => JSON.stringify({ t: 'ack', seq });

export const refreshMsg = (): string => JSON.stringify({ t: 'refresh' });

/**
 * The clipboard message for `text`, or an error message (for the user) when it is too large.
 */
export function clipboardMsg(text: string): { ok: true; msg: string } | { ok: false; error: string } {
  const bytes = utf8Length(text);
  if (bytes > MAX_CLIPBOARD_BYTES) {
    return {
      ok: false,
      error: `The text is too large to send (${Math.ceil(bytes / 1024)} KiB; the limit is 128 KiB).`,
    };
  }
  const msg = JSON.stringify({ t: 'clipboard', text });
  if (utf8Length(msg) > MAX_CLIENT_MESSAGE) {
    return { ok: false, error: 'The text is too large to send (over 256 KiB once encoded).' };
  }
  return { ok: true, msg };
}

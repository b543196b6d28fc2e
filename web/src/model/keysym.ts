// Maps DOM KeyboardEvents to X11 keysyms (the `keysym` of `{"t":"key"}` messages).
//
// Rules (docs/browser-protocol.md):
// - a single printable character is its Latin-1 code point when in 0x20–0x7E or 0xA0–0xFF,
//   otherwise 0x01000000 + its Unicode code point;
// - special keys are the X11 XK_* values;
// - numpad keys are recognised by `code`, so that they reach the target as keypad keys.

/** The parts of a KeyboardEvent the mapping looks at. */
export interface KeyLike {
  key: string;
  code: string;
  /** KeyboardEvent.location: 0 standard, 1 left, 2 right, 3 numpad. */
  location?: number;
}

const F1 = 0xffbe;

/** Special keys by `KeyboardEvent.key` (including a few legacy names older browsers use). */
const SPECIAL: Record<string, number> = {
  Backspace: 0xff08,
  Tab: 0xff09,
  Clear: 0xff0b,
  Enter: 0xff0d,
  Pause: 0xff13,
  ScrollLock: 0xff14,
  Scroll: 0xff14,
  Escape: 0xff1b,
  Esc: 0xff1b,
  Delete: 0xffff,
  Del: 0xffff,
  Home: 0xff50,
  ArrowLeft: 0xff51,
  Left: 0xff51,
  ArrowUp: 0xff52,
  Up: 0xff52,
  ArrowRight: 0xff53,
  Right: 0xff53,
  ArrowDown: 0xff54,
  Down: 0xff54,
  PageUp: 0xff55,
  PageDown: 0xff56,
  End: 0xff57,
  Select: 0xff60,
  PrintScreen: 0xff61,
  Execute: 0xff62,
  Insert: 0xff63,
  Undo: 0xff65,
  Redo: 0xff66,
  ContextMenu: 0xff67,
  Apps: 0xff67,
  Find: 0xff68,
  Cancel: 0xff69,
  Help: 0xff6a,
  Break: 0xff6b,
  NumLock: 0xff7f,
  CapsLock: 0xffe5,
  AltGraph: 0xfe03,
  Compose: 0xff20,
  // Japanese / Korean input keys.
  NonConvert: 0xff22,
  Convert: 0xff23,
  Romaji: 0xff24,
  Hiragana: 0xff25,
  Katakana: 0xff26,
  HiraganaKatakana: 0xff27,
  ZenkakuHankaku: 0xff2a,
  KanaMode: 0xff2d,
  Eisu: 0xff2f,
  HangulMode: 0xff31,
  HanjaMode: 0xff34,
  Spacebar: 0x20,
};
for (let i = 0; i < 24; i++) SPECIAL[`F${i + 1}`] = F1 + i;

/** Modifier keys: [left, right] keysyms, chosen by `code` (…Right) or `location` (2 = right). */
const MODIFIERS: Record<string, [number, number]> = {
  Shift: [0xffe1, 0xffe2],
  Control: [0xffe3, 0xffe4],
  Alt: [0xffe9, 0xffea],
  Meta: [0xffeb, 0xffec],
  OS: [0xffeb, 0xffec],
  Super: [0xffeb, 0xffec],
  Win: [0xffeb, 0xffec],
  Hyper: [0xffed, 0xffee],
};

/** Numpad operator keys by `code`: always keypad keysyms whatever NumLock says. */
const NUMPAD_FIXED: Record<string, number> = {
  NumpadEnter: 0xff8d,
  NumpadMultiply: 0xffaa,
  NumpadAdd: 0xffab,
  NumpadComma: 0xffac,
  NumpadSubtract: 0xffad,
  NumpadDivide: 0xffaf,
  NumpadEqual: 0xffbd,
};

const KP_0 = 0xffb0;
const KP_DECIMAL = 0xffae;

/** The keysym of one Unicode character (a string of exactly one code point). */
export function charKeysym(ch: string): number {
  const cp = ch.codePointAt(0) ?? 0;
  if ((cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xff)) return cp;
  return 0x01000000 + cp;
}

function isSingleCodePoint(s: string): boolean {
  if (s.length === 0 || s.length > 2) return false;
  if (s.length === 1) return true;
  const cp = s.codePointAt(0) ?? 0;
  return cp > 0xffff; // a surrogate pair is one code point
}

/** The X11 keysym for a key event, or null when the key has none we can send (dead keys, IME). */
export function keysymFor(e: KeyLike): number | null {
  const { key, code } = e;

  if (key === 'AltGraph') return 0xfe03;

  if (code.startsWith('Numpad')) {
    const fixed = NUMPAD_FIXED[code];
    if (fixed !== undefined) return fixed;
    const digit = /^Numpad([0-9])$/.exec(code);
    // With NumLock on the key is the digit; with it off it is Home, ArrowUp, … (handled below).
    if (digit && /^[0-9]$/.test(key)) return KP_0 + Number(digit[1]);
    if (code === 'NumpadDecimal' && isSingleCodePoint(key)) return KP_DECIMAL;
  }

  const mod = MODIFIERS[key];
  if (mod !== undefined) {
    const right = code.endsWith('Right') || (code === '' && e.location === 2);
    return right ? mod[1] : mod[0];
  }

  const special = SPECIAL[key];
  if (special !== undefined) return special;

  if (isSingleCodePoint(key)) return charKeysym(key);

  // 'Dead', 'Unidentified', 'Process' and media keys: nothing sensible to send.
  return null;
}

/** One key message to send. */
export interface KeyAction {
  keysym: number;
  down: boolean;
}

/** The identity of a physical key: its `code`, or the key value when the browser gives no code. */
function keyId(e: KeyLike): string {
  return e.code !== '' ? e.code : `key:${e.key}`;
}

/**
 * Remembers which keysym each physical key was pressed with, so that its release sends the same
 * keysym even when modifiers changed in between (press Shift, press "a" → "A", release Shift,
 * release "a" must release "A"), and so that everything held can be released on blur.
 */
export class KeyTracker {
  private readonly held = new Map<string, number>();

  /** Actions for a keydown (repeats included: a repeat is another down of the held keysym). */
  down(e: KeyLike): KeyAction[] {
    const id = keyId(e);
    const prev = this.held.get(id);
    const keysym = keysymFor(e);
    if (prev !== undefined) {
      if (keysym === null || keysym === prev) return [{ keysym: prev, down: true }];
      // We missed the release (or the layout changed under us): release the old one first.
      this.held.set(id, keysym);
      return [
        { keysym: prev, down: false },
        { keysym, down: true },
      ];
    }
    if (keysym === null) return [];
    this.held.set(id, keysym);
    return [{ keysym, down: true }];
  }

  /** Actions for a keyup: the release of what that key pressed, or nothing if it pressed nothing. */
  up(e: KeyLike): KeyAction[] {
    const id = keyId(e);
    const prev = this.held.get(id);
    if (prev === undefined) return [];
    this.held.delete(id);
    return [{ keysym: prev, down: false }];
  }

  /** Releases everything held (on blur, hidden page, disconnect). */
  releaseAll(): KeyAction[] {
    const out = [...this.held.values()].map((keysym) => ({ keysym, down: false }));
    this.held.clear();
    return out;
  }

  /** Number of keys currently held. */
  get size(): number {
    return this.held.size;
  }
}

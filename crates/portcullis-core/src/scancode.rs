//! X11 keysyms (what browsers and VNC speak) as PC keyboard scancodes (what RDP speaks), and back.
//!
//! RDP sends keys as set-1 scancodes, with an "extended" flag for the E0-prefixed keys, and the
//! target applies its own keyboard layout. We announce a US layout (0x409) to RDP targets, so a
//! printable ASCII keysym maps to the US key that produces it; the viewer's Shift key events
//! arrive on their own, which turns `1` into `!` on the target as it did on the viewer. Anything
//! else printable (accents, other scripts) goes as a Unicode key event instead.
//!
//! Known limit: a viewer whose layout needs AltGr for an ASCII character (`@` on a German
//! keyboard) sends AltGr too, which a US target reads as right Alt.

/// How one keysym is sent to an RDP target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdpKey {
    /// A physical key.
    Scancode {
        /// Set-1 scancode (without the E0 prefix).
        code: u8,
        /// True for the E0-prefixed keys (arrows, right Ctrl/Alt, keypad Enter, ...).
        extended: bool,
    },
    /// A character with no key on a US keyboard.
    Unicode(char),
}

const fn sc(code: u8) -> RdpKey {
    RdpKey::Scancode {
        code,
        extended: false,
    }
}

const fn ext(code: u8) -> RdpKey {
    RdpKey::Scancode {
        code,
        extended: true,
    }
}

/// Non-character keys: (keysym, key). Also used backwards, so each key appears once, first by
/// its preferred keysym.
const SPECIAL: &[(u32, RdpKey)] = &[
    (0xff08, sc(0x0e)),  // BackSpace
    (0xff09, sc(0x0f)),  // Tab
    (0xff0d, sc(0x1c)),  // Return
    (0xff1b, sc(0x01)),  // Escape
    (0xff14, sc(0x46)),  // Scroll_Lock
    (0xffff, ext(0x53)), // Delete
    (0xff50, ext(0x47)), // Home
    (0xff51, ext(0x4b)), // Left
    (0xff52, ext(0x48)), // Up
    (0xff53, ext(0x4d)), // Right
    (0xff54, ext(0x50)), // Down
    (0xff55, ext(0x49)), // Page_Up
    (0xff56, ext(0x51)), // Page_Down
    (0xff57, ext(0x4f)), // End
    (0xff61, ext(0x37)), // Print
    (0xff63, ext(0x52)), // Insert
    (0xff67, ext(0x5d)), // Menu
    (0xff7f, sc(0x45)),  // Num_Lock
    (0xff8d, ext(0x1c)), // KP_Enter
    (0xffaa, sc(0x37)),  // KP_Multiply
    (0xffab, sc(0x4e)),  // KP_Add
    (0xffad, sc(0x4a)),  // KP_Subtract
    (0xffae, sc(0x53)),  // KP_Decimal
    (0xffaf, ext(0x35)), // KP_Divide
    (0xffb0, sc(0x52)),  // KP_0
    (0xffb1, sc(0x4f)),  // KP_1
    (0xffb2, sc(0x50)),  // KP_2
    (0xffb3, sc(0x51)),  // KP_3
    (0xffb4, sc(0x4b)),  // KP_4
    (0xffb5, sc(0x4c)),  // KP_5
    (0xffb6, sc(0x4d)),  // KP_6
    (0xffb7, sc(0x47)),  // KP_7
    (0xffb8, sc(0x48)),  // KP_8
    (0xffb9, sc(0x49)),  // KP_9
    (0xffbe, sc(0x3b)),  // F1
    (0xffbf, sc(0x3c)),  // F2
    (0xffc0, sc(0x3d)),  // F3
    (0xffc1, sc(0x3e)),  // F4
    (0xffc2, sc(0x3f)),  // F5
    (0xffc3, sc(0x40)),  // F6
    (0xffc4, sc(0x41)),  // F7
    (0xffc5, sc(0x42)),  // F8
    (0xffc6, sc(0x43)),  // F9
    (0xffc7, sc(0x44)),  // F10
    (0xffc8, sc(0x57)),  // F11
    (0xffc9, sc(0x58)),  // F12
    (0xffe1, sc(0x2a)),  // Shift_L
    (0xffe2, sc(0x36)),  // Shift_R
    (0xffe3, sc(0x1d)),  // Control_L
    (0xffe4, ext(0x1d)), // Control_R
    (0xffe5, sc(0x3a)),  // Caps_Lock
    (0xffe9, sc(0x38)),  // Alt_L
    (0xffea, ext(0x38)), // Alt_R
    (0xffeb, ext(0x5b)), // Super_L
    (0xffec, ext(0x5c)), // Super_R
    // Aliases after the preferred names: found forwards, never chosen backwards.
    (0xffe7, sc(0x38)),  // Meta_L
    (0xffe8, ext(0x38)), // Meta_R
    (0xfe03, ext(0x38)), // ISO_Level3_Shift (AltGr)
    (0xff95, sc(0x47)),  // KP_Home
    (0xff96, sc(0x4b)),  // KP_Left
    (0xff97, sc(0x48)),  // KP_Up
    (0xff98, sc(0x4d)),  // KP_Right
    (0xff99, sc(0x50)),  // KP_Down
    (0xff9a, sc(0x49)),  // KP_Page_Up
    (0xff9b, sc(0x51)),  // KP_Page_Down
    (0xff9c, sc(0x4f)),  // KP_End
    (0xff9d, sc(0x4c)),  // KP_Begin
    (0xff9e, sc(0x52)),  // KP_Insert
    (0xff9f, sc(0x53)),  // KP_Delete
];

/// The US keyboard's printable keys: (scancode, unshifted, shifted).
const PRINTABLE: &[(u8, char, char)] = &[
    (0x02, '1', '!'),
    (0x03, '2', '@'),
    (0x04, '3', '#'),
    (0x05, '4', '$'),
    (0x06, '5', '%'),
    (0x07, '6', '^'),
    (0x08, '7', '&'),
    (0x09, '8', '*'),
    (0x0a, '9', '('),
    (0x0b, '0', ')'),
    (0x0c, '-', '_'),
    (0x0d, '=', '+'),
    (0x10, 'q', 'Q'),
    (0x11, 'w', 'W'),
    (0x12, 'e', 'E'),
    (0x13, 'r', 'R'),
    (0x14, 't', 'T'),
    (0x15, 'y', 'Y'),
    (0x16, 'u', 'U'),
    (0x17, 'i', 'I'),
    (0x18, 'o', 'O'),
    (0x19, 'p', 'P'),
    (0x1a, '[', '{'),
    (0x1b, ']', '}'),
    (0x1e, 'a', 'A'),
    (0x1f, 's', 'S'),
    (0x20, 'd', 'D'),
    (0x21, 'f', 'F'),
    (0x22, 'g', 'G'),
    (0x23, 'h', 'H'),
    (0x24, 'j', 'J'),
    (0x25, 'k', 'K'),
    (0x26, 'l', 'L'),
    (0x27, ';', ':'),
    (0x28, '\'', '"'),
    (0x29, '`', '~'),
    (0x2b, '\\', '|'),
    (0x2c, 'z', 'Z'),
    (0x2d, 'x', 'X'),
    (0x2e, 'c', 'C'),
    (0x2f, 'v', 'V'),
    (0x30, 'b', 'B'),
    (0x31, 'n', 'N'),
    (0x32, 'm', 'M'),
    (0x33, ',', '<'),
    (0x34, '.', '>'),
    (0x35, '/', '?'),
    (0x39, ' ', ' '),
];

/// Largest Unicode keysym: 0x0100_0000 + U+10FFFF.
const UNICODE_KEYSYM_BASE: u32 = 0x0100_0000;

/// The character a keysym stands for, if it is one: Latin-1 keysyms equal their code point,
/// and `0x0100_0000 + U` is Unicode U.
fn keysym_char(keysym: u32) -> Option<char> {
    match keysym {
        0x20..=0x7e | 0xa0..=0xff => char::from_u32(keysym),
        k if k > UNICODE_KEYSYM_BASE => char::from_u32(k - UNICODE_KEYSYM_BASE),
        _ => None,
    }
}

/// How to send `keysym` to an RDP target with a US layout; `None` for keysyms we do not know
/// (they are dropped, never guessed).
pub fn keysym_to_rdp(keysym: u32) -> Option<RdpKey> {
    if let Some(&(_, key)) = SPECIAL.iter().find(|(k, _)| *k == keysym) {
        return Some(key);
    }
    let c = keysym_char(keysym)?;
    if let Some(&(code, _, _)) = PRINTABLE.iter().find(|(_, lo, hi)| *lo == c || *hi == c) {
        return Some(sc(code));
    }
    if c.is_control() {
        return None;
    }
    Some(RdpKey::Unicode(c))
}

/// For a printable ASCII keysym: whether its US key must be pressed with Shift (`Some(true)`:
/// `A`, `!`) or without (`Some(false)`: `a`, `1`). `None` when Shift does not matter.
///
/// A viewer may send `A` without having sent Shift (an on-screen keyboard, a paste, Playwright);
/// the RDP adapter then wraps the key in Shift itself.
pub fn needs_shift(keysym: u32) -> Option<bool> {
    let c = keysym_char(keysym)?;
    PRINTABLE
        .iter()
        .find(|(_, lo, hi)| lo != hi && (*lo == c || *hi == c))
        .map(|&(_, _, hi)| hi == c)
}

/// The scancode of left Shift.
pub const LEFT_SHIFT: u8 = 0x2a;
/// The scancode of right Shift.
pub const RIGHT_SHIFT: u8 = 0x36;

/// The keysym of a scancode from a native RDP client (US layout). `shifted` says whether Shift
/// is held, for the printable keys. `None` for keys we do not know.
pub fn scancode_to_keysym(code: u8, extended: bool, shifted: bool) -> Option<u32> {
    let key = RdpKey::Scancode { code, extended };
    if let Some(&(keysym, _)) = SPECIAL.iter().find(|(_, k)| *k == key) {
        return Some(keysym);
    }
    if extended {
        return None;
    }
    PRINTABLE
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|&(_, lo, hi)| u32::from(if shifted { hi } else { lo }))
}

/// The keysym of a character typed as a Unicode key event.
pub fn char_to_keysym(c: char) -> u32 {
    let u = u32::from(c);
    match u {
        0x20..=0x7e | 0xa0..=0xff => u,
        _ => UNICODE_KEYSYM_BASE + u,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_symbols_use_the_us_keys() {
        let cases = [
            ('a', 0x1e),
            ('A', 0x1e),
            ('z', 0x2c),
            ('0', 0x0b),
            ('!', 0x02),
            ('|', 0x2b),
            (' ', 0x39),
            ('~', 0x29),
        ];
        for (c, code) in cases {
            assert_eq!(keysym_to_rdp(u32::from(c)), Some(sc(code)), "{c:?}");
        }
    }

    #[test]
    fn navigation_keys_are_extended_and_keypad_keys_are_not() {
        assert_eq!(keysym_to_rdp(0xff52), Some(ext(0x48))); // Up
        assert_eq!(keysym_to_rdp(0xffb8), Some(sc(0x48))); // KP_8
        assert_eq!(keysym_to_rdp(0xff8d), Some(ext(0x1c))); // KP_Enter
        assert_eq!(keysym_to_rdp(0xff0d), Some(sc(0x1c))); // Return
        assert_eq!(keysym_to_rdp(0xffe4), Some(ext(0x1d))); // Control_R
    }

    #[test]
    fn other_characters_go_as_unicode_and_unknown_keysyms_are_dropped() {
        assert_eq!(keysym_to_rdp(0xe9), Some(RdpKey::Unicode('é')));
        assert_eq!(keysym_to_rdp(0x0100_20ac), Some(RdpKey::Unicode('€')));
        assert_eq!(keysym_to_rdp(0x0100_0007), None); // a control character
        assert_eq!(keysym_to_rdp(0xfe50), None); // dead_grave
        assert_eq!(keysym_to_rdp(0), None);
        assert_eq!(keysym_to_rdp(u32::MAX), None);
    }

    #[test]
    fn scancodes_come_back_as_the_keysyms_they_came_from() {
        for &(keysym, key) in SPECIAL.iter().take_while(|(k, _)| *k != 0xffe7) {
            let RdpKey::Scancode { code, extended } = key else {
                unreachable!()
            };
            assert_eq!(scancode_to_keysym(code, extended, false), Some(keysym));
        }
        for &(code, lo, hi) in PRINTABLE {
            assert_eq!(scancode_to_keysym(code, false, false), Some(u32::from(lo)));
            assert_eq!(scancode_to_keysym(code, false, true), Some(u32::from(hi)));
        }
        assert_eq!(scancode_to_keysym(0x7f, true, false), None);
    }

    #[test]
    fn shift_is_known_for_printable_keys_only() {
        assert_eq!(needs_shift(u32::from('A')), Some(true));
        assert_eq!(needs_shift(u32::from('!')), Some(true));
        assert_eq!(needs_shift(u32::from('a')), Some(false));
        assert_eq!(needs_shift(u32::from('1')), Some(false));
        assert_eq!(needs_shift(u32::from(' ')), None);
        assert_eq!(needs_shift(0xff0d), None);
        assert_eq!(needs_shift(0xe9), None);
    }

    #[test]
    fn unicode_keysyms_round_trip() {
        for c in ['a', 'é', '€', '😀'] {
            let k = char_to_keysym(c);
            assert_eq!(keysym_char(k), Some(c));
        }
    }
}

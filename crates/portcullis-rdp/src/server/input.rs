//! A native client's input (scancodes, Unicode, mouse) as protocol-neutral input.

use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::mouse_x::PointerXFlags;
use ironrdp_pdu::input::InputEvent as SlowInput;
use portcullis_core::desktop::{buttons, InputEvent};
use portcullis_core::scancode::{char_to_keysym, scancode_to_keysym, LEFT_SHIFT, RIGHT_SHIFT};

/// Checks a fast-path input PDU's own length against its header before IronRDP decodes it:
/// `ironrdp-pdu` 0.11 subtracts the header size from the announced length without checking,
/// which panics (debug) or wraps (release) on a length shorter than the header.
pub(crate) fn fast_path_input_sane(pdu: &[u8]) -> bool {
    let (Some(&header), Some(&first)) = (pdu.first(), pdu.get(1)) else {
        return false;
    };
    let (length, length_size) = if first & 0x80 != 0 {
        match pdu.get(2) {
            Some(&second) => (usize::from(u16::from_be_bytes([first & 0x7f, second])), 2),
            None => return false,
        }
    } else {
        (usize::from(first), 1)
    };
    // No event count in the header byte: it follows the length.
    let count_size = usize::from((header >> 2) & 0x0f == 0);
    length == pdu.len() && length >= 1 + length_size + count_size
}

/// Tracks what the translation needs: Shift (for printable keys), the button mask, the pointer
/// position (wheel events carry none on some clients) and a pending UTF-16 high surrogate.
#[derive(Debug, Default)]
pub(crate) struct InputMapper {
    shift: u8,
    buttons: u8,
    x: u32,
    y: u32,
    high_surrogate: Option<u16>,
    /// Desktop size, to keep positions inside it.
    pub(crate) width: u32,
    pub(crate) height: u32,
}

impl InputMapper {
    pub(crate) fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            ..Self::default()
        }
    }

    fn key(&mut self, code: u8, extended: bool, release: bool, out: &mut Vec<InputEvent>) {
        let bit = match (code, extended) {
            (LEFT_SHIFT, false) => 1,
            (RIGHT_SHIFT, false) => 2,
            _ => 0,
        };
        if bit != 0 {
            if release {
                self.shift &= !bit;
            } else {
                self.shift |= bit;
            }
        }
        if let Some(keysym) = scancode_to_keysym(code, extended, self.shift != 0) {
            out.push(InputEvent::Key {
                keysym,
                down: !release,
            });
        }
    }

    fn unicode(&mut self, unit: u16, release: bool, out: &mut Vec<InputEvent>) {
        let c = match unit {
            0xd800..=0xdbff => {
                if !release {
                    self.high_surrogate = Some(unit);
                }
                return;
            }
            0xdc00..=0xdfff => match self.high_surrogate.take() {
                Some(high) => char::decode_utf16([high, unit]).next().and_then(Result::ok),
                None => None,
            },
            _ => char::from_u32(u32::from(unit)),
        };
        if let Some(c) = c {
            out.push(InputEvent::Key {
                keysym: char_to_keysym(c),
                down: !release,
            });
        }
    }

    fn pointer(&mut self, x: u16, y: u16, out: &mut Vec<InputEvent>) {
        self.x = u32::from(x).min(self.width.saturating_sub(1));
        self.y = u32::from(y).min(self.height.saturating_sub(1));
        out.push(self.pointer_event(self.buttons));
    }

    fn pointer_event(&self, buttons: u8) -> InputEvent {
        InputEvent::Pointer {
            x: self.x,
            y: self.y,
            buttons,
        }
    }

    fn mouse(
        &mut self,
        flags: PointerFlags,
        wheel: i16,
        x: u16,
        y: u16,
        out: &mut Vec<InputEvent>,
    ) {
        if flags.intersects(PointerFlags::VERTICAL_WHEEL | PointerFlags::HORIZONTAL_WHEEL) {
            let negative = flags.contains(PointerFlags::WHEEL_NEGATIVE) || wheel < 0;
            let bit = match (flags.contains(PointerFlags::HORIZONTAL_WHEEL), negative) {
                (false, false) => buttons::WHEEL_UP,
                (false, true) => buttons::WHEEL_DOWN,
                (true, false) => buttons::WHEEL_RIGHT,
                (true, true) => buttons::WHEEL_LEFT,
            };
            // A notch is a press and a release, as VNC viewers send it.
            out.push(self.pointer_event(self.buttons | bit));
            out.push(self.pointer_event(self.buttons));
            return;
        }
        let mut mask = self.buttons;
        for (flag, bit) in [
            (PointerFlags::LEFT_BUTTON, buttons::LEFT),
            (PointerFlags::RIGHT_BUTTON, buttons::RIGHT),
            (PointerFlags::MIDDLE_BUTTON_OR_WHEEL, buttons::MIDDLE),
        ] {
            if flags.contains(flag) {
                if flags.contains(PointerFlags::DOWN) {
                    mask |= bit;
                } else {
                    mask &= !bit;
                }
            }
        }
        self.buttons = mask;
        self.pointer(x, y, out);
    }

    fn mouse_x(&mut self, flags: PointerXFlags, x: u16, y: u16, out: &mut Vec<InputEvent>) {
        // Buttons 4 and 5 (back/forward) have no VNC equivalent: only the position counts.
        let _ = flags;
        self.pointer(x, y, out);
    }

    /// Translates fast-path input.
    pub(crate) fn fast_path(&mut self, events: &[FastPathInputEvent]) -> Vec<InputEvent> {
        let mut out = Vec::new();
        for e in events {
            match e {
                FastPathInputEvent::KeyboardEvent(flags, code) => self.key(
                    *code,
                    flags.contains(KeyboardFlags::EXTENDED),
                    flags.contains(KeyboardFlags::RELEASE),
                    &mut out,
                ),
                FastPathInputEvent::UnicodeKeyboardEvent(flags, unit) => {
                    self.unicode(*unit, flags.contains(KeyboardFlags::RELEASE), &mut out)
                }
                FastPathInputEvent::MouseEvent(m) => self.mouse(
                    m.flags,
                    m.number_of_wheel_rotation_units,
                    m.x_position,
                    m.y_position,
                    &mut out,
                ),
                FastPathInputEvent::MouseEventEx(m) => {
                    self.mouse_x(m.flags, m.x_position, m.y_position, &mut out)
                }
                // Relative mouse was not offered; lock-key sync and QoE carry nothing we relay.
                FastPathInputEvent::MouseEventRel(_)
                | FastPathInputEvent::QoeEvent(_)
                | FastPathInputEvent::SyncEvent(_) => {}
            }
        }
        out
    }

    /// Translates slow-path input (clients that do not use fast-path).
    pub(crate) fn slow_path(&mut self, events: &[SlowInput]) -> Vec<InputEvent> {
        use ironrdp_pdu::input::scan_code::KeyboardFlags as SlowFlags;
        let mut out = Vec::new();
        for e in events {
            match e {
                SlowInput::ScanCode(s) => self.key(
                    u8::try_from(s.key_code).unwrap_or(0),
                    s.flags.contains(SlowFlags::EXTENDED),
                    s.flags.contains(SlowFlags::RELEASE),
                    &mut out,
                ),
                SlowInput::Unicode(u) => self.unicode(
                    u.unicode_code,
                    u.flags
                        .contains(ironrdp_pdu::input::unicode::KeyboardFlags::RELEASE),
                    &mut out,
                ),
                SlowInput::Mouse(m) => self.mouse(
                    m.flags,
                    m.number_of_wheel_rotation_units,
                    m.x_position,
                    m.y_position,
                    &mut out,
                ),
                SlowInput::MouseX(m) => self.mouse_x(m.flags, m.x_position, m.y_position, &mut out),
                SlowInput::Sync(_) | SlowInput::Unused(_) | SlowInput::MouseRel(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_pdu::input::MousePdu;

    fn key(code: u8, flags: KeyboardFlags) -> FastPathInputEvent {
        FastPathInputEvent::KeyboardEvent(flags, code)
    }

    #[test]
    fn fast_path_lengths_shorter_than_the_header_are_refused() {
        assert!(!fast_path_input_sane(&[]));
        assert!(!fast_path_input_sane(&[0x04, 0x01]));
        assert!(!fast_path_input_sane(&[0x00, 0x02, 0x05]));
        assert!(!fast_path_input_sane(&[0x04, 0x80]));
        assert!(fast_path_input_sane(&[0x04, 0x02]));
        assert!(fast_path_input_sane(&[0x00, 0x03, 0x00]));
        assert!(fast_path_input_sane(&[0x04, 0x80, 0x03]));
    }

    #[test]
    fn shifted_letters_and_extended_keys() {
        let mut m = InputMapper::new(100, 100);
        let none = KeyboardFlags::empty();
        let out = m.fast_path(&[
            key(LEFT_SHIFT, none),
            key(0x1e, none),
            key(LEFT_SHIFT, KeyboardFlags::RELEASE),
            key(0x1e, none),
            key(0x48, KeyboardFlags::EXTENDED),
        ]);
        let keysyms: Vec<u32> = out
            .iter()
            .map(|e| match e {
                InputEvent::Key { keysym, .. } => *keysym,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            keysyms,
            vec![0xffe1, u32::from('A'), 0xffe1, u32::from('a'), 0xff52]
        );
    }

    #[test]
    fn surrogate_pairs_make_one_character() {
        let mut m = InputMapper::new(100, 100);
        let none = KeyboardFlags::empty();
        let out = m.fast_path(&[
            FastPathInputEvent::UnicodeKeyboardEvent(none, 0xd83d),
            FastPathInputEvent::UnicodeKeyboardEvent(none, 0xde00),
            FastPathInputEvent::UnicodeKeyboardEvent(none, 0xde00), // lone low half: dropped
        ]);
        assert_eq!(
            out,
            vec![InputEvent::Key {
                keysym: 0x0100_0000 + 0x1f600,
                down: true
            }]
        );
    }

    #[test]
    fn buttons_accumulate_wheel_notches_press_and_release_and_positions_are_clamped() {
        let mut m = InputMapper::new(100, 50);
        let mouse = |flags, wheel, x, y| {
            FastPathInputEvent::MouseEvent(MousePdu {
                flags,
                number_of_wheel_rotation_units: wheel,
                x_position: x,
                y_position: y,
            })
        };
        let out = m.fast_path(&[
            mouse(PointerFlags::LEFT_BUTTON | PointerFlags::DOWN, 0, 500, 10),
            mouse(
                PointerFlags::VERTICAL_WHEEL | PointerFlags::WHEEL_NEGATIVE,
                -120,
                0,
                0,
            ),
            mouse(PointerFlags::LEFT_BUTTON, 0, 5, 5),
        ]);
        let p = |x, y, buttons| InputEvent::Pointer { x, y, buttons };
        assert_eq!(
            out,
            vec![
                p(99, 10, buttons::LEFT),
                p(99, 10, buttons::LEFT | buttons::WHEEL_DOWN),
                p(99, 10, buttons::LEFT),
                p(5, 5, 0),
            ]
        );
    }
}

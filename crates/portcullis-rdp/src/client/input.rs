//! Viewer input as RDP fast-path input: a button mask (VNC style) becomes one event per change,
//! a keysym becomes a scancode or Unicode, with Shift pressed or lifted around it as needed.

use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::MousePdu;
use portcullis_core::desktop::{buttons, InputEvent};
use portcullis_core::scancode::{keysym_to_rdp, needs_shift, RdpKey, LEFT_SHIFT, RIGHT_SHIFT};

/// Wheel units per notch (Windows' WHEEL_DELTA).
const WHEEL_NOTCH: i16 = 120;
/// Viewer input state the translation needs: pointer events carry a button mask (VNC style)
/// while RDP wants one event per change, and keysyms carry the character while RDP sends keys.
#[derive(Default)]
pub(crate) struct InputState {
    buttons: u8,
    /// Shift keys the viewer holds: bit 0 left, bit 1 right.
    shift: u8,
}

impl InputState {
    pub(crate) fn translate(&mut self, input: InputEvent) -> Vec<FastPathInputEvent> {
        match input {
            InputEvent::Key { keysym, down } => self.key(keysym, down),
            InputEvent::Pointer { x, y, buttons } => {
                let x = u16::try_from(x).unwrap_or(u16::MAX);
                let y = u16::try_from(y).unwrap_or(u16::MAX);
                let mouse = |flags: PointerFlags, wheel: i16| {
                    FastPathInputEvent::MouseEvent(MousePdu {
                        flags,
                        number_of_wheel_rotation_units: wheel,
                        x_position: x,
                        y_position: y,
                    })
                };
                let mut events = vec![mouse(PointerFlags::MOVE, 0)];
                let changed = self.buttons ^ buttons;
                for (bit, flag) in [
                    (buttons::LEFT, PointerFlags::LEFT_BUTTON),
                    (buttons::MIDDLE, PointerFlags::MIDDLE_BUTTON_OR_WHEEL),
                    (buttons::RIGHT, PointerFlags::RIGHT_BUTTON),
                ] {
                    if changed & bit != 0 {
                        let down = if buttons & bit != 0 {
                            PointerFlags::DOWN
                        } else {
                            PointerFlags::empty()
                        };
                        events.push(mouse(flag | down, 0));
                    }
                }
                // Wheel "buttons" are pressed once per notch.
                let pressed = changed & buttons;
                if pressed & buttons::WHEEL_UP != 0 {
                    events.push(mouse(PointerFlags::VERTICAL_WHEEL, WHEEL_NOTCH));
                }
                if pressed & buttons::WHEEL_DOWN != 0 {
                    events.push(mouse(
                        PointerFlags::VERTICAL_WHEEL | PointerFlags::WHEEL_NEGATIVE,
                        -WHEEL_NOTCH,
                    ));
                }
                if pressed & buttons::WHEEL_RIGHT != 0 {
                    events.push(mouse(PointerFlags::HORIZONTAL_WHEEL, WHEEL_NOTCH));
                }
                if pressed & buttons::WHEEL_LEFT != 0 {
                    events.push(mouse(
                        PointerFlags::HORIZONTAL_WHEEL | PointerFlags::WHEEL_NEGATIVE,
                        -WHEEL_NOTCH,
                    ));
                }
                self.buttons = buttons;
                events
            }
            // Clipboard text goes over CLIPRDR (`RdpTarget::run`), not as input events.
            InputEvent::Clipboard(_) | InputEvent::ClipboardFiles(_) => Vec::new(),
        }
    }
}

impl InputState {
    fn key(&mut self, keysym: u32, down: bool) -> Vec<FastPathInputEvent> {
        let bit = match keysym {
            0xffe1 => 1,
            0xffe2 => 2,
            _ => 0,
        };
        if bit != 0 {
            if down {
                self.shift |= bit;
            } else {
                self.shift &= !bit;
            }
        }
        let events = key_events(keysym, down);
        let held = self.shift != 0;
        match needs_shift(keysym) {
            Some(want) if down && want != held => {
                // Press or lift Shift around the key, then restore what the viewer holds.
                let shifts: Vec<u8> = if want {
                    vec![LEFT_SHIFT]
                } else {
                    [(1, LEFT_SHIFT), (2, RIGHT_SHIFT)]
                        .into_iter()
                        .filter(|(b, _)| self.shift & b != 0)
                        .map(|(_, code)| code)
                        .collect()
                };
                let shift = |release: bool| {
                    shifts.iter().map(move |&code| {
                        let flags = if release {
                            KeyboardFlags::RELEASE
                        } else {
                            KeyboardFlags::empty()
                        };
                        FastPathInputEvent::KeyboardEvent(flags, code)
                    })
                };
                // want: press Shift first and release it after; else the other way round.
                shift(!want).chain(events).chain(shift(want)).collect()
            }
            _ => events,
        }
    }
}

fn key_events(keysym: u32, down: bool) -> Vec<FastPathInputEvent> {
    let release = if down {
        KeyboardFlags::empty()
    } else {
        KeyboardFlags::RELEASE
    };
    match keysym_to_rdp(keysym) {
        Some(RdpKey::Scancode { code, extended }) => {
            let ext = if extended {
                KeyboardFlags::EXTENDED
            } else {
                KeyboardFlags::empty()
            };
            vec![FastPathInputEvent::KeyboardEvent(release | ext, code)]
        }
        Some(RdpKey::Unicode(c)) => {
            let mut units = [0u16; 2];
            c.encode_utf16(&mut units)
                .iter()
                .map(|&u| FastPathInputEvent::UnicodeKeyboardEvent(release, u))
                .collect()
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_changes_become_single_rdp_events() {
        let mut m = InputState::default();
        let ev = m.translate(InputEvent::Pointer {
            x: 10,
            y: 20,
            buttons: buttons::LEFT,
        });
        assert_eq!(ev.len(), 2);
        let FastPathInputEvent::MouseEvent(p) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(p.flags, PointerFlags::LEFT_BUTTON | PointerFlags::DOWN);
        let ev = m.translate(InputEvent::Pointer {
            x: 10,
            y: 20,
            buttons: 0,
        });
        let FastPathInputEvent::MouseEvent(p) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(p.flags, PointerFlags::LEFT_BUTTON);
        let ev = m.translate(InputEvent::Pointer {
            x: 10,
            y: 20,
            buttons: buttons::WHEEL_DOWN,
        });
        let FastPathInputEvent::MouseEvent(p) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert!(p.flags.contains(PointerFlags::WHEEL_NEGATIVE));
        assert_eq!(p.number_of_wheel_rotation_units, -WHEEL_NOTCH);
    }

    #[test]
    fn shift_is_added_or_lifted_to_type_the_character_asked_for() {
        use FastPathInputEvent::KeyboardEvent as K;
        let up = KeyboardFlags::RELEASE;
        let none = KeyboardFlags::empty();
        let mut s = InputState::default();
        // 'T' without Shift held: Shift down, t, Shift up. Its release is just the key.
        assert_eq!(
            s.key(u32::from('T'), true),
            vec![K(none, LEFT_SHIFT), K(none, 0x14), K(up, LEFT_SHIFT)]
        );
        assert_eq!(s.key(u32::from('T'), false), vec![K(up, 0x14)]);
        // With Shift held, 'T' is just the key, and 't' lifts Shift around it.
        assert_eq!(s.key(0xffe2, true), vec![K(none, RIGHT_SHIFT)]);
        assert_eq!(s.key(u32::from('T'), true), vec![K(none, 0x14)]);
        assert_eq!(
            s.key(u32::from('t'), true),
            vec![K(up, RIGHT_SHIFT), K(none, 0x14), K(none, RIGHT_SHIFT)]
        );
        assert_eq!(s.key(0xffe2, false), vec![K(up, RIGHT_SHIFT)]);
        assert_eq!(s.key(u32::from('t'), true), vec![K(none, 0x14)]);
    }

    #[test]
    fn keys_are_scancodes_or_unicode() {
        assert_eq!(
            key_events(0xff52, false),
            vec![FastPathInputEvent::KeyboardEvent(
                KeyboardFlags::RELEASE | KeyboardFlags::EXTENDED,
                0x48
            )]
        );
        assert_eq!(key_events(0x0101_f600, true).len(), 2); // a surrogate pair
        assert!(key_events(0xfe50, true).is_empty());
    }
}

//! Keyboard input as readable text, for the event track of a recording.
//!
//! Key events arrive as X11 keysyms (see `wire`). Printable characters become themselves;
//! other keys and chords become bracketed names (`<Enter>`, `<Ctrl+c>`). Modifier keys alone
//! produce nothing. Only presses count; releases only update the modifier state.

/// Longest text kept before [`KeyTranscriber::take`] must be called: beyond it, keys are
/// counted but not kept (a stuck key or a flood cannot grow memory).
pub const MAX_PENDING_TEXT: usize = 4096;

#[derive(Debug, Default, Clone, Copy)]
struct Modifiers {
    ctrl: bool,
    alt: bool,
    meta: bool,
}

/// Turns key presses into text. Feed it every key event; take the text when convenient.
#[derive(Debug, Default)]
pub struct KeyTranscriber {
    mods: Modifiers,
    text: String,
    overflow: u64,
}

impl KeyTranscriber {
    /// A transcriber with no modifier held.
    pub fn new() -> Self {
        Self::default()
    }

    /// One key event.
    pub fn key(&mut self, keysym: u32, down: bool) {
        match keysym {
            0xffe3 | 0xffe4 => self.mods.ctrl = down,
            0xffe9 | 0xffea | 0xfe03 => self.mods.alt = down,
            0xffe7 | 0xffe8 | 0xffeb | 0xffec => self.mods.meta = down,
            // Shift and lock keys: the keysym of the next key already carries the case.
            0xffe1 | 0xffe2 | 0xffe5 | 0xffe6 => {}
            _ if down => self.press(keysym),
            _ => {}
        }
    }

    fn press(&mut self, keysym: u32) {
        let piece = match (printable(keysym), named(keysym)) {
            (Some(c), _) if !(self.mods.ctrl || self.mods.alt || self.mods.meta) => c.to_string(),
            (Some(c), _) => self.chord(&c.to_lowercase().to_string()),
            (None, Some(name)) if self.mods.ctrl || self.mods.alt || self.mods.meta => {
                self.chord(name)
            }
            (None, Some(name)) => format!("<{name}>"),
            (None, None) => self.chord(&format!("0x{keysym:x}")),
        };
        if self.text.len() + piece.len() > MAX_PENDING_TEXT {
            self.overflow += 1;
        } else {
            self.text.push_str(&piece);
        }
    }

    fn chord(&self, key: &str) -> String {
        let mut s = String::from("<");
        if self.mods.ctrl {
            s.push_str("Ctrl+");
        }
        if self.mods.alt {
            s.push_str("Alt+");
        }
        if self.mods.meta {
            s.push_str("Super+");
        }
        s.push_str(key);
        s.push('>');
        s
    }

    /// True when text is waiting.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.overflow == 0
    }

    /// True when the last key was Enter (a natural point to cut the text into an event).
    pub fn ends_line(&self) -> bool {
        self.text.ends_with("<Enter>")
    }

    /// The text typed since the last call, if any; keys that did not fit are noted at its end.
    pub fn take(&mut self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut text = std::mem::take(&mut self.text);
        if self.overflow > 0 {
            text.push_str(&format!("<{} more keys>", self.overflow));
            self.overflow = 0;
        }
        Some(text)
    }
}

fn printable(keysym: u32) -> Option<char> {
    match keysym {
        0x20..=0x7e | 0xa0..=0xff => char::from_u32(keysym),
        0x0100_0000..=0x0110_ffff => {
            char::from_u32(keysym - 0x0100_0000).filter(|c| !c.is_control())
        }
        _ => None,
    }
}

fn named(keysym: u32) -> Option<&'static str> {
    Some(match keysym {
        0xff0d | 0xff8d => "Enter",
        0xff09 => "Tab",
        0xff08 => "Backspace",
        0xff1b => "Esc",
        0xffff | 0xff9f => "Delete",
        0xff50 => "Home",
        0xff51 => "Left",
        0xff52 => "Up",
        0xff53 => "Right",
        0xff54 => "Down",
        0xff55 => "PageUp",
        0xff56 => "PageDown",
        0xff57 => "End",
        0xff63 => "Insert",
        0xffbe => "F1",
        0xffbf => "F2",
        0xffc0 => "F3",
        0xffc1 => "F4",
        0xffc2 => "F5",
        0xffc3 => "F6",
        0xffc4 => "F7",
        0xffc5 => "F8",
        0xffc6 => "F9",
        0xffc7 => "F10",
        0xffc8 => "F11",
        0xffc9 => "F12",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &[(u32, bool)]) -> String {
        let mut t = KeyTranscriber::new();
        for &(k, d) in keys {
            t.key(k, d);
        }
        t.take().unwrap_or_default()
    }

    fn press(k: u32) -> [(u32, bool); 2] {
        [(k, true), (k, false)]
    }

    #[test]
    fn plain_text_and_named_keys() {
        let mut keys = Vec::new();
        for c in "ls -la".chars() {
            keys.extend(press(c as u32));
        }
        keys.extend(press(0xff0d));
        assert_eq!(typed(&keys), "ls -la<Enter>");
    }

    #[test]
    fn shift_is_in_the_keysym_and_chords_are_named() {
        let keys = [
            (0xffe1, true),
            (u32::from(b'A'), true),
            (0xffe1, false),
            (0xffe3, true),
            (u32::from(b'c'), true),
            (0xffe3, false),
            (0xffe3, true),
            (0xffe9, true),
            (0xffff, true),
        ];
        assert_eq!(typed(&keys), "A<Ctrl+c><Ctrl+Alt+Delete>");
    }

    #[test]
    fn unicode_and_unknown_keysyms() {
        let keys = [(0x0100_20ac, true), (0xe9, true), (0x1234, true)];
        assert_eq!(typed(&keys), "€é<0x1234>");
    }

    #[test]
    fn a_flood_is_bounded_and_counted() {
        let mut t = KeyTranscriber::new();
        for _ in 0..10_000 {
            t.key(u32::from(b'x'), true);
        }
        let text = t.take().unwrap();
        assert!(text.len() < MAX_PENDING_TEXT + 32);
        assert!(text.ends_with(&format!("<{} more keys>", 10_000 - MAX_PENDING_TEXT)));
        assert!(t.take().is_none());
    }
}

//! Keyboard input as readable text, for the event track of a recording, and as command lines,
//! for the risk rules.
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

/// The longest command line kept, in characters: beyond it, further characters are dropped
/// (the line is marked cut) so a flood cannot grow memory.
pub const MAX_LINE: usize = 1024;

/// What a key did to the command line being typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKey {
    /// Nothing to look at (editing, cursor moves, modifiers, releases).
    Edit,
    /// Enter: this line is being submitted (the line is empty again afterwards).
    Submit(String),
}

/// Follows the command line a user types into a terminal or a run box, as a shell's line editor
/// would, for the risk rules that look at commands: printable characters insert at the cursor;
/// Backspace, Delete, Left, Right, Home, End, Ctrl+A/E/U/K/W edit; Enter submits; Ctrl+C, Escape
/// and history keys (Up, Down) leave a line whose text cannot be known here, so it starts over.
/// Text outside a terminal (an editor, a form) is followed the same way: a line is what was
/// typed between two Enters.
#[derive(Debug, Default)]
pub struct LineEditor {
    mods: Modifiers,
    line: Vec<char>,
    cursor: usize,
    cut: bool,
}

impl LineEditor {
    /// An empty line, no modifier held.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line as typed so far.
    pub fn line(&self) -> String {
        self.line.iter().collect()
    }

    /// Puts `line` back as the line being typed, the cursor at its end (a submission that did
    /// not reach the target).
    pub fn set(&mut self, line: &str) {
        self.line = line.chars().take(MAX_LINE).collect();
        self.cursor = self.line.len();
        self.cut = false;
    }

    /// One key event.
    pub fn key(&mut self, keysym: u32, down: bool) -> LineKey {
        match keysym {
            0xffe3 | 0xffe4 => self.mods.ctrl = down,
            0xffe9 | 0xffea | 0xfe03 => self.mods.alt = down,
            0xffe7 | 0xffe8 | 0xffeb | 0xffec => self.mods.meta = down,
            _ if down => return self.press(keysym),
            _ => {}
        }
        LineKey::Edit
    }

    fn press(&mut self, keysym: u32) -> LineKey {
        if self.mods.alt || self.mods.meta {
            return LineKey::Edit;
        }
        if self.mods.ctrl {
            match printable(keysym).map(|c| c.to_ascii_lowercase()) {
                Some('a') => self.cursor = 0,
                Some('e') => self.cursor = self.line.len(),
                Some('u') => {
                    self.line.drain(..self.cursor);
                    self.cursor = 0;
                }
                Some('k') => self.line.truncate(self.cursor),
                Some('w') => self.delete_word(),
                Some('h') => self.backspace(),
                Some('m' | 'j') => return self.submit(),
                Some('c' | 'g') => self.clear(),
                _ => {}
            }
            return LineKey::Edit;
        }
        if let Some(c) = printable(keysym) {
            self.insert(c);
            return LineKey::Edit;
        }
        match keysym {
            0xff0d | 0xff8d => return self.submit(),
            0xff09 => self.insert('\t'),
            0xff08 => self.backspace(),
            0xffff | 0xff9f if self.cursor < self.line.len() => {
                self.line.remove(self.cursor);
            }
            0xff51 => self.cursor = self.cursor.saturating_sub(1),
            0xff53 => self.cursor = (self.cursor + 1).min(self.line.len()),
            0xff50 => self.cursor = 0,
            0xff57 => self.cursor = self.line.len(),
            // History, Escape: what the line now holds is not known here.
            0xff52 | 0xff54 | 0xff1b => self.clear(),
            _ => {}
        }
        LineKey::Edit
    }

    fn insert(&mut self, c: char) {
        if self.line.len() >= MAX_LINE {
            self.cut = true;
            return;
        }
        self.line.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.line.remove(self.cursor);
        }
    }

    fn delete_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.line[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.line[start - 1].is_whitespace() {
            start -= 1;
        }
        self.line.drain(start..self.cursor);
        self.cursor = start;
    }

    fn clear(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.cut = false;
    }

    fn submit(&mut self) -> LineKey {
        let mut line = self.line();
        if self.cut {
            line.push('…');
        }
        self.clear();
        LineKey::Submit(line)
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

    fn line_keys(editor: &mut LineEditor, keys: &[u32]) -> Vec<LineKey> {
        let mut out = Vec::new();
        for &k in keys {
            out.push(editor.key(k, true));
            out.push(editor.key(k, false));
        }
        out.retain(|k| *k != LineKey::Edit);
        out
    }

    fn text(s: &str) -> Vec<u32> {
        s.chars().map(|c| c as u32).collect()
    }

    #[test]
    fn the_line_editor_follows_what_a_shell_would_run() {
        const ENTER: u32 = 0xff0d;
        const BACKSPACE: u32 = 0xff08;
        const LEFT: u32 = 0xff51;
        const HOME: u32 = 0xff50;
        let mut e = LineEditor::new();
        let mut keys = text("net usr");
        keys.push(LEFT);
        keys.extend(text("e"));
        keys.extend([0xff57]);
        keys.extend(text(" eve /ad"));
        keys.extend(text("x"));
        keys.push(BACKSPACE);
        keys.extend(text("d"));
        keys.push(HOME);
        keys.extend(text("sudo "));
        keys.push(ENTER);
        assert_eq!(
            line_keys(&mut e, &keys),
            vec![LineKey::Submit("sudo net user eve /add".into())]
        );
        assert_eq!(e.line(), "", "empty after Enter");

        // Ctrl+U clears before the cursor, Ctrl+W deletes a word, Ctrl+C abandons the line.
        let mut keys = text("rm -rf / ");
        keys.extend([0xffe3, u32::from(b'w'), u32::from(b'w')]);
        let mut e = LineEditor::new();
        for k in keys {
            e.key(k, true);
            if k != 0xffe3 {
                e.key(k, false);
            }
        }
        e.key(0xffe3, false);
        assert_eq!(e.line(), "rm ");
        e.key(0xffe3, true);
        e.key(u32::from(b'c'), true);
        e.key(0xffe3, false);
        assert_eq!(e.line(), "");
        // History recall: unknown, starts over.
        line_keys(&mut e, &text("echo"));
        line_keys(&mut e, &[0xff52]);
        assert_eq!(
            line_keys(&mut e, &[ENTER]),
            vec![LineKey::Submit(String::new())]
        );
    }

    #[test]
    fn a_long_line_is_bounded_and_marked() {
        let mut e = LineEditor::new();
        let mut keys = vec![u32::from(b'a'); MAX_LINE + 500];
        keys.push(0xff8d);
        let out = line_keys(&mut e, &keys);
        let LineKey::Submit(line) = &out[0] else {
            panic!("submitted")
        };
        assert_eq!(line.chars().count(), MAX_LINE + 1);
        assert!(line.ends_with('…'));
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

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
            0xffe9 | 0xffea => self.mods.alt = down,
            0xffe7 | 0xffe8 | 0xffeb | 0xffec => self.mods.meta = down,
            // Shift, AltGr and lock keys: the keysym of the next key already carries the
            // character.
            0xffe1 | 0xffe2 | 0xffe5 | 0xffe6 | 0xfe03 => {}
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

/// The longest command line kept, in characters: beyond it, the characters farthest from the
/// cursor give way (the line is marked cut), so a flood cannot grow memory and padding cannot
/// push what is typed out of sight.
pub const MAX_LINE: usize = 1024;
/// The most of what was typed into a line that is kept, in characters (runs of white space count
/// as one); beyond it the oldest give way.
pub const MAX_TYPED: usize = 16 * 1024;

/// What a key did to the command line being typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKey {
    /// Nothing to look at (editing, cursor moves, modifiers, releases).
    Edit,
    /// Enter: this line is being submitted (the line is empty again afterwards).
    Submit(Submitted),
}

/// A submitted line: as edited, and every character typed into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The line as the editor followed it (empty when a key it cannot follow, such as a
    /// history recall, left its text unknown).
    pub line: String,
    /// Every printable character typed since the last submission or Ctrl+C, in order,
    /// whatever was erased, recalled or moved meanwhile (runs of white space as one; the last
    /// [`MAX_TYPED`]).
    pub typed: String,
    /// The line's text could not be followed (history, completion, keys not modelled).
    pub unknown: bool,
    /// The line grew past [`MAX_LINE`]: some of it is not in `line`.
    pub cut: bool,
}

/// Follows the command line a user types into a terminal or a run box, as a shell's line editor
/// would, for the risk rules that look at commands. Printable characters (the keypad's too)
/// insert at the cursor; Backspace, Delete, Left, Right, Home, End (and the keypad's), Ctrl+A/E/
/// B/F/D/H/U/K/W/Y, Ctrl+Left/Right and Alt+B/F edit; Enter, keypad Enter, Linefeed, Ctrl+M/J/O
/// (with any modifier) submit; Ctrl+C and Ctrl+G abandon the line. Keys it cannot follow (Up,
/// Down, Tab, Escape, other chords) leave the line's text unknown: then only what was typed is
/// known, which is why every submission carries that too ([`Submitted::typed`]). Text outside a
/// terminal (an editor, a form) is followed the same way: a line is what was typed between two
/// Enters.
#[derive(Debug, Default)]
pub struct LineEditor {
    mods: Modifiers,
    line: Vec<char>,
    cursor: usize,
    cut: bool,
    unknown: bool,
    typed: Vec<char>,
    killed: Vec<char>,
    /// The last key killed text (a next kill adds to it, as readline's do).
    killing: bool,
    /// The line before the last submission, for [`LineEditor::undo_submit`].
    before: Option<Box<LineEditor>>,
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

    /// Puts back the line the last submission took (a submission that did not reach the
    /// target): the next Enter submits it again.
    pub fn undo_submit(&mut self) {
        if let Some(before) = self.before.take() {
            // The modifiers are the keyboard's now, not the line's.
            let mods = self.mods;
            *self = *before;
            self.mods = mods;
        }
    }

    /// One key event.
    pub fn key(&mut self, keysym: u32, down: bool) -> LineKey {
        match keysym {
            0xffe3 | 0xffe4 => self.mods.ctrl = down,
            // Alt and Meta; AltGr (ISO_Level3_Shift, 0xfe03) only chooses the character.
            0xffe9 | 0xffea => self.mods.alt = down,
            0xffe7 | 0xffe8 | 0xffeb | 0xffec => self.mods.meta = down,
            _ if down => return self.press(keysym),
            _ => {}
        }
        LineKey::Edit
    }

    fn press(&mut self, keysym: u32) -> LineKey {
        let killing = std::mem::take(&mut self.killing);
        // Enter in every form: Return, keypad Enter, Linefeed, with any modifier.
        if matches!(keysym, 0xff0d | 0xff8d | 0xff0a) {
            return self.submit();
        }
        let alt = self.mods.alt || self.mods.meta;
        // Ctrl+Alt is AltGr on Windows: with a character that is no letter, it types it.
        if self.mods.ctrl && alt {
            if let Some(c) = printable(keysym).filter(|c| !c.is_alphabetic()) {
                self.insert(c);
                return LineKey::Edit;
            }
        }
        if self.mods.ctrl && !alt {
            match printable(keysym).map(|c| c.to_ascii_lowercase()) {
                Some('a') => self.cursor = 0,
                Some('e') => self.cursor = self.line.len(),
                Some('b') => self.cursor = self.cursor.saturating_sub(1),
                Some('f') => self.cursor = (self.cursor + 1).min(self.line.len()),
                Some('d') => self.delete(),
                Some('h') => self.backspace(),
                Some('u') => {
                    let gone: Vec<char> = self.line.drain(..self.cursor).collect();
                    self.kill(gone, true, killing);
                    self.cursor = 0;
                }
                Some('k') => {
                    let gone: Vec<char> = self.line.drain(self.cursor..).collect();
                    self.kill(gone, false, killing);
                }
                Some('w') => self.delete_word(killing),
                Some('y') => {
                    for c in self.killed.clone() {
                        self.insert(c);
                    }
                }
                Some('m' | 'j' | 'o') => return self.submit(),
                Some('c' | 'g') => self.abandon(),
                _ => match keysym {
                    0xff51 | 0xff96 => self.word_left(),
                    0xff53 | 0xff98 => self.word_right(),
                    _ => self.unknown = true,
                },
            }
            return LineKey::Edit;
        }
        if alt {
            match printable(keysym).map(|c| c.to_ascii_lowercase()) {
                Some('b') => self.word_left(),
                Some('f') => self.word_right(),
                // Alt+# (readline: comment out and submit): into the history all the same.
                Some('#') => return self.submit(),
                _ => self.unknown = true,
            }
            return LineKey::Edit;
        }
        if let Some(c) = printable(keysym) {
            self.insert(c);
            return LineKey::Edit;
        }
        match keysym {
            0xff08 => self.backspace(),
            0xffff | 0xff9f => self.delete(),
            0xff51 | 0xff96 => self.cursor = self.cursor.saturating_sub(1),
            0xff53 | 0xff98 => self.cursor = (self.cursor + 1).min(self.line.len()),
            0xff50 | 0xff95 => self.cursor = 0,
            0xff57 | 0xff9c => self.cursor = self.line.len(),
            // Modifiers, locks and function keys change no text.
            0xffe1 | 0xffe2 | 0xffe5 | 0xffe6 | 0xfe03 | 0xffbe..=0xffc9 => {}
            // History, completion, Escape and anything else: the text is no longer known.
            _ => self.unknown = true,
        }
        LineKey::Edit
    }

    fn insert(&mut self, c: char) {
        if self.line.len() >= MAX_LINE {
            // The character farthest from the cursor gives way: what is typed around the
            // cursor (what the shell will run with it) is always kept.
            if self.cursor >= self.line.len() / 2 {
                self.line.remove(0);
                self.cursor = self.cursor.saturating_sub(1);
            } else {
                self.line.pop();
            }
            self.cut = true;
        }
        self.line.insert(self.cursor, c);
        self.cursor += 1;
        if c.is_whitespace() && self.typed.last().is_some_and(|l| l.is_whitespace()) {
            return;
        }
        if self.typed.len() >= MAX_TYPED {
            self.typed.remove(0);
        }
        self.typed.push(c);
    }

    /// Keeps killed text for a yank; kills one after another add up (`before`: this one was
    /// before the cursor, so it goes in front).
    fn kill(&mut self, gone: Vec<char>, before: bool, killing: bool) {
        if killing {
            if before {
                self.killed.splice(0..0, gone);
            } else {
                self.killed.extend(gone);
            }
            self.killed.truncate(MAX_LINE);
        } else {
            self.killed = gone;
        }
        self.killing = true;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.line.remove(self.cursor);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.line.len() {
            self.line.remove(self.cursor);
        }
    }

    fn word_left(&mut self) {
        while self.cursor > 0 && self.line[self.cursor - 1].is_whitespace() {
            self.cursor -= 1;
        }
        while self.cursor > 0 && !self.line[self.cursor - 1].is_whitespace() {
            self.cursor -= 1;
        }
    }

    fn word_right(&mut self) {
        let n = self.line.len();
        while self.cursor < n && self.line[self.cursor].is_whitespace() {
            self.cursor += 1;
        }
        while self.cursor < n && !self.line[self.cursor].is_whitespace() {
            self.cursor += 1;
        }
    }

    fn delete_word(&mut self, killing: bool) {
        let end = self.cursor;
        self.word_left();
        let gone: Vec<char> = self.line.drain(self.cursor..end).collect();
        self.kill(gone, true, killing);
    }

    fn abandon(&mut self) {
        self.line.clear();
        self.typed.clear();
        self.cursor = 0;
        self.cut = false;
        self.unknown = false;
    }

    fn submit(&mut self) -> LineKey {
        self.before = Some(Box::new(LineEditor {
            mods: self.mods,
            line: self.line.clone(),
            cursor: self.cursor,
            cut: self.cut,
            unknown: self.unknown,
            typed: self.typed.clone(),
            killed: self.killed.clone(),
            killing: false,
            before: None,
        }));
        let mut line = if self.unknown {
            String::new()
        } else {
            self.line()
        };
        if self.cut && !self.unknown {
            line.insert(0, '…');
        }
        let submitted = Submitted {
            line,
            typed: self.typed.iter().collect(),
            unknown: self.unknown,
            cut: self.cut,
        };
        self.abandon();
        LineKey::Submit(submitted)
    }
}

fn printable(keysym: u32) -> Option<char> {
    match keysym {
        0x20..=0x7e | 0xa0..=0xff => char::from_u32(keysym),
        // The keypad's digits and operators type characters too.
        0xffb0..=0xffb9 => char::from_u32(u32::from(b'0') + keysym - 0xffb0),
        0xff80 => Some(' '),
        0xffaa => Some('*'),
        0xffab => Some('+'),
        0xffac => Some(','),
        0xffad => Some('-'),
        0xffae => Some('.'),
        0xffaf => Some('/'),
        0xffbd => Some('='),
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

    fn line_keys(editor: &mut LineEditor, keys: &[u32]) -> Vec<Submitted> {
        let mut out = Vec::new();
        for &k in keys {
            for down in [true, false] {
                if let LineKey::Submit(s) = editor.key(k, down) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Keys with Ctrl held.
    fn ctrl(keys: &[u32]) -> Vec<(u32, bool)> {
        let mut out = vec![(CTRL, true)];
        for &k in keys {
            out.extend([(k, true), (k, false)]);
        }
        out.push((CTRL, false));
        out
    }

    fn events(editor: &mut LineEditor, events: &[(u32, bool)]) -> Vec<Submitted> {
        events
            .iter()
            .filter_map(|&(k, d)| match editor.key(k, d) {
                LineKey::Submit(s) => Some(s),
                LineKey::Edit => None,
            })
            .collect()
    }

    fn text(s: &str) -> Vec<u32> {
        s.chars().map(|c| c as u32).collect()
    }

    const ENTER: u32 = 0xff0d;
    const CTRL: u32 = 0xffe3;
    const LEFT: u32 = 0xff51;

    #[test]
    fn the_line_editor_follows_what_a_shell_would_run() {
        const BACKSPACE: u32 = 0xff08;
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
        let out = line_keys(&mut e, &keys);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].line, "sudo net user eve /add");
        assert_eq!(out[0].typed, "net usre eve /adxdsudo ");
        assert!(!out[0].unknown);
        assert_eq!(e.line(), "", "empty after Enter");

        // Ctrl+W deletes words, Ctrl+C abandons the line (and what was typed in it).
        let mut e = LineEditor::new();
        line_keys(&mut e, &text("rm -rf / "));
        events(&mut e, &ctrl(&text("ww")));
        assert_eq!(e.line(), "rm ");
        events(&mut e, &ctrl(&text("c")));
        assert_eq!(e.line(), "");
        let out = line_keys(&mut e, &[ENTER]);
        assert_eq!(out[0].typed, "");
    }

    #[test]
    fn what_the_editor_cannot_follow_is_still_in_what_was_typed() {
        // History recall after typing: the line is unknown, what was typed is known.
        let mut e = LineEditor::new();
        let mut keys = text("useradd eve");
        keys.extend([0xff52, 0xff54, ENTER]);
        let out = line_keys(&mut e, &keys);
        assert!(out[0].unknown);
        assert_eq!(out[0].line, "");
        assert_eq!(out[0].typed, "useradd eve");
        // Kill and yank, word moves: followed.
        let mut e = LineEditor::new();
        line_keys(&mut e, &text("useradd eve"));
        events(&mut e, &ctrl(&text("u")));
        assert_eq!(e.line(), "");
        events(&mut e, &ctrl(&text("y")));
        assert_eq!(e.line(), "useradd eve");
        let mut e = LineEditor::new();
        line_keys(&mut e, &text("add eve"));
        events(&mut e, &ctrl(&[LEFT, LEFT]));
        line_keys(&mut e, &text("user"));
        assert_eq!(e.line(), "useradd eve");
        // Kills one after another add up; a yank after Ctrl+C brings them all back.
        let mut e = LineEditor::new();
        line_keys(&mut e, &text("net user eve pw /add"));
        events(&mut e, &ctrl(&text("wwwww")));
        events(&mut e, &ctrl(&text("c")));
        events(&mut e, &ctrl(&text("y")));
        assert_eq!(e.line(), "net user eve pw /add");
        // Alt+# submits; Ctrl+Alt types what AltGr would.
        let mut e = LineEditor::new();
        events(
            &mut e,
            &[(CTRL, true), (0xffe9, true), (u32::from(b'|'), true)],
        );
        assert_eq!(e.line(), "|");
        let out = events(&mut e, &[(CTRL, false), (u32::from(b'#'), true)]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn every_form_of_enter_submits_and_the_keypad_types() {
        for (mods, key) in [
            (vec![], 0xff8d),
            (vec![], 0xff0a),
            (vec![CTRL], ENTER),
            (vec![0xffe9], ENTER),
            (vec![CTRL], u32::from(b'm')),
            (vec![CTRL], u32::from(b'j')),
            (vec![CTRL], u32::from(b'o')),
        ] {
            let mut e = LineEditor::new();
            line_keys(&mut e, &text("ls"));
            let mut ev: Vec<(u32, bool)> = mods.iter().map(|&m| (m, true)).collect();
            ev.extend([(key, true), (key, false)]);
            ev.extend(mods.iter().map(|&m| (m, false)));
            let out = events(&mut e, &ev);
            assert_eq!(out.len(), 1, "{mods:?} {key:#x}");
            assert_eq!(out[0].line, "ls");
        }
        // rm -rf / with the keypad's minus and slash; AltGr picks characters, it is no chord.
        let mut e = LineEditor::new();
        line_keys(&mut e, &[u32::from(b'r'), u32::from(b'm'), 0xff80, 0xffad]);
        line_keys(&mut e, &text("rf "));
        line_keys(&mut e, &[0xffaf]);
        events(
            &mut e,
            &[(0xfe03, true), (u32::from(b'|'), true), (0xfe03, false)],
        );
        assert_eq!(e.line(), "rm -rf /|");
    }

    #[test]
    fn a_long_line_keeps_its_end_and_is_marked() {
        let mut e = LineEditor::new();
        let mut keys = vec![u32::from(b' '); MAX_LINE + 500];
        keys.extend(text("useradd eve"));
        keys.push(0xff8d);
        let out = line_keys(&mut e, &keys);
        assert_eq!(out[0].line.chars().count(), MAX_LINE + 1);
        assert!(out[0].line.starts_with('…'));
        assert!(
            out[0].line.ends_with("useradd eve"),
            "padding cannot push the command out"
        );
        assert_eq!(out[0].typed, " useradd eve", "white space runs count once");
        // Padding after the command, then Home: the command stays, the padding's end goes.
        let mut e2 = LineEditor::new();
        let mut keys = text("useradd eve #");
        keys.extend(vec![u32::from(b'a'); MAX_LINE - 13]);
        keys.push(0xff50);
        keys.extend(text("x;"));
        keys.push(ENTER);
        let out2 = line_keys(&mut e2, &keys);
        assert!(out2[0].line.starts_with("…x;useradd eve #aaa") && out2[0].cut);
        assert!(out2[0].typed.starts_with("useradd eve #aaa"));
        // A submission that did not go through is put back as it was.
        e.undo_submit();
        assert!(e.line().ends_with("useradd eve"));
        assert_eq!(e.line().chars().count(), MAX_LINE);
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

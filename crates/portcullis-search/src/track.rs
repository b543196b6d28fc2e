//! What of a recording's event track is searched: command lines typed (the key log cut at each
//! Enter), clipboard text, the names of files that crossed, and words read off the screen with
//! their boxes. The track is the recording's own `events.jsonl` (signed with it); this reads it
//! from a line boundary on, bounded, and says how far it got, so a live recording is read a
//! piece at a time and a typed line is taken whole once its Enter (or the recording's end) came.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest event line read; longer ones are passed over.
pub const MAX_EVENT_LINE: usize = 1 << 20;
/// The most text one searchable entry keeps, in bytes.
pub const MAX_ENTRY_TEXT: usize = 16 * 1024;

/// Where a searchable text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A command line the user typed.
    Typed,
    /// Clipboard text, either way.
    Clipboard,
    /// The name (drive and path) of a file that crossed or changed.
    File,
    /// Words read off the screen.
    Screen,
}

impl Kind {
    /// The name the API and the index use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Typed => "typed",
            Kind::Clipboard => "clipboard",
            Kind::File => "file",
            Kind::Screen => "screen",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        [Kind::Typed, Kind::Clipboard, Kind::File, Kind::Screen]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// A word on the screen and its box, in desktop pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordBox {
    /// The word.
    pub word: String,
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// One searchable text of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// When, ms on the recording's clock.
    pub t_ms: u64,
    /// The text.
    pub text: String,
    /// For screen text: each word's box.
    pub words: Vec<WordBox>,
}

/// What [`read_track`] found.
#[derive(Debug, Default)]
pub struct Reading {
    /// The entries, in track order.
    pub entries: Vec<Entry>,
    /// Where the next reading starts (with the typed line still open there, if any).
    pub resume: Resume,
    /// How the session was entered (`browser`, `rdp`), when its start was in these bytes.
    pub entry_path: Option<String>,
}

/// Where a reading of a track starts: byte `offset`, and the typed line open there (its first
/// key's time and its text so far), which the next reading goes on with. Every byte is read
/// once: nothing is indexed twice, and an open line never holds the reading back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Byte offset in the track.
    pub offset: u64,
    /// The offset is inside a line too long to read (its rest is passed over).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mid_line: bool,
    /// The typed line open at `offset`: when it began (ms) and its text so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<(u64, String)>,
}

/// Reads event lines from `bytes`, the track from `resume.offset` on. A last line without its
/// newline is left for later, unless `complete` (the track has ended: then it is read, and a
/// typed line still open is taken as it is). When `bytes` holds no whole line and is
/// `MAX_EVENT_LINE` or longer, it is passed over as part of a line too long to read.
/// Unreadable or overlong lines are passed over.
pub fn read_track(bytes: &[u8], resume: &Resume, complete: bool) -> Reading {
    let mut reading = Reading::default();
    let mut open = resume.open.clone();
    let mut at = resume.offset;
    let mut rest = bytes;
    if resume.mid_line {
        // The rest of a line too long to read.
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                at += end as u64 + 1;
                rest = &rest[end + 1..];
            }
            None => {
                reading.resume = Resume {
                    offset: at + rest.len() as u64,
                    mid_line: !complete,
                    open,
                };
                return reading;
            }
        }
    }
    loop {
        let (raw, advance) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], end + 1),
            None if complete && !rest.is_empty() => (rest, rest.len()),
            None => break,
        };
        at += advance as u64;
        rest = &rest[advance..];
        if raw.len() > MAX_EVENT_LINE {
            continue;
        }
        let Ok(event) = serde_json::from_slice::<Value>(raw) else {
            continue;
        };
        let t_ms = event.get("t_ms").and_then(Value::as_u64).unwrap_or(0);
        let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or("");
        match text("type") {
            "keys" => {
                let parts = split_keys(text("text"));
                let enters = parts.len() - 1;
                for (i, part) in parts.into_iter().enumerate() {
                    if open.is_none() && !part.is_empty() {
                        open = Some((t_ms, String::new()));
                    }
                    if let Some((_, line)) = &mut open {
                        push_capped(line, &part);
                    }
                    if i < enters {
                        if let Some((start, line)) = open.take() {
                            add(&mut reading, Kind::Typed, start, line, Vec::new());
                        }
                    }
                }
            }
            "clipboard_text" => {
                add(
                    &mut reading,
                    Kind::Clipboard,
                    t_ms,
                    text("text").into(),
                    Vec::new(),
                );
            }
            "file_transfer" | "file_change" => {
                add(
                    &mut reading,
                    Kind::File,
                    t_ms,
                    text("path").into(),
                    Vec::new(),
                );
            }
            "screen_text" => {
                // When the words were on screen: the read took `age_ms`.
                let age = event.get("age_ms").and_then(Value::as_u64).unwrap_or(0);
                let t_ms = t_ms.saturating_sub(age);
                let words = screen_words(&event);
                let joined = words
                    .iter()
                    .map(|w| w.word.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                add(&mut reading, Kind::Screen, t_ms, joined, words);
            }
            "session_start" => {
                if let Some(path) = event.get("entry").and_then(Value::as_str) {
                    reading.entry_path = Some(path.to_owned());
                }
            }
            _ => {}
        }
    }
    let mut mid_line = false;
    if at == resume.offset && bytes.len() >= MAX_EVENT_LINE && !complete {
        // No whole line in a window this long: a line too long to read; passed over.
        at += bytes.len() as u64;
        mid_line = true;
    }
    if complete {
        if let Some((start, line)) = open.take() {
            add(&mut reading, Kind::Typed, start, line, Vec::new());
        }
    }
    reading.resume = Resume {
        offset: at,
        mid_line,
        open,
    };
    reading
}

/// The key log's text cut at each `<Enter>` (and `<Ctrl+c>`, which ends a shell's line too);
/// other bracketed key names (`<BackSpace>`, `<Tab>`) become a space, so words on either side
/// stay apart.
fn split_keys(keys: &str) -> Vec<String> {
    let mut lines = vec![String::new()];
    let mut rest = keys;
    while let Some(open) = rest.find('<') {
        let name_end = rest[open..].find('>').map(|e| open + e);
        match name_end {
            Some(close) if is_key_name(&rest[open + 1..close]) => {
                let name = &rest[open + 1..close];
                if let Some(last) = lines.last_mut() {
                    last.push_str(&rest[..open]);
                }
                if matches!(name, "Enter" | "KP_Enter" | "Ctrl+c" | "Ctrl+C") {
                    lines.push(String::new());
                } else if let Some(last) = lines.last_mut() {
                    last.push(' ');
                }
                rest = &rest[close + 1..];
            }
            _ => {
                if let Some(last) = lines.last_mut() {
                    last.push_str(&rest[..=open]);
                }
                rest = &rest[open + 1..];
            }
        }
    }
    if let Some(last) = lines.last_mut() {
        last.push_str(rest);
    }
    lines
}

/// Whether `name` looks like a key's name (`Enter`, `Ctrl+c`, `12 more keys`).
fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | ' ' | '-'))
}

fn push_capped(text: &mut String, more: &str) {
    for c in more.chars() {
        if text.len() + c.len_utf8() > MAX_ENTRY_TEXT {
            return;
        }
        text.push(c);
    }
}

fn add(reading: &mut Reading, kind: Kind, t_ms: u64, text: String, words: Vec<WordBox>) {
    let mut capped = String::new();
    push_capped(&mut capped, text.trim());
    if !capped.is_empty() {
        reading.entries.push(Entry {
            kind,
            t_ms,
            text: capped,
            words,
        });
    }
}

/// What every `screen_text` event line holds.
const SCREEN_TEXT: &[u8] = b"\"screen_text\"";

/// When the live reader read the screen, from whole lines of an event track (every
/// `screen_text` event, those that found no words too, at the time the picture was taken),
/// added to `reads` in track order: what a catch-up reader of the recording need not read
/// again. Returns whether any said how old its picture was (`age_ms`: tracks written before
/// it was kept have reads stamped when reading ended, seconds after the picture). Lines too
/// long or not JSON are passed over.
pub fn screen_reads(bytes: &[u8], reads: &mut Vec<u64>) -> bool {
    let mut aged = false;
    for event in bytes
        .split(|&b| b == b'\n')
        .filter(|line| line.len() <= MAX_EVENT_LINE)
        // Only lines that can be screen reads are parsed (a track is mostly keys).
        .filter(|line| line.windows(SCREEN_TEXT.len()).any(|w| w == SCREEN_TEXT))
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|event| event.get("type").and_then(Value::as_str) == Some("screen_text"))
    {
        let t = event.get("t_ms").and_then(Value::as_u64).unwrap_or(0);
        let age = event.get("age_ms").and_then(Value::as_u64);
        aged |= age.is_some();
        reads.push(t.saturating_sub(age.unwrap_or(0)));
    }
    aged
}

/// The words of a `screen_text` event (`[[text, x, y, w, h], …]`), malformed ones left out.
fn screen_words(event: &Value) -> Vec<WordBox> {
    let Some(words) = event.get("words").and_then(Value::as_array) else {
        return Vec::new();
    };
    let num = |v: Option<&Value>| {
        v.and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let mut total = 0usize;
    words
        .iter()
        .filter_map(|w| {
            let w = w.as_array()?;
            let word = w.first()?.as_str()?;
            total += word.len() + 1;
            if total > MAX_ENTRY_TEXT {
                return None;
            }
            Some(WordBox {
                word: word.to_owned(),
                x: num(w.get(1))?,
                y: num(w.get(2))?,
                w: num(w.get(3))?,
                h: num(w.get(4))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(lines: &[&str]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn typed_lines_are_cut_at_enter_and_carried_over_once() {
        let bytes = track(&[
            r#"{"t_ms":10,"type":"session_start","user":"a","target":"t","client_addr":"x","entry":"rdp"}"#,
            r#"{"t_ms":100,"type":"keys","text":"net user<Ctrl+c>"}"#,
            r#"{"t_ms":200,"type":"keys","text":"net user eve /add<Enter>ls"}"#,
            r#"{"t_ms":300,"type":"clipboard_text","direction":"to_target","text":"secret plan"}"#,
            r#"{"t_ms":400,"type":"keys","text":" -la"}"#,
        ]);
        let r = read_track(&bytes, &Resume::default(), false);
        assert_eq!(r.entry_path.as_deref(), Some("rdp"));
        let texts: Vec<_> = r
            .entries
            .iter()
            .map(|e| (e.kind, e.t_ms, e.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (Kind::Typed, 100, "net user"),
                (Kind::Typed, 200, "net user eve /add"),
                (Kind::Clipboard, 300, "secret plan"),
            ]
        );
        // "ls -la" is carried over: the next reading starts after every byte read.
        assert_eq!(r.resume.offset, bytes.len() as u64);
        assert_eq!(r.resume.open, Some((200, "ls -la".to_owned())));
        let more = b"{\"t_ms\":500,\"type\":\"keys\",\"text\":\"<Enter>\"}\n".to_vec();
        let again = read_track(&more, &r.resume, false);
        let texts: Vec<_> = again
            .entries
            .iter()
            .map(|e| (e.t_ms, e.text.as_str()))
            .collect();
        assert_eq!(texts, [(200, "ls -la")]);
        assert_eq!(again.resume.open, None);
        assert_eq!(again.resume.offset, r.resume.offset + more.len() as u64);
        // Complete: an open line is taken as it is.
        let done = read_track(b"", &r.resume, true);
        assert_eq!(done.entries.last().unwrap().text, "ls -la");
    }

    #[test]
    fn screen_words_keep_their_boxes_and_files_their_names() {
        let bytes = track(&[
            r#"{"t_ms":5,"type":"screen_text","words":[["10.1.2.3",4,5,60,12],["bad"],["ok",1,2,3,4]]}"#,
            r#"{"t_ms":6,"type":"file_transfer","direction":"to_target","path":"C:/x/payroll.xlsx","bytes":9}"#,
            "not json",
            r#"{"t_ms":7,"type":"keys"}"#,
            r#"{"t_ms":9000,"type":"screen_text","words":[],"age_ms":2500}"#,
            r#"{"t_ms":9100,"type":"screen_text","words":[["late",1,1,1,1]],"age_ms":2500}"#,
        ]);
        let mut reads = Vec::new();
        assert!(screen_reads(&bytes, &mut reads));
        assert_eq!(reads, [5, 6500, 6600]);
        let mut old = Vec::new();
        assert!(!screen_reads(&bytes[..bytes.len() / 3], &mut old));
        let r = read_track(&bytes, &Resume::default(), true);
        // Screen words are at the time the picture was taken; a read of nothing is no entry.
        assert_eq!(r.entries[2].t_ms, 6600);
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[0].kind, Kind::Screen);
        assert_eq!(r.entries[0].text, "10.1.2.3 ok");
        assert_eq!(r.entries[0].words.len(), 2);
        assert_eq!(r.entries[0].words[0].x, 4);
        assert_eq!(r.entries[1].text, "C:/x/payroll.xlsx");
        assert_eq!(r.resume.offset, bytes.len() as u64);
    }

    #[test]
    fn half_written_and_overlong_lines() {
        let line = br#"{"t_ms":1,"type":"clipboard_text","text":"x"}"#;
        // Being written: left for later; once the track is complete, read.
        let r = read_track(line, &Resume::default(), false);
        assert!(r.entries.is_empty());
        assert_eq!(r.resume.offset, 0);
        let r = read_track(line, &Resume::default(), true);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.resume.offset, line.len() as u64);
        // A window with no line end, as long as a line may be: passed over to its end.
        let long = vec![b'a'; MAX_EVENT_LINE];
        let r = read_track(&long, &Resume::default(), false);
        assert_eq!(r.resume.offset, MAX_EVENT_LINE as u64);
        assert!(r.resume.mid_line);
        let mut tail = b"aaa\n".to_vec();
        tail.extend_from_slice(line);
        tail.push(b'\n');
        let r2 = read_track(&tail, &r.resume, false);
        assert_eq!(r2.entries.len(), 1);
        assert!(!r2.resume.mid_line);
        assert_eq!(r2.resume.offset, r.resume.offset + tail.len() as u64);
        let long_text = "a".repeat(3 * MAX_ENTRY_TEXT);
        let bytes = track(&[&format!(
            r#"{{"t_ms":1,"type":"keys","text":"{long_text}<Enter>"}}"#
        )]);
        let r = read_track(&bytes, &Resume::default(), false);
        assert_eq!(r.entries[0].text.len(), MAX_ENTRY_TEXT);
        assert_eq!(split_keys("a<b c<Enter>"), ["a<b c", ""]);
        assert_eq!(split_keys("<<Enter>>"), ["<", ">"]);
    }
}

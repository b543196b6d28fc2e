//! A session's report for auditors: one self-contained HTML document (no script, nothing fetched,
//! the flagged moments' pictures inline) saying who connected where and when, how it ended, the
//! risk score and its reasons, the review, the flagged moments, what the gateway noted during the
//! session (risk hits, policy decisions, crossings, holds, watchers) and the command lines typed.
//! Printing it from a browser gives the PDF.
//!
//! Everything in it that a person typed or a target showed (names, notes, command lines, file
//! names) is escaped: the report is opened by an auditor and must not be a way to reach them.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use portcullis_recording::catalog::Summary;
use portcullis_search::track::{read_track, Kind as TextKind, Resume};
use portcullis_store::{RecordingReview, ReviewState};
use serde_json::Value;

use super::review::REPORT_CSP;

/// Most event rows and typed lines the report lists (a note says how many more there were).
const MAX_ROWS: usize = 2000;
/// Longest text shown in one cell, in characters (the rest is cut with a note).
const MAX_CELL: usize = 400;

/// What a report is made of.
pub(crate) struct ReportInput<'a> {
    pub summary: &'a Summary,
    pub review: Option<&'a RecordingReview>,
    /// The event track's bytes (JSON lines) as the manifest lists them.
    pub track: &'a [u8],
    /// Each flag's picture (JPEG), by flag id.
    pub thumbs: &'a HashMap<String, Vec<u8>>,
    pub generated_by: &'a str,
    pub generated_at_ms: i64,
}

/// Invisible characters that reorder or hide text (bidirectional overrides and isolates, zero-
/// width characters, the byte order mark): `gpj.exe` must not read as `exe.jpg`.
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c.is_control() && c != '\n' && c != '\t') || is_format_char(c) => {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
    out
}

/// Escaped, and cut at [`MAX_CELL`] characters.
fn cell(text: &str) -> String {
    match text.char_indices().nth(MAX_CELL) {
        Some((cut, _)) => format!("{}… (cut)", esc(&text[..cut])),
        None => esc(text),
    }
}

/// A Unix-ms moment in UTC, to the second.
fn when(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms"),
    }
}

/// A moment on the recording's clock: `h:mm:ss` or `m:ss`.
fn at(t_ms: u64) -> String {
    let s = t_ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn text_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// One line of "what the gateway noted", or `None` for an event the report leaves out (key
/// strokes are summed up as command lines, screen words are for search).
fn noted(e: &Value) -> Option<(&'static str, String)> {
    let t = |k| text_of(e, k);
    let n = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(match t("type") {
        "session_start" => (
            "start",
            format!("session started from {}", t("client_addr")),
        ),
        "session_end" => ("end", format!("session ended: {}", t("reason"))),
        "risk" => (
            "risk",
            format!(
                "risk rule {} ({}, {} points, {}): {} — “{}”",
                t("rule"),
                t("action"),
                n("score"),
                t("source"),
                t("description"),
                t("excerpt")
            ),
        ),
        "policy" => (
            if t("decision") == "deny" {
                "deny"
            } else {
                "allow"
            },
            format!("policy {} {}: {}", t("decision"), t("action"), t("reason")),
        ),
        "clipboard" => (
            "crossing",
            format!(
                "clipboard {} ({} bytes)",
                direction(t("direction")),
                n("bytes")
            ),
        ),
        "clipboard_text" => return None,
        "file_transfer" => (
            "crossing",
            format!(
                "file {} {} ({} bytes)",
                direction(t("direction")),
                t("path"),
                n("bytes")
            ),
        ),
        "file_change" => ("crossing", format!("file {} {}", t("change"), t("path"))),
        "frozen" => ("hold", format!("frozen by {}", t("by"))),
        "unfrozen" => ("hold", format!("unfrozen by {}", t("by"))),
        "input_held" => ("hold", format!("input held: {}", t("why"))),
        "input_released" => ("hold", format!("input released by {}", t("by"))),
        "watcher_joined" => ("watch", format!("{} started watching", t("user"))),
        "viewer_joined" => ("watch", format!("{} joined", t("user"))),
        "viewer_left" => ("watch", format!("{} left", t("user"))),
        "frames_dropped" => ("gap", format!("{} screen updates merged", n("count"))),
        "events_lost" => ("gap", format!("{} events not recorded", n("count"))),
        _ => return None,
    })
}

fn direction(d: &str) -> &str {
    match d {
        "to_target" => "to the target",
        "from_target" => "from the target",
        other => other,
    }
}

/// The report as one HTML document.
pub(crate) fn render(input: &ReportInput<'_>) -> String {
    let s = input.summary;
    // One line at a time, and only what the report shows (screen words, hundreds an hour, are for
    // search): a long track never sits in memory as JSON values.
    const SCREEN: &[u8] = b"\"type\":\"screen_text\"";
    let is_screen = |l: &[u8]| l.windows(SCREEN.len()).any(|w| w == SCREEN);
    let mut entry = None;
    let mut noted_rows: Vec<(u64, &'static str, String)> = Vec::new();
    let mut noted_total = 0usize;
    let mut texts_track = Vec::with_capacity(input.track.len().min(1 << 20));
    for line in input.track.split(|&b| b == b'\n') {
        if line.is_empty() || is_screen(line) {
            continue;
        }
        texts_track.extend_from_slice(line);
        texts_track.push(b'\n');
        let Ok(e) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if entry.is_none() && text_of(&e, "type") == "session_start" {
            entry = Some(text_of(&e, "entry").to_owned()).filter(|e| !e.is_empty());
        }
        if let Some((class, text)) = noted(&e) {
            noted_total += 1;
            if noted_rows.len() < MAX_ROWS {
                let t = e.get("t_ms").and_then(Value::as_u64).unwrap_or(0);
                noted_rows.push((t, class, text));
            }
        }
    }
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("Session report: {} on {}", s.user, s.target);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n",
        csp = esc(REPORT_CSP),
        title = esc(&title),
    );

    // Who, where, when.
    let ended = s.ended_at_ms.map(when).unwrap_or_else(|| "—".to_owned());
    let rows: [(&str, String); 10] = [
        ("Recording", s.id.clone()),
        ("User", s.user.clone()),
        ("Target", s.target.clone()),
        ("From", s.client_addr.clone()),
        ("Entry", entry.unwrap_or_else(|| "—".to_owned())),
        ("Started", when(s.started_at_ms)),
        ("Ended", ended),
        ("Length", at(s.duration_ms)),
        ("Recording state", s.state.as_str().to_owned()),
        (
            "Ended because",
            s.end_reason.clone().unwrap_or_else(|| "—".to_owned()),
        ),
    ];
    h.push_str("<table class=\"facts\">\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{}</td></tr>", cell(&v));
    }
    h.push_str("</table>\n");

    // Risk.
    let _ = writeln!(h, "<h2>Risk: {} / 100</h2>", s.risk_score);
    if s.risk_rules.is_empty() {
        h.push_str("<p>No risk rule fired.</p>\n");
    } else {
        h.push_str("<p>Rules that fired: ");
        let names: Vec<String> = s.risk_rules.iter().map(|r| cell(r)).collect();
        h.push_str(&names.join(", "));
        h.push_str("</p>\n");
    }

    // Review.
    h.push_str("<h2>Review</h2>\n");
    let review = input.review;
    match review.and_then(|r| r.marks.last()) {
        None => h.push_str("<p class=\"open\">Not reviewed.</p>\n"),
        Some(m) => {
            let state = match m.state {
                ReviewState::Reviewed => "Reviewed",
                ReviewState::Reopened => "Reopened (needs another look)",
            };
            let _ = writeln!(
                h,
                "<p class=\"{}\">{state} by {} on {}{}</p>",
                if m.state == ReviewState::Reviewed {
                    "done"
                } else {
                    "open"
                },
                cell(&m.by),
                when(m.at_ms),
                if m.comment.is_empty() {
                    String::new()
                } else {
                    format!(": <q>{}</q>", cell(&m.comment))
                }
            );
        }
    }
    let marks = review.map(|r| r.marks.as_slice()).unwrap_or_default();
    if marks.len() > 1 {
        h.push_str("<table><tr><th>When</th><th>Who</th><th>Mark</th><th>Comment</th></tr>\n");
        for m in marks {
            let state = match m.state {
                ReviewState::Reviewed => "reviewed",
                ReviewState::Reopened => "reopened",
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{}</td></tr>",
                when(m.at_ms),
                cell(&m.by),
                cell(&m.comment)
            );
        }
        h.push_str("</table>\n");
    }

    // Flagged moments.
    let mut flags: Vec<_> = review.map(|r| r.flags.iter().collect()).unwrap_or_default();
    flags.sort_by_key(|f| (f.t_ms, f.at_ms));
    let _ = writeln!(h, "<h2>Flagged moments ({})</h2>", flags.len());
    if flags.is_empty() {
        h.push_str("<p>None.</p>\n");
    }
    for f in flags {
        let _ = write!(
            h,
            "<div class=\"flag\" id=\"{}\"><p><b>{}</b> — {} (flagged by {} on {})</p>",
            esc(&f.id),
            at(f.t_ms),
            cell(&f.note),
            cell(&f.by),
            when(f.at_ms)
        );
        if let Some(jpeg) = input.thumbs.get(&f.id) {
            let _ = write!(
                h,
                "<img alt=\"the screen at {}\" src=\"data:image/jpeg;base64,{}\">",
                at(f.t_ms),
                base64::engine::general_purpose::STANDARD.encode(jpeg)
            );
        }
        h.push_str("</div>\n");
    }

    // What the gateway noted.
    let _ = writeln!(h, "<h2>What the gateway noted ({noted_total})</h2>");
    h.push_str("<table><tr><th>At</th><th>What</th></tr>\n");
    for (t, class, text) in &noted_rows {
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td></tr>",
            at(*t),
            cell(text)
        );
    }
    h.push_str("</table>\n");
    if noted_total > MAX_ROWS {
        let _ = writeln!(
            h,
            "<p>… and {} more (see the recording).</p>",
            noted_total - MAX_ROWS
        );
    }

    // Command lines, clipboard text and file names, as search reads them.
    let reading = read_track(&texts_track, &Resume::default(), true);
    let texts: Vec<_> = reading
        .entries
        .iter()
        .filter(|e| e.kind != TextKind::Screen)
        .collect();
    let _ = writeln!(
        h,
        "<h2>Typed, pasted and transferred ({})</h2>",
        texts.len()
    );
    h.push_str("<table><tr><th>At</th><th>Kind</th><th>Text</th></tr>\n");
    for e in texts.iter().take(MAX_ROWS) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            at(e.t_ms),
            e.kind.as_str(),
            cell(&e.text)
        );
    }
    h.push_str("</table>\n");
    if texts.len() > MAX_ROWS {
        let _ = writeln!(
            h,
            "<p>… and {} more (see the recording).</p>",
            texts.len() - MAX_ROWS
        );
    }

    let _ = write!(
        h,
        "<footer><p>Made by {} on {} from the gateway's recording. The signed recording (its \
         export, checked with <code>portcullis recording verify</code>) is the evidence; this \
         report sums it up.</p></footer>\n</body></html>\n",
        cell(input.generated_by),
        when(input.generated_at_ms)
    );
    h
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .5em;\
text-align:left;vertical-align:top}table.facts th{background:#f4f4f4}\
tr.risk td,tr.deny td{background:#fde8e8}tr.hold td{background:#fff6dd}\
.flag{break-inside:avoid;margin:.8em 0}.flag img{max-width:480px;border:1px solid #999;display:block}\
p.open{color:#a40}p.done{color:#060}code{white-space:pre-wrap;word-break:break-all}\
footer{margin-top:2em;color:#555;font-size:.9em}@media print{body{margin:0}}";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use portcullis_recording::catalog::ListedState;
    use portcullis_store::{ReviewFlag, ReviewMark};

    use super::*;

    fn summary(user: &str) -> Summary {
        Summary {
            id: "rec-1".into(),
            user: user.into(),
            user_id: "u1".into(),
            target: "db<1>".into(),
            client_addr: "10.0.0.9".into(),
            started_at_ms: 1_765_000_000_000,
            ended_at_ms: Some(1_765_000_090_000),
            duration_ms: 90_000,
            state: ListedState::Complete,
            bytes: 1,
            end_reason: Some("closed by the user".into()),
            risk_score: 70,
            risk_rules: vec!["account_creation".into()],
        }
    }

    #[test]
    fn everything_typed_is_escaped() {
        let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&\u{202e}gpj.exe";
        let review = RecordingReview {
            recording: "rec-1".into(),
            marks: vec![ReviewMark {
                state: ReviewState::Reviewed,
                by: evil.into(),
                by_id: "u2".into(),
                at_ms: 1_765_000_100_000,
                comment: evil.into(),
            }],
            flags: vec![ReviewFlag {
                id: format!("flag_\"{evil}"),
                t_ms: 12_000,
                note: evil.into(),
                by: evil.into(),
                by_id: "u2".into(),
                at_ms: 1_765_000_100_000,
            }],
        };
        let track = format!(
            "{}\n{}\n{}\n",
            serde_json::json!({"t_ms": 0, "type": "session_start", "user": evil, "target": "t",
                "client_addr": evil, "entry": evil}),
            serde_json::json!({"t_ms": 5, "type": "keys", "text": format!("{evil}\r")}),
            serde_json::json!({"t_ms": 9, "type": "risk", "rule": evil, "description": evil,
                "source": "typed", "action": "alert", "score": 40, "excerpt": evil}),
        );
        let thumbs = HashMap::new();
        let html = render(&ReportInput {
            summary: &summary(evil),
            review: Some(&review),
            track: track.as_bytes(),
            thumbs: &thumbs,
            generated_by: evil,
            generated_at_ms: 1_765_000_200_000,
        });
        for bad in ["<script", "<img src=x", "\"'&"] {
            assert!(!html.contains(bad), "{bad:?} got through:\n{html}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("Reviewed by"));
        assert!(html.contains("0:12"), "the flag's moment");
        assert!(
            html.contains("risk rule &lt;script&gt;"),
            "the risk hit is listed"
        );
        assert_eq!(html.matches("<script").count(), 0);
        assert!(
            !html.contains('\u{202e}'),
            "a direction override got through"
        );
        assert!(html.contains("Content-Security-Policy"));
    }

    #[test]
    fn a_report_names_the_session_and_its_moments() {
        let review = RecordingReview {
            recording: "rec-1".into(),
            marks: Vec::new(),
            flags: vec![ReviewFlag {
                id: "flag_a".into(),
                t_ms: 3_723_000,
                note: "net user added".into(),
                by: "rita".into(),
                by_id: "u2".into(),
                at_ms: 1_765_000_100_000,
            }],
        };
        let mut thumbs = HashMap::new();
        thumbs.insert("flag_a".to_owned(), vec![0xff, 0xd8, 0xff]);
        let track = concat!(
            "{\"t_ms\":100,\"type\":\"keys\",\"text\":\"net user bob /add\\r\"}\n",
            "{\"t_ms\":200,\"type\":\"policy\",\"action\":\"clipboard\",\"decision\":\"deny\",\"reason\":\"rule r1\"}\n",
            "{\"t_ms\":300,\"type\":\"screen_text\",\"words\":[[\"hidden\",1,1,1,1]]}\n",
            "not json\n",
        );
        let html = render(&ReportInput {
            summary: &summary("alice"),
            review: Some(&review),
            track: track.as_bytes(),
            thumbs: &thumbs,
            generated_by: "rita",
            generated_at_ms: 1_765_000_200_000,
        });
        assert!(html.contains("Session report: alice on db&lt;1&gt;"));
        assert!(html.contains("Not reviewed."));
        assert!(html.contains("1:02:03"), "an hour-long moment");
        assert!(html.contains("data:image/jpeg;base64,/9j/"));
        assert!(html.contains("net user bob /add"));
        assert!(html.contains("<tr class=\"deny\">"));
        assert!(html.contains("policy deny clipboard: rule r1"));
        assert!(!html.contains("hidden"), "screen words are for search");
        assert!(html.contains("2025-12-06 05:46:40 UTC"), "{html}");
    }
}

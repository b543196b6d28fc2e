//! The wire formats, as pure functions of one audit [`Entry`]: JSON lines, RFC 5424 syslog and
//! CEF, and the two framings a stream of them uses (RFC 6587 octet counting, newlines).
//!
//! No format ever puts a raw newline into a message: JSON escapes it inside strings, CEF escapes
//! it in extension values, and syslog structured-data values have control characters replaced
//! (the MSG part, the JSON record, keeps the exact value).

use std::fmt::Write as _;

use portcullis_audit::{Entry, Kind};
use serde_json::Value;

/// The SD-ID of the structured data element: `portcullis` at the private enterprise number
/// 32473, which RFC 5612 reserves for documentation.
pub const SD_ID: &str = "portcullis@32473";

/// The APP-NAME of every syslog message.
pub const APP_NAME: &str = "portcullis";

/// A syslog facility (RFC 5424 section 6.2.1), by its usual name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    /// Security/authorisation messages (4): the default.
    #[default]
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    /// Log audit (13).
    Audit,
    /// Log alert (14).
    Alert,
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The facility's number (0 to 23).
    pub fn code(self) -> u8 {
        use Facility::*;
        match self {
            Kern => 0,
            User => 1,
            Mail => 2,
            Daemon => 3,
            Auth => 4,
            Syslog => 5,
            Lpr => 6,
            News => 7,
            Uucp => 8,
            Cron => 9,
            Authpriv => 10,
            Ftp => 11,
            Ntp => 12,
            Audit => 13,
            Alert => 14,
            Clock => 15,
            Local0 => 16,
            Local1 => 17,
            Local2 => 18,
            Local3 => 19,
            Local4 => 20,
            Local5 => 21,
            Local6 => 22,
            Local7 => 23,
        }
    }
}

/// How serious a record is, in syslog's terms (only the three the audit trail uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// 4: something was refused or someone was stopped: a failed login, a kill, a lock-out,
    /// any record whose detail says `"decision":"deny"`.
    Warning,
    /// 5: a change worth noticing: admin changes, freezes, unlocks, exports, MFA steps.
    Notice,
    /// 6: the ordinary trail: logins, sessions, viewers, allowed crossings.
    Info,
}

impl Severity {
    /// The syslog severity number.
    pub fn syslog_code(self) -> u8 {
        match self {
            Severity::Warning => 4,
            Severity::Notice => 5,
            Severity::Info => 6,
        }
    }

    /// The CEF severity (0 to 10).
    pub fn cef_code(self) -> u8 {
        match self {
            Severity::Warning => 7,
            Severity::Notice => 5,
            Severity::Info => 3,
        }
    }
}

/// The `decision` a record's detail states, if it is a string (`allow`, `deny`, ...).
fn decision(entry: &Entry) -> Option<&str> {
    entry.record.detail.get("decision").and_then(Value::as_str)
}

/// The severity of a record, from its kind and, for decisions, its verdict.
pub fn severity(entry: &Entry) -> Severity {
    let kind = &entry.record.kind;
    if *kind == Kind::LOGIN_FAILED
        || *kind == Kind::SESSION_KILL
        || *kind == Kind::USER_LOCK
        // The gateway set bytes aside, cut a torn tail or found a recording cut at a start.
        || *kind == Kind::RECORDING_RECOVERED
        || decision(entry) == Some("deny")
    {
        Severity::Warning
    } else if *kind == Kind::ADMIN_CHANGE
        || *kind == Kind::SESSION_FREEZE
        || *kind == Kind::SESSION_UNFREEZE
        || *kind == Kind::USER_UNLOCK
        || *kind == Kind::EXPORT
        || *kind == Kind::RECORDING_EXPIRED
        || *kind == Kind::MFA
        || *kind == Kind::POLICY
    {
        Severity::Notice
    } else {
        Severity::Info
    }
}

/// A short human name for a kind (CEF's Name field); unknown kinds are named by themselves.
pub fn kind_name(kind: &Kind) -> &str {
    match kind.as_str() {
        "login" => "Login",
        "login_failed" => "Login failed",
        "logout" => "Logout",
        "mfa" => "Second factor",
        "session_start" => "Session started",
        "session_end" => "Session ended",
        "session_kill" => "Session killed",
        "session_freeze" => "Session frozen",
        "session_unfreeze" => "Session unfrozen",
        "watcher" => "Watcher joined",
        "viewer_joined" => "Viewer joined",
        "viewer_left" => "Viewer left",
        "policy" => "Policy decision",
        "clipboard" => "Clipboard transfer",
        "file" => "File transfer",
        "admin_change" => "Admin change",
        "export" => "Export",
        "review" => "Recording review",
        "user_lock" => "User locked",
        "user_unlock" => "User unlocked",
        "recording_closed" => "Recording closed",
        "recording_recovered" => "Recording recovered at start",
        "recording_expired" => "Recording deleted (retention)",
        "audit_sealed" => "Audit trail sealed as found at start",
        other => other,
    }
}

/// The record as the audit log stores it: its canonical JSON line, without the newline.
///
/// The log's line is the serialisation of the same fields in the same order, so this is
/// byte for byte the stored line, and a SIEM can check `hash` itself.
pub fn json_line(entry: &Entry) -> String {
    // INVARIANT: an Entry holds strings, integers and a JSON map: serialising cannot fail.
    serde_json::to_string(entry).unwrap_or_default()
}

/// `ts_ms` as an RFC 3339 timestamp in UTC with milliseconds (`2023-11-14T22:13:20.000Z`), or
/// `-` (the NILVALUE) past the year 9999.
pub fn rfc3339_ms(ts_ms: u64) -> String {
    let secs = ts_ms / 1000;
    let ms = ts_ms % 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    if year > 9999 {
        return "-".into();
    }
    let sod = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// What a syslog header needs besides the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogHeader {
    /// The facility, which with the record's severity makes the PRI.
    pub facility: Facility,
    /// HOSTNAME: printable ASCII without spaces, at most 255 (others are dropped); empty is `-`.
    pub hostname: String,
}

impl SyslogHeader {
    /// A header; the host name is cleaned up to what RFC 5424 allows.
    pub fn new(facility: Facility, hostname: &str) -> Self {
        let hostname: String = hostname
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        Self {
            facility,
            hostname: if hostname.is_empty() {
                "-".into()
            } else {
                hostname
            },
        }
    }
}

/// Escapes an SD-PARAM value (RFC 5424 section 6.3.3): `"`, `\` and `]` get a backslash.
/// Control characters, which would break newline framing, become spaces.
pub fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The structured data element: `[portcullis@32473 seq="…" hash="…" actor="…" target="…"
/// session="…" node="…"]` (target, session and node — the gateway that wrote it, whose chain
/// `seq` is a place in — only when the record has them).
pub fn structured_data(entry: &Entry) -> String {
    let mut sd = format!(
        r#"[{SD_ID} seq="{}" hash="{}" actor="{}""#,
        entry.seq,
        entry.hash,
        sd_escape(&entry.record.actor)
    );
    if let Some(target) = &entry.record.target {
        let _ = write!(sd, r#" target="{}""#, sd_escape(target));
    }
    if let Some(session) = &entry.record.session {
        let _ = write!(sd, r#" session="{}""#, sd_escape(session));
    }
    if let Some(node) = entry.node() {
        let _ = write!(sd, r#" node="{}""#, sd_escape(node));
    }
    sd.push(']');
    sd
}

/// An RFC 5424 message around `msg`:
/// `<PRI>1 TIMESTAMP HOSTNAME portcullis - KIND [SD] MSG`.
fn syslog_with(entry: &Entry, header: &SyslogHeader, msg: &str) -> String {
    let pri = u16::from(header.facility.code()) * 8 + u16::from(severity(entry).syslog_code());
    format!(
        "<{pri}>1 {} {} {APP_NAME} - {} {} {msg}",
        rfc3339_ms(entry.ts_ms),
        header.hostname,
        entry.record.kind,
        structured_data(entry),
    )
}

/// The record as an RFC 5424 syslog message whose MSG is the record's JSON line.
pub fn syslog(entry: &Entry, header: &SyslogHeader) -> String {
    syslog_with(entry, header, &json_line(entry))
}

/// Escapes a CEF header field: `\` and `|` get a backslash; newlines become spaces.
pub fn cef_header_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a CEF extension value: `\` and `=` get a backslash, newlines become `\n` / `\r`.
pub fn cef_ext_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The record as a CEF event:
///
/// `CEF:0|Portcullis|Portcullis|<version>|<kind>|<name>|<severity>|<extension>` with the
/// extension `rt` (ts_ms), `cn1` (seq), `suser` (actor), `cs1` (target), `cs2` (session),
/// `act` (the detail's `decision`, when there is one), `dvchost` (the gateway that wrote it,
/// when the record names one), `cs3`/`cs4` (hash and prev) and `msg`
/// (the detail as JSON); each `csN`/`cnN` has its `…Label`.
pub fn cef(entry: &Entry, version: &str) -> String {
    let record = &entry.record;
    let mut out = format!(
        "CEF:0|Portcullis|Portcullis|{}|{}|{}|{}|",
        cef_header_escape(version),
        cef_header_escape(record.kind.as_str()),
        cef_header_escape(kind_name(&record.kind)),
        severity(entry).cef_code(),
    );
    let _ = write!(
        out,
        "rt={} cn1={} cn1Label=seq suser={}",
        entry.ts_ms,
        entry.seq,
        cef_ext_escape(&record.actor)
    );
    if let Some(target) = &record.target {
        let _ = write!(out, " cs1={} cs1Label=target", cef_ext_escape(target));
    }
    if let Some(session) = &record.session {
        let _ = write!(out, " cs2={} cs2Label=session", cef_ext_escape(session));
    }
    if let Some(decision) = decision(entry) {
        let _ = write!(out, " act={}", cef_ext_escape(decision));
    }
    if let Some(node) = entry.node() {
        let _ = write!(out, " dvchost={}", cef_ext_escape(node));
    }
    let _ = write!(
        out,
        " cs3={} cs3Label=hash cs4={} cs4Label=prev",
        entry.hash, entry.prev
    );
    // INVARIANT: a JSON map always serialises.
    let detail = serde_json::to_string(&record.detail).unwrap_or_default();
    let _ = write!(out, " msg={}", cef_ext_escape(&detail));
    out
}

/// The record as an RFC 5424 syslog message whose MSG is its CEF event.
pub fn cef_in_syslog(entry: &Entry, header: &SyslogHeader, version: &str) -> String {
    syslog_with(entry, header, &cef(entry, version))
}

/// How messages follow each other on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 6587 octet counting: `LEN SP MSG`, LEN the MSG's length in bytes (syslog over TCP
    /// and TLS, RFC 5425).
    OctetCounted,
    /// Each message followed by `\n` (JSON lines, CEF lines, files).
    Newline,
}

/// Appends one framed message to `out`.
pub fn frame(out: &mut Vec<u8>, framing: Framing, msg: &str) {
    match framing {
        Framing::OctetCounted => {
            out.extend_from_slice(msg.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(msg.as_bytes());
        }
        Framing::Newline => {
            out.extend_from_slice(msg.as_bytes());
            out.push(b'\n');
        }
    }
}

/// Which message a record becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// [`json_line`].
    JsonLine,
    /// [`syslog`].
    Syslog(SyslogHeader),
    /// [`cef`] alone (CEF lines).
    Cef {
        /// The product version in the CEF header.
        version: String,
    },
    /// [`cef_in_syslog`].
    CefInSyslog {
        /// The syslog header.
        header: SyslogHeader,
        /// The product version in the CEF header.
        version: String,
    },
}

/// A message format and its framing: turns records into the bytes a sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    /// The message.
    pub message: Message,
    /// The framing.
    pub framing: Framing,
}

impl Formatter {
    /// One record's message, unframed.
    pub fn message(&self, entry: &Entry) -> String {
        match &self.message {
            Message::JsonLine => json_line(entry),
            Message::Syslog(header) => syslog(entry, header),
            Message::Cef { version } => cef(entry, version),
            Message::CefInSyslog { header, version } => cef_in_syslog(entry, header, version),
        }
    }

    /// Appends one record, framed, to `out`.
    pub fn write(&self, out: &mut Vec<u8>, entry: &Entry) {
        frame(out, self.framing, &self.message(entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_audit::{Digest, Record, GENESIS};

    fn hash(byte: u8) -> Digest {
        Digest([byte; 32])
    }

    fn entry(record: Record) -> Entry {
        Entry {
            seq: 12,
            ts_ms: 1_700_000_000_123,
            prev: hash(0xab),
            hash: hash(0xcd),
            seal: None,
            record,
        }
    }

    const AB: &str = "abababababababababababababababababababababababababababababababab";
    const CD: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

    fn failed_login() -> Entry {
        entry(
            Record::new(Kind::LOGIN_FAILED, "alice")
                .target("web01")
                .session("s-1")
                .detail("reason", "bad password"),
        )
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(253_402_300_800_000), "-");
        assert_eq!(rfc3339_ms(u64::MAX), "-");
    }

    #[test]
    fn severities_follow_kind_and_decision() {
        assert_eq!(severity(&failed_login()), Severity::Warning);
        let deny = entry(Record::new(Kind::POLICY, "bob").detail("decision", "deny"));
        assert_eq!(severity(&deny), Severity::Warning);
        let clip_deny = entry(Record::new(Kind::CLIPBOARD, "bob").detail("decision", "deny"));
        assert_eq!(severity(&clip_deny), Severity::Warning);
        let allow = entry(Record::new(Kind::POLICY, "bob").detail("decision", "allow"));
        assert_eq!(severity(&allow), Severity::Notice);
        assert_eq!(
            severity(&entry(Record::new(Kind::SESSION_KILL, "soc"))),
            Severity::Warning
        );
        assert_eq!(
            severity(&entry(Record::new(Kind::ADMIN_CHANGE, "root"))),
            Severity::Notice
        );
        assert_eq!(
            severity(&entry(Record::new(Kind::LOGIN, "bob"))),
            Severity::Info
        );
        // What start-up recovery did to a recording reaches the SOC as a warning.
        assert_eq!(
            severity(&entry(Record::new(Kind::RECORDING_RECOVERED, "system"))),
            Severity::Warning
        );
        let unknown = entry(Record::new(Kind::new("future_kind").unwrap(), "x"));
        assert_eq!(severity(&unknown), Severity::Info);
        assert_eq!(kind_name(&Kind::new("future_kind").unwrap()), "future_kind");
    }

    #[test]
    fn json_line_is_the_stored_form() {
        let e = failed_login();
        assert_eq!(
            json_line(&e),
            format!(
                r#"{{"seq":12,"ts_ms":1700000000123,"prev":"{AB}","hash":"{CD}","kind":"login_failed","actor":"alice","target":"web01","session":"s-1","detail":{{"reason":"bad password"}}}}"#
            )
        );
        let bare = entry(Record::new(Kind::LOGIN, "bob"));
        assert_eq!(
            json_line(&bare),
            format!(
                r#"{{"seq":12,"ts_ms":1700000000123,"prev":"{AB}","hash":"{CD}","kind":"login","actor":"bob","detail":{{}}}}"#
            )
        );
        // A sealed record keeps its seal where the log has it, right after the hash.
        let sealed = Entry {
            seal: Some(portcullis_audit::Seal([0x5e; 64])),
            ..bare
        };
        let seal = "5e".repeat(64);
        assert_eq!(
            json_line(&sealed),
            format!(
                r#"{{"seq":12,"ts_ms":1700000000123,"prev":"{AB}","hash":"{CD}","seal":"{seal}","kind":"login","actor":"bob","detail":{{}}}}"#
            )
        );
    }

    #[test]
    fn syslog_message_is_rfc5424() {
        let e = failed_login();
        let header = SyslogHeader::new(Facility::Auth, "gw1.example.org");
        // PRI = auth (4) * 8 + warning (4) = 36.
        assert_eq!(
            syslog(&e, &header),
            format!(
                r#"<36>1 2023-11-14T22:13:20.123Z gw1.example.org portcullis - login_failed [portcullis@32473 seq="12" hash="{CD}" actor="alice" target="web01" session="s-1"] {}"#,
                json_line(&e)
            )
        );
        let login = entry(Record::new(Kind::LOGIN, "bob"));
        let local7 = SyslogHeader::new(Facility::Local7, "");
        // local7 (23) * 8 + info (6) = 190; no host name gives the NILVALUE.
        assert_eq!(
            syslog(&login, &local7),
            format!(
                r#"<190>1 2023-11-14T22:13:20.123Z - portcullis - login [portcullis@32473 seq="12" hash="{CD}" actor="bob"] {}"#,
                json_line(&login)
            )
        );
    }

    #[test]
    fn sd_params_are_escaped() {
        assert_eq!(sd_escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert_eq!(sd_escape("x\ny\tz"), "x y z");
        assert_eq!(sd_escape("élan [ok]"), r"élan [ok\]");
        let e = entry(Record::new(Kind::LOGIN, r#"ev"il\]"#).target("t]1"));
        assert_eq!(
            structured_data(&e),
            format!(r#"[portcullis@32473 seq="12" hash="{CD}" actor="ev\"il\\\]" target="t\]1"]"#)
        );
        assert_eq!(
            SyslogHeader::new(Facility::Auth, "my host\n").hostname,
            "myhost"
        );
    }

    #[test]
    fn cef_event_maps_the_fields() {
        let e = failed_login();
        assert_eq!(
            cef(&e, "0.1.0"),
            format!(
                r#"CEF:0|Portcullis|Portcullis|0.1.0|login_failed|Login failed|7|rt=1700000000123 cn1=12 cn1Label=seq suser=alice cs1=web01 cs1Label=target cs2=s-1 cs2Label=session cs3={CD} cs3Label=hash cs4={AB} cs4Label=prev msg={{"reason":"bad password"}}"#
            )
        );
        let deny = Entry {
            prev: GENESIS,
            ..entry(
                Record::new(Kind::POLICY, "a=b\\c")
                    .detail("decision", "deny")
                    .detail("reason", "line1\nline2 x=y"),
            )
        };
        let zeros = "0".repeat(64);
        assert_eq!(
            cef(&deny, "1|2"),
            format!(
                r#"CEF:0|Portcullis|Portcullis|1\|2|policy|Policy decision|7|rt=1700000000123 cn1=12 cn1Label=seq suser=a\=b\\c act=deny cs3={CD} cs3Label=hash cs4={zeros} cs4Label=prev msg={{"decision":"deny","reason":"line1\\nline2 x\=y"}}"#
            )
        );
    }

    #[test]
    fn cef_escaping() {
        assert_eq!(cef_header_escape(r"a|b\c"), r"a\|b\\c");
        assert_eq!(cef_header_escape("a\nb"), "a b");
        assert_eq!(cef_ext_escape("a=b\\c\nd\re|f"), r"a\=b\\c\nd\re|f");
    }

    #[test]
    fn cef_in_syslog_keeps_the_syslog_header() {
        let e = entry(Record::new(Kind::LOGIN, "bob"));
        let header = SyslogHeader::new(Facility::Authpriv, "gw");
        // authpriv (10) * 8 + info (6) = 86.
        assert_eq!(
            cef_in_syslog(&e, &header, "0.1.0"),
            format!(
                r#"<86>1 2023-11-14T22:13:20.123Z gw portcullis - login [portcullis@32473 seq="12" hash="{CD}" actor="bob"] CEF:0|Portcullis|Portcullis|0.1.0|login|Login|3|rt=1700000000123 cn1=12 cn1Label=seq suser=bob cs3={CD} cs3Label=hash cs4={AB} cs4Label=prev msg={{}}"#
            )
        );
    }

    #[test]
    fn framings() {
        let mut out = Vec::new();
        frame(&mut out, Framing::OctetCounted, "<14>1 - - - - - - héllo");
        frame(&mut out, Framing::OctetCounted, "x");
        assert_eq!(out, "24 <14>1 - - - - - - héllo1 x".as_bytes());
        let mut out = Vec::new();
        frame(&mut out, Framing::Newline, "{}");
        frame(&mut out, Framing::Newline, "{}");
        assert_eq!(out, b"{}\n{}\n");
    }

    #[test]
    fn messages_never_hold_a_newline() {
        let e = entry(
            Record::new(Kind::LOGIN, "a\nb")
                .target("t\r\n")
                .detail("x", "1\n2"),
        );
        let header = SyslogHeader::new(Facility::Auth, "h");
        for message in [
            Message::JsonLine,
            Message::Syslog(header.clone()),
            Message::Cef {
                version: "v".into(),
            },
            Message::CefInSyslog {
                header,
                version: "v".into(),
            },
        ] {
            let f = Formatter {
                message,
                framing: Framing::Newline,
            };
            let text = f.message(&e);
            assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
        }
    }
}

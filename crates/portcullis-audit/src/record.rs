//! Records, their kinds, and the one canonical line format they are stored in.
//!
//! A stored line is
//!
//! ```text
//! {"seq":7,"ts_ms":1700000000000,"prev":"<64 hex>","hash":"<64 hex>",["seal":"<128 hex>",]"kind":"login","actor":"alice",["target":"…",]["session":"…",]"detail":{…}}\n
//! ```
//!
//! and its **canonical bytes**, the input of its SHA-256 `hash`, are the same line without
//! `"hash":"<64 hex>",`, without `"seal":"<128 hex>",` and without the newline. The fields always
//! come in this order and `seal`/`target`/`session` are left out when absent. Verification never
//! re-serialises a record: it checks that the line starts with exactly the header its parsed
//! `seq`, `ts_ms`, `prev`, `hash` and `seal` give, and hashes the line's own bytes, so what is
//! hashed is what is on disk.
//!
//! A `seal` is the gateway's Ed25519 signature of [`SEAL_DOMAIN`] followed by the record's 32
//! hash bytes: the writer seals the last record of each write, and since every hash covers the
//! one before it, a valid seal vouches for every record up to it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::digest::{BadDigest, Digest, GENESIS};
use crate::error::{AuditError, Problem};

/// The largest stored line, newline included. A record whose line would be longer is refused
/// ([`AuditError::RecordTooLarge`]), never cut: an audit record is evidence. 64 KiB holds an
/// admin change's before/after comfortably, and bounds what one record costs in the queue.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// What a seal signs before the record's hash, so that a seal can never be taken for (or made
/// from) a signature of anything else the same key signs (recordings).
pub const SEAL_DOMAIN: &[u8] = b"portcullis-audit-seal-v1";

/// Bytes a seal adds to a line: `"seal":"<128 hex>",`.
pub(crate) const SEAL_TAG_BYTES: usize = r#""seal":"","#.len() + 128;

/// The longest header a line can have: both numbers at `u64::MAX`, both hashes (64 hex each),
/// a seal, and the closing `}` plus the newline. Used to check a record's size before it has a
/// `seq` (and before the writer knows whether it seals it).
const HEADER_MAX_BYTES: usize =
    r#"{"seq":18446744073709551615,"ts_ms":18446744073709551615,"prev":"","hash":"","#.len()
        + 2 * 64
        + SEAL_TAG_BYTES
        + "}\n".len();

/// Longest kind name, to keep kinds identifiers rather than prose.
const MAX_KIND_LEN: usize = 32;

/// A record's seal: the gateway's Ed25519 signature of [`SEAL_DOMAIN`] and the record's hash.
/// Shown as 128 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seal(pub [u8; 64]);

impl Seal {
    /// Seals the record whose hash is `hash`.
    pub(crate) fn sign(key: &SigningKey, hash: &Digest) -> Self {
        Self(key.sign(&seal_message(hash)).to_bytes())
    }

    /// Whether this is `key`'s seal of the record whose hash is `hash`.
    pub fn is_valid(&self, key: &VerifyingKey, hash: &Digest) -> bool {
        key.verify_strict(&seal_message(hash), &Signature::from_bytes(&self.0))
            .is_ok()
    }

    /// The seal as 128 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

fn seal_message(hash: &Digest) -> [u8; SEAL_DOMAIN.len() + 32] {
    let mut message = [0; SEAL_DOMAIN.len() + 32];
    message[..SEAL_DOMAIN.len()].copy_from_slice(SEAL_DOMAIN);
    message[SEAL_DOMAIN.len()..].copy_from_slice(&hash.0);
    message
}

impl fmt::Display for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seal({})", self.to_hex())
    }
}

impl FromStr for Seal {
    type Err = BadDigest;

    /// Parses 128 **lowercase** hex digits (the only form the log writes).
    fn from_str(s: &str) -> Result<Self, BadDigest> {
        if s.len() != 128 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadDigest);
        }
        let mut out = [0; 64];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadDigest)?;
        Ok(Self(out))
    }
}

impl Serialize for Seal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// What a record is about: `login`, `session_kill`, ...
///
/// Use the constants; [`Kind::new`] makes a kind this crate does not list yet (lowercase ASCII
/// letters, digits and `_`, 1 to 32 of them), so a newer gateway's logs still parse here.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(Cow<'static, str>);

impl Kind {
    /// A four-eyes session's input held (no observer watches); detail: why.
    pub const SESSION_HOLD: Kind = Kind(Cow::Borrowed("session_hold"));
    /// A four-eyes session's input let through (an observer watches); actor: the observer.
    pub const SESSION_RELEASE: Kind = Kind(Cow::Borrowed("session_release"));
    /// An access request made, approved, denied, withdrawn or expired; detail: action, request,
    /// target, and the decision's comment.
    pub const ACCESS_REQUEST: Kind = Kind(Cow::Borrowed("access_request"));
    /// A successful login (web or native), detail: method, address.
    pub const LOGIN: Kind = Kind(Cow::Borrowed("login"));
    /// A refused login, detail: reason, address.
    pub const LOGIN_FAILED: Kind = Kind(Cow::Borrowed("login_failed"));
    /// A logout or an expired login.
    pub const LOGOUT: Kind = Kind(Cow::Borrowed("logout"));
    /// A second-factor step: enrolment, success, failure.
    pub const MFA: Kind = Kind(Cow::Borrowed("mfa"));
    /// A session opened to a target.
    pub const SESSION_START: Kind = Kind(Cow::Borrowed("session_start"));
    /// A session ended, detail: reason.
    pub const SESSION_END: Kind = Kind(Cow::Borrowed("session_end"));
    /// A session killed by the security team, detail: reason.
    pub const SESSION_KILL: Kind = Kind(Cow::Borrowed("session_kill"));
    /// A session frozen (its user's input dropped).
    pub const SESSION_FREEZE: Kind = Kind(Cow::Borrowed("session_freeze"));
    /// A frozen session released.
    pub const SESSION_UNFREEZE: Kind = Kind(Cow::Borrowed("session_unfreeze"));
    /// A watcher joined or left a session.
    pub const WATCHER: Kind = Kind(Cow::Borrowed("watcher"));
    /// Someone (the user's own client, say) started viewing a session.
    pub const VIEWER_JOINED: Kind = Kind(Cow::Borrowed("viewer_joined"));
    /// A viewer or watcher went away.
    pub const VIEWER_LEFT: Kind = Kind(Cow::Borrowed("viewer_left"));
    /// A risk rule fired in a session; detail: rule, description, source (`typed`, `screen`,
    /// `clipboard`, `behaviour`), action (`score`, `alert`, `freeze`, `kill`), score (the matching
    /// text stays in the recording: it may hold what the user typed).
    pub const RISK: Kind = Kind(Cow::Borrowed("risk"));
    /// A session ended with a risk score of 50 or more; detail: risk_score, risk_rules.
    pub const HIGH_RISK: Kind = Kind(Cow::Borrowed("session_high_risk"));
    /// A policy decision, detail: rule, verdict.
    pub const POLICY: Kind = Kind(Cow::Borrowed("policy"));
    /// A clipboard crossing, allowed or not.
    pub const CLIPBOARD: Kind = Kind(Cow::Borrowed("clipboard"));
    /// A file transfer, allowed or not.
    pub const FILE: Kind = Kind(Cow::Borrowed("file"));
    /// A change by an admin (users, targets, grants, policy), detail: before and after.
    pub const ADMIN_CHANGE: Kind = Kind(Cow::Borrowed("admin_change"));
    /// An export (recording, audit trail).
    pub const EXPORT: Kind = Kind(Cow::Borrowed("export"));
    /// A recording's review: marked reviewed or reopened, a moment flagged or unflagged; detail:
    /// action, comment or note, flag and moment.
    pub const REVIEW: Kind = Kind(Cow::Borrowed("review"));
    /// A user locked (by the security team or after failed logins).
    pub const USER_LOCK: Kind = Kind(Cow::Borrowed("user_lock"));
    /// A user unlocked.
    pub const USER_UNLOCK: Kind = Kind(Cow::Borrowed("user_unlock"));
    /// A session's recording closed (its signed end line on disk), detail: lines.
    pub const RECORDING_CLOSED: Kind = Kind(Cow::Borrowed("recording_closed"));
    /// What start-up recovery is about to do to a recording left open, detail: action, state,
    /// reason, set_aside, cut.
    pub const RECORDING_RECOVERED: Kind = Kind(Cow::Borrowed("recording_recovered"));
    /// A recording deleted at the end of its retention (actor `retention`), detail: user, rule
    /// (the policy's `[[retention]]` entry, or `default`), days, risk_score, ended_at_ms.
    pub const RECORDING_EXPIRED: Kind = Kind(Cow::Borrowed("recording_expired"));
    /// Written by a sealing log when it opens a log whose last record carries no seal (a log
    /// from before sealing, or a crash in the middle of a write), sealing it as found, detail:
    /// seq, hash (the record it covers), last_sealed_seq, earlier_records_sealed.
    pub const AUDIT_SEALED: Kind = Kind(Cow::Borrowed("audit_sealed"));
    /// Opening the log set aside records after its last seal that a crash left unfinished.
    pub const AUDIT_SET_ASIDE: Kind = Kind(Cow::Borrowed("audit_set_aside"));

    /// A kind by name, e.g. one from a filter in a request.
    pub fn new(name: impl Into<String>) -> Result<Kind, AuditError> {
        let name = name.into();
        if is_kind_name(&name) {
            Ok(Kind(Cow::Owned(name)))
        } else {
            Err(AuditError::InvalidRecord(
                "kind must be 1 to 32 lowercase ascii letters, digits or _",
            ))
        }
    }

    /// The kind's name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_kind_name(s: &str) -> bool {
    (1..=MAX_KIND_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.0)
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Kind::new(name).map_err(de::Error::custom)
    }
}

/// What happened, as the caller tells it; the log adds `seq`, `ts_ms` and the hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What kind of event.
    pub kind: Kind,
    /// Who did it: a user name, or `system` for the gateway itself. Must not be empty.
    pub actor: String,
    /// What it was done to, when there is one: a target, a user, a recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The live session it belongs to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Anything else, as a JSON object (reason, address, before/after, ...).
    #[serde(default)]
    pub detail: Map<String, Value>,
}

impl Record {
    /// A record with no target, session or detail yet.
    pub fn new(kind: Kind, actor: impl Into<String>) -> Self {
        Self {
            kind,
            actor: actor.into(),
            target: None,
            session: None,
            detail: Map::new(),
        }
    }

    /// Sets the target.
    #[must_use]
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Sets the session.
    #[must_use]
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Adds one field to the detail.
    #[must_use]
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.detail.insert(key.into(), value.into());
        self
    }

    /// Serialises the part of the line after the header (`"kind":…,"detail":{…}`), refusing a
    /// record that is invalid or whose line could exceed [`MAX_RECORD_BYTES`]. Done on the
    /// caller's thread, so the writer thread only frames, hashes and writes.
    pub(crate) fn encode_body(&self) -> Result<Vec<u8>, AuditError> {
        if self.actor.is_empty() {
            return Err(AuditError::InvalidRecord("actor must not be empty"));
        }
        let mut body = serde_json::to_vec(self)
            .map_err(|_| AuditError::InvalidRecord("detail cannot be serialised"))?;
        let line_max = body.len() - 2 + HEADER_MAX_BYTES;
        if line_max > MAX_RECORD_BYTES {
            return Err(AuditError::RecordTooLarge {
                bytes: line_max,
                max: MAX_RECORD_BYTES,
            });
        }
        // INVARIANT: a struct serialises as `{…}` with at least `kind`, so the body between the
        // braces is never empty.
        body.pop();
        body.remove(0);
        Ok(body)
    }
}

/// A record as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Its position in the log: 1 for the first record, then one more for each.
    pub seq: u64,
    /// When the log accepted it (Unix milliseconds; never decreases along the log).
    pub ts_ms: u64,
    /// The `hash` of the record before it ([`GENESIS`] for the first).
    pub prev: Digest,
    /// SHA-256 of its canonical bytes.
    pub hash: Digest,
    /// The gateway's seal of `hash`, on the last record of each write of a sealing log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
    /// What happened.
    #[serde(flatten)]
    pub record: Record,
}

impl Entry {
    /// Reads one stored line (without its newline), as a copy of the chain elsewhere holds it
    /// (the cluster's mirror): it must be in canonical form and its `hash` the SHA-256 of its
    /// canonical bytes. Chain checks (seq, prev, time) and seals are the caller's.
    pub fn from_line(line: &[u8]) -> Result<Entry, Problem> {
        parse_line(line).map_err(|e| e.problem)
    }

    /// The gateway that wrote it (`detail.node`), when it names one.
    pub fn node(&self) -> Option<&str> {
        self.record.detail.get("node").and_then(Value::as_str)
    }
}

/// The start of a line (`{"seq":…,"ts_ms":…,"prev":"…",`): canonical bytes and line share it.
pub(crate) fn write_header(out: &mut Vec<u8>, seq: u64, ts_ms: u64, prev: &Digest) {
    use std::io::Write as _;
    // INVARIANT: writing to a Vec cannot fail.
    let _ = write!(out, r#"{{"seq":{seq},"ts_ms":{ts_ms},"prev":"{prev}","#);
}

/// A line [`frame`] appended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framed {
    /// Its hash.
    pub(crate) hash: Digest,
    /// Where in the buffer its seal would go (right after its `"hash":"…",`).
    pub(crate) seal_at: usize,
}

/// Appends the line of a record with this body to `out` (without a seal).
pub(crate) fn frame(out: &mut Vec<u8>, seq: u64, ts_ms: u64, prev: &Digest, body: &[u8]) -> Framed {
    let start = out.len();
    write_header(out, seq, ts_ms, prev);
    let header_end = out.len();
    out.extend_from_slice(body);
    out.push(b'}');
    let hash = Digest::of(&out[start..]);
    let tag = format!(r#""hash":"{hash}","#);
    let seal_at = header_end + tag.len();
    out.splice(header_end..header_end, tag.into_bytes());
    out.push(b'\n');
    Framed { hash, seal_at }
}

/// Puts `seal` into the line framed at `framed` (which must still be where [`frame`] put it).
pub(crate) fn insert_seal(out: &mut Vec<u8>, framed: &Framed, seal: &Seal) {
    let tag = format!(r#""seal":"{seal}","#);
    debug_assert_eq!(tag.len(), SEAL_TAG_BYTES);
    out.splice(framed.seal_at..framed.seal_at, tag.into_bytes());
}

/// The fields of a line, parsed strictly (unknown or duplicate fields are errors).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    seq: u64,
    ts_ms: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
    /// Absent or a string: `null` is not a form the log writes.
    #[serde(default, deserialize_with = "present_str")]
    seal: Option<Cow<'a, str>>,
    kind: Kind,
    actor: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    session: Option<String>,
    detail: Map<String, Value>,
}

fn present_str<'de, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    String::deserialize(d).map(|s| Some(Cow::Owned(s)))
}

/// Why a line is not a valid record, with its seq when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    pub(crate) problem: Problem,
    pub(crate) seq: Option<u64>,
    /// Where the chain stands after this line if it is taken as it claims to be: what an open
    /// with `allow_broken_chain` appends after.
    pub(crate) resume: Option<Chain>,
}

impl LineError {
    /// A line that could not be read as JSON at all.
    pub(crate) fn unreadable(problem: Problem) -> Box<Self> {
        Box::new(Self {
            problem,
            seq: None,
            resume: None,
        })
    }
}

/// Where the chain stands: what the next record must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain {
    /// The seq the next record must have.
    pub(crate) next_seq: u64,
    /// The `prev` it must have.
    pub(crate) prev: Digest,
    /// The time it must not be before.
    pub(crate) last_ts: u64,
}

impl Chain {
    /// Before the first record.
    pub(crate) fn genesis() -> Self {
        Self {
            next_seq: 1,
            prev: GENESIS,
            last_ts: 0,
        }
    }

    /// Right after `entry`.
    pub(crate) fn after(entry: &Entry) -> Self {
        Self {
            next_seq: entry.seq.saturating_add(1),
            prev: entry.hash,
            last_ts: entry.ts_ms,
        }
    }

    /// Whether `entry` (whose own hash already checked out) continues the chain.
    pub(crate) fn check(&self, entry: &Entry) -> Result<(), Problem> {
        if entry.seq != self.next_seq {
            return Err(Problem::SeqGap {
                expected: self.next_seq,
                found: entry.seq,
            });
        }
        if entry.prev != self.prev {
            return Err(Problem::PrevMismatch {
                expected: self.prev,
                found: entry.prev,
            });
        }
        if entry.ts_ms < self.last_ts {
            return Err(Problem::TimeWentBackwards {
                previous: self.last_ts,
                found: entry.ts_ms,
            });
        }
        Ok(())
    }
}

/// Parses one line (without its newline) and checks that it is in canonical form and that its
/// `hash` is the SHA-256 of its canonical bytes. Chain checks (seq, prev, time) are the caller's.
pub(crate) fn parse_line(line: &[u8]) -> Result<Entry, Box<LineError>> {
    if line.len() >= MAX_RECORD_BYTES {
        return Err(LineError::unreadable(Problem::TooLong));
    }
    let parsed: Line<'_> = serde_json::from_slice(line)
        .map_err(|e| LineError::unreadable(Problem::Unparseable(e.to_string())))?;
    let claimed = Digest::from_str(&parsed.hash).ok();
    let bad = |problem| {
        Box::new(LineError {
            problem,
            seq: Some(parsed.seq),
            resume: claimed.map(|hash| Chain {
                next_seq: parsed.seq.saturating_add(1),
                prev: hash,
                last_ts: parsed.ts_ms,
            }),
        })
    };
    let prev = Digest::from_str(&parsed.prev).map_err(|_| bad(Problem::NotCanonical))?;
    let claimed = claimed.ok_or_else(|| bad(Problem::NotCanonical))?;
    let seal = match &parsed.seal {
        None => None,
        Some(s) => Some(Seal::from_str(s).map_err(|_| bad(Problem::NotCanonical))?),
    };
    if parsed.actor.is_empty() {
        return Err(bad(Problem::NotCanonical));
    }

    let mut canonical = Vec::with_capacity(line.len());
    write_header(&mut canonical, parsed.seq, parsed.ts_ms, &prev);
    let header_len = canonical.len();
    let tag = format!(r#""hash":"{claimed}","#);
    let seal_tag = seal.map(|s| format!(r#""seal":"{s}","#));
    let rest = line
        .strip_prefix(&canonical[..])
        .and_then(|rest| rest.strip_prefix(tag.as_bytes()))
        .and_then(|rest| match &seal_tag {
            Some(t) => rest.strip_prefix(t.as_bytes()),
            None => Some(rest),
        })
        .filter(|rest| rest.ends_with(b"}"))
        .ok_or_else(|| bad(Problem::NotCanonical))?;
    canonical.extend_from_slice(rest);
    debug_assert!(canonical.len() > header_len);

    let actual = Digest::of(&canonical);
    if actual != claimed {
        return Err(bad(Problem::HashMismatch {
            stored: claimed,
            computed: actual,
        }));
    }
    Ok(Entry {
        seq: parsed.seq,
        ts_ms: parsed.ts_ms,
        prev,
        hash: claimed,
        seal,
        record: Record {
            kind: parsed.kind,
            actor: parsed.actor,
            target: parsed.target,
            session: parsed.session,
            detail: parsed.detail,
        },
    })
}

/// The fields a query filters on, parsed without the detail or any hashing.
#[derive(Deserialize)]
pub(crate) struct Head<'a> {
    pub(crate) seq: u64,
    pub(crate) ts_ms: u64,
    #[serde(borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) actor: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) target: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) session: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_line_parses_back_and_hashes_its_canonical_bytes() {
        let record = Record::new(Kind::LOGIN, "alice")
            .target("web01")
            .detail("address", "10.0.0.1");
        let body = record.encode_body().unwrap();
        let mut line = Vec::new();
        let hash = frame(&mut line, 7, 1234, &GENESIS, &body).hash;
        let text = std::str::from_utf8(&line).unwrap();
        let expected_start = format!(
            r#"{{"seq":7,"ts_ms":1234,"prev":"{}","hash":"{hash}","kind":"login","actor":"alice","target":"web01","detail":{{"address":"10.0.0.1"}}}}"#,
            GENESIS
        );
        assert_eq!(text.trim_end(), expected_start);
        let canonical = format!(
            r#"{{"seq":7,"ts_ms":1234,"prev":"{}","kind":"login","actor":"alice","target":"web01","detail":{{"address":"10.0.0.1"}}}}"#,
            GENESIS
        );
        assert_eq!(hash, Digest::of(canonical.as_bytes()));

        let entry = parse_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(entry.seq, 7);
        assert_eq!(entry.hash, hash);
        assert_eq!(entry.record, record);
    }

    #[test]
    fn non_canonical_lines_are_refused() {
        let body = Record::new(Kind::LOGIN, "alice").encode_body().unwrap();
        let mut line = Vec::new();
        frame(&mut line, 1, 1, &GENESIS, &body);
        line.pop();
        let text = String::from_utf8(line).unwrap();
        let spaced = text.replacen(r#""seq":1"#, r#""seq": 1"#, 1);
        let problem = |line: &str| parse_line(line.as_bytes()).unwrap_err().problem;
        assert_eq!(problem(&spaced), Problem::NotCanonical);
        let upper = text.replacen(r#""prev":"00"#, r#""prev":"0A"#, 1);
        assert_eq!(problem(&upper), Problem::NotCanonical);
        let extra = text.replacen(r#""kind""#, r#""x":1,"kind""#, 1);
        assert!(matches!(problem(&extra), Problem::Unparseable(_)));
        let twice = text.replacen(r#""kind""#, r#""seq":2,"kind""#, 1);
        assert!(matches!(problem(&twice), Problem::Unparseable(_)));
    }

    #[test]
    fn a_seal_sits_after_the_hash_and_is_not_hashed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let body = Record::new(Kind::LOGIN, "alice").encode_body().unwrap();
        let mut plain = Vec::new();
        let framed = frame(&mut plain, 3, 9, &GENESIS, &body);
        let mut sealed = plain.clone();
        let seal = Seal::sign(&key, &framed.hash);
        insert_seal(&mut sealed, &framed, &seal);
        let text = std::str::from_utf8(&sealed).unwrap().trim_end().to_owned();
        let expected = format!(
            r#"{{"seq":3,"ts_ms":9,"prev":"{GENESIS}","hash":"{}","seal":"{seal}","kind":"login","actor":"alice","detail":{{}}}}"#,
            framed.hash
        );
        assert_eq!(text, expected);
        assert_eq!(sealed.len(), plain.len() + SEAL_TAG_BYTES);
        let entry = parse_line(text.as_bytes()).unwrap();
        assert_eq!(
            entry.hash, framed.hash,
            "the seal is outside the canonical bytes"
        );
        assert_eq!(entry.seal, Some(seal));
        assert!(seal.is_valid(&key.verifying_key(), &entry.hash));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(!seal.is_valid(&other, &entry.hash));
        // A signature of the bare hash (no domain) is not a seal.
        let bare = Seal(key.sign(&entry.hash.0).to_bytes());
        assert!(!bare.is_valid(&key.verifying_key(), &entry.hash));
        // The serialised entry is the stored line, seal included (what the SIEM forwards).
        assert_eq!(serde_json::to_string(&entry).unwrap(), text);

        let problem = |line: &str| parse_line(line.as_bytes()).unwrap_err().problem;
        let null = text.replacen(&format!(r#""seal":"{seal}""#), r#""seal":null"#, 1);
        assert!(matches!(problem(&null), Problem::Unparseable(_)));
        let upper = text.replacen(&seal.to_hex(), &seal.to_hex().to_uppercase(), 1);
        assert_eq!(problem(&upper), Problem::NotCanonical);
        let moved = text
            .replacen(&format!(r#""seal":"{seal}","#), "", 1)
            .replacen(r#""detail""#, &format!(r#""seal":"{seal}","detail""#), 1);
        assert_eq!(problem(&moved), Problem::NotCanonical);
    }

    #[test]
    fn oversize_detail_is_refused_not_cut() {
        let record = Record::new(Kind::ADMIN_CHANGE, "root").detail("blob", "x".repeat(70_000));
        assert!(matches!(
            record.encode_body(),
            Err(AuditError::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn kinds_are_identifiers() {
        assert_eq!(Kind::new("session_start").unwrap(), Kind::SESSION_START);
        assert!(Kind::new("Session").is_err());
        assert!(Kind::new("").is_err());
        assert!(Kind::new("a".repeat(33)).is_err());
    }
}

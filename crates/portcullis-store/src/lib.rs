//! The embedded store of Portcullis: users, targets, grants and small metadata values, behind the
//! [`Store`] trait.
//!
//! Three implementations: [`SledStore`] (on disk, the embedded default, the only place that
//! knows about sled), [`PgStore`] (PostgreSQL, shared by several gateways; the only place that
//! knows about PostgreSQL) and [`MemoryStore`] (in memory, for tests of other crates). All behave
//! the same; a shared conformance test suite checks that.
//!
//! The store never sees plaintext secrets: [`TargetRecord::sealed_secret`] is sealed by the
//! caller.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod memory;
mod postgres_store;
mod sled_store;
#[cfg(feature = "testing")]
pub mod testing;

pub use memory::MemoryStore;
pub use postgres_store::{PgOptions, PgStore};
pub use sled_store::SledStore;

/// Longest allowed user or target name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with this name already exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// What kind of record (`"user"`, `"target"`).
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A record this operation needs does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// What kind of record (`"user"`, `"target"`).
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A user or target name breaks the naming rule; the message says which rule.
    #[error("{0}")]
    InvalidName(String),
    /// Another process holds the data directory.
    #[error("data directory {} is in use by another portcullis process", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record: {detail}")]
    Corrupt {
        /// What could not be decoded, and why.
        detail: String,
    },
    /// The storage backend failed.
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Error of parsing a [`Role`] or a [`TargetKind`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}: expected one of {expected}")]
pub struct ParseEnumError {
    /// What was being parsed (`"role"`, `"target kind"`).
    pub what: &'static str,
    /// The text that was given.
    pub value: String,
    /// The valid values, comma separated.
    pub expected: String,
}

/// What a user may do in Portcullis.
///
/// Kept exhaustive on purpose: code matching on it must be revisited when roles are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users, targets and grants.
    Admin,
    /// Watches every recording (auditors); no administration.
    Reviewer,
    /// The security operations centre: watches, freezes and kills live sessions, locks users.
    Soc,
    /// Connects to the targets granted to them.
    User,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Reviewer, Role::Soc, Role::User];

    /// The lowercase name used in JSON, on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reviewer => "reviewer",
            Role::Soc => "soc",
            Role::User => "user",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseEnumError;

    /// Parses a role name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseEnumError {
                what: "role",
                value: truncate_for_message(s),
                expected: join_names(Role::ALL.iter().map(|r| r.as_str())),
            })
    }
}

/// The protocol used to reach a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A VNC (RFB) server.
    Vnc,
    /// An RDP server.
    Rdp,
}

impl TargetKind {
    /// Every target kind.
    pub const ALL: &'static [TargetKind] = &[TargetKind::Vnc, TargetKind::Rdp];

    /// The lowercase name used in JSON, on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Vnc => "vnc",
            TargetKind::Rdp => "rdp",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetKind {
    type Err = ParseEnumError;

    /// Parses a target kind, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TargetKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseEnumError {
                what: "target kind",
                value: truncate_for_message(s),
                expected: join_names(TargetKind::ALL.iter().map(|k| k.as_str())),
            })
    }
}

/// A Portcullis user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Immutable identity, random, never reused: what recordings and API tokens refer to, so
    /// that an account created later under a deleted one's name inherits nothing of it. Empty
    /// only in records stored before ids existed, until the gateway's start gives them one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Login name; see [`validate_name`].
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Locked by the security team: no login, no session, until unlocked. Records stored
    /// before locking existed are not locked.
    #[serde(default)]
    pub locked: bool,
    /// Two-factor authentication (TOTP), once the user started enrolling. Records stored before
    /// MFA existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaRecord>,
    /// The identity provider account this user signs in with (single sign-on), if any. Such an
    /// account has no password: it is made and kept up to date by its sign-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<SsoLink>,
    /// The identity provider's groups the user was in at their last sign-in (policy subjects
    /// `sso_group:<name>`). Empty for local accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Passkeys (WebAuthn credentials) registered as a second factor: phishing-resistant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passkeys: Vec<PasskeyRecord>,
}

/// A registered passkey: its public key and signature counter (the credential as the WebAuthn
/// library keeps it; nothing secret), named by its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url.
    pub id: String,
    /// What the owner calls it ("YubiKey 5", "laptop").
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The last sign-in with it, Unix seconds (0: none yet).
    #[serde(default)]
    pub last_used_at: i64,
    /// The credential (public key, counter, flags), as the WebAuthn library serialises it.
    pub credential: serde_json::Value,
}

/// Which identity provider account a user is: the provider's id in the gateway's settings and
/// the account's `sub` (subject) there, which the provider never gives to anyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoLink {
    /// The provider's id in the gateway's settings.
    pub provider: String,
    /// The provider's issuer when the account was linked: a provider whose issuer changed
    /// (another identity provider under the same id) is not trusted for the account.
    pub issuer: String,
    /// The `sub` claim of the account's ID tokens.
    pub subject: String,
}

impl UserRecord {
    /// Whether two-factor authentication is on: TOTP enrolled and confirmed, or a passkey.
    pub fn mfa_enabled(&self) -> bool {
        self.totp_enabled() || !self.passkeys.is_empty()
    }

    /// Whether TOTP is on (enrolled and confirmed).
    pub fn totp_enabled(&self) -> bool {
        self.mfa.as_ref().is_some_and(|m| m.confirmed)
    }
}

/// A user's TOTP second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaRecord {
    /// The TOTP secret, sealed by the caller (the store never sees it in the clear).
    pub sealed_secret: Vec<u8>,
    /// Confirmed with a code: only then is MFA on. Unconfirmed: enrolment under way.
    pub confirmed: bool,
    /// The last time step (Unix seconds / 30) a code was accepted for: a code is never
    /// accepted twice.
    #[serde(default)]
    pub last_step: u64,
    /// When enrolment started (confirmed: when it was confirmed), unix seconds.
    #[serde(default)]
    pub since: i64,
    /// The recovery codes not used yet, as their SHA-256 (hex): each works once instead of a
    /// code from the app (a lost phone). The codes themselves are shown once and kept nowhere.
    #[serde(default)]
    pub recovery: Vec<String>,
}

/// A user's request for access to a target for a while (just-in-time access), and what became
/// of it. Approved, it lets the user open the target (as a grant would) until `grant_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Public identifier (`req_…`).
    pub id: String,
    /// Who asks.
    pub user: String,
    /// Their account's immutable id: the request is that account's only.
    pub user_id: String,
    /// For which target.
    pub target: String,
    /// Why (free text).
    pub reason: String,
    /// A ticket reference (change or incident number), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// How long the access is asked for, in seconds (from the approval).
    pub duration_secs: u64,
    /// The policy rule that makes the target requestable (and says who approves).
    pub rule: String,
    /// How many approvals it needs.
    pub approvals_needed: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// A request not decided by then expires (Unix seconds).
    pub decide_by: i64,
    /// Where it stands.
    pub state: RequestState,
    /// The approvals given so far.
    #[serde(default)]
    pub approvals: Vec<RequestDecision>,
    /// The denial, if denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<RequestDecision>,
    /// Approved: the access ends then (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_until: Option<i64>,
    /// When it was ended (expired, withdrawn, revoked), Unix seconds, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<(i64, String)>,
}

/// What reviewers made of one recording: their marks (reviewed, reopened) and the moments they
/// flagged. Keyed by the recording's id; made by the first mark or flag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingReview {
    /// The recording's (= session's) id.
    pub recording: String,
    /// Every mark, oldest first: the last says where the review stands.
    #[serde(default)]
    pub marks: Vec<ReviewMark>,
    /// The flagged moments, in the order they were flagged.
    #[serde(default)]
    pub flags: Vec<ReviewFlag>,
}

impl RecordingReview {
    /// The mark in force: the last one, if it says reviewed.
    pub fn reviewed(&self) -> Option<&ReviewMark> {
        self.marks
            .last()
            .filter(|m| m.state == ReviewState::Reviewed)
    }
}

/// One reviewer's word on a whole recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewMark {
    /// Reviewed, or reopened for another look.
    pub state: ReviewState,
    /// The reviewer's name and account id.
    pub by: String,
    #[serde(default)]
    pub by_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// What they found (free text).
    #[serde(default)]
    pub comment: String,
}

/// Where a recording's review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Looked at: nothing more to do (or what to do is in the comment).
    Reviewed,
    /// Needs another look.
    Reopened,
}

/// A moment of a recording a reviewer flagged, with their note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewFlag {
    /// Public identifier (`flag_…`), unique within the recording.
    pub id: String,
    /// The moment, in milliseconds from the recording's start.
    pub t_ms: u64,
    /// The reviewer's note.
    pub note: String,
    /// Who flagged it (name and account id).
    pub by: String,
    #[serde(default)]
    pub by_id: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

/// Where an access request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved: access until `grant_until`.
    Approved,
    /// Refused by an approver.
    Denied,
    /// Not decided in time, or its access ran out.
    Expired,
    /// Withdrawn by the requester (or their access taken back).
    Cancelled,
}

/// One approver's word on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDecision {
    /// The approver.
    pub by: String,
    /// Unix seconds.
    pub at: i64,
    /// Their comment.
    #[serde(default)]
    pub comment: String,
}

/// An API token for automation: it acts as `user`, limited to `scopes`. Only a hash of its
/// secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier (in the token text and the API paths).
    pub id: String,
    /// The user the token acts as.
    pub user: String,
    /// That user's [`UserRecord::id`]: the token acts only for that very account, never for a
    /// later one of the same name. Empty only in tokens stored before ids existed, until the
    /// gateway's start fills it in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// A name for people ("ci-nightly").
    pub name: String,
    /// What it may do (e.g. `sessions:read`); nothing else.
    pub scopes: Vec<String>,
    /// SHA-256 of the token's secret part.
    pub secret_hash: Vec<u8>,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Expiry, unix seconds.
    pub expires_at: i64,
    /// Who created it.
    #[serde(default)]
    pub created_by: String,
}

/// A machine users connect to through Portcullis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Target name; see [`validate_name`].
    pub name: String,
    /// Protocol.
    pub kind: TargetKind,
    /// Network address, e.g. `host:port`.
    pub address: String,
    /// The account the gateway logs in with (RDP: `user` or `DOMAIN\\user`; empty for VNC).
    /// Never shown to users.
    #[serde(default)]
    pub account: String,
    /// The target's credential, sealed by the caller (the store never sees plaintext).
    pub sealed_secret: Vec<u8>,
    /// Free text for administrators.
    pub description: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Labels the policy refers to (`label:prod`); each one follows the naming rule of
    /// [`validate_name`]. Records stored before labels existed have none.
    #[serde(default)]
    pub labels: Vec<String>,
    /// RDP: what the gateway knows of the target's identity (its pinned certificate, whether it
    /// does NLA). Records stored before pinning existed know nothing yet: the next connection
    /// pins (trust on first use).
    #[serde(default, skip_serializing_if = "TargetIdentity::is_unknown")]
    pub identity: TargetIdentity,
}

/// An RDP target's identity as the gateway knows it: checked on every connection before any
/// credential is sent (see portcullis-rdp `identity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetIdentity {
    /// SHA-256 of the target's TLS certificate (DER), 64 lowercase hex digits. `None`: not known
    /// yet; the next connection pins what the target presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sha256: Option<String>,
    /// The target once logged the gateway in with NLA (CredSSP): a later answer without NLA is
    /// a downgrade and is refused until an administrator allows it.
    #[serde(default)]
    pub nla_seen: bool,
    /// Refuse the target unless it selects NLA, whatever it did before.
    #[serde(default)]
    pub require_nla: bool,
    /// The certificate last refused because it did not match `tls_sha256`: what an
    /// administrator may accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_sha256: Option<String>,
    /// The last connection was refused because the target no longer selected NLA.
    #[serde(default)]
    pub refused_downgrade: bool,
    /// Verify the target's certificate against this CA bundle (PEM file on the gateway) and the
    /// host name of its address, instead of the pinned fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
}

impl TargetIdentity {
    /// Nothing is known or asked for (as for records stored before pinning existed).
    pub fn is_unknown(&self) -> bool {
        *self == TargetIdentity::default()
    }
}

/// Permission for a user to connect to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// User name.
    pub user: String,
    /// Target name.
    pub target: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// Checks a user or target name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, not starting
/// with `.` or `-`.
///
/// Names never contain `#`, `@`, `\` or `/`, so they can be combined into strings such as
/// `alice#target`. `kind` names what is checked in the error message (e.g. `"user"`).
pub fn validate_name(kind: &str, name: &str) -> Result<(), StoreError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(allowed)
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(format!(
            "invalid {kind} name {:?}: use 1-{MAX_NAME_LEN} letters, digits, '.', '_' or '-', \
             not starting with '.' or '-'",
            truncate_for_message(name)
        )))
    }
}

/// Shortens text quoted in an error message so a huge input cannot blow up logs.
fn truncate_for_message(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// The persistent state of Portcullis.
///
/// Names passed to the getters need not be valid: an invalid name simply matches nothing. Lists
/// are sorted by name (grants by user, then target). Every mutation is durable (as far as the
/// backend allows) when the call returns.
pub trait Store: Send + Sync + 'static {
    /// Adds a new user. Fails with [`StoreError::AlreadyExists`] if the name is taken, or
    /// [`StoreError::InvalidName`].
    fn create_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Adds or replaces a user whole (imports, tests). Fails with [`StoreError::InvalidName`].
    /// Never use it to change an existing user: a change made meanwhile would be lost and a
    /// user deleted meanwhile would come back; use [`Store::update_user`].
    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Changes an existing user atomically: `change` gets the record as stored now and says
    /// whether it changed it; no other write to that user comes between the read and the
    /// write. `None` when there is no such user (then nothing is written: a deleted user is
    /// never brought back). Returns the record as stored afterwards. `change` may run more than
    /// once (backends may retry), so it must only change the record it is given.
    fn update_user(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut UserRecord) -> bool,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Looks up a user.
    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// All users, sorted by name.
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes a user with all of their grants and API tokens, at once: a later user of the
    /// same name inherits none of them. Returns whether the user existed.
    fn delete_user(&self, name: &str) -> Result<bool, StoreError>;

    /// Adds a new target. Fails with [`StoreError::AlreadyExists`] if the name is taken, or
    /// [`StoreError::InvalidName`].
    fn create_target(&self, target: &TargetRecord) -> Result<(), StoreError>;
    /// Adds or replaces a target. Fails with [`StoreError::InvalidName`]. Never use it to change
    /// an existing target: a change made meanwhile (a pin learned, an admin's edit) would be
    /// lost and a deleted target would come back; use [`Store::update_target`].
    fn put_target(&self, target: &TargetRecord) -> Result<(), StoreError>;
    /// Changes an existing target atomically, as [`Store::update_user`] does users: `change`
    /// gets the record as stored now and says whether it changed it. `None` when there is no
    /// such target (nothing is written).
    fn update_target(
        &self,
        name: &str,
        change: &mut dyn FnMut(&mut TargetRecord) -> bool,
    ) -> Result<Option<TargetRecord>, StoreError>;
    /// Looks up a target.
    fn get_target(&self, name: &str) -> Result<Option<TargetRecord>, StoreError>;
    /// All targets, sorted by name.
    fn list_targets(&self) -> Result<Vec<TargetRecord>, StoreError>;
    /// Deletes a target and all grants to it. Returns whether the target existed.
    fn delete_target(&self, name: &str) -> Result<bool, StoreError>;

    /// Lets `user` connect to `target`. Fails with [`StoreError::NotFound`] naming the user or the
    /// target if either does not exist (the user is checked first). Granting an existing grant
    /// again succeeds and keeps the original `created_at`.
    fn create_grant(&self, user: &str, target: &str, created_at: i64) -> Result<(), StoreError>;
    /// Removes a grant. Returns whether it existed.
    fn delete_grant(&self, user: &str, target: &str) -> Result<bool, StoreError>;
    /// All grants, sorted by user, then target.
    fn list_grants(&self) -> Result<Vec<GrantRecord>, StoreError>;
    /// Whether `user` may connect to `target`.
    fn has_grant(&self, user: &str, target: &str) -> Result<bool, StoreError>;
    /// Names of the targets granted to `user`, sorted.
    fn granted_targets(&self, user: &str) -> Result<Vec<String>, StoreError>;

    /// Stores an API token (new or replaced), keyed by its id.
    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Looks up an API token by id.
    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// All API tokens, sorted by id.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Deletes an API token. Returns whether it existed.
    fn delete_token(&self, id: &str) -> Result<bool, StoreError>;

    /// Reads a metadata value (schema version, instance id, ...).
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a metadata value.
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Writes a metadata value unless the key has one: true when written (of several gateways
    /// writing at once, exactly one wins).
    fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, StoreError>;
    /// The keys of every metadata value, sorted (to copy a store whole).
    fn meta_keys(&self) -> Result<Vec<String>, StoreError>;

    /// Changes one entry of short-lived state atomically (see [`Ephemeral`]): `change` gets the
    /// entry as stored now (`None`: none, or expired at `now_ms`) and says what to do; no other
    /// change of that entry comes between. Returns the entry as it was before (`None` likewise):
    /// taking a one-time ticket is `Delete`, and only one caller gets it. `change` may run more
    /// than once (backends may retry).
    fn ephemeral_update(
        &self,
        space: &str,
        key: &str,
        now_ms: i64,
        change: &mut dyn FnMut(Option<&Ephemeral>) -> EphemeralChange,
    ) -> Result<Option<Ephemeral>, StoreError>;
    /// Deletes every entry of `space` owned by `owner` (their account was deleted or locked).
    fn ephemeral_delete_owner(&self, space: &str, owner: &str) -> Result<usize, StoreError>;
    /// How many live entries `space` holds at `now_ms`, in all and owned by `owner`.
    fn ephemeral_count(
        &self,
        space: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<(usize, usize), StoreError>;
    /// Deletes every entry expired at `now_ms`.
    fn ephemeral_purge(&self, now_ms: i64) -> Result<usize, StoreError>;
    /// Keeps at most `keep` entries of `space`: those that expire first go (a bound on what
    /// many failed logins or tickets can make the store hold).
    fn ephemeral_trim(&self, space: &str, keep: usize) -> Result<usize, StoreError>;

    /// Stores a new access request; fails when its id exists.
    fn create_request(&self, request: &AccessRequest) -> Result<(), StoreError>;
    /// Changes the request `id` in one step (`change` returns whether it changed anything; it may
    /// run more than once); the request as stored after, `None` when there is none.
    fn update_request(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut AccessRequest) -> bool,
    ) -> Result<Option<AccessRequest>, StoreError>;
    /// The request `id`.
    fn get_request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError>;
    /// Every access request, by id.
    fn list_requests(&self) -> Result<Vec<AccessRequest>, StoreError>;

    /// Changes the review of recording `recording` in one step, starting from an empty one when
    /// there is none (`change` returns whether it changed anything; it may run more than once);
    /// the review as stored after. Two reviewers at once: each change applies to the other's.
    fn update_review(
        &self,
        recording: &str,
        change: &mut dyn FnMut(&mut RecordingReview) -> bool,
    ) -> Result<RecordingReview, StoreError>;
    /// The review of recording `recording`, if any.
    fn get_review(&self, recording: &str) -> Result<Option<RecordingReview>, StoreError>;
    /// Every review, by recording id.
    fn list_reviews(&self) -> Result<Vec<RecordingReview>, StoreError>;
    /// Deletes a recording's review (the recording is gone). Returns whether it existed.
    fn delete_review(&self, recording: &str) -> Result<bool, StoreError>;

    /// Flushes everything written so far to disk (see [`SledStore`] for what that guarantees).
    fn flush(&self) -> Result<(), StoreError>;
}

/// What the gateways of one deployment tell each other through the shared store: which live
/// sessions each one holds (published every few seconds with a heartbeat) and commands for one
/// gateway (a kill asked on another), which wake it at once. Only a store several gateways share
/// has it ([`PgStore`]).
pub trait Cluster: Send + Sync + 'static {
    /// Replaces what `node` published (`sessions`, a JSON array) and marks it alive now (by
    /// the store's clock, the same for every gateway).
    fn publish(&self, node: &str, sessions: &serde_json::Value) -> Result<(), StoreError>;
    /// What every gateway heard from within `within` (by the store's clock) published: (node,
    /// its sessions).
    fn published(
        &self,
        within: std::time::Duration,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError>;
    /// Leaves `command` for `node` and wakes it.
    fn send(&self, node: &str, command: &serde_json::Value) -> Result<(), StoreError>;
    /// The commands left for `node`, oldest first; each is taken once.
    fn take(&self, node: &str) -> Result<Vec<serde_json::Value>, StoreError>;
    /// Waits until a command may be waiting for `node` (woken by [`Cluster::send`]), at most
    /// `timeout`; on its own connection. Callers take commands after it returns, whatever it
    /// returns (a wake-up can be missed while reconnecting: the timeout bounds the delay). An
    /// error (no connection) comes after waiting out the timeout.
    fn wait(&self, node: &str, timeout: std::time::Duration) -> Result<(), StoreError>;
    /// Forgets `node` (it stopped): its sessions are no longer listed.
    fn leave(&self, node: &str) -> Result<(), StoreError>;

    /// The highest seq of `node`'s audit chain mirrored so far (0: none).
    fn audit_mirrored_up_to(&self, node: &str) -> Result<u64, StoreError>;
    /// Mirrors records of one gateway's audit chain. A record already there is left as it is;
    /// one already there with other bytes (two gateways with one name, or a chain rewritten)
    /// is refused ([`StoreError::Corrupt`]), nothing of the call stored.
    fn audit_mirror(&self, records: &[MirroredRecord]) -> Result<(), StoreError>;
    /// The merged view: records of every gateway matching `query`, newest first (by time, then
    /// gateway, then seq).
    fn audit_mirrored(&self, query: &MirrorQuery) -> Result<Vec<MirroredRecord>, StoreError>;
    /// `node`'s chain as mirrored, oldest first, after `after_seq`, at most `limit`.
    fn audit_chain(
        &self,
        node: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<MirroredRecord>, StoreError>;
    /// The gateways whose chains are mirrored.
    fn audit_nodes(&self) -> Result<Vec<String>, StoreError>;

    /// Takes the lease of export `name` (a SIEM export of the merged trail, which one gateway
    /// at a time carries out) for `holder`, or renews it, for `lease` by the store's clock:
    /// unless another gateway holds it and it has not run out.
    fn export_lease(
        &self,
        name: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<ExportLease, StoreError>;
    /// Stores export `name`'s cursor if `holder` holds its lease (false: it does not).
    fn export_advance(&self, name: &str, holder: &str, cursor: &str) -> Result<bool, StoreError>;
    /// Ends `holder`'s lease of export `name` now (it stops), if it has it.
    fn export_release(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}

/// What [`Cluster::export_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLease {
    /// The caller holds the lease; the export's cursor as stored (empty: none yet).
    Held {
        /// The cursor.
        cursor: String,
    },
    /// Another gateway holds it.
    Other {
        /// Which.
        holder: String,
    },
}

/// One record of a gateway's audit chain, as mirrored for the cluster's merged view: the
/// stored line as the gateway wrote it (its hash, seal and `detail.node` in it), and the fields
/// the view filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredRecord {
    /// The gateway whose chain it belongs to.
    pub node: String,
    /// Its place in that chain.
    pub seq: u64,
    /// When it was written (Unix milliseconds, the gateway's clock).
    pub ts_ms: u64,
    /// Its kind.
    pub kind: String,
    /// Who acted.
    pub actor: String,
    /// What it was done to.
    pub target: Option<String>,
    /// Its session.
    pub session: Option<String>,
    /// The stored line, without its newline.
    pub line: String,
}

/// What [`Cluster::audit_mirrored`] returns. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorQuery {
    /// Who acted (exact).
    pub actor: Option<String>,
    /// Which target (exact).
    pub target: Option<String>,
    /// Which session (exact).
    pub session: Option<String>,
    /// Any of these kinds.
    pub kinds: Vec<String>,
    /// Which gateway.
    pub node: Option<String>,
    /// At or after this time (Unix ms).
    pub since_ms: Option<u64>,
    /// Before this time (Unix ms).
    pub until_ms: Option<u64>,
    /// Older than this (time, gateway, seq): the last one of the page before.
    pub before: Option<(u64, String, u64)>,
    /// At most this many (at most 1000).
    pub limit: usize,
}

/// An entry of short-lived state that every gateway on a store shares (logins, one-time RDP
/// tickets, failed-login counts), in a `space` under a `key`. Expired entries are never
/// returned. The embedded stores keep them in memory (a restart forgets them, as one gateway
/// alone always did); the PostgreSQL store shares them between gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    /// The user it belongs to (empty: nobody): [`Store::ephemeral_delete_owner`] ends them.
    pub owner: String,
    /// What the entry holds (its space's own encoding).
    pub value: Vec<u8>,
    /// Unix milliseconds from which it is gone.
    pub expires_at_ms: i64,
}

/// What [`Store::ephemeral_update`] does with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EphemeralChange {
    /// Leave it as it is.
    Keep,
    /// Store this (created or replaced).
    Put(Ephemeral),
    /// Delete it.
    Delete,
}

/// The [`Store`] methods of short-lived state, for a store that keeps it in a [`LocalEphemeral`]
/// field named `$field`.
macro_rules! local_ephemeral_methods {
    ($field:ident) => {
        fn ephemeral_update(
            &self,
            space: &str,
            key: &str,
            now_ms: i64,
            change: &mut dyn FnMut(Option<&$crate::Ephemeral>) -> $crate::EphemeralChange,
        ) -> Result<Option<$crate::Ephemeral>, StoreError> {
            Ok(self.$field.update(space, key, now_ms, change))
        }

        fn ephemeral_delete_owner(&self, space: &str, owner: &str) -> Result<usize, StoreError> {
            Ok(self.$field.delete_owner(space, owner))
        }

        fn ephemeral_count(
            &self,
            space: &str,
            owner: &str,
            now_ms: i64,
        ) -> Result<(usize, usize), StoreError> {
            Ok(self.$field.count(space, owner, now_ms))
        }

        fn ephemeral_purge(&self, now_ms: i64) -> Result<usize, StoreError> {
            Ok(self.$field.purge(now_ms))
        }

        fn ephemeral_trim(&self, space: &str, keep: usize) -> Result<usize, StoreError> {
            Ok(self.$field.trim(space, keep))
        }
    };
}
pub(crate) use local_ephemeral_methods;

/// Ephemeral entries in memory, for the embedded stores.
#[derive(Debug, Default)]
pub(crate) struct LocalEphemeral {
    entries: std::sync::Mutex<std::collections::BTreeMap<(String, String), Ephemeral>>,
}

impl LocalEphemeral {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, String), Ephemeral>> {
        // Every change below completes without panicking (a panicking `change` leaves the map
        // as it was).
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn update(
        &self,
        space: &str,
        key: &str,
        now_ms: i64,
        change: &mut dyn FnMut(Option<&Ephemeral>) -> EphemeralChange,
    ) -> Option<Ephemeral> {
        let mut entries = self.lock();
        let id = (space.to_owned(), key.to_owned());
        let before = entries
            .get(&id)
            .filter(|e| e.expires_at_ms > now_ms)
            .cloned();
        match change(before.as_ref()) {
            EphemeralChange::Keep => {}
            EphemeralChange::Put(entry) => {
                entries.insert(id, entry);
            }
            EphemeralChange::Delete => {
                entries.remove(&id);
            }
        }
        before
    }

    pub(crate) fn delete_owner(&self, space: &str, owner: &str) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|(s, _), e| !(s == space && e.owner == owner));
        before - entries.len()
    }

    pub(crate) fn count(&self, space: &str, owner: &str, now_ms: i64) -> (usize, usize) {
        let entries = self.lock();
        let live = entries
            .iter()
            .filter(|((s, _), e)| s == space && e.expires_at_ms > now_ms);
        let (mut all, mut owned) = (0, 0);
        for (_, e) in live {
            all += 1;
            owned += usize::from(e.owner == owner);
        }
        (all, owned)
    }

    pub(crate) fn trim(&self, space: &str, keep: usize) -> usize {
        let mut entries = self.lock();
        let mut expiries: Vec<(i64, String)> = entries
            .iter()
            .filter(|((s, _), _)| s == space)
            .map(|((_, k), e)| (e.expires_at_ms, k.clone()))
            .collect();
        if expiries.len() <= keep {
            return 0;
        }
        expiries.sort_unstable();
        let cut = expiries.len() - keep;
        for (_, key) in expiries.into_iter().take(cut) {
            entries.remove(&(space.to_owned(), key));
        }
        cut
    }

    pub(crate) fn purge(&self, now_ms: i64) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.expires_at_ms > now_ms);
        before - entries.len()
    }
}

/// The writing half of [`copy_all`].
fn copy_records(
    from: &dyn Store,
    to: &dyn Store,
    users: &[UserRecord],
    targets: &[TargetRecord],
    grants: &[GrantRecord],
    tokens: &[TokenRecord],
    meta_keys: &[String],
) -> Result<(), StoreError> {
    for user in users {
        to.put_user(user)?;
    }
    for target in targets {
        to.put_target(target)?;
    }
    for grant in grants {
        to.create_grant(&grant.user, &grant.target, grant.created_at)?;
    }
    for token in tokens {
        to.put_token(token)?;
    }
    for key in meta_keys {
        if let Some(value) = from.get_meta(key)? {
            to.put_meta(key, &value)?;
        }
    }
    to.flush()
}

/// What [`copy_all`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CopyCounts {
    /// Users.
    pub users: usize,
    /// Targets.
    pub targets: usize,
    /// Grants.
    pub grants: usize,
    /// API tokens.
    pub tokens: usize,
    /// Metadata values (the saved policy, ...).
    pub meta: usize,
    /// Access requests (open and decided: the approvals are evidence).
    pub requests: usize,
    /// Recording reviews (marks and flagged moments).
    pub reviews: usize,
}

/// Copies everything in `from` into `to`, which must be empty (no users, targets or tokens):
/// records are copied whole (ids, creation times, sealed secrets, pins), then `to` is read back
/// and compared with `from`. Fails without copying anything when `to` is not empty, and with a
/// [`StoreError::Backend`] naming the difference when the copy does not read back the same.
pub fn copy_all(from: &dyn Store, to: &dyn Store) -> Result<CopyCounts, StoreError> {
    if !to.list_users()?.is_empty()
        || !to.list_targets()?.is_empty()
        || !to.list_tokens()?.is_empty()
    {
        return Err(StoreError::Backend(
            "the destination store already holds users, targets or API tokens: nothing was copied \
             (a store is copied into an empty one only)"
                .to_owned(),
        ));
    }
    let users = from.list_users()?;
    let targets = from.list_targets()?;
    let grants = from.list_grants()?;
    let tokens = from.list_tokens()?;
    let meta_keys = from.meta_keys()?;
    let requests = from.list_requests()?;
    let reviews = from.list_reviews()?;
    // Text with a NUL cannot be stored everywhere (PostgreSQL): found before anything is written.
    let nul = |kind: &str, name: &str, json: Result<String, serde_json::Error>| {
        if json.is_ok_and(|j| j.contains("\\u0000")) {
            return Err(StoreError::Backend(format!(
                "{kind} {name:?} holds a NUL character, which the destination cannot store: edit it \
                 first (nothing was copied)"
            )));
        }
        Ok(())
    };
    for u in &users {
        nul("user", &u.name, serde_json::to_string(u))?;
    }
    for t in &targets {
        nul("target", &t.name, serde_json::to_string(t))?;
    }
    for t in &tokens {
        nul("API token", &t.id, serde_json::to_string(t))?;
    }
    for r in &requests {
        nul("access request", &r.id, serde_json::to_string(r))?;
    }
    for r in &reviews {
        nul("recording review", &r.recording, serde_json::to_string(r))?;
    }
    copy_records(from, to, &users, &targets, &grants, &tokens, &meta_keys)
        .and_then(|()| {
            for r in &requests {
                to.create_request(r)?;
            }
            for r in &reviews {
                to.update_review(&r.recording, &mut |stored| {
                    *stored = r.clone();
                    true
                })?;
            }
            Ok(())
        })
        .map_err(|e| {
            StoreError::Backend(format!(
            "{e}; the destination now holds part of the installation: empty it (PostgreSQL: DROP \
             SCHEMA portcullis CASCADE) before copying again"
        ))
        })?;
    let differs = |what: &str| {
        StoreError::Backend(format!(
            "the copy's {what} do not read back as the source's: check the destination before using it"
        ))
    };
    if to.list_users()? != users {
        return Err(differs("users"));
    }
    if to.list_targets()? != targets {
        return Err(differs("targets"));
    }
    if to.list_grants()? != grants {
        return Err(differs("grants"));
    }
    if to.list_tokens()? != tokens {
        return Err(differs("API tokens"));
    }
    for key in &meta_keys {
        if to.get_meta(key)? != from.get_meta(key)? {
            return Err(differs("metadata values"));
        }
    }
    if to.list_requests()? != requests {
        return Err(differs("access requests"));
    }
    if to.list_reviews()? != reviews {
        return Err(differs("recording reviews"));
    }
    Ok(CopyCounts {
        users: users.len(),
        targets: targets.len(),
        grants: grants.len(),
        tokens: tokens.len(),
        meta: meta_keys.len(),
        requests: requests.len(),
        reviews: reviews.len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn role_text_forms() {
        assert_eq!(serde_json::to_string(&Role::Admin).unwrap(), r#""admin""#);
        assert_eq!(serde_json::to_string(&Role::User).unwrap(), r#""user""#);
        assert_eq!(
            serde_json::from_str::<Role>(r#""user""#).unwrap(),
            Role::User
        );
        assert!(serde_json::from_str::<Role>(r#""root""#).is_err());
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), *role);
        }
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        let err = "root".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown role "root": expected one of admin, reviewer, soc, user"#
        );
    }

    #[test]
    fn target_kind_text_forms() {
        assert_eq!(serde_json::to_string(&TargetKind::Vnc).unwrap(), r#""vnc""#);
        assert_eq!("vnc".parse::<TargetKind>().unwrap(), TargetKind::Vnc);
        assert_eq!(TargetKind::Vnc.to_string(), "vnc");
        assert_eq!("RDP".parse::<TargetKind>().unwrap(), TargetKind::Rdp);
        let err = "ssh".parse::<TargetKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown target kind "ssh": expected one of vnc, rdp"#
        );
    }

    #[test]
    fn record_json_shape() {
        let user = UserRecord {
            id: String::new(),
            name: "alice".to_owned(),
            password_hash: "h".to_owned(),
            role: Role::Admin,
            created_at: 1,
            locked: false,
            mfa: None,
            sso: None,
            groups: Vec::new(),
            passkeys: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&user).unwrap(),
            serde_json::json!({"name":"alice","password_hash":"h","role":"admin","created_at":1,"locked":false})
        );
        // Stored before locking existed: not locked.
        let old: UserRecord = serde_json::from_str(
            r#"{"name":"alice","password_hash":"h","role":"admin","created_at":1}"#,
        )
        .unwrap();
        assert!(!old.locked);
    }

    #[test]
    fn targets_stored_before_pinning_load_unpinned() {
        let old: TargetRecord = serde_json::from_str(
            r#"{"name":"t","kind":"rdp","address":"h:3389","sealed_secret":[1],"description":"","created_at":1}"#,
        )
        .unwrap();
        assert!(old.identity.is_unknown());
        // An unknown identity is not written out: the stored shape stays as before.
        let json = serde_json::to_value(&old).unwrap();
        assert!(json.get("identity").is_none(), "{json}");
        let pinned = TargetRecord {
            identity: TargetIdentity {
                tls_sha256: Some("ab".repeat(32)),
                nla_seen: true,
                ..TargetIdentity::default()
            },
            ..old
        };
        let back: TargetRecord =
            serde_json::from_value(serde_json::to_value(&pinned).unwrap()).unwrap();
        assert_eq!(back, pinned);
    }

    #[test]
    fn name_rules() {
        for good in [
            "a",
            "A",
            "0",
            "alice",
            "web-01",
            "db_2.prod",
            "a.",
            "_x",
            &"x".repeat(64),
        ] {
            assert!(validate_name("user", good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".a",
            "-a",
            "a b",
            "a#b",
            "a@b",
            "a\\b",
            "a/b",
            "a:b",
            "a\0",
            "é",
            "a\n",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(
                    validate_name("target", bad),
                    Err(StoreError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        let err = validate_name("user", "x y").unwrap_err().to_string();
        assert!(
            err.starts_with(
                r#"invalid user name "x y": use 1-64 letters, digits, '.', '_' or '-'"#
            ),
            "{err}"
        );
        let err = validate_name("target", &"#".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{err}");
        assert!(err.starts_with("invalid target name"), "{err}");
    }
}

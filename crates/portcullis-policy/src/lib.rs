//! The policy engine of Portcullis: who may open which target, through which entry path, when,
//! for how long, and what may cross between the user's machine and the target.
//!
//! Sans-I/O like the core: no files, no sockets, no async runtime, no clocks (the time is passed
//! in as Unix seconds). Reading the TOML config, serving the API and editing in the web UI happen
//! elsewhere; they all exchange the same [`PolicyDoc`].
//!
//! # The model
//!
//! - A policy is groups of users plus an **ordered** list of rules. A rule binds subjects
//!   (`user:alice`, `role:admin`, `group:vendors`, `*`) to targets (`name:web01`, `label:prod`,
//!   `*`) and says what sessions under it may do: entry paths (browser, native client),
//!   clipboard (direction, size limit, text or files), file transfer (upload, download), printing,
//!   audio, maximum duration, idle timeout, time windows, and whether recording is required.
//! - **First match decides.** For a user on a target, the first rule whose subjects match the user
//!   and whose targets match the target decides everything; later rules are not looked at. Like a
//!   firewall, one rule is responsible for each decision, which keeps it easy to explain. A rule
//!   with `deny = true` refuses what it matches, to make exceptions to broader rules after it.
//! - **Deny by default.** No matching rule means no session: an empty policy denies everything.
//!   Within a rule everything not named is off (clipboard, file transfer, printing, audio) and
//!   recording is required, failing closed: see [`SessionGrant::recording`].
//! - **Decide at the opening, then at each crossing.** [`Policy::session`] decides whether a
//!   session opens and returns a [`SessionGrant`]: the gateway keeps it and asks it about each
//!   clipboard transfer, file transfer, print job or audio stream, and ends the session at
//!   [`SessionGrant::ends_at_unix_secs`] (maximum duration or end of the time window) or after
//!   the idle timeout.
//! - **Risk.** The document's `[[risk]]` rules (over a built-in set, see [`risk`]) say which
//!   typed, pasted or on-screen text scores a session and what the gateway then does (alert,
//!   freeze, kill); [`Policy::risk_for`] gives a session's target its rules.
//! - **Explain.** [`Policy::explain`] says, for the API and the admin page, which rules were
//!   looked at, why each did or did not match, and the verdict with its reason.
//!
//! [`Policy::compile`] validates a document (every error names the rule and field) and builds
//! lookup tables, so a decision is a few hash lookups and bit operations whatever the number of
//! rules: no allocation (except naming the user and target when no rule matches), well under a
//! microsecond.
//!
//! ```
//! use portcullis_policy::{ClipKind, Direction, Entry, Policy, PolicyDoc, Subject, TargetRef};
//!
//! let policy = Policy::compile(&PolicyDoc::default_policy()).unwrap();
//! let who = Subject { user: "alice", role: "user", groups: &[] };
//! let target = TargetRef { name: "web01", labels: &["prod"] };
//! let grant = policy.session(&who, &target, Entry::Browser, 0).into_result().unwrap();
//! assert!(grant.clipboard(Direction::TargetToClient, ClipKind::Text, 100).is_allowed());
//! assert!(!grant.clipboard(Direction::TargetToClient, ClipKind::Files, 100).is_allowed());
//! assert!(grant.recording_required());
//! ```
// Untrusted sizes and counts pass through here: a cast that could cut a number is a bug.
#![warn(clippy::cast_possible_truncation)]

pub mod decision;
pub mod doc;
pub mod error;
pub mod explain;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;
pub mod policy;
pub mod retention;
pub mod risk;
mod target;
mod window;

pub use decision::{
    ClipKind, Denial, DenyReason, Direction, Requestable, SessionDecision, SessionGrant, Subject,
    TargetRef, Verdict,
};
pub use doc::{
    ClipboardDoc, ClipboardFlow, Entry, FileTransferMode, PolicyDoc, Recording, RequestDoc,
    RuleDoc, Weekday, WindowDoc, DEFAULT_CLIPBOARD_MAX_BYTES,
};
pub use error::{PolicyError, Problem};
pub use explain::{Action, Explanation, RuleCheck};
pub use policy::Policy;
pub use retention::{RetentionChoice, RetentionDoc};
pub use risk::{RiskAction, RiskHit, RiskRuleDoc, RiskSet, TextSource};

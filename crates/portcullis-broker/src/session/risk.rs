//! The session's risk rules at work (portcullis-policy `risk`, carried by the grant): command
//! lines the user types (followed by core's `LineEditor`, checked at Enter), text pasted into
//! the target, and text read off the screen (by the gateway's OCR) are checked; a rule that
//! fires is in the event track and the audit trail, adds to the session's risk score, and
//! alerts, freezes or ends the session.
//!
//! A freeze or a kill stops what fired it: the Enter of a typed line does not reach the target
//! (the line stays where the user left it, and Enter checks it again), pasted text is not
//! delivered. The act is on record (durably) before it happens; when the trail cannot take it,
//! the session is held or ended all the same (failing closed) and the error is logged.

use std::sync::atomic::Ordering;

use portcullis_core::keytext::{LineEditor, LineKey};
use portcullis_core::session::{SessionEnd, SessionEvent};
use portcullis_core::wire::ServerMessage;
use portcullis_policy::{RiskAction, RiskHit, TextSource};
use tracing::{error, warn};

use super::SessionShared;
use crate::locks::lock;
use crate::tap::state::TapEvent;

/// The most rules a session's list of fired ones keeps.
const MAX_FIRED: usize = 64;
/// The most screen hits remembered (so that they do not fire again).
const MAX_SCREEN_HITS: usize = 256;
/// The highest risk score.
const MAX_SCORE: u32 = 100;

/// What the session follows for its risk rules.
#[derive(Debug, Default)]
pub(crate) struct RiskState {
    /// The command line being typed.
    editor: LineEditor,
    /// The hits from the screen's text (rule and excerpt): the same text stays on the screen
    /// (and is read again with the rows around a change), so a hit fires once per session.
    screen_fired: Vec<(String, String)>,
}

impl SessionShared {
    /// A key the user pressed or let go, followed as a command line. At Enter the line is
    /// checked; returns false when the key must not reach the target (a rule stopped the line).
    pub(crate) async fn risk_key(&self, keysym: u32, down: bool) -> bool {
        if !self.grant.risk().watches(TextSource::Typed) {
            return true;
        }
        let submitted = match lock(&self.risk).editor.key(keysym, down) {
            LineKey::Submit(s) if !s.typed.trim().is_empty() || !s.line.trim().is_empty() => s,
            _ => return true,
        };
        // The line as edited, and everything typed into it (what a history recall, a yank or
        // a key the editor cannot follow would otherwise hide), each rule once. While the
        // editor followed the whole line, text only in what was typed was erased before Enter:
        // it alerts, it does not stop the line (an honest typo must not freeze a session).
        let risk = self.grant.risk();
        let followed = !submitted.unknown && !submitted.cut;
        let mut hits = risk.check(TextSource::Typed, &submitted.line);
        for mut hit in risk.check(TextSource::Typed, &submitted.typed) {
            if !hits.iter().any(|h| h.rule == hit.rule) {
                if followed {
                    hit.action = hit.action.min(RiskAction::Alert);
                }
                hits.push(hit);
            }
        }
        hits.sort_by_key(|h| std::cmp::Reverse(h.action));
        let stopped = !hits.is_empty() && self.risk_fired(hits).await;
        if stopped {
            // Still on the target's prompt: the next Enter is checked again.
            lock(&self.risk).editor.undo_submit();
        }
        !stopped
    }

    /// Checks `text` from `source` (pasted, or read off the screen) against the session's risk
    /// rules and acts on what fires. Returns true when a rule stopped it (freeze or kill).
    pub(crate) async fn risk_check(&self, source: TextSource, text: &str) -> bool {
        let mut hits = self.grant.risk().check(source, text);
        if source == TextSource::Screen {
            let mut state = lock(&self.risk);
            hits.retain(|h| {
                !state
                    .screen_fired
                    .iter()
                    .any(|(r, e)| *r == h.rule && *e == h.excerpt)
            });
            for h in &hits {
                if state.screen_fired.len() >= MAX_SCREEN_HITS {
                    state.screen_fired.remove(0);
                }
                state.screen_fired.push((h.rule.clone(), h.excerpt.clone()));
            }
        }
        if hits.is_empty() {
            return false;
        }
        self.risk_fired(hits).await
    }

    pub(crate) async fn risk_fired(&self, hits: Vec<RiskHit>) -> bool {
        let Some(worst) = hits.first().cloned() else {
            return false;
        };
        let (id, new_rule) = {
            let mut info = lock(&self.info);
            let mut new_rule = false;
            for hit in &hits {
                if !info.risk_rules.contains(&hit.rule) && info.risk_rules.len() < MAX_FIRED {
                    info.risk_rules.push(hit.rule.clone());
                    info.risk_score = info.risk_score.saturating_add(hit.score).min(MAX_SCORE);
                    new_rule = true;
                }
            }
            (info.id.clone(), new_rule)
        };
        // The console shows the rules and the score: told only when they changed (a rule
        // firing again on every Enter does not make every console refresh).
        if new_rule {
            self.changed.bump();
        }
        if worst.action.stops() {
            // Input is held from now on, before anything is awaited: nothing typed meanwhile
            // (by any viewer of the session) goes through.
            self.risk_hold.store(true, Ordering::SeqCst);
        }
        warn!(session = %id, rule = %worst.rule, source = %worst.source, action = %worst.action, "a risk rule fired");
        for (i, hit) in hits.into_iter().enumerate() {
            let event = risk_event(&hit);
            if i == 0 && worst.action.stops() {
                if let Err(e) = self.audit_first(&event).await {
                    error!(session = %id, rule = %hit.rule, error = %e, "the risk rule's act could not be recorded first; it happens all the same (failing closed)");
                }
                self.tap_only(event);
            } else {
                self.tap_event(TapEvent::Session(event));
            }
        }
        let why = format!("risk rule \"{}\" ({})", worst.rule, worst.description);
        match worst.action {
            RiskAction::Score | RiskAction::Alert => return false,
            RiskAction::Freeze => {
                let notice = ServerMessage::Denied {
                    action: format!("{}_text", worst.source),
                    reason: format!(
                        "{why}: the session is frozen until the security team lets it go on \
                         (then Ctrl+C abandons the line)"
                    ),
                };
                self.for_each_viewer(|v| {
                    v.push_event(notice.clone());
                    v.wake();
                });
                match self
                    .set_frozen(true, &format!("risk rule {}", worst.rule))
                    .await
                {
                    Ok(_) => self.risk_hold.store(false, Ordering::SeqCst),
                    Err(e) => {
                        error!(session = %id, error = %e, "the risk rule's freeze could not be recorded: input stays held");
                    }
                }
            }
            RiskAction::Kill => self.end(SessionEnd::ClosedByAdmin {
                message: format!("the session was ended by the {why}"),
            }),
        }
        true
    }
}

fn risk_event(hit: &RiskHit) -> SessionEvent {
    SessionEvent::Risk {
        rule: hit.rule.clone(),
        description: hit.description.clone(),
        source: hit.source.as_str().to_owned(),
        action: hit.action.as_str().to_owned(),
        score: hit.score,
        excerpt: hit.excerpt.clone(),
    }
}

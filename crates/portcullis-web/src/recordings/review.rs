//! The review workflow: reviewers mark a recording reviewed (or reopen it) with a comment, flag
//! moments with notes (markers on the player's timeline), and take a report of the session for
//! auditors.
//!
//! - `GET /recordings/{id}/review`: where the review stands, every mark, the flagged moments.
//! - `POST /recordings/{id}/review {state: reviewed|reopened, comment}`: a mark (a recording is
//!   marked reviewed only once it has ended).
//! - `POST /recordings/{id}/flags {t_ms, note}`: flags a moment (also of a session being
//!   recorded: the security team flags as it watches).
//! - `DELETE /recordings/{id}/flags/{flag}`: takes a flag back (its author, or an administrator).
//! - `GET /recordings/{id}/report`: the session as one self-contained HTML document.
//!
//! Administrators, reviewers and the security team only: a plain user reads no reviewer's word
//! on their own sessions. Every mark, flag, unflag and report is in the audit trail before it
//! happens.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use portcullis_audit::{Kind, Record};
use portcullis_recording::catalog::{self, Piece, Summary};
use portcullis_recording::manifest::EVENTS;
use portcullis_store::{RecordingReview, ReviewFlag, ReviewMark, ReviewState, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::api::{blocking, recordings, storage_error, visible, MAX_EVENTS_BYTES};
use super::report::{self, ReportInput};
use crate::auth::now_ms;
use crate::extract::{AuthUser, Body, Reviewing};
use crate::{AppState, WebError};

/// Longest comment on a mark, or note on a flag, in characters.
pub(crate) const MAX_NOTE: usize = 2000;
/// Most flags one recording may carry.
const MAX_FLAGS: usize = 200;
/// Most marks one recording keeps (reviewed, reopened, ... back and forth; older ones make room,
/// the audit trail keeps them all).
const MAX_MARKS: usize = 50;
/// Largest set of flags (as stored) a new flag is added to (marks are bounded apart: by count,
/// the oldest making room).
const MAX_REVIEW_BYTES: usize = 128 * 1024;
/// Most flagged moments a report shows the picture of.
const MAX_PICTURES: usize = 100;
/// Reports made at once.
static REPORTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/recordings/{id}/review", get(show).post(mark))
        .route("/recordings/{id}/flags", post(flag))
        .route("/recordings/{id}/flags/{flag}", delete(unflag))
        .route("/recordings/{id}/report", get(report))
}

/// Printable text (new lines and tabs allowed) of at most `max` characters, without the
/// invisible characters that reorder or hide text (a note must read as it was written).
fn note_ok(text: &str, max: usize) -> bool {
    text.chars().count() <= max
        && !text
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || report::is_format_char(c))
}

/// Whether `summary` is a session of `user`'s own (by account id; by name for recordings made
/// before accounts had ids): nobody reviews their own sessions.
fn own_session(user: &AuthUser, summary: &Summary) -> bool {
    if summary.user_id.is_empty() {
        summary.user == user.name
    } else {
        !user.id.is_empty() && summary.user_id == user.id
    }
}

/// Refuses (403, on record) a review act on the caller's own session.
async fn not_own(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    summary: &Summary,
    action: &str,
) -> Result<(), WebError> {
    if !own_session(user, summary) {
        return Ok(());
    }
    state
        .audit
        .record(
            Record::new(Kind::REVIEW, &user.name)
                .session(id)
                .target(summary.target.clone())
                .detail("action", action)
                .detail("outcome", "refused")
                .detail("error", "own session"),
        )
        .await?;
    Err(WebError::Forbidden(
        "this is a session of your own: another reviewer reviews it".into(),
    ))
}

/// Takes every `by_id` out of `v` (recursively): account ids decide who may take a flag back,
/// but are not shown.
fn strip_ids(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("by_id");
            m.values_mut().for_each(strip_ids);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_ids),
        _ => {}
    }
}

/// A review as the API shows it.
fn view(id: &str, r: Option<RecordingReview>) -> Value {
    let r = r.unwrap_or_else(|| RecordingReview {
        recording: id.to_owned(),
        ..RecordingReview::default()
    });
    let mut flags = r.flags.clone();
    flags.sort_by(|a, b| a.t_ms.cmp(&b.t_ms).then(a.at_ms.cmp(&b.at_ms)));
    let mut v = json!({
        "recording": id,
        "reviewed": r.reviewed(),
        "marks": r.marks,
        "flags": flags,
    });
    strip_ids(&mut v);
    v
}

async fn show(
    State(state): State<AppState>,
    Reviewing(user): Reviewing,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    let rec = recordings(&state)?;
    let key = id.clone();
    blocking(move || visible(&rec, &user, &key).map(|_| ())).await?;
    Ok(Json(view(&id, state.store.get_review(&id)?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMark {
    state: ReviewState,
    #[serde(default)]
    comment: String,
}

async fn mark(
    State(state): State<AppState>,
    Reviewing(user): Reviewing,
    Path(id): Path<String>,
    Body(body): Body<NewMark>,
) -> Result<Json<Value>, WebError> {
    let comment = body.comment.trim().to_owned();
    if !note_ok(&comment, MAX_NOTE) {
        return Err(WebError::BadRequest(format!(
            "comment: printable text of at most {MAX_NOTE} characters"
        )));
    }
    if body.state == ReviewState::Reopened && comment.is_empty() {
        return Err(WebError::BadRequest(
            "comment: say why the recording needs another look".into(),
        ));
    }
    let rec = recordings(&state)?;
    let (key, who) = (id.clone(), user.clone());
    let summary = blocking(move || visible(&rec, &who, &key)).await?;
    not_own(&state, &user, &id, &summary, "mark").await?;
    if body.state == ReviewState::Reviewed && summary.state == catalog::ListedState::Recording {
        return Err(WebError::Conflict(
            "the session is still being recorded: mark it reviewed once it has ended".into(),
        ));
    }
    let action = match body.state {
        ReviewState::Reviewed => "reviewed",
        ReviewState::Reopened => "reopened",
    };
    let record = Record::new(Kind::REVIEW, &user.name)
        .session(&id)
        .target(summary.target.clone())
        .detail("action", action)
        .detail("user", summary.user.clone())
        .detail("comment", comment.clone());
    let mark = ReviewMark {
        state: body.state,
        by: user.name.clone(),
        by_id: user.id.clone(),
        at_ms: now_ms(),
        comment,
    };
    let review = state
        .audit
        .before(record, || {
            // The oldest marks make room (the trail keeps them all): the state can always change.
            Ok(state.store.update_review(&id, &mut |r| {
                if r.marks.len() >= MAX_MARKS {
                    r.marks.drain(..=r.marks.len() - MAX_MARKS);
                }
                r.marks.push(mark.clone());
                true
            })?)
        })
        .await?;
    info!(recording = %id, by = %user.name, action, "recording review marked");
    Ok(Json(view(&id, Some(review))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewFlag {
    /// The moment, in milliseconds from the recording's start.
    t_ms: u64,
    note: String,
}

async fn flag(
    State(state): State<AppState>,
    Reviewing(user): Reviewing,
    Path(id): Path<String>,
    Body(body): Body<NewFlag>,
) -> Result<(axum::http::StatusCode, Json<Value>), WebError> {
    let note = body.note.trim().to_owned();
    if note.is_empty() || !note_ok(&note, MAX_NOTE) {
        return Err(WebError::BadRequest(format!(
            "note: say what is at this moment, in 1 to {MAX_NOTE} printable characters"
        )));
    }
    let rec = recordings(&state)?;
    let (key, who) = (id.clone(), user.clone());
    let summary = blocking(move || visible(&rec, &who, &key)).await?;
    not_own(&state, &user, &id, &summary, "flag").await?;
    // A session being recorded is as long as it has run (its manifest lags a little).
    let length = if summary.state == catalog::ListedState::Recording {
        let running = now_ms().saturating_sub(summary.started_at_ms);
        summary.duration_ms.max(u64::try_from(running).unwrap_or(0))
    } else {
        summary.duration_ms
    };
    if body.t_ms > length {
        return Err(WebError::BadRequest(format!(
            "t_ms: the recording is {length} ms long, got {}",
            body.t_ms
        )));
    }
    let flag = ReviewFlag {
        id: format!("flag_{}", portcullis_secrets::random_token(9)),
        t_ms: body.t_ms,
        note,
        by: user.name.clone(),
        by_id: user.id.clone(),
        at_ms: now_ms(),
    };
    let record = Record::new(Kind::REVIEW, &user.name)
        .session(&id)
        .target(summary.target.clone())
        .detail("action", "flagged")
        .detail("user", summary.user.clone())
        .detail("flag", flag.id.clone())
        .detail("t_ms", flag.t_ms)
        .detail("note", flag.note.clone());
    state
        .audit
        .before(record, || {
            let mut full = false;
            state.store.update_review(&id, &mut |r| {
                // Bounded in count and in bytes (every list reads every review).
                full = r.flags.len() >= MAX_FLAGS
                    || serde_json::to_vec(&r.flags).map_or(true, |b| b.len() > MAX_REVIEW_BYTES);
                if !full {
                    r.flags.push(flag.clone());
                }
                !full
            })?;
            if full {
                return Err(WebError::Conflict(format!(
                    "this recording has as many flags as it may hold ({MAX_FLAGS}, or \
                     {MAX_REVIEW_BYTES} bytes of them): take some back first"
                )));
            }
            Ok(())
        })
        .await?;
    info!(recording = %id, by = %user.name, flag = %flag.id, "moment flagged");
    Ok((axum::http::StatusCode::CREATED, Json(json!(flag))))
}

async fn unflag(
    State(state): State<AppState>,
    Reviewing(user): Reviewing,
    Path((id, flag_id)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, WebError> {
    let rec = recordings(&state)?;
    let (key, who) = (id.clone(), user.clone());
    let summary = blocking(move || visible(&rec, &who, &key)).await?;
    not_own(&state, &user, &id, &summary, "unflag").await?;
    let not_found = || WebError::NotFound("no such flag on this recording".into());
    let flag = state
        .store
        .get_review(&id)?
        .and_then(|r| r.flags.into_iter().find(|f| f.id == flag_id))
        .ok_or_else(not_found)?;
    let author = !user.id.is_empty() && user.id == flag.by_id;
    if !author && user.role != Role::Admin {
        state
            .audit
            .record(
                Record::new(Kind::REVIEW, &user.name)
                    .session(&id)
                    .target(summary.target.clone())
                    .detail("action", "unflag")
                    .detail("flag", flag.id.clone())
                    .detail("outcome", "refused")
                    .detail("error", "not the author"),
            )
            .await?;
        return Err(WebError::Forbidden(format!(
            "only {} (who flagged it) or an administrator takes this flag back",
            flag.by
        )));
    }
    let record = Record::new(Kind::REVIEW, &user.name)
        .session(&id)
        .target(summary.target.clone())
        .detail("action", "unflagged")
        .detail("user", summary.user.clone())
        .detail("flag", flag.id.clone())
        .detail("t_ms", flag.t_ms)
        .detail("note", flag.note.clone())
        .detail("flagged_by", flag.by.clone());
    state
        .audit
        .before(record, || {
            let mut found = false;
            state.store.update_review(&id, &mut |r| {
                let before = r.flags.len();
                r.flags.retain(|f| f.id != flag_id);
                found = r.flags.len() != before;
                found
            })?;
            if found {
                Ok(())
            } else {
                Err(not_found())
            }
        })
        .await?;
    info!(recording = %id, by = %user.name, flag = %flag.id, "flag taken back");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The report leaves the gateway as a file: a policy of its own (no script, no fetch, images
/// only from inside the document), also in the document for when it is opened from disk.
pub(crate) const REPORT_CSP: &str =
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn report(
    State(state): State<AppState>,
    Reviewing(user): Reviewing,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let rec = recordings(&state)?;
    let (key, who) = (id.clone(), user.clone());
    let summary = blocking(move || visible(&rec, &who, &key)).await?;
    let review = state.store.get_review(&id)?;
    // A few at once: each reads a whole event track (up to 64 MiB).
    let _slot = REPORTS
        .acquire()
        .await
        .map_err(|_| WebError::Internal("reports are closed".into()))?;
    let rec = recordings(&state)?;
    let generated_by = user.name.clone();
    let key = id.clone();
    let report_summary = summary.clone();
    let html = blocking(move || {
        let d = rec.detail(&key).map_err(storage_error)?;
        let len = d.scan.file_ends.get(EVENTS).copied().unwrap_or(0);
        if len > MAX_EVENTS_BYTES {
            return Err(WebError::Internal(format!("event track of {len} bytes")));
        }
        let track = if len == 0 {
            Vec::new()
        } else {
            rec.storage
                .read(&key, EVENTS, 0, len)
                .map_err(storage_error)?
        };
        // Each flag's picture: the thumbnail of its moment (the last one taken at or before),
        // each read once, for the first MAX_PICTURES flags by time.
        let mut flags: Vec<_> = review.iter().flat_map(|r| &r.flags).collect();
        flags.sort_by_key(|f| (f.t_ms, f.at_ms));
        let mut read: HashMap<u64, Option<Vec<u8>>> = HashMap::new();
        let mut thumbs = HashMap::new();
        for f in flags.into_iter().take(MAX_PICTURES) {
            let seq = d
                .thumbnails
                .iter()
                .rev()
                .find(|t| t.t_ms <= f.t_ms)
                .or(d.thumbnails.first())
                .map(|t| t.seq);
            if let Some(seq) = seq {
                let jpeg = read.entry(seq).or_insert_with(|| {
                    catalog::read_piece(rec.storage.as_ref(), &key, &d, Piece::Thumbnail(seq)).ok()
                });
                if let Some(jpeg) = jpeg {
                    thumbs.insert(f.id.clone(), jpeg.clone());
                }
            }
        }
        Ok(report::render(&ReportInput {
            summary: &report_summary,
            review: review.as_ref(),
            track: &track,
            thumbs: &thumbs,
            generated_by: &generated_by,
            generated_at_ms: now_ms(),
        }))
    })
    .await?;
    // What leaves the gateway is on record first (made, not yet sent).
    state
        .audit
        .record(
            Record::new(Kind::EXPORT, &user.name)
                .session(&id)
                .target(summary.target.clone())
                .detail("what", "report")
                .detail("user", summary.user.clone())
                .detail("bytes", html.len()),
        )
        .await?;
    let filename = format!("portcullis-report-{id}.html");
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CONTENT_SECURITY_POLICY, REPORT_CSP.to_owned()),
        ],
        html,
    )
        .into_response())
}

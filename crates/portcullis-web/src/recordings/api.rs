//! `/api/v1/recordings`: listing, playing (init and media segments for Media Source
//! Extensions), the event track, thumbnails and the export bundle.
//!
//! Admins and reviewers see every recording; a user only their own. A recording the caller may
//! not see is answered 404, like one that does not exist.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_recording::catalog::{self, Detail, Piece, Summary};
use portcullis_recording::manifest::{video_file, EVENTS, MANIFEST, THUMBS};
use portcullis_recording::storage::check_name;
use portcullis_recording::{RecordingStorage, StorageError};
use portcullis_store::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use crate::extract::AuthUser;
use crate::recordings::Recordings;
use crate::{AppState, WebError};

/// Most recordings one list answer carries (newest first).
const MAX_LISTED: usize = 2000;
/// Largest event track served at once.
pub(crate) const MAX_EVENTS_BYTES: u64 = 64 * 1024 * 1024;

/// The routes of this resource.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/recordings", get(list))
        .route("/recordings/{id}", get(detail))
        .route("/recordings/{id}/init/{part}", get(init))
        .route("/recordings/{id}/segments/{seq}", get(segment))
        .route("/recordings/{id}/run/{from}/{to}", get(run))
        .route("/recordings/{id}/thumbnails/{seq}", get(thumbnail))
        .route("/recordings/{id}/events", get(events))
        .route("/recordings/{id}/export", get(export))
}

pub(crate) fn recordings(state: &AppState) -> Result<Recordings, WebError> {
    state
        .recordings
        .clone()
        .ok_or_else(|| WebError::NotFound("recording is turned off on this gateway".into()))
}

pub(crate) fn storage_error(e: StorageError) -> WebError {
    match e {
        StorageError::NotFound(_) | StorageError::InvalidName(_) => {
            WebError::NotFound("no such recording".into())
        }
        other => WebError::Internal(other.to_string()),
    }
}

/// Whether `user` may see recording `s`. A user sees their own: those their account made (by
/// its immutable id), never those of an earlier account of the same name. Recordings made
/// before users had ids name only the user: theirs if the name matches and the account existed
/// when the recording began.
fn may_see(user: &AuthUser, s: &Summary) -> bool {
    match user.role {
        Role::Admin | Role::Reviewer | Role::Soc => true,
        Role::User if !s.user_id.is_empty() => !user.id.is_empty() && user.id == s.user_id,
        Role::User => {
            user.name == s.user && user.created_at.saturating_mul(1000) <= s.started_at_ms
        }
    }
}

/// Runs blocking storage work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WebError::Internal(format!("recording task failed: {e}")))?
}

/// Finds a recording the caller may see.
pub(crate) fn visible(rec: &Recordings, user: &AuthUser, id: &str) -> Result<Summary, WebError> {
    check_name(id).map_err(|_| WebError::NotFound("no such recording".into()))?;
    let s = rec.summary(id).map_err(storage_error)?;
    if !may_see(user, &s) {
        return Err(WebError::NotFound("no such recording".into()));
    }
    Ok(s)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    user: Option<String>,
    target: Option<String>,
    state: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    /// Only recordings whose session's risk score is at least this.
    min_risk: Option<u32>,
    /// `newest` (the default) or `risk` (highest score first, then newest).
    sort: Option<String>,
    /// `reviewed` (marked reviewed) or `unreviewed` (never marked, or reopened); not for plain
    /// users.
    review: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Value>>, WebError> {
    let rec = recordings(&state)?;
    if let Some(s) = &q.state {
        if !["recording", "complete", "incomplete"].contains(&s.as_str()) {
            return Err(WebError::BadRequest(format!(
                "state: expected recording, complete or incomplete, got {s:?}"
            )));
        }
    }
    let by_risk = match q.sort.as_deref() {
        None | Some("newest") => false,
        Some("risk") => true,
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "sort: expected newest or risk, got {other:?}"
            )))
        }
    };
    let want_reviewed = match q.review.as_deref() {
        None => None,
        Some("reviewed") => Some(true),
        Some("unreviewed") => Some(false),
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "review: expected reviewed or unreviewed, got {other:?}"
            )))
        }
    };
    // Where each recording's review stands is not a plain user's to read.
    if user.role == Role::User && want_reviewed.is_some() {
        return Err(WebError::Forbidden(
            "reviews are for administrators, reviewers and the security team".into(),
        ));
    }
    let store = Arc::clone(&state.store);
    // Sessions being recorded: their score so far is the live session's.
    let live: std::collections::HashMap<String, (u32, Vec<String>)> = state
        .broker
        .list()
        .into_iter()
        .filter(|s| s.risk_score > 0 || !s.risk_rules.is_empty())
        .map(|s| (s.id, (s.risk_score, s.risk_rules)))
        .collect();
    blocking(move || {
        // Each recording's review in short (its last mark, how many flags), read off the
        // runtime's threads: the list is polled.
        let reviews: std::collections::HashMap<String, (Option<Value>, usize, bool)> =
            if user.role == Role::User {
                std::collections::HashMap::new()
            } else {
                store
                    .list_reviews()?
                    .into_iter()
                    .map(|r| {
                        let mark = r
                            .marks
                            .last()
                            .map(|m| json!({"state": m.state, "by": m.by, "at_ms": m.at_ms}));
                        let reviewed = r.reviewed().is_some();
                        (r.recording, (mark, r.flags.len(), reviewed))
                    })
                    .collect()
            };
        let mut out = Vec::new();
        for mut s in rec.listed().map_err(storage_error)? {
            if let Some((score, rules)) = live.get(&s.id) {
                if s.risk_rules.is_empty() {
                    (s.risk_score, s.risk_rules) = (*score, rules.clone());
                }
            }
            hide_risk(&user, &mut s);
            let keep = may_see(&user, &s)
                && q.min_risk.is_none_or(|m| s.risk_score >= m)
                && q.user.as_ref().is_none_or(|u| contains_ci(&s.user, u))
                && q.target.as_ref().is_none_or(|t| contains_ci(&s.target, t))
                && q.state.as_ref().is_none_or(|st| s.state.as_str() == st)
                && q.from.is_none_or(|f| s.started_at_ms >= f)
                && q.to.is_none_or(|t| s.started_at_ms <= t)
                && want_reviewed.is_none_or(|want| {
                    reviews.get(&s.id).is_some_and(|(_, _, reviewed)| *reviewed) == want
                });
            if keep {
                out.push(s);
            }
        }
        out.sort_by(|a, b| {
            let risk = if by_risk {
                b.risk_score.cmp(&a.risk_score)
            } else {
                std::cmp::Ordering::Equal
            };
            risk.then(b.started_at_ms.cmp(&a.started_at_ms))
                .then(a.id.cmp(&b.id))
        });
        out.truncate(MAX_LISTED);
        let shown = out
            .into_iter()
            .map(|s| {
                let review = reviews.get(&s.id);
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                if user.role != Role::User {
                    v["review"] = review
                        .and_then(|(mark, _, _)| mark.clone())
                        .unwrap_or(Value::Null);
                    v["flags"] = json!(review.map_or(0, |(_, flags, _)| *flags));
                }
                v
            })
            .collect();
        Ok(Json(shown))
    })
    .await
}

/// What the gateway holds against a user is not theirs to read (it would show them how to go
/// unnoticed): plain users see no risk score or rules (nor `risk` events), and cannot filter by
/// them.
fn hide_risk(user: &AuthUser, s: &mut Summary) {
    if user.role == Role::User {
        (s.risk_score, s.risk_rules) = (0, Vec::new());
    }
}

/// Case-insensitive substring match (a partly typed name finds its recordings).
fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

pub(crate) async fn detail(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    let rec = recordings(&state)?;
    let plain = user.role == Role::User;
    let (summary, mut out) = blocking(move || {
        let summary = visible(&rec, &user, &id)?;
        let mut shown = summary.clone();
        hide_risk(&user, &mut shown);
        let d = rec.detail(&id).map_err(storage_error)?;
        let codec = d.inits.first().map(|p| p.codec.clone());
        Ok((
            summary,
            json!({
                "recording": shown,
                "codec": codec,
                "inits": d.inits,
                "segments": d.segments,
                "thumbnails": d.thumbnails,
            }),
        ))
    })
    .await?;
    // How long it is kept and under which entry (the risk decides it too: not for plain users).
    if !plain {
        out["keep"] = json!(super::retention::keep_of(&state, &summary)?);
    }
    Ok(Json(out))
}

/// Serves bytes of a recording the caller may see; what is listed never changes, so it may be
/// cached.
async fn serve_bytes(
    state: AppState,
    user: AuthUser,
    id: String,
    content_type: &'static str,
    read: impl FnOnce(&dyn RecordingStorage, &Detail) -> Result<Vec<u8>, StorageError> + Send + 'static,
) -> Result<Response, WebError> {
    let rec = recordings(&state)?;
    let bytes = blocking(move || {
        visible(&rec, &user, &id)?;
        let d = rec.detail(&id).map_err(storage_error)?;
        read(rec.storage.as_ref(), &d).map_err(storage_error)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=86400, immutable"),
        ],
        bytes,
    )
        .into_response())
}

async fn piece(
    state: AppState,
    user: AuthUser,
    id: String,
    piece: Piece,
    content_type: &'static str,
) -> Result<Response, WebError> {
    let key = id.clone();
    serve_bytes(state, user, id, content_type, move |storage, d| {
        catalog::read_piece(storage, &key, d, piece)
    })
    .await
}

pub(crate) async fn init(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, part)): Path<(String, u32)>,
) -> Result<Response, WebError> {
    piece(state, user, id, Piece::Init(part), "video/mp4").await
}

pub(crate) async fn segment(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, seq)): Path<(String, u64)>,
) -> Result<Response, WebError> {
    piece(state, user, id, Piece::Segment(seq), "video/mp4").await
}

pub(crate) async fn run(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, from, to)): Path<(String, u64, u64)>,
) -> Result<Response, WebError> {
    let key = id.clone();
    serve_bytes(state, user, id, "video/mp4", move |storage, d| {
        catalog::read_run(storage, &key, d, from, to)
    })
    .await
}

pub(crate) async fn thumbnail(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, seq)): Path<(String, u64)>,
) -> Result<Response, WebError> {
    piece(state, user, id, Piece::Thumbnail(seq), "image/jpeg").await
}

pub(crate) async fn events(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, WebError> {
    let rec = recordings(&state)?;
    blocking(move || {
        visible(&rec, &user, &id)?;
        let d = rec.detail(&id).map_err(storage_error)?;
        // Only what the manifest lists: a line being written is not served half-done.
        let len = d.scan.file_ends.get(EVENTS).copied().unwrap_or(0);
        if len > MAX_EVENTS_BYTES {
            return Err(WebError::Internal(format!("event track of {len} bytes")));
        }
        let bytes = if len == 0 {
            Vec::new()
        } else {
            rec.storage
                .read(&id, EVENTS, 0, len)
                .map_err(storage_error)?
        };
        let hide_risk = user.role == Role::User;
        let events = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .filter(|e| !(hide_risk && e.get("type").and_then(Value::as_str) == Some("risk")))
            // Words read off the screen are for search (which boxes them on the video), not for
            // the player's list: hundreds of them an hour.
            .filter(|e| e.get("type").and_then(Value::as_str) != Some("screen_text"))
            .collect();
        Ok(Json(events))
    })
    .await
}

const EXPORT_README: &str = "\
Portcullis session recording export

video-N.mp4               H.264 video, fragmented MP4; one file per screen resolution.
                          Timestamps are on the recording clock (ms since the recording began),
                          so part 2 starts where part 1 ends.
events.jsonl              the event track: one JSON object per line, t_ms on the same clock.
thumbs.bin                preview thumbnails (JPEG images back to back; located by the manifest).
manifest.jsonl            a SHA-256 hash chain over every byte of the files above, each line
                          signed with the gateway's Ed25519 key. Its last line says how the
                          recording ended; an export taken while the session was still being
                          recorded has no end line and verifies as cut.
quarantine-*              (only if present) bytes the gateway's recovery found damaged or torn
                          and set aside, byte for byte; named in the manifest's end line.
gateway-signing-key.pub   that key's public half (hex), for reference only: whoever altered the
                          files could have replaced it too, so checking against it proves nothing.

Check it offline against the gateway's key obtained from the gateway itself (on the gateway:
portcullis recording public-key > gateway.pub), kept outside this folder:

    portcullis recording verify <this folder> --public-key gateway.pub

Exit status 0: complete and intact. 1: altered, damaged or cut. 2: closed as incomplete (the
gateway stopped while recording). 3: still being recorded. 4: checked only against the key in
this folder (not trusted).
";

pub(crate) async fn export(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let rec = recordings(&state)?;
    let name = user.name.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let check_id = id.clone();
    let check_rec = rec.clone();
    let d = blocking(move || {
        visible(&check_rec, &user, &check_id)?;
        check_rec.detail(&check_id).map_err(storage_error)
    })
    .await?;
    // The evidence leaves the gateway: on record first.
    state
        .audit
        .record(
            portcullis_audit::Record::new(portcullis_audit::Kind::EXPORT, &name)
                .session(&id)
                .target(d.meta.target.clone()),
        )
        .await?;
    let filename = format!("portcullis-recording-{id}.tar");
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter { tx: tx.clone() };
        if let Err(e) = write_export(&rec, &id, &d, writer) {
            warn!(recording = %id, error = %e, "export failed");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes copied per read while exporting.
const EXPORT_CHUNK: u64 = 1024 * 1024;

fn write_export(
    rec: &Recordings,
    id: &str,
    d: &Detail,
    writer: ChannelWriter,
) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(256 * 1024, writer));
    let io_err = |e: StorageError| std::io::Error::other(e.to_string());
    // Exactly the listed bytes of each file: the export verifies as it stands.
    let mut files: Vec<(String, u64)> = vec![(MANIFEST.to_owned(), d.scan.manifest_len)];
    for part in &d.inits {
        let f = video_file(part.part);
        let len = d.scan.file_ends.get(&f).copied().unwrap_or(0);
        files.push((f, len));
    }
    for f in [EVENTS, THUMBS] {
        if let Some(len) = d.scan.file_ends.get(f) {
            files.push((f.to_owned(), *len));
        }
    }
    // What recovery set aside goes along: it is evidence too (named in the end line).
    for (f, len) in rec.storage.files(id).map_err(io_err)? {
        if f.starts_with(portcullis_recording::QUARANTINE_PREFIX) {
            files.push((f, len));
        }
    }
    let mtime = u64::try_from(d.meta.started_at_ms / 1000).unwrap_or(0);
    for (name, len) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        let reader = StorageReader {
            storage: Arc::clone(&rec.storage),
            id: id.to_owned(),
            file: name.clone(),
            offset: 0,
            len,
            buf: Vec::new(),
            pos: 0,
            err: io_err,
        };
        tar.append_data(&mut header, &name, reader)?;
    }
    for (name, text) in [
        (
            "gateway-signing-key.pub",
            format!("{}\n", hex_encode(rec.public_key.as_bytes())),
        ),
        ("README.txt", EXPORT_README.to_owned()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        tar.append_data(&mut header, name, text.as_bytes())?;
    }
    tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a file of a recording in chunks.
struct StorageReader<F: Fn(StorageError) -> std::io::Error> {
    storage: Arc<dyn RecordingStorage>,
    id: String,
    file: String,
    offset: u64,
    len: u64,
    buf: Vec<u8>,
    pos: usize,
    err: F,
}

impl<F: Fn(StorageError) -> std::io::Error> std::io::Read for StorageReader<F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.buf.len() {
            if self.offset >= self.len {
                return Ok(0);
            }
            let n = (self.len - self.offset).min(EXPORT_CHUNK);
            self.buf = self
                .storage
                .read(&self.id, &self.file, self.offset, n)
                .map_err(&self.err)?;
            self.offset += n;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_recording::ListedState;

    fn recording(user: &str, user_id: &str, started_at_ms: i64) -> Summary {
        Summary {
            id: "r1".into(),
            user: user.into(),
            user_id: user_id.into(),
            target: "desk".into(),
            client_addr: String::new(),
            started_at_ms,
            ended_at_ms: None,
            duration_ms: 0,
            state: ListedState::Complete,
            bytes: 0,
            end_reason: None,
            risk_score: 0,
            risk_rules: Vec::new(),
        }
    }

    fn bob(id: &str, created_at: i64, role: Role) -> AuthUser {
        AuthUser {
            id: id.into(),
            name: "bob".into(),
            role,
            created_at,
        }
    }

    #[test]
    fn a_recording_belongs_to_the_account_not_the_name() {
        let new_bob = bob("u_new", 2_000, Role::User);
        assert!(may_see(&new_bob, &recording("bob", "u_new", 5_000_000)));
        assert!(!may_see(&new_bob, &recording("bob", "u_old", 5_000_000)));
        assert!(!may_see(
            &new_bob,
            &recording("alice", "u_alice", 5_000_000)
        ));
        // From before ids: the name, and only if the account existed when it began.
        assert!(!may_see(&new_bob, &recording("bob", "", 1_000_000)));
        assert!(may_see(&new_bob, &recording("bob", "", 3_000_000)));
        // Reviewers, the SOC and admins see all.
        for role in [Role::Reviewer, Role::Soc, Role::Admin] {
            assert!(may_see(
                &bob("u_x", 9_999, role),
                &recording("bob", "u_old", 0)
            ));
        }
    }
}

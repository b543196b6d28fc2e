//! Behaviour rules at work (policy `risk::BEHAVIOUR`): each user's sessions are compared with
//! their own history — the targets they use, the addresses they come from, the hours they start
//! at, how long their sessions last — learned as their sessions end and kept in the store (meta
//! `risk_baseline:<user id>`, bounded), and with their history on the session's target (meta
//! `risk_baseline_target:<length of the user id>:<user id>:<target>`: hours and lengths there).
//! At a session's start a target never used before, an address never seen, or an hour the user
//! rarely starts at (on this target, once they have a history there; else on any) fires the
//! rule of that name; a session that runs far beyond the user's usual length (on this target,
//! once known there) fires `long_session` while it runs, and
//! one that moves more clipboard text or files than the volume rules' `limit_bytes` fires
//! `clipboard_volume` / `file_volume` (these need no history). A
//! rule fires only once the user has [`MIN_HISTORY`] sessions behind them (no baseline, no
//! judgement). Sessions ended by the security team, an administrator, a risk rule or the
//! gateway's shutdown, and frozen ones, are not learned. Concurrent ends of one user's sessions
//! may lose one of the updates (the baseline is a statistic, not a record: the audit trail
//! is); an unreadable baseline is neither used nor written over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_broker::SessionHandle;
use portcullis_core::session::SessionEnd;
use portcullis_store::Store;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::AppState;

/// The store's meta key of a user's baseline.
const META_PREFIX: &str = "risk_baseline:";
/// The store's meta key of a user's baseline on one target (the user's id length-prefixed: no
/// user and target pair can name another's key).
fn target_key(user: &str, target: &str) -> String {
    format!("risk_baseline_target:{}:{user}:{target}", user.len())
}
/// Sessions a user needs behind them before their behaviour is judged.
pub(crate) const MIN_HISTORY: u32 = 5;
/// Sessions on one target after which the user's history there judges hours and lengths on
/// its own (a target used differently — a nightly maintenance window, long batch sessions —
/// is not judged by the rest); below it, a history there can only add to the judgement.
const ESTABLISHED: u32 = 20;
/// The most targets and addresses a baseline keeps (the most used stay).
const MAX_TARGETS: usize = 256;
const MAX_ADDRS: usize = 64;
/// The shortest session `long_session` can call long.
const MIN_LONG_SECS: f64 = 600.0;
/// How often a live session's length and volumes are looked at.
const VOLUME_EVERY: Duration = Duration::from_secs(1);

/// What a user's past sessions looked like.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Baseline {
    sessions: u32,
    targets: BTreeMap<String, u32>,
    addrs: BTreeMap<String, u32>,
    /// Sessions started in each hour of the day (UTC).
    hours: [u32; 24],
    /// Their lengths: how many, mean and sum of squared deviations (Welford), seconds.
    durations: u32,
    mean_secs: f64,
    m2: f64,
}

impl Baseline {
    /// The behaviour rules a new session on `target` from `addr` starting at `hour` (UTC)
    /// fires, with how it differs: the target and the address against the user's whole
    /// history (`self`), the hour against their history on this target (`on_target`) alone
    /// once it holds [`ESTABLISHED`] sessions; before that, against their whole history and,
    /// from [`MIN_HISTORY`] sessions there, their history on the target too: unusual for
    /// either is unusual (a few sessions on one target cannot make an hour usual that the
    /// whole history calls rare).
    pub(crate) fn signals(
        &self,
        on_target: &Baseline,
        target: &str,
        addr: &str,
        hour: usize,
    ) -> Vec<(&'static str, String)> {
        let n = self.sessions;
        if n < MIN_HISTORY {
            return Vec::new();
        }
        let mut out = Vec::new();
        if !self.targets.contains_key(target) {
            out.push((
                "first_time_target",
                format!("first session on {target} after {n} sessions on other targets"),
            ));
        }
        if !self.addrs.contains_key(addr) {
            out.push((
                "new_source_address",
                format!(
                    "from {addr}, not among the {} addresses of {n} earlier sessions",
                    self.addrs.len()
                ),
            ));
        }
        let hour = hour % 24;
        let mut judges = vec![(&self.hours, n, String::new())];
        if on_target.sessions >= ESTABLISHED {
            judges.clear();
        }
        if on_target.sessions >= MIN_HISTORY {
            judges.insert(
                0,
                (
                    &on_target.hours,
                    on_target.sessions,
                    format!(" on {target}"),
                ),
            );
        }
        for (hours, n, on) in judges {
            let near: u32 = [23, 0, 1].iter().map(|d| hours[(hour + d) % 24]).sum();
            // Fewer than one in twenty earlier sessions started within an hour of this one.
            if u64::from(near) * 20 < u64::from(n) {
                out.push((
                    "off_hours",
                    format!(
                        "started at {hour:02}:00 UTC; {near} of {n} earlier sessions{on} started within an hour of that"
                    ),
                ));
                break;
            }
        }
        out
    }

    /// How long a session on a target may run before `long_session` calls it long, and the
    /// usual length it is measured against: what the user's lengths on this target allow once
    /// they hold [`ESTABLISHED`]; before that the shorter of that (from [`MIN_HISTORY`]) and
    /// what all their lengths allow (one long session among a few on a target cannot stretch
    /// the limit past the user's own); with its detail's wording.
    pub(crate) fn long_on(
        &self,
        on_target: &Baseline,
        target: &str,
    ) -> Option<(Duration, u64, String)> {
        let here = on_target
            .long_after()
            .map(|after| (after, on_target.mean_minutes(), format!(" on {target}")));
        let overall = self
            .long_after()
            .map(|after| (after, self.mean_minutes(), String::new()));
        match (here, overall) {
            (Some(h), _) if on_target.durations >= ESTABLISHED => Some(h),
            (Some(h), Some(o)) => Some(if h.0 <= o.0 { h } else { o }),
            (h, o) => h.or(o),
        }
    }

    /// How long a session may run before `long_session` calls it long: three standard
    /// deviations over the user's mean, at least twice the mean and 10 minutes.
    pub(crate) fn long_after(&self) -> Option<Duration> {
        if self.durations < MIN_HISTORY {
            return None;
        }
        let sd = (self.m2 / f64::from(self.durations - 1)).max(0.0).sqrt();
        let secs = (self.mean_secs + 3.0 * sd)
            .max(2.0 * self.mean_secs)
            .max(MIN_LONG_SECS);
        Some(Duration::from_secs_f64(secs.min(1e9)))
    }

    /// The user's mean session length, in minutes (for the rule's detail).
    fn mean_minutes(&self) -> u64 {
        (self.mean_secs / 60.0).round() as u64
    }

    /// Learns a session that ended.
    pub(crate) fn learn(&mut self, target: &str, addr: &str, hour: usize, secs: f64) {
        self.sessions = self.sessions.saturating_add(1);
        bump(&mut self.targets, target, MAX_TARGETS);
        bump(&mut self.addrs, addr, MAX_ADDRS);
        self.hours[hour % 24] = self.hours[hour % 24].saturating_add(1);
        if secs.is_finite() && secs >= 0.0 {
            self.durations = self.durations.saturating_add(1);
            let delta = secs - self.mean_secs;
            self.mean_secs += delta / f64::from(self.durations);
            self.m2 += delta * (secs - self.mean_secs);
        }
    }
}

/// Counts `key`; a full map lets its least used entry go first.
fn bump(map: &mut BTreeMap<String, u32>, key: &str, max: usize) {
    if !map.contains_key(key) && map.len() >= max {
        if let Some(least) = map.iter().min_by_key(|(_, n)| **n).map(|(k, _)| k.clone()) {
            map.remove(&least);
        }
    }
    let n = map.entry(key.to_owned()).or_insert(0);
    *n = n.saturating_add(1);
}

/// The address part of `ip:port` (the port changes with every connection).
fn host_of(client_addr: &str) -> String {
    client_addr
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| client_addr.to_owned())
}

/// The baseline kept under `key` (none yet: empty); `None` when it cannot be read (then it is
/// neither judged by nor written over).
fn load(store: &dyn Store, key: &str) -> Option<Baseline> {
    match store.get_meta(key) {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(error = %e, key, "a user's risk baseline is unreadable; it is left as it is");
                None
            }
        },
        Ok(None) => Some(Baseline::default()),
        Err(e) => {
            warn!(error = %e, key, "cannot read a user's risk baseline");
            None
        }
    }
}

/// Watches `session` for the behaviour rules for its life, then learns it into its user's
/// baseline. Runs on its own task.
pub(crate) fn watch(state: &AppState, session: SessionHandle) {
    let store = Arc::clone(&state.store);
    tokio::spawn(async move {
        // The session's length by the monotonic clock (a wall clock set back or forward would
        // teach the baseline a nonsense length).
        let opened = tokio::time::Instant::now();
        let info = session.info();
        let key = format!(
            "{META_PREFIX}{}",
            if info.user_id.is_empty() {
                &info.user
            } else {
                &info.user_id
            }
        );
        let pair_key = target_key(
            if info.user_id.is_empty() {
                &info.user
            } else {
                &info.user_id
            },
            &info.target,
        );
        let addr = host_of(&info.client_addr);
        let hour = usize::try_from(info.started_at_ms.max(0) / 3_600_000 % 24).unwrap_or(0);
        let (s, k, pk) = (Arc::clone(&store), key.clone(), pair_key.clone());
        let (baseline, on_target) = tokio::task::spawn_blocking(move || {
            (
                load(s.as_ref(), &k).unwrap_or_default(),
                load(s.as_ref(), &pk).unwrap_or_default(),
            )
        })
        .await
        .unwrap_or_default();
        for (rule, detail) in baseline.signals(&on_target, &info.target, &addr, hour) {
            if session.behaviour(rule, &detail).await {
                break;
            }
        }
        // While it runs: its length against the user's usual, what crossed against the volume
        // rules' limits (each fires once).
        let long_at = baseline
            .long_on(&on_target, &info.target)
            .map(|(after, usual, on)| (opened + after, after, usual, on));
        let clipboard_limit = session.volume_limit("clipboard_volume");
        let file_limit = session.volume_limit("file_volume");
        let (mut long_fired, mut clipboard_fired, mut file_fired) = (false, false, false);
        let mut tick = tokio::time::interval(VOLUME_EVERY);
        let watching = clipboard_limit.is_some() || file_limit.is_some() || long_at.is_some();
        let mut ended = false;
        if !watching {
            session.closed().await;
        }
        // Left by `break` once the session ended (and was looked at once more).
        #[allow(clippy::while_immutable_condition)]
        while watching {
            tokio::select! {
                () = session.closed(), if !ended => ended = true,
                _ = tick.tick(), if !ended => {}
                else => {}
            }
            // Once more after the end: a burst just before it counts too (its hit reaches the
            // trail and the SIEM; the recording may be closed by then).
            let now = session.info();
            if !clipboard_fired && clipboard_limit.is_some_and(|l| now.clipboard_bytes > l) {
                clipboard_fired = true;
                let detail = format!("{} bytes of clipboard text crossed", now.clipboard_bytes);
                session.behaviour("clipboard_volume", &detail).await;
            }
            if !file_fired && file_limit.is_some_and(|l| now.file_bytes > l) {
                file_fired = true;
                let detail = format!("{} bytes of files crossed", now.file_bytes);
                session.behaviour("file_volume", &detail).await;
            }
            if let Some((at, after, usual, on)) = long_at.as_ref().filter(|_| !long_fired) {
                if tokio::time::Instant::now() >= *at {
                    long_fired = true;
                    let detail = format!(
                        "running longer than {} min (usual{on}: {usual} min)",
                        after.as_secs() / 60,
                    );
                    session.behaviour("long_session", &detail).await;
                }
            }
            if ended {
                break;
            }
        }
        // Not learned: a session the security team, an administrator or a risk rule ended
        // (its retry must not pass as usual), or one the gateway's shutdown cut short.
        if matches!(
            session.end_reason(),
            Some(SessionEnd::ClosedByAdmin { .. } | SessionEnd::Shutdown)
        ) || session.info().frozen
        {
            return;
        }
        let secs = opened.elapsed().as_secs_f64();
        let learned = tokio::task::spawn_blocking(move || {
            // The user's whole history, then theirs on this target (each left as it is when
            // it cannot be read).
            for key in [key, pair_key] {
                let Some(mut baseline) = load(store.as_ref(), &key) else {
                    continue;
                };
                baseline.learn(&info.target, &addr, hour, secs);
                let bytes = serde_json::to_vec(&baseline).unwrap_or_default();
                store.put_meta(&key, &bytes)?;
            }
            Ok::<(), portcullis_store::StoreError>(())
        })
        .await;
        if let Ok(Err(e)) = learned {
            warn!(error = %e, "cannot keep a user's risk baseline");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(n: u32) -> Baseline {
        let mut b = Baseline::default();
        for i in 0..n {
            b.learn(
                "desk",
                "10.0.0.5",
                9 + (i as usize % 2),
                1800.0 + f64::from(i % 3) * 60.0,
            );
        }
        b
    }

    #[test]
    fn nothing_is_judged_without_a_history() {
        let b = history(MIN_HISTORY - 1);
        assert!(b.signals(&b, "other", "192.0.2.1", 3).is_empty());
        assert!(b.long_after().is_none());
    }

    #[test]
    fn a_new_target_address_and_hour_stand_out() {
        let b = history(20);
        let none = Baseline::default();
        assert!(b.signals(&b, "desk", "10.0.0.5", 9).is_empty());
        assert!(
            b.signals(&b, "desk", "10.0.0.5", 11).is_empty(),
            "within an hour of usual"
        );
        let rules: Vec<_> = b
            .signals(&none, "db1", "192.0.2.1", 3)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(
            rules,
            ["first_time_target", "new_source_address", "off_hours"]
        );
        // Around 30 minutes, a few minutes apart: long is past ten minutes over twice that.
        let after = b.long_after().unwrap().as_secs();
        assert!((3600..4000).contains(&after), "{after}");
    }

    #[test]
    fn hours_and_lengths_are_judged_per_target_once_known_there() {
        // 20 sessions of half an hour on desk in the morning; 6 of 5 minutes on db1 at night.
        let mut user = history(20);
        let mut db1 = Baseline::default();
        for i in 0..6 {
            let secs = 300.0 + f64::from(i) * 10.0;
            user.learn("db1", "10.0.0.5", 22, secs);
            db1.learn("db1", "10.0.0.5", 22, secs);
        }
        // db1 in the morning: usual for the user, not on db1.
        let fired = user.signals(&db1, "db1", "10.0.0.5", 9);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].0, "off_hours");
        assert!(
            fired[0].1.contains("of 6 earlier sessions on db1"),
            "{}",
            fired[0].1
        );
        assert!(user.signals(&db1, "db1", "10.0.0.5", 22).is_empty());
        // Without a history on the target: the user's whole history judges.
        assert!(user
            .signals(&Baseline::default(), "db1", "10.0.0.5", 9)
            .is_empty());
        // A few sessions on a target cannot make an hour usual the whole history calls rare.
        let mut night = Baseline::default();
        for _ in 0..6 {
            night.learn("db1", "10.0.0.5", 3, 300.0);
        }
        let fired = user.signals(&night, "db1", "10.0.0.5", 3);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert!(!fired[0].1.contains(" on db1"), "{}", fired[0].1);
        // Nor one long session stretch the limit past the user's own.
        let mut stretched = db1.clone();
        stretched.learn("db1", "10.0.0.5", 22, 36_000.0);
        let (limit, _, on) = user.long_on(&stretched, "db1").unwrap();
        assert!(
            limit <= user.long_after().unwrap() && on.is_empty(),
            "{limit:?} {on}"
        );
        // An established history on a target (a nightly maintenance window, long batch
        // sessions there) judges it alone.
        let mut batch = Baseline::default();
        for _ in 0..ESTABLISHED {
            batch.learn("batch", "10.0.0.5", 2, 7200.0);
        }
        let fired = user.signals(&batch, "batch", "10.0.0.5", 2);
        assert!(
            fired.iter().all(|(rule, _)| *rule != "off_hours"),
            "{fired:?}"
        );
        let (limit, usual, on) = user.long_on(&batch, "batch").unwrap();
        assert_eq!(
            (limit.as_secs(), usual, on.as_str()),
            (14_400, 120, " on batch")
        );
        // Long on db1 is twice its mean (5.4 min; the floor is 10); overall nearly an hour.
        let (after, usual, on) = user.long_on(&db1, "db1").unwrap();
        assert_eq!((after.as_secs(), usual, on.as_str()), (650, 5, " on db1"));
        let (overall, _, on) = user.long_on(&Baseline::default(), "desk").unwrap();
        assert!(overall.as_secs() >= 3000 && on.is_empty(), "{overall:?}");
        // Keys: no user and target pair names another's.
        assert_ne!(target_key("a", "b:c"), target_key("a:b", "c"));
    }

    #[test]
    fn a_baseline_stays_bounded() {
        let mut b = Baseline::default();
        for i in 0..1000 {
            b.learn(
                &format!("t{i}"),
                &format!("10.0.{}.{}", i / 256, i % 256),
                i,
                f64::NAN,
            );
        }
        assert_eq!(b.targets.len(), MAX_TARGETS);
        assert_eq!(b.addrs.len(), MAX_ADDRS);
        assert_eq!(b.durations, 0);
        assert_eq!(host_of("[::1]:5555"), "::1");
        assert_eq!(host_of("127.0.0.1:40000"), "127.0.0.1");
    }
}

//! Recording set-up for `serve`, and the `portcullis recording` commands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use portcullis_audit::{AuditLog, Filter, Kind, Record};
use portcullis_recorder::{GatewayRecorder, KeystrokeLog, RecorderConfig};
use portcullis_recording::manifest::{fingerprint, EndState};
use portcullis_recording::{
    unix_ms, ClosedOnRecord, LocalDisk, RecordingStorage, RecoveryAct, RecoveryTrail, SigningKey,
    VerifyingKey,
};
use portcullis_secrets::SecretKey;
use tracing::{info, warn};

use crate::config::Config;

pub(crate) const SIGNING_KEY_AAD: &[u8] = b"portcullis recording signing key v1";

/// Loads the recording signing key, sealed at rest with the gateway's secret key, creating it
/// on first use, but never when the audit trail already carries a seal: that trail was sealed
/// with the missing key, and a new one could never verify its seals.
pub(crate) fn load_signing_key(config: &Config, secret: &SecretKey) -> Result<SigningKey> {
    let path = &config.recording.signing_key_file;
    match std::fs::read(path) {
        Ok(sealed) => {
            let seed = secret.open(&sealed, SIGNING_KEY_AAD).with_context(|| {
                format!(
                    "cannot open the recording signing key {} (was the secret key changed?)",
                    path.display()
                )
            })?;
            let seed: [u8; 32] = seed
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is not a signing key", path.display()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let trail = &config.audit.dir;
            if portcullis_audit::has_seal(trail)
                .with_context(|| format!("cannot read the audit trail in {}", trail.display()))?
            {
                bail!(
                    "the recording signing key {} is missing, but the audit trail in {} is sealed: \
                     the key that sealed the trail is missing. Restore it (and the secret key it \
                     is sealed with) from a backup; a new key is not created, since it could \
                     never verify the trail's seals",
                    path.display(),
                    trail.display()
                );
            }
            let key = portcullis_recording::generate_key();
            let sealed = secret.seal(&key.to_bytes(), SIGNING_KEY_AAD);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_private(path, &sealed)?;
            info!(fingerprint = %fingerprint(&key.verifying_key()), "created the recording signing key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The store's metadata key holding the cluster's recording signing key, sealed under the
/// secret key as the key file is.
const SIGNING_KEY_META: &str = "recording_signing_key";

/// Makes this gateway's signing key the one of the gateways sharing `store`: the first gateway
/// leaves its key there (its key file's, or a new one), the others write it to their key file;
/// a gateway whose key file holds another key refuses to start (its recordings and seals would
/// verify with its own key only).
pub(crate) fn share_signing_key(
    config: &Config,
    secret: &SecretKey,
    store: &dyn portcullis_store::Store,
) -> Result<()> {
    let path = &config.recording.signing_key_file;
    let trail = &config.audit.dir;
    let sealed_trail = || {
        portcullis_audit::has_seal(trail)
            .with_context(|| format!("cannot read the audit trail in {}", trail.display()))
    };
    // This gateway's own key, if it has one; else (a trail sealed without its key aside) none
    // is made here: one is offered to the store only in memory, and the store's winner is what
    // goes to the key file (gateways starting together agree on one).
    let own = if path.exists() {
        Some(load_signing_key(config, secret)?)
    } else if sealed_trail()? {
        bail!(
            "the recording signing key {} is missing, but the audit trail in {} is sealed with \
             it: restore the key file from a backup; nothing was started",
            path.display(),
            trail.display()
        );
    } else {
        None
    };
    if store.get_meta(SIGNING_KEY_META)?.is_none() {
        let offer = own
            .clone()
            .unwrap_or_else(portcullis_recording::generate_key);
        store.put_meta_if_absent(
            SIGNING_KEY_META,
            &secret.seal(&offer.to_bytes(), SIGNING_KEY_AAD),
        )?;
    }
    let sealed = store
        .get_meta(SIGNING_KEY_META)?
        .context("the store's recording signing key vanished")?;
    let seed: [u8; 32] = secret
        .open(&sealed, SIGNING_KEY_AAD)
        .ok()
        .and_then(|s| s.try_into().ok())
        .context("the recording signing key in the store cannot be opened with this gateway's secret key")?;
    let shared = SigningKey::from_bytes(&seed);
    if let Some(own) = own {
        if own.verifying_key() != shared.verifying_key() {
            bail!(
                "this gateway's recording signing key ({}, fingerprint {}) is not the one of the \
                 gateways sharing its store (fingerprint {}): every gateway of a cluster signs \
                 with one key. Keep this key's public half (`portcullis recording public-key`) to \
                 verify what it signed, move the key file aside and start again to take the \
                 cluster's (a sealed audit trail here needs its own key: give this gateway a new \
                 data directory instead); nothing was started",
                path.display(),
                fingerprint(&own.verifying_key()),
                fingerprint(&shared.verifying_key())
            );
        }
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(path, &sealed)?;
    info!(fingerprint = %fingerprint(&shared.verifying_key()), "took the cluster's recording signing key");
    Ok(())
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What `serve` needs for recording.
pub(crate) struct Recording {
    pub recorder: Arc<GatewayRecorder>,
    /// The stored recordings (storage, which are live) as the web layer and retention read them.
    pub web: portcullis_web::Recordings,
    /// The uploads to the object store, when recordings go there.
    pub uploads: Option<portcullis_objects::Spooled>,
    /// The recordings folder is this gateway's alone while it runs.
    _folder: portcullis_recording::storage::FolderLock,
}

/// The gateway's audit trail as start-up recovery sees it: the trail's `recording_closed`
/// records (and recovery's own closes, `recording_recovered`) tell which recordings were
/// closed, read once at start; every recovery act is recorded as `recording_recovered` before
/// it is carried out.
struct AuditTrail<'a> {
    log: &'a AuditLog,
    closes: HashMap<String, ClosedOnRecord>,
}

impl<'a> AuditTrail<'a> {
    fn load(log: &'a AuditLog) -> Result<Self> {
        let closes = closes_on_record(None, |f| log.query(f))
            .context("cannot read the recording closes in the audit trail")?;
        Ok(Self { log, closes })
    }
}

/// Every recording close in the trail (or only `session`'s), by recording id: the latest
/// `recording_closed`, or recovery's `closed` (a close carried out) or `found_closed`, per
/// recording; a recovery `delete` forgets it. Reads the trail once, a page at a time.
pub(crate) fn closes_on_record(
    session: Option<&str>,
    query: impl Fn(
        &Filter,
    )
        -> std::result::Result<Vec<portcullis_audit::Entry>, portcullis_audit::AuditError>,
) -> Result<HashMap<String, ClosedOnRecord>> {
    let mut closes = HashMap::new();
    let mut after = None;
    loop {
        let page = query(&Filter {
            session: session.map(str::to_owned),
            kinds: vec![Kind::RECORDING_CLOSED, Kind::RECORDING_RECOVERED],
            after_seq: after,
            ..Filter::new(portcullis_audit::MAX_QUERY_LIMIT)
        })?;
        for e in &page {
            let Some(id) = e.record.session.clone() else {
                continue;
            };
            let detail = |k: &str| e.record.detail.get(k);
            let close = ClosedOnRecord {
                audit_seq: e.seq,
                lines: detail("lines")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
                chain: detail("chain")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
            };
            if e.record.kind == Kind::RECORDING_CLOSED {
                closes.insert(id, close);
                continue;
            }
            // A `close` is the intent, recorded before; `closed` says it was carried out.
            match detail("action").and_then(serde_json::Value::as_str) {
                Some("closed" | "found_closed") => {
                    closes.insert(id, close);
                }
                Some("delete") => {
                    closes.remove(&id);
                }
                _ => {}
            }
        }
        match page.last() {
            Some(last) if page.len() == portcullis_audit::MAX_QUERY_LIMIT => after = Some(last.seq),
            _ => return Ok(closes),
        }
    }
}

impl RecoveryTrail for AuditTrail<'_> {
    fn closed_on_record(&self, id: &str) -> Result<Option<ClosedOnRecord>, String> {
        Ok(self.closes.get(id).cloned())
    }

    fn before(&self, act: &RecoveryAct) -> Result<(), String> {
        let state = recovery_state(act);
        let ranges = |r: &[(String, u64, u64)]| {
            r.iter()
                .map(|(f, a, b)| serde_json::json!({"file": f, "from": a, "to": b}))
                .collect::<Vec<_>>()
        };
        let record = Record::new(Kind::RECORDING_RECOVERED, "system")
            .session(act.id.clone())
            .detail("action", act.action)
            .detail("state", state)
            .detail("reason", act.reason.clone())
            .detail("lines", act.lines)
            .detail("chain", act.chain.clone())
            .detail("set_aside", ranges(&act.set_aside))
            .detail("cut", ranges(&act.cut));
        self.log
            .append(record)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn after(&self, act: &RecoveryAct) -> Result<(), String> {
        let record = Record::new(Kind::RECORDING_RECOVERED, "system")
            .session(act.id.clone())
            .detail("action", "closed")
            .detail("state", recovery_state(act))
            .detail("lines", act.lines)
            .detail("chain", act.chain.clone());
        self.log
            .append(record)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn recovery_state(act: &RecoveryAct) -> Option<&'static str> {
    act.state.map(|s| match s {
        EndState::Complete => "complete",
        EndState::Incomplete => "incomplete",
        EndState::FoundCut => "found_cut",
    })
}

/// Opens the recording storage, closes what a previous run left open (with the audit trail
/// open: see [`AuditTrail`]), and builds the recorder, which records each recording's close in
/// the trail.
pub(crate) fn set_up(
    config: &Config,
    secret: &SecretKey,
    audit: &Arc<AuditLog>,
) -> Result<Option<Recording>> {
    let r = &config.recording;
    if !r.enabled {
        warn!("recording is turned off: sessions will not be recorded");
        return Ok(None);
    }
    let key = Arc::new(load_signing_key(config, secret)?);
    let folder = portcullis_recording::storage::lock_folder(&r.dir)
        .with_context(|| format!("cannot open the recordings folder {}", r.dir.display()))?;
    let disk = LocalDisk::open(&r.dir)
        .with_context(|| format!("cannot open the recordings folder {}", r.dir.display()))?;
    let uploads = match &r.object_store {
        Some(o) => Some(object_store(o, disk.clone())?),
        None => None,
    };
    let storage: Arc<dyn RecordingStorage> = match &uploads {
        Some(spooled) => Arc::new(spooled.clone()),
        None => Arc::new(disk.clone()),
    };
    let trail = AuditTrail::load(audit)?;
    // Recovery works on this gateway's own recordings: the local folder (the spool, with an
    // object store).
    for rec in portcullis_recording::recover(&disk, &key, &trail, unix_ms())
        .context("cannot recover recordings left open")?
    {
        if let Some(e) = &rec.failed {
            // The gateway still starts: new sessions are refused while the storage fails (no
            // unrecorded session), and the next start tries again.
            warn!(recording = %rec.id, error = %e,
                "cannot close a recording left open by the previous run; it was left as it was \
                 (verifiable up to its last segment) and the next start tries again");
            continue;
        }
        if rec.altered_end {
            warn!(recording = %rec.id, problem = ?rec.problem.as_ref().map(|p| &p.what),
                "a closed recording does not end as the gateway left it (its end line is not the \
                 one on record, or lines before it do not check out): left as it is; \
                 `portcullis recording verify` names what is wrong");
            continue;
        }
        if rec.found_closed {
            warn!(recording = %rec.id, problem = ?rec.problem.as_ref().map(|p| &p.what),
                "found a closed recording whose close the audit trail had no record of (the \
                 gateway stopped between the two): recorded now");
            continue;
        }
        let quarantined = rec.quarantined.join(" ");
        if let Some(c) = &rec.found_cut {
            warn!(recording = %rec.id, audit_seq = c.audit_seq, lines_on_record = c.lines,
                quarantined = %quarantined,
                "a recording the gateway had closed was found without its end line: lines were \
                 removed from its end while the gateway was down; closed as found cut (verify \
                 calls it cut)");
            continue;
        }
        match &rec.problem {
            Some(p) => {
                warn!(recording = %rec.id, discarded_bytes = rec.discarded_bytes, problem = %p.what,
                quarantined = %quarantined,
                "closed a recording left open as incomplete; it was damaged or altered while the \
                 gateway was down (the damage is named in its end line, nothing was deleted)")
            }
            None => info!(recording = %rec.id, discarded_bytes = rec.discarded_bytes,
                quarantined = %quarantined,
                "closed a recording left open by the previous run (marked incomplete)"),
        }
    }
    if let Some(spooled) = &uploads {
        // What the previous run left in the spool is uploaded now (closed by recovery above).
        spooled
            .start()
            .context("cannot start the uploads to the object store")?;
    }
    let cfg = RecorderConfig {
        max_fps: r.max_fps,
        keyframe_max_ms: r.keyframe_max_secs * 1000,
        encoder: portcullis_recorder::encoder::EncoderSettings {
            preset: r.preset.clone(),
            crf: r.crf,
            draft_crf: r.draft_crf,
            fps: r.max_fps,
            ..portcullis_recorder::encoder::EncoderSettings::default()
        },
        keystrokes: if r.keystrokes {
            KeystrokeLog::Text
        } else {
            KeystrokeLog::Off
        },
        min_free_bytes: r.min_free_mb * 1024 * 1024,
        refine_after_ms: r.refine_after_ms,
        release_after_ms: r.release_encoder_after_secs * 1000,
        screen_search: config.ocr.enabled && config.ocr.recordings,
        ..RecorderConfig::default()
    };
    let closed_storage = Arc::clone(&storage);
    let trail = Arc::clone(audit);
    let on_closed: portcullis_recorder::gateway::OnClosed = Arc::new(move |id: &str| {
        let (lines, chain) = match portcullis_recording::closed_end(closed_storage.as_ref(), id) {
            Ok(Some(end)) => end,
            Ok(None) => return,
            Err(e) => {
                warn!(recording = %id, error = %e, "cannot read the closed recording's end line");
                return;
            }
        };
        let record = Record::new(Kind::RECORDING_CLOSED, "system")
            .session(id)
            .detail("lines", lines)
            .detail("chain", chain);
        if let Err(e) = trail.append(record) {
            warn!(recording = %id, error = %e,
                "cannot record the recording's close in the audit trail");
        }
    });
    let recorder = Arc::new(
        GatewayRecorder::new(Arc::clone(&storage), Arc::clone(&key), cfg).with_on_closed(on_closed),
    );
    let live = recorder.live();
    let web = portcullis_web::Recordings::new(storage, live, key.verifying_key());
    Ok(Some(Recording {
        recorder,
        web,
        uploads,
        _folder: folder,
    }))
}

/// The object store `o` names, over the spool `disk`. A store that does not answer now is
/// reported, not fatal: recordings wait in the spool until it does (`/readyz` says so).
fn object_store(
    o: &crate::config::ObjectStore,
    disk: LocalDisk,
) -> Result<portcullis_objects::Spooled> {
    let mut config = o.config.clone();
    if let Some(file) = &o.secret_access_key_file {
        let secret =
            crate::data::first_line(file, "recording.object_store.secret_access_key_file")?;
        config.secret_access_key = Some(secret.to_string());
    }
    let remote = portcullis_objects::connect(&config)?;
    match remote.probe() {
        Ok(()) => info!(url = %config.url, "recordings go to the object store"),
        Err(e) => warn!(url = %config.url, error = %e,
            "the object store does not answer: recordings wait in the local spool until it does"),
    }
    Ok(portcullis_objects::Spooled::new(
        disk,
        remote,
        o.upload_every,
    ))
}

fn parse_public_key(text: &str) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = (0..64)
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|_| text.len() == 64)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("a public key is 64 hex digits"))?;
    VerifyingKey::from_bytes(&bytes).context("not an Ed25519 public key")
}

/// Exit statuses of `portcullis recording verify` (README, "Recordings").
pub(crate) mod verify_exit {
    /// Complete and intact, checked against a trusted key.
    pub(crate) const INTACT: i32 = 0;
    /// Altered, damaged or cut (something is missing or does not check out); also any error.
    pub(crate) const ALTERED_OR_CUT: i32 = 1;
    /// Authentic but closed as incomplete (the gateway stopped while recording).
    pub(crate) const INCOMPLETE: i32 = 2;
    /// Authentic so far and still being written by a running gateway.
    pub(crate) const LIVE: i32 = 3;
    /// Consistent, but the only key at hand came with the recording itself: nothing proven.
    pub(crate) const UNTRUSTED_KEY: i32 = 4;
}

/// Where the key a recording is checked against comes from.
enum KeySource {
    /// `--public-key` naming a file outside the recording's folder, or hex digits.
    Given(String),
    /// This gateway's own signing key, from its data directory.
    Gateway(PathBuf),
    /// A key that came with the recording (its folder's `gateway-signing-key.pub`, or its
    /// manifest's header): it proves the files agree with each other, not who made them.
    Shipped(String),
}

pub(crate) fn read_key_arg(k: &str) -> Result<(VerifyingKey, Option<PathBuf>)> {
    match std::fs::read_to_string(k) {
        Ok(text) => {
            let path = Path::new(k)
                .canonicalize()
                .with_context(|| format!("cannot open {k}"))?;
            let key = parse_public_key(text.trim())
                .with_context(|| format!("{} holds no public key", path.display()))?;
            Ok((key, Some(path)))
        }
        Err(_) => Ok((parse_public_key(k.trim())?, None)),
    }
}

/// The key that came with a recording folder: an export's `gateway-signing-key.pub`, else the
/// key its manifest's header names.
fn shipped_key(dir: &Path) -> Result<(VerifyingKey, String)> {
    let pubfile = dir.join("gateway-signing-key.pub");
    if let Ok(text) = std::fs::read_to_string(&pubfile) {
        let key = parse_public_key(text.trim())
            .with_context(|| format!("{} holds no public key", pubfile.display()))?;
        return Ok((
            key,
            format!("{} inside the recording's folder", pubfile.display()),
        ));
    }
    let manifest = dir.join(portcullis_recording::manifest::MANIFEST);
    let first = std::fs::read(&manifest)
        .ok()
        .and_then(|b| b.split(|&c| c == b'\n').next().map(<[u8]>::to_vec))
        .and_then(|l| serde_json::from_slice::<portcullis_recording::manifest::Line>(&l).ok());
    match first.map(|l| l.body.entry) {
        Some(portcullis_recording::manifest::Entry::Header { key, .. }) => Ok((
            parse_public_key(&key)?,
            "the recording's own manifest header".to_owned(),
        )),
        _ => bail!(
            "no key to check {} against: give the gateway's public key with --public-key FILE",
            dir.display()
        ),
    }
}

/// True when recording `id` under `root` is being written right now by this configuration's
/// gateway: `root` is the configured recordings folder, the gateway runs (it holds its audit
/// trail's lock), the recording started after the gateway did (a recording left open by an
/// earlier run is not this run's), and a writer holds the recording's lock. The recording's lock
/// alone proves nothing (anyone who can read the manifest can take it): anything else is not
/// live.
fn written_by_running_gateway(
    config: &Config,
    root: &Path,
    storage: &LocalDisk,
    id: &str,
    started_at_ms: Option<i64>,
) -> bool {
    let ours = config.recording.dir.canonicalize().is_ok_and(|d| d == root);
    let this_run = portcullis_audit::held_since(&config.audit.dir).is_some_and(|since| {
        started_at_ms.is_some_and(|at| i64::try_from(since).is_ok_and(|since| at >= since))
    });
    ours && this_run && storage.is_being_written(id).unwrap_or(false)
}

/// `portcullis recording verify`: prints the verdict and returns the exit status (see
/// [`verify_exit`]).
pub(crate) fn verify_cmd(
    config: &Config,
    secret: impl FnOnce() -> Result<SecretKey>,
    dir: &Path,
    public_key: Option<&str>,
) -> Result<i32> {
    use portcullis_recording::Status;
    // A recording's folder name is its session id: a link named after one session and pointing
    // at another's folder would make the check below compare the other with itself.
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "{} is a symbolic link: verify the folder it points to, by its own name",
            dir.display()
        );
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", dir.display()))?;
    if !dir.join(portcullis_recording::manifest::MANIFEST).is_file() {
        bail!("{} holds no manifest.jsonl: not a recording", dir.display());
    }
    let (root, id) = match (dir.parent(), dir.file_name().and_then(|n| n.to_str())) {
        (Some(root), Some(id)) => (root.to_path_buf(), id.to_owned()),
        _ => bail!("{} is not a recording folder", dir.display()),
    };
    if portcullis_recording::storage::check_name(&id).is_err() {
        bail!("rename the folder {id:?} to lowercase letters, digits and dashes, then retry");
    }
    let mut why_no_gateway_key = None;
    let (key, source) = match public_key {
        Some(k) => match read_key_arg(k)? {
            // A key file inside the recording's own folder came with it.
            (key, Some(path)) if path.starts_with(&dir) => (
                key,
                KeySource::Shipped(format!("{} inside the recording's folder", path.display())),
            ),
            (key, Some(path)) => (key, KeySource::Given(path.display().to_string())),
            (key, None) => (key, KeySource::Given("--public-key".to_owned())),
        },
        None => {
            let path = &config.recording.signing_key_file;
            // Never create a key here: load only one that exists.
            let gateway = if path.is_file() {
                secret().and_then(|s| load_signing_key(config, &s))
            } else {
                Err(anyhow::anyhow!("{} does not exist", path.display()))
            };
            match gateway {
                Ok(k) => (k.verifying_key(), KeySource::Gateway(path.clone())),
                Err(e) => {
                    why_no_gateway_key = Some(format!("{e:#}"));
                    let (key, from) = shipped_key(&dir)?;
                    (key, KeySource::Shipped(from))
                }
            }
        }
    };
    let storage = LocalDisk::at(&root);
    let in_place = config.recording.dir.canonicalize().is_ok_and(|d| d == root);
    // In the gateway's own folder, the trail says whether the gateway closed it: a recording
    // closed on record is never live, whoever holds its lock now. Read before the recording, so
    // that a close landing in between is seen as an end line, not as a cut.
    let on_record = match in_place {
        true => closes_on_record(Some(&id), |f| {
            portcullis_audit::read_only_query(&config.audit.dir, f)
        })
        .map(|mut closes| closes.remove(&id)),
        false => Ok(None),
    };
    let mut v = portcullis_recording::verify(&storage, &id, &key)?;
    if v.ended.is_none() {
        v.live = matches!(on_record, Ok(None))
            && written_by_running_gateway(
                config,
                &root,
                &storage,
                &id,
                v.meta.as_ref().map(|m| m.started_at_ms),
            );
    }
    // In the gateway's own folder, a recording's folder is its session id: another session's
    // recording copied in its place is not this one. (An export may sit in a folder of any name.)
    if let Some(meta) = v.meta.as_ref().filter(|m| in_place && m.session != id) {
        if v.problem.is_none() {
            v.problem = Some(portcullis_recording::scan::Problem {
                seq: 0,
                what: format!(
                    "the folder {id} holds the recording of another session ({}), signed as such",
                    meta.session
                ),
            });
        }
    }
    println!("recording:   {id}");
    if let Some(m) = &v.meta {
        println!(
            "signed as:   session {}, user {}, target {}, started {} (Unix ms)",
            m.session, m.user, m.target, m.started_at_ms
        );
    }
    match &source {
        KeySource::Given(from) => println!(
            "trusted key: fingerprint {} (given: {from})",
            v.key_fingerprint
        ),
        KeySource::Gateway(path) => println!(
            "trusted key: fingerprint {} (this gateway's signing key, {})",
            v.key_fingerprint,
            path.display()
        ),
        KeySource::Shipped(from) => {
            println!(
                "key:         fingerprint {}, NOT TRUSTED: it came with the recording ({from})",
                v.key_fingerprint
            );
            if let Some(why) = &why_no_gateway_key {
                println!("             this gateway's key is not available here ({why})");
            }
        }
    }
    println!(
        "content:     {} manifest lines, {} video segments, {:.1} s",
        v.lines,
        v.segments,
        v.duration_ms as f64 / 1000.0
    );
    match &on_record {
        Ok(Some(c)) => println!(
            "on record:   the audit trail says the gateway closed it{} (record {})",
            match c.lines {
                0 => String::new(),
                n => format!(" with {n} manifest lines"),
            },
            c.audit_seq
        ),
        Ok(None) => {}
        Err(e) => println!(
            "on record:   cannot read the audit trail ({e:#}): a recording without its end line \
             is not called live"
        ),
    }
    if v.unproven_lines > 0 {
        println!(
            "unproven:    {} more lines after damage, signed with the key but not proven to be \
             this recording's (not counted above)",
            v.unproven_lines
        );
    }
    let reason = v.end_reason.as_deref().unwrap_or("");
    match (v.ended, v.live) {
        _ if v.lines == 0 => println!("state:       unknown (no manifest line checks out)"),
        (Some(portcullis_recording::manifest::EndState::Complete), _) => {
            println!("state:       complete ({reason})")
        }
        (Some(portcullis_recording::manifest::EndState::Incomplete), _) => {
            println!("state:       incomplete ({reason})")
        }
        (Some(portcullis_recording::manifest::EndState::FoundCut), _) => {
            println!("state:       found cut ({reason})")
        }
        (None, true) => {
            println!(
                "state:       live (a running gateway is writing it right now: no end line yet)"
            )
        }
        (None, false) => {
            println!(
                "state:       not closed (no signed end line, and no gateway running with this \
                 configuration is writing it)"
            )
        }
    }
    if v.unlisted_bytes > 0 && v.lines > 0 {
        println!(
            "unlisted:    {} bytes after the last listed segment{}",
            v.unlisted_bytes,
            if v.live { " (a write in progress)" } else { "" }
        );
    }
    for d in &v.damage {
        println!("damage:      at line {}: {}", d.seq, d.describe());
    }
    for (name, len) in &v.quarantine {
        println!(
            "set aside:   {name} ({len} bytes kept by recovery, not part of the verified content)"
        );
    }
    let status = v.status();
    let shipped = matches!(source, KeySource::Shipped(_));
    let missing = v.missing().unwrap_or_default();
    let code = match status {
        Status::Altered => {
            let p = v.problem.as_ref().map_or_else(
                || ("?".to_owned(), String::new()),
                |p| (p.seq.to_string(), p.what.clone()),
            );
            println!(
                "verdict:     ALTERED OR DAMAGED at segment {}: {}",
                p.0, p.1
            );
            verify_exit::ALTERED_OR_CUT
        }
        Status::Cut => {
            println!("verdict:     CUT: missing {missing}");
            verify_exit::ALTERED_OR_CUT
        }
        _ if shipped => {
            println!(
                "verdict:     NOT VERIFIED: the files agree with the key that came with them ({}), \
                 which anyone who altered them could have replaced; check again with the \
                 gateway's key (portcullis recording public-key on the gateway, or compare the \
                 fingerprint above with the one it prints)",
                status.as_str()
            );
            verify_exit::UNTRUSTED_KEY
        }
        Status::Intact => {
            println!("verdict:     INTACT: complete; every segment matches its hash and the signed chain");
            verify_exit::INTACT
        }
        Status::Incomplete => {
            println!(
                "verdict:     INCOMPLETE: every listed segment matches its hash and the signed \
                 chain, but missing {missing}"
            );
            verify_exit::INCOMPLETE
        }
        Status::Live => {
            println!(
                "verdict:     LIVE: every segment so far matches its hash and the signed chain; \
                 missing {missing}"
            );
            verify_exit::LIVE
        }
    };
    Ok(code)
}

/// `portcullis recording public-key`.
pub(crate) fn public_key_cmd(config: &Config, secret: &SecretKey) -> Result<()> {
    let key = load_signing_key(config, secret)?.verifying_key();
    let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}");
    eprintln!("fingerprint {}", fingerprint(&key));
    Ok(())
}

/// `portcullis recording list`.
pub(crate) fn list_cmd(config: &Config) -> Result<()> {
    let dir: PathBuf = config.recording.dir.clone();
    // With an object store: what is there and what is still in the local spool (read only: no
    // upload starts here).
    let storage: Box<dyn RecordingStorage> = match &config.recording.object_store {
        Some(o) => Box::new(object_store(o, LocalDisk::at(&dir))?),
        None if !dir.is_dir() => {
            eprintln!("no recordings yet ({} does not exist)", dir.display());
            return Ok(());
        }
        None => Box::new(LocalDisk::at(&dir)),
    };
    let mut all = Vec::new();
    for id in storage
        .list()
        .with_context(|| format!("cannot list {}", dir.display()))?
    {
        match portcullis_recording::summary(storage.as_ref(), &id, false) {
            Ok(s) => all.push(s),
            Err(e) => eprintln!("{id}: unreadable ({e})"),
        }
    }
    all.sort_by_key(|s| s.started_at_ms);
    for s in all {
        println!(
            "{}  {:<12} {:<16} {:>8.1} s  {:<10} {} bytes",
            s.id,
            s.user,
            s.target,
            s.duration_ms as f64 / 1000.0,
            s.state.as_str(),
            s.bytes
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn closed(id: &str, lines: u64) -> Record {
        Record::new(Kind::RECORDING_CLOSED, "system")
            .session(id)
            .detail("lines", lines)
    }

    fn recovered(id: &str, action: &str, lines: Option<u64>) -> Record {
        Record::new(Kind::RECORDING_RECOVERED, "system")
            .session(id)
            .detail("action", action)
            .detail("lines", lines)
    }

    /// Start-up recovery knows a recording's latest close, whoever made it (the gateway or a
    /// previous recovery), across pages of the trail.
    #[test]
    fn closes_on_record_are_the_latest_close_of_each_recording() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let mut records = vec![
            closed("gw", 8),
            closed("again", 8),
            recovered("again", "close", Some(6)),
            recovered("again", "closed", Some(6)),
            // A close that failed (only its intent on record) is not a close.
            closed("failed", 4),
            recovered("failed", "close", Some(3)),
            recovered("found", "found_closed", Some(9)),
            closed("deleted", 3),
            recovered("deleted", "delete", None),
            recovered("old", "close", None),
        ];
        // More than a page of other records, then one more close.
        records.extend((0..portcullis_audit::MAX_QUERY_LIMIT).map(|i| closed(&format!("r{i}"), 4)));
        records.push(closed("last", 5));
        for t in log.submit_all(&records).unwrap() {
            assert!(t.wait().is_ok());
        }
        let closes = closes_on_record(None, |f| log.query(f)).unwrap();
        let lines = |id: &str| closes.get(id).map(|c| c.lines);
        assert_eq!(lines("gw"), Some(8));
        assert_eq!(lines("again"), Some(6));
        assert_eq!(closes["again"].audit_seq, 4);
        assert_eq!(lines("failed"), Some(4));
        assert_eq!(lines("found"), Some(9));
        assert_eq!(lines("deleted"), None);
        assert_eq!(lines("old"), None, "a recovery close is only an intent");
        assert_eq!(lines("last"), Some(5));
        assert_eq!(closes.len(), 5 + portcullis_audit::MAX_QUERY_LIMIT);
        // One recording's only.
        let one = closes_on_record(Some("again"), |f| log.query(f)).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one["again"].lines, 6);
    }
}

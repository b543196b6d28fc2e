//! Recording set-up for `serve`, and the `portcullis recording` commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use portcullis_recorder::{GatewayRecorder, KeystrokeLog, RecorderConfig};
use portcullis_recording::manifest::fingerprint;
use portcullis_recording::{
    unix_ms, LiveRecordings, LocalDisk, RecordingStorage, SigningKey, VerifyingKey,
};
use portcullis_secrets::SecretKey;
use tracing::{info, warn};

use crate::config::Config;

pub(crate) const SIGNING_KEY_AAD: &[u8] = b"portcullis recording signing key v1";
/// How often retention looks for expired recordings.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Loads the recording signing key, sealed at rest with the gateway's secret key, creating it
/// on first use.
pub fn load_signing_key(config: &Config, secret: &SecretKey) -> Result<SigningKey> {
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
pub struct Recording {
    pub recorder: Arc<GatewayRecorder>,
    pub web: portcullis_web::Recordings,
    pub storage: Arc<dyn RecordingStorage>,
    pub live: LiveRecordings,
}

/// Opens the recording storage, closes what a previous run left open, and builds the recorder.
pub fn set_up(config: &Config, secret: &SecretKey) -> Result<Option<Recording>> {
    let r = &config.recording;
    if !r.enabled {
        warn!("recording is turned off: sessions will not be recorded");
        return Ok(None);
    }
    let key = Arc::new(load_signing_key(config, secret)?);
    let storage: Arc<dyn RecordingStorage> = Arc::new(
        LocalDisk::open(&r.dir)
            .with_context(|| format!("cannot open the recordings folder {}", r.dir.display()))?,
    );
    for rec in portcullis_recording::recover(storage.as_ref(), &key, unix_ms())
        .context("cannot recover recordings left open")?
    {
        if let Some(e) = &rec.failed {
            // The gateway still starts: new sessions are refused while the storage fails (no
            // unrecorded session), and the next start tries again.
            warn!(recording = %rec.id, error = %e,
                "cannot close a recording left open by the previous run; it stays open (verifiable \
                 up to its last segment) and the next start tries again");
            continue;
        }
        match &rec.problem {
            Some(p) => {
                warn!(recording = %rec.id, discarded_bytes = rec.discarded_bytes, problem = %p.what,
                "closed a recording left open; it was altered while the gateway was down")
            }
            None => info!(recording = %rec.id, discarded_bytes = rec.discarded_bytes,
                "closed a recording left open by the previous run (marked incomplete)"),
        }
    }
    let cfg = RecorderConfig {
        max_fps: r.max_fps,
        keyframe_max_ms: r.keyframe_max_secs * 1000,
        keyframe_max_frames: r.keyframe_max_frames,
        encoder: portcullis_recorder::encoder::EncoderSettings {
            preset: r.preset.clone(),
            crf: r.crf,
        },
        keystrokes: if r.keystrokes {
            KeystrokeLog::Text
        } else {
            KeystrokeLog::Off
        },
        min_free_bytes: r.min_free_mb * 1024 * 1024,
        ..RecorderConfig::default()
    };
    let recorder = Arc::new(GatewayRecorder::new(storage.clone(), key.clone(), cfg));
    let live = recorder.live();
    let web = portcullis_web::Recordings::new(storage.clone(), live.clone(), key.verifying_key());
    Ok(Some(Recording {
        recorder,
        web,
        storage,
        live,
    }))
}

/// Deletes expired recordings now and then, for as long as the runtime runs.
pub fn spawn_retention(
    storage: Arc<dyn RecordingStorage>,
    live: LiveRecordings,
    retention: Duration,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RETENTION_EVERY);
        loop {
            every.tick().await;
            let storage = storage.clone();
            let live = live.clone();
            let cutoff = unix_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            let done = tokio::task::spawn_blocking(move || {
                portcullis_recording::expire(storage.as_ref(), cutoff, |id| live.contains(id))
            })
            .await;
            match done {
                Ok(Ok(ids)) if !ids.is_empty() => {
                    info!(count = ids.len(), "deleted recordings past their retention")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "retention failed"),
                Err(e) => warn!(error = %e, "retention task failed"),
            }
        }
    });
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

/// `portcullis recording verify`: exit status 0 when intact, 1 when not.
pub fn verify_cmd(
    config: &Config,
    secret: impl FnOnce() -> Result<SecretKey>,
    dir: &Path,
    public_key: Option<&str>,
) -> Result<bool> {
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
    let key = match public_key {
        Some(k) => {
            let text = match std::fs::read_to_string(k) {
                Ok(t) => t,
                Err(_) => k.to_owned(),
            };
            parse_public_key(text.trim())?
        }
        None => load_signing_key(config, &secret()?)
            .context("no --public-key given and the gateway's key is not available here")?
            .verifying_key(),
    };
    let storage = LocalDisk::at(root);
    let v = portcullis_recording::verify(&storage, &id, &key)?;
    println!("recording:   {id}");
    println!("signing key: fingerprint {}", v.key_fingerprint);
    println!(
        "content:     {} manifest lines, {} video segments, {:.1} s",
        v.lines,
        v.segments,
        v.duration_ms as f64 / 1000.0
    );
    println!(
        "state:       {}",
        match v.ended {
            Some(portcullis_recording::manifest::EndState::Complete) => "complete",
            Some(portcullis_recording::manifest::EndState::Incomplete) =>
                "incomplete (the gateway stopped while recording; closed at its next start)",
            None => "not closed (still being written, or the gateway has not restarted since)",
        }
    );
    if v.ended.is_none() && v.unlisted_bytes > 0 {
        println!(
            "tail:        {} bytes after the last listed segment (a write in progress)",
            v.unlisted_bytes
        );
    }
    match &v.problem {
        None => {
            println!("verdict:     INTACT: every segment matches its hash and the signed chain");
            Ok(true)
        }
        Some(p) => {
            println!(
                "verdict:     ALTERED OR DAMAGED at segment {}: {}",
                p.seq, p.what
            );
            Ok(false)
        }
    }
}

/// `portcullis recording public-key`.
pub fn public_key_cmd(config: &Config, secret: &SecretKey) -> Result<()> {
    let key = load_signing_key(config, secret)?.verifying_key();
    let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}");
    eprintln!("fingerprint {}", fingerprint(&key));
    Ok(())
}

/// `portcullis recording list`.
pub fn list_cmd(config: &Config) -> Result<()> {
    let dir: PathBuf = config.recording.dir.clone();
    if !dir.is_dir() {
        eprintln!("no recordings yet ({} does not exist)", dir.display());
        return Ok(());
    }
    let storage = LocalDisk::at(&dir);
    let mut all = Vec::new();
    for id in storage
        .list()
        .with_context(|| format!("cannot list {}", dir.display()))?
    {
        match portcullis_recording::summary(&storage, &id, false) {
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

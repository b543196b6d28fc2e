//! Directory operations shared by the API and the command line: they validate, hash and seal,
//! so neither caller can store a plaintext password or secret by mistake.

use portcullis_broker::{RdpCredentials, RdpOptions, TargetSpec};
use portcullis_secrets::SecretKey;
use std::sync::Arc;

use portcullis_rdp::identity::{IdentityCheck, IdentityKeeper, Pin};
use portcullis_store::{
    validate_name, Role, Store, StoreError, TargetIdentity, TargetKind, TargetRecord, TokenRecord,
    UserRecord,
};
use thiserror::Error;

/// Shortest password accepted for a gateway user.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password or target secret accepted (argon2 cost is linear in it).
pub const MAX_SECRET_LEN: usize = 1024;

/// Why a directory operation failed.
#[derive(Debug, Error)]
pub enum OpsError {
    /// Invalid input, with a message for the user.
    #[error("{0}")]
    Invalid(String),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing or sealing failed.
    #[error("{0}")]
    Crypto(String),
    /// The audit trail cannot take the record of a change, so the change was not made.
    #[error("the audit trail cannot be written ({0}), so nothing was changed")]
    Unaudited(String),
}

/// Current time, Unix seconds.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn check_password(password: &str) -> Result<(), OpsError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(OpsError::Invalid(format!(
            "password too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_SECRET_LEN {
        return Err(OpsError::Invalid(format!(
            "password longer than {MAX_SECRET_LEN} bytes"
        )));
    }
    Ok(())
}

/// A new user's immutable id.
pub fn new_user_id() -> String {
    format!("u_{}", portcullis_secrets::random_token(12))
}

/// Gives every user stored before ids existed an id, and every API token its user's id. A
/// token whose user is gone, or that is older than the account now bearing its user's name (an
/// earlier account's), is deleted, told to `before_delete` first with why (the caller records
/// it in the audit trail; an error keeps the token and stops the migration). Idempotent; run at
/// every start before anything is served.
pub fn migrate_user_ids(
    store: &dyn Store,
    before_delete: &mut dyn FnMut(&TokenRecord, &str) -> Result<(), String>,
) -> Result<usize, OpsError> {
    let mut changed = 0;
    for user in store.list_users()? {
        if user.id.is_empty() {
            store.update_user(&user.name, &mut |u| {
                if u.id.is_empty() {
                    u.id = new_user_id();
                    true
                } else {
                    false
                }
            })?;
            changed += 1;
        }
    }
    for mut token in store.list_tokens()? {
        if !token.user_id.is_empty() {
            continue;
        }
        let why = match store.get_user(&token.user)? {
            // A token older than the account of its name was an earlier account's (deleting a
            // user did not take their tokens then): the new account inherits nothing.
            Some(user) if token.created_at >= user.created_at => {
                token.user_id = user.id;
                store.put_token(&token)?;
                changed += 1;
                continue;
            }
            Some(_) => "the token is older than the account now bearing its user's name: it was an earlier account's",
            None => "the token's user no longer exists",
        };
        before_delete(&token, why).map_err(OpsError::Unaudited)?;
        store.delete_token(&token.id)?;
        changed += 1;
    }
    Ok(changed)
}

/// Creates a user with an argon2id hash of `password`.
pub fn create_user(
    store: &dyn Store,
    name: &str,
    password: &str,
    role: Role,
) -> Result<UserRecord, OpsError> {
    let record = prepare_user(name, password, role)?;
    store.create_user(&record)?;
    Ok(record)
}

/// The user [`create_user`] would store (checked, password hashed), without storing it: to
/// record the change before making it.
pub fn prepare_user(name: &str, password: &str, role: Role) -> Result<UserRecord, OpsError> {
    validate_name("user", name)?;
    check_password(password)?;
    let hash =
        portcullis_secrets::hash_password(password).map_err(|e| OpsError::Crypto(e.to_string()))?;
    let record = UserRecord {
        id: new_user_id(),
        name: name.to_owned(),
        password_hash: hash,
        role,
        created_at: now_unix(),
        locked: false,
        mfa: None,
        sso: None,
        groups: Vec::new(),
        passkeys: Vec::new(),
    };
    Ok(record)
}

/// Additional data binding a sealed target secret to its target.
fn target_aad(name: &str) -> Vec<u8> {
    format!("portcullis target secret v1:{name}").into_bytes()
}

/// Checks a `host:port` address.
pub fn check_address(address: &str) -> Result<(), OpsError> {
    let bad = || OpsError::Invalid(format!("invalid address {address:?}: use host:port"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':' | '_'));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// What an administrator gives to create a target.
#[derive(Debug, Clone, Copy)]
pub struct NewTarget<'a> {
    /// Target name.
    pub name: &'a str,
    /// Protocol.
    pub kind: TargetKind,
    /// `host:port`.
    pub address: &'a str,
    /// RDP: the account the gateway logs in with (`user` or `DOMAIN\\user`); VNC: empty.
    pub account: &'a str,
    /// The password (sealed before it is stored).
    pub password: &'a str,
    /// Free text.
    pub description: &'a str,
    /// Labels the policy refers to (`label:prod`); see [`check_labels`].
    pub labels: &'a [String],
}

/// Most labels a target may have.
pub const MAX_LABELS: usize = 16;

/// Checks a target's labels: at most [`MAX_LABELS`], each named like a target (1-64 letters,
/// digits, `.`, `_` or `-`; see [`validate_name`]), no label twice.
pub fn check_labels(labels: &[String]) -> Result<(), OpsError> {
    if labels.len() > MAX_LABELS {
        return Err(OpsError::Invalid(format!(
            "too many labels: at most {MAX_LABELS}, got {}",
            labels.len()
        )));
    }
    for (i, label) in labels.iter().enumerate() {
        validate_name("label", label)?;
        if labels[..i].contains(label) {
            return Err(OpsError::Invalid(format!("label {label:?} given twice")));
        }
    }
    Ok(())
}

/// Longest target account name.
const MAX_ACCOUNT_LEN: usize = 256;

/// Creates a target whose password is sealed under `key`.
pub fn create_target(
    store: &dyn Store,
    key: &SecretKey,
    new: NewTarget<'_>,
) -> Result<TargetRecord, OpsError> {
    let record = prepare_target(key, new)?;
    store.create_target(&record)?;
    Ok(record)
}

/// The target [`create_target`] would store (checked, secret sealed), without storing it: to
/// record the change before making it.
pub fn prepare_target(key: &SecretKey, new: NewTarget<'_>) -> Result<TargetRecord, OpsError> {
    validate_name("target", new.name)?;
    check_address(new.address)?;
    check_labels(new.labels)?;
    if new.password.len() > MAX_SECRET_LEN {
        return Err(OpsError::Invalid(format!(
            "password longer than {MAX_SECRET_LEN} bytes"
        )));
    }
    if new.description.len() > 1024 {
        return Err(OpsError::Invalid(
            "description longer than 1024 bytes".into(),
        ));
    }
    match new.kind {
        TargetKind::Vnc if !new.account.is_empty() => {
            return Err(OpsError::Invalid(
                "VNC targets have no account: leave it empty".into(),
            ))
        }
        TargetKind::Rdp => check_account(new.account)?,
        TargetKind::Vnc => {}
    }
    let record = TargetRecord {
        name: new.name.to_owned(),
        kind: new.kind,
        address: new.address.to_owned(),
        account: new.account.to_owned(),
        sealed_secret: key.seal(new.password.as_bytes(), &target_aad(new.name)),
        description: new.description.to_owned(),
        created_at: now_unix(),
        labels: new.labels.to_vec(),
        identity: Default::default(),
    };
    Ok(record)
}

/// An RDP account: `user`, `DOMAIN\\user` or `user@domain`, printable, no control characters.
fn check_account(account: &str) -> Result<(), OpsError> {
    let ok = !account.is_empty()
        && account.len() <= MAX_ACCOUNT_LEN
        && !account.chars().any(char::is_control)
        && account.matches('\\').count() <= 1
        && !account.starts_with('\\')
        && !account.ends_with('\\');
    if ok {
        Ok(())
    } else {
        Err(OpsError::Invalid(format!(
            "invalid RDP account {:?}: use user or DOMAIN\\user (at most {MAX_ACCOUNT_LEN} bytes)",
            account.chars().take(80).collect::<String>()
        )))
    }
}

/// Splits `DOMAIN\\user` into its domain and user name.
pub fn split_account(account: &str) -> (Option<String>, String) {
    match account.split_once('\\') {
        Some((domain, user)) => (Some(domain.to_owned()), user.to_owned()),
        None => (None, account.to_owned()),
    }
}

/// Reads a certificate fingerprint as admins paste it: 64 hex digits, any case, optionally in
/// pairs separated by `:` (as `openssl x509 -fingerprint -sha256` prints it). Returns lowercase
/// hex without separators.
pub fn parse_sha256(text: &str) -> Result<String, OpsError> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    let hex = hex
        .strip_prefix("sha256:")
        .or_else(|| hex.strip_prefix("SHA256:"))
        .unwrap_or(&hex);
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(OpsError::Invalid(format!(
            "invalid certificate fingerprint {:?}: expected a SHA-256 as 64 hex digits",
            text.chars().take(100).collect::<String>()
        )))
    }
}

/// An administrator's change of an RDP target's identity settings: `tls_sha256`
/// (`Some(None)`: forget the pin, the next connection pins again), `require_nla`, `tls_ca_file`
/// (verify against a CA bundle and the address's host name instead of the pin; `Some(None)`:
/// back to the pin). Returns the new identity; the caller audits, then stores it.
pub fn set_identity(
    target: &TargetRecord,
    tls_sha256: Option<Option<&str>>,
    require_nla: Option<bool>,
    tls_ca_file: Option<Option<&str>>,
) -> Result<TargetIdentity, OpsError> {
    if target.kind != TargetKind::Rdp {
        return Err(OpsError::Invalid(format!(
            "target {} is a {} target: only RDP targets have a pinned identity (RFB has no \
             server authentication)",
            target.name, target.kind
        )));
    }
    let mut identity = target.identity.clone();
    if let Some(pin) = tls_sha256 {
        identity.tls_sha256 = pin.map(parse_sha256).transpose()?;
        identity.refused_sha256 = None;
    }
    if let Some(require) = require_nla {
        identity.require_nla = require;
    }
    if let Some(ca) = tls_ca_file {
        identity.tls_ca_file = ca.map(check_ca_file).transpose()?;
    }
    Ok(identity)
}

/// A CA bundle for verifying a target: an absolute path to a readable PEM file with at least
/// one certificate.
fn check_ca_file(path: &str) -> Result<String, OpsError> {
    let p = std::path::Path::new(path);
    if !p.is_absolute() {
        return Err(OpsError::Invalid(format!(
            "the CA bundle must be an absolute path, not {path:?}"
        )));
    }
    let text = std::fs::read_to_string(p)
        .map_err(|e| OpsError::Invalid(format!("cannot read the CA bundle {path:?}: {e}")))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(OpsError::Invalid(format!(
            "the CA bundle {path:?} holds no PEM certificate"
        )));
    }
    Ok(path.to_owned())
}

/// An administrator accepts what a target presented after a refusal: a new certificate
/// (`sha256`, named explicitly so the admin accepts exactly what they checked) and/or TLS
/// without NLA (`allow_without_nla`: forgets that the target did NLA). Returns the new
/// identity; the caller audits, then stores it.
pub fn accept_identity(
    target: &TargetRecord,
    sha256: Option<&str>,
    allow_without_nla: bool,
) -> Result<TargetIdentity, OpsError> {
    if target.kind != TargetKind::Rdp {
        return Err(OpsError::Invalid(format!(
            "target {} is not an RDP target",
            target.name
        )));
    }
    if sha256.is_none() && !allow_without_nla {
        return Err(OpsError::Invalid(
            "name the certificate to accept (sha256) or allow the target without NLA".into(),
        ));
    }
    let mut identity = target.identity.clone();
    if let Some(text) = sha256 {
        identity.tls_sha256 = Some(parse_sha256(text)?);
        identity.refused_sha256 = None;
    }
    if allow_without_nla {
        if identity.require_nla {
            return Err(OpsError::Invalid(format!(
                "target {} requires NLA (require_nla): turn that off first",
                target.name
            )));
        }
        identity.nla_seen = false;
        identity.refused_downgrade = false;
    }
    Ok(identity)
}

/// How to reach `target`, with its secret opened. `size` is the viewer's wish for the desktop
/// size (RDP only; VNC servers have their own). An RDP target's pinned identity goes with it,
/// and `keeper` hears what the connection learns or why it refused the target.
pub fn target_spec(
    key: &SecretKey,
    target: &TargetRecord,
    size: Option<(u16, u16)>,
    remotefx: bool,
    keeper: Option<Arc<dyn IdentityKeeper>>,
) -> Result<TargetSpec, OpsError> {
    let password = open_target_secret(key, target)?;
    Ok(match target.kind {
        TargetKind::Vnc => TargetSpec::Vnc {
            address: target.address.clone(),
            password,
        },
        TargetKind::Rdp => {
            let (domain, username) = split_account(&target.account);
            let defaults = RdpOptions::default();
            let (width, height) = size.unwrap_or((defaults.width, defaults.height));
            TargetSpec::Rdp {
                address: target.address.clone(),
                credentials: RdpCredentials {
                    username,
                    domain,
                    password,
                },
                // Drive redirection is the broker's to offer, from the session's grant.
                options: RdpOptions {
                    width,
                    height,
                    remotefx,
                    drive: None,
                },
                identity: IdentityCheck {
                    pin: Pin {
                        sha256: target.identity.tls_sha256.clone(),
                        nla_seen: target.identity.nla_seen,
                        require_nla: target.identity.require_nla,
                        ca_file: target.identity.tls_ca_file.as_ref().map(Into::into),
                    },
                    keeper,
                },
            }
        }
    })
}

/// Seals a target's secret anew under `to`, opening it with `to` (already done: a rotation that
/// was interrupted and is resumed) or else with `from`. Returns false when it was already sealed
/// under `to`.
pub fn reseal_target(
    from: &SecretKey,
    to: &SecretKey,
    target: &mut TargetRecord,
) -> Result<bool, OpsError> {
    let aad = target_aad(&target.name);
    if to.open(&target.sealed_secret, &aad).is_ok() {
        return Ok(false);
    }
    let plain = zeroize::Zeroizing::new(open_target_secret(from, target)?);
    target.sealed_secret = to.seal(plain.as_bytes(), &aad);
    Ok(true)
}

/// Opens a target's sealed secret.
pub fn open_target_secret(key: &SecretKey, target: &TargetRecord) -> Result<String, OpsError> {
    let bytes = key
        .open(&target.sealed_secret, &target_aad(&target.name))
        .map_err(|e| {
            OpsError::Crypto(format!(
                "cannot open the secret of target {}: {e}",
                target.name
            ))
        })?;
    String::from_utf8(bytes).map_err(|_| OpsError::Crypto("target secret is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_store::MemoryStore;

    fn vnc<'a>(name: &'a str, address: &'a str, password: &'a str) -> NewTarget<'a> {
        NewTarget {
            name,
            kind: TargetKind::Vnc,
            address,
            account: "",
            password,
            description: "",
            labels: &[],
        }
    }

    #[test]
    fn a_token_of_an_earlier_account_of_the_same_name_is_not_handed_to_the_new_one() {
        let store = MemoryStore::new();
        // The bob of today was created at 2000; a token of the deleted bob of before, at 1000.
        let bob = prepare_user("bob", "bob-password-123", Role::User).unwrap();
        store
            .put_user(&UserRecord {
                id: String::new(),
                created_at: 2000,
                ..bob
            })
            .unwrap();
        for (id, created_at) in [("old", 1000), ("new", 2000)] {
            store
                .put_token(&portcullis_store::TokenRecord {
                    id: id.into(),
                    user: "bob".into(),
                    user_id: String::new(),
                    name: id.into(),
                    scopes: vec![],
                    secret_hash: vec![],
                    created_at,
                    expires_at: i64::MAX,
                    created_by: "admin".into(),
                })
                .unwrap();
        }
        migrate_user_ids(&store, &mut |_, _| Ok(())).unwrap();
        let bob = store.get_user("bob").unwrap().unwrap();
        assert_eq!(store.get_token("old").unwrap(), None);
        assert_eq!(store.get_token("new").unwrap().unwrap().user_id, bob.id);
    }

    #[test]
    fn labels_are_checked_and_stored() {
        let store = MemoryStore::new();
        let key = SecretKey::generate();
        let labels = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let with = |labels: &[String]| {
            create_target(
                &store,
                &key,
                NewTarget {
                    labels,
                    ..vnc("t", "h:1", "")
                },
            )
        };
        for bad in [
            labels(&["prod", "prod"]),
            labels(&[""]),
            labels(&["a b"]),
            labels(&["label:prod"]),
            labels(&[".x"]),
            vec!["x".repeat(65)],
            (0..17).map(|i| format!("l{i}")).collect(),
        ] {
            let err = with(&bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    OpsError::Invalid(_) | OpsError::Store(StoreError::InvalidName(_))
                ),
                "{bad:?}: {err:?}"
            );
        }
        assert_eq!(
            with(&labels(&["prod", "prod"])).unwrap_err().to_string(),
            r#"label "prod" given twice"#
        );
        assert!(with(&labels(&["a b"]))
            .unwrap_err()
            .to_string()
            .starts_with(r#"invalid label name "a b""#));
        assert!(with(&(0..17).map(|i| format!("l{i}")).collect::<Vec<_>>())
            .unwrap_err()
            .to_string()
            .starts_with("too many labels: at most 16"));
        assert!(store.list_targets().unwrap().is_empty());
        let max: Vec<String> = (0..16).map(|i| format!("{i:0>64}")).collect();
        let t = with(&max).unwrap();
        assert_eq!(t.labels, max);
        assert_eq!(store.get_target("t").unwrap().unwrap().labels, max);
    }

    #[test]
    fn rdp_accounts_are_checked_and_split() {
        let store = MemoryStore::default();
        let key = SecretKey::generate();
        let rdp = |account| NewTarget {
            kind: TargetKind::Rdp,
            account,
            ..vnc("w1", "10.0.0.1:3389", "pw")
        };
        assert!(create_target(&store, &key, rdp("")).is_err());
        assert!(create_target(&store, &key, rdp("a\\b\\c")).is_err());
        assert!(create_target(&store, &key, rdp("\\admin")).is_err());
        assert!(create_target(
            &store,
            &key,
            NewTarget {
                account: "x",
                ..vnc("v", "h:1", "")
            }
        )
        .is_err());
        let t = create_target(&store, &key, rdp("CORP\\admin")).unwrap();
        assert_eq!(
            split_account(&t.account),
            (Some("CORP".into()), "admin".into())
        );
        assert_eq!(split_account("admin"), (None, "admin".into()));
    }

    #[test]
    fn target_secret_round_trip_and_binding() {
        let store = MemoryStore::new();
        let key = SecretKey::generate();
        let t = create_target(&store, &key, vnc("db1", "127.0.0.1:5901", "s3cret")).unwrap();
        assert_eq!(open_target_secret(&key, &t).unwrap(), "s3cret");
        let mut swapped = t.clone();
        swapped.name = "db2".into();
        assert!(open_target_secret(&key, &swapped).is_err());
        assert!(!String::from_utf8_lossy(&t.sealed_secret).contains("s3cret"));
    }

    #[test]
    fn validates_inputs() {
        let store = MemoryStore::new();
        let key = SecretKey::generate();
        assert!(create_user(&store, "alice", "short", Role::User).is_err());
        assert!(create_user(&store, "al ice", "long enough password", Role::User).is_err());
        assert!(create_user(&store, "alice", "long enough password", Role::User).is_ok());
        for bad in ["nohost", ":5900", "host:0", "host:99999", "ho st:1"] {
            assert!(
                create_target(&store, &key, vnc("t", bad, "")).is_err(),
                "{bad}"
            );
        }
        assert!(check_address("[::1]:5900").is_ok());
        assert!(check_address("vnc.example.com:5901").is_ok());
    }

    fn rdp(store: &MemoryStore, key: &SecretKey) -> TargetRecord {
        create_target(
            store,
            key,
            NewTarget {
                kind: TargetKind::Rdp,
                account: "admin",
                ..vnc("win", "10.0.0.9:3389", "pw")
            },
        )
        .unwrap()
    }

    #[test]
    fn fingerprints_are_read_as_admins_paste_them() {
        let hex = "3F:7A".to_owned() + &":00".repeat(30);
        assert_eq!(
            parse_sha256(&hex).unwrap(),
            "3f7a".to_owned() + &"00".repeat(30)
        );
        assert_eq!(parse_sha256(&"ab".repeat(32)).unwrap(), "ab".repeat(32));
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(parse_sha256(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identity_is_set_ahead_of_time_and_forgotten() {
        let store = MemoryStore::new();
        let key = SecretKey::generate();
        let t = rdp(&store, &key);
        assert!(t.identity.is_unknown());
        let id = set_identity(&t, Some(Some(&"AB".repeat(32))), Some(true), None).unwrap();
        assert_eq!(id.tls_sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert!(id.require_nla);
        let t = TargetRecord { identity: id, ..t };
        let id = set_identity(&t, Some(None), None, None).unwrap();
        assert_eq!(id.tls_sha256, None);
        assert!(id.require_nla, "unchanged when not named");
        assert!(set_identity(&t, Some(Some("nope")), None, None).is_err());
        let v = create_target(&store, &key, vnc("v", "h:5900", "p")).unwrap();
        let err = set_identity(&v, None, Some(true), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("RFB has no server authentication"), "{err}");
        for bad in ["relative.pem", "/nonexistent/ca.pem", "/etc/hostname"] {
            assert!(
                set_identity(&t, None, None, Some(Some(bad))).is_err(),
                "{bad}"
            );
        }
        let dir = std::env::temp_dir().join(format!("pc-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let id = set_identity(&t, None, None, Some(ca.to_str())).unwrap();
        assert_eq!(id.tls_ca_file.as_deref(), ca.to_str());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accepting_names_what_is_accepted() {
        let store = MemoryStore::new();
        let key = SecretKey::generate();
        let mut t = rdp(&store, &key);
        t.identity = TargetIdentity {
            tls_sha256: Some("aa".repeat(32)),
            nla_seen: true,
            refused_sha256: Some("bb".repeat(32)),
            refused_downgrade: true,
            ..TargetIdentity::default()
        };
        assert!(accept_identity(&t, None, false).is_err());
        let id = accept_identity(&t, Some(&"bb".repeat(32)), false).unwrap();
        assert_eq!(id.tls_sha256, Some("bb".repeat(32)));
        assert_eq!(id.refused_sha256, None);
        assert!(id.nla_seen, "NLA is remembered unless allowed away");
        let id = accept_identity(&t, None, true).unwrap();
        assert!(!id.nla_seen && !id.refused_downgrade);
        assert_eq!(id.tls_sha256, Some("aa".repeat(32)));
        t.identity.require_nla = true;
        let err = accept_identity(&t, None, true).unwrap_err().to_string();
        assert!(err.contains("requires NLA"), "{err}");
    }
}

//! Single sign-on through OpenID Connect providers: their settings (kept in the store, each
//! client secret sealed under the gateway's key like a target's password), the mapping from a
//! provider's groups to a gateway role, and which roles must sign in that way.
//!
//! The sign-in itself (authorization code flow with PKCE, ID token checks) is [`client`]'s; the
//! routes are [`api`]'s. A user signing in through a provider for the first time gets an account
//! of the provider's user name, linked to the provider's `sub` for good: a local account of the
//! same name is never taken over, and the linked account has no password. Each sign-in brings
//! the account's role and groups up to date; a sign-in whose groups map to no role is refused,
//! and ends that account's logins and sessions (its access was revoked at the provider).

pub(crate) mod api;
pub(crate) mod client;

use portcullis_secrets::{Secret, SecretKey};
use portcullis_store::{validate_name, Role, Store};
use serde::{Deserialize, Serialize};

use crate::WebError;

/// The store's space for sign-ins under way.
pub(crate) const PENDING_SPACE: &str = "sso_pending";

/// How a login signed in through an identity provider (kept with the login).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoginSso {
    /// The provider's id.
    pub(crate) provider: String,
    /// The ID token of the sign-in (the hint of the provider's sign-out), when not too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<String>,
}

/// The store's meta key of the settings.
pub(crate) const SETTINGS_META: &str = "sso_settings";
/// Most providers one gateway offers.
const MAX_PROVIDERS: usize = 16;
/// Most group → role mappings of one provider.
const MAX_MAPPINGS: usize = 64;
/// Longest URL, claim name, group name or client id accepted in the settings.
const MAX_TEXT: usize = 512;

/// Every provider's settings and the sign-in rules, as the store keeps them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SsoSettings {
    /// The address browsers reach the gateway at (`https://psm.example.com`): providers send the
    /// browser back to `<public_url>/api/v1/auth/sso/callback` (register that address with them)
    /// and, after a sign-out, to `<public_url>/`.
    #[serde(default)]
    pub(crate) public_url: Option<String>,
    /// Users of these roles sign in only through a provider: their password is refused (in the
    /// browser and from native RDP clients). Keep a local administrator out of it (break glass).
    #[serde(default)]
    pub(crate) required_for_roles: Vec<Role>,
    /// Users of these roles must use a passkey as their second factor (phishing-resistant): a
    /// code from an app does not do, and without a passkey they may only register one.
    #[serde(default)]
    pub(crate) passkey_required_for_roles: Vec<Role>,
    #[serde(default)]
    pub(crate) providers: Vec<StoredProvider>,
}

/// A provider as stored: its settings and its client secret, sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredProvider {
    #[serde(flatten)]
    pub(crate) settings: ProviderSettings,
    /// The client secret, sealed under the gateway's key (bound to the provider's id).
    pub(crate) sealed_client_secret: Vec<u8>,
}

/// One OpenID Connect provider, as an administrator sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProviderSettings {
    /// A short name: in URLs and in the account link (`corp`).
    pub(crate) id: String,
    /// What the sign-in page shows ("Sign in with Corp SSO").
    pub(crate) display_name: String,
    /// The provider's issuer identifier; its discovery document is under it. https, or http on
    /// a loopback address only (a provider on the same machine).
    pub(crate) issuer: String,
    /// This gateway's client id at the provider.
    pub(crate) client_id: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub(crate) scopes: Vec<String>,
    /// The ID token claim giving the user name here.
    #[serde(default = "default_username_claim")]
    pub(crate) username_claim: String,
    /// The ID token claim listing the user's groups (an array of strings).
    #[serde(default = "default_groups_claim")]
    pub(crate) groups_claim: String,
    /// Group → role, in order: the first group the user is in gives their role.
    #[serde(default)]
    pub(crate) role_mapping: Vec<RoleMapping>,
    /// The role of a user in none of the mapped groups; none: such a user is refused.
    #[serde(default)]
    pub(crate) default_role: Option<Role>,
}

/// Members of `group` get `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleMapping {
    pub(crate) group: String,
    pub(crate) role: Role,
}

fn default_scopes() -> Vec<String> {
    ["profile", "email", "groups"].map(String::from).to_vec()
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// Additional data binding a sealed client secret to its provider.
fn secret_aad(provider: &str) -> Vec<u8> {
    format!("portcullis sso client secret v1:{provider}").into_bytes()
}

impl SsoSettings {
    /// The settings in the store (none yet: no provider).
    pub(crate) fn load(store: &dyn Store) -> Result<SsoSettings, WebError> {
        let Some(bytes) = store.get_meta(SETTINGS_META)? else {
            return Ok(SsoSettings::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            WebError::Internal(format!(
                "the stored single sign-on settings are unreadable: {e}"
            ))
        })
    }

    /// Writes the settings to the store.
    pub(crate) fn save(&self, store: &dyn Store) -> Result<(), WebError> {
        let bytes = serde_json::to_vec(self).map_err(|e| WebError::Internal(e.to_string()))?;
        store.put_meta(SETTINGS_META, &bytes)?;
        Ok(())
    }

    /// The provider `id`.
    pub(crate) fn provider(&self, id: &str) -> Option<&StoredProvider> {
        self.providers.iter().find(|p| p.settings.id == id)
    }

    /// Whether users of `role` must sign in through a provider.
    pub(crate) fn required_for(&self, role: Role) -> bool {
        self.required_for_roles.contains(&role)
    }

    /// Whether users of `role` must use a passkey.
    pub(crate) fn passkey_required_for(&self, role: Role) -> bool {
        self.passkey_required_for_roles.contains(&role)
    }

    /// The address providers send browsers back to after a sign-in.
    pub(crate) fn redirect_url(&self) -> Result<String, String> {
        let base = self.public_url.as_deref().ok_or(
            "single sign-on is not set up: the gateway's public URL is missing (settings)",
        )?;
        Ok(format!(
            "{}/api/v1/auth/sso/callback",
            base.trim_end_matches('/')
        ))
    }

    /// Adds or replaces the provider `settings`; `secret`: its client secret (kept as it was
    /// when `None` and the provider exists). Checked first.
    pub(crate) fn put_provider(
        &mut self,
        settings: ProviderSettings,
        secret: Option<&Secret>,
        key: &SecretKey,
    ) -> Result<(), String> {
        settings.check()?;
        let aad = secret_aad(&settings.id);
        let existing = self
            .providers
            .iter()
            .position(|p| p.settings.id == settings.id);
        let sealed = match (secret, existing) {
            (Some(s), _) => {
                if s.expose().is_empty() || s.expose().len() > MAX_TEXT {
                    return Err(format!("client_secret: 1 to {MAX_TEXT} bytes"));
                }
                key.seal(s.expose().as_bytes(), &aad)
            }
            (None, Some(i)) => self.providers[i].sealed_client_secret.clone(),
            (None, None) => return Err("client_secret: required for a new provider".into()),
        };
        let stored = StoredProvider {
            settings,
            sealed_client_secret: sealed,
        };
        match existing {
            Some(i) => self.providers[i] = stored,
            None if self.providers.len() >= MAX_PROVIDERS => {
                return Err(format!("at most {MAX_PROVIDERS} providers"))
            }
            None => self.providers.push(stored),
        }
        Ok(())
    }

    /// Checks the gateway-wide settings.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).map_err(|e| format!("public_url: {e}"))?;
            if parsed.scheme() != "https"
                || parsed.host_str().is_none()
                || parsed.query().is_some()
                || parsed.fragment().is_some()
                || !parsed.username().is_empty()
                || !parsed.path().trim_end_matches('/').is_empty()
            {
                return Err(
                    "public_url: the gateway's https address, without a path (https://psm.example.com)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Every sealed secret still under `old` sealed again under `new` (the key rotation; a
    /// resumed rotation finds some already done). Whether anything changed.
    pub(crate) fn reseal(&mut self, old: &SecretKey, new: &SecretKey) -> Result<bool, String> {
        let mut changed = false;
        for p in &mut self.providers {
            let aad = secret_aad(&p.settings.id);
            if new.open(&p.sealed_client_secret, &aad).is_ok() {
                continue;
            }
            let plain = zeroize::Zeroizing::new(
                old.open(&p.sealed_client_secret, &aad)
                    .map_err(|e| format!("provider {:?}: {e}", p.settings.id))?,
            );
            p.sealed_client_secret = new.seal(&plain, &aad);
            changed = true;
        }
        Ok(changed)
    }
}

impl StoredProvider {
    /// The client secret, opened.
    pub(crate) fn client_secret(&self, key: &SecretKey) -> Result<Secret, String> {
        let plain = key
            .open(&self.sealed_client_secret, &secret_aad(&self.settings.id))
            .map_err(|e| {
                format!(
                    "the client secret of provider {:?} cannot be opened: {e}",
                    self.settings.id
                )
            })?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| "the client secret is not text".into())
    }
}

/// The key rotation's step for the single sign-on settings: every provider's client secret
/// sealed again under `new`.
pub fn reseal_settings(store: &dyn Store, old: &SecretKey, new: &SecretKey) -> Result<(), String> {
    let mut settings = SsoSettings::load(store).map_err(|e| e.to_string())?;
    if settings.reseal(old, new)? {
        settings.save(store).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Whether users of `role` must use a passkey as their second factor (the sign-on settings'
/// `passkey_required_for_roles`; unreadable settings count as yes: fail closed).
pub(crate) fn passkey_required(state: &crate::AppState, role: Role) -> bool {
    match SsoSettings::load(&*state.store) {
        Ok(s) => s.passkey_required_for(role),
        Err(e) => {
            tracing::error!(error = %e, "sign-on settings unreadable: a passkey is required");
            true
        }
    }
}

/// Where a browser signing out of a login made through a provider goes next: the provider's
/// sign-out, then back to the gateway; `None` when there is no such place.
pub(crate) async fn logout_url(state: &crate::AppState, sso: &LoginSso) -> Option<String> {
    let settings = SsoSettings::load(&*state.store).ok()?;
    let provider = settings.provider(&sso.provider)?;
    let back = format!("{}/", settings.public_url.as_deref()?.trim_end_matches('/'));
    state
        .sso
        .logout_url(provider, sso.id_token.as_deref().unwrap_or(""), &back)
        .await
}

/// Whether `url` may be reached for a provider: https, or plain http to a loopback address
/// only (nothing crosses a network in the clear).
pub(crate) fn allowed_url(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

fn check_text(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(format!(
            "{field}: 1 to {MAX_TEXT} bytes, no control characters"
        ));
    }
    Ok(())
}

impl ProviderSettings {
    /// Checks every field.
    pub(crate) fn check(&self) -> Result<(), String> {
        validate_name("provider", &self.id).map_err(|e| format!("id: {e}"))?;
        check_text("display_name", &self.display_name)?;
        check_text("client_id", &self.client_id)?;
        check_text("issuer", &self.issuer)?;
        let issuer = url::Url::parse(&self.issuer).map_err(|e| format!("issuer: {e}"))?;
        if !allowed_url(&issuer) || issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(
                "issuer: an https URL (or http on a loopback address), without query or fragment"
                    .into(),
            );
        }
        check_text("username_claim", &self.username_claim)?;
        check_text("groups_claim", &self.groups_claim)?;
        if self.scopes.len() > 16 {
            return Err("scopes: at most 16".into());
        }
        for s in &self.scopes {
            if s.is_empty()
                || s.len() > 64
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
            {
                return Err(format!("scopes: {s:?} is not a scope name"));
            }
        }
        if self.role_mapping.len() > MAX_MAPPINGS {
            return Err(format!("role_mapping: at most {MAX_MAPPINGS}"));
        }
        for m in &self.role_mapping {
            check_text("role_mapping.group", &m.group)?;
        }
        if self.role_mapping.is_empty() && self.default_role.is_none() {
            return Err(
                "role_mapping: map at least one group to a role, or give a default_role".into(),
            );
        }
        Ok(())
    }

    /// The role of a user in `groups`: the first mapping whose group they are in, else the
    /// default; `None`: no access.
    pub(crate) fn role_for(&self, groups: &[String]) -> Option<Role> {
        self.role_mapping
            .iter()
            .find(|m| groups.contains(&m.group))
            .map(|m| m.role)
            .or(self.default_role)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(crate) fn provider(id: &str, issuer: &str) -> ProviderSettings {
        ProviderSettings {
            id: id.into(),
            display_name: "Corp".into(),
            issuer: issuer.into(),
            client_id: "gateway".into(),
            scopes: default_scopes(),
            username_claim: default_username_claim(),
            groups_claim: default_groups_claim(),
            role_mapping: vec![
                RoleMapping {
                    group: "psm-admins".into(),
                    role: Role::Admin,
                },
                RoleMapping {
                    group: "psm-users".into(),
                    role: Role::User,
                },
            ],
            default_role: None,
        }
    }

    #[test]
    fn roles_come_from_the_first_mapped_group() {
        let mut p = provider("corp", "https://idp.example.com");
        let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            p.role_for(&groups(&["psm-users", "psm-admins"])),
            Some(Role::Admin)
        );
        assert_eq!(p.role_for(&groups(&["psm-users"])), Some(Role::User));
        assert_eq!(p.role_for(&groups(&["finance"])), None);
        assert_eq!(p.role_for(&[]), None);
        p.default_role = Some(Role::Reviewer);
        assert_eq!(p.role_for(&[]), Some(Role::Reviewer));
    }

    #[test]
    fn settings_are_checked() {
        let ok = provider("corp", "https://idp.example.com/realms/x");
        ok.check().unwrap();
        provider("corp", "http://127.0.0.1:9000").check().unwrap();
        for (bad, why) in [
            (provider("corp", "http://idp.example.com"), "issuer"),
            (provider("corp", "ftp://idp.example.com"), "issuer"),
            (provider("corp", "https://idp.example.com/?a=b"), "issuer"),
            (provider("../x", "https://idp.example.com"), "id"),
            (
                ProviderSettings {
                    role_mapping: vec![],
                    ..ok.clone()
                },
                "role_mapping",
            ),
            (
                ProviderSettings {
                    scopes: vec!["openid email".into()],
                    ..ok.clone()
                },
                "scopes",
            ),
            (
                ProviderSettings {
                    display_name: "a\nb".into(),
                    ..ok.clone()
                },
                "display_name",
            ),
        ] {
            let e = bad.check().unwrap_err();
            assert!(e.starts_with(why), "{e}");
        }
        let mut s = SsoSettings {
            public_url: Some("https://psm.example.com/".into()),
            ..Default::default()
        };
        s.check().unwrap();
        assert_eq!(
            s.redirect_url().unwrap(),
            "https://psm.example.com/api/v1/auth/sso/callback"
        );
        for bad in [
            "http://psm.example.com",
            "https://psm.example.com/app",
            "https://u@psm",
        ] {
            s.public_url = Some(bad.into());
            assert!(s.check().is_err(), "{bad}");
        }
    }

    #[test]
    fn client_secrets_are_sealed_and_bound_to_their_provider() {
        let key = SecretKey::generate();
        let mut s = SsoSettings::default();
        let secret = Secret::new("s3cret-value".into());
        assert!(s
            .put_provider(provider("corp", "https://idp.example.com"), None, &key)
            .is_err());
        s.put_provider(
            provider("corp", "https://idp.example.com"),
            Some(&secret),
            &key,
        )
        .unwrap();
        let stored = serde_json::to_string(&s).unwrap();
        assert!(!stored.contains("s3cret-value"));
        // Changing the settings without a secret keeps the sealed one.
        let mut changed = provider("corp", "https://idp2.example.com");
        changed.display_name = "Corp 2".into();
        s.put_provider(changed, None, &key).unwrap();
        assert_eq!(s.providers.len(), 1);
        let p = s.provider("corp").unwrap();
        assert_eq!(p.client_secret(&key).unwrap().expose(), "s3cret-value");
        // Moved to another provider's entry, it no longer opens.
        let mut moved = p.clone();
        moved.settings.id = "other".into();
        assert!(moved.client_secret(&key).is_err());
        // A key rotation reseals it.
        let new = SecretKey::generate();
        assert!(s.reseal(&key, &new).unwrap());
        assert!(!s.reseal(&key, &new).unwrap());
        assert_eq!(
            s.provider("corp")
                .unwrap()
                .client_secret(&new)
                .unwrap()
                .expose(),
            "s3cret-value"
        );
        assert!(s.provider("corp").unwrap().client_secret(&key).is_err());
    }
}

//! An RDP target's identity as administrators set and accept it: `GET /targets/{name}` (with its
//! identity), `PUT /targets/{name}/identity` (pin ahead of time, forget the pin, `require_nla`)
//! and `POST /targets/{name}/identity/accept` (accept a new certificate, allow a target without
//! NLA). Each change is in the audit trail before it is stored. What a connection learns is
//! `crate::rdp::identity`'s.

use axum::extract::{Path, State};
use axum::Json;
use portcullis_store::{TargetIdentity, TargetKind, TargetRecord};
use serde::Deserialize;
use serde_json::Value;
use tracing::info;

use crate::audit::admin_change;
use crate::extract::{Admin, Body};
use crate::rdp::identity::identity_json;
use crate::targets::target_json;
use crate::{ops, AppState, WebError};

fn rdp_target(state: &AppState, name: &str) -> Result<TargetRecord, WebError> {
    state
        .store
        .get_target(name)?
        .ok_or_else(|| WebError::NotFound(format!("no target named {name:?}")))
}

/// `GET /targets/{name}`: one target as admins see it, with an RDP target's identity.
pub(crate) async fn get_target(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, WebError> {
    Ok(Json(target_json(&rdp_target(&state, &name)?, true)))
}

/// The body of `PUT /targets/{name}/identity`: fields left out are unchanged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityBody {
    /// The fingerprint to pin; `null` forgets the pin (the next connection pins again).
    #[serde(default, with = "double_option")]
    tls_sha256: Option<Option<String>>,
    require_nla: Option<bool>,
    /// A CA bundle (absolute path of a PEM file on the gateway) to verify the target against,
    /// with the host name of its address, instead of the pin; `null`: back to the pin.
    #[serde(default, with = "double_option")]
    tls_ca_file: Option<Option<String>>,
}

/// Tells a field left out (`None`) from one set to `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// `PUT /targets/{name}/identity`: pins a certificate ahead of time (or forgets the pin) and
/// sets `require_nla`.
pub(crate) async fn put_identity(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    Body(body): Body<IdentityBody>,
) -> Result<Json<Value>, WebError> {
    let mut target = rdp_target(&state, &name)?;
    let identity = ops::set_identity(
        &target,
        body.tls_sha256.as_ref().map(|p| p.as_deref()),
        body.require_nla,
        body.tls_ca_file.as_ref().map(|p| p.as_deref()),
    )?;
    change(
        &state,
        &admin.name,
        "target_identity_set",
        &mut target,
        identity,
    )
    .await
}

/// The body of `POST /targets/{name}/identity/accept`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptBody {
    /// The certificate to accept (normally the refused one, as the target shows it).
    sha256: Option<String>,
    /// Accept the target without NLA (it did NLA before).
    #[serde(default)]
    allow_without_nla: bool,
}

/// `POST /targets/{name}/identity/accept`: after a refusal, accepts the target's new
/// certificate and/or its answering without NLA.
pub(crate) async fn accept_identity(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    Body(body): Body<AcceptBody>,
) -> Result<Json<Value>, WebError> {
    let mut target = rdp_target(&state, &name)?;
    let identity = ops::accept_identity(&target, body.sha256.as_deref(), body.allow_without_nla)?;
    change(
        &state,
        &admin.name,
        "target_identity_accept",
        &mut target,
        identity,
    )
    .await
}

/// Audits, then stores, an administrator's change of `target`'s identity.
async fn change(
    state: &AppState,
    admin: &str,
    action: &str,
    target: &mut TargetRecord,
    identity: TargetIdentity,
) -> Result<Json<Value>, WebError> {
    debug_assert_eq!(target.kind, TargetKind::Rdp);
    let before = identity_json(&target.identity);
    let after = identity_json(&identity);
    state
        .audit
        .before(
            admin_change(admin, action, before, after).target(&target.name),
            || {
                // Only over the identity this change was computed from: a connection that
                // learned or was refused meanwhile, or another admin, is not overwritten.
                let seen = target.identity.clone();
                let mut stale = false;
                let stored = state.store.update_target(&target.name, &mut |t| {
                    stale = t.identity != seen;
                    if !stale {
                        t.identity = identity.clone();
                    }
                    !stale
                })?;
                match stored {
                    None => Err(WebError::NotFound(format!(
                        "no target named {:?}",
                        target.name
                    ))),
                    Some(_) if stale => Err(WebError::Conflict(
                        "the target's identity changed meanwhile (a connection pinned or was \
                         refused, or another admin changed it): reload and try again"
                            .into(),
                    )),
                    Some(now) => {
                        *target = now;
                        Ok(())
                    }
                }
            },
        )
        .await?;
    info!(%admin, target = %target.name, %action, "RDP target identity changed");
    Ok(Json(target_json(target, true)))
}

//! The OpenAPI 3 document of `/api/v1`, kept beside the routes in `lib.rs`.

use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;
use serde_json::{json, Value};

/// The roles `who` (an `op`'s words) admits, and whether the route then also checks ownership or
/// a grant (so an admitted role may still get 403 or 404 for a particular object). Machine
/// readable in the document (`x-portcullis-roles`, `x-portcullis-scoped`), so a test can check
/// every route against every role.
fn roles_for(who: &str) -> (Vec<&'static str>, bool) {
    const USERS: [&str; 4] = ["admin", "soc", "reviewer", "user"];
    match who {
        "anyone" => (vec!["anonymous", "admin", "soc", "reviewer", "user"], false),
        "any user" => (USERS.to_vec(), false),
        "admin" => (vec!["admin"], false),
        "admins and soc" => (vec!["admin", "soc"], false),
        "another gateway of the cluster, with a one-time ticket" => (vec!["gateway"], false),
        RECORDINGS | "a user with a grant for the target" => (USERS.to_vec(), true),
        REVIEWERS => (vec!["admin", "reviewer", "soc"], true),
        // INVARIANT: every `op` names one of the above (the document test checks each route).
        _ => (Vec::new(), true),
    }
}

fn op(summary: &str, role: &str, body: Option<&str>, ok: &str) -> Value {
    let (roles, scoped) = roles_for(role);
    let mut v = json!({
        "summary": summary,
        "description": format!("Allowed for: {role}."),
        "x-portcullis-roles": roles,
        "x-portcullis-scoped": scoped,
        "responses": {
            ok: { "description": "success" },
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "$ref": "#/components/responses/Error" },
            "403": { "$ref": "#/components/responses/Error" }
        }
    });
    if let Some(schema) = body {
        v["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        });
    }
    v
}

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
}

/// Who may read a recording.
const RECORDINGS: &str =
    "admins, reviewers and soc; a user for their own recordings (others answer 404)";

/// Who reviews recordings.
const REVIEWERS: &str =
    "admins, reviewers and soc (a flag is taken back by its author or an admin)";

fn query_param(name: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": { "type": kind } })
}

/// The body of `POST /targets`.
fn new_target_schema() -> Value {
    json!({ "type": "object", "required": ["name", "address", "password"], "properties": {
                    "name": { "type": "string" },
                    "kind": { "type": "string", "enum": ["vnc", "rdp"], "default": "vnc" },
                    "address": { "type": "string", "example": "10.0.0.5:5900" },
                    "account": { "type": "string", "description": "RDP only: user or DOMAIN\\user the gateway logs in with", "example": "CORP\\admin" },
                    "password": { "type": "string", "format": "password" }, "description": { "type": "string" },
                    "labels": { "type": "array", "items": { "type": "string" }, "maxItems": 16, "description": "labels the policy refers to as label:NAME" } } })
}

/// The schema of a policy document (portcullis-policy `PolicyDoc`).
fn policy_doc_schema() -> Value {
    json!({ "type": "object", "description": "groups (name → user names) and ordered rules; first matching rule decides, no rule = deny (see crates/portcullis-policy)", "properties": {
                    "groups": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "string" } } },
                    "rules": { "type": "array", "items": { "type": "object", "required": ["name", "subjects", "targets"], "properties": {
                        "name": { "type": "string" }, "description": { "type": "string" },
                        "subjects": { "type": "array", "items": { "type": "string", "example": "group:vendors" } },
                        "targets": { "type": "array", "items": { "type": "string", "example": "label:prod" } },
                        "deny": { "type": "boolean" },
                        "entry": { "type": "array", "items": { "type": "string", "enum": ["browser", "native"] } },
                        "file_transfer": { "type": "string", "enum": ["off", "upload", "download", "both"] },
                        "printing": { "type": "boolean" }, "audio": { "type": "boolean" },
                        "max_duration_secs": { "type": "integer" }, "idle_timeout_secs": { "type": "integer" },
                        "recording": { "type": "string", "enum": ["required", "optional"] },
                        "clipboard": { "type": "object", "properties": {
                            "direction": { "type": "string", "enum": ["off", "client_to_target", "target_to_client", "both"] },
                            "max_bytes": { "type": "integer" }, "files": { "type": "boolean" } } },
                        "windows": { "type": "array", "items": { "type": "object", "required": ["from", "to"], "properties": {
                            "days": { "type": "array", "items": { "type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] } },
                            "from": { "type": "string", "example": "08:00" }, "to": { "type": "string", "example": "18:00" },
                            "utc_offset_minutes": { "type": "integer" } } } },
                        "request": { "type": "object", "required": ["approvers"], "description": "access by approved request only (just in time)", "properties": {
                            "approvers": { "type": "array", "items": { "type": "string" } },
                            "approvals": { "type": "integer", "minimum": 1, "maximum": 10, "default": 1 },
                            "max_duration_secs": { "type": "integer", "minimum": 60, "maximum": 2592000, "default": 14400 } } } } } },
                    "retention": { "type": "array", "description": "how long recordings are kept: the first entry matching a recording's target and its session's risk decides; none: [recording] retention_days", "items": { "type": "object", "required": ["name", "days"], "properties": {
                        "name": { "type": "string" }, "description": { "type": "string" },
                        "targets": { "type": "array", "items": { "type": "string", "example": "label:prod" }, "default": ["*"] },
                        "min_risk": { "type": "integer", "minimum": 0, "maximum": 100, "default": 0 },
                        "days": { "type": "integer", "minimum": 0, "maximum": 36500, "description": "after the session's end; 0 keeps for ever" } } } } } })
}

/// The body of `POST /policy/explain`.
fn explain_schema() -> Value {
    json!({ "type": "object", "required": ["user", "target", "action"], "properties": {
                    "user": { "type": "string" }, "target": { "type": "string" },
                    "action": { "type": "object", "required": ["action"], "description": "e.g. {\"action\":\"open\",\"entry\":\"browser\"}, {\"action\":\"clipboard\",\"direction\":\"target_to_client\",\"kind\":\"text\",\"bytes\":10}, {\"action\":\"file_transfer\",\"direction\":\"client_to_target\"}, {\"action\":\"printing\"}, {\"action\":\"audio\"}",
                        "properties": { "action": { "type": "string", "enum": ["open", "clipboard", "file_transfer", "printing", "audio"] } } },
                    "at": { "type": "integer", "description": "Unix seconds; default now" } } })
}

/// The route of the document itself.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

pub(crate) async fn document() -> Json<Value> {
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": { "title": "Portcullis gateway API", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "session": [] }, { "token": [] }],
        "paths": {
            "/auth/login": { "post": op("Log in; sets the pc_session cookie", "anyone", Some("Login"), "200") },
            "/targets": {
                "get": op("Targets this user may open (admins: all, with addresses)", "any user", None, "200"),
                "post": op("Create a VNC or RDP target", "admin", Some("NewTarget"), "201")
            },
            "/targets/{name}": {
                "parameters": [path_param("name")],
                "get": op("One target with address, account, labels and (RDP) its identity: pinned certificate SHA-256, NLA seen or required, what was last refused", "admin", None, "200"),
                "delete": op("Delete a target and its grants", "admin", None, "204")
            },
            "/targets/{name}/identity": {
                "parameters": [path_param("name")],
                "put": op("Set an RDP target's identity ahead of time: tls_sha256 (null forgets the pin: the next connection pins again), require_nla, tls_ca_file; audited", "admin", Some("TargetIdentity"), "200")
            },
            "/targets/{name}/identity/accept": {
                "parameters": [path_param("name")],
                "post": op("After a refusal, accept an RDP target's new certificate (sha256) and/or its answering without NLA (allow_without_nla); audited", "admin", Some("AcceptIdentity"), "200")
            },
            "/targets/{name}/connect": {
                "parameters": [path_param("name"), query_param("width", "integer"), query_param("height", "integer"), query_param("batch", "string")],
                "get": op("Open a session: WebSocket upgrade (see docs/browser-protocol.md); width and height: desktop size wished for RDP targets; batch=1: frames in batches", "a user with a grant for the target", None, "101")
            },
            "/targets/{name}/rdp-file": {
                "parameters": [path_param("name")],
                "post": op("A one-time .rdp file (ticket valid once, for rdp.ticket_ttl_secs) for a native RDP client", "a user with a grant for the target", None, "200")
            },
            "/users": {
                "get": op("List users", "admin", None, "200"),
                "post": op("Create a user", "admin", Some("NewUser"), "201")
            },
            "/users/{name}": {
                "parameters": [path_param("name")],
                "delete": op("Delete a user, their grants and live sessions", "admin", None, "204")
            },
            "/grants": {
                "get": op("List grants", "admin", None, "200"),
                "post": op("Grant a user a target", "admin", Some("Grant"), "201")
            },
            "/grants/{user}/{target}": {
                "parameters": [path_param("user"), path_param("target")],
                "delete": op("Revoke a grant", "admin", None, "204")
            },
            "/policy": {
                "get": op("The policy document, the file managing it (managed_by_file, null when edited here), and warnings: what will not work as meant with the accounts there are now (a four-eyes rule none of whose observers can watch)", "admin", None, "200"),
                "put": op("Replace the policy: 400 naming rule and field when it does not compile, 409 when a file manages it; the answer as GET's, with its warnings", "admin", Some("PolicyDoc"), "200")
            },
            "/policy/explain": {
                "post": op("Why a user may or may not do an action on a target: verdict, deciding rule, rules considered; `access`: what the user holds (a grant, or for a rule that gives access by approved request only, the request approved now: id, approvers, until) and whether a session would open", "admin", Some("Explain"), "200")
            },
            "/sessions": { "get": op("Live sessions", "admins and soc", None, "200") },
            "/sessions/events": { "get": op("Session changes: with Accept: text/event-stream, a server-sent event `changed` each time a session of this gateway opens, ends, changes state, is frozen or scores a new risk rule (no session data; changes within 250 ms are one event; the stream ends after a minute, EventSource reconnects, and at once when the user's access is revoked); otherwise {changes: n}", "admins and soc", None, "200") },
            "/sessions/{id}": {
                "parameters": [path_param("id")],
                "delete": op("Close a live session", "admin", None, "204")
            },
            "/recordings": { "get": {
                "summary": "Recordings, newest first or riskiest first (query: user, target, state, from, to, min_risk, sort=newest|risk, review=reviewed|unreviewed (not for users)); admins, reviewers and soc also get each one's review (state, by, at_ms) and number of flags",
                "description": "Allowed for: admins, reviewers and soc (all), users (their own).",
                "x-portcullis-roles": ["admin", "soc", "reviewer", "user"],
                "x-portcullis-scoped": true,
                "parameters": [
                    query_param("user", "string"), query_param("target", "string"),
                    query_param("state", "string"), query_param("from", "integer"), query_param("to", "integer"),
                    query_param("min_risk", "integer"), query_param("sort", "string"), query_param("review", "string")
                ],
                "responses": { "200": { "description": "success" }, "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } }
            } },
            "/search": { "get": {
                "summary": "Search recordings: typed command lines, clipboard text, file names and words read off the screen (query: q (required; a phrase in quotes, -word leaves out), user, target, entry=browser|rdp, kind=typed|clipboard|file|screen, from, to (Unix ms), limit ≤ 200). Each hit: recording, user, target, entry, kind, at_ms, t_ms (on the recording's clock), fragment with highlights (byte ranges), screen boxes (desktop pixels), thumbnail_seq, desktop size; best first",
                "description": "Allowed for: admins, reviewers and soc (all recordings), users (their own).",
                "x-portcullis-roles": ["admin", "soc", "reviewer", "user"],
                "x-portcullis-scoped": true,
                "parameters": [
                    query_param("q", "string"), query_param("user", "string"), query_param("target", "string"),
                    query_param("entry", "string"), query_param("kind", "string"),
                    query_param("from", "integer"), query_param("to", "integer"), query_param("limit", "integer")
                ],
                "responses": { "200": { "description": "success" }, "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } }
            } },
            "/recordings/{id}": {
                "parameters": [path_param("id")],
                "get": op("A recording: parts, segments, thumbnails (see docs/browser-protocol.md)", RECORDINGS, None, "200")
            },
            "/recordings/{id}/init/{part}": {
                "parameters": [path_param("id"), path_param("part")],
                "get": op("Initialisation segment of a video part (video/mp4)", RECORDINGS, None, "200")
            },
            "/recordings/{id}/segments/{seq}": {
                "parameters": [path_param("id"), path_param("seq")],
                "get": op("Media segment (video/mp4, moof+mdat)", RECORDINGS, None, "200")
            },
            "/recordings/{id}/run/{from}/{to}": {
                "parameters": [path_param("id"), path_param("from"), path_param("to")],
                "get": op("Media segments from..=to of one part, back to back (video/mp4)", RECORDINGS, None, "200")
            },
            "/recordings/{id}/thumbnails/{seq}": {
                "parameters": [path_param("id"), path_param("seq")],
                "get": op("Thumbnail (image/jpeg)", RECORDINGS, None, "200")
            },
            "/recordings/{id}/events": {
                "parameters": [path_param("id")],
                "get": op("The event track", RECORDINGS, None, "200")
            },
            "/recordings/{id}/export": {
                "parameters": [path_param("id")],
                "get": op("Video, events, signed manifest and public key in one tar", RECORDINGS, None, "200")
            },
            "/openapi.json": { "get": { "summary": "This document", "security": [],
                "x-portcullis-roles": ["anonymous", "admin", "soc", "reviewer", "user"], "x-portcullis-scoped": false, "responses": { "200": { "description": "success" } } } }
        },
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": "pc_session" },
                "token": { "type": "http", "scheme": "bearer", "description": "An API token (pcat_…): acts as its user, limited to its scopes; each operation's x-portcullis-scope names the scope it needs (any: every token; browser: no token)" }
            },
            "responses": {
                "Error": {
                    "description": "error",
                    "content": { "application/json": { "schema": { "type": "object", "properties": { "error": { "type": "string" } } } } }
                }
            },
            "schemas": {
                "Login": { "type": "object", "required": ["username", "password"], "properties": {
                    "username": { "type": "string" }, "password": { "type": "string", "format": "password" } } },
                "NewUser": { "type": "object", "required": ["name", "password", "role"], "properties": {
                    "name": { "type": "string" }, "password": { "type": "string", "format": "password", "minLength": 12 },
                    "role": { "type": "string", "enum": ["admin", "reviewer", "user"] } } },
                "Grant": { "type": "object", "required": ["user", "target"], "properties": {
                    "user": { "type": "string" }, "target": { "type": "string" } } }

            }
        }
    });
    soc_paths(&mut doc);
    audit_paths(&mut doc);
    auth_paths(&mut doc);
    doc["components"]["schemas"]["NewTarget"] = new_target_schema();
    doc["components"]["schemas"]["PolicyDoc"] = policy_doc_schema();
    doc["components"]["schemas"]["Explain"] = explain_schema();
    // The review workflow (apart: one json! this size reaches the macro's recursion limit).
    doc["paths"]["/recordings/{id}/review"] = json!({
                "parameters": [path_param("id")],
                "get": op("Where the recording's review stands: reviewed (the mark in force or null), every mark, the flagged moments by time", REVIEWERS, None, "200"),
                "post": op("Mark the recording reviewed (once it has ended) or reopened (with a comment saying why): {state: reviewed|reopened, comment ≤ 2000 characters}; on record before it is stored", REVIEWERS, Some("ReviewMark"), "200")
    });
    doc["paths"]["/recordings/{id}/flags"] = json!({
                "parameters": [path_param("id")],
                "post": op("Flag a moment: {t_ms (on the recording's clock), note (1 to 2000 characters)}; answers the flag with its id", REVIEWERS, Some("ReviewFlag"), "201")
    });
    doc["paths"]["/recordings/{id}/flags/{flag}"] = json!({
                "parameters": [path_param("id"), path_param("flag")],
                "delete": op("Take a flag back (its author or an admin)", REVIEWERS, None, "204")
    });
    doc["paths"]["/recordings/{id}/report"] = json!({
                "parameters": [path_param("id")],
                "get": op("The session's report for auditors: one self-contained HTML document (who, where, when, how it ended, risk and its reasons, the review, flagged moments with their pictures, what the gateway noted, what was typed, pasted and transferred); print it for a PDF. An export: on record first", REVIEWERS, None, "200")
    });
    doc["components"]["schemas"]["ReviewMark"] = json!({ "type": "object", "required": ["state"], "properties": {
        "state": { "type": "string", "enum": ["reviewed", "reopened"] },
        "comment": { "type": "string", "maxLength": 2000, "description": "required to reopen" } } });
    doc["components"]["schemas"]["ReviewFlag"] = json!({ "type": "object", "required": ["t_ms", "note"], "properties": {
        "t_ms": { "type": "integer", "minimum": 0, "description": "the moment, in ms from the recording's start" },
        "note": { "type": "string", "minLength": 1, "maxLength": 2000 } } });
    doc["components"]["schemas"]["TargetIdentity"] = json!({ "type": "object", "properties": {
        "tls_sha256": { "type": "string", "nullable": true, "description": "SHA-256 of the target's TLS certificate, 64 hex digits (':' separators allowed); null forgets the pin", "example": "3f7a…" },
        "require_nla": { "type": "boolean", "description": "refuse the target unless it selects NLA (CredSSP)" },
        "tls_ca_file": { "type": "string", "nullable": true, "description": "verify the target against this CA bundle (absolute path of a PEM file on the gateway) and the host name of its address instead of the pin; null: back to the pin" } } });
    doc["components"]["schemas"]["AcceptIdentity"] = json!({ "type": "object", "properties": {
        "sha256": { "type": "string", "description": "the certificate to accept: the refused one, as the refusal named it" },
        "allow_without_nla": { "type": "boolean", "description": "accept the target answering without NLA although it did NLA before" } } });
    annotate_scopes(&mut doc);
    Json(doc)
}

/// Names, on every operation, what an API token needs for it (from `tokens::ROUTES`, the one
/// table): a scope, `any`, `browser` (no token) or `public`.
fn annotate_scopes(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !["get", "post", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            // INVARIANT: every route is in the table (a test checks it); a missing one
            // refuses every token, which the label says.
            let label = crate::tokens::need(method, path).map_or("browser", |n| n.label());
            op["x-portcullis-scope"] = json!(label);
        }
    }
}

/// Two-factor authentication and API tokens (`mfa/api.rs`, `tokens/api.rs`).
fn auth_paths(doc: &mut Value) {
    let paths = json!({
            "/auth/mfa": { "post": op("Second login step: the TOTP code for the pending login of the pc_mfa cookie (from /auth/login answering mfa_required); sets pc_session. 401: wrong, used or expired", "anyone", Some("Code"), "200") },
            "/auth/logout": { "post": op("Log out. A login made through an identity provider answers 200 with `logout_url`, the provider's sign-out to send the browser to", "any user", None, "204") },
            "/auth/sso/providers": { "get": op("The identity providers the sign-in page offers: {\"providers\":[{\"id\",\"display_name\"}]}", "anyone", None, "200") },
            "/auth/sso/{id}/start": {
                "parameters": [path_param("id")],
                "get": op("Browser navigation: starts a single sign-on at provider `id` (authorization code flow with PKCE) and redirects to it", "anyone", None, "303")
            },
            "/auth/sso/callback": { "get": op("Browser navigation: where the provider sends the browser back (`state`, `code`); signs in and goes on to the UI (or to the second factor), or shows why not", "anyone", None, "200") },
            "/requests": {
                "get": op("Access requests: the caller's own and those they may decide (admins and soc: all), newest first, each with can_decide and remaining_secs", "any user", None, "200"),
                "post": op("Ask for access to a target whose policy rule gives access by request: {target, duration_secs (up to the rule's max), reason, ticket?}", "any user", Some("NewRequest"), "201")
            },
            "/requests/targets": { "get": op("The targets the caller may request, with the rule, approvers, approvals needed and longest duration", "any user", None, "200") },
            "/requests/{id}/approve": {
                "parameters": [path_param("id")],
                "post": op("Approve (an approver named by the rule, never the requester, once each); the last approval needed gives access until now + duration. 409: decided, expired or already approved by you", "any user", Some("Decision"), "200")
            },
            "/requests/{id}/deny": {
                "parameters": [path_param("id")],
                "post": op("Deny, with a comment", "any user", Some("Decision"), "200")
            },
            "/requests/{id}/cancel": {
                "parameters": [path_param("id")],
                "post": op("The requester withdraws the request, or an admin, the security team or one of its approvers revokes it (approved: the sessions under it end at once)", "any user", None, "200")
            },
            "/requests/settings": {
                "get": op("Access request settings: webhook_url, webhook_secret_set, decide_within_secs", "admin", None, "200"),
                "put": op("Set the webhook (URL and its HMAC secret, write-only) and how long a request may wait for a decision", "admin", Some("RequestSettings"), "200")
            },
            "/sso/settings": {
                "get": op("Single sign-on settings: public_url, required_for_roles, redirect_uri (register it with the providers), providers (never a client secret: client_secret_set)", "admin", None, "200"),
                "put": op("Set public_url (the gateway's https address) and required_for_roles (roles whose users may not use a password); 409 when it would lock out the caller", "admin", Some("SsoSettings"), "200")
            },
            "/sso/providers/{id}": {
                "parameters": [path_param("id")],
                "put": op("Add or change an OpenID Connect provider (client_secret required when new; left out: kept)", "admin", Some("SsoProvider"), "200"),
                "delete": op("Remove a provider (its users' accounts stay; they cannot sign in until it is back)", "admin", None, "204")
            },
            "/sso/providers/{id}/test": {
                "parameters": [path_param("id")],
                "get": op("Fetch the provider's discovery document now: {\"ok\", \"error\"}", "admin", None, "200")
            },
            "/me": { "get": op("The logged-in user: name, role, mfa (on), mfa_required_by_role, mfa_enrol_required (this login may only enrol)", "any user", None, "200") },
            "/me/mfa/enrol": { "post": op("Start TOTP enrolment: a new secret (base32), otpauth URI and QR code (SVG), shown this once; not in force until confirmed. 409 when MFA is already on", "any user", None, "200") },
            "/me/mfa/confirm": { "post": op("Confirm TOTP enrolment with a code: MFA is on from now; an enrol-only login becomes a full one. Answers the recovery codes (`recovery_codes`), shown this once", "any user", Some("Code"), "200") },
            "/me/mfa/recovery-codes": { "post": op("A new set of recovery codes in place of the old ones, for a code from the app now; shown this once", "any user", Some("Code"), "200") },
            "/me/passkeys": {
                "get": op("The caller's passkeys (id, name, created_at, last_used_at), whether their role requires one, whether passkeys are available (the public URL is set)", "any user", None, "200"),
                "post": op("Register a passkey: {name, credential, proof} (the browser's answer to the options of /me/passkeys/options; proof of a second factor the caller has: {code} from the app or {credential}, an assertion for the options of /me/passkeys/proof); an enrol-only login becomes a full one", "any user", Some("NewPasskey"), "201")
            },
            "/me/passkeys/proof": { "post": op("WebAuthn assertion options for proving one of the caller's passkeys before adding or removing one (5 minutes, single use)", "any user", None, "200") },
            "/me/passkeys/options": { "post": op("WebAuthn registration options for navigator.credentials.create (the ceremony waits 5 minutes)", "any user", None, "200") },
            "/me/passkeys/{id}": {
                "parameters": [path_param("id")],
                "delete": op("Remove one of the caller's passkeys; body {proof} as for registering (400 without it when the caller has a second factor; 409 for the last one when the role requires a passkey, or a second factor and no app)", "any user", Some("PasskeyRemoval"), "204")
            },
            "/auth/mfa/passkey/options": { "post": op("Second login step with a passkey: WebAuthn assertion options for the pending login of the pc_mfa cookie", "anyone", None, "200") },
            "/auth/mfa/passkey": { "post": op("Second login step with a passkey: {credential} (the browser's assertion); sets pc_session. 401: refused", "anyone", Some("PasskeyAssertion"), "200") },
            "/users/{name}/passkeys": {
                "parameters": [path_param("name")],
                "get": op("A user's passkeys (names and dates; an admin's reset of two-factor authentication removes them)", "admin", None, "200")
            },
            "/users/{name}/mfa": {
                "parameters": [path_param("name")],
                "delete": op("Reset a user's two-factor authentication: TOTP, recovery codes and passkeys (their logins end); 403 for one's own account", "admin", None, "204")
            },
            "/tokens": {
                "get": op("List API tokens (never their secrets)", "admin", None, "200"),
                "post": op("Create an API token for a user; the token text is in this answer only", "admin", Some("NewToken"), "201")
            },
            "/tokens/scopes": {
                "get": op("Every scope an API token may have, with what it allows: {\"scopes\":[{\"name\",\"description\"}]}", "admin", None, "200")
            },
            "/tokens/{id}": {
                "parameters": [path_param("id")],
                "delete": op("Revoke an API token", "admin", None, "204")
            }
    });
    if let (Some(all), Some(new)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        all.extend(new.clone());
    }
    let schemas = json!({
                "NewPasskey": { "type": "object", "required": ["name", "credential"], "properties": {
                    "name": { "type": "string", "maxLength": 64 }, "credential": { "type": "object" },
                    "proof": { "$ref": "#/components/schemas/SecondFactorProof" } } },
                "SecondFactorProof": { "type": "object", "properties": {
                    "code": { "type": "string" }, "credential": { "type": "object" } } },
                "PasskeyRemoval": { "type": "object", "properties": {
                    "proof": { "$ref": "#/components/schemas/SecondFactorProof" } } },
                "PasskeyAssertion": { "type": "object", "required": ["credential"], "properties": { "credential": { "type": "object" } } },
                "NewRequest": { "type": "object", "required": ["target", "duration_secs", "reason"], "properties": {
                    "target": { "type": "string" }, "duration_secs": { "type": "integer", "minimum": 1 },
                    "reason": { "type": "string", "maxLength": 500 }, "ticket": { "type": "string", "maxLength": 64 } } },
                "Decision": { "type": "object", "properties": { "comment": { "type": "string", "maxLength": 500 } } },
                "RequestSettings": { "type": "object", "properties": {
                    "webhook_url": { "type": ["string", "null"] }, "webhook_secret": { "type": "string", "minLength": 16 },
                    "decide_within_secs": { "type": "integer", "minimum": 1, "maximum": 2592000 } } },
                "SsoSettings": { "type": "object", "properties": {
                    "public_url": { "type": ["string", "null"] },
                    "required_for_roles": { "type": "array", "items": { "type": "string", "enum": ["admin", "reviewer", "soc", "user"] } } } },
                "SsoProvider": { "type": "object", "required": ["display_name", "issuer", "client_id"], "properties": {
                    "display_name": { "type": "string" }, "issuer": { "type": "string" },
                    "client_id": { "type": "string" }, "client_secret": { "type": "string" },
                    "scopes": { "type": "array", "items": { "type": "string" } },
                    "username_claim": { "type": "string", "default": "preferred_username" },
                    "groups_claim": { "type": "string", "default": "groups" },
                    "role_mapping": { "type": "array", "items": { "type": "object", "required": ["group", "role"], "properties": {
                        "group": { "type": "string" }, "role": { "type": "string", "enum": ["admin", "reviewer", "soc", "user"] } } } },
                    "default_role": { "type": ["string", "null"], "enum": ["admin", "reviewer", "soc", "user", null] } } },
                "Code": { "type": "object", "required": ["code"], "properties": {
                    "code": { "type": "string", "pattern": "^[0-9]{6}$" } } },
                "NewToken": { "type": "object", "required": ["user", "name", "scopes"], "properties": {
                    "user": { "type": "string" }, "name": { "type": "string", "maxLength": 64 },
                    "scopes": { "type": "array", "items": { "type": "string", "enum": crate::tokens::SCOPES } },
                    "expires_in_days": { "type": "integer", "minimum": 1, "maximum": 366, "default": 30 } } }
    });
    if let (Some(all), Some(new)) = (
        doc["components"]["schemas"].as_object_mut(),
        schemas.as_object(),
    ) {
        all.extend(new.clone());
    }
}

/// The security team's routes (`sessions/soc.rs`).
fn soc_paths(doc: &mut Value) {
    let soc = "admins and soc";
    let routes = [
        ("/sessions/{id}/kill", "id", "post", "End a live session at once; the user sees the reason", Some("Reason"), "204"),
        ("/sessions/{id}/freeze", "id", "post", "Hold the user's input (the screen is still shown and recorded)", None, "204"),
        ("/sessions/{id}/unfreeze", "id", "post", "Let the user's input through again", None, "204"),
        ("/sessions/{id}/thumbnail", "id", "get", "The live screen as a small JPEG", None, "200"),
        ("/sessions/{id}/watch", "id", "get", "WebSocket: watch a live session view-only (the messages of a session; input is ignored; query batch=1: frames in batches)", None, "101"),
        ("/users/{name}/lock", "name", "post", "Lock a user: their sessions and logins end, no new ones until unlocked", Some("Reason"), "204"),
        ("/users/{name}/unlock", "name", "post", "Unlock a user", None, "204"),
    ];
    doc["paths"]["/cluster/watch/{id}"] = json!({
        "parameters": [path_param("id"), query_param("batch", "string")],
        "get": op(
            "WebSocket: another gateway of the cluster relays a watch of a session held here (header x-portcullis-watch-ticket: the one-time ticket it left in the shared store)",
            "another gateway of the cluster, with a one-time ticket",
            None,
            "101",
        ),
    });
    for (path, param, method, summary, body, ok) in routes {
        doc["paths"][path] = json!({
            "parameters": [path_param(param)],
            method: op(summary, soc, body, ok),
        });
    }
    doc["paths"]["/sessions/{id}/watch"]["parameters"] =
        json!([path_param("id"), query_param("batch", "string")]);
    doc["components"]["schemas"]["Reason"] = json!({
        "type": "object", "required": ["reason"], "properties": {
            "reason": { "type": "string", "maxLength": 500, "description": "Shown to the user and kept in the event track" }
        }
    });
}

fn audit_paths(doc: &mut Value) {
    let soc = "admins and soc";
    let query = |name: &str, kind: &str, what: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": kind }, "description": what });
    let mut list = op(
        "The audit trail, newest first: logins, sessions, kills, freezes, locks, policy decisions, clipboard and file events, admin changes (before/after), exports",
        soc,
        None,
        "200",
    );
    list["parameters"] = json!([
        query("cluster", "boolean", "true: every gateway of the cluster, merged by time (each entry names its node); page on with before_ts_ms, before_node and before_seq from `next`"),
        query("node", "string", "With cluster: only this gateway's records"),
        query("before_ts_ms", "integer", "With cluster: paging (from `next`)"),
        query("before_node", "string", "With cluster: paging (from `next`)"),
        query("actor", "string", "Who acted (exact)"),
        query("target", "string", "Which target (exact)"),
        query("session", "string", "Which session (exact)"),
        query("kind", "string", "Record kinds, comma-separated (login, login_failed, session_start, policy, file, admin_change, ...)"),
        query("since_ms", "integer", "From this time, Unix ms (inclusive)"),
        query("until_ms", "integer", "Until this time, Unix ms (exclusive)"),
        query("before_seq", "integer", "Older than this record (next page: next_before_seq of the last answer)"),
        query("limit", "integer", "At most this many (default 100, at most 500)"),
    ]);
    doc["paths"]["/audit"] = json!({ "get": list });
    doc["paths"]["/audit/exports"] = json!({
        "get": op("Each SIEM export's status: connected, last delivered seq and hash, pending records, gaps, last error; a cluster export (`source = \"cluster\"`) also the gateway exporting it now (`exporter`), the last seq delivered of each gateway's chain (`delivered_by_node`) and records sent out of time order (`late`)", soc, None, "200"),
    });
    doc["paths"]["/audit/verify"] = json!({
        "get": op("Check the audit trail's whole hash chain and its seals now; names the first bad record. `ok`: the chain and seals check out; `vouched`: every record is vouched for by a seal made when it was written (false, with a `warning`, when records were sealed as found)", soc, None, "200"),
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// The token table and the document name the same routes, and every operation names its
    /// roles.
    #[tokio::test]
    async fn every_documented_route_is_in_the_token_table_and_back() {
        let Json(doc) = document().await;
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if !["get", "post", "put", "delete"].contains(&method.as_str()) {
                    continue;
                }
                assert!(
                    crate::tokens::need(method, path).is_some(),
                    "{method} {path} is not in tokens::ROUTES"
                );
                assert!(
                    !op["x-portcullis-roles"].as_array().unwrap().is_empty(),
                    "{method} {path} names no roles"
                );
                documented.push((method.clone(), path.clone()));
            }
        }
        for (m, p, _) in crate::tokens::ROUTES {
            assert!(
                documented.contains(&((*m).to_owned(), (*p).to_owned())),
                "{m} {p} is in tokens::ROUTES but not documented"
            );
        }
        assert_eq!(
            doc["paths"]["/sessions/{id}/kill"]["post"]["x-portcullis-scope"],
            "sessions:kill"
        );
    }

    /// The (method, path) pairs the real API router answers, read from axum's `Debug` of the
    /// router (axum has no other way to list them; `HEAD` comes with `GET`). The test below
    /// fails if this finds nothing, e.g. when a new axum prints routers differently.
    fn routed() -> BTreeSet<(String, String)> {
        let text = format!("{:?}", crate::api_routes());
        // The routes proper, not the fallback's.
        let text = &text[..text.find("fallback_router:").unwrap_or(text.len())];
        let mut methods: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut rest = text;
        while let Some(at) = rest.find("RouteId(") {
            rest = &rest[at + "RouteId(".len()..];
            let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let after = &rest[id.len()..];
            if let Some(body) = after.strip_prefix("): MethodRouter(MethodRouter { ") {
                let fields = &body[..body.find("fallback:").unwrap_or(body.len())];
                for field in fields.split(", ") {
                    if let Some((method, endpoint)) = field.split_once(": ") {
                        if endpoint != "None" && method != "head" {
                            methods
                                .entry(id.clone())
                                .or_default()
                                .push(method.to_owned());
                        }
                    }
                }
            }
        }
        let mut found = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("RouteId(") {
            rest = &rest[at + "RouteId(".len()..];
            let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Some(path) = rest[id.len()..].strip_prefix("): \"") {
                let path = &path[..path.find('"').unwrap_or(0)];
                for m in methods.get(&id).into_iter().flatten() {
                    found.insert((m.clone(), path.to_owned()));
                }
            }
        }
        found
    }

    /// A route cannot exist without being documented, in the token table (scoped) and, unless
    /// public, refusing an anonymous caller: the real router, the OpenAPI document and
    /// `tokens::ROUTES` name the same routes.
    #[tokio::test]
    async fn every_route_is_documented_and_scoped() {
        let routed = routed();
        let table: BTreeSet<(String, String)> = crate::tokens::ROUTES
            .iter()
            .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        let Json(doc) = document().await;
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        assert!(
            routed.len() >= table.len(),
            "no routes read from the router: {routed:?}"
        );
        let missing = |a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>| {
            a.difference(b).cloned().collect::<Vec<_>>()
        };
        assert_eq!(
            missing(&routed, &table),
            [],
            "routed but not in tokens::ROUTES"
        );
        assert_eq!(
            missing(&table, &routed),
            [],
            "in tokens::ROUTES but not routed"
        );
        assert_eq!(
            missing(&routed, &documented),
            [],
            "routed but not documented"
        );
        assert_eq!(
            missing(&documented, &routed),
            [],
            "documented but not routed"
        );
    }

    /// Every route but the public ones refuses a caller who is not logged in (401), and the
    /// document says who may call it accordingly.
    #[tokio::test]
    async fn only_public_routes_answer_anonymous_callers() {
        use axum::body::Body as HttpBody;
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt as _;

        let store = std::sync::Arc::new(portcullis_store::MemoryStore::new());
        let broker = portcullis_broker::Broker::new(Default::default());
        let key = std::sync::Arc::new(portcullis_secrets::SecretKey::generate());
        let state = AppState::new(store, key, broker);
        let Json(doc) = document().await;
        for (method, path, need) in crate::tokens::ROUTES {
            let roles = &doc["paths"][*path][*method]["x-portcullis-roles"];
            let anonymous = roles.as_array().unwrap().iter().any(|r| r == "anonymous");
            let public = *need == crate::tokens::Need::Public;
            assert_eq!(
                anonymous, public,
                "{method} {path}: documented roles {roles}"
            );
            if public {
                continue;
            }
            let uri = format!("/api/v1{}", path.replace(['{', '}'], ""));
            let mut req = Request::builder()
                .method(method.to_ascii_uppercase().as_str())
                .uri(uri)
                .header("x-portcullis-csrf", "1")
                .header("content-type", "application/json")
                .body(HttpBody::from("{}"))
                .unwrap();
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                    [192, 0, 2, 1],
                    40000,
                ))));
            let status = crate::router(state.clone())
                .oneshot(req)
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
}

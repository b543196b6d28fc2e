//! The OpenAPI 3 document of `/api/v1`, kept beside the routes in `lib.rs`.

use axum::Json;
use serde_json::{json, Value};

fn op(summary: &str, role: &str, body: Option<&str>, ok: &str) -> Value {
    let mut v = json!({
        "summary": summary,
        "description": format!("Allowed for: {role}."),
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
    "admins and reviewers; a user for their own recordings (others answer 404)";

fn query_param(name: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": { "type": kind } })
}

pub(crate) async fn document() -> Json<Value> {
    Json(json!({
        "openapi": "3.0.3",
        "info": { "title": "Portcullis gateway API", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "session": [] }],
        "paths": {
            "/auth/login": { "post": op("Log in; sets the pc_session cookie", "anyone", Some("Login"), "200") },
            "/auth/logout": { "post": op("Log out", "any user", None, "204") },
            "/me": { "get": op("The logged-in user", "any user", None, "200") },
            "/targets": {
                "get": op("Targets this user may open (admins: all, with addresses)", "any user", None, "200"),
                "post": op("Create a VNC target", "admin", Some("NewTarget"), "201")
            },
            "/targets/{name}": {
                "parameters": [path_param("name")],
                "delete": op("Delete a target and its grants", "admin", None, "204")
            },
            "/targets/{name}/connect": {
                "parameters": [path_param("name"), query_param("width", "integer"), query_param("height", "integer")],
                "get": op("Open a session: WebSocket upgrade (see docs/browser-protocol.md); width and height: desktop size wished for RDP targets", "a user with a grant for the target", None, "101")
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
            "/sessions": { "get": op("Live sessions", "admin", None, "200") },
            "/sessions/{id}": {
                "parameters": [path_param("id")],
                "delete": op("Close a live session", "admin", None, "204")
            },
            "/recordings": { "get": {
                "summary": "Recordings, newest first (query: user, target, state, from, to)",
                "description": "Allowed for: admins and reviewers (all), users (their own).",
                "parameters": [
                    query_param("user", "string"), query_param("target", "string"),
                    query_param("state", "string"), query_param("from", "integer"), query_param("to", "integer")
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
            "/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": { "description": "success" } } } }
        },
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": "pc_session" }
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
                "NewTarget": { "type": "object", "required": ["name", "address", "password"], "properties": {
                    "name": { "type": "string" },
                    "kind": { "type": "string", "enum": ["vnc", "rdp"], "default": "vnc" },
                    "address": { "type": "string", "example": "10.0.0.5:5900" },
                    "account": { "type": "string", "description": "RDP only: user or DOMAIN\\user the gateway logs in with", "example": "CORP\\admin" },
                    "password": { "type": "string", "format": "password" }, "description": { "type": "string" } } },
                "NewUser": { "type": "object", "required": ["name", "password", "role"], "properties": {
                    "name": { "type": "string" }, "password": { "type": "string", "format": "password", "minLength": 12 },
                    "role": { "type": "string", "enum": ["admin", "reviewer", "user"] } } },
                "Grant": { "type": "object", "required": ["user", "target"], "properties": {
                    "user": { "type": "string" }, "target": { "type": "string" } } }
            }
        }
    }))
}

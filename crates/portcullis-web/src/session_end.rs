//! How a session's end reads to a browser: the one place that turns the broker's
//! protocol-neutral [`SessionEnd`] into the `closed` or `error` message of
//! `docs/browser-protocol.md`.

use portcullis_core::session::{SessionEnd, TargetFault};
use portcullis_core::wire::{ErrorCode, ServerMessage};

/// The message a browser gets when its session ends: `closed` for a normal end, `error` with
/// its code otherwise; the text is the end's own words.
pub(crate) fn browser_message(end: &SessionEnd) -> ServerMessage {
    let error = |code| ServerMessage::Error {
        code,
        message: end.to_string(),
    };
    match end {
        SessionEnd::ClosedByAdmin { .. } => error(ErrorCode::ClosedByAdmin),
        SessionEnd::TargetFailed { fault, .. } => error(match fault {
            TargetFault::Unreachable => ErrorCode::TargetUnreachable,
            TargetFault::AuthFailed => ErrorCode::TargetAuthFailed,
            TargetFault::Protocol => ErrorCode::TargetProtocol,
        }),
        SessionEnd::RecordingFailed { .. } => error(ErrorCode::RecordingUnavailable),
        SessionEnd::ClientFault { .. } => error(ErrorCode::BadMessage),
        SessionEnd::Internal => error(ErrorCode::Internal),
        SessionEnd::Shutdown
        | SessionEnd::TimeLimit { .. }
        | SessionEnd::IdleTimeout { .. }
        | SessionEnd::TargetEnded { .. }
        | SessionEnd::TargetClosed
        | SessionEnd::ViewerDisconnected
        | SessionEnd::NativeClientDisconnected
        | SessionEnd::ViewerLeftWhileConnecting => ServerMessage::Closed {
            reason: end.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(end: SessionEnd) -> String {
        browser_message(&end).to_json()
    }

    /// What browsers were told before the broker had its own words for an end.
    #[test]
    fn each_end_reads_to_the_browser_as_it_always_did() {
        let rule = || "r".to_owned();
        let text = |s: &str| s.to_owned();
        let cases = [
            (
                SessionEnd::ClosedByAdmin {
                    message: text("the session was closed by an administrator"),
                },
                r#"{"type":"error","code":"closed_by_admin","message":"the session was closed by an administrator"}"#,
            ),
            (
                SessionEnd::Shutdown,
                r#"{"type":"closed","reason":"the gateway is shutting down"}"#,
            ),
            (
                SessionEnd::TimeLimit { rule: rule() },
                r#"{"type":"closed","reason":"the session reached the end of the time the policy allows (rule \"r\")"}"#,
            ),
            (
                SessionEnd::IdleTimeout {
                    secs: 30,
                    rule: rule(),
                },
                r#"{"type":"closed","reason":"the session was idle for longer than the policy allows (30 s, rule \"r\")"}"#,
            ),
            (
                SessionEnd::TargetEnded {
                    reason: text("logged off"),
                },
                r#"{"type":"closed","reason":"the target ended the session: logged off"}"#,
            ),
            (
                SessionEnd::TargetClosed,
                r#"{"type":"closed","reason":"the target closed the session"}"#,
            ),
            (
                SessionEnd::TargetFailed {
                    fault: TargetFault::Unreachable,
                    message: text("cannot reach the target: no answer within 5 s"),
                },
                r#"{"type":"error","code":"target_unreachable","message":"cannot reach the target: no answer within 5 s"}"#,
            ),
            (
                SessionEnd::TargetFailed {
                    fault: TargetFault::AuthFailed,
                    message: text("the RDP target refused the stored credentials"),
                },
                r#"{"type":"error","code":"target_auth_failed","message":"the RDP target refused the stored credentials"}"#,
            ),
            (
                SessionEnd::TargetFailed {
                    fault: TargetFault::Protocol,
                    message: text("the target stopped taking input"),
                },
                r#"{"type":"error","code":"target_protocol","message":"the target stopped taking input"}"#,
            ),
            (
                SessionEnd::RecordingFailed {
                    message: text("disk full"),
                },
                r#"{"type":"error","code":"recording_unavailable","message":"disk full"}"#,
            ),
            (
                SessionEnd::ViewerDisconnected,
                r#"{"type":"closed","reason":"the viewer disconnected"}"#,
            ),
            (
                SessionEnd::NativeClientDisconnected,
                r#"{"type":"closed","reason":"the native RDP client disconnected"}"#,
            ),
            (
                SessionEnd::ViewerLeftWhileConnecting,
                r#"{"type":"closed","reason":"the viewer left while connecting"}"#,
            ),
            (
                SessionEnd::ClientFault {
                    message: text("the browser stopped answering"),
                },
                r#"{"type":"error","code":"bad_message","message":"the browser stopped answering"}"#,
            ),
            (
                SessionEnd::Internal,
                r#"{"type":"error","code":"internal","message":"the session stopped on an internal error"}"#,
            ),
        ];
        for (end, expected) in cases {
            assert_eq!(json(end), expected);
        }
    }
}

//! A session as the gateway's RDP server sees it: [`RawViewer`] behind the server's
//! [`Display`] trait.

use portcullis_core::desktop::InputEvent;
use portcullis_core::session::SessionEnd;
use portcullis_rdp::server::{BoxFuture, Denial, Display, DisplayEvent, Refusal};

use crate::viewer::{RawOutput, RawViewer};

/// How a session's ending reads to a native client: an administrator's close is told as such
/// (its own disconnect reason), every other end as the session ending, with its words.
pub fn denial_of(end: &SessionEnd) -> Denial {
    let refusal = match end {
        SessionEnd::ClosedByAdmin { .. } => Refusal::ClosedByAdmin,
        SessionEnd::Shutdown
        | SessionEnd::TimeLimit { .. }
        | SessionEnd::IdleTimeout { .. }
        | SessionEnd::TargetEnded { .. }
        | SessionEnd::TargetClosed
        | SessionEnd::TargetFailed { .. }
        | SessionEnd::RecordingFailed { .. }
        | SessionEnd::ViewerDisconnected
        | SessionEnd::NativeClientDisconnected
        | SessionEnd::ViewerLeftWhileConnecting
        | SessionEnd::ClientFault { .. }
        | SessionEnd::Internal => Refusal::Ended,
    };
    Denial {
        refusal,
        message: end.to_string(),
    }
}

impl Display for RawViewer {
    fn size(&self) -> (u32, u32) {
        RawViewer::size(self)
    }

    fn next(&mut self) -> BoxFuture<'_, DisplayEvent> {
        Box::pin(async move {
            match RawViewer::next(self).await {
                RawOutput::Damage(rects) => DisplayEvent::Damage(rects),
                RawOutput::Resize(w, h) => DisplayEvent::Resize(w, h),
                RawOutput::Clipboard(text) => DisplayEvent::Clipboard(text),
                RawOutput::ClipboardFiles(files) => DisplayEvent::ClipboardFiles(files),
                RawOutput::ClipboardTerms(terms) => DisplayEvent::ClipboardTerms(terms),
                RawOutput::Device(pdu) => DisplayEvent::Device(pdu),
                RawOutput::End(m) if self.ended_by_shutdown() => DisplayEvent::End(Denial {
                    refusal: Refusal::Shutdown,
                    message: denial_of(&m).message,
                }),
                RawOutput::End(m) => DisplayEvent::End(denial_of(&m)),
            }
        })
    }

    fn input(&mut self, input: InputEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move { RawViewer::input(self, input).await })
    }

    fn refresh(&mut self) {
        RawViewer::refresh(self);
    }

    fn device(&mut self, pdu: Vec<u8>) -> BoxFuture<'_, ()> {
        Box::pin(async move { RawViewer::device(self, pdu).await })
    }

    fn ended(&self) -> BoxFuture<'static, ()> {
        let ended = RawViewer::ended(self);
        Box::pin(async move {
            ended.await;
        })
    }
}

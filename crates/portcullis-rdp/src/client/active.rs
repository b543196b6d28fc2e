//! The active session with a target: its PDUs (past the reassembly bounds) become desktop
//! updates, viewer commands become RDP input, clipboard and drive channel messages; and the
//! Deactivation-Reactivation sequence when the target changes size.

use ironrdp_cliprdr::CliprdrClient;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::ActiveStageOutput;
use ironrdp_svc::{SvcMessage, SvcProcessorMessages};
use ironrdp_tokio::FramedWrite as _;
use portcullis_core::desktop::{
    check_size, InputEvent, PixelLayout, Rect, TargetCommand, TargetUpdate, MAX_UPDATE_PIXEL_BYTES,
};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::input::InputState;
use super::{RdpTarget, RdpTargetError};
use crate::clip;
use crate::drive::{DriveOutput, RdpdrChannel};
use crate::reassembly::Verdict;

impl RdpTarget {
    /// Runs the session: forwards target updates to `updates` and `commands` to the target,
    /// until the target closes, an error occurs, or `commands` is closed (a normal close: `Ok`).
    pub async fn run(
        mut self,
        updates: mpsc::Sender<TargetUpdate>,
        mut commands: mpsc::Receiver<TargetCommand>,
    ) -> Result<(), RdpTargetError> {
        let mut input_state = InputState::default();
        let result = loop {
            // Input from the viewer, or a PDU from the target: either gives session outputs.
            let outputs = tokio::select! {
                biased;
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break Ok(()) };
                    let events = match cmd {
                        TargetCommand::Input(InputEvent::Clipboard(text)) => {
                            let messages = match self.stage.get_svc_processor_mut::<CliprdrClient>() {
                                Some(c) => clip::offer(c, &mut self.clip, text),
                                None => Vec::new(),
                            };
                            if let Err(e) = self.send_clip(messages).await {
                                break Err(e);
                            }
                            continue;
                        }
                        TargetCommand::Input(InputEvent::ClipboardFiles(files)) => {
                            let messages = match self.stage.get_svc_processor_mut::<CliprdrClient>() {
                                Some(c) => clip::offer_files(c, &mut self.clip, files),
                                None => Vec::new(),
                            };
                            if let Err(e) = self.send_clip(messages).await {
                                break Err(e);
                            }
                            continue;
                        }
                        TargetCommand::Device(pdu) => {
                            let outputs = match &mut self.drive {
                                Some(relay) => relay.from_client(&pdu),
                                None => Vec::new(),
                            };
                            match self.drive_outputs(outputs, &updates).await {
                                Ok(true) => continue,
                                Ok(false) => break Ok(()),
                                Err(e) => break Err(e),
                            }
                        }
                        TargetCommand::Input(input) => input_state.translate(input),
                        TargetCommand::FullRefresh => {
                            // The whole picture is in our image already: hand it over again.
                            let full = InclusiveRectangle {
                                left: 0,
                                top: 0,
                                right: self.image.width().saturating_sub(1),
                                bottom: self.image.height().saturating_sub(1),
                            };
                            if !send_pixels(&self.image, &full, &updates).await {
                                break Ok(());
                            }
                            Vec::new()
                        }
                    };
                    if events.is_empty() {
                        continue;
                    }
                    self.stage.process_fastpath_input(&mut self.image, &events)
                }
                pdu = self.framed.read_pdu() => match pdu {
                    Ok((action, payload)) => {
                        // Checked before IronRDP gathers anything of it.
                        match self.bounds.frame(action == ironrdp_pdu::Action::FastPath, &payload) {
                            Ok(Verdict::Pass) => self.stage.process(&mut self.image, action, &payload, None),
                            Ok(Verdict::Skip) => continue,
                            Err(e) => break Err(e.into()),
                        }
                    }
                    Err(e) => break Err(RdpTargetError::io(e)),
                },
            };
            let outputs = match outputs {
                Ok(o) => o,
                Err(e) => break Err(RdpTargetError::session(e)),
            };
            match self.handle(outputs, &updates).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            match self.pump_clip(&updates).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
            match self.pump_drive(&updates).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Files still open: what crossed so far is reported, if the session still listens.
        if let Some(relay) = &mut self.drive {
            for out in relay.finish() {
                if let DriveOutput::File(event) = out {
                    let _ = updates.try_send(TargetUpdate::File(event));
                }
            }
        }
        if result.is_ok() {
            // A polite goodbye; the target may already be gone.
            if let Ok(outputs) = self.stage.graceful_shutdown() {
                for out in outputs {
                    if let ActiveStageOutput::ResponseFrame(frame) = out {
                        let _ = self.framed.write_all(&frame).await;
                    }
                }
            }
        }
        result
    }

    /// Sends clipboard channel messages to the target.
    async fn send_clip(&mut self, messages: Vec<SvcMessage>) -> Result<(), RdpTargetError> {
        if messages.is_empty() {
            return Ok(());
        }
        let frame = self
            .stage
            .process_svc_processor_messages(SvcProcessorMessages::<CliprdrClient>::new(messages))
            .map_err(RdpTargetError::session)?;
        self.framed
            .write_all(&frame)
            .await
            .map_err(RdpTargetError::io)
    }

    /// Hands what the target sent on the drive channel to the relay.
    async fn pump_drive(
        &mut self,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        let Some(relay) = &mut self.drive else {
            return Ok(true);
        };
        let Some(channel) = self.stage.get_svc_processor_mut::<RdpdrChannel>() else {
            return Ok(true);
        };
        let mut outputs = Vec::new();
        for pdu in channel.take() {
            outputs.extend(relay.from_target(&pdu));
        }
        self.drive_outputs(outputs, updates).await
    }

    /// Carries out what the drive relay decided. `Ok(false)`: the viewer side has gone.
    async fn drive_outputs(
        &mut self,
        outputs: Vec<DriveOutput>,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        for out in outputs {
            let update = match out {
                DriveOutput::ToTarget(pdu) => {
                    let frame = self
                        .stage
                        .process_svc_processor_messages(SvcProcessorMessages::<RdpdrChannel>::new(
                            vec![SvcMessage::from(pdu)],
                        ))
                        .map_err(RdpTargetError::session)?;
                    self.framed
                        .write_all(&frame)
                        .await
                        .map_err(RdpTargetError::io)?;
                    continue;
                }
                DriveOutput::ToClient(pdu) => TargetUpdate::Device(pdu),
                DriveOutput::File(event) => TargetUpdate::File(event),
                DriveOutput::Dropped(why) => {
                    debug!(%why, "drive redirection message dropped");
                    continue;
                }
            };
            if updates.send(update).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Acts on what the clipboard channel reported: answers the target (and asks it for the
    /// files it copied, when the terms allow), and hands the text and files the target copied to
    /// the session. `Ok(false)`: the viewer side has gone.
    async fn pump_clip(
        &mut self,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        let Some(c) = self.stage.get_svc_processor_mut::<CliprdrClient>() else {
            return Ok(true);
        };
        let drained = clip::drain(c, &mut self.clip);
        self.send_clip(drained.messages).await?;
        for text in drained.texts {
            if updates.send(TargetUpdate::Clipboard(text)).await.is_err() {
                return Ok(false);
            }
        }
        for files in drained.files {
            if updates
                .send(TargetUpdate::ClipboardFiles(files))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Acts on what the session produced. `Ok(false)`: the viewer side has gone.
    async fn handle(
        &mut self,
        outputs: Vec<ActiveStageOutput>,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<bool, RdpTargetError> {
        for out in outputs {
            match out {
                ActiveStageOutput::ResponseFrame(frame) => {
                    if !frame.is_empty() {
                        self.framed
                            .write_all(&frame)
                            .await
                            .map_err(RdpTargetError::io)?;
                    }
                }
                ActiveStageOutput::GraphicsUpdate(region) => {
                    if !send_pixels(&self.image, &region, updates).await {
                        return Ok(false);
                    }
                }
                ActiveStageOutput::Terminate(reason) => {
                    return Err(RdpTargetError::Ended(reason.description()));
                }
                ActiveStageOutput::DeactivateAll => {
                    self.reactivate(updates).await?;
                }
                ActiveStageOutput::SaveSessionInfo { logon_complete } => {
                    info!(logon_complete, "RDP target reports a logon");
                }
                ActiveStageOutput::LogonErrors(errors) => {
                    info!(?errors, "RDP target reports logon errors");
                }
                ActiveStageOutput::PointerBitmap(_) => debug!("RDP pointer shape"),
                other => debug!(output = ?other, "RDP output ignored"),
            }
        }
        Ok(true)
    }

    /// The Deactivation-Reactivation sequence (the target changes size or logs a user in).
    async fn reactivate(
        &mut self,
        updates: &mpsc::Sender<TargetUpdate>,
    ) -> Result<(), RdpTargetError> {
        use ironrdp_connector::connection_activation::ConnectionActivationState;
        let mut sequence = self.activation.create();
        let mut buf = ironrdp_pdu::WriteBuf::new();
        loop {
            if let ConnectionActivationState::Finalized {
                desktop_size,
                share_id,
                static_channel_chunk_size,
                enable_server_pointer,
                pointer_software_rendering,
                ..
            } = sequence.connection_activation_state()
            {
                if !self.stage.reactivate(
                    self.activation.io_channel_id(),
                    self.activation.user_channel_id(),
                    share_id,
                    enable_server_pointer,
                    pointer_software_rendering,
                    static_channel_chunk_size,
                ) {
                    return Err(RdpTargetError::Protocol(
                        "the target reactivated with an invalid channel chunk size".into(),
                    ));
                }
                let (w, h) = (desktop_size.width, desktop_size.height);
                if (w, h) != (self.image.width(), self.image.height()) {
                    check_size(u32::from(w), u32::from(h))
                        .map_err(|e| RdpTargetError::Protocol(e.to_string()))?;
                    self.image = DecodedImage::new(PixelFormat::RgbA32, w, h);
                    let resize = TargetUpdate::Resize {
                        width: u32::from(w),
                        height: u32::from(h),
                    };
                    if updates.send(resize).await.is_err() {
                        return Ok(());
                    }
                }
                return Ok(());
            }
            ironrdp_tokio::single_sequence_step(&mut self.framed, &mut sequence, &mut buf)
                .await
                .map_err(RdpTargetError::connector)?;
        }
    }
}

/// Sends the pixels of `region` (clipped to the image) as bands of whole rows of at most
/// [`MAX_UPDATE_PIXEL_BYTES`] each: the queue to the session counts updates, not bytes.
/// False when the session is gone.
async fn send_pixels(
    image: &DecodedImage,
    region: &InclusiveRectangle,
    updates: &mpsc::Sender<TargetUpdate>,
) -> bool {
    let (iw, ih) = (image.width(), image.height());
    let (left, right) = (
        region.left.min(iw.saturating_sub(1)),
        region.right.min(iw.saturating_sub(1)),
    );
    let bottom = region.bottom.min(ih.saturating_sub(1));
    let row = (usize::from(right.saturating_sub(left)) + 1) * 4;
    let rows = u16::try_from((MAX_UPDATE_PIXEL_BYTES / row).max(1)).unwrap_or(u16::MAX);
    let mut top = region.top.min(bottom);
    loop {
        let end = top.saturating_add(rows - 1).min(bottom);
        let band = InclusiveRectangle {
            left,
            top,
            right,
            bottom: end,
        };
        if updates.send(pixels(image, &band)).await.is_err() {
            return false;
        }
        if end >= bottom {
            return true;
        }
        top = end + 1;
    }
}

/// The pixels of `region` (clipped to the image) as a desktop update.
fn pixels(image: &DecodedImage, region: &InclusiveRectangle) -> TargetUpdate {
    let (iw, ih) = (image.width(), image.height());
    let left = region.left.min(iw.saturating_sub(1));
    let top = region.top.min(ih.saturating_sub(1));
    let right = region.right.min(iw.saturating_sub(1));
    let bottom = region.bottom.min(ih.saturating_sub(1));
    let (w, h) = (
        usize::from(right.saturating_sub(left)) + 1,
        usize::from(bottom.saturating_sub(top)) + 1,
    );
    let stride = image.stride();
    let src = image.data();
    let mut data = Vec::with_capacity(w * h * 4);
    for y in usize::from(top)..usize::from(top) + h {
        let start = y * stride + usize::from(left) * 4;
        data.extend_from_slice(&src[start..start + w * 4]);
    }
    TargetUpdate::Pixels {
        rect: Rect::new(
            u32::from(left),
            u32::from(top),
            u32::try_from(w).unwrap_or(0),
            u32::try_from(h).unwrap_or(0),
        ),
        data,
        layout: PixelLayout::Rgbx,
    }
}

//! The glue to IronRDP: the `rdpdr` static channel on either of the gateway's sides collects
//! whole messages for the session loop, which hands them to the relay.

/// Largest `rdpdr` message (reassembled) taken from either side: a read or write of 1 MiB (more
/// than FreeRDP or Windows ask for at once) plus headers. Larger ones are dropped unread.
pub(crate) const MAX_RDPDR_PDU: usize = 1024 * 1024 + 4096;

/// The `rdpdr` static channel on either of the gateway's sides: it only collects what arrives,
/// for the session loop to hand to the [`DriveRelay`] (the channel's callback cannot send).
#[derive(Debug, Default)]
pub(crate) struct RdpdrChannel {
    received: Vec<Vec<u8>>,
}

ironrdp_core::impl_as_any!(RdpdrChannel);

impl RdpdrChannel {
    /// The messages that arrived since the last call.
    pub(crate) fn take(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.received)
    }
}

impl ironrdp_svc::SvcProcessor for RdpdrChannel {
    fn channel_name(&self) -> ironrdp_pdu::gcc::ChannelName {
        ironrdp_pdu::gcc::ChannelName::from_static(b"rdpdr\0\0\0")
    }

    fn compression_condition(&self) -> ironrdp_svc::CompressionCondition {
        ironrdp_svc::CompressionCondition::WhenRdpDataIsCompressed
    }

    fn process(&mut self, payload: &[u8]) -> ironrdp_pdu::PduResult<Vec<ironrdp_svc::SvcMessage>> {
        if payload.len() <= MAX_RDPDR_PDU {
            self.received.push(payload.to_vec());
        } else {
            tracing::debug!(
                bytes = payload.len(),
                "oversized drive redirection message dropped"
            );
        }
        Ok(Vec::new())
    }
}

impl ironrdp_svc::SvcClientProcessor for RdpdrChannel {}
impl ironrdp_svc::SvcServerProcessor for RdpdrChannel {}

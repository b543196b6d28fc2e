//! Records sessions as H.264 video in fragmented MP4, with the event track beside it.
//!
//! This is the only crate that uses FFmpeg (`ffmpeg-next`, for libx264 and colour conversion).
//! The MP4 boxes are written here ([`mp4`]) so the recorder knows each fragment's bytes exactly;
//! the files, hash chain and signatures are `portcullis-recording`'s.

pub mod decoder;
pub mod demux;
pub mod encoder;
pub mod gateway;
pub mod h264;
pub mod mp4;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;
pub mod recorder;

pub use gateway::GatewayRecorder;
pub use portcullis_recording::LiveRecordings;
pub use recorder::{KeystrokeLog, Recorder, RecorderConfig};

//! Text read off a session's screen, for the risk rules (and, later, search).
//!
//! The engine is Debian's `tesseract` (5.x, `tesseract-ocr` + `tesseract-ocr-eng`), run as a
//! process per picture: the picture goes in as a PPM on its standard input, its word boxes come
//! back as TSV (`--psm 6`: one block of text, which keeps a terminal's columns in order). This
//! crate owns both sides of that exchange:
//!
//! - [`tsv`]: the TSV parser (sans-I/O, bounded, fuzzed): words with their box and confidence,
//!   and the lines they make;
//! - [`Tesseract`]: the process, at the lowest CPU priority (`nice -n 19`), one thread
//!   (`OMP_THREAD_LIMIT=1`), with a time limit and a bound on what it may print;
//! - [`Pacer`]: how long to rest after a read so that reading takes at most a given share of
//!   one core.

pub mod catchup;
pub mod tsv;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

pub use tsv::{lines, parse, Word};

/// The largest picture read, in pixels (the largest desktop the gateway's RDP listener takes).
pub const MAX_PIXELS: u64 = 4096 * 2160;
/// The most tesseract may print, in bytes: beyond it the read fails.
pub const MAX_OUTPUT: usize = 8 << 20;

/// Why text could not be read.
#[derive(Debug, Error)]
pub enum OcrError {
    /// The picture is empty, too large, or its pixels do not match its size.
    #[error("the picture cannot be read: {0}")]
    BadPicture(String),
    /// The program could not be started (not installed?).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ran longer than allowed and was stopped.
    #[error("tesseract took longer than {0:?} and was stopped")]
    Timeout(Duration),
    /// It failed or printed more than allowed.
    #[error("tesseract failed: {0}")]
    Failed(String),
}

/// The tesseract program and how it is run.
#[derive(Debug, Clone)]
pub struct Tesseract {
    program: PathBuf,
    language: String,
    timeout: Duration,
}

impl Default for Tesseract {
    fn default() -> Self {
        Self {
            program: PathBuf::from("tesseract"),
            language: "eng".to_owned(),
            timeout: Duration::from_secs(30),
        }
    }
}

impl Tesseract {
    /// `tesseract` from the `PATH`, English, 30 s at most per picture.
    pub fn new() -> Self {
        Self::default()
    }

    fn spawn_error(&self, source: std::io::Error) -> OcrError {
        OcrError::Spawn {
            program: self.program.display().to_string(),
            source,
        }
    }

    /// Whether the program runs and knows the language (`tesseract --list-langs`).
    pub fn available(&self) -> Result<(), OcrError> {
        let out = Command::new(&self.program)
            .arg("--list-langs")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| self.spawn_error(source))?;
        let listed = String::from_utf8_lossy(&out.stdout);
        if listed.lines().any(|l| l.trim() == self.language) {
            Ok(())
        } else {
            Err(OcrError::Failed(format!(
                "the language {:?} is not installed (Debian: tesseract-ocr-{})",
                self.language, self.language
            )))
        }
    }

    /// The words in a `width`x`height` picture of RGBX pixels (4 bytes each, rows top-down).
    pub fn read(&self, width: u32, height: u32, rgbx: &[u8]) -> Result<Vec<Word>, OcrError> {
        let ppm = ppm(width, height, rgbx)?;
        let mut child = Command::new("nice")
            .args(["-n", "19"])
            .arg(&self.program)
            .args(["stdin", "stdout", "--psm", "6", "-l", &self.language, "tsv"])
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| self.spawn_error(source))?;
        let mut stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                // A program that stops reading early gives a broken pipe: its exit says more.
                let _ = stdin.write_all(&ppm);
            }
        });
        let mut stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(stdout) = stdout.as_mut() {
                let _ = stdout.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut out);
            }
            out
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(OcrError::Timeout(self.timeout));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(OcrError::Failed(e.to_string()));
                }
            }
        };
        let _ = writer.join();
        let out = reader
            .join()
            .map_err(|_| OcrError::Failed("the output reader stopped".into()))?;
        if !status.success() {
            return Err(OcrError::Failed(format!("exit status {status}")));
        }
        if out.len() > MAX_OUTPUT {
            return Err(OcrError::Failed(format!(
                "it printed more than {MAX_OUTPUT} bytes"
            )));
        }
        Ok(parse(&String::from_utf8_lossy(&out)))
    }
}

/// A binary PPM (P6) of RGBX pixels.
fn ppm(width: u32, height: u32, rgbx: &[u8]) -> Result<Vec<u8>, OcrError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 || pixels > MAX_PIXELS {
        return Err(OcrError::BadPicture(format!("{width}x{height}")));
    }
    if rgbx.len() as u64 != pixels * 4 {
        return Err(OcrError::BadPicture(format!(
            "{} bytes for {width}x{height}",
            rgbx.len()
        )));
    }
    let header = format!("P6\n{width} {height}\n255\n");
    let mut out = Vec::with_capacity(header.len() + rgbx.len() / 4 * 3);
    out.extend_from_slice(header.as_bytes());
    for px in rgbx.chunks_exact(4) {
        out.extend_from_slice(&px[..3]);
    }
    Ok(out)
}

/// Keeps reading within a share of one core: after a read that kept the core busy for `busy`,
/// rest for `busy × (1 / share − 1)`.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    share: f64,
}

impl Pacer {
    /// At most `share` of one core (clamped to 1%–100%).
    pub fn new(share: f64) -> Self {
        let share = if share.is_finite() { share } else { 0.25 };
        Self {
            share: share.clamp(0.01, 1.0),
        }
    }

    /// The share.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// How long to rest after `busy`.
    pub fn rest_after(&self, busy: Duration) -> Duration {
        busy.mul_f64(1.0 / self.share - 1.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pictures_are_checked_and_converted() {
        assert!(ppm(0, 10, &[]).is_err());
        assert!(ppm(5000, 5000, &[]).is_err());
        assert!(ppm(2, 1, &[0; 7]).is_err());
        let out = ppm(2, 1, &[1, 2, 3, 99, 4, 5, 6, 99]).unwrap();
        assert_eq!(out, b"P6\n2 1\n255\n\x01\x02\x03\x04\x05\x06");
    }

    #[test]
    fn the_pacer_keeps_to_its_share() {
        let quarter = Pacer::new(0.25);
        assert_eq!(
            quarter.rest_after(Duration::from_secs(1)),
            Duration::from_secs(3)
        );
        assert_eq!(
            Pacer::new(1.0).rest_after(Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(Pacer::new(0.0).share(), 0.01);
        assert_eq!(Pacer::new(f64::NAN).share(), 0.25);
    }

    /// Through the real program, when it is installed (the e2e suite's machines have it).
    #[test]
    fn a_missing_program_is_a_clear_error() {
        let t = Tesseract {
            program: PathBuf::from("/nonexistent/tesseract"),
            ..Tesseract::default()
        };
        let e = t.available().unwrap_err().to_string();
        assert!(e.contains("cannot run /nonexistent/tesseract"), "{e}");
        assert!(t.read(1, 1, &[0; 4]).is_err());
    }
}

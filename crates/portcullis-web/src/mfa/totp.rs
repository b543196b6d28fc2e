//! TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, one step of clock drift either way) over
//! HOTP (RFC 4226), base32 (RFC 4648) and the `otpauth://` URI of authenticator apps. Pure:
//! the time is passed in.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Length of a TOTP step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps of clock drift accepted either way.
pub const DRIFT_STEPS: u64 = 1;
/// The issuer shown in authenticator apps.
const ISSUER: &str = "Portcullis";

/// The HOTP value (RFC 4226) of `counter` under `secret`, `digits` long.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = (u32::from(digest[offset]) & 0x7f) << 24
        | u32::from(digest[offset + 1]) << 16
        | u32::from(digest[offset + 2]) << 8
        | u32::from(digest[offset + 3]);
    bin % 10u32.pow(digits)
}

/// The TOTP code of `secret` at Unix time `unix_secs`, as text with leading zeros.
pub fn totp(secret: &[u8], unix_secs: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, unix_secs / STEP_SECS, DIGITS),
        width = DIGITS as usize
    )
}

/// The time step `code` is valid for at `unix_secs` (±[`DRIFT_STEPS`]), if it is later than
/// `last_step` (a step already used is refused: no replay). Constant time per candidate.
pub fn verify(secret: &[u8], code: &str, unix_secs: u64, last_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_secs / STEP_SECS;
    let mut found = None;
    for step in now.saturating_sub(DRIFT_STEPS)..=now + DRIFT_STEPS {
        let want = format!(
            "{:0width$}",
            hotp(secret, step, DIGITS),
            width = DIGITS as usize
        );
        if portcullis_secrets::constant_time_eq(want.as_bytes(), code.as_bytes())
            && step > last_step
        {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding (what authenticator apps expect).
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app reads from the QR code.
pub fn otpauth_uri(user: &str, secret_b32: &str) -> String {
    // User names are [A-Za-z0-9._-] (store rule): nothing to escape.
    format!(
        "otpauth://totp/{ISSUER}:{user}?secret={secret_b32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8 digits; the 6-digit codes are their last 6).
    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                format!("{:08}", hotp(secret, t / STEP_SECS, 8)),
                want,
                "t = {t}"
            );
            assert_eq!(totp(secret, t), want[2..], "t = {t}");
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let secret = b"12345678901234567890";
        let want = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, want) in want.iter().enumerate() {
            assert_eq!(hotp(secret, counter as u64, 6), *want);
        }
    }

    #[test]
    fn codes_are_accepted_one_step_either_way_and_only_once() {
        let secret = b"12345678901234567890";
        let t = 1_700_000_000;
        let step = t / STEP_SECS;
        let code = totp(secret, t);
        assert_eq!(verify(secret, &code, t, 0), Some(step));
        assert_eq!(verify(secret, &code, t + STEP_SECS, 0), Some(step));
        assert_eq!(verify(secret, &code, t - STEP_SECS, 0), Some(step));
        assert_eq!(verify(secret, &code, t + 2 * STEP_SECS, 0), None);
        assert_eq!(verify(secret, &code, t, step), None, "replay refused");
        let previous = totp(secret, t - STEP_SECS);
        assert_eq!(
            verify(secret, &previous, t, step),
            None,
            "older step refused"
        );
        assert_eq!(verify(secret, "12345", t, 0), None);
        assert_eq!(verify(secret, "abcdef", t, 0), None);
        assert_eq!(verify(b"another secret", &code, t, 0), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), want);
        }
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}

//! Weekly time windows, compiled to seconds, and the calendar arithmetic they need.
//!
//! Times are Unix seconds (UTC). A window's days and times are local to its fixed UTC offset.
//! 1970-01-01, day 0, was a Thursday.

use std::fmt;

use crate::doc::{Weekday, WindowDoc};
use crate::error::Problem;

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

/// The largest UTC offset accepted, in minutes (±14 hours, as in Kiribati).
pub(crate) const MAX_OFFSET_MINUTES: i16 = 14 * 60;

/// Times beyond ±2^52 seconds (about 140 million years) are clamped, so no arithmetic overflows.
const TIME_LIMIT: i64 = 1 << 52;

/// Clamps a caller's time into the range the arithmetic here is exact for.
pub(crate) fn clamp_time(t: i64) -> i64 {
    t.clamp(-TIME_LIMIT, TIME_LIMIT)
}

/// A compiled [`WindowDoc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Bit `i` set: the window opens on weekday `i` (Monday = 0).
    days: u8,
    /// Opening, seconds after local midnight (0 to 86340).
    from: i64,
    /// Closing, seconds after local midnight (60 to 86400); at or before `from` it is the next day.
    to: i64,
    /// Seconds east of UTC.
    offset: i64,
}

/// Whether a session may be open at some instant under a rule's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowState {
    /// Outside every window.
    Closed,
    /// Inside: until `ends_at` (Unix seconds), or for good when `None` (no windows, or windows
    /// covering the whole week).
    Open {
        /// When the windows close, following windows that overlap or touch.
        ends_at: Option<i64>,
    },
}

impl Window {
    /// Validates a window; the problems come with the field they are about.
    pub(crate) fn compile(doc: &WindowDoc) -> Result<Window, Vec<(&'static str, Problem)>> {
        let mut problems = Vec::new();
        if doc.days.is_empty() {
            problems.push(("days", Problem::NoDays));
        }
        let from = parse_hhmm(&doc.from, false);
        if from.is_none() {
            problems.push(("from", Problem::BadTime(doc.from.clone())));
        }
        let to = parse_hhmm(&doc.to, true);
        if to.is_none() {
            problems.push(("to", Problem::BadTime(doc.to.clone())));
        }
        if doc.utc_offset_minutes.abs() > MAX_OFFSET_MINUTES {
            problems.push((
                "utc_offset_minutes",
                Problem::OffsetOutOfRange(doc.utc_offset_minutes),
            ));
        }
        match (from, to) {
            (Some(from), Some(to)) if problems.is_empty() => Ok(Window {
                days: doc.days.iter().fold(0, |bits, d| bits | 1 << d.index()),
                from,
                to,
                offset: i64::from(doc.utc_offset_minutes) * 60,
            }),
            _ => Err(problems),
        }
    }

    /// If the window is open at `t`, when this opening of it closes.
    fn open_until(&self, t: i64) -> Option<i64> {
        let local = t + self.offset;
        let day = local.div_euclid(DAY);
        let sec = local.rem_euclid(DAY);
        let midnight = t - sec;
        let opens_on = |day: i64| self.days & (1 << weekday_index(day)) != 0;
        if self.from < self.to {
            (opens_on(day) && self.from <= sec && sec < self.to).then_some(midnight + self.to)
        } else if opens_on(day) && sec >= self.from {
            // Opened today, closes tomorrow.
            Some(midnight + DAY + self.to)
        } else if opens_on(day - 1) && sec < self.to {
            // Opened yesterday, closes today.
            Some(midnight + self.to)
        } else {
            None
        }
    }
}

/// Whether `windows` (of one rule) are open at `now`, and until when.
///
/// Windows that overlap or touch count as one period: the end reported is when the last of a
/// chain of them closes. The windows repeat weekly, so a period longer than a week never ends.
pub(crate) fn state(windows: &[Window], now: i64) -> WindowState {
    if windows.is_empty() {
        return WindowState::Open { ends_at: None };
    }
    let Some(mut end) = latest_close(windows, now) else {
        return WindowState::Closed;
    };
    // Each step moves to a later closing time among finitely many in the next eight days.
    while end - now < WEEK {
        match latest_close(windows, end) {
            Some(later) => end = later,
            None => return WindowState::Open { ends_at: Some(end) },
        }
    }
    WindowState::Open { ends_at: None }
}

/// The latest close among the windows open at `t` (always after `t`).
fn latest_close(windows: &[Window], t: i64) -> Option<i64> {
    windows.iter().filter_map(|w| w.open_until(t)).max()
}

/// Monday = 0 … Sunday = 6 for a day number counted from 1970-01-01 (a Thursday).
fn weekday_index(day: i64) -> usize {
    // INVARIANT: rem_euclid(7) is in 0..7, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = (day + 3).rem_euclid(7) as usize;
    index
}

/// Parses `HH:MM` into seconds after midnight; `24:00` only when `end` is set.
fn parse_hhmm(s: &str, end: bool) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digit = |c: u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
    let hours = digit(b[0])? * 10 + digit(b[1])?;
    let minutes = digit(b[3])? * 10 + digit(b[4])?;
    match (hours, minutes) {
        (0..=23, 0..=59) => Some(hours * 3600 + minutes * 60),
        (24, 0) if end => Some(DAY),
        _ => None,
    }
}

impl fmt::Display for Window {
    /// `mon-fri 08:00-18:00 UTC+01:00`, `every day 22:00-06:00 (next day) UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_days(f, self.days)?;
        write!(f, " {}-{}", Hhmm(self.from), Hhmm(self.to))?;
        if self.to <= self.from {
            f.write_str(" (next day)")?;
        }
        write!(f, " {}", Offset(self.offset))
    }
}

/// Days as runs: `every day`, `mon-fri`, `sat,sun`, `mon,wed-fri`.
fn write_days(f: &mut fmt::Formatter<'_>, days: u8) -> fmt::Result {
    if days == 0x7f {
        return f.write_str("every day");
    }
    let on = |i: usize| i < 7 && days & (1 << i) != 0;
    let mut first = true;
    let mut i = 0;
    while i < 7 {
        if !on(i) {
            i += 1;
            continue;
        }
        let start = i;
        while on(i + 1) {
            i += 1;
        }
        if !first {
            f.write_str(",")?;
        }
        first = false;
        let name = |i: usize| Weekday::ALL[i].as_str();
        match i - start {
            0 => f.write_str(name(start))?,
            1 => write!(f, "{},{}", name(start), name(i))?,
            _ => write!(f, "{}-{}", name(start), name(i))?,
        }
        i += 1;
    }
    Ok(())
}

/// Seconds after midnight as `HH:MM`.
struct Hhmm(i64);

impl fmt::Display for Hhmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 3600, self.0 % 3600 / 60)
    }
}

/// A UTC offset in seconds as `UTC`, `UTC+01:00`, `UTC-05:30`.
struct Offset(i64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.0 < 0 { '-' } else { '+' };
        let abs = self.0.abs();
        write!(f, "UTC{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
    }
}

/// A Unix time as `1970-01-01 thu 00:00:00 UTC`, for explanations.
pub(crate) fn describe_utc(t: i64) -> String {
    let t = clamp_time(t);
    let day = t.div_euclid(DAY);
    let sec = t.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(day);
    format!(
        "{y:04}-{m:02}-{d:02} {} {:02}:{:02}:{:02} UTC",
        Weekday::ALL[weekday_index(day)],
        sec / 3600,
        sec % 3600 / 60,
        sec % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[Weekday], from: &str, to: &str, offset: i16) -> Window {
        Window::compile(&WindowDoc {
            days: days.to_vec(),
            from: from.to_owned(),
            to: to.to_owned(),
            utc_offset_minutes: offset,
        })
        .unwrap()
    }

    #[test]
    fn weekdays_from_the_epoch() {
        assert_eq!(Weekday::ALL[weekday_index(0)], Weekday::Thu);
        assert_eq!(Weekday::ALL[weekday_index(4)], Weekday::Mon);
        assert_eq!(Weekday::ALL[weekday_index(-1)], Weekday::Wed);
        assert_eq!(Weekday::ALL[weekday_index(-4)], Weekday::Sun);
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(parse_hhmm("00:00", false), Some(0));
        assert_eq!(parse_hhmm("23:59", false), Some(86_340));
        assert_eq!(parse_hhmm("24:00", true), Some(DAY));
        for bad in [
            "24:00", "8:00", "08:0", "08-00", "25:00", "12:60", "+1:00", "", "08:00 ",
        ] {
            assert_eq!(parse_hhmm(bad, false), None, "{bad:?}");
        }
        assert_eq!(parse_hhmm("24:01", true), None);
    }

    #[test]
    fn dates_and_descriptions() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(describe_utc(0), "1970-01-01 thu 00:00:00 UTC");
        assert_eq!(describe_utc(1_709_210_096), "2024-02-29 thu 12:34:56 UTC");
        assert!(describe_utc(i64::MIN).ends_with(" UTC"));
    }

    #[test]
    fn window_descriptions() {
        use Weekday::*;
        let w = window(&[Mon, Tue, Wed, Thu, Fri], "08:00", "18:00", 60);
        assert_eq!(w.to_string(), "mon-fri 08:00-18:00 UTC+01:00");
        let w = window(&Weekday::ALL, "22:00", "06:00", -330);
        assert_eq!(w.to_string(), "every day 22:00-06:00 (next day) UTC-05:30");
        let w = window(&[Sat, Mon, Sun, Wed, Thu], "00:00", "24:00", 0);
        assert_eq!(w.to_string(), "mon,wed,thu,sat,sun 00:00-24:00 UTC");
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let w = [window(&Weekday::ALL, "22:00", "06:00", 840)];
        for t in [i64::MIN, i64::MAX, 0, -1] {
            let _ = state(&w, clamp_time(t));
        }
    }
}

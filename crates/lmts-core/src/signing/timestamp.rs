//! The `lmts-timestamp` text: a signing time formatted as the SDKs send it
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`), any RFC 3339 date-time parsed back, and the acceptance window.
//! The SDKs' form is written into a fixed buffer, and read as integer milliseconds for
//! verification, by civil-calendar arithmetic rather than through chrono's calendar types;
//! everything else, and parsing into a `DateTime`, is chrono's.

use chrono::{DateTime, Datelike, SecondsFormat, TimeDelta, Timelike, Utc};

use super::{ascii_text, VerifyError};

/// Formats a signing time as the SDKs send it: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    TimestampText::new(at).as_str().to_owned()
}

/// [`format_timestamp`], appended to `text`.
pub fn format_timestamp_into(at: DateTime<Utc>, text: &mut String) {
    text.push_str(TimestampText::new(at).as_str());
}

/// A formatted signing time held inline. Years 0 to 9999 take a fast path (digits written by
/// table into a fixed form); others, and leap seconds, are formatted by chrono, whose longest
/// form (`+262143-…`) is 27 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimestampText {
    bytes: [u8; 32],
    len: usize,
}

impl TimestampText {
    pub(super) fn new(at: DateTime<Utc>) -> Self {
        let mut bytes = [0u8; 32];
        if let Some(form) = sdk_timestamp(at) {
            bytes[..24].copy_from_slice(&form);
            return Self { bytes, len: 24 };
        }
        let text = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let len = text.len().min(bytes.len());
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self { bytes, len }
    }

    pub(super) fn as_str(&self) -> &str {
        ascii_text(&self.bytes[..self.len])
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for years 0 to 9999, without leap seconds; else `None`.
fn sdk_timestamp(at: DateTime<Utc>) -> Option<[u8; 24]> {
    const PAIRS: [[u8; 2]; 100] = {
        let mut pairs = [[0u8; 2]; 100];
        let mut n = 0;
        while n < 100 {
            pairs[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
            n += 1;
        }
        pairs
    };
    let (date, time) = (at.date_naive(), at.time());
    let year = usize::try_from(date.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    let millis = time.nanosecond() / 1_000_000;
    if millis > 999 {
        return None;
    }
    let pair = |value: u32| PAIRS[value as usize % 100];
    let of_day = time.num_seconds_from_midnight();
    let [y0, y1] = PAIRS[year / 100];
    let [y2, y3] = PAIRS[year % 100];
    let [m0, m1] = pair(date.month());
    let [d0, d1] = pair(date.day());
    let [h0, h1] = pair(of_day / 3_600);
    let [n0, n1] = pair(of_day / 60 % 60);
    let [s0, s1] = pair(of_day % 60);
    let [f1, f2] = pair(millis % 100);
    let f0 = b'0' + (millis / 100) as u8;
    Some([
        y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', n0, n1, b':', s0, s1, b'.',
        f0, f1, f2, b'Z',
    ])
}

/// Parses any RFC 3339 date-time (any fractional digits, `Z` or an offset).
///
/// This is chrono's parser: to build a `DateTime` it is faster than reading the SDKs' form by
/// hand and converting the milliseconds (BENCHMARKS.md, "Hand-written codecs and why they
/// stay"). Verification reads that form without building a `DateTime` at all.
pub fn parse_timestamp(value: &str) -> Result<DateTime<Utc>, VerifyError> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| VerifyError::MalformedTimestamp)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` exactly, as milliseconds since the epoch, or `None` (the caller
/// falls back to the full parser, which also takes leap seconds). Computed arithmetically,
/// without chrono's calendar types.
pub(super) fn parse_sdk_millis(bytes: &[u8]) -> Option<i64> {
    const DIGITS: [usize; 17] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    let bytes: &[u8; 24] = bytes.try_into().ok()?;
    if [
        bytes[4], bytes[7], bytes[10], bytes[13], bytes[16], bytes[19], bytes[23],
    ] != *b"--T::.Z"
        || DIGITS.iter().any(|&at| !bytes[at].is_ascii_digit())
    {
        return None;
    }
    let digit = |at: usize| i64::from(bytes[at] - b'0');
    let pair = |at: usize| digit(at) * 10 + digit(at + 1);
    let (year, month, day) = (pair(0) * 100 + pair(2), pair(5), pair(8));
    let (hour, minute, second) = (pair(11), pair(14), pair(17));
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000 + pair(20) * 10 + digit(22))
}

/// Days in `month` (1 to 12) of `year`, proleptic Gregorian.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a valid proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Checks the signing time `timestamp` (the header's text) against `now` and `window`, and
/// answers it in milliseconds since the epoch, rounded up. The SDKs' form is checked in
/// integers, without building calendar types; any other RFC 3339 form goes through the full
/// parser. Times any distance away are judged without overflow.
pub fn check_signed_at(
    timestamp: &str,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Result<i64, VerifyError> {
    let Some(millis) = parse_sdk_millis(timestamp.as_bytes()) else {
        let signed_at = parse_timestamp(timestamp)?;
        check_window(signed_at, now, window)?;
        let rounded_up = signed_at.timestamp_subsec_nanos() % 1_000_000 != 0;
        return Ok(signed_at.timestamp_millis() + i64::from(rounded_up));
    };
    let skew_ms = millis - now.timestamp_millis();
    let now_within_ms = i64::from(now.timestamp_subsec_nanos() % 1_000_000);
    let window_ns = window.num_nanoseconds().unwrap_or(i64::MAX).unsigned_abs();
    match skew_ms
        .checked_mul(1_000_000)
        .and_then(|skew_ns| skew_ns.checked_sub(now_within_ms))
    {
        Some(skew_ns) if skew_ns.unsigned_abs() <= window_ns => Ok(millis),
        Some(skew_ns) => check_skew(TimeDelta::nanoseconds(skew_ns), window).map(|()| millis),
        // Hundreds of years away: no window is that wide.
        None => check_skew(TimeDelta::milliseconds(skew_ms), window).map(|()| millis),
    }
}

/// Checks that `signed_at` lies within `window` of `now`, on either side.
pub fn check_window(
    signed_at: DateTime<Utc>,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Result<(), VerifyError> {
    check_skew(signed_at - now, window)
}

/// Checks a signing time's distance from now (signing time minus now) against the window.
pub(super) fn check_skew(skew: TimeDelta, window: TimeDelta) -> Result<(), VerifyError> {
    if skew.abs() <= window {
        Ok(())
    } else {
        Err(VerifyError::OutsideWindow {
            skew_ms: skew.num_milliseconds(),
            window_ms: window.num_milliseconds(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::signing::DEFAULT_WINDOW;

    fn at(value: &str) -> DateTime<Utc> {
        parse_timestamp(value).unwrap()
    }

    /// Issue #12, finding 8: a signing time centuries away overflowed the nanosecond skew and
    /// was reported "ahead" (a panic in debug builds).
    #[test]
    fn far_signing_times_are_judged_without_overflow() {
        let now = at("2026-03-23T12:34:56.789123Z");
        for (timestamp, behind) in [
            ("1000-01-01T00:00:00.000Z", true),
            ("0000-01-01T00:00:00.000Z", true),
            ("9999-12-31T23:59:59.999Z", false),
        ] {
            match check_signed_at(timestamp, now, DEFAULT_WINDOW) {
                Err(VerifyError::OutsideWindow { skew_ms, .. }) => {
                    assert_eq!(skew_ms < 0, behind, "{timestamp}: {skew_ms}");
                }
                other => panic!("{timestamp}: {other:?}"),
            }
        }
        assert_eq!(
            check_signed_at("2026-03-23T12:35:00.000Z", now, DEFAULT_WINDOW),
            Ok(at("2026-03-23T12:35:00.000Z").timestamp_millis())
        );
    }

    #[test]
    fn timestamps_format_with_milliseconds_and_z() {
        assert_eq!(
            format_timestamp(at("2026-03-23T12:34:56.789123Z")),
            "2026-03-23T12:34:56.789Z"
        );
        assert_eq!(
            format_timestamp(at("2026-03-23T14:34:56+02:00")),
            "2026-03-23T12:34:56.000Z"
        );
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_parser() {
        for text in [
            "2026-03-23T12:34:56.789Z",
            "2024-02-29T23:59:59.999Z",
            "1970-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.000Z",
        ] {
            let full = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(
                parse_sdk_millis(text.as_bytes()).and_then(DateTime::from_timestamp_millis),
                Some(full),
                "{text}"
            );
        }
        for text in [
            "2026-02-30T12:34:56.789Z",
            "2026-13-01T12:34:56.789Z",
            "2026-03-23T24:00:00.000Z",
            "2026-03-23T12:34:56.78xZ",
            "2026-03-23T12:34:56+0000",
            "+026-03-23T12:34:56.789Z",
        ] {
            assert_eq!(
                parse_sdk_millis(text.as_bytes()).and_then(DateTime::from_timestamp_millis),
                None,
                "{text}"
            );
        }
        assert!(parse_timestamp("2026-02-30T12:34:56.789Z").is_err());
    }

    // `parse_timestamp` is chrono's parser; the fast path is reached only through
    // `Signer::verify`, so these hold it to chrono directly.
    proptest! {
        #[test]
        fn the_fast_path_reads_every_sdk_timestamp(
            ms in -62_167_219_200_000i64..253_402_300_799_999
        ) {
            let at = DateTime::from_timestamp_millis(ms).unwrap();
            prop_assert_eq!(parse_sdk_millis(format_timestamp(at).as_bytes()), Some(ms));
        }

        #[test]
        fn the_fast_path_never_disagrees_with_chrono(
            (year, month, day) in (0u32..10_000, 0u32..14, 0u32..33),
            (hour, minute, second, millis) in (0u32..25, 0u32..61, 0u32..62, 0u32..1_000),
        ) {
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z"
            );
            let full = DateTime::parse_from_rfc3339(&text).ok().map(|at| at.timestamp_millis());
            match parse_sdk_millis(text.as_bytes()) {
                Some(ms) => prop_assert_eq!(full, Some(ms), "{}", text),
                // Only a leap second is left to the full parser.
                None => prop_assert!(full.is_none() || second == 60, "{}", text),
            }
        }
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-03-23",
            "2026-03-23 12:34:56",
            "1679574896",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                Err(VerifyError::MalformedTimestamp),
                "{bad}"
            );
        }
    }

    #[test]
    fn window_is_symmetric_and_inclusive() {
        let now = at("2026-03-23T12:00:00Z");
        assert!(check_window(at("2026-03-23T12:00:30Z"), now, DEFAULT_WINDOW).is_ok());
        assert!(check_window(at("2026-03-23T11:59:30Z"), now, DEFAULT_WINDOW).is_ok());
        assert_eq!(
            check_window(at("2026-03-23T12:00:30.001Z"), now, DEFAULT_WINDOW),
            Err(VerifyError::OutsideWindow {
                skew_ms: 30_001,
                window_ms: 30_000
            })
        );
        assert!(check_window(at("2026-03-23T11:59:29.999Z"), now, DEFAULT_WINDOW).is_err());
    }
}

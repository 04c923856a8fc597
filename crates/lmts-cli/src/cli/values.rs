//! Option values the client commands read: spans of time (`30d`), date-times and address
//! blocks, each refused with a message that shows the expected form.

use chrono::{DateTime, TimeDelta, Utc};
use lmts_sdk::IpNet;

/// A span: a whole number and a unit, `s`, `m`, `h`, `d` or `w` (`90m`, `30d`, `2w`).
pub fn parse_span(text: &str) -> Result<TimeDelta, String> {
    let expected = || format!("{text:?} is not a span like 3600s, 90m, 12h, 30d or 2w");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| expected())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(expected()),
    };
    number
        .checked_mul(seconds_per_unit)
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(expected)
}

/// A span as a duration (`lmts tokens rotate --overlap`; spans are never negative).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    // Only a negative span fails the conversion, and parse_span makes none.
    Ok(parse_span(text)?.to_std().unwrap_or_default())
}

/// A span longer than zero (`lmts dev identity-token --ttl`).
pub fn parse_lifetime(text: &str) -> Result<TimeDelta, String> {
    let span = parse_span(text)?;
    if span > TimeDelta::zero() {
        Ok(span)
    } else {
        Err(format!(
            "{text:?} is no time at all; give a span longer than zero"
        ))
    }
}

/// An RFC 3339 date-time, in any offset.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is not an RFC 3339 date-time like 2027-01-01T00:00:00Z"))
}

/// An address or CIDR block, as the service reads it.
pub fn parse_block(text: &str) -> Result<IpNet, String> {
    lmts_core::addresses::parse_block(text).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_have_a_number_and_a_unit() {
        assert_eq!(parse_span("30d").unwrap(), TimeDelta::days(30));
        assert_eq!(parse_span("90m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_span("2w").unwrap(), TimeDelta::weeks(2));
        assert_eq!(parse_span("0s").unwrap(), TimeDelta::zero());
        assert_eq!(parse_lifetime("1h").unwrap(), TimeDelta::hours(1));
        assert!(parse_lifetime("0s")
            .unwrap_err()
            .contains("longer than zero"));
        for bad in [
            "",
            "30",
            "d",
            "-1d",
            "1.5h",
            "30 d",
            "1y",
            "99999999999999999999w",
        ] {
            assert!(parse_span(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_and_blocks_are_read_as_the_service_reads_them() {
        assert_eq!(
            parse_time("2027-01-01T02:00:00+02:00").unwrap(),
            parse_time("2027-01-01T00:00:00Z").unwrap()
        );
        assert!(parse_time("tomorrow").is_err());
        assert_eq!(
            parse_block("203.0.113.7/24").unwrap().to_string(),
            "203.0.113.0/24"
        );
        assert!(parse_block("localhost").is_err());
    }
}

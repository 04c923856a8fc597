//! The timestamp parser (with its fast path) agrees with chrono's RFC 3339 parser on any text.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use lmts_core::signing::parse_timestamp;

fuzz_target!(|text: &str| {
    let ours = parse_timestamp(text).ok();
    let chrono = DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc));
    assert_eq!(ours, chrono, "{text:?}");
});

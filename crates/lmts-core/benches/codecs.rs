//! The hand-written codecs of `lmts_core::signing` next to the well-kept crates they stand in
//! for, in the same run: the 44-character signature text against the `base64` crate, and the
//! SDKs' timestamp text against chrono's RFC 3339 formatter and parser. Each pair gets the same
//! input and produces the same value (checked before measuring); a hand-written codec stays
//! only while it is clearly the faster of its pair (BENCHMARKS.md).
//!
//! Besides the pairs as the public functions return them (an owned `String` or `DateTime`),
//! each crate is also measured in the form the request path needs (no allocation, into a
//! fixed buffer or a reused `String`), and the timestamp is measured inside `Signer::verify`,
//! where the SDKs' form is read without building a `DateTime` and any other form goes through
//! chrono's parser: a win that is only an allocation saved is not a reason to keep a codec.
//!
//! `parse_timestamp` itself became chrono's parser when this bench found the hand-written one
//! slower at building a `DateTime`; the hand-written reading of the SDKs' form is measured
//! where it is still used, in `timestamp_in_verify`.
//!
//! `cargo bench -p lmts-core --bench codecs`
#![allow(missing_docs, clippy::unwrap_used)]

use std::{fmt::Write as _, hint::black_box};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use chrono::{format::StrftimeItems, DateTime, SecondsFormat, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use lmts_core::{
    signing::{format_timestamp, format_timestamp_into, parse_timestamp, CanonicalMessage},
    Signature, Signer, TokenSecret,
};

const SIGNATURE: &str = "mgMUpOd7FH4sOSti2MF30YKF9yDq+67VjFksPa5I5eE=";
const TIMESTAMP: &str = "2026-03-23T12:34:56.789Z";
/// The same instant and length in a form only chrono's parser reads (RFC 3339 allows `z`).
const TIMESTAMP_LOWER_Z: &str = "2026-03-23T12:34:56.789z";
const SECRET: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

/// The `base64` crate's decoding of a signature: standard alphabet, canonical padding and
/// trailing bits (what `STANDARD` enforces), then exactly 32 bytes.
fn decode_with_crate(encoded: &str) -> Option<[u8; 32]> {
    STANDARD.decode(encoded).ok()?.try_into().ok()
}

/// The same without allocating: into a 32-byte buffer, which refuses longer input.
fn decode_with_crate_into_array(encoded: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    match STANDARD.decode_slice(encoded, &mut bytes) {
        Ok(32) => Some(bytes),
        _ => None,
    }
}

/// chrono's parsing of the same text, as `parse_timestamp` answers it.
fn parse_with_chrono(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn codecs(c: &mut Criterion) {
    let signature = Signature::from_base64(SIGNATURE).unwrap();
    let bytes = *signature.as_bytes();
    assert_eq!(decode_with_crate(SIGNATURE), Some(bytes));
    assert_eq!(decode_with_crate_into_array(SIGNATURE), Some(bytes));
    assert_eq!(STANDARD.encode(bytes), signature.to_base64());
    let at = parse_timestamp(TIMESTAMP).unwrap();
    assert_eq!(parse_with_chrono(TIMESTAMP), Some(at));
    assert_eq!(
        at.to_rfc3339_opts(SecondsFormat::Millis, true),
        format_timestamp(at)
    );

    let mut group = c.benchmark_group("signature_decode");
    group.bench_function("lmts", |b| {
        b.iter(|| Signature::from_base64(black_box(SIGNATURE)))
    });
    group.bench_function("base64", |b| {
        b.iter(|| decode_with_crate(black_box(SIGNATURE)))
    });
    group.bench_function("base64_into_array", |b| {
        b.iter(|| decode_with_crate_into_array(black_box(SIGNATURE)))
    });
    group.finish();

    let mut group = c.benchmark_group("signature_encode");
    group.bench_function("lmts", |b| b.iter(|| black_box(&signature).to_base64()));
    group.bench_function("base64", |b| b.iter(|| STANDARD.encode(black_box(bytes))));
    group.bench_function("base64_into_array", |b| {
        b.iter(|| {
            let mut text = [0u8; 44];
            let written = STANDARD.encode_slice(black_box(bytes), &mut text);
            (written, text)
        })
    });
    group.finish();

    let items = StrftimeItems::new("%Y-%m-%dT%H:%M:%S%.3fZ")
        .parse()
        .unwrap();
    let mut text = String::with_capacity(32);
    write!(text, "{}", at.format_with_items(items.iter())).unwrap();
    assert_eq!(text, TIMESTAMP);
    let mut group = c.benchmark_group("timestamp_format");
    group.bench_function("lmts", |b| b.iter(|| format_timestamp(black_box(at))));
    group.bench_function("chrono", |b| {
        b.iter(|| black_box(at).to_rfc3339_opts(SecondsFormat::Millis, true))
    });
    group.bench_function("lmts_into_string", |b| {
        b.iter(|| {
            text.clear();
            format_timestamp_into(black_box(at), &mut text);
            black_box(text.len())
        })
    });
    group.bench_function("chrono_into_string", |b| {
        b.iter(|| {
            text.clear();
            write!(text, "{}", black_box(at).format_with_items(items.iter())).unwrap();
            black_box(text.len())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("timestamp_parse");
    group.bench_function("lmts", |b| b.iter(|| parse_timestamp(black_box(TIMESTAMP))));
    group.bench_function("chrono", |b| {
        b.iter(|| parse_with_chrono(black_box(TIMESTAMP)))
    });
    group.finish();

    // Whole verifications of an empty-body request, the same length of message either way
    // (two SHA-256 compressions): the difference is the timestamp's reading and window check.
    let signer = Signer::new(&TokenSecret::from_base64(SECRET).unwrap());
    let now = at + TimeDelta::seconds(1);
    let window = TimeDelta::seconds(30);
    let mut group = c.benchmark_group("timestamp_in_verify");
    for (name, timestamp) in [("lmts", TIMESTAMP), ("chrono", TIMESTAMP_LOWER_Z)] {
        let message = CanonicalMessage::new(timestamp, "POST", "/auth/api-tokens/derive", b"");
        let signature = signer.sign(&message).to_base64();
        let verified = signer.verify(&message, &signature, now, window).unwrap();
        assert_eq!(verified.signed_at(), at);
        group.bench_function(name, |b| {
            b.iter(|| {
                let message = CanonicalMessage::new(
                    black_box(timestamp),
                    "POST",
                    black_box("/auth/api-tokens/derive"),
                    black_box(b""),
                );
                signer.verify(&message, black_box(&signature), now, window)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);

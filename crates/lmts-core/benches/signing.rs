//! Signing and verification next to the physical limit of the scheme: one bare HMAC-SHA256
//! over the same message bytes with the key prepared in advance. `sign` is the MAC of a
//! message given in parts; `sign_request` adds formatting the timestamp and encoding the
//! signature (the three header values, as the SDK sends them); `verify` parses the timestamp,
//! checks the window, decodes the signature and compares in constant time.
//!
//! `cargo bench -p lmts-core --bench signing`
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chrono::{DateTime, TimeDelta};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use lmts_core::{signing::CanonicalMessage, Signer, TokenSecret};
use sha2::Sha256;

const SECRET: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";
const TIMESTAMP: &str = "2026-03-23T12:34:56.789Z";
const TARGET: &str = "/auth/api-tokens/derive";

/// The benchmarked message, its parts hidden from the optimiser.
fn opaque_message(body: &[u8]) -> CanonicalMessage<'_> {
    CanonicalMessage::new(
        black_box(TIMESTAMP),
        "POST",
        black_box(TARGET),
        black_box(body),
    )
}

fn signing(c: &mut Criterion) {
    let secret = TokenSecret::from_base64(SECRET).unwrap();
    let signer = Signer::new(&secret);
    let keyed = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret()).unwrap();
    let now = DateTime::parse_from_rfc3339(TIMESTAMP).unwrap().to_utc() + TimeDelta::seconds(1);
    let window = TimeDelta::seconds(30);

    let mut group = c.benchmark_group("hmac");
    for size in [0usize, 256, 4096] {
        let body = vec![b'x'; size];
        let message = CanonicalMessage::new(TIMESTAMP, "POST", TARGET, &body);
        let bytes = message.to_bytes();
        let signature = signer.sign(&message).to_base64();
        group.throughput(Throughput::Bytes(bytes.len() as u64));

        group.bench_with_input(BenchmarkId::new("bare", size), &bytes, |b, bytes| {
            b.iter(|| {
                let mut mac = keyed.clone();
                mac.update(black_box(bytes));
                black_box(mac.finalize().into_bytes())
            })
        });
        group.bench_with_input(BenchmarkId::new("sign", size), &body, |b, body| {
            b.iter(|| {
                let message = opaque_message(body);
                black_box(signer.sign(&message))
            })
        });
        group.bench_with_input(BenchmarkId::new("sign_request", size), &body, |b, body| {
            b.iter(|| {
                black_box(signer.sign_request(
                    black_box("lmts_benchmark"),
                    black_box(now),
                    "POST",
                    black_box(TARGET),
                    black_box(body),
                ))
            })
        });
        group.bench_with_input(BenchmarkId::new("verify", size), &body, |b, body| {
            b.iter(|| {
                let message = opaque_message(body);
                black_box(
                    signer
                        .verify(&message, black_box(&signature), now, window)
                        .unwrap(),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);

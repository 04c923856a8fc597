//! Per-request signing cost through the SDK's signer: the three `lmts-*` headers for bodies
//! of 0 B, 256 B and 4 KiB, with the key prepared once per credential.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chrono::DateTime;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lmts_sdk::HmacCredentials;

fn signing(c: &mut Criterion) {
    let credentials = HmacCredentials::new(
        "lmts_benchmark",
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
    )
    .unwrap();
    let signer = credentials.signer();
    let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let mut group = c.benchmark_group("sign_request");
    for size in [0usize, 256, 4096] {
        let body = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                black_box(signer.sign_request(
                    black_box("lmts_benchmark"),
                    black_box(at),
                    "POST",
                    "/auth/api-tokens/derive",
                    black_box(body),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);

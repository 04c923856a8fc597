//! The request path's verification with 1 thousand and 1 million cached tokens: look the token
//! up by the `lmts-api-key` header and verify the signature, as the middleware does. Also
//! reports the memory one cached token costs.
//!
//! `cargo bench -p lmts-server --bench verification`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lmts_core::{signing::CanonicalMessage, Scope, Signer, TokenId, TokenSecret};
use lmts_server::{
    service::{CachedToken, TtlCache, Validity},
    store::PartnerProfile,
};

const TIMESTAMP: &str = "2026-03-23T12:34:56.789Z";

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn token_id(i: usize) -> String {
    format!("lmts_{i:024}")
}

fn filled(count: usize) -> (TtlCache<TokenId, Arc<CachedToken>>, Vec<Signer>) {
    let cache = TtlCache::new(Duration::from_secs(3600), count + 1);
    let profile = PartnerProfile {
        id: 1,
        subject: "did:privy:bench".into(),
        account: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
    };
    let mut signers = Vec::new();
    for i in 0..count {
        let secret = TokenSecret::from_bytes((i as u64).to_le_bytes().repeat(4)).unwrap();
        let signer = Signer::new(&secret);
        if i % (count / 10).max(1) == 0 {
            signers.push(signer.clone());
        }
        let id = TokenId::new(token_id(i));
        let entry = Arc::new(CachedToken::new(
            id.clone(),
            profile.clone(),
            vec![Scope::Trading],
            signer,
            Validity::default(),
        ));
        cache.insert(cache.generation(), id, entry);
    }
    (cache, signers)
}

fn verification(c: &mut Criterion) {
    let now = DateTime::parse_from_rfc3339(TIMESTAMP).unwrap().to_utc();
    let window = TimeDelta::seconds(30);
    let mut group = c.benchmark_group("lookup_and_verify");
    for count in [1_000usize, 1_000_000] {
        let before = resident_bytes();
        let (cache, _) = filled(count);
        let after = resident_bytes();
        eprintln!(
            "{count} cached tokens: {:.0} bytes of resident memory each",
            after.saturating_sub(before) as f64 / count as f64
        );
        // A token in the middle of the map, signed as a client would.
        let id = token_id(count / 2);
        let secret = TokenSecret::from_bytes(((count / 2) as u64).to_le_bytes().repeat(4)).unwrap();
        let message = CanonicalMessage::new(TIMESTAMP, "GET", "/auth/api-tokens", b"");
        let signature = Signer::new(&secret).sign(&message).to_base64();
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter(|| {
                let entry = cache.get(black_box(id.as_str())).unwrap();
                black_box(
                    entry
                        .signer
                        .verify(&message, black_box(&signature), now, window)
                        .unwrap(),
                )
            })
        });
        drop(cache);
    }
    group.finish();
}

/// What SPEC C2's checks add to a verified request: a token's expiry and allowed addresses
/// (`Validity::check`), next to the signature check they follow, in the same run.
fn validity(c: &mut Criterion) {
    let now = DateTime::parse_from_rfc3339(TIMESTAMP).unwrap().to_utc();
    let secret = TokenSecret::from_bytes(vec![7; 32]).unwrap();
    let signer = Signer::new(&secret);
    let message = CanonicalMessage::new(TIMESTAMP, "GET", "/auth/api-tokens", b"");
    let signature = signer.sign(&message).to_base64();
    let client: std::net::IpAddr = "203.0.113.200".parse().unwrap();
    // 32 blocks, the most a token holds, the client in the last one: the longest walk.
    let blocks: Vec<ipnet::IpNet> = (0..31)
        .map(|i| format!("10.{i}.0.0/16").parse().unwrap())
        .chain(["203.0.113.0/24".parse().unwrap()])
        .collect();
    let cases = [
        ("none", Validity::default()),
        (
            "expiry",
            Validity {
                expires_at: Some(now + TimeDelta::days(30)),
                ..Validity::default()
            },
        ),
        (
            "expiry_and_32_blocks",
            Validity {
                expires_at: Some(now + TimeDelta::days(30)),
                allowed_ips: blocks.into(),
            },
        ),
    ];
    let mut group = c.benchmark_group("validity");
    group.bench_function("signature_check", |b| {
        let window = TimeDelta::seconds(30);
        b.iter(|| {
            black_box(
                signer
                    .verify(&message, black_box(&signature), now, window)
                    .unwrap(),
            )
        })
    });
    for (name, validity) in cases {
        group.bench_function(name, |b| {
            b.iter(|| black_box(&validity).check(black_box(now), Some(black_box(client))))
        });
    }
    group.finish();
}

criterion_group!(benches, verification, validity);
criterion_main!(benches);

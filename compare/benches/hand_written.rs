//! lmts's token cache and rate limiter beside the well-kept crates that do the same job, on
//! the request path's operation: a hit by borrowed key, and one rate-limit check of a known
//! caller. `cd compare && cargo bench --bench hand_written` (figures in BENCHMARKS.md).
#![allow(missing_docs, clippy::unwrap_used)]

use std::{hint::black_box, num::NonZeroU32, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use lmts_server::service::{RateLimit, RateLimiter, TtlCache};

const ENTRIES: usize = 100_000;
const TTL: Duration = Duration::from_secs(3600);

fn key(i: usize) -> String {
    format!("lmts_{i:024}")
}

fn cache_hit(c: &mut Criterion) {
    let ours = TtlCache::<String, Arc<u64>>::new(TTL, ENTRIES * 2);
    let moka = moka::sync::Cache::<String, Arc<u64>>::builder()
        .max_capacity(ENTRIES as u64 * 2)
        .time_to_live(TTL)
        .build();
    // quick_cache has no TTL: the value carries its load time, checked on a hit as ours does.
    let quick = quick_cache::sync::Cache::<String, (Arc<u64>, std::time::Instant)>::new(ENTRIES * 2);
    for i in 0..ENTRIES {
        let value = Arc::new(i as u64);
        ours.insert(ours.generation(), key(i), value.clone());
        moka.insert(key(i), value.clone());
        quick.insert(key(i), (value, std::time::Instant::now()));
    }
    let wanted = key(ENTRIES / 2);
    let mut group = c.benchmark_group("token_cache_hit");
    group.bench_function("lmts TtlCache", |b| {
        b.iter(|| ours.get(black_box(wanted.as_str())).unwrap())
    });
    group.bench_function("moka sync::Cache", |b| {
        b.iter(|| moka.get(black_box(wanted.as_str())).unwrap())
    });
    group.bench_function("quick_cache sync::Cache", |b| {
        b.iter(|| {
            quick
                .get(black_box(wanted.as_str()))
                .filter(|(_, loaded_at)| loaded_at.elapsed() < TTL)
                .unwrap()
        })
    });
    group.finish();
}

fn rate_limit_check(c: &mut Criterion) {
    // Generous enough that no check is ever refused: the cost of the bookkeeping itself.
    let ours = RateLimiter::new(Some(RateLimit {
        per_minute: 1_000_000_000,
        burst: 1_000_000_000,
    }));
    let quota = governor::Quota::per_minute(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000_000_000).unwrap());
    let theirs = governor::RateLimiter::keyed(quota);
    let callers: Vec<String> = (0..10_000).map(key).collect();
    for caller in &callers {
        ours.check(caller).unwrap();
        theirs.check_key(caller).unwrap();
    }
    let mut group = c.benchmark_group("rate_limit_check");
    let mut next = 0;
    group.bench_function("lmts RateLimiter", |b| {
        b.iter(|| {
            next = (next + 1) % callers.len();
            ours.check(black_box(&callers[next])).unwrap()
        })
    });
    group.bench_function("governor keyed", |b| {
        b.iter(|| {
            next = (next + 1) % callers.len();
            theirs.check_key(black_box(&callers[next])).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, cache_hit, rate_limit_check);
criterion_main!(benches);

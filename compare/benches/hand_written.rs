//! lmts's token cache beside the well-kept crates that do the same job, on the request
//! path's operation: a hit by borrowed key. `cd compare && cargo bench --bench hand_written`
//! (figures in BENCHMARKS.md). The rate limiter was compared here too until governor replaced
//! it (commit ab205c0).
#![allow(missing_docs, clippy::unwrap_used)]

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use lmts_server::service::TtlCache;

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

criterion_group!(benches, cache_hit);
criterion_main!(benches);

//! The service's metrics (issue #15): their names and descriptions, and the process's one
//! Prometheus recorder, which `GET /metrics` renders in the text format. Each metric and a
//! query for it are in `docs/OPERATING.md`.
//!
//! The recorder is global to the process (the `metrics` crate's facade): every server a
//! process runs (tests run several) counts into it.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, SharedString,
    Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by route (the router's pattern), method and status.
pub const HTTP_REQUESTS: &str = "lmts_http_requests_total";
/// Time to answer (to the answer's head), by route.
pub const HTTP_DURATION: &str = "lmts_http_request_duration_seconds";
/// Signed requests checked, by outcome: `accepted` or the reason of the refusal.
pub const SIGNED_REQUESTS: &str = "lmts_signed_requests_total";
/// Token look-ups of the verifier, by result: `hit` (cached) or `miss` (read from the store).
pub const TOKEN_CACHE: &str = "lmts_token_cache_lookups_total";
/// Requests refused for a rate, by which: `token`, `identity`, `auth_failures`.
pub const RATE_LIMITED: &str = "lmts_rate_limited_total";
/// `lastUsedAt` values seen but not yet written to the store.
pub const USAGE_PENDING: &str = "lmts_usage_pending";
/// Other instances' invalidations applied to this one's caches, by kind.
pub const INVALIDATIONS: &str = "lmts_invalidations_received_total";
/// Time from a revocation (this instance's or another's; on PostgreSQL its announcement, just
/// before its commit) to this instance applying it.
pub const INVALIDATION_DELAY: &str = "lmts_invalidation_delay_seconds";
/// Database connections open, by pool, and how many of them idle.
pub const POOL_CONNECTIONS: &str = "lmts_db_pool_connections";
/// See [`POOL_CONNECTIONS`].
pub const POOL_IDLE: &str = "lmts_db_pool_idle_connections";
/// Writes carried by each SQLite group commit.
pub const GROUP_COMMIT: &str = "lmts_sqlite_group_commit_writes";

/// Reloads of the TLS certificate, by outcome: `loaded` or `failed`.
pub const TLS_RELOADS: &str = "lmts_tls_reloads_total";
/// 1 while the certificate files on disk cannot be loaded (the one in use is older), else 0.
pub const TLS_RELOAD_FAILING: &str = "lmts_tls_reload_failing";
/// When the certificate chain in use stops being valid (its earliest `notAfter`), in Unix
/// seconds, by certificate file.
pub const TLS_VALID_UNTIL: &str = "lmts_tls_certificate_expiry_timestamp_seconds";

/// The buckets of [`GROUP_COMMIT`]: writes a commit.
const GROUP_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The buckets of [`INVALIDATION_DELAY`], in seconds: from a millisecond to ten seconds.
const DELAY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of [`HTTP_DURATION`], in seconds: from half a millisecond to two and a half.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Why a signed request was refused, or that it was accepted ([`SIGNED_REQUESTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passed.
    Accepted,
    /// The `lmts-*` headers were missing, repeated or malformed.
    Malformed,
    /// The timestamp was outside the window.
    Window,
    /// No live token has the id, or the signature does not match.
    NotAuthentic,
    /// The token expired.
    Expired,
    /// The client is outside the token's `allowedIps`.
    Address,
    /// The signature was accepted before (SPEC B6).
    Replayed,
    /// The token's or the address's rate was spent.
    RateLimited,
    /// The store could not answer.
    Unavailable,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Malformed => "malformed",
            Outcome::Window => "window",
            Outcome::NotAuthentic => "not_authentic",
            Outcome::Expired => "expired",
            Outcome::Address => "address",
            Outcome::Replayed => "replayed",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// The process's recorder, installed at the first call; `None` when another recorder was
/// installed first (an embedding application's), and `/metrics` then answers 503.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &LATENCY_BUCKETS)
                .and_then(|builder| {
                    builder
                        .set_buckets_for_metric(Matcher::Full(GROUP_COMMIT.into()), &GROUP_BUCKETS)
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(INVALIDATION_DELAY.into()),
                        &DELAY_BUCKETS,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics are off: another recorder is installed");
                    None
                }
            }
        })
        .as_ref()
}

/// What each metric means, for the `# HELP` lines.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "Requests answered, by route, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer a request (to its answer's head), by route."
    );
    describe_counter!(
        SIGNED_REQUESTS,
        "Signed requests checked, by outcome: accepted, or why they were refused."
    );
    describe_counter!(
        TOKEN_CACHE,
        "Token look-ups of the verifier: hit (cached) or miss (read from the store)."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused for a spent rate, by which rate."
    );
    describe_gauge!(
        USAGE_PENDING,
        "lastUsedAt values not yet written to the store."
    );
    describe_counter!(
        INVALIDATIONS,
        "Other instances' invalidations applied to this one's caches, by kind."
    );
    describe_histogram!(
        INVALIDATION_DELAY,
        Unit::Seconds,
        "Time from a revocation or rotation (just before its commit) to this instance applying it."
    );
    describe_gauge!(POOL_CONNECTIONS, "Database connections open, by pool.");
    describe_gauge!(POOL_IDLE, "Database connections idle, by pool.");
    describe_histogram!(GROUP_COMMIT, "Writes carried by each SQLite group commit.");
    describe_gauge!(
        TLS_RELOAD_FAILING,
        "1 while the TLS certificate files cannot be loaded and an older certificate is served."
    );
    describe_gauge!(
        TLS_VALID_UNTIL,
        "When the TLS certificate chain in use stops being valid (its earliest notAfter), in Unix seconds, by certificate file."
    );
    describe_counter!(
        TLS_RELOADS,
        "Reloads of the TLS certificate and key, by outcome: loaded, or failed (the one in use stays)."
    );
}

/// Counts an answered request and its time.
pub fn answered(route: SharedString, method: &'static str, status: u16, took: Duration) {
    histogram!(HTTP_DURATION, "route" => route.clone()).record(took.as_secs_f64());
    counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status_label(status))
        .increment(1);
}

/// A status as a label: the ones lmts answers without an allocation, any other formatted.
fn status_label(status: u16) -> SharedString {
    const KNOWN: [(u16, &str); 18] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    KNOWN.iter().find(|(code, _)| *code == status).map_or_else(
        || SharedString::from_owned(status.to_string()),
        |(_, label)| SharedString::const_str(label),
    )
}

/// Counts a signed request's outcome.
pub fn signed(outcome: Outcome) {
    counter!(SIGNED_REQUESTS, "outcome" => outcome.label()).increment(1);
}

/// Counts a token look-up.
pub fn token_lookup(hit: bool) {
    counter!(TOKEN_CACHE, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// Counts a refusal for a spent rate (`token`, `identity`, `auth_failures`).
pub fn rate_limited(which: &'static str) {
    counter!(RATE_LIMITED, "limit" => which).increment(1);
}

/// Sets how many `lastUsedAt` values wait to be written.
pub fn usage_pending(count: usize) {
    gauge!(USAGE_PENDING).set(count as f64);
}

/// Counts another instance's invalidation (`token`, `profile`, `all`).
pub fn invalidation_received(kind: &'static str) {
    counter!(INVALIDATIONS, "kind" => kind).increment(1);
}

/// Records how long a revocation took to reach this instance, in milliseconds by the two
/// instances' clocks (a negative difference, from clocks apart, counts as zero).
pub fn invalidation_delay(milliseconds: i64) {
    histogram!(INVALIDATION_DELAY).record(milliseconds.max(0) as f64 / 1000.0);
}

/// Sets a database pool's open and idle connections.
pub fn pool(name: &'static str, open: u32, idle: usize) {
    gauge!(POOL_CONNECTIONS, "pool" => name).set(f64::from(open));
    gauge!(POOL_IDLE, "pool" => name).set(idle as f64);
}

/// Records how many writes one SQLite group commit carried.
pub fn group_commit(writes: usize) {
    histogram!(GROUP_COMMIT).record(writes as f64);
}

/// Counts a reload of the TLS certificate.
pub fn tls_reload(loaded: bool) {
    counter!(TLS_RELOADS, "outcome" => if loaded { "loaded" } else { "failed" }).increment(1);
}

/// Sets whether the TLS certificate files fail to load.
pub fn tls_failing(failing: bool) {
    gauge!(TLS_RELOAD_FAILING).set(if failing { 1.0 } else { 0.0 });
}

/// Sets when the certificate chain read from the file `cert` stops being valid.
pub fn tls_valid_until(cert: &str, until: SystemTime) {
    let seconds = until
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    gauge!(TLS_VALID_UNTIL, "cert" => cert.to_owned()).set(seconds);
}

/// Drains histograms' idle buckets (maintenance; the recorder asks for it now and then).
pub fn upkeep() {
    if let Some(handle) = recorder() {
        handle.run_upkeep();
    }
}

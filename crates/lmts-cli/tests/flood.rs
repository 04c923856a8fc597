//! Issue #12, finding 1, through a real HTTP/2 client against a real `lmts serve`: many
//! HTTP/2 connections, each with as many concurrent streams as the server allows, carrying
//! made-up `lmts-*` headers and 65 000-byte bodies left unfinished. Before the fix the service
//! read every body in full before looking the token up, and grew by hundreds of megabytes.
//! Now each such request is refused from its head, the bodies cost at most the flow-control
//! windows, and `/health` keeps answering.
//!
//! `LMTS_FLOOD_CONNECTIONS=100 cargo test --release -p lmts-cli --test flood -- --nocapture`
//! prints the figures BENCHMARKS.md records (add `LMTS_FLOOD_FAILURE_BUDGET=on` for the
//! default per-address failure budget).
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::Service;
use tokio::net::TcpStream;

const STREAMS_PER_CONNECTION: usize = 64;
/// Extra `lmts serve` options (LMTS_FLOOD_SERVE_ARGS), to measure other limits.
fn serve_args() -> Vec<String> {
    std::env::var("LMTS_FLOOD_SERVE_ARGS")
        .map(|args| args.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}
const BODY_BYTES: usize = 65_000;

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap()
}

/// One flooding connection: opens its streams, sends each a head and most of a body, and
/// keeps them unfinished. Answers the statuses it got back.
async fn flood(address: String) -> Vec<u16> {
    let stream = TcpStream::connect(&address).await.unwrap();
    let (sender, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut responses = Vec::new();
    let mut held = Vec::new();
    for i in 0..STREAMS_PER_CONNECTION {
        let Ok(mut sender) = sender.clone().ready().await else {
            break;
        };
        let request = http::Request::get(format!("http://{address}/auth/api-tokens"))
            .header("lmts-api-key", format!("lmts_made_up_{i}"))
            .header(
                "lmts-timestamp",
                lmts_core::signing::format_timestamp(lmts_sdk::clock::Clock::system().now()),
            )
            .header("lmts-signature", "A".repeat(43) + "=")
            .header("content-length", BODY_BYTES.to_string())
            .body(())
            .unwrap();
        let Ok((response, mut body)) = sender.send_request(request, false) else {
            break;
        };
        body.reserve_capacity(BODY_BYTES - 1);
        let _ = body.send_data(Bytes::from(vec![b'x'; BODY_BYTES - 1]), false);
        held.push(body);
        responses.push(response);
    }
    let mut statuses = Vec::new();
    for response in responses {
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(20), response).await {
            statuses.push(response.status().as_u16());
        }
    }
    drop(held);
    statuses
}

/// Asks `/health` every 5 ms from a thread and runtime of its own (so that the flood's client
/// tasks do not delay it), sampling the service's resident memory, until stopped.
struct HealthProber {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<Duration>, u64)>,
}

impl HealthProber {
    fn start(url: String, pid: u32, resident: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = reqwest::Client::new();
                let (mut latencies, mut peak) = (Vec::new(), resident);
                while !stopping.load(Ordering::Acquire) {
                    let started = Instant::now();
                    let answer =
                        tokio::time::timeout(Duration::from_secs(10), client.get(&url).send())
                            .await
                            .expect("/health answers during the flood")
                            .unwrap();
                    assert_eq!(answer.status(), 200);
                    latencies.push(started.elapsed());
                    peak = peak.max(resident_kib(pid));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (latencies, peak)
            })
        });
        Self { stop, thread }
    }

    /// The latencies seen and the peak resident memory.
    fn stop(self) -> (Vec<Duration>, u64) {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_flood_of_unauthenticated_bodies_costs_bounded_memory() {
    let connections: usize = std::env::var("LMTS_FLOOD_CONNECTIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    // The per-address failure budget answers a one-address flood with 429s before any work;
    // off unless asked for, so that every request goes as far as an attacker's from many
    // addresses would. Logging as in production: a debug line per request would measure the
    // log.
    let budget = match std::env::var("LMTS_FLOOD_FAILURE_BUDGET").as_deref() {
        Ok("on") => "60",
        _ => "0",
    };
    let mut args = vec!["--auth-failures-per-minute".to_owned(), budget.to_owned()];
    args.extend(serve_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = Service::start_logging(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &args,
        "info",
    )
    .await;
    let pid = service.child.id();
    let client = reqwest::Client::new();
    let health = format!("{}/health", service.base);
    for _ in 0..20 {
        client.get(&health).send().await.unwrap();
    }
    let before = resident_kib(pid);

    let address = service.base.trim_start_matches("http://").to_owned();
    let prober = HealthProber::start(health.clone(), pid, before);
    let floods: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(flood(address.clone())))
        .collect();
    let mut statuses = Vec::new();
    for flood in floods {
        statuses.extend(flood.await.unwrap());
    }
    let (mut latencies, peak) = prober.stop();
    let after = resident_kib(pid);
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    println!(
        "{connections} connections x {STREAMS_PER_CONNECTION} streams: {} answered, resident {before} KiB before, {peak} KiB at peak, {after} KiB after; /health p99 {:.1} ms over {} requests",
        statuses.len(),
        p99.as_secs_f64() * 1000.0,
        latencies.len()
    );
    assert!(!statuses.is_empty(), "the flood's requests were answered");
    assert!(
        statuses
            .iter()
            .all(|status| *status == 401 || *status == 429),
        "every made-up request is refused: {statuses:?}"
    );
    assert!(
        peak - before < 64 * 1024,
        "resident memory grew by {} KiB",
        peak - before
    );
}

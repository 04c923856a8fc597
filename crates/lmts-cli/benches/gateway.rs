//! The gateway under load, next to nginx, in one run (issue #13's measures):
//!
//! - signed 256-byte POSTs through `lmts serve --upstream` (the token service and gateway in
//!   one process, as `lmts gateway` runs) against unsigned ones through nginx `proxy_pass`, in
//!   front of the same trivial upstream (nginx answering 200), and straight to the upstream;
//! - signed GETs through the gateway (no replay record) next to the POSTs (one each);
//! - `/ext-authz/orders` (signed POSTs, and GETs, which write no replay record) next to
//!   `/health` on the same process;
//! - the added latency of the gateway over a direct call, on one connection;
//! - with `LMTS_BENCH_DATABASE_URL` (or a PostgreSQL the test kit can start), the gateway's
//!   POSTs and GETs again on PostgreSQL.
//!
//! `cargo bench -p lmts-cli --bench gateway` (env `LMTS_BENCH_SECS`, default 5 s a scenario;
//! `LMTS_BENCH_CONNECTIONS`, default 32). Every process shares this machine's cores: ratios,
//! not absolute figures, are what carries over.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    clippy::print_stdout
)]

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1, Request};
use hyper_util::rt::TokioIo;
use lmts_core::{Signer, TokenSecret};
use lmts_testkit::nginx::Nginx;
use tokio::net::TcpStream;

const POLICY: &str = "default = \"deny\"\n\n[[route]]\nmethod = \"POST\"\npath = \"/orders\"\nscopes = [\"trading\"]\n\n[[route]]\nmethod = \"GET\"\npath = \"/orders/**\"\nscopes = [\"trading\"]\n";

/// One kind of request, and where it goes.
struct Scenario {
    name: &'static str,
    address: SocketAddr,
    method: &'static str,
    target: &'static str,
    /// What the signature covers, when it differs from `target` (ext-authz's original).
    signed_target: Option<&'static str>,
    signing: Option<Arc<Signing>>,
}

struct Signing {
    token_id: String,
    signer: Signer,
}

/// What a run of a scenario measured.
struct Measured {
    name: &'static str,
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// A 256-byte order body, unique per request so that no two signed POSTs collide in the
/// replay record.
fn order_body(n: u64) -> Bytes {
    let head = format!("{{\"n\":{n},\"market\":\"btc-usd\",\"side\":\"buy\",\"pad\":\"");
    let mut body = head.into_bytes();
    body.resize(254, b'x');
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

fn request(scenario: &Scenario, n: u64) -> Request<Full<Bytes>> {
    let body = if scenario.method == "POST" {
        order_body(n)
    } else {
        Bytes::new()
    };
    let mut builder = Request::builder()
        .method(scenario.method)
        .uri(scenario.target)
        .header("host", scenario.address.to_string());
    if let Some(signing) = &scenario.signing {
        let now = lmts_sdk::clock::Clock::system().now();
        let target = scenario.signed_target.unwrap_or(scenario.target);
        let headers =
            signing
                .signer
                .sign_request(&signing.token_id, now, scenario.method, target, &body);
        for (name, value) in headers.pairs() {
            builder = builder.header(name, value);
        }
    }
    builder.body(Full::new(body)).unwrap()
}

/// One keep-alive connection sending requests back to back until `deadline`.
async fn connection(
    scenario: Arc<Scenario>,
    deadline: Instant,
    counter: Arc<AtomicU64>,
) -> (Vec<u64>, u64) {
    let stream = TcpStream::connect(scenario.address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while Instant::now() < deadline {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let ok = match sender.send_request(request(&scenario, n)).await {
            Ok(response) => {
                let status = response.status();
                let drained = response.into_body().collect().await.is_ok();
                status.is_success() && drained
            }
            Err(_) => false,
        };
        latencies.push(started.elapsed().as_micros() as u64);
        if !ok {
            errors += 1;
            if sender.ready().await.is_err() {
                break;
            }
        }
    }
    (latencies, errors)
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn measure(scenario: Scenario, connections: usize, duration: Duration) -> Measured {
    let scenario = Arc::new(scenario);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(connection(
                Arc::clone(&scenario),
                deadline,
                Arc::clone(&counter),
            ))
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (mut some, failed) = task.await.unwrap();
        latencies.append(&mut some);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Measured {
        name: scenario.name,
        per_second: (latencies.len() as u64 - errors) as f64 / elapsed,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        errors,
    }
}

/// A child `lmts` process, killed when dropped.
struct Lmts {
    child: Child,
    address: SocketAddr,
}

impl Drop for Lmts {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lmts_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lmts"))
}

async fn start_lmts(dir: &Path, upstream: &Nginx, database_url: Option<&str>) -> Lmts {
    let address = lmts_testkit::free_loopback_address();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut command = lmts_command();
    command
        .args([
            "serve",
            "--dev",
            "--listen",
            &address.to_string(),
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg("--policy")
        .arg(&policy)
        .args(["--upstream", &upstream.url()])
        .args([
            "--rate-limit-per-minute",
            "0",
            "--auth-failures-per-minute",
            "0",
        ])
        .args(["--max-connections", "100000"])
        .env("LMTS_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let lmts = Lmts {
        child: command.spawn().unwrap(),
        address,
    };
    for _ in 0..400 {
        if TcpStream::connect(address).await.is_ok() {
            return lmts;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("lmts serve did not come up on {address}");
}

/// A trading token derived on `lmts`.
async fn derive(lmts: &Lmts, dir: &Path) -> Arc<Signing> {
    let output = lmts_command()
        .args([
            "dev",
            "identity-token",
            "--account",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    let identity = String::from_utf8(output.stdout).unwrap();
    let derived: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/auth/api-tokens/derive", lmts.address))
        .header("identity", format!("Bearer {}", identity.trim()))
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = TokenSecret::from_base64(derived["secret"].as_str().unwrap()).unwrap();
    Arc::new(Signing {
        token_id: derived["tokenId"].as_str().unwrap().to_owned(),
        signer: Signer::new(&secret),
    })
}

fn scenario(
    name: &'static str,
    address: SocketAddr,
    method: &'static str,
    target: &'static str,
) -> Scenario {
    Scenario {
        name,
        address,
        method,
        target,
        signed_target: None,
        signing: None,
    }
}

fn signed(mut scenario: Scenario, signing: &Arc<Signing>) -> Scenario {
    scenario.signing = Some(Arc::clone(signing));
    scenario
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn print_table(title: &str, results: &[Measured]) {
    println!("\n{title}");
    println!("| scenario | req/s | ratio to first | p50 µs | p99 µs | p99 ratio | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let Some(first) = results.first() else { return };
    for m in results {
        println!(
            "| {} | {:.0} | {:.2}x | {} | {} | {:.2}x | {} |",
            m.name,
            m.per_second,
            m.per_second / first.per_second,
            m.p50_us,
            m.p99_us,
            m.p99_us as f64 / first.p99_us.max(1) as f64,
            m.errors
        );
    }
}

/// How many connections each scenario runs on, for how long.
#[derive(Debug, Clone, Copy)]
struct Load {
    connections: usize,
    duration: Duration,
}

impl Load {
    /// Measures `scenarios` in turn and prints them as one table under `title`.
    async fn table(self, title: &str, scenarios: Vec<Scenario>) -> Vec<Measured> {
        let mut results = Vec::new();
        for scenario in scenarios {
            results.push(measure(scenario, self.connections, self.duration).await);
        }
        print_table(title, &results);
        results
    }
}

/// A POST of a 256-byte order to `/orders`.
fn order(name: &'static str, address: SocketAddr) -> Scenario {
    scenario(name, address, "POST", "/orders")
}

/// A signed request to `/ext-authz{original}`, signed for `original`.
fn ext_authz(
    name: &'static str,
    lmts: &Lmts,
    method: &'static str,
    (target, original): (&'static str, &'static str),
    signing: &Arc<Signing>,
) -> Scenario {
    let mut scenario = signed(scenario(name, lmts.address, method, target), signing);
    scenario.signed_target = Some(original);
    scenario
}

/// Signed POSTs and GETs through the gateway of `lmts`, with a token derived there.
fn posts_and_gets(names: [&'static str; 2], lmts: &Lmts, signing: &Arc<Signing>) -> Vec<Scenario> {
    vec![
        signed(order(names[0], lmts.address), signing),
        signed(
            scenario(names[1], lmts.address, "GET", "/orders/1?depth=5"),
            signing,
        ),
    ]
}

/// nginx answering 200 to everything (the trivial upstream), and nginx `proxy_pass` to it.
fn nginx_pair() -> (Nginx, Nginx) {
    let upstream = Nginx::start(
        "    server {\n        listen {listen};\n        keepalive_requests 1000000;\n        location / {\n            return 200 \"ok\\n\";\n        }\n    }\n",
        "1",
    );
    let proxy = Nginx::start(
        &format!("    upstream api {{\n        server {};\n        keepalive 64;\n    }}\n    server {{\n        listen {{listen}};\n        keepalive_requests 1000000;\n        location / {{\n            proxy_pass http://api;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }}\n    }}\n", upstream.address()),
        "auto",
    );
    (upstream, proxy)
}

/// The replay record's cost: the gateway's POSTs and GETs on SQLite (`lmts`), then on
/// PostgreSQL.
async fn replay_costs(load: Load, lmts: Lmts, dir: &Path, upstream: &Nginx) {
    let signing = derive(&lmts, dir).await;
    let names = [
        "signed POST, SQLite (replay record)",
        "signed GET, SQLite (none)",
    ];
    let mut scenarios = Vec::new();
    for scenario in posts_and_gets(names, &lmts, &signing) {
        scenarios.push(measure(scenario, load.connections, load.duration).await);
    }
    drop(lmts);
    let url = match std::env::var("LMTS_BENCH_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => lmts_testkit::PgServer::shared().database().await,
    };
    let pg_dir = tempfile::tempdir().unwrap();
    let lmts = start_lmts(pg_dir.path(), upstream, Some(&url)).await;
    let signing = derive(&lmts, pg_dir.path()).await;
    let names = [
        "signed POST, PostgreSQL (replay record)",
        "signed GET, PostgreSQL (none)",
    ];
    for scenario in posts_and_gets(names, &lmts, &signing) {
        scenarios.push(measure(scenario, load.connections, load.duration).await);
    }
    print_table("What the replay record costs on each backend", &scenarios);
}

#[tokio::main]
async fn main() {
    let duration = Duration::from_secs(env_number("LMTS_BENCH_SECS", 5));
    let connections = env_number("LMTS_BENCH_CONNECTIONS", 32) as usize;
    let (load, one) = (
        Load {
            connections,
            duration,
        },
        Load {
            connections: 1,
            duration,
        },
    );
    let (upstream, proxy) = nginx_pair();
    let dir = tempfile::tempdir().unwrap();
    let lmts = start_lmts(dir.path(), &upstream, None).await;
    let signing = derive(&lmts, dir.path()).await;
    println!(
        "{connections} connections, {} s a scenario",
        duration.as_secs()
    );
    let through = vec![
        order("nginx proxy_pass, unsigned POST", proxy.address()),
        signed(
            order("lmts gateway, signed POST (SQLite)", lmts.address),
            &signing,
        ),
        order("upstream direct, unsigned POST", upstream.address()),
    ];
    load.table("Through a proxy to the same upstream", through)
        .await;
    let doors = vec![
        scenario("/health", lmts.address, "GET", "/health"),
        ext_authz(
            "/ext-authz/orders, signed POST",
            &lmts,
            "POST",
            ("/ext-authz/orders", "/orders"),
            &signing,
        ),
        ext_authz(
            "/ext-authz/orders/1, signed GET",
            &lmts,
            "GET",
            ("/ext-authz/orders/1", "/orders/1"),
            &signing,
        ),
    ];
    load.table("ext-authz next to /health, same process", doors)
        .await;
    let latency = vec![
        order("upstream direct, 1 connection", upstream.address()),
        signed(order("lmts gateway, 1 connection", lmts.address), &signing),
        order("nginx proxy_pass, 1 connection", proxy.address()),
    ];
    one.table("Added latency, one connection", latency).await;
    replay_costs(load, lmts, dir.path(), &upstream).await;
}

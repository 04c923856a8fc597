//! `lmts bench`: starts a fresh `lmts serve` child process (dev identity, no rate limit, no
//! token limit) and measures it with N connections for a fixed time per scenario, every
//! request signed afresh with the SDK's signer. Prints requests per second and latency
//! percentiles, and the ratios to the `/health` baseline.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::TimeDelta;
use lmts_core::{HmacCredentials, Signer};
use lmts_sdk::Client;
use lmts_server::{
    clock::Clock,
    identity::dev::{DevIssuer, DEV_APP_ID},
};
use serde::Serialize;

use crate::{
    cli::{BenchArgs, Scenario},
    exit::CommandError,
    output::Output,
};

/// A partner per scenario, so that one scenario's tokens do not weigh on another's lists.
fn account_for(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Health | Scenario::List => "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        Scenario::Derive => "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        Scenario::Mix => "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    }
}

/// The measured service; killed when dropped.
struct MeasuredService {
    child: Child,
}

impl Drop for MeasuredService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scenario's result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Measured {
    scenario: String,
    requests: u64,
    errors: u64,
    requests_per_second: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    /// The service's resident memory after the scenario, in KiB (Linux only).
    service_rss_kib: Option<u64>,
}

/// Resident memory of process `pid` in KiB, from `/proc` (None elsewhere).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one connection does, once.
#[derive(Clone)]
struct Work {
    http: reqwest::Client,
    base: String,
    identity: Arc<String>,
}

impl Work {
    async fn health(&self) -> bool {
        match self.http.get(format!("{}/health", self.base)).send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn signed(
        &self,
        credentials: &(HmacCredentials, Signer),
        method: reqwest::Method,
        target: &str,
    ) -> bool {
        let headers = credentials.1.sign_request(
            credentials.0.token_id.as_str(),
            Clock::system().now(),
            method.as_str(),
            target,
            b"",
        );
        let mut request = self.http.request(method, format!("{}{target}", self.base));
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn derive(&self) -> Option<(HmacCredentials, Signer)> {
        let response = self
            .http
            .post(format!("{}/auth/api-tokens/derive", self.base))
            .header("identity", format!("Bearer {}", self.identity))
            .body("{}")
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let derived: lmts_sdk::DeriveApiTokenResponse = response.json().await.ok()?;
        let credentials = derived.credentials();
        let signer = credentials.signer();
        Some((credentials, signer))
    }
}

async fn run_scenario(
    scenario: Scenario,
    work: &Work,
    connections: u32,
    duration: Duration,
) -> Measured {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let work = work.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut errors = 0u64;
            let own = match scenario {
                Scenario::List => match work.derive().await {
                    Some(credentials) => Some(credentials),
                    // Without a token of its own this connection cannot list: one error, rather
                    // than a loop that never awaits and fills the latencies with zeros.
                    None => return (Vec::new(), 1),
                },
                _ => None,
            };
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline {
                let started = Instant::now();
                let ok = match scenario {
                    Scenario::Health => work.health().await,
                    Scenario::List => match &own {
                        Some(credentials) => {
                            work.signed(credentials, reqwest::Method::GET, "/auth/api-tokens")
                                .await
                        }
                        None => unreachable!("a list connection without a token returned above"),
                    },
                    Scenario::Derive => work.derive().await.is_some(),
                    Scenario::Mix => match work.derive().await {
                        Some(credentials) => {
                            let listed = work
                                .signed(&credentials, reqwest::Method::GET, "/auth/api-tokens")
                                .await;
                            let target = format!("/auth/api-tokens/{}", credentials.0.token_id);
                            let revoked = work
                                .signed(&credentials, reqwest::Method::DELETE, &target)
                                .await;
                            listed && revoked
                        }
                        None => false,
                    },
                };
                latencies.push(started.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
            }
            // Leave the partner's list as it was, so that repeated scenarios measure the same.
            if let Some(credentials) = &own {
                let target = format!("/auth/api-tokens/{}", credentials.0.token_id);
                work.signed(credentials, reqwest::Method::DELETE, &target)
                    .await;
            }
            (latencies, errors)
        });
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for (mut part, part_errors) in tasks.join_all().await {
        latencies.append(&mut part);
        errors += part_errors;
    }
    let elapsed = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    latencies.sort_unstable();
    let name = match scenario {
        Scenario::Health => "health",
        Scenario::List => "list",
        Scenario::Derive => "derive",
        Scenario::Mix => "mix (derive+list+revoke)",
    };
    Measured {
        scenario: name.to_owned(),
        requests: latencies.len() as u64,
        errors,
        requests_per_second: latencies.len() as f64 / elapsed,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        p999_us: percentile(&latencies, 0.999),
        service_rss_kib: None,
    }
}

fn start_service(
    data: &std::path::Path,
    database_url: Option<&str>,
) -> Result<(MeasuredService, String), CommandError> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "serve",
            "--dev",
            "--listen",
            &listen,
            "--rate-limit-per-minute",
            "0",
        ])
        .args(["--max-active-tokens", "0"])
        .arg("--data-dir")
        .arg(data)
        .env("LMTS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    Ok((
        MeasuredService {
            child: command.spawn()?,
        },
        format!("http://{listen}"),
    ))
}

/// Runs `lmts bench`.
pub async fn run(args: BenchArgs, output: &Output) -> Result<(), CommandError> {
    let scenarios = if args.scenarios.is_empty() {
        vec![
            Scenario::Health,
            Scenario::List,
            Scenario::Derive,
            Scenario::Mix,
        ]
    } else {
        args.scenarios.clone()
    };
    let data = tempfile::tempdir()?;
    let (service, base) = start_service(data.path(), args.database_url.as_deref())?;
    let pid = service.child.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections as usize)
        .build()?;
    let mut up = false;
    for _ in 0..400 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if !up {
        return Err("the measured service did not start".into());
    }
    let issuer = DevIssuer::load_or_create(data.path())?;
    let identity_for = |scenario| {
        issuer.issue(
            account_for(scenario),
            "privy.io",
            DEV_APP_ID,
            Clock::system().now(),
            TimeDelta::hours(2),
        )
    };
    // Fail early, with the SDK's error, if the service does not accept the identity.
    Client::new(&base)?
        .api_tokens()
        .get_capabilities(&identity_for(Scenario::Health)?)
        .await?;
    output.note(&format!(
        "lmts bench: {} connections, {} s per scenario, service on {} at {base}",
        args.connections,
        args.duration_secs,
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    ));
    let mut results = Vec::new();
    for scenario in scenarios {
        let work = Work {
            http: http.clone(),
            base: base.clone(),
            identity: Arc::new(identity_for(scenario)?),
        };
        let mut measured = run_scenario(
            scenario,
            &work,
            args.connections,
            Duration::from_secs(args.duration_secs),
        )
        .await;
        measured.service_rss_kib = resident_kib(pid);
        output.note(&format!(
            "  {}: {:.0} req/s",
            measured.scenario, measured.requests_per_second
        ));
        results.push(measured);
    }
    let baseline = results
        .iter()
        .find(|m| m.scenario == "health")
        .map(|m| (m.requests_per_second, m.p99_us));
    if output.is_json() {
        output.json(&results);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            let (throughput_ratio, p99_ratio) = match baseline {
                Some((rps, p99)) if rps > 0.0 && p99 > 0 => (
                    format!("{:.2}", m.requests_per_second / rps),
                    format!("{:.2}", m.p99_us as f64 / p99 as f64),
                ),
                _ => ("-".into(), "-".into()),
            };
            vec![
                m.scenario.clone(),
                m.requests.to_string(),
                m.errors.to_string(),
                format!("{:.0}", m.requests_per_second),
                format!("{:.2}", m.p50_us as f64 / 1000.0),
                format!("{:.2}", m.p99_us as f64 / 1000.0),
                format!("{:.2}", m.p999_us as f64 / 1000.0),
                throughput_ratio,
                p99_ratio,
                m.service_rss_kib
                    .map_or_else(|| "-".into(), |kib| format!("{:.1}", kib as f64 / 1024.0)),
            ]
        })
        .collect();
    output.table(
        &[
            "SCENARIO",
            "REQUESTS",
            "ERRORS",
            "REQ/S",
            "P50 MS",
            "P99 MS",
            "P99.9 MS",
            "REQ/S ÷ HEALTH",
            "P99 ÷ HEALTH",
            "SERVICE RSS MB",
        ],
        &rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&sorted, 0.50), 500);
        assert_eq!(percentile(&sorted, 0.99), 990);
        assert_eq!(percentile(&sorted, 0.999), 999);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.999), 7);
    }
}

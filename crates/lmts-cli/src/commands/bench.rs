//! `lmts bench`: starts a fresh `lmts serve` child process (dev identity, no rate limit, no
//! token limit), or drives an existing deployment (`--base-url`, with an identity token or
//! saved credentials), and measures it with N connections for a fixed time per scenario, every
//! request signed afresh with the SDK's signer. Shows progress each second; prints requests per
//! second and latency percentiles, and the ratios to the `/health` baseline.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::TimeDelta;
use lmts_core::{error_chain::error_chain, HmacCredentials, Signer};
use lmts_sdk::Client;
use lmts_server::{
    clock::Clock,
    identity::dev::{DevIssuer, DEV_APP_ID},
};
use reqwest::header::HeaderValue;
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

/// A derived token's credentials with its signer prepared once.
type SigningToken = (HmacCredentials, Signer);

/// The requests the scenarios send, URLs parsed and the identity header built once.
#[derive(Clone)]
struct Work {
    http: reqwest::Client,
    base: reqwest::Url,
    health: reqwest::Url,
    list: reqwest::Url,
    derive: reqwest::Url,
    /// The identity derives are made with, if any.
    identity: Option<HeaderValue>,
    /// Saved credentials list connections share when there is no identity to derive with.
    saved: Option<std::sync::Arc<SigningToken>>,
    /// Requests sent so far in the scenario running, for the progress line.
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The request target of the list endpoint, as signed.
const LIST_TARGET: &str = "/auth/api-tokens";

impl Work {
    /// Work against the service at `base`, deriving tokens with `identity`, or listing with
    /// `saved` credentials.
    fn new(
        http: reqwest::Client,
        base: &str,
        identity: Option<&str>,
        saved: Option<&HmacCredentials>,
    ) -> Result<Self, CommandError> {
        let base = reqwest::Url::parse(base)?;
        let identity = identity
            .map(|identity| {
                let mut value = HeaderValue::from_str(&format!("Bearer {identity}"))?;
                value.set_sensitive(true);
                Ok::<_, CommandError>(value)
            })
            .transpose()?;
        Ok(Self {
            http,
            health: base.join("/health")?,
            list: base.join(LIST_TARGET)?,
            derive: base.join("/auth/api-tokens/derive")?,
            base,
            identity,
            saved: saved.map(|credentials| {
                std::sync::Arc::new((credentials.clone(), credentials.signer()))
            }),
            sent: std::sync::Arc::default(),
        })
    }

    async fn health(&self) -> bool {
        match self.http.get(self.health.clone()).send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn signed(
        &self,
        credentials: &SigningToken,
        method: reqwest::Method,
        target: &str,
        url: reqwest::Url,
    ) -> bool {
        let headers = credentials.1.sign_request(
            credentials.0.token_id.as_str(),
            Clock::system().now(),
            method.as_str(),
            target,
            b"",
        );
        let mut request = self.http.request(method, url);
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn list(&self, credentials: &SigningToken) -> bool {
        self.signed(
            credentials,
            reqwest::Method::GET,
            LIST_TARGET,
            self.list.clone(),
        )
        .await
    }

    async fn revoke(&self, credentials: &SigningToken) -> bool {
        let target = format!("{LIST_TARGET}/{}", credentials.0.token_id);
        match self.base.join(&target) {
            Ok(url) => {
                self.signed(credentials, reqwest::Method::DELETE, &target, url)
                    .await
            }
            Err(_) => false,
        }
    }

    async fn derive(&self) -> Option<SigningToken> {
        let response = self
            .http
            .post(self.derive.clone())
            .header("identity", self.identity.clone()?)
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

    /// Derive, list and revoke: one request of the revoke-heavy mix.
    async fn mix(&self) -> bool {
        match self.derive().await {
            Some(credentials) => {
                let listed = self.list(&credentials).await;
                let revoked = self.revoke(&credentials).await;
                listed && revoked
            }
            None => false,
        }
    }
}

/// What a connection does over and over: `list` with the token it derived first, or the same
/// request each time.
enum Request {
    Health,
    /// A token derived for the connection (revoked at the end), or saved credentials shared
    /// by every connection (never revoked).
    List(std::sync::Arc<SigningToken>, Owned),
    Derive,
    Mix,
}

/// Whether the bench derived a list token itself (and so revokes it when done).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owned {
    Yes,
    No,
}

impl Request {
    /// The request for `scenario`; `None` when the token a list connection needs could not
    /// be derived.
    async fn prepare(scenario: Scenario, work: &Work) -> Option<Self> {
        Some(match scenario {
            Scenario::Health => Self::Health,
            Scenario::List => match &work.saved {
                Some(saved) if work.identity.is_none() => {
                    Self::List(std::sync::Arc::clone(saved), Owned::No)
                }
                _ => Self::List(std::sync::Arc::new(work.derive().await?), Owned::Yes),
            },
            Scenario::Derive => Self::Derive,
            Scenario::Mix => Self::Mix,
        })
    }

    /// Sends it once; whether it succeeded.
    async fn send(&self, work: &Work) -> bool {
        match self {
            Self::Health => work.health().await,
            Self::List(credentials, _) => work.list(credentials).await,
            Self::Derive => work.derive().await.is_some(),
            Self::Mix => work.mix().await,
        }
    }

    /// Leaves the partner's list as it was, so that repeated scenarios measure the same.
    async fn clean_up(&self, work: &Work) {
        if let Self::List(credentials, Owned::Yes) = self {
            work.revoke(credentials).await;
        }
    }
}

/// One connection: the scenario's request, over and over until `duration` has passed. Its
/// latencies in microseconds, and how many requests failed.
async fn connection(scenario: Scenario, work: Work, duration: Duration) -> (Vec<u64>, u64) {
    let Some(request) = Request::prepare(scenario, &work).await else {
        // Without a token of its own this connection cannot list: one error, rather than a
        // loop that never awaits and fills the latencies with zeros.
        return (Vec::new(), 1);
    };
    let mut latencies = Vec::with_capacity(4096);
    let mut errors = 0u64;
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let started = Instant::now();
        let ok = request.send(&work).await;
        latencies.push(started.elapsed().as_micros() as u64);
        work.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !ok {
            errors += 1;
        }
    }
    request.clean_up(&work).await;
    (latencies, errors)
}

/// How a scenario is named in the results.
fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Health => "health",
        Scenario::List => "list",
        Scenario::Derive => "derive",
        Scenario::Mix => "mix (derive+list+revoke)",
    }
}

/// Runs `scenario` on `connections` connections at once for `duration`, saying each second
/// how far it got.
async fn run_scenario(
    scenario: Scenario,
    work: &Work,
    (connections, duration): (u32, Duration),
    output: &Output,
) -> Measured {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(connection(scenario, work.clone(), duration));
    }
    let all = tasks.join_all();
    tokio::pin!(all);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let parts = loop {
        tokio::select! {
            parts = &mut all => break parts,
            _ = tick.tick() => output.note(&format!(
                "  {}: {} s of {}, {} requests",
                scenario_name(scenario),
                started.elapsed().as_secs(),
                duration.as_secs(),
                work.sent.load(std::sync::atomic::Ordering::Relaxed)
            )),
        }
    };
    let mut latencies = Vec::new();
    let mut errors = 0;
    for (mut part, part_errors) in parts {
        latencies.append(&mut part);
        errors += part_errors;
    }
    let elapsed = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    latencies.sort_unstable();
    Measured {
        scenario: scenario_name(scenario).to_owned(),
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

/// Waits for the service at `base` to answer `/health`: `attempts` tries 25 ms apart.
async fn wait_until_up(
    http: &reqwest::Client,
    base: &str,
    attempts: u32,
) -> Result<(), CommandError> {
    let health = format!("{base}/health");
    let mut last = None;
    for _ in 0..attempts {
        match http.get(&health).send().await {
            Ok(_) => return Ok(()),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let why = last.map_or_else(String::new, |error| format!(": {}", error_chain(&error)));
    Err(format!("the measured service does not answer {health}{why}").into())
}

/// Mints the identity tokens of the measured service's dev issuer.
struct Identities(DevIssuer);

impl Identities {
    /// The identity of `scenario`'s partner, valid longer than any run.
    fn for_scenario(&self, scenario: Scenario) -> Result<String, CommandError> {
        Ok(self.0.issue(
            account_for(scenario),
            "privy.io",
            DEV_APP_ID,
            Clock::system().now(),
            TimeDelta::hours(2),
        )?)
    }
}

/// Where the measured service is, and whom the bench acts for.
enum Target {
    /// A child `lmts serve` this bench started, and the dev issuer of its data directory.
    Child {
        service: MeasuredService,
        identities: Identities,
        _data: tempfile::TempDir,
    },
    /// A deployment, with an identity token and/or saved credentials.
    Remote {
        identity: Option<zeroize::Zeroizing<String>>,
        saved: Option<HmacCredentials>,
    },
}

impl Target {
    /// The identity of `scenario`'s partner, if the bench has one.
    fn identity(&self, scenario: Scenario) -> Result<Option<String>, CommandError> {
        match self {
            Target::Child { identities, .. } => identities.for_scenario(scenario).map(Some),
            Target::Remote { identity, .. } => Ok(identity.as_ref().map(|token| token.to_string())),
        }
    }

    /// The measured service's resident memory, when it is this bench's child.
    fn resident_kib(&self) -> Option<u64> {
        match self {
            Target::Child { service, .. } => resident_kib(service.child.id()),
            Target::Remote { .. } => None,
        }
    }
}

/// The measured service: a child started on a fresh data directory, or `--base-url`'s.
async fn target_of(args: &BenchArgs) -> Result<(Target, String), CommandError> {
    if let Some(base) = &args.base_url {
        let identity = args
            .identity
            .given()
            .then(|| super::tokens::identity_token(&args.identity))
            .transpose()?;
        let saved = match identity {
            Some(_) => None,
            None => Some(
                crate::credentials_file::resolve(
                    args.credentials.profile.as_deref(),
                    &args.credentials.credentials_file,
                )?
                .credentials,
            ),
        };
        return Ok((
            Target::Remote { identity, saved },
            base.trim_end_matches('/').to_owned(),
        ));
    }
    let data = tempfile::tempdir()?;
    let (service, base) = start_service(data.path(), args.database_url.as_deref())?;
    let identities = Identities(DevIssuer::load_or_create(data.path())?);
    Ok((
        Target::Child {
            service,
            identities,
            _data: data,
        },
        base,
    ))
}

/// The scenarios asked for, or the default: all on a child, all but derive on a deployment.
fn scenarios_of(args: &BenchArgs) -> Vec<Scenario> {
    if !args.scenarios.is_empty() {
        return args.scenarios.clone();
    }
    let mut all = vec![
        Scenario::Health,
        Scenario::List,
        Scenario::Derive,
        Scenario::Mix,
    ];
    if args.base_url.is_some() {
        all.retain(|scenario| *scenario != Scenario::Derive);
        if !args.identity.given() {
            // Mix derives: without an identity every one of its requests would fail.
            all.retain(|scenario| *scenario != Scenario::Mix);
        }
    }
    all
}

/// Runs `lmts bench`.
pub async fn run(args: BenchArgs, output: &Output) -> Result<(), CommandError> {
    let scenarios = scenarios_of(&args);
    let (target, base) = target_of(&args).await?;
    let mut http = reqwest::Client::builder().pool_max_idle_per_host(args.connections as usize);
    let mut sdk = Client::builder().base_url(&base);
    // Only a deployment may be HTTPS: LMTS_CA_FILE, exported for the client commands, stays
    // out of a local bench.
    if let Some(path) = args.ca_file.as_ref().filter(|_| args.base_url.is_some()) {
        let pem = super::tokens::read_ca_file(path)?;
        for root in lmts_sdk::root_certificates(&pem)? {
            http = http.add_root_certificate(root);
        }
        sdk = sdk.root_certificates_pem(pem);
    }
    let http = http.build()?;
    // A deployment is up already: one try, and its error. A child may take 10 s to start.
    let attempts = if args.base_url.is_some() { 1 } else { 400 };
    wait_until_up(&http, &base, attempts).await?;
    if let Some(identity) = target.identity(Scenario::Health)? {
        // Fail early, with the SDK's error, if the service does not accept the identity.
        sdk.build()?
            .api_tokens()
            .get_capabilities(&identity)
            .await?;
    }
    output.note(&format!(
        "lmts bench: {} connections, {} s per scenario, {}",
        args.connections,
        args.duration_secs,
        match (&target, &args.database_url) {
            (Target::Remote { .. }, _) => format!("the deployment at {base}"),
            (_, Some(_)) => format!("a child service on PostgreSQL at {base}"),
            (_, None) => format!("a child service on SQLite at {base}"),
        }
    ));
    let saved = match &target {
        Target::Remote { saved, .. } => saved.clone(),
        Target::Child { .. } => None,
    };
    let mut results = Vec::new();
    for scenario in scenarios {
        let identity = target.identity(scenario)?;
        let work = Work::new(http.clone(), &base, identity.as_deref(), saved.as_ref())?;
        let limits = (args.connections, Duration::from_secs(args.duration_secs));
        let mut measured = run_scenario(scenario, &work, limits, output).await;
        measured.service_rss_kib = target.resident_kib();
        output.note(&format!(
            "  {}: {:.0} req/s",
            measured.scenario, measured.requests_per_second
        ));
        results.push(measured);
    }
    if output.is_json() {
        output.json(&results);
    } else {
        print_table(&results, output);
    }
    Ok(())
}

/// The results as a table, with each scenario's throughput and p99 against `/health`'s.
fn print_table(results: &[Measured], output: &Output) {
    let baseline = results
        .iter()
        .find(|m| m.scenario == scenario_name(Scenario::Health))
        .map(|m| (m.requests_per_second, m.p99_us));
    let rows: Vec<Vec<String>> = results.iter().map(|m| table_row(m, baseline)).collect();
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
}

/// One scenario's row; `baseline` is `/health`'s requests per second and p99, if measured.
fn table_row(m: &Measured, baseline: Option<(f64, u64)>) -> Vec<String> {
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

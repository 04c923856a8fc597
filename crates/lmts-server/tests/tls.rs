//! TLS (issue #15) with certificate authorities the tests make: the service over HTTPS (token
//! endpoints and signed requests alike), its certificate replaced on disk and taken up without
//! a restart, a broken replacement refused while the one in use stays, bad files refused at
//! start; and the gateway reaching an `https://` upstream checked against `--upstream-ca`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;
use lmts_server::{
    http::proxy::UpstreamSettings,
    server::{GatewayConfig, ServeError, Server, ServerConfig},
    service::policy::RoutePolicy,
    tls::TlsFiles,
};
use lmts_testkit::{
    policy::SPEC_EXAMPLE,
    tls::{replace_file, IssuedCertificate, TestAuthority},
    upstream::RecordingUpstream,
};
use reqwest::{Method, StatusCode};
use tempfile::TempDir;

const ORDER: &str = r#"{"market":"btc","side":"buy","size":"0.5"}"#;

/// Certificate and key files in a directory of their own.
struct CertificateFiles {
    dir: TempDir,
}

impl CertificateFiles {
    fn holding(certificate: &IssuedCertificate) -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        certificate.write(&files.cert(), &files.key());
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn tls(&self, check_every: Option<Duration>) -> TlsFiles {
        TlsFiles {
            cert: self.cert(),
            key: self.key(),
            check_every,
        }
    }
}

/// A server with TLS from `files`, reached over HTTPS by a client trusting `authority`.
async fn https_server(
    tls: TlsFiles,
    authority: &TestAuthority,
    configure: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let mut server = TestServer::start_with(|config| {
        config.tls = Some(tls);
        configure(config);
    })
    .await;
    server.base = server.base.replacen("http://", "https://", 1);
    server.client = authority.client();
    server
}

/// Whether a fresh client trusting `authority` alone completes a request to `server`.
async fn trusted_by(server: &TestServer, authority: &TestAuthority) -> bool {
    authority.trusted_at(&server.base).await
}

/// The value of the sample `series` (name and labels, as the text format writes them) in the
/// server's `/metrics`.
async fn sample(server: &TestServer, series: &str) -> Option<String> {
    let text = server.get("/metrics").await.text().await.unwrap();
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| value.trim().to_owned())
}

/// The `lmts_tls_reloads_total` sample of `outcome`.
async fn reloads(server: &TestServer, outcome: &str) -> u64 {
    let series = format!("lmts_tls_reloads_total{{outcome=\"{outcome}\"}}");
    sample(server, &series)
        .await
        .map_or(0, |value| value.parse().unwrap())
}

/// The `lmts_tls_reload_failing` gauge.
async fn failing(server: &TestServer) -> Option<String> {
    sample(server, "lmts_tls_reload_failing").await
}

/// The `lmts_tls_certificate_expiry_timestamp_seconds` gauge of the certificate file `cert`.
async fn valid_until(server: &TestServer, cert: &Path) -> Option<String> {
    let series = format!(
        "lmts_tls_certificate_expiry_timestamp_seconds{{cert=\"{}\"}}",
        cert.display()
    );
    sample(server, &series).await
}

/// Waits (at most 20 s) until the server has counted a reload of `outcome` more than `before`.
async fn until_reloaded(server: &TestServer, outcome: &str, before: u64) -> u64 {
    for _ in 0..200 {
        let now = reloads(server, outcome).await;
        if now > before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {outcome} reload was counted");
}

// One test, so that no other test of this binary reloads a certificate and moves the counters.
#[tokio::test]
async fn the_service_speaks_https_and_takes_up_a_new_certificate_without_a_restart() {
    let (first, second) = (TestAuthority::new("first"), TestAuthority::new("second"));
    let files = CertificateFiles::holding(&first.issue_valid_until(2031, 3, 4));
    let server = https_server(files.tls(Some(Duration::from_millis(100))), &first, |_| {}).await;
    // 2031-03-04T00:00:00Z, the end of the certificate in use, exported from the start.
    let first_end = Some("1930348800");
    assert_eq!(
        valid_until(&server, &files.cert()).await.as_deref(),
        first_end
    );

    // The token endpoints and signed requests work over TLS; plain HTTP gets no answer.
    let (creds, _) = server.derive(ALICE, "{}").await;
    assert_eq!(server.list(&creds).await.status(), StatusCode::OK);
    let plain = server.base.replacen("https://", "http://", 1);
    assert!(
        reqwest::get(format!("{plain}/health")).await.is_err(),
        "plain HTTP was answered on a TLS listener"
    );
    assert!(!trusted_by(&server, &second).await);
    let (failed, loaded) = (
        reloads(&server, "failed").await,
        reloads(&server, "loaded").await,
    );

    // Half of a renewal (the new key beside the old certificate) is refused, once, and the
    // certificate in use stays.
    let renewed = second.issue_valid_until(2032, 5, 6);
    replace_file(&files.key(), renewed.key_pem.as_bytes());
    assert_eq!(until_reloaded(&server, "failed", failed).await, failed + 1);
    assert_eq!(failing(&server).await.as_deref(), Some("1"));
    assert_eq!(
        valid_until(&server, &files.cert()).await.as_deref(),
        first_end
    );
    assert!(
        trusted_by(&server, &first).await,
        "a refused reload broke the certificate in use"
    );

    // The other half arrives: taken up, counted once, and new connections get it alone.
    replace_file(&files.cert(), renewed.certificate_pem.as_bytes());
    assert_eq!(until_reloaded(&server, "loaded", loaded).await, loaded + 1);
    assert_eq!(failing(&server).await.as_deref(), Some("0"));
    // 2032-05-06T00:00:00Z.
    assert_eq!(
        valid_until(&server, &files.cert()).await.as_deref(),
        Some("1967414400")
    );
    assert!(
        second.until_trusted_at(&server.base).await,
        "the server never presented the new certificate"
    );
    assert!(
        !trusted_by(&server, &first).await,
        "new connections still got the old certificate"
    );
    assert_eq!(server.list(&creds).await.status(), StatusCode::OK);
    assert_eq!(reloads(&server, "failed").await, failed + 1);

    // A renewal whose chain lmts cannot read (served all the same: rustls reads only the
    // first certificate) shows 0, not the previous certificate's end.
    let unreadable = format!("{}{UNREADABLE_CERTIFICATE}", renewed.certificate_pem);
    replace_file(&files.cert(), unreadable.as_bytes());
    until_reloaded(&server, "loaded", loaded + 1).await;
    assert_eq!(
        valid_until(&server, &files.cert()).await.as_deref(),
        Some("0")
    );
}

/// A PEM block that is no X.509 certificate.
const UNREADABLE_CERTIFICATE: &str =
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

#[tokio::test]
async fn a_chain_whose_expiry_cannot_be_read_shows_zero_not_a_guess() {
    let authority = TestAuthority::new("unreadable");
    let issued = authority.issue();
    let files = CertificateFiles::holding(&issued);
    // rustls reads only the first certificate of the chain; x509-cert reads them all.
    let chain = format!("{}{UNREADABLE_CERTIFICATE}", issued.certificate_pem);
    replace_file(&files.cert(), chain.as_bytes());
    let server = https_server(files.tls(None), &authority, |_| {}).await;
    assert_eq!(server.get("/health").await.status(), StatusCode::OK);
    assert_eq!(
        valid_until(&server, &files.cert()).await.as_deref(),
        Some("0")
    );
}

/// Why `Server::bind` refused `tls`, as the log would say it.
async fn refusal(tls: TlsFiles) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.dev = true;
    config.tls = Some(tls);
    match Server::bind(config).await {
        Ok(_) => panic!("the server started with unusable TLS files"),
        Err(error @ ServeError::Tls(_)) => lmts_core::error_chain::error_chain(&error).to_string(),
        Err(other) => panic!("refused for another reason: {other:?}"),
    }
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_start_with_the_reason() {
    let authority = TestAuthority::new("start");
    let (one, two) = (authority.issue(), authority.issue());
    let files = CertificateFiles::holding(&one);

    std::fs::write(files.key(), two.key_pem.as_bytes()).unwrap();
    let mismatch = refusal(files.tls(None)).await;
    assert!(
        mismatch.contains("cannot serve the certificate"),
        "{mismatch}"
    );

    std::fs::write(files.key(), one.certificate_pem.as_bytes()).unwrap();
    let no_key = refusal(files.tls(None)).await;
    assert!(no_key.contains("holds no PEM private key"), "{no_key}");

    std::fs::write(files.cert(), "not a certificate").unwrap();
    let no_cert = refusal(files.tls(None)).await;
    assert!(no_cert.contains("holds no PEM certificate"), "{no_cert}");

    let missing = refusal(TlsFiles {
        cert: files.dir.path().join("absent.pem"),
        ..files.tls(None)
    })
    .await;
    assert!(
        missing.contains("cannot read") && missing.contains("absent.pem"),
        "{missing}"
    );
}

/// A gateway in front of `upstream`, its certificate checked against the roots in `ca_file`.
fn gateway_to(upstream: &RecordingUpstream, ca_file: &Path) -> impl FnOnce(&mut ServerConfig) {
    let (url, ca_file) = (upstream.url(), ca_file.to_owned());
    move |config| {
        config.gateway = GatewayConfig {
            policy: Some(RoutePolicy::parse(SPEC_EXAMPLE).unwrap()),
            upstream: Some(url),
            upstream_settings: UpstreamSettings {
                ca_file: Some(ca_file),
                ..UpstreamSettings::default()
            },
        };
    }
}

#[tokio::test]
async fn the_gateway_serves_https_and_reaches_an_https_upstream_it_can_verify() {
    let (front, back, stranger) = (
        TestAuthority::new("front"),
        TestAuthority::new("back"),
        TestAuthority::new("stranger"),
    );
    let upstream = RecordingUpstream::start_tls(&back.issue()).await.unwrap();
    assert!(upstream.url().starts_with("https://"));
    let roots = tempfile::tempdir().unwrap();
    let (back_ca, stranger_ca) = (roots.path().join("back.pem"), roots.path().join("x.pem"));
    std::fs::write(&back_ca, back.root_pem()).unwrap();
    std::fs::write(&stranger_ca, stranger.root_pem()).unwrap();

    let files = CertificateFiles::holding(&front.issue());
    let gateway = https_server(files.tls(None), &front, gateway_to(&upstream, &back_ca)).await;
    let (creds, _) = gateway.derive(ALICE, "{}").await;
    let order = gateway.signed(&creds, Method::POST, "/orders", ORDER).await;
    assert_eq!(order.status(), StatusCode::OK);
    assert_eq!(order.text().await.unwrap(), ORDER);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, ORDER.as_bytes());
    assert_eq!(
        seen[0].header("x-lmts-token-id"),
        Some(creds.token_id.as_str())
    );
    assert_eq!(
        seen[0].header("x-forwarded-proto"),
        Some("https"),
        "the upstream is told the client came over TLS"
    );

    // An upstream whose certificate the roots do not vouch for is never sent the request.
    let doubting = https_server(files.tls(None), &front, gateway_to(&upstream, &stranger_ca)).await;
    let (creds, _) = doubting.derive(ALICE, "{}").await;
    let refused = doubting
        .signed(&creds, Method::POST, "/orders", ORDER)
        .await;
    assert_error(refused, StatusCode::BAD_GATEWAY).await;
    assert_eq!(
        upstream.count(),
        1,
        "a request reached an unverified upstream"
    );

    // Nor is one whose certificate the roots vouch for, but for another name.
    let elsewhere = RecordingUpstream::start_tls(&back.issue_for(&["other.example"]))
        .await
        .unwrap();
    let misnamed = https_server(files.tls(None), &front, gateway_to(&elsewhere, &back_ca)).await;
    let (creds, _) = misnamed.derive(ALICE, "{}").await;
    let refused = misnamed
        .signed(&creds, Method::POST, "/orders", ORDER)
        .await;
    assert_error(refused, StatusCode::BAD_GATEWAY).await;
    assert_eq!(
        elsewhere.count(),
        0,
        "a request reached a misnamed upstream"
    );
}

/// A TLS server allowing one connection at a time, and a TCP connection to it that sent
/// nothing and so holds that one slot.
struct SlotTaken {
    server: TestServer,
    authority: TestAuthority,
    holder: tokio::net::TcpStream,
    _files: CertificateFiles,
}

/// A [`SlotTaken`] with `header_timeout`, shutting down with `grace`.
async fn slot_taken(header_timeout: Duration, grace: Duration) -> SlotTaken {
    let authority = TestAuthority::new("one slot");
    let files = CertificateFiles::holding(&authority.issue());
    let server = https_server(files.tls(None), &authority, |config| {
        config.connections.max_connections = 1;
        config.connections.header_timeout = header_timeout;
        config.connections.shutdown_grace = grace;
    })
    .await;
    let address = server.base.trim_start_matches("https://").to_owned();
    let holder = tokio::net::TcpStream::connect(&address).await.unwrap();
    SlotTaken {
        server,
        authority,
        holder,
        _files: files,
    }
}

/// Asserts that `server`'s only connection slot, held by `silent`, comes back: a request is
/// served, and `silent` is closed by the server.
async fn assert_slot_given_back(
    server: &TestServer,
    authority: &TestAuthority,
    silent: &mut (impl tokio::io::AsyncRead + Unpin),
) {
    let served = authority
        .client()
        .get(server.url("/health"))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    assert_eq!(
        served.map(|response| response.status()).ok(),
        Some(StatusCode::OK),
        "the slot never came back"
    );
    let mut buffer = [0_u8; 16];
    let read = tokio::io::AsyncReadExt::read(silent, &mut buffer).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the silent connection is still open"
    );
}

#[tokio::test]
async fn a_connection_that_never_completes_its_handshake_gives_its_slot_back() {
    let mut taken = slot_taken(Duration::from_secs(1), Duration::from_secs(1)).await;
    assert_slot_given_back(&taken.server, &taken.authority, &mut taken.holder).await;
}

#[tokio::test]
async fn a_connection_silent_after_its_handshake_gives_its_slot_back() {
    let taken = slot_taken(Duration::from_secs(1), Duration::from_secs(1)).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut silent = tokio_rustls::TlsConnector::from(taken.authority.client_config())
        .connect(name, taken.holder)
        .await
        .expect("the handshake completes");
    assert_slot_given_back(&taken.server, &taken.authority, &mut silent).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_handshake() {
    let taken = slot_taken(Duration::from_secs(600), Duration::from_secs(1)).await;
    settle().await;
    // Far below the ten-minute handshake timeout the stalled connection would otherwise get.
    let stopped = tokio::time::timeout(Duration::from_secs(60), taken.server.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited for a stalled handshake");
}

#[tokio::test]
async fn upstream_roots_for_a_plain_upstream_stop_the_start() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TestAuthority::new("unused").root_pem()).unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.dev = true;
    gateway_to(&upstream, &ca)(&mut config);
    let error = Server::bind(config).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("--upstream-ca is for an https:// upstream"),
        "{error}"
    );
}

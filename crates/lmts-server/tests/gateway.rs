//! The gateway of SPEC C1 through each of its doors, in front of a real upstream on loopback:
//! the verifying reverse proxy (`serve --upstream`, and the gateway alone as `lmts gateway`
//! runs it), `/ext-authz/{target}` as Envoy sends it and `/forward-auth` as Traefik does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use common::*;
use lmts_server::{
    http::proxy::UpstreamSettings,
    server::{GatewayConfig, ServerConfig},
    service::{policy::RoutePolicy, TrustedProxies},
};
use lmts_testkit::{policy::SPEC_EXAMPLE, upstream::RecordingUpstream, PgServer};
use reqwest::{Method, StatusCode};

/// SPEC C1's example, and the routes these tests add to it.
fn policy_text() -> String {
    let added = "
[[route]]
method = \"*\"
path = \"/slow/**\"
scopes = []

[[route]]
method = \"GET\"
path = \"/drip\"
public = true

[[route]]
method = \"GET\"
path = \"/ws\"
scopes = [\"trading\"]
";
    format!("{SPEC_EXAMPLE}{added}")
}

fn policy(text: &str) -> RoutePolicy {
    RoutePolicy::parse(text).unwrap()
}

/// A token service with the gateway in one process, in front of `upstream`.
fn gateway_to(upstream: &RecordingUpstream) -> impl FnOnce(&mut ServerConfig) {
    let url = upstream.url();
    move |config| {
        config.gateway = GatewayConfig {
            policy: Some(policy(&policy_text())),
            upstream: Some(url),
            upstream_settings: UpstreamSettings {
                timeout: Duration::from_secs(1),
                ..UpstreamSettings::default()
            },
        };
    }
}

const ORDER: &str = r#"{"market":"btc","side":"buy","size":"0.5"}"#;

/// An authorization door's 200 for `creds`'s trading token, with every grant header.
fn assert_granted(allowed: &reqwest::Response, creds: &Creds) {
    assert_eq!(allowed.status(), StatusCode::OK);
    let headers = allowed.headers();
    assert_eq!(headers["x-lmts-token-id"], creds.token_id.as_str());
    assert_eq!(headers["x-lmts-scopes"], "trading");
    assert_eq!(headers["x-lmts-account"], ALICE);
    let profile: i64 = headers["x-lmts-profile-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(profile > 0);
}

/// An order to `/orders`, sent to `url_target`: refused when its body changed after signing;
/// passed once, then refused as a replay.
async fn assert_tamper_and_replay_refused(server: &TestServer, creds: &Creds, url_target: &str) {
    let tampered = sign(creds, now(), "POST", "/orders", ORDER);
    let response = server
        .send_with(
            Method::POST,
            url_target,
            &ORDER.replace("0.5", "50"),
            &tampered,
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;

    let headers = sign(creds, now(), "POST", "/orders", ORDER);
    let first = server
        .send_with(Method::POST, url_target, ORDER, &headers)
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let replayed = server
        .send_with(Method::POST, url_target, ORDER, &headers)
        .await;
    let message = assert_error(replayed, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("replayed"), "{message}");
}

#[tokio::test]
async fn a_signed_post_reaches_the_upstream_exactly_with_the_grant_headers() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    let target = "/orders?market=btc%2Dusd&x=%7B%7D";
    let mut headers = sign(&creds, now(), "POST", target, ORDER);
    headers.push(("x-lmts-scopes", "withdrawal".into()));
    headers.push((
        "x-lmts-account",
        "0x0000000000000000000000000000000000000bad".into(),
    ));
    headers.push(("connection", "x-secret-hop".into()));
    headers.push(("x-forwarded-for", "6.6.6.6".into()));
    headers.push(("x-secret-hop", "for the gateway only".into()));
    let response = server
        .send_with(Method::POST, target, ORDER, &headers)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "recorded");
    assert!(
        response.headers().get("x-hop").is_none(),
        "a hop-by-hop answer header came through"
    );
    assert_eq!(
        response.text().await.unwrap(),
        ORDER,
        "the answer body streams back"
    );

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.target, target,
        "the target is forwarded byte for byte"
    );
    assert_eq!(request.body, ORDER.as_bytes());
    assert_eq!(
        request.header("x-lmts-token-id"),
        Some(creds.token_id.as_str())
    );
    assert_eq!(request.header("x-lmts-scopes"), Some("trading"));
    assert_eq!(request.header("x-lmts-account"), Some(ALICE));
    let profile: i64 = request
        .header("x-lmts-profile-id")
        .unwrap()
        .parse()
        .unwrap();
    assert!(profile > 0);
    assert_eq!(request.headers.get_all("x-lmts-scopes").iter().count(), 1);
    assert!(
        request.header("x-secret-hop").is_none(),
        "a header named by Connection was forwarded"
    );
    assert_eq!(
        request.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "what an untrusted client claims is dropped"
    );
    assert_eq!(
        request.header("host"),
        Some(upstream.address().to_string().as_str())
    );
}

#[tokio::test]
async fn refusals_never_reach_the_upstream() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;

    let missing_scope = server
        .signed(&creds, Method::POST, "/portfolio/withdraw", "{}")
        .await;
    let message = assert_error(missing_scope, StatusCode::FORBIDDEN).await;
    assert!(message.contains("withdrawal"), "{message}");

    let unmatched = server.signed(&creds, Method::GET, "/accounts", "").await;
    let message = assert_error(unmatched, StatusCode::FORBIDDEN).await;
    assert!(
        message.contains("no route rule allows GET /accounts"),
        "{message}"
    );

    let unsigned = server.send_with(Method::POST, "/orders", ORDER, &[]).await;
    assert_error(unsigned, StatusCode::UNAUTHORIZED).await;

    assert_tamper_and_replay_refused(&server, &creds, "/orders").await;

    let stale = server
        .signed_at(
            &creds,
            now() - chrono::TimeDelta::seconds(90),
            Method::POST,
            "/orders",
            ORDER,
        )
        .await;
    assert_error(stale, StatusCode::UNAUTHORIZED).await;

    assert_eq!(
        server.revoke(&creds, &creds.token_id).await.status(),
        StatusCode::OK
    );
    let revoked = server.signed(&creds, Method::POST, "/orders", ORDER).await;
    assert_error(revoked, StatusCode::UNAUTHORIZED).await;

    assert_eq!(
        upstream.count(),
        1,
        "only the one allowed order reached the upstream"
    );
}

#[tokio::test]
async fn public_routes_pass_unsigned_without_grant_headers_and_lmts_keeps_its_own_routes() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    let forged = [
        ("x-lmts-token-id", "lmts_forged".to_owned()),
        ("x-lmts-scopes", "trading,withdrawal".to_owned()),
    ];
    let response = server
        .send_with(Method::GET, "/markets/btc?depth=5", "", &forged)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = upstream.seen();
    assert_eq!(seen[0].target, "/markets/btc?depth=5");
    for name in [
        "x-lmts-token-id",
        "x-lmts-profile-id",
        "x-lmts-account",
        "x-lmts-scopes",
    ] {
        assert!(
            seen[0].header(name).is_none(),
            "{name} reached the upstream"
        );
    }
    // Signed or not, a public route forwards no grant.
    let signed = server.signed(&creds, Method::GET, "/markets/eth", "").await;
    assert_eq!(signed.status(), StatusCode::OK);
    assert!(upstream.seen()[1].header("x-lmts-token-id").is_none());

    let health = server.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        health.content_length().is_some(),
        "an answer of known length keeps it"
    );
    assert_eq!(server.list(&creds).await.status(), StatusCode::OK);
    assert_eq!(upstream.count(), 2, "lmts's own routes are never proxied");
}

#[tokio::test]
async fn a_dead_upstream_gives_502_and_a_slow_one_504() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    let slow = server.signed(&creds, Method::GET, "/slow/report", "").await;
    let message = assert_error(slow, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(message.contains("in time"), "{message}");

    drop(upstream);
    settle().await;
    let dead = server.signed(&creds, Method::POST, "/orders", ORDER).await;
    let message = assert_error(dead, StatusCode::BAD_GATEWAY).await;
    assert!(message.contains("could not be reached"), "{message}");
}

#[tokio::test]
async fn the_gateway_alone_serves_no_token_endpoint_and_trusts_proxies_it_is_told_to() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let token_service = TestServer::start().await;
    let (creds, _) = token_service.derive(ALICE, "{}").await;
    let data_dir = token_service.dir.path().to_owned();
    let url = upstream.url();
    // A second process on the same data directory, as `lmts gateway` runs.
    let gateway = TestServer::start_with(move |config| {
        config.data_dir = data_dir;
        config.dev = false;
        config.token_endpoints = false;
        config.service.trusted_proxies = "127.0.0.1".parse::<TrustedProxies>().unwrap();
        config.gateway = GatewayConfig {
            policy: Some(policy(&format!(
                "{}\n[[route]]\nmethod = \"GET\"\npath = \"/auth/**\"\npublic = true\n",
                policy_text()
            ))),
            upstream: Some(url),
            upstream_settings: UpstreamSettings::default(),
        };
    })
    .await;

    let mut headers = sign(&creds, now(), "POST", "/orders", ORDER);
    headers.push(("x-forwarded-for", "198.51.100.7".into()));
    let response = gateway
        .send_with(Method::POST, "/orders", ORDER, &headers)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        upstream.seen()[0].header("x-forwarded-for"),
        Some("198.51.100.7, 127.0.0.1"),
        "a trusted proxy's chain is kept and the peer appended"
    );

    // The token endpoints are not the gateway's: the policy decides, and the upstream answers.
    let listed = gateway.get("/auth/api-tokens").await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(listed.headers()["x-upstream"], "recorded");
    assert_eq!(gateway.get("/health").await.status(), StatusCode::OK);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn ext_authz_answers_as_envoy_expects() {
    let (server, creds) = TestServer::with_token(|config| {
        config.gateway.policy = Some(policy(&policy_text()));
    })
    .await;
    let target = "/orders?market=btc%2Dusd";
    let allowed = server
        .signed_on(
            &creds,
            Method::POST,
            &format!("/ext-authz{target}"),
            target,
            ORDER,
        )
        .await;
    assert_granted(&allowed, &creds);
    assert!(allowed
        .headers()
        .get("x-envoy-auth-headers-to-remove")
        .is_none());

    let missing_scope = server
        .signed_on(
            &creds,
            Method::DELETE,
            "/ext-authz/portfolio/withdraw",
            "/portfolio/withdraw",
            "",
        )
        .await;
    assert_error(missing_scope, StatusCode::FORBIDDEN).await;

    let public = server.get("/ext-authz/markets/btc").await;
    assert_eq!(public.status(), StatusCode::OK);
    assert!(public.headers().get("x-lmts-token-id").is_none());
    assert_eq!(
        public.headers()["x-envoy-auth-headers-to-remove"],
        "x-lmts-token-id,x_lmts_token_id,x-lmts-profile-id,x_lmts_profile_id,x-lmts-account,x_lmts_account,x-lmts-scopes,x_lmts_scopes"
    );

    let unmatched = server
        .signed_on(&creds, Method::GET, "/ext-authz/accounts", "/accounts", "")
        .await;
    assert_error(unmatched, StatusCode::FORBIDDEN).await;

    // The signature covers the original target, not the prefixed one.
    let prefixed = server
        .signed(&creds, Method::POST, &format!("/ext-authz{target}"), ORDER)
        .await;
    assert_error(prefixed, StatusCode::UNAUTHORIZED).await;

    assert_tamper_and_replay_refused(&server, &creds, "/ext-authz/orders").await;
}

#[tokio::test]
async fn forward_auth_answers_as_traefik_expects() {
    let (server, creds) = TestServer::with_token(|config| {
        config.gateway.policy = Some(policy(&policy_text()));
    })
    .await;
    let described = |method: &str, uri: &str| {
        vec![
            ("x-forwarded-method", method.to_owned()),
            ("x-forwarded-uri", uri.to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
            ("x-forwarded-host", "api.example.com".to_owned()),
        ]
    };
    // Traefik sends the check with the original method, or GET: only the headers count.
    let mut headers = described("POST", "/orders?market=btc");
    headers.extend(sign(&creds, now(), "POST", "/orders?market=btc", ORDER));
    let allowed = server
        .send_with(Method::GET, "/forward-auth", ORDER, &headers)
        .await;
    assert_granted(&allowed, &creds);

    let replayed = server
        .send_with(Method::GET, "/forward-auth", ORDER, &headers)
        .await;
    assert_error(replayed, StatusCode::UNAUTHORIZED).await;

    let mut headers = described("PUT", "/portfolio/withdraw");
    headers.extend(sign(&creds, now(), "PUT", "/portfolio/withdraw", "{}"));
    let missing_scope = server
        .send_with(Method::PUT, "/forward-auth", "{}", &headers)
        .await;
    assert_error(missing_scope, StatusCode::FORBIDDEN).await;

    let public = server
        .send_with(
            Method::GET,
            "/forward-auth",
            "",
            &described("GET", "/markets/eth"),
        )
        .await;
    assert_eq!(public.status(), StatusCode::OK);
    assert!(public.headers().get("x-lmts-token-id").is_none());

    let unsigned = server
        .send_with(
            Method::GET,
            "/forward-auth",
            ORDER,
            &described("POST", "/orders"),
        )
        .await;
    assert_error(unsigned, StatusCode::UNAUTHORIZED).await;

    let mut appended = described("GET", "/markets/eth");
    appended.push(("x-forwarded-uri", "/portfolio/withdraw".to_owned()));
    let repeated = server
        .send_with(Method::GET, "/forward-auth", "", &appended)
        .await;
    let message = assert_error(repeated, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("repeated"), "{message}");

    let undescribed = server.get("/forward-auth").await;
    let message = assert_error(undescribed, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("X-Forwarded-Method"), "{message}");
}

#[tokio::test]
async fn without_a_policy_the_authorization_doors_are_closed() {
    let (server, creds) = TestServer::with_token(|_| {}).await;
    let response = server
        .signed_on(&creds, Method::POST, "/ext-authz/orders", "/orders", ORDER)
        .await;
    assert_error(response, StatusCode::NOT_FOUND).await;
    assert_error(server.get("/forward-auth").await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn http2_clients_pass_through_to_an_http1_upstream() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let target = "/orders?via=h2";
    let mut request = http::Request::post(server.url(target));
    for (name, value) in sign(&creds, now(), "POST", target, ORDER) {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(bytes::Bytes::from(ORDER))).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-hop").is_none());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, ORDER.as_bytes());
    let seen = upstream.seen();
    assert_eq!(seen[0].target, target);
    assert_eq!(
        seen[0].header("x-lmts-token-id"),
        Some(creds.token_id.as_str())
    );
}

#[tokio::test]
async fn a_gateway_on_the_same_sqlite_file_refuses_a_revoked_or_rotated_token_within_a_second() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let long_cache = |config: &mut ServerConfig| {
        config.service.token_cache_ttl = Duration::from_secs(600);
    };
    let token_service = TestServer::start_with(long_cache).await;
    let (creds, _) = token_service.derive(ALICE, "{}").await;
    let (rotating, _) = token_service.derive(ALICE, "{}").await;
    let data_dir = token_service.dir.path().to_owned();
    let url = upstream.url();
    let gateway = TestServer::start_with(move |config| {
        long_cache(config);
        config.data_dir = data_dir;
        config.token_endpoints = false;
        config.gateway = GatewayConfig {
            policy: Some(policy(&policy_text())),
            upstream: Some(url),
            upstream_settings: UpstreamSettings::default(),
        };
    })
    .await;
    for token in [&creds, &rotating] {
        let order = gateway.signed(token, Method::POST, "/orders", ORDER).await;
        assert_eq!(
            order.status(),
            StatusCode::OK,
            "the gateway caches the token"
        );
    }

    let revoked = token_service.revoke(&creds, &creds.token_id).await;
    assert_eq!(revoked.status(), StatusCode::OK);
    // SPEC C2: a rotation without overlap ends the rotated token as a revoke does.
    let target = format!("/auth/api-tokens/{}/rotate", rotating.token_id);
    let rotation = r#"{"overlapSeconds":0}"#;
    let rotated = token_service
        .signed(&rotating, Method::POST, &target, rotation)
        .await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for token in [&creds, &rotating] {
        let after = gateway.signed(token, Method::POST, "/orders", ORDER).await;
        assert_error(after, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn paths_an_upstream_could_read_as_another_route_are_refused() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    // A trailing slash is the same route: the withdraw rule still decides.
    let slash = server
        .signed(&creds, Method::POST, "/portfolio/withdraw/", "{}")
        .await;
    assert_error(slash, StatusCode::FORBIDDEN).await;
    // Sent raw: an HTTP client library would tidy some of these before sending.
    for target in [
        "//orders",
        "/./orders",
        "/markets/../orders",
        "/orders;jsessionid=1",
        "/%6Frders",
        "/markets%2Fbtc",
        "//",
        "/orders/%252e%252e",
        "/portfolio/withdraw%3Bx",
        "/orders%00",
    ] {
        let request = format!("POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
        let (status, body) = raw_http(&server, request.as_bytes()).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains("canonical"), "{target}: {body}");
    }
    for request in [
        &b"GET http://upstream.example?depth=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"get /markets/btc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let (status, body) = raw_http(&server, request).await;
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn what_only_lmts_or_a_trusted_proxy_may_say_never_comes_from_the_client() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    let mut claims: Vec<(&str, String)> = [
        (
            "x_lmts_account",
            "0x0000000000000000000000000000000000000bad",
        ),
        ("X_Lmts_Profile_Id", "1"),
        ("forwarded", "for=6.6.6.6;proto=https"),
        ("x-real-ip", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ]
    .map(|(name, value)| (name, value.to_owned()))
    .to_vec();
    claims.extend(sign(&creds, now(), "GET", "/markets/btc", ""));
    let public = server
        .send_with(Method::GET, "/markets/btc", "", &claims)
        .await;
    assert_eq!(public.status(), StatusCode::OK);
    let seen = &upstream.seen()[0];
    for name in [
        "x_lmts_account",
        "x_lmts_profile_id",
        "forwarded",
        "x-real-ip",
        "lmts-api-key",
        "lmts-signature",
    ] {
        assert!(seen.header(name).is_none(), "{name} reached the upstream");
    }
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_ne!(seen.header("x-forwarded-host"), Some("evil.example"));

    // HEAD is served by GET routes, so a GET rule decides it.
    let head = server
        .send_with(Method::HEAD, "/markets/btc", "", &[])
        .await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(upstream.seen()[1].method, "HEAD");
}

#[tokio::test]
async fn a_streamed_answer_outlives_the_idle_timeout() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let server = TestServer::start_with(|config| {
        gateway_to(&upstream)(config);
        config.connections.header_timeout = Duration::from_secs(1);
    })
    .await;
    // Five chunks over 2.4 s, on a connection that counts as idle after 1 s without a request.
    let response = server.get("/drip").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert_eq!(body, "drip 0\ndrip 1\ndrip 2\ndrip 3\ndrip 4\n");
}

#[tokio::test]
async fn requests_at_the_upstream_are_bounded() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let server = TestServer::start_with(|config| {
        gateway_to(&upstream)(config);
        config.gateway.upstream_settings.max_in_flight = 1;
    })
    .await;
    let slow = {
        let request = server.client.get(server.url("/drip"));
        tokio::spawn(async move { request.send().await.unwrap().text().await.unwrap() })
    };
    while upstream.count() == 0 {
        settle().await;
    }
    let refused = server.get("/markets/btc").await;
    let message = assert_error(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(message.contains("retry shortly"), "{message}");
    assert!(slow.await.unwrap().ends_with("drip 4\n"));
    assert_eq!(server.get("/markets/btc").await.status(), StatusCode::OK);
}

/// The WebSocket handshake's target (SPEC A4's example of a signed GET).
const HANDSHAKE_TARGET: &str = "/ws/?EIO=4&transport=websocket";

/// Sends a WebSocket handshake with `headers` to `server`; answers the connection and the
/// answer's head, lower-cased.
async fn handshake(server: &TestServer, headers: &[(&str, String)]) -> (TcpStream, String) {
    let mut request = format!(
        "GET {HANDSHAKE_TARGET} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let read = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..read]).to_lowercase();
    (stream, head)
}

/// A tunnel opened through `server` by a handshake signed with `creds`.
async fn tunnel(server: &TestServer, creds: &Creds) -> TcpStream {
    let signed = sign(creds, now(), "GET", HANDSHAKE_TARGET, "");
    let (stream, head) = handshake(server, &signed).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    stream
}

/// Whether `message` comes back through the tunnel (the upstream echoes it).
async fn echoes(stream: &mut TcpStream, message: &[u8]) -> bool {
    if stream.write_all(message).await.is_err() {
        return false;
    }
    let mut echoed = vec![0u8; message.len()];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed));
    matches!(read.await, Ok(Ok(_))) && echoed == message
}

/// Waits (at most `within`) for the tunnel to be closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_signed_protocol_switch_becomes_a_tunnel_that_a_revoke_closes() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    let (_, unsigned) = handshake(&server, &[]).await;
    assert!(
        unsigned.starts_with("http/1.1 401"),
        "the handshake is checked: {unsigned}"
    );

    let mut stream = tunnel(&server, &creds).await;
    assert!(echoes(&mut stream, b"ping through the gateway").await);

    // A revoke closes the tunnel, as it refuses the token's next request.
    assert_eq!(
        server.revoke(&creds, &creds.token_id).await.status(),
        StatusCode::OK
    );
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "the tunnel of a revoked token is closed"
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("x-lmts-token-id"),
        Some(creds.token_id.as_str())
    );
}

/// A tunnel through `server` (on PostgreSQL) that outlives the instance's first hearing: until
/// it listens, an instance closes every tunnel as it starts to (notices sent before are lost).
async fn lasting_tunnel(server: &TestServer, creds: &Creds) -> TcpStream {
    for _ in 0..20 {
        let mut stream = tunnel(server, creds).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        if echoes(&mut stream, b"still open").await {
            return stream;
        }
    }
    panic!("every tunnel was closed");
}

/// Rotates `creds`'s token through `server` with an overlap of `seconds`.
async fn rotate_with_overlap(server: &TestServer, creds: &Creds, seconds: u32) {
    let target = format!("/auth/api-tokens/{}/rotate", creds.token_id);
    let body = format!(r#"{{"overlapSeconds":{seconds}}}"#);
    let rotated = server.signed(creds, Method::POST, &target, &body).await;
    assert_eq!(rotated.status(), StatusCode::CREATED);
}

/// Asserts that `stream`'s tunnel, whose token was just rotated with a three-second overlap,
/// works through half of it and is closed soon after it.
async fn assert_open_for_the_overlap(stream: &mut TcpStream) {
    // Past further hearings of the rotation too (the SQLite file watcher looks every 250 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        echoes(stream, b"during the overlap").await,
        "the rotation closed the tunnel while its token still works"
    );
    assert!(
        closed_within(stream, Duration::from_secs(4)).await,
        "the tunnel outlived its token's overlap"
    );
}

#[tokio::test]
async fn a_rotated_tokens_tunnel_stays_open_until_the_overlap_ends() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let (server, creds) = TestServer::with_token(gateway_to(&upstream)).await;
    let mut stream = tunnel(&server, &creds).await;
    assert!(echoes(&mut stream, b"before the rotation").await);
    rotate_with_overlap(&server, &creds, 3).await;
    assert_open_for_the_overlap(&mut stream).await;
}

#[tokio::test]
async fn on_postgresql_a_rotation_elsewhere_ends_a_tunnel_with_the_overlap() {
    let url = PgServer::shared().database().await;
    let upstream = RecordingUpstream::start().await.unwrap();
    let service = on_postgres(&url, None, |_| {}).await;
    let (creds, _) = service.derive(ALICE, "{}").await;
    let gateway = on_postgres(&url, Some(&service), gateway_to(&upstream)).await;
    let mut rotated = lasting_tunnel(&gateway, &creds).await;
    let (other, _) = service.derive(ALICE, "{}").await;
    let mut revoked = lasting_tunnel(&gateway, &other).await;

    // The rotation is answered once the gateway instance has applied it.
    rotate_with_overlap(&service, &creds, 3).await;
    assert!(echoes(&mut revoked, b"another token's tunnel").await);
    assert_open_for_the_overlap(&mut rotated).await;

    // A revoke during a rotation's overlap, through the service, still closes the token's
    // tunnel on the gateway at once, not at the end of the overlap.
    rotate_with_overlap(&service, &other, 60).await;
    assert!(echoes(&mut revoked, b"during its overlap").await);
    let answer = service.revoke(&other, &other.token_id).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        closed_within(&mut revoked, Duration::from_secs(2)).await,
        "a revoke during the overlap left the tunnel open"
    );
}

//! SPEC C2's expiry and allowed addresses, at every door the `Verifier` guards: the token
//! endpoints, `/ext-authz`, `/forward-auth` and the verifying proxy. Time is the service's
//! clock, set by the test; the client's address is the loopback peer, or what a trusted proxy
//! forwarded for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use lmts_core::signing::format_timestamp;
use lmts_server::{
    server::{GatewayConfig, ServerConfig},
    service::{policy::RoutePolicy, TrustedProxies},
};
use lmts_testkit::{policy::SPEC_EXAMPLE, upstream::RecordingUpstream};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// The route the tests' signed requests take, added to SPEC C1's example.
const ORDER_ROUTE: &str = "
[[route]]
method = \"GET\"
path = \"/orders/*\"
scopes = [\"trading\"]
";

/// A token service with the gateway in front of `upstream`, on `clock`.
fn gateway_on(upstream: &RecordingUpstream, clock: &TestClock) -> impl FnOnce(&mut ServerConfig) {
    let (url, clock) = (upstream.url(), clock.clock());
    move |config| {
        config.clock = clock;
        config.gateway = GatewayConfig {
            policy: Some(RoutePolicy::parse(&format!("{SPEC_EXAMPLE}{ORDER_ROUTE}")).unwrap()),
            upstream: Some(url),
            ..GatewayConfig::default()
        };
    }
}

/// A request signed at `at` by `creds` for `signed_target`, sent to `url_target` with `extra`
/// headers.
async fn send_signed(
    server: &TestServer,
    creds: &Creds,
    at: DateTime<Utc>,
    (method, url_target, signed_target): (Method, &str, &str),
    extra: &[(&'static str, String)],
) -> Response {
    let mut headers = sign(creds, at, method.as_str(), signed_target, "");
    headers.extend_from_slice(extra);
    server.send_with(method, url_target, "", &headers).await
}

/// `GET /auth/api-tokens` signed at `at`.
async fn list_at(server: &TestServer, creds: &Creds, at: DateTime<Utc>) -> Response {
    let list = (Method::GET, "/auth/api-tokens", "/auth/api-tokens");
    send_signed(server, creds, at, list, &[]).await
}

/// The status of a signed request at `at` through each door: the list, `/ext-authz`,
/// `/forward-auth` and the proxy.
async fn statuses_at_every_door(
    server: &TestServer,
    creds: &Creds,
    at: DateTime<Utc>,
    extra: &[(&'static str, String)],
) -> [StatusCode; 4] {
    let order = "/orders/7";
    let doors = [
        (Method::GET, "/auth/api-tokens", "/auth/api-tokens"),
        (Method::GET, "/ext-authz/orders/7", order),
        (Method::GET, "/forward-auth", order),
        (Method::GET, order, order),
    ];
    let mut statuses = [StatusCode::OK; 4];
    for (status, door) in statuses.iter_mut().zip(doors) {
        let mut extra = extra.to_vec();
        if door.1 == "/forward-auth" {
            extra.push(("x-forwarded-method", "GET".into()));
            extra.push(("x-forwarded-uri", order.into()));
        }
        *status = send_signed(server, creds, at, door, &extra).await.status();
    }
    statuses
}

/// Derives a token for `ALICE` with `body`, which must be accepted.
async fn derive(server: &TestServer, body: Value) -> (Creds, Value) {
    server.derive(ALICE, &body.to_string()).await
}

#[tokio::test]
async fn a_token_expires_at_the_instant_at_every_door_and_leaves_the_list() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let clock = TestClock::default();
    let server = TestServer::start_with(gateway_on(&upstream, &clock)).await;
    let expires_at = clock.now() + TimeDelta::minutes(10);
    let (expiring, answer) = derive(
        &server,
        json!({ "scopes": ["trading"], "expiresAt": format_timestamp(expires_at) }),
    )
    .await;
    assert_eq!(answer["expiresAt"], format_timestamp(expires_at));
    assert_eq!(answer["allowedIps"], json!([]));
    let (lasting, answer) = derive(&server, json!({})).await;
    assert_eq!(answer["expiresAt"], Value::Null);

    let last_moment = expires_at - TimeDelta::milliseconds(1);
    clock.set(last_moment);
    let open = statuses_at_every_door(&server, &expiring, last_moment, &[]).await;
    assert_eq!(open, [StatusCode::OK; 4]);
    let listed: Vec<Value> = list_at(&server, &lasting, last_moment)
        .await
        .json()
        .await
        .unwrap();
    // Both were derived at the same instant of the stopped clock: found by id, not by order.
    let entry = |creds: &Creds| {
        listed
            .iter()
            .find(|token| token["tokenId"] == creds.token_id.as_str())
            .unwrap_or_else(|| panic!("{} not listed: {listed:?}", creds.token_id))
    };
    assert_eq!(entry(&expiring)["expiresAt"], format_timestamp(expires_at));
    assert_eq!(entry(&lasting)["expiresAt"], Value::Null);
    assert_eq!(listed.len(), 2);
    let reached_upstream = upstream.count();
    assert_eq!(
        reached_upstream, 1,
        "the proxied request reached the upstream"
    );

    clock.set(expires_at);
    let shut = statuses_at_every_door(&server, &expiring, expires_at, &[]).await;
    assert_eq!(shut, [StatusCode::UNAUTHORIZED; 4]);
    let refused = list_at(&server, &expiring, expires_at).await;
    assert_eq!(
        assert_error(refused, StatusCode::UNAUTHORIZED).await,
        "API token expired"
    );
    assert_eq!(
        upstream.count(),
        reached_upstream,
        "nothing more reached it"
    );
    // It left the list (the cached list too: it was rendered before the expiry), and it can
    // no longer be revoked: it is not a live token.
    let ids = listed_ids(list_at(&server, &lasting, expires_at).await).await;
    assert_eq!(ids, [lasting.token_id.as_str()]);
    let target = format!("/auth/api-tokens/{}", expiring.token_id);
    let revoke = send_signed(
        &server,
        &lasting,
        expires_at,
        (Method::DELETE, &target, &target),
        &[],
    )
    .await;
    assert_eq!(revoke.status(), StatusCode::NOT_FOUND);
    // A bad signature from an expired token says nothing of its expiry.
    let wrong = Creds {
        token_id: expiring.token_id.clone(),
        secret: lasting.secret.clone(),
    };
    let forged = list_at(&server, &wrong, expires_at).await;
    let message = assert_error(forged, StatusCode::UNAUTHORIZED).await;
    assert!(!message.contains("expired"), "{message}");
}

#[tokio::test]
async fn allowed_ips_hold_a_token_to_its_blocks_and_believe_only_trusted_proxies() {
    let upstream = RecordingUpstream::start().await.unwrap();
    let clock = TestClock::default();
    let server = TestServer::start_with(gateway_on(&upstream, &clock)).await;
    let (loopback, answer) = derive(&server, json!({ "allowedIps": ["127.0.0.1/8"] })).await;
    assert_eq!(answer["allowedIps"], json!(["127.0.0.0/8"]));
    let (elsewhere, _) = derive(&server, json!({ "allowedIps": ["203.0.113.0/24"] })).await;
    let now = clock.now();
    let inside = statuses_at_every_door(&server, &loopback, now, &[]).await;
    assert_eq!(inside, [StatusCode::OK; 4]);
    let outside = statuses_at_every_door(&server, &elsewhere, now, &[]).await;
    assert_eq!(outside, [StatusCode::FORBIDDEN; 4]);
    // The header of an untrusted peer changes nothing.
    let forwarded = [("x-forwarded-for", "203.0.113.9".to_owned())];
    let claimed = statuses_at_every_door(&server, &elsewhere, now, &forwarded).await;
    assert_eq!(claimed, [StatusCode::FORBIDDEN; 4]);
    let refused = send_signed(
        &server,
        &elsewhere,
        now,
        (Method::GET, "/auth/api-tokens", "/auth/api-tokens"),
        &forwarded,
    )
    .await;
    let message = assert_error(refused, StatusCode::FORBIDDEN).await;
    assert!(message.contains("127.0.0.1"), "{message}");

    // Behind a trusted load balancer, the address it forwarded for is the client's.
    let dir = server.stop().await;
    let upstream = RecordingUpstream::start().await.unwrap();
    let behind = TestServer::start_in(dir, |config| {
        gateway_on(&upstream, &clock)(config);
        config.service.trusted_proxies = "127.0.0.1".parse::<TrustedProxies>().unwrap();
    })
    .await;
    let via = |address: &str| [("x-forwarded-for", format!("{address}, 127.0.0.1"))];
    let passed = statuses_at_every_door(&behind, &elsewhere, now, &via("203.0.113.9")).await;
    assert_eq!(passed, [StatusCode::OK; 4]);
    let foreign = statuses_at_every_door(&behind, &elsewhere, now, &via("198.51.100.1")).await;
    assert_eq!(foreign, [StatusCode::FORBIDDEN; 4]);
    let direct = statuses_at_every_door(&behind, &loopback, now, &via("198.51.100.1")).await;
    assert_eq!(
        direct,
        [StatusCode::FORBIDDEN; 4],
        "the forwarded client is not loopback"
    );
}

#[tokio::test]
async fn lifecycle_fields_are_checked_and_named_at_derive() {
    let clock = TestClock::default();
    let server = TestServer::start_with(|config| config.clock = clock.clock()).await;
    let identity = server.identity_token(ALICE);
    let past = format_timestamp(clock.now() - TimeDelta::seconds(1));
    let too_far = format_timestamp(clock.now() + TimeDelta::days(367));
    for (body, expected) in [
        (
            json!({ "expiresAt": past }),
            "expiresAt must be in the future",
        ),
        (
            json!({ "expiresAt": too_far }),
            "expiresAt must be at most one year ahead",
        ),
        (
            json!({ "expiresAt": "next week" }),
            "expiresAt must be an RFC 3339",
        ),
        (
            json!({ "allowedIps": ["10.0.0.0/33"] }),
            "allowedIps: \"10.0.0.0/33\"",
        ),
        (
            json!({ "allowedIps": "10.0.0.0/8" }),
            "allowedIps must be an array",
        ),
    ] {
        let response = server.derive_raw(&identity, &body.to_string()).await;
        let message = assert_error(response, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(expected), "{body}: {message}");
    }
    let (creds, _) = derive(&server, json!({})).await;
    assert_eq!(
        listed_ids(server.list(&creds).await).await.len(),
        1,
        "nothing else was created"
    );
}

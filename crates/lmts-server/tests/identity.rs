//! Privy identity tokens (SPEC A6): what is accepted, what is refused, and key sources (a PEM
//! file, a JWKS document served over real HTTP, the dev issuer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::Poll,
    time::Duration,
};

use axum::{response::IntoResponse, routing::get, Json, Router};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::*;
use lmts_server::identity::{
    IdentityError, IdentityKeys, IdentityVerifier, JwksSource, VerifiedIdentity,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::watch;

const APP: &str = "app-under-test";

/// A server that trusts `key` through a PEM file, not in dev mode.
async fn pem_server(key: &TestKey) -> TestServer {
    let pem_dir = tempfile::tempdir().unwrap();
    let pem_path = pem_dir.path().join("privy.pem");
    std::fs::write(&pem_path, key.public_pem()).unwrap();
    let server = TestServer::start_with(|config| {
        config.dev = false;
        config.identity.app_id = Some(APP.into());
        config.identity.verification_key_file = Some(pem_path);
    })
    .await;
    drop(pem_dir);
    server
}

async fn status_of(server: &TestServer, token: &str) -> (StatusCode, String) {
    let response = server.capabilities(token).await;
    let status = response.status();
    if status == StatusCode::OK {
        return (status, String::new());
    }
    (status, assert_error(response, status).await)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

#[tokio::test]
async fn a_valid_privy_token_is_accepted_and_mapped_to_its_wallet() {
    let key = TestKey::generate();
    let server = pem_server(&key).await;
    let token = key.sign(Some("privy-kid"), &privy_claims(APP, &ALICE.to_lowercase()));
    let response = server.derive_raw(&token, "{}").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["profile"]["account"], ALICE);
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_401() {
    let key = TestKey::generate();
    let server = pem_server(&key).await;
    let claims = privy_claims(APP, ALICE);
    let now = now().timestamp();
    let other_key = TestKey::generate();
    let good = key.sign(None, &claims);
    let (header, rest) = good.split_once('.').unwrap();
    let payload = rest.split_once('.').unwrap().0;

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.public_pem().as_bytes()),
    )
    .unwrap();
    let es384_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES384","typ":"JWT"}"#);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired beyond the leeway",
            key.sign(None, &with(claims.clone(), "exp", json!(now - 120))),
            "expired",
        ),
        (
            "wrong audience",
            key.sign(None, &with(claims.clone(), "aud", json!("other-app"))),
            "another app",
        ),
        (
            "wrong issuer",
            key.sign(None, &with(claims.clone(), "iss", json!("evil.io"))),
            "another issuer",
        ),
        (
            "not yet valid",
            key.sign(None, &with(claims.clone(), "nbf", json!(now + 600))),
            "not valid yet",
        ),
        (
            "another key",
            other_key.sign(None, &claims),
            "signature is invalid",
        ),
        ("alg none", format!("{none_header}.{payload}."), "malformed"),
        ("HS256 with the public key as secret", hs256, "ES256"),
        (
            "ES384 header",
            format!(
                "{es384_header}.{payload}.{}",
                rest.split_once('.').unwrap().1
            ),
            "ES256",
        ),
        (
            "payload swapped",
            format!(
                "{header}.{}.{}",
                URL_SAFE_NO_PAD.encode(b"{\"sub\":\"x\"}"),
                rest.split_once('.').unwrap().1
            ),
            "invalid",
        ),
        (
            "truncated",
            good[..good.len() - 10].to_owned(),
            "identity token",
        ),
        ("garbage", "not-a-jwt".into(), "malformed"),
        ("huge", "a".repeat(20_000), "malformed"),
        (
            "without sub",
            key.sign(None, &{
                let mut c = claims.clone();
                c.as_object_mut().unwrap().remove("sub");
                c
            }),
            "required claim",
        ),
    ];
    for (name, token, expected) in cases {
        let (status, message) = status_of(&server, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message}");
    }
    assert!(
        server
            .service
            .store()
            .profile_by_account(ALICE)
            .await
            .unwrap()
            .is_none(),
        "no profile created"
    );
}

#[tokio::test]
async fn expiry_has_a_small_leeway() {
    let key = TestKey::generate();
    let server = pem_server(&key).await;
    let claims = with(
        privy_claims(APP, ALICE),
        "exp",
        json!(now().timestamp() - 5),
    );
    assert_eq!(
        status_of(&server, &key.sign(None, &claims)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_identity_without_a_wallet_is_403() {
    let key = TestKey::generate();
    let server = pem_server(&key).await;
    let claims = with(
        privy_claims(APP, ALICE),
        "linked_accounts",
        json!(json!([{"type": "email", "address": "a@b.c"}]).to_string()),
    );
    let (status, message) = status_of(&server, &key.sign(None, &claims)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message.contains("no linked wallet"), "{message}");
}

#[tokio::test]
async fn dev_tokens_are_refused_without_dev_mode() {
    let key = TestKey::generate();
    let server = pem_server(&key).await;
    let dev_token = server.identity_token(ALICE);
    let (status, _) = status_of(&server, &dev_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_server_needs_a_key_source_and_an_app_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = lmts_server::server::ServerConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let error = lmts_server::server::Server::bind(config.clone())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no identity key source"),
        "{error}"
    );
    config.identity.jwks_url = Some("http://127.0.0.1:9/jwks.json".into());
    let error = lmts_server::server::Server::bind(config).await.unwrap_err();
    assert!(error.to_string().contains("app id is required"), "{error}");
}

/// How the test JWKS endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Jwks {
    /// Serves the key set at once.
    Serve,
    /// Answers 500.
    Fail,
    /// Accepts the request and never answers.
    Hang,
    /// Serves the key set once the test calls [`JwksServer::release`].
    Hold,
}

/// A JWKS endpoint on loopback whose key set and behaviour the test can change, counting fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    behaviour: Arc<Mutex<Jwks>>,
    gate: Arc<watch::Sender<bool>>,
}

impl JwksServer {
    fn set(&self, behaviour: Jwks) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Lets held fetches answer.
    fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Returns once `count` fetches have reached the endpoint.
    async fn fetched(&self, count: usize) {
        while self.fetches() < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn jwks_server(initial: Vec<Value>) -> JwksServer {
    let keys = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let behaviour = Arc::new(Mutex::new(Jwks::Serve));
    let gate = Arc::new(watch::Sender::new(false));
    let router = Router::new().route(
        "/api/v1/apps/app-under-test/jwks.json",
        get({
            let (keys, fetches, behaviour, gate) = (
                keys.clone(),
                fetches.clone(),
                behaviour.clone(),
                gate.clone(),
            );
            move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let behaviour = *behaviour.lock().unwrap();
                match behaviour {
                    Jwks::Serve => {}
                    Jwks::Fail => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    Jwks::Hang => std::future::pending::<()>().await,
                    Jwks::Hold => {
                        let _ = gate.subscribe().wait_for(|open| *open).await;
                    }
                }
                Json(json!({ "keys": *keys.lock().unwrap() })).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/v1/apps/app-under-test/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    JwksServer {
        url,
        keys,
        fetches,
        behaviour,
        gate,
    }
}

async fn jwks_backed_server(jwks: &JwksServer, min_refetch: Duration) -> TestServer {
    let url = jwks.url.clone();
    TestServer::start_with(move |config| {
        config.dev = false;
        config.identity.app_id = Some(APP.into());
        config.identity.jwks_url = Some(url);
        config.identity.jwks_min_refetch = min_refetch;
    })
    .await
}

#[tokio::test]
async fn jwks_keys_are_fetched_over_http_cached_and_chosen_by_kid() {
    let first = TestKey::generate();
    let second = TestKey::generate();
    let jwks = jwks_server(vec![first.jwk("k1"), second.jwk("k2")]).await;
    let server = jwks_backed_server(&jwks, Duration::ZERO).await;

    for _ in 0..3 {
        let token = first.sign(Some("k1"), &privy_claims(APP, ALICE));
        assert_eq!(status_of(&server, &token).await.0, StatusCode::OK);
    }
    let token = second.sign(Some("k2"), &privy_claims(APP, BOB));
    assert_eq!(status_of(&server, &token).await.0, StatusCode::OK);
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "cached after the first fetch"
    );

    // Signed by k2's key but claiming kid k1: the key is chosen by kid, so it fails.
    let wrong = second.sign(Some("k1"), &privy_claims(APP, BOB));
    assert_eq!(status_of(&server, &wrong).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let old = TestKey::generate();
    let rotated = TestKey::generate();
    let jwks = jwks_server(vec![old.jwk("old")]).await;
    let server = jwks_backed_server(&jwks, Duration::from_secs(3600)).await;
    assert_eq!(
        status_of(&server, &old.sign(Some("old"), &privy_claims(APP, ALICE)))
            .await
            .0,
        StatusCode::OK
    );

    jwks.keys.lock().unwrap().push(rotated.jwk("new"));
    let token = rotated.sign(Some("new"), &privy_claims(APP, ALICE));
    for _ in 0..3 {
        let (status, message) = status_of(&server, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(message.contains("unknown key"), "{message}");
    }
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "no refetch inside the interval"
    );

    let eager = jwks_backed_server(&jwks, Duration::ZERO).await;
    assert_eq!(
        status_of(&eager, &token).await.0,
        StatusCode::OK,
        "a rotated key is picked up"
    );
    let (status, _) = status_of(
        &eager,
        &rotated.sign(Some("injected' OR 1=1"), &privy_claims(APP, ALICE)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_not_500() {
    let key = TestKey::generate();
    let server = TestServer::start_with(|config| {
        config.dev = false;
        config.identity.app_id = Some(APP.into());
        config.identity.jwks_url = Some("http://127.0.0.1:9/jwks.json".into());
    })
    .await;
    let response = server
        .capabilities(&key.sign(Some("k"), &privy_claims(APP, ALICE)))
        .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

/// The longest any step of the tests below may take; only a bound against hanging forever.
const BOUND: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_hanging_jwks_host_delays_no_request_whose_key_is_known() {
    let key = TestKey::generate();
    let jwks = jwks_server(vec![key.jwk("k1")]).await;
    let server = jwks_backed_server(&jwks, Duration::ZERO).await;
    let known = key.sign(Some("k1"), &privy_claims(APP, ALICE));
    assert_eq!(status_of(&server, &known).await.0, StatusCode::OK);

    jwks.set(Jwks::Hang);
    let unknown = key.sign(Some("rotated"), &privy_claims(APP, ALICE));
    let waiting = status_of(&server, &unknown);
    tokio::pin!(waiting);
    tokio::time::timeout(BOUND, async {
        tokio::select! {
            biased;
            answer = &mut waiting => panic!("answered before the refetch started: {answer:?}"),
            () = jwks.fetched(2) => {}
        }
    })
    .await
    .unwrap();

    // The refetch hangs; a request whose kid is known is answered while it does.
    let answered = tokio::time::timeout(BOUND, async {
        tokio::select! {
            biased;
            answer = &mut waiting => panic!("the known-kid request waited for the fetch: {answer:?}"),
            answer = status_of(&server, &known) => answer,
        }
    })
    .await
    .unwrap();
    assert_eq!(answered.0, StatusCode::OK, "{}", answered.1);

    // The hanging fetch gives up; the unknown kid is bad input once keys are known: 401.
    let (status, message) = tokio::time::timeout(BOUND, waiting).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
    assert!(message.contains("unknown key"), "{message}");
}

/// A verifier backed by `jwks` alone, called directly so that the test decides what runs when.
fn jwks_verifier(jwks: &JwksServer, min_refetch: Duration) -> IdentityVerifier {
    let keys = IdentityKeys {
        jwks: Some(JwksSource::new(jwks.url.clone(), min_refetch).unwrap()),
        ..IdentityKeys::default()
    };
    IdentityVerifier::new(keys, "privy.io", APP, chrono::TimeDelta::seconds(30))
}

type Verification<'a> = Pin<Box<dyn Future<Output = Result<VerifiedIdentity, IdentityError>> + 'a>>;

/// Drives all `futures` on this one task, each polled in turn, so that every one of them has
/// started (and is waiting) before the first poll returns; answers their outputs in order.
async fn join_all(futures: Vec<Verification<'_>>) -> Vec<Result<VerifiedIdentity, IdentityError>> {
    let mut slots: Vec<_> = futures.into_iter().map(|future| (future, None)).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (future, output) in &mut slots {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(answer) => *output = Some(answer),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(
            slots
                .iter_mut()
                .map(|(_, output)| output.take().unwrap())
                .collect(),
        )
    })
    .await
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let key = TestKey::generate();
    let jwks = jwks_server(vec![key.jwk("k1")]).await;
    jwks.set(Jwks::Hold);
    // No rate limit: only the single flight keeps the fetches to one.
    let verifier = jwks_verifier(&jwks, Duration::ZERO);
    let tokens: Vec<String> = (0..8)
        .map(|i| key.sign(Some(&format!("unknown-{i}")), &privy_claims(APP, ALICE)))
        .collect();
    let all = join_all(
        tokens
            .iter()
            .map(|token| Box::pin(verifier.verify(token, now())) as Verification<'_>)
            .collect(),
    );
    tokio::pin!(all);
    tokio::time::timeout(BOUND, async {
        tokio::select! {
            biased;
            answers = &mut all => panic!("answered before the JWKS host did: {answers:?}"),
            () = jwks.fetched(1) => {}
        }
    })
    .await
    .unwrap();
    jwks.release();
    let answers = tokio::time::timeout(BOUND, all).await.unwrap();
    for answer in answers {
        assert!(
            matches!(answer, Err(IdentityError::UnknownKey)),
            "{answer:?}"
        );
    }
    assert_eq!(jwks.fetches(), 1, "one fetch for all of them");
}

#[tokio::test]
async fn a_fetch_outlives_the_request_that_started_it() {
    let key = TestKey::generate();
    let jwks = jwks_server(vec![key.jwk("k1")]).await;
    jwks.set(Jwks::Hold);
    // The rate limit forbids a second fetch: only the first one can bring k1.
    let verifier = jwks_verifier(&jwks, Duration::from_secs(3600));
    let token = key.sign(Some("k1"), &privy_claims(APP, ALICE));
    {
        let abandoned = verifier.verify(&token, now());
        tokio::pin!(abandoned);
        tokio::time::timeout(BOUND, async {
            tokio::select! {
                biased;
                answer = &mut abandoned => panic!("answered before the JWKS host did: {answer:?}"),
                () = jwks.fetched(1) => {}
            }
        })
        .await
        .unwrap();
    } // The client went away while the fetch was in flight.
    jwks.release();
    let answer = tokio::time::timeout(BOUND, verifier.verify(&token, now()))
        .await
        .unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn a_failing_jwks_host_answers_401_for_an_unknown_kid_once_keys_are_known() {
    let key = TestKey::generate();
    let jwks = jwks_server(vec![key.jwk("k1")]).await;
    let server = jwks_backed_server(&jwks, Duration::ZERO).await;
    let known = key.sign(Some("k1"), &privy_claims(APP, ALICE));
    assert_eq!(status_of(&server, &known).await.0, StatusCode::OK);

    jwks.set(Jwks::Fail);
    let unknown = key.sign(Some("garbage"), &privy_claims(APP, ALICE));
    let (status, message) = status_of(&server, &unknown).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
    assert!(message.contains("unknown key"), "{message}");
    assert_eq!(jwks.fetches(), 2, "the refetch was tried");
    assert_eq!(
        status_of(&server, &known).await.0,
        StatusCode::OK,
        "the known keys are kept"
    );
}

#[tokio::test]
async fn without_any_key_set_every_request_is_503_and_refetches_stay_rate_limited() {
    let key = TestKey::generate();
    let jwks = jwks_server(vec![key.jwk("k1")]).await;
    jwks.set(Jwks::Fail);
    let server = jwks_backed_server(&jwks, Duration::from_secs(3600)).await;
    for kid in ["k1", "garbage-1", "garbage-2", "k1"] {
        let response = server
            .capabilities(&key.sign(Some(kid), &privy_claims(APP, ALICE)))
            .await;
        assert!(response.headers().contains_key("retry-after"), "{kid}");
        let message = assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(message.contains("unavailable"), "{kid}: {message}");
    }
    assert_eq!(jwks.fetches(), 1, "no refetch inside the interval");
}

#[tokio::test]
async fn extreme_times_neither_wrap_nor_panic() {
    let key = TestKey::generate();
    let server = pem_server(&key).await;
    let claims = privy_claims(APP, ALICE);
    let cases = [
        ("exp = i64::MAX", "exp", json!(i64::MAX), None),
        ("exp = i64::MIN", "exp", json!(i64::MIN), Some("expired")),
        ("nbf = i64::MIN", "nbf", json!(i64::MIN), None),
        (
            "nbf = i64::MAX",
            "nbf",
            json!(i64::MAX),
            Some("not valid yet"),
        ),
    ];
    for (name, claim, value, refusal) in cases {
        let token = key.sign(None, &with(claims.clone(), claim, value));
        let (status, message) = status_of(&server, &token).await;
        match refusal {
            None => assert_eq!(status, StatusCode::OK, "{name}: {message}"),
            Some(expected) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {message}");
                assert!(message.contains(expected), "{name}: {message}");
            }
        }
    }
    let mut without_exp = claims;
    without_exp.as_object_mut().unwrap().remove("exp");
    let (status, message) = status_of(&server, &key.sign(None, &without_exp)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}");
    assert!(message.contains("required claim"), "{message}");
}

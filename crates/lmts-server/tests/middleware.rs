//! The HMAC middleware on its own, through `tower::ServiceExt::oneshot` with a driven clock:
//! replay refusal for every state-changing method, and the hand-off to handlers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

use axum::{
    body::Body,
    http::{Request, StatusCode},
    middleware,
    routing::post,
    Extension, Router,
};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use lmts_core::{Scope, Signer, TokenId, TokenSecret};
use lmts_server::{
    clock::Clock,
    crypto::Keyring,
    http::require_hmac,
    identity::{IdentityKeys, IdentityVerifier},
    service::VerifiedToken,
    store::{NewToken, SqliteStore, Store},
    ServiceSettings, TokenService,
};
use tower::ServiceExt;

const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Harness {
    router: Router,
    millis: Arc<AtomicI64>,
    signer: Signer,
}

impl Harness {
    async fn new() -> Self {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let start = DateTime::parse_from_rfc3339("2026-03-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let millis = Arc::new(AtomicI64::new(start.timestamp_millis()));
        let clock = {
            let millis = millis.clone();
            Clock::from_fn(move || {
                DateTime::from_timestamp_millis(millis.load(Ordering::SeqCst)).unwrap()
            })
        };
        let keyring = Keyring::from_base64(MASTER, &[]).unwrap();
        let secret = TokenSecret::from_bytes(vec![9; 32]).unwrap();
        let profile = store
            .upsert_profile(
                "did:privy:m",
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                start,
            )
            .await
            .unwrap();
        store
            .insert_token(
                &NewToken {
                    token_id: TokenId::new("tok_m"),
                    profile_id: profile.id,
                    label: None,
                    scopes: vec![Scope::Trading],
                    created_at: start,
                    expires_at: None,
                    allowed_ips: Vec::new(),
                    sealed: keyring.seal("tok_m", &secret).unwrap(),
                    once: None,
                    event: None,
                },
                Some(10),
            )
            .await
            .unwrap();
        let identity = IdentityVerifier::new(
            IdentityKeys::default(),
            "privy.io",
            "app",
            TimeDelta::zero(),
        );
        let service = TokenService::new(
            ServiceSettings::default(),
            Arc::new(store),
            keyring,
            identity,
            clock,
        );
        let echo = |Extension(token): Extension<VerifiedToken>, body: String| async move {
            format!("{} {}", token.token_id, body)
        };
        let router = Router::new()
            .route(
                "/orders",
                post(echo).put(echo).patch(echo).delete(echo).get(echo),
            )
            .route_layer(middleware::from_fn_with_state(
                service.clone(),
                require_hmac,
            ))
            .with_state(service);
        Self {
            router,
            millis,
            signer: Signer::new(&secret),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis.load(Ordering::SeqCst)).unwrap()
    }

    fn advance(&self, delta: TimeDelta) {
        self.millis
            .fetch_add(delta.num_milliseconds(), Ordering::SeqCst);
    }

    fn request(&self, method: &str, target: &str, body: &str, at: DateTime<Utc>) -> Request<Body> {
        let headers = self
            .signer
            .sign_request("tok_m", at, method, target, body.as_bytes());
        let mut builder = Request::builder().method(method).uri(target);
        for (name, value) in headers.pairs() {
            builder = builder.header(name, value);
        }
        builder.body(Body::from(body.to_owned())).unwrap()
    }

    /// The status of a request signed at `at`.
    async fn status(
        &self,
        method: &str,
        target: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> StatusCode {
        self.send(self.request(method, target, body, at)).await.0
    }

    /// The body of a 401 to a request signed at `at`.
    async fn refusal(&self, method: &str, target: &str, body: &str, at: DateTime<Utc>) -> String {
        let (status, body) = self.send(self.request(method, target, body, at)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        body
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

#[tokio::test]
async fn handlers_receive_the_verified_token_and_the_exact_body() {
    let harness = Harness::new().await;
    let request = harness.request(
        "POST",
        "/orders?market=btc",
        r#"{"foo":"bar"}"#,
        harness.now(),
    );
    let (status, body) = harness.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"tok_m {"foo":"bar"}"#);
}

#[tokio::test]
async fn every_state_changing_method_is_refused_when_replayed() {
    let harness = Harness::new().await;
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let at = harness.now();
        let (first, _) = harness
            .send(harness.request(method, "/orders", "{}", at))
            .await;
        assert_eq!(first, StatusCode::OK, "{method}");
        let (replayed, body) = harness
            .send(harness.request(method, "/orders", "{}", at))
            .await;
        assert_eq!(replayed, StatusCode::UNAUTHORIZED, "{method}");
        assert!(body.contains("replayed"), "{body}");
        // The same request signed a moment later is a new request.
        harness.advance(TimeDelta::milliseconds(1));
        let (fresh, _) = harness
            .send(harness.request(method, "/orders", "{}", harness.now()))
            .await;
        assert_eq!(fresh, StatusCode::OK, "{method}");
    }
}

#[tokio::test]
async fn gets_are_not_tracked_and_old_signatures_age_out_of_the_window() {
    let harness = Harness::new().await;
    let at = harness.now();
    for _ in 0..3 {
        assert_eq!(
            harness.status("GET", "/orders", "", at).await,
            StatusCode::OK
        );
    }
    let (status, _) = harness
        .send(harness.request("POST", "/orders", "{}", at))
        .await;
    assert_eq!(status, StatusCode::OK);
    harness.advance(TimeDelta::seconds(31));
    let body = harness.refusal("POST", "/orders", "{}", at).await;
    assert!(body.contains("outside the window"), "{body}");
}

#[tokio::test]
async fn the_window_is_measured_on_the_service_clock() {
    let harness = Harness::new().await;
    let at = harness.now() - TimeDelta::seconds(29);
    assert_eq!(
        harness.status("GET", "/orders", "", at).await,
        StatusCode::OK
    );
    harness.advance(TimeDelta::seconds(2));
    let body = harness.refusal("GET", "/orders", "", at).await;
    assert!(body.contains("31.0 s behind server time"), "{body}");
}

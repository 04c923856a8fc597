//! `Client::request`, a signed request to any path, on loopback HTTP: against a server that
//! verifies what it received, against scripted faults (retry rules, clock skew), and against
//! the real token service.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::TimeDelta;
use common::*;
use lmts_core::signing::{parse_timestamp, CanonicalMessage, DEFAULT_WINDOW};
use lmts_sdk::{ApiToken, Client, DeriveApiTokenInput, Error, HmacCredentials, RetryPolicy};
use lmts_testkit::upstream::RecordingUpstream;
use serde_json::{json, Value};

/// Every recorded request carries a valid signature of what the scripted server received;
/// returns their timestamps.
fn signing_times(recorded: &[Recorded]) -> Vec<String> {
    let signer = credentials().signer();
    recorded
        .iter()
        .map(|request| {
            let stamp = request.header("lmts-timestamp").unwrap();
            let message =
                CanonicalMessage::new(stamp, &request.method, &request.target, &request.body);
            let signature = request.header("lmts-signature").unwrap();
            let at = parse_timestamp(stamp).unwrap();
            signer
                .verify(&message, signature, at, DEFAULT_WINDOW)
                .unwrap();
            stamp.to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_exact_target_and_body_sent_are_signed() {
    let recorder = RecordingUpstream::verifying(&credentials()).await.unwrap();
    let client = client(&recorder.url(), RetryPolicy::none());
    let order = json!({"market": "btc", "side": "buy", "size": 1.5, "note": "ünïcode"});
    let response = client
        .post("/orders/café?market=btc%20usd")
        .query(&[("tag", "a b&c")])
        .header("x-trace", "t1")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(response.headers()["x-recorder"], "verified");
    let echo: Value = response.json().unwrap();
    let target = "/orders/caf%C3%A9?market=btc%20usd&tag=a+b%26c";
    assert_eq!(echo["target"], target);

    let raw = client
        .put("/blobs/a%2Fb")
        .header("content-type", "application/octet-stream")
        .body(b"\x00\x01 not json\n".to_vec())
        .send()
        .await
        .unwrap();
    assert!(raw.is_success(), "{}", raw.text());
    let deleted = client.delete("/orders/7?").send().await.unwrap();
    assert!(deleted.is_success(), "{}", deleted.text());

    let received = recorder.seen();
    assert_eq!(received.len(), 3);
    let (post, put, delete) = (&received[0], &received[1], &received[2]);
    assert!(
        received.iter().all(|r| r.verdict == Some(Ok(()))),
        "{received:?}"
    );
    assert_eq!(post.method, "POST");
    assert_eq!(post.target, target);
    assert_eq!(post.body, serde_json::to_vec(&order).unwrap());
    assert_eq!(post.header("lmts-api-key"), Some("lmts_t"));
    assert_eq!(post.header("x-trace"), Some("t1"));
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(put.target, "/blobs/a%2Fb");
    assert_eq!(put.body, b"\x00\x01 not json\n");
    assert_eq!(put.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        (delete.target.as_str(), delete.body.len()),
        ("/orders/7?", 0)
    );
}

#[tokio::test]
async fn a_refusal_is_an_answer_until_error_for_status_types_it() {
    let recorder = RecordingUpstream::verifying(&credentials()).await.unwrap();
    let wrong = HmacCredentials::new("lmts_t", "c2VjcmV0").unwrap();
    let client = Client::builder()
        .base_url(recorder.url())
        .credentials(wrong)
        .build()
        .unwrap();
    let response = client.get("/portfolio").send().await.unwrap();
    assert_eq!(response.status(), 401);
    let error = response.error_for_status().unwrap_err();
    let api = error.api().unwrap();
    assert!(api.is_authentication());
    assert_eq!(api.messages, ["signature does not match the request"]);
    assert_eq!(
        recorder.seen().len(),
        1,
        "a 401 in step with the clock is final"
    );

    let unsigned = Client::new(recorder.url()).unwrap().get("/x").send().await;
    assert!(
        matches!(unsigned, Err(Error::MissingCredentials)),
        "{unsigned:?}"
    );
    for reserved in ["lmts-signature", "identity", "x-api-key", "host"] {
        let refused = client.get("/x").header(reserved, "v").send().await;
        assert!(matches!(refused, Err(Error::InvalidInput(_))), "{reserved}");
    }
    assert_eq!(recorder.seen().len(), 1, "nothing refused was sent");
}

#[tokio::test]
async fn a_post_answered_503_is_not_retried_but_a_get_is_and_each_attempt_re_signed() {
    let busy = || Step::json(503, r#"{"message":"busy"}"#);
    let server = Scripted::start(vec![busy(), Step::json(201, "{}")]).await;
    let response = client(&server.base, fast_retries())
        .post("/orders")
        .json(&json!({"size": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(server.recorded().len(), 1, "a POST may have been acted on");

    let server = Scripted::start(vec![busy(), busy(), Step::json(200, "[]")]).await;
    let response = client(&server.base, fast_retries())
        .get("/orders?open=true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let times = signing_times(&server.recorded());
    assert_eq!(times.len(), 3);
    assert!(times[0] < times[1] && times[1] < times[2], "{times:?}");

    let limited = Step::json(429, "{}").header("retry-after", "0");
    let server = Scripted::start(vec![limited, Step::json(201, "{}")]).await;
    let response = client(&server.base, fast_retries())
        .post("/orders")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "a 429 says nothing was done");
    assert_eq!(signing_times(&server.recorded()).len(), 2);
}

#[tokio::test]
async fn a_post_whose_connection_drops_after_sending_is_not_repeated() {
    let (base, connections) = dropping_server("").await;
    let error = client(&base, fast_retries())
        .patch("/orders/1")
        .json(&json!({"size": 2}))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(*connections.lock().unwrap(), 1);
    let (base, connections) = dropping_server("").await;
    client(&base, fast_retries())
        .get("/orders/1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(*connections.lock().unwrap(), 3, "a read is retried");
}

#[tokio::test]
async fn a_skewed_server_date_is_learnt_and_the_same_body_re_signed() {
    let server_time = now() + TimeDelta::seconds(-95);
    let server = Scripted::start(vec![window_refusal(server_time), Step::json(201, "{}")]).await;
    let client = client(&server.base, RetryPolicy::none());
    let response = client
        .post("/orders")
        .json(&json!({"size": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let recorded = server.recorded();
    let times = signing_times(&recorded);
    assert_eq!(times.len(), 2);
    assert_eq!(recorded[0].body, recorded[1].body);
    let second = parse_timestamp(&times[1]).unwrap();
    assert!(
        (second - server_time).abs() < TimeDelta::seconds(3),
        "{second} vs {server_time}"
    );
    assert!((client.clock_offset() + TimeDelta::seconds(95)).abs() < TimeDelta::seconds(3));
}

#[tokio::test]
async fn the_token_service_answers_a_generic_request() {
    let server = RealServer::start().await;
    let client = Client::new(&server.base).unwrap();
    let derived = client
        .api_tokens()
        .derive_token(
            &server.identity_token(ALICE),
            DeriveApiTokenInput::default(),
        )
        .await
        .unwrap();
    let scoped = client.with_credentials(derived.credentials());

    let listed = scoped.get("/auth/api-tokens").send().await.unwrap();
    assert_eq!(listed.status(), 200, "{}", listed.text());
    let tokens: Vec<ApiToken> = listed.json().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].token_id, derived.token_id);

    let unknown = scoped
        .delete("/auth/api-tokens/no%2Fsuch token")
        .send()
        .await
        .unwrap();
    let error = unknown.error_for_status().unwrap_err();
    assert!(error.api().unwrap().is_not_found(), "{error:?}");

    let own = format!("/auth/api-tokens/{}", derived.token_id);
    let revoked = scoped.delete(&own).send().await.unwrap();
    assert_eq!(revoked.status(), 200, "{}", revoked.text());
    let refused = scoped.get("/auth/api-tokens").send().await.unwrap();
    assert_eq!(
        refused.status(),
        401,
        "revoked credentials: {}",
        refused.text()
    );
}

//! `HmacSigning` in a reqwest-middleware client, on loopback HTTP against a server that
//! verifies every signature (feature `middleware`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lmts_sdk::{HmacCredentials, HmacSigning};
use lmts_testkit::upstream::RecordingUpstream;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

fn credentials() -> HmacCredentials {
    HmacCredentials::new("lmts_m", "c3VwZXItc2VjcmV0LWtleQ==").unwrap()
}

fn signing_client(credentials: HmacCredentials) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(HmacSigning::new(credentials))
        .build()
}

#[tokio::test]
async fn a_middleware_client_passes_the_verifying_server() {
    let recorder = RecordingUpstream::verifying(&credentials()).await.unwrap();
    let client = signing_client(credentials());
    let body = br#"{"market":"btc","size":1}"#;
    let posted = client
        .post(format!(
            "{}/orders/caf%C3%A9?market=btc%20usd",
            recorder.url()
        ))
        .query(&[("tag", "a b")])
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200, "{}", posted.text().await.unwrap());
    let fetched = client
        .get(format!("{}/orders", recorder.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);

    let received = recorder.seen();
    assert_eq!(received.len(), 2);
    assert!(
        received.iter().all(|r| r.verdict == Some(Ok(()))),
        "{received:?}"
    );
    assert_eq!(
        received[0].target,
        "/orders/caf%C3%A9?market=btc%20usd&tag=a+b"
    );
    assert_eq!(received[0].body, body);
    assert_eq!(received[0].header("lmts-api-key"), Some("lmts_m"));
    assert!(received[1].body.is_empty());
}

#[tokio::test]
async fn the_server_refuses_another_key_and_a_stream_is_never_sent() {
    let recorder = RecordingUpstream::verifying(&credentials()).await.unwrap();
    let wrong = HmacCredentials::new("lmts_m", "c2VjcmV0").unwrap();
    let refused = signing_client(wrong)
        .get(format!("{}/orders", recorder.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the server really verifies");

    let error = signing_client(credentials())
        .post(format!("{}/orders", recorder.url()))
        .body(reqwest::Body::wrap(String::from("{}")))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, reqwest_middleware::Error::Middleware(_))
            && error
                .to_string()
                .contains("streaming request body cannot be signed"),
        "{error}"
    );
    assert_eq!(recorder.seen().len(), 1);
}

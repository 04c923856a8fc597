//! `GET /metrics` of a real `lmts serve`, scraped before and after known traffic: the counters
//! move by exactly that traffic, and the text parses with the Prometheus Python client's parser.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::HashMap,
    io::Write,
    process::{Command, Stdio},
};

use common::*;

const PROMETHEUS_CLIENT: &str = "prometheus-client==0.21.1";

/// Every sample of a scrape, by name and sorted `label=value` pairs, as the parser read them.
type Samples = HashMap<String, f64>;

async fn scrape(base: &str) -> Samples {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let venv = python_venv("prometheus-client", PROMETHEUS_CLIENT);
    let mut parser = Command::new(venv.join("bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/parse_metrics.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let parsed = parser.wait_with_output().unwrap();
    assert!(parsed.status.success(), "{}\n{text}", stderr(&parsed));
    stdout(&parsed)
        .lines()
        .map(|line| {
            let (name, labels, value): (String, HashMap<String, String>, f64) =
                serde_json::from_str(line).unwrap();
            let mut labels: Vec<String> = labels
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.sort();
            (format!("{name}{{{}}}", labels.join(",")), value)
        })
        .collect()
}

/// How much `sample` moved between two scrapes (absent counts as 0).
fn moved(before: &Samples, after: &Samples, sample: &str) -> f64 {
    after.get(sample).copied().unwrap_or(0.0) - before.get(sample).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_by_exactly_the_traffic_and_the_text_parses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &dir.path().join("log"), &[]).await;
    let (token_id, secret, _) = derive_token(&service.base, &data, "{}").await;
    let before = scrape(&service.base).await;

    for _ in 0..3 {
        assert_eq!(
            reqwest::get(format!("{}/health", service.base))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for _ in 0..2 {
        let status =
            signed_status(&service.base, "GET", "/auth/api-tokens", &token_id, &secret).await;
        assert_eq!(status, Some(200));
    }
    let wrong = lmts_core::TokenSecret::from_bytes(vec![9; 32]).unwrap();
    let forged = signed_status(&service.base, "GET", "/auth/api-tokens", &token_id, &wrong).await;
    assert_eq!(forged, Some(401));
    let after = scrape(&service.base).await;

    let requests = |route: &str, status: u16| {
        format!("lmts_http_requests_total{{method=GET,route={route},status={status}}}")
    };
    let expected = [
        (requests("/health", 200), 3.0),
        (requests("/auth/api-tokens", 200), 2.0),
        (requests("/auth/api-tokens", 401), 1.0),
        (
            "lmts_signed_requests_total{outcome=accepted}".to_owned(),
            2.0,
        ),
        (
            "lmts_signed_requests_total{outcome=not_authentic}".to_owned(),
            1.0,
        ),
        (
            "lmts_http_request_duration_seconds_count{route=/health}".to_owned(),
            3.0,
        ),
        (requests("/metrics", 200), 1.0),
    ];
    for (sample, by) in expected {
        assert_eq!(moved(&before, &after, &sample), by, "{sample}");
    }
    let lookups = moved(
        &before,
        &after,
        "lmts_token_cache_lookups_total{result=hit}",
    ) + moved(
        &before,
        &after,
        "lmts_token_cache_lookups_total{result=miss}",
    );
    assert_eq!(lookups, 3.0, "one look-up per signed request");
    assert!(
        after.contains_key("lmts_usage_pending{}"),
        "{:?}",
        after.keys()
    );
    assert!(
        after.contains_key("lmts_db_pool_connections{pool=sqlite_read}"),
        "{:?}",
        after.keys()
    );
    assert!(
        after
            .get("lmts_sqlite_group_commit_writes_count{}")
            .copied()
            .unwrap_or(0.0)
            >= 1.0,
        "the derive was a group commit"
    );
    assert!(
        after.contains_key("lmts_http_request_duration_seconds_bucket{le=0.0005,route=/health}")
    );
}

#[tokio::test]
async fn metrics_listen_serves_them_alone_and_not_on_the_api_address() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = lmts_testkit::free_loopback_address().to_string();
    let service = Service::start(
        &dir.path().join("data"),
        &dir.path().join("log"),
        &["--metrics-listen", &metrics],
    )
    .await;
    let public = reqwest::get(format!("{}/metrics", service.base))
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "not on the API's address");
    let private = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(private.status(), 200);
    assert!(private.text().await.unwrap().contains("# TYPE lmts_"));
    let other = reqwest::get(format!("http://{metrics}/health"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "nothing else on the metrics address");
}

/// Revokes a new token of `ALICE`'s through the service at `base`.
async fn derive_and_revoke(base: &str, data: &std::path::Path) {
    let (token_id, secret, _) = derive_token(base, data, "{}").await;
    let target = format!("/auth/api-tokens/{token_id}");
    let revoked = signed_status(base, "DELETE", &target, &token_id, &secret).await;
    assert_eq!(revoked, Some(200));
}

/// Two `lmts serve` processes on one store (`store`: extra options); a token revoked through
/// the first reaches the second, which counts one invalidation of the token and its delay (and
/// none for a revocation made before it started, which SQLite's watcher delivers again at its
/// start: `redelivered`).
async fn a_revocation_elsewhere_is_counted_with_its_delay(store: &[&str], redelivered: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Service::start(&data, &dir.path().join("first.log"), store).await;
    derive_and_revoke(&first.base, &data).await;
    let second = Service::start(&data, &dir.path().join("second.log"), store).await;
    let token = "lmts_invalidations_received_total{kind=token}";
    let delays = "lmts_invalidation_delay_seconds_count{}";
    let mut before = scrape(&second.base).await;
    for _ in 0..40 {
        if !redelivered || before.get(token).copied().unwrap_or(0.0) > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        before = scrape(&second.base).await;
    }
    if redelivered {
        assert!(
            before.get(token).copied().unwrap_or(0.0) > 0.0,
            "the revocation from before the start was not delivered again"
        );
    }
    assert_eq!(
        before.get(delays).copied().unwrap_or(0.0),
        0.0,
        "a revocation from before the start was counted"
    );

    derive_and_revoke(&first.base, &data).await;
    let mut after = scrape(&second.base).await;
    for _ in 0..40 {
        if moved(&before, &after, token) > 0.0 && moved(&before, &after, delays) > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        after = scrape(&second.base).await;
    }
    assert_eq!(moved(&before, &after, token), 1.0, "{token}");
    assert_eq!(moved(&before, &after, delays), 1.0);
    let delay = moved(&before, &after, "lmts_invalidation_delay_seconds_sum{}");
    assert!(delay < 2.0, "a delay of {delay} s on one machine");
    assert_eq!(
        moved(
            &before,
            &after,
            "lmts_invalidation_delay_seconds_bucket{le=+Inf}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_revocation_by_another_process_on_the_sqlite_file_is_counted_with_its_delay() {
    a_revocation_elsewhere_is_counted_with_its_delay(&[], true).await;
}

#[tokio::test]
async fn a_revocation_by_another_postgres_instance_is_counted_with_its_delay() {
    let url = lmts_testkit::PgServer::shared().database().await;
    let dir = tempfile::tempdir().unwrap();
    let key = write_master_key(dir.path());
    let store = ["--database-url", &url, "--master-key-file", &key];
    a_revocation_elsewhere_is_counted_with_its_delay(&store, false).await;
}

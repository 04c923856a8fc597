//! The operator's emergency stop (issue #15): `revoke-all` run against PostgreSQL from a
//! process of its own (as `lmts admin` runs) is final on every serving instance at once, and
//! each revoke is an audit event naming the operator and the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use lmts_server::{
    service::{
        admin::{self, Operator},
        ServiceError,
    },
    store::{PostgresOptions, PostgresStore, EVENT_LOCK_CLASS},
};
use lmts_testkit::PgServer;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn revoke_all_from_the_command_line_is_final_on_every_instance() {
    let url = PgServer::shared().database().await;
    let first = on_postgres(&url, None, |_| {}).await;
    let second = on_postgres(&url, Some(&first), |_| {}).await;
    let (one, _) = first.derive(ALICE, "{}").await;
    let (two, _) = first.derive(ALICE, "{}").await;
    let (bobs, _) = first.derive(BOB, "{}").await;
    // Both instances cache Alice's tokens before the stop.
    for server in [&first, &second] {
        for creds in [&one, &two, &bobs] {
            assert_eq!(server.list(creds).await.status(), StatusCode::OK);
        }
    }

    let operator_store = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .unwrap();
    let operator = Operator::new("alice-oncall", "wallet compromised").unwrap();
    let now = lmts_server::clock::Clock::system().now();
    let summaries = admin::partners(&operator_store, now).await.unwrap();
    let alice = summaries
        .iter()
        .find(|p| p.profile.account == ALICE)
        .unwrap();
    assert_eq!(alice.live_tokens, 2);
    let revoked = admin::revoke_all(&operator_store, ALICE, &operator, now)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 2);

    for server in [&first, &second] {
        for creds in [&one, &two] {
            assert_eq!(server.list(creds).await.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            server.list(&bobs).await.status(),
            StatusCode::OK,
            "only Alice's"
        );
    }
    let (_, tokens) = admin::tokens(&operator_store, ALICE, now).await.unwrap();
    assert!(tokens.is_empty());
    let again = admin::revoke(&operator_store, &one.token_id, &operator, now).await;
    assert!(
        matches!(again, Err(ServiceError::NotFound(_))),
        "a revoked token is no live token: {again:?}"
    );

    let (fresh, _) = first.derive(ALICE, "{}").await;
    let events: Value = first
        .signed(
            &fresh,
            reqwest::Method::GET,
            "/auth/api-tokens/events?limit=500",
            "",
        )
        .await
        .json()
        .await
        .unwrap();
    let stops: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "token.revoked")
        .collect();
    assert_eq!(stops.len(), 2);
    for event in stops {
        assert_eq!(
            event["detail"],
            "revoked by operator alice-oncall: wallet compromised"
        );
        assert_eq!(event["ip"], Value::Null);
    }
}

/// Alice's live tokens in the database at `url`, as the stop lists them.
async fn alices_live_tokens(url: &str) -> Vec<lmts_server::store::TokenRecord> {
    let store = PostgresStore::connect(url, &PostgresOptions::default())
        .await
        .unwrap();
    let now = lmts_server::clock::Clock::system().now();
    admin::tokens(&store, ALICE, now).await.unwrap().1
}

/// How many advisory lock requests wait in the current database.
async fn waiting_for_locks(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_locks
         WHERE locktype = 'advisory' AND NOT granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// Waits (at most 3 s: the store's statements time out after 5) until `count` advisory lock
/// requests wait.
async fn until_waiting(db: &sqlx::PgPool, count: i64) {
    for _ in 0..60 {
        if waiting_for_locks(db).await >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{count} lock request(s) never waited");
}

/// What came of a rotation of Alice's second token racing `revoke-all` of her two tokens.
struct Race {
    /// The ids the stop revoked, sorted.
    revoked: Vec<String>,
    /// The tokens derived, sorted.
    derived: Vec<String>,
    /// The rotation's answer: its status and, if it made one, the successor's id.
    rotation: (StatusCode, Option<String>),
}

/// Alice's two tokens, a rotation of the second and `revoke-all`, queued in that order (the
/// rotation first when `rotation_first`) behind her event lock, held by the test and released
/// once both wait: the lock every rotation and the stop take first.
async fn race_the_stop(rotation_first: bool) -> Race {
    let url = PgServer::shared().database().await;
    let server = on_postgres(&url, None, |_| {}).await;
    let (one, _) = server.derive(ALICE, "{}").await;
    let (two, _) = server.derive(ALICE, "{}").await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    // Each used once now: a token's first use from an address writes an event, under the lock
    // the scene below queues on, and must not queue there itself. Those events are written
    // off the request's path: wait until both are.
    for creds in [&one, &two] {
        assert_eq!(server.list(creds).await.status(), StatusCode::OK);
    }
    let mut written = 0;
    for _ in 0..100 {
        written = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM token_events WHERE kind = 'token.new_address'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if written == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(written, 2, "each token's first-use event");
    let profile: i32 = sqlx::query_scalar("SELECT id FROM profiles WHERE account = $1")
        .bind(ALICE)
        .fetch_one(&db)
        .await
        .unwrap();
    let mut held = db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(EVENT_LOCK_CLASS)
        .bind(profile)
        .execute(&mut *held)
        .await
        .unwrap();
    assert_eq!(waiting_for_locks(&db).await, 0);

    let operator_store = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .unwrap();
    let stop = async move {
        let operator = Operator::new("alice-oncall", "wallet compromised").unwrap();
        let now = lmts_server::clock::Clock::system().now();
        admin::revoke_all(&operator_store, ALICE, &operator, now).await
    };
    let target = format!("/auth/api-tokens/{}/rotate", two.token_id);
    let mut rotation = server.client.post(server.url(&target)).body("{}");
    for (name, value) in sign(&two, now(), "POST", &target, "{}") {
        rotation = rotation.header(name, value);
    }
    let rotation = rotation.send();
    let (stop, rotation) = if rotation_first {
        let rotation = tokio::spawn(rotation);
        until_waiting(&db, 1).await;
        let stop = tokio::spawn(stop);
        until_waiting(&db, 2).await;
        (stop, rotation)
    } else {
        let stop = tokio::spawn(stop);
        until_waiting(&db, 1).await;
        let rotation = tokio::spawn(rotation);
        until_waiting(&db, 2).await;
        (stop, rotation)
    };
    held.rollback().await.unwrap();

    let mut revoked: Vec<String> = stop
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    revoked.sort();
    let rotated = rotation.await.unwrap().unwrap();
    let status = rotated.status();
    let successor =
        (status == StatusCode::CREATED).then_some(rotated.json::<Value>().await.unwrap());
    let successor = successor.map(|answer| answer["tokenId"].as_str().unwrap().to_owned());
    assert!(
        alices_live_tokens(&url).await.is_empty(),
        "a token outlived the stop"
    );
    let mut derived = vec![one.token_id, two.token_id];
    derived.sort();
    Race {
        revoked,
        derived,
        rotation: (status, successor),
    }
}

#[tokio::test]
async fn a_rotation_racing_revoke_all_finds_its_token_revoked() {
    let race = race_the_stop(false).await;
    assert_eq!(race.rotation, (StatusCode::NOT_FOUND, None));
    assert_eq!(race.revoked, race.derived);
}

#[tokio::test]
async fn a_rotation_ahead_of_revoke_all_has_its_successor_revoked_with_the_rest() {
    let race = race_the_stop(true).await;
    let (status, successor) = race.rotation;
    assert_eq!(status, StatusCode::CREATED);
    let mut expected = race.derived;
    expected.push(successor.unwrap());
    expected.sort();
    assert_eq!(race.revoked, expected);
}

//! The store contract, written once against `&dyn Store` so that every backend runs the same
//! suite; here on a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use lmts_core::{Scope, TokenId};
use lmts_server::{
    crypto::SealedSecret,
    store::{
        DeriveKey, NewToken, PartnerSettings, PostgresOptions, PostgresStore, SettingsKey,
        SqliteStore, Store, StoreError,
    },
};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn token(id: &str, profile_id: i64, at: DateTime<Utc>) -> NewToken {
    NewToken {
        token_id: TokenId::new(id),
        profile_id,
        label: Some(format!("label of {id}")),
        scopes: vec![Scope::Trading, Scope::Withdrawal],
        created_at: at,
        expires_at: None,
        allowed_ips: Vec::new(),
        sealed: SealedSecret {
            key_id: "k1".into(),
            sealed: vec![1, 2, 3],
        },
        once: None,
        event: None,
    }
}

async fn profiles_are_created_once_and_follow_the_wallet(store: &dyn Store) {
    let first = store
        .upsert_profile("did:privy:a", "0xAa", t(0))
        .await
        .unwrap();
    assert!(first.id > 0 && first.id <= i64::from(i32::MAX));
    let again = store
        .upsert_profile("did:privy:a", "0xBb", t(1))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.account, "0xBb");
    let other = store
        .upsert_profile("did:privy:b", "0xCc", t(2))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(
        store.profile_by_account("0xbb").await.unwrap().unwrap().id,
        first.id
    );
    assert!(store.profile_by_account("0xAa").await.unwrap().is_none());
}

async fn settings_resolve_own_then_default_then_built_in(store: &dyn Store) {
    assert_eq!(
        store.partner_settings("0xAB").await.unwrap(),
        PartnerSettings::builtin_default()
    );
    let default = PartnerSettings {
        token_management_enabled: false,
        allowed_scopes: vec![Scope::Trading, Scope::AccountCreation],
    };
    store
        .set_settings(&SettingsKey::Default, &default, t(0))
        .await
        .unwrap();
    assert_eq!(store.partner_settings("0xAB").await.unwrap(), default);
    let own = PartnerSettings {
        token_management_enabled: true,
        allowed_scopes: Scope::KNOWN.to_vec(),
    };
    store
        .set_settings(&SettingsKey::Account("0xAB".into()), &own, t(1))
        .await
        .unwrap();
    assert_eq!(
        store.partner_settings("0xab").await.unwrap(),
        own,
        "accounts match in any case"
    );
    assert_eq!(
        store
            .stored_settings(&SettingsKey::Account("0xaB".into()))
            .await
            .unwrap(),
        Some(own)
    );
    assert_eq!(
        store
            .stored_settings(&SettingsKey::Account("0xCD".into()))
            .await
            .unwrap(),
        None
    );
}

async fn tokens_respect_the_active_limit(store: &dyn Store) {
    let profile = store
        .upsert_profile("did:privy:limit", "0x01", t(0))
        .await
        .unwrap();
    store
        .insert_token(&token("l1", profile.id, t(1)), Some(2))
        .await
        .unwrap();
    store
        .insert_token(&token("l2", profile.id, t(2)), Some(2))
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_token(&token("l3", profile.id, t(3)), Some(2))
            .await,
        Err(StoreError::LimitReached { limit: 2 })
    ));
    assert!(
        store.token_credentials("l3").await.unwrap().is_none(),
        "nothing half-written"
    );
    assert!(store
        .revoke_token(profile.id, "l1", t(4), None)
        .await
        .unwrap());
    store
        .insert_token(&token("l3", profile.id, t(5)), Some(2))
        .await
        .unwrap();
}

async fn expired_tokens_leave_the_list_the_limit_and_revocation(store: &dyn Store) {
    let profile = store
        .upsert_profile("did:privy:expiry", "0x05", t(0))
        .await
        .unwrap();
    let expiring = NewToken {
        expires_at: Some(t(10)),
        allowed_ips: vec![
            "203.0.113.0/24".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ],
        ..token("e1", profile.id, t(1))
    };
    store.insert_token(&expiring, Some(2)).await.unwrap();
    store
        .insert_token(&token("e2", profile.id, t(2)), Some(2))
        .await
        .unwrap();
    let credentials = store.token_credentials("e1").await.unwrap().unwrap();
    assert_eq!(
        (credentials.expires_at, &credentials.allowed_ips),
        (Some(t(10)), &expiring.allowed_ips)
    );
    let listed = store.active_tokens(profile.id, t(9)).await.unwrap();
    assert_eq!(listed[0].expires_at, Some(t(10)));
    assert_eq!(listed[0].allowed_ips, expiring.allowed_ips);
    assert_eq!(listed[1].allowed_ips, Vec::new());
    assert!(matches!(
        store
            .insert_token(&token("e3", profile.id, t(9)), Some(2))
            .await,
        Err(StoreError::LimitReached { limit: 2 })
    ));
    // From its expiry on, it is not live: not listed, not counted, not revocable.
    let listed = store.active_tokens(profile.id, t(10)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token_id, TokenId::new("e2"));
    store
        .insert_token(&token("e3", profile.id, t(10)), Some(2))
        .await
        .unwrap();
    assert!(!store
        .revoke_token(profile.id, "e1", t(11), None)
        .await
        .unwrap());
}

async fn a_keyed_derive_is_recorded_with_its_token_or_not_at_all(store: &dyn Store) {
    let profile = store
        .upsert_profile("did:privy:keyed", "0x06", t(0))
        .await
        .unwrap();
    let once = |key: &str, at: DateTime<Utc>| DeriveKey {
        key: key.into(),
        body_digest: [9; 32],
        lapsed_before: at - chrono::TimeDelta::hours(24),
    };
    let keyed = |id: &str, key: &str, at: DateTime<Utc>| NewToken {
        once: Some(once(key, at)),
        ..token(id, profile.id, at)
    };
    store
        .insert_token(&keyed("k1", "a", t(1)), Some(1))
        .await
        .unwrap();
    let found = store
        .keyed_derive(profile.id, "a", t(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.token_id.as_str(), found.body_digest),
        ("k1", [9; 32])
    );
    assert!(matches!(
        store.insert_token(&keyed("k2", "a", t(2)), None).await,
        Err(StoreError::KeyTaken)
    ));
    assert!(store.token_credentials("k2").await.unwrap().is_none());
    // Refused by the limit: the key's record goes back with the token.
    assert!(matches!(
        store.insert_token(&keyed("k3", "b", t(3)), Some(1)).await,
        Err(StoreError::LimitReached { limit: 1 })
    ));
    assert_eq!(
        store.keyed_derive(profile.id, "b", t(0)).await.unwrap(),
        None
    );
    // A lapsed record is taken over; pruning forgets what lapsed.
    let day_later = t(1) + chrono::TimeDelta::hours(24) + chrono::TimeDelta::seconds(1);
    assert_eq!(
        store
            .keyed_derive(profile.id, "a", day_later - chrono::TimeDelta::hours(24))
            .await
            .unwrap(),
        None
    );
    store
        .insert_token(&keyed("k4", "a", day_later), None)
        .await
        .unwrap();
    let found = store
        .keyed_derive(profile.id, "a", t(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.token_id.as_str(), "k4");
    assert_eq!(store.prune_derive_keys(day_later).await.unwrap(), 0);
    assert_eq!(
        store
            .prune_derive_keys(day_later + chrono::TimeDelta::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.keyed_derive(profile.id, "a", t(0)).await.unwrap(),
        None
    );
}

async fn revocation_is_per_profile_and_once(store: &dyn Store) {
    let owner = store
        .upsert_profile("did:privy:owner", "0x02", t(0))
        .await
        .unwrap();
    let other = store
        .upsert_profile("did:privy:other", "0x03", t(0))
        .await
        .unwrap();
    store
        .insert_token(&token("r1", owner.id, t(1)), Some(10))
        .await
        .unwrap();
    store
        .insert_token(&token("r2", owner.id, t(2)), Some(10))
        .await
        .unwrap();
    assert!(
        !store
            .revoke_token(other.id, "r1", t(3), None)
            .await
            .unwrap(),
        "not another's"
    );
    assert!(!store
        .revoke_token(owner.id, "missing", t(3), None)
        .await
        .unwrap());
    assert!(store
        .revoke_token(owner.id, "r1", t(3), None)
        .await
        .unwrap());
    assert!(
        !store
            .revoke_token(owner.id, "r1", t(4), None)
            .await
            .unwrap(),
        "only once"
    );

    let credentials = store.token_credentials("r1").await.unwrap().unwrap();
    assert!(credentials.revoked);
    assert_eq!(credentials.profile, owner);
    assert_eq!(credentials.sealed.sealed, vec![1, 2, 3]);
    assert_eq!(credentials.scopes, vec![Scope::Trading, Scope::Withdrawal]);

    let active = store
        .active_tokens(owner.id, lmts_server::clock::Clock::system().now())
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].token_id, TokenId::new("r2"));
    assert_eq!(active[0].label.as_deref(), Some("label of r2"));
    assert_eq!(active[0].created_at, t(2));
    assert_eq!(active[0].last_used_at, None);
}

async fn usage_only_moves_forward(store: &dyn Store) {
    let profile = store
        .upsert_profile("did:privy:usage", "0x04", t(0))
        .await
        .unwrap();
    store
        .insert_token(&token("u1", profile.id, t(0)), Some(10))
        .await
        .unwrap();
    store
        .record_usage(&[(TokenId::new("u1"), t(10))])
        .await
        .unwrap();
    store
        .record_usage(&[(TokenId::new("u1"), t(5)), (TokenId::new("gone"), t(5))])
        .await
        .unwrap();
    let active = store
        .active_tokens(profile.id, lmts_server::clock::Clock::system().now())
        .await
        .unwrap();
    assert_eq!(active[0].last_used_at, Some(t(10)));
}

async fn signatures_are_recorded_once_until_they_expire(store: &dyn Store) {
    let signature = [7u8; 32];
    let expires = t(30);
    assert!(store
        .record_signature("s1", &signature, expires)
        .await
        .unwrap());
    assert!(!store
        .record_signature("s1", &signature, expires)
        .await
        .unwrap());
    assert!(
        store
            .record_signature("s2", &signature, expires)
            .await
            .unwrap(),
        "per token"
    );
    assert_eq!(store.prune_signatures(t(29)).await.unwrap(), 0);
    assert_eq!(
        store
            .prune_signatures(expires + TimeDelta::seconds(1))
            .await
            .unwrap(),
        2
    );
    assert!(store
        .record_signature("s1", &signature, t(90))
        .await
        .unwrap());
}

/// Signatures recorded at once ride shared batches: of many copies of one signature exactly
/// one is new, and each distinct signature is new once, whoever shares its batch.
async fn concurrent_signatures_are_new_once(store: Arc<dyn Store>) {
    let mut copies = tokio::task::JoinSet::new();
    for i in 0..300u32 {
        let store = Arc::clone(&store);
        copies.spawn(async move {
            // Every third request is a copy of one signature; the others are all different.
            let mut signature = [9u8; 32];
            if i % 3 != 0 {
                signature[..4].copy_from_slice(&i.to_le_bytes());
            }
            let new = store
                .record_signature("batched", &signature, t(30))
                .await
                .unwrap();
            (i % 3 == 0, new)
        });
    }
    let answers = copies.join_all().await;
    let copies_new = answers.iter().filter(|(copy, new)| *copy && *new).count();
    let distinct_new = answers.iter().filter(|(copy, new)| !*copy && *new).count();
    assert_eq!(copies_new, 1, "one copy of a signature is new");
    assert_eq!(distinct_new, 200, "every distinct signature is new");
}

/// Derives racing each other: each is one atomic check-and-insert, so exactly the limit lands;
/// and a write that fails (a duplicate id) fails alone, not the writes committed beside it.
async fn concurrent_writes_stay_atomic_and_independent(store: Arc<dyn Store>) {
    let limited = store
        .upsert_profile("did:privy:race", "0xRace", t(0))
        .await
        .unwrap();
    let unlimited = store
        .upsert_profile("did:privy:dup", "0xDup", t(0))
        .await
        .unwrap();
    let mut racing = tokio::task::JoinSet::new();
    for n in 0..40 {
        let store = Arc::clone(&store);
        racing.spawn(async move {
            let limited = token(&format!("race{n}"), limited.id, t(n));
            let duplicated = token(&format!("dup{}", n % 30), unlimited.id, t(n));
            (
                store.insert_token(&limited, Some(25)).await,
                store.insert_token(&duplicated, None).await,
            )
        });
    }
    let (mut stored, mut refused, mut duplicates) = (0, 0, 0);
    while let Some(joined) = racing.join_next().await {
        let (limited, duplicated) = joined.unwrap();
        match limited {
            Ok(()) => stored += 1,
            Err(StoreError::LimitReached { limit: 25 }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        match duplicated {
            Ok(()) => {}
            Err(StoreError::Database(_)) => duplicates += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(duplicates, 10, "ten ids were used twice");
    assert_eq!((stored, refused), (25, 15));
    assert_eq!(
        store
            .active_tokens(limited.id, lmts_server::clock::Clock::system().now())
            .await
            .unwrap()
            .len(),
        25
    );
    assert_eq!(
        store
            .active_tokens(unlimited.id, lmts_server::clock::Clock::system().now())
            .await
            .unwrap()
            .len(),
        30
    );
}

/// The whole suite against one store.
async fn store_contract(store: &dyn Store) {
    store.ping().await.unwrap();
    profiles_are_created_once_and_follow_the_wallet(store).await;
    settings_resolve_own_then_default_then_built_in(store).await;
    tokens_respect_the_active_limit(store).await;
    expired_tokens_leave_the_list_the_limit_and_revocation(store).await;
    a_keyed_derive_is_recorded_with_its_token_or_not_at_all(store).await;
    revocation_is_per_profile_and_once(store).await;
    usage_only_moves_forward(store).await;
    signatures_are_recorded_once_until_they_expire(store).await;
}

#[tokio::test]
async fn sqlite_file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).await.unwrap();
    store_contract(&store).await;
    concurrent_writes_stay_atomic_and_independent(Arc::new(store.clone())).await;
    concurrent_signatures_are_new_once(Arc::new(store.clone())).await;
    #[cfg(unix)]
    for file in [
        "lmts.db",
        "lmts.db-wal",
        "lmts.db-shm",
        "replay.db",
        "replay.db-wal",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is private");
    }
    // Reopening runs no migration twice and keeps the data.
    drop(store);
    let reopened = SqliteStore::open_in(dir.path()).await.unwrap();
    assert!(reopened.token_credentials("r2").await.unwrap().is_some());
}

#[tokio::test]
async fn postgres_store_keeps_the_contract() {
    let url = lmts_testkit::PgServer::shared().database().await;
    let store = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .unwrap();
    store_contract(&store).await;
    concurrent_writes_stay_atomic_and_independent(Arc::new(store.clone())).await;
    concurrent_signatures_are_new_once(Arc::new(store.clone())).await;
    drop(store);
    let reopened = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .unwrap();
    assert!(reopened.token_credentials("r2").await.unwrap().is_some());
}

/// Revocations racing each other on PostgreSQL are numbered without gaps, each token records
/// its number, and their notices are delivered in number order: PostgreSQL delivers notices in
/// commit order, so "applied up to N" means every revocation numbered N or less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revocations_are_numbered_in_commit_order() {
    use lmts_server::store::REVOCATION_CHANNEL;

    const TOKENS: i64 = 40;
    let url = lmts_testkit::PgServer::shared().database().await;
    let store = Arc::new(
        PostgresStore::connect(&url, &PostgresOptions::default())
            .await
            .unwrap(),
    );
    let profile = store
        .upsert_profile("did:privy:numbers", "0x05", t(0))
        .await
        .unwrap();
    for n in 0..TOKENS {
        store
            .insert_token(&token(&format!("n{n}"), profile.id, t(n)), None)
            .await
            .unwrap();
    }
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    listener.listen(REVOCATION_CHANNEL).await.unwrap();

    let mut racing = tokio::task::JoinSet::new();
    for n in 0..TOKENS {
        let store = Arc::clone(&store);
        racing.spawn(async move {
            store
                .revoke_token(profile.id, &format!("n{n}"), t(99), None)
                .await
        });
    }
    while let Some(revoked) = racing.join_next().await {
        assert!(revoked.unwrap().unwrap());
    }

    let mut heard = Vec::new();
    while heard.len() < TOKENS as usize {
        let notice = listener.recv().await.unwrap();
        let (number, rest) = notice.payload().split_once('/').unwrap();
        let token_id = rest.split_once(':').unwrap().1.to_owned();
        heard.push((number.parse::<i64>().unwrap(), token_id));
    }
    let numbers: Vec<i64> = heard.iter().map(|(number, _)| *number).collect();
    assert_eq!(
        numbers,
        (1..=TOKENS).collect::<Vec<_>>(),
        "in commit order, no gaps"
    );
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    for (number, token_id) in heard {
        let recorded: Option<i64> =
            sqlx::query_scalar("SELECT revoked_seq FROM api_tokens WHERE token_id = $1")
                .bind(&token_id)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(recorded, Some(number), "{token_id}");
    }
}

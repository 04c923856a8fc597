//! A database written by the release before SPEC C2 (its migrations, its rows), opened by this
//! one: the migrations upgrade it in place, and its tokens keep working, unexpired and
//! unrestricted, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use lmts_core::TokenSecret;
use lmts_server::{crypto::Keyring, server::ServerConfig};
use lmts_testkit::PgServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{migrate::Migrator, Database, Pool};
use tempfile::TempDir;

/// The first migration of each backend that the earlier release did not have.
const SQLITE_FIRST_NEW: &str = "0004";
const POSTGRES_FIRST_NEW: &str = "0005";

/// The earlier release's migrations of `backend`: every one before `first_new`.
fn earlier_migrations(backend: &str, first_new: &str) -> TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_str().unwrap() < first_new {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// Writes the earlier release's schema and one of its tokens, as it wrote them: a profile and a
/// token row without the columns SPEC C2 added.
async fn write_earlier_release<DB: Database>(pool: &Pool<DB>, migrations: &Path) -> Creds
where
    for<'c> &'c mut <DB as Database>::Connection: sqlx::Executor<'c, Database = DB>,
    <DB as Database>::Connection: sqlx::migrate::Migrate,
    for<'q> <DB as Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    Migrator::new(migrations)
        .await
        .unwrap()
        .run(pool)
        .await
        .unwrap();
    let creds = Creds {
        token_id: "lmts_fromtheearlierrelease".into(),
        secret: TokenSecret::from_bytes(vec![5; 32]).unwrap(),
    };
    let sealed = Keyring::from_base64(MASTER_KEY, &[])
        .unwrap()
        .seal(&creds.token_id, &creds.secret)
        .unwrap();
    // The subject the dev issuer gives ALICE, so that tokens derived later are hers too.
    let subject = format!("did:privy:dev-{}", ALICE.to_ascii_lowercase());
    sqlx::query(&format!(
        "INSERT INTO profiles (subject, account, created_at) VALUES ('{subject}', '{ALICE}', 0)"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO api_tokens (token_id, profile_id, label, scopes, created_at, key_id,
             sealed_secret)
         VALUES ($1, (SELECT id FROM profiles), 'old bot', 'trading', 0, $2, $3)",
    )
    .bind(creds.token_id.clone())
    .bind(sealed.key_id)
    .bind(sealed.sealed)
    .execute(pool)
    .await
    .unwrap();
    creds
}

/// This release on the upgraded database: the old token lists itself, unexpired and
/// unrestricted, and tokens with the new fields can be derived beside it.
async fn assert_upgraded(dir: TempDir, configure: impl FnOnce(&mut ServerConfig), creds: &Creds) {
    let server = TestServer::start_in(dir, |config| {
        config.master_key = Some(MASTER_KEY.to_owned().into());
        configure(config);
    })
    .await;
    let listed = server.list(creds).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Vec<Value> = listed.json().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["tokenId"], creds.token_id.as_str());
    assert_eq!(listed[0]["label"], "old bot");
    assert_eq!(listed[0]["expiresAt"], Value::Null);
    assert_eq!(listed[0]["allowedIps"], json!([]));
    let (_, derived) = server
        .derive(ALICE, r#"{"allowedIps":["127.0.0.1"]}"#)
        .await;
    assert_eq!(derived["allowedIps"], json!(["127.0.0.1/32"]));
    assert_eq!(listed_ids(server.list(creds).await).await.len(), 2);
}

#[tokio::test]
async fn a_sqlite_database_of_the_earlier_release_keeps_its_tokens() {
    let data = tempfile::tempdir().unwrap();
    let migrations = earlier_migrations("sqlite", SQLITE_FIRST_NEW);
    let url = format!(
        "sqlite://{}?mode=rwc",
        data.path().join("lmts.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let creds = write_earlier_release(&pool, migrations.path()).await;
    pool.close().await;
    assert_upgraded(data, |_| {}, &creds).await;
}

#[tokio::test]
async fn a_postgres_database_of_the_earlier_release_keeps_its_tokens() {
    let url = PgServer::shared().database().await;
    let migrations = earlier_migrations("postgres", POSTGRES_FIRST_NEW);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let creds = write_earlier_release(&pool, migrations.path()).await;
    pool.close().await;
    let data = tempfile::tempdir().unwrap();
    assert_upgraded(data, |config| config.database_url = Some(url), &creds).await;
}

#[tokio::test]
async fn a_database_a_later_release_migrated_further_still_opens() {
    let data = tempfile::tempdir().unwrap();
    lmts_server::store::SqliteStore::open_in(data.path())
        .await
        .unwrap();
    let url = format!("sqlite://{}", data.path().join("lmts.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations
             (version, description, success, checksum, execution_time)
         VALUES (9999, 'a later release', TRUE, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let reopened = lmts_server::store::SqliteStore::open_in(data.path()).await;
    assert!(reopened.is_ok(), "{:?}", reopened.err());
}

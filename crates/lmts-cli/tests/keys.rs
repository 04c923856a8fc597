//! `lmts keys rotate`: re-sealing every secret under a new master key, interrupted by SIGKILL
//! and run again, ends with no row under the old key and every token authenticating on a
//! service given only the new key.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use common::*;
use lmts_core::{TokenId, TokenSecret};
use lmts_server::{
    crypto::Keyring,
    store::{NewToken, SqliteStore, Store},
};

const TOKENS: usize = 2000;

/// `TOKENS` tokens of one partner in `data`, sealed under the data directory's master key;
/// answers a few of them with their secrets.
async fn tokens_under_the_old_key(data: &std::path::Path) -> Vec<(String, TokenSecret)> {
    lmts_core::files::ensure_private_dir(data).unwrap();
    let keyring = Keyring::create(data, &[]).unwrap();
    let store = std::sync::Arc::new(SqliteStore::open_in(data).await.unwrap());
    let subject = format!("did:privy:dev-{}", ALICE.to_ascii_lowercase());
    let now = lmts_server::clock::Clock::system().now();
    let profile = store.upsert_profile(&subject, ALICE, now).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let mut sample = Vec::new();
    for i in 0..TOKENS {
        let token_id = format!("lmts_rekey{i:05}");
        let secret = TokenSecret::from_bytes(vec![(i % 251) as u8; 32]).unwrap();
        let token = NewToken {
            token_id: TokenId::new(&token_id),
            profile_id: profile.id,
            label: None,
            scopes: vec![lmts_core::Scope::Trading],
            created_at: now,
            expires_at: None,
            allowed_ips: Vec::new(),
            sealed: keyring.seal(&token_id, &secret).unwrap(),
            once: None,
            event: None,
        };
        if i % 500 == 0 {
            sample.push((token_id, secret));
        }
        let store = std::sync::Arc::clone(&store);
        tasks.spawn(async move { store.insert_token(&token, None).await.unwrap() });
    }
    tasks.join_all().await;
    sample
}

/// `lmts keys status --output json` of `data`: key id -> sealed rows.
fn sealed_by_key(data: &str) -> std::collections::HashMap<String, u64> {
    let output = lmts(&["keys", "status", "--data-dir", data, "--output", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let uses: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    uses.as_array()
        .unwrap()
        .iter()
        .map(|key| {
            (
                key["keyId"].as_str().unwrap().to_owned(),
                key["sealed"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_rotation_killed_midway_and_run_again_leaves_nothing_under_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sample = tokens_under_the_old_key(&data).await;
    let data_arg = data.to_str().unwrap().to_owned();
    let new_key = dir.path().join("new.key");
    lmts_core::files::create_private(&new_key, |file| {
        std::io::Write::write_all(file, STANDARD.encode([42u8; 32]).as_bytes())
    })
    .unwrap();
    let rotate = [
        "keys",
        "rotate",
        "--new-master-key-file",
        new_key.to_str().unwrap(),
        "--data-dir",
        &data_arg,
        "--batch",
        "2",
    ];
    let old_key = sealed_by_key(&data_arg).into_keys().next().unwrap();

    let mut first = Command::new(env!("CARGO_BIN_EXE_lmts"))
        .args(rotate)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = BufReader::new(first.stderr.take().unwrap()).lines();
    let line = progress.next().unwrap().unwrap();
    assert!(line.contains("re-sealed"), "{line}");
    first.kill().unwrap(); // SIGKILL, mid-way
    first.wait().unwrap();
    let midway = sealed_by_key(&data_arg);
    assert!(
        midway.get(&old_key).copied().unwrap_or(0) > 0,
        "killed before the end: {midway:?}"
    );
    assert_eq!(
        midway.values().sum::<u64>(),
        TOKENS as u64,
        "no row lost or doubled"
    );

    let second = lmts(&rotate);
    assert!(second.status.success(), "{}", stderr(&second));
    let done = sealed_by_key(&data_arg);
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(!done.contains_key(&old_key));
    assert_eq!(done.values().sum::<u64>(), TOKENS as u64);

    // A service given the new key alone opens every secret.
    let service = Service::start(
        &data,
        &dir.path().join("log"),
        &["--master-key-file", new_key.to_str().unwrap()],
    )
    .await;
    for (token_id, secret) in &sample {
        let status =
            signed_status(&service.base, "GET", "/auth/api-tokens", token_id, secret).await;
        assert_eq!(status, Some(200), "{token_id}");
    }
}

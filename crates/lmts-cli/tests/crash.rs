//! A derive/revoke storm against `lmts serve`, SIGKILLed at arbitrary moments 20 times and
//! restarted on the same data directory: every acknowledged derive still authenticates,
//! every acknowledged revoke still holds, and every stored secret still opens.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::*;
use lmts_core::TokenSecret;
use lmts_server::{
    crypto::Keyring,
    store::{SqliteStore, Store},
};
use serde_json::Value;

const ROUNDS: usize = 20;

/// A small deterministic generator, so that a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn acknowledged_work_survives_twenty_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    // Hundreds of revoked tokens are tried from one address: the failure budget would answer
    // 429 to the durability this test is about.
    let args = [
        "--rate-limit-per-minute",
        "0",
        "--auth-failures-per-minute",
        "0",
        "--max-active-tokens",
        "100000",
    ];
    let mut random = Lcg(0x5eed);
    let mut derived: HashMap<String, TokenSecret> = HashMap::new();
    let mut revoked: HashSet<String> = HashSet::new();
    let mut attempted_revokes: HashSet<String> = HashSet::new();
    let http = reqwest::Client::new();

    for _ in 0..ROUNDS {
        let service = Service::start(&data, &log, &args).await;
        let identity = format!("Bearer {}", identity_token(&data));
        let kill_after = Duration::from_millis(50 + random.below(250));
        let storm = async {
            loop {
                if random.below(3) == 0 && !derived.is_empty() {
                    let live: Vec<&String> = derived
                        .keys()
                        .filter(|id| !attempted_revokes.contains(*id))
                        .collect();
                    if let Some(id) = live
                        .get(random.below(live.len().max(1) as u64) as usize)
                        .map(|id| (*id).clone())
                    {
                        attempted_revokes.insert(id.clone());
                        let target = format!("/auth/api-tokens/{id}");
                        if signed_status(&service.base, "DELETE", &target, &id, &derived[&id]).await
                            == Some(200)
                        {
                            revoked.insert(id);
                        }
                        continue;
                    }
                }
                let response = http
                    .post(format!("{}/auth/api-tokens/derive", service.base))
                    .header("identity", identity.clone())
                    .body(r#"{"label":"storm"}"#)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                if let Ok(response) = response {
                    if response.status() == 201 {
                        if let Ok(json) = response.json::<Value>().await {
                            let id = json["tokenId"].as_str().unwrap().to_owned();
                            let secret =
                                TokenSecret::from_base64(json["secret"].as_str().unwrap()).unwrap();
                            derived.insert(id, secret);
                        }
                    }
                }
            }
        };
        let _ = tokio::time::timeout(kill_after, storm).await;
        service.kill();
    }
    assert!(
        derived.len() >= ROUNDS,
        "the storm derived {} tokens",
        derived.len()
    );
    assert!(!revoked.is_empty(), "the storm revoked nothing");

    let service = Service::start(&data, &log, &args).await;
    for (id, secret) in &derived {
        let status = signed_status(&service.base, "GET", "/auth/api-tokens", id, secret)
            .await
            .unwrap();
        if revoked.contains(id) {
            assert_eq!(status, 401, "acknowledged revoke of {id} did not hold");
        } else if !attempted_revokes.contains(id) {
            assert_eq!(status, 200, "acknowledged derive of {id} was lost");
        } else {
            assert!(status == 200 || status == 401, "{id}: {status}");
        }
    }
    service.kill();

    // Every stored row is whole: each live token's secret opens under the master key.
    let store = SqliteStore::open_in(&data).await.unwrap();
    let keyring = Keyring::load(&data, &[])
        .unwrap()
        .expect("the master key file");
    let some_id = derived
        .keys()
        .find(|id| !attempted_revokes.contains(*id))
        .unwrap();
    let profile = store
        .token_credentials(some_id)
        .await
        .unwrap()
        .unwrap()
        .profile;
    let live = store
        .active_tokens(profile.id, lmts_server::clock::Clock::system().now())
        .await
        .unwrap();
    assert!(!live.is_empty());
    for record in live {
        let credentials = store
            .token_credentials(record.token_id.as_str())
            .await
            .unwrap()
            .unwrap();
        keyring
            .open(record.token_id.as_str(), &credentials.sealed)
            .unwrap();
    }
    eprintln!(
        "{ROUNDS} SIGKILLs: {} acknowledged derives, {} acknowledged revokes, all held",
        derived.len(),
        revoked.len()
    );
}

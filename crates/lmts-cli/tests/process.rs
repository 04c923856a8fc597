//! The `lmts` binary as an operator runs it: `serve` survives SIGKILL without losing an
//! acknowledged token, keeps secrets out of its files and logs, and picks up `partners set`
//! from another process at once; configuration errors exit 3.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{fs, process::Command, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use common::*;
use lmts_core::TokenSecret;
use serde_json::Value;

mod common;

async fn derive(base: &str, identity: &str) -> (String, TokenSecret, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/auth/api-tokens/derive"))
        .header("identity", format!("Bearer {identity}"))
        .body(r#"{"label":"durable"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let json: Value = response.json().await.unwrap();
    let secret_text = json["secret"].as_str().unwrap().to_owned();
    (
        json["tokenId"].as_str().unwrap().to_owned(),
        TokenSecret::from_base64(&secret_text).unwrap(),
        secret_text,
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn an_acknowledged_derive_survives_sigkill_and_no_secret_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let service = Service::start(&data, &log, &[]).await;
    let identity = identity_token(&data);
    let (token_id, secret, secret_text) = derive(&service.base, &identity).await;
    assert_eq!(
        signed_status(&service.base, "GET", "/auth/api-tokens", &token_id, &secret)
            .await
            .unwrap(),
        200
    );
    service.kill();

    let service = Service::start(&data, &log, &[]).await;
    assert_eq!(
        signed_status(&service.base, "GET", "/auth/api-tokens", &token_id, &secret)
            .await
            .unwrap(),
        200,
        "token survived SIGKILL"
    );
    service.kill();

    let mut scanned = 0;
    for entry in fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        scanned += bytes.len();
        assert!(
            !contains(&bytes, secret.expose_secret()),
            "raw secret in {}",
            path.display()
        );
        assert!(
            !contains(&bytes, secret_text.as_bytes()),
            "base64 secret in {}",
            path.display()
        );
        let unpadded = STANDARD
            .encode(secret.expose_secret())
            .trim_end_matches('=')
            .to_owned();
        assert!(
            !contains(&bytes, unpadded.as_bytes()),
            "secret text in {}",
            path.display()
        );
    }
    assert!(scanned > 10_000, "the database files were scanned");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&token_id),
        "the log is the service's debug log"
    );
    assert!(!logged.contains(&secret_text), "secret in the log");
    assert!(!logged.contains(&identity), "identity token in the log");
}

#[cfg(unix)]
#[tokio::test]
async fn data_directory_secrets_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &dir.path().join("log"), &[]).await;
    service.kill();
    for file in ["master.key", "dev-identity.key"] {
        let mode = fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    assert_eq!(
        fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[tokio::test]
async fn partners_set_applies_to_a_running_server_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &dir.path().join("log"), &[]).await;
    let identity = identity_token(&data);
    let capabilities = || async {
        reqwest::Client::new()
            .get(format!("{}/auth/api-tokens/capabilities", service.base))
            .header("identity", format!("Bearer {identity}"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(
        capabilities().await["allowedScopes"],
        serde_json::json!(["trading"])
    );

    let output = lmts(&[
        "partners",
        "set",
        "--account",
        &ALICE.to_lowercase(),
        "--token-management",
        "off",
        "--allowed-scopes",
        "withdrawal,trading",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("trading,withdrawal"), "{printed}");
    assert!(printed.contains("token management  off"), "{printed}");

    let mut applied = false;
    for _ in 0..10 {
        let caps = capabilities().await;
        if caps["tokenManagementEnabled"] == false {
            assert_eq!(
                caps["allowedScopes"],
                serde_json::json!(["trading", "withdrawal"])
            );
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "the change was not seen within a second");

    let output = lmts(&[
        "partners",
        "show",
        "--account",
        ALICE,
        "--data-dir",
        data.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["profileId"], 1);
    assert_eq!(shown["settings"], "own");
    assert_eq!(shown["account"], ALICE);
    assert_eq!(shown["tokenManagementEnabled"], false);
    service.kill();
}

#[test]
fn configuration_errors_exit_3_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let output = lmts(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no identity key source"));

    let output = lmts(&[
        "partners",
        "set",
        "--account",
        "0x123",
        "--token-management",
        "on",
        "--data-dir",
        data,
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not a 0x-prefixed 20-byte hex address")
    );

    let output = lmts(&[
        "partners",
        "set",
        "--default",
        "--allowed-scopes",
        "root",
        "--data-dir",
        data,
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown scope"));

    let output = lmts(&["partners", "show", "--data-dir", data]);
    assert_eq!(output.status.code(), Some(2), "clap usage error");
}

#[test]
fn a_world_readable_master_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let output = lmts(&[
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--master-key-file",
            key.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&output.stderr).contains("chmod 600"));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_shuts_down_gracefully_and_writes_pending_usage() {
    use lmts_server::store::{SqliteStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let mut service = Service::start(&data, &log, &["--usage-flush-ms", "600000"]).await;
    let identity = identity_token(&data);
    let (token_id, secret, _) = derive(&service.base, &identity).await;
    assert_eq!(
        signed_status(&service.base, "GET", "/auth/api-tokens", &token_id, &secret)
            .await
            .unwrap(),
        200
    );

    let pid = service.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("SIGTERM received"), "{logged}");

    let store = SqliteStore::open_in(&data).await.unwrap();
    let profile = store
        .token_credentials(&token_id)
        .await
        .unwrap()
        .unwrap()
        .profile;
    let tokens = store
        .active_tokens(profile.id, lmts_server::clock::Clock::system().now())
        .await
        .unwrap();
    assert!(
        tokens[0].last_used_at.is_some(),
        "pending lastUsedAt written at shutdown"
    );
}

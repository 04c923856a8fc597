//! Every `lmts` client subcommand against a real `lmts serve --dev`: table and JSON output,
//! the credentials file, identity tokens from standard input, exit codes and hints.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::*;
use serde_json::Value;

struct Session {
    service: Service,
    data: std::path::PathBuf,
    credentials: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Session {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let service = Service::start(&data, &dir.path().join("log"), &[]).await;
        let credentials = dir.path().join("config/credentials.toml");
        Self {
            service,
            data,
            credentials,
            _dir: dir,
        }
    }

    fn run(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> std::process::Output {
        let mut env = vec![
            ("LIMITLESS_API_URL", self.service.base.as_str()),
            ("LMTS_CREDENTIALS_FILE", self.credentials.to_str().unwrap()),
            ("NO_COLOR", "1"),
        ];
        env.extend_from_slice(extra_env);
        lmts_with(args, &env, stdin)
    }

    fn json(&self, args: &[&str], extra_env: &[(&str, &str)], stdin: Option<&str>) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        let output = self.run(&args, extra_env, stdin);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        serde_json::from_str(&stdout(&output)).unwrap()
    }

    fn identity(&self) -> String {
        identity_token(&self.data)
    }

    /// `lmts tokens derive ... --save bot`, the identity token on standard input.
    fn derive_saved_as_bot(&self, options: &[&str]) -> Value {
        let mut args = vec![
            "tokens",
            "derive",
            "--save",
            "bot",
            "--identity-token-file",
            "-",
        ];
        args.extend_from_slice(options);
        self.json(&args, &[], Some(&self.identity()))
    }
}

#[tokio::test]
async fn capabilities_from_env_file_or_stdin_in_table_and_json() {
    let session = Session::start().await;
    let identity = session.identity();
    let from_env = session.json(
        &["tokens", "capabilities"],
        &[("LIMITLESS_IDENTITY_TOKEN", &identity)],
        None,
    );
    assert_eq!(from_env["allowedScopes"], serde_json::json!(["trading"]));
    assert_eq!(from_env["tokenManagementEnabled"], true);

    let from_stdin = session.json(
        &["tokens", "capabilities", "--identity-token-file", "-"],
        &[],
        Some(&format!("{identity}\n")),
    );
    assert_eq!(from_stdin, from_env);

    let table = session.run(
        &["tokens", "capabilities", "--identity-token", &identity],
        &[],
        None,
    );
    assert!(table.status.success());
    let text = stdout(&table);
    assert!(
        text.contains("token management") && text.contains("on") && text.contains("trading"),
        "{text}"
    );

    let missing = session.run(&["tokens", "capabilities"], &[], None);
    assert_eq!(missing.status.code(), Some(3));
    assert!(
        stderr(&missing).contains("no identity token"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn derive_save_list_sign_revoke_and_the_refusal() {
    let session = Session::start().await;
    let identity = session.identity();
    let derived = session.derive_saved_as_bot(&["--label", "cli", "--scope", "trading"]);
    let token_id = derived["tokenId"].as_str().unwrap().to_owned();
    assert_eq!(derived["secret"].as_str().unwrap().len(), 44);
    assert_eq!(derived["apiKey"], derived["tokenId"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&session.credentials)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    let saved = fs::read_to_string(&session.credentials).unwrap();
    assert!(
        saved.contains("[profiles.bot]") && saved.contains(&token_id),
        "{saved}"
    );

    // A second token, shown as a table with the one-time warning.
    let table = session.run(
        &["tokens", "derive", "--identity-token", &identity],
        &[],
        None,
    );
    assert!(table.status.success());
    assert!(stdout(&table).contains("secret"), "{}", stdout(&table));
    assert!(
        stderr(&table).contains("shown only this once"),
        "{}",
        stderr(&table)
    );

    let listed = session.json(&["tokens", "list", "--profile", "bot"], &[], None);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tokenId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&token_id.as_str()));
    let table = session.run(&["tokens", "list", "--profile", "bot"], &[], None);
    let text = stdout(&table);
    assert!(
        text.starts_with("TOKEN ID") && text.contains("cli") && text.contains(&token_id),
        "{text}"
    );
    let quiet = session.run(
        &["tokens", "list", "--profile", "bot", "--quiet"],
        &[],
        None,
    );
    assert_eq!(stdout(&quiet).lines().count(), 2);

    let curl = session.run(
        &[
            "sign",
            "--method",
            "GET",
            "--path",
            "/auth/api-tokens",
            "--profile",
            "bot",
            "--curl",
            &session.service.base,
        ],
        &[],
        None,
    );
    let command = stdout(&curl);
    assert!(
        command.starts_with("curl -sS -X GET") && command.contains("lmts-signature: "),
        "{command}"
    );
    let answered = std::process::Command::new("bash")
        .args(["-c", command.trim()])
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&answered.stdout).unwrap();
    assert_eq!(
        body.as_array().unwrap().len(),
        2,
        "the signed curl request is accepted"
    );

    let revoked = session.json(
        &["tokens", "revoke", &token_id, "--profile", "bot"],
        &[],
        None,
    );
    assert_eq!(revoked["tokenId"], token_id.as_str());
    assert!(revoked["message"].is_string());

    let refused = session.run(&["tokens", "list", "--profile", "bot"], &[], None);
    assert_eq!(refused.status.code(), Some(4));
    let message = stderr(&refused);
    assert!(
        message.contains("401") && message.contains("hint:"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "one line: {message}");
}

#[tokio::test]
async fn request_sends_a_signed_request_to_any_path_of_the_service() {
    let session = Session::start().await;
    let derived = session.derive_saved_as_bot(&[]);
    let token_id = derived["tokenId"].as_str().unwrap();

    let listed = session.json(
        &["request", "GET", "/auth/api-tokens", "--profile", "bot"],
        &[],
        None,
    );
    assert_eq!(listed["status"], 200);
    assert_eq!(listed["body"][0]["tokenId"], token_id, "{listed}");
    let table = session.run(&["request", "GET", "/auth/api-tokens"], &[], None);
    assert_eq!(table.status.code(), Some(3), "no default profile saved");
    let table = session.run(
        &["request", "get", "/auth/api-tokens", "--profile", "bot"],
        &[],
        None,
    );
    let text = stdout(&table);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(
        text.starts_with("200 OK\n") && text.contains(token_id),
        "{text}"
    );

    let unknown = session.run(
        &[
            "request",
            "DELETE",
            "/auth/api-tokens/no%2Fsuch",
            "--profile",
            "bot",
        ],
        &[],
        None,
    );
    assert_eq!(unknown.status.code(), Some(4), "{}", stderr(&unknown));
    assert!(
        stdout(&unknown).starts_with("404 Not Found\n"),
        "{}",
        stdout(&unknown)
    );
    let own = format!("/auth/api-tokens/{token_id}");
    let revoked = session.run(&["request", "DELETE", &own, "--profile", "bot"], &[], None);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = session.run(
        &["request", "GET", "/auth/api-tokens", "--profile", "bot"],
        &[],
        None,
    );
    assert_eq!(refused.status.code(), Some(4));
    assert!(stdout(&refused).starts_with("401 Unauthorized\n"));
}

#[tokio::test]
async fn a_forbidden_scope_names_what_the_partner_may_request() {
    let session = Session::start().await;
    let output = session.run(
        &["tokens", "derive", "--scope", "withdrawal"],
        &[("LIMITLESS_IDENTITY_TOKEN", &session.identity())],
        None,
    );
    assert_eq!(output.status.code(), Some(4));
    assert!(
        stderr(&output).contains("hint: this partner may request: trading"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn environment_credentials_sign_without_a_file() {
    let session = Session::start().await;
    let derived = session.json(
        &["tokens", "derive"],
        &[("LIMITLESS_IDENTITY_TOKEN", &session.identity())],
        None,
    );
    let id = derived["tokenId"].as_str().unwrap();
    let secret = derived["secret"].as_str().unwrap();
    let env = [
        ("LIMITLESS_API_TOKEN_ID", id),
        ("LIMITLESS_API_TOKEN_SECRET", secret),
    ];
    let listed = session.json(&["tokens", "list"], &env, None);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        !session.credentials.exists(),
        "nothing saved without --save"
    );
    let half = session.run(&["tokens", "list"], &env[..1], None);
    assert_eq!(half.status.code(), Some(3));
}

#[test]
fn the_demo_walks_the_lifecycle_and_exits_0() {
    let output = lmts_with(&["demo"], &[("NO_COLOR", "1")], None);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let text = stdout(&output);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("✓ ")).count(),
        8,
        "{text}"
    );
    assert!(
        text.contains("revoked credentials are refused: 401"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour off a terminal");
    let quiet = lmts_with(&["demo", "--quiet"], &[], None);
    assert!(quiet.status.success());
    assert!(stdout(&quiet).is_empty(), "{}", stdout(&quiet));
}

#[test]
fn help_has_examples_and_exit_codes() {
    let help = stdout(&lmts(&["--help"]));
    assert!(
        help.contains("Exit codes") && help.contains("lmts demo"),
        "{help}"
    );
    for command in [
        &["tokens", "derive", "--help"][..],
        &["sign", "--help"],
        &["request", "--help"],
        &["partners", "set", "--help"],
    ] {
        let text = stdout(&lmts(command));
        assert!(text.contains("Example"), "{command:?}: {text}");
    }
}

#[test]
fn bench_measures_every_scenario_without_errors() {
    let output = lmts_with(
        &[
            "bench",
            "--duration-secs",
            "1",
            "--connections",
            "2",
            "--output",
            "json",
            "--quiet",
        ],
        // Exported for the client commands: a local bench has no use for it.
        &[("LMTS_CA_FILE", "/nonexistent/ca.pem")],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    let scenarios: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        scenarios,
        ["health", "list", "derive", "mix (derive+list+revoke)"]
    );
    for result in results.as_array().unwrap() {
        assert!(result["requests"].as_u64().unwrap() > 0, "{result}");
        assert_eq!(result["errors"], 0, "{result}");
        // Latencies are measured, not defaulted: a loopback request takes some microseconds.
        assert!(result["p50Us"].as_u64().unwrap() > 0, "{result}");
    }
}

#[test]
fn a_bounded_soak_of_mixed_traffic_has_no_errors_and_flat_memory() {
    let mut args = vec![
        "bench",
        "--duration-secs",
        "4",
        "--connections",
        "64",
        "--output",
        "json",
        "--quiet",
    ];
    for _ in 0..3 {
        args.extend(["--scenario", "mix", "--scenario", "list"]);
    }
    let output = lmts_with(&args, &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 6);
    for result in results {
        assert_eq!(result["errors"], 0, "only intended answers: {result}");
        assert!(result["requests"].as_u64().unwrap() > 0, "{result}");
    }
    if let (Some(first), Some(last)) = (
        results[1]["serviceRssKib"].as_u64(),
        results[5]["serviceRssKib"].as_u64(),
    ) {
        assert!(
            last < first + first / 2,
            "resident memory grew from {first} KiB to {last} KiB"
        );
    }
}

/// Issue #12, finding 8: a ttl beyond the calendar was a panic; it is a clear error now, and
/// so is every other ttl that does not make sense.
#[test]
fn a_ttl_beyond_the_calendar_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    for ttl in ["100000000d", "9223372036854775807s", "0s", "-5m", "1y", ""] {
        let output = lmts(&[
            "dev",
            "identity-token",
            "--account",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            &format!("--ttl={ttl}"),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]);
        let code = output.status.code();
        assert!(
            matches!(code, Some(1..=3)),
            "--ttl {ttl:?}: exit {code:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
        assert!(stderr(&output).contains("ttl"), "{}", stderr(&output));
    }
}

/// `lmts policy check | explain` on the policy of SPEC C1.
#[test]
fn policy_check_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(
        &file,
        "default = \"deny\"\n\n[[route]]\nmethod = \"POST\"\npath = \"/orders\"\nscopes = [\"trading\"]\n\n[[route]]\nmethod = \"GET\"\npath = \"/markets/**\"\npublic = true\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let checked = lmts(&["policy", "check", path]);
    assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));
    assert!(
        stdout(&checked).contains("2 rule(s), default deny"),
        "{}",
        stdout(&checked)
    );

    let allowed = lmts(&[
        "policy",
        "explain",
        path,
        "POST",
        "/orders?market=btc",
        "--scopes",
        "trading",
    ]);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert!(
        stdout(&allowed).contains("line 3: POST /orders"),
        "{}",
        stdout(&allowed)
    );
    let short = lmts(&[
        "policy",
        "explain",
        path,
        "POST",
        "/orders",
        "--scopes",
        "withdrawal",
    ]);
    assert_eq!(short.status.code(), Some(1), "{}", stdout(&short));
    let public = lmts(&[
        "--output",
        "json",
        "policy",
        "explain",
        path,
        "GET",
        "/markets/btc",
    ]);
    assert!(
        stdout(&public).contains("\"requires\": \"nothing: public\""),
        "{}",
        stdout(&public)
    );
    let denied = lmts(&["policy", "explain", path, "DELETE", "/orders"]);
    assert!(
        stdout(&denied).contains("refused: 403"),
        "{}",
        stdout(&denied)
    );

    std::fs::write(
        &file,
        "default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"/a\"\nscopes = [\"root\"]\n",
    )
    .unwrap();
    let refused = lmts(&["policy", "check", path]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        stderr(&refused).contains("line 2: unknown scope \"root\""),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn derive_sets_expiry_and_addresses_which_list_shows_and_saved_credentials_warn_of() {
    let session = Session::start().await;
    let derived =
        session.derive_saved_as_bot(&["--expires-in", "3d", "--allow-ip", "127.0.0.1/8,::1"]);
    let expires_at = derived["expiresAt"].as_str().unwrap().to_owned();
    assert_eq!(
        derived["allowedIps"],
        serde_json::json!(["127.0.0.0/8", "::1/128"])
    );
    let saved = fs::read_to_string(&session.credentials).unwrap();
    assert!(saved.contains(&expires_at), "{saved}");

    let table = session.run(&["tokens", "list", "--profile", "bot"], &[], None);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(
        text.contains("EXPIRES")
            && text.contains(&expires_at)
            && text.contains("127.0.0.0/8,::1/128"),
        "{text}"
    );
    let warning = stderr(&table);
    assert!(
        warning.contains(&format!(
            "profile \"bot\" expire at {expires_at} (in 2 days 23 hours)"
        )),
        "{warning}"
    );

    for (options, expected) in [
        (&["--expires-in", "30 days"][..], "is not a span like"),
        (
            &["--allow-ip", "localhost"][..],
            "is not an IP address or CIDR block",
        ),
        (
            &["--expires-in", "1d", "--expires-at", "2030-01-01T00:00:00Z"][..],
            "cannot be used with",
        ),
        (
            &["--expires-in", "400d"][..],
            "expiresAt must be at most one year ahead",
        ),
    ] {
        // On the command line: clap may refuse before reading standard input.
        let identity = session.identity();
        let mut args = vec!["tokens", "derive", "--identity-token", &identity];
        args.extend_from_slice(options);
        let refused = session.run(&args, &[], None);
        assert!(!refused.status.success(), "{options:?}");
        assert!(
            stderr(&refused).contains(expected),
            "{options:?}: {}",
            stderr(&refused)
        );
    }
}

#[tokio::test]
async fn rotate_saves_the_successor_in_place_and_whoami_shows_it() {
    let session = Session::start().await;
    let derived = session.derive_saved_as_bot(&["--label", "rotating"]);
    let old_id = derived["tokenId"].as_str().unwrap().to_owned();
    let me = session.json(&["tokens", "whoami", "--profile", "bot"], &[], None);
    assert_eq!(
        (me["tokenId"].as_str(), me["label"].as_str()),
        (Some(old_id.as_str()), Some("rotating"))
    );

    let table = session.run(&["tokens", "whoami", "--profile", "bot"], &[], None);
    assert!(stdout(&table).contains("rotating"), "{}", stdout(&table));

    let rotated = session.json(
        &[
            "tokens",
            "rotate",
            &old_id,
            "--overlap",
            "0s",
            "--profile",
            "bot",
            "--save",
        ],
        &[],
        None,
    );
    let new_id = rotated["tokenId"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    let saved = fs::read_to_string(&session.credentials).unwrap();
    assert!(
        saved.contains(&new_id) && !saved.contains(&old_id),
        "{saved}"
    );
    let me = session.json(&["tokens", "whoami", "--profile", "bot"], &[], None);
    assert_eq!(me["tokenId"].as_str(), Some(new_id.as_str()));
    assert_eq!(
        me["label"].as_str(),
        Some("rotating"),
        "the successor keeps the label"
    );
    let listed = session.json(&["tokens", "list", "--profile", "bot"], &[], None);
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "no overlap: the old token is gone"
    );

    let unknown = session.run(
        &["tokens", "rotate", "lmts_nosuchtoken", "--profile", "bot"],
        &[],
        None,
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("not found"),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test]
async fn events_page_and_follow_as_they_happen() {
    use std::io::{BufRead, BufReader};
    let session = Session::start().await;
    let derived = session.derive_saved_as_bot(&[]);
    let token_id = derived["tokenId"].as_str().unwrap().to_owned();
    let page = session.json(&["tokens", "events", "--profile", "bot"], &[], None);
    assert_eq!(page["events"][0]["type"], "token.derived");
    assert_eq!(page["events"][0]["tokenId"], token_id.as_str());
    let table = session.run(
        &["tokens", "events", "--profile", "bot", "--limit", "1"],
        &[],
        None,
    );
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(
        stdout(&table).starts_with("ID") && stdout(&table).contains("token.derived"),
        "{}",
        stdout(&table)
    );

    // Following: a revoke made meanwhile arrives as a JSON line.
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_lmts"))
        .args([
            "tokens",
            "events",
            "--profile",
            "bot",
            "--follow",
            "--output",
            "json",
        ])
        .env("LIMITLESS_API_URL", &session.service.base)
        .env("LMTS_CREDENTIALS_FILE", &session.credentials)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A watchdog, so that a follower that never prints ends the test instead of hanging it.
    let pid = follower.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = std::process::Command::new("kill").arg(&pid).status();
    });
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    // The history first (the bot's own derive): what comes after it, only following brings.
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "token.derived");
    assert_eq!(first["tokenId"], token_id.as_str());
    let other = session.json(
        &["tokens", "derive", "--identity-token", &session.identity()],
        &[],
        None,
    );
    let other_id = other["tokenId"].as_str().unwrap().to_owned();
    let revoked = session.run(
        &["tokens", "revoke", &other_id, "--profile", "bot"],
        &[],
        None,
    );
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let mut seen = Vec::new();
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        seen.push(format!("{} {}", event["type"], event["tokenId"]));
        if event["type"] == "token.revoked" {
            assert_eq!(event["tokenId"], other_id.as_str());
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        seen.iter().any(|line| line.contains("token.revoked")),
        "the revoke arrived while following: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|line| line.contains("token.derived") && line.contains(&other_id)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn operators_list_partners_and_stop_one_from_the_command_line() {
    let session = Session::start().await;
    let (one, one_secret, _) = derive_token(&session.service.base, &session.data, "{}").await;
    derive_token(&session.service.base, &session.data, r#"{"label":"two"}"#).await;
    let data = session.data.to_str().unwrap();

    let partners = session.json(&["partners", "list", "--data-dir", data], &[], None);
    assert_eq!(partners[0]["account"], ALICE);
    assert_eq!(partners[0]["liveTokens"], 2);
    let tokens = session.run(
        &["admin", "tokens", "--account", ALICE, "--data-dir", data],
        &[],
        None,
    );
    assert!(
        stdout(&tokens).contains("two") && stdout(&tokens).contains(&one),
        "{}",
        stdout(&tokens)
    );

    let missing_reason = session.run(
        &[
            "admin",
            "revoke-all",
            "--account",
            ALICE,
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    assert!(!missing_reason.status.success(), "a reason is required");
    // The service caches the token now: only the revoke reaching it refuses the token.
    let served = signed_status(
        &session.service.base,
        "GET",
        "/auth/api-tokens",
        &one,
        &one_secret,
    )
    .await;
    assert_eq!(served, Some(200));
    let stopped = session.json(
        &[
            "admin",
            "revoke-all",
            "--account",
            ALICE,
            "--reason",
            "leaked",
            "--operator",
            "oncall",
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    assert_eq!(stopped["revoked"].as_array().unwrap().len(), 2);
    // The running service (another process on the file) refuses them within a second.
    let mut status = None;
    for _ in 0..40 {
        status = signed_status(
            &session.service.base,
            "GET",
            "/auth/api-tokens",
            &one,
            &one_secret,
        )
        .await;
        if status == Some(401) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(401));
    let partners = session.json(&["partners", "list", "--data-dir", data], &[], None);
    assert_eq!(partners[0]["liveTokens"], 0);
    let again = session.run(
        &[
            "admin",
            "revoke",
            &one,
            "--reason",
            "again",
            "--data-dir",
            data,
        ],
        &[("LMTS_OPERATOR", "oncall")],
        None,
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no live token"),
        "{}",
        stderr(&again)
    );
}

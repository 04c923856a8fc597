//! The client commands (`tokens`, `sign`, `request`, `completions`) with no service running, in every
//! build: the client-only one (`--no-default-features`) as much as the full one. Signing from
//! saved credentials and from the environment, the credentials file's guards, the exit codes of
//! configuration and transport errors, completions and the help.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{fs, path::Path};

use common::*;
use serde_json::Value;

/// SPEC A4's test vectors: secret, timestamp, method, path, body, signature.
const SPEC_VECTORS: [(&str, &str, &str, &str, &str, &str); 5] = [
    (
        "c3VwZXItc2VjcmV0LWtleQ==",
        "2026-03-23T12:34:56.789Z",
        "PATCH",
        "/orders?market=btc",
        r#"{"foo":"bar"}"#,
        "mgMUpOd7FH4sOSti2MF30YKF9yDq+67VjFksPa5I5eE=",
    ),
    (
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
        "2026-03-23T12:34:56.789Z",
        "POST",
        "/orders?market=btc",
        r#"{"foo":"bar"}"#,
        "oMeoGw/k9lOlgmdkx4Upqmm99pJ2pHBYkt1CRO5d6bk=",
    ),
    (
        "c2VjcmV0",
        "2026-03-30T12:00:00.000Z",
        "POST",
        "/orders",
        r#"{"foo":"bar"}"#,
        "lqUdGxW7CcqHKaX99McgZb/TddUNxiFaIm5OiM/GMI0=",
    ),
    (
        "c3VwZXItc2VjcmV0LWtleQ==",
        "2026-03-23T12:34:56.789Z",
        "GET",
        "/auth/api-tokens",
        "",
        "+hEey+b2RTdi7km3zB9tt+xQ2XYz/XI0DT2XxgGStJs=",
    ),
    (
        "c3VwZXItc2VjcmV0LWtleQ==",
        "2026-03-23T12:34:56.789Z",
        "DELETE",
        "/auth/api-tokens/tok%2Fwith%20spaces",
        "",
        "Q1YXA9r+rZBy6+svRcnEFd17G3a0bpf0YN5YPrL/VTk=",
    ),
];

/// Writes a credentials file as `lmts tokens derive --save` would: profile `vector-N` holds the
/// secret of vector N, mode 0600.
fn save_vector_profiles(path: &Path) {
    let mut text = String::new();
    for (n, (secret, ..)) in SPEC_VECTORS.iter().enumerate() {
        text.push_str(&format!(
            "[profiles.vector-{n}]\ntoken_id = \"lmts_vector_{n}\"\nsecret = \"{secret}\"\n\n"
        ));
    }
    fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn sign_explain_reproduces_every_spec_vector_from_saved_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.toml");
    save_vector_profiles(&credentials);
    let file_env = [("LMTS_CREDENTIALS_FILE", credentials.to_str().unwrap())];
    for (n, (_, timestamp, method, path, body, signature)) in SPEC_VECTORS.iter().enumerate() {
        let profile = format!("vector-{n}");
        let mut args = vec![
            "sign",
            "--profile",
            &profile,
            "--method",
            method,
            "--path",
            path,
            "--timestamp",
            timestamp,
            "--explain",
        ];
        if !body.is_empty() {
            args.extend(["--body", body]);
        }

        let json = lmts_with(
            &[&args[..], &["--output", "json"]].concat(),
            &file_env,
            None,
        );
        assert!(json.status.success(), "{profile}: {}", stderr(&json));
        let headers: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(headers["lmts-signature"], *signature, "{profile}");
        assert_eq!(headers["lmts-api-key"], format!("lmts_vector_{n}"));
        assert_eq!(headers["lmts-timestamp"], *timestamp);
        assert_eq!(
            headers["canonicalMessage"],
            format!("{timestamp}\n{method}\n{path}\n{body}"),
            "{profile}: the signed bytes, separators and all"
        );

        let table = lmts_with(&args, &file_env, None);
        assert!(table.status.success(), "{profile}: {}", stderr(&table));
        let text = stdout(&table);
        for line in [
            format!("│{timestamp}⏎"),
            format!("│{method}⏎"),
            format!("│{path}⏎"),
            format!("lmts-signature: {signature}"),
        ] {
            assert!(text.contains(&line), "{profile}: {line:?} in\n{text}");
        }
        if body.is_empty() {
            assert!(text.contains("(empty: the message ends with the separator"));
        }
    }
}

#[test]
fn help_lists_the_commands_of_this_build() {
    let output = lmts(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    let listed = |command: &str| {
        help.lines()
            .any(|line| line.trim_start().starts_with(&format!("{command} ")))
    };
    for client_command in ["tokens", "sign", "request", "completions"] {
        assert!(listed(client_command), "{client_command} in\n{help}");
    }
    for server_command in ["serve", "partners", "dev", "demo", "bench"] {
        assert_eq!(
            listed(server_command),
            cfg!(feature = "server"),
            "{server_command} in\n{help}"
        );
    }
    assert!(help.contains("Exit codes"), "{help}");
    assert_eq!(
        help.contains("lmts serve --dev"),
        cfg!(feature = "server"),
        "{help}"
    );
}

#[cfg(not(feature = "server"))]
#[test]
fn a_server_command_is_a_usage_error_in_the_client_only_build() {
    let output = lmts(&["serve", "--dev"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unrecognized subcommand 'serve'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sign_reproduces_the_spec_vectors() {
    let env = [
        ("LIMITLESS_API_TOKEN_ID", "tok"),
        ("LIMITLESS_API_TOKEN_SECRET", "c3VwZXItc2VjcmV0LWtleQ=="),
    ];
    let args = [
        "sign",
        "--method",
        "PATCH",
        "--path",
        "/orders?market=btc",
        "--body",
        r#"{"foo":"bar"}"#,
        "--timestamp",
        "2026-03-23T12:34:56.789Z",
    ];
    let output = lmts_with(&[&args[..], &["--output", "json"]].concat(), &env, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let headers: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        headers["lmts-signature"],
        "mgMUpOd7FH4sOSti2MF30YKF9yDq+67VjFksPa5I5eE="
    );
    assert_eq!(headers["lmts-api-key"], "tok");
    assert_eq!(headers["lmts-timestamp"], "2026-03-23T12:34:56.789Z");

    let text = stdout(&lmts_with(&args, &env, None));
    assert!(
        text.contains("lmts-signature: mgMUpOd7FH4sOSti2MF30YKF9yDq+67VjFksPa5I5eE="),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    fs::write(&body, r#"{"foo":"bar"}"#).unwrap();
    let at_file = format!("@{}", body.display());
    let explained = lmts_with(
        &[
            "sign",
            "--method",
            "post",
            "--path",
            "/orders",
            "--body",
            &at_file,
            "--timestamp",
            "2026-03-30T12:00:00.000Z",
            "--explain",
        ],
        &[
            ("LIMITLESS_API_TOKEN_ID", "tok"),
            ("LIMITLESS_API_TOKEN_SECRET", "c2VjcmV0"),
        ],
        None,
    );
    let text = stdout(&explained);
    assert!(
        text.contains("│POST⏎") && text.contains("│{\"foo\":\"bar\"}"),
        "{text}"
    );
    assert!(
        text.contains("lmts-signature: lqUdGxW7CcqHKaX99McgZb/TddUNxiFaIm5OiM/GMI0="),
        "{text}"
    );
}

#[test]
fn a_world_readable_credentials_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.toml");
    fs::write(
        &file,
        "[profiles.default]\ntoken_id = \"tok\"\nsecret = \"c2VjcmV0\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let output = lmts_with(
        &["sign", "--method", "GET", "--path", "/x"],
        &[("LMTS_CREDENTIALS_FILE", file.to_str().unwrap())],
        None,
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("chmod 600"), "{}", stderr(&output));
    assert!(!stdout(&output).contains("lmts-signature"));
}

#[test]
fn an_unreachable_service_exits_5_with_a_hint() {
    let output = lmts_with(
        &["tokens", "capabilities", "--base-url", "http://127.0.0.1:9"],
        &[("LIMITLESS_IDENTITY_TOKEN", "x.y.z")],
        None,
    );
    assert_eq!(output.status.code(), Some(5));
    assert!(
        stderr(&output).contains("is the service running at http://127.0.0.1:9"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn no_credentials_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("none.toml");
    let output = lmts_with(
        &["tokens", "list"],
        &[("LMTS_CREDENTIALS_FILE", file.to_str().unwrap())],
        None,
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("no credentials"),
        "{}",
        stderr(&output)
    );
    let output = lmts_with(
        &["tokens", "list", "--profile", "nope"],
        &[("LMTS_CREDENTIALS_FILE", file.to_str().unwrap())],
        None,
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("no profile \"nope\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = lmts(&["completions", shell]);
        assert!(output.status.success());
        let script = stdout(&output);
        assert!(
            script.contains("lmts") && script.contains("tokens") && script.len() > 1000,
            "{shell}"
        );
    }
}

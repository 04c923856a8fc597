//! The README's walkthrough, run as written against a real `lmts serve --dev`.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

fn walkthrough() -> String {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walkthrough end marker");
    let block = &readme[start..end];
    let body = block.split_once("```sh\n").expect("a sh block").1;
    body.split_once("```").expect("closing fence").0.to_owned()
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let service = Service::start(&data, &dir.path().join("log"), &[]).await;

    let script = walkthrough();
    assert!(script.contains("lmts tokens revoke"), "{script}");
    let script = script.replace("http://127.0.0.1:8080", &service.base);
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_lmts"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .env("HOME", &home)
        .env("LMTS_DATA_DIR", &data)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("LMTS_CREDENTIALS_FILE")
        .env_remove("LIMITLESS_IDENTITY_TOKEN")
        .env_remove("LIMITLESS_API_TOKEN_ID")
        .env_remove("LIMITLESS_API_TOKEN_SECRET")
        .env_remove("LMTS_PROFILE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("allowed scopes"),
        "capabilities printed: {out}"
    );
    assert!(
        out.contains("\"tokenId\""),
        "the curl request was answered with the token list: {out}"
    );
    assert!(out.contains("canonical message"), "{out}");
    assert!(
        out.contains("\n200 OK\n"),
        "lmts request printed its answer: {out}"
    );
    assert!(out.contains("refused as expected (exit code 4)"), "{out}");
    assert!(err.contains("shown only this once"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = home.join(".config/lmts/credentials.toml");
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

//! Schemathesis (from PyPI) against a live `lmts serve` and its `/openapi.json`: generated and
//! mutated requests never get a 5xx, and every answer conforms to the document (status,
//! content type, headers, body schema); invalid input is refused. Fixed seed, so a failure
//! replays.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";

#[tokio::test]
async fn schemathesis_finds_no_failure() {
    let venv = python_venv("schemathesis", SCHEMATHESIS);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(
        &data,
        &dir.path().join("log"),
        &[
            "--rate-limit-per-minute",
            "0",
            "--max-active-tokens",
            "1000000",
        ],
    )
    .await;
    let identity = identity_token(&data);
    let output = Command::new(venv.join("bin/schemathesis"))
        .current_dir(dir.path())
        .args(["run", &format!("{}/openapi.json", service.base)])
        .args(["-H", &format!("identity: Bearer {identity}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection",
        ])
        // One worker: CPython 3.11's `ast.parse`, which Hypothesis calls to describe its
        // filters, fails now and then when two threads run it at once ("AST constructor
        // recursion depth mismatch").
        .args(["--max-examples", "30", "--workers", "1", "--seed", "20261123"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    let summary = out
        .lines()
        .find(|line| line.contains(" generated, "))
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    assert!(
        summary.trim_end().ends_with("passed") && !summary.contains("failed"),
        "{summary}\n{out}"
    );
}

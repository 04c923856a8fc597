//! The published Python SDK (`limitless-sdk` from PyPI), unmodified, against `lmts serve`:
//! the seed document's flow must work as it does against the real API. The SDK is installed
//! into a virtual environment under the target directory on first run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, process::Command};

use common::*;

const PYTHON_SDK: &str = "limitless-sdk==1.3.0";

/// A virtual environment with the published Python SDK, created once.
fn python_with_sdk() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("official-python-sdk");
    let python = venv.join("bin/python");
    let marker = venv.join(format!("{PYTHON_SDK}.installed"));
    if marker.exists() {
        return python;
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        created.is_ok_and(|s| s.success()),
        "python3 -m venv failed: install Python 3 with venv (Debian: apt-get install python3-venv)"
    );
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PYTHON_SDK,
        ])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "pip install {PYTHON_SDK} failed (PyPI must be reachable):\n{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    std::fs::write(&marker, "").unwrap();
    python
}

#[tokio::test]
async fn the_published_python_sdk_runs_the_seed_flow() {
    let python = python_with_sdk();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = Service::start(&data, &dir.path().join("log"), &[]).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/official/python_seed_flow.py"
    );
    let output = Command::new(python)
        .arg(script)
        .env("LMTS_BASE_URL", &service.base)
        .env("LMTS_IDENTITY_TOKEN", identity_token(&data))
        .output()
        .unwrap();
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("refused after revoke") && out.trim_end().ends_with("OK"),
        "{out}"
    );
}

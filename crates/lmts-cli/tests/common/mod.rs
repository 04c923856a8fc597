//! Shared by the binary's tests: run `lmts`, and a real `lmts serve --dev` process.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::{
    fs,
    io::Write,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

pub const ALICE: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

/// Runs `lmts` with `args`.
pub fn lmts(args: &[&str]) -> Output {
    lmts_with(args, &[], None)
}

/// Runs `lmts` with `args`, extra environment variables and optional standard input.
pub fn lmts_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lmts"));
    command
        .args(args)
        .env_remove("LIMITLESS_API_URL")
        .env_remove("LIMITLESS_IDENTITY_TOKEN")
        .env_remove("LIMITLESS_API_TOKEN_ID")
        .env_remove("LIMITLESS_API_TOKEN_SECRET")
        .env_remove("LMTS_PROFILE")
        .env_remove("LMTS_OUTPUT")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A real `lmts serve --dev` on a free loopback port; SIGKILLed when dropped.
pub struct Service {
    pub child: Child,
    pub base: String,
}

impl Service {
    pub async fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> Self {
        Self::start_logging(data_dir, log, extra, "debug").await
    }

    /// [`Service::start`], logging at `level` (`LMTS_LOG`).
    pub async fn start_logging(data_dir: &Path, log: &Path, extra: &[&str], level: &str) -> Self {
        Self::spawn(&["serve", "--dev"], data_dir, log, extra, level).await
    }

    /// A real `lmts gateway` on a free loopback port; `extra` names the upstream and policy.
    pub async fn gateway(data_dir: &Path, log: &Path, extra: &[&str]) -> Self {
        Self::spawn(&["gateway"], data_dir, log, extra, "debug").await
    }

    /// `lmts COMMAND --listen ADDR --data-dir DIR EXTRA`, once it answers `/health`.
    async fn spawn(
        command: &[&str],
        data_dir: &Path,
        log: &Path,
        extra: &[&str],
        level: &str,
    ) -> Self {
        let port = lmts_testkit::free_loopback_address().port();
        let listen = format!("127.0.0.1:{port}");
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lmts"))
            .args(command)
            .args(["--listen", &listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("LMTS_LOG", level)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let service = Self {
            child,
            base: format!("http://{listen}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/health", service.base))
                .send()
                .await
                .is_ok()
            {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "lmts {} did not come up; log:\n{}",
            command[0],
            fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

/// A dev identity token for `ALICE` from the data directory's dev key.
pub fn identity_token(data_dir: &Path) -> String {
    let output = lmts(&[
        "dev",
        "identity-token",
        "--account",
        ALICE,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).trim().to_owned()
}

/// A Python virtual environment under the target directory with `package` installed, created
/// once; returns its directory. Fails with what to install when it cannot.
pub fn python_venv(name: &str, package: &str) -> std::path::PathBuf {
    let venv = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let marker = venv.join(format!("{}.installed", package.replace(['/', ' '], "_")));
    if marker.exists() {
        return venv;
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        created.is_ok_and(|s| s.success()),
        "python3 -m venv failed: install Python 3 with venv (Debian: apt-get install python3-venv)"
    );
    let installed = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            package,
        ])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "pip install {package} failed (PyPI must be reachable):\n{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    fs::write(&marker, "").unwrap();
    venv
}

/// Sends an empty-bodied request signed now with `token_id`'s secret; the status, or `None`
/// when no answer came (the service was killed, say).
pub async fn signed_status(
    base: &str,
    method: &str,
    target: &str,
    token_id: &str,
    secret: &lmts_core::TokenSecret,
) -> Option<u16> {
    let now = lmts_sdk::clock::Clock::system().now();
    let headers = lmts_core::Signer::new(secret).sign_request(token_id, now, method, target, b"");
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{base}{target}"))
        .timeout(Duration::from_secs(5));
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    request
        .send()
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

/// A 0600 master key file in `dir`, shared by every process of a PostgreSQL deployment.
pub fn write_master_key(dir: &Path) -> String {
    let key = dir.join("master.key");
    fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    }
    key.to_str().unwrap().to_owned()
}

/// Derives a token for `ALICE` with `body` on the service at `base` (its dev issuer in
/// `data_dir`): the token id, the secret and the whole answer.
pub async fn derive_token(
    base: &str,
    data_dir: &Path,
    body: &str,
) -> (String, lmts_core::TokenSecret, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/auth/api-tokens/derive"))
        .header("identity", format!("Bearer {}", identity_token(data_dir)))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let derived: serde_json::Value = response.json().await.unwrap();
    let token_id = derived["tokenId"].as_str().unwrap().to_owned();
    let secret = lmts_core::TokenSecret::from_base64(derived["secret"].as_str().unwrap()).unwrap();
    (token_id, secret, derived)
}

/// `lmts bench --base-url BASE` of the health and list scenarios on two connections, as JSON,
/// with `extra` options and `env`.
pub fn bench_remote(base: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["bench", "--base-url", base, "--connections", "2"];
    args.extend([
        "--scenario",
        "health",
        "--scenario",
        "list",
        "--output",
        "json",
    ]);
    args.extend(extra);
    lmts_with(&args, env, None)
}

/// Asserts that a bench succeeded, and that every scenario made requests and had no error.
pub fn assert_benched(output: &Output) {
    assert!(output.status.success(), "{}", stderr(output));
    let results: serde_json::Value = serde_json::from_str(&stdout(output)).unwrap();
    for result in results.as_array().unwrap() {
        assert!(result["requests"].as_u64().unwrap() > 0, "{result}");
        assert_eq!(result["errors"], 0, "{result}");
    }
}

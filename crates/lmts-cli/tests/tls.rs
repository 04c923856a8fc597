//! `lmts serve --tls-cert --tls-key` as a process: the CLI reaches it with `--ca-file` and not
//! without, SIGHUP puts a replaced certificate in use when the files are not watched
//! (`--tls-reload-secs 0`), and `lmts bench --base-url https://… --ca-file` drives it.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
};

use common::*;
use lmts_testkit::tls::TestAuthority;

/// Waits (at most 20 s) until `base` answers `/health` to a client trusting `authority`.
async fn until_trusted(base: &str, authority: &TestAuthority, log: &Path) {
    assert!(
        authority.until_trusted_at(base).await,
        "{base} never presented a certificate of {authority:?}; log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Kills the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_cli_reaches_an_https_service_and_sighup_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (first, second) = (TestAuthority::new("first"), TestAuthority::new("second"));
    let (first_ca, second_ca) = (dir.path().join("first.pem"), dir.path().join("second.pem"));
    fs::write(&first_ca, first.root_pem()).unwrap();
    fs::write(&second_ca, second.root_pem()).unwrap();
    first.issue().write(&cert, &key);

    let listen = lmts_testkit::free_loopback_address().to_string();
    let base = format!("https://{listen}");
    let child = Command::new(env!("CARGO_BIN_EXE_lmts"))
        .args([
            "serve",
            "--dev",
            "--listen",
            &listen,
            "--tls-reload-secs",
            "0",
            "--rate-limit-per-minute",
            "0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("LMTS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let service = Killed(child);
    until_trusted(&base, &first, &log).await;

    let identity = identity_token(&data);
    let capabilities = |ca_file: Option<&Path>| {
        let mut args = vec!["tokens", "capabilities", "--base-url", &base];
        let ca_arg;
        if let Some(ca_file) = ca_file {
            ca_arg = ca_file.to_str().unwrap().to_owned();
            args.extend(["--ca-file", &ca_arg]);
        }
        lmts_with(&args, &[("LIMITLESS_IDENTITY_TOKEN", &identity)], None)
    };
    let trusted = capabilities(Some(&first_ca));
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    assert!(stdout(&trusted).contains("trading"), "{}", stdout(&trusted));
    let untrusted = capabilities(None);
    assert!(
        !untrusted.status.success(),
        "a certificate of an unknown authority was accepted"
    );
    assert!(
        stderr(&untrusted).contains("give its certificate with --ca-file"),
        "{}",
        stderr(&untrusted)
    );

    // Replaced and not watched: taken up at SIGHUP.
    second.issue().write(&cert, &key);
    let hangup = Command::new("kill")
        .args(["-HUP", &service.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    until_trusted(&base, &second, &log).await;
    let renewed = capabilities(Some(&second_ca));
    assert!(renewed.status.success(), "{}", stderr(&renewed));
    assert!(
        !capabilities(Some(&first_ca)).status.success(),
        "the old certificate is still presented"
    );
    assert!(fs::read_to_string(&log)
        .unwrap()
        .contains("TLS certificate loaded"));

    // The bench drives the HTTPS deployment too, trusting the authority it is given.
    let bench = |ca_file: &Path| {
        let extra = [
            "--ca-file",
            ca_file.to_str().unwrap(),
            "--duration-secs",
            "1",
        ];
        bench_remote(&base, &extra, &[("LIMITLESS_IDENTITY_TOKEN", &identity)])
    };
    assert_benched(&bench(&second_ca));
    let refused = bench(&first_ca);
    assert!(
        !refused.status.success(),
        "the bench trusted an authority it was not given"
    );
    assert!(
        stderr(&refused).contains("UnknownIssuer"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn unusable_tls_files_stop_the_start_as_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    TestAuthority::new("start")
        .issue()
        .write(&cert, &dir.path().join("key.pem"));
    let (data, cert) = (dir.path().join("data"), cert.to_str().unwrap());
    let output = lmts(&[
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert,
        "--tls-key",
        cert,
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("holds no PEM private key"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_certificate_without_its_key_is_refused_by_the_command_line() {
    let output = lmts(&["serve", "--dev", "--tls-cert", "cert.pem"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--tls-key"), "{}", stderr(&output));
}

//! `lmts backup` of a running `lmts serve`, and `lmts restore` into a fresh data directory:
//! the restored service (given the master key, which the backup never holds) serves the same
//! tokens. Nothing is ever overwritten, and a file that is no lmts database is refused.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::*;

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_service_with_the_same_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (original, restored) = (dir.path().join("original"), dir.path().join("restored"));
    let service = Service::start(&original, &dir.path().join("log"), &[]).await;
    let (token_id, secret, _) = derive_token(&service.base, &original, r#"{"label":"kept"}"#).await;
    let backup = dir.path().join("lmts.backup");
    let arg = |path: &std::path::Path| path.to_str().unwrap().to_owned();

    let taken = lmts(&[
        "backup",
        "--to",
        &arg(&backup),
        "--data-dir",
        &arg(&original),
    ]);
    assert!(taken.status.success(), "{}", stderr(&taken));
    assert!(
        stderr(&taken).contains("master key is not in the backup"),
        "{}",
        stderr(&taken)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = lmts(&[
        "backup",
        "--to",
        &arg(&backup),
        "--data-dir",
        &arg(&original),
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );
    drop(service);

    let restore = lmts(&[
        "restore",
        "--from",
        &arg(&backup),
        "--data-dir",
        &arg(&restored),
    ]);
    assert!(restore.status.success(), "{}", stderr(&restore));
    let twice = lmts(&[
        "restore",
        "--from",
        &arg(&backup),
        "--data-dir",
        &arg(&restored),
    ]);
    assert!(
        !twice.status.success(),
        "a data directory with a database is not restored into"
    );
    // The operator brings the master key, kept apart from the backup.
    fs::copy(original.join("master.key"), restored.join("master.key")).unwrap();
    let service = Service::start(&restored, &dir.path().join("log2"), &[]).await;
    let status = signed_status(&service.base, "GET", "/auth/api-tokens", &token_id, &secret).await;
    assert_eq!(
        status,
        Some(200),
        "the restored service knows the token and its secret"
    );

    let garbage = dir.path().join("garbage");
    fs::write(&garbage, "not a database").unwrap();
    let refused = lmts(&[
        "restore",
        "--from",
        &arg(&garbage),
        "--data-dir",
        &arg(&dir.path().join("other")),
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not a sound lmts database"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn postgres_backups_are_pg_dump_commands_without_the_password() {
    let printed = lmts(&[
        "backup",
        "--to",
        "lmts.dump",
        "--database-url",
        "postgres://lmts:s3cret@db:5432/lmts",
    ]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let command = stdout(&printed);
    assert!(command.starts_with("pg_dump --format=custom"), "{command}");
    assert!(command.contains("postgres://lmts@db:5432/lmts") && !command.contains("s3cret"));
}

//! Backups of the embedded SQLite database (issue #15): a consistent copy taken while the
//! service runs (`VACUUM INTO`, one read transaction), written 0600 and checked, and its
//! restore into a fresh data directory. A backup never holds the master key, which is kept
//! apart: the restored directory needs it to open any secret. The replay record (`replay.db`)
//! is not backed up: it matters for the signing window only. PostgreSQL is backed up with its
//! own tools (`pg_dump`).

use std::path::{Path, PathBuf};

use lmts_core::files::{self, FileError};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
    SqlitePool,
};

use crate::store::DATABASE_FILE;

/// Why a backup or a restore did not happen. Nothing is left half-written either way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// There is no database to back up.
    #[error("no database in {0}: is it the service's --data-dir?")]
    NoDatabase(PathBuf),
    /// The target exists; a backup or restore never overwrites.
    #[error("{0} exists already: a backup or restore never overwrites a file")]
    Exists(PathBuf),
    /// The file is not a sound lmts database.
    #[error("{path} is not a sound lmts database: {why}")]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What the check found.
        why: String,
    },
    /// A file or directory could not be written.
    #[error("could not write {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: FileError,
    },
    /// The database refused.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Copies the database of `data_dir` to `to` (a new file, 0600), consistently, while the
/// service may be writing to it; then checks the copy.
pub async fn backup(data_dir: &Path, to: &Path) -> Result<(), BackupError> {
    let database = data_dir.join(DATABASE_FILE);
    if !database.is_file() {
        return Err(BackupError::NoDatabase(data_dir.to_owned()));
    }
    create_private_file(to, |_| Ok(()))?;
    let copied = async {
        let source = connect(&database, false).await?;
        let target = to.to_string_lossy().into_owned();
        sqlx::query("VACUUM INTO ?1")
            .bind(target)
            .execute(&source)
            .await?;
        source.close().await;
        check(to).await
    };
    let outcome = copied.await;
    if outcome.is_err() {
        let _ = std::fs::remove_file(to);
    }
    outcome
}

/// Restores the backup `from` as the database of `data_dir`, which must have none yet.
pub async fn restore(from: &Path, data_dir: &Path) -> Result<(), BackupError> {
    check(from).await?;
    files::ensure_private_dir(data_dir).map_err(|source| BackupError::File {
        path: data_dir.to_owned(),
        source,
    })?;
    let database = data_dir.join(DATABASE_FILE);
    let mut backup = std::fs::File::open(from).map_err(|error| BackupError::File {
        path: from.to_owned(),
        source: error.into(),
    })?;
    // Copied as it is read, not held whole in memory; a copy that fails is removed.
    let copied = create_private_file(&database, |file| std::io::copy(&mut backup, file).map(drop));
    if matches!(copied, Err(BackupError::File { .. })) {
        let _ = std::fs::remove_file(&database);
    }
    copied
}

/// Whether `path` holds a sound SQLite database with lmts's schema.
async fn check(path: &Path) -> Result<(), BackupError> {
    let not_sound = |why: String| BackupError::NotADatabase {
        path: path.to_owned(),
        why,
    };
    let pool = connect(path, true)
        .await
        .map_err(|error| not_sound(error.to_string()))?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .map_err(|error| not_sound(error.to_string()))?;
    if integrity != "ok" {
        return Err(not_sound(integrity));
    }
    sqlx::query("SELECT COUNT(*) FROM api_tokens JOIN _sqlx_migrations ON 1 = 0")
        .fetch_one(&pool)
        .await
        .map_err(|_| not_sound("no lmts tables in it".into()))?;
    pool.close().await;
    Ok(())
}

/// A connection to the database file at `path`, read-only when `read_only`.
async fn connect(path: &Path, read_only: bool) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .busy_timeout(std::time::Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
}

/// Creates `path` private (0600) with what `write` writes, refusing an existing file.
fn create_private_file(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), BackupError> {
    files::create_private(path, write).map_err(|source| match source {
        FileError::Io(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            BackupError::Exists(path.to_owned())
        }
        source => BackupError::File {
            path: path.to_owned(),
            source,
        },
    })
}

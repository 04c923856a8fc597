//! Group commit for SQLite: writes that arrive while a commit is being synced to disk ride the
//! next commit together, so many durable writes share one `fsync` instead of paying one each.
//!
//! Every write runs inside its own savepoint, so one failing write leaves the others of its
//! group intact; a write is acknowledged only after the commit that carries it has returned.

use std::{future::Future, pin::Pin, sync::Arc};

use sqlx::{
    pool::PoolConnection, query::Query, sqlite::SqliteArguments, Sqlite, SqliteConnection,
    SqlitePool,
};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// The most writes one commit carries.
const MAX_GROUP: usize = 256;

/// Writes waiting for the committer before callers wait to queue.
const MAX_QUEUED: usize = 4096;

/// A boxed future borrowing the writer connection.
type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// Delivers a write's outcome once its commit is known (`Some`: the commit failed).
type Deliver = Box<dyn FnOnce(Option<&Arc<sqlx::Error>>) + Send>;

/// A write that ran: whether its statements failed, and how to tell its caller.
struct Ran {
    failed: bool,
    deliver: Deliver,
}

/// A queued write: runs its statements on the writer connection.
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Ran> + Send>;

/// The handle writers queue on; the committing task ends when every handle is dropped.
#[derive(Clone)]
pub(super) struct GroupCommitter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter")
            .field("queued", &(MAX_QUEUED - self.jobs.capacity()))
            .finish()
    }
}

impl GroupCommitter {
    /// Starts the committing task on `writer`, a pool whose connections take the writes.
    pub(super) fn start(writer: SqlitePool) -> Self {
        let (jobs, queue) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(commit_groups(writer, queue));
        Self { jobs }
    }

    /// Runs one statement in the next group commit; answers with the rows it changed once that
    /// commit is durable.
    pub(super) async fn execute(
        &self,
        statement: Query<'static, Sqlite, SqliteArguments<'static>>,
    ) -> Result<u64, StoreError> {
        self.write(move |connection| {
            Box::pin(async move { Ok(statement.execute(connection).await?.rows_affected()) })
        })
        .await
    }

    /// Runs `statements` in the next group commit and answers once that commit is durable.
    pub(super) async fn write<T, F>(&self, statements: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            Box::pin(async move {
                let outcome = statements(connection).await;
                Ran {
                    failed: outcome.is_err(),
                    deliver: Box::new(move |commit_error| {
                        let answer = match commit_error {
                            Some(error) => Err(StoreError::NotCommitted(Some(Arc::clone(error)))),
                            None => outcome,
                        };
                        let _ = reply.send(answer);
                    }),
                }
            })
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::NotCommitted(None))?;
        answer.await.map_err(|_| StoreError::NotCommitted(None))?
    }
}

async fn commit_groups(writer: SqlitePool, mut queue: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        crate::telemetry::group_commit(group.len());
        match writer.acquire().await {
            Ok(connection) => commit_group(connection, group.drain(..)).await,
            Err(error) => {
                tracing::error!(error = %error, writes = group.len(), "no writer connection; writes dropped");
                group.clear();
            }
        }
    }
}

/// Commits one group. Writes that never ran (the group was abandoned) are dropped, which their
/// callers see as [`StoreError::NotCommitted`].
async fn commit_group(mut connection: PoolConnection<Sqlite>, group: impl Iterator<Item = Job>) {
    let mut ran = Vec::with_capacity(MAX_GROUP);
    match run_group(&mut connection, group, &mut ran).await {
        Ok(()) => ran.into_iter().for_each(|deliver| deliver(None)),
        Err(error) => {
            tracing::error!(error = %error, writes = ran.len(), "group commit failed; rolled back");
            if execute(&mut connection, "ROLLBACK").await.is_err() {
                // A connection whose transaction state is unknown must not be reused.
                connection.close_on_drop();
            }
            let error = Arc::new(error);
            ran.into_iter().for_each(|deliver| deliver(Some(&error)));
        }
    }
}

/// Runs each write of a group in a savepoint of one transaction, and commits it.
async fn run_group(
    connection: &mut SqliteConnection,
    group: impl Iterator<Item = Job>,
    ran: &mut Vec<Deliver>,
) -> Result<(), sqlx::Error> {
    execute(connection, "BEGIN IMMEDIATE").await?;
    for job in group {
        execute(connection, "SAVEPOINT write").await?;
        let write = job(connection).await;
        ran.push(write.deliver);
        if write.failed {
            execute(connection, "ROLLBACK TO write").await?;
        }
        execute(connection, "RELEASE write").await?;
    }
    execute(connection, "COMMIT").await
}

async fn execute(connection: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(connection).await.map(drop)
}

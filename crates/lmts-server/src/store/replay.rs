//! The replay record's writes, in batches (SPEC B6): every signature recorded while the
//! previous batch is being written rides the next one, as one statement that inserts them all
//! and answers which were new. A signed POST then costs a share of a statement rather than a
//! statement of its own, on either backend.

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::StoreError;

/// The most signatures one statement carries.
const MAX_BATCH: usize = 512;

/// Signatures waiting for a batch before callers wait to queue.
const MAX_QUEUED: usize = 8192;

/// One signature to remember until `expires_at` (Unix milliseconds).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ReplayRow {
    /// The token that signed.
    pub token_id: String,
    /// The signature.
    pub signature: [u8; 32],
    /// When the record may be forgotten.
    pub expires_at: i64,
}

/// A backend's statement for a batch: inserts every row not recorded yet, and answers the
/// `(token id, signature)` of those it inserted.
#[async_trait]
pub(super) trait ReplayWriter: Send + Sync + 'static {
    /// Inserts `rows`, skipping those already recorded; answers the ones inserted.
    async fn insert_new(&self, rows: &[ReplayRow]) -> Result<Vec<(String, [u8; 32])>, sqlx::Error>;
}

/// Where a waiter hears whether its row was new.
type Answer = oneshot::Sender<Result<bool, StoreError>>;

/// A signature waiting for its batch, and who waits for the answer.
struct Pending {
    row: ReplayRow,
    answer: Answer,
}

/// The queue of the replay record: cheap to clone; its writing tasks end when every clone is
/// dropped.
#[derive(Debug, Clone)]
pub(super) struct ReplayBatcher {
    queue: mpsc::Sender<Pending>,
}

impl ReplayBatcher {
    /// Starts `lanes` tasks writing batches through `writer` (one for a backend with one
    /// writer; more where statements can run side by side).
    pub(super) fn start(writer: impl ReplayWriter, lanes: usize) -> Self {
        let (queue, received) = mpsc::channel(MAX_QUEUED);
        let writer = Arc::new(writer);
        let received = Arc::new(Mutex::new(received));
        for _ in 0..lanes.max(1) {
            tokio::spawn(write_batches(Arc::clone(&writer), Arc::clone(&received)));
        }
        Self { queue }
    }

    /// Records `row`: `true` when it is new, `false` when that signature was recorded before.
    pub(super) async fn record(&self, row: ReplayRow) -> Result<bool, StoreError> {
        let (answer, answered) = oneshot::channel();
        let stopped = || StoreError::NotCommitted(None);
        self.queue
            .send(Pending { row, answer })
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// One lane: takes what is queued (up to [`MAX_BATCH`]), writes it, answers, and again.
async fn write_batches(
    writer: Arc<impl ReplayWriter>,
    received: Arc<Mutex<mpsc::Receiver<Pending>>>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut received = received.lock().await;
            if received.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        let (rows, answers): (Vec<ReplayRow>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.row, pending.answer))
            .unzip();
        match writer.insert_new(&rows).await {
            Ok(inserted) => answer_all(rows, answers, inserted),
            Err(error) => {
                tracing::warn!(%error, rows = rows.len(), "replay record batch not written");
                let error = Arc::new(error);
                for answer in answers {
                    let _ = answer.send(Err(StoreError::NotCommitted(Some(Arc::clone(&error)))));
                }
            }
        }
    }
}

/// Tells each waiter whether its row was new: of two copies in one batch, the first is.
fn answer_all(rows: Vec<ReplayRow>, answers: Vec<Answer>, inserted: Vec<(String, [u8; 32])>) {
    let mut new: HashSet<(String, [u8; 32])> = inserted.into_iter().collect();
    for (row, answer) in rows.into_iter().zip(answers) {
        let _ = answer.send(Ok(new.remove(&(row.token_id, row.signature))));
    }
}

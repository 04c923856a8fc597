//! The instances sharing one PostgreSQL, and how a revoke becomes final on all of them before
//! it is answered (SPEC C1, B13).
//!
//! Each instance keeps a row in `lmts_instances` and beats every quarter lease: one statement
//! stamps the row with PostgreSQL's clock and sends a notice to the instance's own channel,
//! carrying when it was sent (the instance's monotonic clock) and the last revocation number
//! committed. PostgreSQL delivers notices in commit order, so when the listener hears that beat
//! back, every notice committed before it has been applied. Hence:
//!
//! - the instance's caches may answer until the lease after the beat was *sent* (less an
//!   allowance for two machines' clocks running at slightly different rates); past that,
//!   every lookup goes to the database, until a beat is heard again;
//! - the instance has applied every revocation up to the number the beat carried.
//!
//! Revocation notices advance the instance's applied number at once; it is written to its row
//! off the listener, coalesced. A revoker, after its commit, polls until every live instance
//! (heartbeat within the lease, by PostgreSQL's clock) other than itself has applied its
//! revocation's number, for at most the lease: past that, any instance that has not applied it
//! has stopped answering from its caches, so the revocation is final either way.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::{
    sync::{watch, Notify},
    time::Instant,
};

use super::notices;
use crate::store::InvalidationSink;

/// PostgreSQL's clock, in the stored form: milliseconds since the epoch. Instances' clocks are
/// never compared with each other, nor with this one.
macro_rules! pg_now_millis {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

/// The first pause of a revoker polling for acknowledgements; each next one is a quarter
/// longer, up to [`LONGEST_POLL_PAUSE`]: most acknowledgements land within a few milliseconds.
const FIRST_POLL_PAUSE: Duration = Duration::from_millis(1);

/// The longest pause of a revoker polling for acknowledgements.
const LONGEST_POLL_PAUSE: Duration = Duration::from_millis(20);

/// The least time a revoker gives one question about the other instances, even when its own
/// lease is over (or zero).
const LEAST_ASKING_TIME: Duration = Duration::from_millis(500);

/// The least time between two beats, whatever the lease.
const SHORTEST_BEAT_INTERVAL: Duration = Duration::from_millis(10);

/// Rows silent for this long, or ten leases if longer, are deleted by whoever notices.
const SILENCE_BEFORE_FORGETTING: Duration = Duration::from_secs(60);

/// Silent rows are looked for every this many beats.
const BEATS_BETWEEN_CLEANUPS: u32 = 20;

/// An instance's own connections: its listener's, and two for beats and acknowledgements.
const OWN_CONNECTIONS: u32 = 3;

/// This process as one of the instances sharing the database.
#[derive(Debug)]
pub(super) struct Instance {
    /// Its row's id, chosen by the database.
    id: String,
    /// How long a beat heard back lets the caches answer, and the longest a revoke waits.
    lease: Duration,
    /// The zero of `trusted_until`.
    origin: Instant,
    /// Until when (microseconds after `origin`) the caches may answer; 0: not now.
    trusted_until: AtomicU64,
    /// The highest revocation number applied to the caches here.
    applied: watch::Sender<i64>,
    /// Asks for a beat now rather than at the next tick.
    beat_now: Notify,
    /// Its own connections, apart from the requests' pool so that a busy instance still hears
    /// and beats. Its writes need no durability: `synchronous_commit` is off on them.
    connections: PgPool,
}

impl Instance {
    /// A new instance of the database at `pool` (reached with `connect`), not yet registered,
    /// whose caches may not answer until its first beat is heard.
    pub(super) async fn new(
        pool: &PgPool,
        connect: &PgConnectOptions,
        lease: Duration,
    ) -> Result<Self, sqlx::Error> {
        let id: String = sqlx::query_scalar("SELECT gen_random_uuid()::text")
            .fetch_one(pool)
            .await?;
        let own = connect
            .clone()
            .application_name(&format!("lmts instance {id}"))
            .options([("synchronous_commit", "off")]);
        let connections = PgPoolOptions::new()
            .max_connections(OWN_CONNECTIONS)
            .acquire_timeout(lease.max(SHORTEST_BEAT_INTERVAL))
            .connect_lazy_with(own);
        Ok(Self {
            id,
            lease,
            origin: Instant::now(),
            trusted_until: AtomicU64::new(0),
            applied: watch::Sender::new(0),
            beat_now: Notify::new(),
            connections,
        })
    }

    /// Its id.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The channel its beats come back on.
    pub(super) fn channel(&self) -> String {
        format!("lmts_instance_{}", self.id)
    }

    /// The `application_name` of its listening connection.
    pub(super) fn listener_name(&self) -> String {
        format!("lmts listener {}", self.id)
    }

    /// Whether its caches may answer now: a beat sent less than the lease (less the drift
    /// allowance) ago was heard back.
    pub(super) fn caches_may_answer(&self) -> bool {
        self.micros(Instant::now()) < self.trusted_until.load(Ordering::Acquire)
    }

    /// Notes that every revocation up to `number` is applied to the caches.
    pub(super) fn applied(&self, number: i64) {
        self.applied.send_if_modified(|applied| {
            let newer = number > *applied;
            if newer {
                *applied = number;
            }
            newer
        });
    }

    /// The listener heard a beat of [`Instance::beat`] back: `<sent, µs after origin>:<last
    /// revocation number committed when it was sent>`.
    pub(super) fn heard_beat(&self, payload: &str) {
        let parsed = payload
            .split_once(':')
            .and_then(|(sent, number)| Some((sent.parse::<u64>().ok()?, number.parse().ok()?)));
        let Some((sent, number)) = parsed else {
            tracing::warn!("unreadable heartbeat on this instance's channel; ignored");
            return;
        };
        // Never later than now, whatever the payload says.
        let sent = sent.min(self.micros(Instant::now()));
        let trusted = self.lease - self.lease / 16;
        let until = sent.saturating_add(u64::try_from(trusted.as_micros()).unwrap_or(u64::MAX));
        self.trusted_until.fetch_max(until, Ordering::AcqRel);
        self.applied(number);
    }

    /// The listener lost its connection: nothing it might have missed may be answered from a
    /// cache.
    pub(super) fn went_deaf(&self) {
        self.trusted_until.store(0, Ordering::Release);
    }

    /// Asks for a beat now (the listener just started listening).
    pub(super) fn ask_for_beat(&self) {
        self.beat_now.notify_one();
    }

    /// Microseconds from `origin` to `at`.
    fn micros(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    }

    /// The lease in milliseconds, as rows store times.
    fn lease_millis(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Waits until every other live instance has applied revocation `number` (committed before
    /// this call), or for the longest lease among them and this one, whichever comes first;
    /// either way the revocation is then final everywhere. Each instance is judged by its own
    /// lease, so instances configured differently (even with none) still wait for each other.
    /// A failure to read the instances only means waiting the whole lease.
    pub(super) async fn await_applied(&self, pool: &PgPool, number: i64) {
        let started = Instant::now();
        let mut deadline = started + self.lease;
        let mut pause = FIRST_POLL_PAUSE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Even with no lease left (or none of its own), the revoker asks at least once.
            let asking = left.max(LEAST_ASKING_TIME);
            let behind = tokio::time::timeout(asking, self.instances_behind(pool, number)).await;
            match behind {
                Ok(Ok((0, _))) => return,
                Ok(Ok((_, longest))) => deadline = deadline.max(started + longest),
                _ => {}
            }
            if Instant::now() >= deadline {
                let behind = match behind {
                    Ok(Ok((count, _))) => count.to_string(),
                    _ => "unknown".to_owned(),
                };
                tracing::warn!(
                    revocation = number,
                    instances_behind = behind,
                    "revocation not acknowledged by every live instance within the lease; \
                     their caches have stopped answering"
                );
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause + pause / 4).min(LONGEST_POLL_PAUSE);
        }
    }

    /// How many live instances other than this one (heartbeat within their own lease) have
    /// not applied revocation `number`, and the longest lease among those.
    async fn instances_behind(
        &self,
        pool: &PgPool,
        number: i64,
    ) -> Result<(i64, Duration), sqlx::Error> {
        let (behind, longest_ms): (i64, i64) = sqlx::query_as(concat!(
            "SELECT COUNT(*), COALESCE(MAX(lease_ms), 0)
             FROM lmts_instances
             WHERE id <> $1 AND applied_seq < $2 AND heartbeat_at >= ",
            pg_now_millis!(),
            " - lease_ms"
        ))
        .bind(&self.id)
        .bind(number)
        .fetch_one(pool)
        .await?;
        Ok((behind, Duration::from_millis(longest_ms.unsigned_abs())))
    }

    /// Registers, beats, acknowledges applied revocations and hears notices (delivering them
    /// to `sink`), until the task running it is aborted; then deletes its row.
    pub(super) async fn serve(self: Arc<Self>, sink: InvalidationSink) {
        let pool = &self.connections;
        let _registration = Registration {
            pool: pool.clone(),
            id: self.id.clone(),
        };
        tokio::join!(
            notices::listen(pool, &self, &sink),
            self.beat(pool),
            self.acknowledge(pool),
        );
    }

    /// Beats every quarter lease, and whenever asked (first when the listener listens); now
    /// and then deletes silent rows. With no lease, never: caches never answer, revokes never
    /// wait.
    async fn beat(&self, pool: &PgPool) {
        if self.lease.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval((self.lease / 4).max(SHORTEST_BEAT_INTERVAL));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut beats: u32 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.beat_now.notified() => {}
            }
            if let Err(error) = self.send_beat(pool).await {
                tracing::debug!(error = %error, "heartbeat not sent; the lease will lapse");
            }
            beats = beats.wrapping_add(1);
            if beats % BEATS_BETWEEN_CLEANUPS == 0 {
                if let Err(error) = self.forget_silent(pool).await {
                    tracing::debug!(error = %error, "silent instances not deleted");
                }
            }
        }
    }

    /// One beat: the row stamped with PostgreSQL's clock (created if missing, as after a long
    /// pause) and a notice to this instance's channel, in one statement.
    async fn send_beat(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let sent = self.micros(Instant::now());
        let applied = *self.applied.borrow();
        sqlx::query(concat!(
            "WITH beat AS (
                 INSERT INTO lmts_instances (id, applied_seq, heartbeat_at, lease_ms)
                 VALUES ($1, $2, ",
            pg_now_millis!(),
            ", $5)
                 ON CONFLICT (id) DO UPDATE SET
                     heartbeat_at = EXCLUDED.heartbeat_at,
                     lease_ms = EXCLUDED.lease_ms,
                     applied_seq = GREATEST(lmts_instances.applied_seq, EXCLUDED.applied_seq)
             )
             SELECT pg_notify($3, $4 || ':' || last_seq) FROM lmts_revocation_counter"
        ))
        .bind(&self.id)
        .bind(applied)
        .bind(self.channel())
        .bind(sent.to_string())
        .bind(self.lease_millis())
        .execute(pool)
        .await
        .map(drop)
    }

    /// Deletes the rows of instances silent for long (crashed, or cut off).
    async fn forget_silent(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let silence = SILENCE_BEFORE_FORGETTING.max(self.lease * 10);
        let silence = i64::try_from(silence.as_millis()).unwrap_or(i64::MAX);
        let deleted = sqlx::query(concat!(
            "DELETE FROM lmts_instances WHERE heartbeat_at < ",
            pg_now_millis!(),
            " - $1"
        ))
        .bind(silence)
        .execute(pool)
        .await?
        .rows_affected();
        if deleted > 0 {
            tracing::info!(deleted, "forgot silent instances");
        }
        Ok(())
    }

    /// Writes the applied revocation number to the row whenever it moves, coalescing bursts;
    /// a failed write is carried by the next beat.
    async fn acknowledge(&self, pool: &PgPool) {
        let mut applied = self.applied.subscribe();
        while applied.changed().await.is_ok() {
            let number = *applied.borrow_and_update();
            let written = sqlx::query(
                "UPDATE lmts_instances SET applied_seq = GREATEST(applied_seq, $2) WHERE id = $1",
            )
            .bind(&self.id)
            .bind(number)
            .execute(pool)
            .await;
            if let Err(error) = written {
                tracing::debug!(error = %error, "applied revocation not acknowledged yet");
            }
        }
    }
}

/// An instance's row, deleted when its tasks stop (a graceful stop), so that no revoke waits
/// on it. Best effort: the row of an instance that crashed goes stale instead.
struct Registration {
    pool: PgPool,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (pool, id) = (self.pool.clone(), std::mem::take(&mut self.id));
        runtime.spawn(async move {
            let deleted = sqlx::query("DELETE FROM lmts_instances WHERE id = $1")
                .bind(id)
                .execute(&pool)
                .await;
            if let Err(error) = deleted {
                tracing::debug!(error = %error, "instance row not deleted; it will go stale");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(lease: Duration) -> Instance {
        let never = PgConnectOptions::new().host("192.0.2.1");
        Instance {
            id: "test".into(),
            lease,
            origin: Instant::now(),
            trusted_until: AtomicU64::new(0),
            applied: watch::Sender::new(0),
            beat_now: Notify::new(),
            connections: PgPoolOptions::new().connect_lazy_with(never),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_beat_heard_back_lets_caches_answer_for_the_lease_after_it_was_sent() {
        let instance = instance(Duration::from_secs(2));
        assert!(!instance.caches_may_answer(), "not before the first beat");
        let sent = instance.micros(Instant::now());
        tokio::time::advance(Duration::from_millis(500)).await;
        instance.heard_beat(&format!("{sent}:7"));
        assert!(instance.caches_may_answer());
        assert_eq!(*instance.applied.borrow(), 7, "the beat acknowledges");
        // Trusted for the lease less a sixteenth after sending, not after hearing.
        tokio::time::advance(Duration::from_millis(1_300)).await;
        assert!(instance.caches_may_answer());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!instance.caches_may_answer());
    }

    #[tokio::test(start_paused = true)]
    async fn losing_the_listener_stops_caches_at_once_and_numbers_only_move_forward() {
        let instance = instance(Duration::from_secs(2));
        tokio::time::advance(Duration::from_millis(10)).await;
        instance.heard_beat(&format!("{}:3", instance.micros(Instant::now())));
        assert!(instance.caches_may_answer());
        instance.went_deaf();
        assert!(!instance.caches_may_answer());
        instance.applied(9);
        instance.applied(4);
        assert_eq!(*instance.applied.borrow(), 9);
        instance.heard_beat("garbage");
        instance.heard_beat(&format!("{}:5", u64::MAX));
        assert_eq!(*instance.applied.borrow(), 9);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !instance.caches_may_answer(),
            "a beat claiming to come from the future counts as sent now"
        );
    }
}

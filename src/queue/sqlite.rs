//! The task queue in a SQLite file through apalis-sqlite (embedded mode):
//! durable across restarts, shared by every imgpipe process on one host.
//!
//! Everything imgpipe knows of apalis-sqlite's table (`Jobs`: one row per
//! task, `job_type` naming the queue) is in this file; [`SqliteQueue::open`]
//! refuses to start on a table that lacks what it relies on.

use std::path::Path;
use std::sync::Arc;

use apalis::prelude::{TaskBuilder, TaskId};
use apalis_sqlite::{Config, SqliteStorage};
use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::SqlitePool;

use super::deliver::{run_apalis_worker, Dispatch, Wake};
use super::sqlite_worker::SqliteWorkerBackend;
use super::webhook::{DeliverWebhook, WebhookLane};
use super::workers::WorkerInfo;
use super::{Consumer, Handler, Lane, LaneStats, Liveness, ProcessImage, Producer, QueueError};
use crate::backend_error::ErrorKind;
use crate::sqlite::Connections;

/// apalis-sqlite keeps every queue in one table; ours are these `job_type`s
/// (the bulk lane keeps the name of the one queue before lanes).
fn queue_name(lane: Lane) -> &'static str {
    match lane {
        Lane::Bulk => "imgpipe::process-image",
        Lane::Priority => "imgpipe::process-image:priority",
    }
}
/// The webhook deliveries' queue (see `webhook`).
pub(super) const WEBHOOK_QUEUE: &str = "imgpipe::deliver-webhook";

/// The table (named literally in the SQL below) and the columns of it that
/// [`Producer::forget`] and the delivery limit rely on (apalis-sqlite
/// 1.0.0's schema).
const TABLE: &str = "Jobs";
const COLUMNS: &[&str] = &[
    "id",
    "job_type",
    "status",
    "attempts",
    "max_attempts",
    "lock_by",
];

/// One lane's queue: its settings (for the worker's backend, see
/// `sqlite_worker`), and this process's worker of the lane, woken by its own
/// enqueues.
#[derive(Clone)]
struct LaneQueue {
    config: Config,
    wake: Wake,
}

#[derive(Clone)]
pub struct SqliteQueue {
    priority: LaneQueue,
    bulk: LaneQueue,
    pub(super) webhooks: WebhookLane<SqliteStorage<DeliverWebhook>>,
    pub(super) pool: SqlitePool,
    /// What the image lanes' statements run on: enqueues, fetches and
    /// acknowledgements (see `sqlite_worker` for why not the pool).
    conns: Arc<Connections>,
    limit: u32,
    /// A worker silent this long is presumed dead (for `stats`).
    pub(super) liveness: std::time::Duration,
}

fn unavailable(e: sqlx::Error) -> QueueError {
    QueueError::unavailable("SQLite", e)
}

impl SqliteQueue {
    /// Opens the queue database at `path`, creating and migrating it (apalis'
    /// own schema) if needed. A failing task is retried until its `limit`-th
    /// delivery.
    pub async fn open(path: &Path, liveness: Liveness, limit: u32) -> Result<Self, QueueError> {
        let pool = crate::sqlite::open(path).await.map_err(unavailable)?;
        SqliteStorage::setup(&pool).await.map_err(|e| {
            QueueError::unavailable(format!("setting up the queue in {}", path.display()), e)
        })?;
        check_layout(&pool).await?;
        super::sqlite_indexes::trim(&pool)
            .await
            .map_err(unavailable)?;
        let conns = crate::sqlite::connections(path)
            .await
            .map_err(unavailable)?;
        let storage = |lane| {
            let config = Config::default()
                .queue(queue_name(lane))
                // As on Redis: one task per fetch, so tasks waiting for a slot
                // never sit locked by a worker that is busy elsewhere.
                .batch_size(1)
                .heartbeat_interval(liveness.interval)
                .missed_heartbeats(liveness.missed.max(1));
            LaneQueue {
                config,
                wake: Wake::default(),
            }
        };
        let webhooks = Config::default()
            .queue(WEBHOOK_QUEUE)
            .heartbeat_interval(liveness.interval)
            .missed_heartbeats(liveness.missed.max(1));
        Ok(SqliteQueue {
            priority: storage(Lane::Priority),
            bulk: storage(Lane::Bulk),
            webhooks: WebhookLane {
                storage: SqliteStorage::new(&pool).with_config(webhooks),
                wake: Wake::default(),
            },
            pool,
            conns,
            limit: limit.max(1),
            liveness: liveness.window(),
        })
    }

    fn lane(&self, lane: Lane) -> &LaneQueue {
        match lane {
            Lane::Priority => &self.priority,
            Lane::Bulk => &self.bulk,
        }
    }
}

/// The priority that makes apalis-sqlite deliver tasks in the order they
/// were enqueued. It fetches by priority (highest first), then `run_at` in
/// whole seconds, then id; our ids are minted when a job is submitted, so
/// with equal priorities an old job's images released now would pass a new
/// job's released a moment before them, for up to a second (which fair
/// scheduling relies on not happening). Counting down from a far-off epoch
/// in milliseconds puts the earliest enqueued first.
fn fifo_priority(enqueued_at_ms: i64) -> usize {
    const FAR_OFF_MS: i64 = 1 << 50;
    usize::try_from(FAR_OFF_MS.saturating_sub(enqueued_at_ms).max(0)).unwrap_or(0)
}

/// Fails with a clear message if apalis-sqlite's table is not the one this
/// build was written for (a different apalis-sqlite version).
async fn check_layout(pool: &SqlitePool) -> Result<(), QueueError> {
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
        .bind(TABLE)
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !columns.iter().any(|have| have == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(QueueError::new(
        ErrorKind::Corrupt,
        format!(
            "apalis-sqlite's table {TABLE} lacks column(s) {missing:?} (has {columns:?}); \
             imgpipe's queue/sqlite.rs was written for apalis-sqlite 1.0.0 (pinned in Cargo.toml)"
        ),
    ))
}

/// A lane's tasks waiting to be fetched, and the oldest of them. (Every
/// path to `Pending` unlocks the task, and apalis-sqlite's fetch takes only
/// unlocked ones; saying so lets the planner use the fetch's index.)
pub(super) const DEPTH: &str = "SELECT COUNT(*), MIN(id) FROM Jobs
    WHERE job_type = ? AND status = 'Pending' AND lock_by IS NULL";

/// Removes tasks of the image lanes by id. (`+job_type`: found by their
/// ids, not by walking every task of the lanes by the index on job types.)
pub(super) const FORGET: &str =
    "DELETE FROM Jobs WHERE +job_type IN (?, ?) AND id IN (SELECT value FROM json_each(?))";

#[async_trait]
impl Producer for SqliteQueue {
    async fn stats(&self) -> Result<Vec<LaneStats>, QueueError> {
        let (now, alive_since) = super::alive_since(self.liveness);
        let mut stats = Vec::new();
        for lane in Lane::ALL {
            let (depth, oldest): (i64, Option<String>) = sqlx::query_as(DEPTH)
                .bind(queue_name(lane))
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
            let alive: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM Workers WHERE worker_type = ? AND last_seen >= ?",
            )
            .bind(queue_name(lane))
            .bind(alive_since)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
            stats.push(LaneStats {
                lane,
                depth: u64::try_from(depth).unwrap_or(0),
                oldest_age: oldest.and_then(|id| super::task_age(&id, now)),
                workers_alive: u64::try_from(alive).unwrap_or(0),
            });
        }
        Ok(stats)
    }

    async fn enqueue(
        &self,
        lane: Lane,
        tasks: Vec<(String, ProcessImage)>,
    ) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let limit = self.limit as usize;
        let priority = fifo_priority(chrono::Utc::now().timestamp_millis());
        // As apalis-sqlite's own sink builds them (the arguments in its JSON
        // codec), inserted as its insert does (see `sqlite_insert`).
        let tasks = tasks
            .into_iter()
            .map(|(id, args)| {
                let args = serde_json::to_vec(&args)
                    .map_err(|e| QueueError::with_source(ErrorKind::Corrupt, "a task", e))?;
                Ok(TaskBuilder::new(args)
                    .task_id(TaskId::from_string(id.clone()))
                    .max_attempts(limit)
                    .priority(priority)
                    // apalis-sqlite inserts with ON CONFLICT (queue,
                    // idempotency key) DO NOTHING: a task id already held is
                    // skipped atomically, however many processes release at
                    // once.
                    .idempotency_key(&id)
                    .build())
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        let mut conn = self.conns.writer().await.map_err(unavailable)?;
        super::sqlite_insert::insert(&mut conn, queue_name(lane), &tasks).await?;
        drop(conn);
        self.lane(lane).wake.now();
        Ok(())
    }

    async fn forget(&self, task_ids: &[String]) -> Result<usize, QueueError> {
        let ids = serde_json::to_string(task_ids)
            .map_err(|e| QueueError::with_source(ErrorKind::Corrupt, "task ids", e))?;
        // A running task's row goes too (so none is ever left running), and
        // its worker's acknowledgement then simply matches nothing.
        sqlx::query(FORGET)
            .bind(queue_name(Lane::Priority))
            .bind(queue_name(Lane::Bulk))
            .bind(ids)
            .execute(&self.pool)
            .await
            .map(|_| 0)
            .map_err(unavailable)
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        self.list_workers().await
    }

    async fn check(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[async_trait]
impl Consumer for SqliteQueue {
    async fn run_worker(
        &self,
        name: String,
        lane: Lane,
        concurrency: usize,
        handler: Arc<dyn Handler>,
        stop: BoxFuture<'static, ()>,
    ) -> Result<(), QueueError> {
        let dispatch = Dispatch {
            handler,
            limit: self.limit,
        };
        let LaneQueue { config, wake, .. } = self.lane(lane).clone();
        let backend =
            SqliteWorkerBackend::<ProcessImage>::new(self.conns.clone(), config, wake.hint());
        run_apalis_worker!(backend, wake, name, concurrency, dispatch, stop)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::jobs::JobId;
    use crate::queue::{Delivery, Outcome};

    fn liveness() -> Liveness {
        Liveness {
            interval: Duration::from_secs(1),
            missed: 3,
        }
    }

    /// Always asks for a retry, and records what it was told.
    #[derive(Default)]
    struct AlwaysRetry {
        seen: Mutex<Vec<Delivery>>,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Handler for AlwaysRetry {
        async fn handle(&self, _task: ProcessImage, delivery: Delivery) -> Outcome {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.seen.lock().expect("lock").push(delivery);
            Outcome::RetryLater("still down".into())
        }
    }

    #[test]
    fn earlier_enqueued_tasks_have_higher_priority() {
        let now = 1_795_000_000_000;
        assert!(fifo_priority(now) > fifo_priority(now + 1));
        assert!(fifo_priority(now) < fifo_priority(now - 1000));
        assert!(i64::try_from(fifo_priority(0)).is_ok(), "stored as i64");
    }

    #[tokio::test]
    async fn a_task_id_enqueued_again_adds_nothing_and_fails_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = SqliteQueue::open(&dir.path().join("q.sqlite3"), liveness(), 3)
            .await
            .expect("open");
        let task = (
            crate::queue::new_task_id(),
            ProcessImage {
                job_id: JobId::new(),
                index: 0,
            },
        );
        queue
            .enqueue(Lane::Bulk, vec![task.clone()])
            .await
            .expect("first");
        let again = (0..4).map(|_| queue.enqueue(Lane::Bulk, vec![task.clone()]));
        for result in futures::future::join_all(again).await {
            result.expect("a repeat is not an error");
        }
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM Jobs")
            .fetch_one(&queue.pool)
            .await
            .expect("count");
        assert_eq!(rows, 1);
    }

    #[tokio::test]
    async fn the_layout_is_the_one_this_build_relies_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = SqliteQueue::open(&dir.path().join("q.sqlite3"), liveness(), 3)
            .await
            .expect("apalis-sqlite's table has every column queue/sqlite.rs uses");
        let ids = ["01J0000000000000000000000A", "01J0000000000000000000000B"];
        for (id, lane) in ids.iter().zip(Lane::ALL) {
            let task = ProcessImage {
                job_id: JobId::new(),
                index: 0,
            };
            queue
                .enqueue(lane, vec![(id.to_string(), task)])
                .await
                .expect("enqueue");
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT job_type, max_attempts FROM Jobs ORDER BY id")
                .fetch_all(&queue.pool)
                .await
                .expect("the tasks are rows of Jobs");
        let expected: Vec<(String, i64)> = Lane::ALL
            .iter()
            .map(|l| (queue_name(*l).to_string(), 3))
            .collect();
        assert_eq!(rows, expected);
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        assert_eq!(queue.forget(&ids).await.ok(), Some(0));
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs")
            .fetch_one(&queue.pool)
            .await
            .expect("count");
        assert_eq!(left, 0, "forget removes the row");

        // As if a new apalis-sqlite renamed a column imgpipe relies on.
        sqlx::query("ALTER TABLE Jobs RENAME COLUMN max_attempts TO max_tries")
            .execute(&queue.pool)
            .await
            .expect("rename a column");
        let e = check_layout(&queue.pool)
            .await
            .expect_err("layout change noticed");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("max_attempts"), "{e}");
    }

    /// A task that fails every time is delivered exactly `limit` times, and
    /// the last delivery is told it is the last: the handler always gets the
    /// chance to settle the image.
    #[tokio::test]
    async fn a_failing_task_is_delivered_up_to_the_limit_and_told_its_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limit = 4;
        let queue = SqliteQueue::open(&dir.path().join("q.sqlite3"), liveness(), limit)
            .await
            .expect("open");
        let task = ProcessImage {
            job_id: JobId::new(),
            index: 0,
        };
        queue
            .enqueue(Lane::Bulk, vec![(super::super::new_task_id(), task)])
            .await
            .expect("enqueue");
        let handler = Arc::new(AlwaysRetry::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = {
            let queue = queue.clone();
            let handler: Arc<dyn Handler> = handler.clone();
            tokio::spawn(async move {
                queue
                    .run_worker(
                        "test-worker".into(),
                        Lane::Bulk,
                        1,
                        handler,
                        Box::pin(async move {
                            let _ = stop_rx.await;
                        }),
                    )
                    .await
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while handler.calls.load(Ordering::SeqCst) < limit {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {:?} deliveries within 30 s",
                handler.seen.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Several poll rounds later, still no fifth delivery.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = stop_tx.send(());
        let _ = worker.await;
        let seen = handler.seen.lock().expect("lock").clone();
        let attempts: Vec<u32> = seen.iter().map(|d| d.attempt).collect();
        assert_eq!(attempts, [1, 2, 3, 4]);
        let last: Vec<bool> = seen.iter().map(Delivery::is_last).collect();
        assert_eq!(last, [false, false, false, true]);
    }
}

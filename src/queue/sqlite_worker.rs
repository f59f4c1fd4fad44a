//! The embedded queue's worker side: apalis-core's own worker loop
//! (`Persisted`) over apalis-sqlite's table and apalis-sqlite's own queries,
//! with fewer trips to the database per task than `SqliteStorage` makes.
//!
//! Every SQLite statement is a hand-off to the connection's thread and back,
//! and on tiny images these trips were most of a task's fixed cost.
//! `SqliteStorage` wraps each fetch and each batch of acknowledgements in a
//! BEGIN … COMMIT of its own (three trips for one statement), marks each task
//! `Running` in a separate statement after the fetch has already locked it to
//! the worker, and looks in the queue whenever the worker has a free slot,
//! which on a lane that has run dry means once per finished task. Here:
//! - a single statement runs on its own (SQLite makes it atomic by itself);
//! - tasks are not re-marked when they start: a fetched task is `Queued` and
//!   locked by its worker until acknowledged, which is all apalis-sqlite's
//!   recovery needs (it puts back a dead worker's `Queued` and `Running`
//!   tasks alike; see `workers` for the admin page's count);
//! - the queue is looked in only when [`Hint`] says a task may be there;
//! - statements run on a [`Connections`] set, not on sqlx's pool, which
//!   pings every connection it takes back (a trip of its own per statement).
//!
//! What must not change here: the rows, the queries and their meaning are
//! apalis-sqlite's, so a task enqueued by `SqliteStorage` (or by
//! `SqliteQueue::enqueue`, whose one-statement insert makes apalis-sqlite's
//! rows: see `sqlite_insert`), or fetched by another imgpipe process, is the
//! same task. The one statement of our own here is [`ACK`], apalis-sqlite's
//! acknowledgement with one term changed so that it finds its tasks by id
//! (see there).

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use apalis_core::backend::finalize::Durable;
use apalis_core::backend::persistence::{Persisted, Persistence, TaskEvent, TaskPersistLayer};
use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend, WorkerFilter};
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use apalis_sqlite::queries;
use apalis_sqlite::{Config, Error, JsonCodec};
use serde_json::Value;
use sqlx::Connection;
use ulid::Ulid;

use super::deliver::Hint;
use crate::sqlite::Connections;

/// apalis-sqlite's `queries/task/ack.sql`, its meaning unchanged, with
/// `+Jobs.lock_by` for `Jobs.lock_by`: the unary plus keeps SQLite from
/// planning the update around the index on `lock_by`, which it otherwise
/// prefers, visiting every task this worker ever ran (an acknowledged task
/// keeps its `lock_by`) and so making each acknowledgement slower than the
/// last until the retention purge. With it, each acknowledged task is
/// found by its id.
pub(super) const ACK: &str = "WITH j AS (
    SELECT value ->> 'task_id' AS task_id,
           value ->> 'attempt' AS attempt,
           value ->> 'result' AS result,
           value ->> 'status' AS status
    FROM json_each(?1)
)
UPDATE Jobs
SET status = j.status,
    attempts = j.attempt,
    last_result = j.result,
    done_at = strftime('%s', 'now')
FROM j
WHERE Jobs.id = j.task_id AND +Jobs.lock_by = ?2";

/// apalis' `Persistence` for apalis-sqlite's table, in fewer trips.
#[derive(Clone)]
struct Trips {
    db: Arc<Connections>,
    config: Config,
    hint: Hint,
}

impl Persistence for Trips {
    type Compact = Vec<u8>;
    type Response = Value;
    type Error = Error;

    /// As apalis-sqlite does it: once per worker start.
    async fn register(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let dead_for = self.config.heartbeat_interval.as_secs() as i64;
        let mut conn = self.db.writer().await?;
        let mut tx = conn.begin().await?;
        queries::reenqueue_orphaned(
            &mut *tx,
            dead_for,
            self.config.queue.as_ref(),
            &WorkerFilter::Only(worker.name().to_owned()),
        )
        .await?;
        queries::register_worker(&mut *tx, &self.config, worker, "SqliteStorage").await?;
        tx.commit().await?;
        // This worker's own tasks from a previous run may be back.
        self.hint.give();
        Ok(())
    }

    /// As apalis-sqlite does it: once per heartbeat interval.
    async fn heartbeat(&mut self, worker: &WorkerContext) -> Result<(), Error> {
        let config = &self.config;
        let mut conn = self.db.writer().await?;
        let mut tx = conn.begin().await?;
        queries::keep_alive(&mut *tx, config, worker).await?;
        let put_back = queries::reenqueue_orphaned(
            &mut *tx,
            config.orphaned_duration().as_secs() as i64,
            config.queue.as_ref(),
            &WorkerFilter::AllExcept(worker.name().to_owned()),
        )
        .await?;
        tx.commit().await?;
        if put_back > 0 {
            log::info!("{put_back} task(s) of a dead worker put back on the queue");
            self.hint.give();
        }
        Ok(())
    }

    async fn fetch_next(&mut self, worker: &WorkerContext) -> Result<Vec<Task<Vec<u8>>>, Error> {
        if !self.hint.worth_a_look() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.writer().await?;
        let tasks = queries::fetch_next(&mut *conn, &self.config, worker).await?;
        self.hint.found(tasks.len());
        Ok(tasks)
    }

    async fn handle_events(
        &mut self,
        events: Vec<TaskEvent<Value>>,
        worker: &WorkerContext,
    ) -> Result<(), Error> {
        // Locks are not asked for (see the module doc), so only
        // acknowledgements arrive.
        let acks: Vec<&queries::AckPayload> = events
            .iter()
            .filter_map(|event| match event {
                TaskEvent::Complete(ack) => Some(ack),
                _ => None,
            })
            .collect();
        if acks.is_empty() {
            return Ok(());
        }
        // The payload apalis-sqlite's own acknowledgement binds.
        let payload = serde_json::to_string(&acks).map_err(Error::JsonError)?;
        sqlx::query(ACK)
            .bind(payload)
            .bind(worker.name())
            .execute(&mut *self.db.writer().await?)
            .await?;
        // A failed task may be delivered again at once.
        if acks.iter().any(|ack| ack.result.is_err()) {
            self.hint.give();
        }
        Ok(())
    }

    /// As apalis-sqlite does it: when a stopping worker gives back the tasks
    /// it fetched and never started.
    async fn reenqueue_abandoned(
        &mut self,
        tasks: Vec<Task<Vec<u8>>>,
        worker: &WorkerContext,
    ) -> Result<u64, Error> {
        let ids: Vec<String> = tasks
            .iter()
            .filter_map(|t| t.task_id().map(ToString::to_string))
            .collect();
        let mut conn = self.db.writer().await?;
        let mut tx = conn.begin().await?;
        let count =
            queries::reenqueue_abandoned(&mut *tx, self.config.queue.as_ref(), worker.name(), &ids)
                .await?;
        if count as usize != tasks.len() {
            return Err(Error::ReenqueueMismatch {
                queued: tasks.len(),
                abandoned: count as usize,
            });
        }
        tx.commit().await?;
        self.hint.give();
        Ok(count)
    }

    /// Not used by a worker (the API enqueues through `SqliteQueue::enqueue`,
    /// with apalis-sqlite's same insert), but
    /// part of the trait: as apalis-sqlite does it.
    async fn push_tasks(&mut self, tasks: Vec<Task<Vec<u8>>>) -> Result<(), Error> {
        let mut conn = self.db.writer().await?;
        let mut tx = conn.begin().await?;
        queries::push_tasks(&mut *tx, self.config.queue.as_ref(), &tasks).await?;
        tx.commit().await?;
        self.hint.give();
        Ok(())
    }
}

/// A worker's backend for one queue of apalis-sqlite's table (see the
/// module doc); to apalis it is what `SqliteStorage` is.
pub(super) struct SqliteWorkerBackend<Args> {
    persistence: Persisted<Trips>,
    codec: JsonCodec<Vec<u8>>,
    args: PhantomData<Args>,
}

impl<Args> Clone for SqliteWorkerBackend<Args> {
    fn clone(&self) -> Self {
        SqliteWorkerBackend {
            persistence: self.persistence.clone(),
            codec: self.codec.clone(),
            args: PhantomData,
        }
    }
}

impl<Args> SqliteWorkerBackend<Args> {
    /// `config` names the queue and the heartbeat, as for `SqliteStorage`;
    /// `hint` is the lane's (see [`Hint`]).
    pub(super) fn new(db: Arc<Connections>, config: Config, hint: Hint) -> Self {
        SqliteWorkerBackend {
            persistence: Persisted::new(Trips {
                db,
                config: config.lock_tasks(false),
                hint,
            }),
            codec: JsonCodec::default(),
            args: PhantomData,
        }
    }
}

impl<Args> Backend for SqliteWorkerBackend<Args> {
    type Task = Task<Vec<u8>>;
    type Error = Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Error>> {
        let heartbeat = self.persistence.config.heartbeat_interval;
        self.persistence.poll_ready(cx, worker, heartbeat)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Vec<u8>>, Error>>> {
        self.persistence.poll_next(cx, worker)
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Error>> {
        self.persistence.poll_close(cx, worker)
    }
}

impl<Args> BackendConfig for SqliteWorkerBackend<Args> {
    type Args = Args;
    type Id = Ulid;
    type Kind = Durable;
    type Config = Config;
    type Layer = TaskPersistLayer<JsonCodec<Value>, Value>;

    fn config(&self) -> &Config {
        &self.persistence.config
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        let config = self.persistence.config.clone();
        self.persistence
            .layer(JsonCodec::default(), config.batch_size)
            .persist_results(config.persist_results)
            .lock_tasks(config.lock_tasks)
    }
}

impl<Args> WireFormatBackend for SqliteWorkerBackend<Args> {
    type Codec = JsonCodec<Vec<u8>>;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ACK;
    use crate::jobs::{JobId, Lane};
    use crate::queue::{Liveness, ProcessImage, Producer, SqliteQueue};

    /// The acknowledgement finds each task by its id, never through the
    /// index on `lock_by` (which would visit every task the worker ever
    /// ran), and acknowledges it as apalis-sqlite's own would.
    #[tokio::test]
    async fn an_acknowledgement_finds_its_task_by_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let liveness = Liveness {
            interval: Duration::from_secs(1),
            missed: 3,
        };
        let queue = SqliteQueue::open(&dir.path().join("q.sqlite3"), liveness, 3)
            .await
            .expect("open");
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {ACK}")))
                .bind("[]")
                .bind("w")
                .fetch_all(&queue.pool)
                .await
                .expect("plan");
        let steps: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            steps
                .iter()
                .any(|s| s.starts_with("SEARCH Jobs") && s.contains("(id=?)")),
            "{steps:?}"
        );
        assert!(!steps.iter().any(|s| s.contains("LIdx")), "{steps:?}");

        let id = crate::queue::new_task_id();
        let task = ProcessImage {
            job_id: JobId::new(),
            index: 0,
        };
        queue
            .enqueue(Lane::Bulk, vec![(id.clone(), task)])
            .await
            .expect("enqueue");
        for statement in [
            "INSERT INTO Workers (id, worker_type, storage_name) VALUES ('w', 't', 's')",
            "UPDATE Jobs SET status = 'Queued', lock_by = 'w'",
        ] {
            sqlx::query(statement)
                .execute(&queue.pool)
                .await
                .expect("set up");
        }
        let payload = serde_json::json!([
            {"task_id": id, "attempt": 1, "result": "{\"Ok\":null}", "status": "Done"}
        ]);
        for (worker, acknowledged) in [("other", 0), ("w", 1)] {
            let done = sqlx::query(ACK)
                .bind(payload.to_string())
                .bind(worker)
                .execute(&queue.pool)
                .await
                .expect("ack")
                .rows_affected();
            assert_eq!(done, acknowledged, "acknowledged by {worker}");
        }
        let row: (String, i64, Option<i64>) =
            sqlx::query_as("SELECT status, attempts, done_at FROM Jobs WHERE id = ?")
                .bind(&id)
                .fetch_one(&queue.pool)
                .await
                .expect("row");
        assert_eq!((row.0.as_str(), row.1), ("Done", 1));
        assert!(row.2.is_some());
    }
}

//! The task queue in a SQLite file through apalis-sqlite (embedded mode):
//! durable across restarts, shared by every imgpipe process on one host.

use std::path::Path;
use std::sync::Arc;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_sqlite::{Config, SqliteStorage};
use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::SqlitePool;

use super::{run_apalis_worker, Liveness, ProcessImage, QueueError, TaskQueue};
use crate::worker::WorkerContext;

/// apalis-sqlite keeps every queue in one table; ours is this `job_type`.
const QUEUE: &str = "imgpipe::process-image";

#[derive(Clone)]
pub struct SqliteQueue {
    storage: SqliteStorage<ProcessImage>,
    pool: SqlitePool,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl SqliteQueue {
    /// Opens the queue database at `path`, creating and migrating it (apalis'
    /// own schema) if needed.
    pub async fn open(path: &Path, liveness: Liveness) -> Result<Self, QueueError> {
        let pool = crate::sqlite::open(path).await.map_err(unavailable)?;
        SqliteStorage::setup(&pool).await.map_err(unavailable)?;
        let config = Config::default()
            .queue(QUEUE)
            // As on Redis: one task per fetch, so tasks waiting for a slot
            // never sit locked by a worker that is busy elsewhere.
            .batch_size(1)
            .heartbeat_interval(liveness.interval)
            .missed_heartbeats(liveness.missed.max(1));
        Ok(SqliteQueue {
            storage: SqliteStorage::new(&pool).with_config(config),
            pool,
        })
    }
}

#[async_trait]
impl TaskQueue for SqliteQueue {
    async fn enqueue(&self, tasks: Vec<(String, ProcessImage)>) -> Result<(), QueueError> {
        let mut storage = self.storage.clone();
        let tasks = tasks.into_iter().map(|(id, args)| {
            TaskBuilder::new(args)
                .task_id(TaskId::from_string(id))
                .build()
        });
        storage
            .push_all(&mut futures::stream::iter(tasks))
            .await
            .map_err(unavailable)
    }

    async fn forget(&self, task_ids: &[String]) -> Result<usize, QueueError> {
        let ids = serde_json::to_string(task_ids).map_err(unavailable)?;
        // apalis-sqlite's table; a running task's row goes too (so none is
        // ever left running), and its worker's acknowledgement then simply
        // matches nothing.
        sqlx::query(
            "DELETE FROM Jobs WHERE job_type = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(QUEUE)
        .bind(ids)
        .execute(&self.pool)
        .await
        .map(|_| 0)
        .map_err(unavailable)
    }

    async fn run_worker(
        &self,
        name: String,
        concurrency: usize,
        ctx: Arc<WorkerContext>,
        stop: BoxFuture<'static, ()>,
    ) -> Result<(), QueueError> {
        run_apalis_worker!(self.storage.clone(), name, concurrency, ctx, stop)
    }

    async fn check(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

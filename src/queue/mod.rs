//! The unit of work (one image of one job) and the queue that carries it:
//! apalis on Redis (distributed) or on SQLite (embedded), behind one trait.
//!
//! apalis carries the work; it is not where status lives (see `meta`). A task
//! holds only ids: the worker reads everything else from the job record, so a
//! task can never disagree with the job it belongs to.

mod redis;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use self::redis::RedisQueue;
pub use self::sqlite::SqliteQueue;
use crate::jobs::JobId;
use crate::worker::WorkerContext;

/// Process image `index` of job `job_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessImage {
    pub job_id: JobId,
    pub index: usize,
}

/// A new task id. ULIDs sort by creation time and are what apalis' durable
/// backends expect.
pub fn new_task_id() -> String {
    ulid::Ulid::new().to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("task queue unavailable: {0}")]
    Unavailable(String),
}

/// How a dead worker's tasks are noticed: each worker beats every `interval`;
/// one silent for `interval × missed` is presumed dead, and the next beat of a
/// live worker puts its tasks back on the queue.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: std::time::Duration,
    pub missed: usize,
}

#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Enqueues tasks, each with the id the caller chose for it.
    async fn enqueue(&self, tasks: Vec<(String, ProcessImage)>) -> Result<(), QueueError>;
    /// Removes tasks and their records, so queued ones never run. Returns how
    /// many are running right now and were left alone: they finish, but
    /// their job is gone (deleted or expired), so their writes are refused
    /// and their results discarded; forget them again once they are done.
    async fn forget(&self, task_ids: &[String]) -> Result<usize, QueueError>;
    async fn check(&self) -> Result<(), QueueError>;
    /// Runs one apalis worker named `name` (unique per run: apalis re-queues a
    /// dead worker's tasks by name) until `stop` resolves, then lets its
    /// in-flight tasks finish. Returns early if the worker fails.
    async fn run_worker(
        &self,
        name: String,
        concurrency: usize,
        ctx: Arc<WorkerContext>,
        stop: BoxFuture<'static, ()>,
    ) -> Result<(), QueueError>;
}

/// The same worker on any apalis backend: `worker::handle` with the context,
/// polling for tasks pushed by other processes.
macro_rules! run_apalis_worker {
    ($backend:expr, $name:expr, $concurrency:expr, $ctx:expr, $stop:expr) => {{
        use apalis::prelude::{BackendExt, WorkerBuilder, WorkerBuilderExt};
        let stop = $stop;
        WorkerBuilder::new($name)
            .backend($backend.poll_with_interval(std::time::Duration::from_millis(200)))
            .concurrency($concurrency)
            .data($ctx)
            .build(crate::worker::handle)
            .run_until(async move {
                stop.await;
                Ok::<(), std::io::Error>(())
            })
            .await
            .map_err(|e| QueueError::Unavailable(format!("worker stopped: {e}")))
    }};
}
pub(crate) use run_apalis_worker;

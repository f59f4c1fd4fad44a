//! The unit of work (one image of one job) and how it is put on the queue.
//!
//! apalis carries the work; it is not where status lives (see `meta`). A task
//! holds only ids: the worker reads everything else from the job record, so a
//! task can never disagree with the job it belongs to.

mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::redis::RedisQueue;
use crate::jobs::JobId;

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

#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Enqueues tasks, each with the id the caller chose for it.
    async fn enqueue(&self, tasks: Vec<(String, ProcessImage)>) -> Result<(), QueueError>;
    async fn check(&self) -> Result<(), QueueError>;
}

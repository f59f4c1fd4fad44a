//! The unit of work (one image of one job) and the queue that carries it:
//! apalis on Redis (distributed) or on SQLite (embedded).
//!
//! Two sides, two traits: a [`Producer`] enqueues and forgets tasks (the
//! API), a [`Consumer`] runs workers that hand each task to a [`Handler`]
//! (the worker processes). The handler answers with an [`Outcome`]; turning
//! that into apalis' retry and dead-letter rules happens here and only here,
//! so nothing outside this module names apalis.
//!
//! apalis carries the work; it is not where status lives (see `meta`). A task
//! holds only ids: the worker reads everything else from the job record, so a
//! task can never disagree with the job it belongs to.
//!
//! Each backend holds two queues, one per [`Lane`] (see `jobs::pacing`): a
//! producer names the lane of what it enqueues, a worker the lane it serves.

mod deliver;
mod redis;
mod sqlite;
mod sqlite_indexes;
mod sqlite_insert;
mod sqlite_worker;
mod webhook;
mod workers;

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use self::redis::RedisQueue;
pub use self::sqlite::SqliteQueue;
pub use self::webhook::{DeliverWebhook, WebhookHandler, WebhookQueue};
pub use self::workers::WorkerInfo;
use crate::jobs::JobId;
pub use crate::jobs::Lane;

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

crate::backend_error::backend_error!(
    /// A queue failure: `Unavailable` (worth retrying) or `Corrupt` (the
    /// backend's layout is not the one this build was written for, or a
    /// value that cannot be encoded).
    QueueError,
    "task queue"
);

/// The most deliveries of one task that end in a retry. apalis-redis
/// dead-letters a task once it has failed 25 times (a constant in its
/// scripts), so both backends are given that limit; a task's last delivery
/// is told so (see [`Delivery::is_last`]) and must settle the image.
pub const MAX_DELIVERIES: u32 = 25;

/// How a dead worker's tasks are noticed: each worker beats every `interval`;
/// one silent for `interval × missed` is presumed dead, and the next beat of a
/// live worker puts its tasks back on the queue.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: std::time::Duration,
    pub missed: usize,
}

impl Liveness {
    /// How long a worker may be silent before it is presumed dead.
    pub fn window(&self) -> std::time::Duration {
        self.interval * u32::try_from(self.missed.max(1)).unwrap_or(u32::MAX)
    }
}

/// Now, and the Unix second from which a heartbeat counts as a live
/// worker's (for [`Producer::stats`]).
fn alive_since(window: std::time::Duration) -> (std::time::SystemTime, i64) {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let since = secs.saturating_sub(window.as_secs());
    (now, i64::try_from(since).unwrap_or(i64::MAX))
}

/// Which delivery of a task this is, as the queue counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// 1 for the first delivery. The queue counts the deliveries that ended
    /// in an answer (apalis-sqlite also those a dead or stopping worker
    /// never finished), so this never falls behind the image's own attempt
    /// count and may run ahead of it.
    pub attempt: u32,
    /// The queue retries a task at most until this delivery. A dead worker's
    /// tasks are delivered again whatever their count; the image's own
    /// attempt limit ends those.
    pub limit: u32,
}

impl Delivery {
    /// After this delivery the queue will not retry the task, whatever the
    /// handler answers: an image still unsettled now would never be.
    pub fn is_last(&self) -> bool {
        self.attempt >= self.limit
    }
}

/// What became of one delivery of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished (or nothing left to do): never deliver it again.
    Done,
    /// Failed in a way that may pass (an outage): deliver it again later.
    RetryLater(String),
    /// Failed for good: never deliver it again.
    GiveUp(String),
}

/// Does the work of one task. Implemented by the worker; knows nothing of apalis.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, task: ProcessImage, delivery: Delivery) -> Outcome;
}

/// What one lane's queue holds now (for metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct LaneStats {
    pub lane: Lane,
    /// Tasks waiting to be taken.
    pub depth: u64,
    /// How long the oldest of them has existed (its id's time).
    pub oldest_age: Option<std::time::Duration>,
    /// Workers of the lane that beat within their liveness window.
    pub workers_alive: u64,
}

/// The age of a task from its ULID id (minted when its job was submitted).
pub fn task_age(id: &str, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let ulid = ulid::Ulid::from_string(id).ok()?;
    now.duration_since(ulid.datetime()).ok()
}

/// The API's side of the queue.
#[async_trait]
pub trait Producer: Send + Sync + 'static {
    /// Each lane's depth, oldest task and live workers, read from the backend.
    async fn stats(&self) -> Result<Vec<LaneStats>, QueueError>;
    /// The workers seen lately, newest heartbeat first (for the admin page).
    async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError>;
    /// Enqueues tasks on `lane`, each with the id the caller chose for it. A
    /// task whose id the lane already holds is skipped, so repeating an
    /// enqueue that may or may not have happened (a lost reply, a crash)
    /// adds nothing.
    async fn enqueue(
        &self,
        lane: Lane,
        tasks: Vec<(String, ProcessImage)>,
    ) -> Result<(), QueueError>;
    /// Removes tasks and their records from either lane, so queued ones
    /// never run. Returns how
    /// many are running right now and were left alone: they finish, but
    /// their job is gone (deleted or expired), so their writes are refused
    /// and their results discarded; forget them again once they are done.
    async fn forget(&self, task_ids: &[String]) -> Result<usize, QueueError>;
    async fn check(&self) -> Result<(), QueueError>;
}

/// The workers' side of the queue.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Runs one worker of `lane` named `name` (unique per run: apalis
    /// re-queues a dead worker's tasks by name) that hands up to
    /// `concurrency` tasks at a time to `handler`, until `stop` resolves;
    /// then lets its in-flight tasks finish. Returns early if the worker
    /// fails.
    async fn run_worker(
        &self,
        name: String,
        lane: Lane,
        concurrency: usize,
        handler: Arc<dyn Handler>,
        stop: BoxFuture<'static, ()>,
    ) -> Result<(), QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_delivery_at_the_limit_is_last() {
        let at = |attempt| Delivery {
            attempt,
            limit: MAX_DELIVERIES,
        };
        assert!(!at(1).is_last());
        assert!(!at(MAX_DELIVERIES - 1).is_last());
        assert!(at(MAX_DELIVERIES).is_last());
        // apalis-sqlite may count a dead worker's delivery twice.
        assert!(at(MAX_DELIVERIES + 1).is_last());
    }
}

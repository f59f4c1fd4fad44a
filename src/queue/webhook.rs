//! The webhook delivery queue: an apalis queue of its own beside the image
//! lanes, on the same backend. A task is one try of one delivery (see
//! `meta::DeliveryStore`): the handler claims the try, so a task delivered
//! twice sends once, and a retry is a new task for the next try, handed
//! over by `service::webhooks` when it is due. apalis' own retries are
//! only for a handler that could not reach the metadata store.

use std::sync::Arc;

use apalis::prelude::{AbortError, BoxDynError, Data, TaskBuilder, TaskId, TaskSink};
use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::deliver::{run_apalis_worker, Wake};
use super::{new_task_id, Outcome, QueueError, RedisQueue, SqliteQueue};
use crate::backend_error::ErrorKind;
use crate::jobs::JobId;

/// Try `attempt` of the delivery of event `seq` of job `job_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverWebhook {
    pub job_id: JobId,
    pub seq: u64,
    pub attempt: u32,
}

/// Makes one try. Implemented by `service::webhooks`; knows nothing of apalis.
#[async_trait]
pub trait WebhookHandler: Send + Sync + 'static {
    async fn deliver(&self, task: DeliverWebhook) -> Outcome;
}

#[async_trait]
pub trait WebhookQueue: Send + Sync + 'static {
    async fn push(&self, tasks: Vec<DeliverWebhook>) -> Result<(), QueueError>;
    /// Runs one delivery worker, as [`super::Consumer::run_worker`] does.
    async fn run_webhook_worker(
        &self,
        name: String,
        concurrency: usize,
        handler: Arc<dyn WebhookHandler>,
        stop: BoxFuture<'static, ()>,
    ) -> Result<(), QueueError>;
    /// Removes finished tasks (the deliveries' state is in the metadata
    /// store; the tasks are only the carriers). Returns how many.
    async fn sweep(&self) -> Result<usize, QueueError>;
}

/// How often apalis tries a task whose handler could not reach the store.
const TASK_ATTEMPTS: usize = 5;

/// A queue's storage for delivery tasks and this process's worker's wake-up.
#[derive(Clone)]
pub(super) struct WebhookLane<S> {
    pub storage: S,
    pub wake: Wake,
}

#[derive(Clone)]
pub(super) struct WebhookDispatch {
    handler: Arc<dyn WebhookHandler>,
}

pub(super) async fn deliver_webhook(
    task: DeliverWebhook,
    dispatch: Data<WebhookDispatch>,
) -> Result<(), BoxDynError> {
    match dispatch.handler.deliver(task).await {
        Outcome::Done => Ok(()),
        Outcome::RetryLater(reason) => Err(reason.into()),
        Outcome::GiveUp(reason) => Err(AbortError::new(reason).into()),
    }
}

/// The apalis tasks for `list`: fresh ids (the claim, not the queue, keeps
/// a try from being made twice).
macro_rules! tasks {
    ($list:expr) => {
        $list.into_iter().map(|task| {
            TaskBuilder::new(task)
                .task_id(TaskId::from_string(new_task_id()))
                .max_attempts(TASK_ATTEMPTS)
                .build()
        })
    };
}

/// The queue on one backend: `push` and `run_webhook_worker` are the same
/// on both (their storages share apalis' traits, not a type); `sweep`, the
/// expression given, is the backend's own.
macro_rules! webhook_queue {
    ($queue:ty, $this:ident => $sweep:expr) => {
        #[async_trait]
        impl WebhookQueue for $queue {
            async fn push(&self, list: Vec<DeliverWebhook>) -> Result<(), QueueError> {
                if list.is_empty() {
                    return Ok(());
                }
                let mut storage = self.webhooks.storage.clone();
                storage
                    .push_all(&mut futures::stream::iter(tasks!(list)))
                    .await
                    .map_err(|e| QueueError::unavailable("enqueue", e))?;
                self.webhooks.wake.now();
                Ok(())
            }

            async fn run_webhook_worker(
                &self,
                name: String,
                concurrency: usize,
                handler: Arc<dyn WebhookHandler>,
                stop: BoxFuture<'static, ()>,
            ) -> Result<(), QueueError> {
                let WebhookLane { storage, wake } = self.webhooks.clone();
                let dispatch = WebhookDispatch { handler };
                run_apalis_worker!(
                    storage,
                    wake,
                    name,
                    concurrency,
                    dispatch,
                    deliver_webhook,
                    stop
                )
            }

            async fn sweep(&self) -> Result<usize, QueueError> {
                let $this = self;
                $sweep
            }
        }
    };
}

webhook_queue!(RedisQueue, queue => queue.forget_finished_webhooks().await);

/// The SQLite webhook lane's finished deliveries, removed, through the
/// lane's own index (see `sqlite_indexes`; the planner would otherwise walk
/// every task of the lane by the index on job types). The job type is
/// written out, `WEBHOOK_QUEUE`, as the index's condition is.
pub(super) const PURGE_FINISHED: &str = "DELETE FROM Jobs INDEXED BY imgpipe_webhooks_by_status
    WHERE job_type = 'imgpipe::deliver-webhook' AND status IN ('Done', 'Killed')";

webhook_queue!(SqliteQueue, queue => {
    let done = sqlx::query(PURGE_FINISHED)
        .execute(&queue.pool)
        .await
        .map_err(|e| QueueError::with_source(ErrorKind::Unavailable, "SQLite", e))?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
});

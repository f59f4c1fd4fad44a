//! The task queue on Redis through apalis-redis (distributed mode).

use std::sync::Arc;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{run_apalis_worker, Liveness, ProcessImage, QueueError, TaskQueue};
use crate::worker::WorkerContext;

#[derive(Clone)]
pub struct RedisQueue {
    storage: RedisStorage<ProcessImage>,
    conn: ConnectionManager,
    queue: String,
}

/// Removes tasks from every structure apalis-redis keeps them in (pending
/// list, retry schedule, done/dead sets, payload and metadata hashes), except
/// those in some worker's in-flight set: removing a running task's payload
/// would break the worker's acknowledgement and, if the worker died, the
/// re-delivery of its tasks. Those are counted and left for a later call.
/// KEYS[1]: the queue name; ARGV: task ids. Returns the number left.
const FORGET: &str = r"
local q = KEYS[1]
local workers = redis.call('ZRANGE', q .. ':workers', 0, -1)
local running = 0
for _, id in ipairs(ARGV) do
  local busy = false
  for _, w in ipairs(workers) do
    if redis.call('SISMEMBER', q .. ':inflight:' .. w, id) == 1 then
      busy = true
      break
    end
  end
  if busy then
    running = running + 1
  else
    redis.call('LREM', q .. ':active', 0, id)
    redis.call('ZREM', q .. ':scheduled', id)
    redis.call('SREM', q .. ':done', id)
    redis.call('SREM', q .. ':dead', id)
    redis.call('HDEL', q .. ':data', id)
    redis.call('HDEL', q .. ':meta:result', id)
    redis.call('DEL', q .. ':meta:' .. id)
  end
end
return running
";

impl RedisQueue {
    /// The queue is named `<key_prefix>:process-image`, shared by the API
    /// (producer) and every worker process of the deployment.
    pub fn new(conn: ConnectionManager, key_prefix: &str, liveness: Liveness) -> Self {
        let queue = format!("{key_prefix}:process-image");
        let config = Config::default()
            .queue(&queue)
            // One task per fetch: apalis does not heartbeat while fetched tasks
            // wait for a free slot, so a bigger batch of slow images can make a
            // busy worker look dead to the others. Measured: no throughput
            // loss on 8-photo jobs (same run, batch 1 vs batch = concurrency).
            .batch_size(1)
            .heartbeat_interval(liveness.interval)
            .missed_heartbeats(liveness.missed.max(1));
        RedisQueue {
            storage: RedisStorage::new(conn.clone()).with_config(config),
            conn,
            queue,
        }
    }
}

#[async_trait]
impl TaskQueue for RedisQueue {
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
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }

    async fn forget(&self, task_ids: &[String]) -> Result<usize, QueueError> {
        if task_ids.is_empty() {
            return Ok(0);
        }
        ::redis::Script::new(FORGET)
            .key(&self.queue)
            .arg(task_ids)
            .invoke_async::<usize>(&mut self.conn.clone())
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))
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
        ::redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }
}

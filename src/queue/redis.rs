//! The task queue on Redis through apalis-redis (distributed mode).
//!
//! Everything imgpipe knows of apalis-redis's keys is in this file: their
//! names come from apalis-redis's own [`Config`], and [`FORGET`] relies on
//! their types (a pending list, a retry schedule, done and dead sets, payload
//! and metadata hashes, a set of in-flight tasks per live worker) as in
//! apalis-redis 1.0.0, pinned in Cargo.toml; `tests/queue.rs` fails if they
//! change.

use std::sync::Arc;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use async_trait::async_trait;
use futures::future::BoxFuture;

use super::deliver::{run_apalis_worker, Dispatch};
use super::{
    Consumer, Handler, Lane, Liveness, ProcessImage, Producer, QueueError, MAX_DELIVERIES,
};

/// Removes tasks from every structure apalis-redis keeps them in, except
/// those in some worker's in-flight set: removing a running task's payload
/// would break the worker's acknowledgement and, if the worker died, the
/// re-delivery of its tasks. Those are counted and left for a later call.
/// KEYS: workers zset, in-flight set prefix, pending list, retry schedule,
/// done set, dead set, payload hash, metadata prefix. ARGV: task ids.
/// Returns the number left.
const FORGET: &str = r"
local workers = redis.call('ZRANGE', KEYS[1], 0, -1)
local running = 0
for _, id in ipairs(ARGV) do
  local busy = false
  for _, w in ipairs(workers) do
    if redis.call('SISMEMBER', KEYS[2] .. ':' .. w, id) == 1 then
      busy = true
      break
    end
  end
  if busy then
    running = running + 1
  else
    redis.call('LREM', KEYS[3], 0, id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('SREM', KEYS[5], id)
    redis.call('SREM', KEYS[6], id)
    redis.call('HDEL', KEYS[7], id)
    redis.call('HDEL', KEYS[8] .. ':result', id)
    redis.call('DEL', KEYS[8] .. ':' .. id)
  end
end
return running
";

/// One lane's queue: apalis-redis's storage and the key names it uses.
#[derive(Clone)]
struct LaneQueue {
    storage: RedisStorage<ProcessImage>,
    config: Config,
}

#[derive(Clone)]
pub struct RedisQueue {
    priority: LaneQueue,
    bulk: LaneQueue,
    conn: ConnectionManager,
    limit: u32,
}

fn unavailable(e: redis::RedisError) -> QueueError {
    QueueError::unavailable("Redis", e)
}

impl RedisQueue {
    /// The queues are named `<key_prefix>:process-image` (bulk: the one
    /// queue's name before lanes) and `<key_prefix>:process-image:priority`,
    /// shared by the API (producer) and every worker process of the
    /// deployment. A failing task is retried until its `limit`-th delivery
    /// (apalis-redis never retries past [`MAX_DELIVERIES`]).
    pub fn new(conn: ConnectionManager, key_prefix: &str, liveness: Liveness, limit: u32) -> Self {
        let lane = |suffix: &str| {
            let config = Config::default()
                .queue(format!("{key_prefix}:process-image{suffix}"))
                // One task per fetch: apalis does not heartbeat while fetched
                // tasks wait for a free slot, so a bigger batch of slow images
                // can make a busy worker look dead to the others. Measured: no
                // throughput loss on 8-photo jobs (batch 1 vs = concurrency).
                .batch_size(1)
                .heartbeat_interval(liveness.interval)
                .missed_heartbeats(liveness.missed.max(1));
            LaneQueue {
                storage: RedisStorage::new(conn.clone()).with_config(config.clone()),
                config,
            }
        };
        RedisQueue {
            priority: lane(":priority"),
            bulk: lane(""),
            conn,
            limit: limit.clamp(1, MAX_DELIVERIES),
        }
    }

    fn lane(&self, lane: Lane) -> &LaneQueue {
        match lane {
            Lane::Priority => &self.priority,
            Lane::Bulk => &self.bulk,
        }
    }
}

#[async_trait]
impl Producer for RedisQueue {
    async fn enqueue(
        &self,
        lane: Lane,
        tasks: Vec<(String, ProcessImage)>,
    ) -> Result<(), QueueError> {
        // apalis-redis stores a task's payload with HSETNX and queues it only
        // if that set it: a task id already held is skipped atomically.
        let mut storage = self.lane(lane).storage.clone();
        let limit = self.limit as usize;
        let tasks = tasks.into_iter().map(|(id, args)| {
            TaskBuilder::new(args)
                .task_id(TaskId::from_string(id))
                .max_attempts(limit)
                .build()
        });
        storage
            .push_all(&mut futures::stream::iter(tasks))
            .await
            .map_err(|e| QueueError::unavailable("enqueue", e))
    }

    async fn forget(&self, task_ids: &[String]) -> Result<usize, QueueError> {
        if task_ids.is_empty() {
            return Ok(0);
        }
        let mut running = 0;
        for lane in Lane::ALL {
            let c = &self.lane(lane).config;
            running += redis::Script::new(FORGET)
                .key(c.workers_set())
                .key(c.inflight_jobs_set())
                .key(c.active_jobs_list())
                .key(c.scheduled_jobs_set())
                .key(c.done_jobs_set())
                .key(c.dead_jobs_set())
                .key(c.job_data_hash())
                .key(c.job_meta_hash())
                .arg(task_ids)
                .invoke_async::<usize>(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(running)
    }

    async fn check(&self) -> Result<(), QueueError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[async_trait]
impl Consumer for RedisQueue {
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
        let storage = self.lane(lane).storage.clone();
        run_apalis_worker!(storage, name, concurrency, dispatch, stop)
    }
}

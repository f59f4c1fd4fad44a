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
use futures::StreamExt;

use super::deliver::{run_apalis_worker, Dispatch, Wake};
use super::webhook::{DeliverWebhook, WebhookLane};
use super::workers::WorkerInfo;
use super::{
    Consumer, Handler, Lane, LaneStats, Liveness, ProcessImage, Producer, QueueError,
    MAX_DELIVERIES,
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
    /// This process's worker of the lane, woken by its own enqueues.
    wake: Wake,
}

#[derive(Clone)]
pub struct RedisQueue {
    priority: LaneQueue,
    bulk: LaneQueue,
    pub(super) webhooks: WebhookLane<RedisStorage<DeliverWebhook>>,
    /// The webhook queue's key names, for sweeping its finished tasks.
    pub(super) webhook_config: Config,
    pub(super) conn: ConnectionManager,
    limit: u32,
    /// For the wake-up channel's subscriptions (see [`RedisQueue::waking`]).
    client: Option<redis::Client>,
    /// A worker silent this long is presumed dead (for `stats`).
    pub(super) liveness: std::time::Duration,
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
                wake: Wake::default(),
            }
        };
        let webhook_config = Config::default()
            .queue(format!("{key_prefix}:deliver-webhook"))
            .heartbeat_interval(liveness.interval)
            .missed_heartbeats(liveness.missed.max(1));
        RedisQueue {
            priority: lane(":priority"),
            bulk: lane(""),
            webhooks: WebhookLane {
                storage: RedisStorage::new(conn.clone()).with_config(webhook_config.clone()),
                wake: Wake::default(),
            },
            webhook_config,
            conn,
            limit: limit.clamp(1, MAX_DELIVERIES),
            client: None,
            liveness: liveness.window(),
        }
    }

    /// Wakes this process's workers when another process enqueues: every
    /// enqueue publishes on the lane's channel (`<queue>:wake`), and each
    /// worker listens on it through a connection of its own made with
    /// `client`. Without it workers find other processes' tasks at their
    /// next poll (50 to 500 ms, see `deliver::Tick`).
    pub fn waking(mut self, client: redis::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Forgets the webhook queue's finished tasks, a batch at a time.
    pub(super) async fn forget_finished_webhooks(&self) -> Result<usize, QueueError> {
        let c = &self.webhook_config;
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(c.done_jobs_set())
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let dead: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(c.dead_jobs_set())
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        ids.extend(dead);
        if ids.is_empty() {
            return Ok(0);
        }
        let left = self.forget_in(c, &ids).await?;
        Ok(ids.len().saturating_sub(left))
    }

    /// Runs [`FORGET`] on one queue's keys; returns how many were left
    /// (running).
    async fn forget_in(&self, c: &Config, task_ids: &[String]) -> Result<usize, QueueError> {
        redis::Script::new(FORGET)
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
            .map_err(unavailable)
    }

    pub(super) fn lane_config(&self, lane: Lane) -> &Config {
        &self.lane(lane).config
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
    async fn stats(&self) -> Result<Vec<LaneStats>, QueueError> {
        let (now, alive_since) = super::alive_since(self.liveness);
        let mut stats = Vec::new();
        for lane in Lane::ALL {
            let c = &self.lane(lane).config;
            // apalis-redis puts a task due now at the tail of the active
            // list (fetched from the head: the head is the oldest) and one
            // due later (a push stamped a moment ahead, a retry) in the
            // scheduled set until it is due. Heartbeats are scored in Unix
            // seconds.
            let (active, head, scheduled, first, alive): (
                u64,
                Option<String>,
                u64,
                Vec<String>,
                u64,
            ) = redis::pipe()
                .llen(c.active_jobs_list())
                .lindex(c.active_jobs_list(), 0)
                .zcard(c.scheduled_jobs_set())
                .zrange(c.scheduled_jobs_set(), 0, 0)
                .zcount(c.workers_set(), alive_since, "+inf")
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            let oldest = head
                .into_iter()
                .chain(first)
                .filter_map(|id| super::task_age(&id, now))
                .max();
            stats.push(LaneStats {
                lane,
                depth: active + scheduled,
                oldest_age: oldest,
                workers_alive: alive,
            });
        }
        Ok(stats)
    }

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
            .map_err(|e| QueueError::unavailable("enqueue", e))?;
        self.lane(lane).wake.now();
        if self.client.is_some() {
            // Best effort: a lost wake-up costs one poll interval.
            let published = redis::cmd("PUBLISH")
                .arg(wake_channel(&self.lane(lane).config))
                .arg(1)
                .query_async::<i64>(&mut self.conn.clone())
                .await;
            if let Err(e) = published {
                log::debug!("could not publish a wake-up: {e}");
            }
        }
        Ok(())
    }

    async fn forget(&self, task_ids: &[String]) -> Result<usize, QueueError> {
        if task_ids.is_empty() {
            return Ok(0);
        }
        let mut running = 0;
        for lane in Lane::ALL {
            running += self.forget_in(&self.lane(lane).config, task_ids).await?;
        }
        Ok(running)
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        self.list_workers().await
    }

    async fn check(&self) -> Result<(), QueueError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

fn wake_channel(config: &Config) -> String {
    format!("{}:wake", config.queue)
}

/// Turns every message on `channel` into a wake-up of this process's
/// worker, resubscribing after a lost connection (the poll covers the gap).
async fn relay(client: redis::Client, channel: String, wake: Wake) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        wake.now();
                    }
                }
                Err(e) => log::debug!("could not subscribe to {channel}: {e}"),
            },
            Err(e) => log::debug!("no connection for {channel}: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
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
        let wake = self.lane(lane).wake.clone();
        let relay = self.client.clone().map(|client| {
            let channel = wake_channel(&self.lane(lane).config);
            tokio::spawn(relay(client, channel, wake.clone()))
        });
        let ran = run_apalis_worker!(storage, wake, name, concurrency, dispatch, stop);
        if let Some(relay) = relay {
            relay.abort();
        }
        ran
    }
}

//! Job events in Redis: `<prefix>:job:<id>:events` is a list of the job's
//! events as JSON (an event's `seq` is its position, from 1) and
//! `<prefix>:job:<id>:counts` the job's images per state (`total`,
//! `queued`, `processing`, `succeeded`, `failed`) plus `final` once the
//! final event is written. Both are written by the same script as the
//! progress they describe, which then publishes the job's id on
//! `<prefix>:events`: one subscription per API process hears every job.
//! Jobs recorded before events have no counts hash and make no events.

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use futures::stream::{BoxStream, StreamExt};
use redis::AsyncCommands;

use super::redis::{corrupt, unavailable, RedisMeta};
use super::{EventLog, MetaError};
use crate::jobs::events::{Event, EventKind};
use crate::jobs::{ImageProgress, Job, JobId};

/// Writes a progress field under the rules of `MetaStore::set_image_progress`:
/// only while the job exists and has not expired (its expiry-index score, in
/// ms, is after ARGV[5], the writer's clock), never over a terminal state,
/// never over a later attempt. Returns 1 when written, 0 when refused. A
/// terminal state (ARGV[6] is 1) is counted in the job's pace hash (KEYS[4]),
/// with its result's size (ARGV[7]), once: a terminal state is never
/// written over. Then the events: the image's (ARGV[8]), the job's progress
/// from the counts (KEYS[6]) and, when every image has settled, the final
/// event, once; the job's id is published on ARGV[10]. ARGV[9]: the time,
/// ARGV[11]: the new state's name, ARGV[12]: the key prefix, ARGV[13]: the
/// image event's name. Returns the final event's name instead of 1 when
/// this write settled the job. Each event wanted by the job's webhook gets its
/// delivery (see `redis_deliveries`). ARGV[14] is the [`Rule`]: 1 for an
/// operator's retry (`reopen_image`): then only a failed image is written
/// over, whatever its attempts, and it counts as unsettled again; 2 for a
/// first attempt's start (`start_untouched`): only over an image still
/// queued with no attempt made.
/// Which rule a progress write follows (ARGV[14] of [`SET_PROGRESS`]).
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// `set_image_progress`: never over a terminal state or a later attempt.
    Fenced,
    /// `reopen_image`: over a failed image only.
    Reopen,
    /// `start_untouched`: over an image never started only.
    Untouched,
}

pub(super) const SET_PROGRESS: &str = concat!(
    super::redis_deliveries::schedule_webhook_lua!(),
    super::redis_pace::count_usage_lua!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local wrote_final = nil
local expires = redis.call('ZSCORE', KEYS[3], ARGV[4])
if not expires or tonumber(expires) <= tonumber(ARGV[5]) then return 0 end
local current = redis.call('HGET', KEYS[2], ARGV[1])
local before = 'queued'
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok then
    if ARGV[14] == '1' then
      if stored.state ~= 'failed' then return 0 end
    elseif ARGV[14] == '2' then
      if stored.state ~= 'queued' or (tonumber(stored.attempts) or 0) ~= 0 then return 0 end
    else
      if stored.state == 'succeeded' or stored.state == 'failed' then return 0 end
      if tonumber(stored.attempts) and stored.attempts > tonumber(ARGV[3]) then return 0 end
    end
    if type(stored.state) == 'string' then before = stored.state end
  end
elseif ARGV[14] == '1' then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HINCRBY', KEYS[4], 'settled', 1)
  redis.call('HINCRBY', KEYS[4], 'output_bytes', tonumber(ARGV[7]))
  count_usage(KEYS[4], ARGV[4], ARGV[12] .. ':tenant:', -1, tonumber(ARGV[7]))
end
if ARGV[14] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HINCRBY', KEYS[4], 'settled', -1)
  count_usage(KEYS[4], ARGV[4], ARGV[12] .. ':tenant:', 1, 0)
end
if ARGV[6] == '1' then
  -- The admin view (see `redis_admin`): settled per minute, failures.
  local settled = ARGV[12] .. ':settled:' .. math.floor(tonumber(ARGV[5]) / 60000)
  redis.call('HINCRBY', settled, ARGV[11], 1)
  redis.call('EXPIRE', settled, 90000)
  if ARGV[11] == 'failed' then
    local ok, p = pcall(cjson.decode, ARGV[2])
    local why = (ok and type(p.error) == 'string' and p.error) or 'failed'
    redis.call('LPUSH', ARGV[12] .. ':failures', cjson.encode({job_id = ARGV[4],
      index = tonumber(ARGV[1]), error = why, at = ARGV[9]}))
    redis.call('LTRIM', ARGV[12] .. ':failures', 0, 499)
  end
end
if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('HINCRBY', KEYS[6], before, -1)
  redis.call('HINCRBY', KEYS[6], ARGV[11], 1)
  local seq = redis.call('RPUSH', KEYS[5], ARGV[8])
  schedule_webhook(KEYS[6], ARGV[12], ARGV[4], seq, ARGV[13], ARGV[8], ARGV[5])
  local c = redis.call('HMGET', KEYS[6], 'total', 'queued', 'processing', 'succeeded', 'failed', 'final')
  local t, q, p, s, f = tonumber(c[1]), tonumber(c[2]) or 0, tonumber(c[3]) or 0,
    tonumber(c[4]) or 0, tonumber(c[5]) or 0
  -- tenths, rounded half up, as status.rs does
  local percent = math.floor(((s + f) * 2000 + t) / (2 * t)) / 10
  local progress = cjson.encode({type = 'job.progress', at = ARGV[9],
    progress = {total = t, queued = q, processing = p, succeeded = s, failed = f, percent = percent}})
  seq = redis.call('RPUSH', KEYS[5], progress)
  schedule_webhook(KEYS[6], ARGV[12], ARGV[4], seq, 'job.progress', progress, ARGV[5])
  if s + f == t and not c[6] then
    local kind = 'job.completed_with_errors'
    if f == 0 then kind = 'job.completed' elseif s == 0 then kind = 'job.failed' end
    redis.call('HSET', KEYS[6], 'final', kind)
    wrote_final = kind
    local final = cjson.encode({type = kind, at = ARGV[9]})
    seq = redis.call('RPUSH', KEYS[5], final)
    schedule_webhook(KEYS[6], ARGV[12], ARGV[4], seq, kind, final, ARGV[5])
  end
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[5], ttl)
    redis.call('PEXPIRE', KEYS[6], ttl)
  end
  redis.call('PUBLISH', ARGV[10], ARGV[4])
end
if wrote_final then return wrote_final end
return 1
"
);

impl RedisMeta {
    pub(super) fn events_key(&self, id: JobId) -> String {
        format!("{}:job:{id}:events", self.prefix)
    }

    pub(super) fn counts_key(&self, id: JobId) -> String {
        format!("{}:job:{id}:counts", self.prefix)
    }

    pub(super) fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Adds a new job's counts and first event to its creation's pipeline.
    pub(super) fn record_queued(
        &self,
        pipe: &mut redis::Pipeline,
        job: &Job,
        expire_at: i64,
    ) -> Result<(), MetaError> {
        let event = Event::queued(job.created_at, job.images.len());
        let json = serde_json::to_string(&event).map_err(corrupt(format!("job {}", job.id)))?;
        let total = job.images.len();
        pipe.rpush(self.events_key(job.id), &json)
            .ignore()
            .hset_multiple(
                self.counts_key(job.id),
                &[("total", total), ("queued", total)],
            )
            .ignore()
            .expire_at(self.events_key(job.id), expire_at)
            .ignore()
            .expire_at(self.counts_key(job.id), expire_at)
            .ignore();
        self.record_webhook(pipe, job, &json, expire_at);
        Ok(())
    }

    /// The arguments after ARGV[7] of [`SET_PROGRESS`].
    pub(super) fn progress_event_args(
        &self,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<(String, String, String, &'static str), MetaError> {
        let now = Utc::now();
        let event = Event::of_image(index, progress, now);
        let json = serde_json::to_string(&event).map_err(corrupt(format!("image {index}")))?;
        Ok((
            json,
            now.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.events_channel(),
            event.kind.name(),
        ))
    }

    /// Runs [`SET_PROGRESS`]: a worker's write, or (`reopen`) an operator's retry.
    /// `MetaStore::set_image_progress`.
    pub(super) async fn write_progress(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        self.write_by_rule(id, index, progress, Rule::Fenced).await
    }

    /// `MetaStore::start_untouched`.
    pub(super) async fn write_start(
        &self,
        id: JobId,
        index: usize,
        started: &ImageProgress,
    ) -> Result<bool, MetaError> {
        self.write_by_rule(id, index, started, Rule::Untouched)
            .await
    }

    /// `MetaStore::reopen_image`.
    pub(super) async fn write_reopen(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        self.write_by_rule(id, index, progress, Rule::Reopen).await
    }

    async fn write_by_rule(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
        rule: Rule,
    ) -> Result<bool, MetaError> {
        let json =
            serde_json::to_string(progress).map_err(corrupt("encoding a record".to_string()))?;
        let (event, now, channel, kind) = self.progress_event_args(index, progress)?;
        let written: redis::Value = redis::Script::new(SET_PROGRESS)
            .key(self.job_key(id))
            .key(self.images_key(id))
            .key(self.expiry_index())
            .key(self.pace_key(id))
            .key(self.events_key(id))
            .key(self.counts_key(id))
            .arg(index)
            .arg(json)
            .arg(progress.attempts)
            .arg(id.to_string())
            .arg(Utc::now().timestamp_millis())
            .arg(if progress.state.is_terminal() {
                "1"
            } else {
                "0"
            })
            .arg(progress.output_bytes.unwrap_or(0))
            .arg(event)
            .arg(now)
            .arg(channel)
            .arg(progress.state.name())
            .arg(&self.prefix)
            .arg(kind)
            .arg(match rule {
                Rule::Fenced => "0",
                Rule::Reopen => "1",
                Rule::Untouched => "2",
            })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match written {
            redis::Value::Int(n) => Ok(n == 1),
            // The final event's name: this write settled the job.
            redis::Value::BulkString(kind) => {
                let status = String::from_utf8_lossy(&kind)
                    .trim_start_matches("job.")
                    .to_string();
                metrics::counter!(crate::telemetry::JOBS_FINISHED, "status" => status).increment(1);
                Ok(true)
            }
            other => Err(MetaError::new(
                crate::backend_error::ErrorKind::Corrupt,
                format!("the progress script answered {other:?}"),
            )),
        }
    }

    /// The `job.deleted` event, for `MARK_DELETED`.
    pub(super) fn deleted_event(&self) -> Result<String, MetaError> {
        let event = Event::bare(EventKind::JobDeleted, Utc::now());
        serde_json::to_string(&event).map_err(corrupt("job.deleted".to_string()))
    }
}

#[async_trait]
impl EventLog for RedisMeta {
    async fn events_after(
        &self,
        id: JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, MetaError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = isize::try_from(after).unwrap_or(isize::MAX);
        let stop = start.saturating_add(isize::try_from(limit).unwrap_or(isize::MAX) - 1);
        let rows: Vec<String> = self
            .conn
            .clone()
            .lrange(self.events_key(id), start, stop)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .enumerate()
            .map(|(i, json)| {
                let seq = after + 1 + i as u64;
                let mut event: Event =
                    serde_json::from_str(json).map_err(corrupt(format!("job {id} event {seq}")))?;
                event.seq = seq;
                Ok(event)
            })
            .collect()
    }

    async fn last_seq(&self, id: JobId) -> Result<u64, MetaError> {
        self.conn
            .clone()
            .llen(self.events_key(id))
            .await
            .map_err(unavailable)
    }

    async fn changes(&self) -> Result<BoxStream<'static, Vec<JobId>>, MetaError> {
        let client = self.client.clone().ok_or_else(|| {
            MetaError::new(
                crate::backend_error::ErrorKind::Unavailable,
                "this Redis store was opened without a client for subscriptions",
            )
        })?;
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub
            .subscribe(self.events_channel())
            .await
            .map_err(unavailable)?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| async move {
                let id: String = message.get_payload().ok()?;
                Some(vec![id.parse().ok()?])
            })
            .boxed())
    }
}

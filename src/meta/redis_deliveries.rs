//! Webhook deliveries in Redis. A job with a webhook has `wh_url`,
//! `wh_events` (`,name,name,`) and `wh_tenant` in its counts hash (see
//! `redis_events`), and the scripts that append its events call
//! `schedule_webhook` (below) for each, in the same script: a delivery is
//! `<prefix>:webhook:<job>:<seq>`, a hash of the [`Delivery`] fields; a
//! pending one is in `<prefix>:webhooks:due` scored by `next_at` (ms), and
//! every one in `<prefix>:job:<id>:webhooks` (scored by seq, for the
//! status). The counts hash also counts them per state (`wh_<state>`).
//! A delivery hash has no expiry while pending; once ended it lives as long
//! as its job's counts.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::deliveries::{Delivery, DeliveryKey, DeliveryState, DeliveryStore, TryRecord};
use super::redis::{unavailable, RedisMeta};
use super::MetaError;
use crate::backend_error::ErrorKind;
use crate::jobs::events::EventKind;
use crate::jobs::{Job, JobId};

/// The Lua function the event-writing scripts share (prepended to them with
/// `concat!`): makes the delivery of event `seq` (`kind`, stored as
/// `json`) if the job's webhook wants it. `counts`: the job's counts hash.
macro_rules! schedule_webhook_lua {
    () => {
        r"
local function schedule_webhook(counts, prefix, job, seq, kind, json, now)
  local hook = redis.call('HMGET', counts, 'wh_events', 'wh_url', 'wh_tenant')
  if not hook[1] or not string.find(hook[1], ',' .. kind .. ',', 1, true) then return end
  local member = job .. ':' .. seq
  redis.call('HSET', prefix .. ':webhook:' .. member, 'type', kind, 'url', hook[2],
    'tenant', hook[3], 'event', json, 'made_at', now, 'state', 'pending', 'attempts', 0,
    'next_at', now)
  redis.call('ZADD', prefix .. ':webhooks:due', now, member)
  local list = prefix .. ':job:' .. job .. ':webhooks'
  redis.call('ZADD', list, seq, seq)
  redis.call('HINCRBY', counts, 'wh_pending', 1)
  local ttl = redis.call('PTTL', counts)
  if ttl > 0 then redis.call('PEXPIRE', list, ttl) end
end
"
    };
}
pub(super) use schedule_webhook_lua;

/// Leases up to ARGV[3] due deliveries (KEYS[1]: the due set; ARGV[1]: now,
/// ARGV[2]: the lease's end, ARGV[4]: the key prefix): returns member,
/// attempts, member, attempts, …
const TAKE_DUE: &str = r"
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(members) do
  local attempts = redis.call('HGET', ARGV[4] .. ':webhook:' .. m, 'attempts')
  if attempts then
    redis.call('ZADD', KEYS[1], ARGV[2], m)
    table.insert(out, m)
    table.insert(out, attempts)
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
";

/// Starts try ARGV[1] of delivery KEYS[1] if it has made ARGV[1] - 1 and is
/// pending, leasing it until ARGV[2] in the due set KEYS[2] (member
/// ARGV[3]); returns the hash, or nil.
const CLAIM: &str = r"
local h = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if h[1] ~= 'pending' or tonumber(h[2]) ~= tonumber(ARGV[1]) - 1 then return false end
redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'next_at', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return redis.call('HGETALL', KEYS[1])
";

/// Records the end of try ARGV[1] of delivery KEYS[1] (still pending, no
/// later try started): state ARGV[2], HTTP status ARGV[3] and error ARGV[4]
/// ('' for none), next try ARGV[5], body ARGV[6]; member ARGV[7] of the due
/// set KEYS[2]; KEYS[3]: the job's counts hash. Returns 1 if recorded. A
/// 410 (`stopped`) stops the job's webhook: no new deliveries, and its
/// pending ones stopped too (KEYS[4]: the job's deliveries, ARGV[8]: the
/// key prefix of a delivery of the job, `<prefix>:webhook:<job>:`, and
/// ARGV[9]: the job's id).
const RECORD: &str = r"
local h = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if h[1] ~= 'pending' or tonumber(h[2]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'next_at', ARGV[5], 'body', ARGV[6])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'last_status', ARGV[3])
else redis.call('HDEL', KEYS[1], 'last_status') end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[4])
else redis.call('HDEL', KEYS[1], 'last_error') end
if ARGV[2] == 'pending' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[7])
else
  redis.call('ZREM', KEYS[2], ARGV[7])
  local ttl = redis.call('PTTL', KEYS[3])
  if ttl > 0 then
    redis.call('HINCRBY', KEYS[3], 'wh_pending', -1)
    redis.call('HINCRBY', KEYS[3], 'wh_' .. ARGV[2], 1)
    redis.call('PEXPIRE', KEYS[1], ttl)
  else
    redis.call('PEXPIRE', KEYS[1], 60000)
  end
end
if ARGV[2] == 'stopped' then
  redis.call('HDEL', KEYS[3], 'wh_events')
  for _, seq in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    local other = ARGV[8] .. seq
    if redis.call('HGET', other, 'state') == 'pending' then
      redis.call('HSET', other, 'state', 'stopped')
      redis.call('ZREM', KEYS[2], ARGV[9] .. ':' .. seq)
      redis.call('HINCRBY', KEYS[3], 'wh_pending', -1)
      redis.call('HINCRBY', KEYS[3], 'wh_stopped', 1)
    end
  end
end
return 1
";

impl RedisMeta {
    fn due_key(&self) -> String {
        format!("{}:webhooks:due", self.prefix)
    }

    fn delivery_key(&self, key: DeliveryKey) -> String {
        format!("{}:webhook:{}:{}", self.prefix, key.job_id, key.seq)
    }

    fn job_deliveries_key(&self, id: JobId) -> String {
        format!("{}:job:{id}:webhooks", self.prefix)
    }

    /// Adds a new job's webhook to its creation's pipeline: the fields the
    /// scripts read, and the delivery of its first event if it is wanted.
    pub(super) fn record_webhook(
        &self,
        pipe: &mut redis::Pipeline,
        job: &Job,
        first_event: &str,
        expire_at: i64,
    ) {
        let Some(hook) = &job.webhook else { return };
        let counts = self.counts_key(job.id);
        pipe.hset_multiple(
            &counts,
            &[
                ("wh_url", hook.url.clone()),
                ("wh_events", hook.filter()),
                ("wh_tenant", job.tenant.as_str().to_string()),
            ],
        )
        .ignore();
        if !hook.wants(EventKind::JobQueued) {
            return;
        }
        let key = DeliveryKey {
            job_id: job.id,
            seq: 1,
        };
        let now = job.created_at.timestamp_millis();
        pipe.hset_multiple(
            self.delivery_key(key),
            &[
                ("type", EventKind::JobQueued.name().to_string()),
                ("url", hook.url.clone()),
                ("tenant", job.tenant.as_str().to_string()),
                ("event", first_event.to_string()),
                ("made_at", now.to_string()),
                ("state", "pending".to_string()),
                ("attempts", "0".to_string()),
                ("next_at", now.to_string()),
            ],
        )
        .ignore()
        .zadd(self.due_key(), member(key), now)
        .ignore()
        .zadd(self.job_deliveries_key(job.id), 1, 1)
        .ignore()
        .expire_at(self.job_deliveries_key(job.id), expire_at)
        .ignore()
        .hincr(&counts, "wh_pending", 1)
        .ignore();
    }
}

fn member(key: DeliveryKey) -> String {
    format!("{}:{}", key.job_id, key.seq)
}

fn parse_member(member: &str) -> Option<DeliveryKey> {
    let (job, seq) = member.rsplit_once(':')?;
    Some(DeliveryKey {
        job_id: job.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

fn bad(what: String) -> MetaError {
    MetaError::new(ErrorKind::Corrupt, what)
}

fn from_millis(ms: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms.parse().ok()?)
}

fn delivery(key: DeliveryKey, mut h: HashMap<String, String>) -> Result<Delivery, MetaError> {
    let what = || format!("webhook delivery {}:{}", key.job_id, key.seq);
    let mut take = |field: &str| h.remove(field);
    let state = take("state")
        .and_then(|s| DeliveryState::parse(&s))
        .ok_or_else(|| bad(what()))?;
    let next_at = take("next_at").and_then(|t| from_millis(&t));
    Ok(Delivery {
        key,
        kind: take("type").ok_or_else(|| bad(what()))?,
        url: take("url").ok_or_else(|| bad(what()))?,
        tenant: take("tenant").unwrap_or_default(),
        event: take("event").ok_or_else(|| bad(what()))?,
        made_at: take("made_at")
            .and_then(|t| from_millis(&t))
            .ok_or_else(|| bad(what()))?,
        attempts: take("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
        next_at: next_at.filter(|_| state == DeliveryState::Pending),
        state,
        last_status: take("last_status").and_then(|s| s.parse().ok()),
        last_error: take("last_error"),
        body: take("body"),
    })
}

#[async_trait]
impl DeliveryStore for RedisMeta {
    async fn take_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DeliveryKey, u32)>, MetaError> {
        let flat: Vec<String> = redis::Script::new(TAKE_DUE)
            .key(self.due_key())
            .arg(now.timestamp_millis())
            .arg(lease_until.timestamp_millis())
            .arg(limit)
            .arg(&self.prefix)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(flat
            .chunks(2)
            .filter_map(|pair| {
                let key = parse_member(pair.first()?)?;
                let attempts: u32 = pair.get(1)?.parse().ok()?;
                Some((key, attempts.saturating_add(1)))
            })
            .collect())
    }

    async fn claim(
        &self,
        key: DeliveryKey,
        attempt: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Delivery>, MetaError> {
        let hash: Option<HashMap<String, String>> = redis::Script::new(CLAIM)
            .key(self.delivery_key(key))
            .key(self.due_key())
            .arg(attempt)
            .arg(lease_until.timestamp_millis())
            .arg(member(key))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        hash.map(|h| delivery(key, h)).transpose()
    }

    async fn record(
        &self,
        key: DeliveryKey,
        attempt: u32,
        result: &TryRecord,
    ) -> Result<bool, MetaError> {
        let done: i64 = redis::Script::new(RECORD)
            .key(self.delivery_key(key))
            .key(self.due_key())
            .key(self.counts_key(key.job_id))
            .key(self.job_deliveries_key(key.job_id))
            .arg(attempt)
            .arg(result.state.name())
            .arg(result.status.map(|s| s.to_string()).unwrap_or_default())
            .arg(result.error.clone().unwrap_or_default())
            .arg(result.next_at.timestamp_millis())
            .arg(&result.body)
            .arg(member(key))
            .arg(format!("{}:webhook:{}:", self.prefix, key.job_id))
            .arg(key.job_id.to_string())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn deliveries(
        &self,
        job: JobId,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Vec<(DeliveryState, u64)>), MetaError> {
        let mut conn = self.conn.clone();
        let stop = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let seqs: Vec<u64> = conn
            .zrevrange(self.job_deliveries_key(job), 0, stop)
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for &seq in &seqs {
            pipe.hgetall(self.delivery_key(DeliveryKey { job_id: job, seq }));
        }
        let states = [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Stopped,
        ];
        let fields: Vec<String> = states.iter().map(|s| format!("wh_{}", s.name())).collect();
        pipe.cmd("HMGET").arg(self.counts_key(job)).arg(&fields);
        let mut answers: Vec<redis::Value> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let counts: Vec<Option<u64>> = answers
            .pop()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| bad(format!("webhook counts of job {job}: {e}")))?
            .unwrap_or_default();
        let mut list = Vec::new();
        for (seq, value) in seqs.into_iter().zip(answers) {
            let hash: HashMap<String, String> = redis::from_redis_value(value)
                .map_err(|e| bad(format!("webhook delivery {job}:{seq}: {e}")))?;
            if hash.is_empty() {
                continue;
            }
            list.push(delivery(DeliveryKey { job_id: job, seq }, hash)?);
        }
        let counts = states
            .into_iter()
            .zip(counts)
            .filter_map(|(s, n)| Some((s, n?)))
            .collect();
        Ok((list, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip() {
        let key = DeliveryKey {
            job_id: JobId::new(),
            seq: 42,
        };
        assert_eq!(parse_member(&member(key)), Some(key));
        assert_eq!(parse_member("nope"), None);
    }
}

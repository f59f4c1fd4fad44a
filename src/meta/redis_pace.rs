//! Fair scheduling's counters and queues, and the per-tenant quota count, in
//! Redis (see `redis.rs` for the key layout). Inherent methods the `MetaStore` impl
//! delegates to; the scripts keep each read-modify-write atomic.

use std::ops::Range;
use std::sync::LazyLock;

use super::redis::{unavailable, RedisMeta};
use super::{Backlog, MetaError, Usage};
use crate::auth::Tenant;
use crate::backend_error::ErrorKind;
use crate::jobs::pacing::Held;
use crate::jobs::{JobId, Lane};

/// For each job i of a release (KEYS[i] its pace hash, ARGV[2i+1] its id,
/// ARGV[2i+2] its new count): raises its released count, takes it out of
/// the unreleased index (the last key) once all are released, and moves it
/// to ARGV[1] (its turn) in its tenant's queue (ARGV[2] .. tenant ..
/// ':queue') if it is still there. A job without a pace hash (gone) is left
/// alone. Returns how many were marked.
const MARK_RELEASED: &str = r"
local index = KEYS[#KEYS]
local marked = 0
for i = 1, #KEYS - 1 do
  local pace, id, upto = KEYS[i], ARGV[2 * i + 1], tonumber(ARGV[2 * i + 2])
  local current = redis.call('HGET', pace, 'released')
  if current then
    if upto > tonumber(current) then redis.call('HSET', pace, 'released', upto) end
    if upto >= tonumber(redis.call('HGET', pace, 'total') or 0) then
      redis.call('ZREM', index, id)
    end
    local tenant = redis.call('HGET', pace, 'tenant')
    if tenant then redis.call('ZADD', ARGV[2] .. tenant .. ':queue', 'XX', ARGV[1], id) end
    marked = marked + 1
  end
end
return marked
";

/// Counts one more taken image of a live job (KEYS[1] its record, KEYS[2]
/// its pace hash, ARGV[2] its id); once every image is taken the job leaves
/// its tenant's queue (ARGV[1] .. tenant .. ':queue'). Returns nil for a job
/// that is gone or has no pace hash (recorded before fair scheduling);
/// otherwise goes on with `tenant` and `queue` set.
const COUNT_TAKEN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local tenant = redis.call('HGET', KEYS[2], 'tenant')
if not tenant then return false end
local queue = ARGV[1] .. tenant .. ':queue'
local taken = redis.call('HINCRBY', KEYS[2], 'taken', 1)
if taken >= tonumber(redis.call('HGET', KEYS[2], 'total') or 0) then
  redis.call('ZREM', queue, ARGV[2])
end
";

/// [`COUNT_TAKEN`], returning the job's tenant.
static NOTE_TAKEN: LazyLock<String> = LazyLock::new(|| format!("{COUNT_TAKEN}return tenant"));

/// Returns `out` with the first `limit` jobs of a tenant's `queue` (jobs
/// with images waiting or held back, scored by turn) appended as flat (id,
/// total, released, taken, lane) tuples (lane `bulk` for a job recorded
/// before lanes); `prefix` is that of job keys. Jobs whose record or pace
/// hash is gone leave the queue as they are met.
const READ_BACKLOG: &str = r"
for _, id in ipairs(redis.call('ZRANGE', queue, 0, limit - 1)) do
  local v = redis.call('HMGET', prefix .. id .. ':pace', 'total', 'released', 'taken', 'lane')
  if v[1] and redis.call('EXISTS', prefix .. id) == 1 then
    table.insert(out, id)
    table.insert(out, tonumber(v[1]))
    table.insert(out, tonumber(v[2]) or 0)
    table.insert(out, tonumber(v[3]) or 0)
    table.insert(out, v[4] or 'bulk')
  else
    redis.call('ZREM', queue, id)
  end
end
return out
";

/// A tenant's backlog ([`READ_BACKLOG`]): KEYS[1] its queue, ARGV[1] how
/// many jobs, ARGV[2] the prefix of job keys.
static BACKLOG: LazyLock<String> = LazyLock::new(|| {
    format!("local out, queue, limit, prefix = {{}}, KEYS[1], tonumber(ARGV[1]), ARGV[2]\n{READ_BACKLOG}")
});

/// A worker's take in one trip: [`COUNT_TAKEN`], then the tenant's backlog
/// ([`READ_BACKLOG`], ARGV[3] jobs, ARGV[4] the prefix of job keys) after
/// the tenant's name. nil for a job that is gone.
static TAKE: LazyLock<String> = LazyLock::new(|| {
    format!("{COUNT_TAKEN}local out, limit, prefix = {{tenant}}, tonumber(ARGV[3]), ARGV[4]\n{READ_BACKLOG}")
});

/// The distinct tenants of the first ARGV[1] jobs holding images back
/// (KEYS[1]); jobs without a pace hash (gone) leave the index. ARGV[2]: the
/// prefix of job keys.
const TENANTS_WITH_BACKLOG: &str = r"
local out, seen = {}, {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local tenant = redis.call('HGET', ARGV[2] .. id .. ':pace', 'tenant')
  if not tenant then
    redis.call('ZREM', KEYS[1], id)
  elseif not seen[tenant] then
    seen[tenant] = true
    table.insert(out, tenant)
  end
end
return out
";

/// A tenant's usage, kept: `<prefix>:tenant:<tenant>:usage` holds the
/// totals over the jobs in its index of live jobs (`:jobs`), `active`
/// (images queued or running: `total - settled` of each job's pace hash)
/// and `bytes` (its `input_bytes + output_bytes`), so that a quota check
/// reads one hash however many jobs the tenant keeps. Every script that
/// adds a job to the index, takes one out or changes a member's figures
/// changes the totals with it, atomically, and only where the hash exists:
/// [`USAGE`] makes it, from the index, the first time it is read (a tenant
/// from before this hash, or one whose hash expired with its index).
///
/// The Lua functions the scripts share (prepended with `concat!`):
/// `count_usage` adds to the totals of the job whose pace hash is `pace`
/// (id `id`) if it is in its tenant's index (`prefix` is the tenant index
/// prefix); `uncount` takes a job out of its tenant's index and, if it was
/// there, its figures out of the totals.
macro_rules! count_usage_lua {
    () => {
        r"
local function count_usage(pace, id, prefix, active, bytes)
  local tenant = redis.call('HGET', pace, 'tenant')
  if not tenant or not redis.call('ZSCORE', prefix .. tenant .. ':jobs', id) then return end
  local usage = prefix .. tenant .. ':usage'
  if redis.call('EXISTS', usage) == 0 then return end
  redis.call('HINCRBY', usage, 'active', active)
  redis.call('HINCRBY', usage, 'bytes', bytes)
end
local function uncount(pace, id, prefix)
  local tenant = redis.call('HGET', pace, 'tenant')
  if not tenant or redis.call('ZREM', prefix .. tenant .. ':jobs', id) == 0 then return end
  local v = redis.call('HMGET', pace, 'total', 'settled', 'input_bytes', 'output_bytes')
  local usage = prefix .. tenant .. ':usage'
  if redis.call('EXISTS', usage) == 0 then return end
  redis.call('HINCRBY', usage, 'active', (tonumber(v[2]) or 0) - (tonumber(v[1]) or 0))
  redis.call('HINCRBY', usage, 'bytes', 0 - (tonumber(v[3]) or 0) - (tonumber(v[4]) or 0))
end
"
    };
}
pub(super) use count_usage_lua;

/// A new job's figures into its tenant's totals (KEYS[1]), if they are
/// kept: ARGV[1] images, ARGV[2] bytes uploaded; the totals then live as
/// long as the tenant's index (ARGV[3], Unix seconds).
pub(super) const ADD_TO_USAGE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'active', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// What a tenant's live jobs use (KEYS[1] its index of live jobs, scored by
/// expiry; KEYS[2] its totals; ARGV[1] now, Unix ms; ARGV[2] the prefix of
/// job keys): the jobs that expired leave the index and the totals (their
/// figures no longer change: writes to them are refused); without totals,
/// they are made from the index (expired jobs, and jobs whose pace hash is
/// gone, leaving it), to live as long as it. Returns {active images,
/// stored bytes}.
const USAGE: &str = r"
local function figures(id)
  local v = redis.call('HMGET', ARGV[2] .. id .. ':pace', 'total', 'settled', 'input_bytes', 'output_bytes')
  if not v[1] then return nil end
  return tonumber(v[1]) - (tonumber(v[2]) or 0), (tonumber(v[3]) or 0) + (tonumber(v[4]) or 0)
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  local active, bytes = 0, 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local a, b = figures(id)
    if a then
      active, bytes = active + a, bytes + b
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('HSET', KEYS[2], 'active', active, 'bytes', bytes)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  return {active, bytes}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  local a, b = figures(id)
  if a then
    -- 0 - x, not -x: Lua writes minus zero as '-0', which HINCRBY refuses.
    redis.call('HINCRBY', KEYS[2], 'active', 0 - a)
    redis.call('HINCRBY', KEYS[2], 'bytes', 0 - b)
  end
  redis.call('ZREM', KEYS[1], id)
end
local v = redis.call('HMGET', KEYS[2], 'active', 'bytes')
return {tonumber(v[1]) or 0, tonumber(v[2]) or 0}
";

/// How much of a tenant's queue a backlog read covers at least.
const BACKLOG_SCAN: usize = 256;

impl RedisMeta {
    pub(super) async fn count_taken(&self, id: JobId) -> Result<Option<Tenant>, MetaError> {
        let tenant: Option<String> = redis::Script::new(&NOTE_TAKEN)
            .key(self.job_key(id))
            .key(self.pace_key(id))
            .arg(self.tenant_index_prefix())
            .arg(id.to_string())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        tenant.map(|t| parse_tenant(&t)).transpose()
    }

    pub(super) async fn read_backlog(
        &self,
        tenant: &Tenant,
        limit: usize,
    ) -> Result<Backlog, MetaError> {
        // No index finds the jobs with images waiting (they were served
        // last, so sit at the queue's far end): the first `BACKLOG_SCAN` are
        // read, more than the plan needs.
        let flat: Vec<redis::Value> = redis::Script::new(&BACKLOG)
            .key(self.tenant_queue(tenant))
            .arg(limit.max(BACKLOG_SCAN))
            .arg(format!("{}:job:", self.prefix))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(Backlog::counters(held(&flat)))
    }

    /// [`MetaStore::take`](super::MetaStore::take) in one trip ([`TAKE`]).
    pub(super) async fn take_and_read_backlog(
        &self,
        id: JobId,
        limit: usize,
    ) -> Result<Option<Backlog>, MetaError> {
        let flat: Option<Vec<redis::Value>> = redis::Script::new(&TAKE)
            .key(self.job_key(id))
            .key(self.pace_key(id))
            .arg(self.tenant_index_prefix())
            .arg(id.to_string())
            .arg(limit.max(BACKLOG_SCAN))
            .arg(format!("{}:job:", self.prefix))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match flat.as_deref() {
            None | Some([]) => None,
            Some([_tenant, rest @ ..]) => Some(Backlog::counters(held(rest))),
        })
    }

    pub(super) async fn list_tenants_with_backlog(
        &self,
        limit: usize,
    ) -> Result<Vec<Tenant>, MetaError> {
        let names: Vec<String> = redis::Script::new(TENANTS_WITH_BACKLOG)
            .key(self.unreleased_index())
            .arg(limit.max(1))
            .arg(format!("{}:job:", self.prefix))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        names.iter().map(|n| parse_tenant(n)).collect()
    }

    pub(super) async fn read_task_ids(
        &self,
        wanted: &[(JobId, Range<usize>)],
    ) -> Result<Vec<Vec<String>>, MetaError> {
        // One round trip: an HMGET per job wanted, pipelined.
        let mut pipe = redis::pipe();
        let mut asked = Vec::new();
        for (entry, (id, range)) in wanted.iter().enumerate() {
            if !range.is_empty() {
                let fields: Vec<String> = range.clone().map(|i| format!("t:{i}")).collect();
                pipe.cmd("HMGET").arg(self.pace_key(*id)).arg(fields);
                asked.push(entry);
            }
        }
        let mut ids = vec![Vec::new(); wanted.len()];
        if asked.is_empty() {
            return Ok(ids);
        }
        let answers: Vec<Vec<Option<String>>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        for (entry, answer) in asked.into_iter().zip(answers) {
            // All missing: the job is gone. Some missing: a damaged record.
            if answer.iter().all(Option::is_none) {
                continue;
            }
            ids[entry] = answer
                .into_iter()
                .map(|id| {
                    id.ok_or_else(|| {
                        MetaError::new(ErrorKind::Corrupt, "an image without a task id")
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(ids)
    }

    pub(super) async fn write_released(
        &self,
        marks: &[(JobId, usize)],
        turn: i64,
    ) -> Result<(), MetaError> {
        if marks.is_empty() {
            return Ok(());
        }
        let script = redis::Script::new(MARK_RELEASED);
        let mut invocation = script.prepare_invoke();
        for (id, _) in marks {
            invocation.key(self.pace_key(*id));
        }
        invocation
            .key(self.unreleased_index())
            .arg(turn)
            .arg(self.tenant_index_prefix());
        for (id, upto) in marks {
            invocation.arg(id.to_string()).arg(*upto);
        }
        invocation
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub(super) async fn tenant_usage(&self, tenant: &Tenant) -> Result<Usage, MetaError> {
        let (active, bytes): (i64, i64) = redis::Script::new(USAGE)
            .key(self.tenant_jobs(tenant))
            .key(self.usage_key(tenant))
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(format!("{}:job:", self.prefix))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(Usage {
            active_images: u64::try_from(active).unwrap_or(0),
            stored_bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }
}

fn parse_tenant(name: &str) -> Result<Tenant, MetaError> {
    name.parse()
        .map_err(|_| MetaError::new(ErrorKind::Corrupt, format!("a job's tenant {name:?}")))
}

/// [`READ_BACKLOG`]'s flat tuples, read.
fn held(flat: &[redis::Value]) -> Vec<Held> {
    let field = |v: &redis::Value| -> Option<String> { redis::from_redis_value(v.clone()).ok() };
    let count = |v: &redis::Value| -> usize { redis::from_redis_value(v.clone()).unwrap_or(0) };
    let lane = |v: &redis::Value| Lane::named(&field(v).unwrap_or_default());
    flat.chunks(5)
        .filter_map(|c| match c {
            [id, total, released, taken, lane_name] => Some(Held {
                job: field(id)?.parse().ok()?,
                total: count(total),
                released: count(released),
                taken: count(taken),
                lane: lane(lane_name),
            }),
            _ => None,
        })
        .collect()
}

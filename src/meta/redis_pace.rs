//! Fair scheduling's counters and the per-tenant quota count in Redis (see
//! `redis.rs` for the key layout). Inherent methods the `MetaStore` impl
//! delegates to; the scripts keep each read-modify-write atomic.

use std::ops::Range;

use redis::AsyncCommands;

use super::redis::{unavailable, RedisMeta};
use super::MetaError;
use crate::auth::Tenant;
use crate::backend_error::ErrorKind;
use crate::jobs::pacing::Pace;
use crate::jobs::JobId;

/// Raises a job's released count (KEYS[1] is its pace hash) to ARGV[2], and
/// takes the job (ARGV[1]) out of the unreleased index (KEYS[2]) once all
/// are released. A job without a pace hash (gone) is left alone.
const MARK_RELEASED: &str = r"
local current = redis.call('HGET', KEYS[1], 'released')
if not current then return 0 end
local upto = tonumber(ARGV[2])
if upto > tonumber(current) then redis.call('HSET', KEYS[1], 'released', upto) end
if upto >= tonumber(redis.call('HGET', KEYS[1], 'total') or 0) then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
";

/// A live job's counters (KEYS[1] its record, KEYS[2] its pace hash), after
/// counting one more taken image if ARGV[1] is 1; nil once the job is gone.
/// A live job without a pace hash (recorded before fair scheduling) reads
/// as nothing to release.
const PACE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then return {0, 0, 0} end
if ARGV[1] == '1' then redis.call('HINCRBY', KEYS[2], 'taken', 1) end
local v = redis.call('HMGET', KEYS[2], 'total', 'released', 'taken')
return {tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0}
";

/// Unsettled images of a tenant's live jobs: for each job in its index
/// (KEYS[1], scored by expiry), `total - settled` from its pace hash (key
/// ARGV[2] .. id .. ':pace'). Expired, deleted and purged jobs leave the
/// index as they are met. ARGV[1]: now, Unix ms.
const ACTIVE_IMAGES: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local active = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('HMGET', ARGV[2] .. id .. ':pace', 'total', 'settled')
  if v[1] then
    active = active + tonumber(v[1]) - (tonumber(v[2]) or 0)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return active
";

impl RedisMeta {
    pub(super) async fn read_pace(&self, id: JobId, take: bool) -> Result<Option<Pace>, MetaError> {
        let counts: Option<(usize, usize, usize)> = redis::Script::new(PACE)
            .key(self.job_key(id))
            .key(self.pace_key(id))
            .arg(if take { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(counts.map(|(total, released, taken)| Pace {
            total,
            released,
            taken,
        }))
    }

    pub(super) async fn read_task_ids(
        &self,
        id: JobId,
        range: Range<usize>,
    ) -> Result<Vec<String>, MetaError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = range.map(|i| format!("t:{i}")).collect();
        let ids: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.pace_key(id))
            .arg(&fields)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        // All missing: the job is gone. Some missing: a damaged record.
        if ids.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        ids.into_iter()
            .map(|id| {
                id.ok_or_else(|| MetaError::new(ErrorKind::Corrupt, "an image without a task id"))
            })
            .collect()
    }

    pub(super) async fn write_released(&self, id: JobId, upto: usize) -> Result<(), MetaError> {
        redis::Script::new(MARK_RELEASED)
            .key(self.pace_key(id))
            .key(self.unreleased_index())
            .arg(id.to_string())
            .arg(upto)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub(super) async fn list_unreleased(&self, limit: usize) -> Result<Vec<JobId>, MetaError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let members: Vec<String> = self
            .conn
            .clone()
            .zrange(self.unreleased_index(), 0, limit as isize - 1)
            .await
            .map_err(unavailable)?;
        Ok(members.iter().filter_map(|m| m.parse().ok()).collect())
    }

    pub(super) async fn count_active_images(&self, tenant: &Tenant) -> Result<u64, MetaError> {
        redis::Script::new(ACTIVE_IMAGES)
            .key(self.tenant_jobs(tenant))
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(format!("{}:job:", self.prefix))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(unavailable)
    }
}

//! [`TenantStore`] in Redis. `<prefix>:apikey:<hash>` holds a key's JSON
//! (found by the hash of the presented token in one read), `<prefix>:apikeys`
//! maps key id → hash for listing and revoking. `<prefix>:submission:<tenant>:<sha256 of
//! the Idempotency-Key>` is `pending:<nonce>` while a request holds the
//! claim, then the first answer's JSON until the job expires.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use super::redis::{corrupt, unavailable, RedisMeta};
use super::tenants::TenantStore;
use super::MetaError;
use crate::auth::idempotency::{Claim, Completed, IdempotencyKey};
use crate::auth::{ApiKey, KeyId, Tenant};

/// A pending claim's value is this followed by the claimant's nonce.
const PENDING: &str = "pending:";

/// Marks a key revoked by rewriting its JSON; 1 if it was active.
const REVOKE: &str = r"
local hash = redis.call('HGET', KEYS[1], ARGV[1])
if not hash then return 0 end
local key = ARGV[3] .. hash
local json = redis.call('GET', key)
if not json then return 0 end
local record = cjson.decode(json)
if record.revoked_at and record.revoked_at ~= cjson.null then return 0 end
record.revoked_at = ARGV[2]
redis.call('SET', key, cjson.encode(record))
return 1
";

/// Claims a submission key for ARGV[1] (`pending:<nonce>`):
/// {'claimed'}, {'pending'} or {'done', json}.
const CLAIM: &str = r"
local value = redis.call('GET', KEYS[1])
if not value then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
  return {'claimed'}
end
if string.sub(value, 1, 8) == 'pending:' then return {'pending'} end
return {'done', value}
";

/// Records the answer (ARGV[2], until ARGV[3]) if the key is absent or
/// still claimed by ARGV[1]; 1 if written.
const COMPLETE: &str = r"
local value = redis.call('GET', KEYS[1])
if value and value ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
";

/// Deletes the claim held by ARGV[1] (never another's, never a completed record).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
";

/// Counts one more in a window unless it holds ARGV[1] already; the key
/// expires with the window (ARGV[2] ms). Returns {counted, count}.
const COUNT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return {0, n} end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, n}
";

/// Deletes a completed record if it belongs to job ARGV[1].
const FORGET: &str = r"
local value = redis.call('GET', KEYS[1])
if not value or string.sub(value, 1, 8) == 'pending:' then return 0 end
local ok, record = pcall(cjson.decode, value)
if ok and record.job_id == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
";

impl RedisMeta {
    fn key_record(&self, hash: &str) -> String {
        format!("{}:apikey:{hash}", self.prefix)
    }

    fn key_index(&self) -> String {
        format!("{}:apikeys", self.prefix)
    }

    /// Client keys are hashed into the name: any bytes, bounded length.
    fn submission(&self, tenant: &Tenant, key: &IdempotencyKey) -> String {
        let digest = hex::encode(Sha256::digest(key.as_str().as_bytes()));
        format!("{}:submission:{tenant}:{digest}", self.prefix)
    }
}

fn parse_key(json: &str) -> Result<ApiKey, MetaError> {
    serde_json::from_str(json).map_err(corrupt("an API key".to_string()))
}

#[async_trait]
impl TenantStore for RedisMeta {
    async fn add_key(&self, key: &ApiKey) -> Result<bool, MetaError> {
        let json = serde_json::to_string(key).map_err(corrupt(format!("key {}", key.id)))?;
        let mut conn = self.conn.clone();
        let (fresh_id, fresh_hash): (bool, bool) = redis::pipe()
            .atomic()
            .hset_nx(self.key_index(), key.id.as_str(), &key.hash)
            .set_nx(self.key_record(&key.hash), json)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(fresh_id && fresh_hash)
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, MetaError> {
        let json: Option<String> = self
            .conn
            .clone()
            .get(self.key_record(hash))
            .await
            .map_err(unavailable)?;
        json.as_deref().map(parse_key).transpose()
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, MetaError> {
        let mut conn = self.conn.clone();
        let hashes: Vec<String> = conn.hvals(self.key_index()).await.map_err(unavailable)?;
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = hashes.iter().map(|h| self.key_record(h)).collect();
        let records: Vec<Option<String>> = conn.mget(names).await.map_err(unavailable)?;
        let mut keys = records
            .iter()
            .flatten()
            .map(|json| parse_key(json))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.id.as_str()).cmp(&(b.created_at, &b.id.as_str())));
        Ok(keys)
    }

    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, MetaError> {
        let at = serde_json::to_value(at).map_err(corrupt("a time".to_string()))?;
        let revoked: i64 = redis::Script::new(REVOKE)
            .key(self.key_index())
            .arg(id.as_str())
            .arg(at.as_str().unwrap_or_default())
            .arg(format!("{}:apikey:", self.prefix))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(revoked == 1)
    }

    async fn claim_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
        lease_until: DateTime<Utc>,
        _now: DateTime<Utc>,
    ) -> Result<Claim, MetaError> {
        let answer: Vec<String> = redis::Script::new(CLAIM)
            .key(self.submission(tenant, key))
            .arg(format!("{PENDING}{nonce}"))
            .arg(lease_until.timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match answer.first().map(String::as_str) {
            Some("claimed") => Ok(Claim::Claimed),
            Some("done") => {
                let json = answer.get(1).map(String::as_str).unwrap_or_default();
                serde_json::from_str(json)
                    .map(Claim::Done)
                    .map_err(corrupt("an idempotency record".to_string()))
            }
            _ => Ok(Claim::Pending),
        }
    }

    async fn complete_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
        done: &Completed,
        until: DateTime<Utc>,
    ) -> Result<bool, MetaError> {
        let json =
            serde_json::to_string(done).map_err(corrupt("an idempotency record".to_string()))?;
        let written: i64 = redis::Script::new(COMPLETE)
            .key(self.submission(tenant, key))
            .arg(format!("{PENDING}{nonce}"))
            .arg(json)
            .arg(until.timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(written == 1)
    }

    async fn release_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
    ) -> Result<(), MetaError> {
        redis::Script::new(RELEASE)
            .key(self.submission(tenant, key))
            .arg(format!("{PENDING}{nonce}"))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn count_in_window(
        &self,
        subject: &str,
        window_start: i64,
        window_ms: i64,
        limit: u64,
    ) -> Result<(bool, u64), MetaError> {
        let key = format!("{}:quota:{subject}:{window_start}", self.prefix);
        let (counted, count): (i64, u64) = redis::Script::new(COUNT)
            .key(key)
            .arg(limit)
            .arg(window_ms.saturating_mul(2))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok((counted == 1, count))
    }

    async fn forget_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        job_id: &str,
    ) -> Result<(), MetaError> {
        redis::Script::new(FORGET)
            .key(self.submission(tenant, key))
            .arg(job_id)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

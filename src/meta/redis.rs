//! Job metadata in Redis: `<prefix>:job:<id>` holds the job as JSON and
//! `<prefix>:job:<id>:images` is a hash of image index → progress JSON.
//! Both keys carry the job's expiry.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{JobRecord, MetaError, MetaStore};
use crate::jobs::{ImageProgress, Job, JobId};

#[derive(Clone)]
pub struct RedisMeta {
    conn: ConnectionManager,
    prefix: String,
}

fn unavailable(e: redis::RedisError) -> MetaError {
    MetaError::Unavailable(e.to_string())
}

/// Writes a progress field under the rules of `MetaStore::set_image_progress`:
/// only while the job exists, never over a terminal state, never over a later
/// attempt. Returns 1 when written, 0 when refused.
const SET_PROGRESS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok then
    if stored.state == 'succeeded' or stored.state == 'failed' then return 0 end
    if tonumber(stored.attempts) and stored.attempts > tonumber(ARGV[3]) then return 0 end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
";

impl RedisMeta {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        RedisMeta {
            conn,
            prefix: prefix.to_string(),
        }
    }

    fn job_key(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    fn images_key(&self, id: JobId) -> String {
        format!("{}:job:{id}:images", self.prefix)
    }
}

#[async_trait]
impl MetaStore for RedisMeta {
    async fn create(&self, job: &Job) -> Result<(), MetaError> {
        let json = serde_json::to_string(job).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        let queued = serde_json::to_string(&ImageProgress::queued())
            .map_err(|e| MetaError::Corrupt(e.to_string()))?;
        let expire_at = job.expires_at.timestamp();
        let mut pipe = redis::pipe();
        pipe.atomic().set(self.job_key(job.id), json).ignore();
        for image in &job.images {
            pipe.hset(self.images_key(job.id), image.index, &queued)
                .ignore();
        }
        pipe.expire_at(self.job_key(job.id), expire_at)
            .ignore()
            .expire_at(self.images_key(job.id), expire_at)
            .ignore();
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn load(&self, id: JobId) -> Result<Option<JobRecord>, MetaError> {
        let (job, fields): (Option<String>, Vec<(usize, String)>) = redis::pipe()
            .get(self.job_key(id))
            .hgetall(self.images_key(id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let Some(job) = job else { return Ok(None) };
        let job: Job =
            serde_json::from_str(&job).map_err(|e| MetaError::Corrupt(format!("job {id}: {e}")))?;
        let mut progress = vec![None; job.images.len()];
        for (index, json) in fields {
            let p: ImageProgress = serde_json::from_str(&json)
                .map_err(|e| MetaError::Corrupt(format!("job {id} image {index}: {e}")))?;
            if let Some(slot) = progress.get_mut(index) {
                *slot = Some(p);
            }
        }
        Ok(Some(JobRecord { job, progress }))
    }

    async fn image_progress(
        &self,
        id: JobId,
        index: usize,
    ) -> Result<Option<ImageProgress>, MetaError> {
        let json: Option<String> = self
            .conn
            .clone()
            .hget(self.images_key(id), index)
            .await
            .map_err(unavailable)?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| MetaError::Corrupt(format!("job {id} image {index}: {e}")))
        })
        .transpose()
    }

    async fn set_image_progress(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        let json =
            serde_json::to_string(progress).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        let written: i64 = redis::Script::new(SET_PROGRESS)
            .key(self.job_key(id))
            .key(self.images_key(id))
            .arg(index)
            .arg(json)
            .arg(progress.attempts)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(written == 1)
    }

    async fn delete(&self, id: JobId) -> Result<(), MetaError> {
        self.conn
            .clone()
            .del::<_, ()>(&[self.job_key(id), self.images_key(id)])
            .await
            .map_err(unavailable)
    }

    async fn check(&self) -> Result<(), MetaError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

//! Job metadata in Redis: `<prefix>:job:<id>` holds the job as JSON and
//! `<prefix>:job:<id>:images` is a hash of image index → progress JSON.
//! `<prefix>:jobs:expiry` orders jobs by expiry (Unix ms) for the purger; a deleted
//! job's record moves to `<prefix>:job:<id>:deleted` until it is purged.
//! Fair scheduling and quotas: `<prefix>:job:<id>:pace` is a hash of the
//! job's counters (`total`, `released`, `taken`, `settled`, `input_bytes`,
//! `output_bytes`), its `tenant`, its `lane` and
//! its task ids (`t:<index>`); `<prefix>:jobs:unreleased` holds the jobs
//! still holding images back, scored by creation time;
//! `<prefix>:tenant:<tenant>:jobs` a tenant's live jobs, scored by expiry,
//! and `<prefix>:tenant:<tenant>:usage` what they add up to (see
//! `redis_pace`); `<prefix>:tenant:<tenant>:queue` its jobs with images still waiting or
//! held back, scored by when each was last served (its turn). A
//! job without a pace hash (recorded before these) has nothing to release
//! and counts for no quota. Events: see `redis_events`.

use std::ops::Range;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{Backlog, Doomed, JobRecord, MetaError, MetaStore, Usage};
use crate::auth::Tenant;
use crate::backend_error::ErrorKind;
use crate::jobs::{ImageProgress, Job, JobId};

#[derive(Clone)]
pub struct RedisMeta {
    pub(super) conn: ConnectionManager,
    pub(super) prefix: String,
    /// For the event stream's subscription (`changes`); `None` where no
    /// process watches events (`imgpipe keys`).
    pub(super) client: Option<redis::Client>,
}

/// Keys outlive their job by this much in case no imgpipe process is running
/// to purge it (the purger removes them on time otherwise).
const BACKSTOP_SECS: i64 = 7 * 24 * 3600;

/// Every Redis error counts as an outage (retried): imgpipe's own scripts
/// and keys are well-formed, so what fails is the connection or the server.
pub(super) fn unavailable(e: redis::RedisError) -> MetaError {
    MetaError::unavailable("Redis", e)
}

pub(super) fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> MetaError {
    move |e| MetaError::with_source(ErrorKind::Corrupt, what, e)
}

/// Hides a job from readers and workers in one step (see `mark_deleted`):
/// returns its JSON, or nil if it does not exist. A job that had not ended
/// gets its `job.deleted` event (ARGV[3]) in its events (KEYS[7]), once,
/// and its delivery if the job's webhook wants it (ARGV[5]: now in ms,
/// ARGV[6]: the key prefix).
const MARK_DELETED: &str = concat!(
    super::redis_deliveries::schedule_webhook_lua!(),
    super::redis_pace::count_usage_lua!(),
    r"
local json = redis.call('GET', KEYS[1])
if not json then return false end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
uncount(KEYS[6], ARGV[1], ARGV[2])
local tenant = redis.call('HGET', KEYS[6], 'tenant')
if tenant then
  redis.call('ZREM', ARGV[2] .. tenant .. ':queue', ARGV[1])
end
redis.call('DEL', KEYS[6])
if redis.call('EXISTS', KEYS[8]) == 1 and not redis.call('HGET', KEYS[8], 'final') then
  redis.call('HSET', KEYS[8], 'final', 'job.deleted')
  local seq = redis.call('RPUSH', KEYS[7], ARGV[3])
  schedule_webhook(KEYS[8], ARGV[6], ARGV[1], seq, 'job.deleted', ARGV[3], ARGV[5])
  redis.call('PUBLISH', ARGV[4], ARGV[1])
end
return json
"
);

/// Removes a job's keys for good, and the job from the indexes it is in
/// (its tenant's is named in its pace hash, KEYS[4]). KEYS: job, images,
/// deleted record, pace hash, expiry index, unreleased index, events and
/// counts (which stay ARGV[3] ms more: see `EVENTS_OUTLIVE_JOB`); ARGV: the job
/// id, the tenant index prefix.
const REMOVE: &str = concat!(
    super::redis_pace::count_usage_lua!(),
    r"
uncount(KEYS[4], ARGV[1], ARGV[2])
local tenant = redis.call('HGET', KEYS[4], 'tenant')
if tenant then
  redis.call('ZREM', ARGV[2] .. tenant .. ':queue', ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('PEXPIRE', KEYS[7], ARGV[3])
redis.call('PEXPIRE', KEYS[8], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
"
);

impl RedisMeta {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        RedisMeta {
            conn,
            prefix: prefix.to_string(),
            client: None,
        }
    }

    /// Lets this store's event stream subscribe through `client`.
    pub fn watching(mut self, client: redis::Client) -> Self {
        self.client = Some(client);
        self
    }

    pub(super) fn job_key(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    pub(super) fn images_key(&self, id: JobId) -> String {
        format!("{}:job:{id}:images", self.prefix)
    }

    fn deleted_key(&self, id: JobId) -> String {
        format!("{}:job:{id}:deleted", self.prefix)
    }

    pub(super) fn expiry_index(&self) -> String {
        format!("{}:jobs:expiry", self.prefix)
    }

    pub(super) fn pace_key(&self, id: JobId) -> String {
        format!("{}:job:{id}:pace", self.prefix)
    }

    pub(super) fn unreleased_index(&self) -> String {
        format!("{}:jobs:unreleased", self.prefix)
    }

    /// A tenant's live jobs, scored by expiry (Unix ms), for its quotas.
    pub(super) fn tenant_jobs(&self, tenant: &Tenant) -> String {
        format!("{}{tenant}:jobs", self.tenant_index_prefix())
    }

    /// A tenant's usage totals (see `redis_pace`).
    pub(super) fn usage_key(&self, tenant: &Tenant) -> String {
        format!("{}{tenant}:usage", self.tenant_index_prefix())
    }

    /// A tenant's jobs with images waiting or held back, scored by turn.
    pub(super) fn tenant_queue(&self, tenant: &Tenant) -> String {
        format!("{}{tenant}:queue", self.tenant_index_prefix())
    }

    pub(super) fn tenant_index_prefix(&self) -> String {
        format!("{}:tenant:", self.prefix)
    }
}

fn parse_job(id: JobId, json: &str) -> Result<Job, MetaError> {
    serde_json::from_str(json).map_err(corrupt(format!("job {id}")))
}

#[async_trait]
impl MetaStore for RedisMeta {
    async fn create(&self, job: &Job) -> Result<(), MetaError> {
        let json = serde_json::to_string(job).map_err(corrupt("encoding a record".to_string()))?;
        let queued = serde_json::to_string(&ImageProgress::queued())
            .map_err(corrupt("encoding a record".to_string()))?;
        let expire_at = job.expires_at.timestamp() + BACKSTOP_SECS;
        let mut pipe = redis::pipe();
        pipe.atomic().set(self.job_key(job.id), json).ignore();
        pipe.zadd(
            self.expiry_index(),
            job.id.to_string(),
            job.expires_at.timestamp_millis(),
        )
        .ignore();
        for image in &job.images {
            pipe.hset(self.images_key(job.id), image.index, &queued)
                .ignore();
        }
        if !job.images.is_empty() {
            let mut pace: Vec<(String, String)> = vec![
                ("total".into(), job.images.len().to_string()),
                ("released".into(), "0".into()),
                ("taken".into(), "0".into()),
                ("tenant".into(), job.tenant.to_string()),
                ("input_bytes".into(), job.input_bytes().to_string()),
                ("lane".into(), job.lane.name().into()),
            ];
            pace.extend(
                job.images
                    .iter()
                    .map(|i| (format!("t:{}", i.index), i.task_id.clone())),
            );
            pipe.hset_multiple(self.pace_key(job.id), &pace)
                .ignore()
                .expire_at(self.pace_key(job.id), expire_at)
                .ignore()
                .zadd(
                    self.unreleased_index(),
                    job.id.to_string(),
                    job.created_at.timestamp_millis(),
                )
                .ignore()
                .zadd(
                    self.tenant_jobs(&job.tenant),
                    job.id.to_string(),
                    job.expires_at.timestamp_millis(),
                )
                .ignore()
                .zadd(
                    self.tenant_queue(&job.tenant),
                    job.id.to_string(),
                    job.created_at.timestamp_millis(),
                )
                .ignore()
                .expire_at(self.tenant_queue(&job.tenant), expire_at)
                .ignore()
                .expire_at(self.tenant_jobs(&job.tenant), expire_at)
                .ignore();
            // The tenant's totals, where they are kept (see `redis_pace`).
            pipe.cmd("EVAL")
                .arg(super::redis_pace::ADD_TO_USAGE)
                .arg(1)
                .arg(self.usage_key(&job.tenant))
                .arg(job.images.len())
                .arg(job.input_bytes())
                .arg(expire_at)
                .ignore();
        }
        self.record_queued(&mut pipe, job, expire_at)?;
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
        let job = parse_job(id, &job)?;
        if job.expires_at <= Utc::now() {
            return Ok(None);
        }
        let mut progress = vec![None; job.images.len()];
        for (index, json) in fields {
            let p: ImageProgress =
                serde_json::from_str(&json).map_err(corrupt(format!("job {id} image {index}")))?;
            if let Some(slot) = progress.get_mut(index) {
                *slot = Some(p);
            }
        }
        Ok(Some(JobRecord { job, progress }))
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, MetaError> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.job_key(id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let job = parse_job(id, &json)?;
        Ok((job.expires_at > Utc::now()).then_some(job))
    }

    async fn is_live(&self, id: JobId) -> Result<bool, MetaError> {
        // A deleted job's record has moved away; an expired one is past its
        // score in the expiry index until the purger takes it.
        let (exists, expires): (bool, Option<i64>) = redis::pipe()
            .exists(self.job_key(id))
            .zscore(self.expiry_index(), id.to_string())
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let now = Utc::now().timestamp_millis();
        Ok(exists && expires.is_none_or(|at| at > now))
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
        json.map(|j| serde_json::from_str(&j).map_err(corrupt(format!("job {id} image {index}"))))
            .transpose()
    }

    async fn set_image_progress(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        self.write_progress(id, index, progress).await
    }

    async fn start_untouched(
        &self,
        id: JobId,
        index: usize,
        started: &ImageProgress,
    ) -> Result<bool, MetaError> {
        self.write_start(id, index, started).await
    }

    async fn reopen_image(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        self.write_reopen(id, index, progress).await
    }

    async fn mark_deleted(&self, id: JobId) -> Result<Option<Job>, MetaError> {
        let json: Option<String> = redis::Script::new(MARK_DELETED)
            .key(self.job_key(id))
            .key(self.images_key(id))
            .key(self.deleted_key(id))
            .key(self.expiry_index())
            .key(self.unreleased_index())
            .key(self.pace_key(id))
            .key(self.events_key(id))
            .key(self.counts_key(id))
            .arg(id.to_string())
            .arg(self.tenant_index_prefix())
            .arg(self.deleted_event()?)
            .arg(self.events_channel())
            .arg(Utc::now().timestamp_millis())
            .arg(&self.prefix)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let Some(json) = json else { return Ok(None) };
        let job = parse_job(id, &json)?;
        Ok((job.expires_at > Utc::now()).then_some(job))
    }

    async fn doomed(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Doomed>, MetaError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = conn
            .zrangebyscore_limit(
                self.expiry_index(),
                "-inf",
                now.timestamp_millis(),
                0,
                limit as isize,
            )
            .await
            .map_err(unavailable)?;
        let ids: Vec<JobId> = members.iter().filter_map(|m| m.parse().ok()).collect();
        let unparsable: Vec<&String> = members
            .iter()
            .filter(|m| m.parse::<JobId>().is_err())
            .collect();
        if !unparsable.is_empty() {
            conn.zrem::<_, _, ()>(self.expiry_index(), unparsable)
                .await
                .map_err(unavailable)?;
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.get(self.job_key(*id)).get(self.deleted_key(*id));
        }
        let records: Vec<Option<String>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(ids
            .iter()
            .zip(records.chunks(2))
            .map(|(&id, pair)| {
                let json = pair.iter().flatten().next();
                match json.map(|j| parse_job(id, j)) {
                    Some(Ok(job)) => Doomed::of(&job),
                    _ => {
                        log::warn!("job {id}: record lost or unreadable; its objects cannot be listed and stay");
                        Doomed::unknown(id)
                    }
                }
            })
            .collect())
    }

    async fn note_taken(&self, id: JobId) -> Result<Option<Tenant>, MetaError> {
        self.count_taken(id).await
    }

    async fn take(&self, id: JobId, limit: usize) -> Result<Option<Backlog>, MetaError> {
        self.take_and_read_backlog(id, limit).await
    }

    async fn backlog(&self, tenant: &Tenant, limit: usize) -> Result<Backlog, MetaError> {
        self.read_backlog(tenant, limit).await
    }

    async fn tenants_with_backlog(&self, limit: usize) -> Result<Vec<Tenant>, MetaError> {
        self.list_tenants_with_backlog(limit).await
    }

    async fn task_ids(
        &self,
        wanted: &[(JobId, Range<usize>)],
    ) -> Result<Vec<Vec<String>>, MetaError> {
        self.read_task_ids(wanted).await
    }

    async fn mark_released(&self, marks: &[(JobId, usize)], turn: i64) -> Result<(), MetaError> {
        self.write_released(marks, turn).await
    }

    async fn usage(&self, tenant: &Tenant) -> Result<Usage, MetaError> {
        self.tenant_usage(tenant).await
    }

    async fn remove(&self, id: JobId) -> Result<(), MetaError> {
        redis::Script::new(REMOVE)
            .key(self.job_key(id))
            .key(self.images_key(id))
            .key(self.deleted_key(id))
            .key(self.pace_key(id))
            .key(self.expiry_index())
            .key(self.unreleased_index())
            .key(self.events_key(id))
            .key(self.counts_key(id))
            .arg(id.to_string())
            .arg(self.tenant_index_prefix())
            .arg(super::EVENTS_OUTLIVE_JOB.as_millis() as u64)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
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

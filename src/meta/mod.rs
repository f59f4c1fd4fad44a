//! Job metadata: the job record written at submission and the per-image
//! progress written by workers. This is the source of truth for status; the
//! queue only delivers work. Two implementations (Redis, SQLite); neither holds
//! job state in memory, so any process can answer for any job.

pub mod admin;
mod deliveries;
#[cfg(test)]
pub mod memory;
mod redis;
mod redis_admin;
mod redis_deliveries;
mod redis_events;
mod redis_pace;
mod redis_tenants;
mod sqlite;
mod sqlite_admin;
mod sqlite_deliveries;
mod sqlite_events;
mod sqlite_pace;
mod sqlite_settle;
mod sqlite_tenants;
mod tenants;

use std::ops::Range;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

pub use self::admin::AdminView;
pub use self::deliveries::{Delivery, DeliveryKey, DeliveryState, DeliveryStore, TryRecord};
pub use self::redis::RedisMeta;
pub use self::sqlite::SqliteMeta;
pub use self::tenants::TenantStore;
use crate::auth::idempotency::IdempotencyKey;
use crate::auth::Tenant;
use crate::jobs::events::Event;
use crate::jobs::pacing::Held;
use crate::jobs::{ImageProgress, Job, JobId};

crate::backend_error::backend_error!(
    /// A metadata-store failure: `Unavailable` (worth retrying) or `Corrupt`
    /// (a record this build cannot read).
    MetaError,
    "job metadata store"
);

/// A job together with each image's progress (`None`: never touched yet).
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub job: Job,
    pub progress: Vec<Option<ImageProgress>>,
}

/// What one tenant's live jobs use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Images not yet settled (queued or running).
    pub active_images: u64,
    /// Bytes stored: every upload, and every result so far.
    pub stored_bytes: u64,
}

/// One tenant's backlog as a release reads it: its jobs' counters (what
/// `pacing::plan` needs) and, where the store reads them in the same trip,
/// the task ids of the images each job would release next, which spares the
/// release a [`MetaStore::task_ids`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    pub held: Vec<Held>,
    /// For a job of `held` with images held back: the task ids of its images
    /// from `released` on, in order, at most as many as the read's `limit`.
    /// A job not here (a store that does not read them along, or an image
    /// written without its id) has its ids read when released.
    pub next_ids: std::collections::HashMap<JobId, Vec<String>>,
}

impl Backlog {
    /// Counters only: the ids are read when released.
    pub fn counters(held: Vec<Held>) -> Self {
        Backlog {
            held,
            next_ids: Default::default(),
        }
    }

    /// The task ids of images `range` of `job`, if they were read along.
    pub fn ids(&self, job: JobId, range: &Range<usize>) -> Option<&[String]> {
        let held = self.held.iter().find(|h| h.job == job)?;
        let ids = self.next_ids.get(&job)?;
        let from = range.start.checked_sub(held.released)?;
        ids.get(from..range.end.checked_sub(held.released)?)
    }
}

/// A job whose objects and records are due to be purged (expired or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    pub id: JobId,
    /// Its tasks and objects, listed from its record (empty if the record is
    /// lost: listing a bucket by prefix is not portable across S3 servers).
    pub task_ids: Vec<String>,
    pub object_keys: Vec<String>,
    /// The `Idempotency-Key` it was submitted with, whose record goes too.
    pub submission: Option<(Tenant, IdempotencyKey)>,
}

impl Doomed {
    pub fn of(job: &Job) -> Self {
        Doomed {
            id: job.id,
            task_ids: job.images.iter().map(|i| i.task_id.clone()).collect(),
            object_keys: job.object_keys(),
            submission: job
                .idempotency_key
                .clone()
                .map(|k| (job.tenant.clone(), IdempotencyKey::from_stored(k))),
        }
    }

    /// A job whose record is lost or unreadable: only its records can go.
    pub fn unknown(id: JobId) -> Self {
        Doomed {
            id,
            task_ids: Vec::new(),
            object_keys: Vec::new(),
            submission: None,
        }
    }
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Records a new job with every image queued and none released to the
    /// queue yet. Expires at `job.expires_at`.
    async fn create(&self, job: &Job) -> Result<(), MetaError>;
    /// Loads a job and all its progress in one round trip; `None` once the job
    /// has expired or been deleted, even before it is purged.
    async fn load(&self, id: JobId) -> Result<Option<JobRecord>, MetaError>;
    /// The job as recorded, without its images' progress (what a worker
    /// needs, and cheaper than `load` on a large job); `None` when `load`
    /// would say so.
    async fn job(&self, id: JobId) -> Result<Option<Job>, MetaError> {
        Ok(self.load(id).await?.map(|record| record.job))
    }
    /// Whether the job exists and has neither expired nor been deleted: what
    /// `load` would say, without reading the job.
    async fn is_live(&self, id: JobId) -> Result<bool, MetaError>;
    /// One image's progress; `None` if the job is gone (a deleted job's may
    /// still be there until it is purged: writes are what refuse it).
    async fn image_progress(
        &self,
        id: JobId,
        index: usize,
    ) -> Result<Option<ImageProgress>, MetaError>;
    /// Writes one image's progress, atomically refusing (returning `false`)
    /// when the write would be wrong under concurrent delivery of the same task:
    /// the job no longer exists (expired or deleted: a late worker must not
    /// resurrect it), the image is already `succeeded` or `failed` (terminal
    /// states are final), or the stored progress belongs to a later attempt
    /// (`attempts` is the fencing token: a stalled worker cannot overwrite the
    /// attempt that replaced it).
    async fn set_image_progress(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError>;
    /// Records `started`, the first attempt's start (`decide::begin` over
    /// `ImageProgress::queued()`), if the image was never started
    /// ([`ImageProgress::is_untouched`]) and its job is live; `false`, with
    /// nothing written, otherwise. A first delivery almost always finds its
    /// image untouched, so the worker tries this before reading the image's
    /// progress, and reads (and decides from) it only when refused.
    async fn start_untouched(
        &self,
        id: JobId,
        index: usize,
        started: &ImageProgress,
    ) -> Result<bool, MetaError>;
    /// An operator's retry of a failed image: writes `progress` (queued,
    /// attempts 0) over its `failed` state, and over nothing else; `false`
    /// if the image is not failed or the job is gone. The job's final event,
    /// if it had one, stays its only one.
    async fn reopen_image(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError>;
    /// Hides a job at once (status, results and workers see it gone, and
    /// progress writes are refused) and marks it due for purging. Returns the
    /// job if it was live.
    async fn mark_deleted(&self, id: JobId) -> Result<Option<Job>, MetaError>;
    /// Up to `limit` jobs that expired by `now` or were deleted, for purging.
    async fn doomed(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Doomed>, MetaError>;
    /// Counts one more of the job's images taken by a worker (a first
    /// delivery) and returns the job's tenant; `None` once the job is gone.
    async fn note_taken(&self, id: JobId) -> Result<Option<Tenant>, MetaError>;
    /// [`note_taken`](Self::note_taken), then the tenant's
    /// [`backlog`](Self::backlog): what a worker's first delivery of an
    /// image needs to release its tenant's next ones. `None` once the job is
    /// gone. A store that can do both in one round trip does.
    async fn take(&self, id: JobId, limit: usize) -> Result<Option<Backlog>, MetaError> {
        match self.note_taken(id).await? {
            Some(tenant) => self.backlog(&tenant, limit).await.map(Some),
            None => Ok(None),
        }
    }
    /// `tenant`'s live jobs with images waiting in the queue, and the first
    /// `limit` (least recently served first) with images held back (see
    /// `jobs::pacing`), in turn order: what `pacing::plan` needs to release
    /// up to `limit` images. A store may return more of the tenant's
    /// unfinished jobs (the plan is the same). Jobs recorded before fair
    /// scheduling are never among them. A store that can read the next
    /// `limit` task ids of each job in the same trip does (see [`Backlog`]).
    async fn backlog(&self, tenant: &Tenant, limit: usize) -> Result<Backlog, MetaError>;
    /// Up to `limit` tenants with images held back (for the sweep that
    /// repairs a release lost to a crash).
    async fn tenants_with_backlog(&self, limit: usize) -> Result<Vec<Tenant>, MetaError>;
    /// The task ids of each wanted job's images in its range, in order: one
    /// list per entry, empty for a job that is gone. One release asks for
    /// several jobs at once, so a store answers in one trip where it can.
    async fn task_ids(
        &self,
        wanted: &[(JobId, Range<usize>)],
    ) -> Result<Vec<Vec<String>>, MetaError>;
    /// Records, for each `(job, upto)`, that images `0..upto` of the job are
    /// in the queue (never lowers the count) and that the job was served at
    /// `turn` (Unix ms), which orders its tenant's backlog. A job that is
    /// gone is left alone. One write where the store allows.
    async fn mark_released(&self, marks: &[(JobId, usize)], turn: i64) -> Result<(), MetaError>;
    /// What `tenant`'s live jobs use, for its quotas.
    async fn usage(&self, tenant: &Tenant) -> Result<Usage, MetaError>;
    /// Removes a job's records for good (the last step of purging it).
    async fn remove(&self, id: JobId) -> Result<(), MetaError>;
    async fn check(&self) -> Result<(), MetaError>;
}

/// How long a purged job's events are kept: a watcher of a job deleted
/// mid-stream still reads its `job.deleted`.
pub const EVENTS_OUTLIVE_JOB: std::time::Duration = std::time::Duration::from_secs(60);

/// Reading a job's events back (the stores append them themselves, in the
/// same atomic step as each state change: see `jobs::events`).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Up to `limit` of the job's events with `seq > after`, in order (none
    /// once the job is purged).
    async fn events_after(
        &self,
        id: JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, MetaError>;
    /// The job's last event's `seq` (0: none yet).
    async fn last_seq(&self, id: JobId) -> Result<u64, MetaError>;
    /// Batches of ids of jobs that have new events, as soon as the store can
    /// tell, for as long as the stream is held (a job may be named when it
    /// has nothing new). The stream ends if the store's connection is lost:
    /// ask again.
    async fn changes(&self) -> Result<BoxStream<'static, Vec<JobId>>, MetaError>;
}

//! Job metadata: the job record written at submission and the per-image
//! progress written by workers. This is the source of truth for status; the
//! queue only delivers work. Implementations hold no job state in memory.

mod redis;

use async_trait::async_trait;

pub use self::redis::RedisMeta;
use crate::jobs::{ImageProgress, Job, JobId};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("job metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("job metadata is corrupt: {0}")]
    Corrupt(String),
}

/// A job together with each image's progress (`None`: never touched yet).
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub job: Job,
    pub progress: Vec<Option<ImageProgress>>,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Records a new job with every image queued. Expires at `job.expires_at`.
    async fn create(&self, job: &Job) -> Result<(), MetaError>;
    /// Loads a job and all its progress in one round trip.
    async fn load(&self, id: JobId) -> Result<Option<JobRecord>, MetaError>;
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
    /// Removes a job and its progress; workers then drop its tasks.
    async fn delete(&self, id: JobId) -> Result<(), MetaError>;
    async fn check(&self) -> Result<(), MetaError>;
}

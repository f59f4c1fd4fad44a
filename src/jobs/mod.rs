//! The job domain: what a job is, how uploads become one, and how its images'
//! states add up to a status. Knows nothing of actix, apalis or any backend.
//! Pure: the operations on jobs (which use the backends) live in `service`.
//!
//! - `recipe`  the options of a request → a checked [`Recipe`]
//! - `admission` whether an image's estimated cost is within the limits
//! - `intake`  one upload → its format and size, or why it is refused
//!   (`tiff_check`: a TIFF's completeness without decoding it)
//! - `names`   safe, unique ZIP entry names from client filenames
//! - `pacing`  which of a job's images to hand to the queue next (fairness)
//! - `status`  the per-image states → one status
//! - `webhook` where a job's events are pushed, and which

pub mod admission;
pub mod events;
pub mod intake;
pub mod names;
pub mod pacing;
mod recipe;
pub mod status;
mod tiff_check;
pub mod webhook;

pub use pacing::Lane;
pub use recipe::{Recipe, RecipeError, RecipeOptions, DEFAULT_JPEG_QUALITY};

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Tenant;
use crate::codec::{InputFormat, OutputFormat};

/// Name of the manifest entry in every ZIP; image entries never take it.
pub const MANIFEST_NAME: &str = "manifest.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    pub fn new() -> Self {
        JobId(Uuid::new_v4())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(JobId)
    }
}

/// One accepted image of a job. Immutable once the job is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub index: usize,
    /// The filename exactly as the client sent it (shown, never used as a path).
    pub filename: String,
    /// Sanitised, unique name of this image's entry in the ZIP.
    pub entry_name: String,
    pub input_format: InputFormat,
    pub output_format: OutputFormat,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    pub task_id: String,
}

/// A job as recorded at submission. Per-image progress lives apart from it
/// (see [`ImageProgress`]) because workers update it concurrently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub recipe: Recipe,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub images: Vec<ImageEntry>,
    /// Who submitted it; jobs recorded before tenants existed are `local`'s.
    #[serde(default)]
    pub tenant: Tenant,
    /// The client's `Idempotency-Key`, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The queue its images go to (see `pacing::lane`); jobs recorded
    /// before lanes existed are bulk.
    #[serde(default)]
    pub lane: Lane,
    /// Where its events are pushed, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<webhook::Webhook>,
}

#[cfg(test)]
impl Job {
    /// A live job of `images` 1×1 PNGs owned by `local`, for unit tests.
    pub fn sample(images: usize) -> Job {
        let now = Utc::now();
        Job {
            id: JobId::new(),
            recipe: Recipe {
                ops: "invert".parse().expect("a valid chain"),
                format: None,
                quality: DEFAULT_JPEG_QUALITY,
                lossless: false,
            },
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            tenant: Tenant::local(),
            idempotency_key: None,
            lane: Lane::Bulk,
            webhook: None,
            images: (0..images)
                .map(|index| ImageEntry {
                    index,
                    filename: format!("{index}.png"),
                    entry_name: format!("{index}.png"),
                    input_format: InputFormat::Png,
                    output_format: OutputFormat::Png,
                    width: 1,
                    height: 1,
                    size_bytes: 10,
                    task_id: ulid::Ulid::new().to_string(),
                })
                .collect(),
        }
    }
}

impl Job {
    /// The job with its clock started at `now`: created then, and expiring
    /// after the same lifetime. A submission stamps its job when it is
    /// recorded, once its uploads are stored, since that is when it exists
    /// for anyone (and its images are queued).
    pub fn recorded_at(self, now: DateTime<Utc>) -> Job {
        Job {
            expires_at: now + (self.expires_at - self.created_at),
            created_at: now,
            ..self
        }
    }

    pub fn input_key(&self, index: usize) -> String {
        input_key(self.id, index)
    }

    /// Bytes of the job's uploads, as stored.
    pub fn input_bytes(&self) -> u64 {
        self.images.iter().map(|i| i.size_bytes).sum()
    }

    /// Every object the job may have: each image's upload and result.
    pub fn object_keys(&self) -> Vec<String> {
        self.images
            .iter()
            .flat_map(|i| [Some(self.input_key(i.index)), self.output_key(i.index)])
            .flatten()
            .collect()
    }

    pub fn output_key(&self, index: usize) -> Option<String> {
        let image = self.images.get(index)?;
        Some(format!(
            "jobs/{}/output/{index}.{}",
            self.id,
            image.output_format.extension()
        ))
    }
}

pub fn input_key(job: JobId, index: usize) -> String {
    format!("jobs/{job}/input/{index}")
}

/// Whether `key` is an upload's, as [`input_key`] makes them.
pub fn is_input_key(key: &str) -> bool {
    let mut parts = key.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("jobs"), Some(job), Some("input"), Some(index), None)
            if job.parse::<JobId>().is_ok() && index.parse::<usize>().is_ok()
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    Queued,
    Processing,
    Succeeded,
    Failed,
}

impl ImageState {
    /// The name clients see in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ImageState::Queued => "queued",
            ImageState::Processing => "processing",
            ImageState::Succeeded => "succeeded",
            ImageState::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, ImageState::Succeeded | ImageState::Failed)
    }
}

impl std::fmt::Display for ImageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The mutable state of one image, written by workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageProgress {
    pub state: ImageState,
    pub attempts: u32,
    /// Why the image failed, or why the last attempt failed while it is retried.
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub output_bytes: Option<u64>,
}

impl ImageProgress {
    /// The fencing rule every metadata store applies atomically when a worker
    /// writes `next` over this stored progress: terminal states are final, and
    /// an attempt never overwrites a later one (`attempts` is the fencing
    /// token), so a stalled worker cannot undo the attempt that replaced it.
    pub fn may_be_replaced_by(&self, next: &ImageProgress) -> bool {
        !self.state.is_terminal() && self.attempts <= next.attempts
    }

    /// Never started: queued with no attempt made (a new image, or one an
    /// operator's retry reopened). The stores' `start_untouched` applies
    /// this rule atomically.
    pub fn is_untouched(&self) -> bool {
        self.state == ImageState::Queued && self.attempts == 0
    }

    pub fn queued() -> Self {
        ImageProgress {
            state: ImageState::Queued,
            attempts: 0,
            error: None,
            started_at: None,
            finished_at: None,
            output_bytes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_job_keeps_its_lifetime_from_the_moment_it_is_recorded() {
        let job = Job::sample(1);
        let lifetime = job.expires_at - job.created_at;
        let later = job.created_at + chrono::Duration::milliseconds(40);
        let recorded = job.clone().recorded_at(later);
        assert_eq!(recorded.created_at, later);
        assert_eq!(recorded.expires_at - recorded.created_at, lifetime);
        assert_eq!(recorded.images, job.images);
    }

    #[test]
    fn input_keys_are_told_from_every_other_key() {
        let job = Job::sample(2);
        assert!(is_input_key(&job.input_key(1)));
        for other in [
            job.output_key(1).expect("an image"),
            format!("jobs/{}/input", job.id),
            format!("jobs/{}/input/1/x", job.id),
            format!("jobs/{}/input/one", job.id),
            "jobs/not-a-job/input/1".to_string(),
            format!("files/{}/input/1", job.id),
        ] {
            assert!(!is_input_key(&other), "{other}");
        }
    }
}

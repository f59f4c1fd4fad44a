//! What can go wrong in a job operation, in the domain's words. The HTTP
//! layer maps each variant to a status and a stable code (`http/error.rs`)
//! and adds the request-specific hints (parameter names, routes).

use crate::backend_error::ErrorKind;
use crate::jobs::admission::TooCostly;
use crate::jobs::intake::FileProblem;
use crate::jobs::status::JobStatus;
use crate::jobs::{ImageState, JobId, RecipeError};
use crate::meta::MetaError;
use crate::queue::QueueError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("no images uploaded")]
    NoFiles,
    /// `webhook_url` or `webhook_events` refused; the text names the rule.
    #[error("{0}")]
    BadWebhook(String),
    #[error("too many files: at most {limit} images per job")]
    TooManyFiles { limit: usize },
    #[error("{file}: {problem}")]
    BadFile { file: String, problem: FileProblem },
    /// Too much work: for one file, or (`file: None`) for any input at all.
    #[error("{}{problem}", file.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    TooCostly {
        file: Option<String>,
        problem: TooCostly,
    },
    #[error("job {0} not found (it may have expired)")]
    JobNotFound(String),
    #[error("job {job} has no image {index}")]
    ImageNotFound { job: JobId, index: usize },
    /// An operator's retry of an image that has not failed.
    #[error("image {index} of job {job} is {state}: only a failed image can be retried")]
    NotRetryable {
        job: JobId,
        index: usize,
        state: ImageState,
    },
    #[error("image {index} of job {job} is {state}, not finished yet; retry later")]
    ImageNotReady {
        job: JobId,
        index: usize,
        state: ImageState,
    },
    #[error("image {index} of job {job} failed, so it has no result: {reason}")]
    ImageFailed {
        job: JobId,
        index: usize,
        reason: String,
    },
    /// The ZIP of an unfinished job was asked for without allowing a partial one.
    #[error("job {} is not finished yet ({})", .0.job_id, .0.status)]
    NotFinished(Box<JobStatus>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(
        "a request with this Idempotency-Key is still in progress; retry when it has answered"
    )]
    SubmissionInProgress,
    #[error(
        "the server is streaming as many downloads as it takes at once ({limit}); retry shortly"
    )]
    DownloadsBusy { limit: usize },
    #[error("quota {quota} exceeded: {used} of {limit} used; retry in {retry_after} s")]
    QuotaExceeded {
        quota: &'static str,
        limit: u64,
        used: u64,
        retry_after: u64,
    },
    #[error("this Idempotency-Key was already used for a different request (other files, names or options); use a new key for a new request")]
    IdempotencyMismatch,
    #[error("internal error: {0}")]
    Internal(String),
}

impl JobError {
    /// For a backend failure, what kind it was; `None` for the others.
    pub fn backend_kind(&self) -> Option<ErrorKind> {
        match self {
            JobError::Store(e) => Some(e.kind()),
            JobError::Meta(e) => Some(e.kind()),
            JobError::Queue(e) => Some(e.kind()),
            _ => None,
        }
    }
}

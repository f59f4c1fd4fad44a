//! What can go wrong in a job operation, in the domain's words. The HTTP
//! layer maps each variant to a status and a stable code (`http/error.rs`)
//! and adds the request-specific hints (parameter names, routes).

use super::intake::FileProblem;
use super::status::JobStatus;
use super::{ImageState, JobId};
use crate::backend_error::ErrorKind;
use crate::meta::MetaError;
use crate::ops::{SizeError, SpecError};
use crate::queue::QueueError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// `field` is the option the chain came in (`filter` or `ops`).
    #[error("invalid {field}: {error}")]
    InvalidOps {
        field: &'static str,
        error: SpecError,
    },
    #[error("no operation given")]
    MissingOps,
    #[error(
        "both filter and ops given; filter is the one-operation shorthand of ops, pass one of them"
    )]
    FilterAndOps,
    #[error(transparent)]
    OutputTooLarge(#[from] SizeError),
    #[error("unknown output format {given:?}; valid formats: jpeg, png, webp")]
    UnknownFormat { given: String },
    #[error("quality must be an integer from 1 to 100, got {given:?}")]
    InvalidQuality { given: String },
    #[error("lossless must be true or false, got {given:?}")]
    InvalidLossless { given: String },
    #[error("no images uploaded")]
    NoFiles,
    #[error("too many files: at most {limit} images per job")]
    TooManyFiles { limit: usize },
    #[error("{file}: {problem}")]
    BadFile { file: String, problem: FileProblem },
    #[error("job {0} not found (it may have expired)")]
    JobNotFound(String),
    #[error("job {job} has no image {index}")]
    ImageNotFound { job: JobId, index: usize },
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

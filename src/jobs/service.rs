//! The job operations behind the HTTP routes: submit, status, results, delete
//! and readiness, and the purge of expired or deleted jobs. Plain async functions over the backend traits; the HTTP
//! layer only translates requests and [`JobError`]s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::intake::{self, FileProblem, Limits};
use super::names::unique_entry_names;
use super::status::{aggregate, JobState, JobStatus};
use super::{ImageEntry, ImageState, Job, JobId, Recipe, DEFAULT_JPEG_QUALITY, MANIFEST_NAME};
use crate::archive;
use crate::codec::OutputFormat;
use crate::meta::{Doomed, JobRecord, MetaError, MetaStore};
use crate::ops::{self, Chain, SizeError, SpecError};
use crate::queue::{new_task_id, ProcessImage, QueueError, TaskQueue};
use crate::store::{ObjectStore, ObjectStream, StoreError};

/// How many uploads are sent to storage at once for one request.
const UPLOAD_CONCURRENCY: usize = 4;
/// Jobs purged per pass; the next pass takes the rest.
const PURGE_BATCH: usize = 100;
/// How long `DELETE /jobs/{id}` waits for the purge it starts.
const PURGE_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid {field}: {error}")]
    InvalidOps {
        field: &'static str,
        error: SpecError,
    },
    #[error("no operation given; pass ?filter=NAME or ?ops=A,B,C (operations: {})", ops::names().join(", "))]
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
    #[error("no images uploaded; send one or more files in the multipart field \"files\"")]
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
    #[error("job {} is not finished yet ({}); retry later or pass ?partial=true", .0.job_id, .0.status)]
    NotFinished(Box<JobStatus>),
    #[error("{0}")]
    Unavailable(String),
    /// Storage answered, but refused (bad credentials, missing bucket...): an
    /// operator's problem, not the client's, and not worth retrying.
    #[error("{0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(key) => {
                JobError::Internal(format!("stored object {key} is missing"))
            }
            StoreError::Unavailable(_) => JobError::Unavailable(e.to_string()),
            StoreError::Failed(_) => JobError::Storage(e.to_string()),
        }
    }
}

impl From<MetaError> for JobError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Unavailable(_) => JobError::Unavailable(e.to_string()),
            MetaError::Corrupt(_) => JobError::Internal(e.to_string()),
        }
    }
}

impl From<QueueError> for JobError {
    fn from(e: QueueError) -> Self {
        JobError::Unavailable(e.to_string())
    }
}

impl Recipe {
    /// Parses and checks the request's options: the whole chain, its
    /// fixed output sizes against `max_pixels`, the format and the quality.
    /// One of `filter` and `ops` is required.
    pub fn parse(options: &RecipeOptions<'_>, max_pixels: u64) -> Result<Recipe, JobError> {
        fn blank(v: Option<&str>) -> Option<&str> {
            v.filter(|s| !s.trim().is_empty())
        }
        let (field, text) = match (blank(options.filter), blank(options.ops)) {
            (Some(_), Some(_)) => return Err(JobError::FilterAndOps),
            (Some(f), None) => ("filter", f),
            (None, Some(o)) => ("ops", o),
            (None, None) => return Err(JobError::MissingOps),
        };
        let ops: Chain = text
            .parse()
            .map_err(|error| JobError::InvalidOps { field, error })?;
        ops.check_sizes(max_pixels)?;
        let (format, quality) = (options.format, options.quality);
        let format = match format.map(str::trim) {
            None | Some("") => None,
            Some(name) => {
                Some(
                    OutputFormat::from_name(name).ok_or_else(|| JobError::UnknownFormat {
                        given: name.to_string(),
                    })?,
                )
            }
        };
        let quality = match quality.map(str::trim) {
            None | Some("") => DEFAULT_JPEG_QUALITY,
            Some(q) => q
                .parse::<u8>()
                .ok()
                .filter(|q| (1..=100).contains(q))
                .ok_or_else(|| JobError::InvalidQuality {
                    given: q.to_string(),
                })?,
        };
        let lossless = match options.lossless.map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) => match v.as_str() {
                "" | "false" | "0" | "no" => false,
                "true" | "1" | "yes" => true,
                _ => {
                    return Err(JobError::InvalidLossless {
                        given: v.to_string(),
                    })
                }
            },
        };
        Ok(Recipe {
            ops,
            format,
            quality,
            lossless,
        })
    }
}

/// The request's processing options as sent (query string or form fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecipeOptions<'a> {
    pub filter: Option<&'a str>,
    pub ops: Option<&'a str>,
    pub format: Option<&'a str>,
    pub quality: Option<&'a str>,
    pub lossless: Option<&'a str>,
}

/// One upload, already spooled to a temporary file by the HTTP layer.
pub struct Upload {
    pub filename: String,
    pub path: PathBuf,
}

/// The answer to an accepted submission.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub job_id: JobId,
    pub status: JobState,
    pub ops: Chain,
    pub status_url: String,
    pub download_url: String,
    pub expires_at: chrono::DateTime<Utc>,
    pub images: Vec<AcceptedImage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AcceptedImage {
    pub index: usize,
    pub filename: String,
    pub task_id: String,
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
}

/// One dependency's health, for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub error: Option<String>,
}

pub struct JobService {
    pub store: Arc<dyn ObjectStore>,
    pub meta: Arc<dyn MetaStore>,
    pub queue: Arc<dyn TaskQueue>,
    pub limits: Limits,
    pub ttl: Duration,
}

impl JobService {
    /// Validates every upload, then stores them, records the job and enqueues
    /// one task per image. Nothing is stored or enqueued unless every file passes.
    pub async fn submit(&self, recipe: Recipe, uploads: Vec<Upload>) -> Result<Accepted, JobError> {
        if uploads.is_empty() {
            return Err(JobError::NoFiles);
        }
        if uploads.len() > self.limits.max_files {
            return Err(JobError::TooManyFiles {
                limit: self.limits.max_files,
            });
        }
        let limits = self.limits;
        let paths: Vec<(String, PathBuf)> = uploads
            .iter()
            .map(|u| (u.filename.clone(), u.path.clone()))
            .collect();
        let inspected = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|(name, path)| {
                    intake::inspect(path, &limits).map_err(|problem| JobError::BadFile {
                        file: name.clone(),
                        problem,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| JobError::Internal(format!("inspection crashed: {e}")))??;

        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let output_formats: Vec<OutputFormat> = inspected
            .iter()
            .map(|i| recipe.format.unwrap_or(i.format.default_output()))
            .collect();
        let names = unique_entry_names(
            uploads
                .iter()
                .zip(&output_formats)
                .map(|(u, f)| (u.filename.as_str(), f.extension())),
            &[MANIFEST_NAME],
        );
        let job = Job {
            id: JobId::new(),
            recipe,
            created_at: now,
            expires_at: now + ttl,
            images: uploads
                .iter()
                .zip(inspected)
                .zip(output_formats)
                .zip(names)
                .enumerate()
                .map(
                    |(index, (((upload, info), output_format), entry_name))| ImageEntry {
                        index,
                        filename: upload.filename.clone(),
                        entry_name,
                        input_format: info.format,
                        output_format,
                        width: info.width,
                        height: info.height,
                        size_bytes: info.size_bytes,
                        task_id: new_task_id(),
                    },
                )
                .collect(),
        };

        if let Err(e) = self.store_uploads(&job, &uploads).await {
            self.discard(&job, false);
            return Err(e);
        }
        // Not recorded (or, if only the reply was lost, recorded without
        // tasks): either way the job must go, inputs included.
        self.meta
            .create(&job)
            .await
            .inspect_err(|_| self.discard(&job, true))?;
        let tasks = job
            .images
            .iter()
            .map(|i| {
                (
                    i.task_id.clone(),
                    ProcessImage {
                        job_id: job.id,
                        index: i.index,
                    },
                )
            })
            .collect();
        // Without its tasks the job would sit `queued` forever. Undo it; should
        // the tasks have been pushed after all (a lost reply), they are
        // forgotten too, and a worker that got one first drops it (no job).
        self.queue
            .enqueue(tasks)
            .await
            .inspect_err(|_| self.discard(&job, true))?;
        log::info!(
            "job {} accepted: {} image(s), ops {}",
            job.id,
            job.images.len(),
            job.recipe.ops
        );

        Ok(Accepted {
            job_id: job.id,
            status: JobState::Queued,
            ops: job.recipe.ops.clone(),
            status_url: format!("/status-job/{}", job.id),
            download_url: format!("/download/{}", job.id),
            expires_at: job.expires_at,
            images: job
                .images
                .iter()
                .map(|i| AcceptedImage {
                    index: i.index,
                    filename: i.filename.clone(),
                    task_id: i.task_id.clone(),
                    format: i.input_format.name(),
                    width: i.width,
                    height: i.height,
                    size_bytes: i.size_bytes,
                })
                .collect(),
        })
    }

    async fn store_uploads(&self, job: &Job, uploads: &[Upload]) -> Result<(), JobError> {
        futures::stream::iter(job.images.iter().zip(uploads))
            .map(|(image, upload)| async move {
                let key = job.input_key(image.index);
                self.store
                    .put_file(&key, &upload.path, "application/octet-stream")
                    .await
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Removes what a refused submission left behind: its inputs and, if it
    /// was recorded, the job and any task that was pushed. In the background:
    /// the client's 5xx must not wait on a backend that is failing anyway.
    fn discard(&self, job: &Job, recorded: bool) {
        let (store, meta, queue, id, keys) = (
            self.store.clone(),
            self.meta.clone(),
            self.queue.clone(),
            job.id,
            input_keys(job),
        );
        let task_ids = Doomed::of(job).task_ids;
        tokio::spawn(async move {
            if recorded {
                if let Err(e) = queue.forget(&task_ids).await {
                    log::warn!("job {id}: could not forget the tasks of a refused submission: {e}");
                }
                if let Err(e) = meta.remove(id).await {
                    log::warn!(
                        "job {id}: could not remove the record of a refused submission: {e}"
                    );
                }
            }
            delete_all(store.as_ref(), keys).await;
        });
    }

    /// Deletes a job: from this moment it is gone for every route, and its
    /// queued tasks will not run. Its files, tasks and records are purged now,
    /// or by the next purge pass if a backend is failing.
    pub async fn delete(&self, id: &str) -> Result<(), JobError> {
        let job_id = parse_job_id(id)?;
        let job = self
            .meta
            .mark_deleted(job_id)
            .await?
            .ok_or_else(|| JobError::JobNotFound(id.to_string()))?;
        // Bounded: the job is already gone for clients, and a slow backend
        // must not hold the request; the next purge pass finishes the work.
        match tokio::time::timeout(PURGE_DEADLINE, self.purge(&Doomed::of(&job))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!(
                "job {job_id}: deleted, but purging it failed (the next pass retries): {e}"
            ),
            Err(_) => log::warn!(
                "job {job_id}: deleted; purging it takes over {PURGE_DEADLINE:?}, the next pass finishes it"
            ),
        }
        Ok(())
    }

    /// One purge pass: removes jobs that expired or were deleted. Returns how
    /// many were purged. Safe to run in every process at once.
    pub async fn purge_due(&self) -> Result<usize, JobError> {
        let doomed = self.meta.doomed(Utc::now(), PURGE_BATCH).await?;
        let mut purged = 0;
        for job in &doomed {
            match self.purge(job).await {
                Ok(true) => purged += 1,
                Ok(false) => {}
                Err(e) => log::warn!("job {}: purge failed, will retry: {e}", job.id),
            }
        }
        Ok(purged)
    }

    /// Tasks first (so none starts on a job being removed), then files, and
    /// the record last: until it goes, an interrupted purge is found again.
    /// A task still running keeps the record for a later pass (its queue
    /// records can only go once it is acknowledged); returns whether the job
    /// is gone for good.
    async fn purge(&self, job: &Doomed) -> Result<bool, JobError> {
        let running = self.queue.forget(&job.task_ids).await?;
        for key in &job.object_keys {
            self.store.delete(key).await?;
        }
        if running > 0 {
            log::info!(
                "job {}: {running} task(s) still running; a later pass finishes the purge",
                job.id
            );
            return Ok(false);
        }
        self.meta.remove(job.id).await?;
        log::info!("job {}: purged", job.id);
        Ok(true)
    }

    async fn record(&self, id: &str) -> Result<JobRecord, JobError> {
        let job_id = parse_job_id(id)?;
        self.meta
            .load(job_id)
            .await?
            .ok_or_else(|| JobError::JobNotFound(id.to_string()))
    }

    pub async fn status(&self, id: &str) -> Result<JobStatus, JobError> {
        let record = self.record(id).await?;
        Ok(aggregate(&record.job, &record.progress))
    }

    /// One processed image, streamed from storage.
    pub async fn result_image(
        &self,
        id: &str,
        index: usize,
    ) -> Result<(ObjectStream, ImageEntry), JobError> {
        let record = self.record(id).await?;
        let job = &record.job;
        let entry = job
            .images
            .get(index)
            .cloned()
            .ok_or(JobError::ImageNotFound { job: job.id, index })?;
        let progress = record.progress.get(index).cloned().flatten();
        match progress {
            Some(p) if p.state == ImageState::Succeeded => {}
            Some(p) if p.state == ImageState::Failed => {
                return Err(JobError::ImageFailed {
                    job: job.id,
                    index,
                    reason: p.error.unwrap_or_else(|| "unknown error".into()),
                })
            }
            other => {
                return Err(JobError::ImageNotReady {
                    job: job.id,
                    index,
                    state: other.map_or(ImageState::Queued, |p| p.state),
                })
            }
        }
        let key = job
            .output_key(index)
            .ok_or(JobError::ImageNotFound { job: job.id, index })?;
        Ok((self.store.get_stream(&key).await?, entry))
    }

    /// The ZIP of a job's results. Refuses an unfinished job unless `partial`.
    pub async fn archive(
        &self,
        id: &str,
        partial: bool,
    ) -> Result<
        (
            JobStatus,
            impl futures::Stream<Item = std::io::Result<bytes::Bytes>>,
        ),
        JobError,
    > {
        let record = self.record(id).await?;
        let status = aggregate(&record.job, &record.progress);
        if !status.status.is_terminal() && !partial {
            return Err(JobError::NotFinished(Box::new(status)));
        }
        let entries = status
            .images
            .iter()
            .filter(|i| i.state == ImageState::Succeeded)
            .filter_map(|i| {
                Some(archive::Entry {
                    name: i.entry_name.clone(),
                    key: record.job.output_key(i.index)?,
                    modified: i.finished_at.unwrap_or(record.job.created_at),
                })
            })
            .collect();
        let manifest = serde_json::to_vec_pretty(&status)
            .map_err(|e| JobError::Internal(format!("manifest: {e}")))?;
        let stream = archive::stream(
            self.store.clone(),
            entries,
            MANIFEST_NAME.to_string(),
            manifest,
        );
        Ok((status, stream))
    }

    pub async fn readiness(&self) -> Vec<Check> {
        let (store, meta, queue) = tokio::join!(
            with_deadline(self.store.check()),
            with_deadline(self.meta.check()),
            with_deadline(self.queue.check())
        );
        vec![
            Check {
                name: "object_store",
                ok: store.is_ok(),
                error: store.err(),
            },
            Check {
                name: "metadata",
                ok: meta.is_ok(),
                error: meta.err(),
            },
            Check {
                name: "queue",
                ok: queue.is_ok(),
                error: queue.err(),
            },
        ]
    }
}

fn parse_job_id(id: &str) -> Result<JobId, JobError> {
    id.parse()
        .map_err(|_| JobError::JobNotFound(id.to_string()))
}

async fn with_deadline<E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(3), fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".to_string()),
    }
}

fn input_keys(job: &Job) -> Vec<String> {
    job.images.iter().map(|i| job.input_key(i.index)).collect()
}

async fn delete_all(store: &dyn ObjectStore, keys: Vec<String>) {
    for key in keys {
        if let Err(e) = store.delete(&key).await {
            log::warn!("could not delete {key}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(filter: Option<&str>, ops: Option<&str>) -> Result<Recipe, JobError> {
        let options = RecipeOptions {
            filter,
            ops,
            ..RecipeOptions::default()
        };
        Recipe::parse(&options, 50_000_000)
    }

    #[test]
    fn recipe_parsing() {
        let r = parse(Some("Sharpen"), None).unwrap();
        assert_eq!(
            (r.ops.to_string(), r.format, r.quality),
            ("sharpen".to_string(), None, DEFAULT_JPEG_QUALITY)
        );
        let r = parse(None, Some("resize:64x64:fit,blur")).unwrap();
        assert_eq!(r.ops.to_string(), "resize:64x64:fit:bicubic,blur");
        let options = RecipeOptions {
            filter: Some("blur"),
            format: Some("webp"),
            quality: Some("75"),
            ..RecipeOptions::default()
        };
        let r = Recipe::parse(&options, 100).unwrap();
        assert_eq!((r.format, r.quality), (Some(OutputFormat::Webp), 75));
        assert!(matches!(parse(None, None), Err(JobError::MissingOps)));
        assert!(matches!(
            parse(Some(" "), Some("")),
            Err(JobError::MissingOps)
        ));
        assert!(matches!(
            parse(Some("blur"), Some("blur")),
            Err(JobError::FilterAndOps)
        ));
        assert!(matches!(
            parse(Some("sepia"), None),
            Err(JobError::InvalidOps {
                field: "filter",
                error: SpecError::Unknown { .. }
            })
        ));
        assert!(matches!(
            parse(None, Some("blur,median:2")),
            Err(JobError::InvalidOps {
                field: "ops",
                error: SpecError::BadArgument { op: "median", .. }
            })
        ));
        assert!(matches!(
            parse(None, Some("resize:20000x20000")),
            Err(JobError::OutputTooLarge(_))
        ));
        let bad_format = RecipeOptions {
            filter: Some("blur"),
            format: Some("gif"),
            ..RecipeOptions::default()
        };
        assert!(matches!(
            Recipe::parse(&bad_format, 100),
            Err(JobError::UnknownFormat { .. })
        ));
        for bad in ["0", "101", "abc", "-5"] {
            let options = RecipeOptions {
                filter: Some("blur"),
                quality: Some(bad),
                ..RecipeOptions::default()
            };
            assert!(
                matches!(
                    Recipe::parse(&options, 100),
                    Err(JobError::InvalidQuality { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_operation_message_lists_valid_names() {
        let msg = parse(Some("x"), None).unwrap_err().to_string();
        for name in ops::names() {
            assert!(msg.contains(name), "{msg}");
        }
    }
}

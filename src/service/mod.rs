//! The job operations behind the HTTP routes, over the backend traits:
//! [`JobService`] holds the backends and limits. Knows nothing of actix or
//! apalis; the HTTP layer translates requests and [`JobError`]s.
//!
//! - this file   status, one result, the ZIP of all of them, readiness
//! - `staging`   a request's uploads examined and stored as they arrive
//! - `submit`    staged uploads + recipe → a recorded, enqueued job
//! - `idempotency` claiming an `Idempotency-Key` when a submission starts
//! - `release`   fair scheduling: a job's images to the queue a few at a time
//! - `purge`     deleting a job; purging expired or deleted ones
//! - `events`    the process's hub of live job events; `watch` one watcher
//! - `webhooks`  a job's webhook checked; its deliveries relayed and made
//! - `admin`     the operator's view (workers, queues, jobs, failures) and actions
//! - `keys`      API keys: authenticating a token; managing keys
//! - `slots`     the caps on ZIPs streamed and uploads received at once,
//!   overall and per tenant
//! - `error`     [`JobError`], what every operation here can fail with
//!
//! Every operation on an existing job takes an [`Access`]: a job outside it
//! is answered exactly as a job that does not exist.

mod admin;
mod error;
mod events;
mod examine;
mod gauges;
mod idempotency;
pub mod keys;
mod purge;
mod quotas;
mod release;
mod slots;
mod staging;
mod submit;
mod watch;
mod webhooks;

pub use admin::{Cancelled, FailureGroup, Overview, QueueInfo};
pub use error::JobError;
pub use events::EventHub;
pub use examine::{Content, Upload};
pub use idempotency::Claimed;
pub use keys::{KeyError, KeyService};
pub use release::{Paced, Releaser};
pub use slots::Slot;
use slots::{Busy, Slots};
pub use staging::{Keep, Staging};
pub use submit::{Accepted, AcceptedImage, Submitted};
pub use watch::{Frame, KEEP_ALIVE};
pub use webhooks::{Deliverer, Secrets, WebhookParts};

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use crate::archive;
use crate::auth::{Access, Tenant};
use crate::jobs::intake::Limits;
use crate::jobs::status::{aggregate, JobStatus, LinkKind, Links};
use crate::jobs::{ImageEntry, ImageState, JobId, MANIFEST_NAME};
use crate::meta::{JobRecord, MetaStore, TenantStore};
use crate::queue::Producer;
use crate::store::{ObjectStore, ObjectStream};

/// How long a tenant refused a download slot is asked to wait.
const DOWNLOAD_RETRY_AFTER_SECS: u64 = 5;
/// How long a client refused a submission slot is asked to wait: one of its
/// submissions in progress usually ends within it.
const SUBMISSION_RETRY_AFTER_SECS: u64 = 1;

/// One dependency's health, for readiness. `error` is for operators only
/// (it may name hosts and paths).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub error: Option<String>,
}

/// Fields are private to this module and its children (`submit`, `purge`).
/// Cloning is cheap (shared backends), for work that must outlive a request.
#[derive(Clone)]
pub struct JobService {
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    tenants: Arc<dyn TenantStore>,
    queue: Arc<dyn Producer>,
    release: Releaser,
    limits: Limits,
    ttl: Duration,
    links: Arc<dyn Links>,
    /// One slot per ZIP being streamed (each holds a blocking thread).
    downloads: Arc<Slots<Tenant>>,
    /// One slot per submission being received and recorded, per tenant (or
    /// client address in open mode).
    submissions: Arc<Slots<String>>,
    events: EventHub,
    /// `None` where the service sends no webhooks (unit tests).
    webhooks: Option<WebhookParts>,
    /// The operator's view (`admin`); `None` in unit tests.
    admin: Option<Arc<dyn crate::meta::AdminView>>,
}

impl JobService {
    /// `ttl`: how long a job and its files are kept after submission;
    /// `links`: where answers point clients to (the HTTP layer's routes).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn ObjectStore>,
        meta: Arc<dyn MetaStore>,
        tenants: Arc<dyn TenantStore>,
        queue: Arc<dyn Producer>,
        events: EventHub,
        limits: Limits,
        ttl: Duration,
        links: Arc<dyn Links>,
    ) -> Self {
        JobService {
            events,
            release: Releaser::new(meta.clone(), queue.clone(), limits.queued_per_tenant),
            store,
            meta,
            tenants,
            queue,
            downloads: Arc::new(Slots::new(
                Some(limits.max_downloads),
                limits.max_downloads_per_tenant,
            )),
            submissions: Arc::new(Slots::new(None, limits.max_submissions_per_tenant)),
            limits,
            ttl,
            links,
            webhooks: None,
            admin: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot for one submission of `subject` (a tenant, or a client address
    /// in open mode), held until it is answered; refused at once when the
    /// subject has `IMGPIPE_MAX_SUBMISSIONS_PER_TENANT` in progress, so that
    /// a burst of one client's POSTs cannot take the API's cores and the
    /// metadata store's writes from everyone else.
    pub fn submission_slot(&self, subject: &str) -> Result<Slot<String>, JobError> {
        self.submissions
            .take(&subject.to_string())
            .map_err(|busy| match busy {
                Busy::All { limit } | Busy::Tenant { limit } => JobError::QuotaExceeded {
                    quota: "concurrent_submissions",
                    limit: u64::try_from(limit).unwrap_or(u64::MAX),
                    used: u64::try_from(limit).unwrap_or(u64::MAX),
                    retry_after: SUBMISSION_RETRY_AFTER_SECS,
                },
            })
    }

    /// Fair scheduling's releases (for the worker wrapper and the sweep).
    pub fn releaser(&self) -> Releaser {
        self.release.clone()
    }

    /// The job, if it exists and `access` covers it: another tenant's job is
    /// "not found", after the same one read as a job that exists.
    async fn record(&self, id: &str, access: &Access) -> Result<JobRecord, JobError> {
        let job_id = parse_job_id(id)?;
        self.meta
            .load(job_id)
            .await?
            .filter(|record| access.covers(&record.job.tenant))
            .ok_or_else(|| JobError::JobNotFound(id.to_string()))
    }

    pub async fn status(&self, id: &str, access: &Access) -> Result<JobStatus, JobError> {
        let record = self.record(id, access).await?;
        let mut status = aggregate(
            &record.job,
            &record.progress,
            self.links.as_ref(),
            LinkKind::Shareable,
        );
        status.webhook = self.webhook_status(&record.job).await;
        Ok(status)
    }

    /// One processed image, streamed from storage.
    pub async fn result_image(
        &self,
        id: &str,
        index: usize,
        access: &Access,
    ) -> Result<(ObjectStream, ImageEntry), JobError> {
        let record = self.record(id, access).await?;
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
        access: &Access,
    ) -> Result<
        (
            JobStatus,
            impl futures::Stream<Item = std::io::Result<bytes::Bytes>>,
        ),
        JobError,
    > {
        let record = self.record(id, access).await?;
        // Plain links: the manifest and a 409's status reach whoever holds a
        // signed download link, which must not mint fresh links from it.
        let status = aggregate(
            &record.job,
            &record.progress,
            self.links.as_ref(),
            LinkKind::Plain,
        );
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
        let permit = self
            .downloads
            .take(&record.job.tenant)
            .map_err(|busy| match busy {
                Busy::All { limit } => JobError::DownloadsBusy { limit },
                Busy::Tenant { limit } => JobError::QuotaExceeded {
                    quota: "concurrent_downloads",
                    limit: u64::try_from(limit).unwrap_or(u64::MAX),
                    used: u64::try_from(limit).unwrap_or(u64::MAX),
                    retry_after: DOWNLOAD_RETRY_AFTER_SECS,
                },
            })?;
        let stream = archive::stream(
            self.store.clone(),
            entries,
            MANIFEST_NAME.to_string(),
            manifest,
            self.limits.download_pace,
            permit,
        )
        .inspect(|chunk| {
            if let Ok(bytes) = chunk {
                metrics::counter!(crate::telemetry::ZIP_BYTES).increment(bytes.len() as u64);
            }
        });
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

async fn with_deadline<T, E: std::fmt::Display>(
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(3), fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".to_string()),
    }
}

async fn delete_all(store: &dyn ObjectStore, keys: Vec<String>) {
    for key in keys {
        if let Err(e) = store.delete(&key).await {
            log::warn!("could not delete {key}: {e}");
        }
    }
}

//! Submitting a job: every upload checked (examined, and stored, as it
//! arrived: see `staging`), the job recorded and its first tasks enqueued
//! (one per image; the rest follow, see `release`). All or nothing: a
//! refused submission leaves nothing behind (what it stored is removed
//! before it is answered; after a backend's failure, in the background).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::idempotency::Claimed;
use super::staging::Staging;
use super::JobError;
use super::{delete_all, JobService};
use crate::auth::idempotency::{judge, Completed, Fingerprint, Verdict};
use crate::auth::Tenant;
use crate::codec::OutputFormat;
use crate::jobs::admission::{self, Quotas};
use crate::jobs::names::unique_entry_names;
use crate::jobs::pacing;
use crate::jobs::status::{JobState, LinkKind};
use crate::jobs::webhook::Webhook;
use crate::jobs::{ImageEntry, Job, JobId, Recipe, MANIFEST_NAME};
use crate::meta::Doomed;
use crate::ops::Chain;
use crate::queue::new_task_id;

/// The answer to a submission: the 202 body, exactly as first sent (a
/// repeated `Idempotency-Key` gets the same bytes again).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub job_id: String,
    pub status_url: String,
    /// JSON of [`Accepted`].
    pub body: String,
    /// An earlier request's answer, given again; no new job.
    pub replayed: bool,
}

/// An accepted submission.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub job_id: JobId,
    pub status: JobState,
    pub ops: Chain,
    pub status_url: String,
    pub download_url: String,
    pub events_url: String,
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

impl JobService {
    /// Judges the staged uploads and the request, then records the job
    /// (owned by `tenant`), taking its stored uploads over, and enqueues one
    /// task per image. Nothing is recorded or enqueued unless every file
    /// passes, and a refused submission's stored uploads are removed. With
    /// a `claim` (an `Idempotency-Key`), a request that repeats an earlier
    /// one gets its answer back, and one that differs is refused.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        quotas: Quotas,
        recipe: Recipe,
        webhook: Option<Webhook>,
        mut staging: Staging,
        claim: Option<Claimed>,
    ) -> Result<Submitted, JobError> {
        let judged = self
            .judge(tenant, quotas, recipe, webhook, &mut staging, claim)
            .await;
        match judged {
            Ok(Judged::Accept(accepted)) => {
                // The rest runs as a task of its own: a client that goes
                // away now must not cancel it between recording the job and
                // recording its Idempotency-Key (a retry would then make a
                // second job).
                let this = self.clone();
                tokio::spawn(async move { this.commit(*accepted, staging).await })
                    .await
                    .map_err(|e| JobError::Internal(format!("submission crashed: {e}")))?
            }
            Ok(Judged::Replay(answer)) => {
                staging.abandon().await;
                Ok(answer)
            }
            Err(refused) => {
                staging.abandon().await;
                Err(refused)
            }
        }
    }

    /// Everything decided before a job is recorded: the uploads' checks, a
    /// repeated request's answer, quotas and cost.
    async fn judge(
        &self,
        tenant: &Tenant,
        quotas: Quotas,
        recipe: Recipe,
        webhook: Option<Webhook>,
        staging: &mut Staging,
        claim: Option<Claimed>,
    ) -> Result<Judged, JobError> {
        if staging.is_empty() {
            return Err(JobError::NoFiles);
        }
        if staging.len() > self.limits.max_files {
            return Err(JobError::TooManyFiles {
                limit: self.limits.max_files,
            });
        }
        let limits = self.limits;
        // Each was examined as it arrived; the first problem, in the files'
        // order, refuses the job.
        let examining = Instant::now();
        let mut uploads = Vec::with_capacity(staging.len());
        let (mut inspected, mut digests) = (Vec::new(), Vec::new());
        for (upload, examined) in staging.examined().await? {
            if let Some(digest) = examined.digest {
                digests.push((upload.filename.clone(), digest));
            }
            inspected.push(examined.inspected);
            uploads.push(upload);
        }
        let examined = examining.elapsed();
        // A webhook is part of what was asked (jobs without one keep the
        // fingerprint they had before webhooks).
        let asked = match &webhook {
            None => serde_json::to_string(&recipe),
            Some(hook) => serde_json::to_string(&(&recipe, hook)),
        };
        let fingerprint = asked
            .map(|r| Fingerprint::of(&r, &digests))
            .map_err(|e| JobError::Internal(format!("recipe: {e}")))?;
        let mut claim = claim;
        if let Some(earlier) = claim.as_mut().and_then(|c| c.earlier.take()) {
            return match judge(earlier, &fingerprint) {
                Verdict::Replay(done) => Ok(Judged::Replay(Submitted {
                    status_url: done
                        .job_id
                        .parse()
                        .map(|id| self.links.status(id))
                        .unwrap_or_default(),
                    job_id: done.job_id,
                    body: done.response,
                    replayed: true,
                })),
                Verdict::Mismatch => Err(JobError::IdempotencyMismatch),
            };
        }

        // Quotas, once the files are measured (and a repeated request has
        // had its earlier answer), before the job is recorded.
        let bytes = inspected.iter().map(|i| i.size_bytes).sum();
        let active = self
            .check_usage(tenant, uploads.len(), bytes, quotas)
            .await?;
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let output_formats: Vec<OutputFormat> = inspected
            .iter()
            .map(|i| recipe.format.unwrap_or(i.format.default_output()))
            .collect();
        // Cost admission, per image, before anything is recorded or enqueued.
        let mut costliest: f64 = 0.0;
        for ((upload, info), format) in uploads.iter().zip(&inspected).zip(&output_formats) {
            let seconds = admission::admit(&recipe, *format, info.width, info.height, limits.cost)
                .map_err(|problem| JobError::TooCostly {
                    file: Some(upload.filename.clone()),
                    problem,
                })?;
            costliest = costliest.max(seconds);
        }
        let lane = pacing::lane(active, uploads.len(), costliest, limits.priority);
        let names = unique_entry_names(
            uploads
                .iter()
                .zip(&output_formats)
                .map(|(u, f)| (u.filename.as_str(), f.extension())),
            &[MANIFEST_NAME],
        );
        let job = Job {
            id: staging.job_id(),
            recipe,
            created_at: now,
            expires_at: now + ttl,
            tenant: tenant.clone(),
            idempotency_key: claim.as_ref().map(|c| c.key.as_str().to_string()),
            lane,
            webhook,
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
        Ok(Judged::Accept(Box::new(Accept {
            job,
            claim,
            fingerprint,
            examined,
        })))
    }

    /// Waits for the uploads to be stored, records the job, enqueues its
    /// tasks and records the answer under the claim, if any. All or nothing.
    async fn commit(&self, accepted: Accept, mut staging: Staging) -> Result<Submitted, JobError> {
        let Accept {
            job,
            claim,
            fingerprint,
            examined,
        } = accepted;
        let storing = Instant::now();
        // On an error, dropping the staging removes what it stored.
        staging.finish().await?;
        let stored = storing.elapsed();
        let recording = Instant::now();
        let job = job.recorded_at(Utc::now());
        // Not recorded (or, if only the reply was lost, recorded without
        // tasks): either way the job must go, inputs included.
        self.meta
            .create(&job)
            .await
            .inspect_err(|_| self.discard(&job))?;
        let recorded = recording.elapsed();
        let enqueuing = Instant::now();
        // Without its first tasks the job would wait for the sweep. Undo it;
        // should they have been pushed after all (a lost reply), they are
        // forgotten too, and a worker that got one first drops it (no job).
        self.release
            .start(&job)
            .await
            .inspect_err(|_| self.discard(&job))?;
        Stages {
            examined,
            stored,
            recorded,
            enqueued: enqueuing.elapsed(),
        }
        .report(&job);

        let accepted = Accepted {
            job_id: job.id,
            status: JobState::Queued,
            ops: job.recipe.ops.clone(),
            status_url: self.links.status(job.id),
            download_url: self.links.download(&job, LinkKind::Shareable),
            events_url: self.links.events(&job, LinkKind::Shareable),
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
        };
        let body = serde_json::to_string(&accepted)
            .map_err(|e| JobError::Internal(format!("answer: {e}")))?;
        if let Some(Claimed {
            tenant,
            key,
            nonce,
            guard,
            ..
        }) = claim
        {
            let done = Completed {
                fingerprint,
                job_id: job.id.to_string(),
                response: body.clone(),
            };
            match self
                .tenants
                .complete_submission(&tenant, &key, &nonce, &done, job.expires_at)
                .await
            {
                Ok(true) => guard.into_iter().for_each(|g| g.disarm()),
                // The lease lapsed (an upload slower than it) and another
                // request holds the key: both jobs exist; that one answers.
                Ok(false) => {
                    guard.into_iter().for_each(|g| g.disarm());
                    log::warn!(
                        "job {}: its Idempotency-Key was taken over after its claim lapsed",
                        job.id
                    );
                }
                // The job exists and the client gets its answer; only a
                // retry of this request would not be recognised.
                Err(e) => log::warn!("job {}: could not record its Idempotency-Key: {e}", job.id),
            }
        }
        metrics::counter!(crate::telemetry::JOBS_SUBMITTED).increment(1);
        metrics::counter!(crate::telemetry::UPLOAD_BYTES).increment(job.input_bytes());
        Ok(Submitted {
            job_id: job.id.to_string(),
            status_url: accepted.status_url,
            body,
            replayed: false,
        })
    }

    /// Removes what a submission that failed once recorded left behind:
    /// the job, any task that was pushed, and its inputs. In the background:
    /// the client's 5xx must not wait on a backend that is failing anyway.
    fn discard(&self, job: &Job) {
        let (store, meta, queue, id, keys) = (
            self.store.clone(),
            self.meta.clone(),
            self.queue.clone(),
            job.id,
            input_keys(job),
        );
        let task_ids = Doomed::of(job).task_ids;
        tokio::spawn(async move {
            if let Err(e) = queue.forget(&task_ids).await {
                log::warn!("job {id}: could not forget the tasks of a refused submission: {e}");
            }
            if let Err(e) = meta.remove(id).await {
                log::warn!("job {id}: could not remove the record of a refused submission: {e}");
            }
            delete_all(store.as_ref(), keys).await;
        });
    }
}

/// What `judge` decided.
enum Judged {
    Accept(Box<Accept>),
    /// An earlier request's answer, given again.
    Replay(Submitted),
}

/// A submission accepted, its job not yet recorded.
struct Accept {
    job: Job,
    claim: Option<Claimed>,
    fingerprint: Fingerprint,
    examined: Duration,
}

/// How long an accepted submission's stages took once its body was in:
/// where a slow POST spends its time (storage, in the distributed shape).
struct Stages {
    examined: Duration,
    stored: Duration,
    recorded: Duration,
    enqueued: Duration,
}

impl Stages {
    /// Into `telemetry::SUBMISSION_STAGE` and the job's log line.
    fn report(&self, job: &Job) {
        for (stage, took) in [
            ("examine", self.examined),
            ("store", self.stored),
            ("record", self.recorded),
            ("enqueue", self.enqueued),
        ] {
            metrics::histogram!(crate::telemetry::SUBMISSION_STAGE, "stage" => stage)
                .record(took.as_secs_f64());
        }
        let ms = |took: Duration| took.as_secs_f64() * 1000.0;
        log::info!(
            "job {} accepted: {} image(s), ops {}, {} lane; examined in {:.1} ms, \
             stored in {:.1} ms, recorded in {:.1} ms, enqueued in {:.1} ms",
            job.id,
            job.images.len(),
            job.recipe.ops,
            job.lane.name(),
            ms(self.examined),
            ms(self.stored),
            ms(self.recorded),
            ms(self.enqueued),
        );
    }
}

fn input_keys(job: &Job) -> Vec<String> {
    job.images.iter().map(|i| job.input_key(i.index)).collect()
}

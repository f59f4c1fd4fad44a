//! Deleting a job and purging the ones that expired or were deleted: their
//! tasks, their files, then their records. Idempotent, safe to run in every
//! process at once; an interrupted purge is found again by the next pass.

use std::time::Duration;

use chrono::Utc;

use super::JobError;
use super::{parse_job_id, JobService};
use crate::auth::Access;
use crate::meta::Doomed;

/// Jobs purged per pass; the next pass takes the rest.
const PURGE_BATCH: usize = 100;
/// How long [`JobService::delete`] waits for the purge it starts.
const PURGE_DEADLINE: Duration = Duration::from_secs(10);

impl JobService {
    /// Deletes a job: from this moment it is gone for every route, and its
    /// queued tasks will not run. Its files, tasks and records are purged now,
    /// or by the next purge pass if a backend is failing.
    pub async fn delete(&self, id: &str, access: &Access) -> Result<(), JobError> {
        let job_id = parse_job_id(id)?;
        // Ownership first: another tenant's job is "not found", untouched.
        self.record(id, access).await?;
        let job = self
            .meta
            .mark_deleted(job_id)
            .await?
            .ok_or_else(|| JobError::JobNotFound(id.to_string()))?;
        // Its Idempotency-Key is free at once, not only once it is purged
        // (a retry must not be answered with a deleted job).
        if let Some((tenant, key)) = &Doomed::of(&job).submission {
            if let Err(e) = self
                .tenants
                .forget_submission(tenant, key, &job_id.to_string())
                .await
            {
                log::warn!("job {job_id}: its Idempotency-Key stays until the purge: {e}");
            }
        }
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
        if let Some((tenant, key)) = &job.submission {
            self.tenants
                .forget_submission(tenant, key, &job.id.to_string())
                .await?;
        }
        self.meta.remove(job.id).await?;
        log::info!("job {}: purged", job.id);
        Ok(true)
    }
}

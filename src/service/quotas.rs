//! A tenant's quotas at submission: which apply to a caller, the rate of
//! its submissions, and what its live jobs use. The rules are
//! `jobs::admission`'s; this file reads the counters they are applied to.
//! Must not: record or store anything but the rate window's count.

use chrono::Utc;

use super::{JobError, JobService};
use crate::auth::{Caller, Tenant};
use crate::jobs::admission::{self, Quotas};

impl JobService {
    /// The quotas a caller is held to: the server's, overridden by its key's.
    pub fn quotas_for(&self, caller: &Caller) -> Quotas {
        self.limits.quota.with(&caller.quotas)
    }

    /// Counts a submission against `subject`'s rate quota (a tenant, or a
    /// client address in open mode); over it → [`JobError::QuotaExceeded`].
    pub async fn count_submission(&self, subject: &str, quotas: Quotas) -> Result<(), JobError> {
        let limit = quotas.jobs_per_minute;
        let (start, retry_after) = admission::minute_window(Utc::now().timestamp_millis());
        let (counted, used) = self
            .tenants
            .count_in_window(subject, start, 60_000, limit)
            .await?;
        if counted {
            Ok(())
        } else {
            Err(JobError::QuotaExceeded {
                quota: "jobs_per_minute",
                limit,
                used,
                retry_after,
            })
        }
    }

    /// Refuses a job of `images` images and `bytes` bytes of uploads when
    /// `tenant` would pass its quota of images queued or running, or of
    /// bytes stored → [`JobError::QuotaExceeded`]. `Ok` carries the images
    /// the tenant has queued or running now.
    pub async fn check_usage(
        &self,
        tenant: &Tenant,
        images: usize,
        bytes: u64,
        quotas: Quotas,
    ) -> Result<u64, JobError> {
        let usage = self.meta.usage(tenant).await?;
        let images = u64::try_from(images).unwrap_or(u64::MAX);
        if !admission::fits(usage.active_images, images, quotas.active_images) {
            return Err(JobError::QuotaExceeded {
                quota: "active_images",
                limit: quotas.active_images,
                used: usage.active_images,
                retry_after: admission::ACTIVE_IMAGES_RETRY_AFTER_SECS,
            });
        }
        if !admission::fits(usage.stored_bytes, bytes, quotas.stored_bytes) {
            return Err(JobError::QuotaExceeded {
                quota: "stored_bytes",
                limit: quotas.stored_bytes,
                used: usage.stored_bytes,
                retry_after: admission::STORED_BYTES_RETRY_AFTER_SECS,
            });
        }
        Ok(usage.active_images)
    }
}

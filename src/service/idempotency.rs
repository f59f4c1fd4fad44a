//! The I/O side of idempotent submissions: claiming an `Idempotency-Key`
//! when a request starts, and giving the claim up if the request fails or
//! its client goes away. The decisions are in `auth::idempotency`.

use std::sync::Arc;

use chrono::Utc;

use super::{JobError, JobService};
use crate::auth::idempotency::{Claim, Completed, IdempotencyKey, PENDING_LEASE};
use crate::auth::Tenant;
use crate::jobs::JobId;
use crate::meta::TenantStore;

/// A request's hold on its key, taken before its body is read.
pub struct Claimed {
    pub(super) tenant: Tenant,
    pub(super) key: IdempotencyKey,
    /// Proves the claim is this request's: only it may complete or release it.
    pub(super) nonce: String,
    /// `Some`: an earlier request with this key already succeeded.
    pub(super) earlier: Option<Completed>,
    pub(super) guard: Option<ReleaseOnDrop>,
}

/// Releases a fresh claim unless the submission completed: on an error, and
/// also when the request is dropped mid-upload (the client went away).
pub(super) struct ReleaseOnDrop {
    store: Arc<dyn TenantStore>,
    tenant: Tenant,
    key: IdempotencyKey,
    nonce: String,
}

impl ReleaseOnDrop {
    /// The claim became a completed record: nothing to release.
    pub(super) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let (store, tenant, key, nonce) = (
            self.store.clone(),
            self.tenant.clone(),
            self.key.clone(),
            self.nonce.clone(),
        );
        // Drop cannot wait; a release that fails leaves the claim to its lease.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.release_submission(&tenant, &key, &nonce).await {
                    log::warn!(
                        "could not release an idempotency claim (it lapses on its own): {e}"
                    );
                }
            });
        }
    }
}

impl JobService {
    /// Claims `key` for `tenant` before the request's body is read.
    /// Another request holding it → [`JobError::SubmissionInProgress`].
    pub async fn claim(&self, tenant: &Tenant, key: IdempotencyKey) -> Result<Claimed, JobError> {
        let nonce = ulid::Ulid::new().to_string();
        let lease = chrono::Duration::from_std(PENDING_LEASE).unwrap_or(chrono::Duration::MAX);
        // Twice at most: a record whose job was deleted is forgotten, then
        // the key is free.
        for _ in 0..2 {
            let now = Utc::now();
            let claim = self
                .tenants
                .claim_submission(tenant, &key, &nonce, now + lease, now)
                .await?;
            let earlier = match claim {
                Claim::Pending => return Err(JobError::SubmissionInProgress),
                Claim::Done(done) => done,
                Claim::Claimed => {
                    return Ok(Claimed {
                        tenant: tenant.clone(),
                        key: key.clone(),
                        guard: Some(ReleaseOnDrop {
                            store: self.tenants.clone(),
                            tenant: tenant.clone(),
                            key,
                            nonce: nonce.clone(),
                        }),
                        nonce,
                        earlier: None,
                    })
                }
            };
            if self.job_exists(&earlier.job_id).await? {
                return Ok(Claimed {
                    tenant: tenant.clone(),
                    key,
                    nonce,
                    earlier: Some(earlier),
                    guard: None,
                });
            }
            self.tenants
                .forget_submission(tenant, &key, &earlier.job_id)
                .await?;
        }
        // Forgotten, then taken again at once by another request.
        Err(JobError::SubmissionInProgress)
    }

    async fn job_exists(&self, id: &str) -> Result<bool, JobError> {
        let Ok(id) = id.parse::<JobId>() else {
            return Ok(false);
        };
        Ok(self.meta.load(id).await?.is_some())
    }
}

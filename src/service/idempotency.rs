//! The I/O side of idempotent submissions: claiming an `Idempotency-Key`
//! when a request starts, and giving the claim up if the request fails or
//! its client goes away. The decisions are in `auth::idempotency`.

use std::sync::Arc;

use chrono::Utc;

use super::{JobError, JobService};
use crate::auth::idempotency::{Claim, Completed, IdempotencyKey, PENDING_LEASE};
use crate::auth::Tenant;
use crate::meta::TenantStore;

/// A request's hold on its key, taken before its body is read.
pub struct Claimed {
    pub(super) tenant: Tenant,
    pub(super) key: IdempotencyKey,
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
}

impl ReleaseOnDrop {
    /// The claim became a completed record: nothing to release.
    pub(super) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let (store, tenant, key) = (self.store.clone(), self.tenant.clone(), self.key.clone());
        // Drop cannot wait; a release that fails leaves the claim to its lease.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.release_submission(&tenant, &key).await {
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
        let now = Utc::now();
        let lease = chrono::Duration::from_std(PENDING_LEASE).unwrap_or(chrono::Duration::MAX);
        let claim = self
            .tenants
            .claim_submission(tenant, &key, now + lease, now)
            .await?;
        let (earlier, guard) = match claim {
            Claim::Pending => return Err(JobError::SubmissionInProgress),
            Claim::Done(done) => (Some(done), None),
            Claim::Claimed => (
                None,
                Some(ReleaseOnDrop {
                    store: self.tenants.clone(),
                    tenant: tenant.clone(),
                    key: key.clone(),
                }),
            ),
        };
        Ok(Claimed {
            tenant: tenant.clone(),
            key,
            earlier,
            guard,
        })
    }
}

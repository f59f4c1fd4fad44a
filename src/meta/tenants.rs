//! API keys and idempotency records: the tenants' side of the metadata
//! store, kept in the same backend as the jobs (SQLite or Redis) so every
//! process — and `imgpipe keys`, while the server runs — sees the same keys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MetaError;
use crate::auth::idempotency::{Claim, Completed, IdempotencyKey};
use crate::auth::{ApiKey, KeyId, Tenant};

#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Stores a new key; `false` if a key with its id or hash already exists.
    async fn add_key(&self, key: &ApiKey) -> Result<bool, MetaError>;
    /// The key whose token hashes to `hash`, revoked or not.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, MetaError>;
    /// Every key, revoked ones included, oldest first.
    async fn keys(&self) -> Result<Vec<ApiKey>, MetaError>;
    /// Marks a key revoked; `false` if there is no such active key.
    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, MetaError>;

    /// Claims `key` for a request that is starting, atomically: the first
    /// claimant gets [`Claim::Claimed`] and holds the claim under `nonce`,
    /// until it completes or releases it or `lease_until` passes (its
    /// process died).
    async fn claim_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, MetaError>;
    /// Records the answer of the request holding the claim under `nonce`,
    /// kept until `until` (its job's expiry). `false` if another request
    /// holds the key now (this one's lease lapsed) or it is completed.
    async fn complete_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
        done: &Completed,
        until: DateTime<Utc>,
    ) -> Result<bool, MetaError>;
    /// Gives up the claim held under `nonce` (its request failed), so the
    /// client may retry. Leaves anyone else's claim and a completed record alone.
    async fn release_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
    ) -> Result<(), MetaError>;
    /// Counts one more event for `subject` in the fixed window starting at
    /// `window_start` (Unix ms, `window_ms` long), atomically, unless it
    /// already has `limit`: returns whether it was counted, and the count.
    async fn count_in_window(
        &self,
        subject: &str,
        window_start: i64,
        window_ms: i64,
        limit: u64,
    ) -> Result<(bool, u64), MetaError>;
    /// Forgets the completed record of `job_id` (the job was deleted or purged).
    async fn forget_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        job_id: &str,
    ) -> Result<(), MetaError>;
}

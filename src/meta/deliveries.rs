//! Webhook deliveries as the stores keep them: one per event a job's
//! webhook wants, made by the store in the same atomic step as the event
//! (see `jobs::webhook`), so a crash between an event and its delivery
//! cannot lose the delivery. A delivery outlives its job until it ends.
//!
//! Every step is fenced by the delivery's attempt count and leased by its
//! `next_at`, so that deliveries handed out twice (two processes, a lost
//! reply, a dead worker) are tried once per attempt and a dead worker's
//! are tried again when its lease runs out. What to do after a try is
//! `webhooks::retry`'s decision; the stores only record it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MetaError;
use crate::jobs::JobId;

/// One event of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub job_id: JobId,
    pub seq: u64,
}

pub use crate::jobs::webhook::DeliveryState;

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub key: DeliveryKey,
    /// The event's name (`job.completed`, …).
    pub kind: String,
    pub url: String,
    /// The job's tenant, whose secret signs it.
    pub tenant: String,
    /// The event as stored (JSON).
    pub event: String,
    pub made_at: DateTime<Utc>,
    /// Tries started so far.
    pub attempts: u32,
    pub state: DeliveryState,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When it is next tried (or its current try's lease runs out).
    pub next_at: Option<DateTime<Utc>>,
    /// The payload as first sent: every retry sends the same bytes.
    pub body: Option<String>,
}

/// How one try ended, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct TryRecord {
    pub state: DeliveryState,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The next try, for a delivery still pending.
    pub next_at: DateTime<Utc>,
    pub body: String,
}

#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Up to `limit` pending deliveries due by `now`, each leased until
    /// `lease_until` (so no other caller takes it meanwhile), with the
    /// number of the attempt to make: their tries so far plus one.
    async fn take_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DeliveryKey, u32)>, MetaError>;
    /// Starts try `attempt` of a pending delivery that has made exactly
    /// `attempt - 1`, leasing it until `lease_until`; `None` if that try
    /// was started already (a duplicate task) or the delivery has ended.
    async fn claim(
        &self,
        key: DeliveryKey,
        attempt: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Delivery>, MetaError>;
    /// Records how try `attempt` ended; refused (`false`) if another try
    /// has started since.
    async fn record(
        &self,
        key: DeliveryKey,
        attempt: u32,
        result: &TryRecord,
    ) -> Result<bool, MetaError>;
    /// The job's latest `limit` deliveries (newest first) and how many it
    /// has in each state.
    async fn deliveries(
        &self,
        job: JobId,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Vec<(DeliveryState, u64)>), MetaError>;
}

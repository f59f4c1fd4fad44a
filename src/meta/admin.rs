//! The operator's view of the metadata (the admin page): the latest jobs of
//! every tenant, images settled per minute, and the latest failures with
//! their reasons. The stores keep the last two as images settle (a trigger,
//! the progress script), so reading them scans nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::MetaError;
use crate::jobs::JobId;

/// How many failures the stores keep.
pub const FAILURES_KEPT: usize = 500;

/// One job, as the admin page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    pub job_id: JobId,
    pub tenant: String,
    pub created_at: DateTime<Utc>,
    pub images: u64,
    pub input_bytes: u64,
    pub queued: u64,
    pub processing: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// When its final event was written.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Images settled in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Minute {
    pub minute: DateTime<Utc>,
    pub succeeded: u64,
    pub failed: u64,
}

/// One failed image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub job_id: JobId,
    pub index: usize,
    pub error: String,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait AdminView: Send + Sync + 'static {
    /// The latest `limit` live jobs, newest first.
    async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobSummary>, MetaError>;
    /// Images settled per minute since `since` (minutes with none left out).
    async fn settled_since(&self, since: DateTime<Utc>) -> Result<Vec<Minute>, MetaError>;
    /// The latest `limit` failures, newest first.
    async fn recent_failures(&self, limit: usize) -> Result<Vec<Failure>, MetaError>;
}

/// Unix ms → the minute's number, as the stores key them.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

pub fn minute_start(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(minute.saturating_mul(60_000)).unwrap_or_default()
}

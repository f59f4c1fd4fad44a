//! The admin view in Redis: the latest jobs from the expiry index (every
//! job has the same lifetime, so the latest expiry is the latest job), and
//! what the progress script keeps as images settle (`SET_PROGRESS`):
//! `<prefix>:settled:<minute>` (a hash of state → count, kept a day) and
//! `<prefix>:failures` (the latest failures, newest first).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::Deserialize;

use super::admin::{
    minute_of, minute_start, AdminView, Failure, JobSummary, Minute, FAILURES_KEPT,
};
use super::redis::{unavailable, RedisMeta};
use super::MetaError;
use crate::jobs::events::Event;
use crate::jobs::{Job, JobId};

#[derive(Deserialize)]
struct StoredFailure {
    job_id: JobId,
    index: usize,
    error: String,
    at: DateTime<Utc>,
}

#[async_trait]
impl AdminView for RedisMeta {
    async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobSummary>, MetaError> {
        let mut conn = self.conn.clone();
        let stop = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let ids: Vec<String> = conn
            .zrevrange(format!("{}:jobs:expiry", self.prefix), 0, stop)
            .await
            .map_err(unavailable)?;
        let ids: Vec<JobId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.get(self.job_key(*id))
                .cmd("HMGET")
                .arg(self.counts_key(*id))
                .arg(&["queued", "processing", "succeeded", "failed"])
                .lindex(self.events_key(*id), -1);
        }
        type Row = (Option<String>, Vec<Option<u64>>, Option<String>);
        let rows: Vec<Row> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await.map_err(unavailable)?
        };
        let mut jobs = Vec::new();
        for (record, counts, last) in rows {
            // Deleted (renamed) or expired meanwhile: not listed.
            let Some(job) = record.and_then(|r| serde_json::from_str::<Job>(&r).ok()) else {
                continue;
            };
            let count = |i: usize| counts.get(i).copied().flatten().unwrap_or(0);
            let finished_at = last
                .and_then(|e| serde_json::from_str::<Event>(&e).ok())
                .filter(|e| e.kind.is_final())
                .map(|e| e.at);
            jobs.push(JobSummary {
                job_id: job.id,
                tenant: job.tenant.as_str().to_string(),
                created_at: job.created_at,
                images: job.images.len() as u64,
                input_bytes: job.input_bytes(),
                queued: count(0),
                processing: count(1),
                succeeded: count(2),
                failed: count(3),
                finished_at,
            });
        }
        Ok(jobs)
    }

    async fn settled_since(&self, since: DateTime<Utc>) -> Result<Vec<Minute>, MetaError> {
        let first = minute_of(since.timestamp_millis());
        let last = minute_of(Utc::now().timestamp_millis());
        let minutes: Vec<i64> = (first..=last).collect();
        let mut pipe = redis::pipe();
        for minute in &minutes {
            pipe.cmd("HMGET")
                .arg(format!("{}:settled:{minute}", self.prefix))
                .arg(&["succeeded", "failed"]);
        }
        let counts: Vec<(Option<u64>, Option<u64>)> = if minutes.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?
        };
        Ok(minutes
            .into_iter()
            .zip(counts)
            .filter(|(_, (s, f))| s.is_some() || f.is_some())
            .map(|(minute, (s, f))| Minute {
                minute: minute_start(minute),
                succeeded: s.unwrap_or(0),
                failed: f.unwrap_or(0),
            })
            .collect())
    }

    async fn recent_failures(&self, limit: usize) -> Result<Vec<Failure>, MetaError> {
        let stop = isize::try_from(limit.min(FAILURES_KEPT))
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let rows: Vec<String> = self
            .conn
            .clone()
            .lrange(format!("{}:failures", self.prefix), 0, stop)
            .await
            .map_err(unavailable)?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str::<StoredFailure>(r).ok())
            .map(|f| Failure {
                job_id: f.job_id,
                index: f.index,
                error: f.error,
                at: f.at,
            })
            .collect())
    }
}

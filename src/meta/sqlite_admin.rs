//! The admin view in SQLite: `jobs` with `job_counts`, and the tables the
//! `image_settled` trigger of `migrations/20261206000000_admin.sql` keeps.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::admin::{minute_of, minute_start, AdminView, Failure, JobSummary, Minute};
use super::sqlite::{millis, unavailable, SqliteMeta};
use super::MetaError;

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.and_then(|t| t.parse().ok())
}

type JobRow = (
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

#[async_trait]
impl AdminView for SqliteMeta {
    async fn recent_jobs(&self, limit: usize) -> Result<Vec<JobSummary>, MetaError> {
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT j.id, j.tenant, j.created_at, j.image_count, j.input_bytes,
                    COALESCE(c.queued, 0), COALESCE(c.processing, 0),
                    COALESCE(c.succeeded, 0), COALESCE(c.failed, 0),
                    (SELECT json_extract(e.data, '$.at') FROM job_events e
                     WHERE e.job_id = j.id
                       AND e.type IN ('job.completed', 'job.completed_with_errors', 'job.failed'))
             FROM jobs j LEFT JOIN job_counts c ON c.job_id = j.id
             WHERE j.deleted = 0 AND j.expires_at > ?
             ORDER BY j.created_at DESC LIMIT ?",
        )
        .bind(millis(Utc::now()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, tenant, created, images, bytes, q, p, s, f, done)| {
                Some(JobSummary {
                    job_id: id.parse().ok()?,
                    tenant,
                    created_at: DateTime::from_timestamp_millis(created)?,
                    images: count(images),
                    input_bytes: count(bytes),
                    queued: count(q),
                    processing: count(p),
                    succeeded: count(s),
                    failed: count(f),
                    finished_at: time(done),
                })
            })
            .collect())
    }

    async fn settled_since(&self, since: DateTime<Utc>) -> Result<Vec<Minute>, MetaError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT minute, succeeded, failed FROM settled_per_minute WHERE minute >= ? ORDER BY minute",
        )
        .bind(minute_of(millis(since)))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(minute, s, f)| Minute {
                minute: minute_start(minute),
                succeeded: count(s),
                failed: count(f),
            })
            .collect())
    }

    async fn recent_failures(&self, limit: usize) -> Result<Vec<Failure>, MetaError> {
        let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT job_id, idx, error, at FROM recent_failures ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .filter_map(|(job, index, error, at)| {
                Some(Failure {
                    job_id: job.parse().ok()?,
                    index: usize::try_from(index).ok()?,
                    error,
                    at: at.parse().ok()?,
                })
            })
            .collect())
    }
}

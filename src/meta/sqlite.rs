//! Job metadata in SQLite (the embedded mode): table `jobs` holds each job's
//! record, table `images` each image's progress. The schema is in
//! `migrations/`, applied when the store opens. Fair scheduling's counters
//! are columns of `jobs`.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use tokio::sync::Notify;

use super::{Doomed, JobRecord, MetaError, MetaStore, Usage};
use crate::auth::Tenant;
use crate::backend_error::ErrorKind;
use crate::jobs::pacing::Held;
use crate::jobs::{ImageProgress, Job, JobId, Lane};

#[derive(Clone)]
pub struct SqliteMeta {
    pub(super) pool: SqlitePool,
    /// Rings when this process writes something that makes events, so its
    /// own event stream reads them at once instead of at its next poll.
    pub(super) wrote_events: Arc<Notify>,
}

pub(super) fn unavailable(e: sqlx::Error) -> MetaError {
    MetaError::unavailable("SQLite", e)
}

pub(super) fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> MetaError {
    move |e| MetaError::with_source(ErrorKind::Corrupt, what, e)
}

pub(super) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl SqliteMeta {
    /// Opens the database file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, MetaError> {
        let pool = crate::sqlite::open(path).await.map_err(unavailable)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| MetaError::unavailable(format!("migrating {}", path.display()), e))?;
        Ok(SqliteMeta {
            pool,
            wrote_events: Arc::default(),
        })
    }
}

#[async_trait]
impl MetaStore for SqliteMeta {
    async fn create(&self, job: &Job) -> Result<(), MetaError> {
        let record = serde_json::to_string(job).map_err(corrupt(format!("job {}", job.id)))?;
        let queued = ImageProgress::queued();
        let queued_json =
            serde_json::to_string(&queued).map_err(corrupt(format!("job {}", job.id)))?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO jobs
                 (id, record, created_at, expires_at, image_count, released, tenant, turn,
                  input_bytes, lane)
             VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
        )
        .bind(job.id.to_string())
        .bind(record)
        .bind(millis(job.created_at))
        .bind(millis(job.expires_at))
        .bind(job.images.len() as i64)
        .bind(job.tenant.as_str())
        .bind(millis(job.created_at))
        .bind(i64::try_from(job.input_bytes()).unwrap_or(i64::MAX))
        .bind(job.lane.name())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        for image in &job.images {
            sqlx::query(
                "INSERT INTO images (job_id, idx, state, attempts, progress) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(job.id.to_string())
            .bind(image.index as i64)
            .bind(queued.state.name())
            .bind(i64::from(queued.attempts))
            .bind(&queued_json)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        super::sqlite_deliveries::record_webhook(&mut tx, job).await?;
        super::sqlite_events::queued(&mut tx, job).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn load(&self, id: JobId) -> Result<Option<JobRecord>, MetaError> {
        // One read transaction: the job and its progress as of one moment.
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let record: Option<String> = sqlx::query_scalar(
            "SELECT record FROM jobs WHERE id = ? AND deleted = 0 AND expires_at > ?",
        )
        .bind(id.to_string())
        .bind(millis(Utc::now()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let job: Job = serde_json::from_str(&record).map_err(corrupt(format!("job {id}")))?;
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT idx, progress FROM images WHERE job_id = ?")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let mut progress = vec![None; job.images.len()];
        for (index, json) in rows {
            let p: ImageProgress =
                serde_json::from_str(&json).map_err(corrupt(format!("job {id} image {index}")))?;
            if let Some(slot) = usize::try_from(index)
                .ok()
                .and_then(|i| progress.get_mut(i))
            {
                *slot = Some(p);
            }
        }
        Ok(Some(JobRecord { job, progress }))
    }

    async fn is_live(&self, id: JobId) -> Result<bool, MetaError> {
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE id = ? AND deleted = 0 AND expires_at > ?",
        )
        .bind(id.to_string())
        .bind(millis(Utc::now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(live.is_some())
    }

    async fn image_progress(
        &self,
        id: JobId,
        index: usize,
    ) -> Result<Option<ImageProgress>, MetaError> {
        let json: Option<String> =
            sqlx::query_scalar("SELECT progress FROM images WHERE job_id = ? AND idx = ?")
                .bind(id.to_string())
                .bind(index as i64)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        json.map(|j| serde_json::from_str(&j).map_err(corrupt(format!("job {id} image {index}"))))
            .transpose()
    }

    async fn set_image_progress(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        let json =
            serde_json::to_string(progress).map_err(corrupt(format!("job {id} image {index}")))?;
        if progress.state.is_terminal() {
            return self.settle(id, index, progress, json).await;
        }
        // The rules of `MetaStore::set_image_progress` as one statement, so
        // they hold however many processes write at once.
        let written = super::sqlite_settle::progress_write(
            super::sqlite_settle::WRITE_PROGRESS,
            id,
            index,
            progress,
            json,
        )
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        let written = written.rows_affected() == 1;
        if written {
            self.wrote_events.notify_waiters();
        }
        Ok(written)
    }

    async fn reopen_image(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        let json =
            serde_json::to_string(progress).map_err(corrupt(format!("job {id} image {index}")))?;
        // The counts and the `image.retrying` event follow from the triggers.
        let written = super::sqlite_settle::progress_write(
            super::sqlite_settle::REOPEN,
            id,
            index,
            progress,
            json,
        )
        .execute(&self.pool)
        .await
        .map_err(unavailable)?
        .rows_affected()
            == 1;
        if written {
            self.wrote_events.notify_waiters();
        }
        Ok(written)
    }

    async fn mark_deleted(&self, id: JobId) -> Result<Option<Job>, MetaError> {
        let record: Option<(String, i64)> = sqlx::query_as(
            "UPDATE jobs SET deleted = 1 WHERE id = ? AND deleted = 0 RETURNING record, expires_at",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        if record.is_some() {
            self.wrote_events.notify_waiters();
        }
        match record {
            Some((json, expires_at)) if expires_at > millis(Utc::now()) => {
                let job = serde_json::from_str(&json).map_err(corrupt(format!("job {id}")))?;
                Ok(Some(job))
            }
            _ => Ok(None),
        }
    }

    async fn doomed(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Doomed>, MetaError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, record FROM jobs WHERE deleted = 1
             UNION ALL
             SELECT id, record FROM jobs WHERE expires_at <= ? AND deleted = 0
             LIMIT ?",
        )
        .bind(millis(now))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_str::<Job>(&json) {
                Ok(job) => Some(Doomed::of(&job)),
                Err(e) => {
                    log::warn!(
                        "job {id}: record unreadable ({e}); its objects cannot be listed and stay"
                    );
                    id.parse().ok().map(Doomed::unknown)
                }
            })
            .collect())
    }

    async fn note_taken(&self, id: JobId) -> Result<Option<Tenant>, MetaError> {
        // Jobs recorded before fair scheduling (image_count 0) have no tenant
        // column and nothing to release.
        let tenant: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE jobs SET taken = taken + 1
             WHERE id = ? AND deleted = 0 AND expires_at > ? AND image_count > 0
             RETURNING tenant",
        )
        .bind(id.to_string())
        .bind(millis(Utc::now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        tenant
            .flatten()
            .map(|t| {
                t.parse().map_err(|_| {
                    MetaError::new(ErrorKind::Corrupt, format!("job {id}: tenant {t:?}"))
                })
            })
            .transpose()
    }

    async fn backlog(&self, tenant: &Tenant, limit: usize) -> Result<Vec<Held>, MetaError> {
        let rows: Vec<(String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT id, image_count, released, taken, lane FROM jobs
             WHERE tenant = ? AND taken < image_count AND deleted = 0 AND expires_at > ?
             ORDER BY turn, created_at LIMIT ?",
        )
        .bind(tenant.as_str())
        .bind(millis(Utc::now()))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let count = |n: i64| usize::try_from(n).unwrap_or(0);
        Ok(rows
            .into_iter()
            .filter_map(|(id, total, released, taken, lane)| {
                Some(Held {
                    job: id.parse().ok()?,
                    total: count(total),
                    released: count(released),
                    taken: count(taken),
                    lane: Lane::named(&lane),
                })
            })
            .collect())
    }

    async fn tenants_with_backlog(&self, limit: usize) -> Result<Vec<Tenant>, MetaError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT tenant FROM jobs
             WHERE released < image_count AND deleted = 0 AND tenant IS NOT NULL LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    async fn task_ids(&self, id: JobId, range: Range<usize>) -> Result<Vec<String>, MetaError> {
        // SQLite's JSON functions read the few ids out of the record without
        // this process parsing all of it.
        let ids: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT json_extract(image.value, '$.task_id')
             FROM jobs, json_each(jobs.record, '$.images') AS image
             WHERE jobs.id = ? AND image.key >= ? AND image.key < ?
             ORDER BY image.key",
        )
        .bind(id.to_string())
        .bind(range.start as i64)
        .bind(range.end as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        ids.into_iter()
            .map(|id| {
                id.ok_or_else(|| MetaError::new(ErrorKind::Corrupt, "an image without a task id"))
            })
            .collect()
    }

    async fn mark_released(&self, id: JobId, upto: usize, turn: i64) -> Result<(), MetaError> {
        sqlx::query(
            "UPDATE jobs SET released = MAX(released, MIN(?, image_count)), turn = ? WHERE id = ?",
        )
        .bind(upto as i64)
        .bind(turn)
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    async fn usage(&self, tenant: &Tenant) -> Result<Usage, MetaError> {
        // One read transaction: both figures as of one moment.
        let now = millis(Utc::now());
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let (active, output): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE images.state NOT IN ('succeeded', 'failed')),
                    COALESCE(SUM(json_extract(images.progress, '$.output_bytes')), 0)
             FROM jobs JOIN images ON images.job_id = jobs.id
             WHERE jobs.tenant = ? AND jobs.deleted = 0 AND jobs.expires_at > ?",
        )
        .bind(tenant.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        let input: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(input_bytes), 0) FROM jobs
             WHERE tenant = ? AND deleted = 0 AND expires_at > ?",
        )
        .bind(tenant.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Usage {
            active_images: count(active),
            stored_bytes: count(input).saturating_add(count(output)),
        })
    }

    async fn remove(&self, id: JobId) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        for statement in [
            "DELETE FROM images WHERE job_id = ?",
            "DELETE FROM jobs WHERE id = ?",
            "DELETE FROM job_counts WHERE job_id = ?",
        ] {
            sqlx::query(statement)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        super::sqlite_events::forget_later(&mut tx, id).await?;
        super::sqlite_deliveries::forget(&mut tx, id).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn check(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

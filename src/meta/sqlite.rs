//! Job metadata in SQLite (the embedded mode): table `jobs` holds each job's
//! record, table `images` each image's progress. The schema is in
//! `migrations/`, applied when the store opens. Fair scheduling's counters
//! are columns of `jobs`.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Connection;
use tokio::sync::Notify;

use super::{Backlog, Doomed, JobRecord, MetaError, MetaStore, Usage};
use crate::auth::Tenant;
use crate::backend_error::ErrorKind;
use crate::jobs::{ImageProgress, Job, JobId};
use crate::sqlite::{Conn, Connections};

#[derive(Clone)]
pub struct SqliteMeta {
    pub(super) db: Arc<Connections>,
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
        let db = crate::sqlite::connections(path)
            .await
            .map_err(unavailable)?;
        let meta = SqliteMeta {
            db,
            wrote_events: Arc::default(),
        };
        sqlx::migrate!("./migrations")
            .run(&mut *meta.writer().await?)
            .await
            .map_err(|e| MetaError::unavailable(format!("migrating {}", path.display()), e))?;
        Ok(meta)
    }

    /// A connection for one statement or one transaction.
    pub(super) async fn conn(&self) -> Result<Conn<'_>, MetaError> {
        self.db.acquire().await.map_err(unavailable)
    }

    /// A connection for statements that write: with this process's write
    /// turn (see `sqlite::Connections::writer`).
    pub(super) async fn writer(&self) -> Result<Conn<'_>, MetaError> {
        self.db.writer().await.map_err(unavailable)
    }
}

#[async_trait]
impl MetaStore for SqliteMeta {
    async fn create(&self, job: &Job) -> Result<(), MetaError> {
        let record = serde_json::to_string(job).map_err(corrupt(format!("job {}", job.id)))?;
        let queued = ImageProgress::queued();
        let queued_json =
            serde_json::to_string(&queued).map_err(corrupt(format!("job {}", job.id)))?;
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await.map_err(unavailable)?;
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
        // Every image in one statement (one trip to the connection's thread,
        // however many images), as a JSON array of [index, task id].
        let images: Vec<(usize, &str)> = job
            .images
            .iter()
            .map(|image| (image.index, image.task_id.as_str()))
            .collect();
        sqlx::query(
            "INSERT INTO images (job_id, idx, state, attempts, progress, task_id)
             SELECT ?1, value ->> 0, ?2, ?3, ?4, value ->> 1 FROM json_each(?5)",
        )
        .bind(job.id.to_string())
        .bind(queued.state.name())
        .bind(i64::from(queued.attempts))
        .bind(&queued_json)
        .bind(serde_json::to_string(&images).map_err(corrupt(format!("job {}", job.id)))?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        super::sqlite_deliveries::record_webhook(&mut tx, job).await?;
        super::sqlite_events::queued(&mut tx, job).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn load(&self, id: JobId) -> Result<Option<JobRecord>, MetaError> {
        // One statement, so one moment: the job and every image's progress,
        // as `[[index, progress], …]`.
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT record,
                    (SELECT json_group_array(json_array(idx, json(progress)))
                     FROM images WHERE job_id = jobs.id)
             FROM jobs WHERE id = ? AND deleted = 0 AND expires_at > ?",
        )
        .bind(id.to_string())
        .bind(millis(Utc::now()))
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        let Some((record, images)) = row else {
            return Ok(None);
        };
        let job: Job = serde_json::from_str(&record).map_err(corrupt(format!("job {id}")))?;
        let rows: Vec<(usize, ImageProgress)> =
            serde_json::from_str(&images).map_err(corrupt(format!("job {id}: its images")))?;
        let mut progress = vec![None; job.images.len()];
        for (index, p) in rows {
            if let Some(slot) = progress.get_mut(index) {
                *slot = Some(p);
            }
        }
        Ok(Some(JobRecord { job, progress }))
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, MetaError> {
        let record: Option<String> = sqlx::query_scalar(
            "SELECT record FROM jobs WHERE id = ? AND deleted = 0 AND expires_at > ?",
        )
        .bind(id.to_string())
        .bind(millis(Utc::now()))
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        record
            .map(|json| serde_json::from_str(&json).map_err(corrupt(format!("job {id}"))))
            .transpose()
    }

    async fn is_live(&self, id: JobId) -> Result<bool, MetaError> {
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE id = ? AND deleted = 0 AND expires_at > ?",
        )
        .bind(id.to_string())
        .bind(millis(Utc::now()))
        .fetch_optional(&mut *self.conn().await?)
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
                .fetch_optional(&mut *self.conn().await?)
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
        self.write_one(
            super::sqlite_settle::WRITE_PROGRESS,
            id,
            index,
            progress,
            json,
        )
        .await
    }

    async fn start_untouched(
        &self,
        id: JobId,
        index: usize,
        started: &ImageProgress,
    ) -> Result<bool, MetaError> {
        let json =
            serde_json::to_string(started).map_err(corrupt(format!("job {id} image {index}")))?;
        self.write_one(
            super::sqlite_settle::START_UNTOUCHED,
            id,
            index,
            started,
            json,
        )
        .await
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
        self.write_one(super::sqlite_settle::REOPEN, id, index, progress, json)
            .await
    }

    async fn mark_deleted(&self, id: JobId) -> Result<Option<Job>, MetaError> {
        let record: Option<(String, i64)> = sqlx::query_as(
            "UPDATE jobs SET deleted = 1 WHERE id = ? AND deleted = 0 RETURNING record, expires_at",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.writer().await?)
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
        .fetch_all(&mut *self.conn().await?)
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
        self.count_taken(id).await
    }

    async fn take(&self, id: JobId, limit: usize) -> Result<Option<Backlog>, MetaError> {
        self.take_and_read_backlog(id, limit).await
    }

    async fn backlog(&self, tenant: &Tenant, limit: usize) -> Result<Backlog, MetaError> {
        self.read_backlog(tenant, limit).await
    }

    async fn tenants_with_backlog(&self, limit: usize) -> Result<Vec<Tenant>, MetaError> {
        self.list_tenants_with_backlog(limit).await
    }

    async fn task_ids(
        &self,
        wanted: &[(JobId, Range<usize>)],
    ) -> Result<Vec<Vec<String>>, MetaError> {
        self.read_task_ids(wanted).await
    }

    async fn mark_released(&self, marks: &[(JobId, usize)], turn: i64) -> Result<(), MetaError> {
        self.write_released(marks, turn).await
    }

    async fn usage(&self, tenant: &Tenant) -> Result<Usage, MetaError> {
        self.tenant_usage(tenant).await
    }

    async fn remove(&self, id: JobId) -> Result<(), MetaError> {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await.map_err(unavailable)?;
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
        // Every idle connection answers (or is replaced), and a statement runs.
        self.db.check().await.map_err(unavailable)?;
        sqlx::query("SELECT 1")
            .execute(&mut *self.conn().await?)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

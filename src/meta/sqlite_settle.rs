//! A worker's terminal write in SQLite: the image's last progress, which may
//! settle its job (the triggers then write the final event), and the count
//! of jobs finished by status, made by the one write that settled the job.

use chrono::Utc;

use super::sqlite::{millis, unavailable, SqliteMeta};
use super::MetaError;
use crate::jobs::{ImageProgress, JobId};

/// The write of [`MetaStore::set_image_progress`] (its rules, in one statement).
pub(super) const WRITE_PROGRESS: &str = "UPDATE images SET state = ?1, attempts = ?2, progress = ?3
     WHERE job_id = ?4 AND idx = ?5
       AND state NOT IN ('succeeded', 'failed')
       AND attempts <= ?2
       AND EXISTS (SELECT 1 FROM jobs WHERE id = ?4 AND deleted = 0 AND expires_at > ?6)";

/// An operator's retry: a failed image back to queued (`reopen_image`);
/// the counts and the `image.retrying` event follow from the triggers.
pub(super) const REOPEN: &str = "UPDATE images SET state = ?1, attempts = ?2, progress = ?3
     WHERE job_id = ?4 AND idx = ?5 AND state = 'failed'
       AND EXISTS (SELECT 1 FROM jobs WHERE id = ?4 AND deleted = 0 AND expires_at > ?6)";

/// [`WRITE_PROGRESS`] or [`REOPEN`] with its six parameters bound.
pub(super) fn progress_write(
    sql: &'static str,
    id: JobId,
    index: usize,
    progress: &ImageProgress,
    json: String,
) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(sql)
        .bind(progress.state.name())
        .bind(i64::from(progress.attempts))
        .bind(json)
        .bind(id.to_string())
        .bind(index as i64)
        .bind(millis(Utc::now()))
}

const FINAL_EVENT: &str = "SELECT type FROM job_events WHERE job_id = ?
     AND type IN ('job.completed', 'job.completed_with_errors', 'job.failed')";

impl SqliteMeta {
    /// A terminal write, which may settle the job: then its final event is
    /// counted here, by the one write that made it (inside one write
    /// transaction, so no other writer comes between the looks).
    pub(super) async fn settle(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
        json: String,
    ) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // A write first: the transaction holds the write lock from here (a
        // read first could not be upgraded if another writer got in).
        sqlx::query("UPDATE job_counts SET job_id = job_id WHERE job_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let before: Option<String> = sqlx::query_scalar(FINAL_EVENT)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let written = progress_write(WRITE_PROGRESS, id, index, progress, json)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        let after: Option<String> = if written && before.is_none() {
            sqlx::query_scalar(FINAL_EVENT)
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?
        } else {
            None
        };
        tx.commit().await.map_err(unavailable)?;
        if let Some(kind) = after {
            let status = kind.trim_start_matches("job.").to_string();
            metrics::counter!(crate::telemetry::JOBS_FINISHED, "status" => status).increment(1);
        }
        if written {
            self.wrote_events.notify_waiters();
        }
        Ok(written)
    }
}

//! A worker's terminal write in SQLite: the image's last progress, which may
//! settle its job (the triggers then write the final event), and the count
//! of jobs finished by status, made by the one write that settled the job.

use chrono::Utc;
use sqlx::{Connection, Row};

use super::sqlite::{millis, unavailable, SqliteMeta};
use super::MetaError;
use crate::jobs::{ImageProgress, JobId};

/// The write of [`MetaStore::set_image_progress`] (its rules, in one statement).
pub(super) const WRITE_PROGRESS: &str = "UPDATE images SET state = ?1, attempts = ?2, progress = ?3
     WHERE job_id = ?4 AND idx = ?5
       AND state NOT IN ('succeeded', 'failed')
       AND attempts <= ?2
       AND EXISTS (SELECT 1 FROM jobs WHERE id = ?4 AND deleted = 0 AND expires_at > ?6)";

/// [`MetaStore::start_untouched`]: a first attempt's start, over an image
/// never started ([`ImageProgress::is_untouched`]).
pub(super) const START_UNTOUCHED: &str =
    "UPDATE images SET state = ?1, attempts = ?2, progress = ?3
     WHERE job_id = ?4 AND idx = ?5 AND state = 'queued' AND attempts = 0
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

/// The write of [`WRITE_PROGRESS`] and, in the same trip to the connection's
/// thread, whether it was made (`changes()`: the statement's own rows, not
/// its triggers') and the type of the job's last event since. The triggers
/// append a final event last, so a write that settled its job leaves one
/// there; any other accepted write leaves an image event and the job's
/// progress after whatever final event came before.
static WRITE_AND_LOOK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{WRITE_PROGRESS};
         SELECT changes(),
                (SELECT type FROM job_events WHERE job_id = ?4 ORDER BY seq DESC LIMIT 1)"
    )
});

const FINAL_EVENTS: [&str; 3] = ["job.completed", "job.completed_with_errors", "job.failed"];

impl SqliteMeta {
    /// One of the single-statement progress writes ([`WRITE_PROGRESS`],
    /// [`START_UNTOUCHED`], [`REOPEN`]): whether it was made (its own row,
    /// not its triggers'). A write made wakes the event followers: its
    /// triggers appended the image's events.
    pub(super) async fn write_one(
        &self,
        sql: &'static str,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
        json: String,
    ) -> Result<bool, MetaError> {
        let written = progress_write(sql, id, index, progress, json)
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        if written {
            self.wrote_events.notify_waiters();
        }
        Ok(written)
    }

    /// A terminal write, which may settle the job: then its final event is
    /// counted here, by the one write that made it. One transaction, whose
    /// first statement is the write (so it holds the write lock from the
    /// start, and no other writer comes between the write and the look).
    pub(super) async fn settle(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
        json: String,
    ) -> Result<bool, MetaError> {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await.map_err(unavailable)?;
        let row = progress_write(WRITE_AND_LOOK.as_str(), id, index, progress, json)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        let changed: i64 = row.try_get(0).map_err(unavailable)?;
        let last: Option<String> = row.try_get(1).map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let written = changed == 1;
        if let Some(kind) = last.filter(|kind| written && FINAL_EVENTS.contains(&kind.as_str())) {
            let status = kind.trim_start_matches("job.").to_string();
            metrics::counter!(crate::telemetry::JOBS_FINISHED, "status" => status).increment(1);
        }
        if written {
            self.wrote_events.notify_waiters();
        }
        Ok(written)
    }
}

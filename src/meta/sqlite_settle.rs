//! A worker's terminal write in SQLite: the image's last progress, which may
//! settle its job (the triggers then write the final event), and the count
//! of jobs finished by status, made by the one write that settled the job.

use chrono::Utc;
use sqlx::Row;

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
/// its triggers') and, if it settled the job, the job's final event. The
/// triggers append the image's event, the job's progress and, when the
/// image was the job's last, the final event, in that order and in the
/// write's own statement: so the event two after the image's latest
/// terminal event is final only if this write made it. Read that way, the
/// look needs no transaction around the two statements (another process's
/// write to the same job may come between them, and it does not matter).
/// The image's event is found from the job's latest events backwards: it
/// is among the last few. A write refused looks at nothing (it would walk
/// all of the job's events for an image that has none).
static WRITE_AND_LOOK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{WRITE_PROGRESS};
         SELECT changes(),
                (SELECT last.type FROM job_events AS last
                 WHERE changes() = 1
                   AND last.job_id = ?4
                   AND last.seq = (SELECT image.seq FROM job_events AS image
                                   WHERE image.job_id = ?4
                                     AND image.type IN ('image.succeeded', 'image.failed')
                                     AND image.data ->> '$.index' = ?5
                                   ORDER BY image.seq DESC LIMIT 1) + 2)"
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
    /// counted here, by the one write that made it (see [`WRITE_AND_LOOK`]).
    pub(super) async fn settle(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
        json: String,
    ) -> Result<bool, MetaError> {
        let (written, last) = self.write_and_look(id, index, progress, json).await?;
        if let Some(kind) = last.filter(|kind| written && FINAL_EVENTS.contains(&kind.as_str())) {
            let status = kind.trim_start_matches("job.").to_string();
            metrics::counter!(crate::telemetry::JOBS_FINISHED, "status" => status).increment(1);
        }
        if written {
            self.wrote_events.notify_waiters();
        }
        Ok(written)
    }

    /// [`WRITE_AND_LOOK`]: whether the write was made and, if it was, the
    /// event two after the image's terminal one, if any.
    async fn write_and_look(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
        json: String,
    ) -> Result<(bool, Option<String>), MetaError> {
        let row = progress_write(WRITE_AND_LOOK.as_str(), id, index, progress, json)
            .fetch_one(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        let changed: i64 = row.try_get(0).map_err(unavailable)?;
        Ok((changed == 1, row.try_get(1).map_err(unavailable)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{ImageState, Job};
    use crate::meta::MetaStore;

    fn settled(state: ImageState) -> (ImageProgress, String) {
        let progress = ImageProgress {
            state,
            attempts: 1,
            error: (state == ImageState::Failed).then(|| "broken".to_string()),
            output_bytes: (state == ImageState::Succeeded).then_some(10),
            ..ImageProgress::queued()
        };
        let json = serde_json::to_string(&progress).expect("json");
        (progress, json)
    }

    /// The final event is counted by the write that made it, and only by
    /// it: not by an earlier image's, not by a refused repeat, not by
    /// writes to another job in between.
    #[tokio::test]
    async fn only_the_write_that_settles_a_job_sees_its_final_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = SqliteMeta::open(&dir.path().join("jobs.sqlite3"))
            .await
            .expect("open");
        let (job, other) = (Job::sample(3), Job::sample(2));
        meta.create(&job).await.expect("create");
        meta.create(&other).await.expect("create");
        let look = |job: JobId, index: usize, state: ImageState| {
            let (progress, json) = settled(state);
            let meta = &meta;
            async move {
                // What `settle` counts: a final event seen by a write made.
                let (written, last) = meta
                    .write_and_look(job, index, &progress, json)
                    .await
                    .expect("write");
                (written, last.filter(|_| written))
            }
        };
        assert_eq!(look(job.id, 0, ImageState::Failed).await, (true, None));
        assert_eq!(look(other.id, 0, ImageState::Succeeded).await, (true, None));
        assert_eq!(look(job.id, 2, ImageState::Succeeded).await, (true, None));
        let last = look(job.id, 1, ImageState::Succeeded).await;
        assert_eq!(last, (true, Some("job.completed_with_errors".into())));
        // The same image again: refused, so not counted again.
        let (progress, json) = settled(ImageState::Succeeded);
        let refused = meta.write_and_look(job.id, 1, &progress, json).await;
        assert_eq!(
            refused.expect("write"),
            (false, None),
            "a refused write looks at nothing"
        );
        assert_eq!(look(job.id, 1, ImageState::Succeeded).await, (false, None));
        assert_eq!(
            look(other.id, 1, ImageState::Succeeded).await,
            (true, Some("job.completed".into()))
        );
        assert_eq!(look(job.id, 0, ImageState::Failed).await, (false, None));
    }
}

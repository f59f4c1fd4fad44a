//! Fair scheduling's counters and the per-tenant quota figures in SQLite
//! (columns of `jobs`; see `sqlite.rs`). Inherent methods the `MetaStore`
//! impl delegates to; each is one statement, so each holds however many
//! processes write at once.

use std::ops::Range;
use std::sync::LazyLock;

use chrono::Utc;

use super::sqlite::{millis, unavailable, SqliteMeta};
use super::{Backlog, MetaError, Usage};
use crate::auth::Tenant;
use crate::backend_error::ErrorKind;
use crate::jobs::pacing::Held;
use crate::jobs::{JobId, Lane};
use crate::sqlite::Conn;

impl SqliteMeta {
    pub(super) async fn count_taken(&self, id: JobId) -> Result<Option<Tenant>, MetaError> {
        let tenant: Option<Option<String>> = sqlx::query_scalar(NOTE_TAKEN)
            .bind(id.to_string())
            .bind(millis(Utc::now()))
            .fetch_optional(&mut *self.writer().await?)
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

    pub(super) async fn take_and_read_backlog(
        &self,
        id: JobId,
        limit: usize,
    ) -> Result<Option<Backlog>, MetaError> {
        let rows =
            Self::backlog_rows(self.writer().await?, TAKE.as_str(), id.to_string(), limit).await?;
        let mut rows = rows.into_iter();
        // No first row: the job is gone (or has no tenant to pace).
        let Some((Some(_tenant), ..)) = rows.next() else {
            return Ok(None);
        };
        Ok(Some(backlog(rows)))
    }

    pub(super) async fn read_backlog(
        &self,
        tenant: &Tenant,
        limit: usize,
    ) -> Result<Backlog, MetaError> {
        let conn = self.conn().await?;
        let rows =
            Self::backlog_rows(conn, BACKLOG.as_str(), tenant.as_str().to_string(), limit).await?;
        Ok(backlog(rows.into_iter()))
    }

    /// Runs [`BACKLOG`] or [`TAKE`] with its three parameters on `conn` (a
    /// writer's for [`TAKE`]).
    async fn backlog_rows(
        mut conn: Conn<'_>,
        sql: &'static str,
        first: String,
        limit: usize,
    ) -> Result<Vec<BacklogRow>, MetaError> {
        sqlx::query_as(sql)
            .bind(first)
            .bind(millis(Utc::now()))
            .bind(limit as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn list_tenants_with_backlog(
        &self,
        limit: usize,
    ) -> Result<Vec<Tenant>, MetaError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT tenant FROM jobs
             WHERE released < image_count AND deleted = 0 AND tenant IS NOT NULL LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    pub(super) async fn read_task_ids(
        &self,
        wanted: &[(JobId, Range<usize>)],
    ) -> Result<Vec<Vec<String>>, MetaError> {
        let mut ids = vec![Vec::new(); wanted.len()];
        if wanted.is_empty() {
            return Ok(ids);
        }
        // One statement for every job wanted, which come as a JSON array of
        // [id, start, end]; each image's row carries its task id (see the
        // migration `per_job_figures`). An image written without one, by a
        // build from before it still running beside this one (a rolling
        // upgrade of processes sharing the file), has its id read out of the
        // job's record instead.
        let wanted_json = json_rows(
            wanted
                .iter()
                .map(|(id, range)| serde_json::json!([id.to_string(), range.start, range.end])),
        );
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT w.key,
                    COALESCE(images.task_id,
                             jobs.record ->> ('$.images[' || images.idx || '].task_id'))
             FROM json_each(?) AS w
             JOIN images ON images.job_id = w.value ->> 0
                        AND images.idx >= w.value ->> 1
                        AND images.idx < w.value ->> 2
             JOIN jobs ON jobs.id = images.job_id
             ORDER BY w.key, images.idx",
        )
        .bind(wanted_json)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        for (entry, id) in rows {
            let id =
                id.ok_or_else(|| MetaError::new(ErrorKind::Corrupt, "an image without a task id"))?;
            if let Some(list) = usize::try_from(entry).ok().and_then(|e| ids.get_mut(e)) {
                list.push(id);
            }
        }
        Ok(ids)
    }

    pub(super) async fn write_released(
        &self,
        marks: &[(JobId, usize)],
        turn: i64,
    ) -> Result<(), MetaError> {
        if marks.is_empty() {
            return Ok(());
        }
        // One statement for every job of the release: [id, upto] pairs (a
        // job named twice gets the larger count, as two writes would).
        let marks_json = json_rows(
            marks
                .iter()
                .map(|(id, upto)| serde_json::json!([id.to_string(), upto])),
        );
        sqlx::query(
            "UPDATE jobs SET released = MAX(released, MIN(mark.upto, image_count)), turn = ?2
             FROM (SELECT json_extract(value, '$[0]') AS id,
                          MAX(json_extract(value, '$[1]')) AS upto
                   FROM json_each(?1) GROUP BY 1) AS mark
             WHERE jobs.id = mark.id",
        )
        .bind(marks_json)
        .bind(turn)
        .execute(&mut *self.writer().await?)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    pub(super) async fn tenant_usage(&self, tenant: &Tenant) -> Result<Usage, MetaError> {
        // One statement: both figures as of one moment.
        let (active, bytes): (i64, i64) = sqlx::query_as(USAGE)
            .bind(tenant.as_str())
            .bind(millis(Utc::now()))
            .fetch_one(&mut *self.conn().await?)
            .await
            .map_err(unavailable)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Usage {
            active_images: count(active),
            stored_bytes: count(bytes),
        })
    }
}

/// Rows for a statement to read with `json_each(?)`, as one JSON array.
fn json_rows(rows: impl Iterator<Item = serde_json::Value>) -> String {
    serde_json::Value::Array(rows.collect()).to_string()
}

/// A tenant's usage (`?1`; `?2` is now): its totals, kept by triggers as
/// its jobs change (see the migration `tenant_usage`), less its jobs that
/// expired and wait for the purge, found through the index's expiry order.
/// One row, however many jobs the tenant keeps.
const USAGE: &str = "SELECT COALESCE(usage.active, 0) - COALESCE(expired.active, 0),
             COALESCE(usage.bytes, 0) - COALESCE(expired.bytes, 0)
      FROM (SELECT ?1 AS tenant) AS asked
      LEFT JOIN tenant_usage AS usage ON usage.tenant = asked.tenant
      LEFT JOIN (SELECT SUM(counts.queued + counts.processing) AS active,
                        SUM(jobs.input_bytes + COALESCE(counts.output_bytes, 0)) AS bytes
                 FROM jobs LEFT JOIN job_counts AS counts ON counts.job_id = jobs.id
                 WHERE jobs.tenant = ?1 AND jobs.deleted = 0 AND jobs.expires_at <= ?2)
           AS expired";

/// Counts one more image of live job `?1` taken (`?2` is now) and returns
/// its tenant. Jobs recorded before fair scheduling (image_count 0) have no
/// tenant column and nothing to release.
const NOTE_TAKEN: &str = "UPDATE jobs SET taken = taken + 1
     WHERE id = ?1 AND deleted = 0 AND expires_at > ?2 AND image_count > 0
     RETURNING tenant";

/// A backlog row: job id, image count, released, taken, lane, and the task
/// ids of its next images as a JSON array (null where none was written).
type BacklogRow = (Option<String>, i64, i64, i64, String, Option<String>);

/// `MetaStore::backlog`'s read for the tenant that the SQL `tenant` names
/// (`?2` is now, `?3` the limit): the jobs with images waiting, and the
/// first `?3` in turn order with images held back, each half through its own
/// index (see the migration `bounded_backlog`), so the read does not grow
/// with the tenant's backlog. The indexes are named: the planner would
/// otherwise take the one by tenant and expiry (the usage read's), which
/// covers every live job of the tenant. Each job comes with the task ids of
/// its next `?3` images (a range of the images' primary key), the most one
/// release can take of it, so that the release need not read them.
fn backlog_of(tenant: &str) -> String {
    format!(
        "SELECT id, image_count, released, taken, lane,
                (SELECT json_group_array(task_id ORDER BY idx) FROM images
                 WHERE images.job_id = backlog.id AND images.idx >= backlog.released
                   AND images.idx < backlog.released + ?3)
         FROM (
             SELECT id, image_count, released, taken, lane, turn, created_at
             FROM jobs INDEXED BY jobs_waiting
             WHERE tenant = {tenant} AND taken < released AND taken < image_count
               AND deleted = 0 AND expires_at > ?2
             UNION
             SELECT * FROM (
                 SELECT id, image_count, released, taken, lane, turn, created_at
                 FROM jobs INDEXED BY jobs_held_back
                 WHERE tenant = {tenant} AND released < image_count AND taken < image_count
                   AND deleted = 0 AND expires_at > ?2
                 ORDER BY turn, created_at LIMIT ?3)) AS backlog
         ORDER BY turn, created_at"
    )
}

/// The backlog of tenant `?1`.
static BACKLOG: LazyLock<String> = LazyLock::new(|| backlog_of("?1"));

/// [`NOTE_TAKEN`] and the backlog in one trip to the connection's thread:
/// rows of one shape, the first (if job `?1` is there and was counted) its
/// tenant, the rest that tenant's backlog, read only if the count was made
/// (`changes()`: the UPDATE's own rows).
static TAKE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{NOTE_TAKEN}, 0, 0, 0, '', NULL;
         {}",
        backlog_of("(SELECT tenant FROM jobs WHERE id = ?1) AND changes() = 1")
    )
});

/// Backlog rows as a `Backlog` (a row whose id this build cannot read is
/// skipped). A job's ids are kept only if every image had one: images
/// written by a build from before `per_job_figures` have theirs in the
/// record, which the release's own read finds.
fn backlog(rows: impl Iterator<Item = BacklogRow>) -> Backlog {
    let count = |n: i64| usize::try_from(n).unwrap_or(0);
    let mut backlog = Backlog::default();
    for (id, total, released, taken, lane, ids) in rows {
        let Some(job) = id.and_then(|id| id.parse::<JobId>().ok()) else {
            continue;
        };
        backlog.held.push(Held {
            job,
            total: count(total),
            released: count(released),
            taken: count(taken),
            lane: Lane::named(&lane),
        });
        let ids = ids.and_then(|json| serde_json::from_str::<Vec<Option<String>>>(&json).ok());
        if let Some(ids) = ids.and_then(|ids| ids.into_iter().collect::<Option<Vec<_>>>()) {
            if !ids.is_empty() {
                backlog.next_ids.insert(job, ids);
            }
        }
    }
    backlog
}

#[cfg(test)]
mod tests {
    use super::{SqliteMeta, BACKLOG, TAKE, USAGE};

    /// The steps of SQLite's plan for `sql`, parameters unbound.
    async fn plan(meta: &SqliteMeta, sql: &str) -> Vec<String> {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&mut *meta.conn().await.expect("conn"))
                .await
                .expect("plan");
        rows.into_iter().map(|row| row.3).collect()
    }

    /// The reads made on every first delivery and every submission go
    /// through the indexes meant for them, which hold a tenant's few jobs
    /// in flight (or expired), not every live job it has.
    #[tokio::test]
    async fn the_pacing_and_usage_reads_use_their_own_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = SqliteMeta::open(&dir.path().join("jobs.sqlite3"))
            .await
            .expect("open");
        let take_backlog = TAKE.split_once(';').expect("two statements").1;
        for sql in [BACKLOG.as_str(), take_backlog] {
            let steps = plan(&meta, sql).await;
            for index in ["jobs_waiting", "jobs_held_back"] {
                assert!(
                    steps
                        .iter()
                        .any(|s| s.contains(&format!("USING INDEX {index} "))),
                    "{index}: {steps:?}"
                );
            }
            // The next ids: a range of one job's images, by primary key.
            assert!(
                steps.iter().any(|s| s.contains("images USING PRIMARY KEY")
                    && s.contains("job_id=? AND idx>? AND idx<?")),
                "{steps:?}"
            );
            assert!(
                !steps.iter().any(|s| s.starts_with("SCAN images")),
                "{steps:?}"
            );
        }
        // Usage: the tenant's row, and only its expired jobs (a range of
        // the covering index), never its other jobs or any image.
        let steps = plan(&meta, USAGE).await;
        assert!(
            steps
                .iter()
                .any(|s| s.contains("tenant_usage") && s.contains("(tenant=?)")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING COVERING INDEX jobs_usage (tenant=? AND expires_at<?)")),
            "{steps:?}"
        );
        assert!(!steps.iter().any(|s| s.contains("images")), "{steps:?}");
    }
}

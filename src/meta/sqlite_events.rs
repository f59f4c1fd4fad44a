//! Job events in SQLite: table `job_events`, filled by the triggers of
//! `migrations/20261204000000_events.sql` as progress is written (and by
//! `create` for `job.queued`). Other processes on the host (an `imgpipe
//! worker` beside `imgpipe api`) write to the same file, so new events are
//! found by a short poll of the table's global order, one query for every
//! watched job; nothing polls while nobody holds the change stream.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::{Sqlite, Transaction};
use tokio::sync::Notify;

use super::sqlite::{corrupt, unavailable, SqliteMeta};
use super::{EventLog, MetaError, EVENTS_OUTLIVE_JOB};
use crate::jobs::events::Event;
use crate::jobs::{Job, JobId};
use crate::sqlite::Connections;

/// Removes the events of jobs purged more than [`EVENTS_OUTLIVE_JOB`] ago,
/// and keeps this one's until then.
pub(super) async fn forget_later(
    tx: &mut Transaction<'_, Sqlite>,
    id: JobId,
) -> Result<(), MetaError> {
    let now = Utc::now().timestamp_millis();
    let before = now - i64::try_from(EVENTS_OUTLIVE_JOB.as_millis()).unwrap_or(i64::MAX);
    for (statement, at) in [
        (
            "DELETE FROM job_events WHERE job_id IN
                 (SELECT job_id FROM removed_jobs WHERE at <= ?)",
            before,
        ),
        ("DELETE FROM removed_jobs WHERE at <= ?", before),
    ] {
        sqlx::query(statement)
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    sqlx::query("INSERT OR REPLACE INTO removed_jobs (job_id, at) VALUES (?, ?)")
        .bind(id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// How often the change stream looks for new events: a bound on event
/// latency between processes, at a few cheap queries a second.
const POLL: Duration = Duration::from_millis(20);

/// Writes a new job's first event, in the transaction that records it.
pub(super) async fn queued(tx: &mut Transaction<'_, Sqlite>, job: &Job) -> Result<(), MetaError> {
    let event = Event::queued(job.created_at, job.images.len());
    let data = serde_json::to_string(&event).map_err(corrupt(format!("job {}", job.id)))?;
    sqlx::query("INSERT INTO job_events (job_id, seq, type, data) VALUES (?, 1, ?, ?)")
        .bind(job.id.to_string())
        .bind(event.kind.name())
        .bind(data)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl EventLog for SqliteMeta {
    async fn events_after(
        &self,
        id: JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, MetaError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(id.to_string())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|(seq, data)| {
                let mut event: Event = serde_json::from_str(&data)
                    .map_err(corrupt(format!("job {id} event {seq}")))?;
                event.seq = u64::try_from(seq).unwrap_or(0);
                Ok(event)
            })
            .collect()
    }

    async fn last_seq(&self, id: JobId) -> Result<u64, MetaError> {
        let seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = ?")
                .bind(id.to_string())
                .fetch_one(&mut *self.conn().await?)
                .await
                .map_err(unavailable)?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn changes(&self) -> Result<BoxStream<'static, Vec<JobId>>, MetaError> {
        let db = self.db.clone();
        let start: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM job_events")
            .fetch_one(&mut *self.conn().await?)
            .await
            .map_err(unavailable)?;
        let wrote = self.wrote_events.clone();
        Ok(
            stream::unfold((db, wrote, start), |(db, wrote, cursor)| async move {
                let (jobs, cursor) = next_changes(&db, &wrote, cursor).await;
                Some((jobs, (db, wrote, cursor)))
            })
            .boxed(),
        )
    }
}

/// Waits for events past `cursor` (the table's global order) and names
/// their jobs: looks when this process wrote some, or every [`POLL`] for
/// other processes' writes. A failed query is logged and tried again.
async fn next_changes(db: &Connections, wrote: &Notify, cursor: i64) -> (Vec<JobId>, i64) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = wrote.notified() => {}
        }
        let rows: Result<Vec<(i64, String)>, _> = match db.acquire().await {
            Ok(mut conn) => {
                sqlx::query_as(
                    "SELECT id, job_id FROM job_events WHERE id > ? ORDER BY id LIMIT 1000",
                )
                .bind(cursor)
                .fetch_all(&mut *conn)
                .await
            }
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) if rows.is_empty() => {}
            Ok(rows) => {
                let next = rows.last().map_or(cursor, |(id, _)| *id);
                let mut jobs: Vec<JobId> = rows
                    .iter()
                    .filter_map(|(_, job)| job.parse().ok())
                    .collect();
                jobs.dedup();
                return (jobs, next);
            }
            Err(e) => log::warn!("reading new job events: {e}"),
        }
    }
}

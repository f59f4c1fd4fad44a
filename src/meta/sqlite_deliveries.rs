//! Webhook deliveries in SQLite: table `webhook_deliveries`, filled by the
//! `webhook_scheduled` trigger of `migrations/20261205000000_webhooks.sql`
//! from the job's row in `job_webhooks` (written by `create`, below).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Connection, Sqlite, Transaction};

use super::deliveries::{Delivery, DeliveryKey, DeliveryState, DeliveryStore, TryRecord};
use super::sqlite::{millis, unavailable, SqliteMeta};
use super::MetaError;
use crate::backend_error::ErrorKind;
use crate::jobs::{Job, JobId};

/// Records a new job's webhook, in the transaction that records the job and
/// before its first event (whose delivery the trigger then makes).
pub(super) async fn record_webhook(
    tx: &mut Transaction<'_, Sqlite>,
    job: &Job,
) -> Result<(), MetaError> {
    let Some(hook) = &job.webhook else {
        return Ok(());
    };
    sqlx::query("INSERT INTO job_webhooks (job_id, url, events, tenant) VALUES (?, ?, ?, ?)")
        .bind(job.id.to_string())
        .bind(&hook.url)
        .bind(hook.filter())
        .bind(job.tenant.as_str())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Forgets a purged job's webhook and its ended deliveries; pending ones
/// stay until they end (see [`DeliveryStore::record`]).
pub(super) async fn forget(tx: &mut Transaction<'_, Sqlite>, id: JobId) -> Result<(), MetaError> {
    for statement in [
        "DELETE FROM job_webhooks WHERE job_id = ?",
        "DELETE FROM webhook_deliveries WHERE job_id = ? AND state != 'pending'",
    ] {
        sqlx::query(statement)
            .bind(id.to_string())
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

type Row = (
    String,
    i64,
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// The columns of a [`Row`], as a literal for `concat!`.
macro_rules! columns {
    () => {
        "job_id, seq, type, url, tenant, event, made_at, state, attempts, next_at, \
         last_status, last_error, body"
    };
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn bad(what: String) -> MetaError {
    MetaError::new(ErrorKind::Corrupt, what)
}

fn delivery(row: Row) -> Result<Delivery, MetaError> {
    let (
        job_id,
        seq,
        kind,
        url,
        tenant,
        event,
        made_at,
        state,
        attempts,
        next_at,
        status,
        error,
        body,
    ) = row;
    let job_id = job_id
        .parse()
        .map_err(|_| bad(format!("webhook delivery of job {job_id:?}")))?;
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| bad(format!("webhook delivery in state {state:?}")))?;
    Ok(Delivery {
        key: DeliveryKey {
            job_id,
            seq: u64::try_from(seq).unwrap_or(0),
        },
        kind,
        url,
        tenant,
        event,
        made_at: from_millis(made_at),
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_at: (state == DeliveryState::Pending).then(|| from_millis(next_at)),
        state,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: error,
        body,
    })
}

async fn due_exists(meta: &SqliteMeta, now: i64) -> Result<bool, MetaError> {
    // A read first: the UPDATE below would take the write lock every poll.
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_at <= ?)",
    )
    .bind(now)
    .fetch_one(&mut *meta.conn().await?)
    .await
    .map_err(unavailable)
}

#[async_trait]
impl DeliveryStore for SqliteMeta {
    async fn take_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DeliveryKey, u32)>, MetaError> {
        if !due_exists(self, millis(now)).await? {
            return Ok(Vec::new());
        }
        // One statement: two processes never take the same delivery.
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET next_at = ?
             WHERE (job_id, seq) IN (SELECT job_id, seq FROM webhook_deliveries
                                     WHERE state = 'pending' AND next_at <= ?
                                     ORDER BY next_at LIMIT ?)
             RETURNING job_id, seq, attempts",
        )
        .bind(millis(lease_until))
        .bind(millis(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|(job, seq, attempts)| {
                let job_id = job
                    .parse()
                    .map_err(|_| bad(format!("webhook delivery of job {job:?}")))?;
                let key = DeliveryKey {
                    job_id,
                    seq: u64::try_from(seq).unwrap_or(0),
                };
                Ok((key, u32::try_from(attempts).unwrap_or(0).saturating_add(1)))
            })
            .collect()
    }

    async fn claim(
        &self,
        key: DeliveryKey,
        attempt: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Delivery>, MetaError> {
        let row: Option<Row> = sqlx::query_as(concat!(
            "UPDATE webhook_deliveries SET attempts = ?, next_at = ?
             WHERE job_id = ? AND seq = ? AND state = 'pending' AND attempts = ?
             RETURNING ",
            columns!()
        ))
        .bind(i64::from(attempt))
        .bind(millis(lease_until))
        .bind(key.job_id.to_string())
        .bind(i64::try_from(key.seq).unwrap_or(i64::MAX))
        .bind(i64::from(attempt.saturating_sub(1)))
        .fetch_optional(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        row.map(delivery).transpose()
    }

    async fn record(
        &self,
        key: DeliveryKey,
        attempt: u32,
        result: &TryRecord,
    ) -> Result<bool, MetaError> {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await.map_err(unavailable)?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries
             SET state = ?, last_status = ?, last_error = ?, next_at = ?, body = ?
             WHERE job_id = ? AND seq = ? AND attempts = ? AND state = 'pending'",
        )
        .bind(result.state.name())
        .bind(result.status.map(i64::from))
        .bind(&result.error)
        .bind(millis(result.next_at))
        .bind(&result.body)
        .bind(key.job_id.to_string())
        .bind(i64::try_from(key.seq).unwrap_or(i64::MAX))
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected()
            == 1;
        if done && result.state == DeliveryState::Stopped {
            // 410 Gone: nothing more goes to this job's webhook.
            for statement in [
                "DELETE FROM job_webhooks WHERE job_id = ?",
                "UPDATE webhook_deliveries SET state = 'stopped'
                 WHERE job_id = ? AND state = 'pending'",
            ] {
                sqlx::query(statement)
                    .bind(key.job_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
        }
        // An ended delivery of a purged job has nobody left to show it to.
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE job_id = ? AND seq = ? AND state != 'pending'
               AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = ?)",
        )
        .bind(key.job_id.to_string())
        .bind(i64::try_from(key.seq).unwrap_or(i64::MAX))
        .bind(key.job_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(done)
    }

    async fn deliveries(
        &self,
        job: JobId,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Vec<(DeliveryState, u64)>), MetaError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(unavailable)?;
        let rows: Vec<Row> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM webhook_deliveries WHERE job_id = ? ORDER BY seq DESC LIMIT ?"
        ))
        .bind(job.to_string())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM webhook_deliveries WHERE job_id = ? GROUP BY state",
        )
        .bind(job.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let list = rows.into_iter().map(delivery).collect::<Result<_, _>>()?;
        let counts = counts
            .into_iter()
            .filter_map(|(s, n)| Some((DeliveryState::parse(&s)?, u64::try_from(n).ok()?)))
            .collect();
        Ok((list, counts))
    }
}

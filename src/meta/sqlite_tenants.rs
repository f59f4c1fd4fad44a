//! [`TenantStore`] in the embedded SQLite database: tables `api_keys` and
//! `submissions` (see `migrations/`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use sqlx::Connection;

use super::sqlite::{corrupt, millis, unavailable, SqliteMeta};
use super::tenants::TenantStore;
use super::MetaError;
use crate::auth::idempotency::{Claim, Completed, IdempotencyKey};
use crate::auth::{ApiKey, KeyId, Tenant};

fn parse_key(json: &str) -> Result<ApiKey, MetaError> {
    serde_json::from_str(json).map_err(corrupt("an API key".to_string()))
}

#[async_trait]
impl TenantStore for SqliteMeta {
    async fn add_key(&self, key: &ApiKey) -> Result<bool, MetaError> {
        let json = serde_json::to_string(key).map_err(corrupt(format!("key {}", key.id)))?;
        let added = sqlx::query(
            "INSERT INTO api_keys (id, hash, record) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(key.id.as_str())
        .bind(&key.hash)
        .bind(json)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        Ok(added.rows_affected() == 1)
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, MetaError> {
        let json: Option<String> = sqlx::query_scalar("SELECT record FROM api_keys WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(unavailable)?;
        json.as_deref().map(parse_key).transpose()
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, MetaError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT record FROM api_keys")
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(unavailable)?;
        let mut keys = rows
            .iter()
            .map(|json| parse_key(json))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.id.as_str()).cmp(&(b.created_at, &b.id.as_str())));
        Ok(keys)
    }

    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, MetaError> {
        let at = serde_json::to_value(at).map_err(corrupt("a time".to_string()))?;
        let revoked = sqlx::query(
            "UPDATE api_keys SET record = json_set(record, '$.revoked_at', ?)
             WHERE id = ? AND json_extract(record, '$.revoked_at') IS NULL",
        )
        .bind(at.as_str().unwrap_or_default().to_string())
        .bind(id.as_str())
        .execute(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        Ok(revoked.rows_affected() == 1)
    }

    async fn claim_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, MetaError> {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin().await.map_err(unavailable)?;
        // A row whose lease or job has run out counts as absent.
        let claimed = sqlx::query(
            "INSERT INTO submissions (tenant, key, claim, completed, job_id, expires_at)
             VALUES (?1, ?2, ?3, NULL, NULL, ?4)
             ON CONFLICT (tenant, key) DO UPDATE
               SET claim = excluded.claim, completed = NULL, job_id = NULL,
                   expires_at = excluded.expires_at
               WHERE submissions.expires_at <= ?5",
        )
        .bind(tenant.as_str())
        .bind(key.as_str())
        .bind(nonce)
        .bind(millis(lease_until))
        .bind(millis(now))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let claim = if claimed.rows_affected() == 1 {
            Claim::Claimed
        } else {
            let completed: Option<Option<String>> = sqlx::query_scalar(
                "SELECT completed FROM submissions WHERE tenant = ? AND key = ?",
            )
            .bind(tenant.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            match completed.flatten() {
                None => Claim::Pending,
                Some(json) => Claim::Done(
                    serde_json::from_str(&json)
                        .map_err(corrupt("an idempotency record".to_string()))?,
                ),
            }
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(claim)
    }

    async fn complete_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
        done: &Completed,
        until: DateTime<Utc>,
    ) -> Result<bool, MetaError> {
        let json =
            serde_json::to_string(done).map_err(corrupt("an idempotency record".to_string()))?;
        // Absent (the lease lapsed and nobody took the key) or still ours:
        // recorded. Someone else's claim, or a completed record: left alone.
        let written = sqlx::query(
            "INSERT INTO submissions (tenant, key, claim, completed, job_id, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (tenant, key) DO UPDATE
               SET completed = excluded.completed, job_id = excluded.job_id,
                   expires_at = excluded.expires_at
               WHERE submissions.claim = ?3 AND submissions.completed IS NULL",
        )
        .bind(tenant.as_str())
        .bind(key.as_str())
        .bind(nonce)
        .bind(json)
        .bind(&done.job_id)
        .bind(millis(until))
        .execute(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        Ok(written.rows_affected() == 1)
    }

    async fn release_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        nonce: &str,
    ) -> Result<(), MetaError> {
        sqlx::query(
            "DELETE FROM submissions
             WHERE tenant = ? AND key = ? AND claim = ? AND completed IS NULL",
        )
        .bind(tenant.as_str())
        .bind(key.as_str())
        .bind(nonce)
        .execute(&mut *self.writer().await?)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn count_in_window(
        &self,
        subject: &str,
        window_start: i64,
        _window_ms: i64,
        limit: u64,
    ) -> Result<(bool, u64), MetaError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.writer().await?;
        // One trip: past windows of this subject go as it counts in a new
        // one, and the count comes back if it was made (the upsert is atomic
        // by itself). A refusal returns no row; its count is read apart.
        let counted: Option<i64> = sqlx::query_scalar(
            "DELETE FROM quota_windows WHERE subject = ?1 AND window < ?2;
             INSERT INTO quota_windows (subject, window, count) VALUES (?1, ?2, 1)
             ON CONFLICT (subject, window) DO UPDATE SET count = count + 1
             WHERE quota_windows.count < ?3
             RETURNING count",
        )
        .bind(subject)
        .bind(window_start)
        .bind(limit)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
        let (counted, count) = match counted {
            Some(count) => (limit > 0, count),
            None => {
                let count: Option<i64> = sqlx::query_scalar(
                    "SELECT count FROM quota_windows WHERE subject = ? AND window = ?",
                )
                .bind(subject)
                .bind(window_start)
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?;
                (false, count.unwrap_or(0))
            }
        };
        Ok((counted, u64::try_from(count).unwrap_or(0)))
    }

    async fn forget_submission(
        &self,
        tenant: &Tenant,
        key: &IdempotencyKey,
        job_id: &str,
    ) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM submissions WHERE tenant = ? AND key = ? AND job_id = ?")
            .bind(tenant.as_str())
            .bind(key.as_str())
            .bind(job_id)
            .execute(&mut *self.writer().await?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

//! Which of apalis-sqlite's indexes on its task table (`Jobs`) an imgpipe
//! queue file keeps.
//!
//! Every index that holds a task's status is rewritten at each of the
//! task's status changes: its fetch (Pending → Queued) and its
//! acknowledgement (→ Done), a few pages of the write-ahead log each.
//! apalis-sqlite 1.0 creates four such indexes for queries of its own
//! dashboard and maintenance, which imgpipe never runs; they are dropped
//! when a queue is opened. What stays serves the statements that do run: the fetch
//! (`idx_jobs_pending`, `idx_jobs_failed`), the insert's skip of a task id
//! already queued (`idx_jobs_idempotency_key`), the recovery of a dead
//! worker's tasks (`LIdx`), the acknowledgement and `forget` (the primary
//! key), the lanes' depth (`idx_jobs_pending`). One index is ours: the
//! webhook lane's finished deliveries, for their periodic removal; it holds
//! webhook rows only, so an image's task never writes it.
//!
//! Must not: drop an index a statement run on the table needs (the test
//! reads every such statement's plan), or touch the table's rows.

use sqlx::SqlitePool;

/// apalis-sqlite's indexes that no statement imgpipe runs uses.
const UNUSED: [&str; 4] = [
    "idx_jobs_status_run_at",
    "idx_jobs_job_type_status_run_at",
    "idx_jobs_completed_done_at",
    "idx_jobs_claimable",
];

/// The webhook lane's rows by status (its job type is `WEBHOOK_QUEUE`,
/// checked by the test).
const WEBHOOKS: &str = "CREATE INDEX IF NOT EXISTS imgpipe_webhooks_by_status
    ON Jobs (job_type, status) WHERE job_type = 'imgpipe::deliver-webhook'";

/// Brings the file's indexes to the set above; cheap when they already are.
pub(super) async fn trim(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    for index in UNUSED {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {index}")))
            .execute(pool)
            .await?;
    }
    sqlx::query(WEBHOOKS).execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::{Connection, SqliteConnection};

    use crate::queue::{Liveness, SqliteQueue};

    /// Every statement imgpipe runs on the table (its own, and those of
    /// apalis-sqlite's that a worker runs) finds its rows through an index:
    /// none reads the whole table, which holds every task of every job
    /// still kept.
    #[tokio::test]
    async fn every_statement_on_the_table_searches_an_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let liveness = Liveness {
            interval: Duration::from_secs(1),
            missed: 3,
        };
        let path = dir.path().join("q.sqlite3");
        let _queue = SqliteQueue::open(&path, liveness, 3).await.expect("open");
        // A connection of its own: EXPLAIN does not check that a
        // connection's copy of the schema is current, and the pool's
        // connections may have read it before the indexes were trimmed.
        let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index'")
                .fetch_all(&mut conn)
                .await
                .expect("indexes");
        for unused in super::UNUSED {
            assert!(
                !indexes.iter().any(|i| i == unused),
                "{unused} kept: {indexes:?}"
            );
        }
        assert!(super::WEBHOOKS.contains(&format!("'{}'", crate::queue::sqlite::WEBHOOK_QUEUE)));
        // Each statement, and the searches its plan must make (by index,
        // or by the primary key: `sqlite_autoindex_Jobs_1` is on `id`).
        let by_id = "sqlite_autoindex_Jobs_1 (id=?)";
        let statements: Vec<(&str, &str, Vec<&str>)> = vec![
            (
                "depth",
                crate::queue::sqlite::DEPTH,
                vec!["idx_jobs_pending"],
            ),
            (
                "webhook purge",
                crate::queue::webhook::PURGE_FINISHED,
                vec!["imgpipe_webhooks_by_status (job_type=? AND status=?)"],
            ),
            ("forget", crate::queue::sqlite::FORGET, vec![by_id]),
            (
                "acknowledgement",
                crate::queue::sqlite_worker::ACK,
                vec![by_id],
            ),
            (
                "workers",
                crate::queue::workers::WORKERS,
                vec!["LIdx (lock_by=?)"],
            ),
            ("insert", crate::queue::sqlite_insert::INSERT, vec![]),
            (
                "apalis' fetch",
                FETCH_NEXT,
                vec![
                    "PRIMARY KEY (rowid=?)",
                    "idx_jobs_pending",
                    "idx_jobs_failed",
                ],
            ),
            ("apalis' lock (webhooks)", LOCK, vec![by_id]),
            (
                "apalis' recovery",
                REENQUEUE_ORPHANED,
                vec![by_id, "LIdx (lock_by=?)"],
            ),
        ];
        for (name, sql, searches) in statements {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            let steps: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            let on_jobs: Vec<&&str> = steps
                .iter()
                .filter(|s| {
                    s.starts_with("SEARCH Jobs")
                        || s.starts_with("SEARCH j ")
                        || s.starts_with("SCAN Jobs")
                        || s.starts_with("SCAN j ")
                })
                .collect();
            assert_eq!(on_jobs.len(), searches.len(), "{name}: {steps:?}");
            for search in searches {
                assert!(
                    on_jobs
                        .iter()
                        .any(|s| s.starts_with("SEARCH") && s.contains(search)),
                    "{name} does not search {search}: {steps:?}"
                );
            }
        }
    }

    /// apalis-sqlite 1.0.0's `queries/backend/fetch_next.sql`, as its
    /// worker (and so ours) runs it.
    const FETCH_NEXT: &str =
        "UPDATE Jobs SET status = 'Queued', lock_by = ?1, lock_at = strftime('%s', 'now')
        WHERE ROWID IN (
            WITH candidates AS (
                SELECT * FROM (SELECT ROWID, priority, run_at, id FROM Jobs
                               WHERE job_type = ?2 AND status = 'Pending' AND lock_by IS NULL
                                 AND (run_at IS NULL OR run_at <= ?4)
                               ORDER BY priority DESC, run_at ASC, id ASC LIMIT ?3)
                UNION ALL
                SELECT * FROM (SELECT ROWID, priority, run_at, id FROM Jobs
                               WHERE job_type = ?2 AND status = 'Failed' AND attempts < max_attempts
                                 AND (run_at IS NULL OR run_at <= ?4)
                               ORDER BY priority DESC, run_at ASC, id ASC LIMIT ?3))
            SELECT ROWID FROM candidates ORDER BY priority DESC, run_at ASC, id ASC LIMIT ?3
        ) RETURNING *";

    /// apalis-sqlite 1.0.0's `queries/task/lock.sql` (its `SqliteStorage`,
    /// which runs the webhook lane, marks a task it starts).
    const LOCK: &str = "UPDATE Jobs SET status = 'Running', lock_at = strftime('%s', 'now'), lock_by = ?2
        WHERE id IN (SELECT value FROM json_each(?1))
          AND (status = 'Queued' OR status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))";

    /// apalis-sqlite 1.0.0's `queries/backend/reenqueue_orphaned.sql`.
    const REENQUEUE_ORPHANED: &str = "UPDATE Jobs SET status = 'Pending', done_at = NULL,
            lock_by = NULL, lock_at = NULL, attempts = attempts + 1,
            last_result = '{\"Err\": \"Re-enqueued due to worker heartbeat timeout.\"}'
        WHERE id IN (
            SELECT Jobs.id FROM Jobs INNER JOIN Workers ON lock_by = Workers.id
            WHERE (status = 'Running' OR status = 'Queued')
              AND strftime('%s', 'now') - Workers.last_seen >= ?1
              AND Workers.worker_type = ?2
              AND (?3 IS NULL OR Workers.id != ?3)
              AND (?4 IS NULL OR Workers.id = ?4))";
}

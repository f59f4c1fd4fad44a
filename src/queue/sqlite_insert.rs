//! apalis-sqlite's insert of tasks (`queries/task/sink.sql`) for a whole
//! batch in one statement.
//!
//! apalis-sqlite inserts a batch one row per statement inside a
//! transaction: a release of three images was five trips to the
//! connection's thread (BEGIN, three inserts, COMMIT). This inserts the same
//! rows in one, which SQLite makes atomic by itself: all of them or none.
//!
//! What must not change here: a row's contents. Each column is filled as
//! apalis-sqlite's `push_tasks` fills it (the same defaults for what a task
//! leaves unset), and a task whose id is already queued is skipped as there
//! (`ON CONFLICT … DO NOTHING`); the test compares rows made both ways.

use std::time::{SystemTime, UNIX_EPOCH};

use apalis_sqlite::SqliteTask;
use serde::Serialize;
use sqlx::SqliteConnection;
use ulid::Ulid;

use super::QueueError;
use crate::backend_error::ErrorKind;

/// One row per element of the JSON array `?2`, in the array's order.
/// (`WHERE true`: SQLite needs a WHERE before an upsert's ON CONFLICT when
/// the rows come from a SELECT.)
pub(super) const INSERT: &str =
    "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at,
                  last_result, lock_at, lock_by, done_at, priority, metadata, idempotency_key)
SELECT CAST(value ->> 'args' AS BLOB), value ->> 'id', ?1, 'Pending', 0,
       value ->> 'max_attempts', value ->> 'run_at', NULL, NULL, NULL, NULL,
       value ->> 'priority', value ->> 'metadata', value ->> 'idempotency_key'
FROM json_each(?2)
WHERE true
ON CONFLICT (job_type, idempotency_key) DO NOTHING";

/// A row's values, as apalis-sqlite's `push_tasks` computes them.
#[derive(Serialize)]
struct Row<'a> {
    /// The task's arguments in apalis' JSON codec: text, stored as a BLOB.
    args: &'a str,
    id: String,
    max_attempts: i64,
    run_at: i64,
    priority: i64,
    metadata: String,
    idempotency_key: Option<&'a str>,
}

fn row(task: &SqliteTask) -> Result<Row<'_>, QueueError> {
    let args = std::str::from_utf8(&task.args).map_err(|e| {
        QueueError::with_source(ErrorKind::Corrupt, "a task's arguments (not JSON)", e)
    })?;
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    Ok(Row {
        args,
        id: task
            .task_id()
            .map_or_else(|| Ulid::new().to_string(), ToString::to_string),
        run_at: i64::try_from(task.run_at().unwrap_or_else(now)).unwrap_or(i64::MAX),
        max_attempts: i64::try_from(task.max_attempts().unwrap_or(25)).unwrap_or(i64::MAX),
        priority: i64::try_from(task.priority().unwrap_or_default()).unwrap_or(i64::MAX),
        metadata: serde_json::to_string(task.metadata()).unwrap_or_default(),
        idempotency_key: task.idempotency_key(),
    })
}

/// Inserts `tasks` into `queue` in one statement.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    queue: &str,
    tasks: &[SqliteTask],
) -> Result<(), QueueError> {
    let rows = tasks.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    let rows = serde_json::to_string(&rows)
        .map_err(|e| QueueError::with_source(ErrorKind::Corrupt, "tasks", e))?;
    sqlx::query(INSERT)
        .bind(queue)
        .bind(rows)
        .execute(conn)
        .await
        .map_err(|e| QueueError::unavailable("enqueue", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use apalis::prelude::{TaskBuilder, TaskId};
    use sqlx::{Connection, SqliteConnection};

    use super::*;

    async fn open(dir: &std::path::Path, name: &str) -> SqliteConnection {
        let pool = crate::sqlite::open(&dir.join(name)).await.expect("open");
        apalis_sqlite::SqliteStorage::setup(&pool)
            .await
            .expect("apalis' schema");
        pool.close().await;
        SqliteConnection::connect(&format!("sqlite://{}", dir.join(name).display()))
            .await
            .expect("connect")
    }

    fn tasks() -> Vec<SqliteTask> {
        let mut tasks: Vec<SqliteTask> = (0..3)
            .map(|i| {
                let id = format!("01J00000000000000000000{i:03}");
                TaskBuilder::new(format!("{{\"job_id\":\"j\",\"index\":{i}}}").into_bytes())
                    .task_id(TaskId::from_string(id.clone()))
                    .max_attempts(3)
                    .priority(1_124_103_623_522_605)
                    .idempotency_key(&id)
                    .build()
            })
            .collect();
        // Left to the defaults: no id, attempts, priority, key or time.
        tasks.push(TaskBuilder::new(b"{}".to_vec()).build());
        // The first task again: skipped, as a repeated release is.
        tasks.push(tasks[0].clone());
        tasks
    }

    /// Each row, every column quoted with its type (`X'…'` for a BLOB,
    /// `'…'` for text); the generated id by its length, the time by whether
    /// it is now.
    async fn rows(conn: &mut SqliteConnection) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT concat_ws(' ', quote(job), length(id), quote(job_type), quote(status),
                              quote(attempts), quote(max_attempts),
                              abs(run_at - unixepoch()) < 60, quote(last_result),
                              quote(lock_at), quote(lock_by), quote(done_at), quote(priority),
                              quote(metadata), quote(idempotency_key = id))
             FROM Jobs ORDER BY rowid",
        )
        .fetch_all(conn)
        .await
        .expect("rows")
    }

    /// The rows are those apalis-sqlite's own insert makes, repeats skipped
    /// alike, in one statement.
    #[tokio::test]
    async fn one_statement_makes_the_rows_apalis_sqlite_makes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut theirs = open(dir.path(), "theirs.sqlite3").await;
        let mut ours = open(dir.path(), "ours.sqlite3").await;
        let queue = "imgpipe::process-image";

        let mut tx = theirs.begin().await.expect("begin");
        apalis_sqlite::queries::push_tasks(&mut *tx, queue, &tasks())
            .await
            .expect("apalis-sqlite's insert");
        tx.commit().await.expect("commit");
        insert(&mut ours, queue, &tasks()).await.expect("ours");

        let (theirs, ours) = (rows(&mut theirs).await, rows(&mut ours).await);
        assert_eq!(ours.len(), 4, "{ours:?}");
        assert_eq!(ours, theirs);
    }
}

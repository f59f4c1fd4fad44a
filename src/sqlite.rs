//! Opening the embedded mode's SQLite databases (the queue and the job
//! metadata, one file each under the data directory). Several processes on one
//! host may share them: WAL mode and a busy timeout make that safe.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// Opens (creating if needed) the database file at `path`.
pub async fn open(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Durable against a killed process (the OS keeps the writes); a power
        // cut may lose the last transactions, the usual WAL trade-off.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Another process (api + worker on one host) may hold the write lock.
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(8)
        // A local file does not hang up: no ping before every statement
        // (sqlx still pings on release, which rolls back what a dropped
        // future left open).
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

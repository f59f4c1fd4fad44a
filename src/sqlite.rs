//! Opening the embedded mode's SQLite databases (the queue and the job
//! metadata, one file each under the data directory). Several processes on one
//! host may share them: WAL mode and a busy timeout make that safe.
//!
//! The queue's file is opened as an sqlx pool (apalis-sqlite takes one); the
//! job metadata's as a [`Connections`] set, which has no per-statement
//! round trip of its own.

mod connections;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use self::connections::{Conn, Connections};

/// How many connections one process opens to one file: enough for the
/// readers that run beside the one writer WAL allows.
const MAX_CONNECTIONS: usize = 8;

/// The connection settings for the database file at `path`.
fn options(path: &Path) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Durable against a killed process (the OS keeps the writes); a power
        // cut may lose the last transactions, the usual WAL trade-off.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // Another process (api + worker on one host) may hold the write lock.
        .busy_timeout(Duration::from_secs(10)))
}

/// Opens (creating if needed) the database file at `path` as an sqlx pool.
pub async fn open(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS as u32)
        // A local file does not hang up: no ping before every statement
        // (sqlx still pings on release, which rolls back what a dropped
        // future left open).
        .test_before_acquire(false)
        .connect_with(options(path)?)
        .await
}

/// Opens (creating if needed) the database file at `path` as a
/// [`Connections`] set.
pub async fn connections(path: &Path) -> Result<Connections, sqlx::Error> {
    Connections::open(options(path)?, MAX_CONNECTIONS).await
}

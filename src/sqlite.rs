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

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
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
        // (sqlx still pings each connection it takes back; this pool is
        // apalis-sqlite's, the job metadata uses `Connections`).
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(stable_plans(conn)))
        .connect_with(options(path)?)
        .await
}

/// Turns on SQLite's query planner stability guarantee (QPSG) for `conn`.
///
/// Without it, SQLite reads a bound `LIMIT ?` while planning, and so marks
/// the prepared statement stale whenever that parameter is bound again:
/// every statement with one (apalis-sqlite's fetch, a backlog read) was
/// parsed and planned anew on every run, a large share of the connection
/// threads' CPU. With it, plans never depend on bound values (which only
/// the statistics of `ANALYZE`, never run here, or a bound `LIKE` pattern,
/// never used here, would have informed).
pub(crate) async fn stable_plans(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, held locked (its
    // thread runs nothing meanwhile); the option takes an int and an
    // optional int* for the old value, passed as null.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(
            format!("SQLite refused the query planner stability guarantee (code {rc})").into(),
        ))
    }
}

/// Opens (creating if needed) the database file at `path` as a
/// [`Connections`] set.
pub async fn connections(path: &Path) -> Result<Connections, sqlx::Error> {
    Connections::open(options(path)?, MAX_CONNECTIONS).await
}

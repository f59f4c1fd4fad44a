//! Opening the embedded mode's SQLite databases (the queue and the job
//! metadata, one file each under the data directory). Several processes on one
//! host may share them: WAL mode and a busy handler make that safe.
//!
//! The queue's file is opened as an sqlx pool (apalis-sqlite takes one); the
//! job metadata's as a [`Connections`] set, which has no per-statement
//! round trip of its own.

mod checkpoint;
mod connections;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
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
        // Replaced by `configure`'s busy handler once connected; this one
        // covers the statements sqlx runs while opening.
        .busy_timeout(BUSY_WAIT))
}

/// Opens (creating if needed) the database file at `path` as an sqlx pool.
pub async fn open(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS as u32)
        // A local file does not hang up: no ping before every statement
        // (sqlx still pings each connection it takes back; this pool is
        // apalis-sqlite's, the job metadata uses `Connections`).
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(configure(conn, None)))
        .connect_with(options(path)?)
        .await
}

/// Sets up a new connection: SQLite's query planner stability guarantee
/// (QPSG), a busy handler of our own ([`wait_for_lock`]) and, for a
/// connection of a [`Connections`] set, checkpoints by the set's
/// checkpointer instead of in its commits (`checkpoint`).
///
/// Without the QPSG, SQLite reads a bound `LIMIT ?` while planning, and so
/// marks the prepared statement stale whenever that parameter is bound
/// again: every statement with one (apalis-sqlite's fetch, a backlog read)
/// was parsed and planned anew on every run, a large share of the
/// connection threads' CPU. With it, plans never depend on bound values
/// (which only the statistics of `ANALYZE`, never run here, or a bound
/// `LIKE` pattern, never used here, would have informed).
async fn configure(
    conn: &mut SqliteConnection,
    checkpoint_due: Option<Arc<checkpoint::Due>>,
) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is this connection's open handle, held locked (its
    // thread runs nothing meanwhile). The QPSG option takes an int and an
    // optional int* for the old value, passed as null; the busy handler is
    // a plain function that keeps no state (its argument is null).
    let (qpsg, busy) = unsafe {
        (
            libsqlite3_sys::sqlite3_db_config(
                db,
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as std::ffi::c_int,
                std::ptr::null_mut::<std::ffi::c_int>(),
            ),
            libsqlite3_sys::sqlite3_busy_handler(db, Some(wait_for_lock), std::ptr::null_mut()),
        )
    };
    for (rc, what) in [
        (qpsg, "the query planner stability guarantee"),
        (busy, "a busy handler"),
    ] {
        if rc != libsqlite3_sys::SQLITE_OK {
            return Err(sqlx::Error::Configuration(
                format!("SQLite refused {what} (code {rc})").into(),
            ));
        }
    }
    if let Some(due) = checkpoint_due {
        // SAFETY: as above.
        unsafe { checkpoint::watch(db, due) };
    }
    Ok(())
}

/// How long a statement waits for a lock another connection holds (the
/// write lock, mostly) before it fails with `SQLITE_BUSY`.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// SQLite's busy handler: called on a connection's own thread when a lock
/// is held elsewhere, the `n`th time for this statement; sleeps and asks
/// for another try (1) or gives up (0).
///
/// SQLite's own (what `busy_timeout` installs) first sleeps a whole
/// millisecond, then 2, 5, 10…, while the write lock is held for a few
/// dozen microseconds by each of the many short writes here (a worker's,
/// the API's, another lane's): a statement that met one waited a
/// millisecond or more, about once per image. This one sleeps as long as a
/// write takes, and backs off to a millisecond only for a long holder
/// (another process's checkpoint, say).
extern "C" fn wait_for_lock(_: *mut std::ffi::c_void, n: std::ffi::c_int) -> std::ffi::c_int {
    match busy_delay(u32::try_from(n).unwrap_or(0)) {
        Some(delay) => {
            std::thread::sleep(delay);
            1
        }
        None => 0,
    }
}

/// The `n`th sleep of [`wait_for_lock`] (from 0), or `None` once the
/// sleeps so far add up to [`BUSY_WAIT`].
fn busy_delay(n: u32) -> Option<Duration> {
    const FIRST_MICROS: [u64; 6] = [20, 50, 100, 200, 400, 700];
    const LAST: Duration = Duration::from_millis(1);
    let first = Duration::from_micros(FIRST_MICROS.iter().sum());
    let (slept, delay) = match FIRST_MICROS.get(n as usize) {
        Some(&micros) => {
            let before = FIRST_MICROS[..n as usize].iter().sum();
            (Duration::from_micros(before), Duration::from_micros(micros))
        }
        None => (first + LAST * (n - FIRST_MICROS.len() as u32), LAST),
    };
    (slept < BUSY_WAIT).then_some(delay)
}

/// Opens (creating if needed) the database file at `path` as a
/// [`Connections`] set, and checkpoints the file in the background while
/// the set lives.
pub async fn connections(path: &Path) -> Result<Arc<Connections>, sqlx::Error> {
    let set = Arc::new(Connections::open(options(path)?, MAX_CONNECTIONS).await?);
    checkpoint::in_background(&set, set.checkpoint_due.clone());
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_waited_for_in_short_sleeps_then_milliseconds_up_to_the_limit() {
        assert_eq!(busy_delay(0), Some(Duration::from_micros(20)));
        assert_eq!(busy_delay(5), Some(Duration::from_micros(700)));
        assert_eq!(busy_delay(6), Some(Duration::from_millis(1)));
        let waited: Duration = (0..).map_while(busy_delay).sum();
        assert!(waited >= BUSY_WAIT, "{waited:?}");
        assert!(waited < BUSY_WAIT + Duration::from_millis(2), "{waited:?}");
        assert_eq!(busy_delay(u32::MAX), None);
    }
}

//! Checkpoints a database file's write-ahead log in the background.
//!
//! SQLite's own checkpoint (every 1 000 pages by default) runs inside
//! whichever commit crosses the threshold: that writer copies the log back
//! into the file and, in WAL mode with `synchronous = NORMAL`, waits for two
//! `fsync`s, a task's or a request's statement taking milliseconds on a disk,
//! with this process's write turn held meanwhile. Here a task of its own
//! checkpoints a set's file a few times a second while it is being written
//! (`PASSIVE`: it never waits for, nor holds up, readers or writers), and
//! SQLite's threshold is raised ([`BACKSTOP_PAGES`]) so that it only acts if
//! this task cannot keep up.
//!
//! Must not: hold a write turn, or keep the set alive (it stops once the set
//! is dropped).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Connections;

/// How often a file written to since its last checkpoint is checkpointed.
const EVERY: Duration = Duration::from_millis(250);

/// `wal_autocheckpoint` for every connection: SQLite checkpoints in a
/// commit only once the log holds this many pages (some 40 MB).
pub(super) const BACKSTOP_PAGES: &str = "10000";

/// Starts checkpointing `set`'s file while `set` lives.
pub(super) fn in_background(set: &Arc<Connections>) {
    let set = Arc::downgrade(set);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !checkpoint_if_written(&set).await {
                return;
            }
        }
    });
}

/// One pass; `false` once the set is gone.
async fn checkpoint_if_written(set: &Weak<Connections>) -> bool {
    let Some(set) = set.upgrade() else {
        return false;
    };
    if set.written.swap(false, Ordering::Relaxed) {
        if let Err(e) = checkpoint(&set).await {
            // The next pass (or SQLite's backstop) tries again.
            log::warn!("checkpointing a SQLite file failed: {e}");
        }
    }
    true
}

/// A passive checkpoint: as much of the log as no reader still needs.
pub(super) async fn checkpoint(set: &Connections) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(&mut *set.acquire().await?)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written reaches the database file itself (not only its log)
    /// soon after, without anyone asking; SQLite's backstop is far off.
    #[tokio::test]
    async fn a_written_file_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.sqlite3");
        let set = crate::sqlite::connections(&path).await.expect("open");
        let file_size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        {
            let mut conn = set.writer().await.expect("writer");
            sqlx::query("CREATE TABLE t (x BLOB)")
                .execute(&mut *conn)
                .await
                .expect("create");
            sqlx::query("INSERT INTO t VALUES (zeroblob(400000))")
                .execute(&mut *conn)
                .await
                .expect("insert");
        }
        assert!(file_size() < 400_000, "written to the log first");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while file_size() < 400_000 {
            assert!(tokio::time::Instant::now() < deadline, "never checkpointed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

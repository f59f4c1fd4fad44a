//! Checkpoints a database file's write-ahead log in the background.
//!
//! SQLite's own checkpoint (once the log holds 1 000 pages) runs inside
//! whichever commit crosses that threshold: that writer copies the log back
//! into the file and, in WAL mode with `synchronous = NORMAL`, waits for two
//! `fsync`s, a task's or a request's statement taking milliseconds on a disk
//! while other writers wait for it. Here each connection of a set tells the
//! set's checkpointer, a task of its own, when a commit leaves the log at
//! that size ([`watch`]), and the checkpointer runs it (`PASSIVE`: it never
//! waits for, nor holds up, readers or writers). Should it fall far behind,
//! the committing connection checkpoints by itself ([`BACKSTOP_FRAMES`]), as
//! SQLite would.
//!
//! The log starts over from its beginning only when a writer begins with
//! all of it copied back and no reader in it, a rare moment under steady
//! load (polls read all the time, and a commit during the checkpoint leaves
//! pages uncopied). Until then it stays past the threshold, so asking on
//! every commit past it made a checkpoint, with its two `fsync`s, of the
//! few pages each commit added. A commit asks again only once the log has
//! grown by [`STEP_FRAMES`] since the last ask ([`after_commit`]).
//!
//! Must not: take a write turn, or keep the set alive (the checkpointer
//! stops once the set is dropped).

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Weak};

use libsqlite3_sys::{sqlite3, sqlite3_wal_checkpoint_v2, sqlite3_wal_hook};
use tokio::sync::Notify;

use super::Connections;

/// Pages in the log from which a checkpoint is due: SQLite's own default.
const DUE_FRAMES: c_int = 1_000;

/// Pages the log grows by, once past [`DUE_FRAMES`], before a commit asks
/// for another checkpoint (a quarter of the threshold: 1 MB).
const STEP_FRAMES: c_int = DUE_FRAMES / 4;

/// Pages in the log from which the committing connection checkpoints by
/// itself (some 40 MB): the checkpointer has fallen behind.
const BACKSTOP_FRAMES: c_int = 10_000;

/// What one database file's connections share with its checkpointer.
#[derive(Default)]
pub(super) struct Due {
    /// Told when a checkpoint is due, and when the set is dropped.
    pub(super) notify: Notify,
    /// The log's size, in pages, at the last commit that asked.
    asked_at: AtomicI32,
}

/// After a commit that leaves `frames` pages in the log, the last ask
/// having been at `asked_at` pages: the size to remember as the last ask,
/// and whether this commit asks for a checkpoint. It asks once the log is
/// due, then each [`STEP_FRAMES`] it grows; a log smaller than at the last
/// ask has started over, and is due again at the threshold.
fn after_commit(frames: c_int, asked_at: c_int) -> (c_int, bool) {
    let asked_at = if frames < asked_at { 0 } else { asked_at };
    if frames >= DUE_FRAMES && frames - asked_at >= STEP_FRAMES {
        (frames, true)
    } else {
        (asked_at, false)
    }
}

/// Has connection `db` tell `due` after each commit that leaves its log
/// with a checkpoint due. The hook replaces SQLite's automatic checkpoint
/// on this connection.
///
/// # Safety
/// `db` must be an open connection handle that nothing else uses meanwhile.
pub(super) unsafe fn watch(db: *mut sqlite3, due: Arc<Due>) {
    // The hook's argument must live as long as the connection: one handle
    // to `due` is leaked per connection opened (a few per file over the
    // life of a process).
    let arg = Arc::into_raw(due).cast_mut().cast::<c_void>();
    // SAFETY: as the caller promises; `on_commit` only reads `arg` as the
    // `Due` it is.
    unsafe { sqlite3_wal_hook(db, Some(on_commit), arg) };
}

/// SQLite's WAL hook: called on the connection's thread after each commit,
/// with the pages now in the log.
unsafe extern "C" fn on_commit(
    arg: *mut c_void,
    db: *mut sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    if frames >= BACKSTOP_FRAMES {
        // SAFETY: SQLite's own hook does this, on the handle it passes.
        // Failure (another checkpoint running) leaves it to the next commit.
        unsafe {
            sqlite3_wal_checkpoint_v2(
                db,
                name,
                libsqlite3_sys::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    } else {
        // SAFETY: `arg` is the leaked `Due` of `watch`, never freed.
        let due = unsafe { &*arg.cast::<Due>() };
        // Two connections committing at once may both ask (the checkpointer
        // runs once for both) or remember different sizes (the next ask
        // comes a few pages early or late).
        let asked_at = due.asked_at.load(Ordering::Relaxed);
        let (remember, ask) = after_commit(frames, asked_at);
        if remember != asked_at {
            due.asked_at.store(remember, Ordering::Relaxed);
        }
        if ask {
            due.notify.notify_one();
        }
    }
    libsqlite3_sys::SQLITE_OK
}

/// Starts `set`'s checkpointer: a checkpoint each time `due` is told (by
/// `on_commit`), until the set is dropped (which tells it too).
pub(super) fn in_background(set: &Arc<Connections>, due: Arc<Due>) {
    let set = Arc::downgrade(set);
    tokio::spawn(async move {
        loop {
            due.notify.notified().await;
            if !checkpoint_if_open(&set).await {
                return;
            }
        }
    });
}

/// One checkpoint; `false` once the set is gone.
async fn checkpoint_if_open(set: &Weak<Connections>) -> bool {
    let Some(set) = set.upgrade() else {
        return false;
    };
    if let Err(e) = checkpoint(&set).await {
        // The next commit past the threshold asks again.
        log::warn!("checkpointing a SQLite file failed: {e}");
    }
    true
}

/// A passive checkpoint: as much of the log as no reader still needs.
async fn checkpoint(set: &Connections) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(&mut *set.acquire().await?)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{after_commit, DUE_FRAMES, STEP_FRAMES};

    /// Commits of `pages` each from an empty log, the log starting over
    /// after each commit that leaves it at a size in `restarts`: the sizes
    /// at which a commit asked.
    fn asks(pages: i32, commits: usize, restarts: &[i32]) -> Vec<i32> {
        let (mut frames, mut asked_at, mut asked) = (0, 0, Vec::new());
        for _ in 0..commits {
            frames += pages;
            let (remember, ask) = after_commit(frames, asked_at);
            asked_at = remember;
            if ask {
                asked.push(frames);
            }
            if restarts.contains(&frames) {
                frames = 0;
            }
        }
        asked
    }

    #[test]
    fn a_log_past_the_threshold_asks_once_per_step_it_grows() {
        let (due, step) = (DUE_FRAMES, STEP_FRAMES);
        assert_eq!(asks(10, 99, &[]), Vec::<i32>::new(), "never due");
        assert_eq!(
            asks(10, 175, &[]),
            [due, due + step, due + 2 * step, due + 3 * step]
        );
        // Started over after the second ask: due again at the threshold.
        assert_eq!(
            asks(10, 250, &[due + step]),
            [due, due + step, due, due + step]
        );
        // Started over, then one commit past the threshold: it asks at once.
        assert_eq!(after_commit(due + 5, due + 3 * step), (due + 5, true));
        assert_eq!(after_commit(10, due + step), (0, false));
    }

    /// What is written reaches the database file itself (not only its log)
    /// once the log holds a checkpoint's worth, and not in the writer's
    /// commit: with every connection lent, so that the checkpointer cannot
    /// have one, the file stays as it was; given back, it fills.
    #[tokio::test]
    async fn a_log_past_the_threshold_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.sqlite3");
        let set = crate::sqlite::connections(&path).await.expect("open");
        let file_size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut conn = set.writer().await.expect("writer");
        sqlx::query("CREATE TABLE t (x BLOB)")
            .execute(&mut *conn)
            .await
            .expect("create");
        // Under the threshold: the file stays as it was.
        sqlx::query("INSERT INTO t VALUES (zeroblob(400000))")
            .execute(&mut *conn)
            .await
            .expect("insert");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(file_size() < 400_000, "no checkpoint before one is due");
        let mut others = Vec::new();
        for _ in 1..super::super::MAX_CONNECTIONS {
            others.push(set.acquire().await.expect("a reader"));
        }
        // Past the threshold (some 1 100 pages of 4 KiB).
        sqlx::query("INSERT INTO t VALUES (zeroblob(4500000))")
            .execute(&mut *conn)
            .await
            .expect("insert");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            file_size() < 4_900_000,
            "the writer's commit did not checkpoint: {}",
            file_size()
        );
        drop(conn);
        drop(others);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while file_size() < 4_900_000 {
            assert!(tokio::time::Instant::now() < deadline, "never checkpointed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

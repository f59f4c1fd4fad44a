//! A fixed set of SQLite connections, each lent to one caller at a time and
//! taken back, as it was, when the caller drops it.
//!
//! Why not sqlx's pool: it pings every connection it takes back, from a task
//! it spawns, and the ping is a round trip to the connection's thread, as
//! every statement is. For the job metadata, which runs a dozen short
//! statements per image, that doubled the hand-offs between threads, which
//! cost more CPU than the statements. The ping has nothing to do on a SQLite
//! connection: the connection's own thread rolls back a transaction whose
//! owner, `BEGIN` or `COMMIT` was abandoned, and it runs the commands of a
//! connection in order, so one lent again after a dropped future starts
//! clean. A connection whose thread has stopped (it does so only if such a
//! rollback fails) answers every statement with an error; [`Connections::check`]
//! finds and replaces it.
//!
//! Writers take turns: SQLite lets one connection write at a time and
//! makes the others wait in its busy handler, sleeping and trying again.
//! [`Connections::writer`] lends a connection with this process's write
//! turn, so that writers here queue on a lock that hands over the moment
//! the write is done, and SQLite's waiting is left to writers in other
//! processes. Reads need no turn (WAL).
//!
//! Must not: hold a lent connection across anything but its own statements
//! (it is one of a few), take a write turn while holding one, or run
//! blocking work.

use std::sync::{Arc, Mutex, PoisonError};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Mutex as TurnLock, MutexGuard as Turn, Semaphore, SemaphorePermit};

use super::checkpoint::Due;

pub struct Connections {
    options: SqliteConnectOptions,
    /// Connections not lent out, the most recently returned last.
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per connection that may be lent at once.
    permits: Semaphore,
    /// How many connections are kept.
    max: usize,
    /// Held by this process's one writer at a time (see the module doc).
    write_turn: TurnLock<()>,
    /// Told by the connections' WAL hook when a checkpoint is due, and when
    /// the set is dropped (see `checkpoint`).
    pub(super) checkpoint_due: Arc<Due>,
}

/// A lent connection: derefs to the connection, goes back when dropped.
pub struct Conn<'a> {
    conn: Option<SqliteConnection>,
    set: &'a Connections,
    // The write turn, for a writer's connection; released after the
    // connection is back.
    _turn: Option<Turn<'a, ()>>,
    // Released after `drop` has put the connection back.
    _permit: SemaphorePermit<'a>,
}

impl Connections {
    /// Opens the first connection at once (creating the file if the options
    /// say so, and failing here if it cannot be opened), the rest as needed,
    /// up to `max`.
    pub async fn open(options: SqliteConnectOptions, max: usize) -> Result<Self, sqlx::Error> {
        let checkpoint_due = Arc::<Due>::default();
        let first = Self::connect(&options, &checkpoint_due).await?;
        let max = max.max(1);
        Ok(Connections {
            options,
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(max),
            max,
            write_turn: TurnLock::new(()),
            checkpoint_due,
        })
    }

    /// A connection, waiting while all `max` are lent.
    pub async fn acquire(&self) -> Result<Conn<'_>, sqlx::Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => Self::connect(&self.options, &self.checkpoint_due).await?,
        };
        Ok(Conn {
            conn: Some(conn),
            set: self,
            _turn: None,
            _permit: permit,
        })
    }

    /// A connection for statements that write, lent with this process's
    /// write turn (waited for first, so that no connection sits idle in the
    /// queue for it).
    pub async fn writer(&self) -> Result<Conn<'_>, sqlx::Error> {
        let turn = self.write_turn.lock().await;
        let mut conn = self.acquire().await?;
        conn._turn = Some(turn);
        Ok(conn)
    }

    /// Pings every idle connection, replacing any that does not answer
    /// (its thread stopped); fails only if a replacement cannot be opened.
    pub async fn check(&self) -> Result<(), sqlx::Error> {
        let idle = std::mem::take(&mut *self.idle());
        let mut alive = Vec::with_capacity(idle.len());
        for mut conn in idle {
            match conn.ping().await {
                Ok(()) => alive.push(conn),
                Err(e) => log::warn!("a SQLite connection stopped answering ({e}); replacing it"),
            }
        }
        if alive.is_empty() {
            alive.push(Self::connect(&self.options, &self.checkpoint_due).await?);
        }
        // Connections opened by borrowers while these were out may make more
        // than `max`: the oldest go (closed as they drop).
        let mut idle = self.idle();
        idle.splice(0..0, alive);
        let excess = idle.len().saturating_sub(self.max);
        idle.drain(..excess);
        Ok(())
    }

    async fn connect(
        options: &SqliteConnectOptions,
        checkpoint_due: &Arc<Due>,
    ) -> Result<SqliteConnection, sqlx::Error> {
        let mut conn = options.connect().await?;
        super::configure(&mut conn, Some(checkpoint_due.clone())).await?;
        Ok(conn)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        // The list is only pushed to and popped from: a panic elsewhere
        // cannot leave it half-changed.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        // Its checkpointer wakes, finds it gone, and stops.
        self.checkpoint_due.notify.notify_one();
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.set.idle().push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A set of at most `max` on a new file holding an empty table `t`.
    async fn set(dir: &tempfile::TempDir, max: usize) -> Connections {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.sqlite3"))
            .create_if_missing(true);
        let set = Connections::open(options, max).await.expect("open");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *set.acquire().await.expect("conn"))
            .await
            .expect("create");
        set
    }

    #[tokio::test]
    async fn a_connection_is_reused_and_at_most_max_are_lent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = set(&dir, 2).await;
        let a = set.acquire().await.expect("a");
        let _b = set.acquire().await.expect("b");
        assert_eq!(set.idle().len(), 0, "the second was opened on demand");
        let third = tokio::time::timeout(Duration::from_millis(50), set.acquire()).await;
        assert!(third.is_err(), "a third waits while two are lent");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), set.acquire()).await;
        assert!(c.is_ok(), "and gets the one given back");
        drop(c);
        drop(_b);
        // One opened by a borrower while `check` had the others out: the
        // check keeps no more than `max`.
        let extra = SqliteConnectOptions::new()
            .filename(dir.path().join("t.sqlite3"))
            .connect()
            .await
            .expect("extra");
        set.idle().push(extra);
        set.check().await.expect("check");
        assert_eq!(set.idle().len(), 2);
    }

    #[tokio::test]
    async fn an_abandoned_transaction_is_rolled_back_before_the_next_borrower() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = set(&dir, 1).await;
        {
            let mut conn = set.acquire().await.expect("conn");
            let mut tx = conn.begin().await.expect("begin");
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *tx)
                .await
                .expect("insert");
            // Dropped without commit: as a cancelled request would.
        }
        let mut conn = set.acquire().await.expect("conn");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .expect("count");
        assert_eq!(n, 0);
        // And the connection is not left inside a transaction: this one
        // commits for good.
        let mut tx = conn.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        drop(conn);
        set.check().await.expect("check");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *set.acquire().await.expect("conn"))
            .await
            .expect("count");
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn writers_take_turns_and_readers_do_not_wait_for_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = set(&dir, 4).await;
        let mut first = set.writer().await.expect("first writer");
        let mut tx = first.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        let second = tokio::time::timeout(Duration::from_millis(50), set.writer()).await;
        assert!(second.is_err(), "a second writer waits for the turn");
        // A reader is lent a connection at once, and sees the last commit.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *set.acquire().await.expect("reader"))
            .await
            .expect("count");
        assert_eq!(n, 0);
        tx.commit().await.expect("commit");
        drop(first);
        let mut second = tokio::time::timeout(Duration::from_secs(5), set.writer())
            .await
            .expect("the turn is handed over")
            .expect("second writer");
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *second)
            .await
            .expect("insert");
    }
}

//! Who is working: every worker the queue backend has registered lately
//! (apalis-sqlite's `Workers` table, apalis-redis's workers sets), with what
//! its name says (queue, host, start: see `app::tasks`), its last heartbeat,
//! whether that is within the liveness window, and how many tasks it holds.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Lane, QueueError, RedisQueue, SqliteQueue};

/// Workers silent for longer than this are not listed at all.
pub const FORGOTTEN_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerInfo {
    /// The worker's name, unique per run.
    pub id: String,
    /// `priority`, `bulk` or `webhook`.
    pub queue: String,
    pub host: String,
    pub started_at: Option<DateTime<Utc>>,
    pub last_heartbeat: DateTime<Utc>,
    /// Heartbeat within the liveness window: a SIGKILLed worker turns
    /// false once the window has passed.
    pub alive: bool,
    /// Tasks it has taken and not finished.
    pub running: u64,
}

/// `imgpipe-<queue>-<host>-<ULID>` → queue, host, start.
fn describe(name: &str) -> (String, String, Option<DateTime<Utc>>) {
    let rest = name.strip_prefix("imgpipe-").unwrap_or(name);
    let (queue, rest) = rest.split_once('-').unwrap_or(("?", rest));
    let (host, ulid) = rest.rsplit_once('-').unwrap_or((rest, ""));
    let started = ulid::Ulid::from_string(ulid)
        .ok()
        .map(|u| DateTime::<Utc>::from(u.datetime()));
    (queue.to_string(), host.to_string(), started)
}

fn info(name: String, last_seen: i64, running: u64, alive_since: i64) -> WorkerInfo {
    let (queue, host, started_at) = describe(&name);
    WorkerInfo {
        id: name,
        queue,
        host,
        started_at,
        last_heartbeat: DateTime::from_timestamp(last_seen, 0).unwrap_or_default(),
        alive: last_seen >= alive_since,
        running,
    }
}

fn since(window: std::time::Duration) -> i64 {
    super::alive_since(window).1
}

/// The SQLite queue's workers seen since `?1`, with the tasks each holds.
pub(super) const WORKERS: &str = "SELECT w.id, w.last_seen,
        (SELECT COUNT(*) FROM Jobs j WHERE j.lock_by = w.id AND j.status IN ('Queued', 'Running'))
    FROM Workers w
    WHERE w.worker_type LIKE 'imgpipe::%' AND w.last_seen >= ?
    ORDER BY w.last_seen DESC";

impl SqliteQueue {
    pub(super) async fn list_workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        // A task locked by a worker is its worker's, whether marked
        // `Running` or still `Queued` (imgpipe's workers do not re-mark the
        // tasks they fetch: see `sqlite_worker`).
        let unavailable = |e| QueueError::unavailable("SQLite", e);
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(WORKERS)
            .bind(since(FORGOTTEN_AFTER))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let alive = since(self.liveness);
        Ok(rows
            .into_iter()
            .map(|(id, seen, running)| info(id, seen, u64::try_from(running).unwrap_or(0), alive))
            .collect())
    }
}

impl RedisQueue {
    pub(super) async fn list_workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        // A task locked by a worker is its worker's, whether marked
        // `Running` or still `Queued` (imgpipe's workers do not re-mark the
        // tasks they fetch: see `sqlite_worker`).
        let unavailable = |e| QueueError::unavailable("Redis", e);
        let mut conn = self.conn.clone();
        let alive = since(self.liveness);
        let mut configs: Vec<_> = Lane::ALL
            .iter()
            .map(|lane| self.lane_config(*lane).clone())
            .collect();
        configs.push(self.webhook_config.clone());
        let mut all = Vec::new();
        for config in configs {
            let seen: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
                .arg(config.workers_set())
                .arg(since(FORGOTTEN_AFTER))
                .arg("+inf")
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let mut pipe = redis::pipe();
            for (name, _) in &seen {
                pipe.scard(format!("{}:{name}", config.inflight_jobs_set()));
            }
            let running: Vec<u64> = if seen.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut conn).await.map_err(unavailable)?
            };
            for ((name, score), running) in seen.into_iter().zip(running) {
                all.push(info(name, score as i64, running, alive));
            }
        }
        all.sort_by_key(|w| std::cmp::Reverse(w.last_heartbeat));
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_queue_host_and_start() {
        let ulid = ulid::Ulid::new();
        let (queue, host, started) = describe(&format!("imgpipe-bulk-web-01-{ulid}"));
        assert_eq!((queue.as_str(), host.as_str()), ("bulk", "web-01"));
        assert_eq!(started, Some(DateTime::<Utc>::from(ulid.datetime())));
        assert_eq!(describe("other").0, "?");
    }
}

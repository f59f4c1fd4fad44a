//! The Redis queue against the real Redis that `scripts/test.sh` starts:
//! apalis-redis's key layout is the one `src/queue/redis.rs` relies on (this
//! test fails with a clear message if an apalis-redis upgrade changes it),
//! `forget` removes a task from every structure, and a task that keeps
//! failing is delivered exactly up to the limit, its last delivery told so.
//! (The SQLite queue's equivalents are unit tests in `src/queue/sqlite.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use imgpipe::jobs::JobId;
use imgpipe::queue::{
    new_task_id, Consumer, Delivery, Handler, Lane, Liveness, Outcome, ProcessImage, Producer,
    RedisQueue,
};
use redis::AsyncCommands;

async fn connection() -> redis::aio::ConnectionManager {
    let url = std::env::var("IMGPIPE_TEST_REDIS_URL")
        .expect("IMGPIPE_TEST_REDIS_URL is not set: run the tests through scripts/test.sh");
    redis::Client::open(url)
        .expect("valid Redis URL")
        .get_connection_manager()
        .await
        .expect("Redis from scripts/test.sh is reachable")
}

fn liveness() -> Liveness {
    Liveness {
        interval: Duration::from_secs(1),
        missed: 3,
    }
}

fn prefix() -> String {
    format!("test-queue-{}", uuid::Uuid::new_v4().simple())
}

fn task() -> ProcessImage {
    ProcessImage {
        job_id: JobId::new(),
        index: 0,
    }
}

#[tokio::test]
async fn the_key_layout_is_the_one_this_build_relies_on() {
    for (lane, suffix) in [(Lane::Bulk, ""), (Lane::Priority, ":priority")] {
        layout_of(lane, suffix).await;
    }
}

async fn layout_of(lane: Lane, suffix: &str) {
    let mut conn = connection().await;
    let prefix = prefix();
    let queue = RedisQueue::new(conn.clone(), &prefix, liveness(), 7);
    let q = format!("{prefix}:process-image{suffix}");
    let id = new_task_id();
    queue
        .enqueue(lane, vec![(id.clone(), task())])
        .await
        .expect("enqueue");

    let layout = "apalis-redis's key layout changed: src/queue/redis.rs (FORGET) was written for apalis-redis 1.0.0";
    // apalis-redis pushes every task onto its schedule (due now); workers move
    // due tasks to the pending list.
    let scheduled: Option<f64> = conn
        .zscore(format!("{q}:scheduled"), &id)
        .await
        .expect("ZSCORE");
    let pending: Vec<String> = conn
        .lrange(format!("{q}:active"), 0, -1)
        .await
        .expect("LRANGE");
    assert!(
        scheduled.is_some() || pending.contains(&id),
        "{layout}: the task is neither on the schedule {q}:scheduled nor the pending list {q}:active"
    );
    let payload: bool = conn
        .hexists(format!("{q}:data"), &id)
        .await
        .expect("HEXISTS");
    assert!(payload, "{layout}: payload hash {q}:data");
    let max: Option<u32> = conn
        .hget(format!("{q}:meta:{id}"), "max_attempts")
        .await
        .expect("HGET");
    assert_eq!(
        max,
        Some(7),
        "{layout}: metadata hash {q}:meta:<id> with max_attempts"
    );

    assert_eq!(
        queue
            .forget(std::slice::from_ref(&id))
            .await
            .expect("forget"),
        0
    );
    let left: Vec<String> = conn.keys(format!("{prefix}:*")).await.expect("KEYS");
    let left: Vec<&String> = left
        .iter()
        .filter(|k| !k.ends_with(":signal") && !k.contains(":workers"))
        .collect();
    assert!(left.is_empty(), "forget left {left:?}");
}

/// Always asks for a retry, and records what it was told.
#[derive(Default)]
struct AlwaysRetry {
    seen: Mutex<Vec<Delivery>>,
}

#[async_trait]
impl Handler for AlwaysRetry {
    async fn handle(&self, _task: ProcessImage, delivery: Delivery) -> Outcome {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(delivery);
        }
        Outcome::RetryLater("still down".into())
    }
}

#[tokio::test]
async fn a_failing_task_is_delivered_up_to_the_limit_and_told_its_last() {
    let limit = 3;
    let queue = RedisQueue::new(connection().await, &prefix(), liveness(), limit);
    queue
        .enqueue(Lane::Priority, vec![(new_task_id(), task())])
        .await
        .expect("enqueue");
    let handler = Arc::new(AlwaysRetry::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let (queue, handler) = (queue.clone(), handler.clone() as Arc<dyn Handler>);
        tokio::spawn(async move {
            let stop = Box::pin(async move {
                let _ = stop_rx.await;
            });
            queue
                .run_worker(
                    format!("w-{}", new_task_id()),
                    Lane::Priority,
                    1,
                    handler,
                    stop,
                )
                .await
        })
    };
    let seen = || handler.seen.lock().map(|s| s.clone()).unwrap_or_default();
    // apalis-redis waits as many seconds as attempts so far before a retry.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen().len() < limit as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {:?} deliveries within 30 s",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Long enough for a fourth delivery, were there one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_tx.send(());
    let _ = worker.await;
    let seen = seen();
    let attempts: Vec<u32> = seen.iter().map(|d| d.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let last: Vec<bool> = seen.iter().map(Delivery::is_last).collect();
    assert_eq!(last, [false, false, true]);
}

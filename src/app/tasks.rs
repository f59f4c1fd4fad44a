//! The long-running loops of a process besides the HTTP server: the worker
//! supervisors, the periodic purge, the release sweep and the webhook relay,
//! all ending when shutdown is requested.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::queue::{Consumer, Handler, Lane, QueueError, WebhookHandler, WebhookQueue};
use crate::service::{Deliverer, JobService, Releaser};

/// Runs the apalis worker of `lane` until `stop`, and starts a fresh one
/// (with a new name) whenever it ends on its own: apalis ends a worker at
/// its first backend error, and a Redis blip must not leave this process
/// idle while it looks healthy. The dead worker's in-flight tasks are
/// re-queued by the heartbeat check of the live ones.
pub(super) async fn supervise_workers(
    queue: Arc<dyn Consumer>,
    lane: Lane,
    handler: Arc<dyn Handler>,
    concurrency: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    supervise(lane.name(), concurrency, stop, |name, stopped| {
        let (queue, handler) = (queue.clone(), handler.clone());
        async move {
            queue
                .run_worker(name, lane, concurrency, handler, stopped)
                .await
        }
    })
    .await
}

/// As [`supervise_workers`], for the webhook deliveries' queue.
pub(super) async fn supervise_webhook_workers(
    queue: Arc<dyn WebhookQueue>,
    handler: Arc<dyn WebhookHandler>,
    concurrency: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    supervise("webhook", concurrency, stop, |name, stopped| {
        let (queue, handler) = (queue.clone(), handler.clone());
        async move {
            queue
                .run_webhook_worker(name, concurrency, handler, stopped)
                .await
        }
    })
    .await
}

async fn supervise<F, Fut>(
    label: &str,
    concurrency: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
    run: F,
) where
    F: Fn(String, BoxFuture<'static, ()>) -> Fut,
    Fut: std::future::Future<Output = Result<(), QueueError>>,
{
    const MAX_DELAY: Duration = Duration::from_secs(30);
    let mut delay = Duration::from_secs(1);
    loop {
        // A unique name per worker: apalis re-queues a dead worker's tasks by
        // name, and a reused name would hide its orphans (apalis #504).
        let name = format!("imgpipe-{label}-{}-{}", hostname(), ulid::Ulid::new());
        log::info!("worker {name} starting with concurrency {concurrency}");
        let started = std::time::Instant::now();
        let result = run(name.clone(), Box::pin(stopped(stop.clone()))).await;
        if *stop.borrow() {
            return;
        }
        if started.elapsed() > MAX_DELAY {
            delay = Duration::from_secs(1);
        }
        match result {
            Ok(()) => {
                log::error!("worker {name} stopped unexpectedly; a new one starts in {delay:?}")
            }
            Err(e) => log::error!("worker {name} failed: {e}; a new one starts in {delay:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// Hands due webhook deliveries to their queue every `interval`, and sweeps
/// the queue's finished tasks now and then, until shutdown.
pub(super) async fn relay_webhooks(
    deliverer: Arc<Deliverer>,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    const SWEEP_EVERY: u32 = 240;
    let mut passes = 0u32;
    every(interval, stop, || {
        passes = passes.wrapping_add(1);
        let sweep = passes.is_multiple_of(SWEEP_EVERY);
        let deliverer = deliverer.clone();
        async move {
            if let Err(e) = deliverer.relay().await {
                log::warn!("webhook relay failed (next pass retries): {e}");
            }
            if sweep {
                if let Err(e) = deliverer.sweep().await {
                    log::warn!("webhook queue sweep failed: {e}");
                }
            }
        }
    })
    .await
}

/// Resolves once shutdown is requested.
pub(super) async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Purges expired and deleted jobs every `interval` until shutdown. Every
/// process runs this; passes that overlap only repeat idempotent deletions.
pub(super) async fn purge_periodically(
    service: Arc<JobService>,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    every(interval, stop, || async {
        match service.purge_due().await {
            Ok(0) => {}
            Ok(n) => log::info!("purged {n} expired or deleted jobs"),
            Err(e) => log::warn!("purge pass failed (next pass retries): {e}"),
        }
    })
    .await
}

/// Repairs lost releases (see `service::release`) every `interval` until
/// shutdown. Every process runs this; overlapping passes enqueue nothing
/// twice (the queue skips task ids it holds).
pub(super) async fn sweep_releases_periodically(
    releaser: Releaser,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    every(interval, stop, || async {
        match releaser.sweep().await {
            Ok(0) => {}
            Ok(n) => log::info!("release sweep: {n} held-back image(s) released"),
            Err(e) => log::warn!("release sweep failed (next pass retries): {e}"),
        }
    })
    .await
}

/// Runs `pass` every `interval` (a late tick delays the next, never bunches
/// them) until `stop` says so; a pass in progress finishes first.
async fn every<F, Fut>(interval: Duration, stop: tokio::sync::watch::Receiver<bool>, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        pass().await;
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "host".to_string())
}

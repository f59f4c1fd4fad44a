//! Wiring: builds the backends once from configuration, then runs the HTTP API
//! and/or the workers until SIGTERM/SIGINT, and shuts both down within the
//! configured deadline. The only place that knows which backends are in use.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use redis::aio::ConnectionManager;

use crate::config::{Command, Config};
use crate::http;
use crate::jobs::service::JobService;
use crate::meta::{MetaStore, RedisMeta, SqliteMeta};
use crate::queue::{RedisQueue, SqliteQueue, TaskQueue};
use crate::store::{LocalStore, ObjectStore, S3Store};
use crate::worker::{self, WorkerContext};

/// How long start-up waits for Redis and S3 to answer (they may be starting too).
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot connect to Redis at {url}: {reason}")]
    Redis { url: String, reason: String },
    #[error("object storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("embedded database: {0}")]
    Embedded(String),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("{0}")]
    Runtime(String),
}

/// The backends, chosen once; nothing else knows which they are.
struct Backends {
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    queue: Arc<dyn TaskQueue>,
    /// For the start-up message, e.g. "queue: Redis, storage: local disk".
    description: String,
}

async fn connect_redis(url: &str, patience: Duration) -> Result<ConnectionManager, AppError> {
    let err = |reason: String| AppError::Redis {
        url: redact(url),
        reason,
    };
    let client = redis::Client::open(url).map_err(|e| err(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match client.get_connection_manager().await {
            Ok(conn) => return Ok(conn),
            Err(e) if tokio::time::Instant::now() < deadline => {
                log::warn!("Redis not reachable yet ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(err(e.to_string())),
        }
    }
}

async fn connect_s3(
    config: &Config,
    endpoint: &str,
    patience: Duration,
) -> Result<S3Store, AppError> {
    let store = S3Store::new(
        endpoint,
        &config.s3_region,
        &config.s3_access_key,
        &config.s3_secret_key,
        &config.s3_bucket,
    )?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match store.ensure_bucket().await {
            Ok(()) => return Ok(store),
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                log::warn!("object storage not reachable yet ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Redis for queue and metadata if REDIS_URL is set, else SQLite files in the
/// data directory; S3 for objects if S3_ENDPOINT is set, else the data directory.
async fn backends(config: &Config, patience: Duration) -> Result<Backends, AppError> {
    let data_dir = &config.data_dir;
    if config.redis_url.is_none() || config.s3_endpoint.is_none() {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            AppError::Embedded(format!("cannot create {}: {e}", data_dir.display()))
        })?;
    }
    let (meta, queue, queue_name): (Arc<dyn MetaStore>, Arc<dyn TaskQueue>, String) =
        match &config.redis_url {
            Some(url) => {
                let conn = connect_redis(url, patience).await?;
                (
                    Arc::new(RedisMeta::new(conn.clone(), &config.redis_prefix)),
                    Arc::new(RedisQueue::new(
                        conn,
                        &config.redis_prefix,
                        config.liveness(),
                    )),
                    format!("Redis at {}", redact(url)),
                )
            }
            None => {
                let embedded = |e: String| AppError::Embedded(e);
                let meta = SqliteMeta::open(&data_dir.join("jobs.sqlite3"))
                    .await
                    .map_err(|e| embedded(e.to_string()))?;
                let queue = SqliteQueue::open(&data_dir.join("queue.sqlite3"), config.liveness())
                    .await
                    .map_err(|e| embedded(e.to_string()))?;
                (
                    Arc::new(meta),
                    Arc::new(queue),
                    format!("SQLite in {}", data_dir.display()),
                )
            }
        };
    let (store, store_name): (Arc<dyn ObjectStore>, String) = match &config.s3_endpoint {
        Some(endpoint) => (
            Arc::new(connect_s3(config, endpoint, patience).await?),
            format!("S3 bucket {} at {endpoint}", config.s3_bucket),
        ),
        None => {
            let root = data_dir.join("objects");
            let name = format!("files in {}", root.display());
            (Arc::new(LocalStore::open(root).await?), name)
        }
    };
    Ok(Backends {
        store,
        meta,
        queue,
        description: format!("queue and metadata: {queue_name}; objects: {store_name}"),
    })
}

/// Hides the password of a `redis://user:pass@host` URL in messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// `imgpipe check`: one readiness round against the configured backends.
async fn check(config: &Config) -> Result<(), AppError> {
    let backends = backends(config, Duration::ZERO).await?;
    let service = JobService {
        store: backends.store,
        meta: backends.meta,
        queue: backends.queue,
        limits: config.limits(),
        ttl: Duration::from_secs(config.job_ttl_secs),
    };
    let checks = service.readiness().await;
    for c in &checks {
        match &c.error {
            None => println!("{}: ok", c.name),
            Some(e) => println!("{}: {e}", c.name),
        }
    }
    match checks.iter().filter(|c| !c.ok).count() {
        0 => Ok(()),
        n => Err(AppError::Runtime(format!(
            "{n} of {} checks failed",
            checks.len()
        ))),
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(command: Command, config: Config) -> Result<(), AppError> {
    if command == Command::Check {
        return check(&config).await;
    }
    let backends = backends(&config, STARTUP_PATIENCE).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grace = Duration::from_secs(config.shutdown_timeout_secs);

    let service = web::Data::new(JobService {
        store: backends.store.clone(),
        meta: backends.meta.clone(),
        queue: backends.queue.clone(),
        limits: config.limits(),
        ttl: Duration::from_secs(config.job_ttl_secs),
    });
    let purger = tokio::spawn(purge_periodically(
        service.clone().into_inner(),
        Duration::from_secs(config.purge_interval_secs),
        stop_rx.clone(),
    ));

    let server = if command.runs_api() {
        let service = service.clone();
        let upload_dir = web::Data::new(http::UploadDir(config.tmp_dir()));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(service.clone())
                .app_data(upload_dir.clone())
                .configure(http::configure)
                .wrap(actix_web::middleware::Logger::new("%r %s %b %Dms"))
        })
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        .bind(config.bind)
        .map_err(|e| AppError::Bind {
            addr: config.bind.to_string(),
            reason: e.to_string(),
        })?;
        for addr in server.addrs() {
            // Tests and scripts wait for this line to learn the (possibly random) port.
            println!("imgpipe: listening on http://{addr}");
        }
        Some(server.run())
    } else {
        None
    };

    let workers = if command.runs_workers() {
        let concurrency = config.worker_concurrency();
        let ctx = Arc::new(WorkerContext {
            store: backends.store.clone(),
            meta: backends.meta.clone(),
            max_pixels: config.max_pixels,
            pixel_budget: worker::PixelBudget::new(
                config.max_pixels_in_flight.max(config.max_pixels),
            ),
            max_attempts: config.max_attempts,
            backoff: config.backoff(),
            png_compression: config.png_compression,
            render_pool: Arc::new(
                worker::render_pool(concurrency)
                    .map_err(|e| AppError::Runtime(format!("cannot start render threads: {e}")))?,
            ),
        });
        Some(tokio::spawn(supervise_workers(
            backends.queue.clone(),
            ctx,
            concurrency,
            stop_rx.clone(),
        )))
    } else {
        None
    };

    log::info!("{}", backends.description);
    match command {
        Command::Serve => println!(
            "imgpipe: ready (API and {} workers)",
            config.worker_concurrency()
        ),
        Command::Api => println!("imgpipe: ready (API only)"),
        Command::Worker => println!(
            "imgpipe: worker ready ({} workers)",
            config.worker_concurrency()
        ),
        Command::Check => {}
    }

    let server_handle = server.as_ref().map(|s| s.handle());
    let server_task = server.map(tokio::spawn);
    tokio::select! {
        _ = shutdown_signal() => log::info!("shutdown requested; draining for up to {grace:?}"),
        res = async {
            match server_task {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => {
            return match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(AppError::Runtime(format!("HTTP server stopped: {e}"))),
                Err(e) => Err(AppError::Runtime(format!("HTTP server crashed: {e}"))),
            };
        }
    }

    let _ = stop_tx.send(true);
    let drain = async {
        let _ = purger.await;
        if let Some(handle) = server_handle {
            handle.stop(true).await;
        }
        if let Some(workers) = workers {
            if let Err(e) = workers.await {
                log::warn!("worker supervisor failed: {e}");
            }
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        log::warn!("shutdown deadline of {grace:?} passed; exiting with tasks in flight (they will be re-queued)");
    }
    log::info!("stopped");
    Ok(())
}

/// Runs the apalis worker until `stop`, and starts a fresh one (with a new
/// name) whenever it ends on its own: apalis ends a worker at its first backend
/// error, and a Redis blip must not leave this process idle while it looks
/// healthy. The dead worker's in-flight tasks are re-queued by the heartbeat
/// check of the live ones.
async fn supervise_workers(
    queue: Arc<dyn TaskQueue>,
    ctx: Arc<WorkerContext>,
    concurrency: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const MAX_DELAY: Duration = Duration::from_secs(30);
    let mut delay = Duration::from_secs(1);
    loop {
        // A unique name per worker: apalis re-queues a dead worker's tasks by
        // name, and a reused name would hide its orphans (apalis #504).
        let name = format!("imgpipe-{}-{}", hostname(), ulid::Ulid::new());
        log::info!("worker {name} starting with concurrency {concurrency}");
        let started = std::time::Instant::now();
        let result = queue
            .run_worker(
                name.clone(),
                concurrency,
                ctx.clone(),
                Box::pin(stopped(stop.clone())),
            )
            .await;
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

/// Resolves once shutdown is requested.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Purges expired and deleted jobs every `interval` until shutdown. Every
/// process runs this; passes that overlap only repeat idempotent deletions.
async fn purge_periodically(
    service: Arc<JobService>,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        match service.purge_due().await {
            Ok(0) => {}
            Ok(n) => log::info!("purged {n} expired or deleted jobs"),
            Err(e) => log::warn!("purge pass failed (next pass retries): {e}"),
        }
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redis_passwords_are_hidden() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}

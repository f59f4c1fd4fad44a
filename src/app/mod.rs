//! Wiring: builds the backends once from configuration (`backends`), decides
//! how requests are authenticated (`security`), then runs the HTTP API and/or
//! the workers and the purge loop (`tasks`) until SIGTERM/SIGINT, and shuts
//! everything down within the configured deadline. `keys` is the key CLI.

mod backends;
mod keys;
mod security;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};

use self::backends::{backends, Backends};
use self::tasks::{
    purge_periodically, relay_webhooks, supervise_webhook_workers, supervise_workers,
    sweep_releases_periodically,
};
use crate::auth::links::LinkSigner;
use crate::config::{Command, Config};
use crate::http;
use crate::jobs::Lane;
use crate::service::{Deliverer, JobService, KeyService, Paced, WebhookParts};
use crate::store::HandOff;
use crate::webhooks::client::Client as WebhookClient;
use crate::worker::{self, Worker};

/// How long start-up waits for Redis and S3 to answer (they may be starting too).
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);
/// How often each process looks for a job whose next images were never
/// released (the process releasing them died): the worst added delay then.
const RELEASE_SWEEP_INTERVAL: Duration = Duration::from_secs(2);
/// How often each worker process hands due webhook deliveries to their
/// queue: the most a delivery or a retry waits past its time.
const WEBHOOK_RELAY_INTERVAL: Duration = Duration::from_millis(250);

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

/// A worker process's only HTTP server: `GET /metrics` on `addr`.
fn metrics_server(
    addr: std::net::SocketAddr,
    service: web::Data<JobService>,
    grace: Duration,
) -> Result<actix_web::dev::Server, AppError> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(service.clone())
            .route("/metrics", web::get().to(http::metrics_handler))
    })
    .disable_signals()
    .shutdown_timeout(grace.as_secs())
    .workers(1)
    .bind(addr)
    .map_err(|e| AppError::Bind {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    for addr in server.addrs() {
        println!("imgpipe: metrics on http://{addr}/metrics");
    }
    Ok(server.run())
}

fn job_service(config: &Config, backends: &Backends, signer: LinkSigner) -> JobService {
    JobService::new(
        backends.store.clone(),
        backends.meta.clone(),
        backends.tenants.clone(),
        backends.producer.clone(),
        crate::service::EventHub::new(backends.events.clone()),
        config.limits(),
        Duration::from_secs(config.job_ttl_secs),
        Arc::new(http::ApiLinks::new(
            signer,
            Duration::from_secs(config.link_ttl_secs),
        )),
    )
}

/// `imgpipe check`: one readiness round against the configured backends.
async fn check(config: &Config) -> Result<(), AppError> {
    let backends = backends(config, Duration::ZERO).await?;
    // Readiness signs no links; any secret will do.
    let service = job_service(config, &backends, LinkSigner::new(&[0; 32]));
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
    match &command {
        Command::Check => return check(&config).await,
        Command::Keys { action } => return keys::run(&config, action).await,
        Command::Serve | Command::Api | Command::Worker => {}
        // Clients (`cli`) are run by main before this.
        _ => return Err(AppError::Runtime("not a server command".into())),
    }
    // Settings that would stop an API process are checked before anything starts.
    // A worker signs links too: those in the webhooks it sends.
    let signer = match security::signer(&config) {
        Ok(signer) => signer,
        Err(e) if !command.runs_api() => {
            log::warn!("{e}; links in this worker's webhooks will not be honoured");
            LinkSigner::new(&[0; 32])
        }
        Err(e) => return Err(e),
    };
    crate::telemetry::install();
    let mut backends = backends(&config, STARTUP_PATIENCE).await?;
    // One process taking uploads and running their tasks hands the uploads
    // over in memory (`store::handoff`).
    if command.runs_api() && command.runs_workers() && config.handoff_memory_bytes > 0 {
        backends.store = Arc::new(HandOff::new(
            backends.store,
            usize::try_from(config.handoff_memory_bytes).unwrap_or(usize::MAX),
            crate::jobs::is_input_key,
        ));
    }
    crate::telemetry::build_info(
        if config.redis_url.is_some() {
            "redis"
        } else {
            "sqlite"
        },
        if config.s3_endpoint.is_some() {
            "s3"
        } else {
            "local"
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grace = Duration::from_secs(config.shutdown_timeout_secs);

    let webhook_policy = config.webhooks.policy().map_err(AppError::Runtime)?;
    let service = web::Data::new(
        job_service(&config, &backends, signer.clone())
            .with_webhooks(WebhookParts {
                store: backends.deliveries.clone(),
                policy: Arc::new(webhook_policy.clone()),
            })
            .with_admin(backends.admin.clone()),
    );
    let purger = tokio::spawn(purge_periodically(
        service.clone().into_inner(),
        Duration::from_secs(config.purge_interval_secs),
        stop_rx.clone(),
    ));

    let sweeper = tokio::spawn(sweep_releases_periodically(
        service.releaser(),
        RELEASE_SWEEP_INTERVAL,
        stop_rx.clone(),
    ));

    let server = if command.runs_api() {
        let service = service.clone();
        let upload_dir = web::Data::new(http::UploadDir(config.tmp_dir()));
        let mut disks = vec![config.tmp_dir()];
        if config.s3_endpoint.is_none() {
            disks.push(config.data_dir.clone());
        }
        let upload_guard = web::Data::new(http::UploadGuard::new(
            config.max_inflight_upload_bytes,
            config.upload_memory_bytes,
            config.upload_pace(),
            config.min_free_disk_bytes,
            disks,
            // Every file, every option field, and some slack.
            config.max_files + 16,
        ));
        let keys = KeyService::new(backends.tenants.clone());
        let gate = match security::resolve(&config, &keys).await? {
            security::AuthPlan::Open => http::Gate::new(None, signer),
            security::AuthPlan::Keys { .. } => http::Gate::new(Some(keys), signer),
        };
        let gate = web::Data::new(gate);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(service.clone())
                .app_data(upload_dir.clone())
                .app_data(gate.clone())
                .app_data(upload_guard.clone())
                .configure(http::configure)
                .wrap(actix_web::middleware::from_fn(http::count_requests))
                .wrap(actix_web::middleware::from_fn(http::assign_request_id))
                .wrap(http::access_log())
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
    } else if let Some(addr) = config.metrics_bind {
        Some(metrics_server(addr, service.clone(), grace)?)
    } else {
        None
    };

    let workers = if command.runs_workers() {
        let concurrency = config.worker_concurrency();
        let settings = config.worker_settings();
        // One budget for both lanes: memory stays bounded whichever decodes.
        let budget = settings.budget();
        let mut lanes = Vec::new();
        for lane in Lane::ALL {
            let render_pool = worker::RenderPool::new(concurrency, lane)
                .map_err(|e| AppError::Runtime(format!("cannot start render threads: {e}")))?;
            let worker = Arc::new(Worker::new(
                backends.store.clone(),
                backends.meta.clone(),
                settings,
                Arc::new(render_pool),
                budget.clone(),
            ));
            let handler = Arc::new(Paced::new(worker, service.releaser()));
            lanes.push(tokio::spawn(supervise_workers(
                backends.consumer.clone(),
                lane,
                handler,
                config.worker_tasks(),
                stop_rx.clone(),
            )));
        }
        let deliverer = Arc::new(Deliverer::new(
            backends.deliveries.clone(),
            backends.webhooks.clone(),
            service.get_ref().clone(),
            WebhookClient::new(webhook_policy).map_err(AppError::Runtime)?,
            config.webhooks.schedule(),
            security::webhook_secrets(&config)?,
        ));
        lanes.push(tokio::spawn(relay_webhooks(
            deliverer.clone(),
            WEBHOOK_RELAY_INTERVAL,
            stop_rx.clone(),
        )));
        lanes.push(tokio::spawn(supervise_webhook_workers(
            backends.webhooks.clone(),
            deliverer,
            usize::try_from(config.webhooks.webhook_concurrency).unwrap_or(16),
            stop_rx.clone(),
        )));
        Some(futures::future::join_all(lanes))
    } else {
        None
    };

    log::info!("{}", backends.description);
    match command {
        Command::Serve => println!(
            "imgpipe: ready (API and {} workers per lane)",
            config.worker_concurrency()
        ),
        Command::Api => println!("imgpipe: ready (API only)"),
        Command::Worker => println!(
            "imgpipe: worker ready ({} workers per lane)",
            config.worker_concurrency()
        ),
        _ => {}
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
        let _ = sweeper.await;
        if let Some(handle) = server_handle {
            handle.stop(true).await;
        }
        if let Some(workers) = workers {
            for e in workers.await.into_iter().filter_map(Result::err) {
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

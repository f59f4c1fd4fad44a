//! Choosing the backends, once, from configuration: Redis or SQLite for the
//! queue and metadata, S3 or a local directory for objects. The only code
//! that names the concrete types; everything else gets the traits.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::AppError;
use crate::config::{Config, Secret};
use crate::meta::{
    AdminView, DeliveryStore, EventLog, MetaStore, RedisMeta, SqliteMeta, TenantStore,
};
use crate::queue::{Consumer, Producer, RedisQueue, SqliteQueue, WebhookQueue, MAX_DELIVERIES};
use crate::store::{LocalStore, ObjectStore, S3Store};

/// The backends, chosen once; nothing else knows which they are.
pub(super) struct Backends {
    pub store: Arc<dyn ObjectStore>,
    pub meta: Arc<dyn MetaStore>,
    /// Keys and idempotency records, in the metadata store's backend.
    pub tenants: Arc<dyn TenantStore>,
    /// Jobs' events, in the metadata store's backend.
    pub events: Arc<dyn EventLog>,
    /// Webhook deliveries, in the metadata store's backend.
    pub deliveries: Arc<dyn DeliveryStore>,
    /// The operator's view of the metadata.
    pub admin: Arc<dyn AdminView>,
    /// The queue's two sides (one backend): enqueueing for the API, running
    /// workers for the worker processes.
    pub producer: Arc<dyn Producer>,
    pub consumer: Arc<dyn Consumer>,
    /// The webhook deliveries' queue, on the same backend.
    pub webhooks: Arc<dyn WebhookQueue>,
    /// For the start-up message, e.g. "queue: Redis, storage: local disk".
    pub description: String,
}

async fn connect_redis(
    url: &str,
    patience: Duration,
) -> Result<(redis::Client, ConnectionManager), AppError> {
    let err = |reason: String| AppError::Redis {
        url: redact(url),
        reason,
    };
    let client = redis::Client::open(url).map_err(|e| err(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match client.get_connection_manager().await {
            Ok(conn) => return Ok((client, conn)),
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
        config.s3_access_key.expose(),
        config.s3_secret_key.expose(),
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

/// The queue and the metadata store, which always share one backend.
struct TaskBackends {
    meta: Arc<dyn MetaStore>,
    tenants: Arc<dyn TenantStore>,
    events: Arc<dyn EventLog>,
    deliveries: Arc<dyn DeliveryStore>,
    admin: Arc<dyn AdminView>,
    producer: Arc<dyn Producer>,
    consumer: Arc<dyn Consumer>,
    webhooks: Arc<dyn WebhookQueue>,
    name: String,
}

/// Redis for queue and metadata if REDIS_URL is set, else SQLite files in the
/// data directory; S3 for objects if S3_ENDPOINT is set, else the data directory.
pub(super) async fn backends(config: &Config, patience: Duration) -> Result<Backends, AppError> {
    let data_dir = &config.data_dir;
    if config.redis_url.is_none() || config.s3_endpoint.is_none() {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            AppError::Embedded(format!("cannot create {}: {e}", data_dir.display()))
        })?;
    }
    let tasks = match config.redis_url.as_ref().map(Secret::expose) {
        Some(url) => {
            let (client, conn) = connect_redis(url, patience).await?;
            let queue = RedisQueue::new(
                conn.clone(),
                &config.redis_prefix,
                config.liveness(),
                MAX_DELIVERIES,
            );
            let queue = Arc::new(queue.waking(client.clone()));
            let meta = Arc::new(RedisMeta::new(conn, &config.redis_prefix).watching(client));
            TaskBackends {
                meta: meta.clone(),
                tenants: meta.clone(),
                events: meta.clone(),
                deliveries: meta.clone(),
                admin: meta,
                producer: queue.clone(),
                consumer: queue.clone(),
                webhooks: queue,
                name: format!("Redis at {}", redact(url)),
            }
        }
        None => {
            let meta = Arc::new(open_sqlite_meta(config).await?);
            let queue = SqliteQueue::open(
                &data_dir.join("queue.sqlite3"),
                config.liveness(),
                MAX_DELIVERIES,
            )
            .await
            .map_err(|e| AppError::Embedded(e.to_string()))?;
            let queue = Arc::new(queue);
            TaskBackends {
                meta: meta.clone(),
                tenants: meta.clone(),
                events: meta.clone(),
                deliveries: meta.clone(),
                admin: meta,
                producer: queue.clone(),
                consumer: queue.clone(),
                webhooks: queue,
                name: format!("SQLite in {}", data_dir.display()),
            }
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
        meta: tasks.meta,
        tenants: tasks.tenants,
        events: tasks.events,
        deliveries: tasks.deliveries,
        admin: tasks.admin,
        producer: tasks.producer,
        consumer: tasks.consumer,
        webhooks: tasks.webhooks,
        description: format!("queue and metadata: {}; objects: {store_name}", tasks.name),
    })
}

async fn open_sqlite_meta(config: &Config) -> Result<SqliteMeta, AppError> {
    SqliteMeta::open(&config.data_dir.join("jobs.sqlite3"))
        .await
        .map_err(|e| AppError::Embedded(e.to_string()))
}

/// The key store alone (for `imgpipe keys`): no queue, no object storage.
pub(super) async fn tenant_store(config: &Config) -> Result<Arc<dyn TenantStore>, AppError> {
    match config.redis_url.as_ref().map(Secret::expose) {
        Some(url) => {
            let (_, conn) = connect_redis(url, Duration::ZERO).await?;
            Ok(Arc::new(RedisMeta::new(conn, &config.redis_prefix)))
        }
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                AppError::Embedded(format!("cannot create {}: {e}", config.data_dir.display()))
            })?;
            Ok(Arc::new(open_sqlite_meta(config).await?))
        }
    }
}

/// Hides the password of a `redis://user:pass@host` URL in messages.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
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

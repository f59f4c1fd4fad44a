//! Webhooks end to end: a job's webhook checked at submission, the relay
//! that hands due deliveries to the queue, the handler that makes one try
//! of one delivery, and the webhook part of a job's status.
//!
//! A delivery is made by the metadata store with its event (see
//! `meta::DeliveryStore`); from there: [`Deliverer::relay`] leases the due
//! ones and pushes one task per try; [`Deliverer`] as the queue's handler
//! claims the try (a duplicate task does nothing), signs and sends it, asks
//! `webhooks::retry` what follows and records that. A process that dies
//! anywhere in between leaves a lease that runs out, and the try is made
//! again: at least once, with the same `webhook-id` and body.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{JobError, JobService};
use crate::jobs::events::{Event, EventKind};
use crate::jobs::status::{aggregate, LinkKind};
use crate::jobs::webhook::{message_id, DeliveryState, DeliveryStatus, Webhook, WebhookStatus};
use crate::jobs::Job;
use crate::meta::{Delivery, DeliveryKey, DeliveryStore, TryRecord};
use crate::queue::{DeliverWebhook, Outcome, WebhookHandler, WebhookQueue};
use crate::webhooks::client::{self, CheckError, Client, Request, Unsent};
use crate::webhooks::retry::{self, Next, Schedule};
use crate::webhooks::signing::Secret;
use crate::webhooks::target::Policy;

/// How long a try may hold its delivery: the address check's and the
/// request's limits, and then some.
const TRY_LEASE: Duration = Duration::from_secs(40);
/// How long a task handed to the queue may wait to be started before the
/// relay hands the try over again (the claim keeps it from being made twice).
const QUEUE_LEASE: Duration = Duration::from_secs(60);
/// Deliveries handed to the queue per relay pass.
const RELAY_BATCH: usize = 200;
/// The latest deliveries shown in a job's status.
const STATUS_DELIVERIES: usize = 20;

/// What the API needs of webhooks: the deliveries' store (for status) and
/// which addresses a webhook may have.
#[derive(Clone)]
pub struct WebhookParts {
    pub store: Arc<dyn DeliveryStore>,
    pub policy: Arc<Policy>,
}

/// The secrets webhooks are signed with.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// IMGPIPE_WEBHOOK_SECRET: tenant `local`'s secret as given.
    pub local: Option<Secret>,
    /// What every other tenant's secret is derived from.
    pub master: Option<Vec<u8>>,
}

impl Secrets {
    pub fn of(&self, tenant: &str) -> Option<Secret> {
        if tenant == crate::auth::Tenant::local().as_str() {
            if let Some(local) = &self.local {
                return Some(local.clone());
            }
        }
        self.master.as_ref().map(|m| Secret::derive(m, tenant))
    }
}

fn millis(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl JobService {
    /// Webhooks for this service's jobs: `webhook_url` is refused without.
    pub fn with_webhooks(mut self, parts: WebhookParts) -> Self {
        self.webhooks = Some(parts);
        self
    }

    /// A job's webhook as asked for at submission: the URL's form, where
    /// it resolves now, and the event names, checked.
    pub async fn webhook(&self, url: String, events: Option<&str>) -> Result<Webhook, JobError> {
        let parts = self
            .webhooks
            .as_ref()
            .ok_or_else(|| JobError::BadWebhook("this server does not send webhooks".into()))?;
        let hook = Webhook::new(url, events).map_err(|e| JobError::BadWebhook(e.to_string()))?;
        match client::check(&hook.url, &parts.policy).await {
            Ok(_) => Ok(hook),
            Err(CheckError::Refused(r)) => Err(JobError::BadWebhook(r.to_string())),
            Err(e @ CheckError::Unresolved(_)) => Err(JobError::BadWebhook(e.to_string())),
        }
    }

    /// The webhook part of `job`'s status (`None` without a webhook, or if
    /// the deliveries cannot be read now: the status is still worth giving).
    pub(super) async fn webhook_status(&self, job: &Job) -> Option<WebhookStatus> {
        let hook = job.webhook.as_ref()?;
        let parts = self.webhooks.as_ref()?;
        let (list, counts) = match parts.store.deliveries(job.id, STATUS_DELIVERIES).await {
            Ok(found) => found,
            Err(e) => {
                log::warn!("job {}: webhook deliveries unreadable: {e}", job.id);
                return None;
            }
        };
        let count = |state| {
            counts
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n)
        };
        Some(WebhookStatus {
            url: hook.url.clone(),
            events: hook.events.clone(),
            pending: count(DeliveryState::Pending),
            delivered: count(DeliveryState::Delivered),
            failed: count(DeliveryState::Failed),
            stopped: count(DeliveryState::Stopped),
            deliveries: list
                .into_iter()
                .map(|d| DeliveryStatus {
                    webhook_id: message_id(d.key.job_id, d.key.seq),
                    seq: d.key.seq,
                    event: d.kind,
                    state: d.state,
                    attempts: d.attempts,
                    last_status: d.last_status,
                    last_error: d.last_error,
                    next_try_at: d.next_at,
                })
                .collect(),
        })
    }
}

/// Makes deliveries: the relay and the queue's handler, in worker processes.
pub struct Deliverer {
    store: Arc<dyn DeliveryStore>,
    queue: Arc<dyn WebhookQueue>,
    service: JobService,
    client: Client,
    schedule: Schedule,
    secrets: Secrets,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn DeliveryStore>,
        queue: Arc<dyn WebhookQueue>,
        service: JobService,
        client: Client,
        schedule: Schedule,
        secrets: Secrets,
    ) -> Self {
        Deliverer {
            store,
            queue,
            service,
            client,
            schedule,
            secrets,
        }
    }

    /// One pass: every due delivery's next try handed to the queue. Returns
    /// how many. A failed push is handed again when its lease runs out.
    pub async fn relay(&self) -> Result<usize, JobError> {
        let now = Utc::now();
        let due = self
            .store
            .take_due(now, now + millis(QUEUE_LEASE), RELAY_BATCH)
            .await?;
        let n = due.len();
        let tasks = due
            .into_iter()
            .map(|(key, attempt)| DeliverWebhook {
                job_id: key.job_id,
                seq: key.seq,
                attempt,
            })
            .collect();
        self.queue.push(tasks).await?;
        Ok(n)
    }

    /// Removes the queue's finished tasks.
    pub async fn sweep(&self) -> Result<usize, JobError> {
        Ok(self.queue.sweep().await?)
    }

    /// The payload: `type`, `timestamp` and `data` as Standard Webhooks
    /// suggests. A final event's data is the job's status (with shareable
    /// links), any other's the event as the event stream sends it.
    async fn payload(&self, d: &Delivery) -> Result<String, JobError> {
        let event: Event = serde_json::from_str(&d.event)
            .map_err(|e| JobError::Internal(format!("stored event unreadable: {e}")))?;
        let mut data = None;
        if event.kind.is_final() && event.kind != EventKind::JobDeleted {
            if let Some(record) = self.service.meta.load(d.key.job_id).await? {
                let status = aggregate(
                    &record.job,
                    &record.progress,
                    self.service.links.as_ref(),
                    LinkKind::Shareable,
                );
                data = Some(serde_json::to_value(status).unwrap_or(Value::Null));
            }
        }
        let data = match data {
            Some(status) => status,
            None => {
                let mut value = serde_json::to_value(Event {
                    seq: d.key.seq,
                    ..event.clone()
                })
                .unwrap_or(Value::Null);
                if let Value::Object(map) = &mut value {
                    map.insert("job_id".into(), json!(d.key.job_id));
                }
                value
            }
        };
        let body = json!({
            "type": event.kind.name(),
            "timestamp": event.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        });
        Ok(body.to_string())
    }

    /// Makes try `attempt` of `d` and says how it ended.
    async fn try_once(&self, d: &Delivery, attempt: u32) -> Result<TryRecord, JobError> {
        let body = match &d.body {
            Some(body) => body.clone(),
            None => self.payload(d).await?,
        };
        let ended = |state, error: String| TryRecord {
            state,
            status: None,
            error: Some(error),
            next_at: Utc::now(),
            body: body.clone(),
        };
        let Some(secret) = self.secrets.of(&d.tenant) else {
            return Ok(ended(
                DeliveryState::Failed,
                "this worker has no IMGPIPE_WEBHOOK_SECRET or IMGPIPE_SIGNING_KEY to sign with"
                    .into(),
            ));
        };
        let id = message_id(d.key.job_id, d.key.seq);
        let timestamp = Utc::now().timestamp();
        let request = Request {
            url: &d.url,
            id: &id,
            timestamp,
            signature: secret.sign(&id, timestamp, body.as_bytes()),
            body: body.clone(),
        };
        let outcome = match self.client.send(request).await {
            Ok(outcome) => outcome,
            Err(Unsent::Refused(r)) => return Ok(ended(DeliveryState::Failed, r.to_string())),
        };
        let now = Utc::now();
        let status = match &outcome {
            retry::Attempt::Answered { status, .. } => Some(*status),
            retry::Attempt::Failed(_) => None,
        };
        let error = match &outcome {
            retry::Attempt::Answered { status, .. } if (200..300).contains(status) => None,
            retry::Attempt::Answered { status, .. } => Some(format!("HTTP {status}")),
            retry::Attempt::Failed(reason) => Some(reason.clone()),
        };
        let (state, next_at) =
            match retry::next(self.schedule, attempt, &outcome, d.made_at, now, jitter()) {
                Next::Delivered => (DeliveryState::Delivered, now),
                Next::Stop => (DeliveryState::Stopped, now),
                Next::RetryAt(at) => (DeliveryState::Pending, at),
                Next::GiveUp(_) => (DeliveryState::Failed, now),
            };
        Ok(TryRecord {
            state,
            status,
            error,
            next_at,
            body,
        })
    }
}

/// In [0, 1): spreads the retries of many deliveries.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[async_trait]
impl WebhookHandler for Deliverer {
    async fn deliver(&self, task: DeliverWebhook) -> Outcome {
        let key = DeliveryKey {
            job_id: task.job_id,
            seq: task.seq,
        };
        let lease = Utc::now() + millis(TRY_LEASE);
        let delivery = match self.store.claim(key, task.attempt, lease).await {
            Ok(Some(d)) => d,
            // Made already, or ended: a duplicate task.
            Ok(None) => return Outcome::Done,
            Err(e) => return Outcome::RetryLater(e.to_string()),
        };
        let record = match self.try_once(&delivery, task.attempt).await {
            Ok(record) => record,
            // The try's lease runs out and the relay hands it over again.
            Err(e) => return Outcome::GiveUp(format!("webhook try not made: {e}")),
        };
        log::info!(
            "webhook {} (job {} event {} {}) try {}: {}",
            message_id(key.job_id, key.seq),
            key.job_id,
            key.seq,
            delivery.kind,
            task.attempt,
            record
                .status
                .map(|s| format!("HTTP {s}"))
                .or_else(|| record.error.clone())
                .unwrap_or_default()
        );
        match self.store.record(key, task.attempt, &record).await {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::RetryLater(e.to_string()),
        }
    }
}

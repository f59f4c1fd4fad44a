//! The webhook settings (see `service::webhooks`): who may be called, how
//! long a delivery is retried, how many go at once, and the signing secret.

use std::time::Duration;

use clap::Args;

use super::Secret;
use crate::webhooks::retry::Schedule;
use crate::webhooks::target::Policy;

#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    /// The `whsec_…` secret that signs webhooks of jobs submitted without
    /// keys (tenant `local`), and the master from which each tenant's is
    /// derived (`imgpipe keys webhook-secret`). Unset: derived from the
    /// link-signing key (IMGPIPE_SIGNING_KEY, or the embedded signing.key)
    #[arg(
        long,
        env = "IMGPIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<Secret>,

    /// Networks (comma-separated CIDRs) webhooks may reach although they are
    /// not public: loopback, private, link-local and metadata addresses are
    /// refused otherwise, e.g. `127.0.0.1/32` for a receiver on this host
    #[arg(long, env = "IMGPIPE_WEBHOOK_ALLOW", global = true)]
    pub webhook_allow: Option<String>,

    /// How long an event's delivery is retried, in seconds from the event;
    /// after that it is given up
    #[arg(
        long,
        env = "IMGPIPE_WEBHOOK_MAX_AGE_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub webhook_max_age_secs: u64,

    /// The first retry's delay in milliseconds; each next one doubles (with
    /// jitter), up to IMGPIPE_WEBHOOK_MAX_RETRY_SECS
    #[arg(
        long,
        env = "IMGPIPE_WEBHOOK_FIRST_RETRY_MS",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub webhook_first_retry_ms: u64,

    /// The longest delay between two tries of a delivery, in seconds
    #[arg(
        long,
        env = "IMGPIPE_WEBHOOK_MAX_RETRY_SECS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub webhook_max_retry_secs: u64,

    /// Deliveries in flight at once per worker process
    #[arg(
        long,
        env = "IMGPIPE_WEBHOOK_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..=1024),
        global = true
    )]
    pub webhook_concurrency: u64,
}

impl WebhookConfig {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            first: Duration::from_millis(self.webhook_first_retry_ms),
            cap: Duration::from_secs(self.webhook_max_retry_secs),
            max_age: Duration::from_secs(self.webhook_max_age_secs),
        }
    }

    /// The allowed networks; an error names the bad entry.
    pub fn policy(&self) -> Result<Policy, String> {
        Policy::parse(self.webhook_allow.as_deref().unwrap_or_default())
            .map_err(|e| format!("IMGPIPE_WEBHOOK_ALLOW: {e}"))
    }
}

//! The command line: which part of imgpipe to run (`serve`, `api`,
//! `worker`, `check`, `keys …`) or which client command (`submit`,
//! `status`, `download`, `watch`) and each command's own arguments. The
//! settings every command shares are [`Config`]'s.

use clap::{Parser, Subcommand};

use super::Config;
use crate::cli::args::{FetchArgs, JobArgs, SubmitArgs};
use crate::cli::ClientCommand;

#[derive(Debug, Parser)]
#[command(
    name = "imgpipe",
    version,
    about = "Asynchronous image processing: REST API + apalis workers + Pillow-exact filters",
    after_help = "Every option can be set through the environment variable shown beside it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// HTTP API and workers in one process
    Serve,
    /// HTTP API only (enqueues tasks; run workers elsewhere)
    Api,
    /// Workers only (no HTTP)
    Worker,
    /// Check that the configured queue, metadata store and object store
    /// answer, print the result, exit 0 if all do (for container health checks)
    Check,
    /// Manage API keys in the configured metadata store (works while the
    /// server runs)
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Send images and folders to a server with a chain of operations,
    /// follow them with progress bars, and save the results
    Submit(SubmitArgs),
    /// Print jobs' status
    Status(JobArgs),
    /// Save finished jobs' results (a ZIP, or files under --out-dir)
    Download(FetchArgs),
    /// Follow running jobs to their end (e.g. after Ctrl-C), then save with --out or --out-dir
    Watch(FetchArgs),
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it once, alone on the last line of standard output
    Create {
        /// Tenant the key belongs to (a-z, 0-9, '-', '_', '.')
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes: submit, read, admin
        #[arg(long)]
        scopes: String,
        /// Free text shown by `keys list` (who or what uses the key)
        #[arg(long)]
        label: Option<String>,
        /// This key's submissions per minute (default: IMGPIPE_QUOTA_JOBS_PER_MINUTE)
        #[arg(long)]
        jobs_per_minute: Option<u64>,
        /// This key's queued + running images (default: IMGPIPE_QUOTA_ACTIVE_IMAGES)
        #[arg(long)]
        active_images: Option<u64>,
        /// This key's bytes stored (default: IMGPIPE_QUOTA_STORED_BYTES)
        #[arg(long)]
        stored_bytes: Option<u64>,
    },
    /// List every key (id, tenant, scopes, quotas, created, revoked, label); never the keys themselves
    List,
    /// Revoke a key by its id (as shown by `keys list`); takes effect at once
    Revoke {
        /// The key's id, e.g. key_3f9a0c1b2d4e
        id: String,
    },
    /// Print the `whsec_…` secret that signs a tenant's webhooks (derived
    /// from IMGPIPE_WEBHOOK_SECRET or the link-signing key; never stored)
    WebhookSecret {
        /// The tenant (`local` for jobs submitted without keys)
        #[arg(long, default_value = "local")]
        tenant: String,
    },
}

impl Command {
    /// The client commands, which talk to a server over HTTP.
    pub fn client(&self) -> Option<ClientCommand> {
        Some(match self {
            Command::Submit(a) => ClientCommand::Submit(a.clone()),
            Command::Status(a) => ClientCommand::Status(a.clone()),
            Command::Download(a) => ClientCommand::Download(a.clone()),
            Command::Watch(a) => ClientCommand::Watch(a.clone()),
            _ => return None,
        })
    }

    pub fn runs_api(&self) -> bool {
        matches!(self, Command::Serve | Command::Api)
    }

    pub fn runs_workers(&self) -> bool {
        matches!(self, Command::Serve | Command::Worker)
    }
}

//! Every setting, read from environment variables (or the equivalent flags)
//! with defaults that work on one machine. `imgpipe --help` lists them all;
//! the README's configuration table mirrors this file. The commands and
//! their own arguments are in `commands`.

mod commands;
mod secret;
mod webhooks;

pub use commands::{Cli, Command, KeysCommand};
pub use secret::Secret;
pub use webhooks::WebhookConfig;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::codec::PngCompression;
use crate::jobs::admission::{CostLimits, Pace, Quotas};
use crate::jobs::intake::Limits;
use crate::jobs::pacing::PriorityLimits;
use crate::queue::Liveness;
use crate::worker::{Backoff, WorkerSettings};

/// How long a transfer may start slowly before its rate is judged.
const TRANSFER_GRACE: Duration = Duration::from_secs(10);

/// Heartbeats a worker may miss before its tasks are handed to others.
const MISSED_HEARTBEATS: usize = 3;

/// Whether requests need an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthSetting {
    /// Off on a loopback address (local use), on on any other
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port)
    #[arg(
        long,
        env = "IMGPIPE_BIND",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind: SocketAddr,

    /// Log lines: `text` (for people) or `json` (one object per line, with
    /// the request id or the task's job, image and attempt)
    #[arg(
        long,
        env = "IMGPIPE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: crate::logging::LogFormat,

    /// Where `imgpipe worker` serves GET /metrics (Prometheus); unset: no
    /// metrics server. `serve` and `api` serve /metrics on IMGPIPE_BIND
    #[arg(long, env = "IMGPIPE_METRICS_BIND", global = true)]
    pub metrics_bind: Option<SocketAddr>,

    /// Where the embedded mode keeps its queue, job metadata and (without
    /// S3_ENDPOINT) objects; created if missing
    #[arg(
        long,
        env = "IMGPIPE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Redis URL for the task queue and job metadata; unset: an embedded
    /// SQLite queue and metadata store in IMGPIPE_DATA_DIR
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key imgpipe writes (queue and metadata); lets
    /// several deployments share one Redis
    #[arg(
        long,
        env = "IMGPIPE_REDIS_PREFIX",
        default_value = "imgpipe",
        global = true
    )]
    pub redis_prefix: String,

    /// S3-compatible endpoint (MinIO, AWS S3, Garage…); unset: objects are
    /// files in IMGPIPE_DATA_DIR/objects
    #[arg(long, env = "S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,

    #[arg(
        long,
        env = "S3_ACCESS_KEY",
        default_value = "minioadmin",
        hide_env_values = true,
        global = true
    )]
    pub s3_access_key: Secret,

    #[arg(
        long,
        env = "S3_SECRET_KEY",
        default_value = "minioadmin",
        hide_env_values = true,
        global = true
    )]
    pub s3_secret_key: Secret,

    /// Bucket for uploads and results; created at start-up if missing
    #[arg(long, env = "S3_BUCKET", default_value = "imgpipe", global = true)]
    pub s3_bucket: String,

    /// Region used to sign S3 requests
    #[arg(long, env = "S3_REGION", default_value = "us-east-1", global = true)]
    pub s3_region: String,

    /// Images processed at once by this process's workers (0 = number of CPUs)
    #[arg(long, env = "IMGPIPE_WORKERS", default_value_t = 0, global = true)]
    pub workers: usize,

    /// Threads of the async runtime, which only coordinates: requests are
    /// parsed on actix's threads, images rendered on render threads and
    /// files read and written on blocking threads. One is enough, and a
    /// second costs more in wake-ups between the two than it adds
    #[arg(
        long,
        env = "IMGPIPE_RUNTIME_THREADS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=1024),
        global = true
    )]
    pub runtime_threads: u16,

    /// Tasks each lane's worker takes beyond its IMGPIPE_WORKERS render
    /// threads, reading their uploads while they wait for a free one, so
    /// that no thread idles while an image is read, stored or recorded
    /// (0 = one task per thread; unset: 1 with local storage, twice
    /// IMGPIPE_WORKERS with S3, whose reads take tens of milliseconds)
    #[arg(long, env = "IMGPIPE_PREFETCH", global = true)]
    pub prefetch: Option<usize>,

    /// Fair scheduling: images of one tenant waiting in the shared queue at
    /// once; the rest are released as workers take these, so tenants, and
    /// each tenant's jobs, take turns (0 = release every image at
    /// submission, first come first served)
    #[arg(
        long,
        env = "IMGPIPE_QUEUED_PER_TENANT",
        default_value_t = 4,
        global = true
    )]
    pub queued_per_tenant: usize,

    /// Fair scheduling's priority lane: a job goes to it if its tenant would
    /// then have at most this many images queued or running and each of its
    /// images is estimated under IMGPIPE_PRIORITY_IMAGE_COST; its images are
    /// rendered ahead of the bulk lane's (0 = one lane, no priority)
    #[arg(
        long,
        env = "IMGPIPE_PRIORITY_IMAGES",
        default_value_t = 32,
        global = true
    )]
    pub priority_images: u64,

    /// Fair scheduling's priority lane: the costliest image it takes, in
    /// estimated seconds (cost admission's estimate, see
    /// IMGPIPE_MAX_IMAGE_COST)
    #[arg(
        long,
        env = "IMGPIPE_PRIORITY_IMAGE_COST",
        default_value_t = 2.0,
        global = true
    )]
    pub priority_image_cost: f64,

    /// Largest accepted file, in bytes (default 50 MiB)
    #[arg(long, env = "IMGPIPE_MAX_FILE_BYTES", default_value_t = 50 * 1024 * 1024, global = true)]
    pub max_file_bytes: u64,

    /// Largest accepted image, in pixels (width × height), read from the header
    #[arg(
        long,
        env = "IMGPIPE_MAX_PIXELS",
        default_value_t = 50_000_000,
        global = true
    )]
    pub max_pixels: u64,

    /// Most image pixels one process decodes at once, summed over its workers
    /// (memory is about 16 bytes per pixel at peak); never below IMGPIPE_MAX_PIXELS
    #[arg(
        long,
        env = "IMGPIPE_MAX_PIXELS_IN_FLIGHT",
        default_value_t = 100_000_000,
        global = true
    )]
    pub max_pixels_in_flight: u64,

    /// PNG compression: 1 (fastest) to 9 (smallest) like zlib, or "fast"
    /// (about 15x faster than 6, files about a third larger); 6 is Pillow's
    #[arg(
        long,
        env = "IMGPIPE_PNG_COMPRESSION",
        default_value = "6",
        global = true
    )]
    pub png_compression: PngCompression,

    /// Most work one image may cost, in estimated CPU seconds (decoding,
    /// every operation, encoding; from its header size, before it is stored);
    /// costlier chains are refused at upload with 422 too_costly
    #[arg(
        long,
        env = "IMGPIPE_MAX_IMAGE_COST",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_image_cost: u64,

    /// How many times its input's pixel count one operation may output
    /// (resize, rotate, thumbnail…); more is refused with 422 too_costly
    #[arg(
        long,
        env = "IMGPIPE_MAX_UPSCALE",
        default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_upscale: u64,

    /// Most bytes of request bodies being received at once, across requests;
    /// an upload that would go over is refused with 503 and Retry-After
    #[arg(
        long,
        env = "IMGPIPE_MAX_INFLIGHT_UPLOAD_BYTES",
        default_value_t = 2 << 30,
        global = true
    )]
    pub max_inflight_upload_bytes: u64,

    /// Memory for uploads held in memory at once, across requests (their
    /// buffers as allocated), instead of being written to a temporary file
    /// as they arrive (each file up to 16 MiB; larger ones, and any beyond
    /// this budget, go to disk; 0: all)
    #[arg(
        long,
        env = "IMGPIPE_UPLOAD_MEMORY_BYTES",
        default_value_t = 128 << 20,
        global = true
    )]
    pub upload_memory_bytes: u64,

    /// `imgpipe serve` only: memory for uploads kept after they are stored,
    /// until this process's workers read them (each read once, then let
    /// go; a copy older than two minutes goes when the next upload is
    /// kept). An upload that does not fit is read back from storage. 0:
    /// none kept
    #[arg(
        long,
        env = "IMGPIPE_HANDOFF_MEMORY_BYTES",
        default_value_t = 64 << 20,
        global = true
    )]
    pub handoff_memory_bytes: u64,

    /// Free space kept on the spool disk (and the data directory's, for
    /// local objects); below it uploads are refused with 507 before anything
    /// is written
    #[arg(
        long,
        env = "IMGPIPE_MIN_FREE_DISK_BYTES",
        default_value_t = 512 << 20,
        global = true
    )]
    pub min_free_disk_bytes: u64,

    /// Longest time one upload may take to arrive, in seconds (408 after)
    #[arg(
        long,
        env = "IMGPIPE_UPLOAD_TIMEOUT_SECS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub upload_timeout_secs: u64,

    /// Slowest accepted upload, in bytes per second averaged from its start,
    /// judged after its first 10 s (408 below it; 0: no minimum)
    #[arg(
        long,
        env = "IMGPIPE_MIN_UPLOAD_BYTES_PER_SEC",
        default_value_t = 8192,
        global = true
    )]
    pub min_upload_bytes_per_sec: u64,

    /// ZIP downloads streamed at once (each holds a thread); more get 503
    /// with Retry-After
    #[arg(
        long,
        env = "IMGPIPE_MAX_CONCURRENT_DOWNLOADS",
        default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_concurrent_downloads: u64,

    /// ZIP downloads of one tenant's jobs streamed at once (per API process);
    /// more get 429 with Retry-After, so one tenant's readers cannot take
    /// every slot
    #[arg(
        long,
        env = "IMGPIPE_MAX_DOWNLOADS_PER_TENANT",
        default_value_t = 8,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_downloads_per_tenant: u64,

    /// Submissions (POST /process-job) of one tenant, or one client address
    /// in open mode, received at once (per API process); more get 429 with
    /// Retry-After at once, so one client's burst cannot take the API from
    /// everyone else
    #[arg(
        long,
        env = "IMGPIPE_MAX_SUBMISSIONS_PER_TENANT",
        default_value_t = 4,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_submissions_per_tenant: u64,

    /// Longest time one ZIP download may take, in seconds; then it is cut
    #[arg(
        long,
        env = "IMGPIPE_DOWNLOAD_TIMEOUT_SECS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub download_timeout_secs: u64,

    /// Slowest accepted ZIP reader, in bytes per second averaged from the
    /// start and judged after its first 10 s; a slower one is cut (0: no minimum)
    #[arg(
        long,
        env = "IMGPIPE_MIN_DOWNLOAD_BYTES_PER_SEC",
        default_value_t = 8192,
        global = true
    )]
    pub min_download_bytes_per_sec: u64,

    /// Longest time one image may take to render, in seconds; then it fails
    /// with "timed out after N s" (not retried) and its slot is freed
    #[arg(
        long,
        env = "IMGPIPE_TASK_TIMEOUT_SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub task_timeout_secs: u64,

    /// Submissions each tenant (in open mode: each client address) may make
    /// per minute, counted in fixed one-minute windows; more get 429 with
    /// Retry-After
    #[arg(
        long,
        env = "IMGPIPE_QUOTA_JOBS_PER_MINUTE",
        default_value_t = 600,
        global = true
    )]
    pub quota_jobs_per_minute: u64,

    /// Images a tenant may have queued or running at once, over all its live
    /// jobs; a submission that would pass it gets 429 with Retry-After
    #[arg(
        long,
        env = "IMGPIPE_QUOTA_ACTIVE_IMAGES",
        default_value_t = 10_000,
        global = true
    )]
    pub quota_active_images: u64,

    /// Bytes a tenant may have stored at once (uploads and results of its
    /// live jobs); a submission that would pass it gets 429 with Retry-After
    #[arg(
        long,
        env = "IMGPIPE_QUOTA_STORED_BYTES",
        default_value_t = 20 * 1024 * 1024 * 1024,
        global = true
    )]
    pub quota_stored_bytes: u64,

    /// Most files accepted in one job
    #[arg(long, env = "IMGPIPE_MAX_FILES", default_value_t = 100, global = true)]
    pub max_files: usize,

    /// Attempts per image before a transient failure (storage or Redis down)
    /// or a crashing worker fails it, 1–25 (apalis dead-letters a task after 25)
    #[arg(
        long,
        env = "IMGPIPE_MAX_ATTEMPTS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=25),
        global = true
    )]
    pub max_attempts: u32,

    /// First delay of the exponential backoff between retries, in milliseconds
    #[arg(
        long,
        env = "IMGPIPE_RETRY_BASE_MS",
        default_value_t = 500,
        global = true
    )]
    pub retry_base_ms: u64,

    /// How long a job, its status and its files are kept, in seconds; then
    /// they are deleted
    #[arg(
        long,
        env = "IMGPIPE_JOB_TTL_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub job_ttl_secs: u64,

    /// How often each process looks for expired or deleted jobs to purge, in seconds
    #[arg(
        long,
        env = "IMGPIPE_PURGE_INTERVAL_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub purge_interval_secs: u64,

    /// Worker heartbeat interval in seconds; a worker silent for 3 heartbeats
    /// (killed, frozen, cut off) is presumed dead and its tasks are re-queued
    #[arg(
        long,
        env = "IMGPIPE_HEARTBEAT_SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub heartbeat_secs: u64,

    /// On SIGTERM/SIGINT, how long in-flight requests and tasks may take to finish
    #[arg(
        long,
        env = "IMGPIPE_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_timeout_secs: u64,

    /// Directory for spooling uploads before they are validated (default: system temp dir)
    #[arg(long, env = "IMGPIPE_TMP_DIR", global = true)]
    pub tmp_dir: Option<PathBuf>,

    /// API keys: "on" (every route but /healthz, /readyz, /filters, /docs and
    /// /openapi.yaml needs one), "off" (open, for local use), or "auto": off
    /// on a loopback IMGPIPE_BIND while no key exists, on otherwise
    #[arg(
        long,
        env = "IMGPIPE_AUTH",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub auth: AuthSetting,

    /// Allows IMGPIPE_AUTH=off on a non-loopback address (anyone who can
    /// reach the port can submit, read and delete every job)
    #[arg(
        long,
        env = "IMGPIPE_ALLOW_OPEN",
        default_value_t = false,
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
        global = true
    )]
    pub allow_open: bool,

    /// An admin key (at least 32 characters) ensured to exist at start-up,
    /// for containers; unset: create keys with `imgpipe keys create`
    #[arg(
        long,
        env = "IMGPIPE_BOOTSTRAP_KEY",
        hide_env_values = true,
        global = true
    )]
    pub bootstrap_key: Option<Secret>,

    /// Secret (at least 32 characters) that signs shareable download links;
    /// every API process of a deployment needs the same one. Unset: required
    /// with REDIS_URL; embedded, one is generated in IMGPIPE_DATA_DIR/signing.key
    #[arg(
        long,
        env = "IMGPIPE_SIGNING_KEY",
        hide_env_values = true,
        global = true
    )]
    pub signing_key: Option<Secret>,

    /// How long a signed download link in a status answer works, in seconds
    /// (never past the job's expiry)
    #[arg(
        long,
        env = "IMGPIPE_LINK_TTL_SECS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub link_ttl_secs: u64,

    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

impl Config {
    pub fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes,
            max_pixels: self.max_pixels,
            max_files: self.max_files,
            cost: CostLimits {
                max_seconds: self.max_image_cost,
                max_upscale: self.max_upscale,
            },
            quota: Quotas {
                jobs_per_minute: self.quota_jobs_per_minute,
                active_images: self.quota_active_images,
                stored_bytes: self.quota_stored_bytes,
            },
            max_downloads: usize::try_from(self.max_concurrent_downloads).unwrap_or(usize::MAX),
            max_downloads_per_tenant: usize::try_from(self.max_downloads_per_tenant)
                .unwrap_or(usize::MAX),
            max_submissions_per_tenant: usize::try_from(self.max_submissions_per_tenant)
                .unwrap_or(usize::MAX),
            download_pace: Pace {
                timeout: Duration::from_secs(self.download_timeout_secs),
                min_bytes_per_sec: self.min_download_bytes_per_sec,
                grace: TRANSFER_GRACE,
            },
            queued_per_tenant: self.queued_per_tenant,
            priority: PriorityLimits {
                images: self.priority_images,
                image_seconds: self.priority_image_cost,
            },
        }
    }

    pub fn upload_pace(&self) -> Pace {
        Pace {
            timeout: Duration::from_secs(self.upload_timeout_secs),
            min_bytes_per_sec: self.min_upload_bytes_per_sec,
            grace: TRANSFER_GRACE,
        }
    }

    pub fn worker_concurrency(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// Tasks each lane's worker holds at once: a render thread each, and
    /// IMGPIPE_PREFETCH more waiting for one.
    pub fn worker_tasks(&self) -> usize {
        let threads = self.worker_concurrency();
        let prefetch = self.prefetch.unwrap_or(if self.s3_endpoint.is_some() {
            threads.saturating_mul(2)
        } else {
            1
        });
        threads.saturating_add(prefetch)
    }

    pub fn backoff(&self) -> Backoff {
        Backoff {
            first: Duration::from_millis(self.retry_base_ms.max(1)),
            max: Duration::from_secs(8),
            tries: 6,
        }
    }

    pub fn worker_settings(&self) -> WorkerSettings {
        WorkerSettings {
            max_pixels: self.max_pixels,
            pixels_in_flight: self.max_pixels_in_flight,
            max_attempts: self.max_attempts,
            backoff: self.backoff(),
            png_compression: self.png_compression,
            task_timeout: Duration::from_secs(self.task_timeout_secs),
        }
    }

    pub fn liveness(&self) -> Liveness {
        Liveness {
            interval: Duration::from_secs(self.heartbeat_secs),
            missed: MISSED_HEARTBEATS,
        }
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.tmp_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The README's configuration table, as (variable, default cell) rows.
    fn readme_table() -> Vec<(String, String)> {
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Configuration")
            .nth(1)
            .expect("README has a Configuration section");
        section
            .lines()
            .skip_while(|l| !l.starts_with("| `"))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let name = cells.get(1)?.trim_matches('`').to_string();
                Some((name, cells.get(2)?.to_string()))
            })
            .collect()
    }

    /// One source of truth: every variable the CLI reads is in `--help` and in
    /// the README table with the same default, and the table lists nothing else.
    #[test]
    fn help_and_readme_document_every_variable_with_its_default() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        let table = readme_table();
        let command = Cli::command();
        let mut from_cli = Vec::new();
        // The server's settings, and the client commands' own (`submit …`).
        let args = command.get_arguments().map(|a| (a, help.clone())).chain(
            command.get_subcommands().flat_map(|sub| {
                let help = sub.clone().render_long_help().to_string();
                sub.get_arguments().map(move |a| (a, help.clone()))
            }),
        );
        for (arg, help) in args {
            let Some(var) = arg.get_env().and_then(|v| v.to_str()) else {
                continue;
            };
            if from_cli.iter().any(|v| v == var) {
                continue;
            }
            from_cli.push(var.to_string());
            assert!(help.contains(var), "{var} missing from --help");
            let Some((_, default_cell)) = table.iter().find(|(name, _)| name == var) else {
                panic!("{var} is read by the CLI but missing from the README table");
            };
            if let Some(default) = arg.get_default_values().first().and_then(|v| v.to_str()) {
                assert!(
                    default_cell.starts_with(&format!("`{default}`")),
                    "{var}: README says {default_cell}, the CLI defaults to {default}"
                );
            }
        }
        for (name, _) in &table {
            // RUST_LOG belongs to env_logger, not to our CLI.
            assert!(
                name == "RUST_LOG" || from_cli.contains(name),
                "README documents {name}, which the CLI does not read"
            );
        }
        assert!(
            from_cli.len() >= 18,
            "expected every setting to have an env var: {from_cli:?}"
        );
    }

    #[test]
    fn a_worker_takes_a_task_per_thread_and_its_prefetch() {
        let tasks = |args: &[&str]| {
            let argv = [&["imgpipe", "worker", "--workers", "2"], args].concat();
            Cli::try_parse_from(argv).unwrap().config.worker_tasks()
        };
        assert_eq!(tasks(&[]), 3, "local storage: one more");
        let s3 = ["--s3-endpoint", "http://127.0.0.1:9000"];
        assert_eq!(tasks(&s3), 6, "S3: twice the threads more");
        assert_eq!(tasks(&[&s3[..], &["--prefetch", "1"]].concat()), 3);
        assert_eq!(tasks(&["--prefetch", "0"]), 2, "0: a task per thread");
    }

    #[test]
    fn defaults_parse() {
        let cli = Cli::try_parse_from(["imgpipe", "serve"]).unwrap();
        assert_eq!(cli.command, Command::Serve);
        assert_eq!(cli.config.limits().max_files, 100);
        assert!(cli.config.worker_concurrency() >= 1);
        assert_eq!(cli.config.redis_url, None, "embedded by default");
        assert_eq!(cli.config.s3_endpoint, None, "embedded by default");
        assert_eq!(cli.config.data_dir, PathBuf::from("./data"));
        assert!(cli.config.bind.ip().is_loopback(), "safe by default");
        assert_eq!(cli.config.auth, AuthSetting::Auto);
        let keys = Cli::try_parse_from([
            "imgpipe", "keys", "create", "--tenant", "a", "--scopes", "read",
        ])
        .unwrap();
        assert!(matches!(
            keys.command,
            Command::Keys {
                action: KeysCommand::Create { .. }
            }
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_help() {
        let cli = Cli::try_parse_from([
            "imgpipe",
            "serve",
            "--redis-url",
            "redis://:hunter2@db:6379",
            "--s3-access-key",
            "AKIAEXAMPLE",
            "--s3-secret-key",
            "wJalrXUtnFEMI",
        ])
        .expect("parses");
        let debug = format!("{cli:?}");
        for secret in ["hunter2", "AKIAEXAMPLE", "wJalrXUtnFEMI"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert_eq!(cli.config.s3_secret_key.expose(), "wJalrXUtnFEMI");
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "REDIS_URL",
            "S3_ACCESS_KEY",
            "S3_SECRET_KEY",
            "IMGPIPE_BOOTSTRAP_KEY",
            "IMGPIPE_SIGNING_KEY",
        ] {
            // Shown as `[env: NAME]`, never `[env: NAME=value]`, even when set.
            assert!(
                help.contains(&format!("[env: {var}]")),
                "{var} value shown: {help}"
            );
        }
    }
}

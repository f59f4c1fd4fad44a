//! imgpipe: an asynchronous image-processing service.
//!
//! Modules in data-flow order (request → job → tasks → worker → storage →
//! status/ZIP); no two modules depend on each other, directly or through
//! others (`tests/architecture.rs`):
//! - [`config`]  settings from the environment; the CLI
//! - [`app`]     wiring: builds the backends once, runs API and/or workers, shuts down
//! - [`http`]    the REST facade (actix-web): thin, translates requests and errors
//! - [`service`] the job operations: submit, status, results, ZIP, delete, purge, readiness
//! - [`auth`]    tenants, API keys and scopes, signed links, idempotency decisions (pure)
//! - [`jobs`]    the job domain, pure: what a job is, recipes, intake checks, status
//! - [`archive`] streaming ZIP of a job's results
//! - [`queue`]   the task type; producer and consumer sides of the queue
//!   (apalis on Redis or SQLite); the handler interface the worker implements
//! - [`worker`]  the task handler: fetch → render → store → record, with its
//!   decisions (retry, fencing, exhaustion) as pure functions
//! - [`render`]  one image: decode → operations → encode (streamed in strips when it can be)
//! - [`codec`]   decoding (orientation applied) and encoding
//! - [`ops`]     Pillow-equivalent operations, pure functions, and their registry
//! - [`store`]   object storage (S3 or a local directory)
//! - [`meta`]    job metadata (Redis or SQLite), the source of truth for status;
//!   each job's events, written with the state they describe
//! - [`webhooks`] webhook deliveries' signing, address checks, retry decisions, and the HTTP try
//! - [`cli`]     the command-line client (`imgpipe submit …`): the public API over HTTP only
//! - [`logging`] env_logger set up, text or JSON lines with the task's context
//! - [`telemetry`] Prometheus metric names, the recorder and its exposition
//! - [`backend_error`] the error shape the three backends share: a kind and a source
//! - [`sqlite`]  opening the embedded mode's SQLite files
//! - [`panic_guard`] running code that may panic, turning a panic into an error
//! - [`memory`]  allocator tuning applied at start-up, so image buffers are reused

#![deny(unsafe_op_in_unsafe_fn)]

pub mod app;
pub mod archive;
pub mod auth;
pub mod backend_error;
pub mod cli;
pub mod codec;
pub mod config;
pub mod direct_io;
pub mod http;
pub mod jobs;
pub mod logging;
pub mod memory;
pub mod meta;
pub mod ops;
pub mod panic_guard;
pub mod queue;
pub mod render;
pub mod service;
pub mod sqlite;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod worker;

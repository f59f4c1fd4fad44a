//! imgpipe: an asynchronous image-processing service.
//!
//! Modules in data-flow order:
//! - [`config`]  settings from the environment; the CLI
//! - [`http`]    the REST facade (actix-web): thin, translates requests and errors
//! - [`jobs`]    the job domain: intake checks, safe names, status aggregation, the job service
//! - [`queue`]   the task type and the queue that carries it (apalis on Redis or SQLite)
//! - [`worker`]  the task handler: fetch → decode → filter → encode → store → record
//! - [`render`]  one image: decode → operations → encode (streamed in strips when it can be)
//! - [`codec`]   decoding (orientation applied) and encoding
//! - [`ops`]     Pillow-equivalent filters, pure functions
//! - [`store`]   object storage (S3 or a local directory)
//! - [`meta`]    job metadata (Redis or SQLite), the source of truth for status
//! - [`sqlite`]  opening the embedded mode's SQLite files
//! - [`archive`] streaming ZIP of a job's results
//! - [`app`]     wiring: builds the backends once, runs API and/or workers, shuts down
//! - [`memory`]  allocator tuning applied at start-up, so image buffers are reused

pub mod app;
pub mod archive;
pub mod codec;
pub mod config;
pub mod http;
pub mod jobs;
pub mod memory;
pub mod meta;
pub mod ops;
pub mod queue;
pub mod render;
pub mod sqlite;
pub mod store;
pub mod worker;

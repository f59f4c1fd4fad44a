//! The worker: turns a delivered task into a processed, stored and recorded
//! image. It implements the queue's [`Handler`](crate::queue::Handler) and
//! knows nothing of apalis or HTTP.
//!
//! - `decide`  the decisions (run an attempt or not, retry or give up,
//!   settle an exhausted image), pure and unit-tested
//! - `handle`  one delivery's I/O around those decisions: fetch → render →
//!   store → record
//! - `pool`    the render threads, off the async runtime, at a lower
//!   priority, and the turns that hand them to tasks
//! - `budget`  the pixel budget that bounds memory across concurrent images
//! - `known`   job records already read (a job is read once, not per image)
//! - `retry`   backoff for transient backend errors within an attempt
//! - `report`  the stage timings and settled counts a delivery reports
//!
//! Deterministic failures (the image cannot be decoded) fail that image at
//! once; transient ones (storage or metadata unreachable) are retried with
//! exponential backoff, first inside the attempt, then by re-delivery, up to
//! the configured number of attempts.

mod budget;
mod decide;
mod handle;
mod known;
mod pool;
mod report;
mod retry;

pub use budget::PixelBudget;
pub use handle::{Worker, WorkerSettings};
pub use pool::RenderPool;
pub use retry::Backoff;

#[cfg(test)]
mod tests;

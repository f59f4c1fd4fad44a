//! The task handler: fetch the upload → render it (decode → filter → encode)
//! → store the result → record the image's state. One call per image.
//!
//! Deterministic failures (the image cannot be decoded) fail that image at
//! once; transient ones (storage or Redis unreachable) are retried with
//! exponential backoff, first inside the attempt, then by re-delivery, up to
//! the configured number of attempts. CPU work runs on the blocking pool,
//! never on the async runtime's threads.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data};
use chrono::Utc;
use futures::FutureExt;

use crate::codec::{CodecError, PngCompression};
use crate::jobs::{ImageProgress, ImageState, Job};
use crate::meta::{MetaError, MetaStore};
use crate::ops::SizeError;
use crate::queue::ProcessImage;
use crate::render::{self, RenderError};
use crate::store::{ObjectStore, StoreError};

/// What a worker needs, injected once at start-up.
pub struct WorkerContext {
    pub store: Arc<dyn ObjectStore>,
    pub meta: Arc<dyn MetaStore>,
    pub max_pixels: u64,
    pub pixel_budget: PixelBudget,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub png_compression: PngCompression,
    /// Where decode → operations → encode run (see `render_pool`).
    pub render_pool: Arc<rayon::ThreadPool>,
}

/// The threads that decode, filter and encode: as many as the worker's
/// concurrency, at a lower CPU priority (nice 10) than the async runtime's,
/// so that on a busy machine the API still answers at once (see README,
/// Performance: POST latency with 2 worker slots on 2 cores). Off the async
/// runtime, as all CPU work must be; operations that split rows run within
/// this pool.
pub fn render_pool(threads: usize) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("imgpipe-render-{i}"))
        .start_handler(|_| lower_priority())
        .build()
        .map_err(std::io::Error::other)
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's id only changes its nice value.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            log::debug!("could not lower the render thread's priority");
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Bounds the pixels decoded at once in this process, so that a few huge
/// images cannot exhaust memory when concurrency is sized for ordinary ones.
#[derive(Clone)]
pub struct PixelBudget {
    permits: Arc<tokio::sync::Semaphore>,
    capacity: u32,
}

impl PixelBudget {
    pub fn new(pixels: u64) -> Self {
        // Permits count pixels; a semaphore takes at most u32::MAX at once.
        let capacity = u32::try_from(pixels).unwrap_or(u32::MAX).max(1);
        PixelBudget {
            permits: Arc::new(tokio::sync::Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// What an image of `pixels` takes; an image larger than the whole budget
    /// takes all of it (and so runs alone) rather than waiting forever.
    fn permits_for(&self, pixels: u64) -> u32 {
        u32::try_from(pixels)
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity)
    }

    /// Owned, so that the CPU work can carry it: if the task is cancelled
    /// (its worker stopped), the blocking decode still holds its pixels.
    async fn reserve(&self, pixels: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_many_owned(self.permits_for(pixels))
            .await
            .ok()
    }
}

/// Exponential backoff for transient errors within one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub tries: u32,
}

impl Backoff {
    pub fn delay(&self, try_number: u32) -> Duration {
        let factor = 1u32.checked_shl(try_number).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

#[derive(Debug, thiserror::Error)]
enum TaskError {
    /// The image itself is bad: retrying cannot help.
    #[error("{0}")]
    Image(#[from] CodecError),
    /// The operations would make an image the service does not make (too large, or empty).
    #[error("{0}")]
    Size(#[from] SizeError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("processing crashed: {0}")]
    Crashed(String),
}

impl From<RenderError> for TaskError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Codec(e) => TaskError::Image(e),
            RenderError::Size(e) => TaskError::Size(e),
        }
    }
}

impl TaskError {
    fn is_transient(&self) -> bool {
        match self {
            TaskError::Image(_) | TaskError::Size(_) | TaskError::Crashed(_) => false,
            TaskError::Store(e) => e.is_transient(),
            TaskError::Meta(MetaError::Unavailable(_)) => true,
            TaskError::Meta(MetaError::Corrupt(_)) => false,
        }
    }
}

/// The apalis handler. A panic fails the image with a reason instead of
/// leaving it "processing" forever.
pub async fn handle(task: ProcessImage, ctx: Data<Arc<WorkerContext>>) -> Result<(), BoxDynError> {
    let ctx: &WorkerContext = &ctx;
    match AssertUnwindSafe(run(&task, ctx)).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let reason = format!(
                "internal error while processing: {}",
                panic_text(panic.as_ref())
            );
            log::error!("job {} image {}: {reason}", task.job_id, task.index);
            if let Ok(Some(mut p)) = ctx.meta.image_progress(task.job_id, task.index).await {
                p.state = ImageState::Failed;
                p.error = Some(reason.clone());
                p.finished_at = Some(Utc::now());
                let _ = ctx
                    .meta
                    .set_image_progress(task.job_id, task.index, &p)
                    .await;
            }
            Err(AbortError::new(reason).into())
        }
    }
}

async fn run(task: &ProcessImage, ctx: &WorkerContext) -> Result<(), BoxDynError> {
    let (job_id, index) = (task.job_id, task.index);
    let job = match retrying(ctx.backoff, || ctx.meta.load(job_id)).await {
        Ok(Some(record)) => record.job,
        Ok(None) => {
            log::warn!("job {job_id} image {index}: job no longer exists (expired or deleted); dropping task");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let previous = retrying(ctx.backoff, || ctx.meta.image_progress(job_id, index)).await?;
    let previous = previous.unwrap_or_else(ImageProgress::queued);
    if previous.state.is_terminal() {
        // Re-delivered after it was already recorded (e.g. its worker died
        // between recording and acknowledging): the work is done.
        return Ok(());
    }
    if previous.attempts >= ctx.max_attempts {
        return settle_exhausted(ctx, &job, index, previous).await;
    }
    let attempt = previous.attempts + 1;
    let started = ImageProgress {
        state: ImageState::Processing,
        attempts: attempt,
        // The error of an earlier attempt belongs to the queued state it explained.
        error: None,
        started_at: Some(Utc::now()),
        finished_at: None,
        ..previous
    };
    let owned = retrying(ctx.backoff, || {
        ctx.meta.set_image_progress(job_id, index, &started)
    })
    .await?;
    if !owned {
        // Between our read and this write the image was finished, or a later
        // delivery of the same task took it over (or the job went away).
        log::info!("job {job_id} image {index}: handled by another attempt; dropping this one");
        return Ok(());
    }

    match process(ctx, &job, index).await {
        Ok(output_bytes) => {
            let done = ImageProgress {
                state: ImageState::Succeeded,
                error: None,
                finished_at: Some(Utc::now()),
                output_bytes: Some(output_bytes),
                ..started
            };
            let recorded = retrying(ctx.backoff, || {
                ctx.meta.set_image_progress(job_id, index, &done)
            })
            .await?;
            if !recorded {
                // Either another attempt recorded an outcome first (the stored
                // result is the same image), or the job was deleted or expired
                // while this image was processed: then its result must not
                // outlive it.
                if retrying(ctx.backoff, || ctx.meta.load(job_id))
                    .await?
                    .is_none()
                {
                    if let Some(key) = job.output_key(index) {
                        retrying(ctx.backoff, || ctx.store.delete(&key)).await?;
                    }
                    log::info!(
                        "job {job_id} image {index}: job deleted or expired meanwhile; result discarded"
                    );
                    return Ok(());
                }
            }
            log::info!(
                "job {job_id} image {index}: done ({output_bytes} bytes, attempt {attempt})"
            );
            Ok(())
        }
        Err(e) if e.is_transient() && attempt < ctx.max_attempts => {
            log::warn!(
                "job {job_id} image {index}: attempt {attempt}/{} failed, will retry: {e}",
                ctx.max_attempts
            );
            let retry = ImageProgress {
                state: ImageState::Queued,
                error: Some(format!("attempt {attempt} failed, retrying: {e}")),
                ..started
            };
            // Best effort: if this write fails too, status shows "processing"
            // until the retry runs.
            let _ = ctx.meta.set_image_progress(job_id, index, &retry).await;
            Err(e.into())
        }
        Err(e) => {
            let reason = if e.is_transient() {
                format!("gave up after {attempt} attempts: {e}")
            } else {
                e.to_string()
            };
            log::warn!("job {job_id} image {index}: failed: {reason}");
            let failed = ImageProgress {
                state: ImageState::Failed,
                error: Some(reason.clone()),
                finished_at: Some(Utc::now()),
                ..started
            };
            retrying(ctx.backoff, || {
                ctx.meta.set_image_progress(job_id, index, &failed)
            })
            .await?;
            Err(AbortError::new(reason).into())
        }
    }
}

/// Every attempt so far started and none recorded an outcome. Either the last
/// one finished but could not record it (its result is in storage), or each
/// worker died on this image (killed, out of memory): stop redelivering it
/// rather than let one image take down worker after worker.
async fn settle_exhausted(
    ctx: &WorkerContext,
    job: &Job,
    index: usize,
    previous: ImageProgress,
) -> Result<(), BoxDynError> {
    let job_id = job.id;
    let stored = match job.output_key(index) {
        Some(key) => match retrying(ctx.backoff, || ctx.store.get_stream(&key)).await {
            Ok(object) => Some(object.size),
            Err(TaskError::Store(StoreError::NotFound(_))) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let now = Some(Utc::now());
    let (settled, outcome) = match stored {
        Some(size) => (
            ImageProgress {
                state: ImageState::Succeeded,
                error: None,
                finished_at: now,
                output_bytes: Some(size),
                ..previous
            },
            Ok(()),
        ),
        None => {
            let reason = format!(
                "gave up after {} attempts: the worker processing this image stopped each time (crashed or killed)",
                previous.attempts
            );
            log::error!("job {job_id} image {index}: {reason}");
            let failed = ImageProgress {
                state: ImageState::Failed,
                error: Some(reason.clone()),
                finished_at: now,
                ..previous
            };
            (failed, Err(AbortError::new(reason).into()))
        }
    };
    retrying(ctx.backoff, || {
        ctx.meta.set_image_progress(job_id, index, &settled)
    })
    .await?;
    outcome
}

/// Runs the pipeline for one image and returns the size of the stored result.
async fn process(ctx: &WorkerContext, job: &Job, index: usize) -> Result<u64, TaskError> {
    let entry = job
        .images
        .get(index)
        .ok_or_else(|| MetaError::Corrupt(format!("job {} has no image {index}", job.id)))?;
    let output_key = job
        .output_key(index)
        .ok_or_else(|| MetaError::Corrupt(format!("job {} has no image {index}", job.id)))?;
    let input_key = job.input_key(index);
    // Held until the image is encoded: fetch, decode, the operations and
    // encode all scale with the largest image the chain makes of it.
    let peak = job
        .recipe
        .ops
        .peak_pixels(entry.width as usize, entry.height as usize);
    let reserved = ctx.pixel_budget.reserve(peak).await;
    let input = retrying(ctx.backoff, || ctx.store.get_bytes(&input_key)).await?;

    let (recipe, format, max_pixels) = (job.recipe.clone(), entry.output_format, ctx.max_pixels);
    let png = ctx.png_compression;
    let (done, result) = tokio::sync::oneshot::channel();
    ctx.render_pool.spawn(move || {
        let _reserved = reserved;
        let output = render::Output {
            ops: &recipe.ops,
            format,
            quality: recipe.quality,
            lossless: recipe.lossless,
            png,
        };
        // A panic must not reach rayon, which would abort the process.
        let rendered = std::panic::catch_unwind(AssertUnwindSafe(|| {
            render::render(&input, output, max_pixels)
        }));
        let _ = done.send(rendered);
    });
    let encoded = match result.await {
        Ok(Ok(rendered)) => rendered?,
        Ok(Err(panic)) => return Err(TaskError::Crashed(panic_text(panic.as_ref()))),
        Err(_) => return Err(TaskError::Crashed("the render thread stopped".into())),
    };

    let size = encoded.len() as u64;
    let bytes = bytes::Bytes::from(encoded);
    retrying(ctx.backoff, || {
        ctx.store
            .put_bytes(&output_key, bytes.clone(), format.content_type())
    })
    .await?;
    Ok(size)
}

/// Retries an operation on transient errors with exponential backoff.
async fn retrying<T, E, F, Fut>(backoff: Backoff, mut op: F) -> Result<T, TaskError>
where
    E: Into<TaskError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut try_number = 0;
    loop {
        match op().await.map_err(Into::into) {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && try_number + 1 < backoff.tries => {
                let delay = backoff.delay(try_number);
                log::debug!("transient error, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                try_number += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pixel_budget_lets_small_images_share_and_large_ones_wait() {
        let budget = PixelBudget::new(100);
        assert_eq!(budget.permits_for(0), 1);
        assert_eq!(
            budget.permits_for(10_000),
            100,
            "larger than the budget: runs alone"
        );
        let a = budget.reserve(40).await.unwrap();
        let b = budget.reserve(40).await.unwrap();
        // 80 of 100 taken: a 30-pixel image must wait for one to finish.
        let waiting = budget.reserve(30);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(a);
        assert!(futures::poll!(waiting.as_mut()).is_ready());
        drop(b);
        assert_eq!(PixelBudget::new(u64::MAX).capacity, u32::MAX);
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(2),
            tries: 6,
        };
        let delays: Vec<_> = (0..7).map(|i| b.delay(i).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.delay(40), Duration::from_secs(2));
    }

    #[test]
    fn image_errors_are_permanent_and_outages_transient() {
        assert!(!TaskError::Image(CodecError::Unsupported).is_transient());
        assert!(TaskError::Store(StoreError::Unavailable("down".into())).is_transient());
        assert!(!TaskError::Store(StoreError::NotFound("k".into())).is_transient());
        assert!(TaskError::Meta(MetaError::Unavailable("down".into())).is_transient());
    }
}

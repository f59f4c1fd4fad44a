//! One delivery of a task, end to end: read the job → decide → fetch the
//! upload → render it on the render pool → store the result → record the
//! image's state → tell the queue. The decisions are `decide`'s; this file
//! does the I/O around them, retrying transient errors within the attempt.

use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use chrono::Utc;
use futures::FutureExt;

use super::budget::PixelBudget;
use super::decide::{self, Begin, Processed, Refused};
use super::known::KnownJobs;
use super::pool::RenderPool;
use super::report::{count_settled, log_gone, stage, took, took_queue};
use super::retry::{retrying, Backoff, TaskError};
use crate::backend_error::ErrorKind;
use crate::codec::{CodecError, PngCompression};
use crate::jobs::{ImageProgress, Job, JobId};
use crate::meta::{MetaError, MetaStore};
use crate::ops::cancel::Cancel;
use crate::queue::{Delivery, Handler, Outcome, ProcessImage};
use crate::render;
use crate::store::ObjectStore;

/// The worker's settings, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Largest image (input or any intermediate), in pixels.
    pub max_pixels: u64,
    /// Pixels decoded at once in this process, over all its images.
    pub pixels_in_flight: u64,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub png_compression: PngCompression,
    /// Longest time one image may take to render (IMGPIPE_TASK_TIMEOUT_SECS).
    pub task_timeout: std::time::Duration,
}

impl WorkerSettings {
    /// The pixel budget these settings give a process: `pixels_in_flight`,
    /// and never less than one image of the largest size.
    pub fn budget(&self) -> PixelBudget {
        PixelBudget::new(self.pixels_in_flight.max(self.max_pixels))
    }
}

/// How often a rendering image checks that its job still exists.
const DELETION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Processes images: the [`Handler`] the queue's workers call.
pub struct Worker {
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    settings: WorkerSettings,
    budget: PixelBudget,
    /// Where decode → operations → encode run (see `pool`).
    render_pool: Arc<RenderPool>,
    /// Job records already read.
    known: KnownJobs,
}

/// Images whose jobs' records a worker keeps: fair scheduling takes turns
/// over a tenant's jobs, so with many queued, consecutive tasks are of
/// different jobs, and the cache must hold all the jobs in turn to spare a
/// read per image. Weighed in images, as a record's size is (a few hundred
/// bytes each).
const KNOWN_IMAGES: usize = 1 << 16;

#[async_trait]
impl Handler for Worker {
    async fn handle(&self, task: ProcessImage, delivery: Delivery) -> Outcome {
        let context = crate::logging::Context {
            job_id: Some(task.job_id.to_string()),
            image: Some(task.index),
            attempt: Some(delivery.attempt),
            ..Default::default()
        };
        crate::logging::scope(context, self.handle_delivery(task, delivery)).await
    }
}

impl Worker {
    async fn handle_delivery(&self, task: ProcessImage, delivery: Delivery) -> Outcome {
        let (job_id, index) = (task.job_id, task.index);
        // Rendering panics are caught on the render pool; this catches the
        // rest, so that no image is left "processing" by a bug.
        let delivered = AssertUnwindSafe(self.deliver(job_id, index, delivery))
            .catch_unwind()
            .await;
        let delivered = match delivered {
            Ok(delivered) => delivered,
            Err(panic) => {
                let reason = format!(
                    "internal error while processing: {}",
                    crate::panic_guard::panic_text(panic.as_ref())
                );
                log::error!("job {job_id} image {index}: {reason}");
                return self.fail_unsettled(job_id, index, reason).await;
            }
        };
        let outcome = match delivered {
            Ok(outcome) => outcome,
            // A backend stayed down (or refused) through every try of this
            // attempt: the queue delivers the task again later...
            Err(e) if !delivery.is_last() => {
                log::warn!("job {job_id} image {index}: {e}; the task will be delivered again");
                Outcome::RetryLater(e.to_string())
            }
            // ...unless this was its last chance: settle the image if the
            // metadata store lets us.
            Err(e) => {
                let reason = format!("gave up after {} deliveries: {e}", delivery.attempt);
                log::error!("job {job_id} image {index}: {reason}");
                self.fail_unsettled(job_id, index, reason).await
            }
        };
        if matches!(outcome, Outcome::RetryLater(_)) {
            metrics::counter!(crate::telemetry::IMAGES, "outcome" => "retried").increment(1);
        }
        outcome
    }
}

impl Worker {
    /// `budget` is shared by every worker of the process (both lanes'), so
    /// that memory stays bounded whichever lane decodes.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        meta: Arc<dyn MetaStore>,
        settings: WorkerSettings,
        render_pool: Arc<RenderPool>,
        budget: PixelBudget,
    ) -> Self {
        Worker {
            store,
            meta,
            budget,
            settings,
            render_pool,
            known: KnownJobs::new(KNOWN_IMAGES),
        }
    }

    /// The job's record, read once per job; `None` if it is gone.
    async fn job(&self, id: JobId) -> Result<Option<Arc<Job>>, TaskError> {
        if let Some(job) = self.known.get(id) {
            return Ok(Some(job));
        }
        let job = retrying(self.backoff(), || self.meta.job(id)).await?;
        Ok(job.map(|job| self.known.insert(job)))
    }

    /// Best effort: records the image `failed` with `reason` (fenced like
    /// every write), for a delivery that ends without a decision of its own.
    async fn fail_unsettled(&self, job_id: JobId, index: usize, reason: String) -> Outcome {
        if let Ok(Some(progress)) = self.meta.image_progress(job_id, index).await {
            if !progress.state.is_terminal() {
                let failed = decide::failed(&progress, reason.clone(), Utc::now());
                if let Ok(true) = self.meta.set_image_progress(job_id, index, &failed).await {
                    count_settled(&failed);
                }
            }
        }
        Outcome::GiveUp(reason)
    }

    fn backoff(&self) -> Backoff {
        self.settings.backoff
    }

    async fn deliver(
        &self,
        job_id: JobId,
        index: usize,
        delivery: Delivery,
    ) -> Result<Outcome, TaskError> {
        let Some(job) = self.job(job_id).await? else {
            log_gone(job_id, index);
            return Ok(Outcome::Done);
        };
        let started = match self.begin(&job, index, delivery).await? {
            Ok(started) => started,
            Err(outcome) => return Ok(outcome),
        };
        let max_attempts = self.settings.max_attempts;

        let (finished, outcome) = match self.process(&job, index).await {
            Ok(size) => decide::finish(
                &started,
                Processed::Stored(size),
                max_attempts,
                delivery,
                Utc::now(),
            ),
            Err(TaskError::Crashed(message)) => {
                log::error!("job {job_id} image {index}: processing crashed: {message}");
                decide::crashed(&started, Utc::now())
            }
            Err(e) => {
                if let TaskError::Image(CodecError::Unreadable { format, detail }) = &e {
                    log::warn!(
                        "job {job_id} image {index}: the {format} decoder panicked: {detail}"
                    );
                }
                if matches!(e, TaskError::Store(_) | TaskError::Meta(_)) {
                    log::warn!("job {job_id} image {index}: {e}");
                }
                let failure = Processed::Failed {
                    transient: e.is_transient(),
                    message: e.reason(),
                };
                decide::finish(&started, failure, max_attempts, delivery, Utc::now())
            }
        };
        match &outcome {
            Outcome::RetryLater(e) => {
                log::warn!(
                    "job {job_id} image {index}: attempt {}/{max_attempts} failed, will retry: {e}",
                    started.attempts
                );
                // Best effort: if this write fails too, status shows
                // "processing" until the retry runs.
                let _ = self.meta.set_image_progress(job_id, index, &finished).await;
                return Ok(outcome);
            }
            Outcome::GiveUp(reason) => log::warn!("job {job_id} image {index}: failed: {reason}"),
            Outcome::Done => {}
        }
        let recorded = self.record(job_id, index, &finished).await?;
        if !recorded && outcome == Outcome::Done {
            let exists = retrying(self.backoff(), || self.meta.is_live(job_id)).await?;
            if decide::after_refused_success(exists) == Refused::DiscardResult {
                if let Some(key) = job.output_key(index) {
                    retrying(self.backoff(), || self.store.delete(&key)).await?;
                }
                log::info!("job {job_id} image {index}: job deleted or expired meanwhile; result discarded");
                return Ok(Outcome::Done);
            }
        }
        if let (Outcome::Done, Some(bytes)) = (&outcome, finished.output_bytes) {
            log::info!(
                "job {job_id} image {index}: done ({bytes} bytes, attempt {})",
                started.attempts
            );
        }
        Ok(outcome)
    }

    /// This attempt's start, recorded; `Err` with what to tell the queue when
    /// there is nothing to do: the job is gone, the image settled or its
    /// attempts spent, or another delivery took it over.
    async fn begin(
        &self,
        job: &Job,
        index: usize,
        delivery: Delivery,
    ) -> Result<Result<ImageProgress, Outcome>, TaskError> {
        let (job_id, max_attempts) = (job.id, self.settings.max_attempts);
        // A first delivery almost always finds its image untouched: its start
        // is recorded on that condition, which the store checks, and the
        // image's progress is read (a trip more) only if it does not hold.
        if delivery.attempt == 1 {
            let fresh = decide::begin(&ImageProgress::queued(), max_attempts, Utc::now());
            if let Begin::Start(started) = fresh {
                let untouched = retrying(self.backoff(), || {
                    self.meta.start_untouched(job_id, index, &started)
                })
                .await?;
                if untouched {
                    took_queue(job);
                    return Ok(Ok(started));
                }
            }
        }
        // Only this image's progress: its job's record is known. A job
        // deleted meanwhile is refused by the first write below.
        let Some(previous) =
            retrying(self.backoff(), || self.meta.image_progress(job_id, index)).await?
        else {
            log_gone(job_id, index);
            return Ok(Err(Outcome::Done));
        };
        let started = match decide::begin(&previous, max_attempts, Utc::now()) {
            // Re-delivered after it was already recorded (e.g. its worker died
            // between recording and acknowledging): the work is done.
            Begin::AlreadySettled => return Ok(Err(Outcome::Done)),
            Begin::Exhausted => {
                return self.settle_exhausted(job, index, &previous).await.map(Err);
            }
            Begin::Start(started) => started,
        };
        if started.attempts == 1 {
            took_queue(job);
        }
        if !self.record(job_id, index, &started).await? {
            // Between our read and this write the image was finished, or a later
            // delivery of the same task took it over (or the job went away).
            log::info!("job {job_id} image {index}: handled by another attempt; dropping this one");
            return Ok(Err(Outcome::Done));
        }
        Ok(Ok(started))
    }

    async fn record(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, TaskError> {
        let written = retrying(self.backoff(), || {
            self.meta.set_image_progress(id, index, progress)
        })
        .await?;
        if written {
            count_settled(progress);
        }
        Ok(written)
    }

    /// See [`decide::settle_exhausted`]: the image's result in storage, if
    /// any, decides.
    async fn settle_exhausted(
        &self,
        job: &Job,
        index: usize,
        previous: &ImageProgress,
    ) -> Result<Outcome, TaskError> {
        let stored = match job.output_key(index) {
            Some(key) => match retrying(self.backoff(), || self.store.get_stream(&key)).await {
                Ok(object) => Some(object.size),
                Err(TaskError::Store(e)) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let (settled, outcome) = decide::settle_exhausted(previous, stored, Utc::now());
        if let Outcome::GiveUp(reason) = &outcome {
            log::error!("job {} image {index}: {reason}", job.id);
        }
        self.record(job.id, index, &settled).await?;
        Ok(outcome)
    }

    /// Runs the pipeline for one image and returns the size of the stored result.
    async fn process(&self, job: &Job, index: usize) -> Result<u64, TaskError> {
        let no_image = || {
            MetaError::new(
                ErrorKind::Corrupt,
                format!("job {} has no image {index}", job.id),
            )
        };
        let entry = job.images.get(index).ok_or_else(no_image)?;
        let output_key = job.output_key(index).ok_or_else(no_image)?;
        let input_key = job.input_key(index);
        let fetching = std::time::Instant::now();
        let input = retrying(self.backoff(), || self.store.get_bytes(&input_key)).await?;
        stage("fetch", fetching);
        // A free render thread only now, with the input at hand: no thread
        // idles while a task reads. Then the pixels, held until the image
        // is encoded (decode, the operations and encode all scale with the
        // largest image the chain makes of it): reserved by a task that
        // waits for a thread, they would only keep others from decoding.
        let turn = self.render_pool.turn().await.map_err(TaskError::Crashed)?;
        let peak = job
            .recipe
            .ops
            .peak_pixels(entry.width as usize, entry.height as usize);
        let reserved = self.budget.reserve(peak).await;

        let recipe = job.recipe.clone();
        let (format, settings) = (entry.output_format, self.settings);
        // Trips at the task deadline (counted from here), or when the job is
        // deleted meanwhile: the operations stop at their next row, and the
        // thread and the memory reservation are free again.
        let cancel = Cancel::until(Some(std::time::Instant::now() + settings.task_timeout));
        let token = cancel.clone();
        let render = self.render_pool.run(turn, move || {
            let _reserved = reserved;
            let output = render::Output {
                ops: &recipe.ops,
                format,
                quality: recipe.quality,
                lossless: recipe.lossless,
                png: settings.png_compression,
            };
            token.scope(|| render::render_timed(&input, output, settings.max_pixels))
        });
        let rendering = std::time::Instant::now();
        tokio::pin!(render);
        let rendered = loop {
            tokio::select! {
                rendered = &mut render => break rendered,
                () = tokio::time::sleep(DELETION_CHECK) => {
                    if let Ok(false) = self.meta.is_live(job.id).await {
                        cancel.cancel();
                    }
                }
            }
        };
        if cancel.past_deadline() {
            return Err(TaskError::TimedOut(settings.task_timeout.as_secs()));
        }
        if cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        let (encoded, timings) = rendered.map_err(TaskError::Crashed)??;
        stage("render", rendering);
        for (name, time) in timings {
            took(name, time);
        }

        let size = encoded.len() as u64;
        let bytes = bytes::Bytes::from(encoded);
        let storing = std::time::Instant::now();
        retrying(self.backoff(), || {
            self.store
                .put_bytes(&output_key, bytes.clone(), format.content_type())
        })
        .await?;
        stage("store", storing);
        Ok(size)
    }
}

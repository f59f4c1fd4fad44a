//! Fair scheduling's I/O: handing each job's images to the shared queue a
//! few at a time, by the rule in `jobs::pacing`. Three callers: submission
//! (a new job's first images), every delivery of a task (the [`Paced`]
//! wrapper around the worker: the image just taken is replaced by the job's
//! next one), and a periodic sweep that repairs a release lost to a crash.
//!
//! Durability: a release enqueues first and records the released count
//! second, so the count never runs ahead of the queue. A crash in between
//! leaves the count behind; the next release (or the sweep) enqueues the same
//! images again, which the queue skips by task id. Nothing here decides an
//! image's outcome; the worker does.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use super::JobError;
use crate::jobs::pacing::{self, Pace};
use crate::jobs::{Job, JobId};
use crate::meta::MetaStore;
use crate::queue::{Delivery, Handler, Outcome, ProcessImage, Producer};

/// How many held-back jobs one sweep visits.
const SWEEP_LIMIT: usize = 256;

/// Releases images of jobs to the queue; cheap to clone.
#[derive(Clone)]
pub struct Releaser {
    meta: Arc<dyn MetaStore>,
    queue: Arc<dyn Producer>,
    /// Images of one job waiting in the queue at once (0: no pacing).
    ahead: usize,
}

impl Releaser {
    pub fn new(meta: Arc<dyn MetaStore>, queue: Arc<dyn Producer>, ahead: usize) -> Self {
        Releaser { meta, queue, ahead }
    }

    /// Whether jobs are paced at all (`IMGPIPE_QUEUED_PER_JOB` > 0).
    pub fn paces(&self) -> bool {
        self.ahead > 0
    }

    /// A just-recorded job's first images.
    pub async fn start(&self, job: &Job) -> Result<(), JobError> {
        let pace = Pace::new(job.images.len());
        let range = pacing::to_release(pace, self.ahead);
        let ids = job.images[range.clone()]
            .iter()
            .map(|i| i.task_id.clone())
            .collect();
        self.release(job.id, pace, range, ids).await
    }

    /// Brings the job's waiting images back to `ahead`, after counting one
    /// more taken by a worker if `take`. Returns how many were released (0
    /// for a job that is gone).
    pub async fn top_up(&self, id: JobId, take: bool) -> Result<usize, JobError> {
        let Some(pace) = self.meta.pace(id, take).await? else {
            return Ok(0);
        };
        let range = pacing::to_release(pace, self.ahead);
        if range.is_empty() {
            return Ok(0);
        }
        let ids = self.meta.task_ids(id, range.clone()).await?;
        let released = ids.len();
        self.release(id, pace, range, ids).await?;
        Ok(released)
    }

    /// One pass over the jobs that still hold images back: any whose release
    /// was lost (its releasing process died) gets it now. Returns how many
    /// images were released.
    pub async fn sweep(&self) -> Result<usize, JobError> {
        let mut released = 0;
        for id in self.meta.unreleased(SWEEP_LIMIT).await? {
            released += self.top_up(id, false).await?;
        }
        Ok(released)
    }

    /// Enqueues images `range` (task ids `ids`), then records them released.
    async fn release(
        &self,
        job_id: JobId,
        pace: Pace,
        range: Range<usize>,
        ids: Vec<String>,
    ) -> Result<(), JobError> {
        // No ids: the job went away meanwhile.
        if range.is_empty() || ids.len() != range.len() {
            return Ok(());
        }
        let tasks = ids
            .into_iter()
            .zip(range.clone())
            .map(|(id, index)| (id, ProcessImage { job_id, index }))
            .collect();
        self.queue.enqueue(tasks).await?;
        self.meta
            .mark_released(job_id, range.end, pace.total)
            .await?;
        Ok(())
    }
}

/// The worker's handler, wrapped: a task's first delivery releases the next
/// image of its job before the work starts, so the job re-enters the queue's
/// tail as this image leaves it. Best effort: a failed release is logged,
/// and the next delivery or the sweep makes up for it.
pub struct Paced {
    inner: Arc<dyn Handler>,
    releaser: Releaser,
}

impl Paced {
    pub fn new(inner: Arc<dyn Handler>, releaser: Releaser) -> Self {
        Paced { inner, releaser }
    }

    async fn top_up(&self, task: &ProcessImage) {
        if let Err(e) = self.releaser.top_up(task.job_id, true).await {
            log::warn!(
                "job {}: could not release its next images ({e}); the sweep will",
                task.job_id
            );
        }
    }
}

#[async_trait]
impl Handler for Paced {
    async fn handle(&self, task: ProcessImage, delivery: Delivery) -> Outcome {
        // A later delivery (a retry) was counted when first taken.
        if self.releaser.paces() && delivery.attempt == 1 {
            self.top_up(&task).await;
        }
        self.inner.handle(task, delivery).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::meta::memory::MemoryMeta;
    use crate::queue::QueueError;

    /// A queue that records what it was given and skips known ids.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);

    #[async_trait]
    impl Producer for Recorded {
        async fn enqueue(&self, tasks: Vec<(String, ProcessImage)>) -> Result<(), QueueError> {
            let mut queued = self.0.lock().expect("lock");
            for (id, _) in tasks {
                if !queued.contains(&id) {
                    queued.push(id);
                }
            }
            Ok(())
        }
        async fn forget(&self, _: &[String]) -> Result<usize, QueueError> {
            Ok(0)
        }
        async fn check(&self) -> Result<(), QueueError> {
            Ok(())
        }
    }

    fn job(images: usize) -> Job {
        Job::sample(images)
    }

    #[tokio::test]
    async fn a_job_is_released_as_its_images_are_taken() {
        let meta = Arc::new(MemoryMeta::default());
        let queue = Arc::new(Recorded::default());
        let releaser = Releaser::new(meta.clone(), queue.clone(), 2);
        let job = job(5);
        meta.create(&job).await.expect("create");
        releaser.start(&job).await.expect("start");
        let queued = || queue.0.lock().expect("lock").clone();
        assert_eq!(queued().len(), 2);
        assert_eq!(releaser.top_up(job.id, false).await.expect("top up"), 0);
        assert_eq!(releaser.top_up(job.id, true).await.expect("top up"), 1);
        assert_eq!(queued()[2], job.images[2].task_id, "in index order");
        assert_eq!(meta.unreleased(10).await.expect("list"), vec![job.id]);
        for _ in 0..4 {
            releaser.top_up(job.id, true).await.expect("top up");
        }
        assert_eq!(queued().len(), 5);
        assert!(meta.unreleased(10).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn a_release_lost_to_a_crash_is_swept_without_queueing_a_task_twice() {
        let meta = Arc::new(MemoryMeta::default());
        let queue = Arc::new(Recorded::default());
        let releaser = Releaser::new(meta.clone(), queue.clone(), 2);
        let job = job(5);
        meta.create(&job).await.expect("create");
        // The submission enqueued its first images and died before recording.
        let first = job.images[..2]
            .iter()
            .map(|i| {
                let task = ProcessImage {
                    job_id: job.id,
                    index: i.index,
                };
                (i.task_id.clone(), task)
            })
            .collect();
        queue.enqueue(first).await.expect("enqueue");
        assert_eq!(releaser.sweep().await.expect("sweep"), 2);
        assert_eq!(queue.0.lock().expect("lock").len(), 2, "no task twice");
        let pace = meta.pace(job.id, false).await.expect("pace").expect("job");
        assert_eq!(pace.released, 2);
    }

    #[tokio::test]
    async fn without_pacing_everything_is_released_at_once() {
        let meta = Arc::new(MemoryMeta::default());
        let queue = Arc::new(Recorded::default());
        let releaser = Releaser::new(meta.clone(), queue.clone(), 0);
        let job = job(7);
        meta.create(&job).await.expect("create");
        releaser.start(&job).await.expect("start");
        assert_eq!(queue.0.lock().expect("lock").len(), 7);
        assert!(meta.unreleased(10).await.expect("list").is_empty());
    }
}

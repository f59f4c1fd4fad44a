//! Fair scheduling's I/O: handing each tenant's images to the shared queue
//! of its job's lane a few at a time, by the rule in `jobs::pacing`. Three
//! callers: submission
//! (a new job joins its tenant's turns), every first delivery of a task (the
//! [`Paced`] wrapper around the worker: the image just taken is replaced by
//! the tenant's next one), and a periodic sweep that repairs a release lost
//! to a crash.
//!
//! Durability: a release enqueues first and records second, so the counts
//! never run ahead of the queue. A crash in between leaves them behind; the
//! next plan releases the same images again, which the queue skips by task
//! id. A process plans one release at a time: two workers taking images at
//! once would otherwise both read the backlog before either records, and
//! enqueue the same images twice (skipped by the queue, but each a trip).
//! A planner waits for another's release only so long ([`PLANNING_WAIT`]):
//! a release stuck on a backend that does not answer must not stall every
//! worker's next task, and planning at once only risks that duplicate. Two
//! processes planning at once may release one image more than the rule
//! says, never fewer. Nothing here decides an image's outcome; the
//! worker does.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use super::JobError;
use crate::auth::Tenant;
use crate::jobs::pacing::{self, Release};
use crate::jobs::{Job, Lane};
use crate::meta::{Backlog, MetaStore};
use crate::queue::{Delivery, Handler, Outcome, ProcessImage, Producer};

/// How long a plan waits for another one's release to be recorded before it
/// goes ahead anyway (see the module doc).
const PLANNING_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How many of one tenant's held-back jobs a plan considers when it
/// releases everything (no pacing), and how many tenants one sweep visits.
const BACKLOG_LIMIT: usize = 256;

/// Releases images of jobs to the queue; cheap to clone.
#[derive(Clone)]
pub struct Releaser {
    meta: Arc<dyn MetaStore>,
    queue: Arc<dyn Producer>,
    /// Images of one tenant waiting in the queue at once (0: no pacing).
    ahead: usize,
    /// Held from a plan's read of the backlog until its release is recorded.
    planning: Arc<tokio::sync::Mutex<()>>,
}

impl Releaser {
    pub fn new(meta: Arc<dyn MetaStore>, queue: Arc<dyn Producer>, ahead: usize) -> Self {
        Releaser {
            meta,
            queue,
            ahead,
            planning: Arc::default(),
        }
    }

    /// Whether jobs are paced at all (`IMGPIPE_QUEUED_PER_TENANT` > 0).
    pub fn paces(&self) -> bool {
        self.ahead > 0
    }

    /// How many of a tenant's held-back jobs a plan needs to see: it
    /// releases at most `ahead` images, one per job in turn.
    fn candidates(&self) -> usize {
        if self.paces() {
            self.ahead
        } else {
            BACKLOG_LIMIT
        }
    }

    /// This process's turn to plan, or `None` once [`PLANNING_WAIT`] has
    /// passed without it.
    async fn wait_for_planners(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        tokio::time::timeout(PLANNING_WAIT, self.planning.lock())
            .await
            .ok()
    }

    /// A just-recorded job joins its tenant's turns: releases whatever the
    /// tenant may have waiting now, this job first if it is the tenant's only
    /// one.
    pub async fn start(&self, job: &Job) -> Result<usize, JobError> {
        self.top_up(&job.tenant).await
    }

    /// A worker has taken an image of job `id` (its first delivery): counts
    /// it and releases the tenant's next. Returns how many were released.
    pub async fn taken(&self, task: &ProcessImage) -> Result<usize, JobError> {
        let _planning = self.wait_for_planners().await;
        match self.meta.take(task.job_id, self.candidates()).await? {
            Some(backlog) => self.release(&backlog).await,
            None => Ok(0),
        }
    }

    /// One pass over the tenants holding images back: any whose release was
    /// lost (its releasing process died) gets it now. Returns how many images
    /// were released.
    pub async fn sweep(&self) -> Result<usize, JobError> {
        let mut released = 0;
        for tenant in self.meta.tenants_with_backlog(BACKLOG_LIMIT).await? {
            released += self.top_up(&tenant).await?;
        }
        Ok(released)
    }

    /// Brings the tenant's waiting images back to `ahead`, taking turns over
    /// its jobs. Enqueues first, records second.
    async fn top_up(&self, tenant: &Tenant) -> Result<usize, JobError> {
        let _planning = self.wait_for_planners().await;
        let backlog = self.meta.backlog(tenant, self.candidates()).await?;
        self.release(&backlog).await
    }

    /// Releases what the rule allows of one tenant's backlog.
    async fn release(&self, backlog: &Backlog) -> Result<usize, JobError> {
        let plan = pacing::plan(&backlog.held, self.ahead);
        if plan.is_empty() {
            return Ok(0);
        }
        let ids = self.task_ids(backlog, &plan).await?;
        let (mut priority, mut bulk) = (Vec::new(), Vec::new());
        let mut marks = Vec::new();
        for (Release { job, images, lane }, ids) in plan.into_iter().zip(ids) {
            // Fewer ids: the job went away meanwhile.
            if ids.len() != images.len() {
                continue;
            }
            let tasks = match lane {
                Lane::Priority => &mut priority,
                Lane::Bulk => &mut bulk,
            };
            tasks.extend(ids.into_iter().zip(images.clone()).map(|(id, index)| {
                let task = ProcessImage { job_id: job, index };
                (id, task)
            }));
            marks.push((job, images.end));
        }
        let mut released = 0;
        for (lane, tasks) in [(Lane::Priority, priority), (Lane::Bulk, bulk)] {
            released += tasks.len();
            if !tasks.is_empty() {
                self.queue.enqueue(lane, tasks).await?;
            }
        }
        let turn = Utc::now().timestamp_millis();
        self.meta.mark_released(&marks, turn).await?;
        Ok(released)
    }

    /// The task ids of each release of `plan`: those the backlog read
    /// brought along, and the rest read in one trip.
    async fn task_ids(
        &self,
        backlog: &Backlog,
        plan: &[Release],
    ) -> Result<Vec<Vec<String>>, JobError> {
        let mut ids: Vec<Option<Vec<String>>> = plan
            .iter()
            .map(|r| backlog.ids(r.job, &r.images).map(<[String]>::to_vec))
            .collect();
        let wanted: Vec<_> = plan
            .iter()
            .zip(&ids)
            .filter(|(_, ids)| ids.is_none())
            .map(|(r, _)| (r.job, r.images.clone()))
            .collect();
        if !wanted.is_empty() {
            let mut read = self.meta.task_ids(&wanted).await?.into_iter();
            for slot in ids.iter_mut().filter(|ids| ids.is_none()) {
                *slot = read.next();
            }
        }
        Ok(ids.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// The worker's handler, wrapped: a task's first delivery releases the next
/// image of its tenant as the work starts, so the tenant re-enters the
/// queue's tail as this image leaves it. The release runs beside the work,
/// not before it: a task starts without waiting for the trips a release
/// takes. Best effort: a failed release is logged, and the next delivery or
/// the sweep makes up for it.
pub struct Paced {
    inner: Arc<dyn Handler>,
    releaser: Releaser,
}

impl Paced {
    pub fn new(inner: Arc<dyn Handler>, releaser: Releaser) -> Self {
        Paced { inner, releaser }
    }

    async fn taken(&self, task: &ProcessImage) {
        if let Err(e) = self.releaser.taken(task).await {
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
            let taken = self.taken(&task);
            let ((), outcome) = futures::join!(taken, self.inner.handle(task.clone(), delivery));
            return outcome;
        }
        self.inner.handle(task, delivery).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::meta::memory::MemoryMeta;
    use crate::queue::QueueError;

    /// A queue that records what it was given and skips known ids; the
    /// second list is the lane of each. Once the flag is set, its next
    /// enqueue never answers.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>, Mutex<Vec<Lane>>, AtomicBool);

    #[async_trait]
    impl Producer for Recorded {
        async fn enqueue(
            &self,
            lane: Lane,
            tasks: Vec<(String, ProcessImage)>,
        ) -> Result<(), QueueError> {
            if self.2.swap(false, Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let mut queued = self.0.lock().expect("lock");
            for (id, _) in tasks {
                if !queued.contains(&id) {
                    queued.push(id);
                    self.1.lock().expect("lock").push(lane);
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
        async fn stats(&self) -> Result<Vec<crate::queue::LaneStats>, QueueError> {
            Ok(Vec::new())
        }
        async fn workers(&self) -> Result<Vec<crate::queue::WorkerInfo>, QueueError> {
            Ok(Vec::new())
        }
    }

    fn job(images: usize) -> Job {
        Job::sample(images)
    }

    fn releaser(ahead: usize) -> (Arc<MemoryMeta>, Arc<Recorded>, Releaser) {
        let meta = Arc::new(MemoryMeta::default());
        let queue = Arc::new(Recorded::default());
        let releaser = Releaser::new(meta.clone(), queue.clone(), ahead);
        (meta, queue, releaser)
    }

    fn task(job: &Job, index: usize) -> ProcessImage {
        ProcessImage {
            job_id: job.id,
            index,
        }
    }

    /// Whether the store reads the next task ids along with the counters
    /// (SQLite) or the release reads them apart (Redis).
    #[tokio::test]
    async fn a_job_is_released_as_its_images_are_taken() {
        for counters_only in [false, true] {
            a_job_is_released_as_its_images_are_taken_with(counters_only).await;
        }
    }

    async fn a_job_is_released_as_its_images_are_taken_with(counters_only: bool) {
        let (meta, queue, releaser) = releaser(2);
        meta.set_counters_only(counters_only);
        let job = job(5);
        meta.create(&job).await.expect("create");
        assert_eq!(releaser.start(&job).await.expect("start"), 2);
        let queued = || queue.0.lock().expect("lock").clone();
        assert_eq!(queued().len(), 2);
        assert_eq!(
            releaser.sweep().await.expect("sweep"),
            0,
            "two already wait"
        );
        assert_eq!(releaser.taken(&task(&job, 0)).await.expect("taken"), 1);
        assert_eq!(queued()[2], job.images[2].task_id, "in index order");
        for index in 1..5 {
            releaser.taken(&task(&job, index)).await.expect("taken");
        }
        assert_eq!(queued().len(), 5);
        assert!(meta
            .tenants_with_backlog(10)
            .await
            .expect("list")
            .is_empty());
    }

    #[tokio::test]
    async fn tenants_take_turns_and_a_new_tenant_does_not_wait_for_a_busy_one() {
        let (meta, queue, releaser) = releaser(2);
        let big = job(100);
        meta.create(&big).await.expect("create");
        releaser.start(&big).await.expect("start");
        let mut other = Job::sample(1);
        other.tenant = "other".parse().expect("tenant");
        meta.create(&other).await.expect("create");
        assert_eq!(releaser.start(&other).await.expect("start"), 1);
        // Next in the queue, behind the two images `big` had waiting.
        assert_eq!(queue.0.lock().expect("lock")[2], other.images[0].task_id);
    }

    #[tokio::test]
    async fn each_job_is_released_to_its_lane() {
        let (meta, queue, releaser) = releaser(4);
        let mut light = job(1);
        light.lane = Lane::Priority;
        light.tenant = "light".parse().expect("tenant");
        for job in [job(3), light] {
            meta.create(&job).await.expect("create");
            releaser.start(&job).await.expect("start");
        }
        let lanes = queue.1.lock().expect("lock").clone();
        assert_eq!(lanes, [Lane::Bulk, Lane::Bulk, Lane::Bulk, Lane::Priority]);
    }

    #[tokio::test]
    async fn a_release_lost_to_a_crash_is_swept_without_queueing_a_task_twice() {
        let (meta, queue, releaser) = releaser(2);
        let job = job(5);
        meta.create(&job).await.expect("create");
        // The submission enqueued its first images and died before recording.
        let first = job.images[..2]
            .iter()
            .map(|i| (i.task_id.clone(), task(&job, i.index)))
            .collect();
        queue.enqueue(Lane::Bulk, first).await.expect("enqueue");
        assert_eq!(releaser.sweep().await.expect("sweep"), 2);
        assert_eq!(queue.0.lock().expect("lock").len(), 2, "no task twice");
        let backlog = meta.backlog(&job.tenant, 10).await.expect("backlog");
        assert_eq!(backlog.held[0].released, 2);
    }

    /// One planner stuck on its enqueue delays the next by at most
    /// `PLANNING_WAIT`; it does not stop it.
    #[tokio::test(start_paused = true)]
    async fn a_release_stuck_on_the_queue_does_not_stall_the_next() {
        let meta = Arc::new(MemoryMeta::default());
        let queue = Arc::new(Recorded::default());
        queue.2.store(true, Ordering::SeqCst);
        let releaser = Releaser::new(meta.clone(), queue.clone(), 2);
        let (first, second) = (job(5), job(5));
        meta.create(&first).await.expect("create");
        meta.create(&second).await.expect("create");
        let stuck = releaser.clone();
        let stuck_job = first.clone();
        tokio::spawn(async move { stuck.start(&stuck_job).await });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        let released = tokio::time::timeout(PLANNING_WAIT * 4, releaser.taken(&task(&second, 0)))
            .await
            .expect("not stalled")
            .expect("released");
        assert!(
            started.elapsed() >= PLANNING_WAIT,
            "it waited its turn first"
        );
        assert!(released > 0);
    }

    /// A handler that notes each task it is given and is done at once.
    #[derive(Default)]
    struct Noted(Mutex<Vec<ProcessImage>>);

    #[async_trait]
    impl Handler for Noted {
        async fn handle(&self, task: ProcessImage, _: Delivery) -> Outcome {
            self.0.lock().expect("lock").push(task);
            Outcome::Done
        }
    }

    /// The work of a first delivery does not wait for the release of the
    /// tenant's next image: with the queue not answering, it has started
    /// (and ended) all the same.
    #[tokio::test]
    async fn a_first_delivery_starts_without_waiting_for_its_release() {
        let (meta, queue, releaser) = releaser(1);
        let job = job(3);
        meta.create(&job).await.expect("create");
        releaser.start(&job).await.expect("start");
        queue.2.store(true, Ordering::SeqCst);
        let inner = Arc::new(Noted::default());
        let paced = Arc::new(Paced::new(inner.clone(), releaser));
        let first = task(&job, 0);
        let delivery = Delivery {
            attempt: 1,
            limit: 3,
        };
        let handling = tokio::spawn({
            let (paced, first) = (paced.clone(), first.clone());
            async move { paced.handle(first, delivery).await }
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while inner.0.lock().expect("lock").is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the work started while the release hangs");
        assert_eq!(*inner.0.lock().expect("lock"), [first]);
        assert!(!handling.is_finished(), "the release is still under way");
        handling.abort();
    }

    #[tokio::test]
    async fn without_pacing_everything_is_released_at_once() {
        let (meta, queue, releaser) = releaser(0);
        let job = job(7);
        meta.create(&job).await.expect("create");
        releaser.start(&job).await.expect("start");
        assert_eq!(queue.0.lock().expect("lock").len(), 7);
        assert!(meta
            .tenants_with_backlog(10)
            .await
            .expect("list")
            .is_empty());
    }
}

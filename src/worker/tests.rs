//! The worker's state machine end to end over in-memory stores: every path a
//! delivery can take, with no Redis, S3 or SQLite running. The queue is
//! played by the test, which hands the worker each delivery.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Backoff, RenderPool, Worker, WorkerSettings};
use crate::codec::{InputFormat, OutputFormat, PngCompression};
use crate::jobs::{ImageEntry, ImageProgress, ImageState, Job, JobId, Lane, Recipe};
use crate::meta::memory::MemoryMeta;
use crate::meta::MetaStore;
use crate::queue::{Delivery, Handler, Outcome, ProcessImage};
use crate::store::memory::MemoryStore;
use crate::store::ObjectStore;

const MAX_ATTEMPTS: u32 = 3;

struct Rig {
    meta: Arc<MemoryMeta>,
    store: Arc<MemoryStore>,
    worker: Worker,
    /// The worker's render threads (one).
    pool: Arc<RenderPool>,
    job: Job,
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 60) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode test PNG");
    out.into_inner()
}

fn job(ttl: chrono::Duration) -> Job {
    let now = Utc::now();
    Job {
        tenant: crate::auth::Tenant::local(),
        idempotency_key: None,
        lane: Default::default(),
        webhook: None,
        id: JobId::new(),
        recipe: Recipe {
            ops: "invert".parse().expect("chain"),
            format: None,
            quality: 90,
            lossless: false,
        },
        created_at: now,
        expires_at: now + ttl,
        images: vec![ImageEntry {
            index: 0,
            filename: "a.png".into(),
            entry_name: "a.png".into(),
            input_format: InputFormat::Png,
            output_format: OutputFormat::Png,
            width: 4,
            height: 3,
            size_bytes: 0,
            task_id: crate::queue::new_task_id(),
        }],
    }
}

impl Rig {
    async fn with_input(input: Vec<u8>, ttl: chrono::Duration) -> Rig {
        Rig::build(input, ttl, Duration::from_secs(60)).await
    }

    async fn build(input: Vec<u8>, ttl: chrono::Duration, task_timeout: Duration) -> Rig {
        let meta = Arc::new(MemoryMeta::default());
        let store = Arc::new(MemoryStore::default());
        let job = job(ttl);
        store
            .put_bytes(&job.input_key(0), input.into(), "image/png")
            .await
            .expect("input stored");
        meta.create(&job).await.expect("job recorded");
        let settings = WorkerSettings {
            max_pixels: 1_000_000,
            pixels_in_flight: 1_000_000,
            max_attempts: MAX_ATTEMPTS,
            // Tries within an attempt: two, 1 ms apart, so outages end attempts quickly.
            backoff: Backoff {
                first: Duration::from_millis(1),
                max: Duration::from_millis(1),
                tries: 2,
            },
            png_compression: PngCompression::Fast,
            task_timeout,
        };
        let pool = Arc::new(RenderPool::new(1, Lane::Bulk).expect("render pool"));
        let worker = Worker::new(
            store.clone(),
            meta.clone(),
            settings,
            pool.clone(),
            settings.budget(),
        );
        Rig {
            meta,
            store,
            worker,
            pool,
            job,
        }
    }

    async fn new() -> Rig {
        Rig::with_input(png(4, 3), chrono::Duration::hours(1)).await
    }

    async fn deliver(&self, attempt: u32) -> Outcome {
        let task = ProcessImage {
            job_id: self.job.id,
            index: 0,
        };
        let delivery = Delivery { attempt, limit: 25 };
        self.worker.handle(task, delivery).await
    }

    async fn progress(&self) -> ImageProgress {
        self.meta
            .image_progress(self.job.id, 0)
            .await
            .expect("meta up")
            .expect("progress recorded")
    }

    /// As if every allowed attempt had started and its worker died.
    async fn workers_kept_dying(&self) {
        let dying = ImageProgress {
            state: ImageState::Processing,
            attempts: MAX_ATTEMPTS,
            ..ImageProgress::queued()
        };
        let written = self.meta.set_image_progress(self.job.id, 0, &dying).await;
        assert_eq!(written.ok(), Some(true));
    }

    fn output_key(&self) -> String {
        self.job.output_key(0).expect("image 0")
    }

    fn has_output(&self) -> bool {
        self.store.keys().contains(&self.output_key())
    }
}

/// A task put back after its worker died may come again as a first
/// delivery (orphan recovery does not count deliveries): the attempt its
/// image records still counts, so a crash loop ends at the attempt limit.
#[tokio::test]
async fn a_first_delivery_over_an_attempt_already_made_counts_it() {
    let rig = Rig::new().await;
    let died = ImageProgress {
        state: ImageState::Processing,
        attempts: 1,
        ..ImageProgress::queued()
    };
    let written = rig.meta.set_image_progress(rig.job.id, 0, &died).await;
    assert_eq!(written.ok(), Some(true));
    assert_eq!(rig.deliver(1).await, Outcome::Done);
    let p = rig.progress().await;
    assert_eq!((p.state, p.attempts), (ImageState::Succeeded, 2));
}

#[tokio::test]
async fn success_stores_the_result_and_records_it_once() {
    let rig = Rig::new().await;
    assert_eq!(rig.deliver(1).await, Outcome::Done);
    let p = rig.progress().await;
    assert_eq!(
        (p.state, p.attempts, p.error.clone()),
        (ImageState::Succeeded, 1, None)
    );
    assert!(rig.has_output());
    let stored = rig
        .store
        .get_bytes(&rig.output_key())
        .await
        .expect("result");
    assert_eq!(p.output_bytes, Some(stored.len() as u64));
    // A re-delivery (its worker died before acknowledging) changes nothing.
    assert_eq!(rig.deliver(2).await, Outcome::Done);
    assert_eq!(rig.progress().await, p);
}

#[tokio::test]
async fn the_deadline_counts_the_render_not_the_wait_for_a_thread() {
    let timeout = Duration::from_millis(300);
    let rig = Rig::build(png(4, 3), chrono::Duration::hours(1), timeout).await;
    // Another image holds the one render thread for twice the deadline.
    let turn = rig.pool.turn().await.expect("a turn");
    let busy = tokio::spawn({
        let pool = rig.pool.clone();
        async move {
            pool.run(turn, move || std::thread::sleep(timeout * 2))
                .await
        }
    });
    let waited = std::time::Instant::now();
    assert_eq!(rig.deliver(1).await, Outcome::Done);
    assert!(waited.elapsed() >= timeout * 2, "it waited for the thread");
    assert_eq!(busy.await.expect("the other render"), Ok(()));
    let p = rig.progress().await;
    assert_eq!((p.state, p.error), (ImageState::Succeeded, None));
}

#[tokio::test]
async fn a_transient_failure_is_retried_then_succeeds() {
    let rig = Rig::new().await;
    rig.store.set_down(true);
    let outcome = rig.deliver(1).await;
    assert!(matches!(outcome, Outcome::RetryLater(_)), "{outcome:?}");
    let p = rig.progress().await;
    assert_eq!((p.state, p.attempts), (ImageState::Queued, 1));
    assert!(
        p.error
            .as_deref()
            .is_some_and(|e| e.starts_with("attempt 1 failed, retrying")),
        "{p:?}"
    );
    rig.store.set_down(false);
    assert_eq!(rig.deliver(2).await, Outcome::Done);
    let p = rig.progress().await;
    assert_eq!(
        (p.state, p.attempts, p.error),
        (ImageState::Succeeded, 2, None)
    );
}

#[tokio::test]
async fn a_metadata_outage_asks_for_a_later_delivery_without_losing_the_image() {
    let rig = Rig::new().await;
    rig.meta.set_down(true);
    let outcome = rig.deliver(1).await;
    assert!(matches!(outcome, Outcome::RetryLater(_)), "{outcome:?}");
    rig.meta.set_down(false);
    assert_eq!(rig.progress().await, ImageProgress::queued(), "untouched");
    assert_eq!(rig.deliver(2).await, Outcome::Done);
    assert_eq!(rig.progress().await.state, ImageState::Succeeded);
}

#[tokio::test]
async fn a_bad_image_fails_at_once_without_retries() {
    let rig = Rig::with_input(
        b"\x89PNG\r\n\x1a\nnot really".to_vec(),
        chrono::Duration::hours(1),
    )
    .await;
    let outcome = rig.deliver(1).await;
    assert!(matches!(outcome, Outcome::GiveUp(_)), "{outcome:?}");
    let p = rig.progress().await;
    assert_eq!((p.state, p.attempts), (ImageState::Failed, 1));
    assert!(p.error.is_some());
    assert!(!rig.has_output());
}

#[tokio::test]
async fn transient_failures_give_up_at_the_attempt_limit() {
    let rig = Rig::new().await;
    rig.store.set_down(true);
    for attempt in 1..MAX_ATTEMPTS {
        assert!(matches!(rig.deliver(attempt).await, Outcome::RetryLater(_)));
    }
    let outcome = rig.deliver(MAX_ATTEMPTS).await;
    assert!(matches!(outcome, Outcome::GiveUp(_)), "{outcome:?}");
    let p = rig.progress().await;
    assert_eq!((p.state, p.attempts), (ImageState::Failed, MAX_ATTEMPTS));
    let reason = p.error.expect("reason");
    assert!(
        reason.starts_with("gave up after 3 attempts: object storage unavailable"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_queues_last_delivery_settles_the_image() {
    let rig = Rig::new().await;
    rig.store.set_down(true);
    let last = Delivery {
        attempt: 25,
        limit: 25,
    };
    let task = ProcessImage {
        job_id: rig.job.id,
        index: 0,
    };
    let outcome = rig.worker.handle(task, last).await;
    assert!(matches!(outcome, Outcome::GiveUp(_)), "{outcome:?}");
    assert_eq!(rig.progress().await.state, ImageState::Failed);
}

#[tokio::test]
async fn an_image_whose_workers_kept_dying_is_settled_from_storage() {
    // Every attempt started (and its worker died): nothing stored → failed.
    let rig = Rig::new().await;
    rig.workers_kept_dying().await;
    assert!(matches!(rig.deliver(9).await, Outcome::GiveUp(_)));
    let p = rig.progress().await;
    assert_eq!(p.state, ImageState::Failed);
    assert!(
        p.error
            .as_deref()
            .is_some_and(|e| e.contains("stopped each time")),
        "{p:?}"
    );

    // The last attempt stored its result but died before recording it → succeeded.
    let rig = Rig::new().await;
    rig.workers_kept_dying().await;
    rig.store
        .put_bytes(&rig.output_key(), vec![7u8; 42].into(), "image/png")
        .await
        .expect("result stored");
    assert_eq!(rig.deliver(9).await, Outcome::Done);
    let p = rig.progress().await;
    assert_eq!((p.state, p.output_bytes), (ImageState::Succeeded, Some(42)));
}

#[tokio::test]
async fn a_stale_attempts_write_is_refused() {
    let rig = Rig::new().await;
    // While attempt 1 stores its result, the task is re-delivered elsewhere
    // and attempt 2 starts: attempt 1 must not record over it.
    let (meta, id) = (rig.meta.clone(), rig.job.id);
    rig.store.on_put(move |_| {
        let takeover = ImageProgress {
            state: ImageState::Processing,
            attempts: 2,
            ..ImageProgress::queued()
        };
        let meta = meta.clone();
        let written = futures::executor::block_on(meta.set_image_progress(id, 0, &takeover));
        assert_eq!(written.ok(), Some(true));
    });
    assert_eq!(rig.deliver(1).await, Outcome::Done);
    let p = rig.progress().await;
    assert_eq!(
        (p.state, p.attempts),
        (ImageState::Processing, 2),
        "attempt 2 owns the image"
    );
    assert!(
        rig.has_output(),
        "the job still exists: the (identical) result stays"
    );
}

#[tokio::test]
async fn a_job_deleted_while_processing_keeps_no_result() {
    let rig = Rig::new().await;
    let (meta, id) = (rig.meta.clone(), rig.job.id);
    rig.store.on_put(move |_| {
        let deleted = futures::executor::block_on(meta.mark_deleted(id));
        assert!(deleted.is_ok_and(|job| job.is_some()));
    });
    assert_eq!(rig.deliver(1).await, Outcome::Done);
    assert!(
        !rig.has_output(),
        "the result of a deleted job is discarded"
    );
}

#[tokio::test]
async fn a_deleted_job_is_dropped_untouched() {
    let rig = Rig::new().await;
    rig.meta.mark_deleted(rig.job.id).await.expect("deleted");
    assert_eq!(rig.deliver(1).await, Outcome::Done);
    assert!(!rig.has_output());
    assert_eq!(rig.progress().await, ImageProgress::queued());
}

#[tokio::test]
async fn an_expired_job_is_dropped_untouched() {
    let rig = Rig::with_input(png(4, 3), chrono::Duration::milliseconds(-1)).await;
    assert_eq!(rig.deliver(1).await, Outcome::Done);
    assert!(!rig.has_output());
    assert_eq!(rig.progress().await, ImageProgress::queued());
}

#[tokio::test]
async fn the_last_delivery_settles_an_image_it_cannot_finish() {
    // The workers kept dying, and on the queue's last delivery storage is down,
    // so the result cannot even be looked for: the image fails with the reason.
    let rig = Rig::new().await;
    rig.workers_kept_dying().await;
    rig.store.set_down(true);
    let task = ProcessImage {
        job_id: rig.job.id,
        index: 0,
    };
    let not_last = Delivery {
        attempt: 5,
        limit: 25,
    };
    let outcome = rig.worker.handle(task.clone(), not_last).await;
    assert!(matches!(outcome, Outcome::RetryLater(_)), "{outcome:?}");
    assert_eq!(rig.progress().await.state, ImageState::Processing);

    let last = Delivery {
        attempt: 25,
        limit: 25,
    };
    let outcome = rig.worker.handle(task, last).await;
    assert!(matches!(outcome, Outcome::GiveUp(_)), "{outcome:?}");
    let p = rig.progress().await;
    assert_eq!(p.state, ImageState::Failed);
    let reason = p.error.expect("reason");
    assert!(
        reason.starts_with("gave up after 25 deliveries: object storage unavailable"),
        "{reason}"
    );
}

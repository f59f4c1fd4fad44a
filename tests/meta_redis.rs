//! The progress-write rules of `MetaStore::set_image_progress`, on the real
//! Redis that `scripts/test.sh` starts: the job must exist, terminal states are
//! final, and a stale attempt cannot overwrite a later one.

use chrono::{Duration, Utc};
use imgpipe::codec::{InputFormat, OutputFormat};
use imgpipe::jobs::{ImageEntry, ImageProgress, ImageState, Job, JobId, Recipe};
use imgpipe::meta::{MetaStore, RedisMeta};
use imgpipe::ops::Filter;

async fn meta() -> RedisMeta {
    let url = std::env::var("IMGPIPE_TEST_REDIS_URL")
        .expect("IMGPIPE_TEST_REDIS_URL is not set: run the tests through scripts/test.sh");
    let client = redis::Client::open(url).expect("valid Redis URL");
    let conn = client
        .get_connection_manager()
        .await
        .expect("Redis from scripts/test.sh is reachable");
    RedisMeta::new(
        conn,
        &format!("test-meta-{}", uuid::Uuid::new_v4().simple()),
    )
}

fn job() -> Job {
    let now = Utc::now();
    Job {
        id: JobId::new(),
        recipe: Recipe {
            filter: Filter::Blur,
            format: None,
            quality: 90,
        },
        created_at: now,
        expires_at: now + Duration::hours(1),
        images: vec![ImageEntry {
            index: 0,
            filename: "a.png".into(),
            entry_name: "a.png".into(),
            input_format: InputFormat::Png,
            output_format: OutputFormat::Png,
            width: 1,
            height: 1,
            size_bytes: 1,
            task_id: "t0".into(),
        }],
    }
}

fn progress(state: ImageState, attempts: u32) -> ImageProgress {
    ImageProgress {
        state,
        attempts,
        ..ImageProgress::queued()
    }
}

#[tokio::test]
async fn progress_writes_follow_the_fencing_rules() {
    let meta = meta().await;
    let job = job();
    meta.create(&job).await.unwrap();
    let set = |p: ImageProgress| {
        let meta = meta.clone();
        async move { meta.set_image_progress(job.id, 0, &p).await.unwrap() }
    };
    let stored = || async { meta.image_progress(job.id, 0).await.unwrap().unwrap() };

    assert!(set(progress(ImageState::Processing, 1)).await);
    assert!(
        set(progress(ImageState::Processing, 2)).await,
        "a redelivery takes over"
    );
    assert!(
        !set(progress(ImageState::Succeeded, 1)).await,
        "the stalled first attempt must not overwrite the second"
    );
    assert_eq!(stored().await.attempts, 2);
    assert!(set(progress(ImageState::Succeeded, 2)).await);
    assert!(
        !set(progress(ImageState::Processing, 3)).await,
        "a late redelivery must not reopen a finished image"
    );
    assert!(!set(progress(ImageState::Failed, 3)).await);
    assert_eq!(stored().await.state, ImageState::Succeeded);

    let unknown = JobId::new();
    assert!(
        !meta
            .set_image_progress(unknown, 0, &progress(ImageState::Processing, 1))
            .await
            .unwrap(),
        "no job, no write"
    );
    assert!(
        meta.load(unknown).await.unwrap().is_none(),
        "a late worker cannot resurrect a job"
    );
}

#[tokio::test]
async fn a_deleted_job_takes_no_more_writes() {
    let meta = meta().await;
    let job = job();
    meta.create(&job).await.unwrap();
    meta.delete(job.id).await.unwrap();
    assert!(meta.load(job.id).await.unwrap().is_none());
    let p = progress(ImageState::Succeeded, 1);
    assert!(!meta.set_image_progress(job.id, 0, &p).await.unwrap());
    assert!(meta.load(job.id).await.unwrap().is_none());
}

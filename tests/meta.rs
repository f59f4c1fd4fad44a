//! The `MetaStore` contract, checked on both implementations: the real Redis
//! that `scripts/test.sh` starts and a SQLite file. Progress writes follow the
//! fencing rules (the job must exist, terminal states are final, a stale
//! attempt cannot overwrite a later one); deleted and expired jobs vanish at
//! once and are handed to the purger; fair scheduling's counters and a
//! tenant's usage add up the same on both.

use std::sync::Arc;

use chrono::{Duration, Utc};
use imgpipe::codec::{InputFormat, OutputFormat};
use imgpipe::jobs::{ImageEntry, ImageProgress, ImageState, Job, JobId, Recipe};
use imgpipe::meta::{Doomed, MetaStore, RedisMeta, SqliteMeta, Usage};

/// Each store with a guard that keeps its files alive.
async fn stores() -> Vec<(&'static str, Arc<dyn MetaStore>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteMeta::open(&dir.path().join("jobs.sqlite3"))
        .await
        .expect("open SQLite metadata");
    vec![
        ("redis", Arc::new(redis_meta().await), None),
        ("sqlite", Arc::new(sqlite), Some(dir)),
    ]
}

async fn redis_meta() -> RedisMeta {
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
    job_expiring_in(Duration::hours(1))
}

fn job_expiring_in(ttl: Duration) -> Job {
    let now = Utc::now();
    Job {
        tenant: imgpipe::auth::Tenant::local(),
        idempotency_key: None,
        lane: Default::default(),
        webhook: None,
        id: JobId::new(),
        recipe: Recipe {
            ops: "resize:8x8:fit,unsharp_mask:2,150,3"
                .parse()
                .expect("a valid chain"),
            lossless: false,
            format: None,
            quality: 90,
        },
        created_at: now,
        expires_at: now + ttl,
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

/// A job of `tenant`'s, of one image.
fn job_of(tenant: &imgpipe::auth::Tenant) -> Job {
    Job {
        tenant: tenant.clone(),
        ..job()
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
    for (name, meta, _guard) in stores().await {
        let job = job();
        meta.create(&job).await.unwrap();
        let set = |p: ImageProgress| {
            let meta = meta.clone();
            async move { meta.set_image_progress(job.id, 0, &p).await.unwrap() }
        };
        let stored = || async { meta.image_progress(job.id, 0).await.unwrap().unwrap() };

        assert_eq!(stored().await, ImageProgress::queued(), "{name}");
        assert!(set(progress(ImageState::Processing, 1)).await, "{name}");
        assert!(
            set(progress(ImageState::Processing, 2)).await,
            "{name}: a redelivery takes over"
        );
        assert!(
            !set(progress(ImageState::Succeeded, 1)).await,
            "{name}: the stalled first attempt must not overwrite the second"
        );
        assert_eq!(stored().await.attempts, 2, "{name}");
        assert!(set(progress(ImageState::Succeeded, 2)).await, "{name}");
        assert!(
            !set(progress(ImageState::Processing, 3)).await,
            "{name}: a late redelivery must not reopen a finished image"
        );
        assert!(!set(progress(ImageState::Failed, 3)).await, "{name}");
        assert_eq!(stored().await.state, ImageState::Succeeded, "{name}");
        let record = meta.load(job.id).await.unwrap().unwrap();
        assert_eq!(record.job, job, "{name}");
        assert_eq!(meta.job(job.id).await.unwrap(), Some(job.clone()), "{name}");
        assert_eq!(
            record.progress[0].as_ref().unwrap().state,
            ImageState::Succeeded
        );

        let unknown = JobId::new();
        assert!(
            !meta
                .set_image_progress(unknown, 0, &progress(ImageState::Processing, 1))
                .await
                .unwrap(),
            "{name}: no job, no write"
        );
        assert!(
            meta.load(unknown).await.unwrap().is_none(),
            "{name}: a late worker cannot resurrect a job"
        );
    }
}

/// A first attempt's start is written over an image never started (new, or
/// reopened by an operator), and over nothing else: not over an attempt
/// already made, a settled image, or a job that is gone.
#[tokio::test]
async fn a_first_start_is_written_only_over_an_untouched_image() {
    for (name, meta, _guard) in stores().await {
        let fresh = job();
        meta.create(&fresh).await.unwrap();
        let started = progress(ImageState::Processing, 1);
        let start = || meta.start_untouched(fresh.id, 0, &started);
        let stored = || async { meta.image_progress(fresh.id, 0).await.unwrap().unwrap() };

        assert!(start().await.unwrap(), "{name}: a new image");
        assert_eq!(stored().await, started, "{name}");
        assert!(!start().await.unwrap(), "{name}: an attempt was made");
        meta.set_image_progress(fresh.id, 0, &progress(ImageState::Processing, 2))
            .await
            .unwrap();
        assert!(!start().await.unwrap(), "{name}");
        assert_eq!(stored().await.attempts, 2, "{name}: left alone");

        meta.set_image_progress(fresh.id, 0, &progress(ImageState::Failed, 2))
            .await
            .unwrap();
        assert!(!start().await.unwrap(), "{name}: a settled image");
        assert!(meta
            .reopen_image(fresh.id, 0, &ImageProgress::queued())
            .await
            .unwrap());
        assert!(start().await.unwrap(), "{name}: reopened by an operator");

        let gone = job();
        meta.create(&gone).await.unwrap();
        meta.mark_deleted(gone.id).await.unwrap();
        assert!(
            !meta.start_untouched(gone.id, 0, &started).await.unwrap(),
            "{name}: a deleted job"
        );
        assert!(
            !meta
                .start_untouched(JobId::new(), 0, &started)
                .await
                .unwrap(),
            "{name}: an unknown job"
        );
    }
}

#[tokio::test]
async fn a_deleted_job_vanishes_takes_no_more_writes_and_is_purged() {
    for (name, meta, _guard) in stores().await {
        let job = job();
        meta.create(&job).await.unwrap();
        assert_eq!(
            meta.mark_deleted(job.id).await.unwrap(),
            Some(job.clone()),
            "{name}"
        );
        assert_eq!(
            meta.mark_deleted(job.id).await.unwrap(),
            None,
            "{name}: only once"
        );
        assert!(meta.load(job.id).await.unwrap().is_none(), "{name}");
        assert!(meta.job(job.id).await.unwrap().is_none(), "{name}");
        let p = progress(ImageState::Succeeded, 1);
        assert!(
            !meta.set_image_progress(job.id, 0, &p).await.unwrap(),
            "{name}"
        );
        assert!(meta.load(job.id).await.unwrap().is_none(), "{name}");

        let doomed = meta.doomed(Utc::now(), 1000).await.unwrap();
        assert!(doomed.contains(&Doomed::of(&job)), "{name}: {doomed:?}");
        meta.remove(job.id).await.unwrap();
        let doomed = meta.doomed(Utc::now(), 1000).await.unwrap();
        assert!(doomed.iter().all(|d| d.id != job.id), "{name}: purged once");
    }
}

#[tokio::test]
async fn an_expired_job_vanishes_takes_no_writes_and_is_due_for_purging() {
    for (name, meta, _guard) in stores().await {
        let live = job();
        let expired = job_expiring_in(Duration::milliseconds(-1));
        meta.create(&live).await.unwrap();
        meta.create(&expired).await.unwrap();
        assert!(meta.load(expired.id).await.unwrap().is_none(), "{name}");
        assert!(meta.job(expired.id).await.unwrap().is_none(), "{name}");
        assert!(
            !meta
                .set_image_progress(expired.id, 0, &progress(ImageState::Succeeded, 1))
                .await
                .unwrap(),
            "{name}: an expired job takes no writes (its files may be purged already)"
        );
        assert_eq!(meta.mark_deleted(expired.id).await.unwrap(), None, "{name}");
        let doomed = meta.doomed(Utc::now(), 1000).await.unwrap();
        assert!(doomed.iter().any(|d| d.id == expired.id), "{name}");
        assert!(doomed.iter().all(|d| d.id != live.id), "{name}");
        assert!(meta.load(live.id).await.unwrap().is_some(), "{name}");
    }
}

/// A tenant's usage counts unsettled images and stored bytes (uploads, then
/// results as they are written) over its live jobs only; fair scheduling's
/// counters follow takes and releases.
#[tokio::test]
async fn usage_and_release_counters_add_up_alike_on_both_stores() {
    for (name, meta, _guard) in stores().await {
        let tenant: imgpipe::auth::Tenant = format!("t{}", uuid::Uuid::new_v4().simple())
            .parse()
            .unwrap();
        let mut job = job();
        job.tenant = tenant.clone();
        let mut second = job.images[0].clone();
        second.index = 1;
        second.task_id = "t1".into();
        job.images.push(second);
        for image in &mut job.images {
            image.size_bytes = 10;
        }
        meta.create(&job).await.unwrap();
        let usage = |active, bytes| Usage {
            active_images: active,
            stored_bytes: bytes,
        };
        assert_eq!(meta.usage(&tenant).await.unwrap(), usage(2, 20), "{name}");

        let backlog = meta.backlog(&tenant, 10).await.unwrap();
        let held = &backlog.held;
        assert_eq!(
            (held.len(), held[0].released, held[0].taken),
            (1, 0, 0),
            "{name}"
        );
        // SQLite reads the next images' task ids along; Redis leaves them
        // to the release's own read.
        let along = backlog.next_ids.get(&job.id).cloned();
        match name {
            "sqlite" => assert_eq!(along, Some(vec!["t0".into(), "t1".into()])),
            _ => assert_eq!(along, None, "{name}"),
        }
        // At most `limit` of them.
        let one = meta.backlog(&tenant, 1).await.unwrap();
        assert!(
            one.next_ids.values().all(|ids| ids.len() <= 1),
            "{name}: {one:?}"
        );
        meta.mark_released(&[(job.id, 2)], Utc::now().timestamp_millis())
            .await
            .unwrap();
        assert_eq!(
            meta.note_taken(job.id).await.unwrap(),
            Some(tenant.clone()),
            "{name}"
        );
        let backlog = meta.backlog(&tenant, 10).await.unwrap();
        let held = &backlog.held;
        assert_eq!((held[0].released, held[0].taken), (2, 1), "{name}");
        assert!(backlog.next_ids.is_empty(), "nothing held back: {name}");
        assert!(
            meta.tenants_with_backlog(100)
                .await
                .unwrap()
                .iter()
                .all(|t| t != &tenant),
            "{name}"
        );
        assert_eq!(
            meta.task_ids(&[(job.id, 0..2)]).await.unwrap(),
            [["t0", "t1"]],
            "{name}"
        );

        let done = ImageProgress {
            output_bytes: Some(100),
            ..progress(ImageState::Succeeded, 1)
        };
        assert!(
            meta.set_image_progress(job.id, 0, &done).await.unwrap(),
            "{name}"
        );
        assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 120), "{name}");
        // Written once: a repeat is refused and counts nothing.
        assert!(
            !meta.set_image_progress(job.id, 0, &done).await.unwrap(),
            "{name}"
        );
        assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 120), "{name}");
        // A failure settles the image and stores nothing.
        assert!(
            meta.set_image_progress(job.id, 1, &progress(ImageState::Failed, 1))
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(meta.usage(&tenant).await.unwrap(), usage(0, 120), "{name}");
        // The tenant's live jobs add up; another tenant's do not count.
        let mut more = job_of(&tenant);
        more.images[0].size_bytes = 7;
        meta.create(&more).await.unwrap();
        meta.create(&self::job()).await.unwrap();
        assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 127), "{name}");

        meta.mark_deleted(job.id).await.unwrap();
        assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 7), "{name}");
        assert_eq!(meta.note_taken(job.id).await.unwrap(), None, "{name}");
    }
}

/// A tenant's usage is kept as its jobs change (not summed over them at
/// each read): results, failures, an operator's retry, expiry, the purge
/// and deletion each count once, whatever order they come in.
#[tokio::test]
async fn usage_is_kept_through_retries_expiry_purge_and_deletion_alike_on_both_stores() {
    for (name, meta, _guard) in stores().await {
        check_kept_usage(name, meta.as_ref()).await;
    }
}

async fn check_kept_usage(name: &str, meta: &dyn MetaStore) -> imgpipe::auth::Tenant {
    let tenant: imgpipe::auth::Tenant = format!("t{}", uuid::Uuid::new_v4().simple())
        .parse()
        .unwrap();
    let usage = |active, bytes| Usage {
        active_images: active,
        stored_bytes: bytes,
    };
    let mut kept = job_of(&tenant);
    kept.images[0].size_bytes = 5;
    let mut brief = Job {
        expires_at: Utc::now() + Duration::milliseconds(600),
        ..job_of(&tenant)
    };
    brief.images[0].size_bytes = 3;
    meta.create(&kept).await.unwrap();
    meta.create(&brief).await.unwrap();
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(2, 8), "{name}");

    let done = ImageProgress {
        output_bytes: Some(10),
        ..progress(ImageState::Succeeded, 1)
    };
    assert!(meta.set_image_progress(brief.id, 0, &done).await.unwrap());
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 18), "{name}");
    let failed = progress(ImageState::Failed, 1);
    assert!(meta.set_image_progress(kept.id, 0, &failed).await.unwrap());
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(0, 18), "{name}");
    assert!(meta
        .reopen_image(kept.id, 0, &ImageProgress::queued())
        .await
        .unwrap());
    assert_eq!(
        meta.usage(&tenant).await.unwrap(),
        usage(1, 18),
        "{name}: a retried image is queued again"
    );

    // Expired: no longer counted, and neither the purge nor a deletion
    // takes it out a second time.
    while Utc::now() <= brief.expires_at {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 5), "{name}");
    assert_eq!(meta.mark_deleted(brief.id).await.unwrap(), None, "{name}");
    meta.remove(brief.id).await.unwrap();
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 5), "{name}");

    // Deleted, then purged: counted out once.
    assert!(meta.mark_deleted(kept.id).await.unwrap().is_some());
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(0, 0), "{name}");
    meta.remove(kept.id).await.unwrap();
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(0, 0), "{name}");
    // Purged without having been deleted (an expired job the purge found
    // before any read did): counted out by the purge.
    let mut lapsed = Job {
        expires_at: Utc::now() + Duration::milliseconds(300),
        ..job_of(&tenant)
    };
    lapsed.images[0].size_bytes = 4;
    meta.create(&lapsed).await.unwrap();
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 4), "{name}");
    while Utc::now() <= lapsed.expires_at {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    meta.remove(lapsed.id).await.unwrap();
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(0, 0), "{name}");

    let mut next = job_of(&tenant);
    next.images[0].size_bytes = 2;
    meta.create(&next).await.unwrap();
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 2), "{name}");
    tenant
}

/// On Redis, a tenant without kept totals (from a build before them, or
/// whose totals expired with its index) gets them made from its jobs at its
/// next read, and kept from then on.
#[tokio::test]
async fn redis_makes_a_tenants_missing_totals_from_its_jobs() {
    let prefix = format!("test-meta-{}", uuid::Uuid::new_v4().simple());
    let url = std::env::var("IMGPIPE_TEST_REDIS_URL")
        .expect("IMGPIPE_TEST_REDIS_URL is not set: run the tests through scripts/test.sh");
    let client = redis::Client::open(url).expect("valid Redis URL");
    let conn = client.get_connection_manager().await.expect("Redis");
    let meta = RedisMeta::new(conn.clone(), &prefix);
    let tenant = check_kept_usage("redis", &meta).await;
    let key = format!("{prefix}:tenant:{tenant}:usage");
    let removed: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(removed, 1, "the totals were kept");
    let usage = |active, bytes| Usage {
        active_images: active,
        stored_bytes: bytes,
    };
    let mut other = job_of(&tenant);
    other.images[0].size_bytes = 6;
    meta.create(&other).await.unwrap();
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(2, 8));
    let done = ImageProgress {
        output_bytes: Some(1),
        ..progress(ImageState::Succeeded, 1)
    };
    assert!(meta.set_image_progress(other.id, 0, &done).await.unwrap());
    assert_eq!(meta.usage(&tenant).await.unwrap(), usage(1, 9));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    assert!(ttl > 0, "the totals expire with the tenant's index: {ttl}");
}

/// `take` (one trip on both stores) counts the image
/// taken and then reads its tenant's backlog.
#[tokio::test]
async fn take_counts_then_reads_the_backlog_alike_on_both_stores() {
    for (name, meta, _guard) in stores().await {
        let tenant: imgpipe::auth::Tenant = format!("t{}", uuid::Uuid::new_v4().simple())
            .parse()
            .unwrap();
        let (mut first, mut second) = (job(), job());
        first.tenant = tenant.clone();
        second.tenant = tenant.clone();
        meta.create(&first).await.unwrap();
        meta.create(&second).await.unwrap();
        // The first job's one image is taken: only the second is left.
        let backlog = meta.take(first.id, 10).await.unwrap().expect("live job");
        assert_eq!(
            backlog
                .held
                .iter()
                .map(|h| (h.job, h.taken))
                .collect::<Vec<_>>(),
            [(second.id, 0)],
            "{name}"
        );
        if name == "sqlite" {
            assert_eq!(
                backlog.next_ids.get(&second.id),
                Some(&vec![second.images[0].task_id.clone()]),
                "the take reads the next ids along"
            );
        }
        let backlog = meta.take(second.id, 10).await.unwrap().expect("live job");
        assert!(backlog.held.is_empty(), "{name}: {backlog:?}");
        meta.mark_deleted(first.id).await.unwrap();
        assert_eq!(meta.take(first.id, 10).await.unwrap(), None, "{name}");
        assert_eq!(
            meta.take(JobId::new(), 10).await.unwrap(),
            None,
            "{name}: unknown"
        );
    }
}

/// A backlog read for a plan of `limit` images holds the tenant's jobs with
/// images waiting, wherever they are in turn order, and the first `limit`
/// with images held back: the plan over it is the plan over the whole
/// backlog (SQLite reads just those, through two indexes; Redis more).
#[tokio::test]
async fn a_bounded_backlog_read_plans_as_the_whole_backlog_does() {
    use imgpipe::jobs::pacing::plan;
    for (name, meta, _guard) in stores().await {
        let tenant: imgpipe::auth::Tenant = format!("t{}", uuid::Uuid::new_v4().simple())
            .parse()
            .unwrap();
        let mut jobs = Vec::new();
        for turn in 0..6 {
            let mut job = job();
            job.tenant = tenant.clone();
            for index in 1..3 {
                let mut image = job.images[0].clone();
                image.index = index;
                image.task_id = format!("t{index}");
                job.images.push(image);
            }
            meta.create(&job).await.unwrap();
            meta.mark_released(&[(job.id, 0)], 1_000 + turn)
                .await
                .unwrap();
            jobs.push(job.id);
        }
        // The last two were served last: one has images waiting, the other
        // had its one released image taken.
        meta.mark_released(&[(jobs[5], 2)], 5_000).await.unwrap();
        meta.note_taken(jobs[5]).await.unwrap();
        meta.mark_released(&[(jobs[4], 1)], 4_000).await.unwrap();
        meta.note_taken(jobs[4]).await.unwrap();

        let bounded = meta.backlog(&tenant, 2).await.unwrap();
        if name == "sqlite" {
            // From each job's first image not yet released, at most 2.
            assert_eq!(bounded.next_ids[&jobs[5]], ["t2"]);
            assert_eq!(bounded.next_ids[&jobs[0]].len(), 2);
            assert_eq!(bounded.next_ids[&jobs[0]][1], "t1");
        }
        let (bounded, whole) = (bounded.held, meta.backlog(&tenant, 100).await.unwrap().held);
        let ids: Vec<JobId> = bounded.iter().map(|h| h.job).collect();
        for must in [jobs[0], jobs[1], jobs[5]] {
            assert!(ids.contains(&must), "{name}: {ids:?}");
        }
        let position = |id| ids.iter().position(|j| *j == id);
        assert!(
            position(jobs[1]) < position(jobs[5]),
            "{name}: in turn order"
        );
        assert_eq!(whole.len(), 6, "{name}");
        assert_eq!(plan(&bounded, 2), plan(&whole, 2), "{name}");
        // One waits: the plan tops the tenant up from the first held back.
        let first: Vec<JobId> = plan(&bounded, 2).iter().map(|r| r.job).collect();
        assert_eq!(first, [jobs[0]], "{name}");
    }
}

/// One release reads the task ids of several jobs and marks them released
/// in one call: each job gets its own ids and count, a job that is gone
/// gets none and is left alone, and the marked jobs move to the turn given.
#[tokio::test]
async fn a_release_of_several_jobs_reads_and_marks_them_together() {
    for (name, meta, _guard) in stores().await {
        let tenant: imgpipe::auth::Tenant = format!("t{}", uuid::Uuid::new_v4().simple())
            .parse()
            .unwrap();
        let mut jobs = Vec::new();
        for n in 0..2 {
            let mut job = job();
            job.tenant = tenant.clone();
            for index in 1..3 {
                let mut image = job.images[0].clone();
                image.index = index;
                image.task_id = format!("j{n}t{index}");
                job.images.push(image);
            }
            job.images[0].task_id = format!("j{n}t0");
            meta.create(&job).await.unwrap();
            jobs.push(job.id);
        }
        let gone = JobId::new();
        let ids = meta
            .task_ids(&[
                (jobs[1], 1..3),
                (gone, 0..1),
                (jobs[0], 0..1),
                (jobs[0], 2..2),
            ])
            .await
            .unwrap();
        let expected: [Vec<String>; 4] = [
            vec!["j1t1".into(), "j1t2".into()],
            vec![],
            vec!["j0t0".into()],
            vec![],
        ];
        assert_eq!(ids, expected, "{name}");

        meta.mark_released(&[(jobs[1], 3), (gone, 1), (jobs[0], 1)], 7_000)
            .await
            .unwrap();
        let held = meta.backlog(&tenant, 10).await.unwrap().held;
        let released: Vec<(JobId, usize)> = held.iter().map(|h| (h.job, h.released)).collect();
        assert!(released.contains(&(jobs[0], 1)), "{name}: {released:?}");
        assert!(released.contains(&(jobs[1], 3)), "{name}: {released:?}");
        // Never lowered; an empty release writes nothing.
        meta.mark_released(&[(jobs[0], 0)], 8_000).await.unwrap();
        meta.mark_released(&[], 9_000).await.unwrap();
        let held = meta.backlog(&tenant, 10).await.unwrap().held;
        let first = held.iter().find(|h| h.job == jobs[0]).unwrap();
        assert_eq!(first.released, 1, "{name}");
        // A job named twice gets the larger count.
        meta.mark_released(&[(jobs[0], 2), (jobs[0], 1)], 10_000)
            .await
            .unwrap();
        let held = meta.backlog(&tenant, 10).await.unwrap().held;
        let first = held.iter().find(|h| h.job == jobs[0]).unwrap();
        assert_eq!(first.released, 2, "{name}");
    }
}

/// A database written before the per-job figures (migration
/// `per_job_figures`) is brought up to date at start-up: its live jobs'
/// usage and task ids read the same as they would have from the records.
#[tokio::test]
async fn an_upgrade_fills_the_per_job_figures_from_what_was_recorded() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sqlite3");
    let tenant: imgpipe::auth::Tenant = "upgraded".parse().unwrap();
    let mut job = job_of(&tenant);
    let mut second = job.images[0].clone();
    second.index = 1;
    second.task_id = "t1".into();
    job.images.push(second);
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        let mut before = sqlx::migrate!("./migrations");
        let kept: Vec<_> = before
            .migrations
            .iter()
            .filter(|m| m.version < 20261208000000)
            .cloned()
            .collect();
        before.migrations = kept.into();
        before.run(&mut conn).await.unwrap();
        let now = Utc::now().timestamp_millis();
        sqlx::query(
            "INSERT INTO jobs (id, record, created_at, expires_at, image_count, released,
                               tenant, turn, input_bytes, lane)
             VALUES (?, ?, ?, ?, 2, 2, ?, ?, 20, 'bulk')",
        )
        .bind(job.id.to_string())
        .bind(serde_json::to_string(&job).unwrap())
        .bind(now)
        .bind(job.expires_at.timestamp_millis())
        .bind(tenant.as_str())
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap();
        // As the code of then wrote them: both queued, then one succeeded.
        let queued = serde_json::to_string(&ImageProgress::queued()).unwrap();
        for index in 0..2 {
            sqlx::query(
                "INSERT INTO images (job_id, idx, state, attempts, progress)
                 VALUES (?, ?, 'queued', 0, ?)",
            )
            .bind(job.id.to_string())
            .bind(index)
            .bind(&queued)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        let done = ImageProgress {
            output_bytes: Some(100),
            ..progress(ImageState::Succeeded, 1)
        };
        sqlx::query(
            "UPDATE images SET state = 'succeeded', attempts = 1, progress = ?
             WHERE job_id = ? AND idx = 0",
        )
        .bind(serde_json::to_string(&done).unwrap())
        .bind(job.id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    let meta = SqliteMeta::open(&path).await.expect("upgrade");
    // An image without its task id, as a process of the build before (still
    // running beside this one) writes it: here, by clearing it.
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query("UPDATE images SET task_id = NULL WHERE job_id = ? AND idx = 1")
            .bind(job.id.to_string())
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    assert_eq!(
        meta.usage(&tenant).await.unwrap(),
        Usage {
            active_images: 1,
            stored_bytes: 120,
        }
    );
    assert_eq!(
        meta.task_ids(&[(job.id, 0..2)]).await.unwrap(),
        [["t0", "t1"]]
    );
}

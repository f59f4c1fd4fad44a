//! Fair scheduling: a small job submitted behind a big one does not wait for
//! it, a tenant does not wait for another's burst of jobs nor for its long
//! images (the priority lane), and pacing loses no image.

use std::time::{Duration, Instant};

use crate::helpers::{noise_png, png, Backend, Deployment, File};
use crate::tenants::create_key_with;
use crate::waiting::until;

both_backends!(
    a_small_job_behind_a_400_image_job_is_done_before_a_tenth_of_it,
    a_tenant_does_not_wait_for_another_tenants_burst_of_jobs,
    a_light_tenants_job_runs_beside_another_tenants_long_images,
);

fn succeeded(status: &serde_json::Value) -> usize {
    status["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|i| i["state"] == "succeeded")
        .count()
}

fn finished_at(image: &serde_json::Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(image["finished_at"].as_str()?).ok()
}

/// When the job's last image finished, by the images' own times.
fn last_finished(status: &serde_json::Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    status["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(finished_at)
        .max()
}

/// The job's images that finished at or before `at`, by their own times.
fn finished_by(status: &serde_json::Value, at: chrono::DateTime<chrono::FixedOffset>) -> usize {
    status["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(finished_at)
        .filter(|finished| *finished <= at)
        .count()
}

/// The job's images that finished after `from` and at or before `to`.
fn finished_between(
    status: &serde_json::Value,
    from: chrono::DateTime<chrono::FixedOffset>,
    to: chrono::DateTime<chrono::FixedOffset>,
) -> usize {
    finished_by(status, to).saturating_sub(finished_by(status, from))
}

/// When the job was recorded, and its images queued: the scheduler's part
/// of a wait starts there. The upload before it is the client's and the
/// store's, and on a busy machine it alone can take longer than a tenth of
/// a job of tiny images.
fn recorded(status: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    let at = status["created_at"].as_str().expect("created_at");
    chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 created_at")
}

async fn a_small_job_behind_a_400_image_job_is_done_before_a_tenth_of_it(backend: Backend) {
    let deployment = Deployment::new(backend)
        .env("IMGPIPE_WORKERS", "2")
        .env("IMGPIPE_MAX_FILES", "400");
    let app = deployment.serve();
    let big: Vec<File> = (0..400)
        .map(|i| (format!("big-{i}.png"), png(96, 96, i)))
        .collect();
    let big = app.submit_ok("filter=blur", big).await;
    let big_id = big["job_id"].as_str().expect("id").to_string();
    app.wait_started(&big_id).await;

    let started = Instant::now();
    let small = app
        .submit_ok("filter=blur", vec![("small.png".into(), png(96, 96, 999))])
        .await;
    let small_id = small["job_id"].as_str().expect("id").to_string();
    let small_status = app.wait_done(&small_id, Duration::from_secs(60)).await;
    let waited = started.elapsed();
    assert_eq!(small_status["status"], "completed", "{small_status}");
    // Counted by the images' own finish times, not by a poll after the
    // small job was seen done: the poll's interval is not the scheduler's.
    // Nor is the upload: only what finished once the small job was queued.
    let small_finished = finished_at(&small_status["images"][0]).expect("small image finished");
    let big_done = finished_between(
        &app.status(&big_id).await,
        recorded(&small_status),
        small_finished,
    );
    assert!(
        big_done < 40,
        "the small job finished only after {big_done} more of the big job's 400 images ({waited:?})"
    );

    // Nothing held back is lost: the big job completes, every image once.
    let big_status = app.wait_done(&big_id, Duration::from_secs(240)).await;
    assert_eq!(big_status["status"], "completed", "{big_status}");
    assert_eq!(succeeded(&big_status), 400);
    // Every image carries its finish time, or the count above meant nothing.
    let last = last_finished(&big_status).expect("finish times");
    assert_eq!(finished_by(&big_status, last), 400, "{big_status}");
    eprintln!(
        "{backend:?}: small job done in {waited:?} with {big_done}/400 of the big one done meanwhile; \
         the big one took {:?} in all",
        started.elapsed()
    );
}

async fn a_tenant_does_not_wait_for_another_tenants_burst_of_jobs(backend: Backend) {
    // The burst lands at once: its submissions are not capped.
    let deployment = Deployment::new(backend)
        .env("IMGPIPE_WORKERS", "2")
        .env("IMGPIPE_MAX_SUBMISSIONS_PER_TENANT", "100");
    let app = deployment.serve();
    let (_, noisy) = create_key_with(&deployment, "noisy", "submit,read", &[]);
    let (_, quiet) = create_key_with(&deployment, "quiet", "submit,read", &[]);
    let (noisy, quiet) = (app.as_caller(Some(&noisy)), app.as_caller(Some(&quiet)));
    // A burst that lands at once and takes a while (about 10 s of work).
    let submits = (0..100).map(|i| {
        let noisy = &noisy;
        async move {
            let files = vec![(format!("{i}.png"), png(256, 256, i))];
            let job = noisy.submit_ok("filter=blur", files).await;
            job["job_id"].as_str().expect("id").to_string()
        }
    });
    let burst = futures::future::join_all(submits).await;
    let started = Instant::now();
    let files: Vec<File> = (0..8)
        .map(|i| (format!("q{i}.png"), png(96, 96, 500 + i)))
        .collect();
    let job = quiet.submit_ok("filter=blur", files).await;
    let id = job["job_id"].as_str().expect("id").to_string();
    let status = quiet.wait_done(&id, Duration::from_secs(60)).await;
    let waited = started.elapsed();
    assert_eq!(status["status"], "completed", "{status}");
    let quiet_finished = last_finished(&status).expect("the quiet job's images finished");
    // Every image carries its finish time, or the count below meant nothing.
    assert_eq!(finished_by(&status, quiet_finished), 8, "{status}");
    let quiet_recorded = recorded(&status);
    let mut burst_done = 0;
    for job in &burst {
        burst_done += finished_between(&noisy.status(job).await, quiet_recorded, quiet_finished);
    }
    assert!(
        burst_done < 50,
        "the quiet tenant's job finished only after {burst_done} of the other's 100 jobs ({waited:?})"
    );
    // The rest of the burst is not needed: deleting it ends the test sooner.
    for job in &burst {
        let deleted = noisy
            .send(noisy.client.delete(noisy.url(&format!("/jobs/{job}"))))
            .await;
        assert_eq!(deleted.status(), 204);
    }
    eprintln!(
        "{backend:?}: the quiet tenant's 8-image job took {waited:?}, \
         with {burst_done}/100 of the noisy tenant's jobs done by then"
    );
}

/// With one worker slot per lane, a tenant's images that each take minutes
/// (within the cost limit, so only the deadline would stop them) hold the
/// bulk lane; another tenant's small job runs beside them in the priority
/// lane instead of waiting for a slot to free.
async fn a_light_tenants_job_runs_beside_another_tenants_long_images(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_WORKERS", "1");
    let app = deployment.serve();
    let (_, heavy) = create_key_with(&deployment, "heavy", "submit,read", &[]);
    let (_, light) = create_key_with(&deployment, "light", "submit,read", &[]);
    let (heavy, light) = (app.as_caller(Some(&heavy)), app.as_caller(Some(&light)));
    let long: Vec<File> = (0..3)
        .map(|i| (format!("long-{i}.png"), noise_png(2000, 2000, i)))
        .collect();
    let job = heavy.submit_ok("ops=mode:25,mode:25,mode:25", long).await;
    let heavy_id = job["job_id"].as_str().expect("id").to_string();
    until("a long image to start", Duration::from_secs(60), || async {
        let status = heavy.status(&heavy_id).await;
        match status["progress"]["processing"].as_u64() {
            Some(n) if n > 0 => Ok(()),
            _ => Err(status.to_string()),
        }
    })
    .await;

    let started = Instant::now();
    let files = vec![("small.png".to_string(), png(32, 32, 4))];
    let small = light.submit_ok("filter=blur", files).await;
    let id = small["job_id"].as_str().expect("id").to_string();
    let status = light.wait_done(&id, Duration::from_secs(100)).await;
    let waited = started.elapsed();
    assert_eq!(status["status"], "completed", "{status}");
    assert!(
        waited < Duration::from_secs(15),
        "the small job waited {waited:?} for the long images"
    );
    let still = heavy.status(&heavy_id).await;
    assert_eq!(succeeded(&still), 0, "the long images still run: {still}");
    let deleted = heavy
        .send(heavy.client.delete(heavy.url(&format!("/jobs/{heavy_id}"))))
        .await;
    assert_eq!(deleted.status(), 204);
    eprintln!("{backend:?}: the light tenant's job took {waited:?} beside the long images");
}

//! Fair scheduling: a small job submitted behind a big one does not wait for
//! it, and pacing loses no image and no throughput on the big one.

use std::time::{Duration, Instant};

use crate::helpers::{png, Backend, Deployment, File};

both_backends!(a_small_job_behind_a_400_image_job_is_done_before_a_tenth_of_it);

fn succeeded(status: &serde_json::Value) -> usize {
    status["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|i| i["state"] == "succeeded")
        .count()
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
    let big_done = succeeded(&app.status(&big_id).await);
    assert!(
        big_done < 40,
        "the small job finished only after {big_done} of the big job's 400 images ({waited:?})"
    );

    // Nothing held back is lost: the big job completes, every image once.
    let big_status = app.wait_done(&big_id, Duration::from_secs(240)).await;
    assert_eq!(big_status["status"], "completed", "{big_status}");
    assert_eq!(succeeded(&big_status), 400);
    eprintln!(
        "{backend:?}: small job done in {waited:?} with {big_done}/400 of the big one done; \
         the big one took {:?} in all",
        started.elapsed()
    );
}

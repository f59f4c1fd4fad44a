//! Jobs do not outlive their welcome: `DELETE /jobs/{id}` and expiry remove a
//! job's files, tasks and records, and a deleted job's queued images never run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::{photos, png, Backend, Deployment, File, TestApp};

const WITHIN: Duration = Duration::from_secs(60);

fn images(n: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("img-{i}.png"), png(64, 48, i)))
        .collect()
}

async fn delete(app: &TestApp, id: &str) -> reqwest::Response {
    app.send(app.client.delete(app.url(&format!("/jobs/{id}"))))
        .await
}

async fn assert_gone(deployment: &Deployment, app: &TestApp, id: &str) {
    for path in [
        format!("/status-job/{id}"),
        format!("/download/{id}"),
        format!("/images/{id}/0"),
    ] {
        let resp = app.get(&path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "job_not_found", "{path}: {body}");
    }
    assert_eq!(deployment.stored_objects(), 0, "the job's files are gone");
    let left = deployment.leftover_records().await;
    assert!(left.is_empty(), "records left behind: {left:?}");
}

async fn deleting_a_finished_job_removes_everything(backend: Backend) {
    let deployment = Deployment::new(backend);
    let app = deployment.serve();
    let job = app.submit_ok("filter=edges", images(3)).await;
    let id = job["job_id"].as_str().expect("job id");
    app.wait_done(id, WITHIN).await;
    assert_eq!(deployment.stored_objects(), 6, "3 uploads and 3 results");

    assert_eq!(delete(&app, id).await.status(), 204);
    assert_gone(&deployment, &app, id).await;
    let again = delete(&app, id).await;
    assert_eq!(again.status(), 404, "a job is deleted once");
    let bad = delete(&app, "not-a-job").await;
    assert_eq!(bad.status(), 404);
}

async fn deleting_a_queued_job_cancels_its_tasks(backend: Backend) {
    let deployment = Deployment::new(backend);
    let api = TestApp::new(deployment.start("api"));
    let job = api.submit_ok("filter=blur", images(4)).await;
    let id = job["job_id"].as_str().expect("job id");

    assert_eq!(delete(&api, id).await.status(), 204);
    let worker = deployment.start("worker");
    // Ample time for a worker polling every 200 ms to pick up stray tasks.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_gone(&deployment, &api, id).await;
    assert!(
        !worker.logs().contains(id),
        "a task of the deleted job reached the worker:\n{}",
        worker.logs()
    );
}

/// Deleted while its images are being processed: the running ones finish
/// but their results are discarded, and once they are done the next purge
/// pass removes the rest.
async fn deleting_a_running_job_discards_its_results(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_PURGE_INTERVAL_SECS", "1");
    let app = deployment.serve();
    let job = app.submit_ok("filter=blur", photos(3)).await;
    let id = job["job_id"].as_str().expect("job id");
    app.wait_processing(id).await;

    assert_eq!(delete(&app, id).await.status(), 204);
    let deadline = std::time::Instant::now() + WITHIN;
    while !app.process.logs().contains("result discarded") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            app.process.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next purge pass, and slack for a busy machine.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_gone(&deployment, &app, id).await;
}

async fn expired_jobs_are_purged(backend: Backend) {
    let deployment = Deployment::new(backend)
        .env("IMGPIPE_JOB_TTL_SECS", "3")
        .env("IMGPIPE_PURGE_INTERVAL_SECS", "1");
    let app = deployment.serve();
    let job = app.submit_ok("filter=smooth", images(2)).await;
    let id = job["job_id"].as_str().expect("job id");
    let status = app.wait_done(id, WITHIN).await;
    let created: DateTime<Utc> = status["created_at"].as_str().unwrap().parse().unwrap();
    let expires: DateTime<Utc> = status["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires - created).num_seconds(), 3, "{status}");

    // Expiry, then at most one purge interval (plus slack for a busy machine).
    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(3);
    tokio::time::sleep(wait).await;
    assert_gone(&deployment, &app, id).await;
}

crate::both_backends!(
    deleting_a_finished_job_removes_everything,
    deleting_a_queued_job_cancels_its_tasks,
    deleting_a_running_job_discards_its_results,
    expired_jobs_are_purged,
);

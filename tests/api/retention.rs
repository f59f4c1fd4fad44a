//! Jobs do not outlive their welcome: `DELETE /jobs/{id}` and expiry remove a
//! job's files, tasks and records, and a deleted job's queued images never run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::{png, Backend, Deployment, File, TestApp};
use crate::waiting::{slow_images, until, SLOW_FILTER};

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

/// What is left of a job: routes that still know it, stored files, records
/// (tasks, job and image rows or keys). Empty once it is gone.
async fn remains(deployment: &Deployment, app: &TestApp, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for path in [
        format!("/status-job/{id}"),
        format!("/download/{id}"),
        format!("/images/{id}/0"),
    ] {
        let resp = app.get(&path).await;
        let status = resp.status();
        if status != 404 {
            left.push(format!("{path} answers {status}"));
            continue;
        }
        let body: Value = resp.json().await.expect("JSON");
        if body["error"]["code"] != "job_not_found" {
            left.push(format!("{path} answers 404 {body}"));
        }
    }
    let objects = deployment.stored_objects();
    if objects > 0 {
        left.push(format!("{objects} stored files"));
    }
    left.extend(deployment.leftover_records().await);
    left
}

/// The job is gone now: for what must be removed before an answer.
async fn assert_gone(deployment: &Deployment, app: &TestApp, id: &str) {
    let left = remains(deployment, app, id).await;
    assert!(left.is_empty(), "job {id} is not gone: {left:?}");
}

/// The job goes within `WITHIN`: for what a background pass removes.
async fn wait_gone(deployment: &Deployment, app: &TestApp, id: &str) {
    until(&format!("job {id} to be gone"), WITHIN, || async move {
        let left = remains(deployment, app, id).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await
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
    assert_gone(&deployment, &api, id).await;
    let worker = deployment.start("worker");
    // A job submitted after the delete, done by the same worker: the queue is
    // first in, first out, so once that job is done the worker has already
    // gone past where the deleted job's tasks were. (No fixed wait for "long
    // enough to pick up stray tasks".)
    let later = api.submit_ok("filter=blur", images(1)).await;
    let later = later["job_id"].as_str().expect("job id");
    api.wait_done(later, WITHIN).await;
    assert_eq!(delete(&api, later).await.status(), 204);
    assert_gone(&deployment, &api, later).await;
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
    // Slow images, deleted just as one starts: it is certainly still running
    // when the delete lands, in a release build too.
    let job = app.submit_ok(SLOW_FILTER, slow_images(3)).await;
    let id = job["job_id"].as_str().expect("job id");
    app.wait_started(id).await;

    assert_eq!(delete(&app, id).await.status(), 204);
    until(
        "the running image's result to be discarded",
        WITHIN,
        || async {
            let logs = app.process.logs();
            // Discarded after it finished, or stopped mid-render by the
            // deletion check (which comes first depends on the machine's load).
            if logs.contains("result discarded") || logs.contains("cancelled: the job was deleted")
            {
                Ok(())
            } else {
                Err(format!("log:\n{logs}"))
            }
        },
    )
    .await;
    // The images still running finish and are discarded too; the next purge
    // pass then removes what the delete left.
    wait_gone(&deployment, &app, id).await;
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

    // Purged by the first purge pass after expiry; not before.
    wait_gone(&deployment, &app, id).await;
    let gone_by = Utc::now();
    assert!(
        gone_by >= expires,
        "purged at {gone_by}, before it expired at {expires}"
    );
}

crate::both_backends!(
    deleting_a_finished_job_removes_everything,
    deleting_a_queued_job_cancels_its_tasks,
    deleting_a_running_job_discards_its_results,
    expired_jobs_are_purged,
);

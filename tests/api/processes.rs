//! The split shape: `imgpipe api` and `imgpipe worker` as separate
//! processes sharing the queue, metadata and objects (Redis and S3, or one
//! data directory on one host).

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{png, Backend, Deployment, TestApp};

async fn api_and_worker_processes_complete_a_job_together(backend: Backend) {
    let deployment = Deployment::new(backend);
    let api = TestApp::new(deployment.start("api"));
    let files = (0..4)
        .map(|i| (format!("img-{i}.png"), png(40, 30, i)))
        .collect();
    let job = api.submit_ok("filter=blur", files).await;
    let id = job["job_id"].as_str().unwrap().to_string();

    // No worker yet: the job waits, and downloading it is refused with its
    // status. (Nothing to wait for: the job must be queued whenever it is
    // looked at. The pause only gives an API that wrongly processed images
    // itself the time to show it.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = api.status(&id).await;
    assert_eq!(status["status"], "queued");
    assert_eq!(status["progress"]["queued"], 4);
    let early = api.get(&format!("/download/{id}")).await;
    assert_eq!(early.status(), 409);
    let body: Value = early.json().await.unwrap();
    assert_eq!(body["error"]["code"], "job_not_finished");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["progress"]["total"], 4);
    let partial = api.download(&id, "?partial=true").await;
    let names: Vec<&str> = partial.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["manifest.json"]);

    let mut worker = deployment.start("worker");
    let status = api.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed", "{status}");
    let entries = api.download(&id, "").await;
    assert_eq!(entries.len(), 5);

    // SIGTERM stops the worker cleanly.
    let exit = worker.terminate();
    assert!(
        exit.success(),
        "worker exit status {exit}: {}",
        worker.logs()
    );
}

crate::both_backends!(api_and_worker_processes_complete_a_job_together,);

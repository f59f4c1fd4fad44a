//! Nothing is lost when processes die: a worker killed with SIGKILL mid-task,
//! a `serve` killed and restarted, an API restarted, a SIGTERM drain. Each test
//! ends with every image processed exactly once in the ZIP and byte-identical
//! to what the pipeline produces for it.

use serde_json::Value;

use crate::helpers::{photos, Backend, Deployment, TestApp};

/// A deployment whose dead workers are noticed within ~3 s.
fn deployment(backend: Backend) -> Deployment {
    Deployment::new(backend)
        .env("IMGPIPE_WORKERS", "2")
        .env("IMGPIPE_HEARTBEAT_SECS", "1")
}

fn attempts(status: &Value) -> Vec<u64> {
    status["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["attempts"].as_u64().expect("attempts"))
        .collect()
}

/// SIGKILL a worker mid-task; a worker started afterwards takes its tasks over
/// once the dead one misses its heartbeats. Then the API is restarted: status
/// and download are served from the backends, not from process memory.
async fn a_killed_worker_loses_no_image(backend: Backend) {
    let deployment = deployment(backend);
    let api = TestApp::new(deployment.start("api"));
    let mut victim = deployment.start("worker");
    let inputs = photos(6);
    let job = api.submit_ok("filter=blur", inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();

    api.wait_processing(&id).await;
    victim.kill();
    let _survivor = deployment.start("worker");
    api.assert_complete_and_correct(&id, &inputs, "blur").await;
    let status = api.status(&id).await;
    assert!(
        attempts(&status).iter().any(|&a| a >= 2),
        "the killed worker's image was processed again: {status}"
    );

    let before = api.status(&id).await;
    drop(api);
    let api = TestApp::new(deployment.start("api"));
    assert_eq!(
        api.status(&id).await,
        before,
        "status survives an API restart"
    );
    api.assert_complete_and_correct(&id, &inputs, "blur").await;
}

/// The single-process shape killed mid-job and started again: the job
/// completes after the restart.
async fn a_killed_serve_finishes_the_job_after_restart(backend: Backend) {
    let deployment = deployment(backend);
    let app = deployment.serve();
    let inputs = photos(5);
    let job = app.submit_ok("filter=sharpen", inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();

    app.wait_processing(&id).await;
    drop(app); // SIGKILL
    let app = deployment.serve();
    app.assert_complete_and_correct(&id, &inputs, "sharpen")
        .await;
}

/// SIGTERM: the worker stops taking tasks, finishes the ones it is running,
/// and exits 0; nothing it had not started is lost.
async fn sigterm_finishes_running_images_and_exits_cleanly(backend: Backend) {
    let deployment = deployment(backend).env("IMGPIPE_WORKERS", "1");
    let api = TestApp::new(deployment.start("api"));
    let mut worker = deployment.start("worker");
    let inputs = photos(4);
    let job = api.submit_ok("filter=smooth", inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();

    let running = api.wait_processing(&id).await;
    let exit = worker.terminate();
    assert!(exit.success(), "exit status {exit}: {}", worker.logs());

    let after = api.status(&id).await;
    let images = after["images"].as_array().expect("images");
    for (before, now) in running["images"]
        .as_array()
        .expect("images")
        .iter()
        .zip(images)
    {
        if before["state"] == "processing" {
            assert_eq!(
                now["state"], "succeeded",
                "a running image was finished: {after}"
            );
        }
    }
    assert_eq!(
        after["progress"]["processing"], 0,
        "none left half-done: {after}"
    );
    assert!(
        after["progress"]["queued"].as_u64() > Some(0),
        "no new task was taken after SIGTERM: {after}"
    );

    let _next = deployment.start("worker");
    api.assert_complete_and_correct(&id, &inputs, "smooth")
        .await;
    let status = api.status(&id).await;
    assert!(
        attempts(&status).iter().all(|&a| a == 1),
        "a drained shutdown needs no second attempt: {status}"
    );
}

crate::both_backends!(
    a_killed_worker_loses_no_image,
    a_killed_serve_finishes_the_job_after_restart,
    sigterm_finishes_running_images_and_exits_cleanly,
);

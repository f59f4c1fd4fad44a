//! Nothing is lost when processes die: a worker killed with SIGKILL mid-task,
//! a `serve` killed and restarted, an API restarted, a SIGTERM drain. Each test
//! ends with every image processed exactly once in the ZIP and byte-identical
//! to what the pipeline produces for it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use imgpipe::codec::{self, OutputFormat};
use imgpipe::ops::Filter;
use serde_json::Value;

use crate::helpers::{png, Backend, Deployment, File, TestApp};

const WITHIN: Duration = Duration::from_secs(90);

/// Photos big enough that each takes a while in a (debug-built) worker, so
/// that the kills below land mid-task.
fn photos(n: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("photo-{i}.png"), png(1200, 900, 100 + i)))
        .collect()
}

/// A deployment whose dead workers are noticed within ~3 s.
fn deployment(backend: Backend) -> Deployment {
    Deployment::new(backend)
        .env("IMGPIPE_WORKERS", "2")
        .env("IMGPIPE_HEARTBEAT_SECS", "1")
}

/// Waits until at least one image is being processed; returns the status.
async fn wait_processing(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app.status(id).await;
        if status["progress"]["processing"].as_u64() > Some(0) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no image started within 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts the job completed with every image, each once in the ZIP and
/// identical to the pipeline's own output for its input.
async fn assert_complete_and_correct(app: &TestApp, id: &str, inputs: &[File], filter: &str) {
    let status = app.wait_done(id, WITHIN).await;
    assert_eq!(status["status"], "completed", "{status}");
    let entries = app.download(id, "").await;
    let names: HashSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), entries.len(), "an entry appears twice");
    assert_eq!(
        entries.len(),
        inputs.len() + 1,
        "every image and the manifest"
    );
    let filter = Filter::from_name(filter).expect("known filter");
    for (name, bytes) in inputs {
        let (_, output) = entries
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing from the ZIP"));
        let decoded = codec::decode(bytes, u64::MAX).expect("decode test input");
        let expected =
            codec::encode(&filter.apply(&decoded), OutputFormat::Png, 90).expect("encode");
        assert!(
            output == &expected,
            "{name}: output differs from the pipeline's"
        );
    }
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

    wait_processing(&api, &id).await;
    victim.kill();
    let _survivor = deployment.start("worker");
    assert_complete_and_correct(&api, &id, &inputs, "blur").await;
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
    assert_complete_and_correct(&api, &id, &inputs, "blur").await;
}

/// The single-process shape killed mid-job and started again: the job
/// completes after the restart.
async fn a_killed_serve_finishes_the_job_after_restart(backend: Backend) {
    let deployment = deployment(backend);
    let app = deployment.serve();
    let inputs = photos(5);
    let job = app.submit_ok("filter=sharpen", inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();

    wait_processing(&app, &id).await;
    drop(app); // SIGKILL
    let app = deployment.serve();
    assert_complete_and_correct(&app, &id, &inputs, "sharpen").await;
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

    let running = wait_processing(&api, &id).await;
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
    assert_complete_and_correct(&api, &id, &inputs, "smooth").await;
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

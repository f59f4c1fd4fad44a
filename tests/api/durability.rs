//! Nothing is lost when processes die: a worker killed with SIGKILL mid-task,
//! a `serve` killed and restarted, an API restarted, a SIGTERM drain. Each test
//! ends with every image processed exactly once in the ZIP and byte-identical
//! to what the pipeline produces for it.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{png, trickled, upload_stream, Backend, Deployment, Process, TestApp};
use crate::waiting::{images, in_state, slow_images, until_spooling, SLOW_FILTER, SLOW_OP};

/// A deployment whose dead workers are noticed within ~3 s.
fn deployment(backend: Backend) -> Deployment {
    Deployment::new(backend)
        .env("IMGPIPE_WORKERS", "2")
        .env("IMGPIPE_HEARTBEAT_SECS", "1")
}

/// Kills `victim` (SIGKILL) just as an image of the job starts, and returns
/// the images the kill interrupted: those still `processing`, as nothing can
/// change their state now that their worker is dead (`observer` is an API
/// process, not a worker). With slow images, the one that had just started
/// is among them in any build profile.
async fn kill_mid_task(observer: &TestApp, victim: &mut Process, id: &str) -> Vec<usize> {
    let (started, _) = observer.wait_started(id).await;
    victim.kill();
    let status = observer.status(id).await;
    let interrupted = in_state(&status, "processing");
    assert!(
        interrupted.contains(&started),
        "image {started} had just started when its worker was killed: {status}"
    );
    interrupted
}

/// Every image the kill interrupted was processed again.
fn assert_processed_again(status: &Value, interrupted: &[usize]) {
    for &i in interrupted {
        let attempts = images(status)[i]["attempts"].as_u64().expect("attempts");
        assert!(
            attempts >= 2,
            "image {i}, interrupted by the kill, has {attempts} attempt(s): {status}"
        );
    }
}

/// SIGKILL a worker mid-task; a worker started afterwards takes its tasks over
/// once the dead one misses its heartbeats. The API is killed and restarted
/// mid-job and again afterwards: status and download are served from the
/// backends, not from process memory.
async fn a_killed_worker_loses_no_image(backend: Backend) {
    let deployment = deployment(backend);
    let api = TestApp::new(deployment.start("api"));
    let mut victim = deployment.start("worker");
    let inputs = slow_images(4);
    let job = api.submit_ok(SLOW_FILTER, inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();

    let interrupted = kill_mid_task(&api, &mut victim, &id).await;
    let _survivor = deployment.start("worker");
    // The API too, mid-job: the new one knows the job.
    drop(api);
    let api = TestApp::new(deployment.start("api"));
    api.assert_complete_and_correct(&id, &inputs, SLOW_OP).await;
    let status = api.status(&id).await;
    assert_processed_again(&status, &interrupted);

    let before = api.status(&id).await;
    drop(api);
    let api = TestApp::new(deployment.start("api"));
    assert_eq!(
        without_link_signatures(api.status(&id).await),
        without_link_signatures(before),
        "status survives an API restart"
    );
    api.assert_complete_and_correct(&id, &inputs, SLOW_OP).await;
}

/// The single-process shape killed mid-job and started again: the job
/// completes after the restart, the interrupted image processed again.
async fn a_killed_serve_finishes_the_job_after_restart(backend: Backend) {
    let deployment = deployment(backend);
    // An API process beside `serve`, to read the status while `serve` is dead.
    let observer = TestApp::new(deployment.start("api"));
    let mut app = deployment.serve();
    let inputs = slow_images(3);
    let job = app.submit_ok(SLOW_FILTER, inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();

    let interrupted = kill_mid_task(&observer, &mut app.process, &id).await;
    drop(app);
    let app = deployment.serve();
    app.assert_complete_and_correct(&id, &inputs, SLOW_OP).await;
    assert_processed_again(&app.status(&id).await, &interrupted);
}

/// SIGTERM: the worker stops taking tasks, finishes the ones it has taken
/// (one rendering, one read ahead waiting for the thread), and exits 0;
/// nothing it had not taken is lost.
async fn sigterm_finishes_running_images_and_exits_cleanly(backend: Backend) {
    let deployment = deployment(backend)
        .env("IMGPIPE_WORKERS", "1")
        .env("IMGPIPE_PREFETCH", "1");
    let api = TestApp::new(deployment.start("api"));
    let mut worker = deployment.start("worker");
    // Slow images, SIGTERM just as one starts: it is certainly still running
    // when the signal lands, and the others are still queued (in a release
    // build too).
    let inputs = slow_images(3);
    let job = api.submit_ok(SLOW_FILTER, inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();

    let (_, running) = api.wait_started(&id).await;
    let exit = worker.terminate();
    assert!(exit.success(), "exit status {exit}: {}", worker.logs());

    let after = api.status(&id).await;
    for (before, now) in images(&running).iter().zip(images(&after)) {
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
    api.assert_complete_and_correct(&id, &inputs, SLOW_OP).await;
    let status = api.status(&id).await;
    assert!(
        images(&status).iter().all(|image| image["attempts"] == 1),
        "a drained shutdown needs no second attempt: {status}"
    );
}

/// A status with its links' signatures and expiries cut off: they are
/// minted per answer.
fn without_link_signatures(mut status: Value) -> Value {
    let cut = |v: &mut Value| {
        if let Some(link) = v.as_str() {
            *v = Value::from(link.split('?').next().unwrap_or(link));
        }
    };
    cut(&mut status["download_url"]);
    // Its signed link's expiry is counted from the request, so two requests
    // a second apart differ.
    cut(&mut status["events_url"]);
    if let Some(images) = status["images"].as_array_mut() {
        images.iter_mut().for_each(|i| cut(&mut i["result_url"]));
    }
    status
}

/// SIGTERM to the API while an upload is still arriving: it stops accepting
/// connections, but the open request is finished and answered (202, the job
/// is real), and the process then exits 0.
async fn sigterm_lets_the_api_finish_open_requests(backend: Backend) {
    let deployment = deployment(backend).spooling();
    let mut api = deployment.start("api");
    let base = api.base_url.clone().expect("listening");
    let image = png(64, 48, 7);
    // The body trickles in over ~2 s.
    let chunks = trickled(&image, 8, Duration::from_millis(250));
    let url = format!("{base}/process-job?filter=blur");
    let upload = upload_stream(url, Some(&deployment.admin_key), &[], "slow.png", chunks);
    // The server has begun spooling the upload: the request is open.
    until_spooling(&deployment).await;
    assert!(!upload.is_finished(), "the upload is still in flight");
    let exit = tokio::task::spawn_blocking(move || {
        let exit = api.terminate();
        (exit, api.logs())
    });

    let answer = upload
        .await
        .expect("task")
        .expect("the open request is answered");
    assert_eq!(answer.status(), 202, "accepted despite the shutdown");
    let job: Value = answer.json().await.expect("JSON");
    let (exit, logs) = exit.await.expect("task");
    assert!(exit.success(), "exit status {exit}: {logs}");
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer accepting connections"
    );

    // The job it accepted is whole: a new API and a worker finish it.
    let api = TestApp::new(deployment.start("api"));
    let _worker = deployment.start("worker");
    let id = job["job_id"].as_str().expect("job id");
    let status = api.wait_done(id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed", "{status}");
}

crate::both_backends!(
    sigterm_lets_the_api_finish_open_requests,
    a_killed_worker_loses_no_image,
    a_killed_serve_finishes_the_job_after_restart,
    sigterm_finishes_running_images_and_exits_cleanly,
);

//! Dependencies going away mid-job and coming back (the distributed
//! deployment's Redis and S3; the embedded one has no server to lose):
//! requests get a clear 503 while a dependency is down, readiness says which
//! one, in-flight images are retried, and every job still ends with every
//! image processed, once, and correct.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{photos, png, Backend, Deployment, OwnService, TestApp};

/// How long each dependency stays down: several worker backoff rounds.
const OUTAGE: Duration = Duration::from_secs(10);

/// `POST /process-job` during the outage: refused with 503, not hung, not lost.
async fn assert_submission_refused(app: &TestApp) {
    let during = app
        .submit("filter=blur", vec![("x.png".into(), png(8, 8, 1))])
        .await;
    assert_eq!(during.status(), 503, "refused while a dependency is down");
    assert_eq!(during.headers()["retry-after"], "5");
    let body: Value = during.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
}

/// `/readyz` names exactly the checks that are down.
async fn assert_not_ready(app: &TestApp, down: &[&str]) {
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 503);
    let ready: Value = resp.json().await.expect("JSON");
    assert_eq!(ready["status"], "unavailable");
    for check in ready["checks"].as_array().expect("checks") {
        let name = check["name"].as_str().expect("name");
        let expected_ok = !down.contains(&name);
        assert_eq!(check["ok"], expected_ok, "{name}: {ready}");
        assert_eq!(check["error"].is_string(), !expected_ok, "{name}: {ready}");
    }
}

#[tokio::test]
async fn an_s3_outage_mid_job_is_survived() {
    let mut s3 = OwnService::s3();
    let app = Deployment::new(Backend::Distributed)
        .env("S3_ENDPOINT", &s3.url())
        .serve();
    let inputs = photos(6);
    let job = app.submit_ok("filter=blur", inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id");
    app.wait_processing(id).await;

    s3.stop();
    assert_submission_refused(&app).await;
    assert_not_ready(&app, &["object_store"]).await;
    tokio::time::sleep(OUTAGE).await;
    s3.resume();

    app.assert_complete_and_correct(id, &inputs, "blur").await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn a_redis_outage_mid_job_is_survived() {
    let mut redis = OwnService::redis();
    let app = Deployment::new(Backend::Distributed)
        .env("REDIS_URL", &redis.url())
        .serve();
    let inputs = photos(4);
    let job = app.submit_ok("filter=edges", inputs.clone()).await;
    let id = job["job_id"].as_str().expect("job id").to_string();
    app.wait_processing(&id).await;

    redis.stop();
    let status = app.get(&format!("/status-job/{id}")).await;
    assert_eq!(status.status(), 503);
    assert_submission_refused(&app).await;
    assert_not_ready(&app, &["metadata", "queue"]).await;
    tokio::time::sleep(OUTAGE).await;
    redis.resume();

    // The job in flight completes: its interrupted images are retried (the
    // worker apalis ended on the Redis error is replaced by a new one, and
    // the old one's tasks are re-queued once it misses its heartbeats).
    app.assert_complete_and_correct(&id, &inputs, "edges").await;

    // New work is accepted and done again.
    let more = photos(2);
    let second = app.submit_ok("filter=sharpen", more.clone()).await;
    app.assert_complete_and_correct(second["job_id"].as_str().expect("job id"), &more, "sharpen")
        .await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}

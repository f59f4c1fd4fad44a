//! Dependencies going away and coming back: requests get a clear 503 while a
//! dependency is down, readiness says which one, in-flight images are retried,
//! and every job still ends with every image processed.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{png, Backend, Deployment, File, OwnService};

const WITHIN: Duration = Duration::from_secs(90);

fn photos(n: u32) -> Vec<File> {
    // Large enough that the job is normally still running when storage
    // disappears (not asserted: a fast machine may finish first).
    (0..n)
        .map(|i| (format!("p{i}.png"), png(1200, 900, i)))
        .collect()
}

#[tokio::test]
async fn s3_outage_answers_503_and_the_job_still_completes() {
    let mut s3 = OwnService::s3();
    let app = Deployment::new(Backend::Distributed)
        .env("S3_ENDPOINT", &s3.url())
        .serve();
    let job = app.submit_ok("filter=blur", photos(6)).await;
    let id = job["job_id"].as_str().unwrap();

    s3.stop();
    let during = app
        .submit("filter=blur", vec![("x.png".into(), png(8, 8, 1))])
        .await;
    assert_eq!(
        during.status(),
        503,
        "a submission during the outage is refused, not lost"
    );
    assert_eq!(during.headers()["retry-after"], "5");
    let body: Value = during.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "unavailable");
    let store = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "object_store")
        .unwrap();
    assert_eq!(store["ok"], false, "{ready}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.resume();
    let status = app.wait_done(id, WITHIN).await;
    assert_eq!(status["status"], "completed", "{status}");
    let entries = app.download(id, "").await;
    assert_eq!(
        entries.len(),
        7,
        "six images and the manifest, none lost, none twice"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_redis_restart_leaves_api_and_workers_working() {
    let mut redis = OwnService::redis();
    let app = Deployment::new(Backend::Distributed)
        .env("REDIS_URL", &redis.url())
        .serve();
    let first = app.submit_ok("filter=edges", photos(1)).await;
    let first = first["job_id"].as_str().unwrap().to_string();
    app.wait_done(&first, WITHIN).await;

    redis.stop();
    let during = app.get(&format!("/status-job/{first}")).await;
    assert_eq!(during.status(), 503);
    // Long enough for the worker's next polls to hit the dead connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.resume();

    // The worker lost its Redis connection; a job submitted now still has to
    // be picked up (apalis ends a worker on a backend error; ours restarts it).
    let mut accepted = None;
    for _ in 0..50 {
        let resp = app.submit("filter=sharpen", photos(2)).await;
        if resp.status() == 202 {
            accepted = Some(resp.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(
            resp.status(),
            503,
            "while reconnecting, only 503 is acceptable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = accepted.expect("submissions accepted again within 10 s of Redis coming back");
    let status = app
        .wait_done(second["job_id"].as_str().unwrap(), WITHIN)
        .await;
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(
        app.status(&first).await["status"],
        "completed",
        "the earlier job survived the restart"
    );
}

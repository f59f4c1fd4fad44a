//! The operator's API (`/admin/api/…`): workers appearing and, once
//! SIGKILLed, gone; queues, throughput, jobs and failures grouped by
//! reason; cancel and retry; the admin scope.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{png, png_with_corrupt_pixels, Backend, Deployment, File, TestApp};
use crate::waiting::{slow_images, until, SLOW_FILTER};

const WITHIN: Duration = Duration::from_secs(60);

async fn overview(app: &TestApp) -> Value {
    let response = app.get("/admin/api/overview").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

fn images(n: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("{i}.png"), png(20, 12, i)))
        .collect()
}

/// A worker process shows up alive, and gone once SIGKILLed (its
/// heartbeats stop); the API process's own view needs no worker of its own.
async fn workers_come_and_go(backend: Backend) {
    let deployment = Deployment::new(backend);
    let app = TestApp::new(deployment.start("api"));
    let mut worker = deployment.start("worker");
    let alive = until("the worker process to be listed alive", WITHIN, || async {
        let o = overview(&app).await;
        let alive: Vec<Value> = o["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["alive"] == true)
            .cloned()
            .collect();
        // Both lanes and the webhook queue.
        let queues: std::collections::HashSet<&str> =
            alive.iter().filter_map(|w| w["queue"].as_str()).collect();
        if queues.len() == 3 {
            Ok(alive)
        } else {
            Err(format!("{o:#}"))
        }
    })
    .await;
    for w in &alive {
        assert!(w["started_at"].is_string() && w["host"].is_string(), "{w}");
    }
    worker.kill();
    until("the killed worker to be shown gone", WITHIN, || async {
        let o = overview(&app).await;
        let workers = o["workers"].as_array().cloned().unwrap_or_default();
        let gone = alive.iter().all(|a| {
            workers
                .iter()
                .any(|w| w["id"] == a["id"] && w["alive"] == false)
        });
        let lanes_without = o["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|q| q["workers_alive"] == 0);
        if gone && lanes_without {
            Ok(())
        } else {
            Err(format!("{o:#}"))
        }
    })
    .await;
}

/// A job with a broken image: listed with its counts and duration, its
/// failure grouped by reason, counted in the throughput; retrying the
/// failed image runs it again (and it fails again, for the same reason);
/// a succeeded image is not retryable.
async fn jobs_failures_and_retry(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let mut files = images(2);
    files.push(("broken.png".into(), png_with_corrupt_pixels(40, 30)));
    let job = app.submit_ok("filter=blur", files).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    app.wait_done(&id, WITHIN).await;
    let o = overview(&app).await;
    let listed = o["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("job not listed: {o:#}"));
    assert_eq!(
        (listed["succeeded"].as_u64(), listed["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(listed["tenant"], "local");
    assert!(listed["finished_at"].is_string(), "{listed}");
    let settled: u64 = o["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["succeeded"].as_u64().unwrap() + m["failed"].as_u64().unwrap())
        .sum();
    assert!(settled >= 3, "{o:#}");
    let group = o["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| {
            g["examples"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["job_id"] == id.as_str())
        })
        .cloned()
        .unwrap_or_else(|| panic!("failure not listed: {o:#}"));
    let reason = group["reason"].as_str().unwrap().to_string();
    assert!(!reason.is_empty());

    let retried = app
        .send(
            app.client
                .post(app.url(&format!("/admin/api/jobs/{id}/images/2/retry"))),
        )
        .await;
    assert_eq!(retried.status(), 202);
    until("the retried image to fail again", WITHIN, || async {
        let o = overview(&app).await;
        let again = o["failures"].as_array().unwrap().iter().any(|g| {
            g["reason"] == reason.as_str()
                && g["examples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["job_id"] == id.as_str())
                    .count()
                    == 2
        });
        let status = app.status(&id).await;
        if again && status["images"][2]["state"] == "failed" && status["all_ready"] == true {
            Ok(())
        } else {
            Err(format!("{o:#}\n{status:#}"))
        }
    })
    .await;
    let refused = app
        .send(
            app.client
                .post(app.url(&format!("/admin/api/jobs/{id}/images/0/retry"))),
        )
        .await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_retryable");
}

/// Cancelling a job of slow images: those not started fail as cancelled,
/// the running ones finish; the job ends.
async fn cancel_stops_what_has_not_started(backend: Backend) {
    let app = Deployment::new(backend).env("IMGPIPE_WORKERS", "1").serve();
    let job = app.submit_ok(SLOW_FILTER, slow_images(6)).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let response = app
        .send(
            app.client
                .post(app.url(&format!("/admin/api/jobs/{id}/cancel"))),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let cancelled = body["cancelled"].as_u64().unwrap();
    assert!(cancelled >= 3, "{body}");
    let status = app.wait_done(&id, WITHIN).await;
    let by_operator = status["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["error"] == "cancelled by an operator")
        .count() as u64;
    assert_eq!(by_operator, cancelled, "{status:#}");
}

/// Only admin keys see or act; the page itself is public.
async fn the_admin_scope(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let anonymous = app.as_caller(None);
    assert_eq!(anonymous.get("/admin/api/overview").await.status(), 401);
    let page = anonymous.get("/admin").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/ui/admin.js"));
    let missing = app
        .send(
            app.client
                .post(app.url(&format!("/admin/api/jobs/{}/cancel", uuid::Uuid::new_v4()))),
        )
        .await;
    assert_eq!(missing.status(), 404);
    let bad_index = app
        .send(app.client.post(app.url(&format!(
            "/admin/api/jobs/{}/images/-1/retry",
            uuid::Uuid::new_v4()
        ))))
        .await;
    assert_eq!(bad_index.status(), 404);
    let body: Value = bad_index.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "invalid_path");
}

crate::both_backends!(
    workers_come_and_go,
    jobs_failures_and_retry,
    cancel_stops_what_has_not_started,
    the_admin_scope,
);

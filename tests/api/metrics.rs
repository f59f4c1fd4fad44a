//! `GET /metrics`: the Prometheus exposition of the API and of a worker
//! (`IMGPIPE_METRICS_BIND`), read back and checked against what happened.

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::{png, png_with_corrupt_pixels, required_env, Backend, Deployment, TestApp};

const WITHIN: Duration = Duration::from_secs(60);

/// Every sample of an exposition, keyed `name{labels}` as written.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    promtool_accepts(&text);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("sample {l:?}"));
            (
                key.to_string(),
                value.parse().unwrap_or_else(|_| panic!("value in {l:?}")),
            )
        })
        .collect()
}

/// `promtool check metrics` (Prometheus' own linter) accepts the exposition.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(required_env("IMGPIPE_TEST_PROMTOOL"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have {:#?}", samples.keys()))
}

/// One process doing everything: the job, its images and the requests are
/// counted; routes are templates, never ids.
async fn metrics_count_jobs_images_and_requests(backend: Backend) {
    let app = Deployment::new(backend).serve();
    // Five images, one of them broken (it passes intake, fails decoding).
    let mut files: Vec<_> = (0..4)
        .map(|i| (format!("{i}.png"), png(40, 30, i)))
        .collect();
    files.push(("broken.png".to_string(), png_with_corrupt_pixels(40, 30)));
    let job = app.submit_ok("filter=blur", files).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    app.wait_done(&id, WITHIN).await;
    // A path no route has, and a route asked with a method it does not take.
    assert_eq!(app.get(&format!("/no-such-route/{id}")).await.status(), 404);
    assert_eq!(app.get("/process-job").await.status(), 405);

    let samples = scrape(&app).await;
    assert_eq!(value(&samples, "imgpipe_jobs_submitted_total"), 1.0);
    assert_eq!(
        value(&samples, r#"imgpipe_images_total{outcome="succeeded"}"#),
        4.0
    );
    assert_eq!(
        value(&samples, r#"imgpipe_images_total{outcome="failed"}"#),
        1.0
    );
    assert!(value(&samples, "imgpipe_upload_bytes_total") > 0.0);
    // One process took the uploads and ran their tasks: each was handed to
    // its worker in memory, none read back from storage.
    assert_eq!(
        value(&samples, r#"imgpipe_input_reads_total{from="memory"}"#),
        5.0
    );
    assert!(!samples.contains_key(r#"imgpipe_input_reads_total{from="storage"}"#));
    // Every image waited and was fetched; only the four good ones were
    // rendered and stored.
    for (stage, count) in [
        ("queue", 5.0),
        ("fetch", 5.0),
        ("render", 4.0),
        // PNG in, PNG out: decoded whole, so the three parts of render.
        ("decode", 4.0),
        ("ops", 4.0),
        ("encode", 4.0),
        ("store", 4.0),
    ] {
        let key = format!(r#"imgpipe_image_stage_seconds_count{{stage="{stage}"}}"#);
        assert_eq!(value(&samples, &key), count, "{stage}");
    }
    // The one accepted submission, stage by stage.
    for stage in ["examine", "store", "record", "enqueue"] {
        let key = format!(r#"imgpipe_submission_stage_seconds_count{{stage="{stage}"}}"#);
        assert_eq!(value(&samples, &key), 1.0, "{stage}");
    }
    assert_eq!(
        value(
            &samples,
            r#"imgpipe_http_requests_total{route="/process-job",status="2xx"}"#
        ),
        1.0
    );
    assert!(
        value(
            &samples,
            r#"imgpipe_http_requests_total{route="/status-job/{job_id}",status="2xx"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(
            &samples,
            r#"imgpipe_http_requests_total{route="unmatched",status="4xx"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            r#"imgpipe_http_requests_total{route="/process-job",status="4xx"}"#
        ),
        1.0
    );
    assert!(
        samples.keys().all(|k| !k.contains(&id)),
        "a job id became a label"
    );
    assert!(
        value(
            &samples,
            r#"imgpipe_http_request_duration_seconds_count{route="/process-job"}"#
        ) >= 1.0
    );
    for lane in ["priority", "bulk"] {
        assert_eq!(
            value(
                &samples,
                &format!(r#"imgpipe_queue_depth{{lane="{lane}"}}"#)
            ),
            0.0
        );
        assert!(
            value(
                &samples,
                &format!(r#"imgpipe_workers_alive{{lane="{lane}"}}"#)
            ) >= 1.0
        );
    }
    assert!(value(&samples, "imgpipe_process_resident_memory_bytes") > 1e6);
    assert_eq!(
        value(
            &samples,
            r#"imgpipe_jobs_finished_total{status="completed_with_errors"}"#
        ),
        1.0
    );
    assert!(value(&samples, r#"imgpipe_pixel_budget_pixels{state="capacity"}"#) > 0.0);
    assert_eq!(
        value(&samples, r#"imgpipe_pixel_budget_pixels{state="in_use"}"#),
        0.0,
        "every render has ended"
    );
    assert_eq!(value(&samples, "imgpipe_pixel_budget_waiting"), 0.0);
    assert_eq!(value(&samples, "imgpipe_render_threads_busy"), 0.0);
    let zip = app.download(&id, "").await;
    assert!(!zip.is_empty());
    let after = scrape(&app).await;
    assert!(value(&after, "imgpipe_zip_bytes_total") > 1000.0);
    let (queue, store) = match backend {
        Backend::Embedded => ("sqlite", "local"),
        Backend::Distributed => ("redis", "s3"),
    };
    let build = format!(
        r#"imgpipe_build_info{{version="{}",queue="{queue}",store="{store}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&samples, &build), 1.0);
}

/// `api` and `worker` apart: the API sees the queue fill while no worker
/// runs; the worker's own metrics server counts the images it settles.
async fn queue_gauges_and_a_workers_metrics(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_HEARTBEAT_SECS", "1");
    let api = TestApp::new(deployment.start("api"));
    let files = (0..4)
        .map(|i| (format!("{i}.png"), png(32, 24, i)))
        .collect();
    let job = api.submit_ok("filter=blur", files).await;
    let id = job["job_id"].as_str().unwrap().to_string();

    let samples = scrape(&api).await;
    let depth: f64 = ["priority", "bulk"]
        .iter()
        .map(|lane| {
            value(
                &samples,
                &format!(r#"imgpipe_queue_depth{{lane="{lane}"}}"#),
            )
        })
        .sum();
    assert_eq!(depth, 4.0, "all four images wait in the queue");
    let oldest = ["priority", "bulk"]
        .iter()
        .map(|lane| {
            value(
                &samples,
                &format!(r#"imgpipe_queue_oldest_age_seconds{{lane="{lane}"}}"#),
            )
        })
        .fold(0.0, f64::max);
    assert!(oldest > 0.0 && oldest < 60.0, "{oldest}");
    assert_eq!(
        value(&samples, r#"imgpipe_workers_alive{lane="bulk"}"#),
        0.0
    );

    let worker = TestApp::new(
        deployment
            .clone()
            .env("IMGPIPE_METRICS_BIND", "127.0.0.1:0")
            .start("worker"),
    );
    api.wait_done(&id, WITHIN).await;
    let from_worker = scrape(&worker).await;
    assert_eq!(
        value(&from_worker, r#"imgpipe_images_total{outcome="succeeded"}"#),
        4.0
    );
    assert!(!from_worker.contains_key("imgpipe_jobs_submitted_total"));
    let after = scrape(&api).await;
    assert!(value(&after, r#"imgpipe_workers_alive{lane="bulk"}"#) >= 1.0);
    assert_eq!(value(&after, r#"imgpipe_queue_depth{lane="bulk"}"#), 0.0);
}

crate::both_backends!(
    metrics_count_jobs_images_and_requests,
    queue_gauges_and_a_workers_metrics,
);

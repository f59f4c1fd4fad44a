//! Admission of uploads, in both deployments: a disk under its watermark
//! (507 before anything is written), the process-wide budget of bytes being
//! received (503 with Retry-After, not a queue of stalled connections), an
//! upload too slow or too long to arrive (408, cut), and a body of endless
//! fields (413). Nothing is stored or enqueued on any of them. (Cost
//! admission, `too_costly`, is with the other refusals in `rejections.rs`.)

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::helpers::{
    noise_png, paced, png, trickled, upload_stream, Backend, Deployment, TestApp,
};
use crate::waiting::{until, until_spooling};

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON error body"))
}

/// Nothing of a refused upload is left: no spooled file, object or record.
async fn assert_nothing_left(deployment: &Deployment) {
    until("the spool to be empty", Duration::from_secs(10), || async {
        match deployment.spooled_files() {
            0 => Ok(()),
            n => Err(format!("{n} spooled files")),
        }
    })
    .await;
    assert_eq!(deployment.stored_objects(), 0, "nothing stored");
    assert!(
        deployment.leftover_records().await.is_empty(),
        "nothing recorded or enqueued"
    );
}

/// A multipart upload of `file` whose bytes arrive `chunk` at a time, each after `pause`.
fn trickle(
    app: &TestApp,
    file: Vec<u8>,
    chunk: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let chunks = trickled(&file, file.len().div_ceil(chunk), pause);
    let url = app.url("/process-job?filter=blur");
    upload_stream(url, Some(&app.process.admin_key), &[], "slow.png", chunks)
}

async fn a_nearly_full_disk_refuses_uploads_before_writing(backend: Backend) {
    let deployment =
        Deployment::new(backend).env("IMGPIPE_MIN_FREE_DISK_BYTES", "18000000000000000000");
    let app = deployment.serve();
    let resp = app
        .submit("filter=blur", vec![("a.png".into(), png(32, 32, 1))])
        .await;
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage");
    assert_nothing_left(&deployment).await;
}

async fn the_upload_budget_turns_away_what_it_cannot_hold(backend: Backend) {
    let deployment = Deployment::new(backend)
        .spooling()
        .env("IMGPIPE_MAX_INFLIGHT_UPLOAD_BYTES", "300000");
    let app = deployment.serve();
    // One client holds most of the budget: 250 kB arrive, then it stalls.
    let big = noise_png(300, 300, 1);
    assert!(big.len() > 250_000);
    let (head, rest) = (big[..250_000].to_vec(), big[250_000..].to_vec());
    let chunks = paced(vec![(Duration::ZERO, head), (Duration::from_secs(4), rest)]);
    let url = app.url("/process-job?filter=blur");
    let held = upload_stream(url, Some(&deployment.admin_key), &[], "big.png", chunks);
    until_spooling(&deployment).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The next one does not wait behind it: refused at once.
    let started = Instant::now();
    let resp = app
        .submit(
            "filter=blur",
            vec![("b.png".into(), noise_png(200, 200, 2))],
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at once"
    );
    let retry_after = resp.headers().get("retry-after").cloned();
    let (status, body) = error_of(resp).await;
    assert_eq!(
        retry_after.as_ref().map(|v| v.as_bytes()),
        Some(&b"5"[..]),
        "{status} {body}"
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("server_busy")),
        "{body}"
    );
    // The first one, which fits the budget alone, is not hurt by it.
    let held = held.await.expect("task").expect("answer");
    assert_eq!(held.status(), 202);
    assert_eq!(
        deployment.spooled_files(),
        0,
        "the refused upload left no file"
    );
    // With the budget free again, uploads go through.
    let ok = app
        .submit_ok("filter=blur", vec![("c.png".into(), png(32, 32, 3))])
        .await;
    assert_eq!(ok["status"], "queued");
}

async fn an_upload_that_takes_too_long_is_cut(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_UPLOAD_TIMEOUT_SECS", "2");
    let app = deployment.serve();
    let started = Instant::now();
    // 1 kB every 200 ms: about 12 s for the whole file.
    let upload = trickle(
        &app,
        noise_png(80, 80, 1)[..12_000].to_vec(),
        1000,
        Duration::from_millis(200),
    );
    let answer = upload.await.expect("task");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(6),
        "cut at the deadline, took {elapsed:?}"
    );
    match answer {
        Ok(resp) => {
            // (`Connection: close` is hop-by-hop: the client consumes it.)
            let (status, body) = error_of(resp).await;
            assert_eq!(status, 408, "{body}");
            assert_eq!(body["error"]["code"], "upload_too_slow");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("IMGPIPE_UPLOAD_TIMEOUT_SECS"), "{message}");
        }
        // The server closed the connection as the client was still writing;
        // some clients then see the reset, not the answer.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    assert_nothing_left(&deployment).await;
}

async fn endless_fields_are_refused(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_MAX_FILES", "2");
    let app = deployment.serve();
    let mut form = reqwest::multipart::Form::new();
    for _ in 0..40 {
        form = form.text("filter", "blur");
    }
    let resp = app
        .send(app.client.post(app.url("/process-job")).multipart(form))
        .await;
    let (status, body) = error_of(resp).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_many_fields")),
        "{body}"
    );
    assert_nothing_left(&deployment).await;
}

crate::both_backends!(
    a_nearly_full_disk_refuses_uploads_before_writing,
    the_upload_budget_turns_away_what_it_cannot_hold,
    an_upload_that_takes_too_long_is_cut,
    endless_fields_are_refused,
    a_stalled_download_is_cut_and_frees_its_place,
    an_image_over_its_deadline_fails_and_frees_its_slot,
    deleting_a_running_job_stops_its_image,
);

/// The rate is judged after a 10 s grace: a client sending 5 kB/s is cut
/// when the minimum is 50 kB/s (one deployment: the rule is the same code).
#[tokio::test]
async fn an_upload_under_the_minimum_rate_is_cut_after_the_grace() {
    let deployment =
        Deployment::new(Backend::Embedded).env("IMGPIPE_MIN_UPLOAD_BYTES_PER_SEC", "50000");
    let app = deployment.serve();
    let started = Instant::now();
    let upload = trickle(
        &app,
        noise_png(200, 200, 1),
        1000,
        Duration::from_millis(200),
    );
    let answer = upload.await.expect("task");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(14),
        "cut after the grace, took {elapsed:?}"
    );
    if let Ok(resp) = answer {
        let (status, body) = error_of(resp).await;
        assert_eq!(status, 408, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("IMGPIPE_MIN_UPLOAD_BYTES_PER_SEC"),
            "{message}"
        );
    }
    assert_nothing_left(&deployment).await;
}

/// Downloads: the cap on ZIPs streamed at once answers 503 at once, and a
/// reader that stops reading is cut at the download deadline, which frees
/// its place (and the thread behind it).
async fn a_stalled_download_is_cut_and_frees_its_place(backend: Backend) {
    let deployment = Deployment::new(backend)
        .env("IMGPIPE_MAX_CONCURRENT_DOWNLOADS", "1")
        .env("IMGPIPE_DOWNLOAD_TIMEOUT_SECS", "3");
    let app = deployment.serve();
    // Larger than what the socket buffers and the writer's channel hold, so
    // a reader that stops reading really stalls the writer.
    let files: Vec<crate::helpers::File> = (0..6)
        .map(|i| (format!("n{i}.png"), noise_png(1000, 800, i)))
        .collect();
    let job = app.submit_ok("filter=flip", files).await;
    let id = job["job_id"].as_str().expect("id").to_string();
    app.wait_done(&id, Duration::from_secs(120)).await;

    let stalled = app
        .client
        .get(app.url(&format!("/download/{id}")))
        .send()
        .await
        .expect("answer");
    assert_eq!(stalled.status(), 200);
    let mut body = stalled.bytes_stream();
    body.next().await.expect("a first chunk").expect("bytes");
    let started = Instant::now();

    let busy = app.get(&format!("/download/{id}")).await;
    let retry_after = busy.headers().get("retry-after").cloned();
    let (status, error) = error_of(busy).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (503, Some("server_busy")),
        "{error}"
    );
    assert!(retry_after.is_some());

    // The stalled reader is cut at the deadline; its place is free again.
    let zip = until(
        "the stalled download to be cut",
        Duration::from_secs(20),
        || async {
            let resp = app.get(&format!("/download/{id}")).await;
            match resp.status().as_u16() {
                200 => Ok(resp.bytes().await.map_err(|e| e.to_string())?),
                other => Err(format!("{other}")),
            }
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before its deadline"
    );
    assert_eq!(
        crate::helpers::unzip(&zip).len(),
        7,
        "6 images and the manifest"
    );
    // What the stalled client still gets is a broken transfer, never a short ZIP.
    let mut rest = Ok(());
    while let Some(chunk) = body.next().await {
        if let Err(e) = chunk {
            rest = Err(e);
            break;
        }
    }
    assert!(rest.is_err(), "the cut download ends with an error");
}

/// Minutes of work in any build (three 25×25 mode filters over 4 MP of
/// noise), yet within the cost limit: only the task deadline stops it.
fn heavy() -> (&'static str, Vec<crate::helpers::File>) {
    (
        "ops=mode:25,mode:25,mode:25",
        vec![("heavy.png".into(), noise_png(2000, 2000, 9))],
    )
}

/// A small job that takes well under a second: how long it waits shows
/// whether the one worker slot is free.
async fn small_job_time(app: &TestApp) -> Duration {
    let started = Instant::now();
    let job = app
        .submit_ok("filter=blur", vec![("small.png".into(), png(32, 32, 4))])
        .await;
    let id = job["job_id"].as_str().expect("id").to_string();
    let status = app.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "completed", "{status}");
    started.elapsed()
}

async fn an_image_over_its_deadline_fails_and_frees_its_slot(backend: Backend) {
    let deployment = Deployment::new(backend)
        .env("IMGPIPE_TASK_TIMEOUT_SECS", "1")
        .env("IMGPIPE_WORKERS", "1");
    let app = deployment.serve();
    let (query, files) = heavy();
    let job = app.submit_ok(query, files).await;
    let id = job["job_id"].as_str().expect("id").to_string();
    app.wait_started(&id).await;
    let started = Instant::now();
    let status = app.wait_done(&id, Duration::from_secs(60)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at its deadline, not when done: {:?}",
        started.elapsed()
    );
    assert_eq!(status["status"], "failed", "{status}");
    let image = &status["images"][0];
    assert_eq!(image["error"], "timed out after 1 s", "{image}");
    assert_eq!(image["attempts"], 1, "not retried as transient: {image}");
    assert!(small_job_time(&app).await < Duration::from_secs(10));
}

async fn deleting_a_running_job_stops_its_image(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_WORKERS", "1");
    let app = deployment.serve();
    let (query, files) = heavy();
    let job = app.submit_ok(query, files).await;
    let id = job["job_id"].as_str().expect("id").to_string();
    app.wait_started(&id).await;
    let deleted = app
        .send(app.client.delete(app.url(&format!("/jobs/{id}"))))
        .await;
    assert_eq!(deleted.status(), 204);
    // The one slot is free within about a second (the check runs every
    // second), not after minutes of a render nobody wants.
    let waited = small_job_time(&app).await;
    assert!(
        waited < Duration::from_secs(8),
        "the slot stayed busy for {waited:?}"
    );
}

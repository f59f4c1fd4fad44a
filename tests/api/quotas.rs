//! Per-tenant quotas, in both deployments: submissions per minute and
//! images queued or running at once, each 429 `quota_exceeded` with
//! `Retry-After` and the quota's name, limit and use, nothing stored on
//! refusal; a key's own settings replace the server's defaults.

use std::time::{Duration, Instant};

use futures::StreamExt;

use serde_json::Value;

use crate::helpers::{noise_png, png, upload_stream, Backend, Deployment, File, TestApp};
use crate::tenants::create_key_with;
use crate::waiting::{until, until_spooling};

crate::both_backends!(
    a_tenant_over_its_submission_quota_gets_429,
    a_tenant_over_its_active_images_gets_429_until_some_finish,
    a_tenant_over_its_stored_bytes_gets_429_until_a_job_goes,
    one_tenants_downloads_cannot_take_every_slot,
    one_tenants_submissions_in_progress_are_capped,
);

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON error body"))
}

/// Not across a minute boundary: the rate windows are whole minutes.
async fn wait_for_a_fresh_minute() {
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        % 60;
    if second > 55 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
}

fn files(n: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("{i}.png"), png(16, 16, i)))
        .collect()
}

/// Images count from submission until they settle; a refused job stores
/// nothing; another key of the same tenant (the server's default) is not
/// held to this key's setting; a deleted job's images no longer count.
async fn a_tenant_over_its_active_images_gets_429_until_some_finish(backend: Backend) {
    let deployment = Deployment::new(backend);
    // The API alone: no worker, so what is submitted stays queued.
    let app = TestApp::new(deployment.start("api"));
    let (_, key) = create_key_with(
        &deployment,
        "busy",
        "submit,read",
        &["--active-images", "3"],
    );
    let busy = app.as_caller(Some(&key));
    let first = busy.submit_ok("filter=blur", files(2)).await;
    let stored = deployment.stored_objects();

    let (status, body) = error_of(busy.submit("filter=blur", files(2)).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(
        body["error"]["quota"],
        serde_json::json!({ "name": "active_images", "limit": 3, "used": 2 })
    );
    assert_eq!(
        deployment.stored_objects(),
        stored,
        "nothing stored on refusal"
    );

    busy.submit_ok("filter=blur", files(1)).await;
    // At the limit: refused before the body is read, with Retry-After.
    let over = busy.submit("filter=blur", files(1)).await;
    assert!(over.headers().contains_key("retry-after"));
    let (status, body) = error_of(over).await;
    assert_eq!(
        (status, body["error"]["quota"]["used"].as_u64()),
        (429, Some(3)),
        "{body}"
    );

    // The same tenant with a key of default settings: 10 000.
    let (_, plain) = create_key_with(&deployment, "busy", "submit", &[]);
    app.as_caller(Some(&plain))
        .submit_ok("filter=blur", files(1))
        .await;

    // `keys list` shows each key's own settings.
    let out = deployment
        .command("keys")
        .arg("list")
        .output()
        .expect("keys list");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("active_images=3"), "{listing}");

    // Deleting a job frees its images' share.
    let id = first["job_id"].as_str().expect("id");
    let deleted = busy
        .send(busy.client.delete(busy.url(&format!("/jobs/{id}"))))
        .await;
    assert_eq!(deleted.status(), 204);
    busy.submit_ok("filter=blur", files(1)).await;
}

/// Submissions per tenant per minute: over the quota, 429 with Retry-After
/// and the quota named; another tenant is not affected.
async fn a_tenant_over_its_submission_quota_gets_429(backend: Backend) {
    wait_for_a_fresh_minute().await;
    let deployment = Deployment::new(backend).env("IMGPIPE_QUOTA_JOBS_PER_MINUTE", "2");
    let app = deployment.serve();
    let file = || vec![("a.png".to_string(), png(16, 16, 1))];
    app.submit_ok("filter=blur", file()).await;
    app.submit_ok("filter=blur", file()).await;
    let over = app.submit("filter=blur", file()).await;
    let retry_after: u64 = over.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (status, body) = error_of(over).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{body}"
    );
    assert_eq!(
        body["error"]["quota"],
        serde_json::json!({ "name": "jobs_per_minute", "limit": 2, "used": 2 })
    );
    // Another tenant has its own quota.
    let (_, key) = create_key_with(&deployment, "other", "submit,read", &[]);
    let other = app.as_caller(Some(&key));
    other.submit_ok("filter=blur", file()).await;
    // A key's own setting replaces the server's.
    let (_, strict) = create_key_with(&deployment, "strict", "submit", &["--jobs-per-minute", "1"]);
    let strict = app.as_caller(Some(&strict));
    strict.submit_ok("filter=blur", file()).await;
    let (status, body) = error_of(strict.submit("filter=blur", file()).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body["error"]["quota"],
        serde_json::json!({ "name": "jobs_per_minute", "limit": 1, "used": 1 })
    );
}

/// A tenant streaming its limit of ZIPs gets 429 for one more, while
/// another tenant still downloads; the slot is free again once a stream ends.
async fn one_tenants_downloads_cannot_take_every_slot(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_MAX_DOWNLOADS_PER_TENANT", "1");
    let app = deployment.serve();
    let (_, key) = create_key_with(&deployment, "reader", "submit,read", &[]);
    let reader = app.as_caller(Some(&key));
    let (_, other) = create_key_with(&deployment, "other", "submit,read", &[]);
    let other = app.as_caller(Some(&other));
    // Larger than the socket buffers and the writer's channel hold, so a
    // reader that stops reading really holds its slot.
    let noise: Vec<File> = (0..6)
        .map(|i| (format!("n{i}.png"), noise_png(1000, 800, i)))
        .collect();
    let big = reader.submit_ok("filter=flip", noise).await;
    let big = big["job_id"].as_str().expect("id").to_string();
    let small = other.submit_ok("filter=flip", files(1)).await;
    let small = small["job_id"].as_str().expect("id").to_string();
    reader.wait_done(&big, Duration::from_secs(120)).await;
    other.wait_done(&small, Duration::from_secs(60)).await;

    let held = reader
        .client
        .get(reader.url(&format!("/download/{big}")))
        .send()
        .await
        .expect("answer");
    assert_eq!(held.status(), 200);
    let mut body = held.bytes_stream();
    body.next().await.expect("a first chunk").expect("bytes");

    let refused = reader.get(&format!("/download/{big}")).await;
    assert!(refused.headers().contains_key("retry-after"));
    let (status, error) = error_of(refused).await;
    assert_eq!(status, 429, "{error}");
    assert_eq!(
        error["error"]["quota"],
        serde_json::json!({ "name": "concurrent_downloads", "limit": 1, "used": 1 })
    );
    let theirs = other.get(&format!("/download/{small}")).await;
    assert_eq!(theirs.status(), 200, "another tenant is not held up");

    drop(body);
    until(
        "the slot to be free again",
        Duration::from_secs(20),
        || async {
            match reader
                .get(&format!("/download/{big}"))
                .await
                .status()
                .as_u16()
            {
                200 => Ok(()),
                other => Err(format!("{other}")),
            }
        },
    )
    .await;
}

/// Uploads count against the bytes a tenant may store; a deleted job's
/// bytes no longer do.
async fn a_tenant_over_its_stored_bytes_gets_429_until_a_job_goes(backend: Backend) {
    let deployment = Deployment::new(backend);
    // The API alone: no results are written, only uploads are stored.
    let app = TestApp::new(deployment.start("api"));
    let two = files(2);
    let size: u64 = two.iter().map(|(_, bytes)| bytes.len() as u64).sum();
    let limit = (size + 10).to_string();
    let (_, key) = create_key_with(
        &deployment,
        "full",
        "submit,read",
        &["--stored-bytes", &limit],
    );
    let full = app.as_caller(Some(&key));
    let first = full.submit_ok("filter=blur", two).await;
    let stored = deployment.stored_objects();

    let (status, body) = error_of(full.submit("filter=blur", files(1)).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body["error"]["quota"],
        serde_json::json!({ "name": "stored_bytes", "limit": size + 10, "used": size })
    );
    assert_eq!(
        deployment.stored_objects(),
        stored,
        "nothing stored on refusal"
    );

    let id = first["job_id"].as_str().expect("id");
    let deleted = full
        .send(full.client.delete(full.url(&format!("/jobs/{id}"))))
        .await;
    assert_eq!(deleted.status(), 204);
    full.submit_ok("filter=blur", files(1)).await;
}

/// While one submission of a tenant is still arriving, its next is refused
/// at once (the cap is 1 here), another tenant's is not, and the slot is
/// free again once the first is answered.
async fn one_tenants_submissions_in_progress_are_capped(backend: Backend) {
    let deployment = Deployment::new(backend)
        .spooling()
        .env("IMGPIPE_MAX_SUBMISSIONS_PER_TENANT", "1");
    let app = deployment.serve();
    let (_, a) = create_key_with(&deployment, "eager", "submit,read", &[]);
    let (_, b) = create_key_with(&deployment, "other", "submit,read", &[]);
    // Most of an upload arrives, then it waits for `go`.
    let image = noise_png(300, 300, 1);
    let (head, tail) = (image[..250_000].to_vec(), image[250_000..].to_vec());
    let (go, release) = tokio::sync::oneshot::channel::<()>();
    let chunks = futures::stream::iter([(head, None), (tail, Some(release))]).then(
        |(chunk, wait)| async move {
            if let Some(wait) = wait {
                let _ = wait.await;
            }
            chunk
        },
    );
    let url = app.url("/process-job?filter=blur");
    let first = upload_stream(url, Some(&a), &[], "slow.png", chunks);
    until_spooling(&deployment).await;

    let (eager, other) = (app.as_caller(Some(&a)), app.as_caller(Some(&b)));
    let started = Instant::now();
    let resp = eager.submit("filter=blur", files(1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at once"
    );
    let retry_after = resp.headers().get("retry-after").cloned();
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert_eq!(
        body["error"]["quota"],
        serde_json::json!({ "name": "concurrent_submissions", "limit": 1, "used": 1 })
    );
    other.submit_ok("filter=blur", files(1)).await;

    let _ = go.send(());
    let first = first.await.expect("task").expect("answer");
    assert_eq!(first.status(), 202);
    eager.submit_ok("filter=blur", files(1)).await;
}

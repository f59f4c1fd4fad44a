//! `GET /jobs/{id}/events`: the Server-Sent Events stream of a job, read by
//! a plain SSE parser over reqwest, in both deployments and with `api` and
//! `worker` as separate processes.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::helpers::{png, png_with_corrupt_pixels, Backend, Deployment, File, TestApp};
use crate::waiting::{slow_images, SLOW_FILTER};

const WITHIN: Duration = Duration::from_secs(60);

/// One SSE message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event: String,
    pub id: u64,
    pub data: Value,
}

/// A connected event stream, parsed message by message (comments skipped).
pub struct Watcher {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    /// Keep-alive comments arrive every 15 s: the limit is on the whole stream.
    deadline: tokio::time::Instant,
}

impl Watcher {
    pub async fn connect(app: &TestApp, job: &str, last_event_id: Option<u64>) -> Watcher {
        Watcher::open(app, &format!("/jobs/{job}/events"), last_event_id).await
    }

    /// `target`: a path, with its query (a signed link's) if any.
    pub async fn open(app: &TestApp, target: &str, last_event_id: Option<u64>) -> Watcher {
        let path = target.split('?').next().unwrap_or(target).to_string();
        let mut request = app.client.get(app.url(target));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("events request");
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(response.status(), 200);
        if let Err(breach) =
            crate::contract::contract().check("GET", &path, 200, content_type.as_deref(), b"")
        {
            panic!("response does not match openapi.yaml: {breach}");
        }
        Watcher {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            deadline: tokio::time::Instant::now() + WITHIN,
        }
    }

    /// The next message; `None` when the server ends the stream.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                    }
                }
                match (id, data) {
                    (Some(id), Some(data)) => return Some(Message { event, id, data }),
                    _ => continue, // a keep-alive comment
                }
            }
            let chunk = tokio::time::timeout_at(self.deadline, self.body.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "stream not over within {WITHIN:?}; so far: {:?}",
                        self.buffer
                    )
                })?
                // A broken connection (its server killed) ends the stream too.
                .ok()?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// Every message up to the end of the stream.
    pub async fn rest(&mut self) -> Vec<Message> {
        let mut all = Vec::new();
        while let Some(m) = self.next().await {
            all.push(m);
        }
        all
    }
}

const FINAL: [&str; 4] = [
    "job.completed",
    "job.completed_with_errors",
    "job.failed",
    "job.deleted",
];

/// Checks a job's whole event history: numbered 1, 2, 3 …; `job.queued`
/// first; each image started then settled, each change followed by the
/// job's progress; one final event, last.
fn assert_history(events: &[Message], images: usize) {
    let ids: Vec<u64> = events.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "{events:#?}"
    );
    assert_eq!(events[0].event, "job.queued");
    assert_eq!(events[0].data["progress"]["total"], images);
    let mut states: HashMap<u64, Vec<&str>> = HashMap::new();
    for pair in events[1..events.len() - 1].chunks(2) {
        let (image, progress) = (&pair[0], &pair[1]);
        assert!(image.event.starts_with("image."), "{image:?}");
        assert_eq!(image.data["seq"], image.id);
        assert_eq!(progress.event, "job.progress", "{progress:?}");
        let index = image.data["index"].as_u64().expect("index");
        states.entry(index).or_default().push(&image.event);
    }
    assert_eq!(states.len(), images, "{states:?}");
    for (index, seen) in &states {
        assert_eq!(
            seen.first(),
            Some(&"image.started"),
            "image {index}: {seen:?}"
        );
        assert!(
            matches!(seen.last(), Some(&"image.succeeded" | &"image.failed")),
            "image {index}: {seen:?}"
        );
    }
    let last = events.last().expect("events");
    assert!(FINAL.contains(&last.event.as_str()), "{last:?}");
    let progress = &events[events.len() - 2].data["progress"];
    assert_eq!(progress["percent"], 100.0);
}

fn images(n: u32, size: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("img-{i}.png"), png(size, size * 3 / 4, i)))
        .collect()
}

/// `api` and `worker` apart: a watcher connected while the job waits for a
/// worker gets the snapshot, then every event the worker's writes make, in
/// order, then the final event carrying the status.
async fn a_watcher_sees_every_event_in_order_to_the_final_one(backend: Backend) {
    let deployment = Deployment::new(backend);
    let api = TestApp::new(deployment.start("api"));
    let job = api.submit_ok("filter=blur", images(4, 64)).await;
    let id = job["job_id"].as_str().unwrap().to_string();

    let mut watcher = Watcher::connect(&api, &id, None).await;
    let snapshot = watcher.next().await.expect("snapshot");
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["status"], "queued");
    assert_eq!(snapshot.id, 1, "only job.queued so far");

    let _worker = deployment.start("worker");
    let mut events = vec![Message {
        event: "job.queued".into(),
        id: 1,
        data: serde_json::json!({"progress": {"total": 4}}),
    }];
    events.extend(watcher.rest().await);
    assert_history(&events, 4);
    let last = events.last().unwrap();
    assert_eq!(last.event, "job.completed");
    // The final event's data is the status, as GET /status-job answers it.
    let status = api.status(&id).await;
    assert_eq!(last.data["job_id"], status["job_id"]);
    assert_eq!(last.data["status"], "completed");
    assert_eq!(last.data["progress"], status["progress"]);
    assert_eq!(last.data["images"].as_array().map(Vec::len), Some(4));
}

/// A watcher that leaves mid-job and comes back with `Last-Event-ID` gets
/// exactly the events it missed: with what it had, the whole history, once.
async fn resuming_with_last_event_id_gets_exactly_the_missed_events(backend: Backend) {
    let app = Deployment::new(backend).env("IMGPIPE_WORKERS", "1").serve();
    let job = app.submit_ok("ops=gaussian_blur:3", images(6, 400)).await;
    let id = job["job_id"].as_str().unwrap().to_string();

    let mut first = Watcher::connect(&app, &id, Some(0)).await;
    let mut had = Vec::new();
    while had.len() < 5 {
        had.push(first.next().await.expect("an event"));
    }
    drop(first);
    let resumed = Watcher::connect(&app, &id, Some(had.last().unwrap().id))
        .await
        .rest()
        .await;
    assert_eq!(resumed.first().map(|m| m.id), Some(6), "{resumed:#?}");
    let mut joined = had.clone();
    joined.extend(resumed);
    assert_history(&joined, 6);

    // The whole history again from 0, after the end: the same events.
    let replay = Watcher::connect(&app, &id, Some(0)).await.rest().await;
    let ids = |m: &[Message]| {
        m.iter()
            .map(|m| (m.id, m.event.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&replay), ids(&joined));
    // Resuming at the end gets nothing more; a finished job's stream without
    // a resume point is its snapshot and its final event.
    let last = joined.last().unwrap().id;
    assert!(Watcher::connect(&app, &id, Some(last))
        .await
        .rest()
        .await
        .is_empty());
    let fresh = Watcher::connect(&app, &id, None).await.rest().await;
    let names: Vec<&str> = fresh.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(names, ["snapshot", "job.completed"]);
    assert_eq!(fresh[0].id, last);
}

/// Fifty watchers of one job: every one gets the same events and the final one.
async fn fifty_watchers_all_get_the_final_event(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let job = app.submit_ok("ops=gaussian_blur:2", images(8, 300)).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let watchers = (0..50).map(|_| async {
        let mut watcher = Watcher::connect(&app, &id, Some(0)).await;
        watcher.rest().await
    });
    let all = futures::future::join_all(watchers).await;
    let first = &all[0];
    assert_history(first, 8);
    for (i, events) in all.iter().enumerate() {
        assert_eq!(
            events.iter().map(|m| m.id).collect::<Vec<_>>(),
            first.iter().map(|m| m.id).collect::<Vec<_>>(),
            "watcher {i}"
        );
        assert_eq!(
            events.last().map(|m| m.event.as_str()),
            Some("job.completed")
        );
    }
}

/// A failed image's event says why; the job ends with errors. A job deleted
/// while watched ends its stream with `job.deleted`. Unknown jobs and bad
/// resume points are refused with JSON.
async fn failures_deletion_and_refusals(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let mut files = images(2, 32);
    files.push(("broken.png".into(), png_with_corrupt_pixels(40, 30)));
    let job = app.submit_ok("filter=blur", files).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let events = Watcher::connect(&app, &id, Some(0)).await.rest().await;
    assert_history(&events, 3);
    let failed: Vec<&Message> = events
        .iter()
        .filter(|m| m.event == "image.failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0].data["index"], 2);
    assert!(failed[0].data["error"].is_string(), "{failed:?}");
    assert_eq!(events.last().unwrap().event, "job.completed_with_errors");

    let bad = app
        .send(
            app.client
                .get(app.url(&format!("/jobs/{id}/events")))
                .header("Last-Event-ID", "yesterday"),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_header", "{body}");
    let missing = app
        .get("/jobs/6f1e7963-f35b-449b-a207-38e145aa4e98/events")
        .await;
    assert_eq!(missing.status(), 404);

    // Deleted while waiting behind a long image: `job.deleted` ends it.
    let slow = Deployment::new(backend).env("IMGPIPE_WORKERS", "1").serve();
    let big = slow.submit_ok("ops=median:9", images(3, 1200)).await;
    let id = big["job_id"].as_str().unwrap().to_string();
    let mut watcher = Watcher::connect(&slow, &id, None).await;
    assert_eq!(watcher.next().await.expect("snapshot").event, "snapshot");
    let deleted = slow
        .send(slow.client.delete(slow.url(&format!("/jobs/{id}"))))
        .await;
    assert_eq!(deleted.status(), 204);
    let rest = watcher.rest().await;
    assert_eq!(
        rest.last().map(|m| m.event.as_str()),
        Some("job.deleted"),
        "{rest:#?}"
    );
}

/// A worker killed (SIGKILL) mid-image and the API serving the stream
/// killed and restarted: the watcher resumes from the new API with
/// `Last-Event-ID` and still gets every event once, in order, to the end;
/// the interrupted image starts twice.
async fn killed_processes_lose_no_event(backend: Backend) {
    let deployment = Deployment::new(backend)
        .env("IMGPIPE_WORKERS", "2")
        .env("IMGPIPE_HEARTBEAT_SECS", "1");
    let api = TestApp::new(deployment.start("api"));
    let mut victim = deployment.start("worker");
    let job = api.submit_ok(SLOW_FILTER, slow_images(4)).await;
    let id = job["job_id"].as_str().unwrap().to_string();

    let mut watcher = Watcher::connect(&api, &id, Some(0)).await;
    let mut seen = Vec::new();
    while let Some(message) = watcher.next().await {
        let started = message.event == "image.started";
        seen.push(message);
        if started {
            break;
        }
    }
    victim.kill();
    let _survivor = deployment.start("worker");
    // The API goes mid-stream; the watcher reconnects to its successor.
    while seen.len() < 4 {
        seen.push(watcher.next().await.expect("an event"));
    }
    drop(api);
    let rest = watcher.rest().await;
    seen.extend(rest);
    let api = TestApp::new(deployment.start("api"));
    let last = seen.last().map(|m| m.id);
    seen.extend(Watcher::connect(&api, &id, last).await.rest().await);

    assert_history(&seen, 4);
    assert_eq!(seen.last().unwrap().event, "job.completed", "{seen:#?}");
    let starts = seen.iter().filter(|m| m.event == "image.started").count();
    assert!(starts > 4, "the interrupted image starts again: {seen:#?}");
}

/// A browser's EventSource cannot send a key: the status's signed
/// `events_url` opens the stream without one, and nothing else does.
async fn a_signed_events_url_opens_the_stream_without_a_key(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let job = app.submit_ok("filter=blur", images(2, 32)).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let signed = job["events_url"].as_str().expect("events_url").to_string();
    assert!(
        signed.starts_with(&format!("/jobs/{id}/events?expires=")),
        "{signed}"
    );
    let anonymous = app.as_caller(None);
    let events = Watcher::open(&anonymous, &signed, Some(0))
        .await
        .rest()
        .await;
    assert_history(&events, 2);

    let refused = anonymous.get(&format!("/jobs/{id}/events")).await;
    assert_eq!(refused.status(), 401);
    let tampered = signed.replacen("sig=", "sig=0", 1);
    let refused = anonymous.get(&tampered).await;
    assert_eq!(refused.status(), 403);
    let status = app.status(&id).await;
    assert!(status["events_url"]
        .as_str()
        .is_some_and(|u| u.contains("&sig=")));
}

crate::both_backends!(
    a_signed_events_url_opens_the_stream_without_a_key,
    killed_processes_lose_no_event,
    a_watcher_sees_every_event_in_order_to_the_final_one,
    resuming_with_last_event_id_gets_exactly_the_missed_events,
    fifty_watchers_all_get_the_final_event,
    failures_deletion_and_refusals,
);

//! Webhooks from the outside: a receiver on loopback (a bare HTTP/1.1
//! server written here, verifying each signature with its own HMAC, not
//! imgpipe's), in both deployments and with `api` and `worker` as separate
//! processes killed mid-way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{png, png_with_corrupt_pixels, Backend, Deployment, File, TestApp};

const WITHIN: Duration = Duration::from_secs(60);

/// One delivery as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: i64,
    signature_ok: bool,
    body: Value,
    raw: Vec<u8>,
    answered: u16,
}

/// A webhook receiver on 127.0.0.1: answers each request with the next
/// status of `script` (the last one repeats) and keeps what it got.
#[derive(Clone)]
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Vec<u16>>>,
    secret: Arc<Vec<u8>>,
}

impl Receiver {
    /// A port nobody listens on yet.
    async fn reserve(secret: &str) -> Receiver {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let encoded = secret
            .trim()
            .strip_prefix("whsec_")
            .expect("a whsec_ secret");
        Receiver {
            port,
            got: Arc::default(),
            script: Arc::new(Mutex::new(vec![200])),
            secret: Arc::new(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .expect("base64"),
            ),
        }
    }

    async fn start(secret: &str, script: Vec<u16>) -> Receiver {
        let receiver = Receiver::reserve(secret).await;
        *receiver.script.lock().unwrap() = script;
        receiver.listen().await;
        receiver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    async fn listen(&self) -> tokio::task::JoinHandle<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the receiver");
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let this = this.clone();
                tokio::spawn(async move { this.serve(socket).await });
            }
        })
    }

    async fn serve(&self, mut socket: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        while buf.len() < head_end + length {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let raw = buf[head_end..head_end + length].to_vec();
        let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("key");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&raw);
        let expected = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        let signature_ok = header("webhook-signature")
            .split(' ')
            .any(|s| s == expected);
        let answered = {
            let mut got = self.got.lock().unwrap();
            let script = self.script.lock().unwrap();
            let code = script[got.len().min(script.len() - 1)];
            got.push(Received {
                id,
                timestamp: timestamp.parse().unwrap_or(0),
                signature_ok,
                body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                raw,
                answered: code,
            });
            code
        };
        let answer =
            format!("HTTP/1.1 {answered} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = socket.write_all(answer.as_bytes()).await;
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until a delivery of `job`'s final event was answered 2xx.
    async fn final_of(&self, job: &str) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let got: Vec<Received> = self
                .got()
                .into_iter()
                .filter(|r| r.body["data"]["job_id"] == job)
                .collect();
            if got
                .iter()
                .any(|r| is_final(r) && (200..300).contains(&r.answered))
            {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no final event of job {job} delivered within {WITHIN:?}; got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn is_final(r: &Received) -> bool {
    matches!(
        r.body["type"].as_str(),
        Some("job.completed" | "job.completed_with_errors" | "job.failed" | "job.deleted")
    )
}

/// A deployment whose webhooks may reach loopback, retrying fast.
fn deployment(backend: Backend) -> Deployment {
    Deployment::new(backend)
        .env("IMGPIPE_WEBHOOK_ALLOW", "127.0.0.1/32")
        .env("IMGPIPE_WEBHOOK_FIRST_RETRY_MS", "100")
        .env("IMGPIPE_WEBHOOK_MAX_RETRY_SECS", "1")
}

/// The secret of the bootstrap key's tenant, as `imgpipe keys` shows it.
fn secret_of(deployment: &Deployment) -> String {
    let out = deployment
        .command("keys")
        .args(["webhook-secret", "--tenant", "local"])
        .output()
        .expect("run imgpipe keys");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("a secret")
        .to_string()
}

fn images(n: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("{i}.png"), png(24, 16, i)))
        .collect()
}

async fn submit(app: &TestApp, receiver: &Receiver, events: &str, files: Vec<File>) -> String {
    let query = format!(
        "ops=invert&webhook_url={}&webhook_events={events}",
        receiver.url()
    );
    let job = app.submit_ok(&query, files).await;
    job["job_id"].as_str().expect("job id").to_string()
}

/// Every event of a job arrives signed, once per event id, with the final
/// one carrying the status; the status shows the deliveries.
async fn every_event_arrives_signed(backend: Backend) {
    let deployment = deployment(backend);
    let receiver = Receiver::start(&secret_of(&deployment), vec![204]).await;
    let app = deployment.serve();
    let mut files = images(2);
    files.push(("broken.png".into(), png_with_corrupt_pixels(40, 30)));
    let id = submit(&app, &receiver, "all", files).await;
    let got = receiver.final_of(&id).await;
    assert!(got.iter().all(|r| r.signature_ok), "{got:#?}");
    let now = chrono::Utc::now().timestamp();
    assert!(got.iter().all(|r| (now - r.timestamp).abs() < 60));
    let mut ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "one delivery per event: {got:#?}");
    // Every stored event, as the event stream has them, and nothing else.
    let status = app.wait_done(&id, WITHIN).await;
    let history = crate::events::Watcher::connect(&app, &id, Some(0))
        .await
        .rest()
        .await;
    let finals: Vec<&Received> = got.iter().filter(|r| is_final(r)).collect();
    assert_eq!(finals.len(), 1);
    let last = finals[0];
    assert_eq!(last.body["type"], "job.completed_with_errors");
    assert_eq!(last.body["data"]["status"], "completed_with_errors");
    assert_eq!(last.body["data"]["images"][2]["state"], "failed");
    // Deliveries are concurrent: the final one may come before others.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut got = got;
    while got.len() < history.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = receiver.final_of(&id).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.final_of(&id).await;
    assert_eq!(got.len(), history.len(), "{got:#?}\n{history:#?}");
    let mut ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "one delivery per event: {got:#?}");
    let mut seqs: Vec<u64> = got
        .iter()
        .map(|r| {
            // A final event's data is the status; its id ends with its seq.
            let tail = r.id.rsplit('_').next().unwrap_or_default();
            tail.parse().expect("webhook-id ends with the event's seq")
        })
        .collect();
    seqs.sort();
    let stored: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert_eq!(seqs, stored);
    for r in &got {
        assert!(r.body["timestamp"].is_string(), "{:?}", r.body);
        assert!(r.raw.starts_with(b"{"));
    }
    // The status counts them (the final one may still be recording).
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let status = app.status(&id).await;
        let hook = &status["webhook"];
        if hook["delivered"] == got.len() {
            assert_eq!(hook["url"], receiver.url());
            assert_eq!(hook["pending"], 0);
            assert_eq!(hook["deliveries"][0]["state"], "delivered");
            assert_eq!(hook["deliveries"][0]["last_status"], 204);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{hook:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "completed_with_errors");
}

/// 500, 500, then 200: the same event three times, same id and body.
async fn a_failing_receiver_gets_the_same_delivery_until_it_answers(backend: Backend) {
    let deployment = deployment(backend);
    let receiver = Receiver::start(&secret_of(&deployment), vec![500, 503, 200]).await;
    let app = deployment.serve();
    let id = submit(&app, &receiver, "final", images(1)).await;
    let got = receiver.final_of(&id).await;
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got
        .iter()
        .all(|r| r.id == got[0].id && r.raw == got[0].raw && r.signature_ok));
    assert_eq!(got[0].body["type"], "job.completed");
    let status = app.status(&id).await;
    let delivery = &status["webhook"]["deliveries"][0];
    assert_eq!(delivery["attempts"], 3, "{delivery:#}");
    assert_eq!(delivery["webhook_id"], got[0].id.as_str());
}

/// A receiver down for 20 s gets the event once it is back; a 410 stops
/// every later delivery of the job.
async fn a_receiver_that_was_down_or_is_gone(backend: Backend) {
    let deployment = deployment(backend);
    let secret = secret_of(&deployment);
    let receiver = Receiver::reserve(&secret).await;
    let app = deployment.serve();
    let id = submit(&app, &receiver, "final", images(1)).await;
    app.wait_done(&id, WITHIN).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let status = app.status(&id).await;
    let delivery = &status["webhook"]["deliveries"][0];
    assert_eq!(delivery["state"], "pending", "{delivery:#}");
    assert!(
        delivery["attempts"].as_u64().unwrap_or(0) >= 5,
        "{delivery:#}"
    );
    assert!(delivery["last_error"]
        .as_str()
        .unwrap_or("")
        .contains("connect"));
    receiver.listen().await;
    let got = receiver.final_of(&id).await;
    assert_eq!(got.len(), 1);

    // The job's first event is answered 410 while its images take a
    // while: none of its later events is sent.
    let gone = Receiver::start(&secret, vec![410]).await;
    let query = format!(
        "{}&webhook_url={}&webhook_events=job.queued,image.succeeded,final",
        crate::waiting::SLOW_FILTER,
        gone.url()
    );
    let job = app.submit_ok(&query, crate::waiting::slow_images(4)).await;
    let id = job["job_id"].as_str().expect("job id").to_string();
    app.wait_done(&id, WITHIN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = gone.got();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].body["type"], "job.queued");
    let status = app.status(&id).await;
    let hook = &status["webhook"];
    assert_eq!(
        (hook["pending"].as_u64(), hook["stopped"].as_u64()),
        (Some(0), Some(1)),
        "{hook:#}"
    );
    assert_eq!(hook["deliveries"][0]["last_status"], 410, "{hook:#}");
}

/// The API restarted and the worker SIGKILLed between the events and their
/// deliveries (the receiver is down meanwhile): nothing is lost.
async fn killed_processes_lose_no_delivery(backend: Backend) {
    let deployment = deployment(backend);
    let secret = secret_of(&deployment);
    let receiver = Receiver::reserve(&secret).await;
    let mut api = deployment.start("api");
    let mut worker = deployment.start("worker");
    let app = TestApp::new(api);
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(submit(&app, &receiver, "final", images(2)).await);
    }
    for id in &jobs {
        app.wait_done(id, WITHIN).await;
    }
    worker.kill();
    drop(app);
    api = deployment.start("api");
    let app = TestApp::new(api);
    let _worker = deployment.start("worker");
    receiver.listen().await;
    for id in &jobs {
        let got = receiver.final_of(id).await;
        assert!(got.iter().all(|r| r.signature_ok));
        let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 1, "{got:#?}");
    }
    drop(app);
}

/// Where a webhook may point, checked at submission: 422 naming the rule.
async fn refused_urls_name_the_rule(backend: Backend) {
    let app = Deployment::new(backend).serve();
    for (url, says) in [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest", "cloud metadata"),
        ("http://169.254.1.1/hook", "link-local"),
        ("http://[::1]:9/hook", "loopback"),
        ("ftp://example.com/hook", "http or https"),
        ("http://user:pw@example.com/hook", "credentials"),
        ("not a url", "not a valid"),
    ] {
        let query = format!("ops=invert&webhook_url={}", urlencode(url));
        let response = app.submit(&query, images(1)).await;
        assert_eq!(response.status(), 422, "{url}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "invalid_webhook", "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{url}: {message}");
    }
    let response = app
        .submit(
            "ops=invert&webhook_url=http://127.0.0.1:9/&webhook_events=job.done",
            images(1),
        )
        .await;
    assert_eq!(response.status(), 422);
    let response = app
        .submit("ops=invert&webhook_events=final", images(1))
        .await;
    assert_eq!(response.status(), 422);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

crate::both_backends!(
    every_event_arrives_signed,
    a_failing_receiver_gets_the_same_delivery_until_it_answers,
    a_receiver_that_was_down_or_is_gone,
    killed_processes_lose_no_delivery,
    refused_urls_name_the_rule,
);

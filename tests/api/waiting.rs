//! Waiting without timing luck: tests wait for an observable condition (with
//! a generous deadline and a message saying what was awaited and what was
//! last seen), never for a fixed time after which something "should" have
//! happened. And for tests that must interrupt work in flight (a kill, an
//! outage), images slow enough in any build profile, and a way to catch one
//! just as it starts.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{noise_png, Deployment, File, TestApp};

/// How often a condition is checked.
const EVERY: Duration = Duration::from_millis(50);

/// Checks `probe` every 50 ms until it answers `Ok`, and returns its value.
/// After `within` it fails, naming what was `awaited` and the last state
/// observed (the last `Err`).
pub async fn until<T, F, Fut>(awaited: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "waited {within:?} for {awaited}; last observed: {last}"
            ),
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// The operation applied to [`slow_images`]: cheap, so that their cost is
/// the codec's.
pub const SLOW_OP: &str = "flip";
/// The query that submits [`slow_images`] with [`SLOW_OP`].
pub const SLOW_FILTER: &str = "filter=flip";

/// Images that each take a worker about half a second in a debug build and in a
/// release build alike: large noise PNGs, whose cost is decoding them and
/// encoding the result (the `image` and `png` dependencies, optimized in both
/// profiles: see `[profile.dev.package."*"]`), put through a cheap operation
/// ([`SLOW_FILTER`]). Work in imgpipe's own code would be about ten times
/// faster under `--release` and could finish before a kill lands.
pub fn slow_images(n: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("slow-{i}.png"), noise_png(2000, 1500, 500 + i)))
        .collect()
}

/// The images of a status, as an array.
pub fn images(status: &Value) -> &Vec<Value> {
    status["images"].as_array().expect("images")
}

/// How recently an image seen `processing` at a first look must have
/// started for [`TestApp::wait_started`] to count it as just begun.
const JUST_STARTED: Duration = Duration::from_millis(150);

/// An image of `status` processing and started less than [`JUST_STARTED`]
/// ago (the server's clock is this machine's).
fn just_started(status: &Value) -> Option<usize> {
    let now = chrono::Utc::now();
    in_state(status, "processing").into_iter().find(|&i| {
        images(status)[i]["started_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| (now - t.with_timezone(&chrono::Utc)).to_std().ok())
            .is_some_and(|age| age < JUST_STARTED)
    })
}

/// Indexes of the images in state `state`.
pub fn in_state(status: &Value, state: &str) -> Vec<usize> {
    images(status)
        .iter()
        .enumerate()
        .filter(|(_, image)| image["state"] == state)
        .map(|(i, _)| i)
        .collect()
}

impl TestApp {
    /// Waits until an image of the job starts: `queued` at one look,
    /// `processing` at the next (20 ms later), or, at the first look,
    /// `processing` since less than [`JUST_STARTED`] (workers pick up a new
    /// job's images within milliseconds). Returns its index and that status.
    /// The image has then only just begun, so with [`slow_images`] a kill or
    /// an outage right after certainly finds it in flight (an image merely
    /// seen `processing` could be about to finish).
    pub async fn wait_started(&self, job_id: &str) -> (usize, Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut before = self.status(job_id).await;
        if let Some(index) = just_started(&before) {
            return (index, before);
        }
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.status(job_id).await;
            let queued = in_state(&before, "queued");
            if let Some(&index) = in_state(&now, "processing")
                .iter()
                .find(|i| queued.contains(i))
            {
                return (index, now);
            }
            assert!(
                Instant::now() < deadline,
                "no image of job {job_id} was seen starting within 60 s; last status: {now}"
            );
            before = now;
        }
    }
}

/// Waits until the API has begun spooling an upload: a request is open and
/// its body arriving. Needs a deployment that spools every upload
/// ([`Deployment::spooling`]): one held in memory leaves no file to see.
pub async fn until_spooling(deployment: &Deployment) {
    assert!(
        deployment.spools_every_upload(),
        "until_spooling needs Deployment::spooling()"
    );
    until(
        "an upload to be spooled",
        Duration::from_secs(30),
        || async {
            match deployment.spooled_files() {
                0 => Err("nothing spooled yet".to_string()),
                _ => Ok(()),
            }
        },
    )
    .await;
}

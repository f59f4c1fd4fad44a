//! Shared test harness: starts the real `imgpipe` binary on a random port,
//! either embedded (a data directory of its own) or distributed (the Redis and
//! S3 servers that `scripts/test.sh` started, with a Redis key prefix and a
//! bucket of its own), so tests run in parallel.

use std::io::{BufRead, BufReader, Cursor};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat};
use serde_json::Value;

/// Reads a variable set by `scripts/test.sh`; a missing service is a failure, never a skip.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts Redis and an S3 server")
    })
}

/// The two configurations every API test runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite queue and metadata, objects on local disk, in one data directory.
    Embedded,
    /// Redis queue and metadata, S3 objects.
    Distributed,
}

/// One isolated deployment: a data directory, Redis key prefix and bucket of
/// its own. Processes started from one deployment share them, as the
/// processes of a real deployment do.
#[derive(Clone)]
pub struct Deployment {
    pub backend: Backend,
    pub prefix: String,
    pub bucket: String,
    pub tmp_dir: PathBuf,
    pub data_dir: PathBuf,
    pub extra_env: Vec<(String, String)>,
    /// Variables removed from the processes' environment.
    pub unset_env: Vec<String>,
    /// An admin key (IMGPIPE_BOOTSTRAP_KEY), which `TestApp`'s client sends:
    /// every deployment runs with auth on, as a reachable server does.
    pub admin_key: String,
    /// IMGPIPE_SIGNING_KEY, shared by the deployment's processes.
    pub signing_key: String,
    /// Removed (with the data and spool directories in it) once the
    /// deployment and every process started from it are gone.
    root: Arc<tempfile::TempDir>,
}

impl Deployment {
    pub fn new(backend: Backend) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let root = Arc::new(
            tempfile::Builder::new()
                .prefix("imgpipe-test-")
                .tempdir()
                .expect("create deployment dir"),
        );
        let tmp_dir = root.path().join("spool");
        std::fs::create_dir_all(&tmp_dir).expect("create spool dir");
        Deployment {
            backend,
            prefix: format!("test-{id}"),
            bucket: format!("t-{}", &id[..20]),
            tmp_dir,
            data_dir: root.path().join("data"),
            extra_env: Vec::new(),
            unset_env: Vec::new(),
            admin_key: format!("ipk_test_{}", uuid::Uuid::new_v4().simple()),
            signing_key: uuid::Uuid::new_v4().simple().to_string(),
            root,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.to_string(), value.to_string()));
        self
    }

    /// Every upload spooled to disk as it arrives (none held in memory), so
    /// that one in progress shows as a file ([`Self::spooled_files`]).
    pub fn spooling(self) -> Self {
        self.env("IMGPIPE_UPLOAD_MEMORY_BYTES", "0")
    }

    /// Whether [`Self::spooling`] was asked for.
    pub fn spools_every_upload(&self) -> bool {
        self.extra_env
            .iter()
            .any(|(k, v)| k == "IMGPIPE_UPLOAD_MEMORY_BYTES" && v == "0")
    }

    /// Starts processes without `key` in their environment.
    pub fn without(mut self, key: &str) -> Self {
        self.unset_env.push(key.to_string());
        self
    }

    /// Starts `imgpipe <command>` and waits until it is listening (or, for
    /// `worker`, ready).
    pub fn start(&self, command: &str) -> Process {
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logs");
        std::fs::create_dir_all(&log_dir).expect("create log dir");
        let log_path = log_dir.join(format!(
            "{}-{command}-{}.log",
            self.prefix,
            uuid::Uuid::new_v4().simple()
        ));
        let log = std::fs::File::create(&log_path).expect("create log file");
        let mut cmd = self.command(command);
        cmd.stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().expect("spawn imgpipe");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut base_url = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("imgpipe: listening on ") {
                        base_url = Some(addr.trim().to_string());
                    }
                    // A worker's only HTTP server: its metrics.
                    if let Some(url) = line.strip_prefix("imgpipe: metrics on ") {
                        base_url = Some(url.trim().trim_end_matches("/metrics").to_string());
                    }
                    if line.starts_with("imgpipe: ready")
                        || line.starts_with("imgpipe: worker ready")
                    {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("imgpipe {command} did not become ready within 60 s; log:\n{logs}");
                }
            }
        }
        Process {
            child,
            base_url,
            log_path,
            admin_key: self.admin_key.clone(),
            _dir: self.root.clone(),
        }
    }

    /// `imgpipe <command>` with this deployment's environment.
    pub fn command(&self, command: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgpipe"));
        cmd.arg(command)
            .env_remove("REDIS_URL")
            .env_remove("S3_ENDPOINT")
            .env("IMGPIPE_BIND", "127.0.0.1:0")
            .env("IMGPIPE_DATA_DIR", &self.data_dir)
            .env("IMGPIPE_TMP_DIR", &self.tmp_dir)
            .env("IMGPIPE_WORKERS", "2")
            .env("IMGPIPE_RETRY_BASE_MS", "100")
            .env("IMGPIPE_HEARTBEAT_SECS", "1")
            .env("IMGPIPE_SHUTDOWN_TIMEOUT_SECS", "10")
            .env("IMGPIPE_AUTH", "on")
            .env("IMGPIPE_BOOTSTRAP_KEY", &self.admin_key)
            .env("IMGPIPE_SIGNING_KEY", &self.signing_key)
            .env("RUST_LOG", "info");
        if self.backend == Backend::Distributed {
            cmd.env("REDIS_URL", required_env("IMGPIPE_TEST_REDIS_URL"))
                .env("S3_ENDPOINT", required_env("IMGPIPE_TEST_S3_ENDPOINT"))
                .env("S3_ACCESS_KEY", required_env("IMGPIPE_TEST_S3_ACCESS_KEY"))
                .env("S3_SECRET_KEY", required_env("IMGPIPE_TEST_S3_SECRET_KEY"))
                .env("S3_BUCKET", &self.bucket)
                .env("IMGPIPE_REDIS_PREFIX", &self.prefix);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        for k in &self.unset_env {
            cmd.env_remove(k);
        }
        cmd
    }

    /// Runs a command that ends by itself (such as `check`) to completion.
    pub fn run(&self, command: &str) -> std::process::Output {
        self.command(command).output().expect("run imgpipe")
    }

    pub fn serve(&self) -> TestApp {
        let process = self.start("serve");
        TestApp::new(process)
    }

    /// Records of jobs or tasks this deployment still holds: Redis keys (worker
    /// registrations left out), or rows of the embedded databases.
    pub async fn leftover_records(&self) -> Vec<String> {
        match self.backend {
            Backend::Distributed => {
                let client =
                    redis::Client::open(required_env("IMGPIPE_TEST_REDIS_URL")).expect("redis url");
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect to test redis");
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:*", self.prefix))
                    .query_async(&mut conn)
                    .await
                    .expect("KEYS");
                // Worker registrations and the queue's wake-up signal are
                // the queue's own, API keys and quota counters (which expire
                // with their minute) the tenants', the images settled per
                // minute (kept a day) and the latest failures (capped) the
                // admin page's: not records of any job or task.
                let mut left = Vec::new();
                for key in keys {
                    if key.contains(":workers")
                        || key.ends_with(":signal")
                        || key.contains(":apikey")
                        || key.contains(":quota:")
                        || key.contains(":settled:")
                        || key.ends_with(":failures")
                    {
                        continue;
                    }
                    // A purged job's events stay a minute for its watchers.
                    if key.ends_with(":events") || key.ends_with(":counts") {
                        let ttl: i64 = redis::cmd("PTTL")
                            .arg(&key)
                            .query_async(&mut conn)
                            .await
                            .expect("PTTL");
                        let outlive = imgpipe::meta::EVENTS_OUTLIVE_JOB.as_millis() as i64;
                        let job = key.rsplit_once(':').map_or("", |(job, _)| job);
                        let exists: bool = redis::cmd("EXISTS")
                            .arg(job)
                            .query_async(&mut conn)
                            .await
                            .expect("EXISTS");
                        if !exists && (0..=outlive).contains(&ttl) {
                            continue;
                        }
                    }
                    left.push(key);
                }
                left
            }
            Backend::Embedded => {
                let mut rows = Vec::new();
                for (file, query) in [
                    ("jobs.sqlite3", "SELECT 'job ' || id FROM jobs"),
                    (
                        "jobs.sqlite3",
                        "SELECT 'image ' || job_id || '/' || idx FROM images",
                    ),
                    (
                        "queue.sqlite3",
                        "SELECT 'task ' || id || ' ' || status FROM Jobs",
                    ),
                    ("jobs.sqlite3", "SELECT 'counts ' || job_id FROM job_counts"),
                    // A purged job's events stay a minute for its watchers
                    // (listed in removed_jobs), and no longer.
                    (
                        "jobs.sqlite3",
                        "SELECT 'event ' || job_id || '/' || seq FROM job_events
                         WHERE job_id NOT IN (SELECT id FROM jobs)
                           AND job_id NOT IN (SELECT job_id FROM removed_jobs)",
                    ),
                ] {
                    let path = self.data_dir.join(file);
                    if !path.exists() {
                        continue;
                    }
                    let pool = imgpipe::sqlite::open(&path)
                        .await
                        .expect("open test database");
                    let found: Vec<String> = sqlx::query_scalar(query)
                        .fetch_all(&pool)
                        .await
                        .expect("query test database");
                    rows.extend(found);
                    pool.close().await;
                }
                rows
            }
        }
    }

    /// Files in this deployment's spool directory (uploads being validated).
    pub fn spooled_files(&self) -> usize {
        std::fs::read_dir(&self.tmp_dir)
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Objects stored by this deployment: files in its bucket (s3s-fs keeps
    /// objects as files) or in its data directory.
    pub fn stored_objects(&self) -> usize {
        let root = match self.backend {
            Backend::Distributed => {
                PathBuf::from(required_env("IMGPIPE_TEST_S3_DIR")).join(&self.bucket)
            }
            Backend::Embedded => self.data_dir.join("objects"),
        };
        fn count(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| {
                            let p = e.path();
                            if p.is_dir() {
                                count(&p)
                            } else if p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                            {
                                0
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        count(&root)
    }
}

/// A running imgpipe process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub base_url: Option<String>,
    pub log_path: PathBuf,
    /// The deployment's admin key.
    pub admin_key: String,
    /// Keeps the deployment's directory until this process is killed.
    _dir: Arc<tempfile::TempDir>,
}

impl Process {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: the process dies mid-whatever, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "imgpipe did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// A handle on the same process for another client: a child that is not
    /// this process's (killing or dropping it does nothing to the server).
    fn view(of: &Process) -> Process {
        Process {
            child: Command::new("true").spawn().expect("spawn true"),
            base_url: of.base_url.clone(),
            log_path: of.log_path.clone(),
            admin_key: of.admin_key.clone(),
            _dir: of._dir.clone(),
        }
    }
}

/// An HTTP client that sends `Authorization: Bearer KEY` on every request.
pub fn client_with_key(key: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().expect("header value"),
        );
    }
    reqwest::Client::builder()
        // Shorter than the server's 5 s keep-alive, so a pooled connection
        // is never reused just as the server closes it.
        .pool_idle_timeout(Duration::from_secs(2))
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// POSTs to `url`, as the key's client and with `headers`, one file field
/// named `filename` whose bytes are what `chunks` yields, each sent when the
/// stream gives it; from a task of its own, so the caller can act while the
/// upload is in flight.
pub fn upload_stream<S>(
    url: String,
    key: Option<&str>,
    headers: &[(&'static str, &str)],
    filename: &str,
    chunks: S,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>
where
    S: futures::Stream<Item = Vec<u8>> + Send + 'static,
{
    use futures::StreamExt;
    let body = reqwest::Body::wrap_stream(chunks.map(Ok::<_, std::io::Error>));
    let form = reqwest::multipart::Form::new().part(
        "files",
        reqwest::multipart::Part::stream(body).file_name(filename.to_string()),
    );
    let mut request = client_with_key(key).post(url).multipart(form);
    for (name, value) in headers {
        request = request.header(*name, value.to_string());
    }
    tokio::spawn(async move { request.send().await })
}

/// `chunks`, each after its own pause.
pub fn paced(chunks: Vec<(Duration, Vec<u8>)>) -> impl futures::Stream<Item = Vec<u8>> + Send {
    use futures::StreamExt;
    futures::stream::iter(chunks).then(|(pause, chunk)| async move {
        tokio::time::sleep(pause).await;
        chunk
    })
}

/// `data` in `pieces` chunks, each `pause` after the one before (the first
/// too).
pub fn trickled(
    data: &[u8],
    pieces: usize,
    pause: Duration,
) -> impl futures::Stream<Item = Vec<u8>> + Send {
    let size = data.len().div_ceil(pieces.max(1)).max(1);
    paced(data.chunks(size).map(|c| (pause, c.to_vec())).collect())
}

pub struct TestApp {
    pub process: Process,
    pub base: String,
    pub client: reqwest::Client,
}

/// A file to upload: (filename, bytes).
pub type File = (String, Vec<u8>);

impl TestApp {
    pub fn new(process: Process) -> Self {
        let base = process
            .base_url
            .clone()
            .expect("process has an HTTP address");
        let client = client_with_key(Some(&process.admin_key));
        TestApp {
            process,
            base,
            client,
        }
    }

    /// The same app seen by another caller: `key` (or no key at all).
    pub fn as_caller(&self, key: Option<&str>) -> TestApp {
        TestApp {
            process: Process::view(&self.process),
            base: self.base.clone(),
            client: client_with_key(key),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(self.client.get(self.url(path))).await
    }

    /// Sends a request and checks the answer against `openapi.yaml` (status,
    /// content type, JSON schema) before handing it back, so every test is
    /// also a contract test.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let request = request.build().expect("valid request");
        let (method, path) = (
            request.method().to_string(),
            request.url().path().to_string(),
        );
        let response = self.client.execute(request).await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("response body");
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Err(breach) =
            crate::contract::contract().check(&method, &path, status.as_u16(), content_type, &body)
        {
            panic!("response does not match openapi.yaml: {breach}");
        }
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.headers_mut() = headers;
        reqwest::Response::from(rebuilt)
    }

    /// `POST /process-job?<query>` with `files` as the multipart field `files`.
    pub async fn submit(&self, query: &str, files: Vec<File>) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (name, bytes) in files {
            form = form.part(
                "files",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        }
        self.send(
            self.client
                .post(self.url(&format!("/process-job?{query}")))
                .multipart(form),
        )
        .await
    }

    /// Submits and asserts 202; returns the response body.
    pub async fn submit_ok(&self, query: &str, files: Vec<File>) -> Value {
        let resp = self.submit(query, files).await;
        let status = resp.status();
        let body: Value = resp.json().await.expect("JSON body");
        assert_eq!(status, 202, "submission refused: {body}");
        body
    }

    pub async fn status(&self, job_id: &str) -> Value {
        let resp = self.get(&format!("/status-job/{job_id}")).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("status JSON")
    }

    /// Polls the status until every image is terminal.
    pub async fn wait_done(&self, job_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status(job_id).await;
            if status["all_ready"] == true {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} not done within {within:?}: {status}\nlogs: {}",
                self.process.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the job, then asserts it completed with every image, each
    /// once in the ZIP and identical to the pipeline's own output for its
    /// input (`filter`, PNG out).
    pub async fn assert_complete_and_correct(&self, job_id: &str, inputs: &[File], filter: &str) {
        let status = self.wait_done(job_id, Duration::from_secs(90)).await;
        assert_eq!(status["status"], "completed", "{status}");
        let entries = self.download(job_id, "").await;
        let names: std::collections::HashSet<&str> =
            entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), entries.len(), "an entry appears twice");
        assert_eq!(
            entries.len(),
            inputs.len() + 1,
            "every image and the manifest"
        );
        let chain: imgpipe::ops::Chain = filter.parse().expect("a valid chain");
        for (name, bytes) in inputs {
            let (_, output) = entries
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name} missing from the ZIP"));
            let decoded = imgpipe::codec::decode(bytes, u64::MAX).expect("decode test input");
            let processed = chain.apply(decoded, u64::MAX).expect("apply the chain");
            let expected =
                imgpipe::codec::encode(&processed, imgpipe::codec::OutputFormat::Png, 90, false)
                    .expect("encode");
            assert!(
                output == &expected,
                "{name}: output differs from the pipeline's"
            );
        }
    }

    /// Downloads the job's ZIP and returns its entries as (name, bytes), in order.
    pub async fn download(&self, job_id: &str, query: &str) -> Vec<(String, Vec<u8>)> {
        let resp = self.get(&format!("/download/{job_id}{query}")).await;
        assert_eq!(resp.status(), 200, "download failed");
        assert_eq!(resp.headers()["content-type"], "application/zip");
        let bytes = resp.bytes().await.expect("ZIP body");
        unzip(&bytes)
    }
}

pub fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("valid ZIP");
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).expect("ZIP entry");
            let mut data = Vec::new();
            std::io::copy(&mut entry, &mut data).expect("read ZIP entry");
            (entry.name().expect("entry name").to_string(), data)
        })
        .collect()
}

/// A small photo-like test image: gradients, noise and hard edges.
pub fn test_image(width: u32, height: u32, seed: u32) -> DynamicImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 41) as i32 - 20
    };
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
        let edge = if (x / 7 + y / 5) % 2 == 0 { 60 } else { 0 };
        let mut c = |base: i32| (base + edge + noise()).clamp(0, 255) as u8;
        let (r, g) = (c((x * 255 / width) as i32), c((y * 255 / height) as i32));
        image::Rgb([r, g, c(128)])
    }))
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode test image");
    out.into_inner()
}

pub fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    encode(&test_image(width, height, seed), ImageFormat::Png)
}

pub fn jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    encode(&test_image(width, height, seed), ImageFormat::Jpeg)
}

/// Photos big enough that each takes a while in a (debug-built) worker, so
/// that a kill or an outage lands mid-task.
pub fn photos(n: u32) -> Vec<File> {
    (0..n)
        .map(|i| (format!("photo-{i}.png"), png(1200, 900, 100 + i)))
        .collect()
}

/// A PNG of random noise: incompressible, so its size is about
/// width × height × 3 bytes (for uploads larger than one S3 part).
pub fn noise_png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453) | 1;
    let img = image::RgbImage::from_fn(width, height, |_, _| {
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        };
        image::Rgb([next(), next(), next()])
    });
    encode(&DynamicImage::ImageRgb8(img), ImageFormat::Png)
}

/// A small PNG whose header claims the given size: a decompression bomb as
/// far as a header-only check can tell (its pixel data is only a stub).
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    // zlib header + the start of a deflate stream of zeros
    png_with_idat(
        width,
        height,
        &[0x78, 0x9c, 0xed, 0xc1, 0x01, 0x0d, 0x00, 0x00, 0x00, 0xc2],
    )
}

/// A structurally complete PNG (valid header, chunk list ending in IEND) whose
/// pixel data is garbage: it passes admission and fails decoding in a worker.
pub fn png_with_corrupt_pixels(width: u32, height: u32) -> Vec<u8> {
    png_with_idat(width, height, b"this is not a zlib stream at all")
}

/// An 8-bit RGB PNG of the given size whose only IDAT chunk is `idat`.
fn png_with_idat(width: u32, height: u32, idat: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    push_chunk(&mut out, b"IHDR", &ihdr);
    push_chunk(&mut out, b"IDAT", idat);
    push_chunk(&mut out, b"IEND", &[]);
    out
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// A Redis or S3 server of a test's own, for tests that stop and restart it
/// (outages). Same programs as `scripts/test.sh` starts; the port and data
/// directory survive restarts, so clients reconnect to the same address.
pub struct OwnService {
    program: &'static str,
    args: Vec<String>,
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnService {
    /// redis-server with an append-only file, so a restart keeps every job.
    pub fn redis() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir.path().to_string_lossy(),
        ]
        .map(String::from)
        .to_vec();
        Self::start("redis-server", args, port, dir)
    }

    /// s3s-fs with the credentials of the shared test server.
    pub fn s3() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let args = [
            "--host".to_string(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--access-key".into(),
            required_env("IMGPIPE_TEST_S3_ACCESS_KEY"),
            "--secret-key".into(),
            required_env("IMGPIPE_TEST_S3_SECRET_KEY"),
            dir.path().to_string_lossy().into_owned(),
        ]
        .to_vec();
        Self::start("s3s-fs", args, port, dir)
    }

    fn start(program: &'static str, args: Vec<String>, port: u16, dir: tempfile::TempDir) -> Self {
        let mut service = OwnService {
            program,
            args,
            port,
            _dir: dir,
            child: None,
        };
        service.resume();
        service
    }

    pub fn url(&self) -> String {
        match self.program {
            "redis-server" => format!("redis://127.0.0.1:{}", self.port),
            _ => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data, and waits until it accepts connections.
    pub fn resume(&mut self) {
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (scripts/test.sh installs it): {e}",
                    self.program
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within 20 s",
                self.program,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnService {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

//! Prometheus metrics: their names (dashboards and alerts rely on them),
//! the process's recorder, and the text exposition that `GET /metrics`
//! serves. Code anywhere records through the `metrics` facade with these
//! names; gauges that describe the backends (queue depth, workers alive)
//! are sampled by the service when scraped, not here.
//!
//! Rules (Prometheus naming): an `imgpipe_` prefix, base units (seconds,
//! bytes), `_total` counters, and labels with few values: never a job id, a
//! file name or a tenant.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const JOBS_SUBMITTED: &str = "imgpipe_jobs_submitted_total";
/// `outcome`: succeeded, failed, retried.
pub const IMAGES: &str = "imgpipe_images_total";
/// `stage`: queue (waiting to be taken), fetch, render (all of the CPU work),
/// and within it decode, ops and encode (an image decoded whole) or
/// transcode (a JPEG streamed in strips: the three at once); store.
pub const IMAGE_STAGE: &str = "imgpipe_image_stage_seconds";
/// `stage`: examine (waiting for the uploads' checks once the body is in),
/// store (waiting for the uploads' writes to storage, which start as each
/// upload arrives), record (the job written to the metadata store), enqueue
/// (its first tasks pushed); accepted jobs only.
pub const SUBMISSION_STAGE: &str = "imgpipe_submission_stage_seconds";
/// `status`: completed, completed_with_errors, failed; counted by the
/// process whose write settled the job's last image.
pub const JOBS_FINISHED: &str = "imgpipe_jobs_finished_total";
/// `reason`: the class of a failed image's error (see `worker::retry::failure_class`).
pub const IMAGES_FAILED: &str = "imgpipe_images_failed_total";
/// `queue`: priority, bulk, webhook; tasks taken by live workers of every
/// process (read from the queue backend when scraped).
pub const TASKS_RUNNING: &str = "imgpipe_tasks_running";
/// Bytes of ZIPs streamed to clients.
pub const ZIP_BYTES: &str = "imgpipe_zip_bytes_total";
/// The pixel budget: `state` capacity, in_use; and reservations waiting.
pub const PIXEL_BUDGET: &str = "imgpipe_pixel_budget_pixels";
pub const PIXEL_BUDGET_WAITING: &str = "imgpipe_pixel_budget_waiting";
/// Render threads running an image now (both lanes).
pub const RENDER_BUSY: &str = "imgpipe_render_threads_busy";
/// `lane`: priority, bulk.
pub const QUEUE_DEPTH: &str = "imgpipe_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "imgpipe_queue_oldest_age_seconds";
pub const WORKERS_ALIVE: &str = "imgpipe_workers_alive";
/// `route` (the template, e.g. `/status-job/{job_id}`), `status` (2xx …).
pub const HTTP_REQUESTS: &str = "imgpipe_http_requests_total";
pub const HTTP_DURATION: &str = "imgpipe_http_request_duration_seconds";
pub const UPLOAD_BYTES: &str = "imgpipe_upload_bytes_total";
/// `from`: memory (handed over by this process's API, `store::handoff`),
/// storage; a worker's reads of its inputs, in `imgpipe serve`.
pub const INPUT_READS: &str = "imgpipe_input_reads_total";
pub const RESIDENT_MEMORY: &str = "imgpipe_process_resident_memory_bytes";
/// `version`, `queue` (redis, sqlite), `store` (s3, local); always 1.
pub const BUILD_INFO: &str = "imgpipe_build_info";

/// Seconds: from a millisecond status poll to a multi-minute image.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs this process's recorder (once; later calls keep the first).
/// Without it (it failed, or another recorder is installed) metrics are
/// dropped and the exposition says so.
pub fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .and_then(PrometheusBuilder::install_recorder);
        match builder {
            Ok(handle) => {
                describe();
                Some(handle)
            }
            Err(e) => {
                log::warn!("metrics are off: {e}");
                None
            }
        }
    });
}

/// The HELP text of every metric (Prometheus' lint wants one).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(JOBS_SUBMITTED, "Jobs accepted by this process.");
    describe_counter!(
        INPUT_READS,
        "Uploads read by this process's workers, from memory (kept since this process stored them) or from storage."
    );
    describe_counter!(
        UPLOAD_BYTES,
        Unit::Bytes,
        "Bytes of the images accepted by this process."
    );
    describe_counter!(
        IMAGES,
        "Images settled by this process's workers (succeeded, failed), or sent back for a retry (retried)."
    );
    describe_histogram!(
        IMAGE_STAGE,
        Unit::Seconds,
        "Time per image and stage: queue (submission to first start), fetch, render (all CPU work; within it decode, ops, encode, or transcode for streamed JPEG), store."
    );
    describe_histogram!(
        SUBMISSION_STAGE,
        Unit::Seconds,
        "Time per accepted submission and stage, after its body was received: examine (waiting for the uploads' checks), store (waiting for the uploads' writes to storage, begun as each arrived), record (the job written), enqueue (its first tasks pushed)."
    );
    describe_counter!(
        JOBS_FINISHED,
        "Jobs whose last image this process settled, by final status."
    );
    describe_counter!(
        IMAGES_FAILED,
        "Images failed by this process's workers, by the class of their error (decode, limits, timeout, cancelled, crashed, backend, other)."
    );
    describe_gauge!(
        TASKS_RUNNING,
        "Tasks taken and not finished by the live workers of every process, per queue."
    );
    describe_counter!(
        ZIP_BYTES,
        Unit::Bytes,
        "Bytes of ZIP archives streamed by this process."
    );
    describe_gauge!(
        PIXEL_BUDGET,
        "This process's pixel budget (IMGPIPE_MAX_PIXELS_IN_FLIGHT): capacity, and pixels reserved by images decoding or rendering (in_use)."
    );
    describe_gauge!(
        PIXEL_BUDGET_WAITING,
        "Images waiting for pixels of this process's budget."
    );
    describe_gauge!(
        RENDER_BUSY,
        "Render threads of this process running an image now."
    );
    describe_gauge!(QUEUE_DEPTH, "Tasks waiting in the queue backend, per lane.");
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest waiting task, per lane (0: none waiting)."
    );
    describe_gauge!(
        WORKERS_ALIVE,
        "Workers whose heartbeat is within the liveness window, per lane."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template and status class."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from request to response head, by route template."
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory of this process."
    );
    describe_gauge!(
        BUILD_INFO,
        "Version and backend kinds of this process; always 1."
    );
}

/// Records what this build and process are made of.
pub fn build_info(queue: &'static str, store: &'static str) {
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "queue" => queue,
        "store" => store,
    )
    .set(1.0);
}

/// The Prometheus text format of every metric recorded so far.
pub fn render() -> String {
    match HANDLE.get().and_then(Option::as_ref) {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => "# metrics are off in this process (see its log)\n".to_string(),
    }
}

/// This process's resident memory, from /proc (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// `2xx`, `4xx` …: the status label, whose values stay few.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(202), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
    }

    #[test]
    fn names_follow_the_prometheus_rules() {
        for name in [
            JOBS_SUBMITTED,
            IMAGES,
            IMAGE_STAGE,
            QUEUE_DEPTH,
            QUEUE_OLDEST_AGE,
            WORKERS_ALIVE,
            HTTP_REQUESTS,
            HTTP_DURATION,
            UPLOAD_BYTES,
            RESIDENT_MEMORY,
            BUILD_INFO,
        ] {
            assert!(name.starts_with("imgpipe_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}

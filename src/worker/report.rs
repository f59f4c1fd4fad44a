//! What a delivery reports besides its outcome: the time of each stage
//! (a histogram and the task's log lines), the images it settled, by outcome
//! and failure class, and a job found gone. Metrics and logs only: nothing
//! here decides or writes anything.

use chrono::Utc;

use crate::jobs::{ImageProgress, ImageState, Job, JobId};

/// Counts an image that this write settled (once: a settled image is
/// never written again).
pub(super) fn count_settled(progress: &ImageProgress) {
    let outcome = match progress.state {
        ImageState::Succeeded => "succeeded",
        ImageState::Failed => "failed",
        ImageState::Queued | ImageState::Processing => return,
    };
    metrics::counter!(crate::telemetry::IMAGES, "outcome" => outcome).increment(1);
    if progress.state == ImageState::Failed {
        let class = super::retry::failure_class(progress.error.as_deref().unwrap_or(""));
        metrics::counter!(crate::telemetry::IMAGES_FAILED, "reason" => class).increment(1);
    }
}

/// Records how long one stage of an image took.
pub(super) fn stage(name: &'static str, since: std::time::Instant) {
    took(name, since.elapsed());
}

/// How long an image waited for its first attempt, from its job's creation.
pub(super) fn took_queue(job: &Job) {
    let waited = (Utc::now() - job.created_at).to_std().unwrap_or_default();
    took("queue", waited);
}

pub(super) fn log_gone(job_id: JobId, index: usize) {
    log::warn!(
        "job {job_id} image {index}: job no longer exists (expired or deleted); dropping task"
    );
}

/// Records one stage's time: its histogram, and the task's log lines.
pub(super) fn took(name: &'static str, time: std::time::Duration) {
    metrics::histogram!(crate::telemetry::IMAGE_STAGE, "stage" => name).record(time.as_secs_f64());
    crate::logging::note_stage(name, time);
}

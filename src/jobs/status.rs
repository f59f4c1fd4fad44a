//! Aggregates per-image states into one job status. Pure: no I/O, no clock.
//! Where a client fetches things is not this module's to say: the addresses
//! come from [`Links`], which the HTTP layer implements.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ImageProgress, ImageState, Job, JobId};
use crate::codec::OutputFormat;
use crate::ops::Chain;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Processing,
    Completed,
    CompletedWithErrors,
    Failed,
}

impl JobState {
    /// The name clients see in JSON.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::CompletedWithErrors => "completed_with_errors",
            JobState::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::CompletedWithErrors | JobState::Failed
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub total: usize,
    pub queued: usize,
    pub processing: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Share of images in a terminal state, 0–100, one decimal.
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageStatus {
    pub index: usize,
    pub filename: String,
    pub entry_name: String,
    pub state: ImageState,
    pub attempts: u32,
    pub error: Option<String>,
    pub width: u32,
    pub height: u32,
    pub output_format: OutputFormat,
    pub task_id: String,
    /// Where the processed image can be fetched, once it has succeeded.
    pub result_url: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    pub job_id: JobId,
    pub status: JobState,
    pub ops: Chain,
    pub progress: Progress,
    /// Every image is in a terminal state (Celery's `GroupResult.ready()`).
    pub all_ready: bool,
    /// Every image succeeded (Celery's `GroupResult.successful()`).
    pub all_successful: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub download_url: String,
    /// The Server-Sent Events stream of the job's events.
    pub events_url: String,
    pub images: Vec<ImageStatus>,
    /// The job's webhook and its deliveries, if it has one (filled by the
    /// service, which reads the deliveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<super::webhook::WebhookStatus>,
}

/// `started` says whether any image has been picked up at least once: a job
/// whose only started image went back to the queue for a retry is still
/// processing, not queued again.
pub fn job_state(progress: &Progress, started: bool) -> JobState {
    if progress.succeeded + progress.failed == progress.total {
        if progress.failed == 0 {
            JobState::Completed
        } else if progress.succeeded == 0 {
            JobState::Failed
        } else {
            JobState::CompletedWithErrors
        }
    } else if progress.queued == progress.total && !started {
        JobState::Queued
    } else {
        JobState::Processing
    }
}

/// The progress of a job whose images are in these states.
pub fn count(states: &[ImageState]) -> Progress {
    let n = |s: ImageState| states.iter().filter(|&&x| x == s).count();
    let total = states.len();
    let (succeeded, failed) = (n(ImageState::Succeeded), n(ImageState::Failed));
    let percent = if total == 0 {
        100.0
    } else {
        ((succeeded + failed) as f64 * 1000.0 / total as f64).round() / 10.0
    };
    Progress {
        total,
        queued: n(ImageState::Queued),
        processing: n(ImageState::Processing),
        succeeded,
        failed,
        percent,
    }
}

/// Which form of address a status carries for the ZIP and the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Shareable: works without a key until it expires (never after the job).
    Shareable,
    /// The plain route, which needs a key: for copies of a status that
    /// outlive the answer or reach other hands (the ZIP's manifest), so a
    /// link never mints a later link.
    Plain,
}

/// The addresses a status points clients to (status, ZIP, one result).
pub trait Links: Send + Sync + 'static {
    fn status(&self, job: JobId) -> String;
    fn download(&self, job: &Job, kind: LinkKind) -> String;
    fn result(&self, job: &Job, index: usize, kind: LinkKind) -> String;
    /// The job's event stream (a signed link opens it for an EventSource,
    /// which cannot send a key).
    fn events(&self, job: &Job, kind: LinkKind) -> String;
}

/// Builds the status report. `progress[i]` belongs to `job.images[i]`; a
/// missing entry counts as queued (it has not been touched yet).
pub fn aggregate(
    job: &Job,
    progress: &[Option<ImageProgress>],
    links: &dyn Links,
    kind: LinkKind,
) -> JobStatus {
    let images: Vec<ImageStatus> = job
        .images
        .iter()
        .map(|entry| {
            let p = progress
                .get(entry.index)
                .cloned()
                .flatten()
                .unwrap_or_else(ImageProgress::queued);
            ImageStatus {
                index: entry.index,
                filename: entry.filename.clone(),
                entry_name: entry.entry_name.clone(),
                state: p.state,
                attempts: p.attempts,
                error: p.error,
                width: entry.width,
                height: entry.height,
                output_format: entry.output_format,
                task_id: entry.task_id.clone(),
                result_url: (p.state == ImageState::Succeeded)
                    .then(|| links.result(job, entry.index, kind)),
                started_at: p.started_at,
                finished_at: p.finished_at,
            }
        })
        .collect();
    let states: Vec<ImageState> = images.iter().map(|i| i.state).collect();
    let progress = count(&states);
    let started = images.iter().any(|i| i.attempts > 0);
    let status = job_state(&progress, started);
    let latest = |f: fn(&ImageStatus) -> Option<DateTime<Utc>>| images.iter().filter_map(f).max();
    let last_change = latest(|i| i.finished_at.max(i.started_at));
    JobStatus {
        job_id: job.id,
        status,
        ops: job.recipe.ops.clone(),
        all_ready: status.is_terminal(),
        all_successful: status == JobState::Completed,
        created_at: job.created_at,
        updated_at: last_change.unwrap_or(job.created_at).max(job.created_at),
        finished_at: if status.is_terminal() {
            latest(|i| i.finished_at)
        } else {
            None
        },
        expires_at: job.expires_at,
        download_url: links.download(job, kind),
        events_url: links.events(job, kind),
        progress,
        images,
        webhook: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::InputFormat;

    /// Addresses in the API's form, so the assertions read naturally.
    struct Paths;

    impl Links for Paths {
        fn status(&self, job: JobId) -> String {
            format!("/status-job/{job}")
        }
        fn download(&self, job: &Job, _: LinkKind) -> String {
            format!("/download/{}", job.id)
        }
        fn result(&self, job: &Job, index: usize, _: LinkKind) -> String {
            format!("/images/{}/{index}", job.id)
        }
        fn events(&self, job: &Job, _: LinkKind) -> String {
            format!("/jobs/{}/events", job.id)
        }
    }
    use crate::jobs::{ImageEntry, Recipe};

    fn job(n: usize) -> Job {
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Job {
            tenant: crate::auth::Tenant::local(),
            idempotency_key: None,
            lane: Default::default(),
            webhook: None,
            id: JobId::new(),
            recipe: Recipe {
                ops: "blur".parse().expect("a valid chain"),
                format: None,
                quality: 90,
                lossless: false,
            },
            created_at: t,
            expires_at: t + chrono::Duration::hours(24),
            images: (0..n)
                .map(|index| ImageEntry {
                    index,
                    filename: format!("{index}.png"),
                    entry_name: format!("{index}.png"),
                    input_format: InputFormat::Png,
                    output_format: OutputFormat::Png,
                    width: 1,
                    height: 1,
                    size_bytes: 10,
                    task_id: format!("t{index}"),
                })
                .collect(),
        }
    }

    fn with(state: ImageState) -> Option<ImageProgress> {
        Some(ImageProgress {
            state,
            ..ImageProgress::queued()
        })
    }

    use ImageState::*;

    #[test]
    fn state_names_match_the_json() {
        for state in [JobState::Queued, JobState::CompletedWithErrors] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.to_string());
        }
        for state in [Queued, Processing, Succeeded, Failed] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.to_string());
        }
    }

    #[test]
    fn all_queued_is_queued() {
        let s = aggregate(
            &job(3),
            &[None, with(Queued), None],
            &Paths,
            LinkKind::Plain,
        );
        assert_eq!(s.status, JobState::Queued);
        assert_eq!(s.progress.queued, 3);
        assert_eq!(s.progress.percent, 0.0);
        assert!(!s.all_ready && !s.all_successful);
        assert!(s.images.iter().all(|i| i.result_url.is_none()));
    }

    #[test]
    fn any_started_is_processing() {
        assert_eq!(
            aggregate(&job(2), &[with(Processing), None], &Paths, LinkKind::Plain).status,
            JobState::Processing
        );
        let s = aggregate(
            &job(3),
            &[with(Succeeded), with(Queued), with(Queued)],
            &Paths,
            LinkKind::Plain,
        );
        assert_eq!(s.status, JobState::Processing);
        assert_eq!(s.progress.percent, 33.3);
    }

    #[test]
    fn an_image_waiting_for_a_retry_keeps_the_job_processing() {
        let retrying = Some(ImageProgress {
            attempts: 1,
            error: Some("storage unavailable".into()),
            ..ImageProgress::queued()
        });
        let s = aggregate(&job(2), &[retrying, None], &Paths, LinkKind::Plain);
        assert_eq!(s.progress.queued, 2);
        assert_eq!(s.status, JobState::Processing);
    }

    #[test]
    fn terminal_states() {
        let all_ok = aggregate(
            &job(2),
            &[with(Succeeded), with(Succeeded)],
            &Paths,
            LinkKind::Plain,
        );
        assert_eq!(all_ok.status, JobState::Completed);
        assert!(all_ok.all_ready && all_ok.all_successful);
        assert_eq!(all_ok.progress.percent, 100.0);
        assert_eq!(
            all_ok.images[1].result_url.as_deref(),
            Some(&*format!("/images/{}/1", all_ok.job_id))
        );

        let mixed = aggregate(
            &job(2),
            &[with(Succeeded), with(Failed)],
            &Paths,
            LinkKind::Plain,
        );
        assert_eq!(mixed.status, JobState::CompletedWithErrors);
        assert!(mixed.all_ready && !mixed.all_successful);
        assert!(mixed.images[1].result_url.is_none());

        let none = aggregate(
            &job(2),
            &[with(Failed), with(Failed)],
            &Paths,
            LinkKind::Plain,
        );
        assert_eq!(none.status, JobState::Failed);
        assert!(none.all_ready && !none.all_successful);
    }

    #[test]
    fn counts_add_up() {
        let s = aggregate(
            &job(5),
            &[
                with(Succeeded),
                with(Failed),
                with(Processing),
                None,
                with(Queued),
            ],
            &Paths,
            LinkKind::Plain,
        );
        let p = &s.progress;
        assert_eq!(
            (p.total, p.queued, p.processing, p.succeeded, p.failed),
            (5, 2, 1, 1, 1)
        );
        assert_eq!(p.percent, 40.0);
        assert!(s.finished_at.is_none());
    }
}

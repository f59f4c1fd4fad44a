//! The operator's view and actions (the admin page and its JSON API, `admin`
//! scope): who is working, what waits, what went through lately, what
//! failed and why, grouped by reason; cancelling a job's waiting images and
//! retrying a failed image. Reads what the queue and the metadata store
//! already keep; decides nothing the workers decide.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{JobError, JobService};
use crate::auth::Access;
use crate::jobs::{ImageProgress, ImageState};
use crate::meta::admin::{Failure, JobSummary, Minute};
use crate::meta::AdminView;
use crate::queue::{LaneStats, ProcessImage, WorkerInfo};

/// Latest jobs and failures shown.
const JOBS: usize = 50;
const FAILURES: usize = 200;
/// The throughput chart's span.
const MINUTES: i64 = 30;

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    pub workers: Vec<WorkerInfo>,
    pub queues: Vec<QueueInfo>,
    /// Images settled per minute over the last half hour, oldest first.
    pub throughput: Vec<Minute>,
    pub jobs: Vec<JobSummary>,
    /// The latest failures, grouped by reason (most frequent first).
    pub failures: Vec<FailureGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueInfo {
    pub lane: &'static str,
    pub depth: u64,
    pub oldest_age_seconds: Option<f64>,
    pub workers_alive: u64,
}

impl From<LaneStats> for QueueInfo {
    fn from(s: LaneStats) -> Self {
        QueueInfo {
            lane: s.lane.name(),
            depth: s.depth,
            oldest_age_seconds: s.oldest_age.map(|a| a.as_secs_f64()),
            workers_alive: s.workers_alive,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureGroup {
    pub reason: String,
    pub count: usize,
    pub last_at: DateTime<Utc>,
    /// The latest few, to open.
    pub examples: Vec<Failure>,
}

/// Groups failures by their reason: most frequent first, then latest.
pub fn group(failures: Vec<Failure>) -> Vec<FailureGroup> {
    let mut groups: BTreeMap<String, FailureGroup> = BTreeMap::new();
    for f in failures {
        let group = groups
            .entry(f.error.clone())
            .or_insert_with(|| FailureGroup {
                reason: f.error.clone(),
                count: 0,
                last_at: f.at,
                examples: Vec::new(),
            });
        group.count += 1;
        group.last_at = group.last_at.max(f.at);
        if group.examples.len() < 5 {
            group.examples.push(f);
        }
    }
    let mut list: Vec<FailureGroup> = groups.into_values().collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_at.cmp(&a.last_at)));
    list
}

/// What an operator's cancel did.
#[derive(Debug, Clone, Serialize)]
pub struct Cancelled {
    /// Images that had not started: failed as cancelled.
    pub cancelled: usize,
    /// Images running now: they finish.
    pub running: usize,
}

/// The reason a cancelled image shows.
pub const CANCELLED: &str = "cancelled by an operator";

impl JobService {
    /// The operator's view needs the store's admin side.
    pub fn with_admin(mut self, view: Arc<dyn AdminView>) -> Self {
        self.admin = Some(view);
        self
    }

    fn admin_view(&self) -> Result<&Arc<dyn AdminView>, JobError> {
        self.admin
            .as_ref()
            .ok_or_else(|| JobError::Internal("the admin view is not configured".into()))
    }

    pub async fn overview(&self) -> Result<Overview, JobError> {
        let view = self.admin_view()?;
        let now = Utc::now();
        Ok(Overview {
            generated_at: now,
            workers: self.queue.workers().await?,
            queues: self
                .queue
                .stats()
                .await?
                .into_iter()
                .map(QueueInfo::from)
                .collect(),
            throughput: view
                .settled_since(now - chrono::Duration::minutes(MINUTES))
                .await?,
            jobs: view.recent_jobs(JOBS).await?,
            failures: group(view.recent_failures(FAILURES).await?),
        })
    }

    /// Fails every image of the job that has not started (their tasks are
    /// taken off the queue); running ones finish.
    pub async fn cancel(&self, id: &str) -> Result<Cancelled, JobError> {
        let record = self.record(id, &Access::All).await?;
        let (mut cancelled, mut running, mut tasks) = (0, 0, Vec::new());
        for entry in &record.job.images {
            let progress = record
                .progress
                .get(entry.index)
                .cloned()
                .flatten()
                .unwrap_or_else(ImageProgress::queued);
            match progress.state {
                ImageState::Queued => {
                    let mut failed = progress.clone();
                    failed.state = ImageState::Failed;
                    failed.error = Some(CANCELLED.to_string());
                    failed.finished_at = Some(Utc::now());
                    if self
                        .meta
                        .set_image_progress(record.job.id, entry.index, &failed)
                        .await?
                    {
                        cancelled += 1;
                        tasks.push(entry.task_id.clone());
                    }
                }
                ImageState::Processing => running += 1,
                ImageState::Succeeded | ImageState::Failed => {}
            }
        }
        // A task delivered anyway finds its image settled and does nothing.
        self.queue.forget(&tasks).await?;
        log::info!("job {id}: {cancelled} image(s) cancelled by an operator, {running} running");
        Ok(Cancelled { cancelled, running })
    }

    /// Puts a failed image back in the queue, with its attempts from zero.
    pub async fn retry(&self, id: &str, index: usize) -> Result<(), JobError> {
        let record = self.record(id, &Access::All).await?;
        let job = &record.job;
        if index >= job.images.len() {
            return Err(JobError::ImageNotFound { job: job.id, index });
        }
        let state = record
            .progress
            .get(index)
            .cloned()
            .flatten()
            .map_or(ImageState::Queued, |p| p.state);
        if state != ImageState::Failed
            || !self
                .meta
                .reopen_image(job.id, index, &ImageProgress::queued())
                .await?
        {
            return Err(JobError::NotRetryable {
                job: job.id,
                index,
                state,
            });
        }
        let task = ProcessImage {
            job_id: job.id,
            index,
        };
        self.queue
            .enqueue(job.lane, vec![(crate::queue::new_task_id(), task)])
            .await?;
        log::info!("job {id} image {index}: retried by an operator");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobId;

    fn failure(error: &str, secs: i64) -> Failure {
        Failure {
            job_id: JobId::new(),
            index: 0,
            error: error.into(),
            at: DateTime::from_timestamp(secs, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn failures_group_by_reason_most_frequent_first() {
        let groups = group(vec![
            failure("corrupt", 10),
            failure("timed out", 30),
            failure("corrupt", 20),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].reason.as_str(), groups[0].count), ("corrupt", 2));
        assert_eq!(groups[0].last_at.timestamp(), 20);
        assert_eq!(groups[1].examples.len(), 1);
    }
}

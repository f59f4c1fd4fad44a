//! A job's events: what changed, in order. The metadata stores append them
//! in the same atomic step as the state change they describe (so a crash
//! can neither lose one nor make one twice) and number them per job; the
//! event stream and webhooks read them back. Pure: no I/O, no clock.
//!
//! Stored events are facts, small and fixed: a final event does not carry
//! the job's status, which whoever sends it renders at that moment (with
//! links for its reader).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::status::{count, JobState, Progress};
use super::{ImageProgress, ImageState};

/// The kinds of event, by the name clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "job.queued")]
    JobQueued,
    #[serde(rename = "image.started")]
    ImageStarted,
    #[serde(rename = "image.succeeded")]
    ImageSucceeded,
    #[serde(rename = "image.failed")]
    ImageFailed,
    #[serde(rename = "image.retrying")]
    ImageRetrying,
    #[serde(rename = "job.progress")]
    JobProgress,
    #[serde(rename = "job.completed")]
    JobCompleted,
    #[serde(rename = "job.completed_with_errors")]
    JobCompletedWithErrors,
    #[serde(rename = "job.failed")]
    JobFailed,
    #[serde(rename = "job.deleted")]
    JobDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::JobQueued,
        EventKind::ImageStarted,
        EventKind::ImageSucceeded,
        EventKind::ImageFailed,
        EventKind::ImageRetrying,
        EventKind::JobProgress,
        EventKind::JobCompleted,
        EventKind::JobCompletedWithErrors,
        EventKind::JobFailed,
        EventKind::JobDeleted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::JobQueued => "job.queued",
            EventKind::ImageStarted => "image.started",
            EventKind::ImageSucceeded => "image.succeeded",
            EventKind::ImageFailed => "image.failed",
            EventKind::ImageRetrying => "image.retrying",
            EventKind::JobProgress => "job.progress",
            EventKind::JobCompleted => "job.completed",
            EventKind::JobCompletedWithErrors => "job.completed_with_errors",
            EventKind::JobFailed => "job.failed",
            EventKind::JobDeleted => "job.deleted",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The last event of a job: nothing follows it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::JobCompleted
                | EventKind::JobCompletedWithErrors
                | EventKind::JobFailed
                | EventKind::JobDeleted
        )
    }

    /// The event an image's newly written progress makes. A queued image
    /// that has been tried is waiting for its retry.
    pub fn of_image(progress: &ImageProgress) -> EventKind {
        match progress.state {
            ImageState::Processing => EventKind::ImageStarted,
            ImageState::Succeeded => EventKind::ImageSucceeded,
            ImageState::Failed => EventKind::ImageFailed,
            ImageState::Queued => EventKind::ImageRetrying,
        }
    }

    /// The final event of a job whose images have all settled.
    pub fn of_final(state: JobState) -> Option<EventKind> {
        match state {
            JobState::Completed => Some(EventKind::JobCompleted),
            JobState::CompletedWithErrors => Some(EventKind::JobCompletedWithErrors),
            JobState::Failed => Some(EventKind::JobFailed),
            JobState::Queued | JobState::Processing => None,
        }
    }
}

/// One event as stored: `seq` counts from 1 within its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The store's number for it (stored events leave it out).
    #[serde(default)]
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    /// The image, for `image.*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The attempt that started, ended or will be retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Why the image failed, or why the attempt before a retry failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job's progress after this change (`job.queued`, `job.progress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

impl Event {
    /// A job's first event: all of its `images` queued.
    pub fn queued(at: DateTime<Utc>, images: usize) -> Event {
        Event {
            progress: Some(count(&vec![ImageState::Queued; images])),
            seq: 1,
            ..Event::bare(EventKind::JobQueued, at)
        }
    }

    /// An event with nothing but its kind and time (its `seq` is the store's).
    pub fn bare(kind: EventKind, at: DateTime<Utc>) -> Event {
        Event {
            seq: 0,
            kind,
            at,
            index: None,
            attempt: None,
            error: None,
            progress: None,
        }
    }

    /// The event an image's progress write makes (its `seq` is the store's).
    pub fn of_image(index: usize, progress: &ImageProgress, at: DateTime<Utc>) -> Event {
        let kind = EventKind::of_image(progress);
        Event {
            index: Some(index),
            attempt: Some(progress.attempts),
            error: match kind {
                EventKind::ImageFailed | EventKind::ImageRetrying => progress.error.clone(),
                _ => None,
            },
            ..Event::bare(kind, at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.name()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.name())
            );
        }
        assert_eq!(EventKind::parse("job.exploded"), None);
    }

    #[test]
    fn image_events_follow_the_written_state() {
        let mut p = ImageProgress::queued();
        p.state = ImageState::Processing;
        p.attempts = 1;
        let started = Event::of_image(2, &p, Utc::now());
        assert_eq!(
            (started.kind, started.index, started.attempt),
            (EventKind::ImageStarted, Some(2), Some(1))
        );
        p.state = ImageState::Queued;
        p.error = Some("storage unreachable".into());
        let retry = Event::of_image(2, &p, Utc::now());
        assert_eq!(retry.kind, EventKind::ImageRetrying);
        assert_eq!(retry.error.as_deref(), Some("storage unreachable"));
        p.state = ImageState::Succeeded;
        assert_eq!(Event::of_image(2, &p, Utc::now()).error, None);
    }

    #[test]
    fn only_settled_jobs_have_a_final_event() {
        assert_eq!(
            EventKind::of_final(JobState::CompletedWithErrors),
            Some(EventKind::JobCompletedWithErrors)
        );
        assert_eq!(EventKind::of_final(JobState::Processing), None);
        assert!(EventKind::JobDeleted.is_final());
        assert!(!EventKind::JobProgress.is_final());
    }
}

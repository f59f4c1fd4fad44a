//! The worker's decisions about one delivery of a task, as pure functions of
//! what the stores said: whether to run an attempt at all, what to record
//! after it, and what to tell the queue. No I/O here; `handle` does the
//! reading and writing around these.
//!
//! The rules: an image is settled (`succeeded` or `failed`) once; attempts
//! are counted in the image's progress and fence each other (see
//! [`ImageProgress::may_be_replaced_by`]); transient failures are retried up
//! to the attempt limit, and never past the queue's last delivery; an image
//! whose every attempt started but none finished (its workers kept dying)
//! is settled from what storage holds.

use chrono::{DateTime, Utc};

use crate::jobs::{ImageProgress, ImageState};
use crate::queue::{Delivery, Outcome};

/// What to do with a delivery, before any work.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// Already settled (re-delivered after its outcome was recorded).
    AlreadySettled,
    /// Every allowed attempt started and none recorded an outcome: settle it
    /// from storage (see [`settle_exhausted`]) instead of trying again.
    Exhausted,
    /// Record this progress (the attempt has started), then process.
    Start(ImageProgress),
}

/// For a job that exists (a deleted or expired one's tasks are dropped
/// before any decision).
pub fn begin(previous: &ImageProgress, max_attempts: u32, now: DateTime<Utc>) -> Begin {
    if previous.state.is_terminal() {
        return Begin::AlreadySettled;
    }
    // The queue's last delivery still starts an attempt (and `finish` then
    // settles it whatever happens); should its worker die, both backends
    // re-deliver a dead worker's tasks regardless of their count, and the
    // attempt limit here ends it.
    if previous.attempts >= max_attempts {
        return Begin::Exhausted;
    }
    Begin::Start(ImageProgress {
        state: ImageState::Processing,
        attempts: previous.attempts + 1,
        // The error of an earlier attempt belongs to the queued state it explained.
        error: None,
        started_at: Some(now),
        finished_at: None,
        ..previous.clone()
    })
}

/// How an attempt's work ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Processed {
    /// The result is stored; its size in bytes.
    Stored(u64),
    Failed {
        transient: bool,
        message: String,
    },
}

/// The progress to record after an attempt, and what to tell the queue.
pub fn finish(
    started: &ImageProgress,
    processed: Processed,
    max_attempts: u32,
    delivery: Delivery,
    now: DateTime<Utc>,
) -> (ImageProgress, Outcome) {
    let attempt = started.attempts;
    match processed {
        Processed::Stored(size) => (
            ImageProgress {
                state: ImageState::Succeeded,
                error: None,
                finished_at: Some(now),
                output_bytes: Some(size),
                ..started.clone()
            },
            Outcome::Done,
        ),
        Processed::Failed { transient, message }
            if transient && attempt < max_attempts && !delivery.is_last() =>
        {
            let retry = ImageProgress {
                state: ImageState::Queued,
                error: Some(format!("attempt {attempt} failed, retrying: {message}")),
                ..started.clone()
            };
            (retry, Outcome::RetryLater(message))
        }
        Processed::Failed { transient, message } => {
            let reason = if transient {
                format!("gave up after {attempt} attempts: {message}")
            } else {
                message
            };
            (
                failed(started, reason.clone(), now),
                Outcome::GiveUp(reason),
            )
        }
    }
}

/// Settles an image whose attempts are used up. If its result is in storage
/// (`stored`: its size), the last attempt finished but could not record it:
/// it succeeded. Otherwise each worker died on it (killed, out of memory):
/// fail it rather than let one image take down worker after worker.
pub fn settle_exhausted(
    previous: &ImageProgress,
    stored: Option<u64>,
    now: DateTime<Utc>,
) -> (ImageProgress, Outcome) {
    match stored {
        Some(size) => (
            ImageProgress {
                state: ImageState::Succeeded,
                error: None,
                finished_at: Some(now),
                output_bytes: Some(size),
                ..previous.clone()
            },
            Outcome::Done,
        ),
        None => {
            let reason = format!(
                "gave up after {} attempts: the worker processing this image stopped each time (crashed or killed)",
                previous.attempts
            );
            (
                failed(previous, reason.clone(), now),
                Outcome::GiveUp(reason),
            )
        }
    }
}

/// What an attempt that crashed (panicked) records: the image fails at once.
/// The panic's text goes to the log, not into the record clients read.
pub fn crashed(started: &ImageProgress, now: DateTime<Utc>) -> (ImageProgress, Outcome) {
    let reason = "processing crashed (the server log has the details)".to_string();
    (
        failed(started, reason.clone(), now),
        Outcome::GiveUp(reason),
    )
}

/// When the final write of a success is refused: either another attempt
/// recorded an outcome first (the stored result is the same image), or the
/// job went away meanwhile, and then its result must not outlive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    KeepResult,
    DiscardResult,
}

pub fn after_refused_success(job_exists: bool) -> Refused {
    if job_exists {
        Refused::KeepResult
    } else {
        Refused::DiscardResult
    }
}

/// `from`, failed with `reason`.
pub fn failed(from: &ImageProgress, reason: String, now: DateTime<Utc>) -> ImageProgress {
    ImageProgress {
        state: ImageState::Failed,
        error: Some(reason),
        finished_at: Some(now),
        ..from.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 3;

    fn first() -> Delivery {
        Delivery {
            attempt: 1,
            limit: 25,
        }
    }

    fn last() -> Delivery {
        Delivery {
            attempt: 25,
            limit: 25,
        }
    }

    fn with_attempts(attempts: u32) -> ImageProgress {
        ImageProgress {
            attempts,
            ..ImageProgress::queued()
        }
    }

    fn outage() -> Processed {
        Processed::Failed {
            transient: true,
            message: "object storage unavailable".into(),
        }
    }

    fn started(previous: &ImageProgress) -> ImageProgress {
        match begin(previous, MAX, Utc::now()) {
            Begin::Start(p) => p,
            other => panic!("expected a start, got {other:?}"),
        }
    }

    #[test]
    fn a_first_delivery_starts_attempt_one() {
        let p = started(&ImageProgress::queued());
        assert_eq!(
            (p.state, p.attempts, p.error),
            (ImageState::Processing, 1, None)
        );
        assert!(p.started_at.is_some());
    }

    #[test]
    fn success_records_the_size_and_is_done() {
        let s = started(&ImageProgress::queued());
        let (p, outcome) = finish(&s, Processed::Stored(123), MAX, first(), Utc::now());
        assert_eq!(
            (p.state, p.output_bytes),
            (ImageState::Succeeded, Some(123))
        );
        assert_eq!(outcome, Outcome::Done);
    }

    #[test]
    fn a_transient_failure_is_retried_then_succeeds() {
        let s = started(&ImageProgress::queued());
        let (p, outcome) = finish(&s, outage(), MAX, first(), Utc::now());
        assert_eq!(p.state, ImageState::Queued);
        assert!(p
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("attempt 1 failed, retrying")));
        assert!(matches!(outcome, Outcome::RetryLater(_)));
        // The next delivery starts attempt 2, clearing the old error.
        let again = Delivery {
            attempt: 2,
            limit: 25,
        };
        let s2 = started(&p);
        assert_eq!((s2.attempts, s2.error.clone()), (2, None));
        let (done, outcome) = finish(&s2, Processed::Stored(9), MAX, again, Utc::now());
        assert_eq!(
            (done.state, outcome),
            (ImageState::Succeeded, Outcome::Done)
        );
    }

    #[test]
    fn a_permanent_failure_fails_at_once_with_its_message() {
        let s = started(&ImageProgress::queued());
        let bad = Processed::Failed {
            transient: false,
            message: "the png image could not be decoded".into(),
        };
        let (p, outcome) = finish(&s, bad, MAX, first(), Utc::now());
        assert_eq!(p.state, ImageState::Failed);
        assert_eq!(
            p.error.as_deref(),
            Some("the png image could not be decoded")
        );
        assert_eq!(
            outcome,
            Outcome::GiveUp("the png image could not be decoded".into())
        );
    }

    #[test]
    fn transient_failures_give_up_at_the_attempt_limit() {
        let s = started(&with_attempts(MAX - 1));
        assert_eq!(s.attempts, MAX);
        let (p, outcome) = finish(&s, outage(), MAX, first(), Utc::now());
        assert_eq!(p.state, ImageState::Failed);
        let reason = format!("gave up after {MAX} attempts: object storage unavailable");
        assert_eq!(p.error.as_deref(), Some(reason.as_str()));
        assert_eq!(outcome, Outcome::GiveUp(reason));
    }

    #[test]
    fn the_queues_last_delivery_never_asks_for_a_retry() {
        let s = started(&ImageProgress::queued());
        let (p, outcome) = finish(&s, outage(), MAX, last(), Utc::now());
        assert_eq!(p.state, ImageState::Failed);
        assert!(matches!(outcome, Outcome::GiveUp(_)));
    }

    #[test]
    fn exhausted_images_settle_from_storage() {
        let previous = ImageProgress {
            state: ImageState::Processing,
            ..with_attempts(MAX)
        };
        assert_eq!(begin(&previous, MAX, Utc::now()), Begin::Exhausted);
        let (p, outcome) = settle_exhausted(&previous, Some(77), Utc::now());
        assert_eq!(
            (p.state, p.output_bytes, outcome),
            (ImageState::Succeeded, Some(77), Outcome::Done)
        );
        let (p, outcome) = settle_exhausted(&previous, None, Utc::now());
        assert_eq!(p.state, ImageState::Failed);
        assert!(p
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("gave up after 3 attempts")));
        assert!(matches!(outcome, Outcome::GiveUp(_)));
    }

    #[test]
    fn settled_images_are_dropped() {
        for state in [ImageState::Succeeded, ImageState::Failed] {
            let p = ImageProgress {
                state,
                ..with_attempts(1)
            };
            assert_eq!(begin(&p, MAX, Utc::now()), Begin::AlreadySettled);
        }
        assert_eq!(after_refused_success(false), Refused::DiscardResult);
        assert_eq!(after_refused_success(true), Refused::KeepResult);
    }

    #[test]
    fn a_stale_attempt_cannot_overwrite_a_later_one() {
        let s1 = started(&ImageProgress::queued());
        // Attempt 1 stalls; the task is re-delivered and attempt 2 starts.
        let s2 = started(&s1);
        assert!(s1.may_be_replaced_by(&s2));
        let (late, _) = finish(&s1, Processed::Stored(1), MAX, first(), Utc::now());
        assert!(
            !s2.may_be_replaced_by(&late),
            "attempt 1's outcome is refused"
        );
        let (own, _) = finish(&s2, Processed::Stored(1), MAX, first(), Utc::now());
        assert!(s2.may_be_replaced_by(&own));
        assert!(!own.may_be_replaced_by(&s2), "settled is final");
    }

    #[test]
    fn a_crash_fails_the_image_without_the_panic_text() {
        let s = started(&ImageProgress::queued());
        let (p, outcome) = crashed(&s, Utc::now());
        assert_eq!(p.state, ImageState::Failed);
        assert!(p
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("processing crashed")));
        assert!(matches!(outcome, Outcome::GiveUp(_)));
    }
}

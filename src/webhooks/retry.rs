//! What follows one delivery attempt of a webhook. A 2xx answer delivers
//! it; 410 Gone stops deliveries to that URL for the job; anything else
//! (other statuses, redirects, which are never followed, timeouts, refused
//! connections) is tried again after an exponential backoff with jitter, or
//! after the receiver's `Retry-After` on 429 and 503, until the event is
//! older than the maximum age.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this status (and `Retry-After`, if any).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: a timeout, a refused connection, an address refused by
    /// the policy. The text is for the delivery state.
    Failed(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// 410: no more deliveries to this URL for this job.
    Stop,
    RetryAt(DateTime<Utc>),
    /// Too old to try again; the reason is the last attempt's.
    GiveUp(String),
}

/// The backoff's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub first: Duration,
    pub cap: Duration,
    /// No try after the event is this old (IMGPIPE_WEBHOOK_MAX_AGE_SECS).
    pub max_age: Duration,
}

/// What follows attempt number `attempt` (1 for the first) of an event
/// made at `made`. `jitter` in [0, 1) spreads retries of many deliveries.
pub fn next(
    schedule: Schedule,
    attempt: u32,
    outcome: &Attempt,
    made: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Next {
    let (retry_after, reason) = match outcome {
        Attempt::Answered { status, .. } if (200..300).contains(status) => return Next::Delivered,
        Attempt::Answered { status: 410, .. } => return Next::Stop,
        Attempt::Answered {
            status: status @ (429 | 503),
            retry_after,
        } => (*retry_after, format!("HTTP {status}")),
        Attempt::Answered { status, .. } => (None, format!("HTTP {status}")),
        Attempt::Failed(reason) => (None, reason.clone()),
    };
    let delay = retry_after.unwrap_or_else(|| backoff(schedule, attempt, jitter));
    let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    let deadline =
        made + chrono::Duration::from_std(schedule.max_age).unwrap_or(chrono::Duration::MAX);
    if at > deadline {
        return Next::GiveUp(reason);
    }
    Next::RetryAt(at)
}

/// `first × 2^(attempt-1)`, at most `cap`, then between half and all of it.
fn backoff(schedule: Schedule, attempt: u32, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    let full = schedule
        .first
        .saturating_mul(1 << doublings)
        .min(schedule.cap);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Schedule = Schedule {
        first: Duration::from_secs(2),
        cap: Duration::from_secs(600),
        max_age: Duration::from_secs(3600),
    };

    fn answered(status: u16) -> Attempt {
        Attempt::Answered {
            status,
            retry_after: None,
        }
    }

    fn delay(next: Next, now: DateTime<Utc>) -> Duration {
        match next {
            Next::RetryAt(at) => (at - now).to_std().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn success_gone_and_the_rest() {
        let now = Utc::now();
        assert_eq!(
            next(SCHEDULE, 1, &answered(204), now, now, 0.5),
            Next::Delivered
        );
        assert_eq!(next(SCHEDULE, 3, &answered(410), now, now, 0.5), Next::Stop);
        for retried in [
            answered(500),
            answered(301),
            answered(404),
            Attempt::Failed("timed out".into()),
        ] {
            assert!(
                matches!(next(SCHEDULE, 1, &retried, now, now, 0.5), Next::RetryAt(_)),
                "{retried:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let now = Utc::now();
        let d = |attempt, jitter| {
            delay(
                next(SCHEDULE, attempt, &answered(500), now, now, jitter),
                now,
            )
        };
        assert_eq!(d(1, 1.0), Duration::from_secs(2));
        assert_eq!(d(1, 0.0), Duration::from_secs(1));
        assert_eq!(d(4, 1.0), Duration::from_secs(16));
        assert_eq!(d(30, 1.0), Duration::from_secs(600));
        assert_eq!(d(u32::MAX, 0.0), Duration::from_secs(300));
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let now = Utc::now();
        let with = |status| Attempt::Answered {
            status,
            retry_after: Some(Duration::from_secs(120)),
        };
        assert_eq!(
            delay(next(SCHEDULE, 1, &with(429), now, now, 1.0), now),
            Duration::from_secs(120)
        );
        assert_eq!(
            delay(next(SCHEDULE, 1, &with(503), now, now, 1.0), now),
            Duration::from_secs(120)
        );
        assert_eq!(
            delay(next(SCHEDULE, 1, &with(500), now, now, 1.0), now),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn too_old_events_give_up_with_the_last_reason() {
        let made = Utc::now();
        let late = made + chrono::Duration::seconds(3599);
        assert_eq!(
            next(SCHEDULE, 12, &answered(502), made, late, 0.5),
            Next::GiveUp("HTTP 502".into())
        );
        let refused = Attempt::Failed("connection refused".into());
        assert_eq!(
            next(SCHEDULE, 12, &refused, made, late, 0.5),
            Next::GiveUp("connection refused".into())
        );
    }
}

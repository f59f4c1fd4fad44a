//! Retrying transient backend errors within one attempt: exponential backoff,
//! capped, a fixed number of tries. What counts as transient is the error's
//! kind (see [`TaskError::is_transient`]); re-delivery by the queue takes over
//! once these tries are used up.

use std::future::Future;
use std::time::Duration;

use crate::codec::CodecError;
use crate::meta::MetaError;
use crate::ops::SizeError;
use crate::render::RenderError;
use crate::store::StoreError;

/// Exponential backoff for transient errors within one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub tries: u32,
}

impl Backoff {
    pub fn delay(&self, try_number: u32) -> Duration {
        let factor = 1u32.checked_shl(try_number).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// The class of a failed image's reason, for the failure metric (a label
/// with few values): read from the start of the messages this module's
/// [`TaskError`] and the decisions in `decide` write.
pub fn failure_class(reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    let has = |s: &str| reason.contains(s);
    if has("cancelled") {
        "cancelled"
    } else if has("timed out") {
        "timeout"
    } else if has("processing crashed") {
        "crashed"
    } else if has("gave up after") || has("unavailable") || has("storage") {
        "backend"
    } else if has("too large") || has("pixels") || has("empty") {
        "limits"
    } else if has("decode") || has("corrupt") || has("truncated") || has("unsupported") {
        "decode"
    } else {
        "other"
    }
}

/// Why one attempt at an image failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The image itself is bad: retrying cannot help.
    #[error("{0}")]
    Image(#[from] CodecError),
    /// The operations would make an image the service does not make (too large, or empty).
    #[error("{0}")]
    Size(#[from] SizeError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("processing crashed: {0}")]
    Crashed(String),
    /// Past IMGPIPE_TASK_TIMEOUT_SECS: failed for good, not retried.
    #[error("timed out after {0} s")]
    TimedOut(u64),
    /// Stopped because its job was deleted while it ran.
    #[error("cancelled: the job was deleted")]
    Cancelled,
}

impl From<RenderError> for TaskError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Codec(e) => TaskError::Image(e),
            RenderError::Size(e) => TaskError::Size(e),
        }
    }
}

impl TaskError {
    /// The reason recorded in the image's status, which clients (and holders
    /// of a signed link to the ZIP's manifest) read: what went wrong, without
    /// the backend's details, which only the log gets.
    pub fn reason(&self) -> String {
        match self {
            TaskError::Image(e) => e.to_string(),
            TaskError::Size(e) => e.to_string(),
            TaskError::Store(e) => e.summary(),
            TaskError::Meta(e) => e.summary(),
            TaskError::Crashed(_) => "processing crashed".to_string(),
            TaskError::TimedOut(_) | TaskError::Cancelled => self.to_string(),
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            TaskError::Image(_)
            | TaskError::Size(_)
            | TaskError::Crashed(_)
            | TaskError::TimedOut(_)
            | TaskError::Cancelled => false,
            TaskError::Store(e) => e.is_transient(),
            TaskError::Meta(e) => e.is_transient(),
        }
    }
}

/// Runs `op` until it succeeds, fails for good, or `backoff.tries` are used up.
pub async fn retrying<T, E, F, Fut>(backoff: Backoff, mut op: F) -> Result<T, TaskError>
where
    E: Into<TaskError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut try_number = 0;
    loop {
        match op().await.map_err(Into::into) {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && try_number + 1 < backoff.tries => {
                let delay = backoff.delay(try_number);
                log::debug!("transient error, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                try_number += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::backend_error::ErrorKind;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(2),
            tries: 6,
        };
        let delays: Vec<_> = (0..7).map(|i| b.delay(i).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.delay(40), Duration::from_secs(2));
    }

    #[test]
    fn image_errors_are_permanent_and_outages_transient() {
        assert!(!TaskError::Image(CodecError::Unsupported).is_transient());
        let down = StoreError::new(ErrorKind::Unavailable, "get k");
        assert!(TaskError::Store(down).is_transient());
        let missing = StoreError::new(ErrorKind::NotFound, "get k");
        assert!(!TaskError::Store(missing).is_transient());
        let refused = StoreError::new(ErrorKind::Refused, "put k");
        assert!(!TaskError::Store(refused).is_transient());
        assert!(TaskError::Meta(MetaError::new(ErrorKind::Unavailable, "x")).is_transient());
        assert!(!TaskError::Meta(MetaError::new(ErrorKind::Corrupt, "x")).is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_the_tries_run_out() {
        let backoff = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
            tries: 3,
        };
        let calls = AtomicU32::new(0);
        let result: Result<(), TaskError> = retrying(backoff, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::new(ErrorKind::Unavailable, "down"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result: Result<u8, TaskError> = retrying(backoff, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(StoreError::new(ErrorKind::Unavailable, "blip")),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(result.ok(), Some(7));

        let calls = AtomicU32::new(0);
        let result: Result<(), TaskError> = retrying(backoff, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::new(ErrorKind::NotFound, "gone"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "permanent: no retry");
    }
}

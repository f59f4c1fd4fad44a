//! Cooperative cancellation of the operations of one image: a worker past
//! its task deadline, or whose job was deleted, sets the token, and the
//! operations whose cost grows faster than their pixel count (rank and mode
//! filters, interpolated rotation) stop at their next row; every chain stops
//! at its next operation. The token is the render thread's (set with
//! [`Cancel::scope`]), so the operations' signatures stay those of pure
//! functions. Operations may then return unfinished pixels: the caller must
//! check [`Cancel::is_cancelled`] and discard the result.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    flag: AtomicBool,
    deadline: Option<Instant>,
}

thread_local! {
    static CURRENT: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

impl Cancel {
    /// A token that also trips by itself at `deadline`.
    pub fn until(deadline: Option<Instant>) -> Self {
        Cancel(Arc::new(Inner {
            flag: AtomicBool::new(false),
            deadline,
        }))
    }

    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::Relaxed) || self.0.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether the deadline (rather than `cancel`) tripped it.
    pub fn past_deadline(&self) -> bool {
        self.0.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Runs `work` with this token as the thread's current one.
    pub fn scope<T>(&self, work: impl FnOnce() -> T) -> T {
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        let result = work();
        CURRENT.with(|c| *c.borrow_mut() = previous);
        result
    }
}

/// Whether the thread's current token (if any) has tripped: checked by
/// operations between rows.
pub(crate) fn cancelled() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_token_trips_when_cancelled_or_past_its_deadline_and_only_in_scope() {
        let token = Cancel::until(None);
        assert!(!token.scope(cancelled));
        token.cancel();
        assert!(token.scope(cancelled));
        assert!(!cancelled(), "outside the scope there is no token");
        let late = Cancel::until(Some(Instant::now() - Duration::from_millis(1)));
        assert!(late.is_cancelled() && late.past_deadline());
    }
}

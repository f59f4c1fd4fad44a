//! Where a [`Handler`]'s [`Outcome`] meets apalis: the one apalis task
//! function, and the worker that runs it on either backend.
//!
//! apalis' rules, for both backends as pinned in Cargo.toml: `Ok` marks a
//! task done; an [`AbortError`] kills it (never delivered again); any other
//! error marks it failed, and it is delivered again while its attempt count
//! is below the limit (apalis-sqlite re-fetches it at once, apalis-redis
//! after as many seconds as attempts so far).

use std::sync::Arc;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};

use super::{Delivery, Handler, Outcome, ProcessImage};

/// What every apalis worker of this process carries.
#[derive(Clone)]
pub(super) struct Dispatch {
    pub handler: Arc<dyn Handler>,
    /// The delivery limit the backend was configured with.
    pub limit: u32,
}

/// The apalis task function: asks the handler, translates its answer.
pub(super) async fn deliver(
    task: ProcessImage,
    attempt: Attempt,
    dispatch: Data<Dispatch>,
) -> Result<(), BoxDynError> {
    let delivery = Delivery {
        // apalis counts this delivery before the task function runs.
        attempt: u32::try_from(attempt.current()).unwrap_or(u32::MAX),
        limit: dispatch.limit,
    };
    to_apalis(dispatch.handler.handle(task, delivery).await, delivery)
}

/// A retry asked for on the last delivery is refused here, whatever the
/// backend would do (apalis-redis only stops at its own 25).
fn to_apalis(outcome: Outcome, delivery: Delivery) -> Result<(), BoxDynError> {
    match outcome {
        Outcome::Done => Ok(()),
        Outcome::RetryLater(reason) if delivery.is_last() => {
            Err(AbortError::new(format!("{reason} (last of {} deliveries)", delivery.limit)).into())
        }
        Outcome::RetryLater(reason) => Err(reason.into()),
        Outcome::GiveUp(reason) => Err(AbortError::new(reason).into()),
    }
}

/// Runs [`deliver`] on any apalis backend, polling for tasks pushed by other
/// processes, until `$stop` resolves.
macro_rules! run_apalis_worker {
    ($backend:expr, $name:expr, $concurrency:expr, $dispatch:expr, $stop:expr) => {{
        use apalis::prelude::{BackendExt, WorkerBuilder, WorkerBuilderExt};
        let stop = $stop;
        WorkerBuilder::new($name)
            .backend($backend.poll_with_interval(std::time::Duration::from_millis(200)))
            .concurrency($concurrency)
            .data($dispatch)
            .build($crate::queue::deliver::deliver)
            .run_until(async move {
                stop.await;
                Ok::<(), std::io::Error>(())
            })
            .await
            .map_err(|e| $crate::queue::QueueError::unavailable("worker stopped", e))
    }};
}
pub(super) use run_apalis_worker;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_apalis_rules() {
        let first = Delivery {
            attempt: 1,
            limit: 3,
        };
        let last = Delivery {
            attempt: 3,
            limit: 3,
        };
        assert!(to_apalis(Outcome::Done, first).is_ok());
        let retry = to_apalis(Outcome::RetryLater("down".into()), first).expect_err("failed");
        assert!(retry.downcast_ref::<AbortError>().is_none(), "retried");
        let give_up = to_apalis(Outcome::GiveUp("bad".into()), first).expect_err("failed");
        assert!(give_up.downcast_ref::<AbortError>().is_some(), "killed");
        let no_more = to_apalis(Outcome::RetryLater("down".into()), last).expect_err("failed");
        assert!(
            no_more.downcast_ref::<AbortError>().is_some(),
            "no retry after the last"
        );
    }
}

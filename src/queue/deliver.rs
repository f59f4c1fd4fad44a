//! Where a [`Handler`]'s [`Outcome`] meets apalis: the one apalis task
//! function, and the worker that runs it on either backend.
//!
//! apalis' rules, for both backends as pinned in Cargo.toml: `Ok` marks a
//! task done; an [`AbortError`] kills it (never delivered again); any other
//! error marks it failed, and it is delivered again while its attempt count
//! is below the limit (apalis-sqlite re-fetches it at once, apalis-redis
//! after as many seconds as attempts so far).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};
use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use tokio::sync::Notify;

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

/// How often a worker looks for tasks enqueued by another process: soon
/// after its last task or wake-up, less often the longer it has been idle (a
/// quarter of its idle time, within these bounds), so that a busy worker
/// finds the next task quickly and an idle one costs next to nothing.
const POLL_MIN: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_millis(500);

/// The wait before the next look, `idle_for` after the last task.
fn poll_interval(idle_for: Duration) -> Duration {
    (idle_for / 4).clamp(POLL_MIN, POLL_MAX)
}

/// Wakes a lane's worker in this process when a task is enqueued on that
/// lane; cheap to clone. A wake given while the worker is busy is kept for
/// its next look (one permit), so none is lost.
///
/// It also keeps the lane's [`Hint`]: a wake, or a tick of the worker's
/// timer, is a reason to look in the queue again after a look found it empty.
#[derive(Clone, Default)]
pub(super) struct Wake {
    notify: Arc<Notify>,
    hint: Hint,
}

impl Wake {
    pub(super) fn now(&self) {
        self.hint.give();
        self.notify.notify_one();
    }

    /// The hint this lane's wakes and ticks give.
    pub(super) fn hint(&self) -> Hint {
        self.hint.clone()
    }

    fn waiting(&self) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let notify = self.notify.clone();
        Box::pin(async move { notify.notified().await })
    }
}

/// Whether a look in the queue may find a task, as far as this process can
/// tell: yes, unless the last look found nothing and nothing has happened
/// since that could have put a task there (an enqueue in this process, a
/// tick of the worker's timer for other processes' enqueues, a failed task
/// that is to be delivered again, a dead worker's tasks put back).
///
/// apalis looks for a task whenever its worker has a free slot and is woken,
/// and a task's end wakes it: without this, an idle lane is asked once per
/// finished task, each time a trip to the database that finds nothing.
#[derive(Clone, Default)]
pub(super) struct Hint(Arc<HintState>);

#[derive(Default)]
struct HintState {
    /// The last look found nothing.
    dry: std::sync::atomic::AtomicBool,
    /// Something happened since that may have added a task.
    given: std::sync::atomic::AtomicBool,
}

impl Hint {
    /// Something may have put a task in the queue.
    pub(super) fn give(&self) {
        self.0.given.store(true, Ordering::Release);
    }

    /// Whether to look now. Taking the hint here (before the look) is what
    /// keeps it safe: a task enqueued while the look runs gives it again.
    pub(super) fn worth_a_look(&self) -> bool {
        let given = self.0.given.swap(false, Ordering::AcqRel);
        given || !self.0.dry.load(Ordering::Acquire)
    }

    /// What the look found.
    pub(super) fn found(&self, tasks: usize) {
        self.0.dry.store(tasks == 0, Ordering::Release);
    }
}

/// When the worker looks for tasks: at once when [`Wake`] says so (a task
/// enqueued by this process, or announced by another through Redis), else
/// at the [`poll_interval`] (one enqueued by another process on SQLite). apalis' own interval strategy re-arms its timer without polling
/// it, so the fresh timer has no waker and the next tick comes only if
/// something else polls the worker first (see the test); an idle worker
/// then slept until its next heartbeat (seconds on an idle embedded server,
/// for about one job in six: README, Fair scheduling). This one polls the
/// fresh timer at once, so a wake-up is always armed.
pub(super) struct Tick {
    timer: Pin<Box<tokio::time::Sleep>>,
    wake: Wake,
    woken: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    /// When the worker last got a task or a wake-up, and its count of
    /// tasks then (apalis counts them in the snapshot).
    busy_at: tokio::time::Instant,
    tasks: u64,
}

impl Tick {
    pub(super) fn new(wake: Wake) -> Self {
        Tick {
            timer: Box::pin(tokio::time::sleep(POLL_MIN)),
            woken: wake.waiting(),
            wake,
            busy_at: tokio::time::Instant::now(),
            tasks: 0,
        }
    }
}

impl PollStrategy for Tick {
    fn poll_drive(&mut self, cx: &mut Context<'_>, snapshot: &PollSnapshot) -> Poll<Option<()>> {
        let now = tokio::time::Instant::now();
        if snapshot.total_ready != self.tasks {
            (self.tasks, self.busy_at) = (snapshot.total_ready, now);
        }
        let mut fired = false;
        while self.woken.as_mut().poll(cx).is_ready() {
            fired = true;
            self.busy_at = now;
            self.woken = self.wake.waiting();
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            fired = true;
            // Another process may have enqueued since the last look.
            self.wake.hint.give();
            let next = now + poll_interval(now - self.busy_at);
            self.timer.as_mut().reset(next);
        }
        if fired {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// Runs [`deliver`] (or the task function given) on any apalis backend, polling for tasks pushed by other
/// processes, until `$stop` resolves.
macro_rules! run_apalis_worker {
    ($backend:expr, $wake:expr, $name:expr, $concurrency:expr, $dispatch:expr, $stop:expr) => {
        $crate::queue::deliver::run_apalis_worker!(
            $backend,
            $wake,
            $name,
            $concurrency,
            $dispatch,
            $crate::queue::deliver::deliver,
            $stop
        )
    };
    ($backend:expr, $wake:expr, $name:expr, $concurrency:expr, $dispatch:expr, $task:path, $stop:expr) => {{
        use apalis::prelude::{BackendExt, WorkerBuilder, WorkerBuilderExt};
        let stop = $stop;
        let tick = $crate::queue::deliver::Tick::new($wake);
        WorkerBuilder::new($name)
            .backend($backend.poll_with_strategy(tick))
            .concurrency($concurrency)
            .data($dispatch)
            .build($task)
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

    /// Counts the wake-ups a strategy gives a task that nothing else wakes.
    async fn ticks_within(mut strategy: impl PollStrategy + Unpin, within: Duration) -> usize {
        let mut fired = 0;
        let watch = std::future::poll_fn(|cx| {
            if strategy.poll_drive(cx, &PollSnapshot::default()).is_ready() {
                fired += 1;
            }
            Poll::<()>::Pending
        });
        let _ = tokio::time::timeout(within, watch).await;
        fired
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_is_woken_every_tick() {
        // From its start: 50 ms apart at first (idle for less than 200 ms),
        // then a quarter of the idle time (the tick at 250 ms comes 62 ms
        // later), then every 500 ms.
        let tick = Tick::new(Wake::default());
        assert_eq!(ticks_within(tick, Duration::from_millis(320)).await, 6);
        let tick = Tick::new(Wake::default());
        let minute = ticks_within(tick, Duration::from_secs(60)).await;
        assert!(
            (125..=135).contains(&minute),
            "{minute} looks in an idle minute"
        );
    }

    /// apalis' interval strategy misses wake-ups: the reason for `Tick`.
    /// (Real time: its timer is not tokio's. A slow machine only lowers
    /// the count.)
    #[tokio::test]
    async fn apalis_interval_strategy_misses_ticks() {
        let theirs = apalis_core::backend::ext::poll_strategy::IntervalStrategy::new(POLL_MIN);
        let missed = ticks_within(theirs, POLL_MIN * 5 + POLL_MIN / 2).await;
        assert!(
            missed < 5,
            "apalis' interval strategy now wakes every tick: Tick may go"
        );
    }

    #[test]
    fn an_idle_worker_looks_less_often() {
        assert_eq!(poll_interval(Duration::ZERO), POLL_MIN);
        assert_eq!(
            poll_interval(Duration::from_millis(800)),
            Duration::from_millis(200)
        );
        assert_eq!(poll_interval(Duration::from_secs(60)), POLL_MAX);
    }

    // Paused time: the clock moves only when everything waits, so "before
    // the timer" is a fact of the order of events, not of the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn an_enqueue_in_this_process_wakes_the_worker_at_once() {
        let wake = Wake::default();
        // Given before the worker looks: kept, not lost.
        wake.now();
        let mut tick = Tick::new(wake.clone());
        let started = tokio::time::Instant::now();
        let first = std::future::poll_fn(|cx| tick.poll_drive(cx, &PollSnapshot::default())).await;
        assert_eq!(first, Some(()));
        let waker = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            wake.now();
        });
        std::future::poll_fn(|cx| tick.poll_drive(cx, &PollSnapshot::default())).await;
        assert!(started.elapsed() < POLL_MIN, "{:?}", started.elapsed());
        waker.await.expect("waker");
    }

    #[test]
    fn a_queue_found_empty_is_looked_in_again_only_when_hinted() {
        let hint = Hint::default();
        assert!(hint.worth_a_look(), "nothing known yet");
        hint.found(1);
        assert!(hint.worth_a_look(), "the last look found a task");
        hint.found(0);
        assert!(!hint.worth_a_look(), "found empty, nothing since");
        assert!(!hint.worth_a_look());
        hint.give();
        assert!(hint.worth_a_look(), "an enqueue, a tick, a failed task");
        assert!(!hint.worth_a_look(), "one hint, one look");
        // A hint given while a look runs is kept for the next one, whatever
        // that look finds.
        hint.give();
        assert!(hint.worth_a_look());
        hint.give();
        hint.found(0);
        assert!(hint.worth_a_look());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_and_a_tick_each_give_the_hint() {
        let wake = Wake::default();
        let hint = wake.hint();
        hint.found(0);
        wake.now();
        assert!(hint.worth_a_look(), "a wake");
        assert!(!hint.worth_a_look());
        // A fresh lane: its first wake-up is its timer's.
        let wake = Wake::default();
        let hint = wake.hint();
        hint.found(0);
        let mut tick = Tick::new(wake);
        std::future::poll_fn(|cx| tick.poll_drive(cx, &PollSnapshot::default())).await;
        assert!(hint.worth_a_look(), "a tick");
    }

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

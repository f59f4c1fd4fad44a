//! The render pools: the threads that decode, filter and encode, off the
//! async runtime, at a lower CPU priority than the runtime's threads, one
//! pool per lane. Runs one closure per image and hands its result back to
//! the awaiting task; a panic comes back as an error, never reaching rayon
//! (which would abort).
//!
//! A worker takes a few more tasks than it has render threads (see
//! `IMGPIPE_PREFETCH`), so that one image's reads and writes overlap
//! another's render. A task reads its upload, then waits for its [`Turn`]
//! (a free thread, first come first served), and gives it back the moment
//! its render ends, before its result is stored: a thread is never idle
//! while a task that could use it waits on the network or the disk. What
//! to do while waiting is the caller's; this module only hands out turns.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::jobs::Lane;
use crate::panic_guard;

/// A lane's render threads' nice value. The priority lane's at 10, so that
/// on a busy machine the API still answers at once (see README,
/// Performance: POST latency with 2 worker slots on 2 cores); the bulk
/// lane's at 19, so that while both lanes run, the kernel gives the
/// priority lane's images most of the CPU (a weight of 110 to 15). Alone,
/// either lane has all of it.
fn nice(lane: Lane) -> libc::c_int {
    match lane {
        Lane::Priority => 10,
        Lane::Bulk => 19,
    }
}

/// A lane's render threads, and the turns that hand them out.
pub struct RenderPool {
    threads: rayon::ThreadPool,
    free: Arc<Semaphore>,
}

/// The right to one render thread, from [`RenderPool::turn`] until the
/// render it is given to ends (or it is dropped unused).
pub struct Turn {
    _thread: OwnedSemaphorePermit,
}

impl RenderPool {
    /// `threads` threads for `lane` (the images it renders at once).
    /// Operations that split rows run within this pool.
    pub fn new(threads: usize, lane: Lane) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("imgpipe-{}-{i}", lane.name()))
            .start_handler(move |_| lower_priority(nice(lane)))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(RenderPool {
            threads: pool,
            free: Arc::new(Semaphore::new(threads)),
        })
    }

    /// Waits until one of the threads is free and reserves it, first come
    /// first served. `Err` only if the pool is shutting down.
    pub async fn turn(&self) -> Result<Turn, String> {
        self.free
            .clone()
            .acquire_owned()
            .await
            .map(|permit| Turn { _thread: permit })
            .map_err(|_| "the render threads stopped".to_string())
    }

    /// Runs `work` on the thread `turn` reserved and waits for it without
    /// blocking the runtime; the turn is given back as the work ends. `Err`
    /// carries the panic's message, or says the pool dropped the work.
    pub async fn run<T: Send + 'static>(
        &self,
        turn: Turn,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.threads.spawn(move || {
            let busy = metrics::gauge!(crate::telemetry::RENDER_BUSY);
            busy.increment(1.0);
            let outcome = panic_guard::catch(work);
            drop(turn);
            busy.decrement(1.0);
            let _ = done.send(outcome);
        });
        match result.await {
            Ok(outcome) => outcome,
            Err(_) => Err("the render thread stopped".into()),
        }
    }
}

fn lower_priority(nice: libc::c_int) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's id only changes its nice value.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            log::debug!("could not lower the render thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_now<T: Send + 'static>(
        pool: &RenderPool,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let turn = pool.turn().await?;
        pool.run(turn, work).await
    }

    #[tokio::test]
    async fn results_and_panics_come_back() {
        let pool = RenderPool::new(1, Lane::Bulk).expect("pool");
        assert_eq!(run_now(&pool, || 6 * 7).await, Ok(42));
        let crashed = run_now(&pool, || -> u8 { panic!("odd shape") }).await;
        assert_eq!(crashed, Err("odd shape".into()));
        // The pool survives the panic, and the panicking render gave its turn back.
        assert_eq!(run_now(&pool, || 1).await, Ok(1));
    }

    #[tokio::test]
    async fn a_turn_is_held_until_its_render_ends() {
        let pool = Arc::new(RenderPool::new(1, Lane::Bulk).expect("pool"));
        let first = pool.turn().await.expect("turn");
        // The one thread is reserved: a second turn waits.
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.turn().await.map(|_| ()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a second turn while the first is held"
        );
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let render = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(first, move || hold.recv().is_ok()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the turn is held while its render runs"
        );
        release.send(()).expect("render waiting");
        assert_eq!(render.await.expect("render task"), Ok(true));
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(
            matches!(next, Ok(Ok(Ok(())))),
            "the turn came back with the render's end"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn each_lanes_threads_run_at_its_priority() {
        for (lane, expected) in [(Lane::Priority, 10), (Lane::Bulk, 19)] {
            let pool = RenderPool::new(1, lane).expect("pool");
            // SAFETY: getpriority of the calling thread reads its nice value.
            let seen = run_now(&pool, || unsafe {
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
            });
            assert_eq!(seen.await, Ok(expected), "{lane:?}");
        }
    }
}

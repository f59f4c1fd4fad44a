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
//!
//! Each render thread is a plain thread waiting on a channel, not a rayon
//! worker: a rayon worker that runs out of work yields the CPU some thirty
//! times before it sleeps, which on small images cost as much CPU as the
//! renders and as many context switches. Operations that split rows still
//! do so with rayon: each render thread is thread 0 of a rayon pool of its
//! own (`use_current_thread`), whose other threads, at the lane's priority,
//! help only with that split work.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

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

/// One render, as a render thread runs it.
type Render = Box<dyn FnOnce() + Send>;

/// A lane's render threads, and the turns that hand them out.
pub struct RenderPool {
    /// To the threads; they stop once it is dropped.
    renders: mpsc::Sender<Render>,
    free: Arc<Semaphore>,
}

/// The right to one render thread, from [`RenderPool::turn`] until the
/// render it is given to ends (or it is dropped unused).
pub struct Turn {
    _thread: OwnedSemaphorePermit,
}

impl RenderPool {
    /// `threads` threads for `lane` (the images it renders at once).
    /// Operations that split rows use the thread's own rayon pool of as
    /// many threads (see the module doc).
    pub fn new(threads: usize, lane: Lane) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (renders, waiting) = mpsc::channel::<Render>();
        let waiting = Arc::new(Mutex::new(waiting));
        for index in 0..threads {
            let (ready, started) = mpsc::sync_channel(1);
            let waiting = waiting.clone();
            std::thread::Builder::new()
                .name(format!("imgpipe-{}-{index}", lane.name()))
                .spawn(move || render_thread(lane, index, threads, &waiting, ready))?;
            started
                .recv()
                .map_err(|_| std::io::Error::other("a render thread stopped as it started"))??;
        }
        Ok(RenderPool {
            renders,
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
        let render: Render = Box::new(move || {
            let busy = metrics::gauge!(crate::telemetry::RENDER_BUSY);
            busy.increment(1.0);
            let outcome = panic_guard::catch(work);
            drop(turn);
            busy.decrement(1.0);
            let _ = done.send(outcome);
        });
        if self.renders.send(render).is_err() {
            return Err("the render threads stopped".into());
        }
        match result.await {
            Ok(outcome) => outcome,
            Err(_) => Err("the render thread stopped".into()),
        }
    }
}

/// One render thread: lowers its priority, becomes thread 0 of its own rayon
/// pool (reporting on `ready` whether it could), then runs renders as they
/// come until the pool is dropped.
fn render_thread(
    lane: Lane,
    index: usize,
    threads: usize,
    waiting: &Mutex<mpsc::Receiver<Render>>,
    ready: mpsc::SyncSender<std::io::Result<()>>,
) {
    lower_priority(nice(lane));
    let split = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .thread_name(move |i| format!("imgpipe-{}-{index}-{i}", lane.name()))
        .start_handler(move |_| lower_priority(nice(lane)))
        .build();
    let _split = match split {
        Ok(pool) => {
            let _ = ready.send(Ok(()));
            pool
        }
        Err(e) => {
            let _ = ready.send(Err(std::io::Error::other(e)));
            return;
        }
    };
    loop {
        // The lock is held only while waiting: one thread waits on the
        // channel, the others on the lock, and a render runs unlocked.
        let next = waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        match next {
            Ok(render) => render(),
            Err(_) => return,
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

    /// Work split with rayon inside a render stays on the render thread's
    /// own pool, all of whose threads run at the lane's priority.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn split_work_runs_on_the_render_threads_pool_at_its_priority() {
        use rayon::prelude::*;

        let pool = RenderPool::new(2, Lane::Bulk).expect("pool");
        let seen = run_now(&pool, || {
            let threads = (rayon::current_thread_index(), rayon::current_num_threads());
            let nice: std::collections::BTreeSet<libc::c_int> = (0..64)
                .into_par_iter()
                .map(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    // SAFETY: getpriority of the calling thread reads its nice value.
                    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
                })
                .collect();
            (threads, nice)
        })
        .await
        .expect("render");
        assert_eq!(seen.0, (Some(0), 2), "thread 0 of a pool of two");
        assert_eq!(
            seen.1.into_iter().collect::<Vec<_>>(),
            [19],
            "every thread niced"
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

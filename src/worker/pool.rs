//! The render pools: the threads that decode, filter and encode, off the
//! async runtime, at a lower CPU priority than the runtime's threads, one
//! pool per lane. Runs one closure per image and hands its result back to
//! the awaiting task; a panic comes back as an error, never reaching rayon
//! (which would abort).

use std::sync::Arc;

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

/// `threads` threads for `lane` (the worker's concurrency). Operations that
/// split rows run within this pool.
pub fn render_pool(threads: usize, lane: Lane) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(move |i| format!("imgpipe-{}-{i}", lane.name()))
        .start_handler(move |_| lower_priority(nice(lane)))
        .build()
        .map_err(std::io::Error::other)
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

/// Runs `work` on `pool` and waits for it without blocking the runtime.
/// `Err` carries the panic's message, or says the pool dropped the work.
pub async fn run<T: Send + 'static>(
    pool: &Arc<rayon::ThreadPool>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (done, result) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        let busy = metrics::gauge!(crate::telemetry::RENDER_BUSY);
        busy.increment(1.0);
        let _ = done.send(panic_guard::catch(work));
        busy.decrement(1.0);
    });
    match result.await {
        Ok(outcome) => outcome,
        Err(_) => Err("the render thread stopped".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_and_panics_come_back() {
        let pool = Arc::new(render_pool(1, Lane::Bulk).expect("pool"));
        assert_eq!(run(&pool, || 6 * 7).await, Ok(42));
        let crashed = run(&pool, || -> u8 { panic!("odd shape") }).await;
        assert_eq!(crashed, Err("odd shape".into()));
        // The pool survives the panic.
        assert_eq!(run(&pool, || 1).await, Ok(1));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn each_lanes_threads_run_at_its_priority() {
        for (lane, expected) in [(Lane::Priority, 10), (Lane::Bulk, 19)] {
            let pool = Arc::new(render_pool(1, lane).expect("pool"));
            // SAFETY: getpriority of the calling thread reads its nice value.
            let seen = run(&pool, || unsafe {
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
            });
            assert_eq!(seen.await, Ok(expected), "{lane:?}");
        }
    }
}

//! The render pool: the threads that decode, filter and encode, off the async
//! runtime, at a lower CPU priority than the runtime's threads. Runs one
//! closure per image and hands its result back to the awaiting task; a panic
//! comes back as an error, never reaching rayon (which would abort).

use std::sync::Arc;

use crate::panic_guard;

/// As many threads as the worker's concurrency, at nice 10, so that on a
/// busy machine the API still answers at once (see README, Performance: POST
/// latency with 2 worker slots on 2 cores). Operations that split rows run
/// within this pool.
pub fn render_pool(threads: usize) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("imgpipe-render-{i}"))
        .start_handler(|_| lower_priority())
        .build()
        .map_err(std::io::Error::other)
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's id only changes its nice value.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
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
        let _ = done.send(panic_guard::catch(work));
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
        let pool = Arc::new(render_pool(1).expect("pool"));
        assert_eq!(run(&pool, || 6 * 7).await, Ok(42));
        let crashed = run(&pool, || -> u8 { panic!("odd shape") }).await;
        assert_eq!(crashed, Err("odd shape".into()));
        // The pool survives the panic.
        assert_eq!(run(&pool, || 1).await, Ok(1));
    }
}

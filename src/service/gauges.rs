//! Gauges sampled when metrics are scraped: what the queue holds now and
//! this process's memory. Read from the backends at scrape time, so every
//! process reports the same queue, and nothing polls between scrapes.

use super::JobService;
use crate::telemetry;

impl JobService {
    /// Sets the scrape-time gauges; a backend that does not answer leaves
    /// its gauges as they were (and says so in the log).
    pub async fn sample_gauges(&self) {
        match super::with_deadline(self.queue.stats()).await {
            Ok(lanes) => {
                for lane in lanes {
                    let name = lane.lane.name();
                    metrics::gauge!(telemetry::QUEUE_DEPTH, "lane" => name).set(lane.depth as f64);
                    metrics::gauge!(telemetry::QUEUE_OLDEST_AGE, "lane" => name)
                        .set(lane.oldest_age.map_or(0.0, |age| age.as_secs_f64()));
                    metrics::gauge!(telemetry::WORKERS_ALIVE, "lane" => name)
                        .set(lane.workers_alive as f64);
                }
            }
            Err(e) => log::warn!("metrics: reading the queue's state: {e}"),
        }
        match super::with_deadline(self.queue.workers()).await {
            Ok(workers) => {
                for queue in ["priority", "bulk", "webhook"] {
                    let running: u64 = workers
                        .iter()
                        .filter(|w| w.alive && w.queue == queue)
                        .map(|w| w.running)
                        .sum();
                    metrics::gauge!(telemetry::TASKS_RUNNING, "queue" => queue).set(running as f64);
                }
            }
            Err(e) => log::warn!("metrics: reading the workers: {e}"),
        }
        if let Some(bytes) = telemetry::resident_bytes() {
            metrics::gauge!(telemetry::RESIDENT_MEMORY).set(bytes as f64);
        }
    }
}

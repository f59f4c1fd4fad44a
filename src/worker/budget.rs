//! The pixel budget: bounds the pixels decoded at once in this process, so
//! that a few huge images cannot exhaust memory when concurrency is sized for
//! ordinary ones. Knows nothing of images or tasks; it counts pixels.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct PixelBudget {
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl PixelBudget {
    pub fn new(pixels: u64) -> Self {
        // Permits count pixels; a semaphore takes at most u32::MAX at once.
        let capacity = u32::try_from(pixels).unwrap_or(u32::MAX).max(1);
        PixelBudget {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// What an image of `pixels` takes; an image larger than the whole budget
    /// takes all of it (and so runs alone) rather than waiting forever.
    fn permits_for(&self, pixels: u64) -> u32 {
        u32::try_from(pixels)
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity)
    }

    /// Owned, so that the CPU work can carry it: if the task is cancelled
    /// (its worker stopped), the render still holds its pixels until it ends.
    pub async fn reserve(&self, pixels: u64) -> Option<Reserved> {
        let waiting = metrics::gauge!(crate::telemetry::PIXEL_BUDGET_WAITING);
        waiting.increment(1.0);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(self.permits_for(pixels))
            .await
            .ok();
        waiting.decrement(1.0);
        let permit = permit?;
        let reserved = Reserved {
            permit,
            budget: self.clone(),
        };
        self.report();
        Some(reserved)
    }

    /// The budget's gauges, as of now.
    fn report(&self) {
        let name = crate::telemetry::PIXEL_BUDGET;
        let free = self.permits.available_permits() as f64;
        metrics::gauge!(name, "state" => "capacity").set(f64::from(self.capacity));
        metrics::gauge!(name, "state" => "in_use").set(f64::from(self.capacity) - free);
    }
}

/// Pixels held until dropped (the render carries it to its end).
pub struct Reserved {
    permit: OwnedSemaphorePermit,
    budget: PixelBudget,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        // The permit goes back after this body: count it as gone already.
        let name = crate::telemetry::PIXEL_BUDGET;
        let free = (self.budget.permits.available_permits() + self.permit.num_permits()) as f64;
        metrics::gauge!(name, "state" => "in_use").set(f64::from(self.budget.capacity) - free);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_images_share_and_large_ones_wait() {
        let budget = PixelBudget::new(100);
        assert_eq!(budget.permits_for(0), 1);
        assert_eq!(
            budget.permits_for(10_000),
            100,
            "larger than the budget: runs alone"
        );
        let a = budget.reserve(40).await.expect("permits");
        let b = budget.reserve(40).await.expect("permits");
        // 80 of 100 taken: a 30-pixel image must wait for one to finish.
        let waiting = budget.reserve(30);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(a);
        assert!(futures::poll!(waiting.as_mut()).is_ready());
        drop(b);
        assert_eq!(PixelBudget::new(u64::MAX).capacity, u32::MAX);
    }
}

//! Fair scheduling's one rule: which of a job's images to hand to the shared
//! queue next. Pure; `service::release` reads the counters and enqueues.
//!
//! The queues underneath are FIFO (apalis-redis) or nearly so (apalis-sqlite),
//! so a job that enqueued all its images at once would hold every worker until
//! it is done. Instead each job keeps at most `ahead` images *waiting* in the
//! queue (released, not yet taken by a worker); the rest are held back and
//! released, in index order, as those are taken. Every job therefore re-enters the queue's tail
//! one image at a time, which makes the shared FIFO a round robin over jobs:
//! a new job's first image waits behind at most `ahead` images of each job
//! already running, whatever their sizes. Running images do not count, so a
//! lone job still fills every worker slot of the deployment without anyone
//! knowing how many there are.

use std::ops::Range;

/// A job's release counters, as the metadata store keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pace {
    /// Images in the job.
    pub total: usize,
    /// Images `0..released` are in the queue (or done).
    pub released: usize,
    /// First deliveries so far: images a worker has taken out of the queue.
    pub taken: usize,
}

impl Pace {
    /// A job just recorded: nothing released, nothing taken.
    pub fn new(total: usize) -> Self {
        Pace {
            total,
            ..Pace::default()
        }
    }
}

/// The images to release now: the next ones in index order, enough to bring
/// the job's waiting images (released, not yet taken) back to `ahead`; empty
/// if they already are. `ahead == 0` turns pacing off: everything at once.
///
/// Counting deliveries rather than reading every image's state keeps this
/// O(1) per delivery however big the job. The count may err one way only: a
/// task delivered a second time as if first (apalis-redis re-delivers a dead
/// worker's task without counting it) makes `taken` run ahead, so one image
/// more is released, which costs fairness a little and loses nothing. A lost
/// release (a crash) leaves `released` behind, and the next call makes up
/// for it.
pub fn to_release(pace: Pace, ahead: usize) -> Range<usize> {
    let released = pace.released.min(pace.total);
    if ahead == 0 {
        return released..pace.total;
    }
    let waiting = released.saturating_sub(pace.taken);
    let end = released.saturating_add(ahead.saturating_sub(waiting));
    released..end.min(pace.total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(total: usize, released: usize, taken: usize) -> Pace {
        Pace {
            total,
            released,
            taken,
        }
    }

    #[test]
    fn a_new_job_releases_ahead_images() {
        assert_eq!(to_release(Pace::new(400), 2), 0..2);
        assert_eq!(to_release(Pace::new(1), 2), 0..1);
        assert_eq!(to_release(Pace::new(0), 2), 0..0);
    }

    #[test]
    fn each_image_taken_is_replaced_by_the_next() {
        assert_eq!(to_release(pace(400, 2, 0), 2), 2..2, "two already wait");
        assert_eq!(to_release(pace(400, 2, 1), 2), 2..3);
        assert_eq!(to_release(pace(400, 3, 1), 2), 3..3);
        assert_eq!(to_release(pace(400, 3, 3), 2), 3..5, "two taken at once");
    }

    #[test]
    fn a_lost_release_is_made_up_by_the_next_call() {
        // Image 2 was taken, its replacement never released, then 3 taken.
        assert_eq!(to_release(pace(10, 3, 2), 2), 3..4);
        assert_eq!(to_release(pace(10, 3, 3), 2), 3..5);
    }

    #[test]
    fn a_delivery_counted_twice_releases_one_more_and_no_less() {
        assert_eq!(to_release(pace(10, 4, 5), 2), 4..6);
    }

    #[test]
    fn nothing_past_the_end() {
        assert_eq!(to_release(pace(3, 3, 3), 2), 3..3);
        assert_eq!(to_release(pace(3, 7, 3), 2), 3..3, "a count past the end");
        assert_eq!(to_release(pace(3, 2, 2), 5), 2..3);
    }

    #[test]
    fn ahead_zero_releases_everything() {
        assert_eq!(to_release(Pace::new(10), 0), 0..10);
        assert_eq!(to_release(pace(10, 4, 4), 0), 4..10);
    }
}

//! Fair scheduling's one rule: which images to hand to the shared queue
//! next, for one tenant. Pure; `service::release` reads the counters and
//! enqueues.
//!
//! The queues underneath are FIFO (apalis-redis) or nearly so (apalis-sqlite),
//! so a job that enqueued all its images at once would hold every worker until
//! it is done. Instead each tenant keeps at most `ahead` images *waiting* in
//! the queue (released, not yet taken by a worker); the rest are held back and
//! released as those are taken, one image at a time from each of the tenant's
//! jobs in turn (least recently served first). Every tenant therefore
//! re-enters the queue's tail as its images leave it, which makes the shared
//! FIFO a round robin over tenants, and within a tenant over its jobs: a new
//! tenant's first image waits behind at most `ahead` images of each tenant
//! already busy, whatever their jobs' sizes. Running images do not count, so
//! a lone job still fills every worker slot of the deployment without anyone
//! knowing how many there are.
//!
//! The counters may err one way only. `taken` counts first deliveries, and a
//! task delivered a second time as if first (apalis-redis re-delivers a dead
//! worker's task without counting it) makes it run ahead: one image more is
//! released, which costs fairness a little and loses nothing. A lost release
//! (a crash between enqueueing and recording) leaves `released` behind, and
//! the next plan releases the same image again, which the queue skips.

use std::ops::Range;

use super::JobId;

/// One of a tenant's jobs with images still waiting in the queue or held
/// back, as the metadata store counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub job: JobId,
    /// Images in the job.
    pub total: usize,
    /// Images `0..released` are in the queue (or done).
    pub released: usize,
    /// First deliveries so far: images a worker has taken out of the queue.
    pub taken: usize,
}

impl Held {
    fn waiting(&self) -> usize {
        self.released.min(self.total).saturating_sub(self.taken)
    }
}

/// The images to release now for one tenant whose jobs are `held`, least
/// recently served first: enough to bring the tenant's waiting images back
/// to `ahead`, one from each job in turn, in index order within a job.
/// `ahead == 0` turns pacing off: everything at once.
pub fn plan(held: &[Held], ahead: usize) -> Vec<(JobId, Range<usize>)> {
    let mut next: Vec<usize> = held.iter().map(|h| h.released.min(h.total)).collect();
    if ahead == 0 {
        next = held.iter().map(|h| h.total).collect();
    } else {
        let mut waiting: usize = held.iter().map(Held::waiting).sum();
        'rounds: while waiting < ahead {
            let mut gave = false;
            for (h, n) in held.iter().zip(next.iter_mut()) {
                if waiting >= ahead {
                    break 'rounds;
                }
                if *n < h.total {
                    *n += 1;
                    waiting += 1;
                    gave = true;
                }
            }
            if !gave {
                break;
            }
        }
    }
    held.iter()
        .zip(next)
        .filter(|(h, n)| *n > h.released.min(h.total))
        .map(|(h, n)| (h.job, h.released.min(h.total)..n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(total: usize, released: usize, taken: usize) -> Held {
        Held {
            job: JobId::new(),
            total,
            released,
            taken,
        }
    }

    fn ranges(plan: Vec<(JobId, Range<usize>)>) -> Vec<Range<usize>> {
        plan.into_iter().map(|(_, r)| r).collect()
    }

    #[test]
    fn a_new_job_releases_ahead_images() {
        assert_eq!(ranges(plan(&[held(400, 0, 0)], 4)), vec![0..4]);
        assert_eq!(ranges(plan(&[held(1, 0, 0)], 4)), vec![0..1]);
        assert!(plan(&[held(0, 0, 0)], 4).is_empty());
        assert!(plan(&[], 4).is_empty());
    }

    #[test]
    fn each_image_taken_is_replaced_by_the_next() {
        assert!(plan(&[held(400, 4, 0)], 4).is_empty(), "four already wait");
        assert_eq!(ranges(plan(&[held(400, 4, 1)], 4)), vec![4..5]);
        assert_eq!(ranges(plan(&[held(400, 5, 3)], 4)), vec![5..7]);
    }

    #[test]
    fn a_tenants_jobs_take_turns_least_recently_served_first() {
        // The big job was served last; the new one first.
        let (new, big) = (held(3, 0, 0), held(400, 10, 8));
        let plan = plan(&[new, big], 4);
        assert_eq!(plan, vec![(new.job, 0..1), (big.job, 10..11)]);
        let (a, b, c) = (held(5, 0, 0), held(5, 0, 0), held(5, 0, 0));
        let plan = super::plan(&[a, b, c], 4);
        assert_eq!(plan, vec![(a.job, 0..2), (b.job, 0..1), (c.job, 0..1)]);
    }

    #[test]
    fn waiting_images_of_every_job_count_against_the_tenant() {
        // 500 one-image jobs: the first four wait, the rest are held.
        let burst: Vec<Held> = (0..500).map(|_| held(1, 0, 0)).collect();
        assert_eq!(plan(&burst, 4).len(), 4);
        let mut burst = burst;
        for h in &mut burst[..4] {
            h.released = 1;
        }
        assert!(plan(&burst, 4).is_empty());
        burst[0].taken = 1;
        assert_eq!(plan(&burst, 4), vec![(burst[4].job, 0..1)]);
    }

    #[test]
    fn a_lost_release_or_a_double_count_releases_more_never_less() {
        // Two taken, one replacement lost: two now.
        assert_eq!(ranges(plan(&[held(10, 5, 3)], 4)), vec![5..7]);
        assert_eq!(ranges(plan(&[held(10, 4, 5)], 4)), vec![4..8]);
    }

    #[test]
    fn nothing_past_the_end() {
        assert!(plan(&[held(3, 3, 1)], 4).is_empty());
        assert!(plan(&[held(3, 7, 3)], 4).is_empty(), "a count past the end");
        assert_eq!(ranges(plan(&[held(3, 2, 2)], 5)), vec![2..3]);
    }

    #[test]
    fn ahead_zero_releases_everything() {
        assert_eq!(
            ranges(plan(&[held(10, 0, 0), held(3, 1, 0)], 0)),
            vec![0..10, 1..3]
        );
    }
}

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
//!
//! Two lanes, chosen per job at submission ([`lane`]): a job whose tenant has
//! little queued or running and whose images are cheap goes to the
//! **priority** lane, everything else to **bulk**. Each worker process runs
//! both, the bulk lane's render threads at a far lower CPU priority, so the
//! kernel gives a light tenant's images most of the cores even while the
//! bulk lane's long images are running (they are never preempted by the
//! queue, and turns counted in images cannot help once every slot holds
//! one). A lane is a queue of its own; turns within each are as above.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::JobId;

/// Which of the two queues a job's images go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// A light tenant's cheap images: rendered ahead of the bulk lane's.
    Priority,
    /// Everything else, and every job recorded before lanes existed.
    #[default]
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Priority, Lane::Bulk];

    pub fn name(self) -> &'static str {
        match self {
            Lane::Priority => "priority",
            Lane::Bulk => "bulk",
        }
    }

    /// A stored lane name; anything else (written by a later build) is bulk.
    pub fn named(name: &str) -> Lane {
        Lane::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .unwrap_or(Lane::Bulk)
    }
}

/// Who may use the priority lane (IMGPIPE_PRIORITY_IMAGES,
/// IMGPIPE_PRIORITY_IMAGE_COST).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorityLimits {
    /// The most images a tenant may have queued or running, this job's
    /// included; 0 turns the priority lane off.
    pub images: u64,
    /// The costliest image of the job, in estimated seconds (cost admission's
    /// estimate).
    pub image_seconds: f64,
}

/// The lane of a new job of `images` images whose costliest is estimated at
/// `costliest_seconds`, for a tenant with `active` images queued or running
/// before it. A tenant that already has a backlog, or sends a big or costly
/// job, goes to bulk; once its backlog drains, its next jobs are light again.
pub fn lane(active: u64, images: usize, costliest_seconds: f64, limits: PriorityLimits) -> Lane {
    let images = u64::try_from(images).unwrap_or(u64::MAX);
    let light = active.saturating_add(images) <= limits.images;
    if limits.images > 0 && light && costliest_seconds <= limits.image_seconds {
        Lane::Priority
    } else {
        Lane::Bulk
    }
}

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
    /// Where its images go.
    pub lane: Lane,
}

impl Held {
    fn waiting(&self) -> usize {
        self.released.min(self.total).saturating_sub(self.taken)
    }
}

/// The images to release now for one tenant whose jobs are `held`, least
/// recently served first: once no more than half of `ahead` wait, enough to
/// bring the tenant's waiting images back to `ahead`, one from each job in
/// turn, in index order within a job.
/// `ahead == 0` turns pacing off: everything at once. Both lanes count
/// against `ahead`: the tenant's turn is the same whichever lane serves it.
pub fn plan(held: &[Held], ahead: usize) -> Vec<Release> {
    let mut next: Vec<usize> = held.iter().map(|h| h.released.min(h.total)).collect();
    if ahead == 0 {
        next = held.iter().map(|h| h.total).collect();
    } else {
        let mut waiting: usize = held.iter().map(Held::waiting).sum();
        // Topped up once half of `ahead` has been taken rather than after
        // every take: each release is a lookup, an enqueue and a record, and
        // this way one serves `ahead / 2` images. At most `ahead` still wait,
        // and at least half of it while the tenant has more.
        if waiting > refill_at(ahead) {
            return Vec::new();
        }
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
        .map(|(h, n)| Release {
            job: h.job,
            images: h.released.min(h.total)..n,
            lane: h.lane,
        })
        .collect()
}

/// A tenant's waiting images are topped up to `ahead` once no more than
/// this many are left (with `ahead` 1 or 2: after every take).
fn refill_at(ahead: usize) -> usize {
    ahead / 2
}

/// Images `images` of `job`, to be enqueued on `lane`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub job: JobId,
    pub images: Range<usize>,
    pub lane: Lane,
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
            lane: Lane::Bulk,
        }
    }

    fn ranges(plan: Vec<Release>) -> Vec<Range<usize>> {
        plan.into_iter().map(|r| r.images).collect()
    }

    fn pairs(plan: Vec<Release>) -> Vec<(JobId, Range<usize>)> {
        plan.into_iter().map(|r| (r.job, r.images)).collect()
    }

    const LIMITS: PriorityLimits = PriorityLimits {
        images: 32,
        image_seconds: 2.0,
    };

    #[test]
    fn a_light_tenants_cheap_job_takes_the_priority_lane() {
        assert_eq!(lane(0, 8, 0.2, LIMITS), Lane::Priority);
        assert_eq!(lane(24, 8, 0.2, LIMITS), Lane::Priority, "32 in all");
        assert_eq!(lane(25, 8, 0.2, LIMITS), Lane::Bulk, "a backlog");
        assert_eq!(lane(0, 33, 0.2, LIMITS), Lane::Bulk, "a big job");
        assert_eq!(lane(0, 1, 2.5, LIMITS), Lane::Bulk, "a costly image");
        assert_eq!(lane(u64::MAX, 1, 0.0, LIMITS), Lane::Bulk);
        let off = PriorityLimits {
            images: 0,
            ..LIMITS
        };
        assert_eq!(lane(0, 0, 0.0, off), Lane::Bulk, "0: no priority lane");
    }

    #[test]
    fn each_release_keeps_its_jobs_lane() {
        let mut light = held(3, 0, 0);
        light.lane = Lane::Priority;
        let plan = plan(&[light, held(400, 0, 0)], 4);
        let lanes: Vec<Lane> = plan.iter().map(|r| r.lane).collect();
        assert_eq!(lanes, vec![Lane::Priority, Lane::Bulk]);
    }

    #[test]
    fn a_new_job_releases_ahead_images() {
        assert_eq!(ranges(plan(&[held(400, 0, 0)], 4)), vec![0..4]);
        assert_eq!(ranges(plan(&[held(1, 0, 0)], 4)), vec![0..1]);
        assert!(plan(&[held(0, 0, 0)], 4).is_empty());
        assert!(plan(&[], 4).is_empty());
    }

    #[test]
    fn images_taken_are_replaced_once_half_of_ahead_is_taken() {
        assert!(plan(&[held(400, 4, 0)], 4).is_empty(), "four already wait");
        assert!(plan(&[held(400, 4, 1)], 4).is_empty(), "three still wait");
        assert_eq!(ranges(plan(&[held(400, 4, 2)], 4)), vec![4..6]);
        assert_eq!(ranges(plan(&[held(400, 5, 4)], 4)), vec![5..8]);
        // With 1 or 2 ahead, after every take.
        assert_eq!(ranges(plan(&[held(400, 2, 1)], 2)), vec![2..3]);
        assert_eq!(ranges(plan(&[held(400, 1, 1)], 1)), vec![1..2]);
        assert!(plan(&[held(400, 2, 1)], 1).is_empty());
        // An odd `ahead` refills at its lower half.
        assert!(plan(&[held(400, 3, 1)], 3).is_empty());
        assert_eq!(ranges(plan(&[held(400, 3, 2)], 3)), vec![3..5]);
    }

    #[test]
    fn a_tenants_jobs_take_turns_least_recently_served_first() {
        // The big job was served last; the new one first.
        let (new, big) = (held(3, 0, 0), held(400, 10, 8));
        let plan = pairs(plan(&[new, big], 4));
        assert_eq!(plan, vec![(new.job, 0..1), (big.job, 10..11)]);
        let (a, b, c) = (held(5, 0, 0), held(5, 0, 0), held(5, 0, 0));
        let plan = pairs(super::plan(&[a, b, c], 4));
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
        assert!(plan(&burst, 4).is_empty(), "three still wait");
        burst[1].taken = 1;
        let next = vec![(burst[4].job, 0..1), (burst[5].job, 0..1)];
        assert_eq!(pairs(plan(&burst, 4)), next);
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

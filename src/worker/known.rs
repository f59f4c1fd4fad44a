//! The jobs this process's workers have read lately. A job's record never
//! changes once recorded (its images' progress lives apart), so a worker
//! reads it once per job instead of once per image: a 400-image job's
//! record is parsed once, not 400 times. Holds no progress and decides
//! nothing: whether a job still exists is the metadata store's answer at
//! every write (and `is_live`), never this cache's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::jobs::{Job, JobId};

/// The jobs, their ids in the order they were added, and how many images
/// they hold in all.
#[derive(Default)]
struct Inner {
    jobs: HashMap<JobId, Arc<Job>>,
    order: VecDeque<JobId>,
    images: usize,
}

/// Jobs holding at most `capacity` images in all (a job's record grows with
/// its images), the least recently added dropped first; the latest job is
/// kept whatever its size.
pub struct KnownJobs {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl KnownJobs {
    pub fn new(capacity: usize) -> Self {
        KnownJobs {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    pub fn get(&self, id: JobId) -> Option<Arc<Job>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.jobs.get(&id).cloned()
    }

    pub fn insert(&self, job: Job) -> Arc<Job> {
        let job = Arc::new(job);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        match inner.jobs.insert(job.id, job.clone()) {
            Some(before) => inner.images -= before.images.len(),
            None => inner.order.push_back(job.id),
        }
        inner.images += job.images.len();
        while inner.images > self.capacity && inner.order.len() > 1 {
            if let Some(gone) = inner
                .order
                .pop_front()
                .and_then(|id| inner.jobs.remove(&id))
            {
                inner.images -= gone.images.len();
            }
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_jobs_up_to_its_capacity_in_images() {
        let known = KnownJobs::new(5);
        let (a, b, c) = (Job::sample(2), Job::sample(2), Job::sample(3));
        known.insert(a.clone());
        known.insert(b.clone());
        known.insert(b.clone());
        assert_eq!(known.get(a.id).map(|j| j.images.len()), Some(2));
        known.insert(c.clone());
        assert!(known.get(a.id).is_none(), "the oldest went");
        assert!(known.get(b.id).is_some() && known.get(c.id).is_some());
        // A job larger than the capacity is kept alone.
        let d = Job::sample(9);
        known.insert(d.clone());
        assert!(known.get(d.id).is_some());
        assert!(known.get(b.id).is_none() && known.get(c.id).is_none());
    }
}

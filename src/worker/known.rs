//! The jobs this process's workers have read lately. A job's record never
//! changes once recorded (its images' progress lives apart), so a worker
//! reads it once per job instead of once per image: a 400-image job's
//! record is parsed once, not 400 times. Holds no progress and decides
//! nothing: whether a job still exists is the metadata store's answer at
//! every write (and `is_live`), never this cache's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::jobs::{Job, JobId};

/// The jobs, and their ids in the order they were added.
type Inner = (HashMap<JobId, Arc<Job>>, VecDeque<JobId>);

/// At most `capacity` jobs, the least recently added dropped first.
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
        inner.0.get(&id).cloned()
    }

    pub fn insert(&self, job: Job) -> Arc<Job> {
        let job = Arc::new(job);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (jobs, order) = &mut *inner;
        if jobs.insert(job.id, job.clone()).is_none() {
            order.push_back(job.id);
        }
        while order.len() > self.capacity {
            if let Some(oldest) = order.pop_front() {
                jobs.remove(&oldest);
            }
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_jobs_up_to_its_capacity() {
        let known = KnownJobs::new(2);
        let (a, b, c) = (Job::sample(1), Job::sample(2), Job::sample(3));
        known.insert(a.clone());
        known.insert(b.clone());
        known.insert(b.clone());
        assert_eq!(known.get(a.id).map(|j| j.images.len()), Some(1));
        known.insert(c.clone());
        assert!(known.get(a.id).is_none(), "the oldest went");
        assert!(known.get(b.id).is_some() && known.get(c.id).is_some());
    }
}

//! An in-memory [`MetaStore`] for unit tests of the code above it (the
//! worker's decisions, the job service): the same rules as the Redis and
//! SQLite stores (fencing, expiry, deletion), no server. Can be switched
//! "down" to act out an outage. Test builds only.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Backlog, Doomed, JobRecord, MetaError, MetaStore, Usage};
use crate::auth::Tenant;
use crate::backend_error::ErrorKind;
use crate::jobs::pacing::Held;
use crate::jobs::{ImageProgress, ImageState, Job, JobId};

struct Entry {
    job: Job,
    progress: Vec<Option<ImageProgress>>,
    held: Held,
    turn: i64,
    deleted: bool,
}

impl Entry {
    fn live(&self, now: DateTime<Utc>) -> bool {
        !self.deleted && self.job.expires_at > now
    }
}

#[derive(Default)]
pub struct MemoryMeta {
    jobs: Mutex<HashMap<JobId, Entry>>,
    down: AtomicBool,
    counters_only: AtomicBool,
}

impl MemoryMeta {
    /// While set, backlog reads bring no task ids along (as Redis').
    pub fn set_counters_only(&self, on: bool) {
        self.counters_only.store(on, Ordering::SeqCst);
    }

    /// While down, every call fails as an unreachable store would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn jobs(&self) -> Result<std::sync::MutexGuard<'_, HashMap<JobId, Entry>>, MetaError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(MetaError::new(
                ErrorKind::Unavailable,
                "memory store is down",
            ));
        }
        self.jobs
            .lock()
            .map_err(|_| MetaError::new(ErrorKind::Corrupt, "a test panicked holding the lock"))
    }
}

#[async_trait]
impl MetaStore for MemoryMeta {
    async fn create(&self, job: &Job) -> Result<(), MetaError> {
        let entry = Entry {
            job: job.clone(),
            progress: vec![Some(ImageProgress::queued()); job.images.len()],
            held: Held {
                job: job.id,
                total: job.images.len(),
                released: 0,
                taken: 0,
                lane: job.lane,
            },
            turn: job.created_at.timestamp_millis(),
            deleted: false,
        };
        self.jobs()?.insert(job.id, entry);
        Ok(())
    }

    async fn load(&self, id: JobId) -> Result<Option<JobRecord>, MetaError> {
        Ok(self
            .jobs()?
            .get(&id)
            .filter(|e| e.live(Utc::now()))
            .map(|e| JobRecord {
                job: e.job.clone(),
                progress: e.progress.clone(),
            }))
    }

    async fn is_live(&self, id: JobId) -> Result<bool, MetaError> {
        Ok(self.jobs()?.get(&id).is_some_and(|e| e.live(Utc::now())))
    }

    async fn image_progress(
        &self,
        id: JobId,
        index: usize,
    ) -> Result<Option<ImageProgress>, MetaError> {
        Ok(self
            .jobs()?
            .get(&id)
            .and_then(|e| e.progress.get(index).cloned().flatten()))
    }

    async fn set_image_progress(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        let mut jobs = self.jobs()?;
        let Some(entry) = jobs.get_mut(&id).filter(|e| e.live(Utc::now())) else {
            return Ok(false);
        };
        let Some(slot) = entry.progress.get_mut(index) else {
            return Ok(false);
        };
        if slot
            .as_ref()
            .is_some_and(|stored| !stored.may_be_replaced_by(progress))
        {
            return Ok(false);
        }
        *slot = Some(progress.clone());
        Ok(true)
    }

    async fn start_untouched(
        &self,
        id: JobId,
        index: usize,
        started: &ImageProgress,
    ) -> Result<bool, MetaError> {
        let mut jobs = self.jobs()?;
        let Some(entry) = jobs.get_mut(&id).filter(|e| e.live(Utc::now())) else {
            return Ok(false);
        };
        match entry.progress.get_mut(index) {
            Some(slot) if slot.as_ref().is_none_or(ImageProgress::is_untouched) => {
                *slot = Some(started.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn reopen_image(
        &self,
        id: JobId,
        index: usize,
        progress: &ImageProgress,
    ) -> Result<bool, MetaError> {
        let mut jobs = self.jobs()?;
        let Some(entry) = jobs.get_mut(&id).filter(|e| e.live(Utc::now())) else {
            return Ok(false);
        };
        match entry.progress.get_mut(index) {
            Some(slot) if slot.as_ref().is_some_and(|p| p.state == ImageState::Failed) => {
                *slot = Some(progress.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_deleted(&self, id: JobId) -> Result<Option<Job>, MetaError> {
        let mut jobs = self.jobs()?;
        Ok(jobs.get_mut(&id).filter(|e| e.live(Utc::now())).map(|e| {
            e.deleted = true;
            e.job.clone()
        }))
    }

    async fn doomed(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Doomed>, MetaError> {
        Ok(self
            .jobs()?
            .values()
            .filter(|e| !e.live(now))
            .take(limit)
            .map(|e| Doomed::of(&e.job))
            .collect())
    }

    async fn note_taken(&self, id: JobId) -> Result<Option<Tenant>, MetaError> {
        let mut jobs = self.jobs()?;
        let Some(entry) = jobs.get_mut(&id).filter(|e| e.live(Utc::now())) else {
            return Ok(None);
        };
        entry.held.taken += 1;
        Ok(Some(entry.job.tenant.clone()))
    }

    async fn backlog(&self, tenant: &Tenant, limit: usize) -> Result<Backlog, MetaError> {
        let now = Utc::now();
        let jobs = self.jobs()?;
        let mut held: Vec<&Entry> = jobs
            .values()
            .filter(|e| e.live(now) && &e.job.tenant == tenant && e.held.taken < e.held.total)
            .collect();
        held.sort_by_key(|e| (e.turn, e.job.created_at));
        let mut held_back = 0;
        held.retain(|e| {
            let waiting = e.held.taken < e.held.released;
            let first_held_back = e.held.released < e.held.total && held_back < limit;
            held_back += usize::from(e.held.released < e.held.total);
            waiting || first_held_back
        });
        // The next ids are read along, as SQLite does.
        let along = !self.counters_only.load(Ordering::SeqCst);
        let next_ids = held
            .iter()
            .filter(|e| along && e.held.released < e.held.total)
            .map(|e| {
                let images = e.job.images.iter().skip(e.held.released).take(limit);
                (e.job.id, images.map(|i| i.task_id.clone()).collect())
            })
            .collect();
        Ok(Backlog {
            held: held.iter().map(|e| e.held).collect(),
            next_ids,
        })
    }

    async fn tenants_with_backlog(&self, limit: usize) -> Result<Vec<Tenant>, MetaError> {
        let now = Utc::now();
        let mut tenants: Vec<Tenant> = self
            .jobs()?
            .values()
            .filter(|e| e.live(now) && e.held.released < e.held.total)
            .map(|e| e.job.tenant.clone())
            .collect();
        tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        tenants.dedup();
        tenants.truncate(limit);
        Ok(tenants)
    }

    async fn task_ids(
        &self,
        wanted: &[(JobId, Range<usize>)],
    ) -> Result<Vec<Vec<String>>, MetaError> {
        let jobs = self.jobs()?;
        let now = Utc::now();
        Ok(wanted
            .iter()
            .map(|(id, range)| {
                jobs.get(id)
                    .filter(|e| e.live(now))
                    .map(|e| {
                        e.job
                            .images
                            .iter()
                            .filter(|i| range.contains(&i.index))
                            .map(|i| i.task_id.clone())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn mark_released(&self, marks: &[(JobId, usize)], turn: i64) -> Result<(), MetaError> {
        let mut jobs = self.jobs()?;
        for (id, upto) in marks {
            if let Some(entry) = jobs.get_mut(id) {
                entry.held.released = entry.held.released.max((*upto).min(entry.held.total));
                entry.turn = turn;
            }
        }
        Ok(())
    }

    async fn usage(&self, tenant: &Tenant) -> Result<Usage, MetaError> {
        let now = Utc::now();
        let jobs = self.jobs()?;
        let mut usage = Usage::default();
        for e in jobs
            .values()
            .filter(|e| e.live(now) && &e.job.tenant == tenant)
        {
            usage.stored_bytes += e.job.input_bytes();
            for p in &e.progress {
                match p {
                    Some(p) if p.state.is_terminal() => {
                        usage.stored_bytes += p.output_bytes.unwrap_or(0);
                    }
                    _ => usage.active_images += 1,
                }
            }
        }
        Ok(usage)
    }

    async fn remove(&self, id: JobId) -> Result<(), MetaError> {
        self.jobs()?.remove(&id);
        Ok(())
    }

    async fn check(&self) -> Result<(), MetaError> {
        self.jobs().map(|_| ())
    }
}

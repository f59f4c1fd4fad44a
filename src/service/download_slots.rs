//! Who may start streaming a ZIP now. Two caps: one over all downloads
//! (`IMGPIPE_MAX_CONCURRENT_DOWNLOADS`: each holds a blocking thread) and one
//! per tenant whose job is downloaded (`IMGPIPE_MAX_DOWNLOADS_PER_TENANT`),
//! so one tenant's readers, slow or many, cannot take every slot from the
//! others. Counted in this process: each API process has its own slots.
//!
//! Must not wait: a download that finds no slot is refused at once (the
//! caller answers with `Retry-After`), never queued behind the slow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Tenant;

/// Why no slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Every slot of the process is taken.
    All { limit: usize },
    /// The tenant has `limit` downloads streaming already.
    Tenant { limit: usize },
}

pub struct DownloadSlots {
    all: Arc<Semaphore>,
    all_limit: usize,
    per_tenant: usize,
    streaming: Arc<Mutex<HashMap<Tenant, usize>>>,
}

/// One download's slot; freed when dropped (when the stream ends).
pub struct Slot {
    _all: OwnedSemaphorePermit,
    tenant: Tenant,
    streaming: Arc<Mutex<HashMap<Tenant, usize>>>,
}

impl DownloadSlots {
    pub fn new(all: usize, per_tenant: usize) -> Self {
        DownloadSlots {
            all: Arc::new(Semaphore::new(all)),
            all_limit: all,
            per_tenant,
            streaming: Arc::default(),
        }
    }

    /// A slot for a download of one of `tenant`'s jobs, or why there is none.
    pub fn take(&self, tenant: &Tenant) -> Result<Slot, Busy> {
        let mut streaming = self
            .streaming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = streaming.get(tenant).copied().unwrap_or(0);
        if held >= self.per_tenant {
            return Err(Busy::Tenant {
                limit: self.per_tenant,
            });
        }
        let permit = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy::All {
                limit: self.all_limit,
            })?;
        streaming.insert(tenant.clone(), held + 1);
        Ok(Slot {
            _all: permit,
            tenant: tenant.clone(),
            streaming: self.streaming.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut streaming = self
            .streaming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match streaming.get_mut(&self.tenant) {
            Some(held) if *held > 1 => *held -= 1,
            _ => {
                streaming.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Tenant {
        name.parse().expect("tenant")
    }

    #[test]
    fn one_tenant_cannot_take_every_slot() {
        let slots = DownloadSlots::new(3, 2);
        let a1 = slots.take(&tenant("a")).expect("first");
        let _a2 = slots.take(&tenant("a")).expect("second");
        assert_eq!(
            slots.take(&tenant("a")).err(),
            Some(Busy::Tenant { limit: 2 })
        );
        let _b1 = slots.take(&tenant("b")).expect("another tenant");
        assert_eq!(slots.take(&tenant("c")).err(), Some(Busy::All { limit: 3 }));
        drop(a1);
        let _a3 = slots.take(&tenant("a")).expect("a slot freed by its end");
    }

    #[test]
    fn a_finished_download_leaves_no_count_behind() {
        let slots = DownloadSlots::new(4, 1);
        for _ in 0..10 {
            drop(slots.take(&tenant("a")).expect("free again"));
        }
        assert!(slots.streaming.lock().expect("lock").is_empty());
    }
}

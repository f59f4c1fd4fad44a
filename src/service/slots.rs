//! Who may start a transfer now. Two caps: one over all of them, and one per
//! key (a tenant, or a client address), so that one tenant's requests, slow
//! or many, cannot take every slot from the others. Used for ZIP downloads
//! (`IMGPIPE_MAX_CONCURRENT_DOWNLOADS`: each holds a blocking thread;
//! `IMGPIPE_MAX_DOWNLOADS_PER_TENANT`) and for submissions
//! (`IMGPIPE_MAX_SUBMISSIONS_PER_TENANT`; their overall cap is the upload
//! budget's). Counted in this process: each API process has its own slots.
//!
//! Must not wait: a request that finds no slot is refused at once (the
//! caller answers with `Retry-After`), never queued behind the slow.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why no slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Every slot of the process is taken.
    All { limit: usize },
    /// The key holds `limit` slots already.
    Tenant { limit: usize },
}

type Held<K> = Arc<Mutex<HashMap<K, usize>>>;

pub struct Slots<K: Hash + Eq + Clone> {
    /// None: no overall cap.
    all: Option<Arc<Semaphore>>,
    all_limit: usize,
    per_key: usize,
    held: Held<K>,
}

/// One request's slot; freed when dropped (when its transfer ends).
pub struct Slot<K: Hash + Eq + Clone> {
    _all: Option<OwnedSemaphorePermit>,
    key: K,
    held: Held<K>,
}

impl<K: Hash + Eq + Clone> Slots<K> {
    /// At most `all` slots at once (None: no overall cap), `per_key` of them
    /// for one key.
    pub fn new(all: Option<usize>, per_key: usize) -> Self {
        Slots {
            all: all.map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))),
            all_limit: all.unwrap_or(usize::MAX),
            per_key,
            held: Arc::default(),
        }
    }

    /// A slot for `key`, or why there is none.
    pub fn take(&self, key: &K) -> Result<Slot<K>, Busy> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = held.get(key).copied().unwrap_or(0);
        if now >= self.per_key {
            return Err(Busy::Tenant {
                limit: self.per_key,
            });
        }
        let permit = match &self.all {
            Some(all) => Some(all.clone().try_acquire_owned().map_err(|_| Busy::All {
                limit: self.all_limit,
            })?),
            None => None,
        };
        held.insert(key.clone(), now + 1);
        Ok(Slot {
            _all: permit,
            key: key.clone(),
            held: self.held.clone(),
        })
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.get_mut(&self.key) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> String {
        name.to_string()
    }

    #[test]
    fn one_tenant_cannot_take_every_slot() {
        let slots = Slots::new(Some(3), 2);
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
        let slots = Slots::new(Some(4), 1);
        for _ in 0..10 {
            drop(slots.take(&tenant("a")).expect("free again"));
        }
        assert!(slots.held.lock().expect("lock").is_empty());
    }

    #[test]
    fn without_an_overall_cap_only_the_per_key_one_counts() {
        let slots = Slots::new(None, 1);
        let held: Vec<_> = (0..100)
            .map(|i| slots.take(&i).expect("a slot per key"))
            .collect();
        assert_eq!(slots.take(&7).err(), Some(Busy::Tenant { limit: 1 }));
        drop(held);
    }
}

//! Uploads handed from the API to the workers of the same process in
//! memory. `imgpipe serve` stores each upload as usual and also keeps its
//! bytes, within a memory budget, for the one read a worker makes of it
//! soon after (`get_bytes`), which takes them.
//!
//! Why: without it, a worker of the process that has just stored an upload
//! reads it back from the disk (or from S3): a trip to the blocking threads
//! and the device for bytes the process held a moment before, and device
//! time that the next request's uploads wait behind.
//!
//! What it keeps: only objects the `keep` rule names (inputs, read once),
//! only after the store below has them, and never more bytes than the
//! budget (an upload that does not fit is read from storage as before).
//! A copy older than [`MAX_AGE`] goes with the next upload kept; a delete
//! drops the kept copy before the stored one. Must not: answer a read with
//! anything but the stored object, or keep what the store below refused.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectStore, ObjectStream, StoreError};

/// How long a kept upload waits for its read: past it, one whose task
/// never read it (its worker died first, say; a deleted job's uploads go
/// with their delete) gives its memory to the next upload.
pub const MAX_AGE: Duration = Duration::from_secs(120);

/// An [`ObjectStore`] that hands the objects `keep` names from their write
/// to their first whole read in memory.
pub struct HandOff {
    inner: Arc<dyn ObjectStore>,
    keep: fn(&str) -> bool,
    budget: usize,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    objects: HashMap<String, (Bytes, Instant)>,
    /// Bytes in `objects`.
    bytes: usize,
    /// Keys in the order they were kept, to age them out; a key taken
    /// meanwhile is skipped.
    order: VecDeque<(String, Instant)>,
    /// Deletes so far: a write that a delete overtook (the delete ran
    /// between the write's store and its keeping) keeps nothing.
    deletes: u64,
}

impl Kept {
    /// Drops what has waited longer than [`MAX_AGE`] by `now`.
    fn age_out(&mut self, now: Instant) {
        while let Some((_, at)) = self.order.front() {
            if now.duration_since(*at) < MAX_AGE {
                break;
            }
            let Some((key, at)) = self.order.pop_front() else {
                break;
            };
            // Only the copy this entry kept: the key may have been taken
            // and kept again since.
            if self.objects.get(&key).is_some_and(|(_, kept)| *kept == at) {
                self.remove(&key);
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<Bytes> {
        let (bytes, _) = self.objects.remove(key)?;
        self.bytes -= bytes.len();
        Some(bytes)
    }
}

/// Whether an object of `size` bytes fits beside `held` bytes in `budget`.
fn fits(held: usize, size: usize, budget: usize) -> bool {
    held.checked_add(size).is_some_and(|total| total <= budget)
}

impl HandOff {
    /// Keeps up to `budget` bytes of the objects `keep` names.
    pub fn new(inner: Arc<dyn ObjectStore>, budget: usize, keep: fn(&str) -> bool) -> Self {
        HandOff {
            inner,
            keep,
            budget,
            kept: Mutex::new(Kept::default()),
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().bytes
    }

    /// The deletes so far, for [`Self::hold`].
    fn deletes(&self) -> u64 {
        self.lock().deletes
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        // Nothing in here panics while holding it; were it poisoned, its
        // counts would still be whole (each change is done under it).
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `bytes` as `key`'s copy, unless a delete ran since
    /// [`Self::deletes`] read `deletes_before`: it may have been this key's,
    /// and a copy kept now would outlive the object.
    fn hold(&self, key: &str, bytes: Bytes, deletes_before: u64) {
        let now = Instant::now();
        let mut kept = self.lock();
        kept.age_out(now);
        // A key written again replaces its copy.
        kept.remove(key);
        if kept.deletes != deletes_before || !fits(kept.bytes, bytes.len(), self.budget) {
            return;
        }
        kept.bytes += bytes.len();
        kept.objects.insert(key.to_string(), (bytes, now));
        kept.order.push_back((key.to_string(), now));
    }

    fn take(&self, key: &str) -> Option<Bytes> {
        self.lock().remove(key)
    }
}

#[async_trait]
impl ObjectStore for HandOff {
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), StoreError> {
        // A file on disk (a large upload): its bytes are not in memory to keep.
        self.inner.put_file(key, path, content_type).await
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        if !(self.keep)(key) {
            return self.inner.put_bytes(key, bytes, content_type).await;
        }
        let deletes = self.deletes();
        self.inner
            .put_bytes(key, bytes.clone(), content_type)
            .await?;
        self.hold(key, bytes, deletes);
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        if (self.keep)(key) {
            let taken = self.take(key);
            let outcome = if taken.is_some() { "memory" } else { "storage" };
            metrics::counter!(crate::telemetry::INPUT_READS, "from" => outcome).increment(1);
            if let Some(bytes) = taken {
                return Ok(bytes);
            }
        }
        self.inner.get_bytes(key).await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream, StoreError> {
        self.inner.get_stream(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        {
            let mut kept = self.lock();
            kept.deletes += 1;
            kept.remove(key);
        }
        self.inner.delete(key).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn inputs(key: &str) -> bool {
        key.contains("/input/")
    }

    fn rig(budget: usize) -> (Arc<MemoryStore>, HandOff) {
        let below = Arc::new(MemoryStore::default());
        let store = HandOff::new(below.clone(), budget, inputs);
        (below, store)
    }

    #[test]
    fn what_fits_the_budget() {
        assert!(fits(0, 10, 10));
        assert!(fits(4, 6, 10));
        assert!(!fits(5, 6, 10));
        assert!(!fits(usize::MAX, 1, usize::MAX));
        assert!(!fits(0, 1, 0));
    }

    #[tokio::test]
    async fn an_input_is_read_once_from_memory_then_from_storage() {
        let (below, store) = rig(1 << 20);
        store
            .put_bytes("jobs/a/input/0", Bytes::from_static(b"abc"), "x")
            .await
            .unwrap();
        assert_eq!(below.keys(), ["jobs/a/input/0"], "stored as well");
        assert_eq!(store.held(), 3);
        // Taken from memory: the store below, switched off, is not asked.
        below.set_down(true);
        assert_eq!(
            &store.get_bytes("jobs/a/input/0").await.unwrap()[..],
            b"abc"
        );
        assert_eq!(store.held(), 0);
        assert!(store.get_bytes("jobs/a/input/0").await.is_err());
        below.set_down(false);
        assert_eq!(
            &store.get_bytes("jobs/a/input/0").await.unwrap()[..],
            b"abc"
        );
    }

    #[tokio::test]
    async fn only_inputs_within_the_budget_are_kept() {
        let (_below, store) = rig(5);
        store
            .put_bytes("jobs/a/output/0.png", Bytes::from_static(b"out"), "x")
            .await
            .unwrap();
        assert_eq!(store.held(), 0, "an output is read by downloads, not kept");
        store
            .put_bytes("jobs/a/input/0", Bytes::from_static(b"abc"), "x")
            .await
            .unwrap();
        store
            .put_bytes("jobs/a/input/1", Bytes::from_static(b"def"), "x")
            .await
            .unwrap();
        assert_eq!(store.held(), 3, "the second did not fit beside the first");
        // Written again, a key's copy is replaced, not counted twice.
        store
            .put_bytes("jobs/a/input/0", Bytes::from_static(b"xy"), "x")
            .await
            .unwrap();
        assert_eq!(store.held(), 2);
        assert_eq!(&store.get_bytes("jobs/a/input/0").await.unwrap()[..], b"xy");
        assert_eq!(
            &store.get_bytes("jobs/a/input/1").await.unwrap()[..],
            b"def"
        );
    }

    #[tokio::test]
    async fn nothing_is_kept_that_storage_refused_or_that_was_deleted() {
        let (below, store) = rig(1 << 20);
        below.set_down(true);
        assert!(store
            .put_bytes("jobs/a/input/0", Bytes::from_static(b"abc"), "x")
            .await
            .is_err());
        assert_eq!(store.held(), 0);
        below.set_down(false);
        store
            .put_bytes("jobs/a/input/0", Bytes::from_static(b"abc"), "x")
            .await
            .unwrap();
        store.delete("jobs/a/input/0").await.expect("delete");
        assert_eq!(store.held(), 0);
        assert!(
            store.get_bytes("jobs/a/input/0").await.is_err(),
            "gone everywhere"
        );
    }

    #[tokio::test]
    async fn a_write_overtaken_by_a_delete_keeps_nothing() {
        let (_below, store) = rig(1 << 20);
        // The write has read the delete count and is storing its object
        // when a delete runs; it then comes to keep its copy.
        let before = store.deletes();
        store.delete("jobs/a/input/0").await.expect("delete");
        store.hold("jobs/a/input/0", Bytes::from_static(b"abc"), before);
        assert_eq!(store.held(), 0);
        // Without a delete in between, the copy is kept.
        store.hold(
            "jobs/a/input/0",
            Bytes::from_static(b"abc"),
            store.deletes(),
        );
        assert_eq!(store.held(), 3);
    }

    #[test]
    fn what_waited_too_long_is_dropped_by_the_next_write() {
        let mut kept = Kept::default();
        let then = Instant::now();
        for (key, at) in [("old", then), ("new", then + MAX_AGE / 2)] {
            kept.objects
                .insert(key.to_string(), (Bytes::from_static(b"abcd"), at));
            kept.order.push_back((key.to_string(), at));
            kept.bytes += 4;
        }
        kept.age_out(then + MAX_AGE);
        assert!(!kept.objects.contains_key("old"));
        assert!(kept.objects.contains_key("new"));
        assert_eq!(kept.bytes, 4);
        assert_eq!(kept.order.len(), 1);
    }
}

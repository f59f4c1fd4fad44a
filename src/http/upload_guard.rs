//! Admission of request bodies, before and while they are received: a
//! global budget of bytes being received at once (503 when it is spent, not
//! a queue of stalled connections), a free-disk watermark (507 before
//! anything is written), and a watch on each upload's pace (408 for a
//! client too slow to finish). The pace rule itself is
//! `jobs::admission::Pace`.
//!
//! A second budget bounds the uploads held in memory rather than spooled
//! to disk (`spool`); running out of it refuses nothing, the next bytes go
//! to disk.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::jobs::admission::Pace;

/// Settings and shared state, one per API process.
pub struct UploadGuard {
    /// Bytes of request bodies being received right now, across requests.
    inflight: Arc<AtomicU64>,
    max_inflight: u64,
    /// Memory holding uploads right now (their buffers as allocated),
    /// across requests.
    in_memory: Arc<AtomicU64>,
    max_in_memory: u64,
    pub pace: Pace,
    min_free_disk: u64,
    /// Where uploads land: the spool, and the object directory when
    /// objects are local files.
    disks: Vec<PathBuf>,
    pub max_fields: usize,
}

/// This request's (or file's) share of a budget, given back when it is
/// dropped.
pub struct Share {
    /// The budget's use, across its shares.
    used: Arc<AtomicU64>,
    max: u64,
    held: u64,
}

impl UploadGuard {
    pub fn new(
        max_inflight: u64,
        max_in_memory: u64,
        pace: Pace,
        min_free_disk: u64,
        disks: Vec<PathBuf>,
        max_fields: usize,
    ) -> Self {
        UploadGuard {
            inflight: Arc::default(),
            max_inflight,
            in_memory: Arc::default(),
            max_in_memory,
            pace,
            min_free_disk,
            disks,
            max_fields,
        }
    }

    pub fn share(&self) -> Share {
        Share {
            used: self.inflight.clone(),
            max: self.max_inflight,
            held: 0,
        }
    }

    /// A share of the budget of uploads held in memory.
    pub fn memory(&self) -> Share {
        Share {
            used: self.in_memory.clone(),
            max: self.max_in_memory,
            held: 0,
        }
    }

    /// The first disk under the watermark, with its free bytes.
    pub fn low_disk(&self) -> Option<u64> {
        self.disks
            .iter()
            .filter_map(|dir| free_bytes(dir))
            .find(|free| *free < self.min_free_disk)
    }

    pub fn min_free_disk(&self) -> u64 {
        self.min_free_disk
    }
}

impl Share {
    /// Takes `bytes` more for this share; `false` (nothing taken) when the
    /// process-wide budget would be exceeded.
    pub fn grow(&mut self, bytes: u64) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok();
        if taken {
            self.held += bytes;
        }
        taken
    }

    /// Gives back everything held.
    pub fn release(&mut self) {
        self.used.fetch_sub(self.held, Ordering::AcqRel);
        self.held = 0;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.release();
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a valid,
    // writable statvfs that outlives the call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn guard(max: u64, min_free: u64) -> UploadGuard {
        let pace = Pace {
            timeout: Duration::from_secs(1),
            min_bytes_per_sec: 0,
            grace: Duration::from_secs(1),
        };
        UploadGuard::new(max, max / 2, pace, min_free, vec![std::env::temp_dir()], 10)
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let g = guard(100, 0);
        let mut a = g.share();
        let mut b = g.share();
        assert!(a.grow(60));
        assert!(!b.grow(50), "over the budget: nothing taken");
        assert!(b.grow(40));
        drop(a);
        let mut c = g.share();
        assert!(c.grow(60), "a's share came back");
    }

    #[test]
    fn memory_has_a_budget_of_its_own() {
        let g = guard(100, 0);
        let mut bodies = g.share();
        assert!(bodies.grow(100), "the bodies' budget is whole");
        let mut a = g.memory();
        assert!(a.grow(50));
        assert!(!g.memory().grow(1), "memory's is 50");
        a.release();
        assert!(g.memory().grow(50), "released before being dropped");
    }

    #[test]
    fn the_watermark_reads_the_filesystem() {
        assert_eq!(guard(1, 0).low_disk(), None);
        assert!(guard(1, u64::MAX).low_disk().is_some());
    }
}

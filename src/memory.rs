//! Process-wide allocator tuning, applied once at start-up by every entry
//! point (server, `pipeline-bench`, benches). It only sets glibc malloc
//! parameters; it must not hold or cache buffers itself.
//!
//! A decoded 1080p image is a 6 MB buffer, and each task allocates several
//! (decode, each operation, encode). glibc hands buffers that large straight
//! to mmap and unmaps them on free, so every task paid ~1500 fresh page
//! faults per buffer: measured, 3 ms of a 5.7 ms sharpen and 3.3 ms of an
//! 11 ms decode. Serving buffers up to 32 MB from the heap, and keeping up
//! to 128 MB of freed heap instead of returning it at once, lets the next
//! task reuse warm pages. Larger images still use mmap, and the kept memory
//! is bounded by the pixel budget's high-water mark plus the trim threshold.

/// Buffers below this come from the heap (glibc's maximum for this setting).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of a heap beyond this is returned to the system.
const TRIM_THRESHOLD: i32 = 128 << 20;

pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before
    // any buffer this affects is allocated, and is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

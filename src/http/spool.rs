//! Receiving one file field of a multipart upload, enforcing the size limit
//! and the upload budget as bytes arrive. Knows nothing of what the file
//! holds: inspection comes after.
//!
//! A file of usual size is kept in memory while the process-wide budget for
//! that allows (`UploadGuard::memory`): it is then examined without being
//! read back, and stored in one write, or sent to S3 without ever touching
//! the local disk. A larger file, or one that arrives when the budget is
//! spent, goes to a temporary file past the page cache (`direct_io`), in
//! blocks, each one trip to tokio's blocking threads, written while the rest
//! arrives; what was held in memory before the switch is written first.

use actix_multipart::Field;
use bytes::Bytes;
use futures::StreamExt;

use super::upload_guard::Share;
use super::ApiError;
use crate::direct_io::{self, on_blocking_threads, AlignedBuf};
use crate::jobs::intake::FileProblem;
use crate::service::JobError;

/// Bytes gathered before a write to disk.
const BLOCK: usize = 256 << 10;
/// The first buffer of a file kept in memory; it doubles as it fills.
/// Room for a usual photo at once: every doubling copies what came before
/// (448 KiB of copies for a 511 KiB JPEG from 64 KiB), while room never
/// written to costs no memory (the kernel maps pages as they are touched),
/// only its count against the budget.
const FIRST: usize = 1 << 20;
/// Largest file kept in memory; beyond, it goes to disk.
const MEMORY_FILE_MAX: usize = 16 << 20;

/// Where [`spool`] put a file.
pub enum Spooled {
    /// In memory, with its share of the memory budget (given back when
    /// this drops).
    Memory { bytes: Bytes, _held: Share },
    /// In a temporary file, deleted when this drops.
    File(tempfile::TempPath),
}

/// Receives `field`; refuses it past `max_bytes`. `memory` is the file's
/// share of the memory budget, which counts the buffer it is kept in (what
/// the process holds), not only its bytes.
pub async fn spool(
    field: &mut Field,
    filename: &str,
    dir: &std::path::Path,
    max_bytes: u64,
    share: &mut Share,
    mut memory: Share,
) -> Result<Spooled, ApiError> {
    // Allocated with the first byte kept, and counted from then on.
    let mut buf: Option<AlignedBuf> = None;
    let mut disk: Option<OnDisk> = None;
    let mut received: u64 = 0;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| ApiError::Multipart(format!("{filename}: {e}")))?;
        received += chunk.len() as u64;
        if received > max_bytes {
            return Err(JobError::BadFile {
                file: filename.to_string(),
                problem: FileProblem::TooLarge { limit: max_bytes },
            }
            .into());
        }
        if !share.grow(chunk.len() as u64) {
            return Err(ApiError::UploadsBusy);
        }
        if let Some(on_disk) = disk.take() {
            disk = Some(on_disk.append(&chunk).await?);
            continue;
        }
        match room(buf.take(), chunk.len(), &mut memory) {
            Ok(mut kept) => {
                kept.extend(&chunk);
                buf = Some(kept);
            }
            // From here on, to disk: what was kept first, then the rest;
            // the memory goes back to the budget.
            Err(kept) => {
                memory.release();
                let mut on_disk = OnDisk::create(dir).await?;
                if let Some(kept) = kept {
                    on_disk = on_disk.append(kept.as_slice()).await?;
                }
                disk = Some(on_disk.append(&chunk).await?);
            }
        }
    }
    match disk {
        Some(disk) => disk.finish().await.map(Spooled::File),
        None => Ok(Spooled::Memory {
            bytes: buf.map(AlignedBuf::into_bytes).unwrap_or_default(),
            _held: memory,
        }),
    }
}

/// `buf` (none yet: an empty file) with room for `more` bytes, moved to a
/// larger buffer if need be (at least twice as large, so that a file is
/// copied about once in all), the growth taken from `memory`; `Err(buf)`
/// when the file would outgrow [`MEMORY_FILE_MAX`] or the budget.
fn room(
    buf: Option<AlignedBuf>,
    more: usize,
    memory: &mut Share,
) -> Result<AlignedBuf, Option<AlignedBuf>> {
    match buf {
        Some(buf) if buf.len() + more > MEMORY_FILE_MAX => Err(Some(buf)),
        Some(buf) if buf.spare() >= more => Ok(buf),
        buf => grown(buf, more, memory),
    }
}

/// [`room`] when `buf` has too little.
fn grown(
    buf: Option<AlignedBuf>,
    more: usize,
    memory: &mut Share,
) -> Result<AlignedBuf, Option<AlignedBuf>> {
    let (len, capacity) = buf.as_ref().map_or((0, 0), |b| (b.len(), b.capacity()));
    let size = (len + more)
        .max(2 * capacity)
        .max(FIRST)
        .next_power_of_two();
    if size > MEMORY_FILE_MAX || !memory.grow((size - capacity) as u64) {
        return Err(buf);
    }
    let mut bigger = AlignedBuf::with_capacity(size);
    if let Some(buf) = buf {
        bigger.extend(buf.as_slice());
    }
    Ok(bigger)
}

fn spool_err(e: std::io::Error) -> ApiError {
    ApiError::Spool(e.to_string())
}

/// A file being written to disk as it arrives.
struct OnDisk {
    spooled: FileSpool,
    buf: AlignedBuf,
}

impl OnDisk {
    /// Creates the temporary file, on the blocking threads (file system
    /// work, never the HTTP thread's).
    async fn create(dir: &std::path::Path) -> Result<OnDisk, ApiError> {
        let dir = dir.to_path_buf();
        let spooled = on_blocking_threads(move || FileSpool::create(&dir))
            .await
            .map_err(spool_err)?;
        Ok(OnDisk {
            spooled,
            buf: AlignedBuf::with_capacity(BLOCK),
        })
    }

    /// Adds `bytes`, writing each block as it fills.
    async fn append(mut self, mut bytes: &[u8]) -> Result<OnDisk, ApiError> {
        while !bytes.is_empty() {
            let n = bytes.len().min(self.buf.spare());
            self.buf.extend(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.spare() == 0 {
                self = self.write(false).await?;
            }
        }
        Ok(self)
    }

    /// Writes what is gathered: whole blocks, and with `last` the tail.
    async fn write(self, last: bool) -> Result<OnDisk, ApiError> {
        let OnDisk {
            mut spooled,
            mut buf,
        } = self;
        on_blocking_threads(move || {
            let whole = direct_io::write_aligned(&mut spooled.file, &buf, spooled.direct)?;
            buf.consume(whole);
            if last {
                direct_io::write_tail(&mut spooled.file, &buf, spooled.direct)?;
            }
            Ok(OnDisk { spooled, buf })
        })
        .await
        .map_err(spool_err)
    }

    async fn finish(self) -> Result<tempfile::TempPath, ApiError> {
        Ok(self.write(true).await?.spooled.path)
    }
}

/// The temporary file an upload is written to (deleted when `path` drops).
struct FileSpool {
    file: std::fs::File,
    path: tempfile::TempPath,
    /// Whether writes bypass the page cache (see `direct_io::try_direct`).
    direct: bool,
}

impl FileSpool {
    /// A new temporary file in `dir`. Blocking.
    fn create(dir: &std::path::Path) -> std::io::Result<FileSpool> {
        let (file, path) = tempfile::Builder::new()
            .prefix("imgpipe-upload-")
            .tempfile_in(dir)?
            .into_parts();
        let direct = direct_io::try_direct(&file);
        Ok(FileSpool { file, path, direct })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::upload_guard::UploadGuard;
    use crate::jobs::admission::Pace;
    use std::time::Duration;

    fn budget(bytes: u64) -> UploadGuard {
        let pace = Pace {
            timeout: Duration::from_secs(1),
            min_bytes_per_sec: 0,
            grace: Duration::from_secs(1),
        };
        UploadGuard::new(u64::MAX, bytes, pace, 0, Vec::new(), 10)
    }

    fn filled(buf: Result<AlignedBuf, Option<AlignedBuf>>, bytes: usize) -> AlignedBuf {
        let mut buf = buf.unwrap_or_else(|_| panic!("room for {bytes} more bytes"));
        buf.extend(&vec![7; bytes]);
        buf
    }

    #[test]
    fn the_budget_counts_buffers_and_a_file_that_outgrows_it_is_refused_memory() {
        let guard = budget(1 << 20);
        let mut memory = guard.memory();
        let buf = filled(room(None, 10, &mut memory), 10);
        assert!(buf.capacity() >= FIRST, "the first buffer");
        let buf = filled(room(Some(buf), 600_000, &mut memory), 600_000);
        assert!(buf.capacity() >= 1 << 20);
        assert!(
            !guard.memory().grow(1 << 12),
            "the 1 MiB buffer holds the budget"
        );
        let kept = room(Some(buf), 600_000, &mut memory)
            .err()
            .expect("past the budget");
        assert_eq!(
            kept.map(|b| b.len()),
            Some(600_010),
            "what was kept comes back whole"
        );
        memory.release();
        assert!(guard.memory().grow(1 << 20), "given back");
    }

    #[test]
    fn with_no_budget_not_even_the_first_byte_is_kept() {
        let guard = budget(0);
        assert!(room(None, 1, &mut guard.memory()).is_err());
    }

    #[test]
    fn no_file_is_kept_past_its_own_cap() {
        let guard = budget(u64::MAX);
        let mut memory = guard.memory();
        let buf = filled(room(None, MEMORY_FILE_MAX, &mut memory), MEMORY_FILE_MAX);
        assert!(room(Some(buf), 1, &mut memory).is_err());
    }
}

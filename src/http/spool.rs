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
const FIRST: usize = 64 << 10;
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
/// share of the memory budget, grown as bytes are kept.
pub async fn spool(
    field: &mut Field,
    filename: &str,
    dir: &std::path::Path,
    max_bytes: u64,
    share: &mut Share,
    mut memory: Share,
) -> Result<Spooled, ApiError> {
    let mut buf = AlignedBuf::with_capacity(FIRST);
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
        let keep = buf.len() + chunk.len() <= MEMORY_FILE_MAX && memory.grow(chunk.len() as u64);
        if keep {
            if buf.spare() < chunk.len() {
                buf = grown(buf, chunk.len());
            }
            buf.extend(&chunk);
            continue;
        }
        // From here on, to disk: what was kept first, then the rest.
        memory.release();
        let on_disk = OnDisk::create(dir).await?.append(buf.as_slice()).await?;
        disk = Some(on_disk.append(&chunk).await?);
        // The memory buffer goes with its share of the budget.
        buf = AlignedBuf::with_capacity(0);
    }
    match disk {
        Some(disk) => disk.finish().await.map(Spooled::File),
        None => Ok(Spooled::Memory {
            bytes: buf.into_bytes(),
            _held: memory,
        }),
    }
}

/// `buf` moved to a buffer with room for `more` bytes (twice as large at
/// least, so that a file is copied about once in all).
fn grown(buf: AlignedBuf, more: usize) -> AlignedBuf {
    let need = buf.len() + more;
    let mut bigger = AlignedBuf::with_capacity(need.max(2 * buf.len()).next_power_of_two());
    bigger.extend(buf.as_slice());
    bigger
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

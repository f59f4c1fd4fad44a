//! Receiving one file field of a multipart upload into a temporary file,
//! enforcing the size limit and the upload budget as bytes arrive. Knows
//! nothing of what the file holds: inspection comes after.
//!
//! The file is written past the page cache (`direct_io`), in blocks: each
//! block is one trip to tokio's blocking threads, and a photo of usual size
//! is a few of them, written while the rest of it arrives.

use actix_multipart::Field;
use futures::StreamExt;

use super::upload_guard::Share;
use super::ApiError;
use crate::direct_io::{self, on_blocking_threads, AlignedBuf};
use crate::jobs::intake::FileProblem;
use crate::service::JobError;

/// Bytes gathered before a write.
const BLOCK: usize = 256 << 10;

/// Streams `field` to a new temporary file in `dir`; refuses it past `max_bytes`.
pub async fn spool(
    field: &mut Field,
    filename: &str,
    dir: &std::path::Path,
    max_bytes: u64,
    share: &mut Share,
) -> Result<tempfile::TempPath, ApiError> {
    let spool_err = |e: std::io::Error| ApiError::Spool(e.to_string());
    // Created on the blocking threads (file system work, never the HTTP
    // thread's), before the first byte is read: an upload in progress has
    // its file.
    let dir = dir.to_path_buf();
    let mut spooled = on_blocking_threads(move || Spooled::create(&dir))
        .await
        .map_err(spool_err)?;
    let mut buf = AlignedBuf::with_capacity(BLOCK);
    let mut written: u64 = 0;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| ApiError::Multipart(format!("{filename}: {e}")))?;
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(JobError::BadFile {
                file: filename.to_string(),
                problem: FileProblem::TooLarge { limit: max_bytes },
            }
            .into());
        }
        if !share.grow(chunk.len() as u64) {
            return Err(ApiError::UploadsBusy);
        }
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let n = rest.len().min(buf.spare());
            buf.extend(&rest[..n]);
            rest = &rest[n..];
            if buf.spare() == 0 {
                (spooled, buf) = on_blocking_threads(move || {
                    let whole = direct_io::write_aligned(&mut spooled.file, &buf, spooled.direct)?;
                    buf.consume(whole);
                    Ok((spooled, buf))
                })
                .await
                .map_err(spool_err)?;
            }
        }
    }
    let spooled = on_blocking_threads(move || {
        let whole = direct_io::write_aligned(&mut spooled.file, &buf, spooled.direct)?;
        buf.consume(whole);
        direct_io::write_tail(&mut spooled.file, &buf, spooled.direct)?;
        Ok(spooled)
    })
    .await
    .map_err(spool_err)?;
    Ok(spooled.path)
}

/// The temporary file an upload is written to (deleted when `path` drops).
struct Spooled {
    file: std::fs::File,
    path: tempfile::TempPath,
    /// Whether writes bypass the page cache (see `direct_io::try_direct`).
    direct: bool,
}

impl Spooled {
    /// A new temporary file in `dir`. Blocking.
    fn create(dir: &std::path::Path) -> std::io::Result<Spooled> {
        let (file, path) = tempfile::Builder::new()
            .prefix("imgpipe-upload-")
            .tempfile_in(dir)?
            .into_parts();
        let direct = direct_io::try_direct(&file);
        Ok(Spooled { file, path, direct })
    }
}

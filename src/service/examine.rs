//! Examining a received upload, held in memory or spooled to a file: its
//! format, size and completeness (`jobs::intake`), and its digest when an
//! `Idempotency-Key` asks for one.
//! It runs on tokio's blocking threads and starts as soon as a file is
//! received (`staging`), so that it overlaps the rest of the upload instead
//! of following it; `submit` takes the results in the files' order. Decides
//! nothing: a problem is reported, and `submit` refuses the job.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::JobError;
use crate::jobs::intake::{self, Inspected, Limits};

/// One upload, as the HTTP layer received it.
#[derive(Clone)]
pub struct Upload {
    pub filename: String,
    pub content: Content,
}

/// Where an upload's bytes are.
#[derive(Clone)]
pub enum Content {
    /// Kept in memory (a usual-size file, while memory allows).
    Memory(Bytes),
    /// Spooled to a temporary file, which its owner keeps in place while
    /// the staging may read it (see `staging::Keep`).
    File(PathBuf),
}

/// What examining one upload found.
pub(super) struct Examined {
    pub inspected: Inspected,
    /// With an `Idempotency-Key` only.
    pub digest: Option<[u8; 32]>,
}

/// Examines the upload `name` (and hashes it if `hash`): blocking work,
/// for tokio's blocking threads (`staging` runs it there).
pub(super) fn examine(
    name: &str,
    content: &Content,
    limits: &Limits,
    hash: bool,
) -> Result<Examined, JobError> {
    let (digest, inspected) = match content {
        Content::Memory(bytes) => (
            hash.then(|| Sha256::digest(bytes).into()),
            intake::inspect_bytes(bytes, limits),
        ),
        Content::File(path) => (
            hash.then(|| sha256_file(path)).transpose()?,
            intake::inspect(path, limits),
        ),
    };
    let inspected = inspected.map_err(|problem| JobError::BadFile {
        file: name.to_string(),
        problem,
    })?;
    Ok(Examined { inspected, digest })
}

/// SHA-256 of a spooled upload (for idempotency fingerprints).
fn sha256_file(path: &Path) -> Result<[u8; 32], JobError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| JobError::Internal(format!("reading a spooled upload: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| JobError::Internal(format!("reading a spooled upload: {e}")))?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

//! A local file as an [`ObjectStream`]: what the local store serves, and
//! what the S3 store uploads from a spooled file. Read past the page cache,
//! as it was written (see `direct_io`), one trip to tokio's blocking
//! threads per chunk.

use std::io;
use std::path::{Path, PathBuf};

use super::ObjectStream;
use crate::direct_io::{self, on_blocking_threads};

/// Bytes per chunk: tokio's default of 4 KiB would make a trip to the
/// blocking threads for every 4 KiB.
const CHUNK: usize = 256 << 10;

/// Opens `path` and streams it; the size is known before the first chunk.
pub async fn open(path: &Path) -> io::Result<ObjectStream> {
    let path: PathBuf = path.to_path_buf();
    let (file, size) = on_blocking_threads(move || {
        let file = direct_io::open_read(&path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    })
    .await?;
    let stream = futures::stream::try_unfold(Some(file), |file| async move {
        let Some(mut file) = file else {
            return Ok(None);
        };
        let (chunk, file) = on_blocking_threads(move || {
            direct_io::read_chunk(&mut file, CHUNK).map(|chunk| (chunk, file))
        })
        .await?;
        Ok(if chunk.is_empty() {
            None
        } else {
            // A short chunk is the last.
            let more = (chunk.len() == CHUNK).then_some(file);
            Some((chunk, more))
        })
    });
    Ok(ObjectStream {
        size,
        stream: Box::pin(stream),
    })
}

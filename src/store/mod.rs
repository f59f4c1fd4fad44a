//! Object storage for uploads and results, behind one small trait.
//!
//! Two implementations: S3 (shared by many hosts) and a local directory (the
//! embedded default); `imgpipe serve` puts [`HandOff`] in front of either,
//! to give its workers the uploads it holds in memory anyway. Keys are
//! chosen by the job domain (`jobs/<id>/...`); client filenames never
//! become keys. Implementations stream: none may read a file or a stream
//! it was given whole into memory, nor an archive, and none may retry on
//! its own (the worker owns retry policy).

mod file_stream;
mod handoff;
mod local;
#[cfg(test)]
pub mod memory;
mod s3;

use std::io;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use handoff::HandOff;
pub use local::LocalStore;
pub use s3::S3Store;

/// An object's bytes as a stream, with its length known up front.
pub struct ObjectStream {
    pub size: u64,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

crate::backend_error::backend_error!(
    /// An object-store failure; its [`ErrorKind`](crate::backend_error::ErrorKind)
    /// says whether it is worth retrying (`Unavailable`), a missing object
    /// (`NotFound`) or the operator's to fix (`Refused`).
    StoreError,
    "object storage"
);

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Uploads a local file, streaming it.
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), StoreError>;
    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError>;
    /// Reads a whole object; for inputs a worker is about to decode anyway.
    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError>;
    async fn get_stream(&self, key: &str) -> Result<ObjectStream, StoreError>;
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Readiness probe: the store answers and the bucket exists.
    async fn check(&self) -> Result<(), StoreError>;
}

//! S3-compatible object storage (MinIO, AWS S3, Garage…) through the `minio` crate.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use minio::s3::builders::{ObjectContent, Size};
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as MinioError, NetworkError, S3ServerError, ValidationErr};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::response::GetObjectResponse;
use minio::s3::types::S3Api;
use minio::s3::{MinioClient, MinioClientBuilder};
use tokio_util::io::ReaderStream;

use super::{ObjectStore, ObjectStream, StoreError};

/// A request that takes longer than this is treated as an outage, so a stalled
/// store turns into a retry instead of a hung task or request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct S3Store {
    client: MinioClient,
    bucket: String,
}

impl S3Store {
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
        bucket: &str,
    ) -> Result<Self, StoreError> {
        let mut base_url: BaseUrl = endpoint
            .parse()
            .map_err(|e| StoreError::Failed(format!("invalid S3 endpoint {endpoint:?}: {e}")))?;
        base_url.region = region
            .parse()
            .map_err(|e| StoreError::Failed(format!("invalid S3 region {region:?}: {e:?}")))?;
        let client = MinioClientBuilder::new(base_url)
            .provider(Some(StaticProvider::new(access_key, secret_key, None)))
            .skip_region_lookup(true)
            .build()
            .map_err(|e| StoreError::Failed(format!("cannot build S3 client: {}", describe(&e))))?;
        Ok(S3Store {
            client,
            bucket: bucket.to_string(),
        })
    }

    async fn bucket_exists(&self) -> Result<bool, StoreError> {
        let answer = timed(
            self.client
                .bucket_exists(&self.bucket)
                .map_err(validation)?
                .build()
                .send(),
        )
        .await?;
        Ok(answer.exists())
    }

    /// Creates the bucket if it does not exist yet.
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        if !self.bucket_exists().await? {
            let created = timed(
                self.client
                    .create_bucket(&self.bucket)
                    .map_err(validation)?
                    .build()
                    .send(),
            )
            .await;
            match created {
                Ok(_) => {}
                // Another process may have created it in between.
                Err(StoreError::Failed(msg)) if msg.contains("BucketAlready") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn get_object(&self, key: &str) -> Result<GetObjectResponse, StoreError> {
        timed(
            self.client
                .get_object(&self.bucket, key)
                .map_err(validation)?
                .build()
                .send(),
        )
        .await
    }

    /// The one upload path: content with a known size, streamed. minio reads
    /// one part into memory before sending it, so the part size (not the file
    /// size) bounds an upload's memory; larger objects go up as multipart.
    async fn put_content(
        &self,
        key: &str,
        content: ObjectContent,
        content_type: &str,
    ) -> Result<(), StoreError> {
        timed(
            self.client
                .put_object_content(&self.bucket, key, content)
                .map_err(validation)?
                .content_type(content_type.to_string())
                .part_size(Size::Known(PART_SIZE))
                .build()
                .send(),
        )
        .await?;
        Ok(())
    }
}

/// 8 MiB: S3's minimum part is 5 MiB; minio's default of 64 MiB would hold
/// every upload under the 50 MiB file limit whole in memory.
const PART_SIZE: u64 = 8 * 1024 * 1024;

fn validation(e: impl std::fmt::Debug) -> StoreError {
    StoreError::Failed(format!("invalid S3 request: {e:?}"))
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, MinioError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {REQUEST_TIMEOUT:?}"
        ))),
    }
}

fn describe(e: &MinioError) -> String {
    // minio's Display hides the cause ("Network error occurred"); the chain has it.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// S3 error codes that mean "try again later". minio lower-cases codes it
/// does not know (`OtherError("slowdown")`), so the match ignores case.
fn is_retryable_s3_code(code: &str) -> bool {
    [
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "XMinioServerNotInitialized",
    ]
    .iter()
    .any(|retryable| retryable.eq_ignore_ascii_case(code))
}

fn classify(e: MinioError) -> StoreError {
    let text = describe(&e);
    match &e {
        MinioError::Network(NetworkError::ServerError(_)) | MinioError::Network(_) => {
            StoreError::Unavailable(text)
        }
        MinioError::DriveIo(_) => StoreError::Unavailable(text),
        // minio 0.4 reports every transport failure (refused, reset, timeout,
        // a body cut off mid-read) as a reqwest error inside `Validation`.
        MinioError::Validation(ValidationErr::HttpError(_)) => StoreError::Unavailable(text),
        MinioError::S3Server(S3ServerError::S3Error(resp)) => match resp.code() {
            MinioErrorCode::NoSuchKey => StoreError::NotFound(resp.resource().to_string()),
            MinioErrorCode::NoSuchBucket => StoreError::Unavailable(text),
            // Server-side trouble that S3 itself tells clients to retry.
            MinioErrorCode::OtherError(code) if is_retryable_s3_code(&code) => {
                StoreError::Unavailable(text)
            }
            _ => StoreError::Failed(text),
        },
        MinioError::S3Server(S3ServerError::HttpError(status, _))
        | MinioError::S3Server(S3ServerError::InvalidServerResponse {
            http_status_code: status,
            ..
        }) if *status >= 500 => StoreError::Unavailable(text),
        _ => StoreError::Failed(text),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), StoreError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StoreError::Failed(format!("cannot open {}: {e}", path.display())))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| StoreError::Failed(format!("cannot stat {}: {e}", path.display())))?
            .len();
        let content = ObjectContent::new_from_stream(
            ReaderStream::with_capacity(file, 256 * 1024),
            Some(size),
        );
        self.put_content(key, content, content_type).await
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let size = bytes.len() as u64;
        let content = ObjectContent::new_from_stream(
            futures::stream::once(async move { Ok(bytes) }),
            Some(size),
        );
        self.put_content(key, content, content_type).await
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        let resp = self.get_object(key).await?;
        timed(resp.into_bytes()).await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream, StoreError> {
        let resp = self.get_object(key).await?;
        let (stream, size) = resp.into_boxed_stream().map_err(classify)?;
        Ok(ObjectStream {
            size,
            stream: stream.map_err(std::io::Error::other).boxed(),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match timed(
            self.client
                .delete_object(&self.bucket, key)
                .map_err(validation)?
                .build()
                .send(),
        )
        .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        if self.bucket_exists().await? {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "bucket {:?} does not exist",
                self.bucket
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn throttling_and_server_errors_are_retryable_whatever_their_case() {
        for code in [
            "SlowDown",
            "InternalError",
            "ServiceUnavailable",
            "XMinioServerNotInitialized",
        ] {
            // The form minio hands us: an unknown code, lower-cased.
            let parsed = MinioErrorCode::from_str(code).unwrap();
            let MinioErrorCode::OtherError(text) = parsed else {
                panic!("{code} is now a known minio code; match it explicitly in classify");
            };
            assert!(is_retryable_s3_code(&text), "{code} -> {text}");
        }
        assert!(!is_retryable_s3_code("AccessDenied"));
        assert!(!is_retryable_s3_code("accessdenied"));
    }
}

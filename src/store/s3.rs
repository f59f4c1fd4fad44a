//! S3-compatible object storage (MinIO, AWS S3, Garage…) through the `minio` crate.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use minio::s3::builders::{ObjectContent, Size};
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as MinioError, NetworkError, S3ServerError, ValidationErr};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::response::GetObjectResponse;
use minio::s3::types::S3Api;
use minio::s3::{MinioClient, MinioClientBuilder};

use super::{ObjectStore, ObjectStream, StoreError};
use crate::backend_error::ErrorKind;

/// A request that takes longer than this is treated as an outage, so a stalled
/// store turns into a retry instead of a hung task or request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Not `Debug`: the client holds the credentials.
#[derive(Clone)]
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
            .map_err(|e| refused(format!("invalid S3 endpoint {endpoint:?}"), e))?;
        base_url.region = region
            .parse()
            .map_err(|e| refused(format!("invalid S3 region {region:?}"), e))?;
        let client = MinioClientBuilder::new(base_url)
            .provider(Some(StaticProvider::new(access_key, secret_key, None)))
            .skip_region_lookup(true)
            .build()
            .map_err(|e| refused("cannot build the S3 client", e))?;
        Ok(S3Store {
            client,
            bucket: bucket.to_string(),
        })
    }

    async fn bucket_exists(&self) -> Result<bool, StoreError> {
        let answer = timed(
            "bucket exists",
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
            let create = self
                .client
                .create_bucket(&self.bucket)
                .map_err(validation)?
                .build()
                .send();
            match tokio::time::timeout(REQUEST_TIMEOUT, create).await {
                Ok(Ok(_)) => {}
                // Another process may have created it in between.
                Ok(Err(e)) if bucket_already_there(&e) => {}
                Ok(Err(e)) => return Err(classify("create bucket", e)),
                Err(_) => return Err(no_answer("create bucket")),
            }
        }
        Ok(())
    }

    async fn get_object(&self, key: &str) -> Result<GetObjectResponse, StoreError> {
        timed(
            &format!("get {key}"),
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
            &format!("put {key}"),
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

fn refused(context: impl Into<String>, e: impl std::fmt::Debug) -> StoreError {
    // Some minio builder errors are not `std::error::Error`; their Debug text
    // is the detail.
    StoreError::new(ErrorKind::Refused, format!("{}: {e:?}", context.into()))
}

fn validation(e: ValidationErr) -> StoreError {
    StoreError::with_source(ErrorKind::Refused, "invalid S3 request", e)
}

fn no_answer(context: &str) -> StoreError {
    StoreError::new(
        ErrorKind::Unavailable,
        format!("{context}: no answer within {REQUEST_TIMEOUT:?}"),
    )
}

async fn timed<T>(
    context: &str,
    fut: impl std::future::Future<Output = Result<T, MinioError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(context, e)),
        Err(_) => Err(no_answer(context)),
    }
}

fn bucket_already_there(e: &MinioError) -> bool {
    match e {
        MinioError::S3Server(S3ServerError::S3Error(resp)) => match resp.code() {
            MinioErrorCode::BucketAlreadyOwnedByYou => true,
            MinioErrorCode::OtherError(code) => code.eq_ignore_ascii_case("BucketAlreadyExists"),
            _ => false,
        },
        _ => false,
    }
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

/// What kind of failure a minio error is, from its variant and S3 error code.
fn kind_of(e: &MinioError) -> ErrorKind {
    match e {
        MinioError::Network(NetworkError::ServerError(_)) | MinioError::Network(_) => {
            ErrorKind::Unavailable
        }
        MinioError::DriveIo(_) => ErrorKind::Unavailable,
        // minio 0.4 reports every transport failure (refused, reset, timeout,
        // a body cut off mid-read) as a reqwest error inside `Validation`.
        MinioError::Validation(ValidationErr::HttpError(_)) => ErrorKind::Unavailable,
        MinioError::S3Server(S3ServerError::S3Error(resp)) => match resp.code() {
            MinioErrorCode::NoSuchKey => ErrorKind::NotFound,
            MinioErrorCode::NoSuchBucket => ErrorKind::Unavailable,
            // Server-side trouble that S3 itself tells clients to retry.
            MinioErrorCode::OtherError(code) if is_retryable_s3_code(&code) => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Refused,
        },
        MinioError::S3Server(S3ServerError::HttpError(status, _))
        | MinioError::S3Server(S3ServerError::InvalidServerResponse {
            http_status_code: status,
            ..
        }) if *status >= 500 => ErrorKind::Unavailable,
        _ => ErrorKind::Refused,
    }
}

fn classify(context: &str, e: MinioError) -> StoreError {
    StoreError::with_source(kind_of(&e), context, e)
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), StoreError> {
        let object = super::file_stream::open(path).await.map_err(|e| {
            StoreError::with_source(
                ErrorKind::Refused,
                format!("cannot read {}", path.display()),
                e,
            )
        })?;
        let content = ObjectContent::new_from_stream(object.stream, Some(object.size));
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
        timed(&format!("get {key}"), resp.into_bytes()).await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream, StoreError> {
        let resp = self.get_object(key).await?;
        let (stream, size) = resp
            .into_boxed_stream()
            .map_err(|e| classify(&format!("get {key}"), e))?;
        // Every read has a deadline: a storage server that stops sending
        // mid-object must not hold a download (and its thread) forever.
        let context = format!("get {key}");
        let stream = futures::stream::unfold(Some(stream), move |stream| {
            let context = context.clone();
            async move {
                let mut stream = stream?;
                match tokio::time::timeout(REQUEST_TIMEOUT, stream.next()).await {
                    Ok(Some(chunk)) => Some((chunk.map_err(std::io::Error::other), Some(stream))),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "{context}: object storage sent nothing for {REQUEST_TIMEOUT:?}"
                            ),
                        )),
                        None,
                    )),
                }
            }
        });
        Ok(ObjectStream {
            size,
            stream: stream.boxed(),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match timed(
            &format!("delete {key}"),
            self.client
                .delete_object(&self.bucket, key)
                .map_err(validation)?
                .build()
                .send(),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        if self.bucket_exists().await? {
            Ok(())
        } else {
            Err(StoreError::new(
                ErrorKind::Unavailable,
                format!("bucket {:?} does not exist", self.bucket),
            ))
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

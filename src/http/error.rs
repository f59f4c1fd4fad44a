//! The one mapping from errors to HTTP: status code, stable `code` string and
//! a JSON body `{"error": {"code", "message", "file", "request_id"}}`.
//! A 5xx says what happened in words a client can use; its details (paths,
//! object keys, backend error chains) go to the log under the request id.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::auth::Denied;
use super::request_id;
use crate::auth::idempotency::BadKey;
use crate::auth::links::LinkError;
use crate::backend_error::ErrorKind;
use crate::jobs::admission::TooSlow;
use crate::jobs::intake::FileProblem;
use crate::jobs::RecipeError;
use crate::ops::SpecError;
use crate::service::JobError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Job(#[from] JobError),
    /// The body is not valid multipart/form-data.
    #[error("invalid multipart body: {0}")]
    Multipart(String),
    #[error("unexpected multipart field {0:?}; images go in \"files\", options in \"filter\", \"ops\", \"format\", \"quality\", \"lossless\", \"webhook_url\", \"webhook_events\"")]
    UnexpectedField(String),
    #[error("field {field:?} is too long or not UTF-8 text")]
    BadField { field: String },
    #[error("invalid {what}: {given:?}")]
    BadPath { what: &'static str, given: String },
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("invalid query string: {0}")]
    BadQuery(String),
    #[error("invalid {name} header: {given:?} ({expected})")]
    BadHeader {
        name: &'static str,
        given: String,
        expected: &'static str,
    },
    #[error("could not spool upload: {0}")]
    Spool(String),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    BadIdempotencyKey(#[from] BadKey),
    #[error("the server is receiving as many uploads as it takes at once (IMGPIPE_MAX_INFLIGHT_UPLOAD_BYTES); retry shortly")]
    UploadsBusy,
    #[error("the server's disk is nearly full ({free} bytes free, under the {min} bytes kept free: IMGPIPE_MIN_FREE_DISK_BYTES); nothing was stored; retry later")]
    InsufficientStorage { free: u64, min: u64 },
    #[error("the upload {0} ({setting}); the request was cut", setting = upload_setting(.0))]
    UploadTooSlow(TooSlow),
    #[error("too many multipart fields: at most {limit} per request")]
    TooManyFields { limit: usize },
}

/// The setting behind an upload's cut.
fn upload_setting(e: &TooSlow) -> &'static str {
    match e {
        TooSlow::Deadline(_) => "IMGPIPE_UPLOAD_TIMEOUT_SECS",
        TooSlow::Rate { .. } => "IMGPIPE_MIN_UPLOAD_BYTES_PER_SEC",
    }
}

impl From<RecipeError> for ApiError {
    fn from(e: RecipeError) -> Self {
        ApiError::Job(JobError::Recipe(e))
    }
}

impl ApiError {
    /// Stable machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Job(e) => match e {
                JobError::Recipe(e) => match e {
                    RecipeError::InvalidOps { error, .. } => match error {
                        SpecError::Unknown { .. } => "unknown_operation",
                        SpecError::BadArgument { .. } => "invalid_argument",
                        SpecError::TooLong { .. } => "chain_too_long",
                        SpecError::Empty | SpecError::EmptyPiece { .. } => "missing_operation",
                    },
                    RecipeError::MissingOps => "missing_operation",
                    RecipeError::FilterAndOps => "filter_and_ops",
                    RecipeError::OutputTooLarge(_) => "output_too_large",
                    RecipeError::UnknownFormat { .. } => "unknown_format",
                    RecipeError::InvalidQuality { .. } => "invalid_quality",
                    RecipeError::InvalidLossless { .. } => "invalid_lossless",
                },
                JobError::NoFiles => "no_files",
                JobError::BadWebhook(_) => "invalid_webhook",
                JobError::TooCostly { .. } => "too_costly",
                JobError::TooManyFiles { .. } => "too_many_files",
                JobError::BadFile { problem, .. } => match problem {
                    FileProblem::Empty => "empty_file",
                    FileProblem::TooLarge { .. } => "file_too_large",
                    FileProblem::UnsupportedFormat => "unsupported_format",
                    FileProblem::TooManyPixels { .. } => "too_many_pixels",
                    FileProblem::Truncated { .. } => "truncated_image",
                    FileProblem::Corrupt { .. } => "corrupt_image",
                    FileProblem::Unreadable { .. } => "unreadable_image",
                },
                JobError::JobNotFound(_) => "job_not_found",
                JobError::ImageNotFound { .. } => "image_not_found",
                JobError::NotRetryable { .. } => "not_retryable",
                JobError::ImageNotReady { .. } => "image_not_ready",
                JobError::ImageFailed { .. } => "image_failed",
                JobError::NotFinished(_) => "job_not_finished",
                JobError::Store(_) | JobError::Meta(_) | JobError::Queue(_) => {
                    match (e, e.backend_kind()) {
                        (_, Some(ErrorKind::Unavailable)) => "service_unavailable",
                        (JobError::Store(_), Some(ErrorKind::Refused)) => "storage_error",
                        _ => "internal_error",
                    }
                }
                JobError::SubmissionInProgress => "idempotency_key_in_use",
                JobError::DownloadsBusy { .. } => "server_busy",
                JobError::QuotaExceeded { .. } => "quota_exceeded",
                JobError::IdempotencyMismatch => "idempotency_key_reused",
                JobError::Internal(_) => "internal_error",
            },
            ApiError::Multipart(_) => "invalid_multipart",
            ApiError::UnexpectedField(_) => "unexpected_field",
            ApiError::BadField { .. } => "invalid_field",
            ApiError::BadPath { .. } => "invalid_path",
            ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BadQuery(_) => "invalid_query",
            ApiError::BadHeader { .. } => "invalid_header",
            ApiError::Spool(_) => "service_unavailable",
            ApiError::Denied(denied) => match denied {
                Denied::MissingKey => "missing_key",
                Denied::InvalidKey => "invalid_key",
                Denied::MalformedHeader => "malformed_authorization",
                Denied::MissingScope(_) => "forbidden",
                Denied::Link(LinkError::Expired) => "link_expired",
                Denied::Link(LinkError::BadSignature) => "invalid_link",
            },
            ApiError::BadIdempotencyKey(_) => "invalid_idempotency_key",
            ApiError::UploadsBusy => "server_busy",
            ApiError::InsufficientStorage { .. } => "insufficient_storage",
            ApiError::UploadTooSlow(_) => "upload_too_slow",
            ApiError::TooManyFields { .. } => "too_many_fields",
        }
    }

    /// For an invalid operation chain: the operation at fault and its usage.
    fn operation(&self) -> (Option<&str>, Option<&str>) {
        match self {
            ApiError::Job(JobError::Recipe(RecipeError::InvalidOps { error, .. })) => {
                (error.operation(), error.usage())
            }
            ApiError::Job(JobError::Recipe(RecipeError::OutputTooLarge(e))) => (Some(e.op()), None),
            ApiError::Job(JobError::TooCostly { problem, .. }) => (problem.op(), None),
            _ => (None, None),
        }
    }

    /// The message for clients: the domain's, with what this API adds
    /// (parameter names, how to ask again).
    fn message(&self) -> String {
        match self {
            ApiError::Job(JobError::Recipe(RecipeError::MissingOps)) => format!(
                "no operation given; pass ?filter=NAME or ?ops=A,B,C (operations: {})",
                crate::ops::names().join(", ")
            ),
            ApiError::Job(JobError::NoFiles) => {
                "no images uploaded; send one or more files in the multipart field \"files\""
                    .to_string()
            }
            ApiError::Job(e @ JobError::NotFinished(_)) => {
                format!("{e}; retry later or pass ?partial=true")
            }
            // Server-side failures, in words a client can use: which part
            // failed and whether to retry. The details are in the log.
            ApiError::Job(e @ (JobError::Store(_) | JobError::Meta(_) | JobError::Queue(_))) => {
                let part = match e {
                    JobError::Store(_) => "object storage",
                    JobError::Meta(_) => "job metadata store",
                    _ => "task queue",
                };
                match e.backend_kind() {
                    Some(ErrorKind::Unavailable) => {
                        format!("the {part} is unavailable; retry later")
                    }
                    Some(ErrorKind::Refused) => format!(
                        "the {part} refused the request; this needs the operator (the server log has the details under this request id)"
                    ),
                    _ => INTERNAL.to_string(),
                }
            }
            ApiError::Job(JobError::Internal(_)) => INTERNAL.to_string(),
            ApiError::Spool(_) => {
                "the server could not hold the upload while checking it; retry later".to_string()
            }
            other => other.to_string(),
        }
    }

    fn file(&self) -> Option<&str> {
        match self {
            ApiError::Job(JobError::BadFile { file, .. }) => Some(file),
            ApiError::Job(JobError::TooCostly { file, .. }) => file.as_deref(),
            _ => None,
        }
    }
}

const INTERNAL: &str = "internal error; the server log has the details under this request id";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Job(e) => match e {
                JobError::Recipe(_) => StatusCode::UNPROCESSABLE_ENTITY,
                JobError::BadWebhook(_) => StatusCode::UNPROCESSABLE_ENTITY,
                JobError::NoFiles => StatusCode::BAD_REQUEST,
                JobError::TooCostly { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                JobError::TooManyFiles { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                JobError::BadFile { problem, .. } => match problem {
                    FileProblem::Empty => StatusCode::BAD_REQUEST,
                    FileProblem::TooLarge { .. } | FileProblem::TooManyPixels { .. } => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    FileProblem::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    FileProblem::Truncated { .. }
                    | FileProblem::Corrupt { .. }
                    | FileProblem::Unreadable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                },
                JobError::JobNotFound(_) | JobError::ImageNotFound { .. } => StatusCode::NOT_FOUND,
                JobError::NotRetryable { .. } => StatusCode::CONFLICT,
                JobError::ImageNotReady { .. } | JobError::NotFinished(_) => StatusCode::CONFLICT,
                // The request is fine, but this image has no result and never will.
                JobError::ImageFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                JobError::Store(_) | JobError::Meta(_) | JobError::Queue(_) => {
                    match (e, e.backend_kind()) {
                        (_, Some(ErrorKind::Unavailable)) => StatusCode::SERVICE_UNAVAILABLE,
                        // Storage answered but refused (bad credentials, a
                        // missing bucket…): an operator's problem, not the
                        // client's, and not worth retrying.
                        (JobError::Store(_), Some(ErrorKind::Refused)) => StatusCode::BAD_GATEWAY,
                        // A stored object missing, or a record unreadable: a bug.
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    }
                }
                JobError::SubmissionInProgress => StatusCode::CONFLICT,
                JobError::DownloadsBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
                JobError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
                JobError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
                JobError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Multipart(_)
            | ApiError::UnexpectedField(_)
            | ApiError::BadField { .. }
            | ApiError::BadQuery(_)
            | ApiError::BadHeader { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadPath { .. } | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::Spool(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Denied(Denied::MissingKey | Denied::InvalidKey | Denied::MalformedHeader) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Denied(Denied::MissingScope(_) | Denied::Link(_)) => StatusCode::FORBIDDEN,
            ApiError::BadIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            ApiError::UploadsBusy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::UploadTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyFields { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let request_id = request_id::current();
        if status.is_server_error() {
            log::error!(
                "request {}: {status} {}: {self}",
                request_id.as_deref().unwrap_or("-"),
                self.code()
            );
        }
        let mut error = json!({
            "code": self.code(),
            "message": self.message(),
            "file": self.file(),
            "request_id": request_id,
        });
        if let ApiError::Job(JobError::QuotaExceeded {
            quota, limit, used, ..
        }) = self
        {
            error["quota"] = json!({ "name": quota, "limit": limit, "used": used });
        }
        if let (Some(op), usage) = self.operation() {
            error["operation"] = json!(op);
            if let Some(usage) = usage {
                error["usage"] = json!(usage);
            }
        }
        let body = match self {
            // A download asked too early also gets the job's status, so the
            // client can see how far it is without a second request.
            ApiError::Job(JobError::NotFinished(status)) => {
                let mut body = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
                body["error"] = error;
                body
            }
            _ => json!({ "error": error }),
        };
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "5"));
        }
        if let ApiError::Job(JobError::QuotaExceeded { retry_after, .. }) = self {
            response.insert_header(("Retry-After", retry_after.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header(("Allow", *allow));
        }
        if let ApiError::UploadTooSlow(_) = self {
            // The rest of the body is not read: the connection goes.
            response.insert_header(("Connection", "close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"imgpipe\""));
        }
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_client_errors_that_name_the_file() {
        let problems = [
            FileProblem::Empty,
            FileProblem::TooLarge { limit: 1 },
            FileProblem::UnsupportedFormat,
            FileProblem::TooManyPixels {
                format: "png",
                width: 1,
                height: 1,
                pixels: 1,
                limit: 0,
            },
            FileProblem::Truncated { format: "jpeg" },
            FileProblem::Corrupt {
                format: "png",
                reason: "x".into(),
            },
            FileProblem::Unreadable { format: "tiff" },
        ];
        for problem in problems {
            let e = ApiError::Job(JobError::BadFile {
                file: "a.jpg".into(),
                problem,
            });
            assert!(e.status_code().is_client_error(), "{e}");
            assert_eq!(e.file(), Some("a.jpg"));
            assert!(e.to_string().starts_with("a.jpg: "));
        }
    }

    #[test]
    fn outages_are_503() {
        let down = crate::meta::MetaError::new(ErrorKind::Unavailable, "redis down");
        let e = ApiError::Job(JobError::Meta(down));
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "service_unavailable");
        let refused = crate::store::StoreError::new(ErrorKind::Refused, "bad credentials");
        let e = ApiError::Job(JobError::Store(refused));
        assert_eq!(
            (e.status_code(), e.code()),
            (StatusCode::BAD_GATEWAY, "storage_error")
        );
        let missing = crate::store::StoreError::new(ErrorKind::NotFound, "jobs/x");
        let e = ApiError::Job(JobError::Store(missing));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message(), INTERNAL);
    }

    #[test]
    fn server_errors_name_the_failing_part_and_nothing_internal() {
        let down = crate::store::StoreError::new(
            ErrorKind::Unavailable,
            "PUT http://10.0.0.7:9000/bucket/jobs/x/input/0",
        );
        let e = ApiError::Job(JobError::Store(down));
        assert_eq!(
            e.message(),
            "the object storage is unavailable; retry later"
        );
        let internal = ApiError::Job(JobError::Internal("/var/lib/imgpipe/x".into()));
        assert!(!internal.message().contains("/var"));
        let spool = ApiError::Spool("/tmp/imgpipe-upload-x: No space left".into());
        assert!(!spool.message().contains("/tmp"));
    }
}

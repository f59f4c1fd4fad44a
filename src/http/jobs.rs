//! `POST /process-job`, `GET /status-job/{id}` and `DELETE /jobs/{id}`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{ApiError, Gate, UploadDir};
use crate::auth::idempotency::IdempotencyKey;
use crate::auth::Scope;
use crate::jobs::admission;
use crate::jobs::intake::FileProblem;
use crate::jobs::{Recipe, RecipeOptions};
use crate::service::{JobError, JobService, Upload};

/// Options may come in the query string or as multipart text fields.
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    filter: Option<String>,
    ops: Option<String>,
    format: Option<String>,
    quality: Option<String>,
    lossless: Option<String>,
}

impl Options {
    fn as_recipe(&self) -> RecipeOptions<'_> {
        RecipeOptions {
            filter: self.filter.as_deref(),
            ops: self.ops.as_deref(),
            format: self.format.as_deref(),
            quality: self.quality.as_deref(),
            lossless: self.lossless.as_deref(),
        }
    }
}

/// The longest option value we read from a text field.
const MAX_OPTION_BYTES: usize = 4096;

pub async fn process_job(
    req: HttpRequest,
    payload: web::Payload,
    service: web::Data<JobService>,
    upload_dir: web::Data<UploadDir>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    let body = SharedBody::new(payload);
    let mut multipart = Multipart::new(req.headers(), body.clone());
    match accept(&req, &mut multipart, &service, &upload_dir, &gate).await {
        Ok(response) => Ok(response),
        Err(e) => {
            // Read and discard what the client is still sending (within
            // bounds) before answering: closing a connection that has unread
            // data makes the kernel reset it, and the client may then lose
            // this answer and see only "connection reset".
            drop(multipart);
            // A caller without a key gets its 401/403 after a token drain:
            // an anonymous client cannot make the server read a large body.
            let bound = match e {
                ApiError::Denied(_) => 64 << 10,
                _ => service.limits().max_file_bytes.saturating_mul(2),
            };
            body.drain(bound).await;
            Err(e)
        }
    }
}

/// The request body, shared between the multipart parser and the drain that
/// runs when the request is refused (the parser may have stopped anywhere,
/// or never started, as for a body that is not multipart at all).
#[derive(Clone)]
struct SharedBody(Rc<RefCell<web::Payload>>);

/// How long a refused upload is drained before the connection is closed anyway.
const DRAIN_TIME: Duration = Duration::from_secs(10);

impl SharedBody {
    fn new(payload: web::Payload) -> Self {
        SharedBody(Rc::new(RefCell::new(payload)))
    }

    async fn drain(&self, max_bytes: u64) {
        let discard = async {
            let mut seen = 0u64;
            while let Some(Ok(chunk)) =
                futures::future::poll_fn(|cx| self.0.borrow_mut().poll_next_unpin(cx)).await
            {
                seen += chunk.len() as u64;
                if seen > max_bytes {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
    }
}

impl futures::Stream for SharedBody {
    type Item = Result<bytes::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.borrow_mut().poll_next_unpin(cx)
    }
}

async fn accept(
    req: &HttpRequest,
    multipart: &mut Multipart,
    service: &JobService,
    upload_dir: &UploadDir,
    gate: &Gate,
) -> Result<HttpResponse, ApiError> {
    let caller = gate.require(req, Scope::Submit).await?;
    let mut options = web::Query::<Options>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadQuery(e.to_string()))?;
    // Fail fast on a bad query before spooling a possibly large body.
    let limits = service.limits();
    if options.filter.is_some() || options.ops.is_some() {
        let recipe = Recipe::parse(&options.as_recipe(), limits.max_pixels)?;
        admission::admit_chain(&recipe, limits.cost).map_err(|problem| JobError::TooCostly {
            file: None,
            problem,
        })?;
    }
    // Claimed before the body is read, so a duplicate sent while this one
    // is still uploading is told at once (409) instead of racing it.
    let claim = match req.headers().get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| crate::auth::idempotency::BadKey)
                .and_then(IdempotencyKey::parse)?;
            Some(service.claim(&caller.tenant, key).await?)
        }
    };

    let mut spooled: Vec<(String, tempfile::TempPath)> = Vec::new();
    let mut fields_seen = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = match field {
            Ok(field) => field,
            // A form with no parts at all is a well-formed request without files.
            Err(MultipartError::Incomplete) if fields_seen == 0 => break,
            Err(e) => return Err(ApiError::Multipart(e.to_string())),
        };
        fields_seen += 1;
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "files" | "files[]" | "file" => {
                if spooled.len() >= limits.max_files {
                    return Err(JobError::TooManyFiles {
                        limit: limits.max_files,
                    }
                    .into());
                }
                // Clients that send no (or a blank) filename still get a name
                // they can find in status and in the ZIP.
                let filename = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .filter(|name| !name.trim().is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("image-{}", spooled.len() + 1));
                let path =
                    spool(&mut field, &filename, &upload_dir.0, limits.max_file_bytes).await?;
                spooled.push((filename, path));
            }
            "filter" => options.filter = Some(read_text(&mut field, &name).await?),
            "ops" => options.ops = Some(read_text(&mut field, &name).await?),
            "format" => options.format = Some(read_text(&mut field, &name).await?),
            "quality" => options.quality = Some(read_text(&mut field, &name).await?),
            "lossless" => options.lossless = Some(read_text(&mut field, &name).await?),
            _ => return Err(ApiError::UnexpectedField(name)),
        }
    }

    let recipe = Recipe::parse(&options.as_recipe(), limits.max_pixels)?;
    let uploads = spooled
        .iter()
        .map(|(filename, path)| Upload {
            filename: filename.clone(),
            path: path.to_path_buf(),
        })
        .collect();
    // `spooled` lives until here, so the temporary files outlive the upload to storage.
    let submitted = service
        .submit(&caller.tenant, recipe, uploads, claim)
        .await?;
    drop(spooled);
    let mut answer = HttpResponse::Accepted();
    answer
        .insert_header(("Location", submitted.status_url))
        .content_type("application/json");
    if submitted.replayed {
        answer.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(answer.body(submitted.body))
}

/// Streams one file field to a temporary file, enforcing the size limit as bytes arrive.
async fn spool(
    field: &mut Field,
    filename: &str,
    dir: &std::path::Path,
    max_bytes: u64,
) -> Result<tempfile::TempPath, ApiError> {
    let spool_err = |e: std::io::Error| ApiError::Spool(e.to_string());
    let temp = tempfile::Builder::new()
        .prefix("imgpipe-upload-")
        .tempfile_in(dir)
        .map_err(spool_err)?;
    let (std_file, path) = temp.into_parts();
    // Multipart chunks are small; each write to a tokio file is a trip to
    // tokio's blocking threads, so they are gathered into 256 KiB writes.
    let mut file =
        tokio::io::BufWriter::with_capacity(256 << 10, tokio::fs::File::from_std(std_file));
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
        file.write_all(&chunk).await.map_err(spool_err)?;
    }
    file.flush().await.map_err(spool_err)?;
    Ok(path)
}

async fn read_text(field: &mut Field, name: &str) -> Result<String, ApiError> {
    let mut value = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| ApiError::Multipart(e.to_string()))?;
        if value.len() + chunk.len() > MAX_OPTION_BYTES {
            return Err(ApiError::BadField {
                field: name.to_string(),
            });
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value).map_err(|_| ApiError::BadField {
        field: name.to_string(),
    })
}

pub async fn status_job(
    req: HttpRequest,
    path: web::Path<String>,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    let caller = gate.require(&req, Scope::Read).await?;
    let status = service.status(&path.into_inner(), &caller.access()).await?;
    Ok(HttpResponse::Ok().json(status))
}

/// `DELETE /jobs/{id}`: the job is gone at once; its files follow.
pub async fn delete_job(
    req: HttpRequest,
    path: web::Path<String>,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    let caller = gate.require(&req, Scope::Submit).await?;
    service.delete(&path.into_inner(), &caller.access()).await?;
    Ok(HttpResponse::NoContent().finish())
}

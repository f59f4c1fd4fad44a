//! `POST /process-job`, `GET /status-job/{id}` and `DELETE /jobs/{id}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde::Deserialize;

use super::body::SharedBody;
use super::spool::{spool, Spooled};
use super::upload_guard::{Share, UploadGuard};
use super::{ApiError, Gate, UploadDir};
use crate::auth::idempotency::IdempotencyKey;
use crate::auth::Scope;
use crate::jobs::admission;
use crate::jobs::{Recipe, RecipeOptions};
use crate::service::{Content, JobError, JobService, Staging, Upload};

/// Options may come in the query string or as multipart text fields.
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    filter: Option<String>,
    ops: Option<String>,
    format: Option<String>,
    quality: Option<String>,
    lossless: Option<String>,
    webhook_url: Option<String>,
    webhook_events: Option<String>,
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
    guard: web::Data<UploadGuard>,
) -> Result<HttpResponse, ApiError> {
    let body = SharedBody::new(payload);
    let mut multipart = Multipart::new(req.headers(), body.clone());
    let intake = Intake {
        service: &service,
        upload_dir: &upload_dir,
        guard: &guard,
        body: &body,
    };
    match accept(&req, &mut multipart, &intake, &gate).await {
        Ok(response) => Ok(response),
        Err(e) => {
            // Read and discard what the client is still sending (within
            // bounds) before answering: closing a connection that has unread
            // data makes the kernel reset it, and the client may then lose
            // this answer and see only "connection reset".
            drop(multipart);
            let bound = match e {
                // A client too slow to finish is not waited for.
                ApiError::UploadTooSlow(_) => 0,
                // A caller without a key, or turned away for load, gets its
                // answer after a token drain: it cannot make the server
                // read a large body.
                ApiError::Denied(_)
                | ApiError::UploadsBusy
                | ApiError::InsufficientStorage { .. } => 64 << 10,
                _ => service.limits().max_file_bytes.saturating_mul(2),
            };
            body.drain(bound).await;
            Err(e)
        }
    }
}

/// What receiving one upload needs.
struct Intake<'a> {
    service: &'a JobService,
    upload_dir: &'a UploadDir,
    guard: &'a UploadGuard,
    body: &'a SharedBody,
}

async fn accept(
    req: &HttpRequest,
    multipart: &mut Multipart,
    intake: &Intake<'_>,
    gate: &Gate,
) -> Result<HttpResponse, ApiError> {
    let service = intake.service;
    let caller = gate.require(req, Scope::Submit).await?;
    // Quotas are per tenant; in open mode, where everyone is one tenant,
    // per client address.
    let subject = match &caller.key {
        Some(_) => format!("tenant:{}", caller.tenant),
        None => format!(
            "addr:{}",
            req.peer_addr()
                .map_or_else(|| "-".to_string(), |a| a.ip().to_string())
        ),
    };
    // Held until this submission is answered.
    let _slot = service.submission_slot(&subject)?;
    let quotas = service.quotas_for(&caller);
    service.count_submission(&subject, quotas).await?;
    // A tenant already at its image or storage quota is refused before its
    // body is read; unless it repeats an earlier request, which gets that
    // request's answer whatever its use now.
    if !req.headers().contains_key("idempotency-key") {
        service.check_usage(&caller.tenant, 1, 1, quotas).await?;
    }
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
    // Nothing is written when a disk is under its watermark.
    if let Some(free) = intake.guard.low_disk() {
        return Err(ApiError::InsufficientStorage {
            free,
            min: intake.guard.min_free_disk(),
        });
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

    // This request's share of the upload budget, held until it is answered.
    let mut share = intake.guard.share();
    let started = Instant::now();
    let watch = async {
        loop {
            tokio::time::sleep(PACE_CHECK).await;
            if let Err(too_slow) = intake
                .guard
                .pace
                .check(intake.body.received(), started.elapsed())
            {
                return too_slow;
            }
        }
    };
    // Each upload is examined and stored as it arrives (`Staging`); a
    // refusal from here on removes what was stored before it is answered.
    let mut staging = service.staging(claim.as_ref());
    let received = async {
        tokio::select! {
            received = receive(multipart, &mut options, intake, &mut share, &mut staging) => received?,
            too_slow = watch => return Err(ApiError::UploadTooSlow(too_slow)),
        };
        let recipe = Recipe::parse(&options.as_recipe(), limits.max_pixels)?;
        let webhook = match options.webhook_url.take() {
            Some(url) => Some(
                service
                    .webhook(url, options.webhook_events.as_deref())
                    .await?,
            ),
            None if options.webhook_events.is_some() => {
                return Err(JobError::BadWebhook(
                    "webhook_events was given without webhook_url".into(),
                )
                .into())
            }
            None => None,
        };
        Ok((recipe, webhook))
    }
    .await;
    let (recipe, webhook) = match received {
        Ok(asked) => asked,
        Err(refused) => {
            staging.abandon().await;
            return Err(refused);
        }
    };
    let submitted = service
        .submit(&caller.tenant, quotas, recipe, webhook, staging, claim)
        .await?;
    let mut answer = HttpResponse::Accepted();
    answer
        .insert_header(("Location", submitted.status_url))
        .content_type("application/json");
    if submitted.replayed {
        answer.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(answer.body(submitted.body))
}

/// How often an upload's pace is checked.
const PACE_CHECK: Duration = Duration::from_millis(250);

/// Reads the multipart body: files into memory or temporary files (see
/// `spool`) and on to `staging`, which keeps each (its memory counted, its
/// temporary file in place) while it may read it; options into `options`.
async fn receive(
    multipart: &mut Multipart,
    options: &mut Options,
    intake: &Intake<'_>,
    share: &mut Share,
    staging: &mut Staging,
) -> Result<(), ApiError> {
    let limits = intake.service.limits();
    let upload_dir = intake.upload_dir;
    let mut fields_seen = 0usize;
    while let Some(field) = multipart.next().await {
        let mut field = match field {
            Ok(field) => field,
            // A form with no parts at all is a well-formed request without files.
            Err(MultipartError::Incomplete) if fields_seen == 0 => break,
            Err(e) => return Err(ApiError::Multipart(e.to_string())),
        };
        fields_seen += 1;
        if fields_seen > intake.guard.max_fields {
            return Err(ApiError::TooManyFields {
                limit: intake.guard.max_fields,
            });
        }
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "files" | "files[]" | "file" => {
                if staging.len() >= limits.max_files {
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
                    .unwrap_or_else(|| format!("image-{}", staging.len() + 1));
                let file = spool(
                    &mut field,
                    &filename,
                    &upload_dir.0,
                    limits.max_file_bytes,
                    share,
                    intake.guard.memory(),
                )
                .await?;
                let content = match &file {
                    Spooled::Memory { bytes, .. } => Content::Memory(bytes.clone()),
                    Spooled::File(path) => Content::File(path.to_path_buf()),
                };
                // Examined and stored now, while the next file arrives.
                staging.receive(Upload { filename, content }, Arc::new(file));
            }
            "filter" => options.filter = Some(read_text(&mut field, &name).await?),
            "ops" => options.ops = Some(read_text(&mut field, &name).await?),
            "format" => options.format = Some(read_text(&mut field, &name).await?),
            "quality" => options.quality = Some(read_text(&mut field, &name).await?),
            "lossless" => options.lossless = Some(read_text(&mut field, &name).await?),
            "webhook_url" => options.webhook_url = Some(read_text(&mut field, &name).await?),
            "webhook_events" => options.webhook_events = Some(read_text(&mut field, &name).await?),
            _ => return Err(ApiError::UnexpectedField(name)),
        }
    }
    Ok(())
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

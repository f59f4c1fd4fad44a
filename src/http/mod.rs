//! The REST facade (actix-web). Thin by design: each handler parses the
//! request, calls one `JobService` operation and serialises the answer.
//! Errors are mapped to HTTP in one place, `error.rs`; who may call what is
//! checked in `auth.rs`; request ids and the access log are `request_id.rs`.
//!
//! Scopes per route: `POST /process-job` and `DELETE /jobs/{id}` need
//! `submit`; `GET /status-job/{id}` needs `read`; `GET /download/{id}`,
//! `GET /images/{id}/{n}` and `GET /jobs/{id}/events` need `read` or a
//! signed link; `/healthz`,
//! `/readyz` (details for `admin` only), `/metrics`, `/filters`,
//! `/openapi.yaml`, `/docs` and the pages (`/`, `/admin`, `/ui/…`) are
//! public; `/admin/api/…` needs `admin`.

mod admin;
mod auth;
mod body;
mod error;
mod events;
mod jobs;
mod metrics;
mod page;
mod request_id;
mod results;
mod spool;
mod system;
mod upload_guard;

use std::path::PathBuf;
use std::time::Duration;

use actix_web::{web, HttpRequest, Resource, Route};
use chrono::Utc;

pub use auth::Gate;
pub use error::ApiError;
pub use metrics::{count as count_requests, metrics as metrics_handler};
pub use request_id::{access_log, assign as assign_request_id};
pub use upload_guard::UploadGuard;

use crate::auth::links::LinkSigner;
use crate::jobs::status::{LinkKind, Links};
use crate::jobs::{Job, JobId};

/// The addresses answers point to: the routes below. ZIP and result links
/// are signed, so they work without a key until they expire: after
/// `link_ttl`, and never after the job does.
pub struct ApiLinks {
    signer: LinkSigner,
    link_ttl: Duration,
}

impl ApiLinks {
    pub fn new(signer: LinkSigner, link_ttl: Duration) -> Self {
        ApiLinks { signer, link_ttl }
    }

    fn link(&self, job: &Job, path: String, kind: LinkKind) -> String {
        if kind == LinkKind::Plain {
            return path;
        }
        let ttl = i64::try_from(self.link_ttl.as_secs()).unwrap_or(i64::MAX);
        let expires = Utc::now()
            .timestamp()
            .saturating_add(ttl)
            .min(job.expires_at.timestamp());
        self.signer.sign(&path, expires)
    }
}

impl Links for ApiLinks {
    fn status(&self, job: JobId) -> String {
        format!("/status-job/{job}")
    }
    fn download(&self, job: &Job, kind: LinkKind) -> String {
        self.link(job, format!("/download/{}", job.id), kind)
    }
    fn result(&self, job: &Job, index: usize, kind: LinkKind) -> String {
        self.link(job, format!("/images/{}/{index}", job.id), kind)
    }
    fn events(&self, job: &Job, kind: LinkKind) -> String {
        self.link(job, format!("/jobs/{}/events", job.id), kind)
    }
}

/// Where uploads are spooled while a request is validated.
#[derive(Debug, Clone)]
pub struct UploadDir(pub PathBuf);

/// The route table; `openapi.yaml` documents exactly these routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _req| ApiError::BadQuery(err.to_string()).into()),
    )
    .service(only(
        "/process-job",
        "POST",
        web::post().to(jobs::process_job),
    ))
    .service(only(
        "/status-job/{job_id}",
        "GET",
        web::get().to(jobs::status_job),
    ))
    .service(only(
        "/jobs/{job_id}",
        "DELETE",
        web::delete().to(jobs::delete_job),
    ))
    .service(only(
        "/jobs/{job_id}/events",
        "GET",
        web::get().to(events::job_events),
    ))
    .service(only(
        "/download/{job_id}",
        "GET",
        web::get().to(results::download),
    ))
    .service(only(
        "/images/{job_id}/{index}",
        "GET",
        web::get().to(results::image),
    ))
    .service(only("/filters", "GET", web::get().to(system::filters)))
    .service(only("/healthz", "GET", web::get().to(system::healthz)))
    .service(only("/metrics", "GET", web::get().to(metrics::metrics)))
    .service(only("/readyz", "GET", web::get().to(system::readyz)))
    .service(only("/openapi.yaml", "GET", web::get().to(system::openapi)))
    .service(only("/", "GET", web::get().to(page::index)))
    .service(only("/ui/{asset}", "GET", web::get().to(page::asset)))
    .service(only("/admin", "GET", web::get().to(page::admin)))
    .service(only(
        "/admin/api/overview",
        "GET",
        web::get().to(admin::overview),
    ))
    .service(only(
        "/admin/api/jobs/{job_id}/cancel",
        "POST",
        web::post().to(admin::cancel),
    ))
    .service(only(
        "/admin/api/jobs/{job_id}/images/{index}/retry",
        "POST",
        web::post().to(admin::retry),
    ))
    .service(only("/docs", "GET", web::get().to(system::to_docs)))
    .service(only(
        "/docs/{asset:.*}",
        "GET",
        web::get().to(system::swagger_ui),
    ))
    .default_service(web::route().to(system::not_found));
}

/// A resource with one method; any other method gets a JSON 405 with `Allow`
/// (actix's own answer would be an empty body). Its template is its data,
/// the route label of its requests' metrics.
fn only(path: &'static str, allow: &'static str, route: Route) -> Resource {
    web::resource(path)
        .app_data(metrics::RouteTemplate(path))
        .route(route)
        .default_service(web::to(move |req: HttpRequest| async move {
            Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                path: req.path().to_string(),
                allow,
            })
        }))
}

//! The REST facade (actix-web). Thin by design: each handler parses the
//! request, calls one `JobService` operation and serialises the answer.
//! Errors are mapped to HTTP in one place, `error.rs`.

mod error;
mod jobs;
mod results;
mod system;

use std::path::PathBuf;

use actix_web::{web, HttpRequest, Resource, Route};

pub use error::ApiError;

use crate::jobs::status::Links;
use crate::jobs::JobId;

/// The addresses answers point to: the routes below.
pub struct ApiLinks;

impl Links for ApiLinks {
    fn status(&self, job: JobId) -> String {
        format!("/status-job/{job}")
    }
    fn download(&self, job: JobId) -> String {
        format!("/download/{job}")
    }
    fn result(&self, job: JobId, index: usize) -> String {
        format!("/images/{job}/{index}")
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
    .service(only("/readyz", "GET", web::get().to(system::readyz)))
    .service(only("/openapi.yaml", "GET", web::get().to(system::openapi)))
    .service(only("/", "GET", web::get().to(system::to_docs)))
    .service(only("/docs", "GET", web::get().to(system::to_docs)))
    .service(system::swagger_ui())
    .default_service(web::route().to(system::not_found));
}

/// A resource with one method; any other method gets a JSON 405 with `Allow`
/// (actix's own answer would be an empty body).
fn only(path: &str, allow: &'static str, route: Route) -> Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(move |req: HttpRequest| async move {
            Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                path: req.path().to_string(),
                allow,
            })
        }))
}

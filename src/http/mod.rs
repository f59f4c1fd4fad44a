//! The REST facade (actix-web). Thin by design: each handler parses the
//! request, calls one `JobService` operation and serialises the answer.
//! Errors are mapped to HTTP in one place, `error.rs`.

mod error;
mod jobs;
mod results;
mod system;

use std::path::PathBuf;

use actix_web::web;

pub use error::ApiError;

/// Where uploads are spooled while a request is validated.
#[derive(Debug, Clone)]
pub struct UploadDir(pub PathBuf);

/// The route table; `openapi.yaml` documents exactly these routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/process-job", web::post().to(jobs::process_job))
        .route("/status-job/{job_id}", web::get().to(jobs::status_job))
        .route("/download/{job_id}", web::get().to(results::download))
        .route("/images/{job_id}/{index}", web::get().to(results::image))
        .route("/filters", web::get().to(system::filters))
        .route("/healthz", web::get().to(system::healthz))
        .route("/readyz", web::get().to(system::readyz))
        .route("/openapi.yaml", web::get().to(system::openapi))
        .route("/", web::get().to(system::to_docs))
        .route("/docs", web::get().to(system::to_docs))
        .service(system::swagger_ui())
        .default_service(web::route().to(system::not_found));
}

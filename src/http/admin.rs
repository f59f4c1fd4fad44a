//! The operator's routes (`admin` scope): `GET /admin` (the page, public:
//! it asks for a key) and its JSON API: `GET /admin/api/overview`,
//! `POST /admin/api/jobs/{id}/cancel`, `POST /admin/api/jobs/{id}/images/{n}/retry`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{ApiError, Gate};
use crate::auth::Scope;
use crate::service::JobService;

pub async fn overview(
    req: HttpRequest,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    gate.require(&req, Scope::Admin).await?;
    Ok(HttpResponse::Ok().json(service.overview().await?))
}

pub async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    gate.require(&req, Scope::Admin).await?;
    Ok(HttpResponse::Ok().json(service.cancel(&path.into_inner()).await?))
}

pub async fn retry(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    gate.require(&req, Scope::Admin).await?;
    let (job, index) = path.into_inner();
    let index = super::results::image_index(&index)?;
    service.retry(&job, index).await?;
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({"job_id": job, "index": index, "state": "queued"})))
}

//! Self-description and health: `/filters` (operations and limits), `/healthz`, `/readyz`,
//! `/openapi.yaml` and Swagger UI at `/docs/`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use utoipa_swagger_ui::Config;

use super::{ApiError, Gate};
use crate::auth::Scope;
use crate::codec::{InputFormat, OutputFormat};
use crate::ops::SPECS;
use crate::service::JobService;

/// The hand-written contract, compiled in so the binary serves exactly the
/// spec it was built with.
const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

pub async fn filters(service: web::Data<JobService>) -> HttpResponse {
    let limits = service.limits();
    HttpResponse::Ok().json(json!({
        "filters": SPECS
            .iter()
            .map(|s| {
                let mut entry = json!(s);
                entry["syntax"] = json!(s.syntax());
                entry
            })
            .collect::<Vec<_>>(),
        "chain": {
            "separator": ",",
            "max_operations": crate::ops::spec::MAX_CHAIN,
            "example": "resize:1280x720:fit,sharpen,grayscale",
        },
        "input_formats": InputFormat::ALL.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "output_formats": OutputFormat::ALL,
        // What a client can check before uploading (the page and the CLI do).
        "limits": {
            "max_files": limits.max_files,
            "max_file_bytes": limits.max_file_bytes,
            "max_pixels": limits.max_pixels,
        },
    }))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Up or down per dependency for anyone; why a dependency is down (which may
/// name hosts and paths) for `admin` keys only: not for open mode's
/// anonymous callers, since an open server may be reachable by anyone.
pub async fn readyz(
    req: HttpRequest,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> HttpResponse {
    let admin = gate
        .optional(&req)
        .await
        .is_some_and(|caller| caller.key.is_some() && caller.may(Scope::Admin));
    let mut checks = service.readiness().await;
    let ready = checks.iter().all(|c| c.ok);
    if !admin {
        checks.iter_mut().for_each(|c| c.error = None);
    }
    let body = json!({ "status": if ready { "ready" } else { "unavailable" }, "checks": checks });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(OPENAPI_YAML)
}

pub async fn to_docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

/// Swagger UI's files (vendored in the binary), pointed at our spec. Served
/// here rather than by the crate's own service so that an unknown asset is
/// the JSON `404 not_found` every other route gives.
pub async fn swagger_ui(
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let config = std::sync::Arc::new(Config::from("/openapi.yaml"));
    match utoipa_swagger_ui::serve(&path.into_inner(), config) {
        Ok(Some(file)) => {
            let mut response = HttpResponse::Ok();
            if file.gzpipped {
                response.insert_header(("Content-Encoding", "gzip"));
            }
            Ok(response
                .content_type(file.content_type)
                .body(file.bytes.to_vec()))
        }
        Ok(None) => Err(ApiError::NoRoute(format!(
            "{} {}",
            req.method(),
            req.path()
        ))),
        Err(e) => Err(ApiError::Job(crate::service::JobError::Internal(format!(
            "Swagger UI: {e}"
        )))),
    }
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute(format!(
        "{} {}",
        req.method(),
        req.path()
    )))
}

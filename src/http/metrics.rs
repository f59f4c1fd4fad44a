//! `GET /metrics` (the Prometheus text format) and the middleware that
//! counts and times every request by its route template and status class.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::service::JobService;
use crate::telemetry;

/// Middleware: one count and one duration per request. The route is the
/// matched template (`/status-job/{job_id}`), never the path, so ids do not
/// become labels; unmatched paths count as `unmatched`.
pub async fn count(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.call(req).await?;
    let status = telemetry::status_class(res.status().as_u16());
    metrics::counter!(telemetry::HTTP_REQUESTS, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(telemetry::HTTP_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// `GET /metrics`: samples the backends' gauges, then renders everything.
pub async fn metrics(service: web::Data<JobService>) -> HttpResponse {
    service.sample_gauges().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(telemetry::render())
}

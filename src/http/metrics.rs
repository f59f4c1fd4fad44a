//! `GET /metrics` (the Prometheus text format) and the middleware that
//! counts and times every request by its route template and status class.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::service::JobService;
use crate::telemetry;

/// The template a resource was registered with (`/status-job/{job_id}`),
/// kept in the resource's data so that [`count`] can name the route a
/// request took without matching its path again.
#[derive(Debug, Clone, Copy)]
pub struct RouteTemplate(pub &'static str);

/// Middleware: one count and one duration per request. The route is the
/// matched template (`/status-job/{job_id}`), never the path, so ids do not
/// become labels; unmatched paths count as `unmatched`.
///
/// The template is read after the call, from the data of the resource that
/// routing chose: `match_pattern()` would match the path against the whole
/// route table again (regular expressions for the routes with ids) and
/// allocate the label on every request, status polls included.
pub async fn count(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let res = next.call(req).await?;
    let route = res
        .request()
        .app_data::<RouteTemplate>()
        .map_or("unmatched", |template| template.0);
    let status = telemetry::status_class(res.status().as_u16());
    metrics::counter!(telemetry::HTTP_REQUESTS, "route" => route, "status" => status).increment(1);
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

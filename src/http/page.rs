//! The web pages, `/` for people and `/admin` for operators: plain HTML, CSS and JavaScript compiled into the
//! binary (`page/`), no build step and nothing fetched from elsewhere. The
//! page uses the public API like any client; this module only serves it.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpRequest, HttpResponse};

use super::ApiError;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");
const ADMIN: &str = include_str!("page/admin.html");
const ADMIN_SCRIPT: &str = include_str!("page/admin.js");

/// The files are part of the binary: a browser may keep them until the
/// server is upgraded, but should ask again after a few minutes.
fn cache() -> CacheControl {
    CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(300)])
}

pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(cache())
        .body(INDEX)
}

/// `/admin`: the operator's page (its data needs an `admin` key).
pub async fn admin() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(cache())
        .body(ADMIN)
}

/// `/ui/{asset}`: the pages' scripts and style.
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (body, kind) = match name.as_str() {
        "page.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "page.css" => (STYLE, "text/css; charset=utf-8"),
        "admin.js" => (ADMIN_SCRIPT, "text/javascript; charset=utf-8"),
        _ => return Err(ApiError::NoRoute(format!("GET {}", req.path()))),
    };
    Ok(HttpResponse::Ok()
        .content_type(kind)
        .insert_header(cache())
        .body(body))
}

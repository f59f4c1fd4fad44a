//! Request ids and the access log. Every answer carries `X-Request-Id` (the
//! client's, if it sent a well-formed one); error bodies carry it too, and
//! the log line with a 5xx's details names it, so a client's report leads
//! to the details without the answer showing them. The access log keeps
//! job ids and link signatures short, and names the client and the tenant.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Logger, Next};
use actix_web::HttpMessage;

use crate::auth::Caller;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A client's id is kept if it is short and plain (it goes into logs).
fn well_formed(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Middleware: assigns the id, runs the request with it, echoes it.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| well_formed(id))
        .map(str::to_string)
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    let context = crate::logging::Context {
        request_id: Some(id.clone()),
        ..Default::default()
    };
    let mut res = crate::logging::scope(context, CURRENT.scope(id.clone(), next.call(req))).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    Ok(res)
}

/// The access log: client address, method, path (ids shortened, signatures
/// dropped), status, size, time, tenant and request id.
pub fn access_log() -> Logger {
    Logger::new("%a \"%{target}xi\" %s %b %Dms tenant=%{tenant}xo id=%{x-request-id}o")
        .custom_request_replace("target", |req| {
            redact(req.method().as_str(), req.path(), req.query_string())
        })
        .custom_response_replace("tenant", |res| {
            res.request()
                .extensions()
                .get::<Caller>()
                .map_or_else(|| "-".to_string(), |c| c.tenant.to_string())
        })
}

/// `GET /download/6f0c2a1e-…?expires=…&sig=…` → `GET /download/6f0c2a1e…?expires=…&sig=…`
/// with the id cut to 8 characters and the signature's value dropped.
fn redact(method: &str, path: &str, query: &str) -> String {
    let path: Vec<String> = path
        .split('/')
        .map(|segment| {
            if segment.len() > 12 && uuid::Uuid::parse_str(segment).is_ok() {
                format!("{}…", &segment[..8])
            } else {
                segment.chars().take(64).collect()
            }
        })
        .collect();
    let mut target = format!("{method} {}", path.join("/"));
    if !query.is_empty() {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                // However its name is spelt (`s%69g`), a signature stays out.
                Some((name, _)) if decoded(name) == "sig" => format!("{name}=…"),
                _ => pair.chars().take(80).collect(),
            })
            .collect();
        target.push('?');
        target.push_str(&pairs.join("&"));
    }
    target
}

/// A query parameter's name, percent-decoded.
fn decoded(name: &str) -> String {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(&format!("{name}=x"))
        .ok()
        .and_then(|q| q.into_inner().pop())
        .map_or_else(|| name.to_string(), |(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shortened_and_signatures_dropped() {
        let id = "6f0c2a1e-9b7d-4c55-8e1a-0d3f5b2c7a90";
        let line = redact(
            "GET",
            &format!("/images/{id}/3"),
            "expires=1767225600&sig=0123456789abcdef",
        );
        assert_eq!(line, "GET /images/6f0c2a1e…/3?expires=1767225600&sig=…");
        assert!(!line.contains(id) && !line.contains("0123456789abcdef"));
        assert_eq!(redact("POST", "/process-job", ""), "POST /process-job");
        assert_eq!(redact("GET", "/x", "s%69g=secret"), "GET /x?s%69g=…");
    }

    #[test]
    fn only_plain_short_client_ids_are_kept() {
        assert!(well_formed("req-01J9Z.abc:1"));
        for bad in ["", "has space", "new\nline", &"x".repeat(65), "ü"] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }
}

//! `GET /jobs/{id}/events`: a job's events as Server-Sent Events. Each frame
//! of `JobService::watch` becomes one SSE message: `event:` the event's type,
//! `id:` its sequence number (what `Last-Event-ID` resumes from), `data:`
//! one line of JSON. Formatting only; what is sent when is `watch`'s.

use std::convert::Infallible;

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Gate;
use super::error::ApiError;
use crate::jobs::events::Event;
use crate::service::{Frame, JobService};

pub async fn job_events(
    req: HttpRequest,
    path: web::Path<String>,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    // A key with `read`, or the signed `events_url` of a status (what an
    // EventSource in a browser can use: it cannot send a key).
    let access = gate.reader(&req).await?;
    let after = resume_point(&req)?;
    let frames = service.watch(&path.into_inner(), access, after).await?;
    let body = futures::stream::unfold(frames, |mut frames| async move {
        let frame = frames.recv().await?;
        Some((
            Ok::<_, Infallible>(web::Bytes::from(encode(&frame))),
            frames,
        ))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Proxies such as nginx would otherwise hold the stream back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// The last event the client has: the `Last-Event-ID` header (what an
/// EventSource sends when it reconnects), or `?last_event_id=` for a client
/// that cannot set headers.
fn resume_point(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let header = req
        .headers()
        .get("Last-Event-ID")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("last_event_id").cloned());
    let Some(given) = header.or(query) else {
        return Ok(None);
    };
    given
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| ApiError::BadHeader {
            name: "Last-Event-ID",
            given,
            expected: "the id of an event of this stream: a whole number, 0 for all of them",
        })
}

fn encode(frame: &Frame) -> String {
    match frame {
        Frame::Snapshot { seq, status } => message("snapshot", *seq, &json(status)),
        Frame::Event(event) => message(event.kind.name(), event.seq, &event_json(event)),
        Frame::Final { event, status } => {
            let data = match status {
                Some(status) => json(status),
                None => event_json(event),
            };
            message(event.kind.name(), event.seq, &data)
        }
        Frame::KeepAlive => ": keep-alive\n\n".to_string(),
    }
}

fn message(name: &str, id: u64, data: &str) -> String {
    format!("event: {name}\nid: {id}\ndata: {data}\n\n")
}

fn json(value: &impl serde::Serialize) -> String {
    // Compact JSON has no raw newline, so it is one `data:` line.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

fn event_json(event: &Event) -> String {
    json(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::events::EventKind;

    #[test]
    fn events_are_one_message_each() {
        let event = Event {
            seq: 7,
            kind: EventKind::ImageFailed,
            at: chrono::Utc::now(),
            index: Some(2),
            attempt: Some(3),
            error: Some("line one\nline two".into()),
            progress: None,
        };
        let text = encode(&Frame::Event(event));
        assert!(
            text.starts_with("event: image.failed\nid: 7\ndata: {"),
            "{text}"
        );
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 4, "{text}");
        assert_eq!(encode(&Frame::KeepAlive), ": keep-alive\n\n");
    }
}

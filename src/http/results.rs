//! `GET /download/{id}` (streamed ZIP) and `GET /images/{id}/{index}`.

use actix_web::http::header::{
    Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::TryStreamExt;
use serde::Deserialize;

use super::{ApiError, Gate};
use crate::service::JobService;

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    #[serde(default)]
    partial: bool,
}

pub async fn download(
    req: HttpRequest,
    path: web::Path<String>,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    let access = gate.reader(&req).await?;
    // Read after the key or link is checked: a caller without one learns
    // nothing, not even that the query is malformed.
    let query = web::Query::<DownloadQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadQuery(e.to_string()))?;
    let id = path.into_inner();
    let (status, stream) = service.archive(&id, query.partial, &access).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(disposition(
            DispositionType::Attachment,
            &format!("imgpipe-{}.zip", status.job_id),
        ))
        .insert_header(("X-Job-Status", status.status.name()))
        .streaming(stream))
}

/// An image's index in a path: plain digits only (`usize::from_str` would
/// also take "+1"); anything else is a JSON `404 invalid_path`.
pub(super) fn image_index(text: &str) -> Result<usize, ApiError> {
    Some(text)
        .filter(|i| i.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| ApiError::BadPath {
            what: "image index",
            given: text.to_string(),
        })
}

pub async fn image(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    service: web::Data<JobService>,
    gate: web::Data<Gate>,
) -> Result<HttpResponse, ApiError> {
    let access = gate.reader(&req).await?;
    let (id, index) = path.into_inner();
    let index = image_index(&index)?;
    let (object, entry) = service.result_image(&id, index, &access).await?;
    Ok(HttpResponse::Ok()
        .content_type(entry.output_format.content_type())
        .insert_header(disposition(DispositionType::Inline, &entry.entry_name))
        .no_chunking(object.size)
        .streaming(
            object
                .stream
                .map_err(actix_web::error::ErrorInternalServerError),
        ))
}

fn disposition(kind: DispositionType, filename: &str) -> ContentDisposition {
    let mut parameters = vec![DispositionParam::Filename(ascii_fallback(filename))];
    if !filename.is_ascii() {
        // RFC 6266: clients that understand filename* prefer it; the others
        // still get a usable plain-ASCII name.
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".to_string()),
            language_tag: None,
            value: filename.as_bytes().to_vec(),
        }));
    }
    ContentDisposition {
        disposition: kind,
        parameters,
    }
}

/// The name with every non-ASCII or quote-unsafe character replaced by `_`.
fn ascii_fallback(filename: &str) -> String {
    filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_names_get_a_plain_fallback_and_a_utf8_name() {
        let header = disposition(DispositionType::Attachment, "café \"x\".png").to_string();
        assert!(header.contains("filename=\"caf_ _x_.png\""), "{header}");
        assert!(header.contains("filename*=UTF-8''caf%C3%A9"), "{header}");
        let plain = disposition(DispositionType::Inline, "a b.png").to_string();
        assert_eq!(plain, "inline; filename=\"a b.png\"");
    }
}

//! `GET /download/{id}` (streamed ZIP) and `GET /images/{id}/{index}`.

use actix_web::http::header::{
    Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{web, HttpResponse};
use futures::TryStreamExt;
use serde::Deserialize;

use super::ApiError;
use crate::jobs::service::JobService;

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    #[serde(default)]
    partial: bool,
}

pub async fn download(
    path: web::Path<String>,
    query: web::Query<DownloadQuery>,
    service: web::Data<JobService>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (status, stream) = service.archive(&id, query.partial).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(disposition(
            DispositionType::Attachment,
            &format!("imgpipe-{}.zip", status.job_id),
        ))
        .insert_header((
            "X-Job-Status",
            serde_json::to_value(status.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ))
        .streaming(stream))
}

pub async fn image(
    path: web::Path<(String, String)>,
    service: web::Data<JobService>,
) -> Result<HttpResponse, ApiError> {
    let (id, index) = path.into_inner();
    let index: usize = index.parse().map_err(|_| ApiError::BadPath {
        what: "image index",
        given: index,
    })?;
    let (object, entry) = service.result_image(&id, index).await?;
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
    let parameters = if filename.is_ascii() {
        vec![DispositionParam::Filename(filename.to_string())]
    } else {
        vec![DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".to_string()),
            language_tag: None,
            value: filename.as_bytes().to_vec(),
        })]
    };
    ContentDisposition {
        disposition: kind,
        parameters,
    }
}

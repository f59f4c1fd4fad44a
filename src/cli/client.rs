//! The CLI's side of the public API, over reqwest: the limits, a submission
//! with its bytes counted as they go, a status, a job's event stream
//! (Server-Sent Events, parsed here), and downloads streamed to files.
//! Every failure is a [`CliError`] with one line for the user.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::files::Input;
use super::CliError;

/// One message of a job's event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event: String,
    pub id: u64,
    pub data: Value,
}

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// What the options of a submission are.
pub struct Recipe<'a> {
    pub ops: &'a str,
    pub format: Option<&'a str>,
    pub quality: Option<u8>,
}

impl Api {
    pub fn new(server: &str, key: Option<&str>) -> Result<Api, CliError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            let value = format!("Bearer {key}")
                .parse()
                .map_err(|_| CliError::usage("the API key holds characters a header cannot"))?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("imgpipe-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::usage(format!("cannot make an HTTP client: {e}")))?;
        Ok(Api {
            base: server.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// A path or a link from an answer (relative to the server).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> CliError {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        CliError::server(format!("cannot reach {}: {cause}", self.base))
    }

    /// The answer's JSON if it is a success, else the server's message.
    async fn json(&self, response: reqwest::Response) -> Result<Value, CliError> {
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(CliError::server(format!("the server refused: {message}")))
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.json(response).await
    }

    /// Submits `inputs` as one job; `sent` counts the bytes on the wire.
    pub async fn submit(
        &self,
        inputs: &[Input],
        recipe: &Recipe<'_>,
        sent: Arc<AtomicU64>,
    ) -> Result<Value, CliError> {
        let mut form = reqwest::multipart::Form::new().text("ops", recipe.ops.to_string());
        if let Some(format) = recipe.format {
            form = form.text("format", format.to_string());
        }
        if let Some(quality) = recipe.quality {
            form = form.text("quality", quality.to_string());
        }
        for input in inputs {
            let file = tokio::fs::File::open(&input.path)
                .await
                .map_err(|e| CliError::usage(format!("{}: {e}", input.path.display())))?;
            let sent = sent.clone();
            let chunks = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
                if let Ok(bytes) = chunk {
                    sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            });
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(chunks),
                input.size,
            )
            .file_name(input.name.clone());
            form = form.part("files", part);
        }
        let response = self
            .http
            .post(self.url("/process-job"))
            .multipart(form)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.json(response).await
    }

    /// The job's events from after `last` (0: all of them) until the
    /// stream ends; `Err` items when the connection breaks.
    pub async fn events(
        &self,
        path: &str,
        last: u64,
    ) -> Result<impl Stream<Item = Result<Message, CliError>> + Send + Unpin, CliError> {
        let response = self
            .http
            .get(self.url(path))
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(self.json(response).await.err().unwrap_or_else(|| {
                CliError::server("the event stream answered without events".to_string())
            }));
        }
        let body = response.bytes_stream();
        Ok(Box::pin(futures::stream::unfold(
            (body, String::new()),
            |(mut body, mut buffer)| async move {
                loop {
                    if let Some(end) = buffer.find("\n\n") {
                        let block: String = buffer.drain(..end + 2).collect();
                        if let Some(message) = parse(&block) {
                            return Some((Ok(message), (body, buffer)));
                        }
                        continue;
                    }
                    match body.next().await {
                        Some(Ok(bytes)) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
                        Some(Err(e)) => {
                            let error = CliError::server(format!("event stream broke: {e}"));
                            return Some((Err(error), (body, buffer)));
                        }
                        None => return None,
                    }
                }
            },
        )))
    }

    /// Streams `link` (a ZIP or one result) into `to`, creating its folder.
    pub async fn download(&self, link: &str, to: &Path) -> Result<u64, CliError> {
        let response = self
            .http
            .get(self.url(link))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(self.json(response).await.err().unwrap_or_else(|| {
                CliError::server("the download answered without a body".to_string())
            }));
        }
        if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| CliError::usage(format!("{}: {e}", dir.display())))?;
        }
        let local = |e: std::io::Error| CliError::usage(format!("{}: {e}", to.display()));
        let mut file = tokio::fs::File::create(to).await.map_err(local)?;
        let mut body = response.bytes_stream();
        let mut written = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(e))?;
            file.write_all(&chunk).await.map_err(local)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(local)?;
        Ok(written)
    }
}

/// One SSE block; `None` for a comment (keep-alive).
fn parse(block: &str) -> Option<Message> {
    let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    Some(Message {
        event,
        id: id?,
        data: serde_json::from_str(&data).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_comments() {
        let m = parse("event: image.failed\nid: 7\ndata: {\"index\":2}\n\n").expect("event");
        assert_eq!((m.event.as_str(), m.id), ("image.failed", 7));
        assert_eq!(m.data["index"], 2);
        assert_eq!(parse(": keep-alive\n\n"), None);
    }
}

//! Following jobs to their end over their event streams (resuming with
//! `Last-Event-ID` when a stream breaks, polling the status when it cannot
//! be had), and saving the results: a ZIP per job, or each result under a
//! directory at its input's relative path.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::args::Output;
use super::client::Api;
use super::report::Reporter;
use super::CliError;

/// An image that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub reason: String,
}

/// Broken streams tolerated in a row before falling back to polling.
const STREAM_TRIES: u32 = 3;

const FINAL: [&str; 4] = [
    "job.completed",
    "job.completed_with_errors",
    "job.failed",
    "job.deleted",
];

/// Follows every job at once; their final statuses, in order.
pub async fn follow_all(
    api: &Api,
    jobs: &[(String, Value)],
    report: &Reporter,
) -> Result<Vec<Value>, CliError> {
    let all = jobs
        .iter()
        .map(|(id, answer)| follow(api, id, answer, report));
    futures::future::join_all(all).await.into_iter().collect()
}

/// One job: its events (the 202 answer or a status gives the stream's
/// link and the images' names) until the final one; then its status.
async fn follow(api: &Api, id: &str, answer: &Value, report: &Reporter) -> Result<Value, CliError> {
    let names: Vec<String> = answer["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["filename"].as_str().unwrap_or("?").to_string())
        .collect();
    let events = answer["events_url"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("/jobs/{id}/events"));
    let (mut last, mut broken) = (0u64, 0u32);
    'streams: while broken < STREAM_TRIES {
        let mut stream = match api.events(&events, last).await {
            Ok(stream) => stream,
            Err(_) => {
                broken += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(message) = stream.next().await {
            let Ok(message) = message else {
                broken += 1;
                continue 'streams;
            };
            broken = 0;
            last = last.max(message.id);
            let kind = message.event.as_str();
            if kind.starts_with("image.") {
                let index = message.data["index"].as_u64().unwrap_or(0) as usize;
                let name = names.get(index).map_or("?", String::as_str);
                report.image(id, kind, name, &message.data);
            } else if kind == "job.progress" {
                report.counts(id, &message.data["progress"]);
            } else if FINAL.contains(&kind) {
                if kind == "job.deleted" {
                    return Err(CliError::server(format!("job {id} was deleted")));
                }
                break 'streams;
            }
        }
        // The server ended the stream without a final event (a restart):
        // resume after the last one seen.
        broken += 1;
    }
    // The final status, for its fresh links (or, without a stream, by polling).
    loop {
        let status = api.get(&format!("/status-job/{id}")).await?;
        if status["all_ready"].as_bool().unwrap_or(false) {
            report.finished(id, &status);
            return Ok(status);
        }
        report.counts(id, &status["progress"]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The failed images of finished jobs.
pub fn failures(statuses: &[Value]) -> Vec<Failure> {
    statuses
        .iter()
        .flat_map(|s| s["images"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["state"] == "failed")
        .map(|i| Failure {
            name: i["filename"].as_str().unwrap_or("?").to_string(),
            reason: i["error"].as_str().unwrap_or("failed").to_string(),
        })
        .collect()
}

/// `name` (a client filename) as a path under a directory, if it is a
/// plain relative one.
fn relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !name.is_empty()).then(|| path.to_path_buf())
}

/// Whether two extensions name one format (`jpg` and `JPEG` do).
fn same_format(a: Option<&std::ffi::OsStr>, b: &std::ffi::OsStr) -> bool {
    let norm = |e: &std::ffi::OsStr| match e.to_string_lossy().to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => "jpeg".to_string(),
        "tif" | "tiff" => "tiff".to_string(),
        other => other.to_string(),
    };
    a.is_some_and(|a| norm(a) == norm(b))
}

/// Saves finished jobs' results as `output` says (default: a ZIP per job
/// in the current directory). Returns their failed images.
pub async fn save(
    api: &Api,
    statuses: &[Value],
    output: &Output,
    report: &Reporter,
) -> Result<Vec<Failure>, CliError> {
    for (n, status) in statuses.iter().enumerate() {
        let id = status["job_id"].as_str().unwrap_or("job");
        if status["progress"]["succeeded"].as_u64().unwrap_or(0) == 0 {
            report.note(&format!("job {id}: no image succeeded, nothing to save"));
            continue;
        }
        if let Some(dir) = &output.out_dir {
            let images = status["images"].as_array().cloned().unwrap_or_default();
            let done = images
                .iter()
                .filter(|i| i["result_url"].is_string())
                .count();
            report.saving(done as u64);
            let mut total = 0;
            for image in &images {
                let Some(link) = image["result_url"].as_str() else {
                    continue;
                };
                let name = image["filename"].as_str().unwrap_or_default();
                let entry = image["entry_name"].as_str().unwrap_or("result");
                let mut path = relative(name).unwrap_or_else(|| PathBuf::from(entry));
                if let Some(ext) = Path::new(entry).extension() {
                    if !same_format(path.extension(), ext) {
                        path.set_extension(ext);
                    }
                }
                let to = dir.join(path);
                let bytes = api.download(link, &to).await?;
                total += bytes;
                report.saved(name, &to, bytes);
            }
            report.saved_all(dir, done as u64, total);
            continue;
        }
        let to = match &output.out {
            Some(out) if n == 0 => out.clone(),
            Some(out) => {
                let stem = out
                    .file_stem()
                    .map_or("results".into(), |s| s.to_string_lossy());
                out.with_file_name(format!("{stem}-{}.zip", n + 1))
            }
            None => PathBuf::from(format!("imgpipe-{id}.zip")),
        };
        let link = status["download_url"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("/download/{id}"));
        let bytes = api.download(&link, &to).await?;
        report.saved("ZIP", &to, bytes);
    }
    Ok(failures(statuses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_become_paths() {
        assert_eq!(relative("a/b.jpg"), Some(PathBuf::from("a/b.jpg")));
        assert_eq!(relative("../b.jpg"), None);
        assert_eq!(relative("/etc/passwd"), None);
        assert_eq!(relative(""), None);
    }

    #[test]
    fn results_keep_their_name_unless_the_format_changed() {
        let ext = |s: &str| std::ffi::OsString::from(s);
        assert!(same_format(Some(&ext("JPEG")), &ext("jpg")));
        assert!(!same_format(Some(&ext("png")), &ext("webp")));
        assert!(!same_format(None, &ext("png")));
    }

    #[test]
    fn failures_name_the_image_and_the_reason() {
        let statuses = vec![serde_json::json!({"images": [
            {"filename": "a.png", "state": "succeeded"},
            {"filename": "b.png", "state": "failed", "error": "corrupt"},
        ]})];
        assert_eq!(
            failures(&statuses),
            vec![Failure {
                name: "b.png".into(),
                reason: "corrupt".into()
            }]
        );
    }
}

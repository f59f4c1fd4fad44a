//! The command-line client: `imgpipe submit | status | download | watch`,
//! built on the public API only (the same routes as any client), so it
//! works against any imgpipe server, embedded or distributed.
//!
//! - `args`    the commands' arguments
//! - `files`   which local files are sent, by content, with relative names
//! - `client`  the HTTP calls, the event stream, downloads
//! - `report`  bars on a terminal, lines without one, JSON with `--json`
//! - `watch`   following jobs to their end, and saving their results
//!
//! Exit status: 0 when every image succeeded, 2 when some failed (each
//! named with its reason), 1 on a usage or server error (one line), 130
//! when interrupted (the jobs go on; `imgpipe watch` resumes).
//!
//! Must not: use the server's internals (stores, queue): only HTTP.

pub mod args;
mod client;
mod files;
mod report;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use self::args::{FetchArgs, JobArgs, SubmitArgs};
use self::client::{Api, Recipe};
use self::report::Reporter;
use self::watch::{follow_all, save, Failure};

/// A client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Submit(SubmitArgs),
    Status(JobArgs),
    Download(FetchArgs),
    Watch(FetchArgs),
}

/// What went wrong, for one line on standard error, and the exit status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }

    pub fn server(message: impl Into<String>) -> CliError {
        CliError::usage(message)
    }
}

/// Runs a client command; returns the process's exit status.
pub async fn run(command: ClientCommand) -> u8 {
    let json = match &command {
        ClientCommand::Submit(a) => a.server.json,
        ClientCommand::Status(a) => a.server.json,
        ClientCommand::Download(a) | ClientCommand::Watch(a) => a.server.json,
    };
    let report = Reporter::new(json);
    let ran = match command {
        ClientCommand::Submit(args) => submit(args, &report).await,
        ClientCommand::Status(args) => status(args, &report).await,
        ClientCommand::Download(args) => download(args, &report).await,
        ClientCommand::Watch(args) => watch(args, &report).await,
    };
    match ran {
        Ok(failures) if failures.is_empty() => 0,
        Ok(failures) => {
            for f in &failures {
                eprintln!("failed: {}: {}", f.name, f.reason);
            }
            eprintln!("{} image(s) failed", failures.len());
            2
        }
        Err(e) => {
            eprintln!("imgpipe: {}", e.message.replace('\n', " "));
            e.code
        }
    }
}

/// Resolves on Ctrl-C, having told how to pick the jobs up again.
async fn interrupted(jobs: &[String]) {
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!(
            "\ninterrupted; the server goes on with the job(s). Resume with: imgpipe watch {}",
            jobs.join(" ")
        );
    } else {
        std::future::pending::<()>().await;
    }
}

async fn submit(args: SubmitArgs, report: &Reporter) -> Result<Vec<Failure>, CliError> {
    let api = Api::new(&args.server.server, args.server.api_key.as_deref())?;
    let found = files::collect(&args.paths);
    for (path, why) in &found.skipped {
        report.note(&format!("skipped {}: {why}", path.display()));
    }
    if found.inputs.is_empty() {
        return Err(CliError::usage("no images to send among the paths given"));
    }
    let catalogue = api.get("/filters").await?;
    let limits = &catalogue["limits"];
    let max_files = limits["max_files"].as_u64().unwrap_or(u64::MAX).max(1) as usize;
    let max_bytes = limits["max_file_bytes"].as_u64().unwrap_or(u64::MAX);
    let mut failures = Vec::new();
    let (inputs, too_big): (Vec<_>, Vec<_>) =
        found.inputs.into_iter().partition(|i| i.size <= max_bytes);
    for input in too_big {
        failures.push(Failure {
            name: input.name,
            reason: format!("larger than the server's limit of {max_bytes} bytes; not sent"),
        });
    }
    if inputs.is_empty() {
        return Ok(failures);
    }
    let recipe = Recipe {
        ops: &args.ops,
        format: args.output_format.as_deref(),
        quality: args.quality,
    };
    let batches: Vec<_> = inputs.chunks(max_files).collect();
    if batches.len() > 1 {
        report.note(&format!(
            "{} images in {} jobs (the server takes {max_files} per job)",
            inputs.len(),
            batches.len()
        ));
    }
    let mut jobs: Vec<(String, Value)> = Vec::new();
    for batch in &batches {
        let bytes = batch.iter().map(|i| i.size).sum();
        report.uploading(batch.len(), bytes);
        let sent = Arc::new(AtomicU64::new(0));
        let ticker = {
            let sent = sent.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    report.uploaded_bytes(sent.load(Ordering::Relaxed));
                }
            }
        };
        let so_far: Vec<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
        let accepted = tokio::select! {
            accepted = api.submit(batch, &recipe, sent.clone()) => accepted?,
            () = ticker => return Err(CliError::usage("the upload's progress stopped")),
            () = interrupted(&so_far) => {
                return Err(CliError { message: "interrupted while uploading".into(), code: 130 });
            }
        };
        report.uploaded(sent.load(Ordering::Relaxed));
        let id = accepted["job_id"].as_str().unwrap_or_default().to_string();
        let label = if batches.len() > 1 {
            format!("job {}", jobs.len() + 1)
        } else {
            "images".to_string()
        };
        report.note(&format!("job {id} accepted"));
        report.job(&id, batch.len() as u64, &label);
        jobs.push((id, accepted));
    }
    let ids: Vec<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
    let statuses = tokio::select! {
        statuses = follow_all(&api, &jobs, report) => statuses?,
        () = interrupted(&ids) => {
            return Err(CliError { message: "interrupted".into(), code: 130 });
        }
    };
    failures.extend(save(&api, &statuses, &args.output, report).await?);
    Ok(failures)
}

async fn status(args: JobArgs, report: &Reporter) -> Result<Vec<Failure>, CliError> {
    let api = Api::new(&args.server.server, args.server.api_key.as_deref())?;
    for id in &args.jobs {
        let status = api.get(&format!("/status-job/{id}")).await?;
        if args.server.json {
            println!("{status}");
            continue;
        }
        let p = &status["progress"];
        report.note(&format!(
            "job {id}: {}, {} of {} done ({}%), {} failed; chain {}",
            status["status"].as_str().unwrap_or("?").replace('_', " "),
            p["succeeded"].as_u64().unwrap_or(0) + p["failed"].as_u64().unwrap_or(0),
            p["total"],
            p["percent"],
            p["failed"],
            status["ops"].as_str().unwrap_or("?"),
        ));
        for image in status["images"].as_array().into_iter().flatten() {
            let why = image["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            report.note(&format!(
                "  {} {}{why}",
                image["filename"].as_str().unwrap_or("?"),
                image["state"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(Vec::new())
}

async fn download(args: FetchArgs, report: &Reporter) -> Result<Vec<Failure>, CliError> {
    let api = Api::new(&args.server.server, args.server.api_key.as_deref())?;
    let mut statuses = Vec::new();
    for id in &args.jobs {
        statuses.push(api.get(&format!("/status-job/{id}")).await?);
    }
    save(&api, &statuses, &args.output, report).await
}

async fn watch(args: FetchArgs, report: &Reporter) -> Result<Vec<Failure>, CliError> {
    let api = Api::new(&args.server.server, args.server.api_key.as_deref())?;
    let mut jobs = Vec::new();
    for id in &args.jobs {
        let status = api.get(&format!("/status-job/{id}")).await?;
        report.job(
            id,
            status["progress"]["total"].as_u64().unwrap_or(0),
            "images",
        );
        jobs.push((id.clone(), status));
    }
    let statuses = tokio::select! {
        statuses = follow_all(&api, &jobs, report) => statuses?,
        () = interrupted(&args.jobs) => {
            return Err(CliError { message: "interrupted".into(), code: 130 });
        }
    };
    if args.output.out.is_none() && args.output.out_dir.is_none() {
        return Ok(watch::failures(&statuses));
    }
    save(&api, &statuses, &args.output, report).await
}

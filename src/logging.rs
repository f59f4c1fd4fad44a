//! Logging through env_logger (`RUST_LOG` filters), human-readable or, with
//! `IMGPIPE_LOG_FORMAT=json`, one JSON object per line for log pipelines:
//! `time`, `level`, `target`, `message`, and where known the request id
//! (`request_id`) and `tenant`, or the task's `job_id`, `image`, `attempt`
//! and the seconds its stages took so far (`stages`).
//!
//! The context comes from task-locals that the HTTP layer (a request) and
//! the worker (one delivery of a task) set around their work, so log calls
//! need not repeat it. Must not: decide what is logged.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

/// Where actix-web's access log writes (see `http::request_id::access_log`).
const ACCESS_LOG_TARGET: &str = "actix_web::middleware::logger";

/// `IMGPIPE_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message`, for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What a task's log lines are about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub request_id: Option<String>,
    pub job_id: Option<String>,
    pub image: Option<usize>,
    pub attempt: Option<u32>,
    pub tenant: Option<String>,
}

tokio::task_local! {
    static CONTEXT: Context;
    /// The stages the task has timed so far (see [`note_stage`]).
    static STAGES: RefCell<BTreeMap<&'static str, f64>>;
}

/// Runs `work` with `context` attached to its log lines.
pub async fn scope<F: Future>(context: Context, work: F) -> F::Output {
    CONTEXT
        .scope(context, STAGES.scope(RefCell::default(), work))
        .await
}

/// Notes how long a stage of the task took, for its later log lines.
pub fn note_stage(name: &'static str, time: Duration) {
    let _ = STAGES.try_with(|stages| stages.borrow_mut().insert(name, time.as_secs_f64()));
}

fn stages() -> BTreeMap<&'static str, f64> {
    STAGES
        .try_with(|stages| stages.borrow().clone())
        .unwrap_or_default()
}

/// The context of the task running now, if any.
pub fn context() -> Option<Context> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// Installs the logger (once, at start-up).
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format {
        LogFormat::Text => builder.format_timestamp_millis(),
        LogFormat::Json => builder.format(|out, record| {
            let message = record.args().to_string();
            let mut context = context().unwrap_or_default();
            // The access log is written as the answer's body ends, outside
            // the request's task: its line ends with `id=<request id>`.
            if context.request_id.is_none() && record.target() == ACCESS_LOG_TARGET {
                context.request_id = message
                    .rsplit_once(" id=")
                    .map(|(_, id)| id.to_string())
                    .filter(|id| id != "-");
                context.tenant = message
                    .split_once(" tenant=")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .filter(|t| *t != "-")
                    .map(str::to_string);
            }
            let line = json_line(
                chrono::Utc::now(),
                record.level(),
                record.target(),
                &message,
                context,
                stages(),
            );
            writeln!(out, "{line}")
        }),
    };
    builder.init();
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    level: &'a str,
    target: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    /// Seconds per stage, as far as the task has come.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    stages: BTreeMap<&'static str, f64>,
}

fn json_line(
    time: chrono::DateTime<chrono::Utc>,
    level: log::Level,
    target: &str,
    message: &str,
    context: Context,
    stages: BTreeMap<&'static str, f64>,
) -> String {
    let line = Line {
        time: time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        level: level.as_str(),
        target,
        message,
        request_id: context.request_id,
        job_id: context.job_id,
        image: context.image,
        attempt: context.attempt,
        tenant: context.tenant,
        stages,
    };
    // Strings, numbers and options only: serialising cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_context_and_escape_the_message() {
        let context = Context {
            job_id: Some("6f1e7963".into()),
            image: Some(3),
            attempt: Some(2),
            ..Context::default()
        };
        let line = json_line(
            chrono::Utc::now(),
            log::Level::Warn,
            "imgpipe::worker",
            "failed: \"bad\"\nnext line",
            context,
            BTreeMap::from([("fetch", 0.002)]),
        );
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["message"], "failed: \"bad\"\nnext line");
        assert_eq!(
            (value["job_id"].as_str(), value["image"].as_u64()),
            (Some("6f1e7963"), Some(3))
        );
        assert_eq!(value["attempt"], 2);
        assert_eq!(value["stages"]["fetch"], 0.002);
        assert!(value.get("request_id").is_none());
    }

    #[tokio::test]
    async fn the_context_is_the_tasks() {
        assert_eq!(context(), None);
        let inside = scope(
            Context {
                request_id: Some("r1".into()),
                ..Context::default()
            },
            async {
                note_stage("fetch", Duration::from_millis(5));
                (context(), stages())
            },
        )
        .await;
        assert_eq!(inside.0.and_then(|c| c.request_id).as_deref(), Some("r1"));
        assert_eq!(inside.1.get("fetch"), Some(&0.005));
        assert!(stages().is_empty(), "outside the task: none");
    }
}

//! How the CLI tells what happens: progress bars on a terminal (indicatif,
//! on standard error), one plain line per event without a terminal (for
//! logs: no control characters), or one JSON object per event (`--json`,
//! on standard output).

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Json,
}

/// A job's counts, as its bar shows them.
#[derive(Debug, Default, Clone)]
struct Counts {
    total: u64,
    succeeded: u64,
    failed: u64,
    /// Images waiting for a retry.
    retrying: HashSet<u64>,
}

pub struct Reporter {
    mode: Mode,
    bars: MultiProgress,
    upload: Mutex<Option<ProgressBar>>,
    /// Results being saved under a directory: a bar on a terminal.
    saving: Mutex<Option<ProgressBar>>,
    jobs: Mutex<HashMap<String, (ProgressBar, Counts)>>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        let bars = MultiProgress::with_draw_target(if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Reporter {
            mode,
            bars,
            upload: Mutex::new(None),
            saving: Mutex::new(None),
            jobs: Mutex::new(HashMap::new()),
        }
    }

    fn json(&self, value: Value) {
        println!("{value}");
    }

    /// A line for the user, above the bars if there are any.
    pub fn note(&self, text: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.bars.println(text);
            }
            Mode::Lines => println!("{text}"),
            Mode::Json => self.json(json!({"event": "note", "message": text})),
        }
    }

    pub fn uploading(&self, files: usize, bytes: u64) {
        match self.mode {
            Mode::Bars => {
                let bar = self.bars.add(ProgressBar::new(bytes));
                bar.set_style(style(
                    "upload  [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                ));
                bar.enable_steady_tick(Duration::from_millis(200));
                *self.upload.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
            }
            Mode::Lines => println!("uploading {files} file(s), {bytes} bytes"),
            Mode::Json => {
                self.json(json!({"event": "upload.started", "files": files, "bytes": bytes}))
            }
        }
    }

    pub fn uploaded_bytes(&self, sent: u64) {
        if let Some(bar) = &*self.upload.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.set_position(sent);
        }
    }

    pub fn uploaded(&self, sent: u64) {
        if let Some(bar) = self.upload.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
        match self.mode {
            Mode::Bars => {
                let _ = self.bars.println(format!("uploaded {sent} bytes"));
            }
            Mode::Lines => println!("uploaded {sent} bytes"),
            Mode::Json => self.json(json!({"event": "upload.finished", "bytes": sent})),
        }
    }

    /// A job accepted: `images` of them, `label` for its bar.
    pub fn job(&self, id: &str, images: u64, label: &str) {
        match self.mode {
            Mode::Bars => {
                let bar = self.bars.add(ProgressBar::new(images));
                bar.set_style(style("{prefix:8} [{bar:30}] {pos}/{len} {msg} ETA {eta}"));
                bar.set_prefix(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                let counts = Counts {
                    total: images,
                    ..Counts::default()
                };
                let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                jobs.insert(id.to_string(), (bar, counts));
            }
            Mode::Lines => println!("job {id}: {images} image(s) queued"),
            Mode::Json => self.json(json!({"event": "job.queued", "job_id": id, "images": images})),
        }
    }

    /// The job's counts from a status (a snapshot, or a poll).
    pub fn counts(&self, id: &str, progress: &Value) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((bar, counts)) = jobs.get_mut(id) {
            counts.succeeded = progress["succeeded"].as_u64().unwrap_or(counts.succeeded);
            counts.failed = progress["failed"].as_u64().unwrap_or(counts.failed);
            show(bar, counts);
        }
    }

    /// One image's event: `kind` is `image.started`, `.succeeded`, …
    pub fn image(&self, id: &str, kind: &str, name: &str, event: &Value) {
        match self.mode {
            Mode::Bars => {
                let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                let Some((bar, counts)) = jobs.get_mut(id) else {
                    return;
                };
                let index = event["index"].as_u64().unwrap_or(u64::MAX);
                match kind {
                    "image.succeeded" => counts.succeeded += 1,
                    "image.failed" => {
                        counts.failed += 1;
                        let why = event["error"].as_str().unwrap_or("failed");
                        bar.println(format!("failed: {name}: {why}"));
                    }
                    _ => {}
                }
                if kind == "image.retrying" {
                    counts.retrying.insert(index);
                } else {
                    counts.retrying.remove(&index);
                }
                show(bar, counts);
            }
            Mode::Lines => {
                let state = kind.trim_start_matches("image.");
                match event["error"].as_str() {
                    Some(why) => println!("job {id}: {name} {state}: {why}"),
                    None => println!("job {id}: {name} {state}"),
                }
            }
            Mode::Json => {
                let mut line = event.clone();
                if let Value::Object(map) = &mut line {
                    map.insert("job_id".into(), json!(id));
                    map.insert("filename".into(), json!(name));
                    map.insert("event".into(), json!(kind));
                }
                self.json(line);
            }
        }
    }

    /// The job's final status.
    pub fn finished(&self, id: &str, status: &Value) {
        let state = status["status"].as_str().unwrap_or("unknown");
        match self.mode {
            Mode::Bars => {
                let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((bar, counts)) = jobs.get_mut(id) {
                    counts.retrying.clear();
                    self.counts_from(status, counts);
                    show(bar, counts);
                    bar.finish_with_message(state.replace('_', " "));
                }
            }
            Mode::Lines => println!("job {id}: {state}"),
            Mode::Json => {
                self.json(json!({"event": "job.finished", "job_id": id, "status": status}))
            }
        }
    }

    fn counts_from(&self, status: &Value, counts: &mut Counts) {
        counts.succeeded = status["progress"]["succeeded"].as_u64().unwrap_or(0);
        counts.failed = status["progress"]["failed"].as_u64().unwrap_or(0);
    }

    /// `files` results about to be saved one by one.
    pub fn saving(&self, files: u64) {
        if self.mode == Mode::Bars {
            let bar = self.bars.add(ProgressBar::new(files));
            bar.set_style(style("save     [{bar:30}] {pos}/{len} {wide_msg}"));
            *self.saving.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
        }
    }

    /// The end of [`Reporter::saving`].
    pub fn saved_all(&self, dir: &std::path::Path, files: u64, bytes: u64) {
        if let Some(bar) = self.saving.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_with_message(String::new());
        }
        let text = format!(
            "saved {files} result(s) under {} ({bytes} bytes)",
            dir.display()
        );
        match self.mode {
            Mode::Bars => {
                let _ = self.bars.println(text);
            }
            Mode::Lines => println!("{text}"),
            Mode::Json => self
                .json(json!({"event": "saved.all", "path": dir, "files": files, "bytes": bytes})),
        }
    }

    pub fn saved(&self, what: &str, path: &std::path::Path, bytes: u64) {
        if let Some(bar) = &*self.saving.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.inc(1);
            bar.set_message(what.to_string());
            return;
        }
        match self.mode {
            Mode::Bars => {
                let _ = self.bars.println(format!(
                    "saved {what} to {} ({bytes} bytes)",
                    path.display()
                ));
            }
            Mode::Lines => println!("saved {what} to {} ({bytes} bytes)", path.display()),
            Mode::Json => {
                self.json(json!({"event": "saved", "what": what, "path": path, "bytes": bytes}))
            }
        }
    }
}

fn show(bar: &ProgressBar, counts: &Counts) {
    bar.set_length(counts.total);
    let done = counts.succeeded + counts.failed;
    bar.set_position(done);
    let mut parts = Vec::new();
    let secs = bar.elapsed().as_secs_f64();
    if done > 0 && secs > 0.0 {
        parts.push(format!("{:.1} img/s", done as f64 / secs));
    }
    if counts.failed > 0 {
        parts.push(format!("{} failed", counts.failed));
    }
    if !counts.retrying.is_empty() {
        parts.push(format!("{} retrying", counts.retrying.len()));
    }
    bar.set_message(parts.join(", "));
}

//! `imgpipe submit | status | download | watch` against a real server: the
//! binary run as a user would, with its output and exit status checked.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{jpeg, png, png_with_corrupt_pixels, unzip, Backend, Deployment, TestApp};

/// Runs the client with the app's address and key in its environment.
fn cli(app: &TestApp, args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args(args)
        .current_dir(dir)
        .env("IMGPIPE_SERVER", &app.base)
        .env("IMGPIPE_API_KEY", &app.process.admin_key)
        .output()
        .expect("run imgpipe")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A folder of nested images, a text file and a hidden file.
fn folder(root: &Path, broken: bool) {
    std::fs::create_dir_all(root.join("trip/day 1")).unwrap();
    std::fs::write(root.join("a.png"), png(20, 10, 1)).unwrap();
    std::fs::write(root.join("b.jpg"), jpeg(16, 16, 2)).unwrap();
    std::fs::write(root.join("trip/c.png"), png(12, 30, 3)).unwrap();
    std::fs::write(root.join("trip/day 1/d.png"), png(9, 9, 4)).unwrap();
    std::fs::write(root.join("trip/day 1/e.jpeg"), jpeg(24, 8, 5)).unwrap();
    std::fs::write(root.join("notes.txt"), "not an image").unwrap();
    std::fs::write(root.join(".DS_Store"), "junk").unwrap();
    if broken {
        std::fs::write(
            root.join("trip/broken.png"),
            png_with_corrupt_pixels(40, 30),
        )
        .unwrap();
    }
}

/// Nested folders, a text file, more images than one job takes: every
/// image processed, results under --out-dir at their relative paths,
/// exit 0; without a terminal, plain lines and no control characters.
async fn a_folder_in_several_jobs(backend: Backend) {
    let app = Deployment::new(backend)
        .env("IMGPIPE_MAX_FILES", "2")
        .serve();
    let work = tempfile::tempdir().unwrap();
    folder(&work.path().join("photos"), false);
    let out = cli(
        &app,
        &[
            "submit",
            "photos",
            "--ops",
            "invert,flip",
            "--out-dir",
            "results",
        ],
        work.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("skipped") && stdout.contains("notes.txt: not an image"),
        "{stdout}"
    );
    assert!(stdout.contains("in 3 jobs"), "{stdout}");
    assert!(
        !stdout.contains('\x1b') && !text(&out.stderr).contains('\x1b'),
        "{stdout}"
    );
    let results = work.path().join("results");
    for (name, w, h) in [
        ("a.png", 20, 10),
        ("b.jpg", 16, 16),
        ("trip/c.png", 12, 30),
        ("trip/day 1/d.png", 9, 9),
        ("trip/day 1/e.jpeg", 24, 8),
    ] {
        let img = image::open(results.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (w, h), "{name}");
    }
    assert!(!results.join("notes.txt").exists());
}

/// A failing image: exit 2, its name and reason on standard error; the
/// others saved in the ZIP. `--json` lines all parse and tell the story.
async fn a_failed_image_exits_2_and_json_parses(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let work = tempfile::tempdir().unwrap();
    folder(&work.path().join("photos"), true);
    let out = cli(
        &app,
        &[
            "submit",
            "photos",
            "--ops",
            "grayscale",
            "--json",
            "--out",
            "all.zip",
        ],
        work.path(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\n{stderr}",
        text(&out.stdout)
    );
    assert!(stderr.contains("failed: trip/broken.png: "), "{stderr}");
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    for wanted in [
        "note",
        "upload.started",
        "upload.finished",
        "job.queued",
        "image.succeeded",
        "image.failed",
        "job.finished",
        "saved",
    ] {
        assert!(events.contains(&wanted), "{wanted} missing from {events:?}");
    }
    let finished = lines.iter().find(|l| l["event"] == "job.finished").unwrap();
    assert_eq!(finished["status"]["status"], "completed_with_errors");
    let entries = unzip(&std::fs::read(work.path().join("all.zip")).unwrap());
    assert_eq!(
        entries.iter().filter(|(n, _)| n != "manifest.json").count(),
        5
    );
    // `status` and `download` of the same job.
    let id = finished["job_id"].as_str().unwrap();
    let status = cli(&app, &["status", id], work.path());
    assert_eq!(status.status.code(), Some(0));
    assert!(
        text(&status.stdout).contains("completed with errors"),
        "{}",
        text(&status.stdout)
    );
    let again = cli(&app, &["download", id, "--out", "again.zip"], work.path());
    assert_eq!(
        again.status.code(),
        Some(2),
        "the failed image is reported again"
    );
    assert!(work.path().join("again.zip").exists());
}

/// A server that is down, a bad chain, a path with no image: exit 1, one line.
async fn errors_are_one_line_and_exit_1(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let work = tempfile::tempdir().unwrap();
    folder(&work.path().join("photos"), false);
    let bad = cli(
        &app,
        &["submit", "photos", "--ops", "resize:huge"],
        work.path(),
    );
    assert_eq!(bad.status.code(), Some(1));
    let stderr = text(&bad.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("resize"), "{stderr}");
    let none = cli(
        &app,
        &["submit", "photos/notes.txt", "--ops", "invert"],
        work.path(),
    );
    assert_eq!(none.status.code(), Some(1));
    let down = Command::new(env!("CARGO_BIN_EXE_imgpipe"))
        .args([
            "submit",
            "photos",
            "--ops",
            "invert",
            "--server",
            "http://127.0.0.1:9",
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let stderr = text(&down.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("imgpipe: cannot reach http://127.0.0.1:9"),
        "{stderr}"
    );
}

/// On a terminal (under `script`), progress bars are drawn.
async fn a_terminal_shows_bars(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let work = tempfile::tempdir().unwrap();
    folder(&work.path().join("photos"), false);
    let command = format!(
        "{} submit photos --ops invert --out-dir results",
        env!("CARGO_BIN_EXE_imgpipe")
    );
    let transcript = work.path().join("transcript");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&transcript)
        .current_dir(work.path())
        .env("IMGPIPE_SERVER", &app.base)
        .env("IMGPIPE_API_KEY", &app.process.admin_key)
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "100")
        .output()
        .expect("run script (util-linux)");
    let shown = std::fs::read_to_string(&transcript).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("upload  ["), "{shown}");
    assert!(
        shown.contains("images   [") && shown.contains("5/5"),
        "{shown}"
    );
    assert!(
        shown.contains('\x1b'),
        "a terminal gets control sequences: {shown}"
    );
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-terminal.txt");
    std::fs::write(target, &shown).unwrap();
}

crate::both_backends!(
    a_folder_in_several_jobs,
    a_failed_image_exits_2_and_json_parses,
    errors_are_one_line_and_exit_1,
    a_terminal_shows_bars,
);

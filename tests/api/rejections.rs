//! Bad input: every rejection is a 4xx JSON error naming the file and the
//! reason, and a rejected (or abandoned) request leaves nothing stored,
//! recorded or enqueued.

use serde_json::Value;

use crate::helpers::{jpeg, png, png_bomb, Backend, Deployment, File};

struct Case {
    name: &'static str,
    query: &'static str,
    files: Vec<File>,
    status: u16,
    code: &'static str,
    file: Option<&'static str>,
}

impl Case {
    /// A refused option: no file is at fault.
    fn option(
        name: &'static str,
        query: &'static str,
        code: &'static str,
        files: Vec<File>,
    ) -> Case {
        Case {
            name,
            query,
            files,
            status: 422,
            code,
            file: None,
        }
    }
}

async fn bad_requests_get_documented_4xx_and_leave_nothing_behind(backend: Backend) {
    let deployment = Deployment::new(backend)
        .env("IMGPIPE_MAX_FILES", "3")
        .env("IMGPIPE_MAX_FILE_BYTES", "300000")
        .env("IMGPIPE_MAX_PIXELS", "4000000")
        .env("IMGPIPE_MAX_IMAGE_COST", "5");
    let app = deployment.serve();
    let good = || ("good.png".to_string(), png(16, 16, 1));
    let full_jpeg = jpeg(64, 48, 2);
    let truncated = full_jpeg[..full_jpeg.len() / 2].to_vec();

    let cases = vec![
        Case {
            name: "text file named .jpg",
            query: "filter=blur",
            files: vec![
                good(),
                ("notes.jpg".into(), b"just some text, not an image".to_vec()),
            ],
            status: 415,
            code: "unsupported_format",
            file: Some("notes.jpg"),
        },
        Case {
            name: "truncated JPEG",
            query: "filter=blur",
            files: vec![("cut.jpg".into(), truncated)],
            status: 422,
            code: "truncated_image",
            file: Some("cut.jpg"),
        },
        Case {
            name: "zero-byte file",
            query: "filter=blur",
            files: vec![good(), ("empty.png".into(), Vec::new())],
            status: 400,
            code: "empty_file",
            file: Some("empty.png"),
        },
        Case::option(
            "unknown filter",
            "filter=sepia",
            "unknown_operation",
            vec![good()],
        ),
        Case::option("missing filter", "", "missing_operation", vec![good()]),
        Case::option(
            "unknown op in a chain",
            "ops=blur,sepia:3",
            "unknown_operation",
            vec![good()],
        ),
        Case::option(
            "even median size",
            "ops=resize:8x8,median:4",
            "invalid_argument",
            vec![good()],
        ),
        Case::option(
            "radius out of range",
            "filter=gaussian_blur:1000",
            "invalid_argument",
            vec![good()],
        ),
        Case::option(
            "missing required argument",
            "ops=posterize",
            "invalid_argument",
            vec![good()],
        ),
        Case::option(
            "argument that is not a number",
            "ops=rotate:abc",
            "invalid_argument",
            vec![good()],
        ),
        Case::option(
            "bad resample name",
            "ops=resize:8x8:fit:cubic",
            "invalid_argument",
            vec![good()],
        ),
        Case::option(
            "empty piece",
            "ops=blur,,sharpen",
            "missing_operation",
            vec![good()],
        ),
        Case::option(
            "filter and ops",
            "filter=blur&ops=sharpen",
            "filter_and_ops",
            vec![good()],
        ),
        Case::option(
            "a chain costing more CPU than allowed, whatever the input",
            "ops=resize:1900x1900,mode:25,mode:25,mode:25,mode:25,mode:25",
            "too_costly",
            vec![good()],
        ),
        Case {
            name: "a tiny image enlarged past the upscale cap",
            query: "ops=resize:200x200",
            files: vec![good()],
            status: 422,
            code: "too_costly",
            file: Some("good.png"),
        },
        Case::option(
            "resize over the pixel limit",
            "ops=resize:4000x4000",
            "output_too_large",
            vec![good()],
        ),
        Case::option(
            "bad lossless flag",
            "filter=blur&format=webp&lossless=maybe",
            "invalid_lossless",
            vec![good()],
        ),
        Case {
            name: "bad output format",
            query: "filter=blur&format=gif",
            files: vec![good()],
            status: 422,
            code: "unknown_format",
            file: None,
        },
        Case {
            name: "bad quality",
            query: "filter=blur&quality=0",
            files: vec![good()],
            status: 422,
            code: "invalid_quality",
            file: None,
        },
        Case {
            name: "no files",
            query: "filter=blur",
            files: vec![],
            status: 400,
            code: "no_files",
            file: None,
        },
        Case {
            name: "too many files",
            query: "filter=blur",
            files: vec![good(), good(), good(), good()],
            status: 413,
            code: "too_many_files",
            file: None,
        },
        Case {
            name: "over-size file",
            query: "filter=blur",
            files: vec![("huge.png".into(), vec![0x89; 400_000])],
            status: 413,
            code: "file_too_large",
            file: Some("huge.png"),
        },
        Case {
            name: "20000x20000 PNG header (decompression bomb)",
            query: "filter=blur",
            files: vec![good(), ("bomb.png".into(), png_bomb(20_000, 20_000))],
            status: 413,
            code: "too_many_pixels",
            file: Some("bomb.png"),
        },
    ];
    for case in cases {
        let resp = app.submit(case.query, case.files).await;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").cloned();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: body is not JSON: {e}", case.name));
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(content_type.unwrap(), "application/json", "{}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.len() > 10,
            "{}: message should explain: {body}",
            case.name
        );
        for internal in ["panick", "assertion", "src/", ".rs:"] {
            assert!(
                !message.contains(internal),
                "{}: the message shows internals: {body}",
                case.name
            );
        }
        match case.file {
            Some(file) => {
                assert_eq!(body["error"]["file"], file, "{}: {body}", case.name);
                assert!(
                    message.contains(file),
                    "{}: message should name the file: {body}",
                    case.name
                );
            }
            None => assert!(body["error"]["file"].is_null(), "{}: {body}", case.name),
        }
        // An invalid operation names the operation; a bad argument also says how to write it.
        match case.code {
            "unknown_operation" | "invalid_argument" | "output_too_large" | "too_costly" => {
                let op = body["error"]["operation"].as_str().unwrap_or_default();
                assert!(
                    !op.is_empty() && message.contains(op),
                    "{}: {body}",
                    case.name
                );
            }
            _ => {}
        }
        if case.code == "invalid_argument" {
            let op = body["error"]["operation"].as_str().unwrap_or_default();
            let usage = body["error"]["usage"].as_str().unwrap_or_default();
            assert!(
                usage.starts_with(op),
                "{}: usage should show the syntax: {body}",
                case.name
            );
        }
    }

    let keys = deployment.leftover_records().await;
    assert!(
        keys.is_empty(),
        "a rejected request wrote job metadata or tasks: {keys:?}"
    );
    assert_eq!(
        deployment.stored_objects(),
        0,
        "a rejected request stored objects"
    );
    assert_eq!(
        deployment.spooled_files(),
        0,
        "spooled uploads were not cleaned up"
    );
}

/// Refused requests must be answered whole, however early they are refused:
/// a server that closes the connection on unread body data gets it reset, and
/// the client then sees "connection closed" instead of the error. Repeated,
/// because the reset only sometimes beats the answer.
async fn early_refusals_reach_the_client_every_time(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let body = vec![b'x'; 256 * 1024];
    for round in 0..40 {
        let not_multipart = app
            .send(
                app.client
                    .post(app.url("/process-job?filter=blur"))
                    .header("content-type", "application/json")
                    .body(body.clone()),
            )
            .await;
        assert_eq!(not_multipart.status(), 400, "round {round}");
        let unknown_filter = app
            .submit("filter=sepia", vec![("a.png".into(), body.clone())])
            .await;
        assert_eq!(unknown_filter.status(), 422, "round {round}");
    }
}

async fn malformed_requests_are_400_json(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let not_multipart = app
        .send(
            app.client
                .post(app.url("/process-job?filter=blur"))
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    assert_eq!(not_multipart.status(), 400);
    let body: Value = not_multipart.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_multipart");

    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(png(4, 4, 1)).file_name("a.png"),
    );
    let wrong_field = app
        .send(
            app.client
                .post(app.url("/process-job?filter=blur"))
                .multipart(form),
        )
        .await;
    assert_eq!(wrong_field.status(), 400);
    let body: Value = wrong_field.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unexpected_field");
    assert!(body["error"]["message"].as_str().unwrap().contains("image"));
}

async fn unknown_jobs_and_images_are_404_json(backend: Backend) {
    let app = Deployment::new(backend).serve();
    for (path, code) in [
        (
            "/status-job/00000000-0000-4000-8000-000000000000",
            "job_not_found",
        ),
        ("/status-job/not-a-uuid", "job_not_found"),
        (
            "/download/00000000-0000-4000-8000-000000000000",
            "job_not_found",
        ),
        (
            "/images/00000000-0000-4000-8000-000000000000/0",
            "job_not_found",
        ),
        (
            "/images/00000000-0000-4000-8000-000000000000/minus-one",
            "invalid_path",
        ),
        (
            "/images/00000000-0000-4000-8000-000000000000/+1",
            "invalid_path",
        ),
        ("/no/such/route", "not_found"),
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
}

/// A client that goes away mid-upload, after its first files were received
/// and stored (each is stored as it arrives): nothing of its request stays,
/// neither those stored uploads nor anything spooled or recorded.
async fn a_client_gone_mid_upload_leaves_nothing_behind(backend: Backend) {
    use std::io::Write;

    let deployment = Deployment::new(backend);
    let app = deployment.serve();
    let boundary = "gone-mid-upload";
    let part = |name: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; \
             filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .into_bytes()
    };
    let mut body = Vec::new();
    for seed in 1..=2 {
        body.extend(part(&format!("{seed}.png")));
        body.extend(png(40, 30, seed));
        body.extend(b"\r\n");
    }
    // The third file's head and its first bytes; the rest never comes.
    body.extend(part("3.png"));
    body.extend(&png(40, 30, 3)[..16]);
    let host = app.base.trim_start_matches("http://").to_string();
    let head = format!(
        "POST /process-job?filter=blur HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n",
        app.process.admin_key,
        body.len() + 100_000
    );
    let mut socket = std::net::TcpStream::connect(&host).expect("connect");
    socket.write_all(head.as_bytes()).expect("head");
    socket.write_all(&body).expect("body");
    // The two whole files are stored while the request is still open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while deployment.stored_objects() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the received files were not stored as they arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(socket);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while deployment.stored_objects() > 0 || deployment.spooled_files() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} stored and {} spooled files left behind by a client gone mid-upload",
            deployment.stored_objects(),
            deployment.spooled_files()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let records = deployment.leftover_records().await;
    assert!(records.is_empty(), "records left behind: {records:?}");
}

crate::both_backends!(
    a_client_gone_mid_upload_leaves_nothing_behind,
    bad_requests_get_documented_4xx_and_leave_nothing_behind,
    early_refusals_reach_the_client_every_time,
    malformed_requests_are_400_json,
    unknown_jobs_and_images_are_404_json,
);

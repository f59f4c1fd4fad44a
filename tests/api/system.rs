//! Health, readiness, self-description and the served contract.

use serde_json::Value;

use crate::helpers::{Backend, Deployment};

async fn health_readiness_filters_and_docs(backend: Backend) {
    let app = Deployment::new(backend).serve();

    let health: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["object_store", "metadata", "queue"]);

    let filters: Value = app.get("/filters").await.json().await.unwrap();
    let names: Vec<&str> = filters["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, imgpipe::ops::names(), "the registry, in order");
    // One source of truth: openapi.yaml documents exactly the registry's filters.
    let spec: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../openapi.yaml")).expect("openapi.yaml parses");
    let documented: Vec<&str> = spec["components"]["schemas"]["FilterName"]["enum"]
        .as_sequence()
        .expect("FilterName enum")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    assert_eq!(documented, names, "openapi.yaml FilterName enum");

    let spec = app.get("/openapi.yaml").await;
    assert_eq!(spec.status(), 200);
    let spec = spec.text().await.unwrap();
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert_eq!(spec, on_disk);
    for route in [
        "/process-job",
        "/status-job/{job_id}",
        "/download/{job_id}",
        "/images/{job_id}/{index}",
        "/filters",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            spec.contains(&format!("  {route}:")),
            "openapi.yaml does not document {route}"
        );
    }
    for name in names {
        assert!(
            spec.contains(name),
            "openapi.yaml does not list filter {name}"
        );
    }

    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200, "/docs should redirect to the UI");
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page expected");
    let config = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        config.contains("/openapi.yaml"),
        "Swagger UI must load our spec: {config}"
    );
}

async fn protocol_errors_are_json_too(backend: Backend) {
    let app = Deployment::new(backend).serve();

    let wrong_method = app.send(app.client.delete(app.url("/healthz"))).await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    let get_upload = app.get("/process-job?filter=blur").await;
    assert_eq!(get_upload.status(), 405);
    assert_eq!(get_upload.headers()["allow"], "POST");

    let job = app
        .submit_ok(
            "filter=blur",
            vec![("a.png".into(), crate::helpers::png(8, 8, 1))],
        )
        .await;
    let id = job["job_id"].as_str().unwrap();
    let bad_query = app.get(&format!("/download/{id}?partial=maybe")).await;
    assert_eq!(bad_query.status(), 400);
    let body: Value = bad_query.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");

    let nowhere = app.get("/no/such/route").await;
    assert_eq!(nowhere.status(), 404);
    let body: Value = nowhere.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let bad_index = app.get(&format!("/images/{id}/x")).await;
    assert_eq!(bad_index.status(), 404);
    let unknown_job = app.get("/status-job/01ARZ3NDEKTSV4RRFFQ69G5FAV").await;
    assert_eq!(unknown_job.status(), 404);
    let body: Value = unknown_job.json().await.unwrap();
    assert_eq!(body["error"]["code"], "job_not_found");
}

/// `imgpipe check` (the containers' health check) passes when the backends
/// answer and fails, promptly and saying which, when one does not.
async fn check_command_reports_each_backend(backend: Backend) {
    let deployment = Deployment::new(backend);
    let ok = deployment.run("check");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for name in ["object_store: ok", "metadata: ok", "queue: ok"] {
        assert!(out.contains(name), "{out}");
    }

    let broken = match backend {
        // A data directory that cannot be created (its parent is a file).
        Backend::Embedded => {
            let file = deployment.tmp_dir.join("a-file");
            std::fs::write(&file, b"x").expect("write");
            deployment
                .clone()
                .env("IMGPIPE_DATA_DIR", &file.join("data").to_string_lossy())
        }
        Backend::Distributed => deployment.clone().env("REDIS_URL", "redis://127.0.0.1:1"),
    };
    let started = std::time::Instant::now();
    let failed = broken.run("check");
    assert!(!failed.status.success(), "check passed without its backend");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "check hung"
    );
    let err = String::from_utf8_lossy(&failed.stderr);
    let culprit = match backend {
        Backend::Embedded => "cannot create",
        Backend::Distributed => "cannot connect to Redis",
    };
    assert!(err.contains(culprit), "says which backend failed: {err}");
}

/// `IMGPIPE_LOG_FORMAT=json`: every line of the log is a JSON object; a
/// task's lines carry its job, image and attempt, a request's its id.
async fn json_logs_carry_the_context(backend: Backend) {
    let app = Deployment::new(backend)
        .env("IMGPIPE_LOG_FORMAT", "json")
        .serve();
    let files = vec![("a.png".to_string(), crate::helpers::png(30, 20, 1))];
    let job = app.submit_ok("filter=blur", files).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    app.wait_done(&id, std::time::Duration::from_secs(60)).await;
    let logs = app.process.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["time"].is_string()
        && l["level"].is_string()
        && l["target"].is_string()
        && l["message"].is_string()));
    let task = lines
        .iter()
        .find(|l| {
            l["job_id"] == id.as_str() && l["message"].as_str().is_some_and(|m| m.contains("done"))
        })
        .unwrap_or_else(|| panic!("no task line for job {id}:\n{logs}"));
    assert_eq!(task["image"], 0);
    assert_eq!(task["attempt"], 1);
    for stage in ["queue", "fetch", "render", "store"] {
        assert!(task["stages"][stage].is_f64(), "{stage} missing: {task}");
    }
    let request = lines
        .iter()
        .find(|l| {
            l["target"] == "imgpipe::http::request_id"
                || l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("POST /process-job"))
        })
        .unwrap_or_else(|| panic!("no access-log line:\n{logs}"));
    let request_id = request["request_id"].as_str().unwrap_or_default();
    assert_eq!(request_id.len(), 26, "a ULID: {request}");
    assert_eq!(request["tenant"], "local", "{request}");
}

crate::both_backends!(
    json_logs_carry_the_context,
    check_command_reports_each_backend,
    health_readiness_filters_and_docs,
    protocol_errors_are_json_too,
);

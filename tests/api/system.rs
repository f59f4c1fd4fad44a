//! Health, readiness, self-description and the served contract.

use serde_json::Value;

use crate::helpers::Deployment;

#[tokio::test]
async fn health_readiness_filters_and_docs() {
    let app = Deployment::new().serve();

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
    assert_eq!(names, ["blur", "sharpen", "smooth", "edges", "grayscale"]);

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

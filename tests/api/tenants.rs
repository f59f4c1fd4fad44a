//! Keys, tenants and what a caller may see, in both deployments: every
//! route refuses a missing, wrong or revoked key (401) and a key without
//! the route's scope (403); another tenant's job is indistinguishable from
//! a missing one; signed links open exactly one read until they expire;
//! `Idempotency-Key` never makes a second job; `imgpipe keys` manages keys
//! in the same store, stored as hashes only; start-up refuses to run open
//! (or keyless) where anyone could reach it.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{png, required_env, trickled, upload_stream, Backend, Deployment, TestApp};
use crate::waiting::until;

/// `imgpipe keys create …`: returns (id, key). The key is the last line.
fn create_key(deployment: &Deployment, tenant: &str, scopes: &str) -> (String, String) {
    create_key_with(deployment, tenant, scopes, &[])
}

/// `imgpipe keys create …` with more options (quota settings).
pub fn create_key_with(
    deployment: &Deployment,
    tenant: &str,
    scopes: &str,
    more: &[&str],
) -> (String, String) {
    let out = deployment
        .command("keys")
        .args([
            "create", "--tenant", tenant, "--scopes", scopes, "--label", "test",
        ])
        .args(more)
        .output()
        .expect("run imgpipe keys create");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "keys create failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = stdout.lines().last().expect("a last line").to_string();
    let id = stdout
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .expect("the key's id")
        .to_string();
    assert!(key.starts_with("ipk_") && key.len() == 68, "{stdout}");
    (id, key)
}

fn keys(deployment: &Deployment, args: &[&str]) -> (bool, String) {
    let out = deployment
        .command("keys")
        .args(args)
        .output()
        .expect("run imgpipe keys");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON error body");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

async fn submit_one(app: &TestApp) -> String {
    let body = app
        .submit_ok("filter=blur", vec![("a.png".into(), png(16, 12, 1))])
        .await;
    body["job_id"].as_str().expect("job id").to_string()
}

/// The protected routes, for a job that exists.
fn protected(job: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POST", "/process-job?filter=blur".to_string()),
        ("GET", format!("/status-job/{job}")),
        ("DELETE", format!("/jobs/{job}")),
        ("GET", format!("/download/{job}")),
        ("GET", format!("/images/{job}/0")),
    ]
}

async fn call(app: &TestApp, method: &str, path: &str) -> reqwest::Response {
    let url = app.url(path);
    let request = match method {
        "POST" => app
            .client
            .post(url)
            .multipart(reqwest::multipart::Form::new().part(
                "files",
                reqwest::multipart::Part::bytes(png(8, 8, 2)).file_name("x.png"),
            )),
        "DELETE" => app.client.delete(url),
        _ => app.client.get(url),
    };
    app.send(request).await
}

async fn every_route_needs_a_valid_key_with_its_scope(backend: Backend) {
    let deployment = Deployment::new(backend);
    let admin = deployment.serve();
    let job = submit_one(&admin).await;

    let anonymous = admin.as_caller(None);
    let wrong = admin.as_caller(Some(
        "ipk_0000000000000000000000000000000000000000000000000000000000000000",
    ));
    let garbled = admin.as_caller(Some("not a key at all"));
    for (method, path) in protected(&job) {
        let resp = call(&anonymous, method, &path).await;
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"imgpipe\""
        );
        assert_eq!(
            error_code(resp).await,
            (401, "missing_key".into()),
            "{method} {path}"
        );
        assert_eq!(
            error_code(call(&wrong, method, &path).await).await,
            (401, "invalid_key".into()),
            "{method} {path}"
        );
        assert_eq!(error_code(call(&garbled, method, &path).await).await.0, 401);
    }
    for public in ["/healthz", "/readyz", "/filters", "/openapi.yaml", "/docs/"] {
        assert_eq!(anonymous.get(public).await.status(), 200, "{public}");
    }

    // Request ids: a well-formed one is echoed (header and error body), any
    // other is replaced.
    for (sent, echoed) in [("client-req:42", true), ("bad id with spaces", false)] {
        let resp = anonymous
            .send(
                anonymous
                    .client
                    .get(anonymous.url(&format!("/status-job/{job}")))
                    .header("X-Request-Id", sent),
            )
            .await;
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id == sent, echoed, "{sent:?} → {id:?}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["request_id"], id.as_str());
    }

    // Scopes: a reader cannot submit or delete, a submitter cannot read.
    let (_, reader_key) = create_key(&deployment, "team-a", "read");
    let (_, submitter_key) = create_key(&deployment, "team-a", "submit");
    let reader = admin.as_caller(Some(&reader_key));
    let submitter = admin.as_caller(Some(&submitter_key));
    for (method, path) in protected(&job) {
        let (caller, needed) = match method {
            "GET" => (&submitter, "read"),
            _ => (&reader, "submit"),
        };
        let resp = call(caller, method, &path).await;
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(
            body["error"]["code"], "forbidden",
            "{method} {path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needed), "{message}");
    }

    // A revoked key is refused from the next request on, server running.
    let (id, key) = create_key(&deployment, "team-b", "submit,read");
    let holder = admin.as_caller(Some(&key));
    let own = submit_one(&holder).await;
    assert_eq!(
        holder.get(&format!("/status-job/{own}")).await.status(),
        200
    );
    let (ok, out) = keys(&deployment, &["revoke", &id]);
    assert!(ok, "{out}");
    assert_eq!(
        error_code(holder.get(&format!("/status-job/{own}")).await).await,
        (401, "invalid_key".into())
    );
}

async fn another_tenants_job_is_indistinguishable_from_a_missing_one(backend: Backend) {
    let deployment = Deployment::new(backend);
    let admin = deployment.serve();
    let (_, a_key) = create_key(&deployment, "team-a", "submit,read");
    let (_, b_key) = create_key(&deployment, "team-b", "submit,read");
    let a = admin.as_caller(Some(&a_key));
    let b = admin.as_caller(Some(&b_key));
    let job = submit_one(&a).await;
    a.wait_done(&job, Duration::from_secs(60)).await;

    let reads = [
        ("GET", format!("/status-job/{job}")),
        ("GET", format!("/download/{job}")),
        ("GET", format!("/images/{job}/0")),
        ("DELETE", format!("/jobs/{job}")),
    ];
    let strip = |mut body: Value| {
        body["error"]["request_id"] = Value::Null;
        body
    };
    let mut seen_by_b = Vec::new();
    for (method, path) in &reads {
        let resp = call(&b, method, path).await;
        assert_eq!(resp.status(), 404, "{method} {path}");
        seen_by_b.push(strip(resp.json().await.expect("JSON")));
    }
    // Still there for its owner and for admin: B's delete touched nothing.
    assert_eq!(a.status(&job).await["status"], "completed");
    assert_eq!(admin.status(&job).await["status"], "completed");
    assert_eq!(admin.get(&format!("/images/{job}/0")).await.status(), 200);

    // Once the job is really gone, its owner gets exactly what B got.
    let deleted = admin
        .send(admin.client.delete(admin.url(&format!("/jobs/{job}"))))
        .await;
    assert_eq!(deleted.status(), 204, "admin may delete any job");
    for ((method, path), b_body) in reads.iter().zip(&seen_by_b) {
        let resp = call(&a, method, path).await;
        assert_eq!(resp.status(), 404);
        assert_eq!(&strip(resp.json().await.expect("JSON")), b_body, "{path}");
    }
}

/// Splits a signed link into (path, expires, sig).
fn link_parts(link: &str) -> (String, String, String) {
    let (path, query) = link.split_once('?').expect("a signed link has a query");
    let value = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {link}"))
            .to_string()
    };
    (path.to_string(), value("expires"), value("sig"))
}

async fn signed_links_open_one_read_until_they_expire(backend: Backend) {
    let deployment = Deployment::new(backend).env("IMGPIPE_LINK_TTL_SECS", "4");
    let admin = deployment.serve();
    let anonymous = admin.as_caller(None);
    let job = submit_one(&admin).await;
    admin.wait_done(&job, Duration::from_secs(60)).await;
    let status = admin.status(&job).await;
    let download = status["download_url"]
        .as_str()
        .expect("download_url")
        .to_string();
    let result = status["images"][0]["result_url"]
        .as_str()
        .expect("result_url")
        .to_string();

    let zip = anonymous.get(&download).await;
    assert_eq!(zip.status(), 200, "a signed link needs no key");
    assert_eq!(zip.headers()["content-type"], "application/zip");
    assert_eq!(anonymous.get(&result).await.status(), 200);
    // The manifest in the ZIP points at plain routes: a link never mints
    // fresh links that would outlive it.
    let entries = crate::helpers::unzip(&zip.bytes().await.expect("ZIP"));
    let (_, manifest) = entries
        .iter()
        .find(|(name, _)| name == "manifest.json")
        .expect("a manifest");
    let manifest = String::from_utf8_lossy(manifest);
    assert!(!manifest.contains("sig="), "{manifest}");

    // Any changed byte voids it; it opens nothing but its own path.
    let (path, expires, sig) = link_parts(&result);
    let flipped: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 5 {
                if c == 'a' {
                    'b'
                } else {
                    'a'
                }
            } else {
                c
            }
        })
        .collect();
    let later = (expires.parse::<i64>().unwrap() + 1).to_string();
    let other_index = format!("{}/1", path.rsplit_once('/').expect("an index").0);
    let encoded_sig: String = sig.chars().map(|c| format!("%{:02X}", c as u8)).collect();
    for tampered in [
        format!("{path}?expires={expires}&sig={}", sig.to_uppercase()),
        format!("{path}?expires={expires}&sig={encoded_sig}"),
        format!("{path}?expires=%2B{expires}&sig={sig}"),
        format!("{path}?expires={expires}&sig={sig}&sig={sig}"),
        format!("{path}?expires={expires}&sig={flipped}"),
        format!("{path}?expires={later}&sig={sig}"),
        format!("{other_index}?expires={expires}&sig={sig}"),
        format!("/download/{job}?expires={expires}&sig={sig}"),
        format!("{path}?expires={expires}"),
        format!("{path}?sig={sig}"),
    ] {
        assert_eq!(
            error_code(anonymous.get(&tampered).await).await,
            (403, "invalid_link".into()),
            "{tampered}"
        );
    }
    let status_with_link = format!("/status-job/{job}?expires={expires}&sig={sig}");
    assert_eq!(anonymous.get(&status_with_link).await.status(), 401);
    let delete = anonymous
        .send(
            anonymous
                .client
                .delete(anonymous.url(&format!("/jobs/{job}?expires={expires}&sig={sig}"))),
        )
        .await;
    assert_eq!(delete.status(), 401, "a link is a read, nothing else");

    until("the link to expire", Duration::from_secs(10), || async {
        let resp = anonymous.get(&result).await;
        if resp.status() == 200 {
            return Err("still works".to_string());
        }
        let (status, code) = error_code(resp).await;
        (status == 403 && code == "link_expired")
            .then_some(())
            .ok_or(format!("{status} {code}"))
    })
    .await;

    // A fresh link stops working when the job is deleted.
    let fresh = admin.status(&job).await["download_url"]
        .as_str()
        .expect("download_url")
        .to_string();
    assert_eq!(anonymous.get(&fresh).await.status(), 200);
    admin
        .send(admin.client.delete(admin.url(&format!("/jobs/{job}"))))
        .await;
    assert_eq!(
        error_code(anonymous.get(&fresh).await).await,
        (404, "job_not_found".into())
    );

    // The access log names the client and the tenant, never a whole job
    // id or a signature.
    let logs = admin.process.logs();
    let access: Vec<&str> = logs.lines().filter(|l| l.contains(" tenant=")).collect();
    assert!(access
        .iter()
        .any(|l| l.contains("127.0.0.1") && l.contains("tenant=local")));
    for line in &access {
        assert!(!line.contains(&job) && !line.contains(&sig), "{line}");
    }
}

async fn post_with_key(app: &TestApp, key: &str, file: Vec<u8>) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "files",
        reqwest::multipart::Part::bytes(file).file_name("a.png"),
    );
    app.send(
        app.client
            .post(app.url("/process-job?filter=blur"))
            .header("Idempotency-Key", key)
            .multipart(form),
    )
    .await
}

async fn an_idempotency_key_never_makes_a_second_job(backend: Backend) {
    let deployment = Deployment::new(backend);
    let app = deployment.serve();
    let image = png(40, 30, 3);

    let first = post_with_key(&app, "\"order-1\"", image.clone()).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.expect("body");
    let job: Value = serde_json::from_slice(&first_body).expect("JSON");
    let job_id = job["job_id"].as_str().expect("id").to_string();
    // Counted once the job has settled, so only a second job could add to them.
    app.wait_done(&job_id, Duration::from_secs(60)).await;
    let records = deployment.leftover_records().await.len();
    let objects = deployment.stored_objects();

    let again = post_with_key(&app, "order-1", image.clone()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.bytes().await.expect("body"),
        first_body,
        "the same answer"
    );
    assert_eq!(
        deployment.leftover_records().await.len(),
        records,
        "no new records"
    );
    assert_eq!(deployment.stored_objects(), objects, "nothing new stored");

    let different = post_with_key(&app, "order-1", png(40, 30, 4)).await;
    assert_eq!(
        error_code(different).await,
        (422, "idempotency_key_reused".into())
    );
    let bad = post_with_key(&app, &"k".repeat(300), image.clone()).await;
    assert_eq!(
        error_code(bad).await,
        (400, "invalid_idempotency_key".into())
    );

    // Keys are per tenant: another tenant's "order-1" is its own job.
    let (_, other_key) = create_key(&deployment, "team-b", "submit,read");
    let other = app.as_caller(Some(&other_key));
    let theirs = post_with_key(&other, "order-1", image.clone()).await;
    assert_eq!(theirs.status(), 202);
    let theirs: Value = theirs.json().await.expect("JSON");
    assert_ne!(theirs["job_id"], job["job_id"]);

    // Racing duplicates: exactly one job, whoever wins.
    let racers =
        futures::future::join_all((0..4).map(|_| post_with_key(&app, "race-1", image.clone())))
            .await;
    let mut ids = std::collections::HashSet::new();
    for resp in racers {
        match resp.status().as_u16() {
            202 => {
                let body: Value = resp.json().await.expect("JSON");
                ids.insert(body["job_id"].as_str().expect("id").to_string());
            }
            409 => assert_eq!(error_code(resp).await.1, "idempotency_key_in_use"),
            other => panic!("racing duplicate answered {other}"),
        }
    }
    assert_eq!(ids.len(), 1, "one job for one key: {ids:?}");

    // Deleting the job frees its key at once: the same request is new again.
    app.send(app.client.delete(app.url(&format!("/jobs/{job_id}"))))
        .await;
    let after = post_with_key(&app, "order-1", image).await;
    assert_eq!(after.status(), 202);
    assert!(after.headers().get("idempotent-replayed").is_none());
    let after: Value = after.json().await.expect("JSON");
    assert_ne!(after["job_id"], job["job_id"]);
}

/// A duplicate that arrives while the first request is still uploading is
/// told so at once (409); once the first has answered, the duplicate gets
/// its answer.
async fn a_duplicate_during_the_upload_is_told_to_wait(backend: Backend) {
    let deployment = Deployment::new(backend).spooling();
    let app = deployment.serve();
    let image = png(64, 48, 7);
    let chunks = trickled(&image, 8, Duration::from_millis(300));
    let url = app.url("/process-job?filter=blur");
    let headers = [("Idempotency-Key", "slow-1")];
    let slow = upload_stream(url, Some(&deployment.admin_key), &headers, "a.png", chunks);
    until(
        "the upload to be spooled",
        Duration::from_secs(20),
        || async {
            (deployment.spooled_files() > 0)
                .then_some(())
                .ok_or_else(|| "nothing spooled yet".to_string())
        },
    )
    .await;
    let duplicate = post_with_key(&app, "slow-1", image.clone()).await;
    assert_eq!(
        error_code(duplicate).await,
        (409, "idempotency_key_in_use".into())
    );
    let first = slow.await.expect("task").expect("answer");
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("JSON");
    let replay = post_with_key(&app, "slow-1", image).await;
    assert_eq!(replay.status(), 202);
    let replay: Value = replay.json().await.expect("JSON");
    assert_eq!(replay["job_id"], first["job_id"]);
}

async fn keys_round_trip_through_the_cli_and_are_stored_as_hashes(backend: Backend) {
    let deployment = Deployment::new(backend);
    let app = deployment.serve();
    let (id, key) = create_key(&deployment, "team-c", "submit,read");
    let (ok, listed) = keys(&deployment, &["list"]);
    assert!(ok, "{listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    assert!(row.contains("team-c") && row.contains("submit,read") && row.contains("test"));
    assert!(!listed.contains(&key[4..]), "list never shows a key");

    // The store holds the hash, never the key.
    let secret = &key[4..];
    let stored = stored_key_material(&deployment).await;
    assert!(!stored.is_empty(), "keys are in the store");
    assert!(
        stored.iter().all(|s| !s.contains(secret)),
        "a key stored in clear: {stored:?}"
    );
    let hash = imgpipe::auth::keys::hash_token(&key);
    assert!(stored.iter().any(|s| s.contains(&hash)), "{stored:?}");

    let holder = app.as_caller(Some(&key));
    submit_one(&holder).await;
    let (ok, out) = keys(&deployment, &["revoke", &id]);
    assert!(ok, "{out}");
    let (ok, out) = keys(&deployment, &["revoke", &id]);
    assert!(!ok && out.contains(&id), "revoking twice says so: {out}");
    let (_, listed) = keys(&deployment, &["list"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("still listed");
    let revoked = listed
        .lines()
        .next()
        .and_then(|header| header.split('\t').position(|c| c == "REVOKED"))
        .expect("a REVOKED column");
    let cell = row.split('\t').nth(revoked).expect("a cell");
    assert!(cell.starts_with("20"), "shows when it was revoked: {row}");
    assert_eq!(
        error_code(
            holder
                .get("/status-job/00000000-0000-0000-0000-000000000000")
                .await
        )
        .await,
        (401, "invalid_key".into())
    );
    let (ok, out) = keys(
        &deployment,
        &["create", "--tenant", "Bad Name", "--scopes", "read"],
    );
    assert!(!ok && out.contains("tenant names"), "{out}");
    let (ok, out) = keys(
        &deployment,
        &["create", "--tenant", "t", "--scopes", "write"],
    );
    assert!(!ok && out.contains("unknown scope"), "{out}");
    let (ok, out) = keys(
        &deployment,
        &["create", "--tenant", "local", "--scopes", "read"],
    );
    assert!(!ok && out.contains("reserved"), "{out}");
}

/// Everything the key store holds, as text.
async fn stored_key_material(deployment: &Deployment) -> Vec<String> {
    match deployment.backend {
        Backend::Distributed => {
            let client = redis::Client::open(required_env("IMGPIPE_TEST_REDIS_URL")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let names: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:apikey*", deployment.prefix))
                .query_async(&mut conn)
                .await
                .unwrap();
            let mut all = Vec::new();
            for name in names {
                let kind: String = redis::cmd("TYPE")
                    .arg(&name)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let values: Vec<String> = if kind == "hash" {
                    redis::cmd("HGETALL")
                        .arg(&name)
                        .query_async(&mut conn)
                        .await
                        .unwrap()
                } else {
                    vec![redis::cmd("GET")
                        .arg(&name)
                        .query_async(&mut conn)
                        .await
                        .unwrap()]
                };
                all.push(name);
                all.extend(values);
            }
            all
        }
        Backend::Embedded => {
            let pool = imgpipe::sqlite::open(&deployment.data_dir.join("jobs.sqlite3"))
                .await
                .unwrap();
            let rows: Vec<(String, String, String)> =
                sqlx::query_as("SELECT id, hash, record FROM api_keys")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            rows.into_iter().flat_map(|(a, b, c)| [a, b, c]).collect()
        }
    }
}

crate::both_backends!(
    every_route_needs_a_valid_key_with_its_scope,
    another_tenants_job_is_indistinguishable_from_a_missing_one,
    signed_links_open_one_read_until_they_expire,
    an_idempotency_key_never_makes_a_second_job,
    a_duplicate_during_the_upload_is_told_to_wait,
    keys_round_trip_through_the_cli_and_are_stored_as_hashes,
);

/// Start-up: `imgpipe serve` exits at once, saying what to do.
fn refuses(deployment: &Deployment, env: &[(&str, &str)], unset: &[&str], expected: &str) {
    let mut cmd = deployment.command("serve");
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let out = output_within(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains(expected), "{expected:?} not in: {stderr}");
}

/// Runs a command that should exit soon; kills it (and fails) if it does not.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgpipe");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?} (it should have refused to start): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test]
async fn start_up_refuses_to_be_open_or_keyless_where_anyone_can_reach_it() {
    // Each case on a deployment of its own: a start that went further
    // (creating the bootstrap key) must not change the next case.
    let fresh = || Deployment::new(Backend::Embedded);
    let public = [("IMGPIPE_BIND", "0.0.0.0:0")];
    // Open on a reachable address: only with explicit consent.
    refuses(
        &fresh(),
        &[public[0], ("IMGPIPE_AUTH", "off")],
        &[],
        "IMGPIPE_ALLOW_OPEN=1",
    );
    // Keys by default there, and none exists yet: nobody could use it.
    refuses(
        &fresh(),
        &public,
        &["IMGPIPE_AUTH", "IMGPIPE_BOOTSTRAP_KEY"],
        "imgpipe keys create",
    );
    refuses(
        &fresh(),
        &[("IMGPIPE_BOOTSTRAP_KEY", "too-short")],
        &[],
        "at least 32",
    );
    refuses(
        &Deployment::new(Backend::Distributed),
        &[],
        &["IMGPIPE_SIGNING_KEY"],
        "IMGPIPE_SIGNING_KEY is required",
    );

    // With consent, it starts open.
    let consenting = Deployment::new(Backend::Embedded)
        .env("IMGPIPE_BIND", "0.0.0.0:0")
        .env("IMGPIPE_AUTH", "off")
        .env("IMGPIPE_ALLOW_OPEN", "1");
    let process = consenting.start("serve");
    assert!(process.base_url.is_some());
}

/// The README's first commands: `serve` on loopback, no setting at all (no
/// key, no signing secret, no data directory yet), is open.
#[tokio::test]
async fn on_loopback_without_keys_the_default_is_open() {
    let deployment = Deployment::new(Backend::Embedded)
        .without("IMGPIPE_AUTH")
        .without("IMGPIPE_BOOTSTRAP_KEY")
        .without("IMGPIPE_SIGNING_KEY");
    assert!(!deployment.data_dir.exists(), "a first start");
    let server = deployment.serve();
    let app = server.as_caller(None);
    let job = submit_one(&app).await;
    let status = app.status(&job).await;
    assert_eq!(status["job_id"], job.as_str());
    let zip = app.get(&format!("/download/{job}?partial=true")).await;
    assert_eq!(zip.status(), 200);
}

//! The whole pipeline through one `serve` process: upload → one task per
//! image → filter → status → ZIP, with outputs compared to Pillow's.

use std::time::Duration;

use image::GenericImageView;
use serde_json::Value;

use crate::helpers::{
    golden_dir, jpeg, noise_png, png, png_with_corrupt_pixels, Backend, Deployment, File,
};

/// The golden cases (generate.py's cases.tsv): (input file, ops, expected file).
fn golden_cases() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(golden_dir().join("cases.tsv")).expect("cases.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

/// Every operation in the registry, each as one golden single-operation case
/// (operations with arguments need some).
fn filters() -> Vec<String> {
    let cases = golden_cases();
    imgpipe::ops::SPECS
        .iter()
        .map(|spec| {
            cases
                .iter()
                .map(|(_, ops, _)| ops)
                .find(|ops| {
                    let chain: imgpipe::ops::Chain = ops.parse().expect("golden ops parse");
                    chain.ops().len() == 1 && chain.ops()[0].name() == spec.name
                })
                .unwrap_or_else(|| panic!("no golden case for {}", spec.name))
                .clone()
        })
        .collect()
}

/// The Pillow result for one golden input under `ops`.
fn expected_for(input: &str, ops: &str) -> image::DynamicImage {
    let (_, _, file) = golden_cases()
        .into_iter()
        .find(|(i, o, _)| i == input && o == ops)
        .unwrap_or_else(|| panic!("no golden case for {input} / {ops}"));
    image::open(golden_dir().join(file)).expect("golden expected output")
}
const WITHIN: Duration = Duration::from_secs(60);

fn golden_inputs() -> Vec<File> {
    [
        "in-RGB-23x17",
        "in-RGBA-23x17",
        "in-L-23x17",
        "in-LA-23x17",
        "in-RGB-4x4",
        "in-RGB-13x9-orient6",
    ]
    .iter()
    .map(|stem| {
        let path = golden_dir().join(format!("{stem}.png"));
        (
            format!("{stem}.png"),
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
    })
    .collect()
}

async fn every_filter_completes_multi_image_jobs_pixel_identical_to_pillow(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let inputs = golden_inputs();
    let mut jobs = Vec::new();
    for filter in filters() {
        let accepted = app
            .submit_ok(&format!("filter={filter}&format=png"), inputs.clone())
            .await;
        assert_eq!(accepted["status"], "queued");
        assert_eq!(accepted["images"].as_array().unwrap().len(), inputs.len());
        let task_ids: Vec<&str> = accepted["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["task_id"].as_str().unwrap())
            .collect();
        let unique: std::collections::HashSet<_> = task_ids.iter().collect();
        assert_eq!(unique.len(), inputs.len(), "one task per image");
        assert_eq!(
            accepted["status_url"],
            format!("/status-job/{}", accepted["job_id"].as_str().unwrap())
        );
        jobs.push((filter, accepted["job_id"].as_str().unwrap().to_string()));
    }

    for (filter, job_id) in jobs {
        let status = app.wait_done(&job_id, WITHIN).await;
        assert_eq!(status["status"], "completed", "{filter}: {status}");
        assert_eq!(status["all_successful"], true);
        assert_eq!(status["progress"]["succeeded"], inputs.len());
        assert_eq!(status["progress"]["percent"], 100.0);

        let entries = app.download(&job_id, "").await;
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        let mut expected_names: Vec<String> = inputs.iter().map(|(n, _)| n.clone()).collect();
        expected_names.push("manifest.json".into());
        assert_eq!(names, expected_names, "{filter}");

        for (name, bytes) in &entries[..inputs.len()] {
            let got =
                image::load_from_memory(bytes).unwrap_or_else(|e| panic!("{filter} {name}: {e}"));
            let expected = expected_for(name, &filter);
            assert_eq!(got.dimensions(), expected.dimensions(), "{filter} {name}");
            assert_eq!(got.color(), expected.color(), "{filter} {name}");
            assert!(
                got.as_bytes() == expected.as_bytes(),
                "{filter} {name}: pixels differ from Pillow"
            );
        }
        let manifest: Value = serde_json::from_slice(&entries.last().unwrap().1).unwrap();
        assert_eq!(manifest["job_id"], job_id.as_str());
        assert_eq!(manifest["status"], "completed");
    }
}

async fn output_format_follows_input_unless_overridden(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let files = vec![
        ("photo.jpg".to_string(), jpeg(64, 48, 3)),
        ("pic.gif".to_string(), {
            let img = crate::helpers::test_image(20, 10, 4);
            crate::helpers::encode(&img, image::ImageFormat::Gif)
        }),
    ];
    let job = app.submit_ok("filter=sharpen", files.clone()).await;
    let id = job["job_id"].as_str().unwrap();
    app.wait_done(id, WITHIN).await;
    let entries = app.download(id, "").await;
    assert_eq!(entries[0].0, "photo.jpg");
    assert_eq!(
        image::guess_format(&entries[0].1).unwrap(),
        image::ImageFormat::Jpeg
    );
    assert_eq!(entries[1].0, "pic.png");
    assert_eq!(
        image::guess_format(&entries[1].1).unwrap(),
        image::ImageFormat::Png
    );

    let one = app.get(&format!("/images/{id}/0")).await;
    assert_eq!(one.status(), 200);
    assert_eq!(one.headers()["content-type"], "image/jpeg");
    assert_eq!(one.bytes().await.unwrap().as_ref(), entries[0].1.as_slice());

    let job = app
        .submit_ok("filter=smooth&format=webp", files.clone())
        .await;
    let id = job["job_id"].as_str().unwrap();
    let status = app.wait_done(id, WITHIN).await;
    assert_eq!(status["images"][0]["output_format"], "webp");
    let entries = app.download(id, "").await;
    assert_eq!(entries[0].0, "photo.webp");
    let decoded = image::load_from_memory(&entries[0].1).unwrap();
    assert_eq!(decoded.dimensions(), (64, 48));

    // The filter may also come as a form field; quality changes the JPEG.
    let form = reqwest::multipart::Form::new()
        .text("filter", "blur")
        .text("quality", "20")
        .part(
            "files",
            reqwest::multipart::Part::bytes(jpeg(64, 48, 3)).file_name("low.jpg"),
        );
    let resp = app
        .send(app.client.post(app.url("/process-job")).multipart(form))
        .await;
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap();
    app.wait_done(id, WITHIN).await;
    let low = app.download(id, "").await[0].1.len();
    let default_quality = jpeg_size_at_default(&app).await;
    assert!(
        low < default_quality,
        "quality=20 gave {low} bytes, the default {default_quality}"
    );
}

async fn jpeg_size_at_default(app: &crate::helpers::TestApp) -> usize {
    let job = app
        .submit_ok("filter=blur", vec![("ref.jpg".into(), jpeg(64, 48, 3))])
        .await;
    let id = job["job_id"].as_str().unwrap();
    app.wait_done(id, WITHIN).await;
    app.download(id, "").await[0].1.len()
}

/// Files written by other tools (tests/fixtures/foreign: libtiff, ImageMagick,
/// exiftool, Pillow) are all accepted and processed, each result what the
/// pipeline makes of it (tests/foreign.rs checks the decoding against Pillow).
async fn files_from_other_tools_are_processed(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/foreign");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/foreign")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".py") && !n.ends_with(".pillow.png"))
        .collect();
    names.sort();
    let files: Vec<File> = names
        .iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(n)).expect("fixture")))
        .collect();
    let job = app.submit_ok("filter=blur&format=png", files.clone()).await;
    let id = job["job_id"].as_str().unwrap();
    let status = app.wait_done(id, WITHIN).await;
    assert_eq!(status["status"], "completed", "{status}");
    let chain: imgpipe::ops::Chain = "blur".parse().expect("chain");
    for (i, (name, bytes)) in files.iter().enumerate() {
        let resp = app.get(&format!("/images/{id}/{i}")).await;
        assert_eq!(resp.status(), 200, "{name}");
        let got = resp.bytes().await.expect("result");
        let decoded = imgpipe::codec::decode(bytes, u64::MAX).expect("decode");
        let processed = chain.apply(decoded, u64::MAX).expect("blur");
        let expected =
            imgpipe::codec::encode(&processed, imgpipe::codec::OutputFormat::Png, 90, false)
                .expect("encode");
        assert!(
            got[..] == expected[..],
            "{name}: output differs from the pipeline's"
        );
    }
}

async fn a_broken_image_fails_alone_with_its_reason(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let files = vec![
        ("good-1.png".to_string(), png(30, 20, 5)),
        ("broken.png".to_string(), png_with_corrupt_pixels(30, 20)),
        ("good-2.jpg".to_string(), jpeg(30, 20, 6)),
    ];
    let job = app.submit_ok("filter=edges", files).await;
    let id = job["job_id"].as_str().unwrap();
    let status = app.wait_done(id, WITHIN).await;
    assert_eq!(status["status"], "completed_with_errors", "{status}");
    assert_eq!(status["all_ready"], true);
    assert_eq!(status["all_successful"], false);
    assert_eq!(status["progress"]["failed"], 1);
    assert_eq!(status["progress"]["succeeded"], 2);
    let broken = &status["images"][1];
    assert_eq!(broken["filename"], "broken.png");
    assert_eq!(broken["state"], "failed");
    assert_eq!(
        broken["attempts"], 1,
        "a deterministic failure must not be retried"
    );
    assert!(
        broken["error"].as_str().unwrap().contains("decode"),
        "{broken}"
    );
    assert!(broken["result_url"].is_null());

    let entries = app.download(id, "").await;
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["good-1.png", "good-2.jpg", "manifest.json"]);
    let manifest: Value = serde_json::from_slice(&entries[2].1).unwrap();
    assert_eq!(manifest["images"][1]["state"], "failed");
    assert_eq!(manifest["images"][1]["error"], broken["error"]);

    let failed = app.get(&format!("/images/{id}/1")).await;
    assert_eq!(failed.status(), 422);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "image_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("decode"),
        "{body}"
    );
    let good = app.get(&format!("/images/{id}/0")).await;
    assert_eq!(good.status(), 200);
    assert_eq!(good.headers()["content-type"], "image/png");
}

async fn hostile_filenames_are_neutralised_in_the_archive(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let names = [
        "../../x.png",
        "..\\..\\windows\\y.png",
        "/etc/passwd",
        "a/b/../c.png",
        "same.png",
        "SAME.png",
        "",
        "..",
        "manifest.json",
    ];
    let files: Vec<File> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), png(8, 8, i as u32)))
        .collect();
    let job = app.submit_ok("filter=grayscale", files).await;
    let id = job["job_id"].as_str().unwrap();
    let status = app.wait_done(id, WITHIN).await;
    assert_eq!(status["status"], "completed");
    assert_eq!(
        status["images"][0]["filename"], "../../x.png",
        "status shows the name as sent"
    );
    let entries = app.download(id, "").await;
    let got: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        got,
        [
            "x.png",
            "y.png",
            "passwd.png",
            "c.png",
            "same.png",
            "SAME (2).png",
            "image-7.png",
            "image-8.png",
            "manifest.png",
            "manifest.json"
        ]
    );
    for (name, _) in &entries {
        assert!(
            !name.contains('/') && !name.contains('\\') && !name.starts_with('.'),
            "{name}"
        );
    }
}

async fn uploads_larger_than_one_storage_part_round_trip(backend: Backend) {
    let app = Deployment::new(backend).serve();
    // ~9.7 MB: stored as a multipart upload (parts of 8 MiB).
    let big = noise_png(1800, 1800, 7);
    assert!(big.len() > 9_000_000, "{} bytes", big.len());
    let input = image::load_from_memory(&big).unwrap().to_rgb8();
    let job = app
        .submit_ok("filter=grayscale", vec![("big.png".into(), big)])
        .await;
    let id = job["job_id"].as_str().unwrap();
    let status = app.wait_done(id, WITHIN).await;
    assert_eq!(status["status"], "completed", "{status}");
    let entries = app.download(id, "").await;
    let out = image::load_from_memory(&entries[0].1).unwrap();
    assert_eq!(out.dimensions(), (1800, 1800));
    // Grayscale of the decoded input, which only survives if every part of
    // the upload arrived intact and in order.
    assert_eq!(out.to_luma8().as_raw(), &pillow_grayscale(&input));
}

/// Pillow's `convert("L")` of `input`.
fn pillow_grayscale(input: &image::RgbImage) -> Vec<u8> {
    let luma = |p: &image::Rgb<u8>| {
        ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000)
            >> 16) as u8
    };
    input.pixels().map(luma).collect()
}

/// Uploads are kept in memory while `IMGPIPE_UPLOAD_MEMORY_BYTES` allows
/// and spooled to disk beyond it: a file that outgrows the budget midway is
/// moved to disk and goes on there, the next file fits in memory again, and
/// with a budget of 0 every file is spooled. Every byte arrives either way
/// (noise PNGs: a lost or reordered byte fails decoding or the pixels).
async fn uploads_held_in_memory_or_spooled_arrive_whole(backend: Backend) {
    let inputs: Vec<(String, Vec<u8>)> = vec![
        ("small-1.png".into(), noise_png(300, 200, 1)),
        ("big.png".into(), noise_png(1200, 1200, 2)),
        ("small-2.png".into(), noise_png(200, 300, 3)),
    ];
    assert!(inputs[1].1.len() > 4_000_000, "{} bytes", inputs[1].1.len());
    for budget in ["3000000", "0"] {
        let app = Deployment::new(backend)
            .env("IMGPIPE_UPLOAD_MEMORY_BYTES", budget)
            .serve();
        let job = app.submit_ok("filter=grayscale", inputs.clone()).await;
        let id = job["job_id"].as_str().unwrap();
        let status = app.wait_done(id, WITHIN).await;
        assert_eq!(status["status"], "completed", "budget {budget}: {status}");
        let entries = app.download(id, "").await;
        for ((name, input), (got_name, got)) in inputs.iter().zip(&entries) {
            assert_eq!(name, got_name);
            let input = image::load_from_memory(input).unwrap().to_rgb8();
            let got = image::load_from_memory(got).unwrap().to_luma8();
            assert_eq!(
                got.dimensions(),
                input.dimensions(),
                "budget {budget}: {name}"
            );
            assert!(
                got.as_raw() == &pillow_grayscale(&input),
                "budget {budget}: {name} differs"
            );
        }
    }
}

/// `ops=` chains run in order, in one task per image, pixel-identical to
/// Pillow doing the same calls; the status shows the chain in canonical form.
async fn chains_run_in_order_pixel_identical_to_pillow(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let inputs = golden_inputs();
    let chains: Vec<String> = {
        let mut seen = Vec::new();
        for (_, ops, _) in golden_cases() {
            let chain: imgpipe::ops::Chain = ops.parse().expect("golden ops parse");
            if chain.ops().len() > 1 && !seen.contains(&ops) {
                seen.push(ops);
            }
        }
        seen
    };
    assert!(chains.len() >= 3, "generate.py writes chains");
    for ops in &chains {
        // Names and choices are case-insensitive; the answer is canonical.
        let loose = ops.to_uppercase();
        let job = app
            .submit_ok(&format!("ops={loose}&format=png"), inputs.clone())
            .await;
        assert_eq!(job["ops"], ops.as_str(), "the canonical chain");
        assert_eq!(
            job["images"].as_array().unwrap().len(),
            inputs.len(),
            "one task per image"
        );
        let id = job["job_id"].as_str().unwrap();
        let status = app.wait_done(id, WITHIN).await;
        assert_eq!(status["status"], "completed", "{ops}: {status}");
        assert_eq!(status["ops"], ops.as_str());
        for (name, bytes) in &app.download(id, "").await[..inputs.len()] {
            let got = image::load_from_memory(bytes).unwrap();
            let expected = expected_for(name, ops);
            assert_eq!(got.dimensions(), expected.dimensions(), "{ops} {name}");
            assert!(
                got.as_bytes() == expected.as_bytes(),
                "{ops} {name}: pixels differ from Pillow"
            );
        }
    }
}

/// WebP is lossy at `quality` unless `lossless=true`, which gives back the
/// exact pixels; both keep alpha.
async fn webp_is_lossy_at_quality_or_lossless_on_request(backend: Backend) {
    let app = Deployment::new(backend).serve();
    let files = vec![(
        "photo.png".to_string(),
        crate::helpers::noise_png(96, 64, 5),
    )];
    let lossy = app
        .submit_ok("filter=blur&format=webp&quality=60", files.clone())
        .await;
    let exact = app
        .submit_ok("filter=blur&format=webp&lossless=true", files.clone())
        .await;
    let mut outputs = Vec::new();
    for job in [lossy, exact] {
        let id = job["job_id"].as_str().unwrap();
        let status = app.wait_done(id, WITHIN).await;
        assert_eq!(status["status"], "completed", "{status}");
        outputs.push(app.download(id, "").await.remove(0));
    }
    let expected = {
        let input = imgpipe::codec::decode(&files[0].1, u64::MAX).unwrap();
        let chain: imgpipe::ops::Chain = "blur".parse().unwrap();
        chain.apply(input, u64::MAX).unwrap()
    };
    let (lossy, exact) = (&outputs[0], &outputs[1]);
    assert_eq!(lossy.0, "photo.webp");
    assert_eq!(
        image::guess_format(&lossy.1).unwrap(),
        image::ImageFormat::WebP
    );
    let exact_pixels = image::load_from_memory(&exact.1).unwrap();
    assert_eq!(
        exact_pixels.as_bytes(),
        expected.as_bytes(),
        "lossless keeps every sample"
    );
    let lossy_pixels = image::load_from_memory(&lossy.1).unwrap();
    assert_eq!(lossy_pixels.dimensions(), expected.dimensions());
    assert_ne!(
        lossy_pixels.as_bytes(),
        expected.as_bytes(),
        "quality 60 is lossy"
    );
}

crate::both_backends!(
    chains_run_in_order_pixel_identical_to_pillow,
    webp_is_lossy_at_quality_or_lossless_on_request,
    every_filter_completes_multi_image_jobs_pixel_identical_to_pillow,
    output_format_follows_input_unless_overridden,
    a_broken_image_fails_alone_with_its_reason,
    files_from_other_tools_are_processed,
    hostile_filenames_are_neutralised_in_the_archive,
    uploads_larger_than_one_storage_part_round_trip,
    uploads_held_in_memory_or_spooled_arrive_whole,
);

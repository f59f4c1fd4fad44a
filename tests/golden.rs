//! Proves that every operation in the registry, alone and in chains, applied to
//! every fixture input after `codec::decode` (EXIF orientation and mode
//! conversion included), matches Pillow 13.0.0: sample for sample, or within
//! one level for resampling. Fixtures and their list (`cases.tsv`) come from
//! `tests/fixtures/generate.py`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GenericImageView};
use imgpipe::codec;
use imgpipe::ops::{Chain, SPECS};

/// generate.py writes 4 modes x 4 sizes, one EXIF-oriented PNG, five JPEGs
/// and seven inputs in modes that are converted on decode.
const MIN_INPUTS: usize = 29;
/// Every operation runs on at least the 22 L/LA/RGB/RGBA, EXIF and JPEG inputs.
const MIN_CASES_PER_OP: usize = 22;
/// Far above any fixture; only here because `decode` wants a limit.
const MAX_PIXELS: u64 = 1 << 20;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// The inputs: `in-*.png` and `in-*.jpg` whose stem has no further dot (`in-L-4x4.blur.png`
/// is an expected output, not an input). Sorted, so the report is stable.
fn input_files(dir: &Path) -> Vec<PathBuf> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut inputs: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("in-")
                && (name.ends_with(".png") || name.ends_with(".jpg"))
                && name.matches('.').count() == 1
        })
        .collect();
    inputs.sort();
    inputs
}

fn stem_of(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .expect("fixture names are UTF-8")
        .to_owned()
}

/// Compares two images sample by sample. `None` if identical, otherwise one
/// line saying how they differ.
fn compare(got: &DynamicImage, expected: &DynamicImage, tolerance: u8) -> Option<String> {
    let (w, h) = (got.width(), got.height());
    if (w, h) != (expected.width(), expected.height()) {
        return Some(format!(
            "dimensions differ: got {w}x{h}, expected {}x{}",
            expected.width(),
            expected.height()
        ));
    }
    if got.color() != expected.color() {
        return Some(format!(
            "color type differs: got {:?}, expected {:?}",
            got.color(),
            expected.color()
        ));
    }
    let channels = got.color().channel_count() as usize;
    let (a, b) = (got.as_bytes(), expected.as_bytes());
    if a.len() != b.len() || a.len() != w as usize * h as usize * channels {
        return Some(format!(
            "sample buffer sizes differ: got {}, expected {} ({w}x{h}x{channels})",
            a.len(),
            b.len()
        ));
    }

    let mut differing = 0usize;
    let mut max_diff = 0u8;
    let mut first = None;
    for (i, (&g, &e)) in a.iter().zip(b).enumerate() {
        if g.abs_diff(e) > tolerance {
            differing += 1;
            max_diff = max_diff.max(g.abs_diff(e));
            if first.is_none() {
                let pixel = i / channels;
                let (x, y, c) = (pixel % w as usize, pixel / w as usize, i % channels);
                first = Some(format!(
                    "(x={x}, y={y}, channel={c}, got={g}, expected={e})"
                ));
            }
        }
    }
    first.map(|first| {
        format!(
            "{differing} of {} samples differ by more than {tolerance}, max abs diff {max_diff}, first at {first}",
            a.len()
        )
    })
}

struct Case {
    input: String,
    ops: String,
    expected: String,
    tolerance: u8,
}

fn cases(dir: &Path) -> Vec<Case> {
    let path = dir.join("cases.tsv");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run generate.py", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 4, "bad cases.tsv line {line:?}");
            Case {
                input: f[0].to_string(),
                ops: f[1].to_string(),
                expected: f[2].to_string(),
                tolerance: f[3].parse().expect("tolerance is a number"),
            }
        })
        .collect()
}

fn load(path: &Path) -> Result<DynamicImage, String> {
    fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| image::load_from_memory(&b).map_err(|e| e.to_string()))
}

#[test]
fn operations_match_pillow_golden_outputs() {
    let dir = golden_dir();
    let cases = cases(&dir);
    let mut inputs: HashMap<String, Result<DynamicImage, String>> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut worst: HashMap<String, u8> = HashMap::new();
    for case in &cases {
        let img = inputs.entry(case.input.clone()).or_insert_with(|| {
            let bytes = fs::read(dir.join(&case.input)).map_err(|e| e.to_string())?;
            codec::decode(&bytes, MAX_PIXELS).map_err(|e| e.to_string())
        });
        let img = match img {
            Ok(img) => img.clone(),
            Err(e) => {
                failures.push(format!("{}: codec::decode failed: {e}", case.input));
                continue;
            }
        };
        let chain: Chain = match case.ops.parse() {
            Ok(chain) => chain,
            Err(e) => {
                failures.push(format!(
                    "{} / {}: does not parse: {e}",
                    case.input, case.ops
                ));
                continue;
            }
        };
        // Expected files carry no EXIF; load them as stored, without orientation.
        let expected = match load(&dir.join(&case.expected)) {
            Ok(expected) => expected,
            Err(e) => {
                failures.push(format!(
                    "{} / {}: cannot load {}: {e}",
                    case.input, case.ops, case.expected
                ));
                continue;
            }
        };
        let got = match chain.apply(img, MAX_PIXELS) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{} / {}: {e}", case.input, case.ops));
                continue;
            }
        };
        let diff = max_abs_diff(&got, &expected);
        let name = case
            .ops
            .split([':', ','])
            .next()
            .unwrap_or_default()
            .to_string();
        let entry = worst.entry(name).or_default();
        *entry = (*entry).max(diff.unwrap_or(u8::MAX));
        if let Some(problem) = compare(&got, &expected, case.tolerance) {
            failures.push(format!("{} / {}: {problem}", case.input, case.ops));
        }
    }

    let mut summary: Vec<_> = worst.iter().collect();
    summary.sort();
    eprintln!("largest difference from Pillow per operation: {summary:?}");
    if !failures.is_empty() {
        let mut report = format!(
            "{} of {} cases do not match Pillow 13.0.0:\n",
            failures.len(),
            cases.len()
        );
        for failure in &failures {
            let _ = writeln!(report, "  {failure}");
        }
        panic!("{report}");
    }
    assert!(
        inputs.len() >= MIN_INPUTS,
        "{} inputs, expected at least {MIN_INPUTS}",
        inputs.len()
    );
    // Every operation `GET /filters` lists has golden cases.
    for spec in SPECS {
        let covered = cases.iter().filter(|c| {
            c.ops
                .split(',')
                .any(|piece| piece.split(':').next() == Some(spec.name))
        });
        assert!(
            covered.count() >= MIN_CASES_PER_OP,
            "{} has too few golden cases",
            spec.name
        );
    }
}

/// The largest sample difference, or `None` if sizes or layouts differ.
fn max_abs_diff(got: &DynamicImage, expected: &DynamicImage) -> Option<u8> {
    if got.dimensions() != expected.dimensions() || got.color() != expected.color() {
        return None;
    }
    got.as_bytes()
        .iter()
        .zip(expected.as_bytes())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .or(Some(0))
}

/// imgpipe's JPEG writer against Pillow's `save(f, "JPEG", quality=90)`: the
/// files must be identical byte for byte, not merely close.
#[test]
fn jpeg_output_is_byte_identical_to_pillow() {
    let dir = golden_dir();
    let mut compared = 0usize;
    let mut failures = Vec::new();
    for input in input_files(&dir) {
        let stem = stem_of(&input);
        let bytes =
            fs::read(&input).unwrap_or_else(|e| panic!("cannot read {}: {e}", input.display()));
        let img = codec::decode(&bytes, MAX_PIXELS).unwrap_or_else(|e| panic!("{stem}: {e}"));
        for spec in SPECS.iter().filter(|s| s.args.is_empty()) {
            let expected_path = dir.join(format!("{stem}.{}.q90.jpg", spec.name));
            let Ok(expected) = fs::read(&expected_path) else {
                continue;
            };
            compared += 1;
            let chain: Chain = spec.name.parse().expect("a bare operation name parses");
            let out = chain.apply(img.clone(), MAX_PIXELS).expect("within limits");
            let got = codec::encode(&out, codec::OutputFormat::Jpeg, 90, false)
                .unwrap_or_else(|e| panic!("{stem} / {}: {e}", spec.name));
            if got != expected {
                let first = got.iter().zip(&expected).position(|(a, b)| a != b);
                failures.push(format!(
                    "{stem} / {}: {} bytes vs Pillow's {}, first difference at byte {first:?}",
                    spec.name,
                    got.len(),
                    expected.len()
                ));
            }
        }
    }
    assert!(
        compared >= 15,
        "expected at least 15 *.q90.jpg fixtures, found {compared}; run generate.py"
    );
    assert!(
        failures.is_empty(),
        "JPEG output differs from Pillow's:\n  {}",
        failures.join("\n  ")
    );
}

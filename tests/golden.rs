//! Proves that every filter in `Filter::ALL`, applied to every fixture input after
//! `codec::decode` (EXIF orientation included), matches Pillow 13.0.0 sample for
//! sample. Fixtures come from `tests/fixtures/generate.py`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use image::DynamicImage;
use imgpipe::codec;
use imgpipe::ops::Filter;

/// generate.py writes 4 modes x 4 sizes, one EXIF-oriented PNG and five JPEGs.
const MIN_INPUTS: usize = 22;
/// generate.py writes one expected file per filter (its FILTERS table). If
/// `Filter::ALL` changes, the script must change with it.
const FILTERS_PER_INPUT: usize = 17;
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
fn compare(got: &DynamicImage, expected: &DynamicImage) -> Option<String> {
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
        if g != e {
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
            "{differing} of {} samples differ, max abs diff {max_diff}, first at {first}",
            a.len()
        )
    })
}

#[test]
fn filters_match_pillow_golden_outputs() {
    let dir = golden_dir();
    let inputs = input_files(&dir);
    assert!(
        inputs.len() >= MIN_INPUTS,
        "expected at least {MIN_INPUTS} inputs in {}, found {}; run tests/fixtures/generate.py",
        dir.display(),
        inputs.len()
    );

    let mut failures: Vec<String> = Vec::new();
    let mut checked = 0usize;
    for input in &inputs {
        let stem = stem_of(input);
        let bytes =
            fs::read(input).unwrap_or_else(|e| panic!("cannot read {}: {e}", input.display()));
        let img = match codec::decode(&bytes, MAX_PIXELS) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{stem}: codec::decode failed: {e}"));
                continue;
            }
        };
        for filter in Filter::ALL {
            let name = filter.name();
            let expected_path = dir.join(format!("{stem}.{name}.png"));
            // Expected files carry no EXIF; load them as stored, without orientation.
            let expected = match fs::read(&expected_path)
                .map_err(|e| e.to_string())
                .and_then(|b| image::load_from_memory(&b).map_err(|e| e.to_string()))
            {
                Ok(expected) => expected,
                Err(e) => {
                    failures.push(format!(
                        "{stem} / {name}: cannot load {}: {e}",
                        expected_path.display()
                    ));
                    continue;
                }
            };
            checked += 1;
            if let Some(problem) = compare(&filter.apply(&img), &expected) {
                failures.push(format!("{stem} / {name}: {problem}"));
            }
        }
    }

    if !failures.is_empty() {
        let mut report = format!(
            "{} of {} (input, filter) pairs do not match Pillow 13.0.0:\n",
            failures.len(),
            inputs.len() * Filter::ALL.len()
        );
        for failure in &failures {
            let _ = writeln!(report, "  {failure}");
        }
        panic!("{report}");
    }
    assert_eq!(
        checked,
        inputs.len() * FILTERS_PER_INPUT,
        "checked pairs != inputs x {FILTERS_PER_INPUT}; Filter::ALL and generate.py disagree"
    );
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
        for filter in Filter::ALL {
            let expected_path = dir.join(format!("{stem}.{}.q90.jpg", filter.name()));
            let Ok(expected) = fs::read(&expected_path) else {
                continue;
            };
            compared += 1;
            let got = codec::encode(&filter.apply(&img), codec::OutputFormat::Jpeg, 90)
                .unwrap_or_else(|e| panic!("{stem} / {}: {e}", filter.name()));
            if got != expected {
                let first = got.iter().zip(&expected).position(|(a, b)| a != b);
                failures.push(format!(
                    "{stem} / {}: {} bytes vs Pillow's {}, first difference at byte {first:?}",
                    filter.name(),
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

//! Files written by other tools (libtiff's tiffcp, ImageMagick, exiftool,
//! Pillow's writers; see tests/fixtures/foreign/generate.py) decode to
//! exactly what Pillow 13 reads from them (`Image.open` → `exif_transpose`
//! → imgpipe's mode rules): same layout, every sample equal.

use std::path::Path;

use image::DynamicImage;
use imgpipe::codec;

/// generate.py writes 29 references; fewer means the set shrank unnoticed.
const MIN_REFERENCES: usize = 29;

fn layout(img: &DynamicImage) -> &'static str {
    match img {
        DynamicImage::ImageLuma8(_) => "L",
        DynamicImage::ImageLumaA8(_) => "LA",
        DynamicImage::ImageRgb8(_) => "RGB",
        DynamicImage::ImageRgba8(_) => "RGBA",
        _ => "other",
    }
}

#[test]
fn foreign_files_decode_exactly_as_pillow_reads_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/foreign");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/foreign")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pillow.png"))
        .collect();
    names.sort();
    assert!(
        names.len() >= MIN_REFERENCES,
        "only {} references",
        names.len()
    );
    let mut failures = Vec::new();
    for reference in &names {
        let name = reference.trim_end_matches(".pillow.png");
        let bytes = std::fs::read(dir.join(name)).expect("fixture");
        let expected = image::open(dir.join(reference)).expect("reference PNG");
        let got = match codec::decode(&bytes, 1 << 24) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if (layout(&got), got.width(), got.height())
            != (layout(&expected), expected.width(), expected.height())
        {
            failures.push(format!(
                "{name}: {} {}x{} here, Pillow {} {}x{}",
                layout(&got),
                got.width(),
                got.height(),
                layout(&expected),
                expected.width(),
                expected.height()
            ));
            continue;
        }
        let differing = got
            .as_bytes()
            .iter()
            .zip(expected.as_bytes())
            .filter(|(a, b)| a != b)
            .count();
        if differing > 0 {
            let max = got
                .as_bytes()
                .iter()
                .zip(expected.as_bytes())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            failures.push(format!(
                "{name}: {differing} samples differ, by up to {max}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! One image's work, as a worker does it: decode → operations → encode,
//! returning the encoded result. JPEG to JPEG through a chain the row stream
//! covers (kernels, grayscale) goes through in strips that stay in cache;
//! everything else is decoded whole. Both give the same bytes. Pure CPU
//! work: callers run it off the async runtime; it does no I/O.

use std::time::{Duration, Instant};

use crate::codec::{self, CodecError, OutputFormat, PngCompression, RowFilter};
use crate::ops::{Chain, RowStream, SizeError};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("{0}")]
    Size(#[from] SizeError),
}

/// How to render: the operations and the output encoding.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    pub ops: &'a Chain,
    pub format: OutputFormat,
    pub quality: u8,
    pub lossless: bool,
    pub png: PngCompression,
}

pub fn render(input: &[u8], out: Output<'_>, max_pixels: u64) -> Result<Vec<u8>, RenderError> {
    render_timed(input, out, max_pixels).map(|(bytes, _)| bytes)
}

/// Where a render's time went, for the per-stage metrics: `decode`, `ops`
/// and `encode` when the image is decoded whole, `transcode` (all three in
/// strips) when it streams.
pub type Timings = Vec<(&'static str, Duration)>;

/// [`render`], with its [`Timings`].
pub fn render_timed(
    input: &[u8],
    out: Output<'_>,
    max_pixels: u64,
) -> Result<(Vec<u8>, Timings), RenderError> {
    if out.format == OutputFormat::Jpeg {
        let started = Instant::now();
        let streamed = codec::transcode_jpeg(input, max_pixels, out.quality, |w, h, channels| {
            out.ops.row_stream(w, h, channels).map(Streamed)
        })?;
        if let Some(bytes) = streamed {
            return Ok((bytes, vec![("transcode", started.elapsed())]));
        }
    }
    render_whole(input, out, max_pixels)
}

/// Decode the whole image, apply the chain, encode.
fn render_whole(
    input: &[u8],
    out: Output<'_>,
    max_pixels: u64,
) -> Result<(Vec<u8>, Timings), RenderError> {
    let started = Instant::now();
    let img = codec::decode(input, max_pixels)?;
    let decoded = Instant::now();
    let result = out.ops.apply(img, max_pixels)?;
    let applied = Instant::now();
    let bytes = codec::encode_with(&result, out.format, out.quality, out.lossless, out.png)?;
    let timings = vec![
        ("decode", decoded - started),
        ("ops", applied - decoded),
        ("encode", applied.elapsed()),
    ];
    Ok((bytes, timings))
}

struct Streamed(RowStream);

impl RowFilter for Streamed {
    fn channels(&self) -> usize {
        self.0.channels()
    }

    fn push(
        &mut self,
        rows: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.0.push(rows, sink)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use image::{DynamicImage, GrayImage, RgbImage};

    use super::*;

    fn output(ops: &Chain, format: OutputFormat) -> Output<'_> {
        Output {
            ops,
            format,
            quality: 75,
            lossless: false,
            png: PngCompression::default(),
        }
    }

    fn jpeg(img: &DynamicImage) -> Vec<u8> {
        codec::encode(img, OutputFormat::Jpeg, 92, false).unwrap()
    }

    fn photo(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7 + y) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
        }))
    }

    #[test]
    fn streamed_jpeg_is_byte_identical_to_the_whole_image_path() {
        let inputs = [
            jpeg(&photo(100, 70)),
            jpeg(&photo(3, 40)),
            jpeg(&photo(1, 1)),
            jpeg(&DynamicImage::ImageLuma8(GrayImage::from_fn(
                33,
                50,
                |x, y| image::Luma([(x * y) as u8]),
            ))),
        ];
        for text in [
            "blur",
            "sharpen",
            "smooth",
            "edges",
            "grayscale",
            "grayscale,blur",
            "smooth_more,emboss",
        ] {
            let ops = Chain::from_str(text).unwrap();
            let out = output(&ops, OutputFormat::Jpeg);
            for (i, input) in inputs.iter().enumerate() {
                let streamed = codec::transcode_jpeg(input, u64::MAX, 75, |w, h, c| {
                    ops.row_stream(w, h, c).map(Streamed)
                })
                .unwrap()
                .expect("streamable");
                let (whole, _) = render_whole(input, out, u64::MAX).unwrap();
                assert!(
                    streamed == whole,
                    "{text}, input {i}: streamed and whole results differ"
                );
            }
        }
    }

    #[test]
    fn other_inputs_and_outputs_take_the_whole_image_path() {
        let ops = Chain::from_str("blur").unwrap();
        let png = codec::encode(&photo(20, 20), OutputFormat::Png, 0, false).unwrap();
        let none = codec::transcode_jpeg(&png, u64::MAX, 75, |w, h, c| {
            ops.row_stream(w, h, c).map(Streamed)
        });
        assert!(matches!(none, Ok(None)));
        let out = output(&ops, OutputFormat::Png);
        let rendered = render(&jpeg(&photo(20, 20)), out, u64::MAX).unwrap();
        assert_eq!(
            codec::InputFormat::sniff(&rendered),
            Some(codec::InputFormat::Png)
        );
    }

    #[test]
    fn bad_jpegs_fail_the_same_way_streamed() {
        let ops = Chain::from_str("blur").unwrap();
        let out = output(&ops, OutputFormat::Jpeg);
        let good = jpeg(&photo(64, 64));
        let truncated = &good[..good.len() / 2];
        assert!(matches!(
            render(truncated, out, u64::MAX),
            Err(RenderError::Codec(CodecError::Decode(_)))
        ));
        assert!(matches!(
            render(&good, out, 100),
            Err(RenderError::Codec(CodecError::TooManyPixels { .. }))
        ));
    }
}

//! Decoding (EXIF orientation applied, pixels normalised to 8-bit L/LA/RGB/RGBA)
//! and encoding (JPEG, PNG, WebP). CPU work that blocks: callers run it off
//! the async runtime (the worker on its render pool, intake on a blocking
//! thread).

mod bmp;
mod exif;
mod gif;
mod libtiff;
mod orientation;
mod png_meta;
mod tiff;

pub use tiff::{Structure as TiffStructure, StructureProblem as TiffProblem};
mod jpeg;
mod lab;
mod tiff_pixels;
mod webp;

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

/// Image formats accepted as input, sniffed from the bytes (never from the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    Bmp,
    Tiff,
}

impl InputFormat {
    pub const ALL: [InputFormat; 6] = [
        InputFormat::Jpeg,
        InputFormat::Png,
        InputFormat::Webp,
        InputFormat::Gif,
        InputFormat::Bmp,
        InputFormat::Tiff,
    ];

    /// Recognises a format from the first bytes of a file.
    pub fn sniff(head: &[u8]) -> Option<InputFormat> {
        // BigTIFF and the swapped-magic headers Pillow also opens.
        const MORE_TIFF: [&[u8]; 4] = [b"II\x2b\x00", b"MM\x00\x2b", b"MM\x2a\x00", b"II\x00\x2a"];
        if MORE_TIFF.iter().any(|m| head.starts_with(m)) {
            return Some(InputFormat::Tiff);
        }
        match image::guess_format(head).ok() {
            Some(ImageFormat::Jpeg) => Some(InputFormat::Jpeg),
            Some(ImageFormat::Png) => Some(InputFormat::Png),
            Some(ImageFormat::WebP) => Some(InputFormat::Webp),
            Some(ImageFormat::Gif) => Some(InputFormat::Gif),
            Some(ImageFormat::Bmp) => Some(InputFormat::Bmp),
            Some(ImageFormat::Tiff) => Some(InputFormat::Tiff),
            // A DIB: a BMP without its file header, as Pillow opens it.
            _ if bmp::is_dib(head) => Some(InputFormat::Bmp),
            _ => None,
        }
    }

    pub fn image_format(self) -> ImageFormat {
        match self {
            InputFormat::Jpeg => ImageFormat::Jpeg,
            InputFormat::Png => ImageFormat::Png,
            InputFormat::Webp => ImageFormat::WebP,
            InputFormat::Gif => ImageFormat::Gif,
            InputFormat::Bmp => ImageFormat::Bmp,
            InputFormat::Tiff => ImageFormat::Tiff,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Jpeg => "jpeg",
            InputFormat::Png => "png",
            InputFormat::Webp => "webp",
            InputFormat::Gif => "gif",
            InputFormat::Bmp => "bmp",
            InputFormat::Tiff => "tiff",
        }
    }

    /// The output format used when the request does not ask for one:
    /// JPEG stays JPEG, everything else becomes lossless PNG.
    pub fn default_output(self) -> OutputFormat {
        match self {
            InputFormat::Jpeg => OutputFormat::Jpeg,
            _ => OutputFormat::Png,
        }
    }
}

/// Formats imgpipe writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Jpeg,
    Png,
    Webp,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp];

    pub fn from_name(name: &str) -> Option<OutputFormat> {
        match name.trim().to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
            "png" => Some(OutputFormat::Png),
            "webp" => Some(OutputFormat::Webp),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a supported image format (accepted: jpeg, png, webp, gif, bmp, tiff)")]
    Unsupported,
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit}")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The decoder crashed (panicked) on the file: a layout or encoding it
    /// does not handle. The panic's text is `detail`, for logs only.
    #[error("the {format} image could not be read: its decoder does not handle this file's layout or encoding")]
    Unreadable {
        format: &'static str,
        detail: String,
    },
    #[error("cannot encode image as {format:?}: {reason}")]
    Encode {
        format: OutputFormat,
        reason: String,
    },
}

/// Decodes an image, applies its EXIF orientation (as `ImageOps.exif_transpose`
/// does) and normalises it to 8-bit L, LA, RGB or RGBA.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, CodecError> {
    let format = InputFormat::sniff(bytes).ok_or(CodecError::Unsupported)?;
    // The decoders are third-party code fed untrusted bytes: a panic in one
    // is a file it cannot read, not a crash.
    crate::panic_guard::catch(|| decode_as(bytes, format, max_pixels)).unwrap_or_else(|detail| {
        Err(CodecError::Unreadable {
            format: format.name(),
            detail,
        })
    })
}

fn decode_as(
    bytes: &[u8],
    format: InputFormat,
    max_pixels: u64,
) -> Result<DynamicImage, CodecError> {
    if format == InputFormat::Jpeg {
        if let Some(img) = jpeg::decode(bytes, max_pixels)? {
            return Ok(img);
        }
    }
    if format == InputFormat::Gif {
        return gif::decode(bytes, max_pixels);
    }
    if format == InputFormat::Bmp {
        return bmp::decode(bytes, max_pixels);
    }
    if format == InputFormat::Webp {
        let mut img = webp::decode(bytes, max_pixels)?;
        img.apply_orientation(orientation::resolve(
            orientation::webp_chunk(bytes, b"EXIF"),
            orientation::webp_chunk(bytes, b"XMP "),
        ));
        return Ok(img);
    }
    if format == InputFormat::Tiff {
        let (mut img, orientation) =
            tiff::decode(Cursor::new(bytes), bytes.len() as u64, max_pixels)
                .map_err(tiff_error(max_pixels))?;
        img.apply_orientation(
            Orientation::from_exif(orientation.min(255) as u8).unwrap_or(Orientation::NoTransforms),
        );
        return Ok(img);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let mut limits = Limits::default();
    // Decoded pixels may take up to 8 bytes each (RGBA16) plus decoder scratch.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    // Orientation from wherever Pillow's exif_transpose takes it (see
    // `orientation`); the EXIF block is read by our reader.
    let exif_block = decoder.exif_metadata().map_err(decode_error)?;
    let png = (format == InputFormat::Png).then(|| png_meta::read(bytes));
    let orientation = match &png {
        Some(meta) => {
            let raw_profile = meta
                .raw_profile_exif
                .as_deref()
                .and_then(orientation::raw_profile_exif);
            let exif = exif_block.or_else(|| meta.exif.clone()).or(raw_profile);
            orientation::resolve(exif.as_deref(), meta.xmp.as_deref())
        }
        None => orientation::resolve(exif_block.as_deref(), None),
    };
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    img.apply_orientation(orientation);
    let mut img = normalise(img);
    // Pillow opens L and RGB with a tRNS colour as L and RGB (the colour is
    // in `info`, which no filter reads); only palette transparency becomes
    // alpha, through `convert`.
    if png
        .as_ref()
        .is_some_and(|m| matches!(m.color_type, Some(0 | 2)))
    {
        img = match img {
            DynamicImage::ImageLumaA8(_) => DynamicImage::ImageLuma8(img.to_luma8()),
            DynamicImage::ImageRgba8(_) => DynamicImage::ImageRgb8(img.to_rgb8()),
            other => other,
        };
    }
    Ok(img)
}

/// A BMP's (or DIB's) size from its headers as Pillow reads them, and
/// whether an uncompressed image's rows fit the file: intake's check.
/// `head`: the file's first bytes (512 are enough).
pub fn inspect_bmp(head: &[u8], size: u64) -> Result<(u32, u32, bool), CodecError> {
    bmp::inspect(head, size)
}

/// A TIFF's structure, checked without decoding more than its first strip
/// or tile (see `tiff::check_structure`): intake's check.
pub fn check_tiff(
    source: impl std::io::Read + std::io::Seek,
    size: u64,
    budget: usize,
) -> Result<TiffStructure, TiffProblem> {
    crate::panic_guard::catch(|| tiff::check_structure(source, size, budget)).unwrap_or_else(
        |detail| {
            log::warn!("the TIFF structure check panicked: {detail}");
            Err(TiffProblem::Corrupt(
                "its structure could not be read".into(),
            ))
        },
    )
}

/// A filter that takes an image's rows in strips, top to bottom, and passes
/// its output rows on as they become ready: what `transcode_jpeg` streams
/// through. (`render::Streamed` implements it over the operations' row
/// stream; the codec knows nothing of operations.)
pub trait RowFilter {
    /// Channels of the output rows: 1 (L) or 3 (RGB).
    fn channels(&self) -> usize;
    fn push(
        &mut self,
        rows: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()>;
}

/// JPEG in, JPEG out, streamed in strips through the filter `make` builds
/// for the image's width, height and channels (1 or 3); see `jpeg::transcode`.
/// `Ok(None)` when the input is not a plain JPEG this path handles, or `make`
/// declines: decode, filter and encode whole instead. The bytes are the same
/// either way.
pub fn transcode_jpeg<F: RowFilter>(
    bytes: &[u8],
    max_pixels: u64,
    quality: u8,
    make: impl FnOnce(usize, usize, usize) -> Option<F>,
) -> Result<Option<Vec<u8>>, CodecError> {
    if InputFormat::sniff(bytes) != Some(InputFormat::Jpeg) {
        return Ok(None);
    }
    jpeg::transcode(bytes, max_pixels, quality, make)
}

/// The decompression-bomb guard, applied to the header's size before any
/// pixel buffer exists.
fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), CodecError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(CodecError::TooManyPixels {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    Ok(())
}

fn tiff_error(max_pixels: u64) -> impl Fn(tiff::DecodeError) -> CodecError {
    move |e| match e {
        tiff::DecodeError::Tiff(e) => CodecError::Decode(format!("libtiff: {e}")),
        tiff::DecodeError::Unsupported(what) => CodecError::Decode(what),
        tiff::DecodeError::TooManyPixels(width, height) => CodecError::TooManyPixels {
            width,
            height,
            pixels: u64::from(width) * u64::from(height),
            limit: max_pixels,
        },
    }
}

fn decode_error(e: image::ImageError) -> CodecError {
    match e {
        image::ImageError::Unsupported(u) => {
            CodecError::Decode(format!("unsupported variant: {u}"))
        }
        other => CodecError::Decode(other.to_string()),
    }
}

/// Brings any decoded image to one of the four 8-bit layouts the operations
/// work on. 16-bit samples keep their high byte, as Pillow's unpacker does for
/// 16-bit RGB(A) PNGs (Pillow's own `I;16` → `L` clips instead, which turns
/// most 16-bit grey images white).
fn normalise(img: DynamicImage) -> DynamicImage {
    fn high_bytes<P, Q>(buf: &image::ImageBuffer<P, Vec<u16>>) -> image::ImageBuffer<Q, Vec<u8>>
    where
        P: image::Pixel<Subpixel = u16>,
        Q: image::Pixel<Subpixel = u8>,
    {
        let data = buf.as_raw().iter().map(|v| (v >> 8) as u8).collect();
        image::ImageBuffer::from_raw(buf.width(), buf.height(), data)
            .unwrap_or_else(|| image::ImageBuffer::new(buf.width(), buf.height()))
    }
    match img {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => img,
        DynamicImage::ImageLuma16(b) => DynamicImage::ImageLuma8(high_bytes(&b)),
        DynamicImage::ImageLumaA16(b) => DynamicImage::ImageLumaA8(high_bytes(&b)),
        DynamicImage::ImageRgb16(b) => DynamicImage::ImageRgb8(high_bytes(&b)),
        DynamicImage::ImageRgba16(b) => DynamicImage::ImageRgba8(high_bytes(&b)),
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    }
}

/// How hard the PNG encoder compresses (PNG has no quality). The default,
/// zlib level 6 with adaptive filtering, is Pillow's: measured on photos,
/// files 3% smaller than Pillow's at 0.87x its encode time. `Fast`
/// (fdeflate) encodes ~15x faster, with files about a third larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngCompression {
    Fast,
    /// zlib-style level, 1 (fastest) to 9 (smallest).
    Level(u8),
}

impl Default for PngCompression {
    fn default() -> Self {
        PngCompression::Level(6)
    }
}

impl std::str::FromStr for PngCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fast" => Ok(PngCompression::Fast),
            level => match level.parse::<u8>() {
                Ok(n @ 1..=9) => Ok(PngCompression::Level(n)),
                _ => Err(format!("{s:?}: expected \"fast\" or a level 1..9")),
            },
        }
    }
}

/// The largest width or height a WebP file can hold.
const WEBP_MAX_SIDE: u32 = 16383;

/// Encodes an image. JPEG is written as Pillow writes it (see `jpeg`), alpha
/// dropped. PNG keeps alpha. WebP goes through libwebp, as in Pillow: lossy at
/// `quality` unless `lossless`; alpha kept. `quality` means nothing to PNG.
pub fn encode(
    img: &DynamicImage,
    format: OutputFormat,
    quality: u8,
    lossless: bool,
) -> Result<Vec<u8>, CodecError> {
    encode_with(img, format, quality, lossless, PngCompression::default())
}

/// `encode`, with the PNG compression chosen.
pub fn encode_with(
    img: &DynamicImage,
    format: OutputFormat,
    quality: u8,
    lossless: bool,
    png: PngCompression,
) -> Result<Vec<u8>, CodecError> {
    let encode_err = |reason: String| CodecError::Encode { format, reason };
    match format {
        OutputFormat::Jpeg => jpeg::encode(img, quality),
        OutputFormat::Png => {
            let mut out = Vec::with_capacity(img.as_bytes().len() / 4 + 1024);
            let encoder = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                match png {
                    PngCompression::Fast => image::codecs::png::CompressionType::Fast,
                    PngCompression::Level(n) => image::codecs::png::CompressionType::Level(n),
                },
                image::codecs::png::FilterType::Adaptive,
            );
            img.write_with_encoder(encoder)
                .map_err(|e| encode_err(e.to_string()))?;
            Ok(out)
        }
        OutputFormat::Webp => {
            let (w, h) = (img.width(), img.height());
            if w > WEBP_MAX_SIDE || h > WEBP_MAX_SIDE {
                return Err(encode_err(format!(
                    "WebP holds at most {WEBP_MAX_SIDE}x{WEBP_MAX_SIDE} pixels, this image is {w}x{h}"
                )));
            }
            // libwebp takes RGB and RGBA only.
            let (rgba, layout_alpha) = if img.color().has_alpha() {
                (img.to_rgba8().into_raw(), true)
            } else {
                (img.to_rgb8().into_raw(), false)
            };
            let encoder = if layout_alpha {
                ::webp::Encoder::from_rgba(&rgba, w, h)
            } else {
                ::webp::Encoder::from_rgb(&rgba, w, h)
            };
            encoder
                .encode_simple(lossless, f32::from(quality.clamp(1, 100)))
                .map(|mem| mem.to_vec())
                .map_err(|e| encode_err(format!("libwebp: {e:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    fn sample() -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(10, 7, |x, y| {
            Rgba([x as u8 * 25, y as u8 * 30, 128, 100 + x as u8])
        }))
    }

    #[test]
    fn png_compression_parses_fast_and_levels_only() {
        assert_eq!("fast".parse(), Ok(PngCompression::Fast));
        assert_eq!(" 9 ".parse(), Ok(PngCompression::Level(9)));
        assert_eq!(PngCompression::default(), PngCompression::Level(6));
        for bad in ["0", "10", "best", ""] {
            assert!(bad.parse::<PngCompression>().is_err(), "{bad:?}");
        }
        // Every setting still writes a PNG that reads back the same.
        for png in [
            PngCompression::Fast,
            PngCompression::Level(1),
            PngCompression::Level(9),
        ] {
            let bytes = encode_with(&sample(), OutputFormat::Png, 0, false, png).unwrap();
            assert_eq!(decode(&bytes, 1_000).unwrap(), sample());
        }
    }

    #[test]
    fn png_round_trip_is_lossless_with_alpha() {
        let img = sample();
        let bytes = encode(&img, OutputFormat::Png, 90, false).unwrap();
        assert_eq!(InputFormat::sniff(&bytes), Some(InputFormat::Png));
        assert_eq!(decode(&bytes, 1_000).unwrap(), img);
    }

    #[test]
    fn webp_lossless_round_trips_and_lossy_is_close_and_smaller() {
        // A photo-like picture: smooth shading plus mild noise.
        let mut state = 12345u32;
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = (state >> 28) as u8;
            image::Rgb([(x * 3) as u8 + noise, (y * 4) as u8 + noise, 100 + noise])
        }));
        let lossless = encode(&img, OutputFormat::Webp, 90, true).unwrap();
        assert_eq!(InputFormat::sniff(&lossless), Some(InputFormat::Webp));
        assert_eq!(decode(&lossless, 10_000).unwrap(), img);
        let lossy = encode(&img, OutputFormat::Webp, 75, false).unwrap();
        let back = decode(&lossy, 10_000).unwrap();
        assert_eq!((back.width(), back.height()), (64, 48));
        assert!(
            lossy.len() < lossless.len(),
            "{} vs {}",
            lossy.len(),
            lossless.len()
        );
        let total: u64 = back
            .as_bytes()
            .iter()
            .zip(img.as_bytes())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = total as f64 / img.as_bytes().len() as f64;
        assert!(mean > 0.0 && mean < 25.0, "mean difference {mean}");
        let alpha = encode(&sample(), OutputFormat::Webp, 90, true).unwrap();
        assert_eq!(decode(&alpha, 1_000).unwrap(), sample());
    }

    #[test]
    fn jpeg_drops_alpha() {
        let bytes = encode(&sample(), OutputFormat::Jpeg, 90, false).unwrap();
        let back = decode(&bytes, 1_000).unwrap();
        assert_eq!(back.color(), image::ColorType::Rgb8);
        assert_eq!((back.width(), back.height()), (10, 7));
    }

    #[test]
    fn garbage_is_unsupported_and_truncation_is_a_decode_error() {
        assert!(matches!(
            decode(b"hello world, not an image", 100),
            Err(CodecError::Unsupported)
        ));
        let png = encode(&sample(), OutputFormat::Png, 90, false).unwrap();
        let cut = &png[..png.len() / 2];
        assert!(matches!(decode(cut, 1_000), Err(CodecError::Decode(_))));
    }

    #[test]
    fn pixel_limit_is_enforced_before_decoding() {
        let png = encode(&sample(), OutputFormat::Png, 90, false).unwrap();
        assert!(matches!(
            decode(&png, 69),
            Err(CodecError::TooManyPixels { pixels: 70, .. })
        ));
    }

    #[test]
    fn sixteen_bit_is_scaled_not_clipped() {
        let img16 = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Rgb([65535u16, 32768, 0]),
        ));
        let mut png = Vec::new();
        img16
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let out = decode(&png, 100).unwrap();
        assert_eq!(out.as_rgb8().unwrap().get_pixel(0, 0).0, [255, 128, 0]);
    }

    #[test]
    fn output_names() {
        assert_eq!(OutputFormat::from_name("JPG"), Some(OutputFormat::Jpeg));
        assert_eq!(OutputFormat::from_name("gif"), None);
        assert_eq!(InputFormat::Gif.default_output(), OutputFormat::Png);
        assert_eq!(InputFormat::Jpeg.default_output(), OutputFormat::Jpeg);
    }
}

//! JPEG through libjpeg-turbo (the copy mozjpeg builds from source), because
//! Pillow uses libjpeg-turbo: the same integer IDCT and "fancy" chroma
//! upsampling make our decoded pixels equal Pillow's (pure-Rust decoders differ
//! by a few levels on most photos), and the same encoder settings make our JPEG
//! files byte-identical to `img.save(f, "JPEG", quality=q)`. CMYK and YCCK
//! files are read as Pillow reads them (Adobe's inverted polarity) and
//! converted to RGB with Pillow's `cmyk2rgb`.

use std::any::Any;
use std::os::raw::c_int;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::decompress::DecompressBuilder;
use mozjpeg::{ColorSpace, Compress, Decompress, Format, Marker};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error, JWRN_JPEG_EOF};

use super::CodecError;

/// Decodes a JPEG as Pillow would (`Image.open` + `exif_transpose`). Returns
/// `Ok(None)` for colour spaces this path does not handle (CMYK, YCCK).
pub(super) fn decode(bytes: &[u8], max_pixels: u64) -> Result<Option<DynamicImage>, CodecError> {
    // libjpeg reports fatal errors by unwinding out of its error_exit callback
    // (the only way out of C that does not longjmp over Rust frames).
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, max_pixels))) {
        Ok(result) => result,
        Err(payload) => Err(CodecError::Decode(panic_message(payload))),
    }
}

const EXIF_MARKERS: &[Marker] = &[Marker::APP(1)];

fn decode_inner(bytes: &[u8], max_pixels: u64) -> Result<Option<DynamicImage>, CodecError> {
    let io_err = |e: std::io::Error| CodecError::Decode(format!("jpeg: {e}"));
    let decompress = DecompressBuilder::new()
        .with_err(strict_error_mgr())
        .with_markers(EXIF_MARKERS)
        .from_mem(bytes)
        .map_err(io_err)?;
    let (width, height) = (decompress.width() as u32, decompress.height() as u32);
    super::check_pixels(width, height, max_pixels)?;
    let orientation = exif_orientation(&decompress);
    let img = match decompress.image().map_err(io_err)? {
        Format::Gray(mut started) => {
            let data: Vec<u8> = started.read_scanlines().map_err(io_err)?;
            started.finish().map_err(io_err)?;
            GrayImage::from_raw(width, height, data).map(DynamicImage::ImageLuma8)
        }
        Format::RGB(mut started) => {
            let data: Vec<u8> = started.read_scanlines().map_err(io_err)?;
            started.finish().map_err(io_err)?;
            RgbImage::from_raw(width, height, data).map(DynamicImage::ImageRgb8)
        }
        Format::CMYK(mut started) => {
            let data: Vec<u8> = started.read_scanlines().map_err(io_err)?;
            started.finish().map_err(io_err)?;
            RgbImage::from_raw(width, height, adobe_cmyk_to_rgb(&data)).map(DynamicImage::ImageRgb8)
        }
    };
    let mut img =
        img.ok_or_else(|| CodecError::Decode("jpeg: decoder returned a short image".into()))?;
    if let Some(orientation) = orientation {
        img.apply_orientation(orientation);
    }
    Ok(Some(img))
}

/// Pillow opens 4-channel JPEGs as "CMYK;I" (Adobe's inverted samples) and
/// `convert("RGB")` computes `255 - k - c * (255 - k) / 255` with its
/// `MULDIV255` rounding, per channel.
fn adobe_cmyk_to_rgb(inverted: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(inverted.len() / 4 * 3);
    for px in inverted.chunks_exact(4) {
        let nk = u32::from(px[3]);
        for &v in &px[..3] {
            let c = 255 - u32::from(v);
            let t = c * nk + 128;
            let scaled = ((t >> 8) + t) >> 8;
            rgb.push(nk.saturating_sub(scaled) as u8);
        }
    }
    rgb
}

/// Encodes as Pillow's JPEG writer does by default: baseline, 4:2:0 for colour,
/// standard (Annex K) tables scaled by `quality`, no Huffman optimisation, a
/// JFIF header. Alpha is dropped (Pillow would refuse RGBA; we keep the colour).
pub(super) fn encode(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, CodecError> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (color_space, samples) = match img {
        DynamicImage::ImageLuma8(b) => (
            ColorSpace::JCS_GRAYSCALE,
            std::borrow::Cow::Borrowed(b.as_raw()),
        ),
        DynamicImage::ImageLumaA8(_) => (
            ColorSpace::JCS_GRAYSCALE,
            std::borrow::Cow::Owned(img.to_luma8().into_raw()),
        ),
        DynamicImage::ImageRgb8(b) => (ColorSpace::JCS_RGB, std::borrow::Cow::Borrowed(b.as_raw())),
        other => (
            ColorSpace::JCS_RGB,
            std::borrow::Cow::Owned(other.to_rgb8().into_raw()),
        ),
    };
    let encode_err = |reason: String| CodecError::Encode {
        format: super::OutputFormat::Jpeg,
        reason,
    };
    let result = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<Vec<u8>> {
        let compress = compressor(color_space, width, height, quality);
        let mut started = compress.start_compress(Vec::with_capacity(samples.len() / 8 + 4096))?;
        started.write_scanlines(&samples)?;
        started.finish()
    }));
    match result {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(encode_err(e.to_string())),
        Err(payload) => Err(encode_err(panic_message(payload))),
    }
}

/// Pillow's JPEG writer settings (see `encode`), shared by every encoder here.
fn compressor(color_space: ColorSpace, width: usize, height: usize, quality: u8) -> Compress {
    let mut compress = Compress::new_err(Box::new(strict_error_mgr()), color_space);
    // libjpeg-turbo's own defaults, not mozjpeg's slower "max compression" profile.
    compress.set_fastest_defaults();
    compress.set_size(width, height);
    compress.set_quality(f32::from(quality.clamp(1, 100)));
    compress
}

/// Rows decoded from the JPEG go through `make`'s filter in strips straight
/// into the encoder (Pillow's settings, as `encode`), so no whole-image
/// buffer exists and each strip is still in cache when it is filtered and
/// encoded. `Ok(None)` when this path does not apply: CMYK/YCCK, an EXIF
/// orientation to undo, or `make` declining; the caller then decodes whole.
pub(super) fn transcode<F: super::RowFilter>(
    bytes: &[u8],
    max_pixels: u64,
    quality: u8,
    make: impl FnOnce(usize, usize, usize) -> Option<F>,
) -> Result<Option<Vec<u8>>, CodecError> {
    match catch_unwind(AssertUnwindSafe(|| {
        transcode_inner(bytes, max_pixels, quality, make)
    })) {
        Ok(result) => result,
        Err(payload) => Err(CodecError::Decode(panic_message(payload))),
    }
}

/// Rows per strip: 16 rows of a 1080p RGB image are 92 KB, well inside L2.
const STRIP_ROWS: usize = 16;

fn transcode_inner<F: super::RowFilter>(
    bytes: &[u8],
    max_pixels: u64,
    quality: u8,
    make: impl FnOnce(usize, usize, usize) -> Option<F>,
) -> Result<Option<Vec<u8>>, CodecError> {
    let decode_err = |e: std::io::Error| CodecError::Decode(format!("jpeg: {e}"));
    let encode_err = |e: std::io::Error| CodecError::Encode {
        format: super::OutputFormat::Jpeg,
        reason: e.to_string(),
    };
    let decompress = DecompressBuilder::new()
        .with_err(strict_error_mgr())
        .with_markers(EXIF_MARKERS)
        .from_mem(bytes)
        .map_err(decode_err)?;
    let (width, height) = (decompress.width(), decompress.height());
    super::check_pixels(width as u32, height as u32, max_pixels)?;
    if exif_orientation(&decompress).is_some_and(|o| o != Orientation::NoTransforms) {
        return Ok(None);
    }
    let (mut started, channels) = match decompress.image().map_err(decode_err)? {
        Format::Gray(started) => (started, 1),
        Format::RGB(started) => (started, 3),
        Format::CMYK(_) => return Ok(None),
    };
    let Some(mut filter) = make(width, height, channels) else {
        return Ok(None);
    };
    let color_space = match filter.channels() {
        1 => ColorSpace::JCS_GRAYSCALE,
        _ => ColorSpace::JCS_RGB,
    };
    let out_stride = width * filter.channels();
    let compress = compressor(color_space, width, height, quality);
    let mut encoder = compress
        .start_compress(Vec::with_capacity(out_stride * height / 8 + 4096))
        .map_err(encode_err)?;
    let stride = width * channels;
    let mut strip = vec![0u8; STRIP_ROWS * stride];
    let mut done = 0;
    while done < height {
        let rows = STRIP_ROWS.min(height - done);
        let decoded = started
            .read_scanlines_into(&mut strip[..rows * stride])
            .map_err(decode_err)?;
        if decoded.len() != rows * stride {
            return Err(CodecError::Decode(
                "jpeg: decoder returned a short image".into(),
            ));
        }
        filter
            .push(decoded, &mut |out: &[u8]| encoder.write_scanlines(out))
            .map_err(encode_err)?;
        done += rows;
    }
    started.finish().map_err(decode_err)?;
    encoder.finish().map(Some).map_err(encode_err)
}

/// Pillow's JPEG plugin keeps the first `Exif` APP1 as the EXIF block and
/// the last XMP APP1 as `info["xmp"]`; `exif_transpose` reads the former,
/// then the latter (see `orientation`). `None`: nothing to undo.
fn exif_orientation<R>(decompress: &Decompress<R>) -> Option<Orientation> {
    const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
    let app1 = || decompress.markers().filter(|m| m.marker == Marker::APP(1));
    let exif = app1()
        .find(|m| m.data.starts_with(b"Exif\0\0"))
        .map(|m| m.data);
    let xmp = app1()
        .filter(|m| m.data.starts_with(XMP))
        .last()
        .map(|m| &m.data[XMP.len()..]);
    match super::orientation::resolve(exif, xmp) {
        Orientation::NoTransforms if exif.is_none() && xmp.is_none() => None,
        o => Some(o),
    }
}

/// libjpeg's standard error manager, except that fatal errors unwind (instead
/// of calling exit()) and running out of data is fatal too: libjpeg would pad a
/// truncated file with grey and carry on, where Pillow refuses it as truncated.
/// Other warnings (corrupt entropy data and the like) are ignored, as Pillow does.
fn strict_error_mgr() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct; jpeg_std_error initialises
    // every field before we override two callbacks.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(unwind_on_error);
    err.emit_message = Some(unwind_on_truncation);
    err
}

extern "C-unwind" fn unwind_on_error(cinfo: &mut jpeg_common_struct) {
    let message = libjpeg_message(cinfo);
    // resume_unwind, not panic!: a corrupt upload is not a bug worth a panic report.
    resume_unwind(Box::new(message));
}

extern "C-unwind" fn unwind_on_truncation(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg always calls us with `err` pointing at our error manager.
    let code = unsafe { cinfo.err.as_ref() }.map(|e| e.msg_code);
    if level < 0 && code == Some(JWRN_JPEG_EOF as c_int) {
        resume_unwind(Box::new(String::from("image file is truncated")));
    }
}

fn libjpeg_message(cinfo: &mut jpeg_common_struct) -> String {
    // SAFETY: as above; format_message writes at most JMSG_LENGTH_MAX (80) bytes.
    let Some(err) = (unsafe { cinfo.err.as_ref() }) else {
        return "libjpeg error".into();
    };
    let code = err.msg_code;
    let Some(format_message) = err.format_message else {
        return format!("libjpeg error {code}");
    };
    // The binding declares the buffer `&[u8; 80]`, but libjpeg writes into it:
    // call it through the `&mut` signature so the write is not undefined behaviour.
    type FormatMut = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &mut [u8; 80]);
    // SAFETY: identical ABI; only the pointer's mutability differs.
    let format_message: FormatMut = unsafe { std::mem::transmute(format_message) };
    let mut buffer = [0u8; 80];
    unsafe { format_message(cinfo, &mut buffer) };
    let text = buffer.split(|&c| c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    format!("jpeg: {}", crate::panic_guard::panic_text(payload.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_jpeg() -> Vec<u8> {
        let img = RgbImage::from_fn(33, 17, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 13) as u8, 99])
        });
        let mut out = Vec::new();
        img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut out, 90,
        ))
        .unwrap();
        out
    }

    #[test]
    fn decodes_rgb_with_the_right_size() {
        let img = decode(&sample_jpeg(), 10_000).unwrap().unwrap();
        assert_eq!((img.width(), img.height()), (33, 17));
        assert!(img.as_rgb8().is_some());
    }

    #[test]
    fn truncated_and_garbage_data_are_errors_not_panics() {
        let jpeg = sample_jpeg();
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        let err = decode(cut, 10_000).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut garbage = jpeg[..20].to_vec();
        garbage.extend(std::iter::repeat_n(0x55, 200));
        assert!(matches!(
            decode(&garbage, 10_000),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn encodes_and_decodes_back_close_to_the_original() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(40, 24, |x, y| {
            image::Rgba([(x * 6) as u8, (y * 10) as u8, 120, 7])
        }));
        let bytes = encode(&img, 90).unwrap();
        let back = decode(&bytes, 10_000).unwrap().unwrap();
        let back = back.as_rgb8().expect("alpha dropped, colour kept");
        let original = img.to_rgb8();
        let worst = back
            .as_raw()
            .iter()
            .zip(original.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(
            worst.unwrap() < 12,
            "q90 should be close, worst diff {worst:?}"
        );
        let gray = encode(&DynamicImage::ImageLuma8(img.to_luma8()), 50).unwrap();
        assert!(decode(&gray, 10_000).unwrap().unwrap().as_luma8().is_some());
    }

    #[test]
    fn pixel_limit_is_checked_from_the_header() {
        assert!(matches!(
            decode(&sample_jpeg(), 100),
            Err(CodecError::TooManyPixels { pixels: 561, .. })
        ));
    }
}

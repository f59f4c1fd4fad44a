//! WebP decoding through libwebp, the library Pillow reads WebP with: the
//! same pixels (lossy files are YUV 4:2:0, and libwebp's "fancy" upsampling
//! is what a reimplementation would have to match bit for bit) at libwebp's
//! SIMD speed. A still image decodes straight into the output buffer; an
//! animation's first frame goes through libwebp's animation decoder, which
//! is what Pillow opens every WebP with.
//!
//! Must not: allocate pixels before the size guard has seen the header, or
//! read metadata (orientation is `codec`'s job).

use std::ffi::c_int;

use image::{DynamicImage, RgbImage, RgbaImage};
use libwebp_sys as sys;

use super::{check_pixels, CodecError};

/// Decodes a WebP to RGB, or RGBA when the file says it has alpha (Pillow's
/// modes for it).
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, CodecError> {
    // SAFETY: a plain C struct of integers; all zeroes is a valid value.
    let mut features: sys::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: libwebp reads at most `bytes.len()` bytes and writes `features`.
    let status = unsafe { sys::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut features) };
    if status != sys::VP8StatusCode::VP8_STATUS_OK {
        return Err(status_error(status));
    }
    // libwebp holds sides to 1..=16383, so these casts are exact.
    let (width, height) = (features.width as u32, features.height as u32);
    check_pixels(width, height, max_pixels)?;
    if features.has_animation != 0 {
        return first_frame(bytes, width, height);
    }
    let alpha = features.has_alpha != 0;
    let stride = width as usize * if alpha { 4 } else { 3 };
    let mut pixels = vec![0u8; stride * height as usize];
    // SAFETY: `pixels` holds `height` rows of `stride` bytes, the size
    // passed; libwebp writes no further and returns null on any error.
    let written = unsafe {
        let decode_into = if alpha {
            sys::WebPDecodeRGBAInto
        } else {
            sys::WebPDecodeRGBInto
        };
        decode_into(
            bytes.as_ptr(),
            bytes.len(),
            pixels.as_mut_ptr(),
            pixels.len(),
            stride as c_int,
        )
    };
    if written.is_null() {
        return Err(CodecError::Decode(
            "libwebp: the image data is truncated or corrupt".into(),
        ));
    }
    Ok(if alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(width, height, pixels).ok_or_else(size)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, pixels).ok_or_else(size)?)
    })
}

/// An animation's first frame on its canvas, as Pillow's `WebPAnimDecoder`
/// composes it: RGBA, and RGB when the file's header has no alpha flag.
fn first_frame(bytes: &[u8], width: u32, height: u32) -> Result<DynamicImage, CodecError> {
    let data = sys::WebPData {
        bytes: bytes.as_ptr(),
        size: bytes.len(),
    };
    // SAFETY: a plain C struct; libwebp's init fills in its defaults.
    let mut options: sys::WebPAnimDecoderOptions = unsafe { std::mem::zeroed() };
    // SAFETY: `options` is a valid, writable struct.
    if unsafe { sys::WebPAnimDecoderOptionsInit(&mut options) } == 0 {
        return Err(CodecError::Decode("libwebp: version mismatch".into()));
    }
    options.color_mode = sys::WEBP_CSP_MODE::MODE_RGBA;
    options.use_threads = 0;
    // SAFETY: `data` borrows `bytes`, which outlives the decoder below.
    let decoder = AnimDecoder(unsafe { sys::WebPAnimDecoderNew(&data, &options) });
    if decoder.0.is_null() {
        return Err(CodecError::Decode(
            "libwebp: the animation is truncated or corrupt".into(),
        ));
    }
    // SAFETY: a plain C struct of integers.
    let mut info: sys::WebPAnimInfo = unsafe { std::mem::zeroed() };
    let mut frame: *mut u8 = std::ptr::null_mut();
    let mut timestamp: c_int = 0;
    // SAFETY: `decoder` is live; GetNext points `frame` at the decoder's own
    // canvas of canvas_width × canvas_height RGBA pixels.
    let decoded = unsafe {
        sys::WebPAnimDecoderGetInfo(decoder.0, &mut info) != 0
            && sys::WebPAnimDecoderGetNext(decoder.0, &mut frame, &mut timestamp) != 0
    };
    if !decoded || frame.is_null() || (info.canvas_width, info.canvas_height) != (width, height) {
        return Err(CodecError::Decode(
            "libwebp: the animation's first frame could not be decoded".into(),
        ));
    }
    let len = width as usize * height as usize * 4;
    // SAFETY: see GetNext above; copied before the decoder is dropped.
    let canvas = unsafe { std::slice::from_raw_parts(frame, len) }.to_vec();
    // SAFETY: `decoder` is live; the demuxer is owned by it.
    let flags = unsafe {
        sys::WebPDemuxGetI(
            sys::WebPAnimDecoderGetDemuxer(decoder.0),
            sys::WebPFormatFeature::WEBP_FF_FORMAT_FLAGS,
        )
    };
    let rgba = RgbaImage::from_raw(width, height, canvas).ok_or_else(size)?;
    Ok(if flags & sys::WebPFeatureFlags::ALPHA_FLAG as u32 != 0 {
        DynamicImage::ImageRgba8(rgba)
    } else {
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).to_rgb8())
    })
}

/// Owns a libwebp animation decoder.
struct AnimDecoder(*mut sys::WebPAnimDecoder);

impl Drop for AnimDecoder {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: created by WebPAnimDecoderNew, deleted once.
            unsafe { sys::WebPAnimDecoderDelete(self.0) }
        }
    }
}

fn size() -> CodecError {
    CodecError::Decode("libwebp: pixel buffer size mismatch".into())
}

fn status_error(status: sys::VP8StatusCode) -> CodecError {
    use sys::VP8StatusCode as S;
    let what = match status {
        S::VP8_STATUS_NOT_ENOUGH_DATA => "the file is truncated",
        S::VP8_STATUS_UNSUPPORTED_FEATURE => "the file uses a feature libwebp does not support",
        S::VP8_STATUS_OUT_OF_MEMORY => "out of memory",
        _ => "the header is corrupt",
    };
    CodecError::Decode(format!("libwebp: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(alpha: bool) -> Vec<u8> {
        let (w, h) = (40u32, 24u32);
        let channels = if alpha { 4 } else { 3 };
        let pixels: Vec<u8> = (0..w * h * channels).map(|i| (i * 7 % 251) as u8).collect();
        let encoder = if alpha {
            ::webp::Encoder::from_rgba(&pixels, w, h)
        } else {
            ::webp::Encoder::from_rgb(&pixels, w, h)
        };
        encoder.encode(80.0).to_vec()
    }

    #[test]
    fn still_images_keep_their_mode_and_size() {
        let rgb = decode(&encoded(false), 1 << 20).unwrap();
        assert!(matches!(rgb, DynamicImage::ImageRgb8(_)));
        assert_eq!((rgb.width(), rgb.height()), (40, 24));
        let rgba = decode(&encoded(true), 1 << 20).unwrap();
        assert!(matches!(rgba, DynamicImage::ImageRgba8(_)));
    }

    #[test]
    fn size_guard_before_decoding() {
        let err = decode(&encoded(false), 40 * 24 - 1).unwrap_err();
        assert!(matches!(err, CodecError::TooManyPixels { pixels: 960, .. }));
    }

    #[test]
    fn truncated_and_garbage_files_are_errors() {
        let file = encoded(false);
        for cut in [0, 12, 30, file.len() / 2, file.len() - 1] {
            assert!(decode(&file[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        let mut unknown_chunk = file.clone();
        unknown_chunk[12..16].copy_from_slice(b"VP9 ");
        assert!(decode(&unknown_chunk, 1 << 20).is_err());
    }
}

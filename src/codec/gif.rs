//! A GIF's first frame as Pillow 13 opens it (`GifImagePlugin`, the default
//! RGB_AFTER_FIRST strategy) and then `convert`s it: the canvas is the
//! logical screen (grown to the frame if the frame is larger), filled with
//! the frame's transparent index, or index 0 without one; the frame's
//! indices are painted at its offset; a palette that is exactly the grey
//! ramp (entry i = (i, i, i)) or no palette at all makes the image L;
//! otherwise it is P, converted to RGBA when the frame declares a
//! transparent index (that entry's colour with alpha 0) and to RGB when not.
//! Disposal and the background colour only matter from the second frame
//! on, which imgpipe never reads.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use super::CodecError;

pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, CodecError> {
    let err = |e: gif::DecodingError| CodecError::Decode(format!("gif: {e}"));
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    options.check_frame_consistency(false);
    options.allow_unknown_blocks(true);
    options.check_lzw_end_code(false);
    // The gif crate refuses a frame with no colour table at all; Pillow
    // reads one as L. Give it a two-entry global table it can use and
    // remember there was none (the indices are what Pillow keeps).
    let has_global = bytes.get(10).is_some_and(|flags| flags & 0x80 != 0);
    let patched;
    let source = if has_global || bytes.len() < 13 {
        bytes
    } else {
        let mut b = Vec::with_capacity(bytes.len() + 6);
        b.extend_from_slice(&bytes[..10]);
        b.push((bytes[10] & 0xF8) | 0x80); // a table of 2 entries
        b.extend_from_slice(&bytes[11..13]);
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(&bytes[13..]);
        patched = b;
        &patched[..]
    };
    let mut decoder = options.read_info(Cursor::new(source)).map_err(err)?;
    let global = if has_global {
        decoder.global_palette().map(<[u8]>::to_vec)
    } else {
        None
    };
    let (screen_w, screen_h) = (decoder.width(), decoder.height());
    let frame = decoder
        .next_frame_info()
        .map_err(err)?
        .ok_or_else(|| CodecError::Decode("gif: no image in the file".into()))?
        .clone();
    let (x0, y0) = (usize::from(frame.left), usize::from(frame.top));
    let (fw, fh) = (usize::from(frame.width), usize::from(frame.height));
    let width = (x0 + fw).max(usize::from(screen_w));
    let height = (y0 + fh).max(usize::from(screen_h));
    super::check_pixels(width as u32, height as u32, max_pixels)?;
    // Pixels the data stops short of keep the canvas's fill, as in Pillow
    // (its decoder stops at the end of the data without complaint).
    let fill = frame.transparent.unwrap_or(0);
    let mut indices = vec![fill; fw * fh];
    if frame.interlaced {
        decoder.read_into_buffer(&mut indices).map_err(err)?;
    } else {
        decoder.fill_buffer(&mut indices).map_err(err)?;
    }

    let mut canvas = vec![fill; width * height];
    for (row, line) in indices.chunks_exact(fw.max(1)).enumerate().take(fh) {
        let at = (y0 + row) * width + x0;
        canvas[at..at + fw].copy_from_slice(line);
    }
    // A local palette replaces the global one; Pillow treats a grey ramp as
    // "no palette needed" (mode L) wherever it comes from.
    let palette = match &frame.palette {
        Some(local) => Some(local.clone()),
        None => global,
    }
    .filter(|p| palette_needed(p));
    let (w, h) = (width as u32, height as u32);
    let Some(palette) = palette else {
        return Ok(DynamicImage::ImageLuma8(
            GrayImage::from_raw(w, h, canvas).ok_or_else(short)?,
        ));
    };
    // Pillow's palette has 256 entries, black beyond those the file gave.
    let entry = |i: u8| -> [u8; 3] {
        let at = usize::from(i) * 3;
        palette
            .get(at..at + 3)
            .map_or([0, 0, 0], |c| [c[0], c[1], c[2]])
    };
    Ok(match frame.transparent {
        Some(t) => {
            let mut rgba = Vec::with_capacity(canvas.len() * 4);
            for &i in &canvas {
                rgba.extend(entry(i));
                rgba.push(if i == t { 0 } else { 255 });
            }
            DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, rgba).ok_or_else(short)?)
        }
        None => {
            let rgb = canvas.iter().flat_map(|&i| entry(i)).collect();
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, rgb).ok_or_else(short)?)
        }
    })
}

fn short() -> CodecError {
    CodecError::Decode("gif: short image buffer".into())
}

/// Pillow's `_is_palette_needed`: false when entry i is (i, i, i) throughout.
fn palette_needed(p: &[u8]) -> bool {
    p.chunks(3)
        .enumerate()
        .any(|(i, c)| c.len() < 3 || !(i == usize::from(c[0]) && c[0] == c[1] && c[1] == c[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grey_ramp_needs_no_palette() {
        let ramp: Vec<u8> = (0..=255u8).flat_map(|i| [i, i, i]).collect();
        assert!(!palette_needed(&ramp));
        assert!(!palette_needed(&ramp[..12]));
        let mut other = ramp.clone();
        other[5] = 9;
        assert!(palette_needed(&other));
        assert!(palette_needed(&[7, 7, 7]));
    }
}

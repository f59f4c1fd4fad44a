//! BMP (and headerless DIB) read as Pillow 13's `BmpImagePlugin` reads it,
//! then converted by imgpipe's mode rules: every header size Pillow knows
//! (OS/2 12 and 64, Windows 40 to 124), 1/4/8-bit palettes (a palette that
//! is exactly black-and-white or the grey ramp makes the image L), 16-bit
//! 5-5-5 and 5-6-5 with Pillow's truncating scale, 24 and 32-bit (alpha
//! only where the bit masks give one), RLE4 and RLE8 by Pillow's own
//! decoder (skipped pixels are index 0), bottom-up or top-down. A layout
//! Pillow refuses is refused. Pure: bytes in, pixels out.

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use super::CodecError;

fn bad(why: impl Into<String>) -> CodecError {
    CodecError::Decode(format!("bmp: {}", why.into()))
}

fn u16_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A DIB (a BMP without its 14-byte file header) starts with one of the
/// header sizes Pillow's DIB plugin accepts.
pub fn is_dib(head: &[u8]) -> bool {
    u32_at(head, 0).is_some_and(|n| [12, 40, 52, 56, 64, 108, 124].contains(&n))
}

/// How one pixel's bytes become a pixel (Pillow's raw modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw {
    Palette {
        bits: u32,
    },
    Bgr15,
    Bgr16,
    /// 3 or 4 bytes a pixel; the byte positions of R, G, B and maybe A.
    Bytes {
        size: usize,
        rgb: [usize; 3],
        alpha: Option<usize>,
    },
}

/// What the headers say, before any pixel is read.
struct Header {
    /// Where the palette (or a 40-byte header's bit masks) starts.
    cursor: usize,
    offset: usize,
    width: u32,
    height: u32,
    bits: u32,
    compression: u32,
    colors: u32,
    padding: usize,
    top_down: bool,
    masks: Option<[u32; 4]>,
}

fn read_header(bytes: &[u8]) -> Result<Header, CodecError> {
    let (header_at, mut offset) = if bytes.starts_with(b"BM") {
        (
            14,
            u32_at(bytes, 10).ok_or_else(|| bad("short file header"))? as usize,
        )
    } else {
        (0, 0)
    };
    let header_size = u32_at(bytes, header_at).ok_or_else(|| bad("short header"))? as usize;
    let data = bytes
        .get(header_at + 4..header_at + header_size.max(4))
        .ok_or_else(|| bad("the header is cut short"))?;
    let mut cursor = header_at + header_size;
    let field = |f: Option<u32>| f.ok_or_else(|| bad("the header is cut short"));
    let (width, height, bits, compression, mut colors, padding, top_down);
    let mut masks: Option<[u32; 4]> = None;
    if header_size == 12 {
        width = field(u16_at(data, 0))?;
        height = field(u16_at(data, 2))?;
        bits = field(u16_at(data, 6))?;
        (compression, colors, padding, top_down) = (0, 0, 3, false);
    } else if [40, 52, 56, 64, 108, 124].contains(&header_size) {
        top_down = data.get(7) == Some(&0xFF);
        width = field(u32_at(data, 0))?;
        let raw_height = field(u32_at(data, 4))?;
        height = if top_down {
            raw_height.wrapping_neg()
        } else {
            raw_height
        };
        bits = field(u16_at(data, 10))?;
        compression = field(u32_at(data, 12))?;
        colors = field(u32_at(data, 28))?;
        padding = 4;
        if compression == 3 {
            masks = Some(if data.len() >= 48 {
                let a = if data.len() >= 52 {
                    field(u32_at(data, 48))?
                } else {
                    0
                };
                [
                    field(u32_at(data, 36))?,
                    field(u32_at(data, 40))?,
                    field(u32_at(data, 44))?,
                    a,
                ]
            } else {
                // A 40-byte header: the three masks follow it.
                let m = [
                    field(u32_at(bytes, cursor))?,
                    field(u32_at(bytes, cursor + 4))?,
                    field(u32_at(bytes, cursor + 8))?,
                    0,
                ];
                cursor += 12;
                m
            });
        }
    } else {
        return Err(bad(format!("unsupported header type ({header_size})")));
    }
    if width == 0 || height == 0 {
        return Err(bad("the image has no width or height"));
    }
    if colors == 0 {
        colors = 1u32.checked_shl(bits).unwrap_or(0);
    }
    if offset == header_at + header_size && bits <= 8 {
        offset += padding * colors as usize;
    }
    if offset == 0 {
        // A DIB: the pixels follow the palette.
        offset = cursor
            + if bits <= 8 {
                padding * colors as usize
            } else {
                0
            };
    }
    Ok(Header {
        cursor,
        offset,
        width,
        height,
        bits,
        compression,
        colors,
        padding,
        top_down,
        masks,
    })
}

/// Intake's view: the size, and whether an uncompressed image's rows all
/// lie in a file of `size` bytes (RLE data is only known by decoding it).
/// `head` is the file's first bytes (512 are enough for any header).
pub fn inspect(head: &[u8], size: u64) -> Result<(u32, u32, bool), CodecError> {
    let h = read_header(head)?;
    let (raw, _) = pixel_layout(h.bits, h.compression, h.masks)?;
    if matches!(raw, Raw::Palette { .. }) && !(1..=65536).contains(&h.colors) {
        return Err(bad(format!("unsupported palette size ({})", h.colors)));
    }
    let stride = ((u64::from(h.width) * u64::from(h.bits) + 31) >> 3) & !3;
    let complete = match h.compression {
        1 | 2 => (h.offset as u64) < size,
        _ => {
            let last_row = (u64::from(h.width) * u64::from(h.bits)).div_ceil(8);
            (h.offset as u64)
                .saturating_add(stride.saturating_mul(u64::from(h.height) - 1))
                .saturating_add(last_row)
                <= size
        }
    };
    Ok((h.width, h.height, complete))
}

pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, CodecError> {
    let Header {
        cursor,
        offset,
        width,
        height,
        bits,
        compression,
        colors,
        padding,
        top_down,
        masks,
    } = read_header(bytes)?;
    super::check_pixels(width, height, max_pixels)?;
    let (raw, rle) = pixel_layout(bits, compression, masks)?;
    // The palette: entries of 3 (OS/2) or 4 bytes (B, G, R, reserved).
    let mut palette: Option<Vec<[u8; 3]>> = None;
    if let Raw::Palette { .. } = raw {
        if !(1..=65536).contains(&colors) {
            return Err(bad(format!("unsupported palette size ({colors})")));
        }
        let table = bytes.get(cursor..).unwrap_or_default();
        let table = &table[..table.len().min(padding * colors as usize)];
        let entry = |i: usize| table.get(i * padding..i * padding + 3);
        let grey = if colors == 2 {
            entry(0) == Some(&[0, 0, 0][..]) && entry(1) == Some(&[255, 255, 255][..])
        } else {
            (0..colors as usize)
                .all(|i| entry(i).is_some_and(|c| c.iter().all(|&v| v as usize == i)))
        };
        if !grey {
            palette = Some(
                (0..256)
                    .map(|i| entry(i).map_or([0, 0, 0], |c| [c[2], c[1], c[0]]))
                    .collect(),
            );
        }
    }
    let (w, h) = (width as usize, height as usize);
    let pixels_at = bytes
        .get(offset..)
        .ok_or_else(|| bad("the pixel data is missing"))?;
    // Samples for a palette image (indices, or grey values when the palette
    // is grey), rows top to bottom; or a colour image straight away.
    let indices: Vec<u8> = if rle {
        let mut data = rle_decode(bytes, offset, w, h, compression == 2)?;
        flip_rows(&mut data, w, top_down);
        data
    } else {
        let stride = ((w * bits as usize + 31) >> 3) & !3;
        // Pillow's raw decoder stops once the last row's pixels are in: the
        // padding after them may be missing.
        let needed = stride
            .checked_mul(h - 1)
            .and_then(|n| n.checked_add((w * bits as usize).div_ceil(8)))
            .ok_or_else(|| bad("image too large"))?;
        if pixels_at.len() < needed {
            return Err(bad("the file is truncated"));
        }
        let row = |y: usize| {
            let stored = if top_down { y } else { h - 1 - y };
            &pixels_at[stored * stride..(stored * stride + stride).min(pixels_at.len())]
        };
        match raw {
            Raw::Palette { bits } => (0..h)
                .flat_map(|y| {
                    let r = row(y);
                    (0..w).map(move |x| {
                        let at = x * bits as usize;
                        let byte = r[at / 8];
                        (byte >> (8 - bits as usize - at % 8)) & ((1u16 << bits) - 1) as u8
                    })
                })
                .collect(),
            Raw::Bgr15 | Raw::Bgr16 => {
                let five = |v: u32| (v * 255 / 31) as u8;
                let rgb = (0..h)
                    .flat_map(|y| {
                        let r = row(y);
                        (0..w).flat_map(move |x| {
                            let p = u32::from(r[2 * x]) | u32::from(r[2 * x + 1]) << 8;
                            if raw == Raw::Bgr16 {
                                [
                                    five(p >> 11 & 31),
                                    ((p >> 5 & 63) * 255 / 63) as u8,
                                    five(p & 31),
                                ]
                            } else {
                                [five(p >> 10 & 31), five(p >> 5 & 31), five(p & 31)]
                            }
                        })
                    })
                    .collect();
                return image_of(
                    RgbImage::from_raw(width, height, rgb).map(DynamicImage::ImageRgb8),
                );
            }
            Raw::Bytes { size, rgb, alpha } => {
                let px = |y: usize, x: usize| &row(y)[x * size..x * size + size];
                return Ok(match alpha {
                    Some(a) => {
                        DynamicImage::ImageRgba8(RgbaImage::from_fn(width, height, |x, y| {
                            let p = px(y as usize, x as usize);
                            image::Rgba([p[rgb[0]], p[rgb[1]], p[rgb[2]], p[a]])
                        }))
                    }
                    None => DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
                        let p = px(y as usize, x as usize);
                        image::Rgb([p[rgb[0]], p[rgb[1]], p[rgb[2]]])
                    })),
                });
            }
        }
    };
    match palette {
        None => {
            // Pillow's mode 1 (black and white) or L: a 1-bit index is 0 or 255.
            let scale = if colors <= 2 && bits == 1 { 255 } else { 1 };
            let grey = indices.iter().map(|&i| i.saturating_mul(scale)).collect();
            image_of(GrayImage::from_raw(width, height, grey).map(DynamicImage::ImageLuma8))
        }
        Some(palette) => {
            let rgb = indices
                .iter()
                .flat_map(|&i| palette[usize::from(i)])
                .collect();
            image_of(RgbImage::from_raw(width, height, rgb).map(DynamicImage::ImageRgb8))
        }
    }
}

/// How the pixels are stored, if Pillow reads that layout: the raw mode
/// and whether the data is run-length encoded.
fn pixel_layout(
    bits: u32,
    compression: u32,
    masks: Option<[u32; 4]>,
) -> Result<(Raw, bool), CodecError> {
    let mut raw = match bits {
        1 | 4 | 8 => Raw::Palette { bits },
        16 => Raw::Bgr15,
        24 => Raw::Bytes {
            size: 3,
            rgb: [2, 1, 0],
            alpha: None,
        },
        32 => Raw::Bytes {
            size: 4,
            rgb: [2, 1, 0],
            alpha: None,
        },
        _ => return Err(bad(format!("unsupported pixel depth ({bits})"))),
    };
    let rle = match compression {
        0 => false,
        1 | 2 => true,
        3 => {
            raw = bitfields(bits, masks.unwrap_or_default())
                .ok_or_else(|| bad("unsupported bitfields layout"))?;
            false
        }
        c => return Err(bad(format!("unsupported compression ({c})"))),
    };
    Ok((raw, rle))
}

fn image_of(img: Option<DynamicImage>) -> Result<DynamicImage, CodecError> {
    img.ok_or_else(|| bad("short pixel buffer"))
}

/// Pillow's bit-mask table: the layouts it reads, as byte positions.
fn bitfields(bits: u32, m: [u32; 4]) -> Option<Raw> {
    let bytes = |rgb: [usize; 3], alpha: Option<usize>| {
        Some(Raw::Bytes {
            size: 4,
            rgb,
            alpha,
        })
    };
    match (bits, m) {
        (32, [0xFF0000, 0xFF00, 0xFF, 0]) => bytes([2, 1, 0], None), // BGRX
        (32, [0xFF000000, 0xFF0000, 0xFF00, 0]) => bytes([3, 2, 1], None), // XBGR
        (32, [0xFF000000, 0xFF00, 0xFF, 0]) => bytes([3, 1, 0], None), // BGXR
        (32, [0xFF000000, 0xFF0000, 0xFF00, 0xFF]) => bytes([3, 2, 1], Some(0)), // ABGR
        (32, [0xFF, 0xFF00, 0xFF0000, 0xFF000000]) => bytes([0, 1, 2], Some(3)), // RGBA
        (32, [0xFF0000, 0xFF00, 0xFF, 0xFF000000]) => bytes([2, 1, 0], Some(3)), // BGRA
        (32, [0xFF000000, 0xFF00, 0xFF, 0xFF0000]) => bytes([3, 1, 0], Some(2)), // BGAR
        (32, [0, 0, 0, 0]) => bytes([2, 1, 0], Some(3)),             // BGRA
        (24, [0xFF0000, 0xFF00, 0xFF, _]) => Some(Raw::Bytes {
            size: 3,
            rgb: [2, 1, 0],
            alpha: None,
        }),
        (16, [0xF800, 0x7E0, 0x1F, _]) => Some(Raw::Bgr16),
        (16, [0x7C00, 0x3E0, 0x1F, _]) => Some(Raw::Bgr15),
        _ => None,
    }
}

/// Pillow's `BmpRleDecoder`, step for step: the indices in stored row
/// order; word alignment counts from the start of the file, as its file
/// position does.
fn rle_decode(
    bytes: &[u8],
    offset: usize,
    w: usize,
    h: usize,
    rle4: bool,
) -> Result<Vec<u8>, CodecError> {
    let dest = w * h;
    let mut data: Vec<u8> = Vec::with_capacity(dest);
    let mut pos = offset;
    let mut x = 0usize;
    while data.len() < dest {
        let (Some(&count), Some(&byte)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            break;
        };
        pos += 2;
        if count > 0 {
            let n = if x + usize::from(count) > w {
                w.saturating_sub(x)
            } else {
                usize::from(count)
            };
            if rle4 {
                data.extend((0..n).map(|i| if i % 2 == 0 { byte >> 4 } else { byte & 0x0F }));
            } else {
                data.extend(std::iter::repeat_n(byte, n));
            }
            x += n;
        } else if byte == 0 {
            while !data.len().is_multiple_of(w) {
                data.push(0);
            }
            x = 0;
        } else if byte == 1 {
            break;
        } else if byte == 2 {
            let (Some(&right), Some(&up)) = (bytes.get(pos), bytes.get(pos + 1)) else {
                break;
            };
            pos += 2;
            let skip = (usize::from(right) + usize::from(up) * w).min(dest - data.len());
            data.extend(std::iter::repeat_n(0, skip));
            x = data.len() % w;
        } else {
            let count = (dest - data.len()).min(usize::from(byte));
            let byte_count = if rle4 { count.div_ceil(2) } else { count };
            let read = &bytes[pos.min(bytes.len())..(pos + byte_count).min(bytes.len())];
            pos += read.len();
            if rle4 {
                for (i, &b) in read.iter().enumerate() {
                    data.push(b >> 4);
                    if i * 2 + 1 < count {
                        data.push(b & 0x0F);
                    }
                }
            } else {
                data.extend_from_slice(read);
            }
            if read.len() < byte_count || data.len() == dest {
                break;
            }
            x += usize::from(byte);
            if !pos.is_multiple_of(2) {
                pos += 1;
            }
        }
    }
    if data.len() < dest {
        return Err(bad("not enough image data"));
    }
    data.truncate(dest);
    Ok(data)
}

/// RLE rows come bottom-up unless the header says top-down.
fn flip_rows(data: &mut [u8], w: usize, top_down: bool) {
    if !top_down {
        let rows: Vec<Vec<u8>> = data.chunks(w).rev().map(<[u8]>::to_vec).collect();
        for (dst, src) in data.chunks_mut(w).zip(rows) {
            dst.copy_from_slice(&src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle8_runs_deltas_and_absolute_runs() {
        let at = |body: &[u8]| {
            let mut file = vec![0u8; 10];
            file.extend(body);
            file
        };
        // A run of 2, end of line, a delta of 1 right, a run of 3.
        let file = at(&[2, 7, 0, 0, 0, 2, 1, 0, 3, 5]);
        assert_eq!(
            rle_decode(&file, 10, 4, 2, false).unwrap(),
            [7, 7, 0, 0, 0, 5, 5, 5]
        );
        // An absolute run of 3, padded to a word, then a run.
        let file = at(&[0, 3, 8, 9, 10, 0, 2, 4]);
        assert_eq!(
            rle_decode(&file, 10, 5, 1, false).unwrap(),
            [8, 9, 10, 4, 4]
        );
        // RLE4 alternates the nibbles.
        let file = at(&[3, 0x12]);
        assert_eq!(rle_decode(&file, 10, 3, 1, true).unwrap(), [1, 2, 1]);
        // End of bitmap before the image is full: Pillow's "not enough image data".
        assert!(rle_decode(&at(&[2, 7, 0, 1]), 10, 4, 2, false).is_err());
    }

    #[test]
    fn sixteen_bit_masks_are_pillows() {
        assert_eq!(bitfields(16, [0xF800, 0x7E0, 0x1F, 0]), Some(Raw::Bgr16));
        assert_eq!(bitfields(16, [0x7C00, 0x3E0, 0x1F, 0]), Some(Raw::Bgr15));
        assert_eq!(bitfields(16, [0x1F, 0x3E0, 0x7C00, 0]), None);
        assert!(is_dib(&[40, 0, 0, 0]));
        assert!(!is_dib(&[41, 0, 0, 0]));
    }
}

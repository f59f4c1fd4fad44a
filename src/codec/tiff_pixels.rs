//! TIFF samples to pixels, as Pillow's unpackers and `convert` make them:
//! the second half of `tiff` (that file reads the samples, this one turns
//! them into one of imgpipe's four 8-bit layouts). Pure, no I/O.

use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};

use super::tiff::{row_bytes, Extra, Kind, Layout};

/// Reads sample `c` of pixel `x` in row `y`, whatever the bit depth and
/// whether planes are separate.
struct Samples<'a> {
    planes: &'a [Vec<u8>],
    planar: bool,
    per_pixel: usize,
    bits: u16,
    row_bytes: usize,
}

impl Samples<'_> {
    fn get(&self, x: usize, y: usize, c: usize) -> u32 {
        let (plane, index) = if self.planar {
            (c, x)
        } else {
            (0, x * self.per_pixel + c)
        };
        let Some(plane) = self.planes.get(plane) else {
            return 0;
        };
        let row = &plane[y * self.row_bytes..(y + 1) * self.row_bytes];
        let byte = |i: usize| u32::from(row.get(i).copied().unwrap_or(0));
        match self.bits {
            8 => byte(index),
            16 => u32::from(u16::from_ne_bytes([
                byte(2 * index) as u8,
                byte(2 * index + 1) as u8,
            ])),
            32 => u32::from_ne_bytes([
                byte(4 * index) as u8,
                byte(4 * index + 1) as u8,
                byte(4 * index + 2) as u8,
                byte(4 * index + 3) as u8,
            ]),
            bits => {
                // 1, 2, 4 and 12 bits: packed, most significant bit first
                // (libtiff has already undone FillOrder 2).
                let bits = usize::from(bits);
                let at = index * bits;
                let window = (byte(at / 8) << 16) | (byte(at / 8 + 1) << 8) | byte(at / 8 + 2);
                (window >> (24 - bits - at % 8)) & ((1 << bits) - 1)
            }
        }
    }
}

/// Pillow's `MULDIV255`-rounded `cmyk2rgb`.
fn cmyk_to_rgb(c: u32, m: u32, y: u32, k: u32) -> [u8; 3] {
    let nk = 255 - k;
    [c, m, y].map(|v| {
        let t = v * nk + 128;
        nk.saturating_sub(((t >> 8) + t) >> 8) as u8
    })
}

/// Pillow's `unpackRGBa` (premultiplied alpha undone; alpha 0 is black).
fn unpremultiply(rgb: [u32; 3], a: u32) -> [u8; 4] {
    match a {
        0 => [0; 4],
        255 => [rgb[0] as u8, rgb[1] as u8, rgb[2] as u8, 255],
        _ => {
            let f = |v: u32| (v * 255 / a).min(255) as u8;
            [f(rgb[0]), f(rgb[1]), f(rgb[2]), a as u8]
        }
    }
}

pub fn convert(
    layout: &Layout,
    kind: Kind,
    planes: &[Vec<u8>],
    colormap: Option<&[Vec<u16>; 3]>,
) -> Result<DynamicImage, &'static str> {
    let (w, h) = (layout.width, layout.height);
    let per_pixel = usize::from(layout.samples);
    let s = Samples {
        planes,
        planar: layout.planar,
        per_pixel,
        bits: layout.bits,
        row_bytes: row_bytes(
            w,
            if layout.planar { 1 } else { per_pixel as u64 },
            layout.bits,
        ),
    };
    // 8-bit component of a colour sample: 16-bit keeps its high byte.
    let c8 = |v: u32| if layout.bits == 16 { v >> 8 } else { v };
    let grey = |f: &dyn Fn(u32) -> u8| {
        GrayImage::from_fn(w, h, |x, y| {
            image::Luma([f(s.get(x as usize, y as usize, 0))])
        })
    };
    Ok(match kind {
        Kind::Grey { invert } => {
            let scale = match layout.bits {
                1 => 255,
                2 => 85,
                4 => 17,
                _ => 1,
            };
            DynamicImage::ImageLuma8(grey(&|v| {
                let v = (v * scale) as u8;
                if invert {
                    255 - v
                } else {
                    v
                }
            }))
        }
        Kind::Grey16 => DynamicImage::ImageLuma8(grey(&|v| (v >> 8) as u8)),
        Kind::Int => DynamicImage::ImageLuma8(grey(&|v| {
            let v = if layout.bits == 16 {
                i32::from(v as u16 as i16)
            } else {
                v as i32
            };
            v.clamp(0, 255) as u8
        })),
        Kind::Float => DynamicImage::ImageLuma8(grey(&|v| {
            let v = f32::from_bits(v);
            if v <= 0.0 {
                0
            } else if v >= 255.0 {
                255
            } else {
                v as u8
            }
        })),
        Kind::GreyExtra(Extra::None | Extra::Ignored) => {
            DynamicImage::ImageLuma8(grey(&|v| v as u8))
        }
        Kind::GreyExtra(extra) => {
            DynamicImage::ImageLumaA8(GrayAlphaImage::from_fn(w, h, |x, y| {
                let (x, y) = (x as usize, y as usize);
                let (l, a) = (s.get(x, y, 0), s.get(x, y, 1));
                // Pillow's la2lA keeps the grey where alpha is 0 or 255.
                let l = if extra == Extra::Premultiplied && a != 0 && a != 255 {
                    (255 * l / a).min(255)
                } else {
                    l
                };
                image::LumaA([l as u8, a as u8])
            }))
        }
        Kind::Rgb(Extra::None | Extra::Ignored) | Kind::YCbCr => {
            DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
                let (x, y) = (x as usize, y as usize);
                image::Rgb([0, 1, 2].map(|c| c8(s.get(x, y, c)) as u8))
            }))
        }
        Kind::Rgb(extra) => DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let rgb = [0, 1, 2].map(|c| c8(s.get(x, y, c)));
            let a = c8(s.get(x, y, 3));
            if extra == Extra::Premultiplied {
                image::Rgba(unpremultiply(rgb, a))
            } else {
                image::Rgba([rgb[0] as u8, rgb[1] as u8, rgb[2] as u8, a as u8])
            }
        })),
        Kind::Palette(extra) => {
            let entry = |i: u32, c: usize| -> u8 {
                colormap
                    .and_then(|m| m[c].get(i as usize))
                    .map_or(0, |&v| (v >> 8) as u8)
            };
            if extra == Extra::Alpha {
                DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
                    let (x, y) = (x as usize, y as usize);
                    let i = s.get(x, y, 0);
                    image::Rgba([entry(i, 0), entry(i, 1), entry(i, 2), s.get(x, y, 1) as u8])
                }))
            } else {
                DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
                    let i = s.get(x as usize, y as usize, 0);
                    image::Rgb([entry(i, 0), entry(i, 1), entry(i, 2)])
                }))
            }
        }
        Kind::Lab => {
            // Pillow's unpacker stores a and b offset by 128 (the file's are signed).
            let lab: Vec<[u8; 3]> = (0..h as usize)
                .flat_map(|y| (0..w as usize).map(move |x| (x, y)))
                .map(|(x, y)| {
                    [
                        s.get(x, y, 0) as u8,
                        s.get(x, y, 1) as u8 ^ 128,
                        s.get(x, y, 2) as u8 ^ 128,
                    ]
                })
                .collect();
            let rgb =
                super::lab::to_rgb(&lab).ok_or("LittleCMS could not convert CIELab to RGB")?;
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, rgb).ok_or("short CIELab buffer")?)
        }
        Kind::Cmyk => DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let [c, m, ye, k] = [0, 1, 2, 3].map(|i| c8(s.get(x, y, i)));
            image::Rgb(cmyk_to_rgb(c, m, ye, k))
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_samples_are_read_msb_first() {
        let planes = vec![vec![0b1011_0001, 0xAB, 0xC0]];
        let s = |bits| Samples {
            planes: &planes,
            planar: false,
            per_pixel: 1,
            bits,
            row_bytes: 3,
        };
        assert_eq!(
            (0..4).map(|x| s(2).get(x, 0, 0)).collect::<Vec<_>>(),
            [2, 3, 0, 1]
        );
        assert_eq!(s(1).get(0, 0, 0), 1);
        assert_eq!(s(1).get(1, 0, 0), 0);
        assert_eq!(s(12).get(0, 0, 0), 0xB1A);
        assert_eq!(s(12).get(1, 0, 0), 0xBC0);
    }

    #[test]
    fn pillows_colour_rules() {
        assert_eq!(cmyk_to_rgb(0, 0, 0, 0), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(255, 0, 128, 0), [0, 255, 127]);
        assert_eq!(unpremultiply([10, 20, 30], 0), [0, 0, 0, 0]);
        assert_eq!(unpremultiply([64, 128, 200], 128), [127, 255, 255, 128]);
    }
}

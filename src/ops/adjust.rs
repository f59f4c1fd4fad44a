//! Pillow's `ImageOps` tone operations (invert, solarize, autocontrast,
//! equalize): a 256-entry lookup table per colour channel, built exactly as
//! Pillow builds it (same integer and float arithmetic), then applied.
//!
//! Pillow refuses these on images with alpha; here the colour channels are
//! processed as Pillow processes the colour image, and alpha is kept as it was.

use image::{DynamicImage, ImageBuffer, Pixel};

/// One table per colour channel.
type Luts = Vec<[u8; 256]>;

pub fn invert(img: &DynamicImage) -> DynamicImage {
    let lut: [u8; 256] = std::array::from_fn(|i| 255 - i as u8);
    apply(img, |channels| vec![lut; channels.len()])
}

/// `ImageOps.solarize(img, threshold=128)`: samples at or above the
/// threshold are inverted.
pub fn solarize(img: &DynamicImage, threshold: u16) -> DynamicImage {
    let lut: [u8; 256] = std::array::from_fn(|i| {
        if (i as u16) < threshold {
            i as u8
        } else {
            255 - i as u8
        }
    });
    apply(img, |channels| vec![lut; channels.len()])
}

/// `ImageOps.posterize(img, bits)`: the low `8 - bits` bits cleared.
pub fn posterize(img: &DynamicImage, bits: u8) -> DynamicImage {
    let mask = !((1u16 << (8 - bits.clamp(1, 8))) - 1) as u8;
    let lut: [u8; 256] = std::array::from_fn(|i| i as u8 & mask);
    apply(img, |channels| vec![lut; channels.len()])
}

/// `ImageOps.autocontrast(img, cutoff)`: `cutoff` percent of each channel's
/// samples is cut from both ends of its histogram, then the darkest remaining
/// value becomes 0 and the lightest 255, linearly in between.
pub fn autocontrast(img: &DynamicImage, cutoff: f64) -> DynamicImage {
    apply(img, |histograms| {
        histograms
            .iter()
            .map(|h| {
                let mut h = *h;
                if cutoff != 0.0 {
                    cut(&mut h, cutoff);
                }
                let lo = h.iter().position(|&n| n > 0);
                let hi = h.iter().rposition(|&n| n > 0);
                match (lo, hi) {
                    (Some(lo), Some(hi)) if hi > lo => {
                        // Python floats are f64, and int() truncates toward zero.
                        let scale = 255.0 / (hi - lo) as f64;
                        let offset = -(lo as f64) * scale;
                        std::array::from_fn(|ix| {
                            ((ix as f64 * scale + offset) as i64).clamp(0, 255) as u8
                        })
                    }
                    _ => identity(),
                }
            })
            .collect()
    })
}

/// `ImageOps.equalize(img)`: each channel's histogram flattened.
pub fn equalize(img: &DynamicImage) -> DynamicImage {
    apply(img, |histograms| {
        histograms
            .iter()
            .map(|h| {
                let used: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
                let last = used.last().copied().unwrap_or(0);
                let step = (used.iter().sum::<u64>() - last) / 255;
                if used.len() <= 1 || step == 0 {
                    return identity();
                }
                let mut n = step / 2;
                std::array::from_fn(|i| {
                    let v = (n / step).min(255) as u8;
                    n += h[i];
                    v
                })
            })
            .collect()
    })
}

/// The histogram trimming in `ImageOps.autocontrast`: low end first, then
/// the high end of what is left.
fn cut(h: &mut [u64; 256], cutoff: f64) {
    let n: u64 = h.iter().sum();
    // int(n * cutoff // 100): Python float floor division.
    let amount = py_floordiv(n as f64 * cutoff, 100.0) as u64;
    let mut trim = |order: &mut dyn Iterator<Item = usize>| {
        let mut left = amount;
        for i in order {
            if left > h[i] {
                left -= h[i];
                h[i] = 0;
            } else {
                h[i] -= left;
                left = 0;
            }
            if left == 0 {
                break;
            }
        }
    };
    trim(&mut (0..256));
    trim(&mut (0..256).rev());
}

/// Python's `a // b` for floats (CPython's `float_floor_div`, b > 0).
fn py_floordiv(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && (m < 0.0) != (b < 0.0) {
        div -= 1.0;
    }
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

fn identity() -> [u8; 256] {
    std::array::from_fn(|i| i as u8)
}

/// Builds the tables from the colour channels' histograms and applies them,
/// leaving alpha untouched. Inputs other than L, LA, RGB and RGBA (8-bit)
/// are converted to RGB(A) first.
fn apply(img: &DynamicImage, luts: impl FnOnce(&[[u64; 256]]) -> Luts) -> DynamicImage {
    use DynamicImage::*;
    match img {
        ImageLuma8(b) => ImageLuma8(apply_to(b.clone(), luts)),
        ImageLumaA8(b) => ImageLumaA8(apply_to(b.clone(), luts)),
        ImageRgb8(b) => ImageRgb8(apply_to(b.clone(), luts)),
        ImageRgba8(b) => ImageRgba8(apply_to(b.clone(), luts)),
        other if other.color().has_alpha() => ImageRgba8(apply_to(other.to_rgba8(), luts)),
        other => ImageRgb8(apply_to(other.to_rgb8(), luts)),
    }
}

fn apply_to<P: Pixel<Subpixel = u8>>(
    mut buf: ImageBuffer<P, Vec<u8>>,
    luts: impl FnOnce(&[[u64; 256]]) -> Luts,
) -> ImageBuffer<P, Vec<u8>> {
    let stride = usize::from(P::CHANNEL_COUNT);
    let colour = if P::HAS_ALPHA { stride - 1 } else { stride };
    let mut histograms = vec![[0u64; 256]; colour];
    for pixel in buf.as_raw().chunks_exact(stride) {
        for (c, &v) in pixel[..colour].iter().enumerate() {
            histograms[c][usize::from(v)] += 1;
        }
    }
    let luts = luts(&histograms);
    for pixel in buf.chunks_exact_mut(stride) {
        for (c, v) in pixel[..colour].iter_mut().enumerate() {
            *v = luts[c][usize::from(*v)];
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, LumaA, RgbaImage};

    fn gray(values: &[u8]) -> DynamicImage {
        DynamicImage::ImageLuma8(
            GrayImage::from_raw(values.len() as u32, 1, values.to_vec()).unwrap(),
        )
    }

    #[test]
    fn invert_and_solarize_keep_alpha() {
        let img = DynamicImage::ImageLumaA8(image::ImageBuffer::from_pixel(1, 1, LumaA([10, 77])));
        assert_eq!(
            invert(&img).as_luma_alpha8().unwrap()[(0, 0)],
            LumaA([245, 77])
        );
        let img = gray(&[0, 127, 128, 255]);
        assert_eq!(solarize(&img, 128).as_bytes(), &[0, 127, 127, 0]);
    }

    #[test]
    fn autocontrast_stretches_each_channel_and_leaves_flat_ones() {
        let img = gray(&[50, 100, 150]);
        // scale 255/100, offset -127.5: int(100 * 2.55 - 127.5) = 127
        assert_eq!(autocontrast(&img, 0.0).as_bytes(), &[0, 127, 255]);
        let flat = gray(&[9, 9]);
        assert_eq!(autocontrast(&flat, 0.0).as_bytes(), &[9, 9]);
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(2, 1, |x, _| {
            image::Rgba([x as u8 * 10, 5, 200 + x as u8, 33])
        }));
        let out = autocontrast(&rgba, 0.0);
        assert_eq!(out.as_bytes(), &[0, 5, 0, 33, 255, 5, 255, 33]);
    }

    #[test]
    fn equalize_of_a_single_value_is_the_identity() {
        let img = gray(&[7; 10]);
        assert_eq!(equalize(&img).as_bytes(), &[7; 10]);
        let img = DynamicImage::ImageLuma8(GrayImage::from_fn(16, 16, |x, y| {
            Luma([(x * 16 + y) as u8])
        }));
        // A uniform histogram is already flat.
        assert_eq!(equalize(&img).as_bytes(), img.as_bytes());
    }
}

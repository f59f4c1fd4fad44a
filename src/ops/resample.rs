//! Pillow's resizing engine: `Image.resize` (Resample.c: separable
//! convolution with precomputed coefficients in 10.22 fixed point, nearest
//! neighbour through the affine scaler) and `Image.reduce` (Reduce.c: box
//! averages with Pillow's reciprocal multiplier). Float types follow the C
//! code (the source box is float32, coefficients double).
//!
//! Images with alpha are resized premultiplied, as `Image.resize` does; that
//! is the caller's job (see `geometry`), not this module's.

use super::raster::Raster;

/// Pillow's resampling filters (`Image.Resampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Nearest,
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

impl Resample {
    /// Support radius, as Pillow's `_filters_support`.
    pub fn support(self) -> f64 {
        match self {
            Resample::Nearest | Resample::Box => 0.5,
            Resample::Bilinear | Resample::Hamming => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        use std::f64::consts::PI;
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (x * PI).sin() / (x * PI)
            }
        };
        match self {
            Resample::Nearest | Resample::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Resample::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Resample::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * PI;
                    // The C source writes 0.54f and 0.46f: float32 constants.
                    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Resample::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// The source region to scale, in source pixels (Pillow's `box`), float32.
pub type SourceBox = [f32; 4];

pub fn full_box(img: &Raster) -> SourceBox {
    [0.0, 0.0, img.width as f32, img.height as f32]
}

/// `im.im.resize(size, resample, box)`: the C entry point, without the
/// premultiplication and reducing steps that `Image.resize` adds around it.
pub fn resize(img: &Raster, width: usize, height: usize, filter: Resample, b: SourceBox) -> Raster {
    if img.width == width && img.height == height && b == full_box(img) {
        return img.clone();
    }
    if filter == Resample::Nearest {
        return scale_nearest(img, width, height, b);
    }
    convolve(img, width, height, filter, b)
}

/// `ImagingScaleAffine` as `_resize` calls it for NEAREST: positions are
/// accumulated in double, exactly as the C loop does.
fn scale_nearest(img: &Raster, width: usize, height: usize, b: SourceBox) -> Raster {
    let ch = img.channels;
    let a0 = f64::from(b[2] - b[0]) / width as f64;
    let a4 = f64::from(b[3] - b[1]) / height as f64;
    let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
    let mut xin = Vec::with_capacity(width);
    let mut xo = f64::from(b[0]) + a0 * 0.5;
    for _ in 0..width {
        xin.push(coord(xo));
        xo += a0;
    }
    let mut out = Raster::new(width, height, ch);
    let mut yo = f64::from(b[1]) + a4 * 0.5;
    for y in 0..height {
        let yi = coord(yo);
        yo += a4;
        if yi < 0 || yi >= img.height as i64 {
            continue;
        }
        let src = &img.data[yi as usize * img.stride()..(yi as usize + 1) * img.stride()];
        let dst = &mut out.data[y * width * ch..(y + 1) * width * ch];
        for (x, &xi) in xin.iter().enumerate() {
            if xi >= 0 && (xi as usize) < img.width {
                let s = xi as usize * ch;
                dst[x * ch..(x + 1) * ch].copy_from_slice(&src[s..s + ch]);
            }
        }
    }
    out
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Coefficients for one axis: for each output sample the first source index
/// and the fixed-point weights of the samples it uses.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

/// `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
fn coeffs(in_size: usize, in0: f32, in1: f32, out_size: usize, filter: Resample) -> Coeffs {
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let raw: Vec<f64> = (0..xmax.max(0))
            .map(|x| filter.weight(((x + xmin) as f64 - center + 0.5) * ss))
            .collect();
        let ww: f64 = raw.iter().fold(0.0, |acc, w| acc + w);
        let fixed = raw
            .iter()
            .map(|&w| {
                let k = if ww != 0.0 { w / ww } else { w };
                let scaled = k * f64::from(1u32 << PRECISION_BITS);
                if k < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                }
            })
            .collect();
        bounds.push((xmin as usize, xmax.max(0) as usize));
        weights.push(fixed);
    }
    Coeffs { bounds, weights }
}

#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `ImagingResampleInner` for 8-bit images. Each pass rounds to 8 bits, so
/// the order matters: Pillow 13 runs the vertical pass first when the height
/// shrinks by more than twice as many pixels as the width does.
fn convolve(img: &Raster, width: usize, height: usize, filter: Resample, b: SourceBox) -> Raster {
    let need_h = width != img.width || b[0] != 0.0 || b[2] != width as f32;
    let need_v = height != img.height || b[1] != 0.0 || b[3] != height as f32;
    let horiz = || coeffs(img.width, b[0], b[2], width, filter);
    let vert = || coeffs(img.height, b[1], b[3], height, filter);
    match (need_h, need_v) {
        (true, true) if vertical_first(img, width, height) => {
            horizontal(&vertical(img, &vert()), &horiz())
        }
        (true, true) => {
            // Only the source rows the vertical pass reads are resampled.
            let v = vert();
            let first = v.bounds.first().map_or(0, |&(min, _)| min);
            let last = v.bounds.last().map_or(0, |&(min, len)| min + len);
            let rows = Raster {
                width: img.width,
                height: last - first,
                channels: img.channels,
                data: img.data[first * img.stride()..last * img.stride()].to_vec(),
            };
            let shifted = Coeffs {
                bounds: v
                    .bounds
                    .iter()
                    .map(|&(min, len)| (min - first, len))
                    .collect(),
                weights: v.weights,
            };
            vertical(&horizontal(&rows, &horiz()), &shifted)
        }
        (true, false) => horizontal(img, &horiz()),
        (false, true) => vertical(img, &vert()),
        (false, false) => img.clone(),
    }
}

fn vertical_first(img: &Raster, width: usize, height: usize) -> bool {
    let dy = img.height as i64 - height as i64;
    let dx = img.width as i64 - width as i64;
    dy > 0 && dy > dx * 2
}

fn horizontal(img: &Raster, hc: &Coeffs) -> Raster {
    let mut out = Raster::new(hc.bounds.len(), img.height, img.channels);
    match img.channels {
        1 => horizontal_rows::<1>(img, hc, &mut out),
        2 => horizontal_rows::<2>(img, hc, &mut out),
        3 => horizontal_rows::<3>(img, hc, &mut out),
        _ => horizontal_rows::<4>(img, hc, &mut out),
    }
    out
}

/// Every channel of an output pixel accumulates together, as in Pillow's
/// `ImagingResampleHorizontal_8bpc`.
fn horizontal_rows<const C: usize>(img: &Raster, hc: &Coeffs, out: &mut Raster) {
    let bias = 1i32 << (PRECISION_BITS - 1);
    let (in_stride, out_stride) = (img.stride(), out.stride());
    for (src, dst) in img
        .data
        .chunks_exact(in_stride)
        .zip(out.data.chunks_exact_mut(out_stride))
    {
        for ((&(xmin, _), k), px) in hc
            .bounds
            .iter()
            .zip(&hc.weights)
            .zip(dst.chunks_exact_mut(C))
        {
            let window = &src[xmin * C..(xmin + k.len()) * C];
            let mut ss = [bias; C];
            for (&w, sample) in k.iter().zip(window.chunks_exact(C)) {
                for c in 0..C {
                    ss[c] = ss[c].wrapping_add(i32::from(sample[c]).wrapping_mul(w));
                }
            }
            for c in 0..C {
                px[c] = clip8(ss[c]);
            }
        }
    }
}

/// Each output row is a weighted sum of whole input rows: the sums run
/// along the row (tap by tap), which vectorises; same wrapping i32
/// arithmetic per sample as Pillow's `ImagingResampleVertical_8bpc`.
fn vertical(img: &Raster, vc: &Coeffs) -> Raster {
    let stride = img.stride();
    let mut out = Raster::new(img.width, vc.bounds.len(), img.channels);
    let mut sums = vec![0i32; stride];
    for ((&(ymin, _), k), dst) in vc
        .bounds
        .iter()
        .zip(&vc.weights)
        .zip(out.data.chunks_exact_mut(stride.max(1)))
    {
        let rows = &img.data[ymin * stride..(ymin + k.len()) * stride];
        vertical_row(rows, stride, k, &mut sums, dst);
    }
    out
}

fn vertical_row(rows: &[u8], stride: usize, k: &[i32], sums: &mut [i32], dst: &mut [u8]) {
    #[inline(always)]
    fn body(rows: &[u8], stride: usize, k: &[i32], sums: &mut [i32], dst: &mut [u8]) {
        sums.fill(1i32 << (PRECISION_BITS - 1));
        for (&w, row) in k.iter().zip(rows.chunks_exact(stride)) {
            for (s, &p) in sums.iter_mut().zip(row) {
                *s = s.wrapping_add(i32::from(p).wrapping_mul(w));
            }
        }
        for (d, &s) in dst.iter_mut().zip(sums.iter()) {
            *d = clip8(s);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        /// `body` compiled for AVX2.
        ///
        /// # Safety
        /// A safe function, but calling it is `unsafe` where AVX2 is not
        /// statically enabled: the caller must have checked that the CPU
        /// supports AVX2. It has no other obligation.
        #[target_feature(enable = "avx2")]
        fn avx2(rows: &[u8], stride: usize, k: &[i32], sums: &mut [i32], dst: &mut [u8]) {
            body(rows, stride, k, sums, dst)
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { avx2(rows, stride, k, sums, dst) };
        }
    }
    body(rows, stride, k, sums, dst)
}

/// `Image.reduce((fx, fy))` over the whole image: each output sample is the
/// mean of an fx × fy box (smaller at the right and bottom edges), computed
/// with Pillow's float32 reciprocal and a 24-bit shift.
pub fn reduce(img: &Raster, fx: usize, fy: usize) -> Raster {
    let ch = img.channels;
    let (w, h) = (img.width.div_ceil(fx), img.height.div_ceil(fy));
    let mut out = Raster::new(w, h, ch);
    for y in 0..h {
        let rows = y * fy..((y + 1) * fy).min(img.height);
        for x in 0..w {
            let cols = x * fx..((x + 1) * fx).min(img.width);
            let n = (rows.len() * cols.len()) as u32;
            // UINT32 arithmetic as in C: it wraps for absurd factors (millions
            // of pixels per box), exactly as Pillow's does.
            let multiplier = ((1u64 << 32) as f32 / (256 * n as u64) as f32) as u32;
            for c in 0..ch {
                let mut ss = n / 2;
                for yy in rows.clone() {
                    let row = &img.data[yy * img.stride()..];
                    for xx in cols.clone() {
                        ss = ss.wrapping_add(u32::from(row[xx * ch + c]));
                    }
                }
                out.data[(y * w + x) * ch + c] = (ss.wrapping_mul(multiplier) >> 24) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::raster::gray;

    #[test]
    fn flat_image_stays_flat_with_every_filter() {
        let img = gray(13, 7, |_, _| 200);
        for f in [
            Resample::Nearest,
            Resample::Box,
            Resample::Bilinear,
            Resample::Hamming,
            Resample::Bicubic,
            Resample::Lanczos,
        ] {
            for (w, h) in [(5, 3), (30, 20), (13, 2)] {
                let out = resize(&img, w, h, f, full_box(&img));
                assert_eq!((out.width, out.height), (w, h));
                assert!(out.data.iter().all(|&v| v == 200), "{f:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn pillow_reference_values() {
        // Pillow 13: Image.frombytes("L", (4, 1), bytes([0, 100, 200, 255])).resize((2, 1), f)
        let img = gray(4, 1, |x, _| [0, 100, 200, 255][x]);
        let r = |f| resize(&img, 2, 1, f, full_box(&img)).data;
        assert_eq!(r(Resample::Nearest), [100, 255]);
        assert_eq!(r(Resample::Bilinear), [71, 209]);
        assert_eq!(r(Resample::Bicubic), [60, 221]);
        assert_eq!(
            reduce(&gray(5, 1, |x, _| x as u8 * 50), 2, 1).data,
            [25, 125, 200]
        );
    }
}

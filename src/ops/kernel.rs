//! Pillow's `ImageFilter.Kernel` convolution, reproduced sample for sample.
//!
//! Pillow (libImaging/Filter.c) pre-divides the weights by the scale in float32,
//! adds 0.5 to the offset once for rounding, accumulates each kernel row in
//! float32 in a fixed order, applies the kernel flipped vertically, clamps and
//! truncates, and copies the outer ring unchanged. Each of those details shows
//! up as differing samples if changed, so none of them may be "simplified".
//!
//! Speed comes only from arithmetic proven to give the same samples: 16-bit
//! integer sums where `Kernel::integer_form` shows the float result is exact
//! or cannot round across a whole number, computed 32 samples at a time in
//! AVX2 (as separable box sums where the weights allow), else Pillow's float
//! order, vectorised. The tests hold every path to a port of Filter.c.

use super::raster::Raster;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// A square convolution kernel as Pillow declares it: `(size, scale, offset, weights)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kernel {
    pub size: usize,
    pub scale: i32,
    pub offset: i32,
    pub weights: &'static [i32],
}

impl Kernel {
    pub const BLUR: Kernel = Kernel {
        size: 5,
        scale: 16,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
            1, 1, 1, 1, 1,
            1, 0, 0, 0, 1,
            1, 0, 0, 0, 1,
            1, 0, 0, 0, 1,
            1, 1, 1, 1, 1,
        ],
    };
    pub const SHARPEN: Kernel = Kernel {
        size: 3,
        scale: 16,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
            -2, -2, -2,
            -2, 32, -2,
            -2, -2, -2,
        ],
    };
    pub const SMOOTH: Kernel = Kernel {
        size: 3,
        scale: 13,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
            1, 1, 1,
            1, 5, 1,
            1, 1, 1,
        ],
    };
    pub const FIND_EDGES: Kernel = Kernel {
        size: 3,
        scale: 1,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
            -1, -1, -1,
            -1,  8, -1,
            -1, -1, -1,
        ],
    };

    pub const CONTOUR: Kernel = Kernel {
        size: 3,
        scale: 1,
        offset: 255,
        #[rustfmt::skip]
        weights: &[
            -1, -1, -1,
            -1,  8, -1,
            -1, -1, -1,
        ],
    };
    pub const DETAIL: Kernel = Kernel {
        size: 3,
        scale: 6,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
             0, -1,  0,
            -1, 10, -1,
             0, -1,  0,
        ],
    };
    pub const EDGE_ENHANCE: Kernel = Kernel {
        size: 3,
        scale: 2,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
            -1, -1, -1,
            -1, 10, -1,
            -1, -1, -1,
        ],
    };
    pub const EDGE_ENHANCE_MORE: Kernel = Kernel {
        size: 3,
        scale: 1,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
            -1, -1, -1,
            -1,  9, -1,
            -1, -1, -1,
        ],
    };
    pub const EMBOSS: Kernel = Kernel {
        size: 3,
        scale: 1,
        offset: 128,
        #[rustfmt::skip]
        weights: &[
            -1, 0, 0,
             0, 1, 0,
             0, 0, 0,
        ],
    };
    pub const SMOOTH_MORE: Kernel = Kernel {
        size: 5,
        scale: 100,
        offset: 0,
        #[rustfmt::skip]
        weights: &[
            1, 1,  1, 1, 1,
            1, 5,  5, 5, 1,
            1, 5, 44, 5, 1,
            1, 5,  5, 5, 1,
            1, 1,  1, 1, 1,
        ],
    };

    /// Weights as Pillow hands them to C: converted to float32, then divided by the scale.
    fn float_weights(&self) -> Vec<f32> {
        // `_imaging.c` stores each weight as FLOAT32 and divides by a double
        // divisor; the quotient is rounded back to float32.
        self.weights
            .iter()
            .map(|&w| ((w as f32) as f64 / self.scale as f64) as f32)
            .collect()
    }

    /// The integer form of this kernel, when it provably gives Pillow's float
    /// result. Pillow computes `clip8(offset + 0.5 + s / scale)` for the
    /// integer sum `s = Σ w·p`; exactly, that is `floor(n / scale)` with
    /// `n = s + offset·scale + scale/2` (integer division; when the scale is
    /// odd the lost half cannot move a floor of `n / scale`). The float result
    /// equals it when
    ///  - the scale is a power of two: every weight/scale and every partial
    ///    sum is exact in float32 (multiples of 1/scale far below 2^24); or
    ///  - the scale is odd: then the exact value is never a whole number, so
    ///    it lies at least 1/(2·scale) from one, and float32's accumulated
    ///    rounding error (bounded below) cannot cross that gap.
    ///
    /// `n` must also fit 16-bit lanes, twice as many per vector as 32-bit.
    /// The division is a multiply and shift by a constant checked here
    /// against every `n` that can occur.
    fn integer_form(&self) -> Option<IntegerForm> {
        let scale = i64::from(self.scale);
        if scale <= 0 {
            return None;
        }
        let abs_sum: i64 = self.weights.iter().map(|&w| i64::from(w).abs()).sum();
        let exact = (scale as u64).is_power_of_two() || {
            let largest =
                255.0 * abs_sum as f64 / scale as f64 + f64::from(self.offset).abs() + 0.5;
            let roundings = (2 * self.weights.len() + self.size + 1) as f64;
            let error = roundings * largest * f64::from(f32::EPSILON);
            scale % 2 == 1 && error < 0.5 / scale as f64
        };
        if !exact {
            return None;
        }
        // s/scale is the same number with common factors removed (SHARPEN's
        // -2/16 becomes -1/8), and weights of ±1 need no multiply.
        let common = self
            .weights
            .iter()
            .fold(scale, |g, &w| gcd(g, i64::from(w).abs()));
        let (scale, abs_sum) = (scale / common, abs_sum / common);
        let bias = i64::from(self.offset) * scale + scale / 2;
        let reach = abs_sum * 255 + bias.abs();
        if reach > i64::from(i16::MAX) {
            return None;
        }
        let divisor = scale as u32;
        let magic = 65536u32.div_ceil(divisor);
        if (0..=reach as u32).any(|n| (n * magic) >> 16 != n / divisor) {
            return None;
        }
        Some(IntegerForm {
            weights: self
                .weights
                .iter()
                .map(|&w| (i64::from(w) / common) as i16)
                .collect(),
            bias: bias as i16,
            magic,
        })
    }

    /// Applies the kernel to every channel (alpha included) of an 8-bit image.
    pub fn apply(&self, src: &Raster) -> Raster {
        let (w, h) = (src.width, src.height);
        // Pillow returns a plain copy when the image is smaller than the kernel.
        if !self.fits(w, h) {
            return src.clone();
        }
        let conv = Convolver::new(self, src.channels);
        let stride = src.stride();
        let mut out = Raster::new(w, h, src.channels);
        let fill = |(y, row): (usize, &mut [u8])| conv.row(&src.data, stride, y, h, y, row);
        if w * h >= PARALLEL_PIXELS {
            use rayon::prelude::*;
            out.data
                .par_chunks_mut(stride)
                .with_min_len(16)
                .enumerate()
                .for_each(fill);
        } else {
            out.data.chunks_mut(stride).enumerate().for_each(fill);
        }
        out
    }

    /// Whether Pillow filters a `width` × `height` image at all (it copies
    /// images smaller than the kernel).
    pub fn fits(&self, width: usize, height: usize) -> bool {
        width >= self.size && height >= self.size
    }

    pub fn radius(&self) -> usize {
        self.size / 2
    }
}

/// A kernel prepared for one channel count: computes output rows one at a
/// time from whichever input rows the caller holds (the whole image, or a
/// few rows of a strip being streamed).
pub struct Convolver {
    radius: usize,
    channels: usize,
    plan: Plan,
}

enum Plan {
    Integer3([[i16; 3]; 3], i16, u32),
    Integer5([[i16; 5]; 5], i16, u32),
    Float3([[f32; 3]; 3], f32),
    Float5([[f32; 5]; 5], f32),
}

impl Convolver {
    /// `kernel.size` is 3 or 5 (Pillow accepts no other).
    pub fn new(kernel: &Kernel, channels: usize) -> Convolver {
        let offset = kernel.offset as f32 + 0.5;
        let plan = match (kernel.size, kernel.integer_form()) {
            (3, Some(f)) => Plan::Integer3(square(&f.weights), f.bias, f.magic),
            (5, Some(f)) => Plan::Integer5(square(&f.weights), f.bias, f.magic),
            (3, None) => Plan::Float3(square(&kernel.float_weights()), offset),
            (_, None) => Plan::Float5(square(&kernel.float_weights()), offset),
            (_, Some(f)) => Plan::Integer5(square(&f.weights), f.bias, f.magic),
        };
        Convolver {
            radius: kernel.size / 2,
            channels,
            plan,
        }
    }

    /// Writes output row `y` of an image `height` rows tall into `out`.
    /// `src` holds input rows from some row on, `stride` bytes each, and
    /// input row `y` is at index `at` in it; rows `y - radius ..= y + radius`
    /// must be there unless `y` is in the outer ring, which Pillow copies.
    pub fn row(
        &self,
        src: &[u8],
        stride: usize,
        y: usize,
        height: usize,
        at: usize,
        out: &mut [u8],
    ) {
        let r = self.radius;
        let input = &src[at * stride..(at + 1) * stride];
        if y < r || y + r >= height {
            out.copy_from_slice(input);
            return;
        }
        let edge = r * self.channels;
        out[..edge].copy_from_slice(&input[..edge]);
        out[stride - edge..].copy_from_slice(&input[stride - edge..]);
        let rows = Rows {
            src,
            stride,
            channels: self.channels,
            radius: r,
        };
        let interior = &mut out[edge..stride - edge];
        match &self.plan {
            Plan::Integer3(wt, bias, magic) => rows.integer::<3>(at, wt, *bias, *magic, interior),
            Plan::Integer5(wt, bias, magic) => rows.integer::<5>(at, wt, *bias, *magic, interior),
            Plan::Float3(wt, offset) => rows.float::<3>(at, wt, *offset, interior),
            Plan::Float5(wt, offset) => rows.float::<5>(at, wt, *offset, interior),
        }
    }
}

/// `out = min(max(n, 0) · magic >> 16, 255)` with `n = bias + Σ weight·p`:
/// see `Kernel::integer_form`.
struct IntegerForm {
    weights: Vec<i16>,
    bias: i16,
    magic: u32,
}

/// Images this large have their rows split across the rayon pool: a 24 MP
/// filter then finishes in a fraction of the time; smaller ones gain little.
const PARALLEL_PIXELS: usize = 4_000_000;

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn square<const K: usize, T: Copy + Default>(weights: &[T]) -> [[T; K]; K] {
    std::array::from_fn(|k| {
        std::array::from_fn(|i| weights.get(k * K + i).copied().unwrap_or_default())
    })
}

/// The input rows one output row reads. Kernel row `k` meets image row
/// `y + radius - k`: Pillow walks the kernel top-down while walking the image
/// bottom-up. Tap `i` of a row is `i` pixels right of the window's left edge.
#[derive(Clone, Copy)]
struct Rows<'a> {
    src: &'a [u8],
    stride: usize,
    channels: usize,
    radius: usize,
}

impl<'a> Rows<'a> {
    /// The `K`×`K` slices, each exactly `n` samples long, that `n` output
    /// samples of row `y` read, from the `skip`th interior sample on.
    #[inline(always)]
    fn taps<const K: usize>(&self, y: usize, skip: usize, n: usize) -> [[&'a [u8]; K]; K] {
        std::array::from_fn(|k| {
            let row = &self.src[(y + self.radius - k) * self.stride + skip..];
            std::array::from_fn(|i| &row[i * self.channels..i * self.channels + n])
        })
    }

    fn integer<const K: usize>(
        &self,
        y: usize,
        wt: &[[i16; K]; K],
        bias: i16,
        magic: u32,
        out: &mut [u8],
    ) {
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let rows: [&[u8]; K] =
                std::array::from_fn(|k| &self.src[(y + self.radius - k) * self.stride..]);
            // SAFETY: the CPU was just checked to support AVX2.
            done = unsafe {
                match (avx2::BoxForm::of(wt, bias), self.channels) {
                    (Some(f), 1) => avx2::box_rows::<K, 1>(&rows, f, bias, magic, out),
                    (Some(f), 2) => avx2::box_rows::<K, 2>(&rows, f, bias, magic, out),
                    (Some(f), 3) => avx2::box_rows::<K, 3>(&rows, f, bias, magic, out),
                    (Some(f), _) => avx2::box_rows::<K, 4>(&rows, f, bias, magic, out),
                    (None, 1) => avx2::integer_rows::<K, 1>(&rows, wt, bias, magic, out),
                    (None, 2) => avx2::integer_rows::<K, 2>(&rows, wt, bias, magic, out),
                    (None, 3) => avx2::integer_rows::<K, 3>(&rows, wt, bias, magic, out),
                    (None, _) => avx2::integer_rows::<K, 4>(&rows, wt, bias, magic, out),
                }
            };
        }
        let rest = &mut out[done..];
        let taps = self.taps::<K>(y, done, rest.len());
        dispatch!(integer_row::<K>(&taps, wt, bias, magic, rest))
    }

    fn float<const K: usize>(&self, y: usize, wt: &[[f32; K]; K], offset: f32, out: &mut [u8]) {
        let taps = self.taps::<K>(y, 0, out.len());
        dispatch!(float_row::<K>(&taps, wt, offset, out))
    }
}

/// Runs a row function through a copy compiled for AVX2 when the CPU has it
/// (twice the lanes of the x86-64 baseline). Both copies do the same IEEE
/// operations in the same order, so results are identical; FMA is
/// deliberately not enabled, as fusing would change float rounding.
macro_rules! dispatch {
    ($f:ident::<$k:ident>($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            /// Runs `f` compiled for AVX2 (it is inlined here).
            ///
            /// # Safety
            /// A safe function, but calling it is `unsafe` where AVX2 is not
            /// statically enabled: the caller must have checked that the CPU
            /// supports AVX2. It has no other obligation.
            #[target_feature(enable = "avx2")]
            fn with_avx2<F: FnOnce()>(f: F) {
                f()
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU was just checked to support AVX2.
                unsafe { with_avx2(|| $f::<$k>($($arg),*)) };
                return;
            }
        }
        $f::<$k>($($arg),*)
    }};
}
use dispatch;

/// Samples computed together: fixed-size blocks let the compiler keep the
/// sums in vector registers and check bounds once per tap per block.
const FLOAT_BLOCK: usize = 32;

/// Integer samples the portable path computes together.
const INT_BLOCK: usize = 32;

/// `IntegerForm`'s formula, 16 bits wide; `integer_form` proved that no sum
/// overflows. The portable path; `avx2::integer_rows` is the fast one.
#[inline(always)]
fn integer_row<const K: usize>(
    taps: &[[&[u8]; K]; K],
    wt: &[[i16; K]; K],
    bias: i16,
    magic: u32,
    out: &mut [u8],
) {
    #[inline(always)]
    fn block<const K: usize, const N: usize>(
        taps: &[[&[u8]; K]; K],
        wt: &[[i16; K]; K],
        bias: i16,
        magic: u32,
        start: usize,
        out: &mut [u8],
    ) {
        let mut sums = [bias; N];
        for k in 0..K {
            for i in 0..K {
                let weight = wt[k][i];
                let samples = &taps[k][i][start..start + N];
                for (s, &p) in sums.iter_mut().zip(samples) {
                    *s = s.wrapping_add(weight.wrapping_mul(i16::from(p)));
                }
            }
        }
        for (o, &s) in out.iter_mut().zip(sums.iter()) {
            let n = u32::from(s.max(0) as u16);
            *o = ((n * magic) >> 16).min(255) as u8;
        }
    }
    let whole = out.len() / INT_BLOCK * INT_BLOCK;
    let (body, tail) = out.split_at_mut(whole);
    for (b, chunk) in body.chunks_exact_mut(INT_BLOCK).enumerate() {
        block::<K, INT_BLOCK>(taps, wt, bias, magic, b * INT_BLOCK, chunk);
    }
    for (j, o) in tail.iter_mut().enumerate() {
        block::<K, 1>(taps, wt, bias, magic, whole + j, std::slice::from_mut(o));
    }
}

/// Pillow's float32 order: each kernel row summed left to right (starting
/// from its first product), then added to `offset + 0.5`, then `clip8`.
#[inline(always)]
fn float_row<const K: usize>(
    taps: &[[&[u8]; K]; K],
    wt: &[[f32; K]; K],
    offset: f32,
    out: &mut [u8],
) {
    #[inline(always)]
    fn block<const K: usize, const N: usize>(
        taps: &[[&[u8]; K]; K],
        wt: &[[f32; K]; K],
        offset: f32,
        start: usize,
        out: &mut [u8],
    ) {
        let mut acc = [offset; N];
        for k in 0..K {
            let mut row_sum = [0.0f32; N];
            let first = &taps[k][0][start..start + N];
            for (r, &p) in row_sum.iter_mut().zip(first) {
                *r = f32::from(p) * wt[k][0];
            }
            for i in 1..K {
                let weight = wt[k][i];
                let samples = &taps[k][i][start..start + N];
                for (r, &p) in row_sum.iter_mut().zip(samples) {
                    *r += f32::from(p) * weight;
                }
            }
            for (a, r) in acc.iter_mut().zip(row_sum) {
                *a += r;
            }
        }
        for (o, &a) in out.iter_mut().zip(acc.iter()) {
            *o = clip8(a);
        }
    }
    let whole = out.len() / FLOAT_BLOCK * FLOAT_BLOCK;
    let (body, tail) = out.split_at_mut(whole);
    for (b, chunk) in body.chunks_exact_mut(FLOAT_BLOCK).enumerate() {
        block::<K, FLOAT_BLOCK>(taps, wt, offset, b * FLOAT_BLOCK, chunk);
    }
    for (j, o) in tail.iter_mut().enumerate() {
        block::<K, 1>(taps, wt, offset, whole + j, std::slice::from_mut(o));
    }
}

/// Pillow's `clip8`: clamp to [0, 255], then truncate toward zero (written
/// branch-free so that it vectorises).
#[inline(always)]
fn clip8(value: f32) -> u8 {
    // Not `clamp`: that passes NaN through, and the cast below needs a
    // finite value. `max` maps NaN to 0 (none arises from finite weights).
    #[allow(clippy::manual_clamp)]
    let clamped = value.max(0.0).min(255.0);
    // SAFETY: `clamped` is finite and within 0..=255, so it fits i32.
    unsafe { clamped.to_int_unchecked::<i32>() as u8 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::raster::gray;

    /// Pillow's Filter.c loop written out sample by sample: the reference the
    /// vectorised rows must equal.
    fn reference(kernel: &Kernel, src: &Raster) -> Raster {
        let (w, h, c) = (src.width, src.height, src.channels);
        let mut out = src.clone();
        if w < kernel.size || h < kernel.size {
            return out;
        }
        let weights = kernel.float_weights();
        let r = kernel.size / 2;
        let stride = src.stride();
        for y in r..h - r {
            for x in r..w - r {
                for ch in 0..c {
                    let mut acc = kernel.offset as f32 + 0.5;
                    for k in 0..kernel.size {
                        let base = (y + r - k) * stride + ch;
                        let mut row_sum = 0.0f32;
                        for i in 0..kernel.size {
                            let sample = src.data[base + (x + i - r) * c] as f32;
                            let product = sample * weights[k * kernel.size + i];
                            row_sum = if i == 0 { product } else { row_sum + product };
                        }
                        acc += row_sum;
                    }
                    out.data[y * stride + x * c + ch] = if acc <= 0.0 {
                        0
                    } else if acc >= 255.0 {
                        255
                    } else {
                        acc as u8
                    };
                }
            }
        }
        out
    }

    const ALL: [Kernel; 10] = [
        Kernel::BLUR,
        Kernel::SHARPEN,
        Kernel::SMOOTH,
        Kernel::FIND_EDGES,
        Kernel::CONTOUR,
        Kernel::DETAIL,
        Kernel::EDGE_ENHANCE,
        Kernel::EDGE_ENHANCE_MORE,
        Kernel::EMBOSS,
        Kernel::SMOOTH_MORE,
    ];

    fn noise(width: usize, height: usize, channels: usize, seed: u32) -> Raster {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut r = Raster::new(width, height, channels);
        for v in &mut r.data {
            // xorshift: every value 0..=255, extremes included, which is
            // where clamping and rounding differences would show.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *v = (state >> 7) as u8;
        }
        r
    }

    #[test]
    fn fast_rows_equal_pillows_loop_for_every_kernel_and_layout() {
        for kernel in &ALL {
            for channels in 1..=4 {
                for (w, h) in [(37, 11), (5, 5), (6, 9), (130, 3)] {
                    let src = noise(w, h, channels, (w * 31 + channels) as u32);
                    assert_eq!(
                        kernel.apply(&src),
                        reference(kernel, &src),
                        "{kernel:?} {w}x{h}x{channels}"
                    );
                }
            }
        }
    }

    #[test]
    fn row_parallel_path_equals_the_reference() {
        // Tall and thin, so that it crosses PARALLEL_PIXELS cheaply.
        let src = noise(5, PARALLEL_PIXELS / 5 + 7, 1, 9);
        for kernel in [Kernel::BLUR, Kernel::SMOOTH] {
            assert_eq!(kernel.apply(&src), reference(&kernel, &src), "{kernel:?}");
        }
    }

    #[test]
    fn integer_form_is_used_for_power_of_two_and_odd_scales() {
        let integer: Vec<bool> = ALL.iter().map(|k| k.integer_form().is_some()).collect();
        // DETAIL (6) and SMOOTH_MORE (100) have even scales that are not
        // powers of two: some sums land exactly on a whole number, where
        // float32's rounding decides, so they keep Pillow's float path.
        assert_eq!(
            integer,
            [true, true, true, true, true, false, true, true, true, false]
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn box_form_is_recognised_where_the_weights_have_it() {
        let forms: Vec<bool> = ALL
            .iter()
            .map(|k| {
                let Some(f) = k.integer_form() else {
                    return false;
                };
                match k.size {
                    3 => avx2::BoxForm::of(&square::<3, i16>(&f.weights), f.bias).is_some(),
                    _ => avx2::BoxForm::of(&square::<5, i16>(&f.weights), f.bias).is_some(),
                }
            })
            .collect();
        // All but DETAIL (a plus shape), EMBOSS (one corner) and SMOOTH_MORE (float).
        assert_eq!(
            forms,
            [true, true, true, true, true, false, true, true, false, false]
        );
        let blur = Kernel::BLUR.integer_form().unwrap();
        let form = avx2::BoxForm::of(&square::<5, i16>(&blur.weights), blur.bias);
        assert_eq!(
            form,
            Some(avx2::BoxForm {
                a: 0,
                b3: -1,
                b5: 1
            })
        );
    }

    #[test]
    fn border_ring_is_copied_unchanged() {
        let img = gray(9, 7, |x, y| (x * 20 + y * 7) as u8);
        for (kernel, ring) in [(Kernel::SHARPEN, 1), (Kernel::BLUR, 2)] {
            let out = kernel.apply(&img);
            for y in 0..7 {
                for x in 0..9 {
                    let on_ring = x < ring || y < ring || x >= 9 - ring || y >= 7 - ring;
                    if on_ring {
                        assert_eq!(
                            out.data[y * 9 + x],
                            img.data[y * 9 + x],
                            "{kernel:?} at ({x},{y})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn image_smaller_than_kernel_is_copied() {
        let img = gray(4, 9, |x, y| (x * 50 + y) as u8);
        assert_eq!(Kernel::BLUR.apply(&img), img);
        let tiny = gray(2, 2, |x, _| x as u8 * 100);
        assert_eq!(Kernel::SHARPEN.apply(&tiny), tiny);
    }

    #[test]
    fn flat_image_stays_flat_under_normalised_kernels() {
        let img = gray(8, 8, |_, _| 100);
        assert_eq!(Kernel::BLUR.apply(&img), img);
        assert_eq!(Kernel::SMOOTH.apply(&img), img);
        assert_eq!(Kernel::SHARPEN.apply(&img), img);
    }

    #[test]
    fn find_edges_of_flat_image_is_zero_inside() {
        let out = Kernel::FIND_EDGES.apply(&gray(6, 6, |_, _| 200));
        assert_eq!(out.data[2 * 6 + 2], 0);
        assert_eq!(out.data[0], 200);
    }

    #[test]
    fn kernel_is_applied_flipped_vertically() {
        // A single bright sample below the centre must be weighted by the
        // kernel's *top* row. With an asymmetric kernel this is observable.
        const TOP_ONLY: Kernel = Kernel {
            size: 3,
            scale: 1,
            offset: 0,
            weights: &[0, 1, 0, 0, 0, 0, 0, 0, 0],
        };
        let img = gray(3, 3, |x, y| if (x, y) == (1, 2) { 77 } else { 0 });
        assert_eq!(TOP_ONLY.apply(&img).data[4], 77);
    }

    #[test]
    fn channels_including_alpha_are_filtered_independently() {
        let mut img = Raster::new(5, 5, 4);
        for (i, px) in img.data.chunks_exact_mut(4).enumerate() {
            let (x, y) = (i % 5, i / 5);
            let alpha = if (x, y) == (2, 2) { 0 } else { 255 };
            px.copy_from_slice(&[(x * 60) as u8, (y * 60) as u8, 255, alpha]);
        }
        let out = Kernel::SMOOTH.apply(&img);
        let centre = &out.data[(2 * 5 + 2) * 4..][..4];
        // alpha: (8 * 255 + 5 * 0) / 13 + 0.5 = 157.4 -> 157
        assert_eq!(centre[3], 157);
        assert_eq!(centre[2], 255);
    }

    #[test]
    fn results_are_clamped() {
        let spike = gray(3, 3, |x, y| if (x, y) == (1, 1) { 255 } else { 0 });
        assert_eq!(Kernel::FIND_EDGES.apply(&spike).data[4], 255);
        let pit = gray(3, 3, |x, y| if (x, y) == (1, 1) { 0 } else { 255 });
        assert_eq!(Kernel::FIND_EDGES.apply(&pit).data[4], 0);
    }
}

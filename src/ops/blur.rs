//! Pillow's `BoxBlur`, `GaussianBlur` and `UnsharpMask` (libImaging's
//! BoxBlur.c and UnsharpMask.c): running sums in 8.24 fixed point, edge
//! pixels extended, every channel (alpha included) blurred on its own.
//!
//! The arithmetic (float32 radius maths, u32 wrap-around sums, the rounding
//! bias) is Pillow's to the bit; the golden tests hold it there.

use super::raster::Raster;

/// `ImageFilter.BoxBlur(radius)`: one pass each way.
pub fn box_blur(img: &Raster, radius: f32) -> Raster {
    blur(img, radius, radius, 1)
}

/// `ImageFilter.GaussianBlur(radius)`: three box passes whose radius
/// approximates a Gaussian of the given standard deviation.
pub fn gaussian_blur(img: &Raster, radius: f32) -> Raster {
    let r = gaussian_box_radius(radius, 3);
    blur(img, r, r, 3)
}

/// `ImageFilter.UnsharpMask(radius, percent, threshold)`.
pub fn unsharp_mask(img: &Raster, radius: f32, percent: i32, threshold: i32) -> Raster {
    let mut out = gaussian_blur(img, radius);
    for (o, &i) in out.data.iter_mut().zip(&img.data) {
        let diff = i32::from(i) - i32::from(*o);
        *o = if diff.abs() > threshold {
            (i32::from(i) + diff * percent / 100).clamp(0, 255) as u8
        } else {
            i
        };
    }
    out
}

/// Pillow's `_gaussian_blur_radius`, in float32 as in C (the `sqrt` and
/// `floor` calls there are double, on float arguments).
fn gaussian_box_radius(radius: f32, passes: i32) -> f32 {
    let sigma2: f32 = radius * radius / passes as f32;
    let big_l: f32 = (12.0f64 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l: f32 = ((f64::from(big_l) - 1.0) / 2.0).floor() as f32;
    let mut a: f32 = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// `ImagingBoxBlur`: `passes` horizontal passes, then `passes` vertical ones.
/// Pillow runs the vertical ones as horizontal passes over the transposed
/// image; here they run down all columns at once, row by row, which is the
/// same arithmetic per column without the two transposes, and vectorises.
fn blur(img: &Raster, xradius: f32, yradius: f32, passes: usize) -> Raster {
    let mut out = img.clone();
    if img.width == 0 || img.height == 0 {
        return out;
    }
    if xradius != 0.0 {
        let weights = Weights::new(xradius);
        match img.channels {
            1 => rows_pass::<1>(&mut out, weights, passes),
            2 => rows_pass::<2>(&mut out, weights, passes),
            3 => rows_pass::<3>(&mut out, weights, passes),
            _ => rows_pass::<4>(&mut out, weights, passes),
        }
    }
    if yradius != 0.0 {
        let weights = Weights::new(yradius);
        let mut other = Raster::new(img.width, img.height, img.channels);
        for _ in 0..passes {
            let mut columns = Columns::new(&out, &mut other.data);
            weights.run(&mut columns, img.height);
            std::mem::swap(&mut out, &mut other);
        }
    }
    out
}

/// One blur radius in BoxBlur.c's 8.24 fixed point.
#[derive(Clone, Copy)]
struct Weights {
    radius: i32,
    ww: u32,
    fw: u32,
}

impl Weights {
    fn new(float_radius: f32) -> Weights {
        let radius = float_radius as i32;
        // C: UINT32 / float -> float division, truncated back to UINT32.
        let ww = ((1u32 << 24) as f32 / (float_radius * 2.0 + 1.0)) as u32;
        let fw = ((1u32 << 24).wrapping_sub(((radius * 2 + 1) as u32).wrapping_mul(ww))) / 2;
        Weights { radius, ww, fw }
    }

    /// `ImagingLineBoxBlur`'s control flow over one line of `len`
    /// positions; `line` says what a position and a sum are.
    fn run<L: Line>(&self, line: &mut L, len: usize) {
        let radius = self.radius;
        let width = len as i32;
        let edge_a = (radius + 1).min(width);
        let edge_b = (width - radius - 1).max(0);
        let last = width - 1;
        let (ww, fw) = (self.ww, self.fw);
        line.start(0, (radius + 1) as u32);
        for x in 0..edge_a - 1 {
            line.add(x as usize, 1);
        }
        line.add(last as usize, (radius - edge_a + 1) as u32);
        let mut go = |x: i32, sub: i32, add: i32, left: i32, right: i32| {
            line.step(sub as usize, add as usize);
            line.save(x as usize, left as usize, right as usize, ww, fw);
        };
        if edge_a <= edge_b {
            for x in 0..edge_a {
                go(x, 0, x + radius, 0, x + radius + 1);
            }
            for x in edge_a..edge_b {
                go(
                    x,
                    x - radius - 1,
                    x + radius,
                    x - radius - 1,
                    x + radius + 1,
                );
            }
            for x in edge_b..=last {
                go(x, x - radius - 1, last, x - radius - 1, last);
            }
        } else {
            for x in 0..edge_b {
                go(x, 0, x + radius, 0, x + radius + 1);
            }
            for x in edge_b..edge_a {
                go(x, 0, last, 0, last);
            }
            for x in edge_a..=last {
                go(x, x - radius - 1, last, x - radius - 1, last);
            }
        }
    }
}

/// What `Weights::run` walks: positions along a line, each holding one or
/// more independent lanes (a pixel's channels, or a row's samples). Sums
/// wrap exactly like C's UINT32 arithmetic.
trait Line {
    /// sum = px(i) · times
    fn start(&mut self, i: usize, times: u32);
    /// sum += px(i) · times
    fn add(&mut self, i: usize, times: u32);
    /// sum += px(add) − px(sub)
    fn step(&mut self, sub: usize, add: usize);
    /// out(x) = (sum·ww + (px(left) + px(right))·fw + 2^23) >> 24
    fn save(&mut self, x: usize, left: usize, right: usize, ww: u32, fw: u32);
}

#[inline(always)]
fn rounded(sum: u32, left: u8, right: u8, ww: u32, fw: u32) -> u8 {
    let bulk = sum
        .wrapping_mul(ww)
        .wrapping_add((u32::from(left) + u32::from(right)).wrapping_mul(fw));
    (bulk.wrapping_add(1 << 23) >> 24) as u8
}

/// One row of `C`-channel pixels (a horizontal pass).
struct Pixels<'a, const C: usize> {
    input: &'a [u8],
    out: &'a mut [u8],
    sum: [u32; C],
}

impl<const C: usize> Line for Pixels<'_, C> {
    #[inline(always)]
    fn start(&mut self, i: usize, times: u32) {
        for c in 0..C {
            self.sum[c] = u32::from(self.input[i * C + c]).wrapping_mul(times);
        }
    }
    #[inline(always)]
    fn add(&mut self, i: usize, times: u32) {
        for c in 0..C {
            self.sum[c] =
                self.sum[c].wrapping_add(u32::from(self.input[i * C + c]).wrapping_mul(times));
        }
    }
    #[inline(always)]
    fn step(&mut self, sub: usize, add: usize) {
        for c in 0..C {
            let delta =
                u32::from(self.input[add * C + c]).wrapping_sub(u32::from(self.input[sub * C + c]));
            self.sum[c] = self.sum[c].wrapping_add(delta);
        }
    }
    #[inline(always)]
    fn save(&mut self, x: usize, left: usize, right: usize, ww: u32, fw: u32) {
        for c in 0..C {
            self.out[x * C + c] = rounded(
                self.sum[c],
                self.input[left * C + c],
                self.input[right * C + c],
                ww,
                fw,
            );
        }
    }
}

/// `passes` horizontal passes over every row.
fn rows_pass<const C: usize>(img: &mut Raster, weights: Weights, passes: usize) {
    let (stride, width) = (img.stride(), img.width);
    let mut input = vec![0u8; stride];
    for row in img.data.chunks_exact_mut(stride) {
        for _ in 0..passes {
            input.copy_from_slice(row);
            let mut line = Pixels::<C> {
                input: &input,
                out: row,
                sum: [0; C],
            };
            weights.run(&mut line, width);
        }
    }
}

/// Every column of an image at once (a vertical pass): a position is a row,
/// and each operation runs across the whole row, which vectorises.
struct Columns<'a> {
    input: &'a [u8],
    out: &'a mut [u8],
    stride: usize,
    sum: Vec<u32>,
}

impl<'a> Columns<'a> {
    fn new(input: &'a Raster, out: &'a mut [u8]) -> Columns<'a> {
        let stride = input.stride();
        Columns {
            input: &input.data,
            out,
            stride,
            sum: vec![0; stride],
        }
    }

    fn row(&self, i: usize) -> &'a [u8] {
        &self.input[i * self.stride..(i + 1) * self.stride]
    }
}

impl Line for Columns<'_> {
    fn start(&mut self, i: usize, times: u32) {
        let row = self.row(i);
        for (s, &p) in self.sum.iter_mut().zip(row) {
            *s = u32::from(p).wrapping_mul(times);
        }
    }
    fn add(&mut self, i: usize, times: u32) {
        let row = self.row(i);
        for (s, &p) in self.sum.iter_mut().zip(row) {
            *s = s.wrapping_add(u32::from(p).wrapping_mul(times));
        }
    }
    fn step(&mut self, sub: usize, add: usize) {
        let (gone, come) = (self.row(sub), self.row(add));
        for ((s, &g), &c) in self.sum.iter_mut().zip(gone).zip(come) {
            *s = s.wrapping_add(u32::from(c).wrapping_sub(u32::from(g)));
        }
    }
    fn save(&mut self, x: usize, left: usize, right: usize, ww: u32, fw: u32) {
        let (l, r) = (self.row(left), self.row(right));
        let out = &mut self.out[x * self.stride..(x + 1) * self.stride];
        for (((o, &s), &a), &b) in out.iter_mut().zip(&self.sum).zip(l).zip(r) {
            *o = rounded(s, a, b, ww, fw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::raster::gray;

    #[test]
    fn flat_images_stay_flat() {
        let img = gray(9, 5, |_, _| 77);
        for r in [0.5, 1.0, 2.5, 30.0] {
            assert_eq!(box_blur(&img, r), img, "box {r}");
            assert_eq!(gaussian_blur(&img, r), img, "gaussian {r}");
        }
    }

    #[test]
    fn pillow_reference_values() {
        // Pillow 13: Image.frombytes("L", (5, 1), bytes([0, 0, 255, 0, 0])).filter(...)
        let img = gray(5, 1, |x, _| if x == 2 { 255 } else { 0 });
        assert_eq!(box_blur(&img, 1.0).data, [0, 85, 85, 85, 0]);
        assert_eq!(gaussian_blur(&img, 1.0).data, [15, 60, 103, 60, 15]);
        assert_eq!(unsharp_mask(&img, 2.0, 150, 3).data, [0, 0, 255, 0, 0]);
    }

    #[test]
    fn gaussian_radius_matches_pillow() {
        // sigma² = 4/3, L = sqrt(17), l = 1, a = 3 * (2 - 4) / (6 * (4/3 - 4)) = 0.375
        assert!((gaussian_box_radius(2.0, 3) - 1.375).abs() < 1e-6);
    }
}

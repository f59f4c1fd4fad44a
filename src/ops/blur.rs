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

/// `ImagingBoxBlur`: `passes` horizontal passes, then `passes` vertical ones
/// (done as horizontal passes on the transposed image, as Pillow does).
fn blur(img: &Raster, xradius: f32, yradius: f32, passes: usize) -> Raster {
    let mut out = img.clone();
    if img.width == 0 || img.height == 0 {
        return out;
    }
    if xradius != 0.0 {
        for _ in 0..passes {
            horizontal_pass(&mut out, xradius);
        }
    }
    if yradius != 0.0 {
        let mut t = out.transposed();
        for _ in 0..passes {
            horizontal_pass(&mut t, yradius);
        }
        out = t.transposed();
    }
    out
}

fn horizontal_pass(img: &mut Raster, float_radius: f32) {
    let radius = float_radius as i32;
    // C: UINT32 / float -> float division, truncated back to UINT32.
    let ww = ((1u32 << 24) as f32 / (float_radius * 2.0 + 1.0)) as u32;
    let fw = ((1u32 << 24).wrapping_sub(((radius * 2 + 1) as u32).wrapping_mul(ww))) / 2;
    let width = img.width as i32;
    let edge_a = (radius + 1).min(width);
    let edge_b = (width - radius - 1).max(0);
    let ch = img.channels;
    let mut line = vec![0u8; img.width];
    let mut out = vec![0u8; img.width];
    for y in 0..img.height {
        let row = &mut img.data[y * img.width * ch..(y + 1) * img.width * ch];
        for c in 0..ch {
            for (x, v) in line.iter_mut().enumerate() {
                *v = row[x * ch + c];
            }
            box_line(&mut out, &line, radius, edge_a, edge_b, ww, fw);
            for (x, &v) in out.iter().enumerate() {
                row[x * ch + c] = v;
            }
        }
    }
}

/// `ImagingLineBoxBlur8`: one channel of one line.
fn box_line(out: &mut [u8], input: &[u8], radius: i32, edge_a: i32, edge_b: i32, ww: u32, fw: u32) {
    let last = input.len() as i32 - 1;
    let px = |i: i32| u32::from(input[i as usize]);
    // Sums wrap exactly like C's UINT32 arithmetic (a negative step is a
    // large unsigned addend).
    let step = |acc: &mut u32, sub: i32, add: i32| {
        *acc = acc.wrapping_add(px(add).wrapping_sub(px(sub)));
    };
    let save = |out: &mut [u8], x: i32, acc: u32, left: i32, right: i32| {
        let bulk = acc
            .wrapping_mul(ww)
            .wrapping_add((px(left) + px(right)).wrapping_mul(fw));
        out[x as usize] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
    };

    let mut acc = px(0).wrapping_mul((radius + 1) as u32);
    for x in 0..edge_a - 1 {
        acc = acc.wrapping_add(px(x));
    }
    acc = acc.wrapping_add(px(last).wrapping_mul((radius - edge_a + 1) as u32));

    if edge_a <= edge_b {
        for x in 0..edge_a {
            step(&mut acc, 0, x + radius);
            save(out, x, acc, 0, x + radius + 1);
        }
        for x in edge_a..edge_b {
            step(&mut acc, x - radius - 1, x + radius);
            save(out, x, acc, x - radius - 1, x + radius + 1);
        }
        for x in edge_b..=last {
            step(&mut acc, x - radius - 1, last);
            save(out, x, acc, x - radius - 1, last);
        }
    } else {
        for x in 0..edge_b {
            step(&mut acc, 0, x + radius);
            save(out, x, acc, 0, x + radius + 1);
        }
        for x in edge_b..edge_a {
            step(&mut acc, 0, last);
            save(out, x, acc, 0, last);
        }
        for x in edge_a..=last {
            step(&mut acc, x - radius - 1, last);
            save(out, x, acc, x - radius - 1, last);
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

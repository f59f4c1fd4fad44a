//! Rotation's interpolating samplers: Pillow's `ImagingGenericTransform`
//! with its bilinear and bicubic filters (double arithmetic, edge samples
//! repeated, results truncated). The bicubic one, the costliest, is
//! specialised per channel count, with each pixel's four source rows and
//! columns found once for all its channels; every sample still goes through
//! the same floating-point operations in the same order as Pillow's, so the
//! output is identical (tested against the generic one). Pure; stops at the
//! next row when its render is cancelled.

use super::raster::Raster;
use super::resample::Resample;

/// The output of the affine map `a` (output pixel centre → input
/// coordinates) sampled from `img` with `filter` (bilinear or bicubic).
pub(super) fn affine(
    img: &Raster,
    width: usize,
    height: usize,
    a: &[f64; 6],
    filter: Resample,
) -> Raster {
    if filter != Resample::Bicubic || img.width == 0 || img.height == 0 {
        return generic(img, width, height, a, filter);
    }
    match img.channels {
        1 => bicubic_fastest::<1>(img, width, height, a),
        2 => bicubic_fastest::<2>(img, width, height, a),
        3 => bicubic_fastest::<3>(img, width, height, a),
        _ => bicubic_fastest::<4>(img, width, height, a),
    }
}

/// [`bicubic`] compiled for AVX2 where the CPU has it: the compiler then
/// runs the channels of a line side by side in wider registers. The same
/// operations in the same order (FMA is not enabled: fusing would change
/// the rounding), so the same samples.
fn bicubic_fastest<const C: usize>(
    img: &Raster,
    width: usize,
    height: usize,
    a: &[f64; 6],
) -> Raster {
    #[cfg(target_arch = "x86_64")]
    {
        /// # Safety
        /// A safe function, but calling it is `unsafe` where AVX2 is not
        /// statically enabled: the caller must have checked that the CPU
        /// supports AVX2. It has no other obligation.
        #[target_feature(enable = "avx2")]
        fn with_avx2<const C: usize>(
            img: &Raster,
            width: usize,
            height: usize,
            a: &[f64; 6],
        ) -> Raster {
            bicubic::<C>(img, width, height, a)
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { with_avx2::<C>(img, width, height, a) };
        }
    }
    bicubic::<C>(img, width, height, a)
}

/// Pillow's cubic through four samples at offset `d` (its `BICUBIC` macro).
#[inline(always)]
fn cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// The cubic along one source row at the four columns `cols` (offsets of
/// their first channel), for every channel at once (which lets the compiler
/// run the channels side by side; each is still computed on its own).
#[inline(always)]
fn line<const C: usize>(row: &[u8], cols: &[usize; 4], dx: f64) -> [f64; C] {
    let mut out = [0.0; C];
    for (c, value) in out.iter_mut().enumerate() {
        *value = cubic(
            f64::from(row[cols[0] + c]),
            f64::from(row[cols[1] + c]),
            f64::from(row[cols[2] + c]),
            f64::from(row[cols[3] + c]),
            dx,
        );
    }
    out
}

#[inline(always)]
fn bicubic<const C: usize>(img: &Raster, width: usize, height: usize, a: &[f64; 6]) -> Raster {
    let (iw, ih) = (img.width as i64, img.height as i64);
    let stride = img.width * C;
    let mut out = Raster::new(width, height, C);
    let floor = |v: f64| if v < 0.0 { v.floor() as i64 } else { v as i64 };
    let row_ok = |r: i64| r >= 0 && r < ih;
    for y in 0..height {
        if super::cancel::cancelled() {
            break;
        }
        let out_row = &mut out.data[y * width * C..(y + 1) * width * C];
        for (x, px) in out_row.chunks_exact_mut(C).enumerate() {
            let (xi, yi) = (x as f64 + 0.5, y as f64 + 0.5);
            let xin = a[0] * xi + a[1] * yi + a[2];
            let yin = a[3] * xi + a[4] * yi + a[5];
            if xin < 0.0 || xin >= iw as f64 || yin < 0.0 || yin >= ih as f64 {
                continue;
            }
            let (xs, ys) = (xin - 0.5, yin - 0.5);
            let (fx, fy) = (floor(xs), floor(ys));
            let (dx, dy) = (xs - fx as f64, ys - fy as f64);
            let (bx, by) = (fx - 1, fy - 1);
            // Columns clamp to the edge; a missing row repeats the one above.
            let col = |k: i64| (bx + k).clamp(0, iw - 1) as usize * C;
            let cols = [col(0), col(1), col(2), col(3)];
            let r1 = by.clamp(0, ih - 1) as usize;
            let r2 = if row_ok(by + 1) {
                (by + 1) as usize
            } else {
                r1
            };
            let r3 = if row_ok(by + 2) {
                (by + 2) as usize
            } else {
                r2
            };
            let r4 = if row_ok(by + 3) {
                (by + 3) as usize
            } else {
                r3
            };
            // Written out, not `array::map`: its closures are not inlined
            // into the AVX2 build.
            let row = |r: usize| &img.data[r * stride..(r + 1) * stride];
            let lines = [
                line::<C>(row(r1), &cols, dx),
                line::<C>(row(r2), &cols, dx),
                line::<C>(row(r3), &cols, dx),
                line::<C>(row(r4), &cols, dx),
            ];
            for (c, out) in px.iter_mut().enumerate() {
                let v = cubic(lines[0][c], lines[1][c], lines[2][c], lines[3][c], dy);
                *out = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// `ImagingGenericTransform` with Pillow's bilinear or bicubic sampler,
/// any channel count: the reference the specialised bicubic is tested
/// against, and the bilinear path.
fn generic(img: &Raster, width: usize, height: usize, a: &[f64; 6], filter: Resample) -> Raster {
    let ch = img.channels;
    let (iw, ih) = (img.width as i64, img.height as i64);
    let mut out = Raster::new(width, height, ch);
    let floor = |v: f64| if v < 0.0 { v.floor() as i64 } else { v as i64 };
    let xclip = |x: i64| x.clamp(0, iw - 1) as usize;
    let sample =
        |x: i64, y: usize, c: usize| f64::from(img.data[(y * img.width + xclip(x)) * ch + c]);
    for y in 0..height {
        if super::cancel::cancelled() {
            break;
        }
        for x in 0..width {
            let (xi, yi) = (x as f64 + 0.5, y as f64 + 0.5);
            let xin = a[0] * xi + a[1] * yi + a[2];
            let yin = a[3] * xi + a[4] * yi + a[5];
            if xin < 0.0 || xin >= iw as f64 || yin < 0.0 || yin >= ih as f64 {
                continue;
            }
            let (xs, ys) = (xin - 0.5, yin - 0.5);
            let (fx, fy) = (floor(xs), floor(ys));
            let (dx, dy) = (xs - fx as f64, ys - fy as f64);
            let row_ok = |r: i64| r >= 0 && r < ih;
            let o = (y * width + x) * ch;
            for c in 0..ch {
                let v = if filter == Resample::Bilinear {
                    let lerp = |a: f64, b: f64, d: f64| a + (b - a) * d;
                    let line = |r: usize| lerp(sample(fx, r, c), sample(fx + 1, r, c), dx);
                    let v1 = line(fy.clamp(0, ih - 1) as usize);
                    let v2 = if row_ok(fy + 1) {
                        line((fy + 1) as usize)
                    } else {
                        v1
                    };
                    lerp(v1, v2, dy)
                } else {
                    let cubic = |v1: f64, v2: f64, v3: f64, v4: f64, d: f64| {
                        let p1 = v2;
                        let p2 = -v1 + v3;
                        let p3 = 2.0 * (v1 - v2) + v3 - v4;
                        let p4 = -v1 + v2 - v3 + v4;
                        p1 + d * (p2 + d * (p3 + d * p4))
                    };
                    let (bx, by) = (fx - 1, fy - 1);
                    let line = |r: usize| {
                        cubic(
                            sample(bx, r, c),
                            sample(bx + 1, r, c),
                            sample(bx + 2, r, c),
                            sample(bx + 3, r, c),
                            dx,
                        )
                    };
                    let v1 = line(by.clamp(0, ih - 1) as usize);
                    let v2 = if row_ok(by + 1) {
                        line((by + 1) as usize)
                    } else {
                        v1
                    };
                    let v3 = if row_ok(by + 2) {
                        line((by + 2) as usize)
                    } else {
                        v2
                    };
                    let v4 = if row_ok(by + 3) {
                        line((by + 3) as usize)
                    } else {
                        v3
                    };
                    cubic(v1, v2, v3, v4, dy).clamp(0.0, 255.0)
                };
                out.data[o + c] = v as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(width: usize, height: usize, channels: usize, seed: u32) -> Raster {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let data = (0..width * height * channels)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect();
        Raster {
            width,
            height,
            channels,
            data,
        }
    }

    /// The specialised bicubic gives exactly the generic one's samples (the
    /// golden set holds the comparison with Pillow), for every channel
    /// count, odd angles, and images down to one pixel.
    #[test]
    fn specialised_bicubic_matches_the_generic_sampler() {
        for (w, h) in [(1, 1), (2, 3), (17, 5), (64, 48)] {
            for channels in 1..=4 {
                let img = noise(w, h, channels, (w * 31 + h * 7 + channels) as u32);
                for degrees in [1.0f64, 33.0, 47.5, 123.0, 359.0] {
                    let (s, c) = degrees.to_radians().sin_cos();
                    let (nw, nh) = (w + h, w + h);
                    let a = [
                        c,
                        s,
                        w as f64 / 2.0 - c * nw as f64 / 2.0 - s * nh as f64 / 2.0,
                        -s,
                        c,
                        h as f64 / 2.0 + s * nw as f64 / 2.0 - c * nh as f64 / 2.0,
                    ];
                    let fast = affine(&img, nw, nh, &a, Resample::Bicubic);
                    let reference = generic(&img, nw, nh, &a, Resample::Bicubic);
                    assert_eq!(fast.data, reference.data, "{w}x{h}x{channels} at {degrees}");
                }
            }
        }
    }
}

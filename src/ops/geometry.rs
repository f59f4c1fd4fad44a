//! Geometry as Pillow's Python layer drives it: `crop`, `rotate(expand=True)`,
//! `resize`, `ImageOps.contain` (fit), `ImageOps.fit` (fill) and `thumbnail`.
//! Sizes, boxes and matrices are computed with Python's double arithmetic and
//! rounding rules; pixels come from `resample` or from the affine samplers
//! below (Geometry.c). Images with alpha are resampled premultiplied, except
//! with NEAREST, as Pillow does.

use super::interpolate;
use super::raster::Raster;
use super::resample::{self, Resample};

/// `img.crop((x, y, x + width, y + height))`: areas outside the image are 0.
pub fn crop(img: &Raster, x: i64, y: i64, width: usize, height: usize) -> Raster {
    let ch = img.channels;
    let mut out = Raster::new(width, height, ch);
    for oy in 0..height {
        let sy = y + oy as i64;
        if sy < 0 || sy >= img.height as i64 {
            continue;
        }
        let x0 = x.max(0);
        let x1 = (x + width as i64).min(img.width as i64);
        if x1 <= x0 {
            continue;
        }
        let src = sy as usize * img.stride();
        let dst = oy * width * ch + (x0 - x) as usize * ch;
        let len = (x1 - x0) as usize * ch;
        out.data[dst..dst + len]
            .copy_from_slice(&img.data[src + x0 as usize * ch..src + x0 as usize * ch + len]);
    }
    out
}

/// `Image.resize(size, resample, box)` without `reducing_gap`.
pub fn resize(
    img: &Raster,
    width: usize,
    height: usize,
    filter: Resample,
    b: Option<[f64; 4]>,
) -> Raster {
    resize_reducing(img, width, height, filter, b, None)
}

fn resize_reducing(
    img: &Raster,
    width: usize,
    height: usize,
    filter: Resample,
    b: Option<[f64; 4]>,
    reducing_gap: Option<f64>,
) -> Raster {
    let b = b.unwrap_or([0.0, 0.0, img.width as f64, img.height as f64]);
    if (img.width, img.height) == (width, height) && b == [0.0, 0.0, width as f64, height as f64] {
        return img.clone();
    }
    if img.has_alpha() && filter != Resample::Nearest {
        let mut pre = img.clone();
        pre.premultiply();
        let mut out = resize_opaque(&pre, width, height, filter, b, reducing_gap);
        out.unpremultiply();
        return out;
    }
    resize_opaque(img, width, height, filter, b, reducing_gap)
}

fn resize_opaque(
    img: &Raster,
    width: usize,
    height: usize,
    filter: Resample,
    mut b: [f64; 4],
    reducing_gap: Option<f64>,
) -> Raster {
    let as_f32 = |b: [f64; 4]| b.map(|v| v as f32);
    if let Some(gap) = reducing_gap.filter(|_| filter != Resample::Nearest) {
        let fx = (((b[2] - b[0]) / width as f64 / gap) as usize).max(1);
        let fy = (((b[3] - b[1]) / height as f64 / gap) as usize).max(1);
        if fx > 1 || fy > 1 {
            let safe = safe_box(img, width, height, filter, b);
            let reduced = if safe == [0, 0, img.width, img.height] {
                resample::reduce(img, fx, fy)
            } else {
                let part = crop(
                    img,
                    safe[0] as i64,
                    safe[1] as i64,
                    safe[2] - safe[0],
                    safe[3] - safe[1],
                );
                resample::reduce(&part, fx, fy)
            };
            b = [
                (b[0] - safe[0] as f64) / fx as f64,
                (b[1] - safe[1] as f64) / fy as f64,
                (b[2] - safe[0] as f64) / fx as f64,
                (b[3] - safe[1] as f64) / fy as f64,
            ];
            return resample::resize(&reduced, width, height, filter, as_f32(b));
        }
    }
    resample::resize(img, width, height, filter, as_f32(b))
}

/// `Image._get_safe_box`: the box widened by the filter's support, in whole pixels.
fn safe_box(
    img: &Raster,
    width: usize,
    height: usize,
    filter: Resample,
    b: [f64; 4],
) -> [usize; 4] {
    let support = filter.support() - 0.5;
    let sx = support * ((b[2] - b[0]) / width as f64);
    let sy = support * ((b[3] - b[1]) / height as f64);
    [
        ((b[0] - sx) as i64).max(0) as usize,
        ((b[1] - sy) as i64).max(0) as usize,
        ((b[2] + sx).ceil() as i64).min(img.width as i64).max(0) as usize,
        ((b[3] + sy).ceil() as i64).min(img.height as i64).max(0) as usize,
    ]
}

/// `ImageOps.contain`: the largest size within width × height that keeps the aspect.
pub fn contain(img: &Raster, width: usize, height: usize, filter: Resample) -> Raster {
    let (tw, th) = contain_size(img.width, img.height, width, height);
    if tw == 0 || th == 0 {
        return Raster::new(tw, th, img.channels);
    }
    resize(img, tw, th, filter, None)
}

/// The size `ImageOps.contain` picks for a `w` × `h` image.
pub fn contain_size(w: usize, h: usize, width: usize, height: usize) -> (usize, usize) {
    let (w, h) = (w as f64, h as f64);
    let im_ratio = w / h;
    let dest_ratio = width as f64 / height as f64;
    let (mut tw, mut th) = (width, height);
    if im_ratio != dest_ratio {
        // Python's round() rounds half to even.
        if im_ratio > dest_ratio {
            th = (h / w * width as f64).round_ties_even() as usize;
        } else {
            tw = (w / h * height as f64).round_ties_even() as usize;
        }
    }
    (tw, th)
}

/// `ImageOps.fit` (centred, no bleed): scaled to cover width × height, the
/// overflow cropped equally from both sides.
pub fn cover(img: &Raster, width: usize, height: usize, filter: Resample) -> Raster {
    let (lw, lh) = (img.width as f64, img.height as f64);
    let live_ratio = lw / lh;
    let output_ratio = width as f64 / height as f64;
    let (cw, chh) = if live_ratio == output_ratio {
        (lw, lh)
    } else if live_ratio >= output_ratio {
        (output_ratio * lh, lh)
    } else {
        (lw, lw / output_ratio)
    };
    let left = (lw - cw) * 0.5;
    let top = (lh - chh) * 0.5;
    resize(
        img,
        width,
        height,
        filter,
        Some([left, top, left + cw, top + chh]),
    )
}

/// `Image.thumbnail((width, height), resample)`: never enlarges, keeps the
/// aspect with Pillow's rounding, and reduces first (`reducing_gap=2.0`).
pub fn thumbnail(img: &Raster, width: usize, height: usize, filter: Resample) -> Raster {
    let Some((tw, th)) = thumbnail_size(img.width, img.height, width, height) else {
        return img.clone();
    };
    if (tw, th) == (img.width, img.height) {
        return img.clone();
    }
    resize_reducing(img, tw, th, filter, None, Some(2.0))
}

/// `preserve_aspect_ratio` inside `Image.thumbnail`.
pub fn thumbnail_size(w: usize, h: usize, x: usize, y: usize) -> Option<(usize, usize)> {
    if x >= w && y >= h {
        return None;
    }
    let aspect = w as f64 / h as f64;
    // min(floor, ceil, key=...) keeps the first on ties, then at least 1.
    let round_aspect = |number: f64, key: &dyn Fn(f64) -> f64| {
        let (lo, hi) = (number.floor(), number.ceil());
        let pick = if key(hi) < key(lo) { hi } else { lo };
        (pick as usize).max(1)
    };
    let (xf, yf) = (x as f64, y as f64);
    if xf / yf >= aspect {
        Some((round_aspect(yf * aspect, &|n| (aspect - n / yf).abs()), y))
    } else {
        let key = |n: f64| {
            if n == 0.0 {
                0.0
            } else {
                (aspect - xf / n).abs()
            }
        };
        Some((x, round_aspect(xf / aspect, &key)))
    }
}

/// `img.rotate(degrees, resample, expand=True)`: counter-clockwise, the
/// canvas grown to hold the whole result, uncovered areas 0 (transparent
/// where there is alpha).
pub fn rotate(img: &Raster, degrees: f64, filter: Resample) -> Raster {
    let angle = normalised_angle(degrees);
    if angle == 0.0 {
        return img.clone();
    }
    if angle == 90.0 || angle == 180.0 || angle == 270.0 {
        return match img.channels {
            1 => quarter_turns::<1>(img, angle),
            2 => quarter_turns::<2>(img, angle),
            3 => quarter_turns::<3>(img, angle),
            _ => quarter_turns::<4>(img, angle),
        };
    }

    let (nw, nh, m) = rotation(img.width, img.height, angle);
    match filter {
        Resample::Nearest => affine_nearest(img, nw, nh, &m),
        _ if img.has_alpha() => {
            let mut pre = img.clone();
            pre.premultiply();
            let mut out = interpolate::affine(&pre, nw, nh, &m, filter);
            out.unpremultiply();
            out
        }
        _ => interpolate::affine(img, nw, nh, &m, filter),
    }
}

/// The size of `rotate(degrees, expand=True)` for a `w` × `h` image.
pub fn rotated_size(w: usize, h: usize, degrees: f64) -> (usize, usize) {
    match normalised_angle(degrees) {
        a if a == 90.0 || a == 270.0 => (h, w),
        a if a == 0.0 || a == 180.0 => (w, h),
        a => {
            let (nw, nh, _) = rotation(w, h, a);
            (nw, nh)
        }
    }
}

/// Python's `angle % 360.0`: the result takes the divisor's sign.
fn normalised_angle(degrees: f64) -> f64 {
    let angle = degrees % 360.0;
    if angle < 0.0 {
        angle + 360.0
    } else {
        angle
    }
}

/// The expanded size and the inverse affine matrix `Image.rotate` builds.
fn rotation(width: usize, height: usize, angle: f64) -> (usize, usize, [f64; 6]) {
    let (w, h) = (width as f64, height as f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    // math.radians multiplies by pi / 180.
    let a = -(angle * (std::f64::consts::PI / 180.0));
    // Python's round(x, 15) is correctly rounded, as Rust's fixed-precision formatting is.
    let round15 = |v: f64| format!("{v:.15}").parse::<f64>().unwrap_or(v);
    let mut m = [
        round15(a.cos()),
        round15(a.sin()),
        0.0,
        round15(-a.sin()),
        round15(a.cos()),
        0.0,
    ];
    let apply =
        |m: &[f64; 6], x: f64, y: f64| (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]);
    let (tx, ty) = apply(&m, -cx, -cy);
    m[2] = tx + cx;
    m[5] = ty + cy;
    let corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)].map(|(x, y)| apply(&m, x, y));
    let span = |pick: fn(&(f64, f64)) -> f64| {
        let max = corners.iter().map(pick).fold(f64::MIN, f64::max);
        let min = corners.iter().map(pick).fold(f64::MAX, f64::min);
        (max.ceil() - min.floor()) as i64
    };
    let (nw, nh) = (span(|c| c.0), span(|c| c.1));
    let (tx, ty) = apply(
        &m,
        -((nw - width as i64) as f64) / 2.0,
        -((nh - height as i64) as f64) / 2.0,
    );
    m[2] = tx;
    m[5] = ty;
    (nw.max(0) as usize, nh.max(0) as usize, m)
}

/// `rotate` by exactly 90, 180 or 270 degrees, which Pillow's `Image.rotate`
/// hands to the `Transpose.ROTATE_90`, `ROTATE_180` and `ROTATE_270`
/// transposes: pure pixel moves, counter-clockwise. `angle` 180 copies the
/// pixels in reverse order (a half turn); 90 is a quarter turn
/// counter-clockwise and any other value (270, the only other one `rotate`
/// passes) a quarter turn clockwise, both giving an `h` × `w` image and going
/// tile by tile (64 × 64 pixels) so that reads and writes both stay within a
/// few cache lines.
fn quarter_turns<const C: usize>(img: &Raster, angle: f64) -> Raster {
    const TILE: usize = 64;
    let (w, h) = (img.width, img.height);
    if angle == 180.0 {
        let mut out = Raster::new(w, h, C);
        for (o, i) in out
            .data
            .chunks_exact_mut(C)
            .zip(img.data.chunks_exact(C).rev())
        {
            o.copy_from_slice(i);
        }
        return out;
    }
    let ccw = angle == 90.0;
    let mut out = Raster::new(h, w, C);
    for ty in (0..h).step_by(TILE) {
        for tx in (0..w).step_by(TILE) {
            for y in ty..(ty + TILE).min(h) {
                let row = &img.data[y * w * C..(y + 1) * w * C];
                for x in tx..(tx + TILE).min(w) {
                    let (ox, oy) = if ccw { (y, w - 1 - x) } else { (h - 1 - y, x) };
                    let o = (oy * h + ox) * C;
                    out.data[o..o + C].copy_from_slice(&row[x * C..x * C + C]);
                }
            }
        }
    }
    out
}

/// `ImagingTransformAffine` with NEAREST: 16.16 fixed point when every
/// source coordinate of the output corners is within ±32768, as for all but
/// very long images (whose path the golden set does not reach); float otherwise.
fn affine_nearest(img: &Raster, width: usize, height: usize, a: &[f64; 6]) -> Raster {
    let ch = img.channels;
    let mut out = Raster::new(width, height, ch);
    let fits = |x: f64, y: f64| {
        (x * a[0] + y * a[1] + a[2]).abs() < 32768.0 && (x * a[3] + y * a[4] + a[5]).abs() < 32768.0
    };
    let (wf, hf) = (width as f64, height as f64);
    let copy = |out: &mut Raster, x: usize, y: usize, xin: i64, yin: i64| {
        if xin >= 0 && (xin as usize) < img.width && yin >= 0 && (yin as usize) < img.height {
            let s = (yin as usize * img.width + xin as usize) * ch;
            let o = (y * width + x) * ch;
            out.data[o..o + ch].copy_from_slice(&img.data[s..s + ch]);
        }
    };
    if fits(0.0, 0.0) && fits(wf, hf) && fits(0.0, hf) && fits(wf, 0.0) {
        let fix = |v: f64| {
            let v = v * 65536.0 + 0.5;
            (if v < 0.0 { v.floor() } else { v }) as i32
        };
        let (a0, a1, a3, a4) = (fix(a[0]), fix(a[1]), fix(a[3]), fix(a[4]));
        let mut a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
        let mut a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
        for y in 0..height {
            let (mut xx, mut yy) = (a2, a5);
            for x in 0..width {
                copy(&mut out, x, y, i64::from(xx >> 16), i64::from(yy >> 16));
                xx = xx.wrapping_add(a0);
                yy = yy.wrapping_add(a3);
            }
            a2 = a2.wrapping_add(a1);
            a5 = a5.wrapping_add(a4);
        }
    } else {
        let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
        let mut xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
        let mut yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
        for y in 0..height {
            let (mut xx, mut yy) = (xo, yo);
            for x in 0..width {
                copy(&mut out, x, y, coord(xx), coord(yy));
                xx += a[0];
                yy += a[3];
            }
            xo += a[1];
            yo += a[4];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(width: usize, height: usize) -> Raster {
        Raster {
            width,
            height,
            channels: 1,
            data: (0..width * height).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn crop_pads_outside_with_zero() {
        let img = numbered(3, 2);
        let out = crop(&img, -1, 1, 3, 2);
        assert_eq!(out.data, [0, 3, 4, 0, 0, 0]);
    }

    #[test]
    fn quarter_turns_are_exact_and_counter_clockwise() {
        let img = numbered(3, 2); // 0 1 2 / 3 4 5
        let r90 = rotate(&img, 90.0, Resample::Nearest);
        assert_eq!((r90.width, r90.height), (2, 3));
        assert_eq!(r90.data, [2, 5, 1, 4, 0, 3]);
        assert_eq!(rotate(&img, -270.0, Resample::Bicubic), r90);
        assert_eq!(
            rotate(&img, 180.0, Resample::Nearest).data,
            [5, 4, 3, 2, 1, 0]
        );
        assert_eq!(rotate(&img, 360.0, Resample::Nearest), img);
        // Clockwise quarter turn: 0 1 2 / 3 4 5 -> 3 0 / 4 1 / 5 2.
        let r270 = rotate(&img, 270.0, Resample::Bilinear);
        assert_eq!(
            (r270.width, r270.height, r270.data.clone()),
            (2, 3, vec![3, 0, 4, 1, 5, 2])
        );
        assert_eq!(rotate(&img, -90.0, Resample::Nearest), r270);
    }

    #[test]
    fn thumbnail_size_follows_pillow() {
        // Pillow 13: Image.new("L", (w, h)).thumbnail(size) -> .size
        assert_eq!(thumbnail_size(1920, 1080, 128, 128), Some((128, 72)));
        assert_eq!(thumbnail_size(100, 300, 50, 50), Some((17, 50)));
        assert_eq!(thumbnail_size(10, 10, 20, 20), None);
        assert_eq!(thumbnail_size(1000, 1, 10, 10), Some((10, 1)));
    }
}

//! Test images for the criterion benches, made in code: photo-like (smooth
//! gradients, hard-edged shapes, fine grain), because codec and filter speed
//! depend on content and flat or random images flatter or punish them.

use image::{DynamicImage, RgbImage};

/// The sizes the benches run at: 1080p and a 24-megapixel camera frame.
/// Under `cargo test` (no `--bench` flag) each bench runs once, on small
/// images, only to prove it still works.
pub fn sizes() -> Vec<(&'static str, u32, u32)> {
    if std::env::args().any(|a| a == "--bench") {
        vec![("1080p", 1920, 1080), ("24MP", 6000, 4000)]
    } else {
        vec![("smoke", 64, 48)]
    }
}

pub fn photo_like(width: u32, height: u32) -> DynamicImage {
    let shapes: Vec<(u32, u32, u32, u32, [u8; 3])> = (0..40u32)
        .map(|i| {
            let h = hash(i, 7, 99);
            let (x, y) = (h % width, (h >> 8) % height);
            let (rx, ry) = (
                width / 40 + h % (width / 8 + 1),
                height / 40 + (h >> 4) % (height / 8 + 1),
            );
            (
                x,
                y,
                rx,
                ry,
                [(h >> 3) as u8, (h >> 11) as u8, (h >> 19) as u8],
            )
        })
        .collect();
    let img = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let mut px = [
            110.0 + 80.0 * (fx * 3.1 + fy * 1.3).sin(),
            120.0 + 70.0 * (fy * 2.7 - fx * 0.9).cos(),
            100.0 + 60.0 * (fx * 1.7 * fy + 0.5).sin(),
        ];
        if let Some(&(.., c)) = shapes
            .iter()
            .rev()
            .find(|&&(sx, sy, rx, ry, _)| x.abs_diff(sx) < rx && y.abs_diff(sy) < ry)
        {
            px = [c[0] as f32, c[1] as f32, c[2] as f32];
        }
        let grain = (hash(x, y, 1) % 25) as f32 - 12.0;
        image::Rgb(px.map(|v| (v + grain).clamp(0.0, 255.0) as u8))
    });
    DynamicImage::ImageRgb8(img)
}

fn hash(x: u32, y: u32, seed: u32) -> u32 {
    let mut h =
        x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77) ^ seed.wrapping_mul(0xC2B2_AE3D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^ (h >> 12)
}

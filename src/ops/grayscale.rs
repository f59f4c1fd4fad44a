//! `ImageOps.grayscale` (= `Image.convert("L")`): ITU-R 601-2 luma in Pillow's
//! 16-bit fixed point. Alpha is dropped, as Pillow drops it.

use image::{DynamicImage, GrayImage, Luma};

/// Pillow's `L24` macro: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

pub fn to_luma(img: &DynamicImage) -> GrayImage {
    match img {
        DynamicImage::ImageLuma8(b) => b.clone(),
        DynamicImage::ImageLumaA8(b) => {
            GrayImage::from_fn(b.width(), b.height(), |x, y| Luma([b.get_pixel(x, y)[0]]))
        }
        DynamicImage::ImageRgb8(b) => from_channels(b.width(), b.height(), b.as_raw(), 3),
        DynamicImage::ImageRgba8(b) => from_channels(b.width(), b.height(), b.as_raw(), 4),
        other => {
            let rgb = other.to_rgb8();
            from_channels(rgb.width(), rgb.height(), rgb.as_raw(), 3)
        }
    }
}

fn from_channels(width: u32, height: u32, raw: &[u8], channels: usize) -> GrayImage {
    let data = raw
        .chunks_exact(channels)
        .map(|px| luma(px[0], px[1], px[2]))
        .collect();
    // The length is exactly width * height by construction.
    GrayImage::from_raw(width, height, data).unwrap_or_else(|| GrayImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pillow_reference_values() {
        // Values computed with Pillow 13: Image.new("RGB", (1, 1), c).convert("L").
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(10, 200, 30), 124);
    }

    #[test]
    fn drops_alpha_and_keeps_size() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            3,
            2,
            image::Rgba([0, 255, 0, 0]),
        ));
        let out = to_luma(&img);
        assert_eq!(out.dimensions(), (3, 2));
        assert!(out.pixels().all(|p| p[0] == 150));
    }
}

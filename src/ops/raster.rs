//! The pixel buffer every operation works on: 8-bit samples, interleaved,
//! 1 to 4 channels (L, LA, RGB, RGBA). Converting from and to `DynamicImage`
//! moves the buffer, it never copies it.

use image::{DynamicImage, ImageBuffer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    pub width: usize,
    pub height: usize,
    /// 1 = L, 2 = LA, 3 = RGB, 4 = RGBA.
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Raster {
    pub fn new(width: usize, height: usize, channels: usize) -> Raster {
        Raster {
            width,
            height,
            channels,
            data: vec![0; width * height * channels],
        }
    }

    pub fn has_alpha(&self) -> bool {
        self.channels == 2 || self.channels == 4
    }

    pub fn stride(&self) -> usize {
        self.width * self.channels
    }

    /// Anything other than 8-bit L/LA/RGB/RGBA is converted to RGB(A) first
    /// (`codec::decode` never produces anything else).
    pub fn from_dynamic(img: DynamicImage) -> Raster {
        let (width, height) = (img.width() as usize, img.height() as usize);
        let (channels, data) = match img {
            DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
            DynamicImage::ImageLumaA8(b) => (2, b.into_raw()),
            DynamicImage::ImageRgb8(b) => (3, b.into_raw()),
            DynamicImage::ImageRgba8(b) => (4, b.into_raw()),
            other if other.color().has_alpha() => (4, other.to_rgba8().into_raw()),
            other => (3, other.to_rgb8().into_raw()),
        };
        Raster {
            width,
            height,
            channels,
            data,
        }
    }

    pub fn into_dynamic(self) -> DynamicImage {
        let (w, h) = (self.width as u32, self.height as u32);
        // The buffer length is width * height * channels by construction, so
        // `from_raw` cannot refuse it; the fallbacks only keep this total.
        match self.channels {
            1 => ImageBuffer::from_raw(w, h, self.data)
                .map(DynamicImage::ImageLuma8)
                .unwrap_or_else(|| DynamicImage::new_luma8(w, h)),
            2 => ImageBuffer::from_raw(w, h, self.data)
                .map(DynamicImage::ImageLumaA8)
                .unwrap_or_else(|| DynamicImage::new_luma_a8(w, h)),
            3 => ImageBuffer::from_raw(w, h, self.data)
                .map(DynamicImage::ImageRgb8)
                .unwrap_or_else(|| DynamicImage::new_rgb8(w, h)),
            _ => ImageBuffer::from_raw(w, h, self.data)
                .map(DynamicImage::ImageRgba8)
                .unwrap_or_else(|| DynamicImage::new_rgba8(w, h)),
        }
    }

    /// Pillow's RGBA → RGBa (and LA → La): colour multiplied by alpha, with
    /// its `MULDIV255` rounding. Resampling works on premultiplied pixels.
    pub fn premultiply(&mut self) {
        if !self.has_alpha() {
            return;
        }
        let a = self.channels - 1;
        for px in self.data.chunks_exact_mut(self.channels) {
            let alpha = u32::from(px[a]);
            for v in &mut px[..a] {
                let t = u32::from(*v) * alpha + 128;
                *v = (((t >> 8) + t) >> 8) as u8;
            }
        }
    }

    /// Pillow's RGBa → RGBA: `min(255, 255 * v / alpha)`, fully opaque and
    /// fully transparent pixels left as they are.
    pub fn unpremultiply(&mut self) {
        if !self.has_alpha() {
            return;
        }
        let a = self.channels - 1;
        for px in self.data.chunks_exact_mut(self.channels) {
            let alpha = u32::from(px[a]);
            if alpha == 0 || alpha == 255 {
                continue;
            }
            for v in &mut px[..a] {
                *v = (255 * u32::from(*v) / alpha).min(255) as u8;
            }
        }
    }
}

/// A one-channel test image with samples from `f(x, y)`.
#[cfg(test)]
pub fn gray(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> Raster {
    let mut r = Raster::new(width, height, 1);
    for y in 0..height {
        for x in 0..width {
            r.data[y * width + x] = f(x, y);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premultiply_round_trip_matches_pillow_values() {
        // Pillow 13: RGBA (200, 100, 0, 128) -> RGBa (100, 50, 0, 128) -> RGBA (199, 99, 0, 128)
        let mut r = Raster {
            width: 1,
            height: 1,
            channels: 4,
            data: vec![200, 100, 0, 128],
        };
        r.premultiply();
        assert_eq!(r.data, [100, 50, 0, 128]);
        r.unpremultiply();
        assert_eq!(r.data, [199, 99, 0, 128]);
    }

    #[test]
    fn dynamic_round_trip_keeps_layout() {
        let img = DynamicImage::ImageLumaA8(ImageBuffer::from_fn(3, 2, |x, y| {
            image::LumaA([x as u8, y as u8])
        }));
        let r = Raster::from_dynamic(img.clone());
        assert_eq!((r.width, r.height, r.channels), (3, 2, 2));
        assert_eq!(r.into_dynamic(), img);
    }
}

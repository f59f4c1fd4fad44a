//! Pillow's `ImageFilter.Kernel` convolution, reproduced sample for sample.
//!
//! Pillow (libImaging/Filter.c) pre-divides the weights by the scale in float32,
//! adds 0.5 to the offset once for rounding, accumulates each kernel row in
//! float32 in a fixed order, applies the kernel flipped vertically, clamps and
//! truncates, and copies the outer ring unchanged. Each of those details shows
//! up as differing samples if changed, so none of them may be "simplified".

use image::{ImageBuffer, Pixel};

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

    /// Applies the kernel to every channel (alpha included) of an 8-bit image.
    pub fn apply<P>(&self, src: &ImageBuffer<P, Vec<u8>>) -> ImageBuffer<P, Vec<u8>>
    where
        P: Pixel<Subpixel = u8>,
    {
        let (width, height) = src.dimensions();
        let (w, h) = (width as usize, height as usize);
        let mut out = src.clone();
        // Pillow returns a plain copy when the image is smaller than the kernel.
        if w < self.size || h < self.size {
            return out;
        }
        let channels = P::CHANNEL_COUNT as usize;
        let weights = self.float_weights();
        let offset = self.offset as f32 + 0.5;
        let radius = self.size / 2;
        let stride = w * channels;
        let input: &[u8] = src.as_raw();
        let output: &mut [u8] = &mut out;

        for y in radius..h - radius {
            let out_row = &mut output[y * stride..(y + 1) * stride];
            for x in radius..w - radius {
                for c in 0..channels {
                    let mut acc = offset;
                    // Kernel row `k` meets image row `y + radius - k`: Pillow
                    // walks the kernel top-down while walking the image bottom-up.
                    for k in 0..self.size {
                        let row = y + radius - k;
                        let base = row * stride + c;
                        let kw = &weights[k * self.size..(k + 1) * self.size];
                        let mut row_sum = 0.0f32;
                        for (i, &weight) in kw.iter().enumerate() {
                            let xx = x + i - radius;
                            let sample = input[base + xx * channels] as f32;
                            row_sum = if i == 0 {
                                sample * weight
                            } else {
                                row_sum + sample * weight
                            };
                        }
                        acc += row_sum;
                    }
                    out_row[x * channels + c] = clip8(acc);
                }
            }
        }
        out
    }
}

/// Pillow's `clip8`: clamp to [0, 255], then truncate toward zero.
#[inline]
fn clip8(value: f32) -> u8 {
    if value <= 0.0 {
        0
    } else if value >= 255.0 {
        255
    } else {
        value as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgba, RgbaImage};

    #[test]
    fn border_ring_is_copied_unchanged() {
        let img = GrayImage::from_fn(9, 7, |x, y| Luma([(x * 20 + y * 7) as u8]));
        for (kernel, ring) in [(Kernel::SHARPEN, 1), (Kernel::BLUR, 2)] {
            let out = kernel.apply(&img);
            for (x, y, px) in out.enumerate_pixels() {
                let on_ring = x < ring || y < ring || x >= 9 - ring || y >= 7 - ring;
                if on_ring {
                    assert_eq!(px, img.get_pixel(x, y), "{kernel:?} at ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn image_smaller_than_kernel_is_copied() {
        let img = GrayImage::from_fn(4, 9, |x, y| Luma([(x * 50 + y) as u8]));
        assert_eq!(Kernel::BLUR.apply(&img), img);
        let tiny = GrayImage::from_fn(2, 2, |x, _| Luma([x as u8 * 100]));
        assert_eq!(Kernel::SHARPEN.apply(&tiny), tiny);
    }

    #[test]
    fn flat_image_stays_flat_under_normalised_kernels() {
        let img = GrayImage::from_pixel(8, 8, Luma([100]));
        assert_eq!(Kernel::BLUR.apply(&img), img);
        assert_eq!(Kernel::SMOOTH.apply(&img), img);
        assert_eq!(Kernel::SHARPEN.apply(&img), img);
    }

    #[test]
    fn find_edges_of_flat_image_is_zero_inside() {
        let img = GrayImage::from_pixel(6, 6, Luma([200]));
        let out = Kernel::FIND_EDGES.apply(&img);
        assert_eq!(out.get_pixel(2, 2), &Luma([0]));
        assert_eq!(out.get_pixel(0, 0), &Luma([200]));
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
        let mut img = GrayImage::new(3, 3);
        img.put_pixel(1, 2, Luma([77]));
        let out = TOP_ONLY.apply(&img);
        assert_eq!(out.get_pixel(1, 1), &Luma([77]));
    }

    #[test]
    fn channels_including_alpha_are_filtered_independently() {
        let img = RgbaImage::from_fn(5, 5, |x, y| {
            Rgba([
                (x * 60) as u8,
                (y * 60) as u8,
                255,
                if x == 2 && y == 2 { 0 } else { 255 },
            ])
        });
        let out = Kernel::SMOOTH.apply(&img);
        let centre = out.get_pixel(2, 2);
        // alpha: (8 * 255 + 5 * 0) / 13 + 0.5 = 157.4 -> 157
        assert_eq!(centre[3], 157);
        assert_eq!(centre[2], 255);
    }

    #[test]
    fn results_are_clamped() {
        let mut img = GrayImage::from_pixel(3, 3, Luma([0]));
        img.put_pixel(1, 1, Luma([255]));
        assert_eq!(Kernel::FIND_EDGES.apply(&img).get_pixel(1, 1), &Luma([255]));
        let mut dark = GrayImage::from_pixel(3, 3, Luma([255]));
        dark.put_pixel(1, 1, Luma([0]));
        assert_eq!(Kernel::FIND_EDGES.apply(&dark).get_pixel(1, 1), &Luma([0]));
    }
}

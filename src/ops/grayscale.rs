//! `ImageOps.grayscale` (= `Image.convert("L")`): ITU-R 601-2 luma in Pillow's
//! 16-bit fixed point. Alpha is dropped, as Pillow drops it.

use super::raster::Raster;

/// Pillow's `L24` macro: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// L for an L, LA, RGB or RGBA raster.
pub fn to_luma(img: &Raster) -> Raster {
    let mut out = Raster::new(img.width, img.height, 1);
    luma_into(&img.data, img.channels, &mut out.data);
    out
}

/// L of the interleaved pixels in `src` (1 to 4 channels), one byte per pixel into `out`.
pub fn luma_into(src: &[u8], channels: usize, out: &mut [u8]) {
    match channels {
        1 => out.copy_from_slice(src),
        2 => {
            for (o, px) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = px[0];
            }
        }
        3 => luma_rows::<3>(src, out),
        _ => luma_rows::<4>(src, out),
    }
}

/// One loop the compiler vectorises (stride-3 and stride-4 loads become
/// shuffles); compiled a second time for AVX2, which doubles the lanes.
fn luma_rows<const C: usize>(src: &[u8], out: &mut [u8]) {
    #[inline(always)]
    fn body<const C: usize>(src: &[u8], out: &mut [u8]) {
        for (o, px) in out.iter_mut().zip(src.chunks_exact(C)) {
            *o = luma(px[0], px[1], px[2]);
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
        fn avx2<const C: usize>(src: &[u8], out: &mut [u8]) {
            body::<C>(src, out)
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { avx2::<C>(src, out) };
        }
    }
    body::<C>(src, out)
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
        let mut img = Raster::new(3, 2, 4);
        for px in img.data.chunks_exact_mut(4) {
            px.copy_from_slice(&[0, 255, 0, 0]);
        }
        let out = to_luma(&img);
        assert_eq!((out.width, out.height, out.channels), (3, 2, 1));
        assert!(out.data.iter().all(|&v| v == 150));
    }

    #[test]
    fn every_layout_matches_the_per_pixel_formula() {
        // Long enough rows for the vector loop and its tail.
        for channels in 1..=4 {
            let mut img = Raster::new(67, 3, channels);
            for (i, v) in img.data.iter_mut().enumerate() {
                *v = (i * 37 % 256) as u8;
            }
            let out = to_luma(&img);
            for (i, px) in img.data.chunks_exact(channels).enumerate() {
                let expected = match channels {
                    1 | 2 => px[0],
                    _ => luma(px[0], px[1], px[2]),
                };
                assert_eq!(out.data[i], expected, "{channels} channels, pixel {i}");
            }
        }
    }
}

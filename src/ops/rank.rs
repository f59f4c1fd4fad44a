//! Pillow's rank filters (`MedianFilter`, `MinFilter`, `MaxFilter`:
//! RankFilter.c on an edge-extended image) and `ModeFilter` (ModeFilter.c:
//! window clipped at the borders). Every channel, alpha included, is filtered
//! on its own, as `Image.filter` does for these single-band filters.
//!
//! Both use a histogram that slides along each row instead of Pillow's
//! per-pixel selection; the results are the same by definition of rank and mode.

use super::raster::Raster;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    Min,
    Median,
    Max,
}

/// `size` is odd (Pillow refuses even sizes).
pub fn rank_filter(img: &Raster, size: usize, which: Rank) -> Raster {
    let margin = size / 2;
    let k = match which {
        Rank::Min => 0,
        Rank::Median => size * size / 2,
        Rank::Max => size * size - 1,
    } as u32;
    let (w, h, ch) = (img.width, img.height, img.channels);
    let mut out = Raster::new(w, h, ch);
    if w == 0 || h == 0 {
        return out;
    }
    // `ImagingExpand`: the image is padded by repeating its edge pixels.
    let at = |x: isize, y: isize, c: usize| {
        let xx = x.clamp(0, w as isize - 1) as usize;
        let yy = y.clamp(0, h as isize - 1) as usize;
        img.data[(yy * w + xx) * ch + c]
    };
    let m = margin as isize;
    for c in 0..ch {
        for y in 0..h {
            let mut hist = [0u32; 256];
            let top = y as isize - m;
            for dy in 0..size as isize {
                for dx in 0..size as isize {
                    hist[usize::from(at(dx - m, top + dy, c))] += 1;
                }
            }
            for x in 0..w {
                if x > 0 {
                    let leaving = x as isize - 1 - m;
                    let entering = x as isize + m;
                    for dy in 0..size as isize {
                        hist[usize::from(at(leaving, top + dy, c))] -= 1;
                        hist[usize::from(at(entering, top + dy, c))] += 1;
                    }
                }
                out.data[(y * w + x) * ch + c] = kth(&hist, k);
            }
        }
    }
    out
}

/// The k-th smallest (0-based) sample counted in `hist`.
fn kth(hist: &[u32; 256], k: u32) -> u8 {
    let mut seen = 0;
    for (v, &n) in hist.iter().enumerate() {
        seen += n;
        if seen > k {
            return v as u8;
        }
    }
    255
}

/// `ImageFilter.ModeFilter(size)`: the most frequent value in the window
/// (the smallest on ties), kept only if it occurs more than twice.
pub fn mode_filter(img: &Raster, size: usize) -> Raster {
    let r = (size / 2) as isize;
    let (w, h, ch) = (img.width, img.height, img.channels);
    let (wi, hi) = (w as isize, h as isize);
    let mut out = Raster::new(w, h, ch);
    for c in 0..ch {
        let sample = |x: isize, y: isize| img.data[(y as usize * w + x as usize) * ch + c];
        for y in 0..hi {
            let rows = (y - r).max(0)..(y + r + 1).min(hi);
            let mut hist = [0u32; 256];
            for yy in rows.clone() {
                for xx in 0..(r + 1).min(wi) {
                    hist[usize::from(sample(xx, yy))] += 1;
                }
            }
            for x in 0..wi {
                if x > 0 {
                    let (leaving, entering) = (x - r - 1, x + r);
                    for yy in rows.clone() {
                        if leaving >= 0 {
                            hist[usize::from(sample(leaving, yy))] -= 1;
                        }
                        if entering < wi {
                            hist[usize::from(sample(entering, yy))] += 1;
                        }
                    }
                }
                let mut best = 0usize;
                for v in 1..256 {
                    if hist[v] > hist[best] {
                        best = v;
                    }
                }
                let o = (y as usize * w + x as usize) * ch + c;
                out.data[o] = if hist[best] > 2 {
                    best as u8
                } else {
                    img.data[o]
                };
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[u8]) -> Raster {
        Raster {
            width: values.len(),
            height: 1,
            channels: 1,
            data: values.to_vec(),
        }
    }

    #[test]
    fn pillow_reference_values() {
        // Pillow 13 on Image.frombytes("L", (6, 1), bytes([9, 1, 200, 3, 50, 7]))
        let img = row(&[9, 1, 200, 3, 50, 7]);
        assert_eq!(rank_filter(&img, 3, Rank::Median).data, [9, 9, 3, 50, 7, 7]);
        assert_eq!(rank_filter(&img, 3, Rank::Min).data, [1, 1, 1, 3, 3, 7]);
        assert_eq!(
            rank_filter(&img, 3, Rank::Max).data,
            [9, 200, 200, 200, 50, 50]
        );
    }

    #[test]
    fn mode_needs_more_than_two_votes() {
        let img = row(&[5, 5, 5, 9, 9, 9, 9]);
        // Window of 3 on a single row holds at most 3 samples: 3 fives > 2.
        assert_eq!(mode_filter(&img, 3).data, [5, 5, 5, 9, 9, 9, 9]);
        let img = row(&[1, 2, 1, 2]);
        assert_eq!(mode_filter(&img, 3).data, [1, 2, 1, 2]);
    }
}

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
    // `ImagingExpand`: the image is padded by repeating its edge pixels, so
    // window coordinates are clamped into the image (precomputed per row/column).
    let m = margin as isize;
    let clamp_to = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let cols: Vec<usize> = (-m..w as isize + m).map(|x| clamp_to(x, w)).collect();
    for c in 0..ch {
        for y in 0..h {
            if super::cancel::cancelled() {
                return out;
            }
            let rows: Vec<usize> = (0..size as isize)
                .map(|dy| clamp_to(y as isize - m + dy, h) * w)
                .collect();
            let sample = |col: usize, row: usize| usize::from(img.data[(row + cols[col]) * ch + c]);
            let mut hist = [0u32; 256];
            for &row in &rows {
                for col in 0..size {
                    hist[sample(col, row)] += 1;
                }
            }
            // The answer moves little from one pixel to the next: keep its
            // position and the count of samples below it, and walk from there.
            let mut rank = Walker::default();
            for x in 0..w {
                if x > 0 {
                    // Window columns x-1 .. x-1+size leave/enter in `cols` terms.
                    let (leaving, entering) = (x - 1, x - 1 + size);
                    for &row in &rows {
                        rank.remove(&mut hist, sample(leaving, row));
                        rank.add(&mut hist, sample(entering, row));
                    }
                }
                out.data[(y * w + x) * ch + c] = rank.kth(&hist, k);
            }
        }
    }
    out
}

/// Finds the k-th smallest sample of a sliding-window histogram, starting
/// from where the previous answer was (Huang's running-median idea).
#[derive(Default)]
struct Walker {
    /// Current candidate value.
    pos: usize,
    /// Number of samples with a value below `pos`.
    below: u32,
}

impl Walker {
    fn add(&mut self, hist: &mut [u32; 256], v: usize) {
        hist[v] += 1;
        if v < self.pos {
            self.below += 1;
        }
    }

    fn remove(&mut self, hist: &mut [u32; 256], v: usize) {
        hist[v] -= 1;
        if v < self.pos {
            self.below -= 1;
        }
    }

    /// The k-th smallest (0-based) sample counted in `hist`.
    fn kth(&mut self, hist: &[u32; 256], k: u32) -> u8 {
        while self.below > k {
            self.pos -= 1;
            self.below -= hist[self.pos];
        }
        while self.pos < 255 && self.below + hist[self.pos] <= k {
            self.below += hist[self.pos];
            self.pos += 1;
        }
        self.pos as u8
    }
}

/// `ImageFilter.ModeFilter(size)`: the most frequent value in the window
/// (the smallest on ties), kept only if it occurs more than twice.
///
/// The window's histogram slides along each row (a column of samples leaves
/// and enters per pixel); the mode is found by [`mode_of`], whose scans of
/// the 256 counts the compiler turns into SIMD.
pub fn mode_filter(img: &Raster, size: usize) -> Raster {
    let r = (size / 2) as isize;
    let (w, h, ch) = (img.width, img.height, img.channels);
    let (wi, hi) = (w as isize, h as isize);
    let mut out = Raster::new(w, h, ch);
    for c in 0..ch {
        let sample = |x: isize, y: isize| img.data[(y as usize * w + x as usize) * ch + c];
        for y in 0..hi {
            if super::cancel::cancelled() {
                return out;
            }
            let rows = (y - r).max(0)..(y + r + 1).min(hi);
            // A window holds at most 25 × 25 samples: 16-bit counts, half
            // the bytes to scan, and signed, which baseline x86-64 SIMD can
            // take the maximum of.
            let mut hist = [0i16; 256];
            for yy in rows.clone() {
                for xx in 0..(r + 1).min(wi) {
                    hist[usize::from(sample(xx, yy))] += 1;
                }
            }
            // The mode, kept up to date as samples enter, and forgotten
            // (rescanned when next needed) only when its own value leaves.
            let mut best: Option<(u8, i16)> = None;
            for x in 0..wi {
                if x > 0 {
                    let (leaving, entering) = (x - r - 1, x + r);
                    for yy in rows.clone() {
                        if leaving >= 0 {
                            let v = sample(leaving, yy);
                            hist[usize::from(v)] -= 1;
                            if best.is_some_and(|(b, _)| b == v) {
                                best = None;
                            }
                        }
                        if entering < wi {
                            let v = sample(entering, yy);
                            hist[usize::from(v)] += 1;
                            let n = hist[usize::from(v)];
                            if let Some((b, count)) = best {
                                if n > count || (n == count && v < b) {
                                    best = Some((v, n));
                                }
                            }
                        }
                    }
                }
                let (value, count) = *best.get_or_insert_with(|| mode_of(&hist));
                let o = (y as usize * w + x as usize) * ch + c;
                out.data[o] = if count > 2 { value } else { img.data[o] };
            }
        }
    }
    out
}

/// The smallest most frequent value of a histogram, and its count: the
/// highest count first (a branch-free maximum, vectorised), then the first
/// 16-count block that holds it, then the value within the block.
fn mode_of(hist: &[i16; 256]) -> (u8, i16) {
    let top = hist.iter().fold(0i16, |m, &c| m.max(c));
    let block = hist
        .chunks_exact(16)
        .position(|b| b.iter().fold(false, |any, &c| any | (c == top)))
        .unwrap_or(0);
    let within = hist[block * 16..block * 16 + 16]
        .iter()
        .position(|&c| c == top)
        .unwrap_or(0);
    ((block * 16 + within) as u8, top)
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
    fn sliding_rank_equals_sorting_every_window() {
        let mut state = 7u32;
        let mut img = Raster::new(13, 9, 2);
        for v in &mut img.data {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Few distinct values, so ranks land inside runs of equal samples.
            *v = [0, 3, 3, 128, 200, 255][(state >> 16) as usize % 6];
        }
        for size in [1usize, 3, 5, 7] {
            for which in [Rank::Min, Rank::Median, Rank::Max] {
                let got = rank_filter(&img, size, which);
                let m = (size / 2) as isize;
                for y in 0..img.height {
                    for x in 0..img.width {
                        for c in 0..img.channels {
                            let mut window = Vec::new();
                            for dy in -m..=m {
                                for dx in -m..=m {
                                    let xx = (x as isize + dx).clamp(0, 12) as usize;
                                    let yy = (y as isize + dy).clamp(0, 8) as usize;
                                    window.push(img.data[(yy * 13 + xx) * 2 + c]);
                                }
                            }
                            window.sort_unstable();
                            let k = match which {
                                Rank::Min => 0,
                                Rank::Median => window.len() / 2,
                                Rank::Max => window.len() - 1,
                            };
                            assert_eq!(
                                got.data[(y * 13 + x) * 2 + c],
                                window[k],
                                "{size} {which:?} ({x},{y},{c})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_fast_mode_is_the_plain_scans_mode() {
        let mut state = 12345u32;
        for round in 0..5_000 {
            let mut hist = [0i16; 256];
            for _ in 0..(round % 60) {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                // Few distinct values some rounds, many others: ties abound.
                let spread = if round % 2 == 0 { 7 } else { 256 };
                hist[(state % spread) as usize * (256 / spread as usize)] += 1;
            }
            let mut best = 0usize;
            for value in 1..256 {
                if hist[value] > hist[best] {
                    best = value;
                }
            }
            assert_eq!(mode_of(&hist), (best as u8, hist[best]), "round {round}");
        }
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

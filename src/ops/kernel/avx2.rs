//! The integer convolution rows in AVX2 intrinsics: 32 samples per step in
//! two 16-bit registers, each tap a widening load, a multiply and an add
//! (weight 0 costs nothing; special-casing ±1 as add/subtract measured
//! slower, the branch costing more than the multiply it saves).
//! Same formula as the portable `integer_row`, so the same bytes; the
//! compiler's auto-vectorisation of that loop was 2-3x slower and fragile.
//! Only ever called after `is_x86_feature_detected!("avx2")`.

use std::arch::x86_64::*;

/// Computes the first `n - n % 32` samples of `out` and returns how many it
/// did; the caller finishes the rest. `rows[k]` is the input row kernel row
/// `k` reads, starting at the window's left edge: output sample `j` reads
/// `rows[k][j + i * C]` for tap `i`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn integer_rows<const K: usize, const C: usize>(
    rows: &[&[u8]; K],
    wt: &[[i16; K]; K],
    bias: i16,
    magic: u32,
    out: &mut [u8],
) -> usize {
    let n = out.len();
    let whole = n / 32 * 32;
    // Every load below stays inside its row: the last block reads up to
    // `whole - 1 + (K - 1) * C`.
    for row in rows {
        assert!(row.len() >= whole + (K - 1) * C);
    }
    let weights: [[__m256i; K]; K] =
        std::array::from_fn(|k| std::array::from_fn(|i| _mm256_set1_epi16(wt[k][i])));
    let start = _mm256_set1_epi16(bias);
    let zero = _mm256_setzero_si256();
    // magic is 65536 exactly for scale 1 (divide by one), which no 16-bit
    // multiply-high expresses; the others are below it.
    let divide = magic < 65536;
    let multiplier = _mm256_set1_epi16(magic.min(65535) as u16 as i16);
    let mut j = 0;
    while j < whole {
        let (mut lo, mut hi) = (start, start);
        for k in 0..K {
            // SAFETY: `j + i*C + 32 <= whole + (K-1)*C <= rows[k].len()`, asserted above.
            let base = rows[k].as_ptr().add(j);
            for i in 0..K {
                let weight = wt[k][i];
                if weight == 0 {
                    continue;
                }
                let p = base.add(i * C);
                let a = _mm256_cvtepu8_epi16(_mm_loadu_si128(p as *const __m128i));
                let b = _mm256_cvtepu8_epi16(_mm_loadu_si128(p.add(16) as *const __m128i));
                lo = _mm256_add_epi16(lo, _mm256_mullo_epi16(a, weights[k][i]));
                hi = _mm256_add_epi16(hi, _mm256_mullo_epi16(b, weights[k][i]));
            }
        }
        let finish = |v: __m256i| {
            let n = _mm256_max_epi16(v, zero);
            if divide {
                _mm256_mulhi_epu16(n, multiplier)
            } else {
                n
            }
        };
        // packus clamps to 0..=255 but interleaves 128-bit lanes; the
        // permute puts the 32 bytes back in order.
        let packed = _mm256_packus_epi16(finish(lo), finish(hi));
        let ordered = _mm256_permute4x64_epi64(packed, 0b11_01_10_00);
        // SAFETY: `j + 32 <= whole <= out.len()`.
        _mm256_storeu_si256(out.as_mut_ptr().add(j) as *mut __m256i, ordered);
        j += 32;
    }
    whole
}

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
/// The CPU must support AVX2 (the caller checks `is_x86_feature_detected!`).
/// Slice lengths are not an obligation: every row must hold at least
/// `n / 32 * 32 + (K - 1) * C` samples, which is asserted (a panic, not
/// undefined behaviour, if not).
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
            for i in 0..K {
                let weight = wt[k][i];
                if weight == 0 {
                    continue;
                }
                // SAFETY: `j + i*C + 32 <= whole + (K-1)*C <= rows[k].len()`
                // (asserted above), so both 16-byte unaligned loads are in bounds.
                let (a, b) = unsafe {
                    let p = rows[k].as_ptr().add(j + i * C);
                    (
                        _mm_loadu_si128(p as *const __m128i),
                        _mm_loadu_si128(p.add(16) as *const __m128i),
                    )
                };
                let (a, b) = (_mm256_cvtepu8_epi16(a), _mm256_cvtepu8_epi16(b));
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
        // SAFETY: `j + 32 <= whole <= out.len()`; the store is an unaligned one.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(j) as *mut __m256i, ordered) };
        j += 32;
    }
    whole
}

/// A kernel that is `a` at the centre plus `b3` over the centred 3×3 plus
/// `b5` over the whole 5×5: SHARPEN, SMOOTH, FIND_EDGES, CONTOUR and the two
/// EDGE_ENHANCEs (`b5 = 0`), and BLUR (a 5×5 ring: `b5 = 1, b3 = -1`).
/// Box sums separate into a vertical then a horizontal pass, which costs
/// about half the loads and multiplies of tap by tap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct BoxForm {
    pub a: i16,
    pub b3: i16,
    pub b5: i16,
}

impl BoxForm {
    /// Recognises the form in `K`×`K` weights, if every sum `bias + a·p +
    /// b3·Σ3×3 + b5·Σ5×5` (and each term) fits in 16 bits.
    pub fn of<const K: usize>(wt: &[[i16; K]; K], bias: i16) -> Option<BoxForm> {
        let r = K / 2;
        let (b5, b3) = match K {
            3 => (0, wt[0][0]),
            5 => (wt[0][0], wt[1][1] - wt[0][0]),
            _ => return None,
        };
        let a = wt[r][r] - b3 - b5;
        let expected = |k: usize, i: usize| {
            let inner = k.abs_diff(r) <= 1 && i.abs_diff(r) <= 1;
            let centre = k == r && i == r;
            b5 + if inner { b3 } else { 0 } + if centre { a } else { 0 }
        };
        let matches = (0..K).all(|k| (0..K).all(|i| wt[k][i] == expected(k, i)));
        let reach = i32::from(bias).abs()
            + 255 * (i32::from(a).abs() + 9 * i32::from(b3).abs() + 25 * i32::from(b5).abs());
        (matches && reach <= i32::from(i16::MAX)).then_some(BoxForm { a, b3, b5 })
    }
}

std::thread_local! {
    /// Per-thread vertical sums of one output row (3-row, 5-row), reused.
    static SUMS: std::cell::RefCell<(Vec<i16>, Vec<i16>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `integer_rows` for a kernel in `BoxForm`; the same contract and results.
///
/// # Safety
/// The CPU must support AVX2 (the caller checks `is_x86_feature_detected!`).
/// As for `integer_rows`, the row lengths are asserted, not assumed.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn box_rows<const K: usize, const C: usize>(
    rows: &[&[u8]; K],
    form: BoxForm,
    bias: i16,
    magic: u32,
    out: &mut [u8],
) -> usize {
    let whole = out.len() / 32 * 32;
    if whole == 0 {
        return 0;
    }
    let r = K / 2;
    // Vertical sums are needed at every sample the windows cover.
    let width = whole + (K - 1) * C;
    for row in rows {
        assert!(row.len() >= width);
    }
    SUMS.with_borrow_mut(|(v3, v5)| {
        v3.resize(width, 0);
        v5.resize(if K == 5 { width } else { 0 }, 0);
        // SAFETY: AVX2 is available (this function's contract); every row holds
        // `width` samples (asserted above), and v3 and, for K = 5, v5 were just
        // sized to `width`.
        unsafe { vertical_sums::<K>(rows, width, v3, v5) };
        let a = _mm256_set1_epi16(form.a);
        let b3 = _mm256_set1_epi16(form.b3);
        let b5 = _mm256_set1_epi16(form.b5);
        let start = _mm256_set1_epi16(bias);
        let zero = _mm256_setzero_si256();
        let divide = magic < 65536;
        let multiplier = _mm256_set1_epi16(magic.min(65535) as u16 as i16);
        // 16 sums from `at` on. Every call below passes `at + 16 <= v.len()`.
        let load = |v: &[i16], at: usize| {
            debug_assert!(at + 16 <= v.len());
            // SAFETY: the callers' `at + 16 <= v.len()` (see `sums16`); unaligned load.
            unsafe { _mm256_loadu_si256(v.as_ptr().add(at) as *const __m256i) }
        };
        let sums16 = |j: usize| {
            // All loads: `j + 16 + (K-1)*C <= whole + (K-1)*C = width = v3.len()`
            // (`= v5.len()` for K = 5), since `j + 16 <= whole`.
            let mut box3 = load(v3, j + (r - 1) * C);
            box3 = _mm256_add_epi16(box3, load(v3, j + r * C));
            box3 = _mm256_add_epi16(box3, load(v3, j + (r + 1) * C));
            // SAFETY: the 16 bytes at `j + r*C` end within `width`, and the
            // centre row holds `width` samples (asserted above); unaligned load.
            let centre =
                unsafe { _mm_loadu_si128(rows[r].as_ptr().add(j + r * C) as *const __m128i) };
            let centre = _mm256_cvtepu8_epi16(centre);
            let mut n = _mm256_add_epi16(start, _mm256_mullo_epi16(centre, a));
            n = _mm256_add_epi16(n, _mm256_mullo_epi16(box3, b3));
            if K == 5 {
                let mut box5 = load(v5, j);
                for i in 1..K {
                    box5 = _mm256_add_epi16(box5, load(v5, j + i * C));
                }
                n = _mm256_add_epi16(n, _mm256_mullo_epi16(box5, b5));
            }
            let n = _mm256_max_epi16(n, zero);
            if divide {
                _mm256_mulhi_epu16(n, multiplier)
            } else {
                n
            }
        };
        let mut j = 0;
        while j < whole {
            let packed = _mm256_packus_epi16(sums16(j), sums16(j + 16));
            let ordered = _mm256_permute4x64_epi64(packed, 0b11_01_10_00);
            // SAFETY: `j + 32 <= whole <= out.len()`; unaligned store.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(j) as *mut __m256i, ordered) };
            j += 32;
        }
    });
    whole
}

/// `v3[x]` = the middle three rows' samples at `x` summed; for `K = 5` also
/// `v5[x]` = all five rows', for `x` in `0..width`. `K` is 3 or 5.
///
/// # Safety
/// - The CPU must support AVX2. (It is inlined into `box_rows`, which
///   requires the same; it has no `target_feature` of its own so that it can
///   be `inline(always)`.)
/// - Every row of `rows` holds at least `width` samples.
/// - `v3`, and for `K = 5` also `v5`, hold at least `width` sums.
#[inline(always)]
unsafe fn vertical_sums<const K: usize>(
    rows: &[&[u8]; K],
    width: usize,
    v3: &mut [i16],
    v5: &mut [i16],
) {
    // 16 samples of `row` from `x` on, widened. Callers pass `x + 16 <= width`.
    let widen = |row: &[u8], x: usize| {
        debug_assert!(x + 16 <= row.len());
        // SAFETY: AVX2 is available (this function's contract), and
        // `x + 16 <= width <= row.len()`; unaligned load.
        unsafe { _mm256_cvtepu8_epi16(_mm_loadu_si128(row.as_ptr().add(x) as *const __m128i)) }
    };
    let mid = K / 2;
    let mut x = 0;
    while x + 16 <= width {
        // SAFETY (this block and the next): AVX2 is available, and
        // `x + 16 <= width <= v3.len()` (and `<= v5.len()` for K = 5), as this
        // function's contract requires; unaligned stores.
        let three = unsafe {
            let three = _mm256_add_epi16(
                _mm256_add_epi16(widen(rows[mid - 1], x), widen(rows[mid], x)),
                widen(rows[mid + 1], x),
            );
            _mm256_storeu_si256(v3.as_mut_ptr().add(x) as *mut __m256i, three);
            three
        };
        if K == 5 {
            // SAFETY: as above.
            unsafe {
                let five = _mm256_add_epi16(
                    three,
                    _mm256_add_epi16(widen(rows[0], x), widen(rows[4], x)),
                );
                _mm256_storeu_si256(v5.as_mut_ptr().add(x) as *mut __m256i, five);
            }
        }
        x += 16;
    }
    for x in x..width {
        let s = |k: usize| i16::from(rows[k][x]);
        v3[x] = s(mid - 1) + s(mid) + s(mid + 1);
        if K == 5 {
            v5[x] = v3[x] + s(0) + s(4);
        }
    }
}

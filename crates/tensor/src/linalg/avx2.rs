//! A single-precision product `C <- alpha A B + beta C` for x86-64 CPUs with AVX2 and FMA.
//!
//! `matrixmultiply` copies ("packs") both operands for every call with scalar loads and
//! stores; for the shapes of a small network (`[128, 784] @ [784, 128]`) that copying took a fifth
//! of the time of the products. This kernel packs with vector loads and stores instead (8x8
//! register transposes where an operand must be turned), and its micro-tile of 16 x 6 elements
//! keeps twelve 8-lane accumulators in flight.
//!
//! Arithmetic: every element of C is the chain `acc <- fma(a[i, p], b[p, j], acc)` over `p`
//! ascending from `acc = 0` within each block of the inner index, then `c <- fma(alpha, acc,
//! beta c)` for the first block (`alpha acc` when `beta == 0`, C not read) and `c <- fma(alpha,
//! acc, c)` for the later ones. The blocks are those of [`block_depth`]: one block up to [`KC`]
//! values (then this is the sequence of `matrixmultiply`'s AVX2/FMA kernel), else the fewest
//! blocks of at most `KC` values, as even as multiples of 4 allow. The sequence does not depend
//! on where the element falls in a tile, so any split of C over threads gives the same bits, and
//! neither does a split over whole blocks whose accumulators are added to C in block order.

use std::arch::x86_64::{
    __m256, _MM_HINT_T0, _mm_prefetch, _mm256_broadcast_ss, _mm256_cmpgt_epi32, _mm256_fmadd_ps,
    _mm256_loadu_ps, _mm256_maskload_ps, _mm256_maskstore_ps, _mm256_mul_ps,
    _mm256_permute2f128_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi32,
    _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
};
use std::cell::RefCell;

use super::MatPtr;

/// Rows of a micro-tile, along the vector lanes (two 8-lane registers).
const MR: usize = 16;
/// Columns of a micro-tile, each broadcast from the packed operand.
const NR: usize = 6;
/// The deepest block of the inner index (`matrixmultiply`'s depth).
const KC: usize = 256;
/// Lane-side rows packed at once: `MC x KC` values (128 KiB) stay in the L2 cache.
const MC: usize = 128;
/// Values written past a packed broadcast-side panel by its 8-wide stores.
const SLACK: usize = 8 - NR;

thread_local! {
    /// The packed lane-side block and broadcast-side panel of the calling thread.
    static PACKS: RefCell<(Packed, Packed)> = const { RefCell::new((Packed::new(), Packed::new())) };
}

/// A cache line of values: the unit of [`Packed`], so that packed panels start on a line and
/// the kernel's 8-wide loads never straddle two lines.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A growable buffer of packed values, aligned to a cache line.
#[derive(Default)]
struct Packed(Vec<Line>);

impl Packed {
    const fn new() -> Packed {
        Packed(Vec::new())
    }

    /// The first `len` values (grown with zeros as needed; contents otherwise stale).
    fn get(&mut self, len: usize) -> &mut [f32] {
        let lines = len.div_ceil(16);
        if self.0.len() < lines {
            self.0.resize(lines, Line::default());
        }
        // SAFETY: `Line` is 16 `f32`s with no padding (repr(C), 64 bytes), so the first
        // `lines` lines are `16 * lines >= len` initialized values.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<f32>(), len) }
    }
}

/// Whether this kernel can run here: on CPUs with AVX2 and FMA (under Miri, only when built with
/// `-C target-feature=+avx2,+fma`, which Miri emulates).
pub(super) fn available() -> bool {
    crate::simd::has_avx2_fma()
}

/// The depth of the blocks of the inner index for a product whose inner length is `k`: `k`
/// itself up to [`KC`]; beyond, the `k.div_ceil(KC)` blocks as even as multiples of 4 allow
/// (the last one may be shorter), so that the blocks can be shared out evenly over threads:
/// `784 = 4 x 196`, where blocks of `KC` would leave `256 + 256 + 256 + 16`.
///
/// ```text
/// k      100   256   257         784         5408
/// depth  100   256   132 (+125)  196 (x 4)   248 (x 21, +200)
/// ```
pub(super) fn block_depth(k: usize) -> usize {
    if k <= KC {
        k.max(1)
    } else {
        k.div_ceil(k.div_ceil(KC)).next_multiple_of(4)
    }
}

/// `C <- alpha A B + beta C` for an `m x k` A, `k x n` B and `m x n` C, in blocks of `depth`
/// values of the inner index (at most [`KC`]; see the module docs for the exact arithmetic):
/// the first argument is the shape and the depth.
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`available`]); the pointers and strides follow the contract
/// of `linalg::sgemm`; `0 < depth <= KC`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn sgemm(
    ((m, k, n), depth): ((usize, usize, usize), usize),
    alpha: f32,
    a: MatPtr,
    b: MatPtr,
    beta: f32,
    c: *mut f32,
    (rsc, csc): (isize, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: (i, j) is an element of C.
                unsafe {
                    let e = c.offset(i as isize * rsc + j as isize * csc);
                    *e = if beta == 0.0 { 0.0 } else { *e * beta };
                }
            }
        }
        return;
    }
    // The lanes run along C's contiguous axis when it has one, so that whole tiles are loaded
    // and stored as vectors, unless the other way needs markedly fewer tiles (a narrow C). With
    // the lanes along C's rows, the lane-side operand is B^T and the broadcast-side one A^T
    // (the same sums, C^T = B^T A^T).
    let tiles = |lanes: usize, other: usize| lanes.div_ceil(MR) * other.div_ceil(NR);
    let (along_n, along_m) = (tiles(n, m), tiles(m, n));
    let lanes_along_n = match (csc == 1, rsc == 1) {
        (true, false) => along_n * 4 <= along_m * 5,
        (false, true) => along_n * 5 < along_m * 4,
        _ => along_n < along_m,
    };
    let (rows, cols, l, q, (dr, ds)) = if lanes_along_n {
        let l = MatPtr {
            ptr: b.ptr,
            rs: b.cs,
            cs: b.rs,
        };
        let q = MatPtr {
            ptr: a.ptr,
            rs: a.cs,
            cs: a.rs,
        };
        (n, m, l, q, (csc, rsc))
    } else {
        (m, n, a, b, (rsc, csc))
    };
    let (mut lpack, mut qpack) = PACKS.take();
    let qbuf = qpack.get(KC * NR + SLACK);
    debug_assert!(0 < depth && depth <= KC, "block depth {depth}");
    for p0 in (0..k).step_by(depth) {
        let kc = depth.min(k - p0);
        let beta = (p0 == 0).then_some(beta);
        for r0 in (0..rows).step_by(MC) {
            let nr = MC.min(rows - r0);
            let lpanels = nr.div_ceil(MR);
            let need = lpanels * kc * MR;
            let lbuf = lpack.get(need);
            // SAFETY: (r0, p0) is inside the lane-side operand, whose nr x kc block from there
            // is readable; the buffer holds its panels.
            unsafe { pack_l(l.at(r0, p0), nr, kc, lbuf) };
            // Each broadcast-side panel is packed just before its products, so that it is
            // still in the L1 cache for all of them.
            for s0 in (0..cols).step_by(NR) {
                let tc = NR.min(cols - s0);
                // SAFETY: as for the other operand; the buffer holds a panel and the slack.
                unsafe { pack_q(q.at(p0, s0), kc, tc, qbuf) };
                if s0 + NR < cols {
                    // SAFETY: the next panel starts inside the operand.
                    let next = unsafe { q.at(p0, s0 + NR) };
                    prefetch_panel(next, kc, NR.min(cols - s0 - NR));
                }
                for il in 0..lpanels {
                    let lp = &lbuf[il * kc * MR..];
                    let tr = MR.min(nr - il * MR);
                    // SAFETY: the panels hold kc steps of MR and NR values; the tile's tr x tc
                    // elements are elements of C.
                    unsafe {
                        let acc = micro(kc, lp.as_ptr(), qbuf.as_ptr());
                        let d = c.offset((r0 + il * MR) as isize * dr + s0 as isize * ds);
                        store(&acc, (tr, tc), d, (dr, ds), alpha, beta);
                    }
                }
            }
        }
    }
    PACKS.set((lpack, qpack));
}

impl MatPtr {
    /// The same matrix from element `(i, j)` on.
    ///
    /// # Safety
    /// `(i, j)` must be an element of the matrix.
    unsafe fn at(self, i: usize, j: usize) -> MatPtr {
        MatPtr {
            // SAFETY: per this function's contract.
            ptr: unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) },
            ..self
        }
    }
}

/// Asks the cache for the `kc x cols` broadcast-side panel `q` (the next one, read from memory
/// while the current one is multiplied): one request per cache line along a contiguous axis,
/// one per element otherwise.
///
/// A prefetch never faults, so the addresses need not be valid; they are computed with
/// `wrapping_offset`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn prefetch_panel(q: MatPtr, kc: usize, cols: usize) {
    let at = |p: usize, s: usize| {
        q.ptr
            .wrapping_offset(p as isize * q.rs + s as isize * q.cs)
            .cast::<i8>()
    };
    if q.rs == 1 {
        for s in 0..cols {
            for p in (0..kc).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(at(p, s));
            }
            _mm_prefetch::<_MM_HINT_T0>(at(kc - 1, s));
        }
    } else if q.cs == 1 {
        for p in 0..kc {
            _mm_prefetch::<_MM_HINT_T0>(at(p, 0));
            _mm_prefetch::<_MM_HINT_T0>(at(p, cols - 1));
        }
    }
}

/// The 16 x 6 products of a lane-side panel (`kc` steps of [`MR`] values) and a broadcast-side
/// panel (`kc` steps of [`NR`] values): accumulator `2 j + h` holds column `j`, rows
/// `8 h .. 8 h + 8`.
///
/// The loop over the steps is unrolled four times: on Zen 3 that took 10-16% less time per step
/// than the rolled loop with both panels in the L1 cache (86-93 against 76-79 GFLOP/s, 88-94% of
/// the core's peak measured alongside), and 6-12% less for the MLP's whole 128 x 784 x 128
/// products. The order of the operations on each accumulator is unchanged.
///
/// # Safety
/// `l` must hold `kc * MR` values and `q` `kc * NR`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro(kc: usize, l: *const f32, q: *const f32) -> [__m256; 2 * NR] {
    /// One step: the 12 multiply-adds of `MR` lane-side and `NR` broadcast-side values.
    ///
    /// # Safety
    /// `l` must hold `MR` values and `q` `NR`.
    #[inline(always)]
    unsafe fn step(acc: &mut [__m256; 2 * NR], l: *const f32, q: *const f32) {
        // SAFETY: per this function's contract.
        unsafe {
            let a0 = _mm256_loadu_ps(l);
            let a1 = _mm256_loadu_ps(l.add(8));
            for j in 0..NR {
                let b = _mm256_broadcast_ss(&*q.add(j));
                acc[2 * j] = _mm256_fmadd_ps(a0, b, acc[2 * j]);
                acc[2 * j + 1] = _mm256_fmadd_ps(a1, b, acc[2 * j + 1]);
            }
        }
    }
    let mut acc = [_mm256_setzero_ps(); 2 * NR];
    for p in (0..kc - kc % 4).step_by(4) {
        // SAFETY: steps p..p + 4 are below kc, per this function's contract.
        unsafe {
            let (l, q) = (l.add(p * MR), q.add(p * NR));
            step(&mut acc, l, q);
            step(&mut acc, l.add(MR), q.add(NR));
            step(&mut acc, l.add(2 * MR), q.add(2 * NR));
            step(&mut acc, l.add(3 * MR), q.add(3 * NR));
        }
    }
    for p in kc - kc % 4..kc {
        // SAFETY: p < kc.
        unsafe { step(&mut acc, l.add(p * MR), q.add(p * NR)) };
    }
    acc
}

/// Writes the first `tr x tc` elements of a tile to `d` (lane `r`, column `j` at
/// `d + r dr + j ds`): `fma(alpha, acc, beta d)` when `beta` is given (the first block; `alpha
/// acc` for a zero beta, `d` unread), `fma(alpha, acc, d)` otherwise.
///
/// # Safety
/// Every element written must be writable (and readable unless `beta == Some(0.0)`).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(
    acc: &[__m256; 2 * NR],
    (tr, tc): (usize, usize),
    d: *mut f32,
    (dr, ds): (isize, isize),
    alpha: f32,
    beta: Option<f32>,
) {
    if tr == MR && dr == 1 {
        let av = _mm256_set1_ps(alpha);
        for (j, pair) in acc.chunks_exact(2).take(tc).enumerate() {
            for (h, &v) in pair.iter().enumerate() {
                // SAFETY: the 8 values at `d + j ds + 8 h` are elements of the tile.
                unsafe {
                    let at = d.offset(j as isize * ds + 8 * h as isize);
                    let out = match beta {
                        Some(0.0) => _mm256_mul_ps(av, v),
                        Some(beta) => {
                            let old = _mm256_mul_ps(_mm256_loadu_ps(at), _mm256_set1_ps(beta));
                            _mm256_fmadd_ps(av, v, old)
                        }
                        None => _mm256_fmadd_ps(av, v, _mm256_loadu_ps(at)),
                    };
                    _mm256_storeu_ps(at, out);
                }
            }
        }
        return;
    }
    if ds == 1 {
        // SAFETY: per this function's contract.
        unsafe { store_rows(acc, (tr, tc), d, dr, alpha, beta) };
        return;
    }
    let mut tile = [0.0f32; 2 * NR * 8];
    for (i, &v) in acc.iter().enumerate() {
        // SAFETY: the tile holds 8 values per accumulator.
        unsafe { _mm256_storeu_ps(tile.as_mut_ptr().add(8 * i), v) };
    }
    for j in 0..tc {
        for r in 0..tr {
            let v = tile[j * MR + r];
            // SAFETY: (r, j) is an element of the tile.
            unsafe {
                let at = d.offset(r as isize * dr + j as isize * ds);
                *at = match beta {
                    Some(0.0) => alpha * v,
                    Some(beta) => alpha.mul_add(v, *at * beta),
                    None => alpha.mul_add(v, *at),
                };
            }
        }
    }
}

/// [`store`] for a tile whose rows are contiguous in C (`ds == 1`; a narrow C with the lanes
/// down its columns): each half of the tile is turned into its 8 rows, and each row's `tc` values
/// are written with masked loads and stores, the same operations as the scalar path of `store`.
/// Not inlined, so that the products that never take it keep their code as it was.
///
/// # Safety
/// As for [`store`], with `ds == 1`.
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_rows(
    acc: &[__m256; 2 * NR],
    (tr, tc): (usize, usize),
    d: *mut f32,
    dr: isize,
    alpha: f32,
    beta: Option<f32>,
) {
    let av = _mm256_set1_ps(alpha);
    let mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(tc as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    for h in 0..tr.div_ceil(8) {
        let mut cols = [_mm256_setzero_ps(); 8];
        for (j, v) in cols.iter_mut().take(NR).enumerate() {
            *v = acc[2 * j + h];
        }
        for (r, v) in transpose8(cols).into_iter().take(tr - 8 * h).enumerate() {
            // SAFETY: the first `tc` values of row 8 h + r of the tile are elements of C;
            // the masked lanes are neither read nor written.
            unsafe {
                let at = d.offset((8 * h + r) as isize * dr);
                let out = match beta {
                    Some(0.0) => _mm256_mul_ps(av, v),
                    Some(beta) => {
                        let old = _mm256_maskload_ps(at, mask);
                        _mm256_fmadd_ps(av, v, _mm256_mul_ps(old, _mm256_set1_ps(beta)))
                    }
                    None => _mm256_fmadd_ps(av, v, _mm256_maskload_ps(at, mask)),
                };
                _mm256_maskstore_ps(at, mask, out);
            }
        }
    }
}

/// The 8 columns of the 8 x 8 block held by `r` (row `i` in `r[i]`), column `j` in the result's
/// `j`-th vector.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// Packs the `nr x kc` lane-side block `l` into panels of [`MR`] rows: panel `i` holds, for
/// each step `p`, rows `16 i .. 16 i + 16` of column `p` (zeros past `nr`).
///
/// # Safety
/// Every element of the block must be readable; `buf` holds `nr.div_ceil(MR) * kc * MR` values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_l(l: MatPtr, nr: usize, kc: usize, buf: &mut [f32]) {
    for (i, r0) in (0..nr).step_by(MR).enumerate() {
        let rows = MR.min(nr - r0);
        let dst = &mut buf[i * kc * MR..(i + 1) * kc * MR];
        // SAFETY: r0 < nr.
        let src = unsafe { l.at(r0, 0) };
        let mut p = 0;
        if rows == MR && src.rs == 1 {
            for (p, out) in dst.chunks_exact_mut(MR).enumerate() {
                // SAFETY: the 16 rows of column p are contiguous and inside the block.
                unsafe {
                    let from = src.ptr.offset(p as isize * src.cs);
                    _mm256_storeu_ps(out.as_mut_ptr(), _mm256_loadu_ps(from));
                    _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_loadu_ps(from.add(8)));
                }
            }
            continue;
        }
        if rows == MR && src.cs == 1 {
            // Rows are contiguous along p: turn 8 x 8 blocks.
            while p + 8 <= kc {
                for h in 0..2 {
                    // SAFETY: rows 8h..8h+8 and columns p..p+8 are inside the block; the
                    // stores land in steps p..p+8 of the panel.
                    unsafe {
                        let mut rows = [_mm256_setzero_ps(); 8];
                        for (r, v) in rows.iter_mut().enumerate() {
                            let from = src.ptr.offset((8 * h + r) as isize * src.rs);
                            *v = _mm256_loadu_ps(from.add(p));
                        }
                        let cols = transpose8(rows);
                        for (s, v) in cols.into_iter().enumerate() {
                            _mm256_storeu_ps(dst.as_mut_ptr().add((p + s) * MR + 8 * h), v);
                        }
                    }
                }
                p += 8;
            }
        }
        for p in p..kc {
            for r in 0..MR {
                dst[p * MR + r] = if r < rows {
                    // SAFETY: (r, p) is inside the block.
                    unsafe { *src.at(r, p).ptr }
                } else {
                    0.0
                };
            }
        }
    }
}

/// Packs the `kc x cols` broadcast-side panel `q` (`cols <= NR`): for each step `p`, the
/// `cols` values of row `p`, then zeros up to [`NR`].
///
/// # Safety
/// Every element of the panel must be readable; `buf` holds `kc * NR` values plus [`SLACK`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_q(src: MatPtr, kc: usize, cols: usize, buf: &mut [f32]) {
    let mut p = 0;
    if src.cs == 1 {
        // Rows are contiguous: a masked load of each row's `cols` values (the lanes past them
        // are not read and come as zeros), stored 8 wide over the start of the next step (or
        // into the slack).
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(cols as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        for p in 0..kc {
            // SAFETY: the `cols` values of row p are inside the panel; the store lands in step
            // p and at most SLACK values past it (a later step or the slack).
            unsafe {
                let v = _mm256_maskload_ps(src.at(p, 0).ptr, mask);
                _mm256_storeu_ps(buf.as_mut_ptr().add(p * NR), v);
            }
        }
        return;
    }
    if cols == NR && src.rs == 1 {
        // Columns are contiguous along p: turn 8 x 8 blocks (two of them zero), each step's 8
        // values stored over the start of the next step (or into the slack).
        while p + 8 <= kc {
            // SAFETY: the 6 columns and rows p..p+8 are inside the panel; the stores land in
            // steps p..p+8 and at most SLACK values past them, which belong to later steps or
            // the slack.
            unsafe {
                let mut cols = [_mm256_setzero_ps(); 8];
                for (s, v) in cols.iter_mut().take(NR).enumerate() {
                    *v = _mm256_loadu_ps(src.ptr.offset(s as isize * src.cs).add(p));
                }
                let rows = transpose8(cols);
                for (t, v) in rows.into_iter().enumerate() {
                    _mm256_storeu_ps(buf.as_mut_ptr().add((p + t) * NR), v);
                }
            }
            p += 8;
        }
    }
    for p in p..kc {
        for s in 0..NR {
            buf[p * NR + s] = if s < cols {
                // SAFETY: (p, s) is inside the panel.
                unsafe { *src.at(p, s).ptr }
            } else {
                0.0
            };
        }
    }
}

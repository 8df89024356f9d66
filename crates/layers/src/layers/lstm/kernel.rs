//! The small dense products of the LSTM's fused steps: a register-blocked micro-kernel that
//! multiplies up to [`MR`] rows of `A` by one panel of [`NR`] columns of `B`.
//!
//! ```text
//! out[r][l] = sum_{p < k} A[r, p] B[p, l]      (r < R <= MR, l < NR, summed in the order of p)
//! ```
//!
//! `A` is any strided view; `B` has its `NR` columns contiguous in each row (a panel of a
//! [`Panels`] matrix, or rows of a buffer whose row stride leaves room for `NR` values). On
//! x86-64 CPUs with AVX2 and FMA the products use fused multiply-adds ([`Fma`], 12 accumulators
//! in registers); elsewhere [`Portable`] multiplies and adds in the same order. Each kernel is
//! deterministic: the same inputs give bit-identical outputs.

use super::act;

/// Rows of one tile.
pub(super) const MR: usize = 6;

/// Columns of one tile (two AVX registers).
pub(super) const NR: usize = 16;

/// A `k x n` matrix packed in panels of [`NR`] columns, each panel `k` rows of `NR` values
/// (zero past column `n`), so that the kernels read it contiguously.
#[derive(Debug, Clone)]
pub(super) struct Panels {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Panels {
    /// Packs the `k x n` matrix `m[p, j] = src[p * rs + j * cs]`.
    ///
    /// # Panics
    /// When `src` does not hold the matrix (a bug in the caller).
    pub(super) fn pack(k: usize, n: usize, src: &[f32], rs: usize, cs: usize) -> Panels {
        assert!(
            k == 0 || n == 0 || (k - 1) * rs + (n - 1) * cs < src.len(),
            "packed matrix out of bounds"
        );
        let count = n.div_ceil(NR);
        let mut data = Vec::with_capacity(count * k * NR);
        for jp in 0..count {
            for p in 0..k {
                data.extend(
                    (jp * NR..(jp + 1) * NR).map(
                        |j| {
                            if j < n { src[p * rs + j * cs] } else { 0.0 }
                        },
                    ),
                );
            }
        }
        Panels { k, n, data }
    }

    /// The number of panels, `ceil(n / NR)`.
    pub(super) fn count(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// The columns of panel `jp` that are real (`NR`, or fewer for the last).
    pub(super) fn width(&self, jp: usize) -> usize {
        (self.n - jp * NR).min(NR)
    }

    /// Panel `jp`: `k` rows of `NR` values.
    pub(super) fn panel(&self, jp: usize) -> &[f32] {
        &self.data[jp * self.k * NR..(jp + 1) * self.k * NR]
    }
}

/// A strided view of the left operand: `A[r, p] = data[r * rs + p * cs]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lhs<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// The right operand: `B[p, l] = data[p * rs + l]` for `l < NR`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rhs<'a> {
    pub data: &'a [f32],
    pub rs: usize,
}

impl<'a> Rhs<'a> {
    /// Panel `jp` of a packed matrix.
    pub(super) fn panel(p: &'a Panels, jp: usize) -> Rhs<'a> {
        Rhs {
            data: p.panel(jp),
            rs: NR,
        }
    }
}

/// One product of a tile: `k` and the operands `A: rows x k`, `B: k x NR`.
pub(super) type Part<'a> = (usize, Lhs<'a>, Rhs<'a>);

/// Where the accumulators of a tile start.
#[derive(Debug, Clone, Copy)]
pub(super) enum Init<'a> {
    /// At zero.
    Zero,
    /// At this row (its first `width` values) in every row of the tile.
    Row(&'a [f32]),
    /// At the values of the output tile (to accumulate into it).
    Out,
}

/// The output tile: `rows x width` values at `data[r * rs + l]`.
#[derive(Debug)]
pub(super) struct Out<'a> {
    pub data: &'a mut [f32],
    pub rs: usize,
    pub width: usize,
}

/// Checks that a `rows x k` product of `a` and `b` stays inside both slices.
#[inline(always)]
fn check_part(rows: usize, (k, a, b): Part<'_>) {
    assert!(
        k == 0
            || ((rows - 1) * a.rs + (k - 1) * a.cs < a.data.len()
                && (k - 1) * b.rs + NR <= b.data.len()),
        "tile operands out of bounds"
    );
}

/// Checks the row count, every part, the initial row and the output.
#[inline(always)]
fn check(rows: usize, parts: &[Part<'_>], init: Init<'_>, out: &Out<'_>) {
    assert!(
        (1..=MR).contains(&rows)
            && out.width <= NR
            && (rows - 1) * out.rs + out.width <= out.data.len(),
        "tile output out of bounds"
    );
    if let Init::Row(row) = init {
        assert!(row.len() >= out.width, "tile initial row too short");
    }
    for &part in parts {
        check_part(rows, part);
    }
}

/// How the kernels round `a b + c`: once (a fused multiply-add, one instruction where the
/// caller is compiled for a CPU that has FMA) or twice. The activations take the kernel's, so
/// that their scalar and 8-lane versions give the same bits.
pub(super) trait MulAdd: Copy {
    /// `a b + c`.
    fn madd(self, a: f32, b: f32, c: f32) -> f32;
}

/// A micro-kernel: `out[r][l] = init[r][l] + sum over parts of sum_{p < k} A[r, p] B[p, l]` for
/// `r < rows`, `l < out.width`, summed in the order of the parts and of `p`.
pub(super) trait Kernel: MulAdd {
    /// Computes `rows` (1 to [`MR`]) rows of the tile.
    ///
    /// # Panics
    /// When `rows` is not in `1..=MR`, `out.width > NR`, or an operand does not hold its
    /// matrix (a bug in the caller).
    fn tile(self, rows: usize, parts: &[Part<'_>], init: Init<'_>, out: Out<'_>);

    /// [`act::sigmoid`] of 8 lanes (the same values).
    #[inline(always)]
    fn sigmoid8(self, x: [f32; 8]) -> [f32; 8] {
        x.map(|v| act::sigmoid(self, v))
    }

    /// [`act::tanh`] of 8 lanes (the same values).
    #[inline(always)]
    fn tanh8(self, x: [f32; 8]) -> [f32; 8] {
        x.map(|v| act::tanh(self, v))
    }
}

/// The kernel of any CPU: multiplies, then adds, in the order of the parts and of `p`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Portable;

/// Rounds twice, as plain code does.
impl MulAdd for Portable {
    #[inline(always)]
    fn madd(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

impl Kernel for Portable {
    #[inline(always)]
    fn tile(self, rows: usize, parts: &[Part<'_>], init: Init<'_>, out: Out<'_>) {
        check(rows, parts, init, &out);
        let w = out.width;
        for r in 0..rows {
            let mut acc = [0.0f32; NR];
            match init {
                Init::Zero => {}
                Init::Row(row) => acc[..w].copy_from_slice(&row[..w]),
                Init::Out => acc[..w].copy_from_slice(&out.data[r * out.rs..r * out.rs + w]),
            }
            for &(k, a, b) in parts {
                for p in 0..k {
                    let av = a.data[r * a.rs + p * a.cs];
                    let bp = &b.data[p * b.rs..p * b.rs + NR];
                    for (c, &bv) in acc.iter_mut().zip(bp) {
                        *c += av * bv;
                    }
                }
            }
            out.data[r * out.rs..r * out.rs + w].copy_from_slice(&acc[..w]);
        }
    }
}

/// The AVX2 + FMA kernel; a value exists only on CPUs that have both.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(super) struct Fma(());

#[cfg(target_arch = "x86_64")]
impl Fma {
    /// The kernel, when this CPU has AVX2 and FMA.
    pub(super) fn detect() -> Option<Fma> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(Fma(()))
    }
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m256;

/// Rounds once.
#[cfg(target_arch = "x86_64")]
impl MulAdd for Fma {
    #[inline(always)]
    fn madd(self, a: f32, b: f32, c: f32) -> f32 {
        // Inlined into the callers compiled for FMA, this is one `vfmadd` (lane by lane).
        a.mul_add(b, c)
    }
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Fma {
    #[inline(always)]
    fn sigmoid8(self, x: [f32; 8]) -> [f32; 8] {
        // SAFETY: an `Fma` exists only when the CPU has AVX2 and FMA; `[f32; 8]` and `__m256`
        // have the same size and any bits are valid in both.
        unsafe {
            let v = std::mem::transmute::<[f32; 8], __m256>(x);
            std::mem::transmute::<__m256, [f32; 8]>(act::avx::sigmoid(v))
        }
    }

    #[inline(always)]
    fn tanh8(self, x: [f32; 8]) -> [f32; 8] {
        // SAFETY: as in `sigmoid8`.
        unsafe {
            let v = std::mem::transmute::<[f32; 8], __m256>(x);
            std::mem::transmute::<__m256, [f32; 8]>(act::avx::tanh(v))
        }
    }

    #[inline(always)]
    fn tile(self, rows: usize, parts: &[Part<'_>], init: Init<'_>, out: Out<'_>) {
        check(rows, parts, init, &out);
        // SAFETY: an `Fma` exists only when the CPU has AVX2 and FMA (`Fma::detect`), and
        // `check` has verified that every element the kernel reads or writes lies inside its
        // slice.
        unsafe {
            match rows {
                1 => tile_fma::<1>(parts, init, out),
                2 => tile_fma::<2>(parts, init, out),
                3 => tile_fma::<3>(parts, init, out),
                4 => tile_fma::<4>(parts, init, out),
                5 => tile_fma::<5>(parts, init, out),
                _ => tile_fma::<6>(parts, init, out),
            }
        }
    }
}

/// The body of [`Fma::tile`] for `R` rows: per `p`, two loads of `B` and `R` broadcasts of `A`
/// feed `2 R` fused multiply-adds into accumulators held in registers.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and the operands must pass [`check`] for `R` rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_fma<const R: usize>(parts: &[Part<'_>], init: Init<'_>, out: Out<'_>) {
    use std::arch::x86_64::{
        __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let w = out.width;
    let o = out.data.as_mut_ptr();
    // Rows of fewer than NR values go through this buffer.
    let mut buf = [0.0f32; NR];
    let mut lo: [__m256; R] = [_mm256_setzero_ps(); R];
    let mut hi: [__m256; R] = [_mm256_setzero_ps(); R];
    // SAFETY (all blocks below): `check` has verified that the output rows `r * out.rs + l` for
    // `l < w`, the initial row's first `w` values, `A[r, p]` at `r * a.rs + p * a.cs` and the
    // `NR` values of `B` at `p * b.rs` lie inside their slices; wider accesses go through `buf`.
    match init {
        Init::Zero => {}
        Init::Row(row) => {
            let src = if w == NR {
                row.as_ptr()
            } else {
                buf[..w].copy_from_slice(&row[..w]);
                buf.as_ptr()
            };
            // SAFETY: `src` holds NR values (see above).
            let (l, h) = unsafe { (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8))) };
            lo = [l; R];
            hi = [h; R];
        }
        Init::Out => {
            for r in 0..R {
                // SAFETY: see above.
                unsafe {
                    let src = if w == NR {
                        o.add(r * out.rs).cast_const()
                    } else {
                        std::ptr::copy_nonoverlapping(o.add(r * out.rs), buf.as_mut_ptr(), w);
                        buf.as_ptr()
                    };
                    lo[r] = _mm256_loadu_ps(src);
                    hi[r] = _mm256_loadu_ps(src.add(8));
                }
            }
        }
    }
    // One step of `p`: the column of `A` at `$acol` (its rows `$rs` apart) times the row of
    // `B` at `$brow`.
    macro_rules! step {
        ($acol:expr, $brow:expr, $rs:expr) => {
            // SAFETY: see above.
            unsafe {
                let (acol, brow) = ($acol, $brow);
                let (b0, b1) = (_mm256_loadu_ps(brow), _mm256_loadu_ps(brow.add(8)));
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*acol.add(r * $rs));
                    lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                    hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
                }
            }
        };
    }
    // The steps of one part in the order of `p`, four to an iteration (on Zen 3 the dW/dU
    // accumulation's shapes ran 7-10% faster this way than with one step per iteration).
    macro_rules! steps {
        ($k:expr, $a:expr, $b:expr, $rs:expr) => {{
            let (ap, bp, acs, brs) = ($a.data.as_ptr(), $b.data.as_ptr(), $a.cs, $b.rs);
            let whole = $k - $k % 4;
            for p in (0..whole).step_by(4) {
                // SAFETY: `p + 3 < k`, so every pointer is an element of its operand.
                let (acol, brow) = unsafe { (ap.add(p * acs), bp.add(p * brs)) };
                step!(acol, brow, $rs);
                step!(acol.add(acs), brow.add(brs), $rs);
                step!(acol.add(2 * acs), brow.add(2 * brs), $rs);
                step!(acol.add(3 * acs), brow.add(3 * brs), $rs);
            }
            for p in whole..$k {
                // SAFETY: `p < k`.
                let (acol, brow) = unsafe { (ap.add(p * acs), bp.add(p * brs)) };
                step!(acol, brow, $rs);
            }
        }};
    }
    for &(k, a, b) in parts {
        if a.rs == 1 {
            // Rows adjacent (a packed or transposed `A`): the broadcasts use fixed offsets.
            steps!(k, a, b, 1);
        } else {
            steps!(k, a, b, a.rs);
        }
    }
    for r in 0..R {
        // SAFETY: see above.
        unsafe {
            if w == NR {
                _mm256_storeu_ps(o.add(r * out.rs), lo[r]);
                _mm256_storeu_ps(o.add(r * out.rs + 8), hi[r]);
            } else {
                _mm256_storeu_ps(buf.as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(buf.as_mut_ptr().add(8), hi[r]);
                std::ptr::copy_nonoverlapping(buf.as_ptr(), o.add(r * out.rs), w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    /// Every row count and start, both panels (the last partial), two parts with transposed
    /// and plain strides, each way to start the accumulators, against `f64`; elements outside
    /// the output tile stay as they were.
    fn check_kernel<K: Kernel>(kern: K) {
        let (m, k1, k2, n, ldo) = (7, 13, 5, 21, 24);
        let a1 = values(m * k1, 0.5); // stored k1 x m: A1[r, p] = a1[p * m + r]
        let a2 = values(m * k2, 2.5); // row-major: A2[r, p] = a2[r * k2 + p]
        let (b1, b2) = (values(k1 * n, 1.5), values(k2 * n, 3.5));
        let (p1, p2) = (
            Panels::pack(k1, n, &b1, n, 1),
            Panels::pack(k2, n, &b2, n, 1),
        );
        assert_eq!((p1.count(), p1.width(0), p1.width(1)), (2, NR, n - NR));
        let bias = values(n, 4.5);
        for rows in 1..=MR {
            for r0 in [0, m - rows] {
                for jp in 0..p1.count() {
                    for init in 0..3 {
                        let (j0, width) = (jp * NR, p1.width(jp));
                        let mut c = values(m * ldo, 5.5);
                        let c0 = c.clone();
                        let parts = [
                            (
                                k1,
                                Lhs {
                                    data: &a1[r0..],
                                    rs: 1,
                                    cs: m,
                                },
                                Rhs::panel(&p1, jp),
                            ),
                            (
                                k2,
                                Lhs {
                                    data: &a2[r0 * k2..],
                                    rs: k2,
                                    cs: 1,
                                },
                                Rhs::panel(&p2, jp),
                            ),
                        ];
                        let start = match init {
                            0 => Init::Zero,
                            1 => Init::Row(&bias[j0..]),
                            _ => Init::Out,
                        };
                        let out = Out {
                            data: &mut c[r0 * ldo + j0..],
                            rs: ldo,
                            width,
                        };
                        kern.tile(rows, &parts, start, out);
                        for r in 0..m {
                            for j in 0..ldo {
                                let inside =
                                    (r0..r0 + rows).contains(&r) && (j0..j0 + width).contains(&j);
                                let want = if inside {
                                    let first = match init {
                                        0 => 0.0,
                                        1 => f64::from(bias[j]),
                                        _ => f64::from(c0[r * ldo + j]),
                                    };
                                    first
                                        + (0..k1)
                                            .map(|p| {
                                                f64::from(a1[p * m + r]) * f64::from(b1[p * n + j])
                                            })
                                            .sum::<f64>()
                                        + (0..k2)
                                            .map(|p| {
                                                f64::from(a2[r * k2 + p]) * f64::from(b2[p * n + j])
                                            })
                                            .sum::<f64>()
                                } else {
                                    f64::from(c0[r * ldo + j])
                                };
                                let got = f64::from(c[r * ldo + j]);
                                assert!(
                                    (got - want).abs() < 1e-5,
                                    "rows {rows}, init {init}, at ({r}, {j}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn portable_kernel_matches_f64_products() {
        check_kernel(Portable);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_kernel_matches_f64_products() {
        if let Some(kern) = Fma::detect() {
            check_kernel(kern);
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn short_operands_are_refused() {
        let a = [1.0f32; 10];
        let b = [1.0f32; 16];
        let mut c = [0.0f32; 32];
        let part = (
            2,
            Lhs {
                data: &a,
                rs: 5,
                cs: 1,
            },
            Rhs { data: &b, rs: 16 },
        );
        let out = Out {
            data: &mut c,
            rs: 16,
            width: NR,
        };
        Portable.tile(2, &[part], Init::Zero, out);
    }
}

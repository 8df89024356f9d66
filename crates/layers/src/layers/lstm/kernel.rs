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

/// Rows of one tile.
pub(super) const MR: usize = 6;

/// Columns of one tile (two AVX registers).
pub(super) const NR: usize = 16;

/// One output tile: `MR` rows of `NR` values (only the first `R` rows are written).
pub(super) type Tile = [[f32; NR]; MR];

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

/// Checks that a `rows x k` product of `a` and `b` stays inside both slices.
#[inline(always)]
fn check(rows: usize, k: usize, a: Lhs<'_>, b: Rhs<'_>) {
    assert!(
        (1..=MR).contains(&rows)
            && (k == 0
                || ((rows - 1) * a.rs + (k - 1) * a.cs < a.data.len()
                    && (k - 1) * b.rs + NR <= b.data.len())),
        "tile operands out of bounds"
    );
}

/// A micro-kernel: `out[r][l] = sum_{p < k} A[r, p] B[p, l]` for `r < rows`, `l < NR`.
pub(super) trait Kernel: Copy {
    /// Computes the first `rows` (1 to [`MR`]) rows of `out`.
    ///
    /// # Panics
    /// When `rows` is not in `1..=MR` or an operand does not hold its `rows x k` or `k x NR`
    /// matrix (a bug in the caller).
    fn tile(self, rows: usize, k: usize, a: Lhs<'_>, b: Rhs<'_>, out: &mut Tile);
}

/// The kernel of any CPU: multiplies, then adds, in the order of `p`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Portable;

impl Kernel for Portable {
    #[inline(always)]
    fn tile(self, rows: usize, k: usize, a: Lhs<'_>, b: Rhs<'_>, out: &mut Tile) {
        check(rows, k, a, b);
        for (r, row) in out.iter_mut().enumerate().take(rows) {
            let mut acc = [0.0f32; NR];
            for p in 0..k {
                let av = a.data[r * a.rs + p * a.cs];
                let bp = &b.data[p * b.rs..p * b.rs + NR];
                for (c, &bv) in acc.iter_mut().zip(bp) {
                    *c += av * bv;
                }
            }
            *row = acc;
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
impl Kernel for Fma {
    #[inline(always)]
    fn tile(self, rows: usize, k: usize, a: Lhs<'_>, b: Rhs<'_>, out: &mut Tile) {
        check(rows, k, a, b);
        // SAFETY: an `Fma` exists only when the CPU has AVX2 and FMA (`Fma::detect`), and
        // `check` has verified that every element the kernel reads lies inside `a` and `b`.
        unsafe {
            match rows {
                1 => tile_fma::<1>(k, a, b, out),
                2 => tile_fma::<2>(k, a, b, out),
                3 => tile_fma::<3>(k, a, b, out),
                4 => tile_fma::<4>(k, a, b, out),
                5 => tile_fma::<5>(k, a, b, out),
                _ => tile_fma::<6>(k, a, b, out),
            }
        }
    }
}

/// The body of [`Fma::tile`] for `R` rows: per `p`, two loads of `B` and `R` broadcasts of `A`
/// feed `2 R` fused multiply-adds into accumulators held in registers.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `a` and `b` must hold the `R x k` and `k x NR` operands.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_fma<const R: usize>(k: usize, a: Lhs<'_>, b: Rhs<'_>, out: &mut Tile) {
    use std::arch::x86_64::{
        __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let mut lo: [__m256; R] = [_mm256_setzero_ps(); R];
    let mut hi: [__m256; R] = [_mm256_setzero_ps(); R];
    let (ap, bp) = (a.data.as_ptr(), b.data.as_ptr());
    for p in 0..k {
        // SAFETY: the caller guarantees `(k - 1) * b.rs + NR <= b.data.len()` and
        // `(R - 1) * a.rs + (k - 1) * a.cs < a.data.len()`, so every offset below is in bounds.
        unsafe {
            let brow = bp.add(p * b.rs);
            let (b0, b1) = (_mm256_loadu_ps(brow), _mm256_loadu_ps(brow.add(8)));
            let acol = ap.add(p * a.cs);
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*acol.add(r * a.rs));
                lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
            }
        }
    }
    for r in 0..R {
        // SAFETY: `out[r]` holds `NR = 16` values: two stores of 8.
        unsafe {
            _mm256_storeu_ps(out[r].as_mut_ptr(), lo[r]);
            _mm256_storeu_ps(out[r].as_mut_ptr().add(8), hi[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    /// Every row count, a partial last panel and transposed strides, against an `f64` product.
    fn check_kernel<K: Kernel>(kern: K) {
        let (m, k, n) = (7, 13, 21);
        let a = values(m * k, 0.5); // stored k x m: A[r, p] = a[p * m + r]
        let b = values(k * n, 1.5);
        let packed = Panels::pack(k, n, &b, n, 1);
        assert_eq!(packed.count(), 2);
        assert_eq!(packed.width(1), n - NR);
        for rows in 1..=MR {
            for r0 in [0, m - rows] {
                for jp in 0..packed.count() {
                    let mut out = [[f32::NAN; NR]; MR];
                    let lhs = Lhs {
                        data: &a[r0..],
                        rs: 1,
                        cs: m,
                    };
                    kern.tile(rows, k, lhs, Rhs::panel(&packed, jp), &mut out);
                    for (r, row) in out.iter().enumerate().take(rows) {
                        for (l, &got) in row.iter().enumerate() {
                            let j = jp * NR + l;
                            let want: f64 = if j < n {
                                (0..k)
                                    .map(|p| f64::from(a[p * m + r0 + r]) * f64::from(b[p * n + j]))
                                    .sum()
                            } else {
                                0.0
                            };
                            assert!(
                                (f64::from(got) - want).abs() < 1e-5,
                                "rows {rows}, r {r}, col {j}: {got} vs {want}"
                            );
                        }
                    }
                    assert!(out[rows..].iter().flatten().all(|v| v.is_nan()));
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
        let mut out = [[0.0; NR]; MR];
        Portable.tile(
            2,
            2,
            Lhs {
                data: &a,
                rs: 5,
                cs: 1,
            },
            Rhs { data: &b, rs: 16 },
            &mut out,
        );
    }
}

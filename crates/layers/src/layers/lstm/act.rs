//! The gate activations of the fused LSTM cell, written with the kernel's multiply-add so that
//! the polynomials use FMA where the CPU has it. Same schemes as [`crate::fastmath`] (with the
//! portable kernel the results are the same bit for bit):
//!
//! - `exp`: `e^x = 2^n e^r` with `n = round(x / ln 2)`, `|r| <= ln 2 / 2`, a degree-7 polynomial
//!   for `e^r` (Cephes' `expf`), for `x` clamped to `[-87.3, 88.3]`;
//! - `sigmoid(x) = 1 / (1 + e^-x)`;
//! - `tanh`: Cephes' odd polynomial for `|x| < 0.625`, `1 - 2 / (e^{2|x|} + 1)` beyond.

use super::kernel::Kernel;
use crate::fastmath::{EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO, ROUNDER, TANH_POLY, TANH_SMALL};

/// `e^x` (see the module docs).
#[inline(always)]
pub(super) fn exp<K: Kernel>(k: K, x: f32) -> f32 {
    let x = x.clamp(EXP_RANGE.0, EXP_RANGE.1);
    let t = k.madd(x, std::f32::consts::LOG2_E, ROUNDER);
    let n = t - ROUNDER;
    // r = x - n ln 2, with ln 2 split in two so that n * hi is exact.
    let r = k.madd(n, LN2_LO, k.madd(-n, LN2_HI, x));
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = k.madd(p, r, c);
    }
    let er = k.madd(p * r, r, r) + 1.0;
    // t = 2^23 + (2^22 + n) exactly: its mantissa bits hold 2^22 + n.
    let n_int = t.to_bits() as i32 - 0x4B40_0000;
    er * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub(super) fn sigmoid<K: Kernel>(k: K, x: f32) -> f32 {
    1.0 / (1.0 + exp(k, -x))
}

/// The hyperbolic tangent (see the module docs).
#[inline(always)]
pub(super) fn tanh<K: Kernel>(k: K, x: f32) -> f32 {
    let ax = x.abs();
    let z = x * x;
    let mut p = TANH_POLY[0];
    for &c in &TANH_POLY[1..] {
        p = k.madd(p, z, c);
    }
    let small = k.madd(x * z, p, x);
    let big = (1.0 - 2.0 / (exp(k, 2.0 * ax) + 1.0)).copysign(x);
    if ax < TANH_SMALL { small } else { big }
}

/// The same functions on 8 lanes with AVX2 and FMA intrinsics: the same operations in the same
/// order as the scalar ones with the [`Fma`](super::kernel::Fma) kernel, so the same values.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx {
    use std::arch::x86_64::{
        __m256, _CMP_LT_OQ, _mm256_add_epi32, _mm256_add_ps, _mm256_and_ps, _mm256_andnot_ps,
        _mm256_blendv_ps, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_div_ps,
        _mm256_fmadd_ps, _mm256_fnmadd_ps, _mm256_max_ps, _mm256_min_ps, _mm256_mul_ps,
        _mm256_or_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_slli_epi32, _mm256_sub_epi32,
        _mm256_sub_ps,
    };

    use crate::fastmath::{EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO, ROUNDER, TANH_POLY, TANH_SMALL};

    /// `e^x` lane by lane (see [`super::exp`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn exp(x: __m256) -> __m256 {
        let s = _mm256_set1_ps;
        // max(lo, x) keeps a NaN `x` (the second operand), as `clamp` does.
        let x = _mm256_min_ps(s(EXP_RANGE.1), _mm256_max_ps(s(EXP_RANGE.0), x));
        let t = _mm256_fmadd_ps(x, s(std::f32::consts::LOG2_E), s(ROUNDER));
        let n = _mm256_sub_ps(t, s(ROUNDER));
        let r = _mm256_fmadd_ps(n, s(LN2_LO), _mm256_fnmadd_ps(n, s(LN2_HI), x));
        let mut p = s(EXP_POLY[0]);
        for &c in &EXP_POLY[1..] {
            p = _mm256_fmadd_ps(p, r, s(c));
        }
        let er = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), s(1.0));
        let n_int = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B40_0000));
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(n_int, _mm256_set1_epi32(127)));
        _mm256_mul_ps(er, _mm256_castsi256_ps(scale))
    }

    /// The logistic function lane by lane (see [`super::sigmoid`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn sigmoid(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let neg = _mm256_sub_ps(_mm256_set1_ps(-0.0), x);
        _mm256_div_ps(one, _mm256_add_ps(one, exp(neg)))
    }

    /// The hyperbolic tangent lane by lane (see [`super::tanh`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn tanh(x: __m256) -> __m256 {
        let s = _mm256_set1_ps;
        let sign = s(-0.0);
        let ax = _mm256_andnot_ps(sign, x);
        let z = _mm256_mul_ps(x, x);
        let mut p = s(TANH_POLY[0]);
        for &c in &TANH_POLY[1..] {
            p = _mm256_fmadd_ps(p, z, s(c));
        }
        let small = _mm256_fmadd_ps(_mm256_mul_ps(x, z), p, x);
        let e = exp(_mm256_mul_ps(s(2.0), ax));
        let big = _mm256_sub_ps(s(1.0), _mm256_div_ps(s(2.0), _mm256_add_ps(e, s(1.0))));
        let big = _mm256_or_ps(_mm256_andnot_ps(sign, big), _mm256_and_ps(sign, x));
        _mm256_blendv_ps(big, small, _mm256_cmp_ps::<_CMP_LT_OQ>(ax, s(TANH_SMALL)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::Portable;
    use super::*;
    use crate::fastmath;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    /// Within a few ulp of `f64` (and, with the portable kernel, bit-identical to `fastmath`).
    fn check<K: Kernel>(k: K) {
        for x in grid() {
            let xd = f64::from(x);
            for (got, want) in [
                (exp(k, 4.0 * x), (4.0 * xd).exp()),
                (sigmoid(k, x), 1.0 / (1.0 + (-xd).exp())),
                (tanh(k, x), xd.tanh()),
            ] {
                let err = (f64::from(got) - want).abs();
                assert!(
                    err <= 1e-7 || err / want.abs() < 1e-6,
                    "{x}: {got} vs {want}"
                );
            }
        }
        assert!(exp(k, -1000.0) >= 0.0 && exp(k, 1000.0).is_finite());
        assert_eq!(
            (tanh(k, 50.0), tanh(k, -50.0), tanh(k, 0.0)),
            (1.0, -1.0, 0.0)
        );
        assert!(sigmoid(k, 200.0) == 1.0 && sigmoid(k, -200.0) < 1e-37);
    }

    #[test]
    fn portable_activations_are_accurate_and_match_fastmath() {
        check(Portable);
        for x in grid() {
            assert_eq!(exp(Portable, 4.0 * x), fastmath::exp(4.0 * x));
            assert_eq!(sigmoid(Portable, x), fastmath::sigmoid(x));
            assert_eq!(tanh(Portable, x), fastmath::tanh(x));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_activations_are_accurate() {
        if let Some(k) = super::super::kernel::Fma::detect() {
            check(k);
        }
    }

    /// The 8-lane functions of every kernel give the scalar values bit for bit (NaN stays NaN).
    fn check_lanes<K: Kernel>(k: K) {
        let xs: Vec<f32> = grid()
            .step_by(7)
            .chain([0.0, -0.0, 1e-30, 300.0, -300.0, f32::NAN, 0.625, -0.625])
            .collect();
        for chunk in xs.chunks(8) {
            let mut x = [0.5f32; 8];
            x[..chunk.len()].copy_from_slice(chunk);
            for (got, want) in [
                (k.sigmoid8(x), x.map(|v| sigmoid(k, v))),
                (k.tanh8(x), x.map(|v| tanh(k, v))),
            ] {
                let bits = |a: [f32; 8]| a.map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() });
                assert_eq!(bits(got), bits(want), "{x:?}");
            }
        }
    }

    #[test]
    fn lanes_match_scalar_activations() {
        check_lanes(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = super::super::kernel::Fma::detect() {
            check_lanes(k);
        }
    }
}
